#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need (redis-server, redis-tools, nutcracker) if
# missing, then go test over every package. Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then export PATH=$PATH:/usr/local/go/bin; fi
deploy/install-deps.sh redis-server redis-tools nutcracker
exec go test -timeout 15m "$@" ./...
