#!/bin/sh
# demo.sh -- what `make run` shows: the server started on the embedded default
# (a tiny random Qwen3-MoE with a small Qwen-style tokenizer, tests/models/tiny-tok),
# a few requests answered through its Unix socket, then a clean SIGTERM stop.
set -eu
Z=${ZPREFILL:-./zprefill}
M=${MODEL:-tests/models/tiny-tok}
S=${SOCKET:-build/zprefill.sock}
mkdir -p "$(dirname "$S")"
"$Z" serve --model "$M" --socket "$S" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
i=0
until curl -s --unix-socket "$S" http://x/health 2>/dev/null | grep -q '"ok"'; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; exit 1; }
	sleep 0.05
done
show() { # path body
	echo "--- POST $1  $2"
	curl -s --unix-socket "$S" -d "$2" "http://x$1"; echo
}
echo "--- GET /health"; curl -s --unix-socket "$S" http://x/health; echo
show /v1/prefill '{"id":1,"prompt":"The quick brown fox","candidates":[" yes"," no"],"top_logprobs":3}'
show /classify '{"input":["what a great movie","a dull film"],"labels":["positive","negative"]}'
show /v1/score '{"query":"Is this review positive? ","items":["yes it is","not at all"],"label_token_ids":[283,341],"apply_softmax":true}'
show /v1/rerank '{"query":"capital of France","documents":["Paris is the capital of France","Bananas are yellow"]}'
show /tokenize '{"prompt":"你好, world!"}'
echo "--- zprefill classify --socket $S --labels positive,negative \"what a great movie\""
"$Z" classify --socket "$S" --labels positive,negative "what a great movie"
echo "--- zprefill embed --socket $S hello"
"$Z" embed --socket "$S" hello
echo "--- SIGTERM"
kill -TERM $PID
wait $PID
