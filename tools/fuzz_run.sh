#!/bin/bash
# fuzz_run.sh -- run libFuzzer targets for a duration each and report them:
#   tools/fuzz_run.sh SECONDS [TARGET...]     (`make fuzz-build` first; `make fuzz`
#                                              runs every target this way)
# Each target (build/fuzz/fuzz_NAME) runs on its corpus build/fuzz/corpus-NAME,
# seeded from tests/fuzz-corpus/NAME, from the repository root (some read
# tests/data). Findings (crash-, leak-, timeout-, oom- files: a timeout is an
# input over 10 s, an oom one over 2 GB) land in build/fuzz/artifacts-NAME/.
# RUNS=N stops a target after N executions (it stops at SECONDS either way).
# JOBS=N runs N targets at once (default 1). Prints one table row per target:
# executions, libFuzzer's coverage (cov: edges, ft: features), corpus size,
# findings, seconds, and a final line; exit 1 when any target found anything.
set -u
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SECONDS [TARGET...]" >&2; exit 2; }
secs=$1; shift
B=${FUZZ_BUILD:-build/fuzz}
targets=${*:-http request safetensors config tokenizer_json tokenizer ini}
jobs=${JOBS:-1}

run_one() { # target -> $B/run-$t.log, $B/row-$t
	t=$1
	bin=$B/fuzz_$t; corpus=$B/corpus-$t; art=$B/artifacts-$t
	[ -x "$bin" ] || { echo "$bin missing: make fuzz-build" >&2; echo "$t - - - - missing -" > "$B/row-$t"; return; }
	mkdir -p "$corpus" "$art"
	[ -d tests/fuzz-corpus/$t ] && cp -n tests/fuzz-corpus/$t/* "$corpus"/ 2>/dev/null
	before=$(ls "$art" | wc -l)
	start=$(date +%s)
	"$bin" -max_total_time="$secs" ${RUNS:+-runs=$RUNS} -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "$corpus" > "$B/run-$t.log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/run-$t.log" | tail -n 1)
	last=$(grep -E '^#[0-9]+.*cov: ' "$B/run-$t.log" | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
	found=$(( $(ls "$art" | wc -l) - before ))
	[ $rc -ne 0 ] && [ $found -eq 0 ] && found="rc=$rc"
	echo "$t ${execs:-?} ${cov:-?} ${ft:-?} ${corp:-?} $found $took" > "$B/row-$t"
}

mkdir -p "$B"
n=0
for t in $targets; do
	[ $n -ge "$jobs" ] && { wait -n; n=$((n - 1)); }
	run_one "$t" &
	n=$((n + 1))
done
wait
printf '%-16s %12s %8s %8s %8s %9s %6s\n' target executions cov ft corpus findings secs
bad=0
for t in $targets; do
	set -- $(cat "$B/row-$t")
	printf '%-16s %12s %8s %8s %8s %9s %6s\n' "$@"
	[ "$6" = 0 ] || bad=1
done
[ $bad -eq 0 ] && echo "fuzz: no findings" || echo "fuzz: findings: see $B/artifacts-*/ and $B/run-*.log"
exit $bad
