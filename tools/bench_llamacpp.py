#!/usr/bin/env python3
"""bench_llamacpp.py -- zprefill against llama.cpp on the same weights, side by side.

Converts a checkpoint written by gen_model.py (bf16 safetensors) to GGUF with the
`gguf` package (arch qwen3moe or qwen3, bf16 matrices, f32 norms, no vocabulary),
loads it in llama.cpp through llama-cpp-python, then alternates, in one process and
one session, a timed 512-token prefill in llama.cpp with `zprefill bench` on the same
model, and prints each run and the ratio of medians.

  pip install llama-cpp-python gguf      # builds llama.cpp from source
  tools/bench_llamacpp.py --model build/models/small --tokens 512 --threads 2 --rounds 5
"""
import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time

import numpy as np


def read_safetensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) \
        else ["model.safetensors"]
    out = {}
    for fn in files:
        raw = open(os.path.join(d, fn), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        hdr = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            b, e = t["data_offsets"]
            dt = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}[t["dtype"]]
            a = np.frombuffer(raw, dtype=dt, count=(e - b) // np.dtype(dt).itemsize, offset=base + b)
            out[name] = (t["dtype"], a.reshape(t["shape"]))
    return out


def f32(dt_a):
    dt, a = dt_a
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def bf16(dt_a):
    dt, a = dt_a
    if dt == "BF16":
        return a
    u = f32(dt_a).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_gguf(model_dir, out):
    import gguf
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = read_safetensors(model_dir)
    moe = cfg["architectures"][0] == "Qwen3MoeForCausalLM"
    arch = "qwen3moe" if moe else "qwen3"
    w = gguf.GGUFWriter(out, arch)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    if moe:
        w.add_expert_count(cfg["num_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        w.add_expert_weights_norm(cfg["norm_topk_prob"])
    w.add_tokenizer_model("none")
    w.add_vocab_size(cfg["vocab_size"])
    BF = gguf.GGMLQuantizationType.BF16

    def mat(name, a):
        w.add_tensor(name, bf16(a), raw_dtype=BF)

    def vec(name, a):
        w.add_tensor(name, f32(a))

    vec_names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
    mat_names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate": "ffn_gate_inp", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    mat("token_embd.weight", W["model.embed_tokens.weight"])
    vec("output_norm.weight", W["model.norm.weight"])
    mat("output.weight", W.get("lm_head.weight", W["model.embed_tokens.weight"]))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for k, v in vec_names.items():
            vec(f"blk.{l}.{v}.weight", W[p + k + ".weight"])
        for k, v in mat_names.items():
            if p + k + ".weight" in W:
                if k == "mlp.gate":  # the router stays f32 in llama.cpp's converter
                    vec(f"blk.{l}.{v}.weight", W[p + k + ".weight"])
                else:
                    mat(f"blk.{l}.{v}.weight", W[p + k + ".weight"])
        if moe and p + "mlp.experts.0.gate_proj.weight" in W:
            E = cfg["num_experts"]
            for hf, gg in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"),
                           ("down_proj", "ffn_down_exps")):
                st = np.stack([bf16(W[f"{p}mlp.experts.{e}.{hf}.weight"]) for e in range(E)])
                w.add_tensor(f"blk.{l}.{gg}.weight", st, raw_dtype=BF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def zprefill_tok_s(zp, model, tokens, threads):
    r = subprocess.run([zp, "bench", "--model", model, "--tokens", str(tokens), "--seqs", "1",
                        "--threads", str(threads), "--iters", "3"], capture_output=True, text=True,
                       check=True)
    last = r.stdout.strip().splitlines()[-1]
    return float(re.search(r"prefill_tok_s=([0-9.]+)", last).group(1)), \
        float(re.search(r"best_s=([0-9.]+)", last).group(1)), \
        float(re.search(r"gflop_s=([0-9.]+)", last).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--zprefill", default="./zprefill")
    a = ap.parse_args()
    from llama_cpp import Llama

    gg = os.path.join(a.model, "model-bf16.gguf")
    if not os.path.exists(gg):
        print(f"writing {gg}", file=sys.stderr)
        to_gguf(a.model, gg)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    llm = Llama(model_path=gg, n_ctx=a.tokens + 16, n_batch=a.tokens, n_ubatch=a.tokens,
                n_threads=a.threads, n_threads_batch=a.threads, logits_all=False, verbose=False)
    rng = np.random.default_rng(0)
    toks = rng.integers(0, cfg["vocab_size"], a.tokens).tolist()

    def llama_once():
        llm.reset()
        llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
        t0 = time.perf_counter()
        llm.eval(toks)
        return time.perf_counter() - t0

    llama_once()  # warm-up
    zs, ls = [], []
    for r in range(a.rounds):  # alternate: the machine is shared and noisy
        z, zbest, gf = zprefill_tok_s(a.zprefill, a.model, a.tokens, a.threads)
        lt = min(llama_once() for _ in range(3))
        zs.append(a.tokens / zbest)
        ls.append(a.tokens / lt)
        print(f"round {r}: zprefill {a.tokens / zbest:8.1f} tok/s ({gf:.0f} GFLOP/s)   "
              f"llama.cpp {a.tokens / lt:8.1f} tok/s")
    # the two compute the same model: compare last-position log-probs of 8 tokens
    llama_once()
    lg = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(cfg["vocab_size"],)).astype(np.float64)
    lp_llama = lg - (np.log(np.exp(lg - lg.max()).sum()) + lg.max())
    cands = list(range(0, cfg["vocab_size"], cfg["vocab_size"] // 8))[:8]
    req = json.dumps({"prompt_token_ids": toks, "candidate_token_ids": cands})
    out = subprocess.run([a.zprefill, "prefill", "--model", a.model, "--threads", str(a.threads)],
                         input=req + "\n", capture_output=True, text=True, check=True).stdout
    lp_zp = np.array(json.loads(out)["candidate_logprobs"])
    print(f"agreement: max |logprob(zprefill) - logprob(llama.cpp)| over {len(cands)} tokens = "
          f"{np.abs(lp_zp - lp_llama[cands]).max():.3f}")
    zm, lm = statistics.median(zs), statistics.median(ls)
    print(f"median: zprefill {zm:.1f} tok/s, llama.cpp {lm:.1f} tok/s, ratio zprefill/llama.cpp = "
          f"{zm / lm:.2f} ({a.tokens} tokens, {a.threads} threads, bf16)")


if __name__ == "__main__":
    main()
