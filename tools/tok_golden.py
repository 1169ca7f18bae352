#!/usr/bin/env python3
"""tok_golden.py -- the tokenizer conformance corpus and its goldens from the HF
`tokenizers` library (the oracle, DESIGN.md section 8).

  python3 tools/tok_golden.py --tokenizer TOKENIZER.json --out GOLDEN.jsonl [--gpt2]

--gpt2: the tokenizer with its pre-tokenizer replaced by GPT-2's
(ByteLevel(use_regex=true), GPT2_PRETOK), the other pattern zprefill matches;
tests/test_tokenizer.c makes the same replacement.

Writes one line per text: {"text", "ids", "decoded"} where ids is
Tokenizer.encode(text, add_special_tokens=False).ids and decoded is
Tokenizer.decode(ids, skip_special_tokens=False). The first line records the
tokenizers version. The corpus is written by hand (scripts, emoji, combining
marks, NFD, digits, contractions, whitespace, special tokens in text, ...),
seeded random mixes of the same material, and the Unicode edges (unicode_lines):
every block first encoded in Unicode 13.0-16.0 and two of 17.0 (`tokenizers`'
regex tables are 16.0), NUL and every other control character, and NFC edge
cases (its normalizer's data is Unicode 9.0: pairs composed since, marks whose
combining class came later, exclusions, singletons, Hangul).
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


# (Unicode version, block, first, last): the blocks added since Unicode 13.0
NEW_BLOCKS = [
    ("13.0", "Yezidi", 0x10E80, 0x10EBF), ("13.0", "Chorasmian", 0x10FB0, 0x10FDF),
    ("13.0", "Dives Akuru", 0x11900, 0x1195F), ("13.0", "Lisu Supplement", 0x11FB0, 0x11FBF),
    ("13.0", "Khitan Small Script", 0x18B00, 0x18CFF), ("13.0", "Tangut Supplement", 0x18D00, 0x18D7F),
    ("13.0", "Symbols for Legacy Computing", 0x1FB00, 0x1FBFF),
    ("13.0", "CJK Unified Ideographs Extension G", 0x30000, 0x3134F),
    ("14.0", "Arabic Extended-B", 0x0870, 0x089F), ("14.0", "Vithkuqi", 0x10570, 0x105BF),
    ("14.0", "Latin Extended-F", 0x10780, 0x107BF), ("14.0", "Old Uyghur", 0x10F70, 0x10FAF),
    ("14.0", "Unified Canadian Aboriginal Syllabics Extended-A", 0x11AB0, 0x11ABF),
    ("14.0", "Cypro-Minoan", 0x12F90, 0x12FFF), ("14.0", "Tangsa", 0x16A70, 0x16ACF),
    ("14.0", "Kana Extended-B", 0x1AFF0, 0x1AFFF), ("14.0", "Znamenny Musical Notation", 0x1CF00, 0x1CFCF),
    ("14.0", "Latin Extended-G", 0x1DF00, 0x1DFFF), ("14.0", "Toto", 0x1E290, 0x1E2BF),
    ("14.0", "Ethiopic Extended-B", 0x1E7E0, 0x1E7FF),
    ("15.0", "Arabic Extended-C", 0x10EC0, 0x10EFF), ("15.0", "Devanagari Extended-A", 0x11B00, 0x11B5F),
    ("15.0", "Kawi", 0x11F00, 0x11F5F), ("15.0", "Kaktovik Numerals", 0x1D2C0, 0x1D2DF),
    ("15.0", "Cyrillic Extended-D", 0x1E030, 0x1E08F), ("15.0", "Nag Mundari", 0x1E4D0, 0x1E4FF),
    ("15.0", "CJK Unified Ideographs Extension H", 0x31350, 0x323AF),
    ("15.1", "CJK Unified Ideographs Extension I", 0x2EBF0, 0x2EE5F),
    ("16.0", "Todhri", 0x105C0, 0x105FF), ("16.0", "Garay", 0x10D40, 0x10D8F),
    ("16.0", "Tulu-Tigalari", 0x11380, 0x113FF), ("16.0", "Myanmar Extended-C", 0x116D0, 0x116FF),
    ("16.0", "Sunuwar", 0x11BC0, 0x11BFF), ("16.0", "Egyptian Hieroglyphs Extended-A", 0x13460, 0x143FF),
    ("16.0", "Gurung Khema", 0x16100, 0x1613F), ("16.0", "Kirat Rai", 0x16D40, 0x16D7F),
    ("16.0", "Symbols for Legacy Computing Supplement", 0x1CC00, 0x1CEBF),
    ("16.0", "Ol Onal", 0x1E5D0, 0x1E5FF),
    ("17.0", "Sidetic", 0x10940, 0x1095F), ("17.0", "CJK Unified Ideographs Extension J", 0x323B0, 0x3347F),
]
# what follows each code point of a block, in turn: contractions (HF's (?i)
# included), digits, spaces, newlines, a combining mark
CONTEXT = ["'s", "'RE", "", " ", "1", "'ll", "\n", "\u017f", "'D.", "\u0301", "  ", "'ve\t"]
# marks with a non-zero combining class in Unicode 10.0-16.0 (class 0 in 9.0)
LATE_MARKS = [0x0D3B, 0x0D3C, 0x1DF6, 0x1DF7, 0x1DF8, 0x1DF9, 0x10F46, 0x10F47, 0x10F50, 0x1DFA,
              0x0898, 0x0899, 0x089F, 0x1ABF, 0x1AC0, 0x1AC1, 0x1ACE, 0x0897, 0x10EFD, 0x10EFF,
              0x1E4EC, 0x1E4EF, 0x1E5EE, 0x1E5EF, 0x11F41, 0x11F42, 0x16FF0, 0x16FF1, 0x1E08F,
              0x10D69, 0x10D6D, 0x113CE, 0x113D0, 0x1612F, 0x16D6F]
# canonical pairs: composed by Unicode 9.0 (Grantha, Oriya, Tamil, ...) and
# composed only since (Dives Akuru 13.0; Tulu-Tigalari, Gurung Khema, Kirat Rai 16.0)
PAIRS = [(0x11347, 0x1133E), (0x11347, 0x11357), (0x0B47, 0x0B3E), (0x0B47, 0x0B56), (0x0B47, 0x0B57),
         (0x0BC6, 0x0BBE), (0x0CC6, 0x0CD5), (0x0D46, 0x0D3E), (0x0DD9, 0x0DCF), (0x1025, 0x102E),
         (0x1B05, 0x1B35), (0x114B9, 0x114BA), (0x115B8, 0x115AF), (0x11131, 0x11127),
         (0x11935, 0x11930), (0x11382, 0x113C9), (0x11384, 0x113BB), (0x1138B, 0x113C2),
         (0x11390, 0x113C9), (0x113C2, 0x113C2), (0x113C2, 0x113B8), (0x113C2, 0x113C9),
         (0x1611E, 0x1611E), (0x1611E, 0x16129), (0x1611E, 0x1611F), (0x16129, 0x1611F),
         (0x1611E, 0x16120), (0x16D63, 0x16D67), (0x16D67, 0x16D67), (0x16D69, 0x16D67)]
# precomposed since 9.0, and exclusions, singletons, non-starter decompositions
SINGLES = [0x11938, 0x11383, 0x1138E, 0x113C5, 0x113C7, 0x113C8, 0x16121, 0x16125, 0x16D68, 0x16D6A,
           0x0958, 0x095F, 0x2ADC, 0xFB1D, 0xFB2A, 0x1D15E, 0x212B, 0x2126, 0x212A, 0x0340, 0x0341,
           0x0343, 0x0374, 0x037E, 0x0387, 0x1F71, 0x0344, 0x0F73, 0x0F75, 0x0F81, 0x2329, 0xF900]


def block_lines():
    for _, _, lo, hi in NEW_BLOCKS:
        cps = list(range(lo, hi + 1))
        if len(cps) > 512:  # big ideograph and hieroglyph blocks: both ends and a stride
            cps = cps[:96] + cps[96:-96:len(cps) // 160] + cps[-96:]
        for i in range(0, len(cps), 32):
            yield "".join(chr(c) + CONTEXT[j % len(CONTEXT)] for j, c in enumerate(cps[i:i + 32]))


def control_lines():
    out = ["\x00", "a\x00b", "\x00's", "\x00\x00\x00", "\x00\n\x00", " \x00 ", "\x00 ",
           "x\x00<|endoftext|>\x00", "\x00<|im_start|>\x00", "e\x00\u0301", "\u0301\x00",
           "1\x002", "\x00" * 40, "\r\x00\n", "'\x00s", "\x00\u3000\x00",
           "".join(map(chr, range(0x20))) + "\x7f", "".join(map(chr, range(0x7f, 0xa0)))]
    for c in list(range(0x20)) + list(range(0x7f, 0xa0)):
        x = chr(c)
        out.append(f"a{x}b {x}'s {x}{x}  {x}\n{x}1{x} ")
    return out


def compose_lines():
    import unicodedata
    out = []
    for a, b in PAIRS:
        x, y = chr(a), chr(b)
        out += [x + y, x + y + "'s", "q" + x + y + x, x + "\u0301" + y, x + y + y, " " + x + " " + y]
    out += ["".join(chr(c) + " " + chr(c) + "'s" for c in SINGLES)]
    out += [chr(c) + "\u0316\u0301" for c in SINGLES]
    for m in LATE_MARKS:
        x = chr(m)
        out += ["a" + x + "\u0301", "a\u0301" + x + "\u0316", "e" + x + "\u0301", "e\u0316" + x + "\u0301o",
                "\u1100\u1161" + x + "\u11a8"]
    out += ["\u1100\u1161", "\u1100\u1161\u11a8", "\uac00\u11a8", "\uac01\u11a8", "\u1100\u1100\u1161",
            "\u1161\u11a8", "\u11a8", "\u1112\u1175\u11c2\u11c3", "\uac00\u0301\u11a8", "\ud7a3\u11a8",
            "a\u0301\u0316", "a\u0316\u0301", "a\u0315\u0300\u05ae\u0300b", "a\u0301\u0301",
            "e\u0316\u0301", "\u0301e", "\u0301\u0301", "A\u030a\u0301", "\u212b\u0301", "\u0958\u093c"]
    # every precomposed pair, then marks of lower, equal and higher class than its own
    pre = [chr(c) for c in range(0xC0, 0x30000) if unicodedata.decomposition(chr(c))[:1] not in ("", "<")
           and len(unicodedata.decomposition(chr(c)).split()) == 2]
    for i in range(0, len(pre), 32):
        out.append(" ".join(p + "\u0328" + p + "\u0334\u0316" + p + "\u0345" + p + "\u0301x" for p in pre[i:i + 32]))
    # every mark of Python's own database with a non-zero class, after a base, in lines of 32
    marks = [chr(c) for c in range(0x300, 0x110000) if unicodedata.combining(chr(c))]
    for i in range(0, len(marks), 32):
        out.append(" ".join("a" + m + "\u0301" + "e\u0316" + m for m in marks[i:i + 32]))
    return out


def unicode_lines():
    return list(block_lines()) + control_lines() + compose_lines()


def corpus(seed=1, n=400):
    rnd = random.Random(seed)
    out = list(HAND)
    for _ in range(n):
        out.append("".join(rnd.choice(MATERIAL) for _ in range(rnd.randint(1, 24))))
    return out + unicode_lines()


GPT2_PRETOK = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpt2", action="store_true")
    a = ap.parse_args()
    import tokenizers
    spec = json.load(open(a.tokenizer, encoding="utf-8"))
    if a.gpt2:
        spec["pre_tokenizer"] = GPT2_PRETOK
    tok = tokenizers.Tokenizer.from_str(json.dumps(spec))
    with open(a.out, "w", encoding="utf-8") as f:
        head = {"tool": "tools/tok_golden.py", "tokenizers": tokenizers.__version__}
        if a.gpt2:
            head["pre_tokenizer"] = GPT2_PRETOK
        f.write(json.dumps(head) + "\n")
        for text in corpus():
            ids = tok.encode(text, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            f.write(json.dumps({"text": text, "ids": ids, "decoded": dec}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
