#!/usr/bin/env python3
"""demo_read.py -- reads out, in plain words, an answer tools/demo.sh (make run)
got from the server: `demo_read.py KIND REQUEST_JSON < ANSWER_JSON`, KIND one of
classify, rerank (their answers checked against tools/demo_items.json: one a
person would not give is marked), neighbours, prefill, tokenize (which asks
/detokenize for each id's text on the socket $DEMO_SOCKET); `demo_read.py about
DIR`, `demo_read.py heldout DIR`: the model and its held-out accuracy;
`demo_read.py request classify|rerank`: the demo's request. Standard library
only."""
import json
import os
import subprocess
import sys

ITEMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_items.json")


def items():
    return json.load(open(ITEMS))


def request(kind):
    d = items()
    if kind == "classify":
        r = {"input": [t for t, _ in d["classify"]], "labels": d["labels"]}
    else:
        r = dict(d["rerank"], return_documents=True)
        del r["answer"]
    print(json.dumps(r))


def about(model_dir, _):
    c = json.load(open(f"{model_dir}/config.json"))
    mb = os.path.getsize(f"{model_dir}/model.safetensors") / 1e6
    print(f"=== zprefill on {model_dir}: a {c['num_hidden_layers']}-layer Qwen3-MoE "
          f"({c['num_experts']} experts, top-{c['num_experts_per_tok']}, hidden "
          f"{c['hidden_size']}, {mb:.0f} MB) trained\n    on WordNet 3.0 (Debian wordnet-base) to "
          "name the category of a word or a\n    description, and to tell a word's definition from "
          "others; then on GCIDE's definitions\n    (Debian dict-gcide, no labels: a word learns "
          "what the model reads in its entry).")

def heldout(model_dir, _):
    h = json.load(open(f"{model_dir}/heldout.json"))
    print("    held-out accuracy (synsets never trained on): category from a definition "
          f"{h['classify_gloss']:.1%} (n={h['n_gloss']}), from the word alone "
          f"{h['classify_word']:.1%} (n={h['n_word']}); its definition ranked first of 4: "
          f"{h['rerank_top1_of_4']:.1%} (n={h['n_rerank']}). Chance: 10%, 10%, 25%.")
    if "n_word_in" in h:  # --gcide: held-out words GCIDE defines were trained on its text
        print(f"    of the words, {h['n_word_in']} are in GCIDE and were trained on what the model "
              f"reads in their entries\n    ({h['classify_word_in']:.1%} right); the other "
              f"{h['n_word_out']}: {h['classify_word_out']:.1%}.")


def classify(req, r):
    ok = dict(items()["classify"])
    for d in r["data"]:
        p = sorted(zip(d["probs"], req["labels"]), reverse=True)
        text = req["input"][d["index"]]
        wrong = "" if d["label"] in ok.get(text, [d["label"]]) else \
            f"   <- WRONG: a person says {' or '.join(ok[text])}"
        print(f"  {text:<42} -> {d['label']:<9} {p[0][0]:.2f}"
              f"   (next: {p[1][1]} {p[1][0]:.2f}){wrong}")


def rerank(req, r):
    d = items()["rerank"]
    own = d["documents"][d["answer"]] if req["query"] == d["query"] else None
    for i, x in enumerate(r["results"]):
        mark = ""
        if own and i == 0:
            mark = "   <- its definition" if x["document"]["text"] == own else \
                "   <- WRONG: not its definition"
        print(f"  {x['relevance_score']:.3f}  {x['document']['text']}{mark}")


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
    if kind in ("heldout", "about"):
        return {"heldout": heldout, "about": about}[kind](arg, None)
    if kind == "request":
        return request(arg)
    r = json.load(sys.stdin)
    if "error" in r:
        print(f"  (error: {r['error']['message']})")
        return
    {"classify": classify, "rerank": rerank, "neighbours": neighbours, "prefill": prefill,
     "tokenize": tokenize}[kind](json.loads(arg), r)


if __name__ == "__main__":
    main()
