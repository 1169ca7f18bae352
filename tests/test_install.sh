#!/bin/sh
# test_install.sh -- `make install` / `make uninstall` into a temporary PREFIX:
# the files land where the man page and the units say, the units' paths are
# filled in (systemd-analyze verify where it exists), the man page renders
# (where man exists) and lists every flag each command's --help prints, and
# uninstall removes what install put there.
set -u
BUILD=${BUILD:-build}
BIN=${ZPREFILL:-./zprefill}
tmp=$(mktemp -d /tmp/zp-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=$((fail + 1)); }

make -s install BUILD="$BUILD" BIN="$BIN" PREFIX="$tmp/usr" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; no "make install failed"; }
for f in bin/zprefill share/man/man1/zprefill.1 share/doc/zprefill/zprefill.ini \
	etc/zprefill/zprefill.ini lib/systemd/system/zprefill.service \
	lib/systemd/system/zprefill.socket; do
	[ -e "$tmp/usr/$f" ] || no "install did not put $f"
done
[ -x "$tmp/usr/bin/zprefill" ] || no "the installed binary is not executable"
grep -q "ExecStart=$tmp/usr/bin/zprefill serve --config $tmp/usr/etc/zprefill/zprefill.ini" \
	"$tmp/usr/lib/systemd/system/zprefill.service" || no "ExecStart not filled in"
grep -q @ "$tmp/usr/lib/systemd/system/zprefill.service" && no "a placeholder is left in the unit"
grep -q '^ListenStream=/run/zprefill/zprefill.sock' "$tmp/usr/lib/systemd/system/zprefill.socket" ||
	no "the socket unit has no ListenStream"

# an edited ini survives a second install
echo "; edited" >> "$tmp/usr/etc/zprefill/zprefill.ini"
make -s install BUILD="$BUILD" BIN="$BIN" PREFIX="$tmp/usr" >/dev/null 2>&1
grep -q "; edited" "$tmp/usr/etc/zprefill/zprefill.ini" || no "install overwrote an edited ini"

if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify --man=no "$tmp/usr/lib/systemd/system/zprefill.socket" \
		"$tmp/usr/lib/systemd/system/zprefill.service" >"$tmp/verify.log" 2>&1 ||
		{ cat "$tmp/verify.log"; no "systemd-analyze verify"; }
else
	echo "note: no systemd-analyze here: the units were not verified"
fi

page="$tmp/usr/share/man/man1/zprefill.1"
if command -v man >/dev/null 2>&1; then
	MANWIDTH=100 man -l "$page" >"$tmp/man.txt" 2>"$tmp/man.err" || no "man -l failed"
	[ -s "$tmp/man.err" ] && { cat "$tmp/man.err"; no "man printed warnings"; }
	grep -q "ZPREFILL(1)" "$tmp/man.txt" || no "the rendered page has no title"
else
	echo "note: no man here: checking the roff source only"
	sed 's/\\-/-/g' "$page" >"$tmp/man.txt"
fi
for cmd in serve prefill bench; do
	flags=$("$BIN" "$cmd" --help | sed -n 's/^  --\([a-z0-9-]*\).*/\1/p')
	[ -n "$flags" ] || no "$cmd --help listed no flags"
	for f in $flags; do
		grep -q -- "--$f" "$tmp/man.txt" || no "the man page lacks $cmd's --$f"
	done
done
for word in "EXIT STATUS" ENDPOINTS /v1/prefill /health LISTEN_FDS WATCHDOG_USEC "CONFIGURATION FILE"; do
	grep -q -- "$word" "$tmp/man.txt" || no "the man page lacks $word"
done

make -s uninstall BUILD="$BUILD" BIN="$BIN" PREFIX="$tmp/usr" >/dev/null 2>&1
left=$(find "$tmp/usr" -type f | grep -v 'etc/zprefill/zprefill.ini')
[ -z "$left" ] || no "uninstall left: $left"
[ -e "$tmp/usr/etc/zprefill/zprefill.ini" ] || no "uninstall removed an edited ini"

echo "test_install: $([ $fail -eq 0 ] && echo ok || echo FAIL) ($fail failures)"
[ $fail -eq 0 ]
