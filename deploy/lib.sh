# shellcheck shell=bash
# Helpers shared by deploy/*.sh and bench/run.sh. Source it; it defines functions only (and ROOT, the repository
# root, if unset).

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

die() {
	echo "error: $*" >&2
	exit 1
}

# Puts Go on PATH when it is installed in the standard place but PATH (a non-login shell, sudo, CI) lacks it.
ensure_go_path() {
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		export PATH=$PATH:/usr/local/go/bin
	fi
}

require_go() {
	ensure_go_path
	command -v go >/dev/null 2>&1 ||
		die "Go is not installed (looked on PATH and in /usr/local/go/bin); get it from https://go.dev/dl/"
}

# Installs the Debian packages given that are missing (apt-get update first; sudo only when not root).
install_missing() {
	"$ROOT/deploy/install-deps.sh" "$@"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if PORT is in use in any way: a listener on any address, or (for ss) a socket bound to it.
port_taken() {
	if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Htanl "sport = :$1" 2>/dev/null) ]]; then
		return 0
	fi
	port_busy "$1"
}

# One line naming who listens on PORT, if ss can tell.
who_listens() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Htlnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1
}

# True if PID is alive and its command name (/proc/PID/comm) is NAME: a pidfile is trusted only then, so a
# recycled PID is never signalled.
pid_is() { # pid name
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	[[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}

# True if PID runs (a zombie, dead but not yet reaped by its parent, does not count).
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# Sends SIGTERM to PID and waits up to SECONDS (10) for it to exit; SIGKILL after that. Returns 1 if it had to.
stop_pid() { # pid [seconds]
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	echo "pid $pid did not exit after SIGTERM; sending SIGKILL" >&2
	kill -9 "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		alive "$pid" || return 1
		sleep 0.1
	done
	return 1
}

# Waits up to SECONDS for redis-cli -h HOST -p PORT ping to answer PONG. With PID given, gives up early when that
# process has exited.
wait_pong() { # host port seconds [pid]
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ $(redis-cli -h "$1" -p "$2" ping 2>/dev/null) == PONG ]] && return 0
		if [[ -n ${4:-} ]] && ! alive "$4"; then return 1; fi
		sleep 0.1
	done
	return 1
}

# host_line describes the machine for benchmark reports: CPUs, model, kernel, and how an idle CPU waits. The
# last decides latency-bound rows: with the guest haltpoll driver at guest_halt_poll_ns 0 an idle vCPU halts at
# once, and redis-benchmark -c 1 against Redis itself measured 5,900-9,600 requests/s there against
# 27,600-35,800 with 200000 ns of polling, on the same VM.
host_line() {
	local idle=unknown
	[[ -r /sys/devices/system/cpu/cpuidle/current_driver ]] && idle=$(</sys/devices/system/cpu/cpuidle/current_driver)
	[[ -r /sys/module/haltpoll/parameters/guest_halt_poll_ns ]] &&
		idle+=" (guest_halt_poll_ns $(</sys/module/haltpoll/parameters/guest_halt_poll_ns))"
	echo "$(nproc) CPU(s), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r), cpuidle $idle"
}
