#!/usr/bin/env bash
# The demo: installs what is missing (redis-server, redis-tools), builds the proxy, starts a Redis Cluster of
# 3 masters and 3 replicas on 127.0.0.1:7000-7005 and the proxy on 127.0.0.1:7777 (metrics on 127.0.0.1:9777).
# Works from any directory.
#
#   deploy/run.sh          start (what already runs is left as is)
#   deploy/run.sh stop     stop the proxy and the cluster
#   deploy/run.sh status   show what runs
#
# Run dir (pidfile, proxy.log, cluster data): $SLOTPROXY_RUN_DIR, default .run in the repository.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

RUN_DIR=${SLOTPROXY_RUN_DIR:-$ROOT/.run}
[[ $RUN_DIR == /* ]] || RUN_DIR=$ROOT/$RUN_DIR
export SLOTPROXY_RUN_DIR=$RUN_DIR
HOST=127.0.0.1 PORT=7777 METRICS=127.0.0.1:9777
SEEDS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005
PIDFILE=$RUN_DIR/proxy.pid
LOG=$RUN_DIR/proxy.log
CLUSTER=(deploy/cluster.sh --base-port 7000 --masters 3 --replicas 1 --dir "$RUN_DIR/cluster")

proxy_pid() { # PID of the proxy this script started, if it runs
	local pid
	[[ -f $PIDFILE ]] || return 1
	pid=$(<"$PIDFILE")
	pid_is "$pid" slotproxy && alive "$pid" || return 1
	echo "$pid"
}

stop() {
	local pid
	if pid=$(proxy_pid); then
		stop_pid "$pid" 15 || true
		echo "proxy stopped (pid $pid)"
	else
		echo "proxy not running"
	fi
	rm -f "$PIDFILE"
	"${CLUSTER[0]}" stop "${CLUSTER[@]:1}"
}

status() {
	local pid rc=0
	if pid=$(proxy_pid); then
		echo "proxy: pid $pid on $HOST:$PORT, $(redis-cli -h "$HOST" -p "$PORT" ping 2>&1 | head -1)"
	else
		echo "proxy: not running"
		rc=1
	fi
	"${CLUSTER[0]}" status "${CLUSTER[@]:1}" || rc=1
	return $rc
}

start() {
	install_missing redis-server redis-tools
	require_go
	echo "building: go build -o bin/slotproxy ."
	if ! go build -o bin/slotproxy .; then
		die "building the proxy failed (go build -o bin/slotproxy . in $ROOT; compiler output above); nothing was started"
	fi

	local pid running=0 p who
	if pid=$(proxy_pid); then
		running=1
	else
		for p in "$PORT" "${METRICS##*:}"; do
			if port_taken "$p"; then
				who=$(who_listens "$p")
				die "port $p is already in use${who:+ by $who}; the proxy needs $HOST:$PORT and $METRICS"
			fi
		done
	fi
	"${CLUSTER[0]}" start "${CLUSTER[@]:1}"

	mkdir -p "$RUN_DIR"
	if ((running)); then
		echo "proxy already running (pid $pid); 'deploy/run.sh stop' first to restart it with a new build"
	else
		# setsid: the proxy leaves this shell's session, so closing the terminal or ^C does not reach it.
		setsid bin/slotproxy -config proxy.yaml -listen "$HOST:$PORT" -seeds "$SEEDS" -metrics "$METRICS" \
			>>"$LOG" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$PIDFILE"
		if ! wait_pong "$HOST" "$PORT" 30 "$pid"; then
			echo "--- last lines of $LOG:" >&2
			tail -20 "$LOG" >&2
			if alive "$pid"; then stop_pid "$pid" 5 || true; fi
			rm -f "$PIDFILE"
			die "the proxy did not answer PING on $HOST:$PORT within 30s (see its log above); the cluster is still running, 'deploy/run.sh stop' stops it"
		fi
	fi
	cat <<MSG

slotproxy is up on $HOST:$PORT in front of the Redis Cluster on 127.0.0.1:7000-7005.
  connect:  redis-cli -p $PORT
  metrics:  curl http://$METRICS/metrics
  log:      $LOG
  stop:     deploy/run.sh stop   (stops the proxy and the cluster)
MSG
}

case ${1:-start} in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
