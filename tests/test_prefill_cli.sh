#!/bin/sh
# test_prefill_cli.sh -- `zprefill prefill` end to end: bad request lines each get
# an error object with the right code and param, in order, and every good line
# after them is still answered; results equal those of the same lines run alone;
# results that cannot be written fail the run.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
M=tests/models/odd   # vocab 331
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0

# id|expected (ok, or error code)|request line
cat > "$T/cases" <<'CASES'
ok1|ok|{"id":"ok1","prompt_token_ids":[1,2,3],"candidate_token_ids":[4,5]}
json|400|{"id":"json","prompt_token_ids":[1,2
-|400|{"prompt_token_ids": [1, 2], "candidate_token_ids": [3]} trailing
notobj|400|[1,2,3]
str|400|"just a string"
neg|400|{"id":"neg","prompt_token_ids":[1,-1,3]}
big|400|{"id":"big","prompt_token_ids":[1,331]}
float|400|{"id":"float","prompt_token_ids":[1,2.5]}
strtok|400|{"id":"strtok","prompt_token_ids":["1"]}
empty|400|{"id":"empty","prompt_token_ids":[]}
missing|400|{"id":"missing","candidate_token_ids":[1]}
toolong|400|{"id":"toolong","prompt_token_ids":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}
cand|400|{"id":"cand","prompt_token_ids":[1],"candidate_token_ids":[1000]}
topk|400|{"id":"topk","prompt_token_ids":[1],"top_logprobs":-1}
topk2|400|{"id":"topk2","prompt_token_ids":[1],"top_logprobs":"5"}
plp|400|{"id":"plp","prompt_token_ids":[1,2],"prompt_logprobs":{"start":2}}
pool|400|{"id":"pool","prompt_token_ids":[1],"pooling":"max"}
norm|400|{"id":"norm","prompt_token_ids":[1],"normalize":true}
unknown|400|{"id":"unknown","prompt_token_ids":[1],"temperature":0.5}
huge|400|{"id":"huge","prompt_token_ids":[1e400]}
ok2|ok|{"id":"ok2","prompt_token_ids":[7,8,9,10],"top_logprobs":3,"prompt_logprobs":{"start":0},"pooling":"mean","normalize":true}
ok3|ok|{"id":{"nested":[1,2]},"prompt_token_ids":[0,330],"candidate_token_ids":[]}
CASES
cut -d'|' -f3- "$T/cases" > "$T/in"
printf '{"id":"utf8","prompt_token_ids":[1],"x":"\300\257"}\n' >> "$T/in"
printf 'utf8|400\n' >> "$T/cases"
printf '{"id":"nul\\u0000","prompt_token_ids":[5]}\n' >> "$T/in"
printf 'nul|400\n' >> "$T/cases"
echo '{"id":"last","prompt_token_ids":[3,3,3]}' >> "$T/in"
echo 'last|ok' >> "$T/cases"

$Z prefill --model $M --dtype fp32 --max-tokens 16 --threads 2 < "$T/in" > "$T/out" 2> "$T/err"
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: exit $rc"; cat "$T/err"; fail=1; }
nin=$(wc -l < "$T/in"); nout=$(wc -l < "$T/out")
[ "$nin" -eq "$nout" ] || { echo "FAIL: $nin lines in, $nout out"; fail=1; }
i=0
while IFS='|' read -r id want _; do
	i=$((i + 1))
	line=$(sed -n "${i}p" "$T/out")
	case "$want" in
	ok) echo "$line" | grep -q '"error"' && { echo "FAIL line $i ($id): $line"; fail=1; } ;;
	*) echo "$line" | grep -q "\"code\":$want}" || { echo "FAIL line $i ($id) wants $want: $line"; fail=1; } ;;
	esac
	printf '%-8s %s\n' "$id" "$(echo "$line" | cut -c1-150)"
done < "$T/cases"
grep -q '"id":{"nested":\[1,2\]}' "$T/out" || { echo "FAIL: id not echoed"; fail=1; }

# the same good lines alone give byte-identical results (batch invariance, fp32 and bf16)
for dt in fp32 bf16; do
	$Z prefill --model $M --dtype $dt --max-tokens 16 < "$T/in" 2>/dev/null | grep -av '"error"' > "$T/batch"
	: > "$T/alone"
	grep -an . "$T/in" | while IFS=: read -r n l; do
		printf '%s\n' "$l" | $Z prefill --model $M --dtype $dt --max-tokens 16 2>/dev/null
	done | grep -av '"error"' > "$T/alone"
	cmp -s "$T/batch" "$T/alone" || { echo "FAIL: $dt alone vs batch differ"; diff "$T/batch" "$T/alone" | head; fail=1; }
done

# --device sim (the CUDA backend's host path, kernels by their CPU twins): the
# same answers line for line (errors byte-identical to the cpu's), and alone vs
# in a batch byte-identical there too
for dt in fp32 bf16; do
	$Z prefill --model $M --dtype $dt --max-tokens 16 < "$T/in" > "$T/cpu" 2>/dev/null
	$Z prefill --model $M --dtype $dt --max-tokens 16 --device sim < "$T/in" > "$T/sim" 2>"$T/e" ||
		{ echo "FAIL: $dt --device sim exit"; cat "$T/e"; fail=1; }
	grep -q 'device=sim' "$T/e" || { echo "FAIL: $dt --device sim: the log names no sim executor"; fail=1; }
	[ "$(wc -l < "$T/sim")" -eq "$nin" ] && cmp -s "$(grep -a '"error"' "$T/cpu" > "$T/ce"; echo "$T/ce")" \
		"$(grep -a '"error"' "$T/sim" > "$T/se"; echo "$T/se")" ||
		{ echo "FAIL: $dt --device sim answers differ in shape from the cpu's"; fail=1; }
	grep -av '"error"' "$T/sim" > "$T/batch"
	grep -an . "$T/in" | while IFS=: read -r n l; do
		printf '%s\n' "$l" | $Z prefill --model $M --dtype $dt --max-tokens 16 --device sim 2>/dev/null
	done | grep -av '"error"' > "$T/alone"
	[ -s "$T/batch" ] && cmp -s "$T/batch" "$T/alone" ||
		{ echo "FAIL: $dt --device sim alone vs batch differ"; diff "$T/batch" "$T/alone" | head; fail=1; }
done
$Z bench --model $M --tokens 33 --seqs 3 --threads 2 --iters 1 --device sim > "$T/bench" 2>/dev/null &&
	tail -n 1 "$T/bench" | grep -Eq 'prefill_tok_s=[0-9]+(\.[0-9]+)?$' || { echo "FAIL: bench --device sim"; fail=1; }
$Z prefill --model $M --device tpu </dev/null 2>"$T/e"; [ $? -eq 2 ] && grep -q -- '--device must be' "$T/e" ||
	{ echo "FAIL: a bad --device does not name the flag"; cat "$T/e"; fail=1; }
if ! nvidia-smi -L >/dev/null 2>&1; then # cuda without a GPU: a clear error, exit 1
	echo '{"id":"g","prompt_token_ids":[1]}' | $Z prefill --model $M --device cuda > /dev/null 2>"$T/e"
	[ $? -eq 1 ] && grep -q -- '--device cuda: ' "$T/e" ||
		{ echo "FAIL: --device cuda without a GPU"; cat "$T/e"; fail=1; }
fi

# the thread count changes nothing either (hd64: AMX GEMM and AMX attention in bf16)
sed -n 's/^{"request": \(.*\), "expected": .*/\1/p' tests/golden/hd64.jsonl > "$T/hd64"
[ "$(wc -l < "$T/hd64")" -eq 8 ] || { echo "FAIL: hd64 requests"; fail=1; }
for dt in fp32 bf16; do
	$Z prefill --model tests/models/hd64 --dtype $dt --threads 1 < "$T/hd64" > "$T/t1" 2>/dev/null
	$Z prefill --model tests/models/hd64 --dtype $dt --threads 3 < "$T/hd64" > "$T/t3" 2>/dev/null
	[ -s "$T/t1" ] && ! grep -q '"error"' "$T/t1" && cmp -s "$T/t1" "$T/t3" ||
		{ echo "FAIL: $dt results depend on --threads"; fail=1; }
done

# a line over the 64 MiB limit is refused with 413 and the next is served
{ printf '{"id":"x","prompt_token_ids":['; head -c 70000000 /dev/zero | tr '\0' '1'; echo ']}';
  echo '{"id":"after","prompt_token_ids":[1]}'; } | $Z prefill --model $M > "$T/long" 2>/dev/null
sed -n 1p "$T/long" | grep -q '"code":413' || { echo "FAIL: long line"; fail=1; }
sed -n 2p "$T/long" | grep -q '"id":"after","num_prompt_tokens":1' || { echo "FAIL: after long line"; fail=1; }

# results that cannot be written (a full disk) fail the run, saying so
$Z prefill --model $M < "$T/in" > /dev/full 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'cannot write results' "$T/e" ||
	{ echo "FAIL: prefill into a full disk: exit $rc"; cat "$T/e"; fail=1; }

# bench: warm-up, timed forwards, a last line with prefill_tok_s=<number>
$Z bench --model $M --tokens 33 --seqs 3 --threads 2 --iters 2 > "$T/bench" 2>/dev/null ||
	{ echo "FAIL: bench exit"; fail=1; }
tail -n 1 "$T/bench" | grep -Eq 'prefill_tok_s=[0-9]+(\.[0-9]+)?$' || { echo "FAIL: bench last line"; cat "$T/bench"; fail=1; }
[ "$(grep -c '^iter=' "$T/bench")" -eq 2 ] || { echo "FAIL: bench iterations"; fail=1; }
$Z bench --model $M --tokens 33 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: bench without --seqs"; fail=1; }
$Z bench --model $M --tokens 2 --seqs 1025 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: bench --seqs over the limit"; fail=1; }
$Z bench --model $M --tokens 16777216 --seqs 2 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: bench too many tokens"; fail=1; }
$Z bench --model $M --tokens 5000 --seqs 1 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: bench over max_position_embeddings"; fail=1; }
$Z prefill --model $M --max-tokens 5000 </dev/null 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: --max-tokens over max_position_embeddings"; fail=1; }

# usage errors
$Z prefill 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: no --model not a usage error"; fail=1; }
$Z prefill --model /nonexistent 2>"$T/e" </dev/null; [ $? -eq 1 ] && grep -q "nonexistent" "$T/e" ||
	{ echo "FAIL: missing model dir"; fail=1; }
$Z prefill --model $M --dtype fp16 2>/dev/null </dev/null; [ $? -eq 2 ] || { echo "FAIL: bad dtype"; fail=1; }
$Z prefill --model $M --max-batch-tokens 0 2>"$T/e" </dev/null; [ $? -eq 2 ] && grep -q -- '--max-batch-tokens must be' "$T/e" ||
	{ echo "FAIL: a bad --max-batch-tokens does not name the flag"; cat "$T/e"; fail=1; }
$Z bench --model $M --tokens 3 --seqs 1 --parallel tp 2>"$T/e"; [ $? -eq 2 ] && grep -q -- '--parallel must be' "$T/e" ||
	{ echo "FAIL: a bad --parallel does not name the flag"; cat "$T/e"; fail=1; }
$Z prefill --model $M --socket /tmp/x 2>"$T/e" </dev/null; [ $? -eq 2 ] && grep -q -- 'unknown flag --socket' "$T/e" ||
	{ echo "FAIL: serve's --socket taken by prefill"; fail=1; }

# --help: exit 0; the shared flags with one default (and ini key) in all three
for c in prefill bench serve; do
	$Z $c --help > "$T/help.$c" 2>&1 || { echo "FAIL: $c --help exit"; fail=1; }
	for f in model dtype threads executors parallel transport device offload max-tokens max-batch-tokens log-level; do
		grep -- "^  --$f " "$T/help.$c" | sed 's/^ *--[a-z-]* *//; s/required/default none/' >> "$T/shared.$c"
	done
done
grep -q -- '--max-batch-tokens .*default 8192; \[engine\] max_batch_tokens' "$T/help.prefill" &&
	grep -q -- '--parallel .*default asyncep' "$T/help.bench" && grep -q -- '--tokens ' "$T/help.bench" &&
	! grep -q -- '--tokens ' "$T/help.prefill" && grep -q -- '--socket ' "$T/help.serve" ||
	{ echo "FAIL: --help text"; cat "$T/help.prefill"; fail=1; }
[ "$(wc -l < "$T/shared.prefill")" -eq 11 ] && cmp -s "$T/shared.prefill" "$T/shared.bench" &&
	cmp -s "$T/shared.prefill" "$T/shared.serve" ||
	{ echo "FAIL: prefill, bench and serve differ on a shared flag"; diff "$T/shared.prefill" "$T/shared.serve"; fail=1; }
[ $fail -eq 0 ] && echo "test_prefill_cli: ok" || echo "test_prefill_cli: FAIL"
exit $fail
