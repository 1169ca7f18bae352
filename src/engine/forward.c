/* forward.c -- see forward.h. The Qwen3-MoE schedule only: batch layout,
   layers (attention block, dense MLP or MoE: route, dispatch, acquire experts,
   grouped expert GEMM with SwiGLU, combine), outputs. Every computation is a
   backend op on explicit buffers (backend.h), each reducing a row in a fixed
   order, so a sequence's results do not depend on what else is in its batch.
   Prefix reuse (its planning and staging in prefix_plan.c) leans on that: a
   sequence's keys and values at a position are the same bits whichever
   forward computed them, so it may skip leading blocks another sequence
   (the cache's, or a sibling's in the batch) computed. */
#include "forward_impl.h"

#include <math.h>
#include <string.h>

#define LM_SCRATCH_BYTES (64u << 20) /* logits of one lm_head block */
#define LM_ROWS_MIN 32
#define LM_ROWS_MAX 256


void *zp_fwd_balloc(zp_fwd *f, size_t bytes)
{
	return f->op->alloc(f->be, bytes);
}

/* the bf16 copy of an activation: only where the weights are bf16 */
static void *balloc16(zp_fwd *f, size_t elems)
{
	return f->bf16 ? zp_fwd_balloc(f, elems * 2) : NULL;
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
	f->rope_cos = zp_fwd_balloc(f, bytes);
	f->rope_sin = zp_fwd_balloc(f, bytes);
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
	f->x = zp_fwd_balloc(f, T * H * 4);
	f->xn = zp_fwd_balloc(f, T * f->hp * 4);
	f->xn16 = balloc16(f, T * f->hp);
	f->qkvb = zp_fwd_balloc(f, T * f->qkv * 4);
	f->att = zp_fwd_balloc(f, T * f->qdp * 4);
	f->att16 = balloc16(f, T * f->qdp);
	f->tmp = zp_fwd_balloc(f, T * H * 4);
	f->act = zp_fwd_balloc(f, T * f->fp * 4);
	f->act16 = balloc16(f, T * f->fp);
	f->attn = f->op->attn_work_new(f->be, c->heads, c->kv_heads, c->head_dim, batch_tokens_max,
				       ZP_FWD_SEQS_MAX, f->bf16);
	if (c->moe) {
		f->logits = zp_fwd_balloc(f, T * E * 4);
		f->sel = zp_fwd_balloc(f, T * K * sizeof(int));
		f->selw = zp_fwd_balloc(f, T * K * sizeof(float));
		f->slot_row = zp_fwd_balloc(f, T * K * sizeof(int));
		f->route_gap = zp_fwd_balloc(f, T * c->layers * sizeof(float));
		f->gap_h = zp_xcalloc(T * c->layers, sizeof(float));
		f->offs = zp_fwd_balloc(f, (E + 1) * sizeof(int));
		f->offs_h = zp_xcalloc(E + 1, sizeof(int));
		f->xg = zp_fwd_balloc(f, T * K * f->hp * 4);
		f->xg16 = balloc16(f, T * K * f->hp);
		f->actg = zp_fwd_balloc(f, T * K * f->mfp * 4);
		f->actg16 = balloc16(f, T * K * f->mfp);
		f->yg = zp_fwd_balloc(f, T * K * H * 4);
	}
	f->lm_rows = (int)ZP_MIN(LM_ROWS_MAX, ZP_MAX(LM_ROWS_MIN, LM_SCRATCH_BYTES /
							    ((size_t)c->vocab * sizeof(float))));
	f->lm_pos = zp_xcalloc((size_t)f->lm_rows, sizeof(int));
	f->lm_req = zp_xcalloc((size_t)f->lm_rows, sizeof(int));
	f->lm_out_rows = zp_xcalloc((size_t)f->lm_rows, sizeof(zp_lp_row));
	f->lm_in = zp_fwd_balloc(f, (size_t)f->lm_rows * f->hp * 4);
	f->lm_in16 = balloc16(f, (size_t)f->lm_rows * f->hp);
	f->lm_out = zp_fwd_balloc(f, (size_t)f->lm_rows * c->vocab * 4);
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

const char *zp_fwd_op_name(int op)
{
	static const char *const name[ZP_FOP_N] = {
		"embed", "norm", "qkv", "rope", "attn", "o", "dense", "router", "dispatch",
		"acquire", "experts", "combine", "out"
	};
	ZP_ASSERT(op >= 0 && op < ZP_FOP_N);
	return name[op];
}

void zp_fwd_set_profile(zp_fwd *f, double *op_s)
{
	f->prof = op_s;
}

/* Profiling (f->prof): the ops queued before are done when the clock starts,
   the timed ones when it stops. A fault shows at the run's own sync. */
static double prof_begin(zp_fwd *f)
{
	if (!f->prof)
		return 0;
	f->op->sync(f->be, NULL);
	return zp_now_s();
}

static void prof_end(zp_fwd *f, enum zp_fwd_op op, double t0)
{
	if (!f->prof)
		return;
	f->op->sync(f->be, NULL);
	f->prof[op] += zp_now_s() - t0;
}

#define PROF(f, op, ...)                           \
	do {                                       \
		double prof_t0_ = prof_begin(f);   \
		__VA_ARGS__;                       \
		prof_end(f, op, prof_t0_);         \
	} while (0)

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
	int T = f->ntok, H = c->hidden, rc;
	PROF(f, ZP_FOP_NORM, norm(f, L->attn_norm));
	PROF(f, ZP_FOP_QKV, {
		gemm(f, &L->wqkv, f->xn, f->xn16, (size_t)f->hp, T, f->qkvb, (size_t)f->qkv,
		     ZP_EPI_STORE, 0);
		if (L->bqkv)
			f->op->add_bias(f->be, T, f->qkv, V(f->qkvb, (size_t)f->qkv), L->bqkv);
	});
	PROF(f, ZP_FOP_ROPE, {
		f->op->qk_norm_rope(f->be, T, V(f->qkvb, (size_t)f->qkv), c->heads, c->kv_heads,
				    c->head_dim, L->q_norm, L->k_norm, c->rms_eps, f->tok_pos,
				    f->rope_cos, f->rope_sin);
		if (f->kv)
			zp_fwd_kv_write(f, (int)(L - f->m->layers));
	});
	zp_attn_args a = { .heads = c->heads, .kv_heads = c->kv_heads, .d = c->head_dim,
			   .nseq = f->nseq, .seq_start = f->seq_start,
			   .qkv = V(f->qkvb, (size_t)f->qkv), .out = V(f->att, (size_t)f->qdp),
			   .bf16 = f->bf16, .work = f->attn };
	PROF(f, ZP_FOP_ATTN,
	     rc = f->any_pre ? zp_fwd_attention_prefixed(f, &a, (int)(L - f->m->layers), e)
			     : f->op->attention(f->be, &a, e));
	if (rc)
		return -1;
	PROF(f, ZP_FOP_COMBINE, if (f->bf16) f->op->to_bf16(f->be, T, c->heads * c->head_dim,
							     V(f->att, (size_t)f->qdp),
							     V(f->att16, (size_t)f->qdp)));
	PROF(f, ZP_FOP_O, gemm(f, &L->wo, f->att, f->att16, (size_t)f->qdp, T, f->tmp, (size_t)H,
			       ZP_EPI_STORE, 0));
	PROF(f, ZP_FOP_COMBINE,
	     f->op->residual(f->be, T, H, V(f->x, (size_t)H), V(f->tmp, (size_t)H), L->bo));
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
	int rc = 0;

	double t0 = prof_begin(f);
	if (T) {
		gemm(f, &L->router, f->xn, NULL, (size_t)f->hp, T, f->logits, (size_t)E,
		     ZP_EPI_STORE, 0);
		f->op->route(f->be, T, E, K, c->norm_topk_prob, V(f->logits, (size_t)E), f->sel,
			     f->selw, f->route_gap + (size_t)l * T);
	}
	prof_end(f, ZP_FOP_ROUTER, t0);
	t0 = prof_begin(f);
	f->op->dispatch(f->be, T, K, E, f->sel, f->offs, f->slot_row);
	/* The one host round trip a MoE layer still makes: the expert GEMMs
	   (per-expert cuBLASLt on cuda, the dpep exchange) take their row counts
	   as host-side shapes. Moving it off the host needs device-side shapes
	   (a grouped GEMM reading offsets from device memory). */
	f->op->download(f->be, f->offs_h, f->offs, (size_t)(E + 1) * sizeof(int));
	f->op->gather(f->be, T, K, f->slot_row, f->bf16 ? (const void *)f->xn16 : f->xn,
		      f->bf16 ? (void *)f->xg16 : f->xg, (size_t)f->hp * (f->bf16 ? 2 : 4));
	prof_end(f, ZP_FOP_DISPATCH, t0);
	if (f->grp) {
		zp_dpep_rows rows = { f->bf16 ? (const void *)f->xg16 : f->xg, f->offs_h, f->yg };
		PROF(f, ZP_FOP_EXPERTS, f->stats.sync_s += zp_dpep_layer(f->grp, f->member, &rows, L));
	} else {
		/* the experts are needed from here on: as late as possible */
		PROF(f, ZP_FOP_ACQUIRE,
		     rc = f->src ? f->src->acquire(f->src->ctx, l, f->be, &gu, &dn, e) : 0);
		if (rc)
			return -1;
		PROF(f, ZP_FOP_EXPERTS, experts(f, gu, dn));
		if (f->src)
			f->src->release(f->src->ctx, l);
	}
	PROF(f, ZP_FOP_COMBINE, {
		f->op->combine(f->be, T, K, H, f->slot_row, f->selw, V(f->yg, (size_t)H),
			       V(f->tmp, (size_t)H));
		f->op->residual(f->be, T, H, V(f->x, (size_t)H), V(f->tmp, (size_t)H), NULL);
	});
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
		int pre = zp_fwd_pre_of(f, s);
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
		ZP_ASSERT(r->pool == ZP_POOLING_LAST || !zp_fwd_pre_of(f, s));
		f->op->pool(f->be, r->ntok - zp_fwd_pre_of(f, s), H,
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
		pairs += n * (n + 1) / 2 + n * zp_fwd_pre_of(f, s);
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
		PROF(f, ZP_FOP_NORM, norm(f, L->ffn_norm));
		if (!L->sparse) {
			if (f->ntok)
				PROF(f, ZP_FOP_DENSE, dense_mlp(f, L));
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
		zp_fwd_plan(f, reqs, nreq);
	for (int s = 0; s < nreq; s++) {
		int pre = zp_fwd_pre_of(f, s);
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
	PROF(f, ZP_FOP_EMBED, f->op->embed(f->be, f->m, f->tok_id, T, V(f->x, (size_t)c->hidden)));
	rc = layers(f, &ta, &tm, e);
	if (!rc && f->grp && zp_dpep_round_failed(f->grp, f->member))
		rc = zp_errf(e, "dpep: a member's device faulted in this forward: the experts it "
			     "holds gave no outputs");
	if (f->src)
		f->src->end(f->src->ctx);
	double to = zp_now_s();
	if (!rc && T) {
		PROF(f, ZP_FOP_OUT, outputs(f, reqs, nreq));
		route_gap_min(f);
	}
	/* the device's word on all of it before the results (and the blocks the
	   cache would keep) count: a fault anywhere fails the batch */
	if (!rc && f->op->sync(f->be, e))
		rc = -1;
	if (f->kv)
		zp_fwd_kv_release(f, rc == 0);
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
