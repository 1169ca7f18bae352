#!/usr/bin/env python3
"""bench_tokenizer.py -- single-thread encode speed of `zprefill tokenize` against
the HF `tokenizers` library on the same text, measured in one run, and whether
every line's ids agree.

  python3 tools/bench_tokenizer.py [--tokenizer models/default/tokenizer.json] [--mb 8]

The text: English prose-like lines, code, CJK, mixed scripts and emoji built
from the conformance corpus (tools/tok_golden.py), about --mb megabytes, in
lines of 1-4 KB (documents). HF is timed two ways: encode() per line (a Python
call each) and encode_batch() with one Rayon thread; zprefill reports the time
inside zp_tok_encode only (not JSON parsing or printing).
"""
import argparse, json, os, random, subprocess, sys, tempfile, time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(__file__))
import tok_golden  # noqa: E402

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "prefill expert router attention tokens batch latency throughput inference model").split()


def lines(mb, seed=3):
    r = random.Random(seed)
    corpus = tok_golden.corpus()
    out, size = [], 0
    while size < mb * 1e6:
        kind = r.random()
        if kind < 0.6:
            words = [r.choice(WORDS) for _ in range(r.randint(150, 600))]
            for i in range(0, len(words), r.randint(8, 20)):
                words[i] = words[i].capitalize()
            s = " ".join(words).replace(" the ", ", the ", 3) + "."
        elif kind < 0.75:
            s = "\n".join(f"    x{i} = f(x{i - 1}, {i * 31 % 97})  # step {i}" for i in range(1, r.randint(20, 80)))
        else:
            s = "".join(r.choice(corpus) for _ in range(r.randint(20, 60)))
        out.append(s)
        size += len(s.encode())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "models",
                                                        "default", "tokenizer.json"))
    ap.add_argument("--mb", type=float, default=8)
    ap.add_argument("--zprefill", default="./zprefill")
    a = ap.parse_args()
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(a.tokenizer)
    text = lines(a.mb)
    nbytes = sum(len(s.encode()) for s in text)
    t0 = time.perf_counter()
    hf = [tok.encode(s, add_special_tokens=False).ids for s in text]
    t_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok.encode_batch(text, add_special_tokens=False)
    t_batch = time.perf_counter() - t0
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for s in text:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
        path = f.name
    p = subprocess.run([a.zprefill, "tokenize", "--tokenizer", a.tokenizer], stdin=open(path, "rb"),
                       capture_output=True, check=True)
    os.unlink(path)
    ours = [json.loads(l)["ids"] for l in p.stdout.decode().splitlines()]
    stat = dict(kv.split("=") for kv in p.stderr.decode().split() if "=" in kv)
    t_ours = float(stat["encode_s"])
    same = sum(x == y for x, y in zip(hf, ours))
    mb = nbytes / 1e6
    print(f"text: {mb:.2f} MB in {len(text)} lines; tokenizers {tokenizers.__version__}")
    print(f"HF encode() per line      : {mb / t_call:7.2f} MB/s")
    print(f"HF encode_batch, 1 thread : {mb / t_batch:7.2f} MB/s")
    print(f"zprefill zp_tok_encode    : {mb / t_ours:7.2f} MB/s")
    print(f"ratio vs HF encode()      : {t_call / t_ours:.2f}x; vs encode_batch: {t_batch / t_ours:.2f}x")
    print(f"identical ids: {same}/{len(text)} lines")
    return 0 if same == len(text) == len(ours) else 1


if __name__ == "__main__":
    sys.exit(main())
