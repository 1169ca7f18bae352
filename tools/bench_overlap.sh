#!/bin/sh
# bench_overlap.sh -- AsyncEP's overlap curve on this machine: exposed gather
# wait / layer time as the batch per executor grows, for N executors, against
# the calibrated threshold T (in tokens per layer); then asyncep against
# replicate tokens/s and memory at each batch size. One run, side by side.
#   tools/bench_overlap.sh MODEL_DIR [N=2] [THREADS=2] [TOKENS="16 64 256 1024 4096 8192"]
set -eu
M=$1; N=${2:-2}; TH=${3:-2}; LIST=${4:-"16 64 256 1024 4096 8192"}
Z=${ZPREFILL:-./zprefill}
printf 'model=%s executors=%s threads=%s\n' "$M" "$N" "$TH"
printf '%8s %10s %12s %12s %12s %12s %12s\n' tokens/ex wait_frac asyncep_tok/s replicate_tok/s ratio async_MB repl_MB
cal=""
for T in $LIST; do
	L=$T; [ $L -gt 1024 ] && L=1024
	S=$((T / L))
	a=$("$Z" bench --model "$M" --tokens $L --seqs $S --threads $TH --executors $N --parallel asyncep --iters 2 2>/dev/null)
	r=$("$Z" bench --model "$M" --tokens $L --seqs $S --threads $TH --executors $N --parallel replicate --iters 2 2>/dev/null)
	[ -z "$cal" ] && cal=$(echo "$a" | grep '^calibration')
	w=$(echo "$a" | sed -n 's/^overall exposed_wait_frac=//p')
	at=$(echo "$a" | tail -n 1 | sed 's/.*prefill_tok_s=//')
	rt=$(echo "$r" | tail -n 1 | sed 's/.*prefill_tok_s=//')
	am=$(echo "$a" | tail -n 1 | sed 's/.*resident_mb=\([0-9]*\).*/\1/')
	rm=$(echo "$r" | tail -n 1 | sed 's/.*resident_mb=\([0-9]*\).*/\1/')
	printf '%8s %10s %12s %12s %12.2f %12s %12s\n' "$T" "$w" "$at" "$rt" "$(echo "$at / $rt" | bc -l)" "$am" "$rm"
done
echo "$cal"
