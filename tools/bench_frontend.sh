#!/bin/sh
# bench_frontend.sh -- the frontend's policies side by side (issues 10, 20): for
# each workload tools/gen_workload.py writes once (the paper's real-task mix,
# the synthetic sweeps without sharing, scoring traffic) and each cache case
# (ample: the working set fits; scarce: it does not), `zprefill serve` with 2
# executors runs it under each policy in turn, alternating (A B A B ... for
# REPEATS rounds: drift on a shared machine falls on every policy alike),
# tools/loadgen replaying it open loop. One line per run:
#   req_s tok_s       loadgen's (requests and prompt tokens answered per second)
#   p50_ms p99_ms     latency from each request's scheduled arrival
#   computed_ratio    computed / prompt tokens   } from /metrics: the prefix
#   hit_rate          cache hit / prompt tokens  } cache's counters (n/a
#                                                  when the server has none)
#   exec_busy         max/min of the executors' summed layer seconds (balance)
#   batches           forwards run (/metrics)
#   idle              the executors' idle share of the replay: 1 - forward
#                     seconds / (executors x wall seconds); timing-free
#                     supporting counts beside tokens/s
# then one `median` line per policy (the medians of its runs, its tokens/s over
# fifo's median, and the median of each round's ratio to fifo's run beside it,
# with every round's: on a shared machine speed drifts, and a round's two runs
# are minutes apart at most), the numbers to quote. With BASELINE=path (an
# older zprefill) every round runs each policy on the baseline too (labelled
# POLICY@base, before the same policy on ZPREFILL), and each policy's median
# line adds its tokens/s over its baseline's, round by round: before and
# after under the same conditions.
#   tools/bench_frontend.sh [MODEL_DIR=tests/models/tiny-tok] [SECONDS=5] [SCALE=0.1]
# Env: RATE_<workload> (arrivals/s: RATE_paper, RATE_sweep_mid, ...), CACHES
# (default "ample scarce"), KV_AMPLE (bytes per executor, default 64 MiB),
# KV_SCARCE (default 1 MiB), REPEATS (default 2), POLICIES, WORKLOADS, SEED,
# THREADS (per executor, default 1), SCORE_QUERY (score's query tokens,
# default 128), EXECUTORS (default 2), ZPREFILL, LOADGEN (the binaries),
# BASELINE (a zprefill to compare against, see above).
# Each workload's header says its reusable tokens: what an unbounded prefix
# cache could skip (hit_ceiling), and for each cache case what one LRU cache
# as big as both executors' together could (lru_N_blocks_ceiling): the hit
# rate's ceilings.
set -eu
M=${1:-tests/models/tiny-tok}; SECS=${2:-5}; SCALE=${3:-0.1}
Z=${ZPREFILL:-./zprefill}; LG=${LOADGEN:-build/loadgen}
POLICIES=${POLICIES:-fifo prefix_flops least_tokens vllm}
WORKLOADS=${WORKLOADS:-paper sweep-long sweep-mid sweep-xl score}
CACHES=${CACHES:-ample scarce}; REPEATS=${REPEATS:-2}
KV_AMPLE=${KV_AMPLE:-67108864}; KV_SCARCE=${KV_SCARCE:-1048576}
SEED=${SEED:-1}; TH=${THREADS:-1}; SQ=${SCORE_QUERY:-128}; NX=${EXECUTORS:-2}
T=$(mktemp -d); S=$T/s; PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
PORT=$((20000 + $$ % 20000))

read_cfg() { python3 -c "import json,sys; c=json.load(open(sys.argv[1]+'/config.json')); print(c[sys.argv[2]])" "$M" "$1"; }
VOCAB=$(read_cfg vocab_size); MAXP=$(read_cfg max_position_embeddings)
LAYERS=$(read_cfg num_hidden_layers); KVH=$(read_cfg num_key_value_heads); HD=$(read_cfg head_dim)
BLOCK_BYTES=$((LAYERS * 16 * 2 * KVH * HD * 4)) # kvcache.h: f32 keys and values
"$Z" serve --help 2>&1 | grep -q -- '--kv-cache-bytes' ||
	{ echo "bench_frontend: $Z has no --kv-cache-bytes (no prefix cache to compare)" >&2; exit 1; }

rate_of() { # default arrivals per second by workload, scaled for a 2-core machine
	v=$(printf 'RATE_%s' "$1" | tr '-' '_')
	eval "r=\${$v:-}"
	if [ -n "$r" ]; then echo "$r"; return; fi
	case $1 in
	paper) echo 2 ;; sweep-long) echo 2 ;; sweep-mid) echo 8 ;; sweep-xl) echo 0.25 ;;
	score) echo 0.5 ;; *) echo 2 ;;
	esac
}

kv_of() { # cache case -> bytes per executor
	case $1 in ample) echo "$KV_AMPLE" ;; scarce) echo "$KV_SCARCE" ;; *) echo "$1" ;; esac
}

metric() { # name [label filter]: the sum of the matching samples, or n/a
	awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"($|{)" && (f == "" || index($1, f)) { s += $2; k = 1 }
		END { if (k) printf "%.6g", s; else printf "n/a" }' "$T/metrics"
}

ratio() { # a b: a / b, or n/a
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a";
		else printf "%.3f", a / b }'
}

run_one() { # policy kv [binary label]: one serve + replay; prints its line and appends it
	    # to $T/runs
	rm -f "$S"
	"${3:-$Z}" serve --model "$M" --socket "$S" --executors "$NX" --threads "$TH" --schedule "$1" \
		--metrics-port $PORT --log-level warn --kv-cache-bytes "$2" &
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
	fwd=$(metric zprefill_forward_seconds_total)
	idle=$(awk -v f="$fwd" -v w="$(field wall_s)" -v n="$NX" 'BEGIN { if (f == "n/a" || w == "" ||
		w <= 0) print "n/a"; else printf "%.3f", 1 - f / (n * w) }')
	out=$(printf '%-12s req_s=%s tok_s=%s p50_ms=%s p99_ms=%s computed_ratio=%s hit_rate=%s exec_busy_s=%s batches=%s idle=%s ok=%s other=%s T_flops=%s' \
		"${4:-$1}" "$(field req_s)" "$(field tok_s)" "$(field p50_ms)" "$(field p99_ms)" \
		"$(ratio "$comp" "$prompt")" "$(ratio "$hit" "$prompt")" "$busy" "$(metric zprefill_batches_total)" "$idle" "$(field ok)" \
		"$(field other)" "$(metric zprefill_threshold_flops)")
	echo "$out"
	echo "$out" >> "$T/runs"
}

# The medians of each policy's runs in $T/runs, and tokens/s over fifo's.
summary() {
	python3 - "$T/runs" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[1:])
    runs.setdefault(f[0], []).append(kv)
def med(rs, k):
    v = [float(r[k]) for r in rs if r.get(k) not in (None, "", "n/a")]
    return statistics.median(v) if v else None
def ratios(rs, ref):  # each round's tokens/s over ref's run of the same round
    v = [float(a["tok_s"]) / float(b["tok_s"]) for a, b in zip(rs, ref)
         if a.get("tok_s") not in (None, "", "n/a") and b.get("tok_s") not in (None, "", "n/a")
         and float(b["tok_s"]) > 0]
    return "n/a" if not v else "%.3f(%s)" % (statistics.median(v), "/".join("%.2f" % x for x in v))
for p, rs in runs.items():
    pol, _, tag = p.partition("@")
    fifo = runs.get("fifo" + ("@" + tag if tag else ""), [])
    base = med(fifo, "tok_s")
    m = {k: med(rs, k) for k in ("req_s", "tok_s", "p50_ms", "p99_ms", "computed_ratio",
                                 "hit_rate", "batches", "idle")}
    x = "n/a" if not base or m["tok_s"] is None else "%.3f" % (m["tok_s"] / base)
    line = ("median %-12s runs=%d " % (p, len(rs)) +
            " ".join("%s=%s" % (k, "n/a" if v is None else "%.4g" % v) for k, v in m.items()) +
            " tok_s_vs_fifo=" + x + " rounds_vs_fifo=" + ratios(rs, fifo))
    if not tag and (p + "@base") in runs:
        line += " rounds_vs_base=" + ratios(rs, runs[p + "@base"])
    print(line)
EOF
}

printf 'model=%s seconds=%s scale=%s executors=%s threads=%s caches="%s" repeats=%s block_bytes=%s\n' \
	"$M" "$SECS" "$SCALE" "$NX" "$TH" "$CACHES" "$REPEATS" "$BLOCK_BYTES"
for W in $WORKLOADS; do
	R=$(rate_of "$W")
	python3 tools/gen_workload.py --workload "$W" --rate "$R" --duration "$SECS" --seed "$SEED" \
		--vocab "$VOCAB" --max-tokens "$MAXP" --scale "$SCALE" --score-query "$SQ" > "$T/w.req"
	n=$(wc -l < "$T/w.req")
	for C in $CACHES; do
		KV=$(kv_of "$C")
		python3 tools/gen_workload.py --workload "$W" --rate "$R" --duration "$SECS" --seed "$SEED" \
			--vocab "$VOCAB" --max-tokens "$MAXP" --scale "$SCALE" --score-query "$SQ" --stats \
			--cache-blocks $((NX * KV / BLOCK_BYTES)) 2> "$T/w.stats" > /dev/null
		printf '\n== %s, %s cache (%s bytes per executor): %d requests at %s/s: %s\n' "$W" "$C" \
			"$KV" "$n" "$R" "$(cat "$T/w.stats")"
		: > "$T/runs"
		r=0
		while [ $r -lt "$REPEATS" ]; do
			for P in $POLICIES; do
				[ -n "${BASELINE:-}" ] && run_one "$P" "$KV" "$BASELINE" "$P@base"
				run_one "$P" "$KV"
			done
			r=$((r + 1))
		done
		summary
	done
done
