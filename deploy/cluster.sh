#!/usr/bin/env bash
# Local Redis Cluster, like the classic tutorial: MASTERS masters with REPLICAS replicas each, on
# consecutive ports from BASE_PORT, created with redis-cli --cluster create.
#
#   deploy/cluster.sh start|stop|status
#
# Settings (environment): BASE_PORT (7000), MASTERS (3), REPLICAS (1), NODE_TIMEOUT (cluster-node-timeout in
# ms, 5000), RUN_DIR (.run/cluster-BASE_PORT under the repository).
set -euo pipefail

BASE_PORT=${BASE_PORT:-7000}
MASTERS=${MASTERS:-3}
REPLICAS=${REPLICAS:-1}
NODE_TIMEOUT=${NODE_TIMEOUT:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run/cluster-$BASE_PORT}
NODES=$((MASTERS * (1 + REPLICAS)))

ports() { seq "$BASE_PORT" $((BASE_PORT + NODES - 1)); }

running() { # port
	local pidfile=$RUN_DIR/$1/redis.pid
	[[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

port_busy() { # port
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
	command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server redis-tools)" >&2; exit 1; }
	local p started=0
	for p in $(ports); do
		if running "$p"; then continue; fi
		for b in "$p" $((p + 10000)); do
			if port_busy "$b"; then
				echo "port $b is already in use by another process; choose another BASE_PORT" >&2
				exit 1
			fi
		done
	done
	for p in $(ports); do
		running "$p" && continue
		mkdir -p "$RUN_DIR/$p"
		redis-server --port "$p" --bind 127.0.0.1 --dir "$RUN_DIR/$p" --daemonize yes \
			--pidfile "$RUN_DIR/$p/redis.pid" --logfile "$RUN_DIR/$p/redis.log" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT" \
			--save "" --appendonly no
		started=$((started + 1))
	done
	for p in $(ports); do
		for _ in $(seq 100); do
			redis-cli -p "$p" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
	if ! redis-cli -p "$BASE_PORT" cluster info | grep -q 'cluster_slots_assigned:16384'; then
		local addrs=()
		for p in $(ports); do addrs+=("127.0.0.1:$p"); done
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >"$RUN_DIR/create.log" 2>&1 ||
			{ cat "$RUN_DIR/create.log" >&2; exit 1; }
	fi
	for _ in $(seq 300); do
		local ok=1
		for p in $(ports); do
			redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
		done
		if [[ $ok == 1 ]]; then
			echo "cluster up: $NODES nodes on 127.0.0.1:$BASE_PORT-$((BASE_PORT + NODES - 1)) ($MASTERS masters, $REPLICAS replica(s) each; started $started)"
			return 0
		fi
		sleep 0.1
	done
	echo "cluster did not reach cluster_state:ok in 30s; logs in $RUN_DIR" >&2
	exit 1
}

stop() {
	local p pid
	for p in $(ports); do
		if running "$p"; then
			pid=$(cat "$RUN_DIR/$p/redis.pid")
			kill "$pid"
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$RUN_DIR"
	echo "cluster on $BASE_PORT stopped"
}

status() {
	local p
	for p in $(ports); do
		if running "$p"; then
			echo "127.0.0.1:$p $(redis-cli -p "$p" info replication | tr -d '\r' | grep '^role:')"
		else
			echo "127.0.0.1:$p down"
		fi
	done
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
