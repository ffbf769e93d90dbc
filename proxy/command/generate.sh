#!/bin/sh
# Remakes table_gen.go from the redis-server on this machine (or $REDIS_SERVER, else $SLOTPROXY_REDIS_SERVER, the
# binary the live tests run): gen starts it on a free loopback port with persistence off, reads COMMAND and kills
# it. Same as `go generate ./proxy/command` with the default redis-server.
set -eu
cd "$(dirname "$0")"
exec go run ./internal/gen -start "${REDIS_SERVER:-${SLOTPROXY_REDIS_SERVER:-redis-server}}" -o table_gen.go
