#!/bin/sh
# test_rooms.sh -- the rooms' include rules, checked on the sources; fails naming
# each offending line.
#  1. serve/ and cli/ sit on top: nothing in base/, model/, device/, cpu/, cuda/,
#     engine/ or ipc/ includes one of their headers (the engine knows jobs, never
#     the endpoints or the reactor).
#  2. ipc/ includes nothing from src/ at all.
#  3. The device seam: nothing in engine/, model/, serve/ or cli/ includes a
#     backend's header (src/cpu/*.h, src/cuda/*.h); they ask the registry
#     (src/device/device.h). In device/ only the registry (device.c) names them.
#  4. The backends are siblings: cpu/ includes nothing of cuda/, cuda/ nothing of
#     cpu/.
#  5. model/ and base/ know no device: they include nothing of device/, cpu/ or
#     cuda/ (model/weights.h declares the layout interface the backends
#     implement and model/ packs through).
#  6. device/ (the seam) sits below engine/: it includes nothing of engine/.
# ROOMS_SRC=dir checks another tree (the test of this test).
cd "$(dirname "$0")/.."
S=${ROOMS_SRC:-src}
rc=0
# "a.h|b\.h|...": a quoted include of any header named in these folders
names() { for h in "$@"; do [ -e "$h" ] && basename "$h"; done | sed 's/\./\\./g' | paste -sd'|' -; }
inc='^[[:space:]]*#[[:space:]]*include[[:space:]]*"'
# rule TEXT HEADERS FILES...: fail when one of FILES includes one of HEADERS
rule() {
	msg=$1 hdrs=$2
	shift 2
	[ -n "$hdrs" ] || return 0
	if grep -nE "$inc($hdrs)\"" "$@" 2> /dev/null; then
		echo "FAIL: the lines above $msg"
		rc=1
	fi
}

top=$(names $S/serve/*.h $S/cli/*.h)
[ -n "$top" ] || { echo "FAIL: no serve/cli headers found under $S"; exit 1; }
rule "include a serve/ or cli/ header below those rooms" "$top" \
	$S/base/* $S/model/* $S/device/* $S/cpu/* $S/cuda/* $S/engine/* ipc/*
own=$(names ipc/*.h)
if grep -nE "$inc" ipc/* | grep -vE ":[0-9]+:${inc#^}($own)\""; then
	echo "FAIL: the lines above include something from outside ipc/"
	rc=1
fi
cpu=$(names $S/cpu/*.h)
cuda=$(names $S/cuda/*.h)
[ -n "$cpu" ] && [ -n "$cuda" ] || { echo "FAIL: no cpu/ or cuda/ headers under $S"; exit 1; }
rule "include a backend's header above the seam (ask device.h's registry)" "$cpu|$cuda" \
	$S/engine/* $S/model/* $S/serve/* $S/cli/*
for f in $S/device/*; do
	[ "$(basename "$f")" = device.c ] && continue
	rule "name a backend in device/ outside the registry (device.c)" "$cpu|$cuda" "$f"
done
rule "include cuda/ from the cpu backend (backends are siblings)" "$cuda" $S/cpu/*
rule "include cpu/ from the cuda backend (backends are siblings)" "$cpu" $S/cuda/*
dev=$(names $S/device/*.h)
rule "include a device, backend or registry header from model/ or base/" "$dev|$cpu|$cuda" \
	$S/model/* $S/base/*
rule "include an engine/ header from the device seam (it sits below the engine)" \
	"$(names $S/engine/*.h)" $S/device/*
[ $rc -eq 0 ] && echo "rooms: serve and cli on top; ipc only itself; engine, model, serve and cli name no backend; cpu and cuda siblings; model and base know no device; device below engine"
[ -n "${ROOMS_SRC:-}" ] && exit $rc

# The rules can fail: a copy of src/ with one deliberate bad include each.
bad() {
	what=$1 file=$2 hdr=$3
	t=$(mktemp -d)
	cp -r src "$t/src"
	printf '#include "%s"\n' "$hdr" >> "$t/src/$file"
	if ROOMS_SRC="$t/src" sh "$0" > "$t/out" 2>&1; then
		echo "FAIL: a bad include ($what: $file includes $hdr) passed"
		rc=1
	else
		echo "rules fail as they should: $what ($(grep -c '^FAIL' "$t/out") rule(s): $(grep '^FAIL' "$t/out" | head -n 1))"
	fi
	rm -rf "$t"
}
bad "engine names a backend" engine/engine.c backend_cuda.h
bad "backends are siblings" cpu/gemm.c devrt.h
bad "model knows no device" model/model.c device.h
bad "the seam sits below the engine" device/transport_p2p.c asyncep.h
exit $rc
