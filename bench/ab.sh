#!/usr/bin/env bash
# Before/after: two proxy binaries over the same 3-master cluster, measured in ONE interleaved session (A B,
# B A, ...), so a change can be shown not to slow the shared fast path.
#
#   bench/ab.sh OLD_BIN NEW_BIN [ROUNDS (5)]
#
# Environment: BASE (17300: proxies BASE+10 and BASE+11), MASTERS (3: the cluster's masters, on BASE+40 on, bus
# ports +10000; 3 masters without replicas on BASE..BASE+2 as before), REPLICAS (0 per master), TESTS (default
# "set 1 200000,get 1 200000,set 16 1000000,get 16 1000000"), DATA (64), CLIENTS (50), EVENT_LOOPS (1).
# NEW_PEERS=1: the new proxy gossips (peers.bind BASE+20) with one idle proxy of the new binary (client port
# BASE+12, gossip BASE+21), to measure peers on and idle against OLD (which can be the same binary).
# NEW_METRICS=1: the new proxy serves /metrics on BASE+30, scraped every SCRAPE seconds (1) throughout, while
# the old one runs with -metrics off: with the same binary twice, metrics on against off.
# NEW_USER="rules": the new proxy has the ACL user bench (password bench) with these rules, e.g. "~* &* +@all"
# (allowed everything: no per-command check) or "~* &* +@all -flushall" (checked per command), and the
# benchmark logs in to it as bench; the old one has no users.
# NEW_TLS=1: the benchmark reaches the new proxy on its TLS port (BASE+13; a throwaway CA and certificate made
# with openssl, client certificates not required), the old one in plain TCP.
# NEW_EVENT_LOOPS=N: the new proxy runs with event_loops N (0: its default), the old one with EVENT_LOOPS.
# Each line also shows the proxy's CPU time per request (from /proc/PID/stat), the figure TLS costs most in, and
# the cluster's redis-servers' (bigger batches from the proxy cost them less per request).
# RESTART (1): both proxies are started afresh every round, in the order the round runs them. One process's
# luck (where the scheduler keeps its threads beside the servers and the client) lasts its whole life: the
# same binary twice, started once, measured 1.09x and 1.03x at -P 1 for the one started second. RESTART=0
# starts them once (as NEW_PEERS does: the idle peer would lose its fleet).
# Prints one line per run and the median requests/s of each binary per test with the ratio new/old, and the
# median of the rounds' own ratios.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-5}
BASE=${BASE:-17300} DATA=${DATA:-64} CLIENTS=${CLIENTS:-50} EVENT_LOOPS=${EVENT_LOOPS:-1} MASTERS=${MASTERS:-3} REPLICAS=${REPLICAS:-0}
CBASE=$BASE
((MASTERS * (1 + REPLICAS) <= 3)) || CBASE=$((BASE + 40))
TESTS=${TESTS:-set 1 200000,get 1 200000,set 16 1000000,get 16 1000000}
for b in "$OLD" "$NEW"; do [[ -x $b ]] || die "$b is not an executable"; done
RUN=$(mktemp -d "${TMPDIR:-/tmp}/slotproxy-ab.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	deploy/cluster.sh stop --dir "$RUN/cluster" >/dev/null 2>&1 || true
	rm -rf "$RUN"
}
trap cleanup EXIT
deploy/cluster.sh start --base-port "$CBASE" --masters "$MASTERS" --replicas "$REPLICAS" --dir "$RUN/cluster" >/dev/null
printf 'max_clients: 0\nlog_level: warn\nevent_loops: %s\n' "$EVENT_LOOPS" >"$RUN/proxy.yaml"
seeds=127.0.0.1:$CBASE,127.0.0.1:$((CBASE + 1)),127.0.0.1:$((CBASE + 2))
declare -A PORT=([old]=$((BASE + 10)) [new]=$((BASE + 11)))
declare -A BIN=([old]=$OLD [new]=$NEW)
cp "$RUN/proxy.yaml" "$RUN/old.yaml"
cp "$RUN/proxy.yaml" "$RUN/new.yaml"
if [[ -n ${NEW_EVENT_LOOPS:-} ]]; then
	sed -i "s/^event_loops: .*/event_loops: $NEW_EVENT_LOOPS/" "$RUN/new.yaml"
fi
if [[ ${NEW_PEERS:-0} == 1 ]]; then
	printf 'peers:\n  bind: 127.0.0.1:%d\n' $((BASE + 20)) >>"$RUN/new.yaml"
	printf 'peers:\n  bind: 127.0.0.1:%d\n  join: [127.0.0.1:%d]\n' $((BASE + 21)) $((BASE + 20)) >"$RUN/idle.yaml"
	cat "$RUN/proxy.yaml" >>"$RUN/idle.yaml"
	PORT[idle]=$((BASE + 12)) BIN[idle]=$NEW
fi
if [[ -n ${NEW_USER:-} ]]; then
	printf 'users:\n  - "user bench on >bench %s"\n' "$NEW_USER" >>"$RUN/new.yaml"
fi
declare -A TLSARGS=([old]="" [new]="")
if [[ ${NEW_TLS:-0} == 1 ]]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>/dev/null
	printf 'tls:\n  listen: 127.0.0.1:%d\n  cert: %s\n  key: %s\n' $((BASE + 13)) "$RUN/tls.crt" "$RUN/tls.key" >>"$RUN/new.yaml"
	TLSARGS[new]="--tls --cacert $RUN/tls.crt"
fi
declare -A AUTH=([old]="" [new]="")
[[ -n ${NEW_USER:-} ]] && AUTH[new]="--user bench -a bench"
declare -A METRICS=([old]=off [new]=off [idle]=off)
[[ ${NEW_METRICS:-0} == 1 ]] && METRICS[new]=127.0.0.1:$((BASE + 30))
declare -A PID=()
start() { # which
	local w=$1
	"${BIN[$w]}" -config "$RUN/$w.yaml" -listen "127.0.0.1:${PORT[$w]}" -seeds "$seeds" -metrics "${METRICS[$w]}" \
		>>"$RUN/$w.log" 2>&1 &
	PIDS+=($!)
	PID[$w]=$!
	wait_pong 127.0.0.1 "${PORT[$w]}" 30 "$!" || die "the $w proxy does not answer: $(tail -5 "$RUN/$w.log")"
}
stop() { # which
	local p keep=()
	kill "${PID[$1]}" 2>/dev/null || true
	wait "${PID[$1]}" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [[ $p == "${PID[$1]}" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
for w in old new ${PORT[idle]:+idle}; do start "$w"; done
if [[ -n ${PORT[idle]:-} ]]; then
	members=$(redis-cli -p "${PORT[new]}" info proxy | tr -d '\r' | sed -n 's/^proxy_peers_members://p')
	[[ $members == 2 ]] || die "the new proxy's fleet has ${members:-no} members, want 2"
fi
declare -A BPORT=([old]=${PORT[old]} [new]=${PORT[new]})
[[ ${NEW_TLS:-0} == 1 ]] && BPORT[new]=$((BASE + 13))
cpu_ticks() { # pid... -> their utime+stime, summed
	local p f=()
	for p in "$@"; do f+=("/proc/$p/stat"); done
	awk '{s += $14 + $15} END {print s}' "${f[@]}"
}
SERVERS=() # the cluster's redis-servers: how batches reach them shows in their CPU per request
for f in "$RUN"/cluster/*/redis.pid; do SERVERS+=("$(<"$f")"); done
if [[ ${METRICS[new]} != off ]]; then
	curl -fsS "http://${METRICS[new]}/metrics" | grep '^slotproxy_requests_total' >/dev/null ||
		die "the new proxy's /metrics has no slotproxy_requests_total"
	(while sleep "${SCRAPE:-1}"; do curl -fsS -o /dev/null "http://${METRICS[new]}/metrics" || true; done) &
	PIDS+=($!)
fi
sleep 1
IFS=, read -r -a T <<<"$TESTS"
: >"$RUN/results"
for ((r = 1; r <= ROUNDS; r++)); do
	order=(old new)
	((r % 2)) || order=(new old)
	if [[ ${RESTART:-1} == 1 && -z ${PORT[idle]:-} ]] && ((r > 1)); then
		for w in old new; do stop "$w"; done
		for w in "${order[@]}"; do start "$w"; done
		sleep 1
	fi
	for spec in "${T[@]}"; do
		read -r test pipe n <<<"$spec"
		for w in "${order[@]}"; do
			t0=$(cpu_ticks "${PID[$w]}") s0=$(cpu_ticks "${SERVERS[@]}")
			# shellcheck disable=SC2086 # AUTH and TLSARGS hold separate words
			rps=$(redis-benchmark -p "${BPORT[$w]}" ${AUTH[$w]} ${TLSARGS[$w]} -q -c "$CLIENTS" -r 100000 -d "$DATA" -n "$n" \
				-P "$pipe" -t "$test" --csv | grep -m1 -E '^"[A-Z]' | cut -d, -f2 | tr -d '"')
			t1=$(cpu_ticks "${PID[$w]}") s1=$(cpu_ticks "${SERVERS[@]}")
			# CPU µs per request: clock ticks (100 a second) over the requests.
			cpu=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN { printf "%.2f", d * 10000 / n }')
			srv=$(awk -v d=$((s1 - s0)) -v n="$n" 'BEGIN { printf "%.2f", d * 10000 / n }')
			echo "$test-P$pipe $w $rps $cpu $srv" | tee -a "$RUN/results"
		done
	done
done
echo
echo "host: $(host_line)"
python3 - "$RUN/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tests = list(dict.fromkeys(r[0] for r in rows))
print(f"{'test':<10} {'old req/s':>12} {'new req/s':>12} {'new/old':>8} {'per round':>10} {'old µs/req':>9} {'new µs/req':>9}"
      f" {'servers old':>11} {'new':>6}")
for t in tests:
    olds = [float(r[2]) for r in rows if r[0] == t and r[1] == "old"]
    news = [float(r[2]) for r in rows if r[0] == t and r[1] == "new"]
    old, new = statistics.median(olds), statistics.median(news)
    # Each round runs both back to back, so the median of the rounds' ratios cancels slow drifts.
    per_round = statistics.median(n / o for o, n in zip(olds, news))
    cpu = lambda w, i=3: statistics.median(float(r[i]) for r in rows if r[0] == t and r[1] == w)
    print(f"{t:<10} {old:>12,.0f} {new:>12,.0f} {new / old:>8.2f} {per_round:>10.2f} {cpu('old'):>9.2f} {cpu('new'):>9.2f}"
          f" {cpu('old', 4):>11.2f} {cpu('new', 4):>6.2f}")
PY
