#!/usr/bin/env python3
# gen_bf16_layer.py -- a random bf16 checkpoint of one Qwen3-30B-A3B layer
# (the vocabulary cut to 4096: about 1.3 GB), written tensor by tensor with
# numpy alone, for tools/gpu_check.sh's load-path measurement (GPUDirect vs
# staged). Usage: tools/gen_bf16_layer.py OUTDIR
import json
import os
import struct
import sys

import numpy as np


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    c = json.load(open("tests/models/qwen3-30b-a3b-config/config.json"))
    c["num_hidden_layers"] = c["max_window_layers"] = 1
    c["vocab_size"] = 4096
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
    H, F, E, V = c["hidden_size"], c["moe_intermediate_size"], c["num_experts"], c["vocab_size"]
    q, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    p = "model.layers.0."
    t = {"model.embed_tokens.weight": (V, H), "lm_head.weight": (V, H), "model.norm.weight": (H,),
         p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
         p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,),
         p + "self_attn.q_proj.weight": (q * hd, H), p + "self_attn.k_proj.weight": (kv * hd, H),
         p + "self_attn.v_proj.weight": (kv * hd, H), p + "self_attn.o_proj.weight": (H, q * hd),
         p + "mlp.gate.weight": (E, H)}
    for e in range(E):
        x = p + "mlp.experts.%d." % e
        t.update({x + "gate_proj.weight": (F, H), x + "up_proj.weight": (F, H),
                  x + "down_proj.weight": (H, F)})
    hdr, off = {}, 0
    for n, s in t.items():
        b = int(np.prod(s)) * 2
        hdr[n] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + b]}
        off += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    rng = np.random.default_rng(1)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n, s in t.items():
            if len(s) == 1:  # norms: 1.0
                f.write(np.full(s, 0x3F80, np.uint16).tobytes())
            else:  # N(0, 0.02) truncated to bf16
                x = (rng.standard_normal(s, dtype=np.float32) * 0.02).view(np.uint32) >> 16
                f.write(x.astype(np.uint16).tobytes())
    print("gen_bf16_layer: %.2f GB in %s" % (off / 1e9, d))


if __name__ == "__main__":
    main()
