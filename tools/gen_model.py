#!/usr/bin/env python3
"""gen_model.py -- write a random-weight Qwen3-MoE (or dense Qwen3) checkpoint in the
exact Hugging Face layout: config.json with every Qwen3MoeConfig field, tensor names as
in the official checkpoints, one model.safetensors or shards + model.safetensors.index.json.

Needs numpy only. Deterministic for a given --seed.

  tools/gen_model.py --preset tiny --out /tmp/m
  tools/gen_model.py --preset small --out /tmp/small --dtype bf16
  tools/gen_model.py --preset qwen3-30b-a3b --out /tmp/cfg --config-only
  tools/gen_model.py --preset tiny --hidden 96 --experts 12 ... (any field overridden)

The router weights get a larger scale (--router-scale) so that top-k selection is
decisive; tools/golden.py measures and reports the smallest top-k margin.
"""
import argparse
import json
import os
import struct
import shutil
import sys

import numpy as np

# name: (config fields). Fields absent here take BASE's values.
BASE = dict(
    architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe",
    hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
    mlp_only_layers=[], vocab_size=256, max_position_embeddings=4096,
    rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=False,
    attention_bias=False, attention_dropout=0.0, hidden_act="silu", initializer_range=0.02,
    use_cache=True, use_sliding_window=False, sliding_window=None, max_window_layers=2,
    output_router_logits=False, router_aux_loss_coef=0.001, bos_token_id=None,
    eos_token_id=None, torch_dtype="bfloat16", transformers_version="4.51.0",
)

PRESETS = {
    "tiny": dict(),
    # nq*head_dim != hidden; vocab, expert count and expert width not powers of two
    "odd": dict(hidden_size=72, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
                num_experts=10, num_experts_per_tok=3, moe_intermediate_size=40,
                intermediate_size=88, vocab_size=331, num_hidden_layers=3),
    # dense layers through mlp_only_layers
    "mlp-only": dict(num_hidden_layers=3, mlp_only_layers=[0, 2], vocab_size=300),
    # dense layers through decoder_sparse_step; attention_bias on
    "sparse-step": dict(num_hidden_layers=4, decoder_sparse_step=2, attention_bias=True,
                        vocab_size=290),
    "no-norm-topk": dict(norm_topk_prob=False, num_experts_per_tok=4, num_experts=12,
                         vocab_size=270),
    "tied-sharded": dict(tie_word_embeddings=True, num_hidden_layers=3, vocab_size=310),
    # head_dim 64 (a multiple of 32: the bf16 AMX attention path), nq*d != hidden
    "hd64": dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                 moe_intermediate_size=64, intermediate_size=192, vocab_size=300),
    "dense": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3",
                  intermediate_size=128, vocab_size=280),
    # a scaled-down Qwen3-30B-A3B for benchmarks: same head shape, fewer/narrower parts
    "small": dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=16,
                  num_key_value_heads=4, head_dim=128, num_experts=64, num_experts_per_tok=8,
                  moe_intermediate_size=384, intermediate_size=3072, vocab_size=32000),
    # the real shapes (config only: 61 GB / 470 GB of weights are not for this machine)
    "qwen3-30b-a3b": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
                          num_key_value_heads=4, head_dim=128, num_experts=128,
                          num_experts_per_tok=8, moe_intermediate_size=768,
                          intermediate_size=6144, vocab_size=151936,
                          max_position_embeddings=40960, max_window_layers=48),
    "qwen3-235b-a22b": dict(hidden_size=4096, num_hidden_layers=94, num_attention_heads=64,
                            num_key_value_heads=4, head_dim=128, num_experts=128,
                            num_experts_per_tok=8, moe_intermediate_size=1536,
                            intermediate_size=12288, vocab_size=151936,
                            max_position_embeddings=40960, max_window_layers=94),
}


def to_bf16_bits(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def encode(a, dtype):
    if dtype == "bf16":
        return to_bf16_bits(a).tobytes(), "BF16"
    if dtype == "f16":
        return a.astype(np.float16).tobytes(), "F16"
    return a.astype(np.float32).tobytes(), "F32"


def tensors(cfg, rng, router_scale):
    """Yield (name, array) in the official order."""
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    nq, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    moe = cfg["architectures"][0] == "Qwen3MoeForCausalLM"

    def lin(n, k, scale=None):
        s = scale if scale is not None else 1.0 / np.sqrt(k)
        return (rng.standard_normal((n, k)) * s).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    yield "model.embed_tokens.weight", lin(V, H, 1.0)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        yield f"{p}.input_layernorm.weight", norm(H)
        yield f"{p}.self_attn.q_proj.weight", lin(nq * d, H)
        yield f"{p}.self_attn.k_proj.weight", lin(nkv * d, H)
        yield f"{p}.self_attn.v_proj.weight", lin(nkv * d, H)
        yield f"{p}.self_attn.o_proj.weight", lin(H, nq * d)
        if cfg["attention_bias"]:
            yield f"{p}.self_attn.q_proj.bias", (0.1 * rng.standard_normal(nq * d)).astype(np.float32)
            yield f"{p}.self_attn.k_proj.bias", (0.1 * rng.standard_normal(nkv * d)).astype(np.float32)
            yield f"{p}.self_attn.v_proj.bias", (0.1 * rng.standard_normal(nkv * d)).astype(np.float32)
            yield f"{p}.self_attn.o_proj.bias", (0.1 * rng.standard_normal(H)).astype(np.float32)
        yield f"{p}.self_attn.q_norm.weight", norm(d)
        yield f"{p}.self_attn.k_norm.weight", norm(d)
        yield f"{p}.post_attention_layernorm.weight", norm(H)
        sparse = moe and l not in cfg["mlp_only_layers"] and (l + 1) % cfg["decoder_sparse_step"] == 0
        if sparse:
            E, F = cfg["num_experts"], cfg["moe_intermediate_size"]
            yield f"{p}.mlp.gate.weight", lin(E, H, router_scale / np.sqrt(H))
            for e in range(E):
                yield f"{p}.mlp.experts.{e}.gate_proj.weight", lin(F, H)
                yield f"{p}.mlp.experts.{e}.up_proj.weight", lin(F, H)
                yield f"{p}.mlp.experts.{e}.down_proj.weight", lin(H, F)
        else:
            F = cfg["intermediate_size"]
            yield f"{p}.mlp.gate_proj.weight", lin(F, H)
            yield f"{p}.mlp.up_proj.weight", lin(F, H)
            yield f"{p}.mlp.down_proj.weight", lin(H, F)
    yield "model.norm.weight", norm(H)
    if not cfg["tie_word_embeddings"]:
        yield "lm_head.weight", lin(V, H)


def write_safetensors(path, items):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dt, raw in items:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, raw in items:
            f.write(raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=0, help="split into N shards + index (0: one file; "
                    "tied-sharded defaults to 3)")
    ap.add_argument("--router-scale", type=float, default=4.0,
                    help="router weight std = scale / sqrt(hidden): larger makes top-k decisive")
    ap.add_argument("--config-only", action="store_true")
    ap.add_argument("--tokenizer", help="copy this tokenizer.json into the model directory; "
                    "vocab_size grows to cover it (rounded up to a multiple of 64)")
    for k, v in BASE.items():
        if isinstance(v, bool):
            ap.add_argument("--" + k.replace("_", "-"), type=lambda s: s.lower() in ("1", "true", "yes"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            ap.add_argument("--" + k.replace("_", "-"), type=type(v))
    ap.add_argument("--mlp-only-layers", type=lambda s: [int(x) for x in s.split(",") if x])
    a = ap.parse_args()

    cfg = dict(BASE)
    cfg.update(PRESETS[a.preset])
    for k in BASE:
        v = getattr(a, k, None)
        if v is not None and k not in ("architectures", "model_type"):
            cfg[k] = v
    if a.tokenizer:
        with open(a.tokenizer, encoding="utf-8") as f:
            tj = json.load(f)
        n = max(list(tj["model"]["vocab"].values()) + [t["id"] for t in tj["added_tokens"]]) + 1
        cfg["vocab_size"] = max(cfg["vocab_size"], -(-n // 64) * 64)
    cfg["max_window_layers"] = cfg["num_hidden_layers"]
    cfg["torch_dtype"] = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype]
    if cfg["architectures"][0] == "Qwen3ForCausalLM":
        for k in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                  "decoder_sparse_step", "mlp_only_layers", "output_router_logits", "router_aux_loss_coef"):
            cfg.pop(k, None)
    os.makedirs(a.out, exist_ok=True)
    if a.tokenizer:
        shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if a.config_only:
        print(f"wrote {a.out}/config.json (config only)")
        return
    shards = a.shards or (3 if a.preset == "tied-sharded" else 1)
    rng = np.random.default_rng(a.seed)
    items, total = [], 0
    for name, arr in tensors(cfg, rng, a.router_scale):
        raw, dt = encode(arr, a.dtype)
        items.append((name, arr.shape, dt, raw))
        total += len(raw)
    if shards == 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), items)
    else:
        per = -(-len(items) // shards)
        wmap = {}
        for i in range(shards):
            fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = items[i * per:(i + 1) * per]
            write_safetensors(os.path.join(a.out, fn), part)
            wmap.update({n: fn for n, _, _, _ in part})
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)
    print(f"wrote {a.out}: {len(items)} tensors, {total / 1e6:.1f} MB, {shards} file(s), dtype {a.dtype}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
