#!/bin/sh
# project.sh -- the projection (issue 20, item 4): the paper's setups on the
# simulator's roofline (tools/sim/costmodel.c): 8xA100, 8xH100, 8xH200;
# Qwen3-30B-A3B and Qwen3-235B-A22B (their config.json shapes); bf16 and fp8;
# each parallel mode and policy; the paper mix (tools/gen_workload.py at
# --scale 1, real lengths) offered at 1000 requests/s through 256 connections
# (saturation; 3 s of arrivals, ~2900 requests: a shorter run is dominated by
# its drain, where the routed policies hold work back); the prefix caches sized from the memory each device has left
# (--kv-bytes auto); forwards of BATCHES tokens at most (the engine's default
# 8192, and a larger one). The rows go to OUT/rows.txt; the summary, beside
# the paper's ratios and the goals, to stdout.
#   tools/sim/project.sh [OUT_DIR] (env: SECS, BATCHES, CONNS)
set -eu
OUT=${1:-/tmp/zp-project}
SECS=${SECS:-3}
BATCHES=${BATCHES:-"8192 32768"}
CONNS=${CONNS:-256}
N19="nice -n 19"
mkdir -p "$OUT"
make -s build/simulate >/dev/null
cp build/simulate "$OUT/simulate" # a rebuild meanwhile does not touch the runs
S=$OUT/simulate
python3 tools/gen_workload.py --workload paper --rate 1000 --duration "$SECS" --seed 1 \
	--vocab 151936 --max-tokens 32768 --scale 1 > "$OUT/w.req"
: > "$OUT/rows.txt"
for B in $BATCHES; do
for D in a100 h100 h200; do
	for M in 30b-a3b 235b-a22b; do
		for DT in bf16 fp8; do
			F=; [ "$DT" = fp8 ] && F=--fp8
			for MODE in asyncep dpep replicate tp; do
				echo "== device=$D model=$M dtype=$DT mode=$MODE batch=$B" >> "$OUT/rows.txt"
				$N19 "$S" "tests/models/qwen3-$M-config" "$OUT/w.req" --device "$D" \
					--executors 8 --mode "$MODE" $F --kv-bytes auto --conns "$CONNS" \
					--batch-tokens "$B" >> "$OUT/rows.txt"
			done
		done
	done
done
done
python3 tools/sim/project_table.py "$OUT/rows.txt"
