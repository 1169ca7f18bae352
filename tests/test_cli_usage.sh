#!/bin/sh
# test_cli_usage.sh -- the command line and the man page as a new user meets
# them (issue 19 rows 14-16): --label-ids and --labels refuse what is not a
# token id or a label (exit 2, naming the field; they used to send token 0 or
# drop the field), classify's columns line up with CJK labels, the man page
# renders without a warning and says each endpoint family's error shape,
# --listen-tcp's help says its default once, model_name has a flag.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
T=$(mktemp -d)
SRV=
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }

# row 14: usage errors, exit 2, the bad field named, nothing sent
for ids in x 1,x,2 5abc 0x10 1,,2 -1 , 99999999999; do
	$Z score --socket "$T/none" --query q --label-ids "$ids" item > "$T/out" 2> "$T/err"; rc=$?
	[ $rc -eq 2 ] && grep -q -- "--label-ids has the field" "$T/err" ||
		no "score --label-ids '$ids': exit $rc: $(head -1 "$T/err")"
done
for labels in food,,animal ,food food, ""; do
	$Z classify --socket "$T/none" --labels "$labels" x > "$T/out" 2> "$T/err"; rc=$?
	[ $rc -eq 2 ] || no "classify --labels '$labels': exit $rc: $(head -1 "$T/err")"
done
# well-formed ones pass the usage check (exit 1: no server there)
$Z score --socket "$T/none" --query q --label-ids 1,22,333 item > /dev/null 2> "$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "connect" "$T/err" || no "score --label-ids 1,22,333: exit $rc"

# row 15: the man page renders clean, keeps the synopsis' "...", names the error shapes
if command -v man > /dev/null; then
	man --warnings -l "${BUILD:-build}/zprefill.1" > "$T/man" 2> "$T/manerr"
	[ -s "$T/manerr" ] && no "man --warnings: $(head -3 "$T/manerr")"
	grep -q "health --socket PATH \.\.\." "$T/man" || no "man: the SYNOPSIS lost its ..."
	for fam in "OpenAI and native" "vLLM and SGLang" "TEI" "BadRequestError" "error_type"; do
		grep -q "$fam" "$T/man" || no "man: no error shape for $fam"
	done
else
	echo "man is not installed: the page's render is not checked"
fi

# row 16: --listen-tcp's default said once; --model-name
n=$($Z serve --help | grep -- "--listen-tcp" | grep -o none | wc -l)
[ "$n" -eq 1 ] || no "serve --help: --listen-tcp says none $n times"
$Z serve --model tests/models/tiny-tok --socket "$T/s" --model-name my-model --log-level warn 2> "$T/log" &
SRV=$!
i=0
until $Z health --socket "$T/s" > /dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 600 ] && { no "server not ready"; break; }  # a liveness bound
	sleep 0.1
done
curl -s --unix-socket "$T/s" http://x/v1/models | grep -q '"id":"my-model"' || no "--model-name: /v1/models"
# CJK labels: the probabilities start in one column
$Z classify --socket "$T/s" --labels "食物,animal,タイガー,x" "a tiger" > "$T/cls" 2> "$T/err" ||
	no "classify: $(cat "$T/err")"
cols=$(grep '^  ' "$T/cls" | python3 -c '
import sys, unicodedata
out = set()
for ln in sys.stdin:
    head = ln.rsplit(" ", 1)[0]
    out.add(sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in head))
print(len(out))')
[ "$cols" = 1 ] || { no "classify: CJK labels misalign the columns"; cat "$T/cls"; }

[ $fail -eq 0 ] && echo "test_cli_usage: ok" || echo "test_cli_usage: FAIL"
exit $fail
