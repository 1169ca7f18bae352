#!/bin/sh
# fetch_peer_tests.sh -- download the peers' own HTTP test files that
# tests/test_peers.sh runs against zprefill (their code: not committed here),
# at the commits this harness was checked with, into DIR (default
# build/peers). Needs raw.githubusercontent.com.
set -eu
DIR=${1:-build/peers}
RAW=https://raw.githubusercontent.com
mkdir -p "$DIR/vllm" "$DIR/tei"
get() { curl -fsSL "$RAW/$1" -o "$2" && echo "fetched $2"; }
get vllm-project/vllm/1a2174563c6da165dc1f932dda69e2e4cbfc33f0/tests/entrypoints/pooling/score/test_online_rerank.py \
	"$DIR/vllm/test_online_rerank.py"
get vllm-project/vllm/21cc78625795b8bd3bcebf50edb613ce7271329b/tests/entrypoints/pooling/score/test_online_score.py \
	"$DIR/vllm/test_online_score.py"
get huggingface/text-embeddings-inference/0d124dc9773be6ac5a9a57d8439aba9bbbf33273/docs/openapi.json \
	"$DIR/tei/openapi.json"
