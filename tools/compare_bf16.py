#!/usr/bin/env python3
"""compare_bf16.py -- how far zprefill's bf16 mode is from float32 transformers,
next to how far transformers' own bfloat16 run is: prompt log-probs of random
prompts, mean and max |difference| against the float32 run.

  tools/compare_bf16.py MODEL_DIR TOKENS      (needs torch, transformers)
"""
import json, subprocess, numpy as np, torch, sys
from transformers import AutoModelForCausalLM
d = sys.argv[1]; n = int(sys.argv[2])
cfg = json.load(open(d + "/config.json"))
rng = np.random.default_rng(3)
m32 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
m16 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager")
worst_hf, worst_zp = 0, 0
for trial in range(3):
    toks = rng.integers(0, cfg["vocab_size"], n).tolist()
    req = json.dumps({"prompt_token_ids": toks, "prompt_logprobs": {"start": 1}})
    zp = np.array(json.loads(subprocess.run(["./zprefill", "prefill", "--model", d, "--dtype", "bf16"], input=req + "\n", capture_output=True, text=True).stdout)["prompt_logprobs"])
    with torch.no_grad():
        l32 = torch.log_softmax(m32(input_ids=torch.tensor([toks])).logits[0].float(), -1)
        l16 = torch.log_softmax(m16(input_ids=torch.tensor([toks])).logits[0].float(), -1)
    idx = torch.tensor(toks[1:])
    ref = l32[torch.arange(n - 1), idx].numpy(); hf16 = l16[torch.arange(n - 1), idx].numpy()
    worst_hf = max(worst_hf, np.abs(hf16 - ref).max()); worst_zp = max(worst_zp, np.abs(zp - ref).max())
    print(f"trial {trial}: mean|d| HF-bf16 {np.abs(hf16-ref).mean():.4f} zprefill-bf16 {np.abs(zp-ref).mean():.4f}; max HF-bf16 {np.abs(hf16-ref).max():.3f} zprefill-bf16 {np.abs(zp-ref).max():.3f}")
