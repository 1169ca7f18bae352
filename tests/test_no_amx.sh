#!/bin/sh
# test_no_amx.sh -- the kernel (bf16 and FP8), attention and golden tests again with AMX turned off
# (ZP_NO_AMX=1): the AVX512-BF16 GEMM and the f32 attention that CPUs without AMX
# run must pass on an AMX machine too. Skips (77) where there is no AMX to turn off.
cd "$(dirname "$0")/.."
B=${BUILD:-build}
grep -q amx_bf16 /proc/cpuinfo || { echo "no AMX on this CPU: the other runs cover it"; exit 77; }
rc=0
for t in test_gemm test_gemm_fp8 test_attention test_golden; do
	ZP_NO_AMX=1 "$B/$t" > "$B/$t.no-amx.log" 2>&1 || { echo "FAIL: $t with ZP_NO_AMX=1"; tail -n 20 "$B/$t.no-amx.log"; rc=1; }
	grep -q "isa=amx" "$B/$t.no-amx.log" && { echo "FAIL: $t still used AMX"; rc=1; }
	tail -n 1 "$B/$t.no-amx.log"
done
exit $rc
