#!/bin/sh
# test_serve_curl.sh -- every endpoint of the real server through curl
# --unix-socket, and the socket clients (`zprefill classify|score|embed`).
# /v1/prefill over the socket must return byte for byte what `zprefill prefill`
# returns for the same lines (same model, dtype and tokenizer).
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
M=tests/models/tiny-tok
command -v curl >/dev/null || { echo "curl not installed"; exit 77; }
T=$(mktemp -d); S="$T/s"
fail=0
PID=
trap 'kill $PID 2>/dev/null; rm -rf "$T"' EXIT
C="curl -s --unix-socket $S"
start() { # extra serve flags; sets PID once /health says ok
	"$Z" serve --model $M --socket "$S" --dtype fp32 --log-level warn "$@" 2>"$T/log" &
	PID=$!
	i=0
	# a liveness bound, not a speed: under make tsan on a loaded machine start-up
	# takes seconds; a server that died is caught at once
	until $C http://x/health 2>/dev/null | grep -q '"ok"'; do
		kill -0 $PID 2>/dev/null || { echo "FAIL: server ($*) exited"; cat "$T/log"; exit 1; }
		i=$((i + 1)); [ $i -gt 1200 ] && { echo "FAIL: server ($*) not ready in 60 s"; cat "$T/log"; exit 1; }
		sleep 0.05
	done
}
start

expect() { # name, pattern, output
	if printf '%s' "$3" | grep -q -- "$2"; then echo "ok   $1"
	else echo "FAIL $1: wanted /$2/ in: $(printf '%s' "$3" | head -c 300)"; fail=1; fi
}
status() { # method path body -> "<status>"
	$C -o /dev/null -w '%{http_code}' -X "$1" ${3:+-d "$3"} "http://x$2"
}

expect health '{"status":"ok"}' "$($C http://x/health)"
expect models '"id":"tiny-tok","object":"model"' "$($C http://x/v1/models)"
expect tokenize '"count":2,"max_model_len":4096,"tokens":\[' "$($C -d '{"prompt":"yes no"}' http://x/tokenize)"
expect detokenize '"prompt":"yes no"' "$($C -d "{\"tokens\":$($C -d '{"prompt":"yes no"}' http://x/tokenize | sed 's/.*"tokens":\(\[[^]]*\]\).*/\1/')}" http://x/detokenize)"
expect prefill '"candidate_logprobs":\[' "$($C -d '{"prompt":"The fox","candidates":[" yes"," no"]}' http://x/v1/prefill)"
expect score '"scores":\[\[[0-9.e-]*,[0-9.e-]*\],\[' "$($C -d '{"query":"Is it good? ","items":["yes","no"],"label_token_ids":[283,341]}' http://x/v1/score)"
expect score-alias '"object":"scoring"' "$($C -d '{"query":[1,2],"items":[[3],[4,5]],"label_token_ids":[7],"item_first":true}' http://x/score)"
expect classify '"label":"[a-z]*","probs":\[' "$($C -d '{"input":["great movie"],"labels":["positive","negative"]}' http://x/classify)"
expect classify-multi '"num_classes":2' "$($C -d '{"input":"the film","labels":["really good stuff","bad"]}' http://x/classify)"
expect rerank '"results":\[{"index":[01],"relevance_score":' "$($C -d '{"query":"capital of France","documents":["Paris is the capital","bananas"]}' http://x/v1/rerank)"
expect rerank-alias '"results":\[{"index":' "$($C -d '{"query":"q","documents":["a","b","c"],"top_n":1}' http://x/rerank)"
expect embeddings '"object":"embedding","index":0,"embedding":\[' "$($C -d '{"input":"hello"}' http://x/v1/embeddings)"
expect pooling-mean '"object":"pooling","index":0,"data":\[' "$($C -d '{"input":"hello","pooling":"mean"}' http://x/pooling)"
expect rerank-documents '"document":{"text":"b c"}' "$($C -d '{"query":"q","documents":["a",{"text":"b c"}],"return_documents":true}' http://x/rerank)"
expect embeddings-b64 '"embedding":"[A-Za-z0-9+/]*=*"' "$($C -d '{"input":["a","b"],"encoding_format":"base64"}' http://x/v1/embeddings)"
expect metrics 'zprefill_requests_total{endpoint="prefill",status="200"} 1' "$($C http://x/metrics)"
expect metrics-hist 'zprefill_request_seconds_bucket{le="+Inf"}' "$($C http://x/metrics)"
expect bad-json-400 '^400$' "$(status POST /v1/prefill '{oops')"
expect not-found-404 '^404$' "$(status GET /nope '')"
expect method-405 '^405$' "$(status DELETE /health '')"
expect allow-on-405 'Allow: GET' "$(curl -s -i --unix-socket "$S" -d '{}' http://x/health)"

# /v1/prefill over the socket == zprefill prefill, line for line
cat > "$T/req.jsonl" <<'REQ'
{"id":1,"prompt":"The quick brown fox","candidates":[" yes"," no"],"top_logprobs":3}
{"id":"b","prompt_token_ids":[5,6,7,8,9,10],"prompt_logprobs":{"start":2}}
{"id":3,"prompt":"你好，世界 😀","pooling":"mean","normalize":true}
{"id":4,"prompt_token_ids":[1,700]}
REQ
"$Z" prefill --model $M --dtype fp32 < "$T/req.jsonl" > "$T/offline" 2>/dev/null
same_as_offline() { # what: every line through the running server's /v1/prefill
	: > "$T/online"
	while IFS= read -r line; do
		$C -d "$line" http://x/v1/prefill >> "$T/online"; echo >> "$T/online"
	done < "$T/req.jsonl"
	if cmp -s "$T/offline" "$T/online"; then echo "ok   $1 == zprefill prefill (4 lines)"
	else echo "FAIL $1 differs from zprefill prefill:"; diff "$T/offline" "$T/online" | head; fail=1; fi
}
same_as_offline "prefill over the socket"

# the command-line clients
expect client-classify 'input 0: ' "$("$Z" classify --socket "$S" --labels positive,negative "what a film")"
expect client-score 'item 1: ' "$("$Z" score --socket "$S" --query "Is it? " --label-ids 283,341 --softmax yes no)"
expect client-embed 'dim 64 .* norm 1.0000' "$("$Z" embed --socket "$S" hello)"

kill -TERM $PID; wait $PID; rc=$?
expect sigterm-exit-0 '^0$' "$rc"

# the loopback metrics listener: /metrics only
P=$((20000 + $$ % 20000))
start --metrics-port $P
expect tcp-metrics 'zprefill_requests_total' "$(curl -s http://127.0.0.1:$P/metrics)"
expect tcp-metrics-only '^404$' "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/v1/models)"
kill -TERM $PID; wait $PID

# the same lines through servers whose experts are spread over executors
for par in "asyncep 3" "dpep 2" "replicate 2"; do
	set -- $par
	start --executors $2 --threads 1 --parallel $1
	same_as_offline "$1 with $2 executors"
	[ "$1" = asyncep ] && expect asyncep-layer-metrics 'zprefill_layer_wait_seconds_total{executor="0",layer="1"}' "$($C http://x/metrics)"
	kill -TERM $PID; wait $PID
done
# a gather that fails: that request gets a 500 saying so, the executor recovers
# and the next request is exact again (the start-up calibration's three
# gathers come first, so the fourth copy fails)
ZP_FAULT_GATHER_AFTER=4 start --executors 2 --threads 1 --parallel asyncep
first=$(head -n 1 "$T/req.jsonl")
expect gather-fault-500 '^500$' "$($C -o "$T/fault" -w '%{http_code}' -d "$first" http://x/v1/prefill)"
expect gather-fault-message 'forward pass failed: executor 0: gather of layer 1: transport cpu: copy failed (injected fault)' "$(cat "$T/fault")"
expect gather-fault-recovered "$(head -n 1 "$T/offline" | sed 's/[][]/./g')" "$($C -d "$first" http://x/v1/prefill)"
kill -TERM $PID; wait $PID

# (prefill calibrates its threshold first too: three gathers, then the fourth fails)
ZP_FAULT_GATHER_AFTER=4 "$Z" prefill --model $M --dtype fp32 --executors 2 --threads 1 \
	--parallel asyncep --max-batch-tokens 1 < "$T/req.jsonl" > "$T/faulty" 2>/dev/null
# which executor's gather comes first is a race between the two: exactly one
# line (one sequence per batch) fails, and every other line is exact
expect prefill-gather-fault '^1$' "$(grep -c 'copy failed (injected fault)' "$T/faulty")"
expect prefill-after-fault '^0$' "$(paste -d '\n' "$T/offline" "$T/faulty" | paste - - |
	awk -F '\t' '$2 !~ /injected fault/ && $1 != $2' | wc -l)"

[ $fail -eq 0 ] && echo "test_serve_curl: ok" || echo "test_serve_curl: FAIL"
exit $fail
