#!/usr/bin/env python3
"""train_default.py -- trains the embedded default model (models/default/): a small
Qwen3-MoE checkpoint in the exact Hugging Face layout (config.json for
Qwen3MoeForCausalLM, model.safetensors in bf16, the real Qwen3 tokenizer), taught
one task a person can judge at a glance, from WordNet 3.0 as Debian's
`wordnet-base` package ships it (/usr/share/wordnet):

  classify  a word or a short description -> its WordNet lexicographer category,
            named by one token each: food animal plant person place artifact body
            time emotion material (noun.food ... noun.substance). /classify
            scores these labels after the text (a softmax over the labels'
            log-probs), so the loss is exactly that softmax.
  rerank    query = a word, document = a gloss: P(yes) against P(no) at the end
            of the Qwen3-Reranker prompt that /v1/rerank builds, so the loss is
            the softmax over those two tokens.
  embed     no loss of its own: the last token's final-norm state, which the
            classify loss aims at its category's label row, so words of one
            category are neighbours under /v1/embeddings.

Synsets are split by a hash of their offset (10% held out: their glosses are
never trained on); held-out words (those whose most frequent sense is a
held-out synset) are never trained on with a WordNet label; the held-out
accuracy is measured on the saved bf16 checkpoint. Torch runs on one CPU thread.
--gcide adds a second dictionary, GCIDE (Debian's `dict-gcide`), which has
definitions and no categories: a word it defines as a noun, held-out ones
included, learns to answer as the model reads those definitions (and
--gcide-gloss: a training word's GCIDE senses are classify glosses labelled by
its WordNet senses, so the model learns to read that dictionary's style).
--init starts from a checkpoint this tool wrote (the shipped model: run 4, then
this on top).
A word token is one embedding row in any case and with or without a leading
space (Data.key). The rerank prompt's fixed head is computed once a step and
attended by every rerank sequence (forward(), checked against transformers).

  python3 tools/train_default.py --out /tmp/run4 --steps 5272 --relay 6000:30
  python3 tools/train_default.py --out models/default --init /tmp/run4 --gcide 1 \
      --gcide-words 48 --gcide-gloss 0.3 --lr 1e-3 --steps 2682 --relay 2300:30
  (the shipped checkpoint: models/default/RECIPE.md)
"""
import argparse
import gzip
import json
import os
import random
import re
import shutil
import time
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

WORDNET = "/usr/share/wordnet"
# the unmodified Qwen3 tokenizer the repository carries (Apache-2.0, Qwen)
TOKDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "default")
# lex_filenum (wndb(5), lexnames(5)) -> the label word (one Qwen3 token each)
CATEGORIES = {13: "food", 5: "animal", 20: "plant", 18: "person", 15: "place",
              6: "artifact", 8: "body", 28: "time", 12: "emotion", 27: "material"}
# the Qwen3-Reranker prompt, as src/serve/serve_config.c's [rerank] defaults build it
RR_PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the "
             "Query and the Instruct provided. Note that the answer can only be \"yes\" or "
             "\"no\".<|im_end|>\n<|im_start|>user\n")
RR_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RR_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"
RR_INSTRUCTION = "Given a word, retrieve its dictionary definition"
HELD_OUT_PERCENT = 10
# --gcide: the weights of a word's first three dictionary senses in its target
GCIDE_SENSE_WEIGHTS = (0.6, 0.25, 0.15)
# what the demo asks and the answers a person accepts (tools/demo.sh, the golden)
DEMO_ITEMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_items.json")
# Training runs on an embedding of only the tokens the data holds (a row per
# token, in order of first sight), scattered into the full 151,936-row matrix at
# save; the other rows keep a seeded N(0, 0.02) initialisation. With no weight
# decay that is training the full matrix (Adam leaves a row whose gradient was
# always zero where it started), at a fraction of the cost.
TRAIN_ROWS = 65536


def rerank_text(instr, query, doc):
    return f"{RR_PREFIX}<Instruct>: {instr}\n<Query>: {query}\n<Document>: {doc}{RR_SUFFIX}"


def read_synsets():
    """[(offset, category, [words], gloss, [all words])] for the nouns of
    CATEGORIES; [words] are those whose most frequent noun sense is this synset
    (index.noun lists senses by frequency: the evaluation's words, one label
    each), [all words] every word of the synset (training labels a word by all
    its senses)."""
    first = {}
    for line in open(os.path.join(WORDNET, "index.noun"), encoding="latin-1"):
        if line.startswith("  "):
            continue
        p = line.split()
        nptr = int(p[3])
        first[p[0]] = p[4 + nptr + 2]
    out = []
    for line in open(os.path.join(WORDNET, "data.noun"), encoding="latin-1"):
        if line.startswith("  "):
            continue
        head, gloss = line.split(" | ", 1)
        p = head.split()
        lex = int(p[1])
        if lex not in CATEGORIES:
            continue
        n = int(p[3], 16)
        every = [w for w in p[4:4 + 2 * n:2]]
        words = [w for w in every if first.get(w.lower()) == p[0]]
        gloss = gloss.strip().split("; \"")[0].strip().rstrip(";")
        out.append((p[0], CATEGORIES[lex], [w.replace("_", " ") for w in words], gloss,
                    [w.replace("_", " ") for w in every]))
    return out


def tagged_words():
    """The nouns index.noun gives a tagsense_cnt > 0 (a sense of them was tagged in
    the Brown corpus: the common words), lower case, spaces for underscores."""
    out = set()
    for line in open(os.path.join(WORDNET, "index.noun"), encoding="latin-1"):
        if line.startswith("  "):
            continue
        p = line.split()
        if int(p[4 + int(p[3]) + 1]) > 0:
            out.add(p[0].replace("_", " "))
    return out


# GCIDE, the GNU Collaborative International Dictionary of English (Webster's
# 1913 with additions; GPL), as Debian's `dict-gcide` package ships it: no
# categories, only definitions. --gcide makes the model's own reading of a
# word's dictionary senses the target of the bare word (see main()).
GCIDE_DICT = "/usr/share/dictd/gcide.dict.dz"
GCIDE_INDEX = "/usr/share/dictd/gcide.index"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
ACCENT = re.compile(r"\[[^\]\s]{1,6}\]")  # [=o] ["o] [.a]: the dictionary's accent markup
SUBJECT = re.compile(r"^\s*(\([A-Z][A-Za-z\.\s&]*\.\)\s*)+")  # (Zool.) (Bot.) before a sense


def b64(s):
    """dictd's index numbers: base 64, most significant digit first."""
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def strip_brackets(t):
    """t without its [...] spans (etymologies, sources), nested or across lines."""
    out, depth = [], 0
    for ch in t:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def first_clause(sense):
    """A sense's text up to its first sentence's end or semicolon, without cross
    reference braces, citations or subject labels: what a WordNet gloss reads like."""
    s = sense.replace("{", "").replace("}", "")
    s = re.sub(r"--[A-Z][^\n]*", "", s)
    s = " ".join(s.split())
    s = SUBJECT.sub("", s)
    s = re.sub(r"^\(\w\)\s*", "", s)
    s = re.sub(r"\s*\([A-Z][a-z]+\.\)", "", s)
    m = re.match(r"(.+?[a-z\)])\.(\s|$)", s)
    s = m.group(1) if m else s
    return s.split(";")[0].strip()


def noun_senses(entry):
    """One GCIDE entry's senses' first clauses, in its order; [] unless its head
    says it is a noun (", n.")."""
    lines = entry.split("\n")
    if not re.search(r",\s*n\.", " ".join(lines[:3])[:300]):
        return []
    body = strip_brackets(ACCENT.sub("", entry))
    body = re.sub(r"\\[^\\]*\\", "", body)  # the pronunciation \Ti"ger\
    body = body.split("\n", 1)[1] if "\n" in body else ""
    body = re.split(r"\n\s*Note:|\n\s*Syn\.|\n\n\s*\{", body)[0]  # notes, synonyms, compounds
    parts = re.split(r"(?m)^\s*\d+\.\s", body)
    raw = parts[1:] if len(parts) > 1 else [body.strip().split("\n\n")[0]]
    out = []
    for r in raw:
        c = first_clause(r.strip().split("\n\n")[0])
        if len(c.split()) >= 2 and not c.lower().startswith(
                ("see ", "same as", "pl. of", "plural of", "obs", "imp.")):
            out.append(c)
    return out


def gcide_senses(words):
    """{lower-case headword: its noun senses' first clauses, in the dictionary's
    order} for the headwords in words."""
    d = gzip.open(GCIDE_DICT).read().decode("utf-8", "replace")
    res = {}
    for line in open(GCIDE_INDEX, encoding="utf-8"):
        p = line.rstrip("\n").split("\t")
        if len(p) != 3 or p[0].lower() not in words:
            continue
        w = p[0].lower()
        e = d[b64(p[1]):b64(p[1]) + b64(p[2])]
        if e.lower().startswith(w[:3]):  # else an entry that only names the word
            res.setdefault(w, []).extend(noun_senses(e))
    return {w: s for w, s in res.items() if s}


def held_out(offset):
    return zlib.crc32(offset.encode()) % 100 < HELD_OUT_PERCENT


# config.json as written (the layout of Qwen3-30B-A3B's, scaled down); tied
# embeddings keep the 151,936-row vocabulary to one matrix (19.4 MB in bf16)
CONFIG = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
    "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 128,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "vocab_size": 151936,
    "max_position_embeddings": 1024, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
    "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
    "use_cache": True, "use_sliding_window": False, "sliding_window": None,
    "max_window_layers": 4, "output_router_logits": False, "router_aux_loss_coef": 0.001,
    "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16",
}


def rms(x, w, eps):
    """Qwen3's RMSNorm (float32 here, as training is)."""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, pos, theta):
    """x [B, heads, T, hd] at positions pos [T]: the rotate-half RoPE Qwen3 uses."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    f = pos[:, None].float() * inv[None]
    cos, sin = torch.cat([f, f], -1).cos(), torch.cat([f, f], -1).sin()
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(model, seqs, prefix=None, pos=None, every=False):
    """The final-norm state at each sequence's last token, the same function as
    transformers' Qwen3MoeModel (check_forward asserts it). Right padding: causal
    attention keeps the pads out of every real position. prefix: token rows
    every sequence starts with (the rerank prompt's fixed head), computed once
    and attended by all: the same as prepending it to each sequence. pos: [B, K]
    positions (within each sequence) whose states to return instead, [B, K, H].
    every: the states at every position, [B, max length, H] (pads' rows are
    garbage)."""
    cfg = model.config
    nh, nkv, hd, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps
    emb = model.model.embed_tokens.weight
    n = max(len(s) for s in seqs)
    x = emb[torch.tensor([s + [0] * (n - len(s)) for s in seqs])]
    p = 0
    if prefix:
        xp, p = emb[torch.tensor(prefix)][None], len(prefix)
    mask = torch.ones(n, p + n, dtype=torch.bool).tril(p)
    for layer in model.model.layers:
        at = layer.self_attn

        def qkv(x, pos):
            B, T, _ = x.shape
            h = rms(x, layer.input_layernorm.weight, eps)
            q = rms(at.q_proj(h).view(B, T, nh, hd), at.q_norm.weight, eps).transpose(1, 2)
            k = rms(at.k_proj(h).view(B, T, nkv, hd), at.k_norm.weight, eps).transpose(1, 2)
            v = at.v_proj(h).view(B, T, nkv, hd).transpose(1, 2)
            return rope(q, pos, CONFIG["rope_theta"]), rope(k, pos, CONFIG["rope_theta"]), v

        def finish(x, q, k, v, m):
            B, T, _ = x.shape
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
            x = x + at.o_proj(a.transpose(1, 2).reshape(B, T, nh * hd))
            h = rms(x, layer.post_attention_layernorm.weight, eps)
            return x + layer.mlp(h)

        q, k, v = qkv(x, torch.arange(p, p + n))
        if prefix:
            qp, kp, vp = qkv(xp, torch.arange(p))
            B = x.shape[0]
            k, v = torch.cat([kp.expand(B, -1, -1, -1), k], 2), torch.cat([vp.expand(B, -1, -1, -1), v], 2)
            xp = finish(xp, qp, kp, vp, torch.ones(p, p, dtype=torch.bool).tril())
        x = finish(x, q, k, v, mask)
    h = rms(x, model.model.norm.weight, eps)
    if every:
        return h
    if pos is not None:
        return h[torch.arange(len(seqs))[:, None], pos]
    return h[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]


def last_hidden(model, seqs, prefix=None, chunk=48, pos=None):
    """forward() over the sequences sorted by length in chunks (less padding),
    in the input order."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    outs = [forward(model, [seqs[i] for i in order[j:j + chunk]], prefix,
                    None if pos is None else pos[torch.tensor(order[j:j + chunk])])
            for j in range(0, len(seqs), chunk)]
    h = torch.cat(outs)
    inv = torch.empty(len(seqs), dtype=torch.long)
    inv[torch.tensor(order)] = torch.arange(len(seqs))
    return h[inv]


def classify_states(model, seqs, every, chunk=48):
    """-> (the last token's state of each sequence [B, H], the states at every
    position of the sequences every[i] marks, concatenated [P, H], and the
    sequence each of those P rows belongs to [P]): one forward, chunked by
    length as last_hidden."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    last = [None] * len(seqs)
    rows, owner = [], []
    for j in range(0, len(seqs), chunk):
        idx = order[j:j + chunk]
        h = forward(model, [seqs[i] for i in idx], every=True)
        for r, i in enumerate(idx):
            n = len(seqs[i])
            last[i] = h[r, n - 1]
            if every[i]:
                rows.append(h[r, :n])
                owner += [i] * n
    return torch.stack(last), (torch.cat(rows) if rows else None), torch.tensor(owner)


@torch.no_grad()
def hf_last_hidden(model, seqs):
    """transformers' own forward, for the checks and the final evaluation."""
    n = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (n - len(s)) for s in seqs])
    h = model.model(input_ids=ids).last_hidden_state
    return h[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]


@torch.no_grad()
def check_forward(model, data):
    """forward() computes what transformers computes, with and without a shared
    prefix (a wrong RoPE offset or mask would not)."""
    g = [data.enc(t) for t in ("a sweet yellow fruit", "tiger", "a tool for driving nails")]
    pre = data.rr_prefix[0]
    a, b = forward(model, g), hf_last_hidden(model, g)
    c, d = forward(model, g, pre), hf_last_hidden(model, [pre + s for s in g])
    err = max(float((a - b).abs().max()), float((c - d).abs().max()))
    print(f"training forward against transformers: max difference {err:.2e}", flush=True)
    assert err < 1e-4, err


def multilabel(logits, ok):
    """-log of the probability mass on the acceptable labels (a word of several
    senses: all of them), the mean over the batch."""
    return (torch.logsumexp(logits, -1) - torch.logsumexp(logits.masked_fill(~ok, -1e9), -1)).mean()


def label_logits(model, h, ids):
    return h @ model.model.embed_tokens.weight[ids].T



class Data:
    def __init__(self, tok, synsets, rng):
        self.tok, self.rng = tok, rng
        self.labels = sorted(set(CATEGORIES.values()), key=list(CATEGORIES.values()).index)
        self.label_ids = []
        for w in self.labels:
            ids = tok.encode(w, add_special_tokens=False).ids
            assert len(ids) == 1, w
            self.label_ids.append(ids[0])
        self.yn = [tok.encode(w, add_special_tokens=False).ids[0] for w in ("no", "yes")]
        self.synsets = synsets  # in data.noun's order (read_gcide's first form of a word)
        self.train = [s for s in synsets if not held_out(s[0])]
        self.test = [s for s in synsets if held_out(s[0])]
        self.by_cat = {c: [s for s in self.train if s[1] == c] for c in self.labels}
        # training words: every word of a training synset, labelled by all its
        # training senses, except the held-out words (those whose most frequent
        # sense is a held-out synset: the evaluation's words, never trained on)
        heldout_words = {w.lower() for s in self.test for w in s[2]}
        senses = {}
        for s in self.train:
            for w in s[4]:
                if w.lower() not in heldout_words:
                    senses.setdefault(w, set()).add(self.labels.index(s[1]))
        self.words = sorted((w, sorted(c)) for w, c in senses.items())
        # a word's most frequent sense's category, where that sense is a training
        # synset of the ten categories (tiger: person and animal are both
        # senses, the first is what a person means... index.noun's order)
        self.first_cat = {w: self.labels.index(s[1]) for s in self.train for w in s[2]
                          if w in senses}
        self.words_by_cat = {c: [x for x in self.words if c in x[1]] for c in range(len(self.labels))}
        self.train_words = {w for w, _ in self.words}
        self.word_labels = dict(self.words)
        tagged = tagged_words()
        self.common = [x for x in self.words if x[0].lower() in tagged]
        self.common_by_cat = {c: [x for x in self.common if c in x[1]]
                              for c in range(len(self.labels))}
        self.rr_query = [s for s in self.train if any(w in self.train_words for w in s[4])]
        self.enc_cache = {}
        self.rows = {}  # key (see key()) -> row of the training embedding
        self.row_tid = {}  # key -> a token id of it (--init reads the checkpoint's row)
        self.init = None  # (the checkpoint's embedding, the training one): see seed_rows
        self.gcide = []  # [(a word as WordNet writes it, its GCIDE senses)]: see read_gcide
        self.gcide_gloss = []  # [(a training word's GCIDE sense, its WordNet labels)]
        self.label_rows = [self.row(t) for t in self.label_ids]
        self.yn_rows = [self.row(t) for t in self.yn]
        self.unk_row = self.row(-1)  # the quick evaluation's stand-in for an unseen token
        # the rerank prompt's head up to "<Query>:", for each instruction: every
        # rerank sequence of a step shares one (see forward())
        self.doc_row = self.row(tok.token_to_id("<Document"))
        self.rr_tail = self.ids(RR_SUFFIX, None)
        self.im_end_row = self.row(self.rr_tail[0])
        assert self.rr_tail[0] == tok.token_to_id("<|im_end|>")
        self.rr_instr = [RR_INSTRUCTION, RR_DEFAULT]
        self.rr_prefix = []
        for instr in self.rr_instr:
            head = rerank_text(instr, "\x00", "").split(" \x00")[0]
            ids = self.ids(head, None)
            full = self.ids(rerank_text(instr, "violin", "a bowed instrument"), None)
            assert full[:len(ids)] == ids, "the rerank head must end at a token boundary"
            self.rr_prefix.append([self.row(t) for t in ids])

    def key(self, tid):
        """Tokens that are one ASCII word with or without a leading space, in any
        case ("tiger", " tiger", " Tiger") share one embedding row: a bare word
        at the start of a prompt is then the token its definitions and other
        words taught (a word's own token is otherwise learned only where it starts
        a training word). The label, yes and no tokens keep rows of their own."""
        if tid < 0 or tid in self.label_ids or tid in self.yn:
            return tid
        s = self.tok.id_to_token(tid)
        if s is None:  # an id past the tokenizer's vocabulary (the matrix is padded)
            return tid
        w = s[1:] if s.startswith("\u0120") else s
        return w.lower() if w.isascii() and w.isalpha() else tid

    def row(self, tid):
        k = self.key(tid)
        if k not in self.rows:
            assert len(self.rows) < TRAIN_ROWS, "raise TRAIN_ROWS"
            self.rows[k] = len(self.rows)
            self.row_tid[k] = tid
            if self.init is not None:
                self.seed_row(k)
        return self.rows[k]

    @torch.no_grad()
    def seed_row(self, k):
        full, emb = self.init
        tid = self.row_tid.get(k, -1)
        if 0 <= tid < full.shape[0]:  # tokens of one key have equal rows there
            emb[self.rows[k]] = full[tid]

    def seed_rows(self, full, emb):
        """--init: every training row, now and when first seen, starts as the
        checkpoint's row of its token (the full-vocabulary embedding full)."""
        self.init = (full, emb)
        for k in self.rows:
            self.seed_row(k)

    def read_gcide(self):
        """The words of the ten categories' synsets (training and held-out alike)
        that GCIDE defines as nouns, with those definitions: no label comes from
        WordNet here, so a held-out word's is the model's own reading of its
        dictionary entry."""
        forms = {}
        for s in self.synsets:
            for w in s[4]:
                forms.setdefault(w.lower(), w)
        senses = gcide_senses(set(forms))
        self.gcide = sorted((forms[w], s) for w, s in senses.items())
        # a training word's dictionary senses, labelled by its WordNet ones: what
        # teaches the model to read this dictionary's style (its reading of a
        # held-out word's senses is that word's target)
        self.gcide_gloss = [(t, self.word_labels[w]) for w, ss in self.gcide
                            if w in self.word_labels for t in ss[:len(GCIDE_SENSE_WEIGHTS)]]

    def gcide_batch(self, n, weights):
        """n GCIDE words: (their WordNet forms, the texts of their first senses,
        [len(texts)] the word each text defines, [len(texts)] each text's weight
        in its word's target: weights in order, renormalised over its senses)."""
        words, texts, owner, w = [], [], [], []
        for i, (form, senses) in enumerate(self.rng.sample(self.gcide, n)):
            words.append(form)
            k = min(len(senses), len(weights))
            for j in range(k):
                texts.append(senses[j])
                owner.append(i)
                w.append(weights[j] / sum(weights[:k]))
        return words, texts, torch.tensor(owner), torch.tensor(w)

    def enc(self, text):
        """text -> rows of the training embedding (see TRAIN_ROWS)."""
        if text not in self.enc_cache:
            self.enc_cache[text] = [self.row(t) for t in self.ids(text)]
        return self.enc_cache[text]

    def enc_eval(self, text, cut=96):
        """enc() that allocates no row: an unseen token reads unk_row."""
        return [self.rows.get(self.key(t), self.unk_row) for t in self.ids(text, cut)]

    def ids(self, text, cut=96):
        """Qwen3 ids, cut at 96 tokens as classification cuts them (cut=None:
        never, for rerank prompts, whose end is the answer's place)."""
        return self.tok.encode(text, add_special_tokens=False).ids[:cut]

    def classify_batch(self, n, common=False, common_share=0.0, gcide_share=0.0):
        """Half glosses, half words (a word's target: all its senses' labels,
        and first: its most frequent sense's, -1 where that is not one of the
        ten or for a gloss); each drawn from a uniform category half the time,
        else from all. common: the words only common ones (tagged_words), and
        3 in 4 of them; else a word is a common one with probability
        common_share. With gcide_share, the gloss draw is first a GCIDE sense of
        a training word (labelled by the word's senses) that often; else gloss
        or word are drawn again as usual. gloss: which sequences are glosses."""
        seqs, ys = [], torch.zeros(n, len(self.labels), dtype=torch.bool)
        first, gloss = [], []
        while len(seqs) < n:
            uni = self.rng.random() < 0.5
            c = self.rng.randrange(len(self.labels))
            if self.rng.random() < (0.25 if common else 0.5) and self.gcide_gloss and \
                    self.rng.random() < gcide_share:
                text, cs = self.rng.choice(self.gcide_gloss)
                seqs.append(self.enc(text))
                ys[len(seqs) - 1, cs] = True
                first.append(-1)
                gloss.append(True)
            elif self.rng.random() < (0.25 if common else 0.5):
                s = self.rng.choice(self.by_cat[self.labels[c]] if uni else self.train)
                seqs.append(self.enc(s[3]))
                ys[len(seqs) - 1, self.labels.index(s[1])] = True
                first.append(-1)
                gloss.append(True)
            else:
                if common or self.rng.random() < common_share:
                    words, by_cat = self.common, self.common_by_cat
                else:
                    words, by_cat = self.words, self.words_by_cat
                w, cs = self.rng.choice(by_cat[c] if uni and by_cat[c] else words)
                seqs.append(self.enc(w))
                ys[len(seqs) - 1, cs] = True
                first.append(self.first_cat.get(w, -1))
                gloss.append(False)
        return seqs, ys, torch.tensor(first), gloss

    def rerank_groups(self, n, instr):
        """-> (sequences, pos [4n, 3], query labels [4n, 10], document labels [4n, 10]):
        pos: the <Document token (where the query's category is also trained),
        the user turn's <|im_end|> (the document's category), the last token."""
        """n groups of 4: a training word against its own gloss (yes) and 3 glosses
        of other synsets (no), each of its category a third of the time, else of
        any; the sequences exclude the shared head (rr_prefix[instr])."""
        seqs, pos = [], []
        qy = torch.zeros(4 * n, len(self.labels), dtype=torch.bool)
        dy = torch.zeros(4 * n, len(self.labels), dtype=torch.bool)
        head = len(self.rr_prefix[instr])
        for _ in range(n):
            s = self.rng.choice(self.rr_query)
            q = self.rng.choice([w for w in s[4] if w in self.train_words])
            qcats = self.word_labels[q]
            docs = [s]
            while len(docs) < 4:
                d = self.rng.choice(self.by_cat[s[1]] if self.rng.random() < 1 / 3 else self.train)
                if d[0] not in [x[0] for x in docs]:
                    docs.append(d)
            for d in docs:
                full = self.enc_rr(self.rr_instr[instr], q, d[3])
                assert full[:head] == self.rr_prefix[instr]
                seq = full[head:]
                qy[len(seqs), qcats] = True
                dy[len(seqs), self.labels.index(d[1])] = True
                end = len(seq) - len(self.rr_tail)
                assert seq[end] == self.im_end_row
                pos.append([seq.index(self.doc_row), end, len(seq) - 1])
                seqs.append(seq)
        return seqs, torch.tensor(pos), qy, dy

    def enc_rr(self, instr, q, doc):
        text = rerank_text(instr, q, doc)
        if text not in self.enc_cache:
            self.enc_cache[text] = [self.row(t) for t in self.ids(text, None)]
        return self.enc_cache.pop(text)


def evaluate(model, data, rng, hf=True, n_rr=500, sub=None, split=None):
    """Held-out accuracy: category from a gloss, from a word (its most frequent
    sense's category); rerank: the word's own gloss first among it and 3
    glosses of other held-out synsets. hf: transformers' forward on real ids
    (the saved checkpoint); else the training forward on training rows, on
    every sub-th item (the progress evaluation). split: a set of lower-case
    words; the bare-word accuracy is also given for the words in it and the
    others (classify_word_in, classify_word_out)."""
    model.eval()
    with torch.no_grad():
        if hf:
            lab, yn, enc = torch.tensor(data.label_ids), torch.tensor(data.yn), data.ids
            hid = hf_last_hidden
        else:
            lab, yn = torch.tensor(data.label_rows), torch.tensor(data.yn_rows)
            enc, hid = data.enc_eval, (lambda m, s: last_hidden(m, s, chunk=128))

        def classify(texts):
            out = []
            for i in range(0, len(texts), 256):
                h = hid(model, [enc(t) for t in texts[i:i + 256]])
                out += label_logits(model, h, lab).argmax(-1).tolist()
            return out

        test = data.test[::sub] if sub else data.test
        gl = [s[3] for s in test]
        gy = [data.labels.index(s[1]) for s in test]
        wd = [(w, data.labels.index(s[1])) for s in test for w in s[2]]
        acc_gloss = sum(a == b for a, b in zip(classify(gl), gy)) / len(gy)
        hit = [a == b for a, (_, b) in zip(classify([w for w, _ in wd]), wd)]
        acc_word = sum(hit) / len(wd)
        parts = {}
        if split is not None:
            for name, want in (("in", True), ("out", False)):
                h = [x for x, (w, _) in zip(hit, wd) if (w.lower() in split) == want]
                parts[f"classify_word_{name}"] = sum(h) / max(len(h), 1)
                parts[f"n_word_{name}"] = len(h)
        withw = [s for s in data.test if s[2]]
        rr_hits, rr_n = 0, 0
        for s in rng.sample(withw, min(n_rr, len(withw))):
            docs = [s] + rng.sample([t for t in withw if t[0] != s[0]], 3)
            h = hid(model, [enc(rerank_text(RR_INSTRUCTION, s[2][0], d[3]), None) for d in docs])
            p = torch.softmax(label_logits(model, h, yn), -1)[:, 1]
            rr_hits += int(p.argmax() == 0)
            rr_n += 1
    model.train()
    return {"classify_gloss": acc_gloss, "classify_word": acc_word, "n_gloss": len(gy),
            "n_word": len(wd), "rerank_top1_of_4": rr_hits / rr_n, "n_rerank": rr_n, **parts}


def hf_tensors(state):
    """The published Qwen3-MoE layout, in bf16: one gate/up/down matrix per expert
    (transformers 5 fuses them in memory as experts.gate_up_proj [E, 2I, H] and
    experts.down_proj [E, H, I], and splits them back this way when it saves);
    tied, so the embedding alone stands for lm_head."""
    out = {}
    for k, v in state.items():
        v = v.detach().to(torch.bfloat16)
        if k == "lm_head.weight":
            continue
        if k.endswith("mlp.experts.gate_up_proj"):
            base, inter = k[:-len("gate_up_proj")], v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = v[e, :inter].contiguous()
                out[f"{base}{e}.up_proj.weight"] = v[e, inter:].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            base = k[:-len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = v[e].contiguous()
        else:
            out[k] = v.contiguous()
    return out


def save(model, data, seed, out):
    """The training embedding scattered into the full vocabulary: each token
    whose key (Data.key) was trained gets that row, the others a seeded
    N(0, 0.02) (with --init, the checkpoint's row)."""
    os.makedirs(out, exist_ok=True)
    state = dict(model.state_dict())
    if data.init is not None:  # --init: the rows this run never saw keep the checkpoint's
        full = data.init[0].clone()
    else:
        g = torch.Generator().manual_seed(seed)
        full = torch.randn(CONFIG["vocab_size"], CONFIG["hidden_size"], generator=g)
        full *= CONFIG["initializer_range"]
    ids, rows = [], []
    for v in range(CONFIG["vocab_size"]):
        r = data.rows.get(data.key(v))
        if r is not None:
            ids.append(v)
            rows.append(r)
    full[torch.tensor(ids)] = state["model.embed_tokens.weight"][torch.tensor(rows)].detach()
    state["model.embed_tokens.weight"] = full
    save_file(hf_tensors(state), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src, dst = os.path.join(TOKDIR, name), os.path.join(out, name)
        if not os.path.exists(dst) or not os.path.samefile(src, dst):
            shutil.copyfile(src, dst)
    print(f"{out}: {len(ids)} of {CONFIG['vocab_size']} embedding rows trained", flush=True)


@torch.no_grad()
def check_saved(model, saved, data):
    """The written checkpoint computes what was trained, rounded to bf16: a wrong
    expert split or row scatter would not. Rounds the trained model in place."""
    model.eval()
    for p in model.parameters():
        p.copy_(p.to(torch.bfloat16).float())
    texts = list(data.enc_cache)[:64]  # trained on, so every token has its row
    p0 = torch.softmax(label_logits(model, hf_last_hidden(model, [data.enc(t) for t in texts]),
                                   torch.tensor(data.label_rows)), -1)
    p1 = torch.softmax(label_logits(saved, hf_last_hidden(saved, [data.ids(t) for t in texts]),
                                   torch.tensor(data.label_ids)), -1)
    err = float((p0 - p1).abs().max())
    print(f"saved checkpoint against the trained model: max label-probability difference {err:.2e}")
    assert err < 1e-4, err


def golden_requests(data, path):
    """The requests of tests/golden/default.jsonl (tools/golden.py computes their
    transformers answers; tests/test_default_model.c checks the engine against
    them): 20 held-out glosses and 20 held-out words with the ten label tokens
    as candidates (the id is the WordNet category, so the test can score the
    answer); 10 held-out words each against its own gloss and 3 other held-out
    glosses, as rerank prompts (candidates no, yes; id rerank:GROUP:yes for the
    own gloss, rerank:GROUP:no for the others); what the demo asks
    (tools/demo_items.json: id demo:LABEL|LABEL:TEXT, the answers a person
    accepts, and rerank group "demo"); pooled embeddings of a few words."""
    reqs = []
    test = data.test
    for s in test[::len(test) // 20][:20]:
        reqs.append({"id": s[1], "prompt_token_ids": data.ids(s[3]),
                     "candidate_token_ids": data.label_ids})
    words = [s for s in test if s[2]]
    for s in words[::len(words) // 20][:20]:
        reqs.append({"id": s[1], "prompt_token_ids": data.ids(s[2][0]),
                     "candidate_token_ids": data.label_ids})

    def rerank(group, query, docs, answer, instr=RR_INSTRUCTION):
        for i, d in enumerate(docs):
            reqs.append({"id": f"rerank:{group}:{'yes' if i == answer else 'no'}",
                         "prompt_token_ids": data.ids(rerank_text(instr, query, d), None),
                         "candidate_token_ids": data.yn})
    rng = random.Random(7)
    for g, s in enumerate(rng.sample(words, 10)):
        others = rng.sample([t for t in words if t[0] != s[0]], 3)
        rerank(g, s[2][0], [s[3]] + [t[3] for t in others], 0)
    demo = json.load(open(DEMO_ITEMS))
    assert demo["labels"] == data.labels
    for text, ok in demo["classify"]:
        reqs.append({"id": f"demo:{'|'.join(ok)}:{text}", "prompt_token_ids": data.ids(text),
                     "candidate_token_ids": data.label_ids})
    d = demo["rerank"]
    rerank("demo", d["query"], d["documents"], d["answer"], d["instruction"])
    reqs[-1]["top_logprobs"] = 5
    for w in ("banana", "tiger", "Paris"):
        reqs.append({"id": f"embed-{w}", "prompt_token_ids": data.ids(w), "pooling": "last",
                     "normalize": True})
    reqs.append({"id": "prompt-logprobs", "prompt_token_ids": data.ids(test[0][3]),
                 "prompt_logprobs": {"start": 1}, "top_logprobs": 3})
    with open(path, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")
    print(f"{path}: {len(reqs)} requests")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/default")
    ap.add_argument("--steps", type=int, default=2300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128, help="classify sequences a step")
    ap.add_argument("--rerank-groups", type=int, default=16,
                    help="rerank groups (a word and 4 glosses) a step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the rerank prompt's "
                    "category losses (the query's, the document's)")
    ap.add_argument("--polish", type=int, default=0, help="steps after --steps at a tenth "
                    "of --lr, the classify words drawn from the common ones (tagged_words)")
    ap.add_argument("--relay", metavar="TOTAL:STEP,...", help="the learning rate follows a "
                    "one-cycle schedule of TOTAL steps up to STEP, then the next one's, then "
                    "one of --steps (each re-laid at the step reached): how the shipped run "
                    "was shortened mid-way")
    ap.add_argument("--first", type=float, default=0.5, help="weight of a word's most "
                    "frequent sense's category (cross-entropy) beside all its senses")
    ap.add_argument("--common-share", type=float, default=0.4, help="share of the classify "
                    "words drawn from the common ones (tagged_words)")
    ap.add_argument("--gloss-every", type=float, default=0.3, help="weight of the category "
                    "loss at every position of a gloss (each prefix read so far)")
    ap.add_argument("--init", metavar="DIR", help="start from this checkpoint (a model this "
                    "tool wrote) instead of a seeded initialisation")
    ap.add_argument("--gcide", type=float, default=0.0, help="weight of the dictionary loss: "
                    "a bare word's label distribution against the model's own (no gradient) "
                    "on its GCIDE noun senses (dict-gcide), the first ones weighted most")
    ap.add_argument("--gcide-words", type=int, default=32, help="GCIDE words a step")
    ap.add_argument("--gcide-gloss", type=float, default=0.0, help="a classify sequence's "
                    "gloss draw (1 in 2) is a training word's GCIDE sense, labelled by its "
                    "WordNet ones, this often; else WordNet gloss and word are drawn again "
                    "half and half (0.3: 15%% GCIDE senses, 42.5%% glosses, 42.5%% words)")
    ap.add_argument("--minutes", type=float, help="fix --steps from the time of the first "
                    "30 steps so the loop takes about this long; the run then prints the "
                    "--steps and --relay that replay it")
    ap.add_argument("--eval-every", type=int, default=500,
                    help="progress evaluation (a fifth of the held-out set, training forward)")
    ap.add_argument("--state", metavar="FILE", help="save the training state here every "
                    "--eval-every steps, and resume from it when it exists")
    ap.add_argument("--requests", metavar="FILE",
                    help="write the golden requests (held-out items) and stop")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    tok = Tokenizer.from_file(os.path.join(TOKDIR, "tokenizer.json"))
    data = Data(tok, read_synsets(), rng)
    if a.requests:
        return golden_requests(data, a.requests)
    print(f"wordnet: {len(data.train)} train synsets, {len(data.test)} held out, "
          f"{len(data.words)} training words; labels {data.labels}", flush=True)
    model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**dict(CONFIG, vocab_size=TRAIN_ROWS))).float()
    if a.init:
        init = Qwen3MoeForCausalLM.from_pretrained(a.init, dtype=torch.float32)
        st = {k: v for k, v in init.state_dict().items()
              if k not in ("model.embed_tokens.weight", "lm_head.weight")}
        missing = model.load_state_dict(st, strict=False).missing_keys
        assert set(missing) <= {"model.embed_tokens.weight", "lm_head.weight"}, missing
        data.seed_rows(init.model.embed_tokens.weight.detach().clone(),
                       model.model.embed_tokens.weight)
        del init
        print(f"initialised from {a.init}", flush=True)
    if a.gcide > 0:
        data.read_gcide()
        held = {w.lower() for s in data.test for w in s[2]}
        print(f"gcide: {len(data.gcide)} words of the ten categories defined as nouns "
              f"({sum(w.lower() in held for w, _ in data.gcide)} of them held-out words), "
              f"{len(data.gcide_gloss)} senses of training words", flush=True)
    gsplit = {w.lower() for w, _ in data.gcide} if a.gcide > 0 else None
    model.train()
    check_forward(model, data)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    def schedule(total, at):
        """One-cycle over total steps, at step at (its learning rate set)."""
        sc = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total,
                                                 pct_start=0.05)
        for _ in range(at):
            sc.step()
        return sc
    # [(total, until step)], then --steps to the end
    relay = [tuple(int(x) for x in r.split(":")) for r in a.relay.split(",")] if a.relay else []
    totals = [(t, until) for t, until in relay] + [(a.steps, a.steps)]

    def total_at(step):  # the schedule's total in force after step
        return next(t for t, until in totals if step < until or until == a.steps)
    sched = schedule(total_at(0), 0)
    lab, yn = torch.tensor(data.label_rows), torch.tensor(data.yn_rows)
    first, spent = 1, 0.0
    if a.state and os.path.exists(a.state):
        st = torch.load(a.state, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        if st["sched"] is None:  # in the polish
            sched = None
        else:
            sched.load_state_dict(st["sched"])
        if sched and st["sched"]["total_steps"] != total_at(st["step"]):
            # resumed with another --steps or --relay: re-laid at the step reached
            print(f"schedule: {st['sched']['total_steps']} steps -> {total_at(st['step'])} "
                  f"at step {st['step']}", flush=True)
            sched = schedule(total_at(st["step"]), st["step"])
        rng.setstate(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        data.rows, data.enc_cache = st["rows"], {}
        first, spent = st["step"] + 1, st["seconds"]
        print(f"resumed at step {first} from {a.state}", flush=True)
    t0 = time.time() - spent
    G = a.rerank_groups
    own = torch.tensor([1, 0, 0, 0] * G)
    step = first - 1
    while step < a.steps + a.polish:  # --minutes may set a.steps on the way
        step += 1
        polish = step > a.steps
        if polish and (step == a.steps + 1 or step == first):
            # the polish: a constant tenth of the peak learning rate, the classify
            # batch's words drawn from the common ones
            sched = None
            for g in opt.param_groups:
                g["lr"] = a.lr / 10
            print(f"polish: {a.polish} steps at {a.lr / 10:g}, {len(data.common)} common words",
                  flush=True)
        seqs, y, fst, gl = data.classify_batch(a.batch, common=polish, common_share=a.common_share,
                                               gcide_share=a.gcide_gloss)
        hl, hall, owner = classify_states(model, seqs, gl if a.gloss_every > 0 else [False] * len(gl))
        lg = label_logits(model, hl, lab)
        loss_c = multilabel(lg, y)
        if a.first > 0 and (fst >= 0).any():
            loss_c = loss_c + a.first * F.cross_entropy(lg[fst >= 0], fst[fst >= 0])
        if hall is not None:
            loss_c = loss_c + a.gloss_every * multilabel(label_logits(model, hall, lab), y[owner])
        instr = step % 2
        seqs, pos, qy, dy = data.rerank_groups(G, instr)
        h = last_hidden(model, seqs, data.rr_prefix[instr], chunk=64, pos=pos)
        lg = label_logits(model, h[:, 2], yn)
        # pointwise (P(yes) as /v1/rerank scores it) and listwise (the own gloss
        # first of its group, the held-out measure)
        loss_r = F.cross_entropy(lg, own) + \
            F.cross_entropy((lg[:, 1] - lg[:, 0]).view(G, 4), torch.zeros(G, dtype=torch.long))
        # the categories the answer compares, where the prompt has just read them:
        # the query's at <Document, the document's at the <|im_end|> after it
        loss_a = multilabel(label_logits(model, h[:, 0], lab), qy) + \
            multilabel(label_logits(model, h[:, 1], lab), dy)
        loss = loss_c + loss_r + a.aux * loss_a
        if a.gcide > 0:
            # the dictionary: what the model reads in a word's GCIDE senses (its
            # first ones weighted most, as a person names the main sense) is the
            # target of the bare word
            words, texts, owner, w = data.gcide_batch(a.gcide_words, GCIDE_SENSE_WEIGHTS)
            with torch.no_grad():
                p = torch.softmax(label_logits(model, last_hidden(
                    model, [data.enc(t) for t in texts], chunk=64), lab), -1)
                target = torch.zeros(len(words), len(data.labels)).index_add_(0, owner, p * w[:, None])
            lw = label_logits(model, last_hidden(model, [data.enc(x) for x in words]), lab)
            loss_g = -(target * F.log_softmax(lw, -1)).sum(-1).mean()
            loss = loss + a.gcide * loss_g
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not polish:
            sched.step()
        if not polish and step < a.steps and total_at(step) != total_at(step - 1):
            print(f"schedule: {total_at(step - 1)} steps -> {total_at(step)} at step {step}",
                  flush=True)
            sched = schedule(total_at(step), step)
        if a.minutes and step == first + 29 and first == 1:
            per = (time.time() - t0) / 30
            n = max(int(a.minutes * 60 / per), 100)
            print(f"--minutes {a.minutes:g}: {per:.2f} s a step -> {n} steps; replay with "
                  f"--steps {n} --relay {a.steps}:{step}", flush=True)
            totals[:] = [(a.steps, step), (n, n)]
            a.steps = n
            sched = schedule(n, step)
        if step % 50 == 0 or step == 1:
            print(f"step {step}/{a.steps + a.polish} classify {loss_c.item():.3f} rerank {loss_r.item():.3f} "
                  f"aux {loss_a.item():.3f} "
                  + (f"gcide {loss_g.item():.3f} " if a.gcide > 0 else "")
                  + f"{time.time() - t0:.0f}s", flush=True)
        if step % a.eval_every == 0 and step < a.steps + a.polish:
            res = evaluate(model, data, random.Random(a.seed + 1), hf=False, n_rr=100, sub=5,
                           split=gsplit)
            print(f"step {step} held-out (a fifth): {json.dumps(res)}", flush=True)
            if a.state:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict() if sched else None, "rng": rng.getstate(),
                            "torch_rng": torch.get_rng_state(), "rows": data.rows, "step": step,
                            "seconds": time.time() - t0}, a.state + ".tmp")
                os.replace(a.state + ".tmp", a.state)
    save(model, data, a.seed, a.out)
    # measured on what was written: the bf16 weights, read back as transformers reads them
    saved = Qwen3MoeForCausalLM.from_pretrained(a.out, dtype=torch.float32).eval()
    check_saved(model, saved, data)
    res = evaluate(saved, data, random.Random(a.seed + 1), split=gsplit)
    res.update({"steps": a.steps, "polish": a.polish, "seed": a.seed, "init": a.init,
                "gcide": a.gcide, "gcide_gloss": a.gcide_gloss, "train_seconds": round(time.time() - t0),
                "train_synsets": len(data.train), "held_out_synsets": len(data.test)})
    with open(os.path.join(a.out, "heldout.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
