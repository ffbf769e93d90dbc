#!/usr/bin/env bash
# Side-by-side throughput of the proxy, twemproxy (nutcracker) and Redis itself, in one interleaved session.
#
#   bench/run.sh [--quick]
#
# Targets (all on this machine, same redis-benchmark flags -c 50 -r 100000 -d 64):
#   direct  one standalone redis-server
#   twem    nutcracker over 3 standalone redis-servers (twemproxy cannot front a Redis Cluster)
#   proxy3  the proxy over a 3-master cluster without replicas (the same backend work as twem)
#   proxy6  the proxy over a 3-master/3-replica cluster
# Each round runs every target once, in an order rotated per round (A B C D, B C D A, ...). The table gives
# medians over rounds, ratios as the median of per-round ratios, the CPU seconds per million requests of the
# proxy and nutcracker processes (/proc/PID/stat), and the RSS per idle client connection with 10,000 held.
#
# Environment: ROUNDS (5), N1 (requests at -P 1, 100000), N16 (at -P 16, 1000000), NMSET (50000),
# TARGETS ("direct twem proxy3 proxy6"), EVENT_LOOPS (proxy event_loops, 0 = one per CPU), CONNS (10000),
# BASE (first port used, 17000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then export PATH=$PATH:/usr/local/go/bin; fi

ROUNDS=${ROUNDS:-5} N1=${N1:-100000} N16=${N16:-1000000} NMSET=${NMSET:-50000} CONNS=${CONNS:-10000}
TARGETS=${TARGETS:-direct twem proxy3 proxy6}
EVENT_LOOPS=${EVENT_LOOPS:-0}
BASE=${BASE:-17000}
if [[ ${1:-} == --quick ]]; then ROUNDS=1 N1=20000 N16=200000 NMSET=10000 CONNS=1000; fi
FLAGS=(-c 50 -r 100000 -d 64)

RUN=$(mktemp -d /tmp/slotproxy-bench.XXXXXX)
OUT=$ROOT/bench/results
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$OUT/raw-$STAMP.tsv
PIDS=()
CLUSTERS=()

cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	done
	for base in "${CLUSTERS[@]}"; do
		BASE_PORT=$base RUN_DIR=$RUN/cluster-$base deploy/cluster.sh stop >/dev/null 2>&1 || true
	done
	rm -rf "$RUN"
}
trap cleanup EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$BASE" $((BASE + 10)) ) $((BASE + 100)) $((BASE + 200)) $((BASE + 300)); do
	if port_busy "$p"; then echo "port $p is in use; set BASE to a free range" >&2; exit 1; fi
done

DIRECT=$((BASE + 0)) S1=$((BASE + 1)) S2=$((BASE + 2)) S3=$((BASE + 3))
TWEM=$((BASE + 4)) PROXY3=$((BASE + 5)) PROXY6=$((BASE + 6))
C3=$((BASE + 100)) C6=$((BASE + 200))

standalone() { # port
	mkdir -p "$RUN/r$1"
	redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN/r$1" --daemonize no \
		--logfile "$RUN/r$1/log" &
	PIDS+=($!)
}

wait_ping() { # port
	for _ in $(seq 100); do
		[[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
		sleep 0.1
	done
	echo "nothing answers PING on $1" >&2
	exit 1
}

start_proxy() { # listen-port seeds-base nodes -> pid in PROXY_PID
	local seeds="" i
	for i in $(seq 0 $(($3 - 1))); do seeds+="${seeds:+,}127.0.0.1:$(($2 + i))"; done
	cat >"$RUN/proxy-$1.yaml" <<YAML
listen: 127.0.0.1:$1
metrics: ""
event_loops: $EVENT_LOOPS
max_clients: 100000
log_level: warn
seeds: [${seeds//,/, }]
YAML
	(ulimit -n "$(ulimit -Hn)" && exec bin/slotproxy -config "$RUN/proxy-$1.yaml" >"$RUN/proxy-$1.log" 2>&1) &
	PIDS+=($!)
	PROXY_PID=$!
}

echo "building the proxy"
go build -o bin/slotproxy .
deploy/install-deps.sh redis-server redis-tools nutcracker

declare -A PID_OF PORT_OF
for t in $TARGETS; do
	case $t in
	direct)
		standalone "$DIRECT"
		wait_ping "$DIRECT"
		PORT_OF[direct]=$DIRECT
		;;
	twem)
		for p in "$S1" "$S2" "$S3"; do standalone "$p"; done
		for p in "$S1" "$S2" "$S3"; do wait_ping "$p"; done
		sed -e "s/@LISTEN@/127.0.0.1:$TWEM/" -e "s/@S1@/127.0.0.1:$S1/" -e "s/@S2@/127.0.0.1:$S2/" \
			-e "s/@S3@/127.0.0.1:$S3/" bench/nutcracker.yml >"$RUN/nutcracker.yml"
		(ulimit -n "$(ulimit -Hn)" && exec nutcracker -c "$RUN/nutcracker.yml" -o "$RUN/nutcracker.log" -s $((BASE + 7)) \
			-a 127.0.0.1) &
		PIDS+=($!)
		PID_OF[twem]=$!
		wait_ping "$TWEM"
		PORT_OF[twem]=$TWEM
		;;
	proxy3)
		BASE_PORT=$C3 MASTERS=3 REPLICAS=0 RUN_DIR=$RUN/cluster-$C3 deploy/cluster.sh start
		CLUSTERS+=("$C3")
		start_proxy "$PROXY3" "$C3" 3
		PID_OF[proxy3]=$PROXY_PID
		wait_ping "$PROXY3"
		PORT_OF[proxy3]=$PROXY3
		;;
	proxy6)
		BASE_PORT=$C6 MASTERS=3 REPLICAS=1 RUN_DIR=$RUN/cluster-$C6 deploy/cluster.sh start
		CLUSTERS+=("$C6")
		start_proxy "$PROXY6" "$C6" 6
		PID_OF[proxy6]=$PROXY_PID
		wait_ping "$PROXY6"
		PORT_OF[proxy6]=$PROXY6
		;;
	*) echo "unknown target $t" >&2; exit 2 ;;
	esac
done

TICK=$(getconf CLK_TCK)
cpu_ticks() { # pid
	[[ -n ${1:-} ]] || { echo 0; return; }
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# bench target test pipeline n -> appends "round target test rps cpu_s_per_M" to RAW
bench() {
	local target=$1 test=$2 pipe=$3 n=$4 port=${PORT_OF[$1]} pid=${PID_OF[$1]:-} t0 t1 rps
	t0=$(cpu_ticks "$pid")
	rps=$(redis-benchmark -p "$port" -q "${FLAGS[@]}" -n "$n" -P "$pipe" -t "$test" --csv 2>/dev/null |
		awk -F'","' 'NR>1 {gsub(/"/,"",$2); print $2; exit}')
	t1=$(cpu_ticks "$pid")
	local cpu
	cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$TICK" -v n="$n" 'BEGIN {printf "%.3f", (b-a)/hz/n*1e6}')
	printf '%s\t%s\t%s-P%s\t%s\t%s\n' "$ROUND" "$target" "$test" "$pipe" "$rps" "$cpu" >>"$RAW"
}

read -r -a T <<<"$TARGETS"
printf 'round\ttarget\ttest\trps\tcpu_s_per_M\n' >"$RAW"
for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do
	order=()
	for ((i = 0; i < ${#T[@]}; i++)); do order+=("${T[$(((i + ROUND) % ${#T[@]}))]}"); done
	echo "round $((ROUND + 1))/$ROUNDS: ${order[*]}"
	for t in "${order[@]}"; do
		bench "$t" set 1 "$N1"
		bench "$t" get 1 "$N1"
		bench "$t" set 16 "$N16"
		bench "$t" get 16 "$N16"
		bench "$t" mset 1 "$NMSET"
	done
done

# RSS per idle connection: hold CONNS connections open and compare VmRSS.
MEM=$OUT/mem-$STAMP.tsv
printf 'target\trss_before_kib\trss_after_kib\tkib_per_conn\n' >"$MEM"
for t in twem proxy3; do
	[[ -n ${PID_OF[$t]:-} ]] || continue
	pid=${PID_OF[$t]}
	before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	(ulimit -n "$(ulimit -Hn)" && exec python3 bench/hold_conns.py "${PORT_OF[$t]}" "$CONNS" "$RUN/held-$t") &
	holder=$!
	for _ in $(seq 600); do [[ -f $RUN/held-$t ]] && break; sleep 0.1; done
	sleep 1
	after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	kill "$holder" 2>/dev/null || true
	wait "$holder" 2>/dev/null || true
	awk -v t="$t" -v b="$before" -v a="$after" -v n="$CONNS" 'BEGIN {printf "%s\t%d\t%d\t%.2f\n", t, b, a, (a-b)/n}' >>"$MEM"
done

python3 bench/report.py "$RAW" "$MEM" | tee "$OUT/report-$STAMP.md"
