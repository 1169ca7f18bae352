#!/bin/sh
# bench_fp8_cpu.sh -- the same model on the cpu in bf16 and with FP8 weights
# (--dtype fp8: bf16 compute over e4m3 weights with 128x128 block scales), at a
# real model's layer shapes with random weights (--random-weights: config.json
# only), runs alternating bf16, fp8, bf16, fp8 ... so load drift hits both.
# Prints each run's prefill tok/s, resident memory and the loaded expert bytes,
# then the medians and the ratios fp8 / bf16. The GEMMs alone: build/bench_fp8.
#
#   tools/bench_fp8_cpu.sh [preset] [layers] [tokens] [pairs] [threads]
#   defaults: qwen3-30b-a3b 1 512 3 2
set -eu
cd "$(dirname "$0")/.."
preset=${1:-qwen3-30b-a3b} layers=${2:-1} tokens=${3:-512} pairs=${4:-3} threads=${5:-2}
dir=${TMPDIR:-/tmp}/zp-bench-fp8-$preset-$layers
[ -x ./zprefill ] || { echo "build first: make" >&2; exit 1; }
python3 tools/gen_model.py --preset "$preset" --num-hidden-layers "$layers" --config-only \
	--out "$dir" >/dev/null
out=$(mktemp)
trap 'rm -f "$out" "$out.log"' EXIT
i=0
while [ "$i" -lt "$pairs" ]; do
	for dt in bf16 fp8; do
		./zprefill bench --model "$dir" --random-weights 1 --dtype "$dt" --tokens "$tokens" \
			--seqs 1 --threads "$threads" --iters 3 >"$out.log" 2>&1 ||
			{ cat "$out.log" >&2; exit 1; }
		tok=$(sed -n 's/.*prefill_tok_s=\([0-9.]*\).*/\1/p' "$out.log" | tail -1)
		res=$(sed -n 's/.* resident_mb=\([0-9.]*\) .*/\1/p' "$out.log" | tail -1)
		exp=$(sed -n 's/.*expert_bytes=\([0-9]*\) .*/\1/p' "$out.log" | head -1)
		dense=$(sed -n 's/.*dense_bytes=\([0-9]*\) .*/\1/p' "$out.log" | head -1)
		echo "$dt $tok $res $exp $dense" >>"$out"
		echo "run $i $dt: prefill_tok_s=$tok resident_mb=$res expert_bytes=$exp dense_bytes=$dense"
	done
	i=$((i + 1))
done
python3 - "$out" "$preset" "$layers" "$tokens" "$threads" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {dt: statistics.median(float(r[1]) for r in rows if r[0] == dt) for dt in ("bf16", "fp8")}
get = {dt: next(r for r in rows if r[0] == dt) for dt in ("bf16", "fp8")}
print(f"{sys.argv[2]} x{sys.argv[3]} layer(s), {sys.argv[4]} tokens, {sys.argv[5]} threads: "
      f"median prefill tok/s bf16 {med['bf16']:.1f}, fp8 {med['fp8']:.1f}, "
      f"fp8/bf16 speed {med['fp8'] / med['bf16']:.2f}; expert bytes fp8/bf16 "
      f"{int(get['fp8'][3]) / int(get['bf16'][3]):.3f} ({int(get['fp8'][3]) / 1e6:.0f} vs "
      f"{int(get['bf16'][3]) / 1e6:.0f} MB); resident fp8/bf16 "
      f"{float(get['fp8'][2]) / float(get['bf16'][2]):.3f} ({get['fp8'][2]} vs {get['bf16'][2]} MB)")
PY
