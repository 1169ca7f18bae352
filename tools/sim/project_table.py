#!/usr/bin/env python3
"""project_table.py ROWS -- tools/sim/project.sh's tables: every row (device,
model, dtype, mode, policy: tokens/s, p50/p99, exposed gather wait,
computed/prompt) to ROWS.md, and on stdout a summary per setup beside the
paper's ratios and the issue's goals."""
import collections
import sys

path = sys.argv[1]
runs = collections.OrderedDict()  # (batch, dev, model, dtype) -> mode -> policy -> fields
why = {}
key = None
for line in open(path):
    if line.startswith("== "):
        f = dict(x.split("=") for x in line[3:].split())
        key = (int(f["batch"]), f["device"], f["model"], f["dtype"])
        mode = f["mode"]
        runs.setdefault(key, collections.OrderedDict())[mode] = {}
    elif "does not fit" in line:
        why[key + (mode,)] = line.split(": ", 1)[1].strip()
    elif line.startswith("predicted"):
        f = line.split()
        runs[key][mode][f[1]] = {k: float(v) for k, v in (x.split("=") for x in f[2:])}

with open(path + ".md", "w") as o:
    o.write("| batch | device | model | dtype | mode | policy | tok/s | p50 ms | p99 ms | "
            "exposed wait | comm | computed/prompt |\n" + "|---" * 12 + "|\n")
    for k, modes in runs.items():
        for mode, pols in modes.items():
            if not pols:
                o.write("| %d | %s | %s | %s | %s | | %s | | | | | |\n" % (k + (mode, why.get(k + (mode,), "?"))))
            for p, r in pols.items():
                o.write("| %d | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %.3f | %.3f | %.3f |\n" % (
                    k + (mode, p, r["tok_s"], r["p50_ms"], r["p99_ms"], r["wait_frac"], r["comm_frac"],
                         r["computed_ratio"])))


def best(pols):
    if not pols:
        return None, None
    p = max(pols, key=lambda q: pols[q]["tok_s"])
    return p, pols[p]["tok_s"]


print("Paper (MoE-Prefill): AsyncEP 1.35-1.59x over the strongest baseline; the frontend +16-18%.")
print("Issue 20 goals at 8xH100: prefix_flops >= 1.16x fifo on the paper mix; AsyncEP >= 1.35x dpep.")
print()
print("| batch | setup | asyncep best (policy) | dpep best | replicate best | tp | asyncep / dpep "
      "| asyncep / strongest baseline | asyncep prefix_flops / fifo | asyncep exposed wait "
      "(fifo, prefix_flops) | asyncep computed/prompt (fifo, prefix_flops) |")
print("|---" * 11 + "|")
for k, modes in runs.items():
    cells, tops = [], {}
    for mode in ("asyncep", "dpep", "replicate", "tp"):
        p, v = best(modes.get(mode, {}))
        tops[mode] = v
        cells.append("does not fit" if v is None else "%.0f (%s)" % (v, p))
    a = modes.get("asyncep", {})
    base = [tops[m] for m in ("dpep", "replicate", "tp") if tops[m]]
    r1 = "%.2f" % (tops["asyncep"] / tops["dpep"]) if tops["asyncep"] and tops["dpep"] else "-"
    r2 = "%.2f" % (tops["asyncep"] / max(base)) if tops["asyncep"] and base else "-"
    r3 = ("%.2f" % (a["prefix_flops"]["tok_s"] / a["fifo"]["tok_s"])
          if "fifo" in a and "prefix_flops" in a else "-")
    w = ("%.2f, %.2f" % (a["fifo"]["wait_frac"], a["prefix_flops"]["wait_frac"])
         if "fifo" in a and "prefix_flops" in a else "-")
    c = ("%.2f, %.2f" % (a["fifo"]["computed_ratio"], a["prefix_flops"]["computed_ratio"])
         if "fifo" in a and "prefix_flops" in a else "-")
    print("| %d | 8x%s %s %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        k[0], k[1].upper(), k[2], k[3], cells[0], cells[1], cells[2], cells[3], r1, r2, r3, w, c))
print()
print("(all rows: %s.md)" % path)
