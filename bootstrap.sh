#!/bin/sh
# bootstrap.sh -- the first command on a fresh Debian or Ubuntu, where even make
# is missing: installs make and what tools/deps.sh lists (apt-get, with its
# progress shown), then runs `make ARGS` (no ARGS: `make run`, the demo).
# Needs root or sudo for the installs; once they are done it is plain make.
set -eu
cd "$(dirname "$0")"
as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"
	elif command -v sudo >/dev/null 2>&1; then sudo "$@"
	else echo "bootstrap: '$*' needs root (no sudo here): run ./bootstrap.sh as root" >&2; exit 1
	fi
}
if ! command -v make >/dev/null 2>&1; then
	echo "bootstrap: make is missing; installing it with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y make
fi
tools/deps.sh --check >/dev/null 2>&1 || as_root tools/deps.sh
[ $# -gt 0 ] || set -- run
echo "bootstrap: make $*"
exec make "$@"
