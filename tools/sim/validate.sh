#!/bin/sh
# validate.sh -- the simulator against the real engine on this machine (issue
# 20, item 4): CPU executors N = 1..4, each policy, scarce and ample caches,
# the paper mix at saturation (1000 requests/s offered, 64 connections).
# For each N: the profile (`zprefill bench --profile`, one thread, as each
# executor runs) taken under the run's own concurrency: N copies at once on
# the run's cores (costmodel.h: the fit takes their CPU seconds, which carry
# what sharing costs, and the simulator divides the cores among the busy
# executors once), beside every run: one before the first run and one after
# each, and each run predicted from the two around it pooled into one file
# (the machine's speed drifts over minutes: a profile a round does not
# follow it within the round).
# Each round, per cache size and policy: the free cores (simulate
# --probe-cores, on the run's cores at its priority), the policy through the
# real engine in process (simulate --measure: no HTTP, the real clock; it
# reports its CPUs less what other processes took of them meanwhile), the
# free cores again. Then each run is simulated on the same file with --cores
# the free cores measured during it (a condition of the run, never its
# result; the probes are reported beside, and stand in where /proc/stat
# cannot be read).
# Every step runs as $RUN: by default `nice -n 19` (a shared machine, the
# conditions are the measurement's); with a core of one's own
# RUN="taskset -c 1" (pinned, normal priority). Prints one table row per
# (N, cache, policy): the measured medians over REPEATS rounds of the four
# policies in turn (ABCD ABCD ...) with their range, the predictions, the
# errors.
#   tools/sim/validate.sh [OUT_DIR] (env: MODEL, SECS, SCALE, NS, CACHES, REPEATS, RUN)
set -eu
OUT=${1:-/tmp/zp-validate}
MODEL=${MODEL:-tests/models/tiny-tok}
SECS=${SECS:-0.7}
SCALE=${SCALE:-0.25}
NS=${NS:-"1 2 3 4"}
CACHES=${CACHES:-"scarce:1048576 ample:67108864"}
REPEATS=${REPEATS:-3}
RUN=${RUN:-nice -n 19}
POLICIES="fifo prefix_flops least_tokens vllm"
mkdir -p "$OUT"
LOG=$OUT/log
nice -n 19 make -s zprefill build/simulate >/dev/null
cp build/simulate "$OUT/simulate" # a rebuild meanwhile does not touch the runs
cp zprefill "$OUT/zprefill"
S=$OUT/simulate
python3 tools/gen_workload.py --workload paper --rate 1000 --duration "$SECS" --seed 1 \
	--vocab 640 --max-tokens 4096 --scale "$SCALE" > "$OUT/w.req"
echo "# $(date -u) model=$MODEL requests=$(wc -l < "$OUT/w.req") scale=$SCALE run=\"$RUN\"" \
	"$(uptime)" | tee -a "$LOG"
probe() { $RUN "$S" --probe-cores 0.3 | sed 's/cores=//'; }
# profile N K: N copies of the profile at once, as N executors run -> prof$N.$K.*.txt
profile() {
	i=0
	pids=
	while [ $i -lt "$1" ]; do
		$RUN "$OUT/zprefill" bench --model "$MODEL" --tokens 2048 --seqs 4 --threads 1 \
			--executors "$1" --profile "$OUT/prof$1.$2.$i.txt" --log-level warn > /dev/null &
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait "$p"; done
}
# pooled N K...: the profiles K... of N in one file, on stdout
# (sh has no locals: its names, pn, pf, pq, are its own)
pooled() {
	pn=$1
	shift
	pf=$OUT/prof$pn.$1.0.txt
	head -2 "$pf"; echo "# concurrency=$pn"; sed -n 3p "$pf"
	for pq in "$@"; do cat "$OUT"/prof$pn.$pq.*.txt; done | grep '^fwd '
	for pq in "$@"; do grep -h '^gather ' "$OUT"/prof$pn.$pq.*.txt; done | sort -k3 -g | sed -n 1p
}
for N in $NS; do
	for C in $CACHES; do
		: > "$OUT/meas-$N-${C%%:*}.txt"
		: > "$OUT/pred-$N-${C%%:*}.txt"
		: > "$OUT/pooled-$N-${C%%:*}.txt"
	done
	r=0
	k=0
	profile "$N" 0
	while [ $r -lt "$REPEATS" ]; do
		r=$((r + 1))
		for C in $CACHES; do
			name=${C%%:*}
			kv=${C#*:}
			for P in $POLICIES; do
				c0=$(probe)
				$RUN "$S" "$MODEL" "$OUT/w.req" --measure --executors "$N" \
					--kv-bytes "$kv" --policies "$P" > "$OUT/m.txt"
				c1=$(probe)
				k=$((k + 1))
				profile "$N" "$k"
				cat "$OUT/m.txt" >> "$OUT/meas-$N-$name.txt"
				share=$(sed -n 's/^# cpu_share=\([0-9.]*\).*/\1/p' "$OUT/m.txt")
				free=$(sed -n 's/^# cpu_share.* free_cores=\([0-9.]*\).*/\1/p' "$OUT/m.txt")
				[ -n "$free" ] || free=$(python3 -c "print(round(($c0 + $c1) / 2, 3))")
				echo "# N=$N cache=$name $P probes=$c0,$c1 run_share=$share free=$free" \
					"prof=$k" | tee -a "$LOG"
			done
		done
	done
	# all of N's profiles in one file (what the table before this one used)
	pooled "$N" $(seq 0 "$k") > "$OUT/prof$N.txt"
	# each run predicted from the profiles beside it, with the free cores
	# measured during it
	grep "^# N=$N " "$LOG" | while read -r _ n c P _ _ free pk; do
		pk=${pk#prof=}
		kv=$(echo "$CACHES" | tr ' ' '\n' | sed -n "s/^${c#cache=}://p")
		pooled "$N" $((pk - 1)) "$pk" > "$OUT/prof$N.run$pk.txt"
		$RUN "$S" "$MODEL" "$OUT/w.req" --profile "$OUT/prof$N.run$pk.txt" --cores "${free#free=}" \
			--executors "$N" --kv-bytes "$kv" --policies "$P" >> "$OUT/pred-$N-${c#cache=}.txt"
		# and from all of N's profiles (the method before the profile beside each
		# run), for the table's comparison line
		$RUN "$S" "$MODEL" "$OUT/w.req" --profile "$OUT/prof$N.txt" --cores "${free#free=}" \
			--executors "$N" --kv-bytes "$kv" --policies "$P" >> "$OUT/pooled-$N-${c#cache=}.txt"
	done
done
python3 tools/sim/validate_table.py "$OUT" "${TABLE_NS:-$NS}" "$CACHES" | tee "$OUT/table.md"
