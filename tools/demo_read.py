#!/usr/bin/env python3
"""demo_read.py -- reads out, in plain words, an answer tools/demo.sh (make run)
got from the server: `demo_read.py KIND REQUEST_JSON < ANSWER_JSON`, KIND one of
heldout (REQUEST_JSON: the model dir), classify, rerank, neighbours, prefill,
tokenize (which asks /detokenize for each id's text on the socket $DEMO_SOCKET).
Standard library only."""
import json
import os
import subprocess
import sys


def heldout(model_dir, _):
    h = json.load(open(f"{model_dir}/heldout.json"))
    print("    held-out accuracy (synsets never trained on): category from a definition "
          f"{h['classify_gloss']:.1%} (n={h['n_gloss']}), from the word alone "
          f"{h['classify_word']:.1%} (n={h['n_word']}); its definition ranked first of 4: "
          f"{h['rerank_top1_of_4']:.1%} (n={h['n_rerank']}). Chance: 10%, 10%, 25%.")


def classify(req, r):
    for d in r["data"]:
        p = sorted(zip(d["probs"], req["labels"]), reverse=True)
        print(f"  {req['input'][d['index']]:<42} -> {d['label']:<9} {p[0][0]:.2f}"
              f"   (next: {p[1][1]} {p[1][0]:.2f})")


def rerank(req, r):
    for x in r["results"]:
        print(f"  {x['relevance_score']:.3f}  {x['document']['text']}")


def neighbours(req, r):
    words, vecs = req["input"], [d["embedding"] for d in r["data"]]
    for i, w in enumerate(words):
        near = sorted(((sum(a * b for a, b in zip(vecs[i], vecs[j])), words[j])
                       for j in range(len(words)) if j != i), reverse=True)
        print(f"  {w:<8} -> " + ", ".join(f"{n} {c:.2f}" for c, n in near[:3]) +
              f"   ... farthest: {near[-1][1]} {near[-1][0]:.2f}")


def prefill(req, r):
    print("  " + ", ".join(f"{c}: {lp:.2f}" for c, lp in
                           zip(req["candidates"], r["candidate_logprobs"])))


def tokenize(_, r):
    def text(i):
        out = subprocess.run(["curl", "-s", "--unix-socket", os.environ["DEMO_SOCKET"], "-d",
                              json.dumps({"tokens": [i]}), "http://x/detokenize"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["prompt"]
    print("  " + "  ".join(f"{i}={text(i)!r}" for i in r["tokens"]))


def main():
    kind, arg = sys.argv[1], sys.argv[2]
    if kind == "heldout":
        return heldout(arg, None)
    r = json.load(sys.stdin)
    if "error" in r:
        print(f"  (error: {r['error']['message']})")
        return
    {"classify": classify, "rerank": rerank, "neighbours": neighbours, "prefill": prefill,
     "tokenize": tokenize}[kind](json.loads(arg), r)


if __name__ == "__main__":
    main()
