#!/usr/bin/env bash
# Soak run, by hand (not in CI): the proxy under a mixed load with values up to 1 MiB for minutes, one failover
# in the middle, its memory sampled every 10 s, every write checked.
#
#   bench/soak.sh [--minutes N] [--clients N] [--max-value BYTES] [--large-pct P] [--keys N]
#                 [--failover kill|manual|none] [--base-port PORT]
#
# Starts its own Redis Cluster of 3 masters + 3 replicas (deploy/cluster.sh, cluster-node-timeout 2000 ms, on
# 127.0.0.1:PORT..PORT+5 and bus ports +10000) and the proxy built from the working tree (127.0.0.1:PORT+10,
# metrics PORT+11), waits for /readyz, then runs bench/soak (see its doc): CLIENTS plain go-redis clients (one
# connection each, no retries) doing SET, GET, INCR, MGET and MSET over keys in several slots, and DEL; every
# client owns its keys, every reply is checked against what it last wrote and every key is read back at the
# end. At half time the master of slot 0 gets SIGKILL (pid from its pidfile, checked against the port) and, 10 s
# after its replica's promotion, is restarted with deploy/cluster.sh start and must rejoin as a replica.
#
# Options (or environment):
#   --minutes N        MINUTES    how long the load runs (10)
#   --clients N        CLIENTS    clients (50)
#   --max-value BYTES  MAX_VALUE  largest value (1048576)
#   --large-pct P      LARGE_PCT  percent of values sized uniformly in 0..MAX_VALUE; the rest are 0..64 B (50)
#   --keys N           KEYS       keys per client (32). Redis holds about CLIENTS*KEYS*LARGE_PCT% values of
#                                 MAX_VALUE/2 on average: 400 MiB per copy with the defaults
#   --failover MODE    FAILOVER   kill (above), manual (CLUSTER FAILOVER on the replica, like
#                                 redis-cli -p REPLICA cluster failover) or none (kill)
#   --base-port PORT   BASE_PORT  first port (7100)
# Environment: PROXY_BIN (a built proxy instead of go build), SOAK_DIR (the run dir, default .run/soak-STAMP in
# the repository; kept).
#
# Output: a line per sample (VmRSS from /proc/PID/status, process_resident_memory_bytes, heap, request rate,
# allocations per request), the failover's timeline, and a report: requests total and per second, errors by
# kind, lost writes (those on the failed-over shard apart: asynchronous replication may lose acknowledged
# writes when a master dies), RSS at start, middle and end with the slope of the last half, and allocations per
# request (go_memstats_mallocs_total delta / slotproxy_commands_total delta). The run dir keeps report.txt,
# soak.log (everything printed), samples.csv, proxy.log and the nodes' logs.
# The first ^C ends the load early and still reads back and reports; a second one aborts. Everything started is
# stopped on exit. Exit status: 0; 1 if the report found a data problem or the run could not start; 2 for an
# unknown option; 130 after a ^C.
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
while [[ $# -gt 0 ]]; do
	case $1 in
	--minutes) MINUTES=${2:?}; shift 2 ;;
	--clients) CLIENTS=${2:?}; shift 2 ;;
	--max-value) MAX_VALUE=${2:?}; shift 2 ;;
	--large-pct) LARGE_PCT=${2:?}; shift 2 ;;
	--keys) KEYS=${2:?}; shift 2 ;;
	--failover) FAILOVER=${2:?}; shift 2 ;;
	--base-port) BASE_PORT=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "unknown argument: $1" >&2; usage ;;
	esac
done
MINUTES=${MINUTES:-10} CLIENTS=${CLIENTS:-50} MAX_VALUE=${MAX_VALUE:-1048576} LARGE_PCT=${LARGE_PCT:-50}
KEYS=${KEYS:-32} FAILOVER=${FAILOVER:-kill} BASE_PORT=${BASE_PORT:-7100}
NODE_TIMEOUT=2000
for v in MINUTES CLIENTS MAX_VALUE LARGE_PCT KEYS BASE_PORT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
((MINUTES >= 1 && CLIENTS >= 1 && KEYS >= 4 && LARGE_PCT <= 100)) ||
	die "want --minutes >= 1, --clients >= 1, --keys >= 4, --large-pct <= 100"
[[ $FAILOVER =~ ^(kill|manual|none)$ ]] || die "--failover is kill, manual or none, not '$FAILOVER'"
((BASE_PORT >= 1024 && BASE_PORT + 11 + 10000 <= 65535)) || die "--base-port must leave PORT..PORT+11 and +10000 within 1024-65535"

PROXY_PORT=$((BASE_PORT + 10)) METRICS_PORT=$((BASE_PORT + 11))
SEEDS=$(seq -s, -f "127.0.0.1:%g" "$BASE_PORT" $((BASE_PORT + 5)))
for p in $(seq "$BASE_PORT" $((BASE_PORT + 5))) $(seq $((BASE_PORT + 10000)) $((BASE_PORT + 10005))) "$PROXY_PORT" "$METRICS_PORT"; do
	if port_taken "$p"; then
		who=$(who_listens "$p")
		die "port $p is in use${who:+ by $who}; pick a free range with --base-port PORT (uses PORT..PORT+11 and PORT+10000..PORT+10005)"
	fi
done
install_missing redis-server redis-tools
command -v curl >/dev/null || die "curl is needed (the proxy's /readyz)"
require_go

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN=${SOAK_DIR:-$ROOT/.run/soak-$STAMP}
[[ $RUN == /* ]] || RUN=$PWD/$RUN
mkdir -p "$RUN"
CLUSTER=(deploy/cluster.sh --base-port "$BASE_PORT" --masters 3 --replicas 1 --node-timeout "$NODE_TIMEOUT"
	--dir "$RUN/cluster" --timeout 120)

PROXY_PID= LOAD_PID= CLUSTER_UP=0 INTERRUPTED=0
cleanup() {
	local rc=$? f p left=()
	trap - EXIT INT TERM
	if [[ -n $LOAD_PID ]] && alive "$LOAD_PID"; then
		stop_pid "$LOAD_PID" 5 || true
	fi
	[[ -z $LOAD_PID ]] || wait "$LOAD_PID" 2>/dev/null || true
	if [[ -n $PROXY_PID ]]; then
		stop_pid "$PROXY_PID" 15 || true
		wait "$PROXY_PID" 2>/dev/null || true
	fi
	if ((CLUSTER_UP)); then
		for f in "$RUN"/cluster/*/redis.log; do
			[[ -f $f ]] && cp "$f" "$RUN/redis-$(basename "$(dirname "$f")").log"
		done
		"${CLUSTER[0]}" stop "${CLUSTER[@]:1}" >"$RUN/cluster-stop.log" 2>&1 || cat "$RUN/cluster-stop.log" >&2
	fi
	# The binaries (25 MB) stay only with a run that failed, to reproduce it.
	((rc != 0)) || rm -f "$RUN/soak" "$RUN/slotproxy"
	for p in $(seq "$BASE_PORT" $((BASE_PORT + 5))) "$PROXY_PORT" "$METRICS_PORT"; do
		port_busy "$p" && left+=("$p")
	done
	if ((${#left[@]} > 0)); then
		echo "warning: still listening after the cleanup: ports ${left[*]}" >&2
	else
		echo "cleanup done: nothing of this run listens on its ports; run dir: $RUN"
	fi
	exit "$rc"
}
trap cleanup EXIT
# The first ^C reaches the load (a background job ignores it) as SIGUSR1: it ends early and still reports.
on_int() {
	if ((INTERRUPTED == 0)) && [[ -n $LOAD_PID ]] && alive "$LOAD_PID"; then
		INTERRUPTED=1
		kill -USR1 "$LOAD_PID" 2>/dev/null || true
		echo "^C: ending the load early; the read-back and the report follow (^C again aborts)" >&2
	else
		exit 130
	fi
}
trap on_int INT
trap 'exit 143' TERM

CLUSTER_UP=1
"${CLUSTER[0]}" start "${CLUSTER[@]:1}"

if [[ -n ${PROXY_BIN:-} ]]; then
	PROXY=$PROXY_BIN
	[[ -x $PROXY ]] || die "PROXY_BIN=$PROXY is not an executable"
else
	# Into the run dir, not bin/: the binary stays with the run and no one else's bin/slotproxy changes.
	PROXY=$RUN/slotproxy
	echo "building the proxy: go build -o $PROXY ."
	go build -o "$PROXY" . || die "building the proxy failed (output above)"
fi
echo "building the load: go build -o $RUN/soak ./bench/soak"
go build -o "$RUN/soak" ./bench/soak || die "building bench/soak failed (output above)"

cat >"$RUN/proxy.yaml" <<EOF
max_clients: 0
log_level: info
EOF
# setsid: a ^C at the terminal must not stop the proxy (it would shut down cleanly on SIGINT); the trap does.
(exec setsid "$PROXY" -config "$RUN/proxy.yaml" -listen "127.0.0.1:$PROXY_PORT" -seeds "$SEEDS" \
	-metrics "127.0.0.1:$METRICS_PORT") >"$RUN/proxy.log" 2>&1 &
PROXY_PID=$!
ready=0
for ((i = 0; i < 300; i++)); do
	alive "$PROXY_PID" || { tail -20 "$RUN/proxy.log" >&2; die "the proxy exited (log: $RUN/proxy.log)"; }
	if curl -fsS --max-time 1 "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.1
done
((ready)) || die "the proxy is not ready (/readyz) after 30s (log: $RUN/proxy.log)"
pid_is "$PROXY_PID" "$(basename "$PROXY" | cut -c1-15)" || die "pid $PROXY_PID is not the proxy"
probe=$(redis-cli -p "$PROXY_PORT" set soak:probe 1 2>&1; redis-cli -p "$PROXY_PORT" get soak:probe 2>&1)
[[ $probe == $'OK\n1' ]] || die "the proxy does not serve SET/GET: $probe"
echo "proxy: 127.0.0.1:$PROXY_PORT (pid $PROXY_PID, metrics 127.0.0.1:$METRICS_PORT, log $RUN/proxy.log)"

dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
HEADER="proxy: $("$PROXY" -version 2>&1 | head -1), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)$( ((dirty == 0)) || echo " + uncommitted changes in $dirty files"), default config but max_clients 0; pid $PROXY_PID on 127.0.0.1:$PROXY_PORT
cluster: 3 masters + 3 replicas on 127.0.0.1:$BASE_PORT-$((BASE_PORT + 5)), cluster-node-timeout ${NODE_TIMEOUT}ms, $(redis-server --version | cut -d' ' -f1-3)
host: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), Linux $(uname -r); started $STAMP; run dir $RUN"

# In the background, so that a ^C runs on_int at once (the trap waits for a foreground command).
"$RUN/soak" -addr "127.0.0.1:$PROXY_PORT" -metrics "127.0.0.1:$METRICS_PORT" -pid "$PROXY_PID" -seeds "$SEEDS" \
	-cluster-dir "$RUN/cluster" -clients "$CLIENTS" -keys "$KEYS" -duration "${MINUTES}m" -max-value "$MAX_VALUE" \
	-large-pct "$LARGE_PCT" -failover "$FAILOVER" -restart-log "$RUN/restart.log" -out "$RUN/soak.log" \
	-report "$RUN/report.txt" -csv "$RUN/samples.csv" -header "$HEADER" -- "$ROOT/${CLUSTER[0]}" start "${CLUSTER[@]:1}" &
LOAD_PID=$!
rc=0
while :; do
	wait "$LOAD_PID" && rc=0 || rc=$?
	kill -0 "$LOAD_PID" 2>/dev/null || break # wait returns early when a ^C runs on_int
done
LOAD_PID=

alive "$PROXY_PID" || echo "PROBLEM: the proxy (pid $PROXY_PID) has exited; see $RUN/proxy.log" | tee -a "$RUN/report.txt"
{
	echo "proxy.log: $(grep -c 'level=ERROR' "$RUN/proxy.log" || true) ERROR and $(grep -c 'level=WARN' "$RUN/proxy.log" || true) WARN lines" \
		"($(grep -c 'panic' "$RUN/proxy.log" || true) mentioning panic)"
	grep -E 'level=(ERROR|WARN)' "$RUN/proxy.log" | sed -E 's/^time=[^ ]+ //' | sort | uniq -c | sort -rn | head -5 | sed 's/^/  /' || true
} | tee -a "$RUN/report.txt"
echo "report: $RUN/report.txt"
((rc != 0 || INTERRUPTED == 0)) || rc=130
exit "$rc"
