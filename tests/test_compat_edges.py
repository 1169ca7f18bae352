"""test_compat_edges.py -- run by tests/test_compat_edges.sh: `zprefill serve` on
tests/models/tiny-tok with a loopback TCP listener, then the requests a new
user and the peers' own tests sent (issue 19): bad JSON escapes and duplicate
keys, vLLM's rerank and score shapes, truncate_prompt_tokens, normalize,
use_activation, /pooling task, SGLang's empty items, vLLM's over-length words,
TEI's empty batches, embed_dtype (fp8 too), return_token_strs, NUL as text,
TEI's /decode, and the paths /invocations, /v2/rerank (Cohere's meta) and
/version. Each answer is checked for its
shape and, where it carries numbers, against the native /v1/prefill's numbers
for the same tokens. Prints one line per check; exit 0 pass, 1 fail."""
import base64
import importlib.util
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile

import requests

import zp_testlib as zt
from zp_testlib import check, close

Z = sys.argv[1] if len(sys.argv) > 1 else "./zprefill"
MODEL_DIR = "tests/models/tiny-tok"
M = "tiny-tok"
MAX_TOKENS = 256


class Server:
    def __init__(self, extra=(), max_tokens=MAX_TOKENS):
        self.tmp = tempfile.mkdtemp()
        self.sock = os.path.join(self.tmp, "s")
        self.log = open(os.path.join(self.tmp, "log"), "w")
        self.p, self.port = zt.start_server(Z, MODEL_DIR, self.sock, self.log, extra,
                                            max_tokens=max_tokens)
        self.base = f"http://127.0.0.1:{self.port}"

    def raw_post(self, path, data):
        """data: the exact body bytes (a bad escape or a duplicate key that
        Python's json would not write)."""
        r = requests.post(self.base + path, data=data,
                          headers={"Content-Type": "application/json"})
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def post(self, path, body):
        return self.raw_post(path, json.dumps(body).encode())

    def get(self, path):
        r = requests.get(self.base + path)
        return r.status_code, r.text

    def stop(self):
        self.p.terminate()
        rc = self.p.wait(timeout=60)
        self.log.close()
        return rc


def native(s, body):
    st, r = s.post("/v1/prefill", body)
    assert st == 200, r
    return r


def tokens(s, text):
    st, r = s.post("/tokenize", {"prompt": text})
    assert st == 200, r
    return r["tokens"]


def rerank_prompt(q, d, instr="Given a web search query, retrieve relevant passages that answer the query"):
    """The [rerank] template of conf/zprefill.ini, as the server builds it."""
    return ("<|im_start|>system\nJudge whether the Document meets the requirements based on the "
            "Query and the Instruct provided. Note that the answer can only be \"yes\" or "
            "\"no\".<|im_end|>\n<|im_start|>user\n" + f"<Instruct>: {instr}\n<Query>: {q}\n"
            f"<Document>: {d}" + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


def yes_no_logit(s, ids):
    ly, ln = native(s, {"prompt_token_ids": ids, "candidates": ["yes", "no"]})["candidate_logprobs"]
    return ly - ln


# ---- row 1: an invalid escape is a 400 naming the field (not a text cut at NUL) ----

def row1(s):
    bad = rb'"safe text\uQQQQ ignore the rest"'
    for path, field, body in (
            ("/v1/embeddings", "input", b'{"input":' + bad + b'}'),
            ("/tokenize", "prompt", b'{"prompt":' + bad + b'}'),
            ("/v1/rerank", "query", b'{"query":' + bad + b',"documents":["a"]}'),
            ("/v1/rerank", "documents", b'{"query":"q","documents":["a",' + bad + b']}'),
            ("/v1/score", "text_2", b'{"text_1":"a","text_2":' + bad + b'}'),
            ("/v1/prefill", "prompt", b'{"prompt":' + bad + b'}'),
            ("/v1/embeddings", "input", rb'{"input":"lone \ud800 surrogate"}'),
            ("/v1/embeddings", "input", rb'{"input":"short \u12"}'),
            ("/v1/embeddings", "input", rb'{"input":"bad \x escape"}')):
        st, r = s.raw_post(path, body)
        err = r.get("error", {}) if isinstance(r, dict) else {}
        check(f"row 1: {path} {body[:40]!r}: 400 naming {field}", st == 400 and
              err.get("param") == field and "escape" in err.get("message", ""), (st, r))
    # zprefill tokenize reads the same JSON: the line is refused, not cut
    p = subprocess.run([Z, "tokenize", "--tokenizer", MODEL_DIR + "/tokenizer.json"],
                       input='{"text":"safe\\uQQQQ rest"}\n', capture_output=True, text=True,
                       timeout=60)
    check("row 1: zprefill tokenize with \\uQQQQ: refused (no ids for a cut text)",
          '"ids"' not in p.stdout and ("escape" in p.stdout + p.stderr), (p.stdout, p.stderr))
    # a valid escape still decodes: the same ids as the raw text
    st, r = s.raw_post("/tokenize", rb'{"prompt":"caf\u00e9 \ud83d\ude00"}')
    check("row 1: valid \\u escapes (a surrogate pair) still read", st == 200 and
          r["tokens"] == tokens(s, "caf\u00e9 \U0001F600"), r)


# ---- row 2: a duplicate key is a 400 naming it ----

def row2(s):
    for path, body, key in (("/v1/completions", b'{"prompt":"zzz","prompt":"hello"}', "prompt"),
                            ("/v1/embeddings", b'{"input":"a","model":"x","input":"b"}', "input"),
                            ("/v1/prefill", b'{"prompt":"zzz","prompt":"hello"}', "prompt"),
                            ("/v1/rerank", b'{"query":"q","documents":[{"text":"a","text":"b"}]}',
                             "documents")):
        st, r = s.raw_post(path, body)
        err = r.get("error", {}) if isinstance(r, dict) else {}
        check(f"row 2: {path} duplicate key: 400 naming it", st == 400 and
              err.get("param") == key and "duplicate key" in err.get("message", ""), (st, r))
    # a large object (the hashed check) with one name twice
    keys = ",".join(f'"k{i}":{i}' for i in range(300))
    st, r = s.raw_post("/v1/embeddings", ('{"input":"a",' + keys + ',"k7":1}').encode())
    check("row 2: 300 keys, one twice: 400", st == 400 and r["error"]["param"] == "k7", (st, r))
    st, r = s.raw_post("/v1/embeddings", ('{"input":"a",' + keys + '}').encode())
    check("row 2: 300 distinct keys: 200 (ignored fields)", st == 200, st)


# ---- row 3: vLLM's RerankResponse ----

def row3(s):
    q, docs = "capital of France", ["Paris is the capital", "bananas", "cats"]
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        st, r = s.post(path, {"model": M, "query": q, "documents": docs})
        ok = st == 200 and isinstance(r.get("id"), str) and r.get("model") == M
        ok = ok and isinstance(r["usage"].get("total_tokens"), int) and \
            r["usage"].get("prompt_tokens") == r["usage"]["total_tokens"] > 0
        ok = ok and len(r["results"]) == 3 and all(
            isinstance(x["index"], int) and x["document"]["text"] == docs[x["index"]] and
            isinstance(x["relevance_score"], float) for x in r["results"])
        ok = ok and all(r["results"][i]["relevance_score"] >= r["results"][i + 1]["relevance_score"]
                        for i in range(2))
        check(f"row 3: {path}: id, model, usage {{prompt_tokens, total_tokens}}, "
              "results[{index, document {text}, relevance_score}] best first", ok, r)
    # Cohere's v2 response: its ApiMeta (api_version.version "2", billed_units
    # search units: one per 100 documents begun), on /v2/rerank only
    for n, units in ((3, 1), (101, 2)):
        st, r = s.post("/v2/rerank", {"model": M, "query": q, "documents": (docs * 34)[:n],
                                      "top_n": 2})
        meta = r.get("meta") if st == 200 else None
        check(f"/v2/rerank ({n} documents): Cohere's meta {{api_version {{version 2}}, "
              f"billed_units {{search_units {units}}}}}", isinstance(meta, dict) and
              meta.get("api_version", {}).get("version") == "2" and
              meta["api_version"].get("is_experimental") is False and
              meta.get("billed_units") == {"search_units": units} and len(r["results"]) == 2,
              (st, meta))
    st, r = s.post("/v1/rerank", {"model": M, "query": q, "documents": docs})
    check("/v1/rerank: no Cohere meta (vLLM's shape)", st == 200 and "meta" not in r, r)
    st, r = s.post("/v1/rerank", {"query": q, "documents": docs, "return_documents": False})
    check("row 3: return_documents false: no document", st == 200 and
          all("document" not in x for x in r["results"]), r)
    # the score is P(yes) of the reranker prompt by /v1/prefill
    ids = tokens(s, rerank_prompt(q, docs[0]))
    want = 1 / (1 + math.exp(-yes_no_logit(s, ids)))
    st, r = s.post("/v1/rerank", {"query": q, "documents": docs[:1]})
    check("row 3: relevance_score == sigmoid(yes - no) by /v1/prefill", st == 200 and
          close(r["results"][0]["relevance_score"], want) and r["usage"]["prompt_tokens"] == len(ids),
          (r, want, len(ids)))
    st, r = s.post("/v1/rerank", {"query": q, "documents": docs, "top_n": 0})
    check("row 3: top_n 0 (vLLM's default): every document", st == 200 and len(r["results"]) == 3, r)
    st, r = s.post("/v1/rerank", {"query": q, "documents": docs, "top_n": 2})
    check("row 3: top_n 2", st == 200 and len(r["results"]) == 2, r)


# ---- row 4: truncate_prompt_tokens on embeddings and rerank ----

def row4(s):
    text = "the quick brown fox jumps over the lazy dog"
    ids = tokens(s, text)
    st, r = s.post("/v1/embeddings", {"input": text, "truncate_prompt_tokens": 3})
    st2, want = s.post("/v1/embeddings", {"input": [ids[-3:]]})
    check("row 4: embeddings truncate_prompt_tokens 3 == the last 3 tokens' embedding",
          st == 200 and st2 == 200 and r["usage"]["prompt_tokens"] == 3 and
          r["data"][0]["embedding"] == want["data"][0]["embedding"], (r, want))
    long_ids = (ids * 40)[:400]
    st, r = s.post("/v1/embeddings", {"input": [long_ids], "truncate_prompt_tokens": -1})
    check("row 4: embeddings truncate_prompt_tokens -1: the longest sequence",
          st == 200 and r["usage"]["prompt_tokens"] == MAX_TOKENS, (st, r))
    q, d = "capital of France", "Paris is the capital"
    pids = tokens(s, rerank_prompt(q, d))
    st, r = s.post("/v1/rerank", {"query": q, "documents": [d], "truncate_prompt_tokens": 20,
                                  "use_activation": False})
    check("row 4: rerank truncate_prompt_tokens 20: the prompt's last 20 tokens",
          st == 200 and r["usage"]["prompt_tokens"] == 20 and
          close(r["results"][0]["relevance_score"], yes_no_logit(s, pids[-20:])), (r, len(pids)))
    for path, body in (("/v1/embeddings", {"input": "a"}), ("/v1/rerank", {"query": "q", "documents": ["a"]})):
        for bad in ("junk", [], {}, 0, -2, 1.5, True):
            st, r = s.post(path, dict(body, truncate_prompt_tokens=bad))
            check(f"row 4: {path} truncate_prompt_tokens {bad!r}: 400 naming it", st == 400 and
                  r["error"]["param"] == "truncate_prompt_tokens", (st, r))
        st, r = s.raw_post(path, json.dumps(body)[:-1].encode() + b',"truncate_prompt_tokens":1e400}')
        check(f"row 4: {path} truncate_prompt_tokens 1e400: 400", st == 400 and
              r["error"]["param"] == "truncate_prompt_tokens", (st, r))
        st, r = s.post(path, dict(body, truncate_prompt_tokens=MAX_TOKENS + 1))
        check(f"row 4: {path} truncate_prompt_tokens over max_model_len: vLLM's words", st == 400 and
              "Please, select a smaller truncation size." in r["error"]["message"], (st, r))


# ---- row 5: /v1/embeddings normalize false ----

def row5(s):
    st, r = s.post("/v1/embeddings", {"input": "hello world", "normalize": False})
    raw = native(s, {"prompt": "hello world", "pooling": "last"})["embedding"]
    v = r["data"][0]["embedding"] if st == 200 else []
    check("row 5: normalize false: the raw pooled vector (== /v1/prefill last pooling)",
          st == 200 and len(v) == len(raw) and all(close(a, b) for a, b in zip(v, raw)) and
          abs(math.sqrt(sum(x * x for x in v)) - 1) > 1e-3, (st, v[:4], raw[:4]))
    st, r = s.post("/v1/embeddings", {"input": "hello world", "normalize": "no"})
    check("row 5: normalize not a bool: 400", st == 400 and r["error"]["param"] == "normalize", r)


# ---- row 7: rerank use_activation false ----

def row7(s):
    q, docs = "capital of France", ["Paris is the capital", "bananas"]
    st, on = s.post("/rerank", {"query": q, "documents": docs})
    st2, off = s.post("/rerank", {"query": q, "documents": docs, "use_activation": False})
    a = {x["index"]: x["relevance_score"] for x in on["results"]}
    b = {x["index"]: x["relevance_score"] for x in off["results"]}
    want = [yes_no_logit(s, tokens(s, rerank_prompt(q, d))) for d in docs]
    check("row 7: use_activation false: the logit yes - no; sigmoid(it) == the default score",
          st == st2 == 200 and all(close(b[i], want[i]) and close(1 / (1 + math.exp(-b[i])), a[i])
                                   for i in range(2)), (on, off, want))
    st, r = s.post("/rerank", {"query": q, "documents": docs, "use_activation": "x"})
    check("row 7: use_activation not a bool: 400", st == 400, r)


# ---- row 8: /pooling task ----

def row8(s):
    st, r = s.post("/pooling", {"input": "hello", "task": "embed"})
    check("row 8: /pooling task embed: the pooled vector", st == 200 and
          len(r["data"][0]["data"]) == 64, st)
    for task in ("token_embed", "token_classify", "classify", "plugin", "bogus"):
        st, r = s.post("/pooling", {"model": M, "input": "hello", "encoding_format": "float",
                                    "task": task})
        check(f"row 8: /pooling task {task}: 400, vLLM's BadRequestError, 'Task {task} is not "
              "supported'", st == 400 and r["error"]["type"] == "BadRequestError" and
              r["error"]["message"].startswith(f"Task {task} is not supported"), r)


# ---- row 9: the newer /v1/score pair names ----

def row9(s):
    st, ref = s.post("/v1/score", {"text_1": "a", "text_2": ["b", "c"]})
    for a, b in (("queries", "documents"), ("data_1", "data_2"), ("queries", "items")):
        st, r = s.post("/v1/score", {a: "a", b: ["b", "c"]})
        check(f"row 9: /v1/score {a}/{b} == text_1/text_2", st == 200 and
              [x["score"] for x in r["data"]] == [x["score"] for x in ref["data"]], (st, r))
    st, r = s.post("/v1/score", {"text_1": "a", "data_2": ["b"]})
    check("row 9: two shapes mixed: 400 naming the shapes", st == 400 and
          "one pair of score inputs" in r["error"]["message"], r)


# ---- row 10: SGLang items [] and one string ----

def row10(s):
    st, r = s.post("/v1/score", {"query": "Is it? ", "items": [], "label_token_ids": [283, 341]})
    check("row 10: items []: 200 {scores: []}", st == 200 and r.get("scores") == [], (st, r))
    st, r = s.post("/v1/score", {"query": "Is it? ", "items": "yes", "label_token_ids": [283, 341]})
    st2, r2 = s.post("/v1/score", {"query": "Is it? ", "items": ["yes"], "label_token_ids": [283, 341]})
    check("row 10: items as one string == a list of it", st == 200 and st2 == 200 and
          r["scores"] == r2["scores"] and len(r["scores"]) == 1, (r, r2))


# ---- row 11: vLLM's over-length wording ----

def row11(s):
    long_q = "What is the capital of France?" * 100
    for path, body in (("/rerank", {"query": long_q, "documents": ["a", "b"]}),
                       ("/v1/score", {"text_1": long_q, "text_2": ["a", "b"]}),
                       ("/v1/embeddings", {"input": long_q})):
        st, r = s.post(path, body)
        m = r["error"]["message"] if st == 400 else ""
        check(f"row 11: {path} over-length: vLLM's words, then ours", st == 400 and
              "Please reduce the length of the input." in m and "max_tokens" in m, (st, r))


# ---- row 12: TEI empty batches ----

def row12(s):
    for path, body, field in (("/embed", {"inputs": []}, "inputs"),
                              ("/rerank", {"query": "q", "texts": []}, "texts")):
        st, r = s.post(path, body)
        check(f"row 12: TEI {path} {field} []: 400 Empty", st == 400 and
              r == {"error": f"`{field}` cannot be empty", "error_type": "Empty"}, (st, r))


# ---- row 13: embed_dtype, return_token_strs ----

def f8_value(code, mb):
    """The value of an 8-bit float code: e4m3fn (mb 3: bias 7, 0x7f NaN, no
    Inf) or e5m2 (mb 2: bias 15, IEEE)."""
    eb, bias = (4, 7) if mb == 3 else (5, 15)
    sign = -1.0 if code & 0x80 else 1.0
    e, m = (code >> mb) & ((1 << eb) - 1), code & ((1 << mb) - 1)
    if mb == 3 and e == 15 and m == 7 or mb == 2 and e == 31 and m:
        return math.nan
    if mb == 2 and e == 31:
        return sign * math.inf
    if e == 0:
        return sign * m * 2.0 ** (1 - bias - mb)
    return sign * (1 + m / (1 << mb)) * 2.0 ** (e - bias)


def f8_nearest(x, mb):
    """The code torch's .to() gives x (a float32): nearest value, ties to the
    even code; past the largest finite value by half a step or more, e4m3fn
    saturates at 448 and e5m2 gives Inf, as torch 2.x casts."""
    if math.isnan(x):
        return 0x7f | (0x80 if math.copysign(1, x) < 0 else 0)
    best = None
    for c in range(256):
        y = f8_value(c, mb)
        if math.isnan(y) or math.isinf(y) or (c & 0x80) != (0x80 if math.copysign(1, x) < 0 else 0):
            continue
        d = abs(y - x)
        if best is None or d < best[0] or (d == best[0] and c % 2 == 0):
            best = (d, c)
    if mb == 2 and abs(x) >= 61440.0:  # half a step past 57344, ties to the even (Inf)
        return 0x7c | (0x80 if x < 0 else 0)
    return best[1]  # e4m3fn: the nearest is 448 however far past


def f8_codes(v, mb):
    """vLLM's bytes: torch's own cast where torch is installed, else the
    nearest-even oracle above."""
    try:
        import torch
        dt = torch.float8_e4m3fn if mb == 3 else torch.float8_e5m2
        return torch.tensor(v, dtype=torch.float32).to(dt).view(torch.uint8).tolist()
    except ImportError:
        return [f8_nearest(x, mb) for x in v]


ORACLE = "torch's .to()" if importlib.util.find_spec("torch") else "the nearest-even oracle"


def row13(s):
    st, f32 = s.post("/v1/embeddings", {"input": "hi", "encoding_format": "float"})
    v = f32["data"][0]["embedding"]
    for dt, fmt, size in (("float32", "<f", 4), ("float16", "<e", 2)):
        st, r = s.post("/v1/embeddings", {"input": "hi", "encoding_format": "base64", "embed_dtype": dt})
        raw = base64.b64decode(r["data"][0]["embedding"]) if st == 200 else b""
        got = struct.unpack(f"<{len(raw) // size}{fmt[1]}", raw)
        check(f"row 13: embed_dtype {dt}: base64 of {dt} values", st == 200 and len(got) == len(v) and
              all(abs(a - b) <= (1e-7 if size == 4 else 1e-3) * max(1, abs(b)) for a, b in zip(got, v)),
              (st, got[:3], v[:3]))
    st, r = s.post("/v1/embeddings", {"input": "hi", "encoding_format": "base64", "embed_dtype": "bfloat16",
                                      "endianness": "big"})
    raw = base64.b64decode(r["data"][0]["embedding"]) if st == 200 else b""
    got = [struct.unpack(">f", raw[i:i + 2] + b"\0\0")[0] for i in range(0, len(raw), 2)]
    check("row 13: embed_dtype bfloat16, endianness big", st == 200 and len(got) == len(v) and
          all(abs(a - b) <= 1e-2 * max(1, abs(b)) for a, b in zip(got, v)), (st, got[:3], v[:3]))
    for dt, mb in (("fp8_e4m3", 3), ("fp8_e5m2", 2)):
        for norm in (True, False):  # unnormalised: values past fp8's range too
            st, f = s.post("/v1/embeddings", {"input": "hi", "normalize": norm})
            v = f["data"][0]["embedding"]
            st, r = s.post("/v1/embeddings", {"input": "hi", "encoding_format": "base64",
                                              "embed_dtype": dt, "normalize": norm})
            raw = base64.b64decode(r["data"][0]["embedding"]) if st == 200 else b""
            want = f8_codes(v, mb)
            check(f"row 13: embed_dtype {dt} (normalize {norm}): one byte a value, each the "
                  f"code {ORACLE} gives", st == 200 and list(raw) == want,
                  (st, list(raw[:8]), want[:8], v[:8]))
    st, r = s.post("/v1/embeddings", {"input": "hi", "embed_dtype": "bad"})
    check("row 13: embed_dtype bad: 400 naming vLLM's five", st == 400 and
          r["error"]["param"] == "embed_dtype" and "fp8_e5m2" in r["error"]["message"], r)
    st, r = s.post("/tokenize", {"prompt": "hello world<|im_end|>", "return_token_strs": True})
    want = None
    try:
        import tokenizers  # the oracle, where installed
        want = tokenizers.Tokenizer.from_file(MODEL_DIR + "/tokenizer.json").encode(
            "hello world<|im_end|>").tokens
    except ImportError:
        want = None
    ok = st == 200 and len(r.get("token_strs", [])) == len(r["tokens"]) and \
        r["token_strs"][-1] == "<|im_end|>" and any(x.startswith("\u0120") for x in r["token_strs"])
    check("row 13: return_token_strs: each id as the vocabulary spells it" +
          (" (== tokenizers' .tokens)" if want else " (tokenizers not installed: shape only)"),
          ok and (want is None or r["token_strs"] == want), (r, want))


# ---- NUL is text in the remaining text fields ----

def nul(s):
    a, b = "hello\u0000world", "hello"
    st, r = s.post("/v1/embeddings", {"input": [a, b]})
    check("NUL: embeddings input holding \\u0000 is embedded whole (not cut)", st == 200 and
          r["data"][0]["embedding"] != r["data"][1]["embedding"] and
          r["usage"]["prompt_tokens"] == len(tokens(s, a)) + len(tokens(s, b)), r)
    st, r = s.post("/v1/rerank", {"query": "q\u0000x", "documents": [a, b]})
    docs = {x["index"]: x["document"]["text"] for x in r.get("results", [])}
    check("NUL: rerank query/documents: scored whole, echoed whole", st == 200 and docs[0] == a and
          r["usage"]["prompt_tokens"] == len(tokens(s, rerank_prompt("q\u0000x", a))) +
          len(tokens(s, rerank_prompt("q\u0000x", b))), r)
    st, r = s.post("/v1/score", {"text_1": a, "text_2": [a, b]})
    st2, r2 = s.post("/v1/score", {"text_1": b, "text_2": [a, b]})
    check("NUL: score texts", st == 200 and st2 == 200 and r["data"] != r2["data"], (r, r2))
    st, r = s.post("/classify", {"input": a, "labels": ["x\u0000y", "z"]})
    check("NUL: classify labels echoed whole", st == 200 and
          r["data"][0]["label"] in ("x\u0000y", "z"), r)
    st, r = s.post("/v1/completions", {"prompt": a, "max_tokens": 0, "echo": True})
    check("NUL: completions prompt echoed whole", st == 200 and r["choices"][0]["text"] == a and
          r["usage"]["prompt_tokens"] == len(tokens(s, a)), r)
    st, r = s.post("/v1/embeddings", {"input": "a", "user": "x\u0000y"})
    check("NUL: in a field read as a C string (user): 400", st == 400, r)
    st, r = s.post("/v1/embeddings", {"input": [a, b]})
    st2, r2 = s.post("/invocations", {"input": [a, b]})
    check("NUL: /invocations' texts are the endpoint's it picks (embeddings: == /v1/embeddings)",
          st == st2 == 200 and [x["embedding"] for x in r["data"]] ==
          [x["embedding"] for x in r2.get("data", [])], r2)
    st, r = s.post("/invocations", {"query": "q\u0000x", "documents": [a, b]})
    check("NUL: /invocations with a rerank body", st == 200 and
          sorted(x["index"] for x in r["results"]) == [0, 1], r)
    st, r = s.post("/invocations", {"input": "a", "user": "x\u0000y"})
    check("NUL: /invocations, in a field read as a C string (user): 400", st == 400, r)


# ---- the paths real clients call ----

def decode(s):
    """TEI's /decode: ids -> text as tokenizers' decode gives it, the special
    added tokens skipped by default; byte-level pieces that are not UTF-8
    alone (a character's bytes split, reordered, interrupted by a special
    token that skipping removes). vLLM's /detokenize keeps them (its decode
    with skip_special_tokens false)."""
    try:
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(MODEL_DIR + "/tokenizer.json")
    except ImportError:
        check("/decode: the tokenizers package (the oracle) is not installed: not checked", True)
        return
    word = tokens(s, "a\U0001F600b\u4f60 text")
    emoji = tokens(s, "\U0001F600")
    eos = tok.token_to_id("<|im_end|>")
    cases = [word, word[::-1], emoji[:1], emoji[:2] + [eos] + emoji[2:], [eos] + word + [eos],
             emoji[1:] + emoji[:1], [], word + [5000, 2 ** 32 - 1]]
    for ids in cases:
        for skip in (None, True, False):
            body = {"ids": ids} if skip is None else {"ids": ids, "skip_special_tokens": skip}
            want = tok.decode(ids, skip_special_tokens=skip is not False)
            st, r = s.post("/decode", body)
            check(f"/decode {body}: [tokenizers' decode]", st == 200 and r == [want], (st, r, want))
    st, r = s.post("/decode", {"ids": cases[:4], "skip_special_tokens": False})
    check("/decode a batch: one text per list", st == 200 and
          r == [tok.decode(x, skip_special_tokens=False) for x in cases[:4]], (st, r))
    for bad in ("x", [-1], [1.5], [[1], 2], {"a": 1}):
        st, r = s.post("/decode", {"ids": bad})
        check(f"/decode ids {bad!r}: 4xx in TEI's error shape", st in (400, 422) and
              isinstance(r, dict) and isinstance(r.get("error"), str) and "error_type" in r,
              (st, r))
    ids = cases[3]
    st, r = s.post("/detokenize", {"tokens": ids})
    check("/detokenize (vLLM's) keeps special tokens: tokenizers' decode(skip false)",
          st == 200 and r["prompt"] == tok.decode(ids, skip_special_tokens=False), (st, r))


def paths(s):
    body = {"model": M, "query": "capital of France", "documents": ["Paris", "bananas"]}
    st, r = s.post("/rerank", body)
    st2, r2 = s.post("/invocations", body)
    check("/invocations with a rerank body == /rerank (keys and scores)", st == st2 == 200 and
          r.keys() == r2.keys() and [x["relevance_score"] for x in r["results"]] ==
          [x["relevance_score"] for x in r2["results"]], (r, r2))
    body = {"model": M, "text_1": "a", "text_2": "b"}
    st, r = s.post("/score", body)
    st2, r2 = s.post("/invocations", body)
    check("/invocations with a score body == /score", st == st2 == 200 and r.keys() == r2.keys() and
          r["data"][0]["score"] == r2["data"][0]["score"], (r, r2))
    st, r = s.post("/invocations", {"input": "hello"})
    check("/invocations with an embeddings body", st == 200 and r["object"] == "list" and
          len(r["data"][0]["embedding"]) == 64, st)
    st, r = s.post("/invocations", {"foo": 1})
    check("/invocations with no known shape: 400 saying which", st == 400 and
          "could not tell" in r["error"]["message"], r)
    st, r = s.get("/version")
    check("GET /version", st == 200 and "version" in json.loads(r), r)


# ---- row 16: the texts ----

def row16(s):
    st, r = s.raw_post("/v1/embeddings", b'{"input": "a",}')
    m = r["error"]["message"] if st == 400 else ""
    check("row 16: invalid JSON says where, and nothing about \\u0000", st == 400 and
          "not valid JSON" in m and "byte" in m and "u0000" not in m, r)
    st, r = s.post("/embed", {"inputs": "a", "model": "other"})
    check("row 16: TEI /embed ignores model (TEI has no such field): 200, not a 404", st == 200, (st, r))


# ---- row 6: a connection that sends nothing, idle keep-alive when slots are scarce ----

def closed_within(sock, limit_s):
    """Whether the server closes sock (recv gives b"" or a reset) before
    limit_s: a bound far past the budget under test, not a speed."""
    sock.settimeout(limit_s)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except socket.timeout:
        return False
    except ConnectionError:
        return True


def keepalive_conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"}" not in got:
        got += s.recv(65536)
    return s


def row6():
    # header timeout 300 ms, idle keep-alive 10 minutes: the budgets are far apart
    ini = os.path.join(tempfile.mkdtemp(), "t.ini")
    with open(ini, "w") as f:
        f.write("[server]\nheader_timeout_ms = 300\nidle_timeout_ms = 600000\nmax_connections = 8\n")
    s = Server(["--config", ini])
    try:
        silent = socket.create_connection(("127.0.0.1", s.port))
        check("row 6: a connection that sends nothing is closed at the header timeout, not the "
              "idle one", closed_within(silent, 30))
        ka = keepalive_conn(s.port)
        check("row 6: a keep-alive connection with slots free keeps the idle budget",
              not closed_within(ka, 3))
        more = [keepalive_conn(s.port) for _ in range(5)]  # 6 of 8 taken: scarce
        # idle ones are closed at the header timeout until fewer than 3/4 are taken:
        # the oldest first (ka); the others then keep their idle budget
        check("row 6: slots scarce (3/4 taken): idle keep-alive gets the header timeout",
              closed_within(ka, 30))
        check("row 6: ... until slots are no longer scarce", not closed_within(more[-1], 2))
        st, _ = s.get("/health")
        check("row 6: ... and new clients are served", st == 200, st)
    finally:
        s.stop()


server = Server()
try:
    for part in (row1, row2, row3, row4, row5, row7, row8, row9, row10, row11, row12, row13, nul,
                 decode, paths, row16):
        try:
            part(server)
        except Exception as e:  # an answer the checks could not even read
            check(part.__name__, False, repr(e))
finally:
    rc = server.stop()
check("SIGTERM: exit 0", rc == 0, rc)
row6()
zt.finish("test_compat_edges")
