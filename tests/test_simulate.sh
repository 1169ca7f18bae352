#!/bin/sh
# test_simulate.sh -- build/simulate reproduces what it can be checked against
# exactly (tools/simulate.c, tools/sim/costmodel.c):
#   - one executor under fifo with no cache: each forward takes exactly the
#     profile's fitted time (a burst: one forward of every request; spaced
#     requests: one forward each);
#   - asyncep's exposed wait: zero when a layer's compute exceeds the gather,
#     the difference when not (a 2-layer model: layer 1's gather overlaps
#     layer 0);
#   - the roofline's memory check: Qwen3-235B-A22B in bf16 does not fit one
#     H100 whole; Qwen3-30B-A3B fp8 under asyncep does; dpep and tp report
#     their communication;
#   - `zprefill bench --profile` writes a file the simulator reads.
set -u
cd "$(dirname "$0")/.."
Z=${ZPREFILL:-./zprefill}
S=${BUILD:-build}/simulate
M=tests/models/tiny-tok   # 2 MoE layers, vocab 640
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
expect() { # name regex value
	if printf '%s\n' "$3" | grep -Eq "$2"; then echo "ok   $1"; else
		echo "FAIL $1: wanted /$2/ in: $(printf '%s' "$3" | head -c 400)"; fail=1; fi
}
[ -x "$S" ] || { echo "FAIL no $S (make $S)"; exit 1; }

# A profile: forward = A + B tokens, all of it in the experts (so the layers'
# split is known), and a gather of G seconds at 2 executors.
profile() { # A B G [CONCURRENCY: wall = CONCURRENCY x the CPU seconds, as N copies on one core]
	python3 - "$@" <<'PY'
import sys
a, b, g = map(float, sys.argv[1:4])
k = int(sys.argv[4]) if len(sys.argv) > 4 else 0
print("# zprefill profile v2")
print("# device=cpu kernels=test dtype=bf16 threads=1 executors=2 parallel=asyncep model=test")
if k:
    print("# concurrency=%d" % k)
print("# fwd tokens seqs seq_tokens pairs forward_s forward_cpu_s embed_s norm_s qkv_s rope_s "
      "attn_s o_s dense_s router_s dispatch_s acquire_s experts_s combine_s out_s")
for n, L in ((16, 16), (64, 64), (256, 64), (1024, 512), (2048, 2048), (4096, 512)):
    s = n // L
    t = a + b * n
    ops = [0] * 13
    ops[10] = t
    print("fwd %d %d %d %d %.9g %.9g %s" % (n, s, L, s * L * (L + 1) // 2, t * max(k, 1), t,
                                             " ".join("%.9g" % x for x in ops)))
if g > 0:
    print("gather 2 1000 %.9g" % g)
PY
}
ids() { python3 -c "import random; r = random.Random($2); print(','.join(str(r.randrange(3, 640)) for _ in range($1)))"; }
req() { echo "@$1 /v1/prefill {\"prompt_token_ids\":[$(ids "$2" "$3")],\"candidate_token_ids\":[5,6]}"; }

profile 0.001 1e-5 0 > "$T/p1"
{ req 0 100 1; req 0 200 2; req 0 300 3; } > "$T/burst"
{ req 0 100 1; req 1 200 2; req 2 300 3; } > "$T/spaced"
sim() { "$S" "$M" "$@" 2>&1; }

# one forward of 600 tokens: 1 ms + 6 ms, every request's latency
out=$(sim "$T/burst" --profile "$T/p1" --executors 1 --kv-bytes 0 --policies fifo --mode replicate)
expect "burst: one forward, its fitted time" "predicted +fifo .*p50_ms=7\.00 p99_ms=7\.00 .*ok=3 " "$out"
# three forwards of 2, 3 and 4 ms
out=$(sim "$T/spaced" --profile "$T/p1" --executors 1 --kv-bytes 0 --policies fifo --mode replicate)
expect "spaced: one forward each" "predicted +fifo .*p50_ms=3\.00 .*ok=3 " "$out"
expect "spaced: the last ends at 2 s + 4 ms" "tok_s=299\.4 " "$out"

# a profile taken 2 copies at once on one core (validate.sh's way): its wall
# times (2x its CPU seconds) already hold the slicing, which the simulator
# counts once, from --cores: one executor alone takes the CPU seconds (7 ms,
# not 14), two busy at once on 1 core end together at twice that (2 x 4 ms,
# not 2 x 8)
profile 0.001 1e-5 0 2 > "$T/pc"
{ req 0 300 1; req 0 300 2; } > "$T/two"
out=$(sim "$T/burst" --profile "$T/pc" --executors 1 --cores 1 --kv-bytes 0 --policies fifo --mode replicate)
expect "shared profile, one executor: its CPU seconds" "predicted +fifo .*p50_ms=7\.00 p99_ms=7\.00 " "$out"
out=$(sim "$T/two" --profile "$T/pc" --executors 2 --cores 1 --kv-bytes 0 --policies least_tokens \
	--mode replicate --wait-ms 0)
expect "shared profile, two on one core: sliced once" "predicted +least_tokens .*p50_ms=8\.00 p99_ms=8\.00 .*fwd_tokens=300" "$out"
# as the engine's pump: with none busy, every idle executor is forced to cut
# (both forwards start at once, 4 ms each on 2 cores; not the second after
# the 5 ms batch wait)
out=$(sim "$T/two" --profile "$T/pc" --executors 2 --cores 2 --kv-bytes 0 --policies least_tokens \
	--mode replicate --wait-ms 5)
expect "every idle executor forced when none is busy" "predicted +least_tokens .*p50_ms=4\.00 p99_ms=4\.00 " "$out"
out=$(sim "$T/burst" --profile "$T/pc" --executors 1 --kv-bytes 0 --policies fifo --mode replicate)
expect "shared profile without --cores: refused" "taken 2 copies at once.*give --cores" "$out"

# asyncep on 2 layers of 5 ms each: a 3 ms gather hides, an 8 ms one shows 3 ms
profile 0.010 0 0.003 > "$T/p2"
profile 0.010 0 0.008 > "$T/p3"
{ req 0 100 1; } > "$T/one"
out=$(sim "$T/one" --profile "$T/p2" --executors 2 --kv-bytes 0 --policies fifo)
expect "gather under the compute: no wait" "p50_ms=10\.00 .*wait_frac=0\.0000 " "$out"
out=$(sim "$T/one" --profile "$T/p3" --executors 2 --kv-bytes 0 --policies fifo)
expect "gather over the compute: the difference" "p50_ms=13\.00 .*wait_frac=0\.2308 " "$out"
out=$(sim "$T/one" --profile "$T/p3" --executors 2 --kv-bytes 0 --policies fifo --mode replicate)
expect "replicate gathers nothing" "p50_ms=10\.00 .*wait_frac=0\.0000 " "$out"
out=$(sim "$T/one" --profile "$T/p3" --executors 2 --mode dpep)
expect "dpep needs a device model" "needs a device" "$out"

# the roofline: memory, and each mode's communication
B=tests/models/qwen3-235b-a22b-config
Q=tests/models/qwen3-30b-a3b-config
python3 tools/gen_workload.py --workload paper --rate 50 --duration 0.2 --seed 1 --vocab 151936 \
	--max-tokens 8192 --scale 0.25 > "$T/paper"
out=$("$S" "$B" "$T/paper" --device h100 --executors 8 --mode replicate 2>&1)
expect "235B bf16 whole on an H100: does not fit" "does not fit: 470\.[0-9] GB of weights" "$out"
out=$("$S" "$Q" "$T/paper" --device h100 --executors 8 --fp8 --kv-bytes auto --policies fifo 2>&1)
expect "30B fp8 asyncep fits, gathers" "mode=asyncep dtype=fp8 weights_gb=.*gather_ms=1\.4" "$out"
expect "30B fp8 asyncep serves" "predicted +fifo .*ok=[1-9]" "$out"
out=$("$S" "$Q" "$T/paper" --device h100 --executors 8 --mode dpep --policies fifo 2>&1)
expect "dpep: AllToAll time" "comm_frac=0\.[0-9]*[1-9]" "$out"
out=$("$S" "$Q" "$T/paper" --device h100 --executors 8 --mode tp --policies fifo 2>&1)
expect "tp: AllReduce time" "comm_frac=0\.[0-9]*[1-9]" "$out"

# bench --profile writes what the simulator reads
"$Z" bench --model "$M" --tokens 256 --seqs 2 --threads 1 --iters 1 --profile "$T/real" \
	--log-level warn > /dev/null 2>&1
out=$(head -3 "$T/real")
expect "profile header names every op" "forward_cpu_s embed_s norm_s qkv_s rope_s attn_s o_s dense_s router_s dispatch_s acquire_s experts_s combine_s out_s" "$out"
expect "profile rows" "^fwd " "$(grep -c '^fwd ' "$T/real" | sed 's/^[1-9][0-9]*$/fwd /')"
out=$(sim "$T/one" --profile "$T/real" --executors 1 --kv-bytes 0 --policies fifo)
expect "a measured profile drives the simulation" "predicted +fifo .*ok=1 " "$out"
exit $fail
