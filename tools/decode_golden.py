#!/usr/bin/env python3
"""decode_golden.py -- goldens for decode with and without skip_special_tokens
(TEI's /decode, vLLM's /detokenize, zp_tok_decode_skip_special) from the HF
`tokenizers` library over a tokenizer.json (the Qwen3 one: models/default).

  python3 tools/decode_golden.py --tokenizer models/default/tokenizer.json \\
      --out tests/golden/decode-qwen3.jsonl

Writes one line per case: {"ids", "skip_special_tokens", "decoded"} where
decoded is Tokenizer.decode(ids, skip_special_tokens=...). The cases: texts
with special and non-special added tokens encoded and decoded both ways, and
id sequences whose byte-level pieces are not valid UTF-8 alone (a character's
bytes split over tokens, cut short, reordered, interrupted by an added token
that skip_special_tokens removes or keeps). The first line records the
tokenizers version."""
import argparse
import json
import random

import tokenizers

TEXTS = [
    "", "hello world", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreason\n</think>\n\nanswer<|im_end|>", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|endoftext|>", "a<|endoftext|>b<|im_end|>c", "<|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>",
    "emoji 😀👍🏽 and 你好 and e\u0301", "<|im_start|><|im_end|><|endoftext|>",
    "<|vision_start|><|image_pad|><|vision_end|>", " spaced  <|im_end|>  out ",
]


def byte_ids(tok, text):
    """The ids of text's UTF-8 bytes, one token a byte (byte-level pieces)."""
    ids = []
    for b in text.encode():
        ch = BYTES[b]
        ids.append(tok.token_to_id(ch))
    return ids


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTES = bytes_to_unicode()


def cases(tok):
    out = []
    for t in TEXTS:
        out.append(tok.encode(t, add_special_tokens=False).ids)
    sp = {name: tok.token_to_id(name) for name in ("<|im_end|>", "<|endoftext|>", "<think>")}
    e = byte_ids(tok, "😀")  # 4 bytes, 4 tokens
    c = byte_ids(tok, "你")  # 3 bytes
    out += [
        e[:1], e[:2], e[:3], e, e[1:], e[3:], e[::-1], c[:2] + c[:2], c[1:] + c[:1],
        e[:2] + [sp["<|im_end|>"]] + e[2:],  # skipped: the character whole again
        e[:2] + [sp["<think>"]] + e[2:],  # not special: kept, the character broken
        c[:1] + [sp["<|endoftext|>"], sp["<|im_end|>"]] + c[1:],
        [sp["<|im_end|>"]] + e[:3], e[:3] + [sp["<|endoftext|>"]],
        byte_ids(tok, "a") + e[:1] + byte_ids(tok, "b"),
        [tok.token_to_id(BYTES[0xff]), tok.token_to_id(BYTES[0xc0]), tok.token_to_id(BYTES[0x80])],
        [tok.token_to_id(BYTES[0xed]), tok.token_to_id(BYTES[0xa0]), tok.token_to_id(BYTES[0x80])],
    ]
    r = random.Random(7)  # seeded mixes of byte pieces, words and added tokens
    pool = e + c + list(sp.values()) + tok.encode("the cat", add_special_tokens=False).ids + \
        [tok.token_to_id(BYTES[b]) for b in (0x80, 0xbf, 0xc3, 0xe2, 0xf0)]
    for _ in range(40):
        out.append([r.choice(pool) for _ in range(r.randint(1, 12))])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tok = tokenizers.Tokenizer.from_file(a.tokenizer)
    with open(a.out, "w") as f:
        f.write(json.dumps({"tool": "tools/decode_golden.py", "tokenizers": tokenizers.__version__})
                + "\n")
        for ids in cases(tok):
            assert all(i is not None for i in ids), ids
            for skip in (False, True):
                f.write(json.dumps({"ids": ids, "skip_special_tokens": skip,
                                    "decoded": tok.decode(ids, skip_special_tokens=skip)},
                                   ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
