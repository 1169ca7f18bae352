#!/bin/sh
# test_sched_policies.sh -- the policies end to end (scheduler.h): `zprefill
# prefill` on 2 asyncep executors answers the same lines with the same
# results under every --schedule (and a timed --batch-wait-us): requests
# sharing prefixes, --max-batch-tokens small enough that they span many
# batches and both executors; an unknown policy is refused. `zprefill serve --schedule prefix_flops` shows the threshold, its
# inputs and each executor's load in /metrics, and answers /v1/prefill.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
M=tests/models/odd   # vocab 331
T=$(mktemp -d); PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
fail=0
expect() { # name regex value
	if printf '%s\n' "$3" | grep -Eq "$2"; then echo "ok   $1"; else
		echo "FAIL $1: wanted /$2/ in: $(printf '%s' "$3" | head -c 300)"; fail=1; fi
}

python3 - > "$T/in" <<'PY'
import json, random
r = random.Random(3)
shared = [[r.randrange(3, 331) for _ in range(48)] for _ in range(3)]
for i in range(30):
    p = shared[i % 3] + [r.randrange(3, 331) for _ in range(r.randrange(1, 40))]
    q = {"id": i, "prompt_token_ids": p, "candidate_token_ids": [5, 6]}
    if i % 7 == 0:
        q["top_logprobs"] = 3
        q["prompt_logprobs"] = {"start": 40}
    print(json.dumps(q))
PY
run() { "$Z" prefill --model $M --dtype fp32 --executors 2 --threads 1 --parallel asyncep \
	--max-batch-tokens 256 "$@" < "$T/in" 2> "$T/err"; }
run --schedule fifo > "$T/fifo"
expect fifo-answers '^30$' "$(grep -c '"candidate_logprobs"' "$T/fifo")"
for P in prefix_flops least_tokens vllm; do
	run --schedule $P > "$T/$P"
	expect "$P-same-results" '^0$' "$(cmp "$T/fifo" "$T/$P" >/dev/null 2>&1; echo $?)"
	expect "$P-logged" "schedule=$P" "$(cat "$T/err")"
done
run > "$T/default"
expect default-is-prefix_flops 'schedule=prefix_flops' "$(cat "$T/err")"
run --schedule prefix_flops --batch-wait-us 500 > "$T/wait"
expect timed-wait-same-results '^0$' "$(cmp "$T/fifo" "$T/wait" >/dev/null 2>&1; echo $?)"
"$Z" prefill --model $M --schedule lifo < /dev/null > /dev/null 2> "$T/bad"
expect unknown-policy-refused 'schedule' "$(cat "$T/bad")"

S=$T/s
"$Z" serve --model $M --dtype fp32 --socket "$S" --executors 2 --threads 1 --parallel asyncep \
	--schedule prefix_flops --metrics-port 0 --log-level warn 2> "$T/serr" &
PID=$!
i=0
until curl -s --unix-socket "$S" http://x/health 2>/dev/null | grep -q '"ok"'; do
	i=$((i + 1)); [ $i -gt 400 ] && break; sleep 0.05
done
line=$(head -n 1 "$T/in")
expect serve-answers '"candidate_logprobs"' "$(curl -s --unix-socket "$S" -d "$line" http://x/v1/prefill)"
m=$(curl -s --unix-socket "$S" http://x/metrics)
expect metric-threshold '^zprefill_threshold_flops [0-9.e+]+$' "$m"
expect metric-gather '^zprefill_threshold_gather_seconds [0-9.e+-]+$' "$m"
expect metric-rate '^zprefill_threshold_flop_rate [0-9.e+]+$' "$m"
expect metric-load-0 '^zprefill_executor_load_flops\{executor="0"\} 0$' "$m"
expect metric-load-1 '^zprefill_executor_load_flops\{executor="1"\} 0$' "$m"
kill -TERM $PID; wait $PID; PID=

[ $fail -eq 0 ] && echo "test_sched_policies: ok" || echo "test_sched_policies: FAIL"
exit $fail
