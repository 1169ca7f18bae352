#!/bin/sh
# bench_frontend.sh -- the frontend's policies side by side (issue 10): for each
# workload tools/gen_workload.py writes once (the paper's real-task mix, the
# synthetic sweeps without sharing, scoring traffic), `zprefill serve` with 2
# executors runs it under each policy in turn (fifo, prefix_flops,
# least_tokens, vllm; the same file, the same model), tools/loadgen replaying
# it open loop. One line per run:
#   req_s tok_s       loadgen's (requests and prompt tokens answered per second)
#   p50_ms p99_ms     latency from each request's scheduled arrival
#   computed_ratio    computed / prompt tokens   } from /metrics: the prefix
#   hit_rate          cache hit / prompt tokens  } cache's counters (n/a
#                                                  when the server has none)
#   exec_busy         max/min of the executors' summed layer seconds (balance)
# The prefix cache is on (--kv-cache-bytes KV) when the binary has the flag.
#   tools/bench_frontend.sh [MODEL_DIR=tests/models/tiny-tok] [SECONDS=5] [SCALE=0.1]
# Env: RATE_<workload> (arrivals/s: RATE_paper, RATE_sweep_mid, ...), KV (bytes,
# default 64 MiB), POLICIES, WORKLOADS, SEED, THREADS (per executor, default 1),
# SCORE_QUERY (score's query tokens, default 128: the 1K of the issue's goal is
# minutes per request here without siblings).
# Each workload's header says its reusable tokens: what an unbounded prefix
# cache could skip (gen_workload.py --stats), the hit rate's ceiling.
set -eu
M=${1:-tests/models/tiny-tok}; SECS=${2:-5}; SCALE=${3:-0.1}
Z=${ZPREFILL:-./zprefill}; LG=${LOADGEN:-build/loadgen}
POLICIES=${POLICIES:-fifo prefix_flops least_tokens vllm}
WORKLOADS=${WORKLOADS:-paper sweep-long sweep-mid sweep-xl score}
KV=${KV:-67108864}; SEED=${SEED:-1}; TH=${THREADS:-1}; SQ=${SCORE_QUERY:-128}
T=$(mktemp -d); S=$T/s; PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
PORT=$((20000 + $$ % 20000))

read_cfg() { python3 -c "import json,sys; c=json.load(open(sys.argv[1]+'/config.json')); print(c[sys.argv[2]])" "$M" "$1"; }
VOCAB=$(read_cfg vocab_size); MAXP=$(read_cfg max_position_embeddings)
KVFLAG=
if "$Z" serve --help 2>&1 | grep -q -- '--kv-cache-bytes'; then KVFLAG="--kv-cache-bytes $KV"; fi

rate_of() { # default arrivals per second by workload, scaled for a 2-core machine
	v=$(printf 'RATE_%s' "$1" | tr '-' '_')
	eval "r=\${$v:-}"
	if [ -n "$r" ]; then echo "$r"; return; fi
	case $1 in
	paper) echo 2 ;; sweep-long) echo 2 ;; sweep-mid) echo 8 ;; sweep-xl) echo 0.25 ;;
	score) echo 0.5 ;; *) echo 2 ;;
	esac
}

metric() { # name [label filter]: the sum of the matching samples, or n/a
	awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"($|{)" && (f == "" || index($1, f)) { s += $2; k = 1 }
		END { if (k) printf "%.6g", s; else printf "n/a" }' "$T/metrics"
}

ratio() { # a b: a / b, or n/a
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a";
		else printf "%.3f", a / b }'
}

printf 'model=%s seconds=%s scale=%s executors=2 threads=%s kv_cache=%s\n' "$M" "$SECS" "$SCALE" \
	"$TH" "${KVFLAG:-none}"
for W in $WORKLOADS; do
	R=$(rate_of "$W")
	python3 tools/gen_workload.py --workload "$W" --rate "$R" --duration "$SECS" --seed "$SEED" \
		--vocab "$VOCAB" --max-tokens "$MAXP" --scale "$SCALE" --score-query "$SQ" --stats > "$T/w.req" 2> "$T/w.stats"
	n=$(wc -l < "$T/w.req")
	printf '\n== %s: %d requests at %s/s: %s\n' "$W" "$n" "$R" "$(cat "$T/w.stats")"
	for P in $POLICIES; do
		rm -f "$S"
		# shellcheck disable=SC2086 # KVFLAG is a flag and its value, or nothing
		"$Z" serve --model "$M" --socket "$S" --executors 2 --threads "$TH" --schedule "$P" \
			--metrics-port $PORT --log-level warn $KVFLAG &
		PID=$!
		until curl -s --unix-socket "$S" http://x/health 2>/dev/null | grep -q '"ok"'; do
			sleep 0.05
		done
		line=$("$LG" --socket "$S" --conns 64 --replay "$T/w.req" || true)
		curl -s "http://127.0.0.1:$PORT/metrics" > "$T/metrics"
		kill -TERM $PID; wait $PID || true; PID=
		field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
		prompt=$(metric zprefill_prompt_tokens_total)
		comp=$(metric zprefill_computed_tokens_total)
		hit=$(metric zprefill_prefix_cache_hit_tokens_total)
		b0=$(metric zprefill_layer_seconds_total 'executor="0"')
		b1=$(metric zprefill_layer_seconds_total 'executor="1"')
		# an executor that ran no layer has no samples: 0, when the other has some
		busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN { if (a == "n/a" && b == "n/a") { print "n/a"; exit }
			if (a == "n/a") a = 0; if (b == "n/a") b = 0
			hi = a > b ? a : b; lo = a > b ? b : a; printf "%.3f/%.3f", hi, lo }')
		printf '%-12s req_s=%s tok_s=%s p50_ms=%s p99_ms=%s computed_ratio=%s hit_rate=%s exec_busy_s=%s ok=%s other=%s T_flops=%s\n' \
			"$P" "$(field req_s)" "$(field tok_s)" "$(field p50_ms)" "$(field p99_ms)" \
			"$(ratio "$comp" "$prompt")" "$(ratio "$hit" "$prompt")" "$busy" "$(field ok)" \
			"$(field other)" "$(metric zprefill_threshold_flops)"
	done
done
