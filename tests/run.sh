#!/bin/sh
# run.sh -- run each test program with a timeout; exit 0 pass, 77 skip, else fail.
# Prints one summary line at the end: "N passed, N failed, N skipped".
pass=0; fail=0; skip=0; failed=""
T=${TEST_TIMEOUT:-600}
for t in "$@"; do
	name=$(basename "$t")
	start=$(date +%s)
	timeout "$T" "$t" > "${BUILD:-build}/$name.log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $name (${secs}s)";;
	77) skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "${BUILD:-build}/$name.log")";;
	*) fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name (rc=$rc, ${secs}s)";
	   tail -n 30 "${BUILD:-build}/$name.log" | sed 's/^/    /';;
	esac
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
