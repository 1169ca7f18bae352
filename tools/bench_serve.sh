#!/bin/sh
# bench_serve.sh -- what serving costs on top of the forward pass: the same N
# /v1/prefill requests (token ids, so no tokenizer work; candidates asked) run
# offline through `zprefill prefill` (one process, stdin batched) and through
# `zprefill serve` with tools/loadgen replaying them over C connections, in one
# run, side by side. Prints wall times, requests/s and the overhead per request.
#   tools/bench_serve.sh MODEL_DIR [N=2000] [TOKENS=64] [THREADS=2]
set -eu
M=$1; N=${2:-2000}; L=${3:-64}; TH=${4:-2}
Z=${ZPREFILL:-./zprefill}; LG=${LOADGEN:-build/loadgen}
T=$(mktemp -d); S=$T/s
trap 'kill $PID 2>/dev/null; rm -rf "$T"' EXIT
PID=
python3 - "$N" "$L" > "$T/req.jsonl" <<'PY'
import json, random, sys
n, l = int(sys.argv[1]), int(sys.argv[2]); r = random.Random(7)
for i in range(n):
    print(json.dumps({"id": i, "prompt_token_ids": [r.randrange(3, 500) for _ in range(l)],
                      "candidate_token_ids": [283, 341]}, separators=(",", ":")))
PY
now() { date +%s.%N; }
t0=$(now); "$Z" prefill --model "$M" --threads "$TH" < "$T/req.jsonl" > "$T/off" 2>/dev/null; t1=$(now)
off=$(echo "$t1 - $t0" | bc -l)
printf 'model=%s requests=%d tokens_each=%d threads=%d\n' "$M" "$N" "$L" "$TH"
printf 'offline zprefill prefill: wall_s=%.3f req_s=%.0f (load included: see below)\n' "$off" "$(echo "$N / $off" | bc -l)"
t0=$(now); "$Z" prefill --model "$M" --threads "$TH" < /dev/null > /dev/null 2>&1; t1=$(now)
load=$(echo "$t1 - $t0" | bc -l)
offw=$(echo "$off - $load" | bc -l)
printf 'offline without model load (%.3f s): wall_s=%.3f req_s=%.0f\n' "$load" "$offw" "$(echo "$N / $offw" | bc -l)"
"$Z" serve --model "$M" --socket "$S" --threads "$TH" --log-level warn &
PID=$!
until curl -s --unix-socket "$S" http://x/health 2>/dev/null | grep -q '"ok"'; do sleep 0.05; done
for C in 1 16 64; do
	line=$("$LG" --socket "$S" --conns $C --replay "$T/req.jsonl")
	wall=$(echo "$line" | sed 's/.*wall_s=\([0-9.]*\).*/\1/')
	printf 'serve, %2d connections: %s\n' $C "$line"
	printf '   vs offline: time ratio %.2f, overhead per request %.1f us\n' \
		"$(echo "$wall / $offw" | bc -l)" "$(echo "($wall - $offw) / $N * 1000000" | bc -l)"
done
