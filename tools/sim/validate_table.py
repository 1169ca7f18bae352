#!/usr/bin/env python3
"""validate_table.py OUT NS CACHES -- tools/sim/validate.sh's table: per (N,
cache, policy) the medians over the repeats of the measured tokens/s, p50 and
computed/prompt beside the simulator's (each repeat predicted with the free
cores measured during its own run), the measured range and spread (max/min -
1), the errors, whether an error lies inside the measured range, and the
share of rows within 15%; then each run against its own prediction."""
import sys

out, ns = sys.argv[1], sys.argv[2].split()
caches = [c.split(":")[0] for c in sys.argv[3].split()]


def med(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def rows(path):
    """policy -> field -> the repeats' values, medians"""
    r = {}
    for line in open(path):
        if line.startswith(("predicted", "measured")):
            f = line.split()
            d = r.setdefault(f[1], {})
            for k, v in (x.split("=") for x in f[2:]):
                d.setdefault(k, []).append(float(v))
    return {p: dict({k: med(v) for k, v in d.items()}, _all=d) for p, d in r.items()}


conds = {}
for line in open(out + "/log"):
    f = line.split()
    if line.startswith("# N="):
        c = conds.setdefault((f[1][2:], f[2][6:], f[3]), [[], []])
        c[0] += [float(x) for x in f[4].split("=")[1].split(",")]
        c[1].append(float(f[6].split("=")[1]))

print("| N | cache | policy | free cores: probes / during the run | tok/s measured (range) | spread "
      "| predicted | err | in range | p50 ms measured (range) | predicted | err | in range "
      "| computed/prompt measured | predicted |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
errs = {"tok": [], "p50": [], "computed": [], "tok_in": 0, "p50_in": 0}
for n in ns:
    for c in caches:
        m = rows("%s/meas-%s-%s.txt" % (out, n, c))
        p = rows("%s/pred-%s-%s.txt" % (out, n, c))
        for pol, b in m.items():
            a = p[pol]
            e1 = a["tok_s"] / b["tok_s"] - 1
            e3 = a["p50_ms"] / b["p50_ms"] - 1
            lo, hi = min(b["_all"]["tok_s"]), max(b["_all"]["tok_s"])
            plo, phi = min(b["_all"]["p50_ms"]), max(b["_all"]["p50_ms"])
            in1 = lo <= a["tok_s"] <= hi
            in3 = plo <= a["p50_ms"] <= phi
            errs["tok"].append(abs(e1))
            errs["p50"].append(abs(e3))
            errs["tok_in"] += in1
            errs["p50_in"] += in3
            errs["computed"].append(abs(a["computed_ratio"] - b["computed_ratio"]))
            cd = conds.get((n, c, pol))
            cs = "%.2f / %.2f" % (med(cd[0]), med(cd[1])) if cd else "?"
            print("| %s | %s | %s | %s | %.0f (%.0f-%.0f) | %.0f%% | %.0f | %+.0f%% | %s "
                  "| %.0f (%.0f-%.0f) | %.0f | %+.0f%% | %s | %.3f | %.3f |" % (
                      n, c, pol, cs, b["tok_s"], lo, hi, 100 * (hi / lo - 1), a["tok_s"],
                      100 * e1, "yes" if in1 else "no", b["p50_ms"], plo, phi, a["p50_ms"],
                      100 * e3, "yes" if in3 else "no", b["computed_ratio"],
                      a["computed_ratio"]))
print()
for name in ("tok", "p50"):
    e = sorted(errs[name])
    what = "tok/s" if name == "tok" else "p50"
    print("%s |error|: median %.0f%%, max %.0f%%, within 15%%: %d of %d; prediction inside the "
          "measured range: %d of %d" % (what, 100 * e[len(e) // 2], 100 * e[-1],
                                        sum(x <= 0.15 for x in e), len(e),
                                        errs[name + "_in"], len(e)))
e = sorted(errs["computed"])
print("computed/prompt |difference|: median %.3f, max %.3f" % (e[len(e) // 2], e[-1]))
# each run against its own prediction (the files list a cell's repeats in the
# same order): how well the prediction follows the conditions of one run
def per_run(pred):
    """(each run's |error| against its prediction in pred-* or pooled-*, each
    row's |error| of the medians), sorted."""
    run, row = [], []
    for n in ns:
        for c in caches:
            m = rows("%s/meas-%s-%s.txt" % (out, n, c))
            p = rows("%s/%s-%s-%s.txt" % (out, pred, n, c))
            for pol, b in m.items():
                run += [abs(x / y - 1) for x, y in zip(p[pol]["_all"]["tok_s"], b["_all"]["tok_s"])]
                row.append(abs(p[pol]["tok_s"] / b["tok_s"] - 1))
    return sorted(run), sorted(row)


run, _ = per_run("pred")
print("tok/s per run, each against its own prediction: |error| median %.0f%%, max %.0f%%, "
      "within 15%%: %d of %d" % (100 * run[len(run) // 2], 100 * run[-1],
                                 sum(x <= 0.15 for x in run), len(run)))
# validate.sh also predicts every run from all of N's profiles pooled (the
# method before the profile beside each run): the same lines for that
try:
    run, row = per_run("pooled")
    print("the same runs predicted from all of N's profiles pooled: rows within 15%%: %d of %d "
          "(median |error| %.0f%%, max %.0f%%); runs within 15%%: %d of %d (median %.0f%%, "
          "max %.0f%%)" % (sum(x <= 0.15 for x in row), len(row), 100 * row[len(row) // 2],
                           100 * row[-1], sum(x <= 0.15 for x in run), len(run),
                           100 * run[len(run) // 2], 100 * run[-1]))
except (OSError, KeyError):
    pass  # an older run: no pooled-* files
