/* backend_cpu.c -- see backend_cpu.h. Each op is one parallel loop over the
   instance's pool, split as the forward pass always split it: elementwise ops
   in chunks of ROWS_CHUNK rows, GEMMs by (op, panel, row chunk) (gemm.c),
   attention by (sequence, KV head, block of QBLOCK queries), log-prob rows one
   task each. Every op has completed when it returns. */
#include "backend_cpu.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "attention.h"
#include "gemm.h"
#include "hevent.h"
#include "ops.h"
#include "pool.h"

#define ROWS_CHUNK 16	/* rows per elementwise task */
#define QBLOCK 32	/* queries per attention task */

typedef struct {
	zp_pool *pool;
	int threads;
	zp_gemm_op *ops;	/* [ZP_GEMM_OPS_MAX]: one grouped GEMM's per-expert ops */
} cpu_ctx;

static cpu_ctx *C(zp_backend *b)
{
	return b->ctx;
}

/* ---- parallel rows ---- */

typedef void (*rows_fn)(void *arg, int r0, int r1);
struct rows_job {
	rows_fn fn;
	void *arg;
	int n;
};

static void rows_task(void *v, int t, int thread)
{
	struct rows_job *j = v;
	int r0 = t * ROWS_CHUNK;
	(void)thread;
	j->fn(j->arg, r0, ZP_MIN(r0 + ROWS_CHUNK, j->n));
}

static void par_rows(zp_backend *b, int n, rows_fn fn, void *arg)
{
	struct rows_job j = { fn, arg, n };
	zp_pool_run(C(b)->pool, (n + ROWS_CHUNK - 1) / ROWS_CHUNK, rows_task, &j);
}

static float *rowf(zp_view v, int r)
{
	return (float *)v.data + (size_t)r * v.ld;
}

static uint16_t *row16(zp_view v, int r)
{
	return (uint16_t *)v.data + (size_t)r * v.ld;
}

/* ---- memory ---- */

static void *cpu_alloc(zp_backend *b, size_t bytes)
{
	return zp_xalloc_aligned(ZP_MAX(bytes, 64));
}

/* host memory is the cpu's: nothing to pin */
static void cpu_host_pin(zp_backend *b, void *p, size_t bytes, bool on)
{
}

static void cpu_mfree(zp_backend *b, void *p)
{
	zp_free_aligned(p);
}

static void cpu_copy(zp_backend *b, void *dst, const void *src, size_t bytes)
{
	if (bytes)
		memcpy(dst, src, bytes);
}

static void cpu_mem_info(zp_backend *b, zp_mem_info *mi)
{
	*mi = (zp_mem_info){ .host = true, .devices = 1 };
}

static void cpu_copy2d(zp_backend *b, void *dst, size_t dpitch, const void *src, size_t spitch,
		       size_t width, int rows)
{
	ZP_ASSERT(rows >= 0 && width <= dpitch && width <= spitch);
	for (int i = 0; i < rows; i++)
		memcpy((char *)dst + (size_t)i * dpitch, (const char *)src + (size_t)i * spitch, width);
}

/* ---- events: host events (hevent.h); every op has completed when it returns ---- */

static zp_event *cpu_event_new(zp_backend *b)
{
	return (zp_event *)zp_hevent_new();
}

static void cpu_event_free(zp_backend *b, zp_event *ev)
{
	zp_hevent_free((zp_hevent *)ev);
}

/* a record is reached at once */
static uint64_t cpu_event_record(zp_backend *b, zp_event *ev)
{
	return zp_hevent_record((zp_hevent *)ev);
}

static void cpu_event_wait(zp_backend *b, zp_event *ev, uint64_t n)
{
	zp_hevent_wait((zp_hevent *)ev, n);
}

/* ---- the copy queue: memcpy at once, on the driving thread ---- */

struct zp_bqueue {
	int unused;
};

static zp_bqueue *cpu_queue_new(zp_backend *b)
{
	return zp_xcalloc(1, sizeof(zp_bqueue));
}

static void cpu_queue_free(zp_backend *b, zp_bqueue *q)
{
	free(q);
}

static void cpu_queue_copy(zp_backend *b, zp_bqueue *q, void *dst, const void *src, size_t bytes)
{
	if (bytes)
		memcpy(dst, src, bytes);
}

static uint64_t cpu_queue_record(zp_backend *b, zp_bqueue *q, zp_event *ev)
{
	return zp_hevent_record((zp_hevent *)ev);
}

/* the owner's ops complete before they return: reached, or soon */
static void cpu_queue_after(zp_backend *b, zp_bqueue *q, zp_event *ev, uint64_t n)
{
	zp_hevent_wait((zp_hevent *)ev, n);
}

/* ---- rows ---- */

static void cpu_embed(zp_backend *b, const zp_model *m, const int32_t *ids, int n, zp_view x)
{
	for (int t = 0; t < n; t++)
		zp_model_embed(m, ids[t], rowf(x, t));
}

struct norm_job {
	zp_view x, out, out16;
	const int *rows;
	const float *w;
	float eps;
	int cols;
};

static void norm_rows(void *v, int r0, int r1)
{
	struct norm_job *j = v;
	for (int i = r0; i < r1; i++) {
		float *o = rowf(j->out, i);
		zp_ops_rmsnorm(o, rowf(j->x, j->rows ? j->rows[i] : i), j->w, j->cols, j->eps);
		if (j->out16.data)
			zp_ops_to_bf16(row16(j->out16, i), o, j->cols);
	}
}

static void cpu_rmsnorm(zp_backend *b, int n, int cols, zp_view x, const int *rows,
			const float *w, float eps, zp_view out, zp_view out16)
{
	struct norm_job j = { x, out, out16, rows, w, eps, cols };
	par_rows(b, n, norm_rows, &j);
}

struct vec_job {
	zp_view x, y;
	const float *bias;
	int cols;
};

static void bias_rows(void *v, int r0, int r1)
{
	struct vec_job *j = v;
	for (int t = r0; t < r1; t++) {
		float *y = rowf(j->y, t);
		for (int i = 0; i < j->cols; i++)
			y[i] += j->bias[i];
	}
}

static void cpu_add_bias(zp_backend *b, int n, int cols, zp_view y, const float *bias)
{
	struct vec_job j = { .y = y, .bias = bias, .cols = cols };
	par_rows(b, n, bias_rows, &j);
}

/* transformers adds the block output to the residual */
static void residual_rows(void *v, int r0, int r1)
{
	struct vec_job *j = v;
	for (int t = r0; t < r1; t++) {
		float *x = rowf(j->x, t);
		const float *y = rowf(j->y, t);
		for (int i = 0; i < j->cols; i++)
			x[i] += j->bias ? y[i] + j->bias[i] : y[i];
	}
}

static void cpu_residual(zp_backend *b, int n, int cols, zp_view x, zp_view y, const float *bias)
{
	struct vec_job j = { x, y, bias, cols };
	par_rows(b, n, residual_rows, &j);
}

static void bf16_rows(void *v, int r0, int r1)
{
	struct vec_job *j = v;
	for (int t = r0; t < r1; t++)
		zp_ops_to_bf16(row16(j->y, t), rowf(j->x, t), j->cols);
}

static void cpu_to_bf16(zp_backend *b, int n, int cols, zp_view src, zp_view dst)
{
	struct vec_job j = { .x = src, .y = dst, .cols = cols };
	par_rows(b, n, bf16_rows, &j);
}

struct rope_job {
	zp_view qkv;
	int heads, kv_heads, d;
	const float *q_norm, *k_norm, *cos, *sin;
	float eps;
	const int *pos;
};

static void rope_rows(void *v, int r0, int r1)
{
	struct rope_job *j = v;
	int h2 = j->d / 2;
	for (int t = r0; t < r1; t++) {
		size_t p = (size_t)j->pos[t];
		for (int h = 0; h < j->heads + j->kv_heads; h++)
			zp_ops_norm_rope(rowf(j->qkv, t) + (size_t)h * j->d,
					 h < j->heads ? j->q_norm : j->k_norm, j->d, j->eps,
					 j->cos + p * h2, j->sin + p * h2);
	}
}

static void cpu_qk_norm_rope(zp_backend *b, int n, zp_view qkv, int heads, int kv_heads, int d,
			     const float *q_norm, const float *k_norm, float eps, const int *pos,
			     const float *cos, const float *sin)
{
	struct rope_job j = { qkv, heads, kv_heads, d, q_norm, k_norm, cos, sin, eps, pos };
	par_rows(b, n, rope_rows, &j);
}

/* ---- matrix products ---- */

static void cpu_gemm(zp_backend *b, const zp_gemm_op *op)
{
	zp_gemm_run(C(b)->pool, op, 1);
}

static void cpu_expert_gemm(zp_backend *b, const zp_wmat *w, int e0, int e1, const int *offs,
			    zp_view a, zp_view c, enum zp_epi epi, int ncols)
{
	zp_gemm_op *ops = C(b)->ops;
	int n = 0;
	ZP_ASSERT(e1 - e0 <= ZP_GEMM_OPS_MAX);
	for (int e = e0; e < e1; e++) {
		int r = offs[e - e0], m = offs[e - e0 + 1] - r;
		if (!m)
			continue;
		size_t es = w[e].type == ZP_W_BF16 ? 2 : 4;
		ops[n++] = (zp_gemm_op){ .a = (const char *)a.data + (size_t)r * a.ld * es,
					 .lda = a.ld, .m = m, .w = &w[e], .c = rowf(c, r),
					 .ldc = c.ld, .epi = epi, .ncols = ncols };
	}
	zp_gemm_run(C(b)->pool, ops, n);
}

/* ---- attention ---- */

struct zp_attn_work {
	int heads, kv_heads, d, rows_max, seqs_max;
	bool amx;		/* bf16 on AMX (zp_attn16) */
	float *kt;		/* [kv_heads d, ldk]: K transposed (f32 path) */
	size_t ldk;
	float *scores;		/* [threads, scratch] */
	size_t scratch;		/* floats per thread */
	zp_attn16 a16;		/* q16, kp, vp (AMX path) */
	size_t *ks0;		/* [seqs_max + 1]: first key slot of each sequence */
	int *start;		/* [seqs_max + 1]: rows the kernels run over */
	int *qstart;		/* [seqs_max]: first query row of each (its prefix length) */
	int *blocks;		/* [seqs_max + 1]: query blocks before sequence s */
	int *row_seq;		/* [rows_max] */
	float *cqkv, *cout;	/* [rows_max, ...]: prefix + suffix rows (prefix batches) */
};

static zp_attn_work *cpu_attn_work_new(zp_backend *b, int heads, int kv_heads, int d,
				       int rows_max, int seqs_max, bool bf16)
{
	zp_attn_work *w = zp_xcalloc(1, sizeof *w);
	size_t T = (size_t)rows_max, S = (size_t)seqs_max, ld = (size_t)(heads + 2 * kv_heads) * d;
	zp_attn shape = { .heads = heads, .kv_heads = kv_heads, .d = d };
	*w = (zp_attn_work){ .heads = heads, .kv_heads = kv_heads, .d = d, .rows_max = rows_max,
			     .seqs_max = seqs_max };
	w->amx = bf16 && d % 32 == 0 && zp_gemm_amx();
	w->scratch = zp_attn_scratch_floats(&shape, QBLOCK, rows_max);
	/* zeroed columns past the last token: key reads past a sequence stay finite */
	w->ldk = (size_t)ZP_ALIGN_UP(rows_max + 16, 16) + 16;
	w->kt = zp_xalloc_aligned((size_t)kv_heads * d * w->ldk * sizeof(float));
	if (w->amx) {
		zp_attn16 *a = &w->a16;
		*a = (zp_attn16){ .heads = heads, .kv_heads = kv_heads, .d = d,
				  .ldq = (size_t)heads * d };
		/* each sequence's keys start on a 32-key panel */
		a->slots = (size_t)ZP_ALIGN_UP(rows_max, 32) + 32 * S;
		a->q16 = zp_xalloc_aligned((T + 32) * a->ldq * 2);
		a->kp = zp_xalloc_aligned((size_t)kv_heads * a->slots * d * 2);
		a->vp = zp_xalloc_aligned((size_t)kv_heads * a->slots * d * 2);
		w->scratch = ZP_MAX(w->scratch, zp_attn16_scratch_bytes(rows_max) / 4 + 1);
	}
	w->scores = zp_xalloc_aligned((size_t)C(b)->threads * w->scratch * sizeof(float));
	w->ks0 = zp_xalloc_aligned((S + 1) * sizeof(size_t));
	w->start = zp_xalloc_aligned((S + 1) * sizeof(int));
	w->qstart = zp_xalloc_aligned(S * sizeof(int));
	w->blocks = zp_xalloc_aligned((S + 1) * sizeof(int));
	w->row_seq = zp_xalloc_aligned(T * sizeof(int));
	w->cqkv = zp_xalloc_aligned(T * ld * sizeof(float));
	w->cout = zp_xalloc_aligned(T * (size_t)heads * d * sizeof(float));
	return w;
}

static void cpu_attn_work_free(zp_backend *b, zp_attn_work *w)
{
	if (!w)
		return;
	void *bufs[] = { w->kt, w->a16.q16 ? (void *)w->a16.q16 : NULL, w->a16.kp, w->a16.vp,
			 w->scores, w->ks0, w->start, w->qstart, w->blocks, w->row_seq, w->cqkv,
			 w->cout };
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		zp_free_aligned(bufs[i]);
	free(w);
}

/* One run of the kernels over rows the work's start/qstart describe. */
struct attn_job {
	zp_attn_work *w;
	zp_attn a;
	const float *qkv;
	size_t ld;
	int nseq;
};

/* Task t -> (sequence, KV head, query block); blocks numbered sequence by sequence. */
static void attn_where(const struct attn_job *j, int t, int *s, int *kvh, int *q0, int *q1)
{
	const zp_attn_work *w = j->w;
	int blk = t / w->kv_heads;
	*kvh = t % w->kv_heads;
	*s = 0;
	while (*s + 1 < j->nseq && w->blocks[*s + 1] <= blk)
		(*s)++;
	int len = w->start[*s + 1] - w->start[*s];
	*q0 = w->qstart[*s] + (blk - w->blocks[*s]) * QBLOCK;
	*q1 = ZP_MIN(*q0 + QBLOCK, len);
}

static void attn_task(void *v, int t, int thread)
{
	struct attn_job *j = v;
	int s, kvh, q0, q1;
	attn_where(j, t, &s, &kvh, &q0, &q1);
	zp_attn_block(&j->a, j->w->start[s], kvh, q0, q1, j->w->scores + (size_t)thread * j->w->scratch);
}

static void attn16_task(void *v, int t, int thread)
{
	struct attn_job *j = v;
	int s, kvh, q0, q1;
	attn_where(j, t, &s, &kvh, &q0, &q1);
	zp_attn16_block(&j->w->a16, j->w->start[s], j->w->ks0[s], kvh, q0, q1,
			j->w->scores + (size_t)thread * j->w->scratch);
}

static void kt_rows(void *v, int r0, int r1)
{
	struct attn_job *j = v;
	zp_attn_transpose_k(&j->a, r0, r1);
}

/* bf16 on AMX: each row's q (bf16), K and V into its sequence's key slots */
static void pack16_rows(void *v, int r0, int r1)
{
	struct attn_job *j = v;
	zp_attn_work *w = j->w;
	for (int t = r0; t < r1; t++) {
		const float *row = j->qkv + (size_t)t * j->ld;
		int s = w->row_seq[t];
		zp_ops_to_bf16((uint16_t *)w->a16.q16 + (size_t)t * w->a16.ldq, row, (int)w->a16.ldq);
		zp_attn16_pack(&w->a16, row, w->ks0[s] + (size_t)(t - w->start[s]));
	}
}

static void attn_kernels(zp_backend *b, struct attn_job *j, float *out, size_t ldo)
{
	zp_attn_work *w = j->w;
	int nblk = 0, T = w->start[j->nseq];
	for (int s = 0; s < j->nseq; s++) {
		w->blocks[s] = nblk;
		nblk += (w->start[s + 1] - w->start[s] - w->qstart[s] + QBLOCK - 1) / QBLOCK;
	}
	if (!w->amx) {
		j->a = (zp_attn){ j->qkv, j->ld, w->heads, w->kv_heads, w->d, out, ldo, w->kt, w->ldk };
		par_rows(b, T, kt_rows, j);
		zp_pool_run(C(b)->pool, nblk * w->kv_heads, attn_task, j);
		return;
	}
	w->a16.out = out;
	w->a16.ldo = ldo;
	w->ks0[0] = 0;
	for (int s = 0; s < j->nseq; s++) {
		size_t len = (size_t)(w->start[s + 1] - w->start[s]);
		w->ks0[s + 1] = w->ks0[s] + ZP_ALIGN_UP(len, 32);
		ZP_ASSERT(w->ks0[s + 1] <= w->a16.slots);
		for (int t = w->start[s]; t < w->start[s + 1]; t++)
			w->row_seq[t] = s;
	}
	par_rows(b, T, pack16_rows, j);
	for (int s = 0; s < j->nseq; s++) { /* padding keys: zero, never stale */
		size_t len = (size_t)(w->start[s + 1] - w->start[s]);
		zp_attn16_clear(&w->a16, w->ks0[s] + len, w->ks0[s + 1]);
	}
	zp_pool_run(C(b)->pool, nblk * w->kv_heads, attn16_task, j);
}

/* With prefixes, each sequence runs as its prefix rows (keys and values, no
   queries) followed by its own rows, in the work's rows: the kernels then see
   the whole sequence and compute only the own rows' queries, each exactly as
   it would be inside the whole sequence (a query does not depend on its
   block, attention.h). */
static int attn_prefix(zp_backend *b, const zp_attn_args *a, struct attn_job *j, zp_err *e)
{
	zp_attn_work *w = a->work;
	size_t ld = (size_t)(a->heads + 2 * a->kv_heads) * a->d, kvd = (size_t)a->kv_heads * a->d;
	size_t qd = (size_t)a->heads * a->d;
	int rows = 0;
	for (int s = 0; s < a->nseq; s++)
		rows += a->prefix[s].len + a->seq_start[s + 1] - a->seq_start[s];
	if (rows > w->rows_max)
		return zp_errf(e, "attention: %d rows with their prefixes, the workspace holds %d",
			       rows, w->rows_max);
	rows = 0;
	for (int s = 0; s < a->nseq; s++) {
		const zp_kv_src *p = &a->prefix[s];
		ZP_ASSERT(p->len >= 0 && (!p->len || (p->k && p->v)));
		w->start[s] = rows;
		w->qstart[s] = p->len;
		for (int i = 0; i < p->len; i++, rows++) {
			float *r = w->cqkv + (size_t)rows * ld;
			memset(r, 0, qd * sizeof *r);
			memcpy(r + qd, p->k + (size_t)i * p->ld, kvd * sizeof *r);
			memcpy(r + qd + kvd, p->v + (size_t)i * p->ld, kvd * sizeof *r);
		}
		for (int t = a->seq_start[s]; t < a->seq_start[s + 1]; t++, rows++)
			memcpy(w->cqkv + (size_t)rows * ld, rowf(a->qkv, t), ld * sizeof(float));
	}
	w->start[a->nseq] = rows;
	j->qkv = w->cqkv;
	j->ld = ld;
	attn_kernels(b, j, w->cout, qd);
	for (int s = 0; s < a->nseq; s++)
		for (int t = a->seq_start[s]; t < a->seq_start[s + 1]; t++)
			memcpy(rowf(a->out, t),
			       w->cout + (size_t)(w->start[s] + w->qstart[s] + t - a->seq_start[s]) * qd,
			       qd * sizeof(float));
	return 0;
}

static int cpu_attention(zp_backend *b, const zp_attn_args *a, zp_err *e)
{
	zp_attn_work *w = a->work;
	struct attn_job j = { w, { 0 }, a->qkv.data, a->qkv.ld, a->nseq };
	bool prefix = false;
	ZP_ASSERT(a->heads == w->heads && a->kv_heads == w->kv_heads && a->d == w->d);
	ZP_ASSERT(a->nseq >= 1 && a->nseq <= w->seqs_max && a->seq_start[a->nseq] <= w->rows_max);
	for (int s = 0; a->prefix && s < a->nseq; s++)
		prefix |= a->prefix[s].len > 0;
	if (prefix)
		return attn_prefix(b, a, &j, e);
	memcpy(w->start, a->seq_start, (size_t)(a->nseq + 1) * sizeof *w->start);
	memset(w->qstart, 0, (size_t)a->nseq * sizeof *w->qstart);
	attn_kernels(b, &j, a->out.data, a->out.ld);
	return 0;
}

/* ---- MoE ---- */

struct route_job {
	zp_view logits;
	int E, K;
	bool norm;
	int *sel;
	float *selw, *gap;
};

static void route_rows(void *v, int r0, int r1)
{
	struct route_job *j = v;
	for (int t = r0; t < r1; t++)
		zp_ops_route(rowf(j->logits, t), j->E, j->K, j->norm, j->sel + (size_t)t * j->K,
			     j->selw + (size_t)t * j->K, &j->gap[t]);
}

static void cpu_route(zp_backend *b, int n, int E, int K, bool norm_topk, zp_view logits,
		      int *sel, float *selw, float *gap)
{
	struct route_job j = { logits, E, K, norm_topk, sel, selw, gap };
	par_rows(b, n, route_rows, &j);
}

static void cpu_dispatch(zp_backend *b, int n, int K, int E, const int *sel, int *offs,
			 int *slot_row)
{
	memset(offs, 0, (size_t)(E + 1) * sizeof *offs);
	for (int i = 0; i < n * K; i++) {
		ZP_ASSERT(sel[i] >= 0 && sel[i] < E);
		offs[sel[i] + 1]++;
	}
	for (int e = 0; e < E; e++)
		offs[e + 1] += offs[e];
	/* offs[e] walks expert e's slots in token order: it ends at the next
	   expert's start, so shifting by one gives the starts back */
	for (int i = 0; i < n * K; i++)
		slot_row[i] = offs[sel[i]]++;
	for (int e = E; e > 0; e--)
		offs[e] = offs[e - 1];
	offs[0] = 0;
}

struct moe_job {
	int K, cols;
	const int *slot_row;
	const float *selw;
	zp_view src, dst;
	size_t row_bytes;
};

static void gather_rows(void *v, int r0, int r1)
{
	struct moe_job *j = v;
	for (int t = r0; t < r1; t++)
		for (int k = 0; k < j->K; k++)
			memcpy((char *)j->dst.data + (size_t)j->slot_row[(size_t)t * j->K + k] * j->row_bytes,
			       (const char *)j->src.data + (size_t)t * j->row_bytes, j->row_bytes);
}

static void cpu_gather(zp_backend *b, int n, int K, const int *slot_row, const void *src,
		       void *dst, size_t row_bytes)
{
	struct moe_job j = { .K = K, .slot_row = slot_row, .src = { (void *)src, 0 },
			     .dst = { dst, 0 }, .row_bytes = row_bytes };
	par_rows(b, n, gather_rows, &j);
}

static void combine_rows(void *v, int r0, int r1)
{
	struct moe_job *j = v;
	for (int t = r0; t < r1; t++) {
		float *acc = rowf(j->dst, t);
		memset(acc, 0, (size_t)j->cols * sizeof *acc);
		for (int k = 0; k < j->K; k++) {
			const float *y = rowf(j->src, j->slot_row[(size_t)t * j->K + k]);
			float w = j->selw[(size_t)t * j->K + k];
			for (int i = 0; i < j->cols; i++)
				acc[i] += y[i] * w;
		}
	}
}

static void cpu_combine(zp_backend *b, int n, int K, int cols, const int *slot_row,
			const float *selw, zp_view y, zp_view out)
{
	struct moe_job j = { K, cols, slot_row, selw, y, out, 0 };
	par_rows(b, n, combine_rows, &j);
}

/* ---- outputs ---- */

struct lp_job {
	zp_view logits;
	int V;
	const zp_lp_row *rows;
};

static void lp_task(void *v, int i, int thread)
{
	struct lp_job *j = v;
	const zp_lp_row *r = &j->rows[i];
	const float *lg = rowf(j->logits, i);
	float lse = zp_ops_logsumexp(lg, j->V);
	(void)thread;
	if (r->plp)
		*r->plp = lg[r->next] - lse;
	if (r->rank) {
		int above = 0;
		for (int x = 0; x < j->V; x++)
			above += lg[x] > lg[r->next];
		*r->rank = above + 1;
	}
	for (int c = 0; c < r->ncand; c++)
		r->cand_lp[c] = lg[r->cands[c]] - lse;
	if (r->top_k)
		zp_ops_top_k(lg, j->V, lse, r->top_k, r->top_ids, r->top_lp);
}

static void cpu_logprobs(zp_backend *b, int n, int V, zp_view logits, const zp_lp_row *rows)
{
	struct lp_job j = { logits, V, rows };
	zp_pool_run(C(b)->pool, n, lp_task, &j);
}

static void cpu_pool(zp_backend *b, int n, int cols, zp_view x, const float *w, float eps,
		     enum zp_pooling mode, bool normalize, float *out, void *work)
{
	double *acc = work;
	float *tmp = (float *)(acc + cols);
	ZP_ASSERT(n >= 1);
	if (mode == ZP_POOLING_LAST) {
		zp_ops_rmsnorm(out, rowf(x, n - 1), w, cols, eps);
	} else {
		memset(acc, 0, (size_t)cols * sizeof *acc);
		for (int p = 0; p < n; p++) {
			zp_ops_rmsnorm(tmp, rowf(x, p), w, cols, eps);
			for (int i = 0; i < cols; i++)
				acc[i] += tmp[i];
		}
		for (int i = 0; i < cols; i++)
			out[i] = (float)(acc[i] / n);
	}
	if (normalize) {
		double ss = 0;
		for (int i = 0; i < cols; i++)
			ss += (double)out[i] * out[i];
		float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
		for (int i = 0; i < cols; i++)
			out[i] *= inv;
	}
}

/* ---- the table ---- */

/* host memory is the cpu's memory: the model as loaded, shared by every
   instance */
/* every op has completed when it returns, and none fails (a broken
   invariant is an assertion, not a status) */
static int cpu_sync(zp_backend *b, zp_err *e)
{
	return 0;
}

static const zp_model *cpu_model(zp_backend *b, const zp_model *m, bool experts, zp_err *e)
{
	if (m->layout != &zp_cpu_wlayout) {
		zp_errf(e, "--device cpu: the model was packed for the %s layout, not %s",
			m->layout->name, zp_cpu_wlayout.name);
		return NULL;
	}
	if (m->fp8 && m->fp8_compute == ZP_FP8_W8A8) {
		zp_errf(e, "--device cpu: FP8 weights compute w8a16 here (the activations are not "
			"quantised), not w8a8");
		return NULL;
	}
	return m;
}

static void cpu_free(zp_backend *b)
{
	if (!b)
		return;
	zp_pool_free(C(b)->pool);
	free(C(b)->ops);
	free(b->ctx);
	free(b);
}

static const struct zp_backend_ops cpu_ops = {
	.name = "cpu",
	.free = cpu_free,
	.model = cpu_model,
	.sync = cpu_sync,
	.status = cpu_sync,
	.alloc = cpu_alloc,
	.mfree = cpu_mfree,
	.host_pin = cpu_host_pin,
	.upload = cpu_copy,
	.download = cpu_copy,
	.copy = cpu_copy,
	.copy2d = cpu_copy2d,
	.mem_info = cpu_mem_info,
	.event_new = cpu_event_new,
	.event_free = cpu_event_free,
	.event_record = cpu_event_record,
	.event_wait = cpu_event_wait,
	.event_after = cpu_event_wait,
	.queue_new = cpu_queue_new,
	.queue_free = cpu_queue_free,
	.queue_copy = cpu_queue_copy,
	.queue_record = cpu_queue_record,
	.queue_after = cpu_queue_after,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm,
	.add_bias = cpu_add_bias,
	.qk_norm_rope = cpu_qk_norm_rope,
	.residual = cpu_residual,
	.to_bf16 = cpu_to_bf16,
	.gemm = cpu_gemm,
	.expert_gemm = cpu_expert_gemm,
	.attn_work_new = cpu_attn_work_new,
	.attn_work_free = cpu_attn_work_free,
	.attention = cpu_attention,
	.route = cpu_route,
	.dispatch = cpu_dispatch,
	.gather = cpu_gather,
	.combine = cpu_combine,
	.logprobs = cpu_logprobs,
	.pool = cpu_pool,
};

zp_backend *zp_backend_cpu_new(int threads)
{
	zp_backend *b = zp_xcalloc(1, sizeof *b);
	cpu_ctx *c = zp_xcalloc(1, sizeof *c);
	c->pool = zp_pool_new(threads);
	c->threads = threads;
	c->ops = zp_xcalloc(ZP_GEMM_OPS_MAX, sizeof *c->ops);
	b->ops = &cpu_ops;
	b->ctx = c;
	return b;
}
