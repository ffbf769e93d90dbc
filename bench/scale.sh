#!/usr/bin/env bash
# How the proxy's cost grows with the work: more masters, more or fewer clients, and none at all.
#
#   bench/scale.sh [--masters "3 9 24"] [--clients "1 10 50 200 1000"] [--passes N] [--idle SECONDS]
#                  [--base PORT]
#
# Masters: for each count, a cluster of that many masters without replicas (deploy/cluster.sh) and the proxy
# in front of it; GET at -P 16 and -P 1 (-c 50 -r 100000 -d 64), PASSES times each, in turns.
# Clients: on the first cluster, GET -P 1 with each -c, through the proxy and against one standalone
# redis-server (direct), in turns. Idle: after the traffic, the proxy's CPU time and context switches over
# SECONDS of silence. Per run: requests/s, the proxy's CPU µs per request (utime+stime, /proc/PID/stat) and
# its read and write syscalls per request (/proc/PID/io: client and node sockets together).
# Environment (flags win): MASTERS, CLIENT_COUNTS, PASSES (2), IDLE (60), BASE (18000: clusters from BASE,
# bus ports +10000; direct BASE+200, proxy BASE+201), PROXY_BIN (a built binary instead of go build),
# EVENT_LOOPS (unset: the proxy's default). Prints a markdown table. Everything started is stopped on exit.
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

while [[ $# -gt 0 ]]; do
	case $1 in
	--masters) MASTERS=${2:?}; shift 2 ;;
	--clients) CLIENT_COUNTS=${2:?}; shift 2 ;;
	--passes) PASSES=${2:?}; shift 2 ;;
	--idle) IDLE=${2:?}; shift 2 ;;
	--base) BASE=${2:?}; shift 2 ;;
	*) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
MASTERS=${MASTERS:-3 9 24} CLIENT_COUNTS=${CLIENT_COUNTS:-1 10 50 200 1000}
PASSES=${PASSES:-2} IDLE=${IDLE:-60} BASE=${BASE:-18000}
for v in PASSES IDLE BASE; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"; done
read -r -a MS <<<"$MASTERS"
read -r -a CS <<<"$CLIENT_COUNTS"
DIRECT=$((BASE + 200)) PROXY=$((BASE + 201))
install_missing redis-server redis-tools

RUN=$(mktemp -d "${TMPDIR:-/tmp}/slotproxy-scale.XXXXXX")
PIDS=() CLUSTER=""
cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p" 5 || true; done
	[[ -z $CLUSTER ]] || deploy/cluster.sh stop --dir "$CLUSTER" >/dev/null 2>&1 || true
	rm -rf "$RUN"
}
trap cleanup EXIT

BIN=${PROXY_BIN:-}
if [[ -z $BIN ]]; then
	require_go
	BIN=$RUN/slotproxy
	go build -o "$BIN" .
fi

start_proxy() { # seed
	local args=(-listen "127.0.0.1:$PROXY" -metrics off -seeds "127.0.0.1:$1")
	[[ -z ${EVENT_LOOPS:-} ]] || { printf 'event_loops: %s\n' "$EVENT_LOOPS" >"$RUN/proxy.yaml" && args+=(-config "$RUN/proxy.yaml"); }
	"$BIN" "${args[@]}" >"$RUN/proxy.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_pong 127.0.0.1 "$PROXY" 20 "$PROXY_PID" || die "the proxy did not start: $(tail -3 "$RUN/proxy.log")"
}
stop_proxy() {
	stop_pid "$PROXY_PID" 10 || true
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
io() { awk '/^syscr|^syscw/ {printf "%s ", $2}' "/proc/$1/io"; }
ctxsw() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }

# run port pid pipeline clients n -> "rps cpu_us reads writes" (the last three empty without pid)
run() {
	local port=$1 pid=$2 pipe=$3 c=$4 n=$5 t0 t1 r0 w0 r1 w1 rps hz
	hz=$(getconf CLK_TCK)
	[[ -z $pid ]] || { t0=$(ticks "$pid"); read -r r0 w0 <<<"$(io "$pid")"; }
	rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$c" -n "$n" -P "$pipe" -r 100000 -d 64 -t get --csv 2>/dev/null |
		tail -1 | cut -d, -f2 | tr -d '"')
	if [[ -z $pid ]]; then
		echo "$rps"
		return
	fi
	t1=$(ticks "$pid")
	read -r r1 w1 <<<"$(io "$pid")"
	awk -v rps="$rps" -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" -v r="$((r1 - r0))" -v w="$((w1 - w0))" \
		'BEGIN {printf "%s %.2f %.3f %.3f\n", rps, t / hz * 1e6 / n, r / n, w / n}'
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
fmt() { awk -v v="$1" 'BEGIN {printf "%\047d", v}'; }

echo "# bench/scale.sh $(date -u +%Y%m%dT%H%M%SZ)"
echo
echo "- host: $(host_line); $(redis-server --version | cut -d' ' -f1-3)"
echo "- proxy: $("$BIN" -version 2>/dev/null | head -1 || echo slotproxy) (commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)), event_loops ${EVENT_LOOPS:-default}"
echo
MROWS="" CROWS="" IDLE_LINE=""
first=""
for m in "${MS[@]}"; do
	CLUSTER=$RUN/cluster$m
	deploy/cluster.sh start --base-port "$BASE" --masters "$m" --replicas 0 --dir "$CLUSTER" >"$RUN/cluster$m.log" 2>&1 ||
		die "the $m-master cluster did not start: $(tail -3 "$RUN/cluster$m.log")"
	start_proxy "$BASE"
	declare -A out=()
	for ((pass = 0; pass < PASSES; pass++)); do
		out[16]+="$(run "$PROXY" "$PROXY_PID" 16 50 1000000)"$'\n'
		out[1]+="$(run "$PROXY" "$PROXY_PID" 1 50 200000)"$'\n'
	done
	for pipe in 16 1; do
		rows=${out[$pipe]}
		MROWS+="| $m | GET -P $pipe | $(fmt "$(cut -d' ' -f1 <<<"$rows" | grep . | median)") |"
		MROWS+=" $(cut -d' ' -f2 <<<"$rows" | grep . | median) | $(cut -d' ' -f3 <<<"$rows" | grep . | median) |"
		MROWS+=" $(cut -d' ' -f4 <<<"$rows" | grep . | median) |"$'\n'
	done
	if [[ -z $first ]]; then
		first=$m
		# The clients and idle parts run on this first cluster.
		setsid redis-server --port "$DIRECT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
			>"$RUN/direct.log" 2>&1 &
		PIDS+=("$!")
		wait_pong 127.0.0.1 "$DIRECT" 10 "$!" || die "the direct redis-server did not start"
		for c in "${CS[@]}"; do
			n=$((c < 10 ? 50000 : 200000))
			d=() p=()
			for ((pass = 0; pass < PASSES; pass++)); do
				d+=("$(run "$DIRECT" "" 1 "$c" "$n")")
				p+=("$(run "$PROXY" "$PROXY_PID" 1 "$c" "$n")")
			done
			dr=$(printf '%s\n' "${d[@]}" | median)
			pr=$(printf '%s\n' "${p[@]}" | cut -d' ' -f1 | median)
			CROWS+="| $c | $(fmt "$dr") | $(fmt "$pr") | $(awk -v a="$pr" -v b="$dr" 'BEGIN {printf "%.2f", a / b}') |"
			CROWS+=" $(printf '%s\n' "${p[@]}" | cut -d' ' -f2 | median) | $(printf '%s\n' "${p[@]}" | cut -d' ' -f3 | median) |"
			CROWS+=" $(printf '%s\n' "${p[@]}" | cut -d' ' -f4 | median) |"$'\n'
		done
		sleep 5
		t0=$(ticks "$PROXY_PID") s0=$(ctxsw "$PROXY_PID")
		sleep "$IDLE"
		t1=$(ticks "$PROXY_PID") s1=$(ctxsw "$PROXY_PID")
		IDLE_LINE="Idle, after that traffic, over ${IDLE} s: $(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
			-v s="$IDLE" 'BEGIN {printf "%.3f", t / hz * 60 / s}') CPU-s per minute, $(((s1 - s0) / IDLE)) context switches per second."
	fi
	stop_proxy
	deploy/cluster.sh stop --dir "$CLUSTER" >/dev/null 2>&1
	CLUSTER=""
done
echo "| masters | test | req/s | CPU µs / req | reads / req | writes / req |"
echo "|---:|---|---:|---:|---:|---:|"
printf '%s' "$MROWS"
echo
echo "| clients (-c, GET -P 1, $first masters) | direct req/s | proxy req/s | proxy / direct | CPU µs / req | reads / req | writes / req |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
printf '%s' "$CROWS"
echo
echo "$IDLE_LINE"
echo
echo "Medians of $PASSES passes; reads and writes are the proxy's syscalls on client and node sockets together."
