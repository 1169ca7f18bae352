#!/bin/sh
# test_cli_faults.sh -- what a newcomer meets at the command line (issue 9):
# every subcommand's --help (and `zprefill --help`) prints its usage on stdout
# and exits 0; `zprefill prefill` answers line n of its input with line n of
# its output, a blank line with an error line; the log says once which
# expert placement runs, and why when it is not the one configured.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0

for c in "" serve prefill bench tokenize score classify embed health; do
	for h in --help -h; do
		$Z $c $h > "$T/out" 2> "$T/err"; rc=$?
		[ $rc -eq 0 ] && grep -q "usage: zprefill" "$T/out" ||
			{ echo "FAIL: zprefill $c $h: exit $rc, stdout $(wc -c < "$T/out") bytes"; fail=1; }
	done
done
$Z help > "$T/out" 2>&1 && grep -q "usage: zprefill" "$T/out" || { echo "FAIL: zprefill help"; fail=1; }
# a usage error is still exit 2, on stderr
$Z nosuchcommand > "$T/out" 2> "$T/err"; rc=$?
[ $rc -eq 2 ] && [ ! -s "$T/out" ] && grep -q "usage:" "$T/err" || { echo "FAIL: unknown command: exit $rc"; fail=1; }
$Z score --socket /nonexistent > "$T/out" 2> "$T/err"; rc=$?
[ $rc -eq 2 ] || { echo "FAIL: score without its arguments: exit $rc"; fail=1; }

# prefill: blank lines (empty, CR only) answered in place
printf '%s\n' '{"id":"a","prompt_token_ids":[1,2]}' '' '{"id":"b","prompt_token_ids":[3]}' > "$T/in"
printf '\r\n' >> "$T/in"
printf '%s\n' '{"id":"c","prompt_token_ids":[4,5,6]}' >> "$T/in"
$Z prefill --model tests/models/odd --dtype fp32 < "$T/in" > "$T/res" 2> "$T/err"; rc=$?
[ $rc -eq 0 ] || { echo "FAIL: prefill exit $rc"; cat "$T/err"; fail=1; }
nin=$(wc -l < "$T/in"); nout=$(wc -l < "$T/res")
[ "$nin" -eq "$nout" ] || { echo "FAIL: prefill: $nin lines in, $nout out"; fail=1; }
sed -n 1p "$T/res" | grep -q '"id":"a","num_prompt_tokens":2' || { echo "FAIL: line 1"; fail=1; }
sed -n 2p "$T/res" | grep -q '"code":400' || { echo "FAIL: blank line 2 unanswered"; fail=1; }
sed -n 3p "$T/res" | grep -q '"id":"b","num_prompt_tokens":1' || { echo "FAIL: line 3"; fail=1; }
sed -n 4p "$T/res" | grep -q '"code":400' || { echo "FAIL: CR line 4 unanswered"; fail=1; }
sed -n 5p "$T/res" | grep -q '"id":"c","num_prompt_tokens":3' || { echo "FAIL: line 5"; fail=1; }
cat "$T/res" | cut -c1-100

# the placement that ran, said once with why it differs from the one configured
# (asyncep is the default; one executor runs replicate); never the configured
# one alone, as if it ran
grep -q 'msg="prefill done".* parallel=replicate configured=asyncep why="one executor' "$T/err" &&
	! grep -q 'parallel=asyncep' "$T/err" ||
	{ echo "FAIL: prefill's log does not say what ran and why"; cat "$T/err"; fail=1; }
$Z bench --model tests/models/odd --tokens 4 --seqs 1 --iters 1 2>/dev/null | tail -n 1 |
	grep -q ' parallel=replicate ' || { echo "FAIL: bench reports the configured placement"; fail=1; }
# a prefix cache larger than the machine: a start error, not an abort on an
# executor thread
echo '{"prompt_token_ids":[1]}' | $Z prefill --model tests/models/odd --kv-cache-bytes 4398046511104 \
	> "$T/out" 2> "$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "more than this machine" "$T/err" ||
	{ echo "FAIL: an oversized kv_cache_bytes: exit $rc"; cat "$T/err"; fail=1; }
# asyncep's calibrated T (the tokens a forward needs to hide a layer's gather)
# above what one forward may carry: said at start, with the flag to raise; not
# said when a forward can reach T (the calibration line rounds T, the warning
# names the whole tokens a forward needs: ceil)
for cut in 1 8192; do
	$Z bench --model tests/models/tiny-tok --executors 2 --threads 1 --tokens 1 --seqs 1 \
		--iters 1 --max-batch-tokens $cut > /dev/null 2> "$T/err"
	t=$(sed -n 's/.*msg=calibration .*threshold_tokens=\([0-9]*\).*/\1/p' "$T/err")
	w=$(sed -n "s/.*msg=\"a forward cannot hide the expert gather\" threshold_tokens=\([0-9]*\) max_batch_tokens=$cut hint=\"raise --max-batch-tokens to at least \([0-9]*\) .*/\1 \2/p" "$T/err")
	if [ -z "$t" ]; then ok=0
	elif [ -n "$w" ]; then set -- $w; [ "$1" -gt $cut ] && [ "$1" = "$2" ] && [ "$1" -ge "$t" ] && ok=1 || ok=0
	else [ "$t" -le $cut ] && ok=1 || ok=0
	fi
	[ $ok -eq 1 ] || { echo "FAIL: T=$t tokens, max_batch_tokens=$cut: warning '$w'"; cat "$T/err"; fail=1; }
	[ $cut -eq 1 ] && [ -n "$t" ] && [ "$t" -ge 2 ] && [ -z "$w" ] &&
		{ echo "FAIL: T=$t tokens over max_batch_tokens=1, not said"; fail=1; }
done
[ $fail -eq 0 ] && echo "test_cli_faults: ok" || echo "test_cli_faults: FAIL"
exit $fail
