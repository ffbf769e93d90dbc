#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages given, if missing: deploy/install-deps.sh [package...]
# (default: redis-server redis-tools). Runs apt-get update and apt-get install -y only when something is missing;
# uses sudo only when not root. Does nothing, quietly, when everything is there.
set -euo pipefail
want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(redis-server redis-tools)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${want[@]}"; do
	installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command -v apt-get >/dev/null || {
	echo "error: missing packages: ${missing[*]}; this script installs with apt-get (Debian/Ubuntu) only" >&2
	exit 1
}
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || {
		echo "error: missing packages: ${missing[*]}; not root and no sudo to install them" >&2
		exit 1
	}
	sudo=(sudo)
fi
echo "installing: ${missing[*]}"
"${sudo[@]}" apt-get update -q
# Debian starts a system redis-server on 6379 (and prometheus on 9090) after the install where systemd runs;
# nothing here uses them.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
