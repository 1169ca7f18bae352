#!/usr/bin/env python3
"""validate_table.py OUT NS CACHES -- tools/sim/validate.sh's table: per (N,
cache, policy) the measured tokens/s, p50 and computed/prompt beside the
simulator's, with the free cores taken from the probes around the run and
from the run's own CPU share; the share of rows within 15%."""
import sys

out, ns = sys.argv[1], sys.argv[2].split()
caches = [c.split(":")[0] for c in sys.argv[3].split()]


def rows(path):
    r = {}
    for line in open(path):
        if line.startswith(("predicted", "measured")):
            f = line.split()
            r[f[1]] = {k: float(v) for k, v in (x.split("=") for x in f[2:])}
    return r


conds = {}
for line in open(out + "/log"):
    f = line.split()
    if line.startswith("# N="):
        conds[(f[1][2:], f[2][6:], f[3])] = f[4].split("=")[1] + " / " + f[5].split("=")[1]

print("| N | cache | policy | cores: probes / run share | tok/s measured | predicted (probes) "
      "| err | predicted (run share) | err | p50 ms measured | predicted (run share) | err "
      "| computed/prompt measured | predicted |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
errs = {"probes": [], "run share": [], "p50": [], "computed": []}
for n in ns:
    for c in caches:
        m = rows("%s/meas-%s-%s.txt" % (out, n, c))
        p = rows("%s/pred-%s-%s.txt" % (out, n, c))
        q = rows("%s/predrun-%s-%s.txt" % (out, n, c))
        for pol, b in m.items():
            a, r = p[pol], q[pol]
            e1 = a["tok_s"] / b["tok_s"] - 1
            e2 = r["tok_s"] / b["tok_s"] - 1
            e3 = r["p50_ms"] / b["p50_ms"] - 1
            errs["probes"].append(abs(e1))
            errs["run share"].append(abs(e2))
            errs["p50"].append(abs(e3))
            errs["computed"].append(abs(r["computed_ratio"] - b["computed_ratio"]))
            print("| %s | %s | %s | %s | %.0f | %.0f | %+.0f%% | %.0f | %+.0f%% | %.0f | %.0f "
                  "| %+.0f%% | %.3f | %.3f |" % (
                      n, c, pol, conds.get((n, c, pol), "?"), b["tok_s"], a["tok_s"], 100 * e1,
                      r["tok_s"], 100 * e2, b["p50_ms"], r["p50_ms"], 100 * e3,
                      b["computed_ratio"], r["computed_ratio"]))
print()
for name in ("probes", "run share", "p50"):
    e = sorted(errs[name])
    what = "p50 (run share)" if name == "p50" else "tok/s (cores from the %s)" % name
    print("%s |error|: median %.0f%%, max %.0f%%, within 15%%: %d of %d" % (
        what, 100 * e[len(e) // 2], 100 * e[-1], sum(x <= 0.15 for x in e), len(e)))
e = sorted(errs["computed"])
print("computed/prompt |difference|: median %.3f, max %.3f" % (e[len(e) // 2], e[-1]))
