#!/usr/bin/env bash
# The whole test suite: installs what the tests need if missing (redis-server, redis-tools, nutcracker,
# python3-redis, the npm clients of proxy/testdata/clients), then runs go test over every package with a
# 15-minute timeout. Works from any directory.
#
#   deploy/test.sh [go test flags] [packages]
#
# Extra arguments go to go test (a later -timeout wins over the default). Packages named in them (./x/...,
# github.com/slotproxy/slotproxy/x) replace ./... . The exit code is go test's.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

install_missing redis-server redis-tools nutcracker python3-redis prometheus
# The real clients TestRealClients drives: ioredis and node-redis from npm, at package-lock.json's versions.
command -v npm >/dev/null || install_missing nodejs npm
clients=proxy/testdata/clients
if [[ ! -d $clients/node_modules/ioredis || ! -d $clients/node_modules/redis ]]; then
	(cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
fi
require_go

# Packages named among the arguments replace ./... (a value after a flag like -run or -coverprofile is not one).
value_flags='run|skip|bench|benchtime|count|cpu|parallel|timeout|fuzz|fuzztime|fuzzminimizetime|list|shuffle'
value_flags+='|coverprofile|covermode|coverpkg|cpuprofile|memprofile|memprofilerate|blockprofile|mutexprofile'
value_flags+='|trace|outputdir|o|p|tags|mod|exec|vet|ldflags|gcflags|asmflags|C'
pkgs=(./...)
value_next=0
for a in "$@"; do
	if ((value_next)); then
		value_next=0
	elif [[ $a =~ ^--?($value_flags)$ ]]; then
		value_next=1
	elif [[ $a == . || $a == ./* || $a == ../* || $a == github.com/slotproxy/slotproxy* ]]; then
		pkgs=()
	fi
done
echo "go test -timeout 15m $* ${pkgs[*]}"
exec go test -timeout 15m "$@" "${pkgs[@]}"
