/* test_kvcache.c -- prefix reuse (kvcache.h, forward.h's zp_fwd_set_prefix):
   the cache on its own (find, insert, pins, LRU order, eviction reports, a
   forced key collision told apart by ids and parent); then forwards on small
   committed models in fp32 and bf16, every output kind (candidate log-probs,
   top-k, prompt log-probs from inside and after the prefix, LAST and MEAN
   pooling) compared BITWISE with the same request run alone on a forward
   without reuse: after a cache hit, as siblings of one batch, with every key
   colliding, under eviction pressure, a batch overflowing the cache (its
   first blocks stay), and with no cache at all; finally two
   executors of an engine with small caches under pressure (batches in flight
   while the owner reads the reports: make tsan / make asan). */
#include <string.h>

#include "backend_cpu.h"
#include "check.h"
#include "device.h"
#include "engine.h"
#include "forward.h"
#include "kvcache.h"

#define PLEN 100	/* the shared prefix: 6 full blocks and 4 tokens */
#define SUF 12
#define NC 3

static const int32_t cands[NC] = { 1, 7, 42 };

/* A request over ids[n] asking for everything its kind needs. */
enum kind { K_LAST, K_PLP_IN, K_PLP_AFTER, K_POOL_LAST, K_POOL_MEAN, K_KINDS };
static const char *kind_name[K_KINDS] = { "cands+topk", "plp-in-prefix", "plp-after-prefix",
					  "pool-last", "pool-mean" };

static void mk(zp_req *r, const int32_t *ids, int n, enum kind k, int hidden)
{
	zp_req_error err;
	zp_req_init(r, NULL);
	r->plp_start = -1;
	ZP_ASSERT(zp_req_set_tokens(r, ids, n, &err) == 0);
	ZP_ASSERT(zp_req_set_cands(r, cands, NC, &err) == 0);
	r->top_k = 5;
	r->top_ids = zp_req_alloc(r, 5, sizeof *r->top_ids);
	r->top_lp = zp_req_alloc(r, 5, sizeof *r->top_lp);
	if (k == K_PLP_IN || k == K_PLP_AFTER) {
		r->plp_start = k == K_PLP_IN ? 40 : PLEN + 3;
		r->plp = zp_req_alloc(r, (size_t)(n - r->plp_start), sizeof *r->plp);
	}
	if (k == K_POOL_LAST || k == K_POOL_MEAN) {
		r->pool = k == K_POOL_LAST ? ZP_POOLING_LAST : ZP_POOLING_MEAN;
		r->normalize = k == K_POOL_MEAN;
		r->emb_dim = hidden;
		r->emb = zp_req_alloc(r, (size_t)hidden, sizeof *r->emb);
	}
}

/* Leading blocks a request of kind k may reuse (forward.c's rule). */
static int reuse_tokens(enum kind k, int n)
{
	int need = k == K_POOL_MEAN ? 0 : k == K_PLP_IN ? 39 : k == K_PLP_AFTER ? PLEN + 2 : n - 1;
	return need / ZP_KV_BLOCK * ZP_KV_BLOCK;
}

static bool same(const zp_req *a, const zp_req *b)
{
	bool eq = !memcmp(a->cand_lp, b->cand_lp, NC * sizeof *a->cand_lp) &&
		  !memcmp(a->top_ids, b->top_ids, 5 * sizeof *a->top_ids) &&
		  !memcmp(a->top_lp, b->top_lp, 5 * sizeof *a->top_lp);
	if (a->plp)
		eq &= !memcmp(a->plp, b->plp, (size_t)(a->ntok - a->plp_start) * sizeof *a->plp);
	if (a->emb)
		eq &= !memcmp(a->emb, b->emb, (size_t)a->emb_dim * sizeof *a->emb);
	return eq;
}

/* ---- the cache alone ------------------------------------------------------------ */

static void fill(int32_t *ids, int seed)
{
	for (int i = 0; i < ZP_KV_BLOCK; i++)
		ids[i] = seed * 31 + i;
}

static void cache_alone(zp_backend *be)
{
	zp_kv *c = zp_kv_new(be, 2, 8, 3 * zp_kv_block_bytes(2, 8) + 5);
	int32_t a[ZP_KV_BLOCK], b[ZP_KV_BLOCK], d[ZP_KV_BLOCK];
	zp_blk_key got[1];
	bool fresh;
	fill(a, 1);
	fill(b, 2);
	fill(d, 3);
	CHECK(zp_kv_new(be, 2, 8, zp_kv_block_bytes(2, 8) - 1) == NULL, "under one block: no cache");
	CHECK(zp_kv_blocks_max(c) == 3, "3 blocks fit (%d)", zp_kv_blocks_max(c));
	zp_blk_key ka = zp_blk_key_next(zp_blk_key_root(), a);
	zp_blk_key kab = zp_blk_key_next(ka, b);
	CHECK(zp_kv_find(c, ZP_KV_ROOT, ka, a).slot < 0, "empty: a miss");
	zp_kv_ref ra = zp_kv_insert(c, ZP_KV_ROOT, ka, a, &fresh);
	CHECK(ra.slot >= 0 && fresh, "a inserted");
	CHECK(zp_kv_find(c, ZP_KV_ROOT, ka, a).slot < 0, "being written: not found");
	zp_kv_rows(c, ra.slot, 1)[0] = 5;
	zp_kv_commit(c, ra.slot);
	zp_kv_unpin(c, ra.slot);
	zp_kv_ref r2 = zp_kv_find(c, ZP_KV_ROOT, ka, a);
	CHECK(r2.slot == ra.slot && zp_kv_rows(c, r2.slot, 1)[0] == 5, "a found after commit");
	CHECK(zp_kv_find(c, ZP_KV_ROOT, ka, b).slot < 0, "same key, other ids: a miss");
	zp_kv_ref rab = zp_kv_insert(c, r2, kab, b, &fresh);
	CHECK(rab.slot >= 0 && fresh && zp_kv_parent(c, rab.slot).slot == r2.slot, "b after a");
	zp_kv_commit(c, rab.slot);
	zp_kv_unpin(c, rab.slot);
	zp_kv_unpin(c, r2.slot);
	CHECK(zp_kv_find(c, ZP_KV_ROOT, kab, b).slot < 0, "b's ids after another parent: a miss");
	/* d at the root takes the third block; a fourth insert evicts the least
	   recently used unpinned block: the leaf b (a was unpinned after it) */
	zp_kv_ref rd = zp_kv_insert(c, ZP_KV_ROOT, zp_blk_key_next(zp_blk_key_root(), d), d, &fresh);
	zp_kv_commit(c, rd.slot);
	zp_kv_unpin(c, rd.slot);
	CHECK(zp_kv_blocks(c) == 3 && zp_kv_take_evicted(c, got, 0) == 0,
	      "full, nothing evicted yet");
	zp_kv_ref pa = zp_kv_find(c, ZP_KV_ROOT, ka, a); /* pinned: cannot go */
	zp_kv_ref rx = zp_kv_insert(c, pa, kab, d, &fresh);
	zp_blk_key ev[ZP_KV_EVICT_REPORT];
	CHECK(rx.slot == rab.slot && fresh, "the least recently used leaf was taken (%d)", rx.slot);
	CHECK(zp_kv_take_evicted(c, ev, ZP_KV_EVICT_REPORT) == 1 && zp_blk_key_eq(ev[0], kab),
	      "its key reported");
	zp_kv_ref ry = zp_kv_insert(c, rx, kab, a, &fresh);
	CHECK(ry.slot == rd.slot && fresh, "then d");
	zp_kv_ref rz = zp_kv_insert(c, ry, ka, b, &fresh);
	CHECK(rz.slot < 0, "every block pinned: no room");
	zp_kv_drop(c, ry.slot);
	zp_kv_drop(c, rx.slot);
	zp_kv_unpin(c, pa.slot);
	CHECK(zp_kv_blocks(c) == 1 && zp_kv_evictions(c) == 2, "dropped blocks are free (%d, %llu)",
	      zp_kv_blocks(c), (unsigned long long)zp_kv_evictions(c));
	zp_kv_free(c);

	/* every key equal: ids and parent still tell blocks apart */
	c = zp_kv_new(be, 1, 4, 8 * zp_kv_block_bytes(1, 4));
	zp_kv_test_key_bits(c, 0);
	zp_kv_ref x = zp_kv_insert(c, ZP_KV_ROOT, ka, a, &fresh);
	zp_kv_ref y = zp_kv_insert(c, ZP_KV_ROOT, kab, b, &fresh);
	zp_kv_ref z = zp_kv_insert(c, x, kab, b, &fresh);
	CHECK(x.slot != y.slot && y.slot != z.slot && fresh, "three blocks");
	zp_kv_commit(c, x.slot);
	zp_kv_commit(c, y.slot);
	zp_kv_commit(c, z.slot);
	zp_kv_ref f1 = zp_kv_find(c, ZP_KV_ROOT, ka, b), f2 = zp_kv_find(c, x, ka, b);
	CHECK(f1.slot == y.slot && f2.slot == z.slot, "b at the root and b after a are told apart");
	zp_kv_unpin(c, f1.slot);
	zp_kv_unpin(c, f2.slot);
	zp_kv_unpin(c, x.slot);
	zp_kv_unpin(c, y.slot);
	zp_kv_unpin(c, z.slot);
	zp_kv_free(c);
}

/* ---- forwards ------------------------------------------------------------------- */

static zp_model model;
static zp_fwd *ref;		/* no reuse: each request alone */
static int32_t prefix[PLEN], suffix[64][SUF];

/* Request i of kind k: the prefix and suffix i (when i >= 0), or the prefix
   alone (-1). */
static void mk_i(zp_req *r, int i, enum kind k)
{
	int32_t ids[PLEN + SUF];
	memcpy(ids, prefix, sizeof prefix);
	if (i >= 0)
		memcpy(ids + PLEN, suffix[i], sizeof suffix[i]);
	mk(r, ids, PLEN + (i >= 0 ? SUF : 0), k, model.cfg.hidden);
}

/* r's outputs equal those of the same request alone without reuse (run once
   per request and kind; prefix changes made by a test are undone by it before
   the next test, and such requests use their own variant number v). */
static zp_req refs[8][65][K_KINDS];
static bool have_ref[8][65][K_KINDS];

static bool matches_ref_v(const zp_req *r, enum kind k, int i, int v)
{
	zp_req *a = &refs[v][i + 1][k];
	if (!have_ref[v][i + 1][k]) {
		mk_i(a, i, k);
		ZP_ASSERT(zp_fwd_run(ref, &a, 1, NULL) == 0);
		have_ref[v][i + 1][k] = true;
	}
	return same(r, a);
}

static bool matches_ref(const zp_req *r, enum kind k, int i)
{
	return matches_ref_v(r, k, i, 0);
}

static void refs_free(void)
{
	for (int v = 0; v < 8; v++)
		for (int i = 0; i < 65; i++)
			for (int k = 0; k < K_KINDS; k++)
				if (have_ref[v][i][k]) {
					zp_req_free(&refs[v][i][k]);
					have_ref[v][i][k] = false;
				}
}

static int hits(zp_fwd *f, int s)
{
	static int h[ZP_FWD_SEQS_MAX];
	static zp_blk_key ev[ZP_KV_EVICT_REPORT];
	bool over;
	zp_fwd_kv_report(f, h, ev, ZP_KV_EVICT_REPORT, &over);
	return h[s];
}

/* A cache hit: request 0 warms the cache, request 1 of each kind hits it. */
static void cache_hit(const char *tag)
{
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, 4096);
	zp_fwd_set_prefix(f, 1 << 20, false);
	for (int k = 0; k < K_KINDS; k++) {
		zp_req a, b;
		zp_req *p = &a;
		mk_i(&a, 2 * k, k);
		ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
		CHECK(matches_ref(&a, k, 2 * k), "%s %s: first run differs", tag, kind_name[k]);
		mk_i(&b, 2 * k + 1, k);
		p = &b;
		ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
		int want = ZP_MIN(reuse_tokens(k, b.ntok), PLEN / ZP_KV_BLOCK * ZP_KV_BLOCK);
		CHECK(hits(f, 0) == want && zp_fwd_last_stats(f).cache_hit_tokens == want,
		      "%s %s: %d tokens from the cache, want %d", tag, kind_name[k], hits(f, 0), want);
		CHECK(matches_ref(&b, k, 2 * k + 1), "%s %s: a cache hit changes the outputs", tag,
		      kind_name[k]);
		zp_req_free(&a);
		zp_req_free(&b);
	}
	/* the prefix alone, again: every full block but the one with the last token */
	zp_req c;
	zp_req *p = &c;
	mk_i(&c, -1, K_LAST);
	ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
	CHECK(hits(f, 0) == 96 && matches_ref(&c, K_LAST, -1), "%s: the prompt itself (%d)", tag,
	      hits(f, 0));
	zp_req_free(&c);
	zp_fwd_free(f);
}

/* Siblings: n requests sharing the prefix in one batch, with or without a
   cache (warm the second time), equal each alone. */
static void siblings(const char *tag, size_t kv_bytes)
{
	enum { N = 10 };
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, N * (PLEN + SUF));
	zp_fwd_set_prefix(f, kv_bytes, true);
	for (int round = 0; round < 2; round++) {
		zp_req r[N], *p[N];
		for (int i = 0; i < N; i++) {
			mk_i(&r[i], i, (enum kind)(i % K_KINDS));
			p[i] = &r[i];
		}
		ZP_ASSERT(zp_fwd_run(f, p, N, NULL) == 0);
		zp_fwd_stats st = zp_fwd_last_stats(f);
		for (int i = 0; i < N; i++) {
			enum kind k = (enum kind)(i % K_KINDS);
			int want = ZP_MIN(reuse_tokens(k, r[i].ntok), 96);
			if (i == 0 && (round == 0 || !kv_bytes))
				want = 0; /* the first computes the prefix */
			CHECK(hits(f, i) == want, "%s round %d seq %d (%s): %d tokens reused, want %d",
			      tag, round, i, kind_name[k], hits(f, i), want);
			CHECK(matches_ref(&r[i], k, i), "%s round %d seq %d (%s): differs from alone",
			      tag, round, i, kind_name[k]);
			zp_req_free(&r[i]);
		}
		CHECK(st.prompt_tokens == N * (PLEN + SUF) &&
		      st.computed_tokens + st.cache_hit_tokens + st.sibling_tokens == st.prompt_tokens,
		      "%s: token counts add up", tag);
		CHECK(round == 1 && kv_bytes ? st.cache_hit_tokens > 0 : st.sibling_tokens > 0,
		      "%s round %d: reuse counted (cache %ld, siblings %ld)", tag, round,
		      st.cache_hit_tokens, st.sibling_tokens);
		/* blocks an earlier sequence of the batch writes are a sibling's, not hits */
		CHECK((round == 1 && kv_bytes) || st.cache_hit_tokens == 0,
		      "%s round %d: a cache empty before the batch gives no hits (%ld)", tag, round,
		      st.cache_hit_tokens);
	}
	zp_fwd_free(f);
}

/* Every key collides; prompts sharing later blocks after different first
   blocks must not be confused. */
static void collisions(const char *tag)
{
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, 4096);
	zp_fwd_set_prefix(f, 1 << 20, true);
	zp_kv_test_key_bits(zp_fwd_kv(f), 0);
	int32_t save = prefix[3];
	for (int v = 0; v < 3; v++) {
		prefix[3] = (save + v) % model.cfg.vocab; /* block 0 differs, blocks 1.. equal */
		zp_req r;
		zp_req *p = &r;
		mk_i(&r, v, K_LAST);
		ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
		CHECK(hits(f, 0) == 0, "%s v%d: another first block: no hit (%d)", tag, v, hits(f, 0));
		CHECK(matches_ref_v(&r, K_LAST, v, 1 + v), "%s v%d: a collision changed the outputs",
		      tag, v);
		zp_req_free(&r);
	}
	zp_req r;
	zp_req *p = &r;
	mk_i(&r, 7, K_LAST);
	ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
	CHECK(hits(f, 0) == 96 && matches_ref(&r, K_LAST, 7), "%s: a true hit still hits (%d)", tag,
	      hits(f, 0));
	zp_req_free(&r);
	prefix[3] = save;
	zp_fwd_free(f);
}

/* A batch that inserts more blocks than the cache holds keeps its first
   ones: the cache evicts only blocks no sequence of the batch uses, and
   once every block is the batch's own the later inserts are dropped (an LRU
   that inserted all of them would keep the last: simulate.c's model). */
static void overflow(const char *tag)
{
	enum { N = 64 }; /* 4 full blocks each, 3 reusable (the last token's not) */
	int32_t ids[2][N];
	zp_req r[2], *p[2] = { &r[0], &r[1] };
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, 4096);
	zp_fwd_set_prefix(f, 4 * zp_kv_block_bytes(model.cfg.layers,
						   model.cfg.kv_heads * model.cfg.head_dim), true);
	for (int k = 0; k < 2; k++)
		for (int t = 0; t < N; t++)
			ids[k][t] = 3 + (k * N + t) * 7 % (model.cfg.vocab - 3);
	for (int k = 0; k < 2; k++)
		mk(&r[k], ids[k], N, K_LAST, model.cfg.hidden);
	ZP_ASSERT(zp_fwd_run(f, p, 2, NULL) == 0); /* 8 blocks into 4 */
	for (int k = 0; k < 2; k++) {
		zp_req_free(&r[k]);
		mk(&r[k], ids[k], N, K_LAST, model.cfg.hidden);
		ZP_ASSERT(zp_fwd_run(f, &p[k], 1, NULL) == 0);
		int want = k == 0 ? 48 : 0;
		CHECK(hits(f, 0) == want && zp_fwd_last_stats(f).cache_hit_tokens == want,
		      "%s: after a batch of 8 blocks into 4, request %d alone hits %d tokens, want %d",
		      tag, k, hits(f, 0), want);
	}
	zp_req_free(&r[0]);
	zp_req_free(&r[1]);
	zp_fwd_free(f);
}

/* A cache of 4 blocks, prompts of 6: constant eviction, reported. */
static void pressure(const char *tag)
{
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, 4096);
	zp_fwd_set_prefix(f, 4 * zp_kv_block_bytes(model.cfg.layers, model.cfg.kv_heads *
						      model.cfg.head_dim), false);
	int evicted = 0;
	for (int i = 0; i < 8; i++) {
		int32_t save = prefix[(i % 3) * 20];
		prefix[(i % 3) * 20] = (save + 1 + i % 3) % model.cfg.vocab;
		zp_req r;
		zp_req *p = &r;
		mk_i(&r, i, K_LAST);
		ZP_ASSERT(zp_fwd_run(f, &p, 1, NULL) == 0);
		CHECK(matches_ref_v(&r, K_LAST, i, 4 + i % 3), "%s %d: differs under eviction", tag, i);
		static int h[1];
		static zp_blk_key ev[ZP_KV_EVICT_REPORT];
		bool over;
		int n = zp_fwd_kv_report(f, h, ev, ZP_KV_EVICT_REPORT, &over);
		evicted += n;
		CHECK(!over && zp_kv_blocks(zp_fwd_kv(f)) <= 4, "%s: bounded", tag);
		/* the scheduler's contract: every full block is resident or reported,
		   and nothing reported is resident */
		zp_blk_key keys[(PLEN + SUF) / ZP_KV_BLOCK];
		int nb = zp_blk_keys(r.tokens, r.ntok, keys);
		for (int b = 0; b < nb; b++) {
			bool rep = false;
			for (int k = 0; k < n; k++)
				rep |= zp_blk_key_eq(ev[k], keys[b]);
			CHECK(zp_kv_resident(zp_fwd_kv(f), keys[b]) != rep,
			      "%s %d: block %d resident xor reported", tag, i, b);
		}
		for (int k = 0; k < n; k++)
			CHECK(!zp_kv_resident(zp_fwd_kv(f), ev[k]), "%s: a reported key is resident", tag);
		zp_req_free(&r);
		prefix[(i % 3) * 20] = save;
	}
	CHECK(evicted > 0, "%s: evictions reported", tag);
	zp_fwd_free(f);
}

/* No cache, no siblings: nothing reused, nothing reported. */
static void off(const char *tag)
{
	zp_fwd *f = zp_fwd_new_cpu(&model, 1, 4096);
	zp_fwd_set_prefix(f, 0, false);
	CHECK(zp_fwd_kv(f) == NULL, "%s: no pool", tag);
	for (int round = 0; round < 2; round++) {
		zp_req r[2], *p[2] = { &r[0], &r[1] };
		mk_i(&r[0], 0, K_LAST);
		mk_i(&r[1], 1, K_LAST);
		ZP_ASSERT(zp_fwd_run(f, p, 2, NULL) == 0);
		static int h[2];
		static zp_blk_key ev[1];
		bool over;
		CHECK(zp_fwd_kv_report(f, h, ev, 1, &over) == 0 && !over && h[0] == 0 && h[1] == 0,
		      "%s: nothing reused", tag);
		CHECK(zp_fwd_last_stats(f).computed_tokens == 2 * (PLEN + SUF), "%s: all computed", tag);
		CHECK(matches_ref(&r[0], K_LAST, 0) && matches_ref(&r[1], K_LAST, 1), "%s: differs", tag);
		zp_req_free(&r[0]);
		zp_req_free(&r[1]);
	}
	zp_fwd_free(f);
}

/* Two executors, small caches, batches of siblings and repeats in flight
   while the owner checks the last ones. */
static void engine_pressure(const char *tag)
{
	enum { ROUNDS = 8, PER = 4 };
	size_t bytes = 5 * zp_kv_block_bytes(model.cfg.layers, model.cfg.kv_heads * model.cfg.head_dim);
	zp_engine_cfg ec = { .executors = 2, .parallel = ZP_PAR_REPLICATE, .transport = "cpu",
			     .threads_per_executor = 1, .batch_tokens_max = 4096, .kv_cache_bytes = bytes };
	zp_err e;
	zp_engine *g = zp_engine_start(&model, &ec, &e);
	CHECK(g != NULL, "%s: engine: %s", tag, e.msg);
	if (!g)
		return;
	static zp_req r[ROUNDS][PER];
	long evicted = 0, reused = 0;
	int next = 0, done = 0;
	while (done < ROUNDS) {
		zp_batch *b;
		while (next < ROUNDS && (b = zp_engine_batch(g))) {
			for (int i = 0; i < PER; i++) {
				mk_i(&r[next][i], (next * PER + i) % 7, K_LAST);
				b->req[i] = &r[next][i];
				b->job[i] = NULL;
			}
			b->n = PER;
			b->tokens = PER * (PLEN + SUF);
			zp_engine_submit(g, b);
			next++;
		}
		b = zp_engine_wait(g);
		ZP_ASSERT(b);
		done++;
		CHECK(!b->failed, "%s: %s", tag, b->err);
		for (int i = 0; i < b->n; i++) {
			int idx = (int)(b->req[i] - &r[0][0]);
			CHECK(matches_ref(b->req[i], K_LAST, idx % 7), "%s: differs", tag);
			reused += b->kv_hit_tokens[i];
			zp_req_free(b->req[i]);
		}
		evicted += b->kv_evicted_n;
		CHECK(b->kv_evicted_n <= ZP_KV_EVICT_REPORT, "%s: report bounded", tag);
		zp_engine_release(g, b);
	}
	CHECK(reused > 0 && evicted > 0, "%s: reuse (%ld tokens) and evictions (%ld) seen", tag,
	      reused, evicted);
	zp_engine_stop(g);
}

static void run_model(const char *name, enum zp_wtype wt)
{
	char dir[256], tag[64];
	zp_err e;
	snprintf(dir, sizeof dir, "tests/models/%s", name);
	snprintf(tag, sizeof tag, "%s/%s", name, wt == ZP_W_F32 ? "fp32" : "bf16");
	if (zp_model_load(&model, dir, wt, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e)) {
		CHECK(0, "%s: %s", dir, e.msg);
		return;
	}
	for (int i = 0; i < PLEN; i++)
		prefix[i] = (int32_t)(check_frand(0, 1) * (float)model.cfg.vocab) % model.cfg.vocab;
	for (int i = 0; i < 64; i++)
		for (int j = 0; j < SUF; j++)
			suffix[i][j] = (int32_t)(check_frand(0, 1) * (float)model.cfg.vocab) %
				       model.cfg.vocab;
	ref = zp_fwd_new_cpu(&model, 1, 4096);
	cache_hit(tag);
	siblings(tag, 0);
	siblings(tag, 1 << 20);
	collisions(tag);
	pressure(tag);
	overflow(tag);
	off(tag);
	engine_pressure(tag);
	refs_free();
	zp_fwd_free(ref);
	zp_model_free(&model);
	printf("%s: done\n", tag);
}

int main(void)
{
	zp_backend *be = zp_backend_cpu_new(1);
	cache_alone(be);
	be->ops->free(be);
	/* odd shapes in both modes; head_dim 64 (bf16 attention's AMX path where
	   the CPU has it) in bf16: within make tsan's time on a shared machine */
	run_model("odd", ZP_W_F32);
	run_model("odd", ZP_W_BF16);
	run_model("hd64", ZP_W_BF16);
	return check_exit("test_kvcache");
}
