#!/bin/sh
# test_rooms.sh -- the rooms' include rule, checked on the sources: serve/ and
# cli/ sit on top, so nothing in base/, model/, cpu/, engine/, cuda/ or ipc/
# includes one of their headers (the engine knows jobs, never the endpoints
# or the reactor); and ipc/ includes nothing from src/ at all. Fails naming
# each offending line.
cd "$(dirname "$0")/.."
rc=0
# "a.h|b\.h|...": a quoted include of any header named in these folders
names() { for h in "$@"; do [ -e "$h" ] && basename "$h"; done | sed 's/\./\\./g' | paste -sd'|' -; }
inc='^[[:space:]]*#[[:space:]]*include[[:space:]]*"'

top=$(names src/serve/*.h src/cli/*.h)
[ -n "$top" ] || { echo "FAIL: no serve/cli headers found (run from the repository)"; exit 1; }
if grep -nE "$inc($top)\"" src/base/* src/model/* src/device/* src/cpu/* src/engine/* src/cuda/* ipc/*; then
	echo "FAIL: the lines above include a serve/ or cli/ header below those rooms"
	rc=1
fi
own=$(names ipc/*.h)
if grep -nE "$inc" ipc/* | grep -vE ":[0-9]+:${inc#^}($own)\""; then
	echo "FAIL: the lines above include something from outside ipc/"
	rc=1
fi
[ $rc -eq 0 ] && echo "rooms: base model cpu engine cuda ipc include nothing from serve or cli; ipc only itself"
exit $rc
