#!/usr/bin/env python3
"""gen_model.py -- write a random-weight Qwen3-MoE (or dense Qwen3) checkpoint in the
exact Hugging Face layout: config.json with every Qwen3MoeConfig field, tensor names as
in the official checkpoints, one model.safetensors or shards + model.safetensors.index.json.

Needs numpy only. Deterministic for a given --seed.

  tools/gen_model.py --preset tiny --out /tmp/m
  tools/gen_model.py --preset small --out /tmp/small --dtype bf16
  tools/gen_model.py --preset qwen3-30b-a3b --out /tmp/cfg --config-only
  tools/gen_model.py --preset tiny --hidden 96 --experts 12 ... (any field overridden)
  tools/gen_model.py --preset fp8-odd --fp8 --twin /tmp/twin --out tests/models/fp8-odd

--fp8 writes the checkpoint as Qwen's FP8 releases are (quantization_config fp8,
e4m3, 128x128 blocks): every attention and MLP/expert linear is F8_E4M3 with a
W_scale_inv [ceil(n/128), ceil(k/128)] (F32, or BF16 with --fp8-scale-dtype bf16),
quantised from the bf16 checkpoint of the same seed exactly as zprefill's
--dtype fp8 does (scale = amax / 448 per block, codes = e4m3(x / scale), ties to
even); embeddings, norms, routers and lm_head stay --dtype. --twin DIR writes its
exact dequantised twin for transformers: every tensor F32, each FP8 weight as
e4m3(code) * scale (one float32 product), no quantization_config.

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
    # FP8: every dimension past one 128 block with a partial edge block (hidden 200,
    # q 192, experts 136, dense MLP 264), a dense layer, two shards
    "fp8-odd": dict(hidden_size=200, num_attention_heads=6, num_key_value_heads=2, head_dim=32,
                    num_experts=6, num_experts_per_tok=2, moe_intermediate_size=136,
                    intermediate_size=264, vocab_size=300, num_hidden_layers=3,
                    mlp_only_layers=[1]),
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


FP8_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def fp8_decode_table():
    t = np.zeros(256, np.float32)
    for c in range(256):
        e, m = (c >> 3) & 15, c & 7
        v = np.ldexp(1.0 + m / 8.0, e - 7) if e else np.ldexp(float(m), -9)
        t[c] = np.nan if c & 0x7F == 0x7F else (-v if c & 0x80 else v)
    return t


def fp8_encode(x):
    """float32 array -> nearest e4m3fn codes (ties to even), clamped to +-448."""
    x = x.astype(np.float32)
    sign = np.where(np.signbit(x), 0x80, 0).astype(np.uint8)
    a = np.minimum(np.abs(x), np.float32(448.0))
    sub = a < np.float32(2.0 ** -6)
    q_sub = np.rint(a * np.float32(512.0)).astype(np.int64)
    _, ex = np.frexp(np.where(sub, np.float32(1.0), a))
    m = np.rint((np.ldexp(np.where(sub, np.float32(1.0), a), 1 - ex).astype(np.float32)
                 - np.float32(1.0)) * np.float32(8.0)).astype(np.int64)
    ex = np.where(m == 8, ex + 1, ex)
    m = np.where(m == 8, 0, m)
    q_norm = ((ex - 1 + 7) << 3) | m
    return (np.where(sub, q_sub, q_norm).astype(np.uint8) | sign).astype(np.uint8)


def fp8_quantize(w, scale_dtype):
    """w [n, k] float32 -> (codes [n, k] uint8, scale [ceil(n/128), ceil(k/128)] float32)."""
    n, k = w.shape
    nb, kb = -(-n // 128), -(-k // 128)
    scale = np.ones((nb, kb), np.float32)
    codes = np.zeros((n, k), np.uint8)
    for i in range(nb):
        for j in range(kb):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            amax = np.float32(np.abs(blk).max())
            s = amax / np.float32(448.0) if amax > 0 else np.float32(1.0)
            if scale_dtype == "bf16":  # the codes are made for the scale as stored
                s = from_bf16_bits(to_bf16_bits(np.array([s], np.float32)))[0]
            scale[i, j] = s
            codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = fp8_encode(blk / s)
    return codes, scale


def from_bf16_bits(u):
    return (u.astype(np.uint32) << 16).view(np.float32)


def fp8_dequantize(codes, scale):
    t = fp8_decode_table()
    s = np.repeat(np.repeat(scale, 128, 0), 128, 1)[:codes.shape[0], :codes.shape[1]]
    return (t[codes] * s).astype(np.float32)


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
    ap.add_argument("--fp8", action="store_true", help="an FP8 checkpoint (see above)")
    ap.add_argument("--fp8-scale-dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--twin", help="with --fp8: write the dequantised f32 twin here")
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
    twin_cfg = dict(cfg, torch_dtype="float32")
    if a.fp8:
        cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                      "quant_method": "fp8", "weight_block_size": [128, 128]}
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
    shards = a.shards or (3 if a.preset in ("tied-sharded", "fp8-odd") else 1)
    rng = np.random.default_rng(a.seed)
    items, twin = [], []
    for name, arr in tensors(cfg, rng, a.router_scale):
        if a.fp8 and name.endswith(".weight") and name.split(".")[-2] in FP8_LINEARS:
            src = from_bf16_bits(to_bf16_bits(arr)).reshape(arr.shape)  # the bf16 checkpoint's
            codes, scale = fp8_quantize(src, a.fp8_scale_dtype)
            sraw, sdt = encode(scale, a.fp8_scale_dtype)
            items.append((name, arr.shape, "F8_E4M3", codes.tobytes()))
            items.append((name + "_scale_inv", scale.shape, sdt, sraw))
            twin.append((name, arr.shape, "F32", fp8_dequantize(codes, scale).tobytes()))
            continue
        raw, dt = encode(arr, a.dtype)
        items.append((name, arr.shape, dt, raw))
        if a.twin:  # the same values as stored, widened to f32
            back = {"BF16": lambda r: from_bf16_bits(np.frombuffer(r, np.uint16)),
                    "F16": lambda r: np.frombuffer(r, np.float16).astype(np.float32),
                    "F32": lambda r: np.frombuffer(r, np.float32)}[dt](raw)
            twin.append((name, arr.shape, "F32", back.astype(np.float32).tobytes()))
    write_checkpoint(a.out, items, shards)
    print(f"wrote {a.out}: {len(items)} tensors, {sum(len(i[3]) for i in items) / 1e6:.1f} MB, "
          f"{shards} file(s), dtype {a.dtype}{' + fp8 linears' if a.fp8 else ''}", file=sys.stderr)
    if a.fp8 and a.twin:
        os.makedirs(a.twin, exist_ok=True)
        with open(os.path.join(a.twin, "config.json"), "w") as f:
            json.dump(twin_cfg, f, indent=2)
            f.write("\n")
        write_checkpoint(a.twin, twin, 1)
        print(f"wrote {a.twin}: the dequantised f32 twin", file=sys.stderr)


def write_checkpoint(out, items, shards):
    total = sum(len(i[3]) for i in items)
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), items)
        return
    per = -(-len(items) // shards)
    wmap = {}
    for i in range(shards):
        fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = items[i * per:(i + 1) * per]
        write_safetensors(os.path.join(out, fn), part)
        wmap.update({n: fn for n, _, _, _ in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)


if __name__ == "__main__":
    main()
