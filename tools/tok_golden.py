#!/usr/bin/env python3
"""tok_golden.py -- the tokenizer conformance corpus and its goldens from the HF
`tokenizers` library (the oracle, DESIGN.md section 8).

  python3 tools/tok_golden.py --tokenizer TOKENIZER.json --out GOLDEN.jsonl

Writes one line per text: {"text", "ids", "decoded"} where ids is
Tokenizer.encode(text, add_special_tokens=False).ids and decoded is
Tokenizer.decode(ids, skip_special_tokens=False). The first line records the
tokenizers version. The corpus is written by hand (scripts, emoji, combining
marks, NFD, digits, contractions, whitespace, special tokens in text, ...) plus
seeded random mixes of the same material.
"""
import argparse, json, random, unicodedata

HAND = [
    "", " ", "  ", "\t", "\n", "\r\n", "a", "Hello, world!", "Hello world", " hello", "hello ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right, they've said we'll see; he'd go. It's done.",
    "I'M SURE YOU'RE RIGHT, THEY'VE SAID WE'LL SEE; HE'D GO. IT'S DONE.",
    "iT'S mIxEd CaSe: We'Ll, yOu'Re, I'D, sHe'S", "'s 't 're 've 'm 'll 'd", "'S'T'RE",
    "dont' ' ' '' '''", "\u017f's long-s contraction 'ſ", "'\u212a kelvin",
    "12345", "3.14159", "1,000,000", "2026-11-28T11:50:45Z", "0x7fffffff", "v1.2.3-rc4",
    "phone: +1 (555) 010-9999", "١٢٣٤٥ ٦٧٨٩٠ Arabic-Indic digits", "①②③ ⅷ ½ ²³",
    "你好，世界！这是一个测试。", "日本語のテキストとカタカナ、ひらがな。", "한국어 텍스트 처리 테스트",
    "中文English混合text123数字", "مرحبا بالعالم، هذا اختبار.", "שלום עולם", "Привет, мир! Ёжик.",
    "Γειά σου Κόσμε", "नमस्ते दुनिया", "สวัสดีชาวโลก", "ქართული ენა", "Ελληνικά και English",
    "emoji 😀😃😄 👍🏽 🇺🇸🇯🇵 ❤️ ✨", "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏾‍💻",
    "keycap 1️⃣ #️⃣ ©️ ®️", "e\u0301 cafe\u0301 nai\u0308ve", "Å\u030a A\u030a \u212b",
    unicodedata.normalize("NFD", "Ångström café naïve résumé Ελληνικά 한국어"),
    "ﬁ ﬂ ﬀ ligatures", "Z\u0351\u0364\u0344a\u0313\u0351l\u0334g\u0315o\u035c text",
    "a  b   c    d", "trailing spaces   ", "   leading spaces", "tabs\tand\t\ttabs",
    "line1\nline2\n\nline3\n\n\n", "crlf\r\nline\r\n\r\n", "mixed \t \n \r\n end",
    "\u00a0nbsp\u00a0here\u2003em\u3000ideographic", "zero\u200bwidth\u200djoiner\u200c",
    "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text", "<|im_start|><|im_end|><|endoftext|>",
    "<think>\n\n</think>\n\n", "almost <|im_star|> special <|endoftext| >", "<|<|endoftext|>|>",
    "x" * 300, "ab" * 500, "supercalifragilisticexpialidocious" * 20, "😀" * 100,
    "def f(x):\n    return x ** 2  # square\n", "int main(void) { return 0; }",
    "{\"json\": [1, 2, {\"k\": null}]}", "https://example.com/path?q=1&r=two#frag",
    "user@example.com", "C:\\Windows\\System32", "$100 €50 £20 ¥1000", "50% off!!!",
    "Mr. O'Neil's dog", "rock 'n' roll", "\"quoted\" and 'single'", "...", "?!?!",
    "— en–dash … ellipsis « guillemets » „quotes“", "tab\tat end\t", "\x0b\x0c form feed",
    "\u2028line sep\u2029para sep", "\u0085next line", "control\x01\x02\x7f chars",
    "Qwen3 is a 30B-A3B MoE model with 128 experts, 8 active.",
    "Is this review positive or negative? \"The film was wonderful.\" Answer: yes",
]

MATERIAL = ["hello", "World", "'s", "'LL", " ", "  ", "\n", "\r\n", "\t", "123", "4", "你好", "世界",
            "مرحبا", "😀", "👨‍👩‍👧", "e\u0301", "ñ", "Ω", "<|im_start|>", "<|endoftext|>", ",", ".",
            "!!", "—", "ß", "İ", "ﬁ", "\u00a0", "한국", "ไทย", "x" * 40, "#", "@", "_", "-"]


def corpus(seed=1, n=400):
    rnd = random.Random(seed)
    out = list(HAND)
    for _ in range(n):
        out.append("".join(rnd.choice(MATERIAL) for _ in range(rnd.randint(1, 24))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(a.tokenizer)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(json.dumps({"tool": "tools/tok_golden.py", "tokenizers": tokenizers.__version__}) + "\n")
        for text in corpus():
            ids = tok.encode(text, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            f.write(json.dumps({"text": text, "ids": ids, "decoded": dec}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
