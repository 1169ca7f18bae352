/* forward.c -- see forward.h. Every reduction runs in a fixed order per row, so
   a sequence's results do not depend on what else is in its batch. */
#include "forward.h"

#include <float.h>
#include <pthread.h>
#include <math.h>
#include <string.h>

#include "attention.h"
#include "cpu.h"
#include "pool.h"
#include "util.h"
#include "vecmath.h"

#define ROWS_CHUNK 16	/* tokens per elementwise task */
#define LM_SCRATCH_BYTES (64u << 20) /* logits of one lm_head block */
#define LM_ROWS_MIN 32
#define LM_ROWS_MAX 256
#define QBLOCK 32	/* queries per attention task */

/* A row whose logits are needed: request req, absolute token index pos. */
struct lm_row {
	int req, pos;
};
_Static_assert(sizeof(struct lm_row) == 2 * sizeof(int), "lm_row is two ints");

struct zp_fwd {
	const zp_model *m;
	const zp_config *c;
	zp_pool *pool;
	int max_tokens;
	int hp, qkv, qdp, fp, mfp;	/* padded widths (even) */
	/* batch layout */
	int ntok, nseq;
	int *seq_start;			/* [max_tokens + 1] */
	int *tok_seq, *tok_pos;		/* [max_tokens] */
	int *attn_blocks;		/* [max_tokens]: query blocks before sequence s */
	int32_t *tok_id;
	/* activations */
	float *x;			/* [T, H] residual stream */
	float *xn;			/* [T, hp] normed (f32 gemm input) */
	uint16_t *xn16;			/* [T, hp] bf16 copy */
	float *qkvb;			/* [T, qkv] */
	float *att;			/* [T, qdp] */
	uint16_t *att16;
	float *tmp;			/* [T, H] */
	float *act;			/* [T, fp] dense MLP */
	uint16_t *act16;
	float *rope_cos, *rope_sin;	/* [max_tokens, d/2]: by position in the sequence */
	float *kt;			/* [Nkv d, ldk]: K transposed */
	size_t ldk;
	float *scores;			/* [threads, attn_scratch] */
	size_t attn_scratch;		/* floats of attention scratch per thread */
	/* bf16 attention on AMX (zp_attn16) */
	bool attn_amx;
	zp_attn16 a16;			/* q16, kp, vp: see attention.h */
	size_t *ks0;			/* [seqs max + 1]: first key slot of each sequence */
	/* MoE */
	float *logits;			/* [T, E] */
	int *sel;			/* [T, k] expert ids, sorted ascending */
	float *selw;			/* [T, k] */
	int *slot_row;			/* [T, k] row of the slot in the gathered block */
	float *route_gap;		/* [T]: router logit gap, k-th minus (k+1)-th */
	int *counts, *offs;		/* [E], [E + 1] */
	float *xg;			/* [T k, hp] */
	uint16_t *xg16;
	float *actg;			/* [T k, mfp] */
	uint16_t *actg16;
	float *yg;			/* [T k, H] */
	zp_gemm_op *ops;		/* [E] */
	/* outputs */
	int lm_rows;			/* rows per lm_head block: the weights stream once
					   per block, the logits scratch stays bounded */
	struct lm_row *lm_list;		/* [lm_rows] */
	float *lm_in;			/* [lm_rows, hp] */
	uint16_t *lm_in16;
	float *lm_out;			/* [lm_rows, V] */
	zp_fwd_stats stats;
	const zp_expert_src *src;	/* NULL: the model's experts */
	/* dpep: the group, this member, and the rows it receives for its experts */
	zp_dpep *grp;
	int member;
	float *ra;			/* [R, hp] received inputs (f32 mode) */
	uint16_t *ra16;			/* [R, hp] (bf16 mode) */
	float *ract;			/* [R, mfp] */
	uint16_t *ract16;
	float *ry;			/* [R, H] */
	int *roffs;			/* [E + 1] first received row of each owned expert */
};

struct zp_dpep {
	int n;
	pthread_barrier_t bar;
	zp_fwd *member[ZP_DPEP_MAX];
	int lo[ZP_DPEP_MAX], hi[ZP_DPEP_MAX];
};

static size_t fsz(size_t n)
{
	return n * sizeof(float);
}

static void rope_tables(zp_fwd *f);

zp_fwd *zp_fwd_new(const zp_model *m, int threads, int max_tokens)
{
	zp_fwd *f = zp_xcalloc(1, sizeof *f);
	const zp_config *c = &m->cfg;
	size_t T = (size_t)max_tokens, K = (size_t)ZP_MAX(c->topk, 1);
	size_t E = (size_t)ZP_MAX(c->experts, 1);

	ZP_ASSERT(max_tokens >= 1);
	f->m = m;
	f->c = c;
	f->pool = zp_pool_new(threads);
	f->max_tokens = max_tokens;
	f->hp = ZP_ALIGN_UP(c->hidden, 2);
	f->qkv = (c->heads + 2 * c->kv_heads) * c->head_dim;
	f->qdp = ZP_ALIGN_UP(c->heads * c->head_dim, 2);
	f->fp = ZP_ALIGN_UP(c->ffn, 16);
	f->mfp = ZP_ALIGN_UP(ZP_MAX(c->moe_ffn, 1), 16);
	f->seq_start = zp_xalloc_aligned((T + 1) * sizeof(int));
	f->tok_seq = zp_xalloc_aligned(T * sizeof(int));
	f->attn_blocks = zp_xalloc_aligned(T * sizeof(int));
	f->tok_pos = zp_xalloc_aligned(T * sizeof(int));
	f->tok_id = zp_xalloc_aligned(T * sizeof(int32_t));
	f->x = zp_xalloc_aligned(fsz(T * (size_t)c->hidden));
	f->xn = zp_xalloc_aligned(fsz(T * (size_t)f->hp));
	f->xn16 = zp_xalloc_aligned(T * (size_t)f->hp * 2); /* bf16 copies: untouched in fp32 */
	f->qkvb = zp_xalloc_aligned(fsz(T * (size_t)f->qkv));
	f->att = zp_xalloc_aligned(fsz(T * (size_t)f->qdp));
	f->att16 = zp_xalloc_aligned(T * (size_t)f->qdp * 2);
	f->tmp = zp_xalloc_aligned(fsz(T * (size_t)c->hidden));
	f->act = zp_xalloc_aligned(fsz(T * (size_t)f->fp));
	f->act16 = zp_xalloc_aligned(T * (size_t)f->fp * 2);
	f->rope_cos = zp_xalloc_aligned(fsz(T * (size_t)c->head_dim / 2));
	f->rope_sin = zp_xalloc_aligned(fsz(T * (size_t)c->head_dim / 2));
	zp_attn shape = { .heads = c->heads, .kv_heads = c->kv_heads, .d = c->head_dim };
	f->attn_scratch = zp_attn_scratch_floats(&shape, QBLOCK, max_tokens);
	/* zeroed columns past the last token: key reads past a sequence stay finite */
	f->ldk = (size_t)ZP_ALIGN_UP(max_tokens + 16, 16) + 16;
	f->kt = zp_xalloc_aligned(fsz((size_t)c->kv_heads * c->head_dim * f->ldk));
	f->attn_amx = m->wtype == ZP_W_BF16 && c->head_dim % 32 == 0 && zp_gemm_amx();
	if (f->attn_amx) {
		zp_attn16 *a = &f->a16;
		size_t d = (size_t)c->head_dim;
		*a = (zp_attn16){ .heads = c->heads, .kv_heads = c->kv_heads, .d = c->head_dim,
				  .ldq = (size_t)c->heads * d, .out = f->att, .ldo = (size_t)f->qdp };
		/* each sequence's keys start on a 32-key panel */
		a->slots = (size_t)ZP_ALIGN_UP(max_tokens, 32) + 32 * (size_t)ZP_FWD_SEQS_MAX;
		a->q16 = zp_xalloc_aligned((T + 32) * a->ldq * 2);
		a->kp = zp_xalloc_aligned((size_t)c->kv_heads * a->slots * d * 2);
		a->vp = zp_xalloc_aligned((size_t)c->kv_heads * a->slots * d * 2);
		f->ks0 = zp_xalloc_aligned((ZP_FWD_SEQS_MAX + 1) * sizeof(size_t));
		f->attn_scratch = ZP_MAX(f->attn_scratch, zp_attn16_scratch_bytes(max_tokens) / 4 + 1);
	}
	f->scores = zp_xalloc_aligned(fsz((size_t)threads * f->attn_scratch));
	if (c->moe) {
		f->logits = zp_xalloc_aligned(fsz(T * E));
		f->sel = zp_xalloc_aligned(T * K * sizeof(int));
		f->selw = zp_xalloc_aligned(T * K * sizeof(float));
		f->slot_row = zp_xalloc_aligned(T * K * sizeof(int));
		f->route_gap = zp_xalloc_aligned(T * sizeof(float));
		f->counts = zp_xalloc_aligned(E * sizeof(int));
		f->offs = zp_xalloc_aligned((E + 1) * sizeof(int));
		f->xg = zp_xalloc_aligned(fsz(T * K * (size_t)f->hp));
		f->xg16 = zp_xalloc_aligned(T * K * (size_t)f->hp * 2);
		f->actg = zp_xalloc_aligned(fsz(T * K * (size_t)f->mfp));
		f->actg16 = zp_xalloc_aligned(T * K * (size_t)f->mfp * 2);
		f->yg = zp_xalloc_aligned(fsz(T * K * (size_t)c->hidden));
		f->ops = zp_xalloc_aligned(E * sizeof(zp_gemm_op));
	}
	f->lm_rows = (int)ZP_MIN(LM_ROWS_MAX, ZP_MAX(LM_ROWS_MIN, LM_SCRATCH_BYTES /
							    (fsz((size_t)c->vocab))));
	f->lm_list = zp_xalloc_aligned((size_t)f->lm_rows * sizeof(struct lm_row));
	f->lm_in = zp_xalloc_aligned(fsz((size_t)f->lm_rows * f->hp));
	f->lm_in16 = zp_xalloc_aligned((size_t)f->lm_rows * f->hp * 2);
	f->lm_out = zp_xalloc_aligned(fsz((size_t)f->lm_rows * c->vocab));
	/* mean pooling accumulates [H] doubles in lm_out */
	ZP_ASSERT((size_t)f->lm_rows * c->vocab * sizeof(float) >= (size_t)c->hidden * sizeof(double));
	rope_tables(f);
	return f;
}

void zp_fwd_free(zp_fwd *f)
{
	if (!f)
		return;
	zp_pool_free(f->pool);
	void *bufs[] = { f->a16.q16 ? (void *)f->a16.q16 : NULL, f->a16.kp, f->a16.vp, f->ks0,
			 f->kt, f->seq_start, f->attn_blocks, f->tok_seq, f->tok_pos, f->tok_id, f->x, f->xn, f->xn16,
			 f->qkvb, f->att, f->att16, f->tmp, f->act, f->act16, f->rope_cos,
			 f->rope_sin, f->scores, f->logits, f->sel, f->selw, f->slot_row, f->route_gap,
			 f->counts, f->offs, f->xg, f->xg16, f->actg, f->actg16, f->yg, f->ops,
			 f->lm_list, f->lm_in, f->lm_in16, f->lm_out, f->ra, f->ra16, f->ract,
			 f->ract16, f->ry, f->roffs };
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		zp_free_aligned(bufs[i]);
	free(f);
}

zp_fwd_stats zp_fwd_last_stats(const zp_fwd *f)
{
	return f->stats;
}

/* ---- elementwise pieces ------------------------------------------------------ */

typedef void (*rows_fn)(zp_fwd *f, int r0, int r1, int thread, void *arg);
struct rows_job {
	zp_fwd *f;
	rows_fn fn;
	void *arg;
	int n;
};

static void rows_task(void *v, int t, int thread)
{
	struct rows_job *j = v;
	int r0 = t * ROWS_CHUNK;
	j->fn(j->f, r0, ZP_MIN(r0 + ROWS_CHUNK, j->n), thread, j->arg);
}

static void par_rows(zp_fwd *f, int n, rows_fn fn, void *arg)
{
	struct rows_job j = { f, fn, arg, n };
	zp_pool_run(f->pool, (n + ROWS_CHUNK - 1) / ROWS_CHUNK, rows_task, &j);
}

/* transformers' Qwen3MoeRMSNorm in f32: w * (x * rsqrt(mean(x^2) + eps)). */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	double part[8] = { 0 }, ss = 0; /* 8 lanes, summed in a fixed order */
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			part[l] += (double)x[i + l] * x[i + l];
	for (int l = 0; i < n; i++, l++)
		part[l] += (double)x[i] * x[i];
	for (int l = 0; l < 8; l++)
		ss += part[l];
	float r = 1.0f / sqrtf((float)(ss / n) + eps);
	for (i = 0; i < n; i++)
		out[i] = w[i] * (x[i] * r);
}

ZP_AVX512 static void to_bf16_avx512(uint16_t *dst, const float *src, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(dst + i), zp_bf16_512(_mm512_loadu_ps(src + i)));
	for (; i < n; i++)
		dst[i] = zp_f32_to_bf16(src[i]);
}

static void to_bf16(uint16_t *dst, const float *src, int n)
{
	if (zp_cpu_avx512()) {
		to_bf16_avx512(dst, src, n);
		return;
	}
	for (int i = 0; i < n; i++)
		dst[i] = zp_f32_to_bf16(src[i]);
}

static bool bf16_mode(const zp_fwd *f)
{
	return f->m->wtype == ZP_W_BF16;
}

static void norm_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const float *w = arg;
	int H = f->c->hidden;
	(void)thread;
	for (int t = r0; t < r1; t++) {
		float *xn = f->xn + (size_t)t * f->hp;
		rmsnorm(xn, f->x + (size_t)t * H, w, H, f->c->rms_eps);
		if (bf16_mode(f))
			to_bf16(f->xn16 + (size_t)t * f->hp, xn, H);
	}
}

/* q_norm / k_norm per head, then RoPE (rotate_half), in place in qkvb. */
static void qk_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const zp_layer *L = arg;
	const zp_config *c = f->c;
	int d = c->head_dim, h2 = d / 2;
	float tmp[2048];
	(void)thread;
	ZP_ASSERT(d <= 2048);
	for (int t = r0; t < r1; t++) {
		size_t pos = (size_t)f->tok_pos[t];
		const float *cs = f->rope_cos + pos * h2, *sn = f->rope_sin + pos * h2;
		for (int h = 0; h < c->heads + c->kv_heads; h++) {
			float *v = f->qkvb + (size_t)t * f->qkv + (size_t)h * d;
			rmsnorm(tmp, v, h < c->heads ? L->q_norm : L->k_norm, d, c->rms_eps);
			for (int i = 0; i < h2; i++) {
				v[i] = tmp[i] * cs[i] - tmp[i + h2] * sn[i];
				v[i + h2] = tmp[i + h2] * cs[i] + tmp[i] * sn[i];
			}
		}
	}
}

static void bias_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const float *b = arg;
	(void)thread;
	for (int t = r0; t < r1; t++)
		for (int i = 0; i < f->qkv; i++)
			f->qkvb[(size_t)t * f->qkv + i] += b[i];
}

/* x += tmp (+ bias): transformers adds the block output to the residual. */
static void residual_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const float *b = arg;
	int H = f->c->hidden;
	(void)thread;
	for (int t = r0; t < r1; t++)
		for (int i = 0; i < H; i++)
			f->x[(size_t)t * H + i] += b ? f->tmp[(size_t)t * H + i] + b[i]
						     : f->tmp[(size_t)t * H + i];
}

/* Positions restart in every sequence, so one table of max_tokens positions
   serves every batch. As transformers: inv_freq in f32, angle = inv_freq * pos
   in f32. */
static void rope_tables(zp_fwd *f)
{
	const zp_config *c = f->c;
	int h2 = c->head_dim / 2;
	for (int i = 0; i < h2; i++) {
		float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
		for (int p = 0; p < f->max_tokens; p++) {
			float a = inv * (float)p;
			f->rope_cos[(size_t)p * h2 + i] = cosf(a);
			f->rope_sin[(size_t)p * h2 + i] = sinf(a);
		}
	}
}

/* ---- attention: causal, GQA, within each sequence ----------------------------- */

struct attn_job {
	zp_fwd *f;
	zp_attn a;
};

/* Task t -> (sequence, KV head, query block); blocks numbered sequence by sequence. */
static void attn_task(void *v, int t, int thread)
{
	struct attn_job *j = v;
	zp_fwd *f = j->f;
	int kvh = t % f->c->kv_heads, blk = t / f->c->kv_heads, s = 0;
	while (s + 1 < f->nseq && f->attn_blocks[s + 1] <= blk)
		s++;
	int q0 = (blk - f->attn_blocks[s]) * QBLOCK;
	int len = f->seq_start[s + 1] - f->seq_start[s];
	zp_attn_block(&j->a, f->seq_start[s], kvh, q0, ZP_MIN(q0 + QBLOCK, len),
		      f->scores + (size_t)thread * f->attn_scratch);
}

static void kt_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	(void)f;
	(void)thread;
	zp_attn_transpose_k(arg, r0, r1);
}

/* bf16 on AMX: pack each token's q (bf16), K and V into its sequence's key slots. */
static void pack16_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const zp_attn16 *a = &f->a16;
	(void)thread;
	(void)arg;
	for (int t = r0; t < r1; t++) {
		const float *row = f->qkvb + (size_t)t * f->qkv;
		to_bf16((uint16_t *)a->q16 + (size_t)t * a->ldq, row, (int)a->ldq);
		zp_attn16_pack(a, row, f->ks0[f->tok_seq[t]] + (size_t)f->tok_pos[t]);
	}
}

static void attn16_task(void *v, int t, int thread)
{
	zp_fwd *f = v;
	int kvh = t % f->c->kv_heads, blk = t / f->c->kv_heads, s = 0;
	while (s + 1 < f->nseq && f->attn_blocks[s + 1] <= blk)
		s++;
	int q0 = (blk - f->attn_blocks[s]) * QBLOCK;
	int len = f->seq_start[s + 1] - f->seq_start[s];
	zp_attn16_block(&f->a16, f->seq_start[s], f->ks0[s], kvh, q0, ZP_MIN(q0 + QBLOCK, len),
			f->scores + (size_t)thread * f->attn_scratch);
}

static void attention16(zp_fwd *f)
{
	int nblk = 0;
	f->ks0[0] = 0;
	for (int s = 0; s < f->nseq; s++) {
		size_t len = (size_t)(f->seq_start[s + 1] - f->seq_start[s]);
		f->ks0[s + 1] = f->ks0[s] + ZP_ALIGN_UP(len, 32);
		ZP_ASSERT(f->ks0[s + 1] <= f->a16.slots);
		f->attn_blocks[s] = nblk;
		nblk += (int)((len + QBLOCK - 1) / QBLOCK);
	}
	par_rows(f, f->ntok, pack16_rows, NULL);
	for (int s = 0; s < f->nseq; s++) { /* padding keys: zero, never stale */
		size_t len = (size_t)(f->seq_start[s + 1] - f->seq_start[s]);
		zp_attn16_clear(&f->a16, f->ks0[s] + len, f->ks0[s + 1]);
	}
	zp_pool_run(f->pool, nblk * f->c->kv_heads, attn16_task, f);
}

static void attention(zp_fwd *f)
{
	if (f->attn_amx) {
		attention16(f);
		return;
	}
	const zp_config *c = f->c;
	struct attn_job j = { f, { f->qkvb, (size_t)f->qkv, c->heads, c->kv_heads, c->head_dim,
				   f->att, (size_t)f->qdp, f->kt, f->ldk } };
	int nblk = 0;
	par_rows(f, f->ntok, kt_rows, &j.a);
	for (int s = 0; s < f->nseq; s++) {
		f->attn_blocks[s] = nblk;
		nblk += (f->seq_start[s + 1] - f->seq_start[s] + QBLOCK - 1) / QBLOCK;
	}
	zp_pool_run(f->pool, nblk * c->kv_heads, attn_task, &j);
}

static void attn_to_bf16(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	(void)thread;
	(void)arg;
	for (int t = r0; t < r1; t++)
		to_bf16(f->att16 + (size_t)t * f->qdp, f->att + (size_t)t * f->qdp,
			f->c->heads * f->c->head_dim);
}

static void gemm1(zp_fwd *f, const zp_wmat *w, const float *a32, const uint16_t *a16,
		  size_t lda, int m, float *c, size_t ldc, enum zp_epi epi, int ncols)
{
	zp_gemm_op op = { .a = w->type == ZP_W_F32 ? (const void *)a32 : (const void *)a16,
			  .lda = lda, .m = m, .w = w, .c = c, .ldc = ldc, .epi = epi,
			  .ncols = ncols };
	zp_gemm_run(f->pool, &op, 1);
}

static void attention_block(zp_fwd *f, const zp_layer *L)
{
	int T = f->ntok, H = f->c->hidden;
	par_rows(f, T, norm_rows, L->attn_norm);
	gemm1(f, &L->wqkv, f->xn, f->xn16, (size_t)f->hp, T, f->qkvb, (size_t)f->qkv,
	      ZP_EPI_STORE, 0);
	if (L->bqkv)
		par_rows(f, T, bias_rows, L->bqkv);
	par_rows(f, T, qk_rows, (void *)L);
	attention(f);
	if (bf16_mode(f))
		par_rows(f, T, attn_to_bf16, NULL);
	gemm1(f, &L->wo, f->att, f->att16, (size_t)f->qdp, T, f->tmp, (size_t)H, ZP_EPI_STORE, 0);
	par_rows(f, T, residual_rows, L->bo);
}

/* ---- MLP and MoE --------------------------------------------------------------- */

static void act_to_bf16(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const int *w = arg; /* [0]: which buffer (0 dense, 1 moe, 2 dpep received); [1]: width */
	(void)thread;
	for (int t = r0; t < r1; t++) {
		if (w[0] == 0)
			to_bf16(f->act16 + (size_t)t * f->fp, f->act + (size_t)t * f->fp, w[1]);
		else if (w[0] == 1)
			to_bf16(f->actg16 + (size_t)t * f->mfp, f->actg + (size_t)t * f->mfp, w[1]);
		else
			to_bf16(f->ract16 + (size_t)t * f->mfp, f->ract + (size_t)t * f->mfp, w[1]);
	}
}

static void dense_mlp(zp_fwd *f, const zp_layer *L)
{
	int T = f->ntok, H = f->c->hidden, F = f->c->ffn;
	int which[2] = { 0, F };
	gemm1(f, &L->w_gate_up, f->xn, f->xn16, (size_t)f->hp, T, f->act, (size_t)f->fp,
	      ZP_EPI_SWIGLU, F);
	if (bf16_mode(f))
		par_rows(f, T, act_to_bf16, which);
	gemm1(f, &L->w_down, f->act, f->act16, (size_t)f->fp, T, f->tmp, (size_t)H, ZP_EPI_STORE,
	      0);
	par_rows(f, T, residual_rows, NULL);
}

/* transformers: softmax over all experts in f32, top-k, renormalise when
   norm_topk_prob. Slots are then ordered by expert id: the order in which
   transformers accumulates expert outputs (index_add_ expert by expert). */
static void route_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const zp_config *c = f->c;
	int E = c->experts, K = c->topk;
	(void)thread;
	(void)arg;
	for (int t = r0; t < r1; t++) {
		float *lg = f->logits + (size_t)t * E, mx = -FLT_MAX, sum = 0, wsum = 0;
		int *sel = f->sel + (size_t)t * K;
		float *w = f->selw + (size_t)t * K;
		for (int e = 0; e < E; e++)
			mx = fmaxf(mx, lg[e]);
		for (int e = 0; e < E; e++) {
			lg[e] = expf(lg[e] - mx);
			sum += lg[e];
		}
		for (int e = 0; e < E; e++)
			lg[e] /= sum;
		/* top-k by probability; ties to the lower expert id (as torch.topk on CPU) */
		for (int k = 0; k < K; k++) {
			int best = -1;
			for (int e = 0; e < E; e++) {
				bool taken = false;
				for (int j = 0; j < k; j++)
					taken |= sel[j] == e;
				if (!taken && (best < 0 || lg[e] > lg[best]))
					best = e;
			}
			sel[k] = best;
			w[k] = lg[best];
			wsum += lg[best];
		}
		/* how decisive the choice was: the log-probability (= logit) gap between
		   the last chosen expert and the best one left out */
		float next = 0;
		for (int e = 0; e < E; e++) {
			bool taken = false;
			for (int j = 0; j < K; j++)
				taken |= sel[j] == e;
			if (!taken)
				next = fmaxf(next, lg[e]);
		}
		f->route_gap[t] = K < E ? logf(w[K - 1]) - logf(next) : INFINITY;
		if (c->norm_topk_prob)
			for (int k = 0; k < K; k++)
				w[k] /= wsum;
		for (int a = 1; a < K; a++) /* insertion sort by expert id */
			for (int b = a; b > 0 && sel[b - 1] > sel[b]; b--) {
				int ts = sel[b];
				float tw = w[b];
				sel[b] = sel[b - 1];
				w[b] = w[b - 1];
				sel[b - 1] = ts;
				w[b - 1] = tw;
			}
	}
}

static void gather_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	int K = f->c->topk;
	(void)thread;
	(void)arg;
	for (int t = r0; t < r1; t++)
		for (int k = 0; k < K; k++) {
			int row = f->slot_row[(size_t)t * K + k];
			if (bf16_mode(f))
				memcpy(f->xg16 + (size_t)row * f->hp, f->xn16 + (size_t)t * f->hp,
				       (size_t)f->hp * 2);
			else
				memcpy(f->xg + (size_t)row * f->hp, f->xn + (size_t)t * f->hp,
				       (size_t)f->hp * 4);
		}
}

static void combine_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	int K = f->c->topk, H = f->c->hidden;
	(void)thread;
	(void)arg;
	for (int t = r0; t < r1; t++) {
		float *acc = f->tmp + (size_t)t * H;
		memset(acc, 0, (size_t)H * sizeof *acc);
		for (int k = 0; k < K; k++) {
			const float *y = f->yg + (size_t)f->slot_row[(size_t)t * K + k] * H;
			float w = f->selw[(size_t)t * K + k];
			for (int i = 0; i < H; i++)
				acc[i] += y[i] * w;
		}
	}
}

static void moe_dispatch(zp_fwd *f)
{
	int T = f->ntok, E = f->c->experts, K = f->c->topk;
	memset(f->counts, 0, (size_t)E * sizeof *f->counts);
	for (int i = 0; i < T * K; i++)
		f->counts[f->sel[i]]++;
	f->offs[0] = 0;
	for (int e = 0; e < E; e++)
		f->offs[e + 1] = f->offs[e] + f->counts[e];
	memset(f->counts, 0, (size_t)E * sizeof *f->counts);
	for (int i = 0; i < T * K; i++) { /* tokens in order within each expert */
		int e = f->sel[i];
		f->slot_row[i] = f->offs[e] + f->counts[e]++;
	}
}

/* The rows of experts [e0, e1) (expert e's at offs[e - e0] ..) and where
   their stages read and write. */
struct moe_rows {
	const int *offs;
	int e0, e1;
	const float *a;
	const uint16_t *a16;
	float *act;
	const uint16_t *act16;
	float *y;
};

static int expert_ops(zp_fwd *f, const struct moe_rows *b, const zp_wmat *gate_up,
		      const zp_wmat *dn, bool down)
{
	int n = 0, H = f->c->hidden;
	for (int e = b->e0; e < b->e1; e++) {
		int r = b->offs[e - b->e0], m = b->offs[e - b->e0 + 1] - r;
		if (!m)
			continue;
		zp_gemm_op *op = &f->ops[n++];
		if (!down)
			*op = (zp_gemm_op){
				.a = bf16_mode(f) ? (const void *)(b->a16 + (size_t)r * f->hp)
						  : (const void *)(b->a + (size_t)r * f->hp),
				.lda = (size_t)f->hp, .m = m, .w = &gate_up[e],
				.c = b->act + (size_t)r * f->mfp, .ldc = (size_t)f->mfp,
				.epi = ZP_EPI_SWIGLU, .ncols = f->c->moe_ffn };
		else
			*op = (zp_gemm_op){
				.a = bf16_mode(f) ? (const void *)(b->act16 + (size_t)r * f->mfp)
						  : (const void *)(b->act + (size_t)r * f->mfp),
				.lda = (size_t)f->mfp, .m = m, .w = &dn[e],
				.c = b->y + (size_t)r * H, .ldc = (size_t)H, .epi = ZP_EPI_STORE };
	}
	return n;
}

static void group_wait(zp_fwd *f)
{
	double t0 = zp_now_s();
	pthread_barrier_wait(&f->grp->bar);
	f->stats.sync_s += zp_now_s() - t0;
}

/* dpep: every member's routed rows for this member's experts are copied in,
   run, and their outputs copied back into their owners' yg. Between the two
   barriers a member only reads other members' xg/offs and writes the yg rows
   of this member's experts, which no one else touches. */
static void dpep_exchange(zp_fwd *f, const zp_layer *L)
{
	zp_dpep *g = f->grp;
	int e0 = g->lo[f->member], e1 = g->hi[f->member], R = 0, H = f->c->hidden;
	int which[2] = { 2, f->c->moe_ffn };
	bool bf = bf16_mode(f);
	size_t arow = (size_t)f->hp * (bf ? 2 : 4);
	group_wait(f);
	for (int e = e0; e < e1; e++) {
		f->roffs[e - e0] = R;
		for (int x = 0; x < g->n; x++) {
			const zp_fwd *s = g->member[x];
			int m = s->offs[e + 1] - s->offs[e];
			const char *src = bf ? (const char *)(s->xg16 + (size_t)s->offs[e] * f->hp)
					     : (const char *)(s->xg + (size_t)s->offs[e] * f->hp);
			memcpy(bf ? (char *)(f->ra16 + (size_t)R * f->hp) : (char *)(f->ra + (size_t)R * f->hp),
			       src, (size_t)m * arow);
			R += m;
		}
	}
	f->roffs[e1 - e0] = R;
	struct moe_rows b = { f->roffs, e0, e1, f->ra, f->ra16, f->ract, f->ract16, f->ry };
	zp_gemm_run(f->pool, f->ops, expert_ops(f, &b, L->exp_gate_up, L->exp_down, false));
	if (bf)
		par_rows(f, R, act_to_bf16, which);
	zp_gemm_run(f->pool, f->ops, expert_ops(f, &b, L->exp_gate_up, L->exp_down, true));
	R = 0;
	for (int e = e0; e < e1; e++)
		for (int x = 0; x < g->n; x++) {
			zp_fwd *s = g->member[x];
			int m = s->offs[e + 1] - s->offs[e];
			memcpy(s->yg + (size_t)s->offs[e] * H, f->ry + (size_t)R * H,
			       (size_t)m * H * sizeof(float));
			R += m;
		}
	group_wait(f);
}

static int moe_block(zp_fwd *f, const zp_layer *L, int l, zp_err *e)
{
	int T = f->ntok, TK = T * f->c->topk;
	int which[2] = { 1, f->c->moe_ffn };
	const zp_wmat *gu = L->exp_gate_up, *dn = L->exp_down;
	struct moe_rows b = { f->offs, 0, f->c->experts, f->xg, f->xg16, f->actg, f->actg16, f->yg };

	if (T) {
		gemm1(f, &L->router, f->xn, NULL, (size_t)f->hp, T, f->logits,
		      (size_t)f->c->experts, ZP_EPI_STORE, 0);
		par_rows(f, T, route_rows, NULL);
	}
	for (int t = 0; t < T; t++)
		f->stats.min_route_gap = fminf(f->stats.min_route_gap, f->route_gap[t]);
	moe_dispatch(f);
	par_rows(f, T, gather_rows, NULL);
	if (f->grp) {
		dpep_exchange(f, L);
		par_rows(f, T, combine_rows, NULL);
		par_rows(f, T, residual_rows, NULL);
		return 0;
	}
	/* the experts are needed from here on: as late as possible */
	if (f->src && f->src->acquire(f->src->ctx, l, &gu, &dn, e))
		return -1;
	zp_gemm_run(f->pool, f->ops, expert_ops(f, &b, gu, dn, false));
	if (bf16_mode(f))
		par_rows(f, TK, act_to_bf16, which);
	zp_gemm_run(f->pool, f->ops, expert_ops(f, &b, gu, dn, true));
	if (f->src)
		f->src->release(f->src->ctx, l);
	par_rows(f, T, combine_rows, NULL);
	par_rows(f, T, residual_rows, NULL);
	return 0;
}

/* ---- outputs ------------------------------------------------------------------- */


static void lm_norm_rows(zp_fwd *f, int r0, int r1, int thread, void *arg)
{
	const struct lm_row *rows = arg;
	(void)thread;
	for (int i = r0; i < r1; i++) {
		int t = rows[i].pos; /* absolute token index */
		float *dst = f->lm_in + (size_t)i * f->hp;
		rmsnorm(dst, f->x + (size_t)t * f->c->hidden, f->m->final_norm, f->c->hidden,
			f->c->rms_eps);
		if (bf16_mode(f))
			to_bf16(f->lm_in16 + (size_t)i * f->hp, dst, f->c->hidden);
	}
}

struct lm_job {
	zp_fwd *f;
	zp_req **reqs;
	const struct lm_row *rows;	/* .pos: absolute token index */
	int n;
};

/* log sum_x exp(lg[x]), in f32 as torch's log_softmax, 16 lanes summed in a
   fixed order. */
ZP_AVX512 static float logsumexp_avx512(const float *lg, int V)
{
	__m512 mx = _mm512_set1_ps(-FLT_MAX), sum = _mm512_setzero_ps();
	int x = 0;
	for (; x + 16 <= V; x += 16)
		mx = _mm512_max_ps(mx, _mm512_loadu_ps(lg + x));
	float m = _mm512_reduce_max_ps(mx);
	for (int t = x; t < V; t++)
		m = fmaxf(m, lg[t]);
	__m512 mv = _mm512_set1_ps(m);
	for (x = 0; x + 16 <= V; x += 16)
		sum = _mm512_add_ps(sum, zp_exp512(_mm512_sub_ps(_mm512_loadu_ps(lg + x), mv)));
	__mmask16 k = (__mmask16)((1u << (V - x)) - 1);
	sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, zp_exp512(_mm512_sub_ps(
						 _mm512_maskz_loadu_ps(k, lg + x), mv))));
	return m + logf(_mm512_reduce_add_ps(sum));
}

static float logsumexp(const float *lg, int V)
{
	if (zp_cpu_avx512())
		return logsumexp_avx512(lg, V);
	float m = -FLT_MAX, sum = 0;
	for (int x = 0; x < V; x++)
		m = fmaxf(m, lg[x]);
	for (int x = 0; x < V; x++)
		sum += expf(lg[x] - m);
	return m + logf(sum);
}

static void top_k(const float *lg, int V, float lse, int k, int32_t *ids, float *lp)
{
	int n = 0;
	for (int v = 0; v < V; v++) {
		if (n == k && !(lg[v] > lg[ids[n - 1]]))
			continue;
		int j = n < k ? n++ : k - 1;
		while (j > 0 && lg[v] > lg[ids[j - 1]]) { /* ties keep the lower id first */
			ids[j] = ids[j - 1];
			j--;
		}
		ids[j] = v;
	}
	for (int i = 0; i < k; i++)
		lp[i] = lg[ids[i]] - lse;
}

static void lm_row_outputs(void *v, int i, int thread)
{
	struct lm_job *j = v;
	zp_fwd *f = j->f;
	int V = f->c->vocab, t = j->rows[i].pos;
	zp_req *r = j->reqs[j->rows[i].req];
	const float *lg = f->lm_out + (size_t)i * V;
	int p = f->tok_pos[t];
	(void)thread;
	float lse = logsumexp(lg, V);
	if (p + 1 < r->ntok) { /* predicts token p + 1 */
		if (r->plp_start >= 0 && p + 1 >= r->plp_start)
			r->plp[p + 1 - r->plp_start] = lg[r->tokens[p + 1]] - lse;
		return;
	}
	for (int c = 0; c < r->ncand; c++)
		r->cand_lp[c] = lg[r->cands[c]] - lse;
	if (r->top_k)
		top_k(lg, V, lse, r->top_k, r->top_ids, r->top_lp);
}

static void lm_block(zp_fwd *f, zp_req **reqs, const struct lm_row *rows, int n)
{
	struct lm_job j = { f, reqs, rows, n };
	par_rows(f, n, lm_norm_rows, (void *)rows);
	gemm1(f, &f->m->lm_head, f->lm_in, f->lm_in16, (size_t)f->hp, n, f->lm_out,
	      (size_t)f->c->vocab, ZP_EPI_STORE, 0);
	zp_pool_run(f->pool, n, lm_row_outputs, &j);
}

static bool row_needed(const zp_req *r, int p)
{
	if (p == r->ntok - 1)
		return r->want_cands || r->top_k > 0;
	return r->plp_start >= 0 && p + 1 >= r->plp_start;
}

static void pool_output(zp_fwd *f, zp_req *r, int s)
{
	int H = f->c->hidden, s0 = f->seq_start[s];
	float *tmp = f->lm_in; /* free between lm blocks */
	if (r->pool == ZP_POOL_LAST) {
		rmsnorm(r->emb, f->x + (size_t)(s0 + r->ntok - 1) * H, f->m->final_norm, H,
			f->c->rms_eps);
	} else {
		double *acc = (double *)f->lm_out; /* V >= H / 2 doubles: checked at start */
		memset(acc, 0, (size_t)H * sizeof *acc);
		for (int p = 0; p < r->ntok; p++) {
			rmsnorm(tmp, f->x + (size_t)(s0 + p) * H, f->m->final_norm, H, f->c->rms_eps);
			for (int i = 0; i < H; i++)
				acc[i] += tmp[i];
		}
		for (int i = 0; i < H; i++)
			r->emb[i] = (float)(acc[i] / r->ntok);
	}
	if (r->normalize) {
		double ss = 0;
		for (int i = 0; i < H; i++)
			ss += (double)r->emb[i] * r->emb[i];
		float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
		for (int i = 0; i < H; i++)
			r->emb[i] *= inv;
	}
}

static void outputs(zp_fwd *f, zp_req **reqs, int nreq)
{
	struct lm_row *rows = f->lm_list;
	int n = 0;
	for (int s = 0; s < nreq; s++) {
		for (int p = 0; p < reqs[s]->ntok; p++) {
			if (!row_needed(reqs[s], p))
				continue;
			rows[n++] = (struct lm_row){ s, f->seq_start[s] + p };
			if (n == f->lm_rows) {
				lm_block(f, reqs, rows, n);
				n = 0;
			}
		}
	}
	if (n)
		lm_block(f, reqs, rows, n);
	for (int s = 0; s < nreq; s++)
		if (reqs[s]->pool != ZP_POOL_NONE)
			pool_output(f, reqs[s], s);
}

/* ---- the pass ------------------------------------------------------------------- */

static double run_flops(const zp_fwd *f)
{
	const zp_config *c = f->c;
	double fl = 0, pairs = 0;
	for (int s = 0; s < f->nseq; s++) {
		double n = f->seq_start[s + 1] - f->seq_start[s];
		pairs += n * (n + 1) / 2;
	}
	for (int l = 0; l < c->layers; l++)
		fl += f->ntok * zp_config_layer_flops(c, l) + 4.0 * c->heads * c->head_dim * pairs;
	return fl;
}

void zp_fwd_set_experts(zp_fwd *f, const zp_expert_src *src)
{
	f->src = src;
}

zp_dpep *zp_dpep_new(int n, int experts)
{
	ZP_ASSERT(n >= 1 && n <= ZP_DPEP_MAX && n <= experts);
	zp_dpep *g = zp_xcalloc(1, sizeof *g);
	g->n = n;
	for (int x = 0; x < n; x++) {
		g->lo[x] = (int)((long)experts * x / n);
		g->hi[x] = (int)((long)experts * (x + 1) / n);
	}
	ZP_ASSERT(pthread_barrier_init(&g->bar, NULL, (unsigned)n) == 0);
	return g;
}

void zp_dpep_free(zp_dpep *g)
{
	if (!g)
		return;
	pthread_barrier_destroy(&g->bar);
	free(g);
}

void zp_dpep_range(const zp_dpep *g, int member, int *lo, int *hi)
{
	*lo = g->lo[member];
	*hi = g->hi[member];
}

void zp_fwd_set_dpep(zp_fwd *f, zp_dpep *g, int member)
{
	const zp_config *c = f->c;
	ZP_ASSERT(!f->grp && member >= 0 && member < g->n && !g->member[member] && c->moe);
	size_t R = (size_t)g->n * f->max_tokens * c->topk; /* every member's rows at most */
	f->grp = g;
	f->member = member;
	g->member[member] = f;
	f->ra = zp_xalloc_aligned(fsz(R * f->hp));
	f->ra16 = zp_xalloc_aligned(R * f->hp * 2);
	f->ract = zp_xalloc_aligned(fsz(R * f->mfp));
	f->ract16 = zp_xalloc_aligned(R * f->mfp * 2);
	f->ry = zp_xalloc_aligned(fsz(R * c->hidden));
	f->roffs = zp_xalloc_aligned(((size_t)c->experts + 1) * sizeof(int));
}

/* The layers; -1 when the expert source failed. */
static int layers(zp_fwd *f, double *ta, double *tm, zp_err *e)
{
	const zp_config *c = f->c;
	for (int l = 0; l < c->layers; l++) {
		const zp_layer *L = &f->m->layers[l];
		if (f->src)
			f->src->layer_begin(f->src->ctx, l);
		double a = zp_now_s();
		if (f->ntok) /* a dpep member without tokens still serves its experts */
			attention_block(f, L);
		double b = zp_now_s();
		par_rows(f, f->ntok, norm_rows, L->ffn_norm);
		if (!L->sparse) {
			if (f->ntok)
				dense_mlp(f, L);
		}
		else if (moe_block(f, L, l, e))
			return -1;
		*ta += b - a;
		*tm += zp_now_s() - b;
	}
	return 0;
}

int zp_fwd_run(zp_fwd *f, zp_req **reqs, int nreq, zp_err *e)
{
	const zp_config *c = f->c;
	int T = 0, rc;
	double ta = 0, tm = 0;

	for (int s = 0; s < nreq; s++) {
		ZP_ASSERT(reqs[s]->ntok >= 1 && s < ZP_FWD_SEQS_MAX);
		f->seq_start[s] = T;
		for (int p = 0; p < reqs[s]->ntok; p++, T++) {
			ZP_ASSERT(T < f->max_tokens);
			ZP_ASSERT(reqs[s]->tokens[p] >= 0 && reqs[s]->tokens[p] < c->vocab);
			f->tok_seq[T] = s;
			f->tok_pos[T] = p;
			f->tok_id[T] = reqs[s]->tokens[p];
		}
	}
	f->seq_start[nreq] = T;
	f->ntok = T;
	f->nseq = nreq;
	f->stats.sync_s = 0;
	if (!T && !f->grp)
		return 0;
	f->stats.min_route_gap = INFINITY;
	for (int t = 0; t < T; t++)
		zp_model_embed(f->m, f->tok_id[t], f->x + (size_t)t * c->hidden);
	rc = layers(f, &ta, &tm, e);
	if (f->src)
		f->src->end(f->src->ctx);
	if (rc)
		return -1;
	if (!T)
		return 0;
	double to = zp_now_s();
	outputs(f, reqs, nreq);
	f->stats.attn_s = ta;
	f->stats.mlp_s = tm;
	f->stats.out_s = zp_now_s() - to;
	f->stats.flops = run_flops(f);
	return 0;
}
