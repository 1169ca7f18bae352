#!/bin/sh
# test_demo.sh -- `make run` (tools/demo.sh on models/default) runs end to end:
# the server starts, every request the demo sends is answered and read out (no
# error), the classify reading has a line for each of tools/demo_items.json's 20
# inputs and the rerank reading one for each of its 4 documents, the marks of
# wrong answers fall on the 2 inputs test_default_model knows this checkpoint gets
# wrong, the rerank's first document is marked right or wrong, and SIGTERM
# stops the server with exit 0.
# Which answer is right is test_default_model's; this checks what a user sees.
set -u
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "curl not installed"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
SOCKET="$T/s" ZPREFILL=${ZPREFILL:-./zprefill} tools/demo.sh > "$T/out" 2>&1 ||
	{ echo "FAIL: tools/demo.sh exited $?"; tail -n 30 "$T/out"; exit 1; }
check() { # what, command...
	w=$1; shift
	"$@" || { echo "FAIL: $w"; fail=1; }
}
check "no answer is an error" sh -c "! grep -q '(error:' '$T/out'"
n=$(grep -cE '^  .{42} -> [a-z]+ +[0-9.]+   \(next: ' "$T/out")
check "20 classify lines read out (got $n)" [ "$n" -eq 20 ]
n=$(grep -cE '^  [01]\.[0-9]{3}  ' "$T/out")
check "4 rerank documents read out (got $n)" [ "$n" -eq 4 ]
grep -E '^  .{42} -> .*WRONG' "$T/out" | sed 's/^  //; s/ *->.*//' > "$T/wrong"
printf '%s\n' tiger oak > "$T/want"
check "the marked words are the known wrong ones: $(tr '\n' ' ' < "$T/wrong")" cmp -s "$T/wrong" "$T/want"
# the violin's gloss is first (test_default_model's DEMO_RERANK): the first line is marked right
n=$(grep -cE '^  [01]\.[0-9]{3}  .*<- its definition$' "$T/out")
check "the rerank's first document marked as its definition (got $n marks)" [ "$n" -eq 1 ]
n=$(grep -c '<- WRONG: not its definition' "$T/out")
check "no rerank document marked wrong (got $n)" [ "$n" -eq 0 ]
check "12 neighbour lines" [ "$(grep -c ' -> .*farthest: ' "$T/out")" -eq 12 ]
check "the server stopped cleanly on SIGTERM" grep -q 'msg=stopped .*exit=0' "$T/out"
[ $fail -eq 0 ] && echo "test_demo: ok" || { cat "$T/out"; exit 1; }
