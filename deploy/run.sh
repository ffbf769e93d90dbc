#!/usr/bin/env bash
# Sets up and runs the local demo: installs what is missing, builds the proxy, starts a 3-master/3-replica
# Redis Cluster on 127.0.0.1:7000-7005 and the proxy on 127.0.0.1:7777 (metrics on 127.0.0.1:9777).
#
#   deploy/run.sh         start everything
#   deploy/run.sh stop    stop the proxy and the cluster
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN_DIR=$ROOT/.run
LISTEN=${LISTEN:-127.0.0.1:7777}
export BASE_PORT=7000 MASTERS=3 REPLICAS=1
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then export PATH=$PATH:/usr/local/go/bin; fi

stop() {
	if [[ -f $RUN_DIR/proxy.pid ]] && kill -0 "$(cat "$RUN_DIR/proxy.pid")" 2>/dev/null; then
		pid=$(cat "$RUN_DIR/proxy.pid")
		kill "$pid"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		echo "proxy stopped"
	fi
	rm -f "$RUN_DIR/proxy.pid"
	deploy/cluster.sh stop
}

if [[ ${1:-} == stop ]]; then
	stop
	exit 0
fi

deploy/install-deps.sh redis-server redis-tools
command -v go >/dev/null || { echo "Go is needed to build the proxy (https://go.dev/dl/)" >&2; exit 1; }
go build -o bin/slotproxy . || { echo "build failed" >&2; exit 1; }
deploy/cluster.sh start
mkdir -p "$RUN_DIR"
if [[ -f $RUN_DIR/proxy.pid ]] && kill -0 "$(cat "$RUN_DIR/proxy.pid")" 2>/dev/null; then
	echo "proxy already running (pid $(cat "$RUN_DIR/proxy.pid"))"
else
	nohup bin/slotproxy -config proxy.yaml -listen "$LISTEN" >"$RUN_DIR/proxy.log" 2>&1 &
	echo $! >"$RUN_DIR/proxy.pid"
fi
host=${LISTEN%:*}
port=${LISTEN##*:}
for _ in $(seq 100); do
	[[ $(redis-cli -h "$host" -p "$port" ping 2>/dev/null) == PONG ]] && break
	sleep 0.1
done
if [[ $(redis-cli -h "$host" -p "$port" ping 2>/dev/null) != PONG ]]; then
	echo "the proxy does not answer; log: $RUN_DIR/proxy.log" >&2
	tail -20 "$RUN_DIR/proxy.log" >&2
	exit 1
fi
cat <<MSG
proxy up on $LISTEN in front of the cluster on 127.0.0.1:7000-7005 (log: .run/proxy.log)
  connect:  redis-cli -h $host -p $port
  metrics:  curl http://127.0.0.1:9777/metrics
  stop:     deploy/run.sh stop
MSG
