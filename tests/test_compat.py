"""test_compat.py -- run by tests/test_compat.sh: `zprefill serve` on
tests/models/tiny-tok with a loopback TCP listener, then every client shape of
vLLM, TEI and OpenAI that zprefill answers, through the `openai` client library
(completions, embeddings) and the JSON bodies of the vLLM and TEI docs (sent
with `requests` over TCP and openai's own httpx over the Unix socket). Each answer is checked
for its shape and against the native /v1/prefill's numbers for the same
tokens, so a wrong value fails as well as a wrong key. Prints one line per
check and a summary; exit 0 pass, 1 fail."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import importlib

import openai
import requests

import zp_testlib as zt
from zp_testlib import check, close, free_port

# the HTTP client library this openai release is built on (httpx, or httpx2
# in newer ones): a Unix-socket transport of it is handed to openai
_oc = importlib.import_module("openai._client")
httpx = getattr(_oc, "httpx2", None) or getattr(_oc, "httpx")

Z = sys.argv[1] if len(sys.argv) > 1 else "./zprefill"
MODEL_DIR = "tests/models/tiny-tok"
M = "tiny-tok"
MAX_TOKENS = 256  # the server's longest sequence: truncation is tried past it
with open(os.path.join(MODEL_DIR, "config.json")) as _f:
    VOCAB = json.load(_f)["vocab_size"]


def norm(v):
    return math.sqrt(sum(x * x for x in v))


class Transport:
    """One way to the server: TCP (requests, openai's default client) or the
    Unix socket (httpx with a uds transport, under openai too)."""

    def __init__(self, name, port=None, sock=None):
        self.name, self.port, self.sock = name, port, sock
        if port:
            self.base = f"http://127.0.0.1:{port}"
            self.http = requests.Session()
            self.oa = openai.OpenAI(base_url=self.base + "/v1", api_key="none", max_retries=0)
        else:
            self.base = "http://zprefill"
            self.http = httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=60)
            self.oa = openai.OpenAI(base_url=self.base + "/v1", api_key="none", max_retries=0,
                                    http_client=httpx.Client(
                                        transport=httpx.HTTPTransport(uds=sock), timeout=60))

    def post(self, path, body):
        r = self.http.post(self.base + path, json=body)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def get(self, path):
        r = self.http.get(self.base + path)
        return r.status_code, r.text

    def raw(self, data):
        """Bytes sent on a fresh connection; what comes back until the server
        closes it (the last request says Connection: close)."""
        if self.port:
            s = socket.create_connection(("127.0.0.1", self.port))
        else:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
        s.sendall(data)
        out = b""
        s.settimeout(30)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return out


def start(extra, log, max_tokens=MAX_TOKENS):
    sock = os.path.join(tmp, "s")
    p, port = zt.start_server(Z, MODEL_DIR, sock, log, extra, max_tokens=max_tokens)
    return p, sock, port


# ---- helpers on the native API (the reference numbers) ----

def tokens(t, text):
    st, r = t.post("/tokenize", {"prompt": text})
    assert st == 200, r
    return r["tokens"]


def detok(t, ids):
    st, r = t.post("/detokenize", {"tokens": ids})
    if st == 400 and len(ids) == 1 and "not a token id" in r["error"]["message"]:
        return ""  # a model id past the tokenizer's: no text (as the server says)
    assert st == 200, r
    return r["prompt"]


def native(t, body):
    st, r = t.post("/v1/prefill", body)
    assert st == 200, r
    return r


# ---- vLLM: /v1/completions with echo and max_tokens 0 ----

def completions(t):
    n_ = t.name
    prompt = "The quick brown fox jumps"
    ids = tokens(t, prompt)
    n = len(ids)
    r = t.oa.completions.create(model=M, prompt=prompt, max_tokens=0, echo=True, logprobs=3)
    ch = r.choices[0]
    lp = ch.logprobs
    check(f"{n_} completions: object, text echoed, finish_reason",
          r.object == "text_completion" and ch.text == prompt and ch.finish_reason == "length",
          r)
    check(f"{n_} completions: usage", r.usage.prompt_tokens == n and r.usage.completion_tokens == 0,
          r.usage)
    check(f"{n_} completions: one token per prompt token, joined = prompt",
          len(lp.tokens) == n and "".join(lp.tokens) == prompt, lp.tokens)
    offs, at = [], 0
    for tok in lp.tokens:
        offs.append(at)
        at += len(tok)
    check(f"{n_} completions: text_offset", lp.text_offset == offs, lp.text_offset)
    # offsets count characters (Python's len), here with characters of 2-4 bytes
    # that byte-level tokens split (each part reads as U+FFFD, as vLLM decodes it)
    u = t.oa.completions.create(model=M, prompt="naïve café 😀 ok", max_tokens=0, echo=True,
                                logprobs=0).choices[0].logprobs
    offs, at = [], 0
    for tok in u.tokens:
        offs.append(at)
        at += len(tok)
    check(f"{n_} completions: text_offset in characters", u.text_offset == offs and
          any(len(x.encode()) > len(x) for x in u.tokens), (u.tokens, u.text_offset))
    check(f"{n_} completions: position 0 is null",
          lp.token_logprobs[0] is None and lp.top_logprobs[0] is None, lp.token_logprobs[:2])
    ref = native(t, {"prompt_token_ids": ids, "prompt_logprobs": True})["prompt_logprobs"]
    check(f"{n_} completions: token_logprobs == /v1/prefill prompt_logprobs",
          all(close(a, b) for a, b in zip(lp.token_logprobs[1:], ref[1:])),
          (lp.token_logprobs, ref))
    good = True
    for p in range(1, n):
        top = native(t, {"prompt_token_ids": ids[:p], "top_logprobs": 3})["top_logprobs"]
        texts = [detok(t, [i]) for i, _ in top]
        got = lp.top_logprobs[p]
        want_keys = set(texts) | {lp.tokens[p]}
        if set(got) != want_keys or len(got) > 4:
            good = False
            print(f"     position {p}: keys {sorted(got)} want {sorted(want_keys)}")
        for (i, v), tx in zip(top, texts):
            if texts.count(tx) == 1 and tx != lp.tokens[p] and not close(got.get(tx), v):
                good = False
                print(f"     position {p}: {tx!r} {got.get(tx)} want {v}")
        if not close(got.get(lp.tokens[p]), lp.token_logprobs[p]) and lp.tokens[p] not in texts:
            good = False
    check(f"{n_} completions logprobs=3: each position's top_logprobs == /v1/prefill top 3 "
          "there, plus the prompt token", good)

    # vLLM's integer prompt_logprobs: top-k per position with ranks
    st, b = t.post("/v1/completions", {"model": M, "prompt": prompt, "max_tokens": 0,
                                      "echo": True, "prompt_logprobs": 2})
    pl = b["choices"][0]["prompt_logprobs"] if st == 200 else None
    ok = st == 200 and pl[0] is None and len(pl) == n and b["choices"][0]["logprobs"] is None
    for p in range(1, n if ok else 0):
        d = pl[p]
        top = native(t, {"prompt_token_ids": ids[:p], "top_logprobs": 2})["top_logprobs"]
        mine = d.get(str(ids[p]))
        ok &= mine is not None and close(mine["logprob"], lp.token_logprobs[p])
        ok &= mine["decoded_token"] == lp.tokens[p]
        for rank, (i, v) in enumerate(top, 1):
            e = d.get(str(i))
            ok &= e is not None and close(e["logprob"], v) and e["rank"] == rank
        # the rank: 1 + the tokens more likely, from the whole vocabulary's log-probs
        every = native(t, {"prompt_token_ids": ids[:p], "top_logprobs": VOCAB})["top_logprobs"]
        here = [v for i, v in every if i == ids[p]][0]
        ok &= mine["rank"] == 1 + sum(1 for i, v in every if v > here)
        if not ok:
            print(f"     position {p}: {d} top {top}")
            break
    check(f"{n_} completions prompt_logprobs=2: {{id: {{logprob, rank, decoded_token}}}} per "
          "position == /v1/prefill top 2, the prompt token's rank", ok, b)

    # the native /v1/prefill takes the integer form too: the same entries (ids
    # for keys, no decoded_token), and byte for byte what `zprefill prefill` says
    line = json.dumps({"id": 1, "prompt_token_ids": ids, "prompt_logprobs": 2})
    st, nat = t.post("/v1/prefill", json.loads(line))
    strip = [None] + [{k: {"logprob": v["logprob"], "rank": v["rank"]} for k, v in d.items()}
                      for d in (pl or [None])[1:]]
    check(f"{n_} /v1/prefill prompt_logprobs=2 == completions' prompt_logprobs (ids, ranks)",
          st == 200 and nat["prompt_logprobs"] == strip, (nat, strip))
    cli = subprocess.run([Z, "prefill", "--model", MODEL_DIR, "--dtype", "fp32"], input=line + "\n",
                         capture_output=True, text=True, timeout=120).stdout.strip()
    body = t.http.post(t.base + "/v1/prefill", content=line) if not t.port else \
        t.http.post(t.base + "/v1/prefill", data=line)
    check(f"{n_} /v1/prefill prompt_logprobs=2 == zprefill prefill, byte for byte",
          body.text == cli, (body.text, cli))

    # prompts as token ids, several at once
    r = t.oa.completions.create(model=M, prompt=[ids, ids[:3]], max_tokens=0, echo=True)
    check(f"{n_} completions: token-id prompts, one choice each",
          len(r.choices) == 2 and r.choices[0].text == prompt and
          r.choices[1].text == detok(t, ids[:3]) and r.choices[1].index == 1 and
          r.usage.prompt_tokens == n + 3, r)
    # truncate_prompt_tokens keeps the last ones (vLLM's left truncation)
    r = t.oa.completions.create(model=M, prompt=prompt, max_tokens=0, echo=True, logprobs=0,
                                extra_body={"truncate_prompt_tokens": 2})
    check(f"{n_} completions truncate_prompt_tokens=2: the last 2 tokens",
          r.usage.prompt_tokens == 2 and r.choices[0].logprobs.tokens == lp.tokens[-2:], r)
    for name, kw, param in (("max_tokens 16", {"max_tokens": 16, "echo": True}, "max_tokens"),
                            ("no echo", {"max_tokens": 0}, "max_tokens"),
                            ("logprobs 21", {"max_tokens": 0, "echo": True, "logprobs": 21},
                             "logprobs")):
        try:
            t.oa.completions.create(model=M, prompt=prompt, **kw)
            check(f"{n_} completions {name}: 400", False, "accepted")
        except openai.BadRequestError as e:
            check(f"{n_} completions {name}: 400 naming {param}", e.body.get("param") == param,
                  e.body)


# ---- vLLM: /v1/score with text_1, text_2 ----

def pair_score(t, a, b):
    ids = tokens(t, a) + tokens(t, b)
    ly, ln = native(t, {"prompt_token_ids": ids, "candidates": ["yes", "no"]})["candidate_logprobs"]
    return 1 / (1 + math.exp(-(ly - ln))), len(ids)


def score(t):
    n_ = t.name
    q, docs = "What is the capital of France?", ["Paris is the capital.", "Bananas are yellow."]
    st, r = t.post("/v1/score", {"model": M, "text_1": q, "text_2": docs})
    want = [pair_score(t, q, d) for d in docs]
    ok = st == 200 and r["object"] == "list" and len(r["data"]) == 2 and all(
        e["object"] == "score" and e["index"] == i and close(e["score"], want[i][0])
        for i, e in enumerate(r["data"]))
    check(f"{n_} score 1 to N: data[i].score == P(yes) of the pair by /v1/prefill", ok, (r, want))
    check(f"{n_} score usage", st == 200 and r["usage"]["prompt_tokens"] == sum(w[1] for w in want),
          r)
    st, r = t.post("/score", {"text_1": ["a b", "c"], "text_2": ["d", "e f"]})
    want = [pair_score(t, "a b", "d")[0], pair_score(t, "c", "e f")[0]]
    check(f"{n_} score N to N (/score)", st == 200 and
          [round(e["score"], 5) for e in r["data"]] == [round(w, 5) for w in want], (r, want))
    st, r = t.post("/v1/score", {"text_1": "a", "text_2": "b"})
    check(f"{n_} score 1 to 1, strings", st == 200 and close(r["data"][0]["score"],
                                                            pair_score(t, "a", "b")[0]), r)
    st, r = t.post("/v1/score", {"text_1": "a", "text_2": "b", "use_activation": False})
    ids = tokens(t, "a") + tokens(t, "b")
    ly, ln = native(t, {"prompt_token_ids": ids, "candidates": ["yes", "no"]})["candidate_logprobs"]
    check(f"{n_} score use_activation false: the logit, yes - no", st == 200 and
          close(r["data"][0]["score"], ly - ln), r)
    st, r = t.post("/v1/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]})
    check(f"{n_} score 2 to 3: 400", st == 400 and r["error"]["param"] == "text_1", r)
    st, r = t.post("/v1/score", {"text_1": q, "text_2": docs[0], "truncate_prompt_tokens": 3})
    check(f"{n_} score truncate_prompt_tokens=3", st == 200 and r["usage"]["prompt_tokens"] == 3, r)
    st, r = t.post("/v1/score", {"query": "Is it? ", "items": ["yes", "no"],
                                 "label_token_ids": [283, 341]})
    check(f"{n_} score: SGLang's query/items shape still answered", st == 200 and
          len(r.get("scores", [])) == 2, r)


# ---- vLLM: /ping, HEAD /health ----

def probes(t):
    n_ = t.name
    st_get, body = t.get("/health")
    st1, _ = t.get("/ping")
    st2, _ = t.post("/ping", {})
    check(f"{n_} GET and POST /ping: 200", st1 == 200 and st2 == 200, (st1, st2))
    out = t.raw(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    clen = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
    check(f"{n_} HEAD /health: 200, GET's Content-Length, no body (the next response follows)",
          head.startswith(b"HTTP/1.1 200") and clen and
          int(clen[0].split(b":")[1]) == len(body.encode()) and
          rest.startswith(b"HTTP/1.1 200") and rest.endswith(body.encode()), out)


# ---- TEI: /embed, /rerank, /tokenize, /info ----

def tei(t):
    n_ = t.name
    st, e = t.post("/embed", {"inputs": "hello world"})
    ok = st == 200 and len(e) == 1 and len(e[0]) == 64 and close(norm(e[0]), 1.0)
    emb = t.oa.embeddings.create(model=M, input="hello world", encoding_format="float")
    ok = ok and all(close(a, b) for a, b in zip(e[0], emb.data[0].embedding))
    check(f"{n_} TEI /embed: [[...]], normalised, == /v1/embeddings", ok, e)
    st, e2 = t.post("/embed", {"inputs": ["hello world", "x"]})
    check(f"{n_} TEI /embed batch", st == 200 and len(e2) == 2 and e2[0] == e[0], st)
    st, raw = t.post("/embed", {"inputs": "hello world", "normalize": False})
    pooled = native(t, {"prompt": "hello world", "pooling": "last"})["embedding"]
    check(f"{n_} TEI /embed normalize false == /v1/prefill last-token pooling",
          st == 200 and all(close(a, b) for a, b in zip(raw[0], pooled)), raw)
    st, d = t.post("/embed", {"inputs": "hello world", "dimensions": 8})
    k = norm(e[0][:8])
    check(f"{n_} TEI /embed dimensions 8: the first 8, renormalised",
          st == 200 and len(d[0]) == 8 and all(close(a, b / k) for a, b in zip(d[0], e[0][:8])), d)
    long_text = "word " * 400
    ids = tokens_unlimited(t, 400)
    st, r = t.post("/embed", {"inputs": long_text})
    check(f"{n_} TEI /embed over max tokens, no truncate: 422 in TEI's error shape",
          st == 422 and r.get("error_type") == "Validation" and "tokens" in r.get("error", ""), r)
    for side, part in (("right", ids[:MAX_TOKENS]), ("left", ids[-MAX_TOKENS:])):
        st, r = t.post("/embed", {"inputs": long_text, "truncate": True,
                                  "truncation_direction": side})
        st2, want = t.post("/embed", {"inputs": part})
        check(f"{n_} TEI /embed truncate {side}: == the {'first' if side == 'right' else 'last'} "
              f"{MAX_TOKENS} tokens", st == 200 and st2 == 200 and r == want, (r, want))

    q, texts = "capital of France", ["Bananas are yellow", "Paris is the capital", "cats"]
    st, r = t.post("/rerank", {"query": q, "texts": texts})
    st2, v = t.post("/v1/rerank", {"query": q, "documents": texts})
    want = {x["index"]: x["relevance_score"] for x in v["results"]} if st2 == 200 else {}
    ok = st == 200 and isinstance(r, list) and sorted(x["index"] for x in r) == [0, 1, 2]
    ok = ok and all(r[i]["score"] >= r[i + 1]["score"] for i in range(2)) and all(
        "text" not in x and close(x["score"], want[x["index"]]) for x in r)
    check(f"{n_} TEI /rerank: [{{index, score}}] best first, == /v1/rerank scores", ok, (r, v))
    st, r2 = t.post("/rerank", {"query": q, "texts": texts, "return_text": True,
                                "raw_scores": True})
    ok = st == 200 and all(x["text"] == texts[x["index"]] and
                           close(1 / (1 + math.exp(-x["score"])), want[x["index"]]) for x in r2)
    check(f"{n_} TEI /rerank return_text, raw_scores (sigmoid(raw) == score)", ok, r2)
    st, r = t.post("/rerank", {"query": q, "texts": [long_text]})
    check(f"{n_} TEI /rerank over max tokens, no truncate: 422 in TEI's error shape",
          st == 422 and r.get("error_type") == "Validation", r)
    st, r = t.post("/rerank", {"query": q, "texts": [long_text, "x"], "truncate": True})
    check(f"{n_} TEI /rerank truncate: the long text cut to fit", st == 200 and len(r) == 2, r)

    text = "héllo wörld 😀 ok"
    st, tk = t.post("/tokenize", {"inputs": text})
    raw_b = text.encode()
    ok = st == 200 and len(tk) == 1 and [x["id"] for x in tk[0]] == tokens(t, text)
    ok = ok and all(x["special"] is False and x["text"] == raw_b[x["start"]:x["stop"]].decode()
                    for x in tk[0])
    ok = ok and tk[0][0]["start"] == 0 and tk[0][-1]["stop"] == len(raw_b)
    check(f"{n_} TEI /tokenize: ids == /tokenize's, text == the input's bytes [start, stop)", ok, tk)
    st, tk = t.post("/tokenize", {"inputs": ["a b", "c"]})
    check(f"{n_} TEI /tokenize batch", st == 200 and len(tk) == 2 and
          [x["id"] for x in tk[1]] == tokens(t, "c"), tk)
    st, info = t.get("/info")
    info = json.loads(info) if st == 200 else {}
    check(f"{n_} TEI /info", info.get("model_id") == M and info.get("max_input_length") ==
          MAX_TOKENS and "embedding" in info.get("model_type", {}) and
          info.get("max_client_batch_size", 0) > 0, info)


def tokens_unlimited(t, n):
    """The ids of "word " * n, past the /tokenize limit: "word", then " word"
    n - 1 times, then the trailing " " (each a piece of the pre-tokenizer, so
    these are the text's ids)."""
    return tokens(t, "word") + tokens(t, " word") * (n - 1) + tokens(t, " ")


# ---- OpenAI embeddings: dimensions, user ----

def openai_embeddings(t):
    n_ = t.name
    full = t.oa.embeddings.create(model=M, input=["a", "b"], encoding_format="float")
    cut = t.oa.embeddings.create(model=M, input=["a", "b"], dimensions=8, user="u-1")
    ok = len(cut.data) == 2
    for f, c in zip(full.data, cut.data):
        k = norm(f.embedding[:8])
        ok = ok and len(c.embedding) == 8 and close(norm(c.embedding), 1.0, 1e-4) and all(
            close(a, b / k, 1e-4) for a, b in zip(c.embedding, f.embedding[:8]))
    check(f"{n_} openai embeddings dimensions=8 (base64 by the client), user: the first 8, "
          "renormalised", ok, cut)
    try:
        t.oa.embeddings.create(model=M, input="a", dimensions=65)
        check(f"{n_} openai embeddings dimensions 65: 400", False, "accepted")
    except openai.BadRequestError as e:
        check(f"{n_} openai embeddings dimensions 65: 400", e.body.get("param") == "dimensions",
              e.body)


# ---- unknown fields ----

def unknown_fields(t):
    n_ = t.name
    st, r = t.post("/v1/embeddings", {"input": "a", "foo": 1, "bar": {"x": 1}})
    check(f"{n_} unknown top-level fields ignored (as vLLM)", st == 200, r)
    st, r = t.post("/v1/rerank", {"query": "q", "documents": [{"text": "a", "id": 7}]})
    check(f"{n_} unknown keys inside a document ignored", st == 200, r)
    st, r = t.post("/v1/prefill", {"prompt": "a", "foo": 1})
    check(f"{n_} native /v1/prefill stays strict: 400", st == 400, r)


def start_errors():
    for args, want in ((["--listen-tcp", "0.0.0.0:8000"], "not a loopback address"),
                       (["--listen-tcp", "10.1.2.3:8000"], "not a loopback address"),
                       (["--listen-tcp", "127.0.0.1"], "HOST:PORT")):
        try:
            p = subprocess.run([Z, "serve", "--model", MODEL_DIR, "--socket",
                                os.path.join(tmp, "e")] + args, capture_output=True, text=True,
                               timeout=30)
            check(f"start refused: {' '.join(args)}", p.returncode != 0 and want in p.stderr,
                  p.stderr)
        except subprocess.TimeoutExpired:  # (killed by run) it started: wrong
            check(f"start refused: {' '.join(args)}", False, "the server started")
    ini = os.path.join(tmp, "c.ini")
    with open(ini, "w") as f:
        f.write("[server]\nallow_uids = 0\nlisten_tcp = 127.0.0.1:%d\n" % free_port())
    p = subprocess.run([Z, "serve", "--model", MODEL_DIR, "--socket", os.path.join(tmp, "e2"),
                        "--config", ini], capture_output=True, text=True, timeout=60)
    check("start refused: allow_uids with listen_tcp", p.returncode != 0 and
          "allow_uids cannot be checked" in p.stderr, p.stderr)


def hostile(t):
    """Inputs a client controls, found by a review: none may end the server,
    cut a text silently or forge a log line."""
    st, r = t.post("/tokenize", {"inputs": "hello\u0000world"})
    check(f"{t.name} TEI /tokenize with \\u0000 in inputs: refused, not cut at the NUL",
          st in (400, 422), (st, r))
    st, r = t.post("/tokenize", {"inputs": "hi",
                                 "model": os.path.basename(MODEL_DIR.rstrip("/")) + "\u0000zzz"})
    check(f"{t.name} TEI /tokenize with \\u0000 in another field: refused", st in (400, 422), (st, r))
    st, r = t.post("/v1/embeddings", {"input": "a", "x\nlevel=error msg=\"forged\"": 1})
    check(f"{t.name} an unknown field named with a newline: still ignored", st == 200, (st, r))


def small_body_server():
    """TEI /rerank truncation decodes the kept tokens in NFC form, which can be
    3x the bytes sent: with a small body_bytes_max the prompt outgrows the
    scratch. A 413, and the server keeps serving (it used to abort)."""
    ini = os.path.join(tmp, "small.ini")
    with open(ini, "w") as f:
        f.write("[server]\nbody_bytes_max = 2048\n")
    with open(os.path.join(tmp, "small.log"), "w") as lg:
        p, _, port = start(["--config", ini], lg, max_tokens=4096)
        try:
            t = Transport("tcp", port=port)
            # raw UTF-8 (4 bytes a character; JSON escapes would be 12) so the
            # body fits the 2048 bytes
            body = json.dumps({"query": "q", "texts": ["\U0001D160" * 380], "truncate": True},
                              ensure_ascii=False).encode()
            try:
                rr = t.http.post(t.base + "/rerank", data=body,
                                 headers={"Content-Type": "application/json"})
                st, r = rr.status_code, rr.text
            except requests.RequestException as e:  # the server died
                st, r = None, repr(e)
            check("TEI /rerank whose truncated text grows in NFC: an answer, not an abort",
                  st in (200, 413), (st, str(r)[:200]))
            check("... and the server still serves", p.poll() is None, p.poll())
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)


t_start = time.time()
tmp = tempfile.mkdtemp()
logpath = os.path.join(tmp, "log")
with open(logpath, "w") as log:
    srv, sock, port = start([], log)
    try:
        for tr in (Transport("tcp", port=port), Transport("unix", sock=sock)):
            for part in (completions, score, probes, tei, openai_embeddings, unknown_fields,
                         hostile):
                try:
                    part(tr)
                except Exception as e:  # a shape the client could not even read
                    check(f"{tr.name} {part.__name__}", False, repr(e))
        # the ignored-field warning: logged, and rate-limited under a burst
        tr = Transport("tcp", port=port)
        for _ in range(200):
            tr.post("/v1/embeddings", {"input": "a", "foo": 1})
    finally:
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(timeout=60)
    check("SIGTERM: exit 0", rc == 0, rc)
with open(logpath) as f:
    lines = [ln for ln in f if "ignored unknown request field" in ln]
check("a field name cannot forge a log line", not any(ln.startswith('level=error msg="forged"')
                                                      for ln in open(logpath)), "")
check("ignored fields are logged", any('field="foo"' in ln for ln in lines) and
      any('field="documents[].id"' in ln for ln in lines), lines[:3])
# 8 lines per 10 s at most: the run's length bounds how many may appear
allowed = 8 * (2 + int((time.time() - t_start) / 10))
check(f"ignored-field warnings rate-limited (200+ ignored, {len(lines)} lines, {allowed} allowed)",
      len(lines) <= allowed and len(lines) < 100, len(lines))
start_errors()
small_body_server()
if zt.failures:
    with open(logpath) as f:
        print("server log (last lines):\n" + "".join(f.readlines()[-15:]))
zt.finish("test_compat")
