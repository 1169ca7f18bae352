"""test_chat_openai.py -- run by tests/test_chat_openai.sh: `zprefill serve` on
models/default (the Qwen3 tokenizer and chat template) with a loopback TCP
listener, then the openai client library's own chat.completions.create and
completions.create with max_tokens 1 -- the LLM-as-judge call: one token and
its alternatives. Each answer is checked for its shape (the client's own
types parse it) and against the native /v1/prefill's numbers for the same
tokens: the conversation's tokens are the ones transformers gives
(tests/golden/chat-qwen3.jsonl), so a wrong rendering fails as well as a wrong
value. Prints one line per check and a summary; exit 0 pass, 1 fail."""
import json
import os
import signal
import sys
import tempfile

import openai
import requests

import zp_testlib as zt
from zp_testlib import check, close

Z = sys.argv[1] if len(sys.argv) > 1 else "./zprefill"
MODEL_DIR = "models/default"
M = "default"


def goldens():
    with open("tests/golden/chat-qwen3.jsonl") as f:
        rows = [json.loads(ln) for ln in f]
    # the conversations a model answers: a new assistant turn, or the last one continued
    return [r for r in rows[1:] if r["add_generation_prompt"] or r["continue_final_message"]]


class Srv:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()
        self.oa = openai.OpenAI(base_url=self.base + "/v1", api_key="none", max_retries=0)

    def post(self, path, body):
        r = self.http.post(self.base + path, json=body)
        return r.status_code, r.json()

    def native_top(self, ids, k):
        st, r = self.post("/v1/prefill", {"prompt_token_ids": ids, "top_logprobs": k})
        assert st == 200, r
        return r["top_logprobs"]  # [[id, logprob]], most likely first

    def text(self, i):
        st, r = self.post("/detokenize", {"tokens": [i]})
        assert st == 200, r
        return r["prompt"]


def kwargs_of(g):
    extra = {}
    if g["enable_thinking"] is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": g["enable_thinking"]}
    if g["continue_final_message"]:
        extra.update(continue_final_message=True, add_generation_prompt=False)
    return {"extra_body": extra} if extra else {}


def chat(s):
    rows = goldens()
    matched = 0
    for n, g in enumerate(rows):
        r = s.oa.chat.completions.create(model=M, messages=g["messages"], max_tokens=1,
                                         logprobs=True, top_logprobs=5, temperature=0,
                                         **kwargs_of(g))
        top = s.native_top(g["ids"], 5)
        c = r.choices[0]
        lp = c.logprobs.content[0]
        ok = (r.usage.prompt_tokens == len(g["ids"]) and r.usage.completion_tokens == 1 and
              c.message.role == "assistant" and lp.token == s.text(top[0][0]) and
              close(lp.logprob, top[0][1]) and len(lp.top_logprobs) == 5 and
              all(t.token == s.text(i) and close(t.logprob, v) and
                  bytes(t.bytes).decode("utf-8", "replace") == t.token
                  for t, (i, v) in zip(lp.top_logprobs, top)))
        matched += ok
        if not ok:
            check(f"chat conversation {n}: tokens as transformers', token and top 5 as "
                  f"/v1/prefill's", False, (r.model_dump(), top, len(g["ids"])))
    check(f"chat: {matched} of {len(rows)} golden conversations (system or not, thinking on, "
          f"off, absent, the final message continued): prompt tokens == transformers', token "
          f"and top_logprobs == /v1/prefill",
          matched == len(rows), matched)
    g = rows[0]
    r = s.oa.chat.completions.create(model=M, messages=g["messages"], max_tokens=1)
    check("chat: the client's types parse it (object, id, finish_reason, logprobs null)",
          r.object == "chat.completion" and r.id.startswith("chatcmpl-") and
          r.choices[0].finish_reason in ("length", "stop") and r.choices[0].logprobs is None and
          r.usage.total_tokens == r.usage.prompt_tokens + 1, r.model_dump())
    top = s.native_top(g["ids"], 20)
    # logit_bias: the 10th most likely token, lifted past the first
    target, gap = top[9][0], top[0][1] - top[9][1]
    r = s.oa.chat.completions.create(model=M, messages=g["messages"], max_tokens=1, logprobs=True,
                                     logit_bias={str(target): gap + 1.0})
    check("chat logit_bias lifts a token to first; its logprob stays the model's",
          r.choices[0].logprobs.content[0].token == s.text(target) and
          close(r.choices[0].logprobs.content[0].logprob, top[9][1]), r.model_dump())
    # sampling: the same seed, the same token. Tokens 1 and 2 are biased to the same
    # logit, so at least half the mass (or all of it, for a confident model) lies on
    # two tokens: twelve seeds all drawing one token would be a broken draw
    # (probability 2^-11 at worst; the seeds are fixed, so the test is deterministic)
    even = {str(top[1][0]): top[0][1] - top[1][1]}
    draws = [s.oa.chat.completions.create(model=M, messages=g["messages"], max_tokens=1,
                                          temperature=1.0, seed=k, logprobs=True,
                                          logit_bias=even)
             for k in [7] + list(range(7, 18))]
    toks = [d.choices[0].logprobs.content[0].token for d in draws]
    check("chat temperature 1 with seed: reproducible", toks[0] == toks[1], toks)
    check("chat temperature 1: twelve seeds draw more than one token", len(set(toks)) > 1, toks)
    # a body over 64 KiB is built on the offload worker; truncate_prompt_tokens keeps
    # the conversation's last tokens, whose answer /v1/prefill gives too
    long = [{"role": "user", "content": "word " * 14000}, {"role": "assistant", "content": "ok"}]
    r = s.oa.chat.completions.create(model=M, messages=long + g["messages"], max_tokens=1,
                                     logprobs=True, extra_body={"truncate_prompt_tokens": 500})
    # the long turns render apart from the golden ones (ChatML: special tokens between),
    # and the last 500 tokens lie in the last 600 words (each " word" is a piece of its own)
    st, lt = s.post("/tokenize", {"prompt": "word " * 600 +
                                  "<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"})
    ids = (lt.get("tokens", []) + g["ids"])[-500:]
    top = s.native_top(ids, 1)
    check("chat: a 70 KB body (built off the reactor), truncate_prompt_tokens 500: the "
          "token of the last 500 tokens",
          st == 200 and r.usage.prompt_tokens == 500 and
          r.choices[0].logprobs.content[0].token == s.text(top[0][0]) and
          close(r.choices[0].logprobs.content[0].logprob, top[0][1]), (st, r.model_dump(), top))
    for name, kw, param in (
            ("max_tokens 2", {"max_tokens": 2}, "max_tokens"),
            ("no max_tokens", {}, "max_tokens"),
            ("stream", {"max_tokens": 1, "stream": True}, "stream"),
            ("n 2", {"max_tokens": 1, "n": 2}, "n"),
            ("top_logprobs 21", {"max_tokens": 1, "logprobs": True, "top_logprobs": 21},
             "top_logprobs")):
        try:
            s.oa.chat.completions.create(model=M, messages=g["messages"], **kw)
            check(f"chat {name}: 400", False, "accepted")
        except openai.BadRequestError as e:
            check(f"chat {name}: 400 naming {param}", e.body.get("param") == param, e.body)
    try:
        s.oa.chat.completions.create(model=M, messages=[{"role": "robot", "content": "x"}],
                                     max_tokens=1)
        check("chat role robot: 400", False, "accepted")
    except openai.BadRequestError as e:
        check("chat role robot: 400 naming messages", e.body.get("param") == "messages", e.body)


def completions(s):
    prompt = "Is a banana a fruit? The answer is"
    st, t = s.post("/tokenize", {"prompt": prompt})
    ids = t["tokens"]
    top = s.native_top(ids, 5)
    r = s.oa.completions.create(model=M, prompt=prompt, max_tokens=1, logprobs=3, temperature=0)
    c = r.choices[0]
    want = {s.text(i): v for i, v in top[:3]}
    check("completions max_tokens 1: the greedy token, its logprob, top 3 == /v1/prefill's",
          c.text == s.text(top[0][0]) and c.logprobs.tokens == [c.text] and
          close(c.logprobs.token_logprobs[0], top[0][1]) and c.logprobs.text_offset == [0] and
          set(c.logprobs.top_logprobs[0]) == set(want) and
          all(close(c.logprobs.top_logprobs[0][k], v) for k, v in want.items()) and
          r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 1, r.model_dump())
    r = s.oa.completions.create(model=M, prompt=prompt, max_tokens=1, logprobs=1, echo=True)
    c = r.choices[0]
    check("completions max_tokens 1 with echo: prompt then the token, a logprob each",
          c.text == prompt + s.text(top[0][0]) and len(c.logprobs.tokens) == len(ids) + 1 and
          c.logprobs.token_logprobs[0] is None and
          close(c.logprobs.token_logprobs[-1], top[0][1]) and
          c.logprobs.text_offset[-1] == len(prompt), r.model_dump())
    r = s.oa.completions.create(model=M, prompt=[prompt, ids], max_tokens=1)
    check("completions max_tokens 1: text and token-id prompts, one choice each",
          [ch.text for ch in r.choices] == [s.text(top[0][0])] * 2, r.model_dump())
    r1 = s.oa.completions.create(model=M, prompt=prompt, max_tokens=1, temperature=1.5, seed=3)
    r2 = s.oa.completions.create(model=M, prompt=prompt, max_tokens=1, temperature=1.5, seed=3)
    check("completions temperature 1.5 with seed: reproducible", r1.choices[0].text ==
          r2.choices[0].text, (r1.choices[0].text, r2.choices[0].text))
    r = s.oa.completions.create(model=M, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    check("completions max_tokens 0 with echo (as before): the prompt, no token",
          r.choices[0].text == prompt and r.usage.completion_tokens == 0, r.model_dump())
    try:
        s.oa.completions.create(model=M, prompt=prompt, max_tokens=2)
        check("completions max_tokens 2: 400", False, "accepted")
    except openai.BadRequestError as e:
        check("completions max_tokens 2: 400 saying zprefill reads one token",
              e.body.get("param") == "max_tokens" and "one token" in e.body.get("message", ""),
              e.body)


with tempfile.TemporaryFile(mode="w+") as log:
    srv, port = zt.start_server(Z, MODEL_DIR, os.path.join(tempfile.mkdtemp(), "s"), log,
                                ready_s=120)
    try:
        s = Srv(port)
        for part in (chat, completions):
            try:
                part(s)
            except Exception as e:  # a shape the client could not even read
                check(part.__name__, False, repr(e))
    finally:
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(timeout=60)
    check("SIGTERM: exit 0", rc == 0, rc)
    if zt.failures:
        log.seek(0)
        print("server log (last lines):\n" + "".join(log.readlines()[-15:]))
zt.finish("test_chat_openai")
