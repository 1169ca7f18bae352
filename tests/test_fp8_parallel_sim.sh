#!/bin/sh
# test_fp8_parallel_sim.sh -- an FP8 model (tests/models/fp8-odd: partial
# edge blocks, a dense layer, 3 shards) on the sim device with 2 executors:
# AsyncEP (each executor's experts gathered: FP8 codes and scales in one
# block) and DP-EP give replicate's answers bit for bit, in W8A8 (where the
# experts' down GEMMs run W8A8 on executors that hold no model mirror of
# their own experts) and in W8A16.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
python3 -c 'import json, sys
for l in open(sys.argv[1]):
    g = json.loads(l)
    if "request" in g: print(json.dumps(g["request"]))' tests/golden/fp8-odd.jsonl > "$T/req" || exit 1
for mode in w8a8 w8a16; do
	for par in replicate asyncep dpep; do
		ZP_FP8_COMPUTE=$mode $Z prefill --model tests/models/fp8-odd --device sim --parallel $par \
			--executors 2 < "$T/req" > "$T/$mode.$par" 2> "$T/$mode.$par.err"
		rc=$?
		n=$(grep -c '"candidate_logprobs"\|"prompt_logprobs"\|"top_logprobs"\|"embedding"' "$T/$mode.$par")
		if [ $rc -ne 0 ] || [ "$n" -ne "$(wc -l < "$T/req")" ] || grep -q '"error"' "$T/$mode.$par"; then
			echo "FAIL: $mode $par: rc=$rc, $n answers"; tail -n 5 "$T/$mode.$par.err"; fail=1
		fi
	done
	for par in asyncep dpep; do
		cmp -s "$T/$mode.replicate" "$T/$mode.$par" || { echo "FAIL: $mode: $par differs from replicate"; fail=1; }
	done
	grep -q "compute=$mode" "$T/$mode.asyncep.err" || { echo "FAIL: $mode: the log does not say compute=$mode"; fail=1; }
done
cmp -s "$T/w8a8.replicate" "$T/w8a16.replicate" && { echo "FAIL: W8A8 and W8A16 answer alike: W8A8 did not run"; fail=1; }
[ $fail -eq 0 ] && echo "test_fp8_parallel_sim: ok"
exit $fail
