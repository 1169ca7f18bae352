#!/bin/sh
# validate.sh -- the simulator against the real engine on this machine (issue
# 20, item 4): CPU executors N = 1..4, each policy, scarce and ample caches,
# the paper mix at saturation (1000 requests/s offered, 64 connections).
# For each N: the profile (`zprefill bench --profile`, one thread, as each
# executor runs), then per cache size: the free cores (simulate
# --probe-cores), the four policies through the real engine in process
# (simulate --measure: no HTTP, the real clock), the free cores again, and
# the simulation of the same file with --cores the mean of the two probes.
# Everything under nice 19 (the machine is shared; the conditions are the
# measurement's). Prints one table row per (N, cache, policy): predicted and
# measured tokens/s, p50, computed/prompt, and the errors.
#   tools/sim/validate.sh [OUT_DIR] (env: MODEL, SECS, SCALE, NS, CACHES)
set -eu
OUT=${1:-/tmp/zp-validate}
MODEL=${MODEL:-tests/models/tiny-tok}
SECS=${SECS:-0.3}
SCALE=${SCALE:-0.25}
NS=${NS:-"1 2 3 4"}
CACHES=${CACHES:-"scarce:1048576 ample:67108864"}
POLICIES="fifo prefix_flops least_tokens vllm"
N19="nice -n 19"
mkdir -p "$OUT"
make -s zprefill build/simulate >/dev/null
python3 tools/gen_workload.py --workload paper --rate 1000 --duration "$SECS" --seed 1 \
	--vocab 640 --max-tokens 4096 --scale "$SCALE" > "$OUT/w.req"
echo "# $(date -u) model=$MODEL requests=$(wc -l < "$OUT/w.req") scale=$SCALE $(uptime)"
for N in $NS; do
	$N19 ./zprefill bench --model "$MODEL" --tokens 2048 --seqs 4 --threads 1 \
		--profile "$OUT/prof$N.txt" --log-level warn > /dev/null
	for C in $CACHES; do
		name=${C%%:*}
		kv=${C#*:}
		c0=$($N19 build/simulate --probe-cores 1 | sed 's/cores=//')
		$N19 build/simulate "$MODEL" "$OUT/w.req" --measure --executors "$N" --kv-bytes "$kv" \
			--policies "$POLICIES" > "$OUT/meas-$N-$name.txt"
		c1=$($N19 build/simulate --probe-cores 1 | sed 's/cores=//')
		cores=$(python3 -c "print(round(($c0 + $c1) / 2, 3))")
		build/simulate "$MODEL" "$OUT/w.req" --profile "$OUT/prof$N.txt" --cores "$cores" \
			--executors "$N" --kv-bytes "$kv" --policies "$POLICIES" > "$OUT/pred-$N-$name.txt"
		echo "# N=$N cache=$name cores=$c0,$c1"
	done
done
python3 - "$OUT" "$NS" "$CACHES" <<'EOF'
import re, sys
out, ns, caches = sys.argv[1], sys.argv[2].split(), [c.split(":")[0] for c in sys.argv[3].split()]
def rows(path):
    r = {}
    for line in open(path):
        if line.startswith(("predicted", "measured")):
            f = line.split()
            r[f[1]] = {k: float(v) for k, v in (x.split("=") for x in f[2:])}
    return r
print("| N | cache | policy | tok/s pred | tok/s meas | err | p50 ms pred | p50 ms meas | err | computed pred | computed meas |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
errs = []
for n in ns:
    for c in caches:
        p, m = rows("%s/pred-%s-%s.txt" % (out, n, c)), rows("%s/meas-%s-%s.txt" % (out, n, c))
        for pol in m:
            a, b = p[pol], m[pol]
            e1 = a["tok_s"] / b["tok_s"] - 1
            e2 = a["p50_ms"] / b["p50_ms"] - 1
            errs.append(abs(e1))
            print("| %s | %s | %s | %.0f | %.0f | %+.0f%% | %.0f | %.0f | %+.0f%% | %.3f | %.3f |" % (
                n, c, pol, a["tok_s"], b["tok_s"], 100 * e1, a["p50_ms"], b["p50_ms"], 100 * e2,
                a["computed_ratio"], b["computed_ratio"]))
errs.sort()
print("tok/s |error|: median %.0f%%, within 15%%: %d of %d" % (
    100 * errs[len(errs) // 2], sum(e <= 0.15 for e in errs), len(errs)))
EOF
