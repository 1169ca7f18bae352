/* forward.c -- see forward.h. The Qwen3-MoE schedule only: batch layout,
   layers (attention block, dense MLP or MoE: route, dispatch, acquire experts,
   grouped expert GEMM with SwiGLU, combine), outputs. Every computation is a
   backend op on explicit buffers (backend.h), each reducing a row in a fixed
   order, so a sequence's results do not depend on what else is in its batch.
   Prefix reuse (zp_fwd_set_prefix, the section below) leans on that: a
   sequence's keys and values at a position are the same bits whichever
   forward computed them, so it may skip leading blocks another sequence
   (the cache's, or a sibling's in the batch) computed. */
#include "forward.h"

#include <math.h>
#include <string.h>

#define LM_SCRATCH_BYTES (64u << 20) /* logits of one lm_head block */
#define LM_ROWS_MIN 32
#define LM_ROWS_MAX 256

struct zp_fwd {
	const zp_model *m;
	const zp_config *c;
	zp_backend *be;
	const struct zp_backend_ops *op;
	bool bf16;			/* bf16 weights: GEMM inputs are the bf16 copies */
	int batch_tokens_max;
	int hp, qkv, qdp, fp, mfp;	/* padded widths (even) */
	/* batch layout (host) */
	int ntok, nseq;
	int *seq_start;			/* [batch_tokens_max + 1] */
	int *tok_pos;			/* [batch_tokens_max]: position in its sequence */
	int32_t *tok_id;		/* [batch_tokens_max] */
	/* activations (backend); the bf16 copies only in bf16 mode */
	float *x;			/* [T, H] residual stream */
	float *xn;			/* [T, hp] normed (f32 gemm input) */
	uint16_t *xn16;			/* [T, hp] bf16 copy */
	float *qkvb;			/* [T, qkv] */
	float *att;			/* [T, qdp] */
	uint16_t *att16;		/* [T, qdp] */
	float *tmp;			/* [T, H] block output */
	float *act;			/* [T, fp] dense MLP */
	uint16_t *act16;		/* [T, fp] */
	float *rope_cos, *rope_sin;	/* [batch_tokens_max, d/2]: by position in a sequence */
	zp_attn_work *attn;
	/* MoE (backend, but offs_h and gap_h: host copies) */
	float *logits;			/* [T, E] */
	int *sel;			/* [T, k] expert ids, sorted ascending */
	float *selw;			/* [T, k] */
	int *slot_row;			/* [T, k] row of the slot in the gathered block */
	float *route_gap;		/* [layers, T]: MoE layer l's gaps at l * T (this
					   run's T); read back once, after the layers */
	float *gap_h;			/* host [layers, T] */
	int *offs, *offs_h;		/* [E + 1] */
	float *xg;			/* [T k, hp] */
	uint16_t *xg16;			/* [T k, hp] */
	float *actg;			/* [T k, mfp] */
	uint16_t *actg16;		/* [T k, mfp] */
	float *yg;			/* [T k, H] */
	/* outputs */
	int lm_rows;			/* rows per lm_head block: the weights stream once
					   per block, the logits scratch stays bounded */
	int *lm_pos;			/* host [lm_rows]: absolute token index */
	int *lm_req;			/* host [lm_rows] */
	zp_lp_row *lm_out_rows;		/* host [lm_rows] */
	float *lm_in;			/* [lm_rows, hp] */
	uint16_t *lm_in16;		/* [lm_rows, hp] */
	float *lm_out;			/* [lm_rows, V]; pooling's work between blocks */
	zp_fwd_stats stats;
	const zp_expert_src *src;	/* NULL: the model's experts */
	zp_dpep *grp;
	int member;
	_Atomic uint64_t *beat;		/* bumped after each layer (a watchdog's proof of
					   progress), or NULL */
	/* prefix reuse (zp_fwd_set_prefix; pre NULL: none). Sequence s computes
	   its positions [pre[s], ntok) only: blocks [0, hit[s]) come from the
	   cache, [hit[s], pre[s] / 16) from sharer[s]'s rows in this batch. */
	zp_kv *kv;			/* NULL: no cache */
	bool siblings;
	int kvd;			/* kv_heads * head_dim */
	bool any_pre;			/* this run: some sequence has a prefix */
	int *pre;			/* host [SEQS_MAX]: leading tokens not computed */
	int *hit;			/* host [SEQS_MAX] */
	zp_kv_ref *hit_last;		/* host [SEQS_MAX]: the last cached block (pinned) */
	int *sharer;			/* host [SEQS_MAX]: a sequence before it, or -1 */
	int *ins0;			/* host [SEQS_MAX + 1]: sequence s's blocks in ins */
	zp_kv_ref *ins;			/* host [ins_cap]: full blocks computed, pinned in
					   the cache (slot -1: not inserted) */
	bool *ins_fresh;		/* host [ins_cap]: written by this run */
	int *ins_row;			/* host [ins_cap]: the block's first row in the batch */
	int ins_cap, nins;
	zp_kv_src *pfx;			/* host [SEQS_MAX] */
	int *att_start;			/* host [SEQS_MAX + 1]: one attention call's starts */
	float *stage;			/* [batch_tokens_max, 2 kvd]: prefixes for attention */
	int lost_n;			/* blocks this run could not insert */
	zp_blk_key lost[ZP_KV_EVICT_REPORT];
	int rep_n;			/* evicted or lost, this run */
	zp_blk_key rep[ZP_KV_EVICT_REPORT];
};

static void *balloc(zp_fwd *f, size_t bytes)
{
	return f->op->alloc(f->be, bytes);
}

/* the bf16 copy of an activation: only where the weights are bf16 */
static void *balloc16(zp_fwd *f, size_t elems)
{
	return f->bf16 ? balloc(f, elems * 2) : NULL;
}

static zp_view V(void *data, size_t ld)
{
	return (zp_view){ data, ld };
}

/* Positions restart in every sequence, so one table of batch_tokens_max positions
   serves every batch. As transformers: inv_freq in f32, angle = inv_freq * pos
   in f32. */
static void rope_tables(zp_fwd *f)
{
	const zp_config *c = f->c;
	int h2 = c->head_dim / 2;
	size_t bytes = (size_t)f->batch_tokens_max * h2 * sizeof(float);
	float *cs = zp_xmalloc(bytes), *sn = zp_xmalloc(bytes);
	for (int i = 0; i < h2; i++) {
		float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
		for (int p = 0; p < f->batch_tokens_max; p++) {
			float a = inv * (float)p;
			cs[(size_t)p * h2 + i] = cosf(a);
			sn[(size_t)p * h2 + i] = sinf(a);
		}
	}
	f->rope_cos = balloc(f, bytes);
	f->rope_sin = balloc(f, bytes);
	f->op->upload(f->be, f->rope_cos, cs, bytes);
	f->op->upload(f->be, f->rope_sin, sn, bytes);
	free(cs);
	free(sn);
}

zp_fwd *zp_fwd_new(const zp_model *m, const zp_fwd_opts *o, zp_err *e)
{
	zp_device_opts d = { .ordinal = o->ordinal, .threads = o->threads, .cfg = &m->cfg,
			     .batch_tokens_max = o->batch_tokens_max };
	zp_backend *be = zp_device_backend_new(o->device, &d, e);
	if (!be)
		return NULL;
	const zp_model *mb = be->ops->model(be, m, !o->experts_elsewhere, e);
	if (!mb) {
		be->ops->free(be);
		return NULL;
	}
	zp_fwd *f = zp_fwd_new_on(mb, be, o->batch_tokens_max);
	if (f->op->sync(f->be, e)) { /* the device failed taking the weights */
		zp_fwd_free(f);
		return NULL;
	}
	return f;
}

zp_fwd *zp_fwd_new_cpu(const zp_model *m, int threads, int batch_tokens_max)
{
	zp_err e;
	zp_fwd *f = zp_fwd_new(m, &(zp_fwd_opts){ .device = ZP_DEV_CPU, .threads = threads,
						   .batch_tokens_max = batch_tokens_max }, &e);
	ZP_ASSERT(f); /* host memory, no device to find */
	return f;
}

zp_fwd *zp_fwd_new_on(const zp_model *m, zp_backend *be, int batch_tokens_max)
{
	zp_fwd *f = zp_xcalloc(1, sizeof *f);
	const zp_config *c = &m->cfg;
	size_t T = (size_t)batch_tokens_max, K = (size_t)ZP_MAX(c->topk, 1);
	size_t E = (size_t)ZP_MAX(c->experts, 1), H = (size_t)c->hidden;

	ZP_ASSERT(batch_tokens_max >= 1);
	f->m = m;
	f->c = c;
	f->be = be;
	f->op = f->be->ops;
	f->bf16 = m->wtype == ZP_W_BF16;
	f->batch_tokens_max = batch_tokens_max;
	f->hp = ZP_ALIGN_UP(c->hidden, 2);
	f->qkv = (c->heads + 2 * c->kv_heads) * c->head_dim;
	f->qdp = ZP_ALIGN_UP(c->heads * c->head_dim, 2);
	f->fp = ZP_ALIGN_UP(c->ffn, 16);
	f->mfp = ZP_ALIGN_UP(ZP_MAX(c->moe_ffn, 1), 16);
	f->seq_start = zp_xcalloc(T + 1, sizeof(int));
	f->tok_pos = zp_xcalloc(T, sizeof(int));
	f->tok_id = zp_xcalloc(T, sizeof(int32_t));
	f->x = balloc(f, T * H * 4);
	f->xn = balloc(f, T * f->hp * 4);
	f->xn16 = balloc16(f, T * f->hp);
	f->qkvb = balloc(f, T * f->qkv * 4);
	f->att = balloc(f, T * f->qdp * 4);
	f->att16 = balloc16(f, T * f->qdp);
	f->tmp = balloc(f, T * H * 4);
	f->act = balloc(f, T * f->fp * 4);
	f->act16 = balloc16(f, T * f->fp);
	f->attn = f->op->attn_work_new(f->be, c->heads, c->kv_heads, c->head_dim, batch_tokens_max,
				       ZP_FWD_SEQS_MAX, f->bf16);
	if (c->moe) {
		f->logits = balloc(f, T * E * 4);
		f->sel = balloc(f, T * K * sizeof(int));
		f->selw = balloc(f, T * K * sizeof(float));
		f->slot_row = balloc(f, T * K * sizeof(int));
		f->route_gap = balloc(f, T * c->layers * sizeof(float));
		f->gap_h = zp_xcalloc(T * c->layers, sizeof(float));
		f->offs = balloc(f, (E + 1) * sizeof(int));
		f->offs_h = zp_xcalloc(E + 1, sizeof(int));
		f->xg = balloc(f, T * K * f->hp * 4);
		f->xg16 = balloc16(f, T * K * f->hp);
		f->actg = balloc(f, T * K * f->mfp * 4);
		f->actg16 = balloc16(f, T * K * f->mfp);
		f->yg = balloc(f, T * K * H * 4);
	}
	f->lm_rows = (int)ZP_MIN(LM_ROWS_MAX, ZP_MAX(LM_ROWS_MIN, LM_SCRATCH_BYTES /
							    ((size_t)c->vocab * sizeof(float))));
	f->lm_pos = zp_xcalloc((size_t)f->lm_rows, sizeof(int));
	f->lm_req = zp_xcalloc((size_t)f->lm_rows, sizeof(int));
	f->lm_out_rows = zp_xcalloc((size_t)f->lm_rows, sizeof(zp_lp_row));
	f->lm_in = balloc(f, (size_t)f->lm_rows * f->hp * 4);
	f->lm_in16 = balloc16(f, (size_t)f->lm_rows * f->hp);
	f->lm_out = balloc(f, (size_t)f->lm_rows * c->vocab * 4);
	/* pooling works in lm_out: [H] doubles and [H] floats */
	ZP_ASSERT((size_t)f->lm_rows * c->vocab * sizeof(float) >= H * 12);
	rope_tables(f);
	return f;
}

void zp_fwd_free(zp_fwd *f)
{
	if (!f)
		return;
	if (f->grp)
		zp_dpep_leave(f->grp, f->member);
	if (f->src) /* its memory is the backend's: before the backend goes */
		f->src->detach(f->src->ctx);
	void *bufs[] = { f->x, f->xn, f->xn16, f->qkvb, f->att, f->att16, f->tmp, f->act,
			 f->act16, f->rope_cos, f->rope_sin, f->logits, f->sel, f->selw,
			 f->slot_row, f->route_gap, f->offs, f->xg, f->xg16, f->actg, f->actg16,
			 f->yg, f->lm_in, f->lm_in16, f->lm_out };
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		if (bufs[i])
			f->op->mfree(f->be, bufs[i]);
	f->op->attn_work_free(f->be, f->attn);
	free(f->seq_start);
	free(f->tok_pos);
	free(f->tok_id);
	free(f->gap_h);
	free(f->offs_h);
	free(f->lm_pos);
	free(f->lm_req);
	free(f->lm_out_rows);
	if (f->stage)
		f->op->mfree(f->be, f->stage);
	zp_kv_free(f->kv);
	void *host[] = { f->pre, f->hit, f->hit_last, f->sharer, f->ins0, f->ins, f->ins_fresh,
			 f->ins_row, f->pfx, f->att_start };
	for (size_t i = 0; i < sizeof host / sizeof *host; i++)
		free(host[i]);
	f->op->free(f->be);
	free(f);
}

int zp_fwd_status(zp_fwd *f, zp_err *e)
{
	return f->op->status(f->be, e);
}

zp_fwd_stats zp_fwd_last_stats(const zp_fwd *f)
{
	return f->stats;
}

void zp_fwd_set_beat(zp_fwd *f, _Atomic uint64_t *beat)
{
	f->beat = beat;
}

int zp_fwd_set_experts(zp_fwd *f, const zp_expert_src *src, zp_err *e)
{
	ZP_ASSERT(!f->src);
	if (src && src->attach(src->ctx, f->be, e))
		return -1;
	f->src = src;
	return 0;
}

void zp_fwd_set_dpep(zp_fwd *f, zp_dpep *g, int member)
{
	ZP_ASSERT(!f->grp);
	zp_dpep_join(g, member, f->be, f->c, f->bf16, f->batch_tokens_max);
	f->grp = g;
	f->member = member;
}

/* ---- prefix reuse --------------------------------------------------------------- */

void zp_fwd_set_prefix(zp_fwd *f, size_t kv_cache_bytes, bool siblings)
{
	const zp_config *c = f->c;
	size_t S = ZP_FWD_SEQS_MAX;
	ZP_ASSERT(!f->pre);
	f->kvd = c->kv_heads * c->head_dim;
	f->kv = zp_kv_new(f->be, c->layers, f->kvd, kv_cache_bytes);
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
	f->stage = balloc(f, (size_t)f->batch_tokens_max * 2 * f->kvd * sizeof(float));
	if (kv_cache_bytes)
		zp_log(ZP_LOG_INFO, "msg=\"prefix cache\" blocks=%d block_bytes=%zu siblings=%d",
		       f->kv ? zp_kv_blocks_max(f->kv) : 0, zp_kv_block_bytes(c->layers, f->kvd),
		       siblings);
}

zp_kv *zp_fwd_kv(zp_fwd *f)
{
	return f->kv;
}

static int pre_of(const zp_fwd *f, int s)
{
	return f->pre ? f->pre[s] : 0;
}

/* Leading blocks of r that may come from elsewhere: those before the first
   position whose hidden state r's outputs read. */
static int reuse_blocks_max(const zp_req *r)
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
	int lim = reuse_blocks_max(r), h = 0, m, t = -1;
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

static void plan(zp_fwd *f, zp_req **reqs, int nreq)
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

/* Layer l's keys and values of the blocks this run inserts, from their rows. */
static void kv_write(zp_fwd *f, int l)
{
	size_t w = 2 * (size_t)f->kvd, qd = (size_t)f->c->heads * f->c->head_dim;
	for (int i = 0; i < f->nins; i++) {
		if (!f->ins_fresh[i])
			continue;
		float *dst = zp_kv_rows(f->kv, f->ins[i].slot, l);
		for (int r = 0; r < ZP_KV_BLOCK; r++) /* k then v: adjacent in a qkv row */
			f->op->copy(f->be, dst + r * w,
				    f->qkvb + (size_t)(f->ins_row[i] + r) * f->qkv + qd,
				    w * sizeof(float));
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
	for (int p = h * ZP_KV_BLOCK; p < pre; p++) {
		int row = f->seq_start[t] + p - f->pre[t];
		f->op->copy(f->be, dst + (size_t)p * w, f->qkvb + (size_t)row * f->qkv + qd,
			    w * sizeof(float));
	}
	*off += pre;
	return (zp_kv_src){ dst, dst + f->kvd, w, pre };
}

/* Attention with prefixes: runs of sequences whose rows, prefixes included,
   fit the workspace (batch_tokens_max rows), each in one call with its own
   staged prefixes. A sequence's result does not depend on its company. */
static int attention_prefixed(zp_fwd *f, const zp_attn_args *a, int l, zp_err *e)
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
static void kv_release(zp_fwd *f, bool ok)
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
		hit_tokens[s] = pre_of(f, s);
	int n = ZP_MIN(ZP_MIN(f->rep_n, cap), ZP_KV_EVICT_REPORT);
	memcpy(evicted, f->rep, (size_t)n * sizeof *evicted);
	*overflow = f->rep_n > n;
	return n;
}

/* ---- blocks --------------------------------------------------------------------- */

/* C = A . W^T over T rows, A the f32 or the bf16 copy as W wants */
static void gemm(zp_fwd *f, const zp_wmat *w, const float *a32, const uint16_t *a16, size_t lda,
		 int m, float *c, size_t ldc, enum zp_epi epi, int ncols)
{
	zp_gemm_op op = { .a = w->type == ZP_W_F32 ? (const void *)a32 : (const void *)a16,
			  .lda = lda, .m = m, .w = w, .c = c, .ldc = ldc, .epi = epi,
			  .ncols = ncols };
	f->op->gemm(f->be, &op);
}

static void norm(zp_fwd *f, const float *w)
{
	f->op->rmsnorm(f->be, f->ntok, f->c->hidden, V(f->x, (size_t)f->c->hidden), NULL, w,
		       f->c->rms_eps, V(f->xn, (size_t)f->hp), V(f->xn16, (size_t)f->hp));
}

static int attention_block(zp_fwd *f, const zp_layer *L, zp_err *e)
{
	const zp_config *c = f->c;
	int T = f->ntok, H = c->hidden;
	norm(f, L->attn_norm);
	gemm(f, &L->wqkv, f->xn, f->xn16, (size_t)f->hp, T, f->qkvb, (size_t)f->qkv,
	     ZP_EPI_STORE, 0);
	if (L->bqkv)
		f->op->add_bias(f->be, T, f->qkv, V(f->qkvb, (size_t)f->qkv), L->bqkv);
	f->op->qk_norm_rope(f->be, T, V(f->qkvb, (size_t)f->qkv), c->heads, c->kv_heads,
			    c->head_dim, L->q_norm, L->k_norm, c->rms_eps, f->tok_pos, f->rope_cos,
			    f->rope_sin);
	if (f->kv)
		kv_write(f, (int)(L - f->m->layers));
	zp_attn_args a = { .heads = c->heads, .kv_heads = c->kv_heads, .d = c->head_dim,
			   .nseq = f->nseq, .seq_start = f->seq_start,
			   .qkv = V(f->qkvb, (size_t)f->qkv), .out = V(f->att, (size_t)f->qdp),
			   .bf16 = f->bf16, .work = f->attn };
	if (f->any_pre ? attention_prefixed(f, &a, (int)(L - f->m->layers), e)
		       : f->op->attention(f->be, &a, e))
		return -1;
	if (f->bf16)
		f->op->to_bf16(f->be, T, c->heads * c->head_dim, V(f->att, (size_t)f->qdp),
			       V(f->att16, (size_t)f->qdp));
	gemm(f, &L->wo, f->att, f->att16, (size_t)f->qdp, T, f->tmp, (size_t)H, ZP_EPI_STORE, 0);
	f->op->residual(f->be, T, H, V(f->x, (size_t)H), V(f->tmp, (size_t)H), L->bo);
	return 0;
}

static void dense_mlp(zp_fwd *f, const zp_layer *L)
{
	int T = f->ntok, H = f->c->hidden, F = f->c->ffn;
	gemm(f, &L->w_gate_up, f->xn, f->xn16, (size_t)f->hp, T, f->act, (size_t)f->fp,
	     ZP_EPI_SWIGLU, F);
	if (f->bf16)
		f->op->to_bf16(f->be, T, F, V(f->act, (size_t)f->fp), V(f->act16, (size_t)f->fp));
	gemm(f, &L->w_down, f->act, f->act16, (size_t)f->fp, T, f->tmp, (size_t)H, ZP_EPI_STORE, 0);
	f->op->residual(f->be, T, H, V(f->x, (size_t)H), V(f->tmp, (size_t)H), NULL);
}

/* The routed rows through the experts gu/dn: gate_up with SwiGLU, down. */
static void experts(zp_fwd *f, const zp_wmat *gu, const zp_wmat *dn)
{
	int E = f->c->experts, F = f->c->moe_ffn, TK = f->ntok * f->c->topk;
	zp_view a = f->bf16 ? V(f->xg16, (size_t)f->hp) : V(f->xg, (size_t)f->hp);
	zp_view act = V(f->actg, (size_t)f->mfp), act16 = V(f->actg16, (size_t)f->mfp);
	f->op->expert_gemm(f->be, gu, 0, E, f->offs_h, a, act, ZP_EPI_SWIGLU, F);
	if (f->bf16)
		f->op->to_bf16(f->be, TK, F, act, act16);
	f->op->expert_gemm(f->be, dn, 0, E, f->offs_h, f->bf16 ? act16 : act,
			   V(f->yg, (size_t)f->c->hidden), ZP_EPI_STORE, 0);
}

static int moe_block(zp_fwd *f, const zp_layer *L, int l, zp_err *e)
{
	const zp_config *c = f->c;
	int T = f->ntok, E = c->experts, K = c->topk, H = c->hidden;
	const zp_wmat *gu = L->exp_gate_up, *dn = L->exp_down;

	if (T) {
		gemm(f, &L->router, f->xn, NULL, (size_t)f->hp, T, f->logits, (size_t)E,
		     ZP_EPI_STORE, 0);
		f->op->route(f->be, T, E, K, c->norm_topk_prob, V(f->logits, (size_t)E), f->sel,
			     f->selw, f->route_gap + (size_t)l * T);
	}
	f->op->dispatch(f->be, T, K, E, f->sel, f->offs, f->slot_row);
	/* The one host round trip a MoE layer still makes: the expert GEMMs
	   (per-expert cuBLASLt on cuda, the dpep exchange) take their row counts
	   as host-side shapes. Moving it off the host needs device-side shapes
	   (a grouped GEMM reading offsets from device memory). */
	f->op->download(f->be, f->offs_h, f->offs, (size_t)(E + 1) * sizeof(int));
	f->op->gather(f->be, T, K, f->slot_row, f->bf16 ? (const void *)f->xn16 : f->xn,
		      f->bf16 ? (void *)f->xg16 : f->xg, (size_t)f->hp * (f->bf16 ? 2 : 4));
	if (f->grp) {
		zp_dpep_rows rows = { f->bf16 ? (const void *)f->xg16 : f->xg, f->offs_h, f->yg };
		f->stats.sync_s += zp_dpep_layer(f->grp, f->member, &rows, L);
	} else {
		/* the experts are needed from here on: as late as possible */
		if (f->src && f->src->acquire(f->src->ctx, l, f->be, &gu, &dn, e))
			return -1;
		experts(f, gu, dn);
		if (f->src)
			f->src->release(f->src->ctx, l);
	}
	f->op->combine(f->be, T, K, H, f->slot_row, f->selw, V(f->yg, (size_t)H),
		       V(f->tmp, (size_t)H));
	f->op->residual(f->be, T, H, V(f->x, (size_t)H), V(f->tmp, (size_t)H), NULL);
	return 0;
}

/* ---- outputs ------------------------------------------------------------------- */

/* lm_head over the block's n rows, then each row's log-probs */
static void lm_block(zp_fwd *f, zp_req **reqs, int n)
{
	const zp_config *c = f->c;
	for (int i = 0; i < n; i++) {
		zp_req *r = reqs[f->lm_req[i]];
		int p = f->tok_pos[f->lm_pos[i]];
		zp_lp_row *o = &f->lm_out_rows[i];
		*o = (zp_lp_row){ 0 };
		if (p + 1 < r->ntok) { /* predicts token p + 1 */
			if (r->plp_start >= 0 && p + 1 >= r->plp_start) {
				size_t at = (size_t)(p + 1 - r->plp_start);
				o->plp = &r->plp[at];
				o->next = r->tokens[p + 1];
				o->rank = r->plp_rank ? &r->plp_rank[at] : NULL;
				o->top_k = r->plp_top_k;
				o->top_ids = r->plp_top_k ? r->plp_top_ids + at * (size_t)r->plp_top_k : NULL;
				o->top_lp = r->plp_top_k ? r->plp_top_lp + at * (size_t)r->plp_top_k : NULL;
			}
			continue;
		}
		*o = (zp_lp_row){ .ncand = r->ncand, .cands = r->cands, .cand_lp = r->cand_lp,
				  .top_k = r->top_k, .top_ids = r->top_ids, .top_lp = r->top_lp };
	}
	f->op->rmsnorm(f->be, n, c->hidden, V(f->x, (size_t)c->hidden), f->lm_pos, f->m->final_norm,
		       c->rms_eps, V(f->lm_in, (size_t)f->hp), V(f->lm_in16, (size_t)f->hp));
	gemm(f, &f->m->lm_head, f->lm_in, f->lm_in16, (size_t)f->hp, n, f->lm_out,
	     (size_t)c->vocab, ZP_EPI_STORE, 0);
	f->op->logprobs(f->be, n, c->vocab, V(f->lm_out, (size_t)c->vocab), f->lm_out_rows);
}

static bool row_needed(const zp_req *r, int p)
{
	if (p == r->ntok - 1)
		return r->want_cands || r->top_k > 0;
	return r->plp_start >= 0 && p + 1 >= r->plp_start;
}

static void outputs(zp_fwd *f, zp_req **reqs, int nreq)
{
	int n = 0, H = f->c->hidden;
	for (int s = 0; s < nreq; s++) {
		int pre = pre_of(f, s);
		for (int p = 0; p < reqs[s]->ntok; p++) {
			if (!row_needed(reqs[s], p))
				continue;
			ZP_ASSERT(p >= pre); /* reuse stops before the rows outputs read */
			f->lm_req[n] = s;
			f->lm_pos[n++] = f->seq_start[s] + p - pre;
			if (n == f->lm_rows) {
				lm_block(f, reqs, n);
				n = 0;
			}
		}
	}
	if (n)
		lm_block(f, reqs, n);
	for (int s = 0; s < nreq; s++) {
		zp_req *r = reqs[s];
		if (r->pool == ZP_POOLING_NONE)
			continue;
		ZP_ASSERT(r->pool == ZP_POOLING_LAST || !pre_of(f, s));
		f->op->pool(f->be, r->ntok - pre_of(f, s), H,
			    V(f->x + (size_t)f->seq_start[s] * H, (size_t)H),
			    f->m->final_norm, f->c->rms_eps,
			    r->pool, r->normalize,
			    r->emb, f->lm_out);
	}
}

/* ---- the pass ------------------------------------------------------------------- */

/* stats.min_route_gap over every MoE layer's rows: the gaps stayed on the
   backend through the layers; one download here */
static void route_gap_min(zp_fwd *f)
{
	size_t T = (size_t)f->ntok;
	if (!f->c->moe || !T)
		return;
	f->op->download(f->be, f->gap_h, f->route_gap, T * f->c->layers * sizeof(float));
	for (int l = 0; l < f->c->layers; l++)
		for (size_t t = 0; f->m->layers[l].sparse && t < T; t++)
			f->stats.min_route_gap = fminf(f->stats.min_route_gap, f->gap_h[l * T + t]);
}

static double run_flops(const zp_fwd *f)
{
	const zp_config *c = f->c;
	double fl = 0, pairs = 0;
	for (int s = 0; s < f->nseq; s++) {
		double n = f->seq_start[s + 1] - f->seq_start[s];
		pairs += n * (n + 1) / 2 + n * pre_of(f, s);
	}
	for (int l = 0; l < c->layers; l++)
		fl += f->ntok * zp_config_layer_flops(c, l) + 4.0 * c->heads * c->head_dim * pairs;
	return fl;
}

/* The layers; -1 when the expert source failed or the device did (its
   status after each layer: ops after a fault do nothing, so the rest of the
   batch is not worth queueing). A dpep member runs on to the end whatever
   its device says: the group's barriers wait for every member at every MoE
   layer; its sync at the end fails its batch. */
/* f's forwards run with its group's (dpep, or asyncep in lockstep) */
static bool in_group(const zp_fwd *f)
{
	return f->grp || (f->src && f->src->lockstep);
}

/* A group member that failed at layer l0 (its MoE step there done when
   moe_done) still takes its group steps in every later MoE layer, so its
   peers' barriers and collective rounds fill; it computes nothing more
   (its rows are empty) and fails at the end. */
static void walk_rest(zp_fwd *f, int l0, bool moe_done)
{
	int E = f->c->experts;
	for (int l = l0; l < f->c->layers; l++) {
		const zp_layer *L = &f->m->layers[l];
		const zp_wmat *gu, *dn;
		zp_err ignored;
		if (l > l0 && f->src)
			f->src->layer_begin(f->src->ctx, l);
		if (!L->sparse || (l == l0 && moe_done))
			continue;
		if (f->grp) {
			memset(f->offs_h, 0, (size_t)(E + 1) * sizeof *f->offs_h);
			zp_dpep_rows rows = { f->bf16 ? (const void *)f->xg16 : f->xg, f->offs_h, f->yg };
			zp_dpep_layer(f->grp, f->member, &rows, L);
		} else if (!f->src->acquire(f->src->ctx, l, f->be, &gu, &dn, &ignored)) {
			f->src->release(f->src->ctx, l);
		}
	}
}

/* The layers; -1 when the expert source or the device failed (a group
   member first walks the rest: walk_rest). */
static int layers(zp_fwd *f, double *ta, double *tm, zp_err *e)
{
	const zp_config *c = f->c;
	for (int l = 0; l < c->layers; l++) {
		const zp_layer *L = &f->m->layers[l];
		if (f->src)
			f->src->layer_begin(f->src->ctx, l);
		double a = zp_now_s();
		/* a dpep member without tokens still serves its experts */
		if (f->ntok && attention_block(f, L, e)) {
			if (in_group(f))
				walk_rest(f, l, false);
			return -1;
		}
		double b = zp_now_s();
		norm(f, L->ffn_norm);
		if (!L->sparse) {
			if (f->ntok)
				dense_mlp(f, L);
		} else if (moe_block(f, L, l, e)) {
			if (in_group(f))
				walk_rest(f, l, true);
			return -1;
		}
		*ta += b - a;
		*tm += zp_now_s() - b;
		if (f->beat)
			atomic_fetch_add_explicit(f->beat, 1, memory_order_relaxed);
		/* dpep members' faults are the group's round (dpep.c) */
		if (!f->grp && f->op->status(f->be, e)) {
			if (in_group(f))
				walk_rest(f, l + 1, false);
			return -1;
		}
	}
	return 0;
}

int zp_fwd_run(zp_fwd *f, zp_req **reqs, int nreq, zp_err *e)
{
	const zp_config *c = f->c;
	int T = 0, rc;
	double ta = 0, tm = 0;

	f->stats.prompt_tokens = f->stats.cache_hit_tokens = f->stats.sibling_tokens = 0;
	f->stats.kv_evictions = 0;
	for (int s = 0; s < nreq; s++)
		ZP_ASSERT(reqs[s]->ntok >= 1 && reqs[s]->ntok <= f->batch_tokens_max &&
			  s < ZP_FWD_SEQS_MAX);
	if (f->pre)
		plan(f, reqs, nreq);
	for (int s = 0; s < nreq; s++) {
		int pre = pre_of(f, s);
		f->seq_start[s] = T;
		for (int i = f->pre ? f->ins0[s] : 0; f->pre && i < f->ins0[s + 1]; i++)
			f->ins_row[i] += T - pre;
		for (int p = pre; p < reqs[s]->ntok; p++, T++) {
			ZP_ASSERT(T < f->batch_tokens_max);
			ZP_ASSERT(reqs[s]->tokens[p] >= 0 && reqs[s]->tokens[p] < c->vocab);
			f->tok_pos[T] = p;
			f->tok_id[T] = reqs[s]->tokens[p];
		}
		f->stats.prompt_tokens += reqs[s]->ntok;
		if (f->pre) {
			f->stats.cache_hit_tokens += f->hit[s] * ZP_KV_BLOCK;
			f->stats.sibling_tokens += pre - f->hit[s] * ZP_KV_BLOCK;
		}
	}
	f->seq_start[nreq] = T;
	f->ntok = T;
	f->nseq = nreq;
	f->stats.computed_tokens = T;
	f->stats.sync_s = 0;
	if (!T && !f->grp && !(f->src && f->src->lockstep))
		return 0;
	f->stats.min_route_gap = INFINITY;
	if (f->grp)
		zp_dpep_begin(f->grp, f->member);
	f->op->embed(f->be, f->m, f->tok_id, T, V(f->x, (size_t)c->hidden));
	rc = layers(f, &ta, &tm, e);
	if (!rc && f->grp && zp_dpep_round_failed(f->grp, f->member))
		rc = zp_errf(e, "dpep: a member's device faulted in this forward: the experts it "
			     "holds gave no outputs");
	if (f->src)
		f->src->end(f->src->ctx);
	double to = zp_now_s();
	if (!rc && T) {
		outputs(f, reqs, nreq);
		route_gap_min(f);
	}
	/* the device's word on all of it before the results (and the blocks the
	   cache would keep) count: a fault anywhere fails the batch */
	if (!rc && f->op->sync(f->be, e))
		rc = -1;
	if (f->kv)
		kv_release(f, rc == 0);
	if (rc)
		return -1;
	if (!T)
		return 0;
	f->stats.attn_s = ta;
	f->stats.mlp_s = tm;
	f->stats.out_s = zp_now_s() - to;
	f->stats.flops = run_flops(f);
	return 0;
}
