/* prefix_plan.c -- prefix reuse for the forward (forward.h's
   zp_fwd_set_prefix): which leading blocks of each sequence come from the
   prefix cache or from a sibling in the batch, the blocks the run inserts,
   the keys and values staged for attention, and the pins released after the
   run. The forward's owner thread only (as forward.c). */
#include <string.h>

#include "forward_impl.h"

/* ---- prefix reuse --------------------------------------------------------------- */

void zp_fwd_set_prefix(zp_fwd *f, size_t kv_cache_bytes, bool siblings)
{
	zp_err e;
	ZP_ASSERT(kv_cache_bytes != ZP_KV_AUTO);
	int rc = zp_fwd_set_prefix_sized(f, kv_cache_bytes, 1, siblings, &e);
	ZP_ASSERT(rc == 0); /* an explicit size on the host: nothing refused */
}

/* The pool of kv_bytes (sized: kv_why) on f's backend. */
static void kv_alloc(zp_fwd *f)
{
	const zp_config *c = f->c;
	f->kv = zp_kv_new(f->be, c->layers, f->kvd, f->kv_bytes);
	if (!f->kv && f->kv_bytes) { /* not one block: no cache */
		size_t l = strlen(f->kv_why);
		snprintf(f->kv_why + l, sizeof f->kv_why - l, ": %zu bytes, less than one block",
			 f->kv_bytes);
		f->kv_bytes = 0;
	}
	if (f->kv_bytes)
		zp_log(ZP_LOG_INFO, "msg=\"prefix cache\" blocks=%d block_bytes=%zu siblings=%d "
		       "bytes=%zu why=\"%s\"", f->kv ? zp_kv_blocks_max(f->kv) : 0,
		       zp_kv_block_bytes(c->layers, f->kvd), f->siblings, f->kv_bytes, f->kv_why);
}

/* The plan's tables (no pool yet). */
static void prefix_tables(zp_fwd *f, bool siblings)
{
	size_t S = ZP_FWD_SEQS_MAX;
	ZP_ASSERT(!f->pre);
	f->kvd = f->c->kv_heads * f->c->head_dim;
	f->siblings = siblings;
	f->pre = zp_xcalloc(S, sizeof *f->pre);
	f->hit = zp_xcalloc(S, sizeof *f->hit);
	f->hit_last = zp_xcalloc(S, sizeof *f->hit_last);
	f->sharer = zp_xcalloc(S, sizeof *f->sharer);
	f->ins0 = zp_xcalloc(S + 1, sizeof *f->ins0);
	/* a sequence inserts the full blocks of its computed rows: T / 16 at most */
	f->ins_cap = f->batch_tokens_max / ZP_KV_BLOCK + 1;
	f->ins = zp_xcalloc((size_t)f->ins_cap, sizeof *f->ins);
	f->ins_fresh = zp_xcalloc((size_t)f->ins_cap, sizeof *f->ins_fresh);
	f->ins_row = zp_xcalloc((size_t)f->ins_cap, sizeof *f->ins_row);
	f->pfx = zp_xcalloc(S, sizeof *f->pfx);
	f->att_start = zp_xcalloc(S + 1, sizeof *f->att_start);
	f->stage = zp_fwd_balloc(f, (size_t)f->batch_tokens_max * 2 * f->kvd * sizeof(float));
}

int zp_fwd_set_prefix_sized(zp_fwd *f, size_t kv_cache_bytes, int share, bool siblings,
			    zp_err *e)
{
	prefix_tables(f, siblings);
	if (zp_kv_size(f->be, kv_cache_bytes, share, &f->kv_bytes, f->kv_why, sizeof f->kv_why, e))
		return -1;
	kv_alloc(f);
	return 0;
}

int zp_fwd_set_prefix_later(zp_fwd *f, size_t kv_cache_bytes, int share, bool siblings,
			     zp_err *e)
{
	zp_mem_info mi;
	f->be->ops->mem_info(f->be, &mi);
	if (kv_cache_bytes != ZP_KV_AUTO || mi.host)
		return zp_fwd_set_prefix_sized(f, kv_cache_bytes, share, siblings, e) ? -1 : 0;
	prefix_tables(f, siblings);
	f->kv_bytes = 0;
	snprintf(f->kv_why, sizeof f->kv_why, "not yet sized");
	return 1;
}

void zp_fwd_size_kv(zp_fwd *f, int id, int share)
{
	ZP_ASSERT(f->pre && !f->kv);
	zp_kv_size_device(f->be, id, share, &f->kv_bytes, f->kv_why, sizeof f->kv_why);
	kv_alloc(f);
}

size_t zp_fwd_kv_bytes(const zp_fwd *f, const char **why)
{
	if (why)
		*why = f->kv_why;
	return f->kv_bytes;
}

zp_kv *zp_fwd_kv(zp_fwd *f)
{
	return f->kv;
}

int zp_fwd_pre_of(const zp_fwd *f, int s)
{
	return f->pre ? f->pre[s] : 0;
}

int zp_fwd_reuse_blocks_max(const zp_req *r)
{
	int need = r->ntok - 1; /* the last token gives candidates, top-k and LAST pooling */
	if (r->pool == ZP_POOLING_MEAN)
		need = 0;
	if (r->plp_start >= 0) /* plp[i] is read from position plp_start + i - 1 */
		need = ZP_MIN(need, ZP_MAX(r->plp_start - 1, 0));
	return need / ZP_KV_BLOCK;
}

/* Leading blocks a and b share, at most max, all inside b. */
static int common_blocks(const zp_req *a, const zp_req *b, int max)
{
	int n = 0;
	while (n < max && (n + 1) * ZP_KV_BLOCK <= b->ntok &&
	       !memcmp(a->tokens + n * ZP_KV_BLOCK, b->tokens + n * ZP_KV_BLOCK,
		       ZP_KV_BLOCK * sizeof(int32_t)))
		n++;
	return n;
}

static void lose(zp_fwd *f, zp_blk_key k)
{
	if (f->lost_n < ZP_KV_EVICT_REPORT)
		f->lost[f->lost_n] = k;
	f->lost_n++;
}

/* Sequence s's full blocks from m on (it computes them) into the cache, after
   the block parent; key is the key of block m - 1. */
static void plan_inserts(zp_fwd *f, const zp_req *r, int m, zp_kv_ref parent, zp_blk_key key)
{
	for (int b = m; b < r->ntok / ZP_KV_BLOCK; b++) {
		const int32_t *ids = r->tokens + (size_t)b * ZP_KV_BLOCK;
		int i = f->nins++;
		bool fresh = false;
		zp_kv_ref x = ZP_KV_ROOT;
		key = zp_blk_key_next(key, ids);
		ZP_ASSERT(i < f->ins_cap);
		if (b == 0 || parent.slot >= 0)
			x = zp_kv_insert(f->kv, parent, key, ids, &fresh);
		if (x.slot < 0)
			lose(f, key);
		f->ins[i] = x;
		f->ins_fresh[i] = fresh;
		f->ins_row[i] = b * ZP_KV_BLOCK; /* a position; a row once the batch is laid out */
		parent = x;
	}
}

/* Sequence s's prefix: the longest run of its leading blocks in the cache
   (pinned), then the longest run shared with an earlier sequence of the batch
   that computes those rows itself; then its inserts. */
static void plan_seq(zp_fwd *f, zp_req **reqs, int s)
{
	const zp_req *r = reqs[s];
	int lim = zp_fwd_reuse_blocks_max(r), h = 0, m, t = -1;
	zp_blk_key key = zp_blk_key_root();
	zp_kv_ref last = ZP_KV_ROOT;
	for (; f->kv && h < lim; h++) {
		const int32_t *ids = r->tokens + (size_t)h * ZP_KV_BLOCK;
		zp_blk_key k = zp_blk_key_next(key, ids);
		zp_kv_ref x = zp_kv_find(f->kv, last, k, ids);
		if (x.slot < 0)
			break;
		key = k;
		last = x;
	}
	m = h;
	for (int u = 0; f->siblings && u < s; u++) {
		if (f->sharer[u] >= 0 || f->pre[u] > h * ZP_KV_BLOCK)
			continue; /* u does not compute all of blocks [h, ...) itself */
		int n = common_blocks(r, reqs[u], lim);
		if (n > m) {
			m = n;
			t = u;
		}
	}
	f->hit[s] = h;
	f->hit_last[s] = last;
	f->sharer[s] = t;
	f->pre[s] = m * ZP_KV_BLOCK;
	f->any_pre |= m > 0;
	f->ins0[s] = f->nins;
	if (!f->kv)
		return;
	for (int b = h; b < m; b++)
		key = zp_blk_key_next(key, r->tokens + (size_t)b * ZP_KV_BLOCK);
	/* after the sharer's block m - 1 (u computes from block pre[u] / 16) */
	if (t >= 0)
		last = f->ins[f->ins0[t] + m - 1 - f->pre[t] / ZP_KV_BLOCK];
	plan_inserts(f, r, m, last, key);
}

void zp_fwd_plan(zp_fwd *f, zp_req **reqs, int nreq)
{
	f->any_pre = false;
	f->nins = f->lost_n = f->rep_n = 0;
	for (int s = 0; s < nreq; s++)
		plan_seq(f, reqs, s);
	f->ins0[nreq] = f->nins;
	if (!f->kv)
		return;
	int ev = zp_kv_take_evicted(f->kv, f->rep, ZP_KV_EVICT_REPORT), n = 0;
	f->stats.kv_evictions = ev;
	int lost = ZP_MIN(f->lost_n, ZP_KV_EVICT_REPORT - ZP_MIN(ev, ZP_KV_EVICT_REPORT));
	memcpy(f->rep + ZP_MIN(ev, ZP_KV_EVICT_REPORT), f->lost, (size_t)lost * sizeof *f->lost);
	if (ev + f->lost_n > ZP_KV_EVICT_REPORT) { /* the report overflows as it is */
		f->rep_n = ev + f->lost_n;
		return;
	}
	/* a key evicted and inserted again by a later sequence is resident */
	for (int i = 0; i < ev + f->lost_n; i++)
		if (!zp_kv_resident(f->kv, f->rep[i]))
			f->rep[n++] = f->rep[i];
	f->rep_n = n;
}

/* Layer l's keys and values of the blocks this run inserts, from their rows:
   one strided copy per block (k then v are adjacent in a qkv row; a device
   does the 16 rows as one transfer, not 16). */
void zp_fwd_kv_write(zp_fwd *f, int l)
{
	size_t w = 2 * (size_t)f->kvd, qd = (size_t)f->c->heads * f->c->head_dim;
	for (int i = 0; i < f->nins; i++) {
		if (!f->ins_fresh[i])
			continue;
		f->op->copy2d(f->be, zp_kv_rows(f->kv, f->ins[i].slot, l), w * sizeof(float),
			      f->qkvb + (size_t)f->ins_row[i] * f->qkv + qd,
			      (size_t)f->qkv * sizeof(float), w * sizeof(float), ZP_KV_BLOCK);
	}
}

/* Sequence s's prefix keys and values for layer l: its sharer's rows where
   they are all of it, else laid out from *off rows on in the stage. */
static zp_kv_src stage_prefix(zp_fwd *f, int s, int l, int *off)
{
	int pre = f->pre[s], h = f->hit[s], t = f->sharer[s];
	size_t w = 2 * (size_t)f->kvd, qd = (size_t)f->c->heads * f->c->head_dim;
	if (!pre)
		return (zp_kv_src){ 0 };
	if (!h) { /* blocks [0, pre) are rows of t, which computes from position 0 */
		ZP_ASSERT(t >= 0 && f->pre[t] == 0);
		const float *k = f->qkvb + (size_t)f->seq_start[t] * f->qkv + qd;
		return (zp_kv_src){ k, k + f->kvd, (size_t)f->qkv, pre };
	}
	float *dst = f->stage + (size_t)*off * w;
	zp_kv_ref x = f->hit_last[s];
	for (int b = h - 1; b >= 0; b--) {
		f->op->copy(f->be, dst + (size_t)b * ZP_KV_BLOCK * w, zp_kv_rows(f->kv, x.slot, l),
			    ZP_KV_BLOCK * w * sizeof(float));
		x = zp_kv_parent(f->kv, x.slot);
	}
	ZP_ASSERT(x.slot < 0);
	if (pre > h * ZP_KV_BLOCK) { /* the rest from the sharer's rows, in one copy */
		int row = f->seq_start[t] + h * ZP_KV_BLOCK - f->pre[t];
		f->op->copy2d(f->be, dst + (size_t)h * ZP_KV_BLOCK * w, w * sizeof(float),
			      f->qkvb + (size_t)row * f->qkv + qd, (size_t)f->qkv * sizeof(float),
			      w * sizeof(float), pre - h * ZP_KV_BLOCK);
	}
	*off += pre;
	return (zp_kv_src){ dst, dst + f->kvd, w, pre };
}

/* Attention with prefixes: runs of sequences whose rows, prefixes included,
   fit the workspace (batch_tokens_max rows), each in one call with its own
   staged prefixes. A sequence's result does not depend on its company. */
int zp_fwd_attention_prefixed(zp_fwd *f, const zp_attn_args *a, int l, zp_err *e)
{
	for (int s0 = 0, s1; s0 < f->nseq; s0 = s1) {
		int rows = 0, off = 0;
		for (s1 = s0; s1 < f->nseq; s1++) {
			int n = f->seq_start[s1 + 1] - f->seq_start[s1] + f->pre[s1];
			if (s1 > s0 && rows + n > f->batch_tokens_max)
				break;
			rows += n;
		}
		for (int s = s0; s < s1; s++)
			f->pfx[s] = stage_prefix(f, s, l, &off);
		for (int s = s0; s <= s1; s++)
			f->att_start[s - s0] = f->seq_start[s] - f->seq_start[s0];
		zp_attn_args c = *a;
		c.nseq = s1 - s0;
		c.seq_start = f->att_start;
		c.qkv.data = f->qkvb + (size_t)f->seq_start[s0] * f->qkv;
		c.out.data = f->att + (size_t)f->seq_start[s0] * f->qdp;
		c.prefix = f->pfx + s0;
		if (f->op->attention(f->be, &c, e))
			return -1;
	}
	return 0;
}

/* The run is over (ok: its blocks were written): fresh blocks become valid
   (or are dropped), every pin is released, sequences last to first and each
   leaf to root, so a parent is always more recently used than its children. */
void zp_fwd_kv_release(zp_fwd *f, bool ok)
{
	for (int i = 0; ok && i < f->nins; i++)
		if (f->ins_fresh[i])
			zp_kv_commit(f->kv, f->ins[i].slot);
	for (int s = f->nseq - 1; s >= 0; s--) {
		for (int i = f->ins0[s + 1] - 1; i >= f->ins0[s]; i--)
			if (f->ins[i].slot >= 0 && (ok || !f->ins_fresh[i]))
				zp_kv_unpin(f->kv, f->ins[i].slot);
		for (zp_kv_ref x = f->hit_last[s], up; x.slot >= 0; x = up) {
			up = zp_kv_parent(f->kv, x.slot);
			zp_kv_unpin(f->kv, x.slot);
		}
	}
	for (int i = 0; !ok && i < f->nins; i++)
		if (f->ins_fresh[i])
			zp_kv_drop(f->kv, f->ins[i].slot);
	f->stats.kv_blocks = zp_kv_blocks(f->kv);
}

int zp_fwd_kv_report(zp_fwd *f, int *hit_tokens, zp_blk_key *evicted, int cap, bool *overflow)
{
	for (int s = 0; s < f->nseq; s++)
		hit_tokens[s] = zp_fwd_pre_of(f, s);
	int n = ZP_MIN(ZP_MIN(f->rep_n, cap), ZP_KV_EVICT_REPORT);
	memcpy(evicted, f->rep, (size_t)n * sizeof *evicted);
	*overflow = f->rep_n > n;
	return n;
}

