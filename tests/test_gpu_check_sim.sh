#!/bin/sh
# test_gpu_check_sim.sh -- tools/gpu_check.sh --device sim, as CI runs it before
# a GPU run: every step that needs no silicon, on the sim device; the summary
# must have its correctness rows and no FAIL or TIMEOUT.
cd "$(dirname "$0")/.." || exit 1
case ${BUILD:-build} in
*tsan*) # ThreadSanitizer runs the steps 5-15x slower than the check's budget allows
	echo "skipped under tsan: each of its steps (test_kernels_v1, test_backend_ops, test_golden, test_asyncep) runs under tsan as its own test"
	exit 77 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A test has no timing threshold: the budget and the step timeouts, which
# ration a lent GPU's minutes, are here only hang detectors, wide enough for a
# loaded 2-core machine (a run at load 12 took more than the 280 s default).
GPU_CHECK_BUDGET_S=${GPU_CHECK_BUDGET_S:-3600} GPU_CHECK_TIMEOUT_SCALE=${GPU_CHECK_TIMEOUT_SCALE:-6} \
	tools/gpu_check.sh --device sim "$tmp/out" > "$tmp/stdout" 2>&1
rc=$?
cat "$tmp/stdout"
s=$tmp/out/summary.txt
[ -s "$s" ] || { echo "FAIL: no summary.txt (rc=$rc)"; tail -n 40 "$tmp/out/log.txt" 2> /dev/null; exit 1; }
if grep -E ' (FAIL|TIMEOUT) ' "$s"; then
	echo "FAIL: gpu_check --device sim has failing rows"
	tail -n 60 "$tmp/out/log.txt"
	exit 1
fi
for want in "test_kernels_v1" "test_backend_ops: cpu vs sim" "test_golden on sim" \
	"goldens on sim" "W8A8 goldens on sim" "batch invariance on sim" "test_asyncep" \
	"test_fp8_kernels" "test_gds"; do
	grep "^$want" "$s" | grep -q " PASS " || { echo "FAIL: no PASS row for \"$want\""; exit 1; }
done
[ "$rc" -eq 0 ] || { echo "FAIL: gpu_check exited $rc with no failing row"; exit 1; }
echo "test_gpu_check_sim: ok"
