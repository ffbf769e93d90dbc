#!/usr/bin/env bash
# Installs the Debian packages the proxy's scripts and tests need, if missing: deploy/install-deps.sh [package...]
set -euo pipefail
want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(redis-server redis-tools)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts a system redis-server on 6379 after install; the scripts and tests do not need it.
