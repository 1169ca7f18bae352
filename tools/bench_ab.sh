#!/bin/sh
# bench_ab.sh -- two zprefill binaries (before, after) on the same model and shapes,
# runs alternated in one go so machine noise falls on both; prints each run's
# prefill_tok_s, and the ratios after/before of the medians and of the best runs
# per shape (on a shared machine the best run is the one least disturbed).
#   tools/bench_ab.sh BEFORE AFTER MODEL_DIR ["512 4096"] ["bf16 fp32"] [ROUNDS=5] [THREADS=2]
set -eu
A=$1; B=$2; M=$3; SHAPES=${4:-"512 4096"}; DTYPES=${5:-"bf16 fp32"}; R=${6:-5}; TH=${7:-2}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
tok_s() { "$1" bench --model "$M" --dtype "$2" --tokens "$3" --seqs 1 --threads "$TH" --iters 2 2>/dev/null |
	sed -n 's/.*prefill_tok_s=\([0-9.]*\).*/\1/p'; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
best() { sort -g | tail -n 1; }
for d in $DTYPES; do
	for L in $SHAPES; do
		k=$d-$L
		for i in $(seq "$R"); do
			tok_s "$A" "$d" "$L" >> "$T/$k.a"
			tok_s "$B" "$d" "$L" >> "$T/$k.b"
		done
		a=$(median < "$T/$k.a"); b=$(median < "$T/$k.b")
		ba=$(best < "$T/$k.a"); bb=$(best < "$T/$k.b")
		printf 'dtype=%s tokens=%s before_tok_s=[%s] after_tok_s=[%s] median_ratio=%.3f best_ratio=%.3f\n' \
			"$d" "$L" "$(paste -sd' ' "$T/$k.a")" "$(paste -sd' ' "$T/$k.b")" \
			"$(echo "$b / $a" | bc -l)" "$(echo "$bb / $ba" | bc -l)"
	done
done
