#!/usr/bin/env bash
# A local Redis Cluster like the classic tutorial: MASTERS masters with REPLICAS replicas each on consecutive
# ports from BASE_PORT (bus ports +10000), bound to 127.0.0.1, no persistence.
#
#   deploy/cluster.sh start|stop|status [options]
#
# Options (or environment):
#   --base-port N     BASE_PORT      first port (7000)
#   --masters N       MASTERS        masters, at least 3 (3)
#   --replicas N      REPLICAS       replicas per master, 0 allowed (1)
#   --node-timeout MS NODE_TIMEOUT   cluster-node-timeout in ms (5000)
#   --dir DIR         CLUSTER_DIR    data dir: pidfiles, logs, nodes.conf
#                                    (default $SLOTPROXY_RUN_DIR/cluster, or .run/cluster in the repository)
#   --timeout S       WAIT_TIMEOUT   seconds to wait for cluster_state:ok on every node (60)
#
# start   starts the nodes that are not running (daemonized, pidfile and log per node in DIR/PORT/), creates the
#         cluster with redis-cli --cluster create unless it exists, and waits until every node reports
#         cluster_state:ok, knows all nodes, and every replica's link to its master is up. Already running: says
#         so. Refuses to start when a port (or its bus port) is taken by anything else.
# stop    stops exactly the redis-server processes named by DIR's pidfiles, waits for them to exit, and removes DIR.
# status  one line per node; exit 0 if all run and report cluster_state:ok, 3 if none runs, 1 otherwise.
# stop and status read the settings start used from DIR/cluster.env, so they need only --dir (if not default).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
while [[ $# -gt 0 ]]; do
	case $1 in
	--base-port) BASE_PORT=${2:?}; shift 2 ;;
	--masters) MASTERS=${2:?}; shift 2 ;;
	--replicas) REPLICAS=${2:?}; shift 2 ;;
	--node-timeout) NODE_TIMEOUT=${2:?}; shift 2 ;;
	--dir) CLUSTER_DIR=${2:?}; shift 2 ;;
	--timeout) WAIT_TIMEOUT=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "unknown option: $1" >&2; usage ;;
	esac
done

DIR=${CLUSTER_DIR:-${SLOTPROXY_RUN_DIR:-$ROOT/.run}/cluster}
[[ $DIR == /* ]] || DIR=$PWD/$DIR
MARK=$DIR/cluster.env # the settings start used; also marks DIR as ours (stop removes only such a directory)

# stop/status: settings from the state file unless given.
if [[ $cmd != start && -f $MARK ]]; then
	# shellcheck disable=SC1090
	. <(grep -E '^(BASE_PORT|MASTERS|REPLICAS|NODE_TIMEOUT)=[0-9]+$' "$MARK" | sed 's/^/saved_/')
	BASE_PORT=${BASE_PORT:-${saved_BASE_PORT:-}} MASTERS=${MASTERS:-${saved_MASTERS:-}}
	REPLICAS=${REPLICAS:-${saved_REPLICAS:-}} NODE_TIMEOUT=${NODE_TIMEOUT:-${saved_NODE_TIMEOUT:-}}
fi
BASE_PORT=${BASE_PORT:-7000}
MASTERS=${MASTERS:-3}
REPLICAS=${REPLICAS:-1}
NODE_TIMEOUT=${NODE_TIMEOUT:-5000}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
for v in BASE_PORT MASTERS REPLICAS NODE_TIMEOUT WAIT_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
NODES=$((MASTERS * (1 + REPLICAS)))
LAST=$((BASE_PORT + NODES - 1))
((MASTERS >= 3)) || die "a Redis Cluster needs at least 3 masters (MASTERS=$MASTERS)"
((BASE_PORT >= 1024 && LAST + 10000 <= 65535)) ||
	die "ports $BASE_PORT-$LAST and their bus ports (+10000) must lie within 1024-65535"

ports() { seq "$BASE_PORT" "$LAST"; }
pidfile() { echo "$DIR/$1/redis.pid"; }

# PID of our node on PORT if it runs (pidfile names a live redis-server), else fails.
node_pid() {
	local f pid
	f=$(pidfile "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	pid_is "$pid" redis-server && alive "$pid" || return 1
	echo "$pid"
}

info_field() { # port "command words" field
	# shellcheck disable=SC2086 # $2 is split on purpose ("cluster info")
	redis-cli -p "$1" $2 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"
}

# Why the cluster is not ready yet, one reason per node, or nothing when it is.
not_ready() {
	local p state known role link
	for p in $(ports); do
		state=$(info_field "$p" "cluster info" cluster_state) || true
		known=$(info_field "$p" "cluster info" cluster_known_nodes) || true
		if [[ $state != ok ]]; then
			echo "127.0.0.1:$p cluster_state:${state:-no answer}"
		elif [[ $known != "$NODES" ]]; then
			echo "127.0.0.1:$p knows ${known:-?} of $NODES nodes"
		else
			role=$(info_field "$p" "info replication" role)
			if [[ $role == slave ]]; then
				link=$(info_field "$p" "info replication" master_link_status)
				[[ $link == up ]] || echo "127.0.0.1:$p replica link ${link:-?}"
			fi
		fi
	done
}

STARTED=() # ports of the nodes this run started: stopped again if start fails
fail_start() {
	local p pid
	echo "error: $*" >&2
	for p in "${STARTED[@]}"; do
		if pid=$(node_pid "$p"); then stop_pid "$pid" 5 || true; fi
	done
	[[ ${#STARTED[@]} -eq 0 ]] || echo "stopped the ${#STARTED[@]} node(s) this run started; logs: $DIR/PORT/redis.log" >&2
	exit 1
}

start() {
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
		die "redis-server and redis-cli are needed: apt-get install redis-server redis-tools (or deploy/install-deps.sh)"
	fi
	local p pid running=0 todo=() who
	if [[ -f $MARK ]]; then
		local saved
		saved=$(grep -E '^(BASE_PORT|MASTERS|REPLICAS)=' "$MARK" | paste -sd' ')
		if [[ $saved != "BASE_PORT=$BASE_PORT MASTERS=$MASTERS REPLICAS=$REPLICAS" ]]; then
			for p in $(ports); do node_pid "$p" >/dev/null && running=1; done
			# Also any node of the saved layout.
			local f
			for f in "$DIR"/*/redis.pid; do
				[[ -f $f ]] && pid_is "$(<"$f")" redis-server && running=1
			done
			((running == 0)) || die "$DIR holds a running cluster with other settings ($saved); stop it first"
			rm -f "$MARK"
		fi
	fi
	for p in $(ports); do
		if node_pid "$p" >/dev/null; then
			running=$((running + 1))
		else
			todo+=("$p")
		fi
	done
	if ((${#todo[@]} == 0)) && [[ -z $(not_ready) ]]; then
		echo "cluster already running: $MASTERS masters x $REPLICAS replica(s) on 127.0.0.1:$BASE_PORT-$LAST (data: $DIR)"
		return 0
	fi
	for p in "${todo[@]}"; do
		for b in "$p" $((p + 10000)); do
			if port_taken "$b"; then
				who=$(who_listens "$b")
				die "port $b is already in use${who:+ by $who}, not by a node of this cluster; free it or pick another --base-port"
			fi
		done
	done

	mkdir -p "$DIR"
	printf 'BASE_PORT=%s\nMASTERS=%s\nREPLICAS=%s\nNODE_TIMEOUT=%s\n' \
		"$BASE_PORT" "$MASTERS" "$REPLICAS" "$NODE_TIMEOUT" >"$MARK"
	for p in "${todo[@]}"; do
		mkdir -p "$DIR/$p"
		rm -f "$(pidfile "$p")"
		redis-server --port "$p" --bind 127.0.0.1 --daemonize yes --dir "$DIR/$p" \
			--pidfile "$(pidfile "$p")" --logfile "$DIR/$p/redis.log" \
			--cluster-enabled yes --cluster-config-file "$DIR/$p/nodes.conf" \
			--cluster-node-timeout "$NODE_TIMEOUT" --save "" --appendonly no ||
			fail_start "redis-server on port $p did not start (log: $DIR/$p/redis.log)"
		STARTED+=("$p")
	done
	for p in "${todo[@]}"; do
		if ! wait_pong 127.0.0.1 "$p" 10; then
			tail -5 "$DIR/$p/redis.log" >&2 2>/dev/null || true
			fail_start "the node on port $p does not answer PING after 10s (log: $DIR/$p/redis.log)"
		fi
	done
	((${#todo[@]} == 0)) || echo "started ${#todo[@]} node(s) on 127.0.0.1:$BASE_PORT-$LAST$( ((running == 0)) || echo " ($running already running)")"

	# Create the cluster unless the nodes already form one (a restart after a crash reuses nodes.conf).
	local assigned known fresh=0
	for p in $(ports); do
		assigned=$(info_field "$p" "cluster info" cluster_slots_assigned)
		known=$(info_field "$p" "cluster info" cluster_known_nodes)
		[[ $assigned == 0 && $known == 1 ]] && fresh=$((fresh + 1))
	done
	if ((fresh == NODES)); then
		local addrs=()
		for p in $(ports); do addrs+=("127.0.0.1:$p"); done
		echo "creating the cluster: redis-cli --cluster create ${addrs[*]} --cluster-replicas $REPLICAS --cluster-yes"
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes \
			>"$DIR/create.log" 2>&1 || {
			tail -20 "$DIR/create.log" >&2
			fail_start "redis-cli --cluster create failed (log: $DIR/create.log)"
		}
	elif ((fresh > 0)); then
		fail_start "$fresh of $NODES nodes are empty while the others already form a cluster; run '$0 stop' (it removes $DIR) and start again"
	fi

	local deadline=$((SECONDS + WAIT_TIMEOUT)) why
	while why=$(not_ready) && [[ -n $why ]]; do
		if ((SECONDS >= deadline)); then
			echo "$why" >&2
			fail_start "the cluster is not ready after ${WAIT_TIMEOUT}s (see above; logs in $DIR/PORT/redis.log)"
		fi
		sleep 0.2
	done
	echo "cluster ok: $MASTERS masters x $REPLICAS replica(s) on 127.0.0.1:$BASE_PORT-$LAST, cluster-node-timeout ${NODE_TIMEOUT}ms (data: $DIR)"
}

stop() {
	if [[ ! -d $DIR ]]; then
		echo "no cluster data in $DIR: nothing to stop"
		return 0
	fi
	local f pid port stopped=0 pids=() kill9=0
	# Every pidfile in DIR, whatever the settings: exactly the processes start launched.
	for f in "$DIR"/*/redis.pid; do
		[[ -f $f ]] || continue
		pid=$(<"$f")
		port=$(basename "$(dirname "$f")")
		if pid_is "$pid" redis-server && alive "$pid"; then
			kill "$pid" 2>/dev/null || true
			pids+=("$pid")
		else
			echo "127.0.0.1:$port: not running (stale pidfile)"
		fi
	done
	for pid in "${pids[@]}"; do
		stop_pid "$pid" 10 || kill9=$((kill9 + 1))
		stopped=$((stopped + 1))
	done
	if [[ -f $MARK ]]; then
		rm -rf "$DIR"
		echo "stopped $stopped node(s)$( ((kill9 == 0)) || echo " ($kill9 needed SIGKILL)"); removed $DIR"
	else
		echo "stopped $stopped node(s); $DIR was not created by this script (no cluster.env), so it is left in place"
	fi
}

status() {
	if [[ ! -d $DIR ]]; then
		echo "no cluster in $DIR"
		return 3
	fi
	local p pid up=0 ok=0 role state
	for p in $(ports); do
		if pid=$(node_pid "$p"); then
			up=$((up + 1))
			role=$(info_field "$p" "info replication" role)
			state=$(info_field "$p" "cluster info" cluster_state)
			[[ $state == ok ]] && ok=$((ok + 1))
			printf '127.0.0.1:%s pid %-7s %-7s cluster_state:%s\n' "$p" "$pid" "${role/slave/replica}" "${state:-?}"
		else
			printf '127.0.0.1:%s down\n' "$p"
		fi
	done
	((up > 0)) || return 3
	((ok == NODES)) || return 1
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
