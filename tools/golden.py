#!/usr/bin/env python3
"""golden.py -- expected outputs of zprefill requests, computed by Hugging Face
transformers (float32, eager attention) on a checkpoint written by gen_model.py.

  tools/golden.py --model DIR --out tests/golden/NAME.jsonl [--requests FILE]

Without --requests a fixed, seeded set is generated: several prompt lengths,
candidates, top-k, prompt log-probs from several starts, last/mean pooling with and
without normalisation. The first output line is {"_meta": {...}} with the
transformers and torch versions and the smallest top-k router margin seen (the gap
between the k-th and (k+1)-th router logit: a gap below the compute error flips an
expert; the softmax is monotonic, so logits decide the choice).
Then one line per request: {"request": {...}, "expected": {...}}.
"""
import argparse
import json

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def make_requests(vocab, seed):
    rng = np.random.default_rng(seed)
    reqs = []
    for i, n in enumerate([1, 2, 7, 16, 17, 33, 70, 129]):
        toks = rng.integers(0, vocab, n).tolist()
        r = {"id": f"r{i}", "prompt_token_ids": toks}
        kind = i % 4
        if kind in (0, 2):
            r["candidate_token_ids"] = rng.integers(0, vocab, 5).tolist() + [vocab - 1, 0]
        if kind in (1, 2):
            r["top_logprobs"] = 5
        if n > 1 and kind in (1, 3):
            r["prompt_logprobs"] = {"start": int(rng.integers(0, n))}
        if kind == 3 or i == 0:
            r["pooling"] = "mean" if i % 2 else "last"
            r["normalize"] = bool(i % 3)
        reqs.append(r)
    return reqs


def expected(model, req, margins, topk):
    ids = torch.tensor([req["prompt_token_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=False)
        hidden = model.model(input_ids=ids).last_hidden_state[0]
    lp = torch.log_softmax(out.logits[0].float(), dim=-1)
    n = ids.shape[1]
    res = {"num_prompt_tokens": n}
    if "candidate_token_ids" in req:
        res["candidate_logprobs"] = [float(lp[-1, c]) for c in req["candidate_token_ids"]]
    if req.get("top_logprobs"):
        v, i = torch.topk(lp[-1], req["top_logprobs"])
        res["top_logprobs"] = [[int(a), float(b)] for a, b in zip(i, v)]
    if "prompt_logprobs" in req:
        s = req["prompt_logprobs"]["start"]
        res["prompt_logprobs"] = [None if p == 0 else float(lp[p - 1, req["prompt_token_ids"][p]])
                                  for p in range(s, n)]
    if req.get("pooling"):
        e = hidden[-1] if req["pooling"] == "last" else hidden.mean(0)
        if req.get("normalize"):
            e = torch.nn.functional.normalize(e, dim=-1)
        res["embedding"] = [float(x) for x in e]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--twin-of", help="--model is the dequantised f32 twin of this FP8 "
                    "checkpoint (gen_model.py --fp8 --twin): recorded in _meta")
    a = ap.parse_args()

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    margins = []
    topk = getattr(cfg, "num_experts_per_tok", 0)

    def hook(mod, inp, out):
        logits = out[0] if isinstance(out, tuple) else out
        v = logits.float().sort(dim=-1, descending=True).values
        if topk < v.shape[-1]:
            margins.append(float((v[:, topk - 1] - v[:, topk]).min()))

    for name, mod in model.named_modules():
        if type(mod).__name__ == "Qwen3MoeTopKRouter":
            mod.register_forward_hook(hook)
    if a.requests:
        reqs = [json.loads(l) for l in open(a.requests) if l.strip()]
    else:
        reqs = make_requests(cfg.vocab_size, a.seed)
    rows = [{"request": r, "expected": expected(model, r, margins, topk)} for r in reqs]
    meta = {"tool": "tools/golden.py", "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": "float32", "attn_implementation": "eager",
            "model_config": cfg.to_dict().get("architectures"),
            "min_topk_margin": min(margins) if margins else None}
    if a.twin_of:
        meta["fp8_twin_of"] = a.twin_of
    with open(a.out, "w") as f:
        f.write(json.dumps({"_meta": meta}) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{a.out}: {len(rows)} requests, min top-k router margin {meta['min_topk_margin']}")


if __name__ == "__main__":
    main()
