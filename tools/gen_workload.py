#!/usr/bin/env python3
"""gen_workload.py -- request files for tools/loadgen (--replay): one line per
request, "@T PATH BODY", T its arrival in seconds (open loop: Poisson
arrivals at --rate per second for --duration seconds), BODY token ids only
(no tokenizer work), so the prefix structure is exact.

Workloads (--workload), lengths multiplied by --scale and capped at
--max-tokens (the model's positions; this 2-core machine runs tiny models):
  paper     the paper's real-task mix, tasks drawn evenly (shared documents
            from --docs per task), with their length
            distributions and sharing structure:
              moral    MoralStories: one shared instruction + story, 100-200
              mmlu     MMLU: a few-shot prefix per subject + question, 50-500
              boolq    BoolQ: passage + one of its many questions, 200-600
              imdb     IMDB: unique reviews, 300-2000
              quality  QuALITY: long articles (4K-12K) + one of many questions
              arxiv    ArXiv classification: shared instruction + unique long
                       document (4K-12K)
            each a /v1/prefill with two candidate label ids.
  sweep-long, sweep-mid, sweep-xl
            the paper's synthetic sweeps without sharing (64 x 4096,
            512 x 512, 8 x 32K): unique prompts of that length (scaled),
            --rate arrivals; the request count is what the duration gives.
  score     scoring traffic: /v1/score, one query (--score-query tokens,
            unique per request) with 20-100 short items and two label ids.
  A task name (moral, mmlu, ...) alone is a workload too.

  tools/gen_workload.py --workload paper --rate 4 --duration 10 --seed 1 \\
      --vocab 640 --max-tokens 4096 --scale 0.5 > paper.req
"""
import argparse
import collections
import json
import random
import sys

TASKS = ["moral", "mmlu", "boolq", "imdb", "quality", "arxiv"]
SWEEPS = {"sweep-long": 4096, "sweep-mid": 512, "sweep-xl": 32768}


class Gen:
    def __init__(self, a):
        self.a = a
        self.r = random.Random(a.seed)
        # the shared material is fixed by the seed, drawn once; shared parts
        # keep two blocks at least, whatever the scale (the structure is the point)
        d = a.docs
        self.instr_moral = self.ids(self.n(64, 32))
        self.instr_arxiv = self.ids(self.n(96, 32))
        self.subjects = [self.ids(self.n(self.r.randint(150, 420), 32)) for _ in range(d)]
        self.passages = [self.ids(self.n(self.r.randint(150, 520), 32)) for _ in range(d)]
        self.articles = [self.ids(self.n(self.r.randint(4000, 12000), 32))
                         for _ in range(max(1, d // 2))]

    def n(self, length, floor=1):
        return max(floor, int(length * self.a.scale))

    def ids(self, n):
        lo = 3  # clear of the special ids a tiny vocabulary starts with
        return [self.r.randrange(lo, self.a.vocab) for _ in range(n)]

    def cap(self, ids):
        return ids[: self.a.max_tokens]

    def labels(self):
        return [self.a.vocab - 2, self.a.vocab - 1]

    def prefill(self, ids):
        return "/v1/prefill", {"prompt_token_ids": self.cap(ids),
                               "candidate_token_ids": self.labels()}

    def task(self, t):
        r = self.r
        if t == "moral":
            return self.prefill(self.instr_moral + self.ids(self.n(r.randint(40, 130))))
        if t == "mmlu":
            return self.prefill(r.choice(self.subjects) + self.ids(self.n(r.randint(20, 80))))
        if t == "boolq":
            return self.prefill(r.choice(self.passages) + self.ids(self.n(r.randint(10, 30))))
        if t == "imdb":
            return self.prefill(self.ids(self.n(r.randint(300, 2000))))
        if t == "quality":
            return self.prefill(r.choice(self.articles) + self.ids(self.n(r.randint(30, 90))))
        if t == "arxiv":
            return self.prefill(self.instr_arxiv + self.ids(self.n(r.randint(4000, 12000))))
        if t in SWEEPS:
            return self.prefill(self.ids(self.n(SWEEPS[t])))
        if t == "score":
            q = self.cap(self.ids(self.a.score_query))
            room = max(1, self.a.max_tokens - len(q))
            items = [self.ids(min(room, r.randint(4, 16))) for _ in range(r.randint(20, 100))]
            return "/v1/score", {"query": q, "items": items, "label_token_ids": self.labels()}
        raise ValueError(t)

    def pick(self):
        w = self.a.workload
        return self.r.choice(TASKS) if w == "paper" else w


def lru_hits(lru, ids, cap):
    """Tokens of ids' leading blocks found in the LRU cache lru (at most cap
    blocks; a prompt's last token is always computed, as the engine's), then
    every full block of ids inserted as the most recent."""
    if cap <= 0:
        return 0
    hits, hit = 0, True
    for b in range(len(ids) // 16):
        key = tuple(ids[: (b + 1) * 16])
        if hit and key in lru and (b + 1) * 16 < len(ids):
            hits += 16
        else:
            hit = False
        lru[key] = True
        lru.move_to_end(key)
        while len(lru) > cap:
            lru.popitem(last=False)
    return hits


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True,
                   choices=["paper", "score"] + TASKS + list(SWEEPS))
    p.add_argument("--rate", type=float, default=2.0, help="arrivals per second (Poisson)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vocab", type=int, required=True, help="the model's vocabulary size")
    p.add_argument("--max-tokens", type=int, default=4096, help="longest prompt")
    p.add_argument("--scale", type=float, default=0.5, help="length factor (this machine)")
    p.add_argument("--score-query", type=int, default=1024, help="score: query tokens")
    p.add_argument("--docs", type=int, default=8,
                   help="MMLU subjects, BoolQ passages (QuALITY articles: half) to draw from")
    p.add_argument("--stats", action="store_true",
                   help="print to stderr: requests, prompt tokens, and the tokens in 16-token "
                        "leading blocks an earlier prompt had (the hit rate of an unbounded cache)")
    p.add_argument("--cache-blocks", type=int, default=0,
                   help="with --stats: also the hit rate of one LRU cache of this many 16-token "
                        "blocks seeing every prompt in arrival order (the ceiling for caches that "
                        "hold that much together)")
    a = p.parse_args()
    if (a.rate <= 0 or a.duration <= 0 or a.vocab < 8 or a.max_tokens < 2 or a.scale <= 0
            or a.docs < 1 or a.score_query < 1):
        p.error("rate, duration and scale > 0; vocab >= 8; max-tokens >= 2; docs, score-query >= 1")
    g = Gen(a)
    t = 0.0
    out = sys.stdout
    seen, nreq, ntok, nhit = set(), 0, 0, 0
    lru, nlru = collections.OrderedDict(), 0
    while True:
        t += g.r.expovariate(a.rate)
        if t >= a.duration:
            break
        path, body = g.task(g.pick())
        out.write("@%.6f %s %s\n" % (t, path, json.dumps(body, separators=(",", ":"))))
        if a.stats:
            prompts = ([body["query"] + it for it in body["items"]] if "items" in body
                       else [body["prompt_token_ids"]])
            for ids in prompts:
                nreq += 1
                ntok += len(ids)
                hit = True
                for b in range(len(ids) // 16):
                    key = tuple(ids[: (b + 1) * 16])
                    if hit and key in seen:
                        nhit += 16
                    else:
                        hit = False
                    seen.add(key)
                nlru += lru_hits(lru, ids, a.cache_blocks)
    if a.stats:
        sys.stderr.write("sequences=%d prompt_tokens=%d reusable_tokens=%d hit_ceiling=%.3f"
                         % (nreq, ntok, nhit, nhit / max(ntok, 1)))
        if a.cache_blocks > 0:
            sys.stderr.write(" lru_%d_blocks_ceiling=%.3f" % (a.cache_blocks, nlru / max(ntok, 1)))
        sys.stderr.write("\n")


if __name__ == "__main__":
    main()
