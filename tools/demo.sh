#!/bin/sh
# demo.sh -- what `make run` shows: the server started on the embedded default
# (models/default: a small Qwen3-MoE with the real Qwen3 tokenizer, trained by
# tools/train_default.py to name the WordNet category of a word or a short
# description and to rerank a word's definitions), requests a person can judge
# answered through its Unix socket, then a clean SIGTERM stop. Each answer is
# shown as the server sent it, then read out by python3 (a token id never
# without its text; an answer a person would not give is marked). What it asks
# and the answers a person accepts: tools/demo_items.json (chosen to be judged
# at a glance, not by what the model gets right; tests/test_default_model.c
# checks the engine answers them as transformers does, and which it gets wrong).
set -eu
Z=${ZPREFILL:-./zprefill}
M=${MODEL:-models/default}
S=${SOCKET:-build/zprefill.sock}
mkdir -p "$(dirname "$S")"
export DEMO_SOCKET="$S"
"$Z" serve --model "$M" --socket "$S" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
i=0
# a liveness bound, not a speed: a loaded machine may take seconds
until curl -s --unix-socket "$S" http://x/health 2>/dev/null | grep -q '"ok"'; do
	kill -0 $PID 2>/dev/null || { echo "the server exited"; exit 1; }
	i=$((i + 1)); [ $i -gt 1200 ] && { echo "the server did not start in 60 s"; exit 1; }
	sleep 0.05
done
post() { # path body: the answer on stdout
	curl -s --unix-socket "$S" -d "$2" "http://x$1"
}
show() { # reader path body: the request, the answer (cut after 400 bytes), and
	 # its reading (tools/demo_read.py)
	echo "--- POST $2  $3"
	r=$(post "$2" "$3")
	printf '%s' "$r" | sed 's/"embedding":\[[^]]*\]/"embedding":[...]/g' |
		awk '{ if (length($0) > 400) print substr($0, 1, 400) " ... (" length($0) " bytes)"; else print }'
	printf '%s' "$r" | python3 tools/demo_read.py "$1" "$3"
}
items() { # what: the demo's request of tools/demo_items.json
	python3 tools/demo_read.py request "$1"
}

python3 tools/demo_read.py about "$M"
echo "    Recipe: $M/RECIPE.md."
python3 tools/demo_read.py heldout "$M"
echo "--- GET /health"; curl -s --unix-socket "$S" http://x/health; echo

echo
echo "=== classify: which category? Descriptions written for this demo, then single words"
echo "    (a word alone is harder: the categories were learned mostly from definitions)"
show classify /classify "$(items classify)"

echo
echo "=== rerank: which definition belongs to the word? (WordNet glosses). This checkpoint"
echo "    ranks a held-out word's own definition first of 4 in about 3 of 5 (above); here it does not"
show rerank /v1/rerank "$(items rerank)"

echo
echo "=== embeddings: nearest neighbours by cosine (/v1/embeddings: last token, normalised)"
show neighbours /v1/embeddings '{"input":["a sweet yellow fruit","bread made from wheat flour","a large striped wild cat","a small domestic dog","a tall tree with needles","a flower with thorns","a tool for driving nails","a tool for cutting wood","a city in France","a city in England","a day of the week","a month of the year"]}'

echo
echo "=== the native request: log-probs of chosen next tokens after a prompt"
show prefill /v1/prefill '{"id":1,"prompt":"a small furry animal that purrs","candidates":["animal","food","plant","artifact"]}'

echo
echo "=== tokenize (the Qwen3 tokenizer; each id with its text, from /detokenize)"
show tokenize /tokenize '{"prompt":"a violinist, 你好!"}'

echo
echo "--- zprefill classify --socket $S --labels food,animal,plant \"a red fruit that grows on trees\""
"$Z" classify --socket "$S" --labels food,animal,plant "a red fruit that grows on trees"
echo "--- SIGTERM"
kill -TERM $PID
wait $PID
echo
echo "=== a real model: zprefill serve --model DIR, DIR a Hugging Face checkpoint as published (config.json, *.safetensors, tokenizer.json): Qwen3-30B-A3B, Qwen3-Reranker-0.6B (/v1/rerank) or Qwen3-Embedding-0.6B (/v1/embeddings)"
