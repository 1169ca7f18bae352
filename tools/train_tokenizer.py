#!/usr/bin/env python3
"""train_tokenizer.py -- train a small Qwen-style byte-level BPE tokenizer.json
with the HF `tokenizers` library (same normalizer, Split regex, ByteLevel and
special tokens as Qwen3), for self-contained tests and the embedded default.

  python3 tools/train_tokenizer.py --vocab 1024 --out tests/data/small-tokenizer.json
"""
import argparse
from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TEXT = """The quick brown fox jumps over the lazy dog. Is this review positive or negative?
yes no yes no Yes No. Judge whether the Document meets the requirements based on the Query
and the Instruct provided. Note that the answer can only be "yes" or "no".
Query: what is the capital of France? Document: Paris is the capital of France.
I'm sure you're right; they've said we'll see. It's a test of the tokenizer, isn't it?
Classification, verification, reranking, recommendation scoring and embedding jobs.
你好，世界！这是一个测试。日本語のテキスト。 مرحبا بالعالم Привет мир 😀 👍 café naïve
def f(x):\n    return x * 2\n\nfor i in range(10):\n\tprint(i)\r\n
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TEXT] * 50 + TEXT.split("\n") * 20, trainer=trainer)
    tok.save(a.out)


if __name__ == "__main__":
    main()
