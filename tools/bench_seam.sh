#!/bin/sh
# bench_seam.sh -- the CPU path's speed across the device-seam refactor (weights
# packed through a layout object): the pre-seam commit (74c80b3, built in a
# temporary worktree) against this tree's ./zprefill, `zprefill bench` on the
# default device (cpu), old and new alternated in one go (A B A B ...) so machine
# noise falls on both; prints each run's prefill_tok_s and the ratios new/old of
# the medians and of the best runs (on a shared machine the best run is the one
# least disturbed). No threshold: the numbers are for the reader.
#   tools/bench_seam.sh [MODEL=models/default] [SHAPES="512x1 1024x4"] [ROUNDS=5] [BASE=74c80b3] [DTYPE=bf16] [THREADS=2] [ITERS=10]
# A shape is TOKENSxSEQS: 1024x4 is 4096 tokens a forward (the default model's
# sequences stop at 1024). The old tree: a worktree at $SEAM_BASE_DIR (default
# /tmp/base), added at BASE when missing, refused when it holds another commit;
# kept for the next run.
set -eu
cd "$(dirname "$0")/.."
M=${1:-models/default}; SHAPES=${2:-"512x1 1024x4"}; R=${3:-5}; BASE=${4:-74c80b3}
DT=${5:-bf16}; TH=${6:-2}; IT=${7:-10}
W=${SEAM_BASE_DIR:-/tmp/base}
[ -d "$W" ] || git worktree add --detach "$W" "$BASE" > /dev/null 2>&1
if [ "$(git -C "$W" rev-parse HEAD)" != "$(git rev-parse "$BASE^{commit}")" ]; then
	echo "bench_seam: $W holds $(git -C "$W" rev-parse --short HEAD), not $BASE" >&2
	exit 1
fi
nice make -C "$W" -j2 zprefill > /dev/null
nice make -j2 zprefill > /dev/null
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
tok_s() { "$1" bench --model "$M" --dtype "$DT" --tokens "$2" --seqs "$3" --threads "$TH" --iters "$IT" 2>/dev/null |
	sed -n 's/.*prefill_tok_s=\([0-9.]*\).*/\1/p'; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
best() { sort -g | tail -n 1; }
echo "old: $BASE   new: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src kernels || echo +dirty)   model=$M dtype=$DT threads=$TH rounds=$R"
for s in $SHAPES; do
	L=${s%x*}; B=${s#*x}
	for _ in $(seq "$R"); do
		tok_s "$W/zprefill" "$L" "$B" >> "$T/$s.old"
		tok_s ./zprefill "$L" "$B" >> "$T/$s.new"
	done
	printf 'tokens=%d (%sx%s) old_tok_s=[%s] new_tok_s=[%s] median_ratio=%.3f best_ratio=%.3f\n' \
		$((L * B)) "$L" "$B" "$(paste -sd' ' "$T/$s.old")" "$(paste -sd' ' "$T/$s.new")" \
		"$(echo "$(median < "$T/$s.new") / $(median < "$T/$s.old")" | bc -l)" \
		"$(echo "$(best < "$T/$s.new") / $(best < "$T/$s.old")" | bc -l)"
done
