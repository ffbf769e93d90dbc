#!/usr/bin/env bash
# Side-by-side throughput of slotproxy, twemproxy and Redis itself in ONE interleaved session on this machine.
#
#   bench/run.sh [--quick] [--rounds N] [--n1 N] [--n16 N] [--targets "direct twem proxy3 proxy6"]
#                [--base PORT] [--conns N] [--no-memory] [--data BYTES] [--clients N] [--keyspace N]
#                [--tests "set 1 N,get 1 N,..."]
#
# Targets:
#   direct  one standalone redis-server
#   twem    nutcracker (twemproxy) over 3 standalone redis-servers (bench/nutcracker.yml; it cannot front a cluster)
#   proxy3  slotproxy over a 3-master Redis Cluster without replicas (deploy/cluster.sh, own ports and dir)
#   proxy6  slotproxy over a 3-master/3-replica Redis Cluster
#   predixy predixy (PREDIXY_BIN) over the same 3+3 cluster as proxy6 (started for it alone if proxy6 is not
#           a target), one worker thread, reads from masters only; a default target only when PREDIXY_BIN is
#           set. Build it from its own source (joyieldInc/predixy, commit ca1630a): make -j2 INCFLAGS="-include
#           ctime" (gcc 12); nothing here downloads it.
# Tests, every one with redis-benchmark -q -c 50 -r 100000 -d 64 -n N --csv: SET and GET at -P 1 (N = N1),
# SET and GET at -P 16 (N = N16), MSET (-t mset, 10 keys) at -P 1 (N = NMSET). --data, --clients and --keyspace
# set -d, -c and -r; --tests replaces the list with "test pipeline requests" items separated by commas (large
# values: --data 100000 --clients 20 --tests "set 1 20000,get 1 20000"). Each round runs every test on
# every target, the target order rotated per round (A B C D, B C D A, ...). CPU: utime+stime of the proxy and
# nutcracker processes from /proc/PID/stat before and after each run. Memory: VmRSS of each server process before
# and while CONNS idle client connections are held open (bench/hold_conns.py), measured on fresh processes
# before the rounds: connections that sent one PING, then ones that pipelined 16 GETs of a 1 KiB value.
# Output: a table on stdout and, in RESULTS_DIR (bench/results), STAMP.md plus the raw STAMP-raw.csv and
# STAMP-mem.csv. Everything started is stopped on exit.
#
# Environment (flags win): ROUNDS (5), N1 (200000), N16 (1000000), NMSET (= N1), TARGETS (all four), BASE
# (17000: ports BASE..BASE+29 and cluster bus ports +10000), CONNS (10000), MEMORY (1; 0 skips the memory probe),
# EVENT_LOOPS (the proxy's event_loops; unset = its default), RESTART (1: every round after the first starts the
# proxies and nutcracker afresh, in the round's order; 0: once), PROXY_BIN (a built binary instead of go build),
# RESULTS_DIR, KEEP_RUN (1 keeps the temporary run dir with the servers' logs; it is kept on failure anyway).
# --quick: ROUNDS=1 N1=20000 N16=100000 unless set explicitly; a smoke test, not a measurement.
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
quick=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) quick=1; shift ;;
	--rounds) ROUNDS=${2:?}; shift 2 ;;
	--n1) N1=${2:?}; shift 2 ;;
	--n16) N16=${2:?}; shift 2 ;;
	--targets) TARGETS=${2:?}; shift 2 ;;
	--base) BASE=${2:?}; shift 2 ;;
	--conns) CONNS=${2:?}; shift 2 ;;
	--no-memory) MEMORY=0; shift ;;
	--data) DATA=${2:?}; shift 2 ;;
	--clients) CLIENTS=${2:?}; shift 2 ;;
	--keyspace) KEYSPACE=${2:?}; shift 2 ;;
	--tests) TESTS_SPEC=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "unknown argument: $1" >&2; usage ;;
	esac
done
if ((quick)); then
	ROUNDS=${ROUNDS:-1} N1=${N1:-20000} N16=${N16:-100000}
fi
ROUNDS=${ROUNDS:-5} N1=${N1:-200000} N16=${N16:-1000000} RESTART=${RESTART:-1}
NMSET=${NMSET:-$N1}
TARGETS=${TARGETS:-direct twem proxy3 proxy6${PREDIXY_BIN:+ predixy}}
BASE=${BASE:-17000} CONNS=${CONNS:-10000} MEMORY=${MEMORY:-1}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
DATA=${DATA:-64} CLIENTS=${CLIENTS:-50} KEYSPACE=${KEYSPACE:-100000}
for v in ROUNDS N1 N16 NMSET BASE CONNS MEMORY DATA CLIENTS KEYSPACE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((BASE >= 1024 && BASE + 30 + 10000 <= 65535)) || die "BASE must leave BASE..BASE+30 and +10000 within 1024-65535"
read -r -a T <<<"$TARGETS"
((${#T[@]} > 0)) || die "no targets"
declare -A WANT=()
for t in "${T[@]}"; do
	case $t in
	direct | twem | proxy3 | proxy6) WANT[$t]=1 ;;
	predixy)
		[[ -x ${PREDIXY_BIN:-} ]] || die "the predixy target needs PREDIXY_BIN, a built predixy binary"
		WANT[$t]=1
		;;
	*) die "unknown target '$t' (direct, twem, proxy3, proxy6, predixy)" ;;
	esac
done
[[ ${#WANT[@]} == "${#T[@]}" ]] || die "a target is listed twice: $TARGETS"

# Ports (BASE=17000): cluster3 17000-17002, cluster6 17010-17015 (bus ports +10000), direct 17020,
# twem backends 17021-17023, nutcracker 17024 (stats 17025), proxy3 17026 (metrics 17027),
# proxy6 17028 (metrics 17029), predixy 17030.
C3=$BASE C6=$((BASE + 10)) DIRECT=$((BASE + 20))
S1=$((BASE + 21)) S2=$((BASE + 22)) S3=$((BASE + 23)) TWEM=$((BASE + 24)) TWEM_STATS=$((BASE + 25))
PROXY3=$((BASE + 26)) PROXY3_METRICS=$((BASE + 27)) PROXY6=$((BASE + 28)) PROXY6_METRICS=$((BASE + 29))
PREDIXY=$((BASE + 30))
need=()
need_cluster() { # base nodes: the nodes' ports and their bus ports
	local i
	for ((i = $1; i < $1 + $2; i++)); do need+=("$i" $((i + 10000))); done
}
[[ -z ${WANT[direct]:-} ]] || need+=("$DIRECT")
[[ -z ${WANT[twem]:-} ]] || need+=("$S1" "$S2" "$S3" "$TWEM" "$TWEM_STATS")
[[ -z ${WANT[proxy3]:-} ]] || { need+=("$PROXY3" "$PROXY3_METRICS") && need_cluster "$C3" 3; }
[[ -z ${WANT[proxy6]:-} ]] || { need+=("$PROXY6" "$PROXY6_METRICS") && need_cluster "$C6" 6; }
[[ -z ${WANT[predixy]:-} ]] || { need+=("$PREDIXY") && [[ -n ${WANT[proxy6]:-} ]] || need_cluster "$C6" 6; }
for p in "${need[@]}"; do
	if port_taken "$p"; then
		who=$(who_listens "$p")
		die "port $p is in use${who:+ by $who}; pick a free range with --base PORT (uses PORT..PORT+29 and +10000)"
	fi
done

pkgs=(redis-server redis-tools)
[[ -z ${WANT[twem]:-} ]] || pkgs+=(nutcracker)
install_missing "${pkgs[@]}"
command -v python3 >/dev/null || die "python3 is needed (the report and the memory probe)"

RUN=$(mktemp -d "${TMPDIR:-/tmp}/slotproxy-bench.XXXXXX")
PIDS=()         # processes started here (stopped in reverse order)
CLUSTER_DIRS=() # clusters started with deploy/cluster.sh
cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}" 10 || true
		wait "${PIDS[i]}" 2>/dev/null || true
	done
	for d in "${CLUSTER_DIRS[@]}"; do deploy/cluster.sh stop --dir "$d" >/dev/null || true; done
	if ((rc != 0 && rc != 130 && rc != 143)) || [[ ${KEEP_RUN:-0} == 1 ]]; then
		echo "run dir kept (logs): $RUN" >&2
	else
		rm -rf "$RUN"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Servers run with the open-files limit raised to hold CONNS client connections, each in a session of its own
# (setsid): a ^C at the terminal reaches this script and redis-benchmark only, and the trap stops the servers.
NOFILE=$((CONNS + 1024))
raise_nofile() { ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }

declare -A PID_OF=() PORT_OF=() # server process measured for CPU and memory; port clients use
declare -A SERVERS_OF=()          # the redis-server processes behind a target (their CPU is counted too)
standalone() { # port
	mkdir -p "$RUN/redis-$1"
	(
		raise_nofile
		exec setsid redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
			--maxclients $((CONNS + 100)) --dir "$RUN/redis-$1" --logfile "$RUN/redis-$1/redis.log"
	) &
	PIDS+=($!)
	LAST_PID=$!
}
must_pong() { # port pid what
	wait_pong 127.0.0.1 "$1" 30 "$2" && return 0
	tail -20 "$4" >&2 2>/dev/null || true
	die "$3 on port $1 does not answer PING (log: $4)"
}
# SET/GET/MSET through the target must work before it is measured (a proxy also needs its slot map).
must_serve() { # port what
	local i
	for ((i = 0; i < 150; i++)); do
		if [[ $(redis-cli -p "$1" set bench:probe 1 2>&1) == OK && $(redis-cli -p "$1" get bench:probe 2>&1) == 1 &&
			$(redis-cli -p "$1" mset bench:a 1 bench:b 2 bench:c 3 2>&1) == OK ]]; then
			return 0
		fi
		sleep 0.2
	done
	die "$2 on port $1 does not serve SET/GET/MSET: $(redis-cli -p "$1" mset bench:a 1 bench:b 2 bench:c 3 2>&1)"
}

PROXY=
if [[ -n ${WANT[proxy3]:-}${WANT[proxy6]:-} ]]; then
	if [[ -n ${PROXY_BIN:-} ]]; then
		PROXY=$PROXY_BIN
		[[ -x $PROXY ]] || die "PROXY_BIN=$PROXY is not an executable"
	else
		require_go
		PROXY=$RUN/slotproxy
		echo "building the proxy: go build -o $PROXY ."
		go build -o "$PROXY" . || die "building the proxy failed (output above); TARGETS=\"direct twem\" runs without it"
	fi
	PROXY_VERSION=$("$PROXY" -version 2>&1 | head -1)
	{
		echo "max_clients: 0"
		echo "log_level: warn"
		[[ -z ${EVENT_LOOPS:-} ]] || echo "event_loops: $EVENT_LOOPS"
	} >"$RUN/proxy.yaml"
fi
start_proxy() { # target listen metrics cluster-base nodes
	local seeds="" i
	for ((i = 0; i < $5; i++)); do seeds+="${seeds:+,}127.0.0.1:$(($4 + i))"; done
	(
		raise_nofile
		exec setsid "$PROXY" -config "$RUN/proxy.yaml" -listen "127.0.0.1:$2" -seeds "$seeds" -metrics "127.0.0.1:$3"
	) >>"$RUN/$1.log" 2>&1 &
	PIDS+=($!)
	PID_OF[$1]=$!
	PORT_OF[$1]=$2
	must_pong "$2" "$!" "the proxy ($1)" "$RUN/$1.log"
	pid_is "${PID_OF[$1]}" "$(basename "$PROXY" | cut -c1-15)" || die "pid ${PID_OF[$1]} is not the proxy"
	must_serve "$2" "the proxy ($1)"
}

# start_front TARGET: the process the benchmark talks to, over servers already running. Every round after the
# first starts it afresh (RESTART=1, the default): where the scheduler keeps a process's threads beside the
# servers and the client is luck that lasts the process's life (one binary started twice measured 1.09x itself).
start_front() {
	case $1 in
	twem)
		(
			raise_nofile
			exec setsid nutcracker -c "$RUN/nutcracker.yml" -o "$RUN/nutcracker.log" -s "$TWEM_STATS" -a 127.0.0.1
		) &
		PIDS+=($!)
		PID_OF[twem]=$! PORT_OF[twem]=$TWEM
		must_pong "$TWEM" "$!" "nutcracker" "$RUN/nutcracker.log"
		pid_is "${PID_OF[twem]}" nutcracker || die "pid ${PID_OF[twem]} is not nutcracker"
		must_serve "$TWEM" "nutcracker"
		;;
	proxy3) start_proxy proxy3 "$PROXY3" "$PROXY3_METRICS" "$C3" 3 ;;
	proxy6) start_proxy proxy6 "$PROXY6" "$PROXY6_METRICS" "$C6" 6 ;;
	predixy)
		(
			raise_nofile
			exec setsid "$PREDIXY_BIN" "$RUN/predixy.conf"
		) >>"$RUN/predixy.log" 2>&1 &
		PIDS+=($!)
		PID_OF[predixy]=$! PORT_OF[predixy]=$PREDIXY
		must_pong "$PREDIXY" "$!" "predixy" "$RUN/predixy.log"
		must_serve "$PREDIXY" "predixy"
		;;
	esac
}
restart_front() { # target
	local old=${PID_OF[$1]} p keep=()
	stop_pid "$old" 10 || true
	wait "$old" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [[ $p == "$old" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	start_front "$1" >/dev/null
}

cluster_pids() { # dir -> the pids of its nodes (deploy/cluster.sh's pidfiles)
	local f pids=""
	for f in "$1"/*/redis.pid; do pids+="${pids:+ }$(<"$f")"; done
	echo "$pids"
}

CLUSTER6=0
start_cluster6() { # once, for proxy6 and predixy
	((CLUSTER6)) && return 0
	CLUSTER6=1
	CLUSTER_DIRS+=("$RUN/cluster6")
	deploy/cluster.sh start --base-port "$C6" --masters 3 --replicas 1 --dir "$RUN/cluster6"
}

for t in "${T[@]}"; do
	case $t in
	direct)
		standalone "$DIRECT"
		must_pong "$DIRECT" "$LAST_PID" "redis-server (direct)" "$RUN/redis-$DIRECT/redis.log"
		PID_OF[direct]=$LAST_PID PORT_OF[direct]=$DIRECT SERVERS_OF[direct]=$LAST_PID
		must_serve "$DIRECT" "redis-server (direct)"
		;;
	twem)
		for p in "$S1" "$S2" "$S3"; do
			standalone "$p"
			must_pong "$p" "$LAST_PID" "redis-server (twem backend)" "$RUN/redis-$p/redis.log"
			SERVERS_OF[twem]+="${SERVERS_OF[twem]:+ }$LAST_PID"
		done
		sed -e "s/@LISTEN@/127.0.0.1:$TWEM/" -e "s/@SERVER1@/127.0.0.1:$S1/" -e "s/@SERVER2@/127.0.0.1:$S2/" \
			-e "s/@SERVER3@/127.0.0.1:$S3/" bench/nutcracker.yml >"$RUN/nutcracker.yml"
		nutcracker -t -c "$RUN/nutcracker.yml" >"$RUN/nutcracker-test.log" 2>&1 ||
			{ cat "$RUN/nutcracker-test.log" >&2; die "nutcracker rejects $RUN/nutcracker.yml"; }
		start_front twem
		;;
	proxy3)
		CLUSTER_DIRS+=("$RUN/cluster3")
		deploy/cluster.sh start --base-port "$C3" --masters 3 --replicas 0 --dir "$RUN/cluster3"
		SERVERS_OF[proxy3]=$(cluster_pids "$RUN/cluster3")
		start_front proxy3
		;;
	proxy6)
		start_cluster6
		SERVERS_OF[proxy6]=$(cluster_pids "$RUN/cluster6")
		start_front proxy6
		;;
	predixy)
		start_cluster6
		SERVERS_OF[predixy]=$(cluster_pids "$RUN/cluster6")
		{
			echo "Name slotproxy-bench"
			echo "Bind 127.0.0.1:$PREDIXY"
			echo "WorkerThreads 1"
			echo "ClientTimeout 300"
			echo "LogInfoSample 0"
			echo "Authority {"
			echo "    Auth {"
			echo "        Mode admin"
			echo "    }"
			echo "}"
			echo "ClusterServerPool {"
			echo "    MasterReadPriority 100"
			echo "    StaticSlaveReadPriority 0"
			echo "    DynamicSlaveReadPriority 0"
			echo "    RefreshInterval 1"
			echo "    ServerTimeout 1"
			echo "    ServerFailureLimit 10"
			echo "    ServerRetryTimeout 1"
			echo "    KeepAlive 120"
			echo "    Servers {"
			for ((i = 0; i < 6; i++)); do echo "        + 127.0.0.1:$((C6 + i))"; done
			echo "    }"
			echo "}"
		} >"$RUN/predixy.conf"
		start_front predixy
		;;
	esac
	echo "$t: 127.0.0.1:${PORT_OF[$t]} (pid ${PID_OF[$t]})"
done

mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$RESULTS_DIR/$STAMP-raw.csv
MEM=$RESULTS_DIR/$STAMP-mem.csv
REPORT=$RESULTS_DIR/$STAMP.md
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# Memory: RSS per idle client connection, on fresh processes.
# Two probes: each connection sends one PING, or pipelines 16 GETs of a 1 KiB value, and then idles.
echo "target,probe,conns,rss_before_kib,rss_after_kib,kib_per_conn" >"$MEM"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
MEMKEY=bench:mem:1k
declare -A FRESH
if ((MEMORY)) && ((CONNS > 0)); then
	for probe in ping get16; do for t in "${T[@]}"; do
		pid=${PID_OF[$t]}
		ready=$RUN/held-$t-$probe
		mode=()
		if [[ $probe == get16 ]]; then
			mode=(get "$MEMKEY" 1024)
			[[ $(redis-cli -p "${PORT_OF[$t]}" set "$MEMKEY" "$(printf 'v%.0s' {1..1024})") == OK ]] ||
				die "$t: SET $MEMKEY failed"
			sleep 2 # the SET's connection closed
		fi
		# The second probe counts from the fresh process too: what the first one left allocated stays in.
		[[ $probe == ping ]] && FRESH[$t]=$(rss "$pid")
		before=${FRESH[$t]}
		(
			raise_nofile
			exec setsid python3 bench/hold_conns.py 127.0.0.1 "${PORT_OF[$t]}" "$CONNS" "$ready" "${mode[@]}"
		) &
		holder=$!
		PIDS+=("$holder")
		for ((i = 0; i < 1500; i++)); do
			[[ -f $ready ]] && break
			alive "$holder" || break
			sleep 0.1
		done
		[[ -f $ready ]] || die "the connection holder for $t did not finish"
		sleep 2 # let the server settle
		after=$(rss "$pid")
		read -r held failed <"$ready"
		stop_pid "$holder" 10 || true
		wait "$holder" 2>/dev/null || true
		unset 'PIDS[${#PIDS[@]}-1]'
		((failed == 0)) || echo "warning: $t: $failed of $CONNS connections failed" >&2
		if ((held > 0)); then
			kib=$(awk -v a="$after" -v b="$before" -v n="$held" 'BEGIN {printf "%.2f", (a - b) / n}')
			echo "$t,$probe,$held,$before,$after,$kib" >>"$MEM"
			echo "memory $t ($probe): VmRSS $before KiB -> $after KiB with $held idle connections: $kib KiB each"
		fi
		sleep 2 # let the server close them
	done; done
fi

# Throughput rounds.
TICK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat)
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) } # fields from 3 on: the command name may hold spaces
	awk '{print $12 + $13}' <<<"$stat"
}
servers_ticks() { # target -> CPU ticks of the redis-servers behind it, summed
	local p sum=0
	for p in ${SERVERS_OF[$1]}; do sum=$((sum + $(cpu_ticks "$p"))); done
	echo "$sum"
}
# redis-benchmark's own CPU: the children's user+system seconds of this shell from the builtin times, written
# right before and after it (run in this shell: a subshell's children start from 0), per million requests.
client_cpu() { # times-before times-after n
	awk -v n="$3" 'FNR == 2 { for (i = 1; i <= 2; i++) { gsub(",", ".", $i); split($i, a, "m"); s[FILENAME] += a[1] * 60 + a[2] } }
		END { printf "%.3f", (s[ARGV[2]] - s[ARGV[1]]) / n * 1e6 }' "$1" "$2"
}
# Every server measured must still run (a target that died would leave redis-benchmark retrying forever).
check_targets() {
	local t
	for t in "${T[@]}"; do
		alive "${PID_OF[$t]}" || die "$t (pid ${PID_OF[$t]}) has exited; logs in $RUN"
	done
}
TESTS=("set 1 $N1" "get 1 $N1" "set 16 $N16" "get 16 $N16" "mset 1 $NMSET")
if [[ -n ${TESTS_SPEC:-} ]]; then
	IFS=, read -r -a TESTS <<<"$TESTS_SPEC"
	for spec in "${TESTS[@]}"; do
		[[ $spec =~ ^\ *[a-z]+\ +[0-9]+\ +[0-9]+\ *$ ]] || die "--tests: '$spec' is not 'test pipeline requests'"
	done
fi
echo "round,target,test,requests,rps,p50_ms,p99_ms,cpu_s_per_M,servers_cpu_s_per_M,client_cpu_s_per_M" >"$RAW"
bench() { # round target test pipeline n
	local round=$1 t=$2 test=$3 pipe=$4 n=$5 pid port t0 t1 s0 s1 line rps p50 p99 cpu="" scpu ccpu
	pid=${PID_OF[$t]} port=${PORT_OF[$t]}
	check_targets
	t0=$(cpu_ticks "$pid") s0=$(servers_ticks "$t")
	times >"$RUN/times.0"
	if ! redis-benchmark -h 127.0.0.1 -p "$port" -q -c "$CLIENTS" -r "$KEYSPACE" -d "$DATA" -n "$n" -P "$pipe" -t "$test" --csv \
		>"$RUN/bench.out" 2>"$RUN/bench.err"; then
		echo "warning: redis-benchmark failed on $t ($test -P $pipe): $(tail -2 "$RUN/bench.err")" >&2
	fi
	times >"$RUN/times.1"
	check_targets
	t1=$(cpu_ticks "$pid") s1=$(servers_ticks "$t")
	line=$(grep -m1 -E '^"[A-Z]' "$RUN/bench.out" | grep -v '^"test"' || true)
	# "SET","48123.45","0.523","0.080","0.495","0.799","1.103","3.511": test, rps, avg, min, p50, p95, p99, max
	IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${line//\"/}"
	[[ -n ${rps:-} ]] || echo "warning: no result from redis-benchmark on $t ($test -P $pipe): $(head -c 300 "$RUN/bench.out" "$RUN/bench.err")" >&2
	[[ $t == direct ]] || cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$TICK" -v n="$n" 'BEGIN {printf "%.3f", (b - a) / hz / n * 1e6}')
	scpu=$(awk -v a="$s0" -v b="$s1" -v hz="$TICK" -v n="$n" 'BEGIN {printf "%.3f", (b - a) / hz / n * 1e6}')
	ccpu=$(client_cpu "$RUN/times.0" "$RUN/times.1" "$n")
	echo "$round,$t,$test-P$pipe,$n,${rps:-},${p50:-},${p99:-},$cpu,$scpu,$ccpu" >>"$RAW"
	printf '  %-8s %-7s %12s req/s  p50 %6s ms  p99 %7s ms  CPU s/M:%s servers %s, client %s\n' "$test-P$pipe" "$t" \
		"${rps:-FAILED}" "${p50:-?}" "${p99:-?}" "${cpu:+ $cpu,}" "$scpu" "$ccpu"
}
for ((r = 1; r <= ROUNDS; r++)); do
	order=()
	for ((i = 0; i < ${#T[@]}; i++)); do order+=("${T[(i + r - 1) % ${#T[@]}]}"); done
	echo "round $r/$ROUNDS: ${order[*]}"
	if ((RESTART)) && ((r > 1)); then
		for t in "${order[@]}"; do [[ $t == direct ]] || restart_front "$t"; done
		sleep 1
	fi
	for spec in "${TESTS[@]}"; do
		read -r test pipe n <<<"$spec"
		for t in "${order[@]}"; do bench "$r" "$t" "$test" "$pipe" "$n"; done
	done
done

{
	echo "# bench/run.sh $STAMP"
	echo
	echo "- targets: $TARGETS; rounds $ROUNDS; tests (test pipeline n): $(IFS=,; echo "${TESTS[*]}"); idle connections $CONNS"
	echo "- redis-benchmark -q -c $CLIENTS -r $KEYSPACE -d $DATA -n N -P 1|16 --csv"
	echo "- host: $(host_line);" \
		"load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $(redis-server --version | cut -d' ' -f1-3)$([[ -z ${WANT[twem]:-} ]] || echo ", $(nutcracker --version 2>&1 | head -1)")$([[ -z $PROXY ]] || echo ", $PROXY_VERSION (commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), event_loops ${EVENT_LOOPS:-default})")"
	echo "- twem: nutcracker over 3 standalone redis-servers (it cannot front a Redis Cluster); proxy3: slotproxy over a" \
		"3-master cluster without replicas; proxy6: over 3 masters + 3 replicas; direct: one redis-server"
	echo
	python3 bench/report.py "$RAW" "$MEM"
} >"$REPORT"
echo
cat "$REPORT"
echo
echo "results: $REPORT (raw: $RAW, $MEM)"
