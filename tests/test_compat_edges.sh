#!/bin/sh
# test_compat_edges.sh -- what a new user and the peers' own tests sent the
# server (issue 19): tests/test_compat_edges.py against the real server over
# its loopback TCP listener. Skips (77) without python3 or requests
# (tools/deps.sh installs it with pip).
set -u
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is not installed"; exit 77; }
if ! python3 -c 'import requests' 2>/dev/null; then
	echo "the requests Python package is missing (tools/deps.sh installs it with pip)"
	exit 77
fi
exec python3 tests/test_compat_edges.py "${ZPREFILL:-./zprefill}"
