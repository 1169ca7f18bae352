/* model.c -- see model.h. Loading walks the layers once: check every tensor's
   name and shape, then pack it through the layout it was given (weights.h):
   this file hands rows in the checkpoint's order and knows no layout. With --random-weights
   the tensors are not read but made (random_fill.h): each has the name and
   shape the checkpoint would have, and its rows are hashed into a row buffer
   as the packing asks for them. Every read of the mapping is guarded
   (zp_st_guard): a file that shrinks during the load fails it with an error
   naming the file and tensor, never SIGBUS. The embedding, the one tensor read
   at serve time, is copied at the end: nothing reads the mapping after the
   load, so changing the files then cannot harm the server (the mapping and
   its tensor table stay for the cuda backend's file reads, gds_load.c, which
   read with pread and fall back to the host copy on a short read). */
#include "model.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "pool.h"
#include "random_fill.h"

/* Row source for packing a tensor, or several stacked / interleaved ones.
   Rows are copied out of the mapping under a guard, so a fault (the file
   shrank) is caught here, never inside the layout's packing; a faulted source
   gives zero rows from then on and the loader fails once the packing returns. */
struct rows {
	const zp_st_tensor *t[3];	/* stacked sources (q, k, v) or gate, up */
	const zp_st_tensor *s[3];	/* F8_E4M3 sources: their W_scale_inv */
	int n[3];			/* rows of each */
	int nt;
	uint16_t *rnd;			/* random weights: one row, made on demand */
	uint64_t seed;
	/* packing FP8 (fp8_prepare; freed after the pack): */
	int k, kb;			/* columns; k blocks of 128 */
	uint8_t *q[3];			/* codes quantised at load ([n][k]), or NULL:
					   the tensor's own codes */
	float *sc[3];			/* [ceil(n/128)][kb] f32 scales */
	const zp_st *st;		/* read weights: the mapping rows come from */
	void *row;			/* one row, copied from it */
	bool fault;			/* a copy faulted: err says where */
	zp_err err;
};

static const void *row_of(const zp_st_tensor *t, int r)
{
	return (const char *)t->data + (size_t)r * (size_t)t->shape[1] * zp_dtype_size(t->dtype);
}

/* Row `row` of t: from the mapping, or made (bf16) into r->rnd. */
/* Row `row` of t: copied from the mapping into r->row, or made (bf16) into r->rnd. */
static const void *row_src(struct rows *r, const zp_st_tensor *t, int row)
{
	size_t k = (size_t)t->shape[1];
	if (!r->rnd) {
		size_t bytes = k * zp_dtype_size(t->dtype);
		if (r->fault || zp_st_copy(r->st, r->row, row_of(t, row), bytes, &r->err)) {
			r->fault = true;
			memset(r->row, 0, bytes);
		}
		return r->row;
	}
	uint64_t key = zp_rf_key(r->seed, t->offset);
	for (size_t c = 0; c < k; c++)
		r->rnd[c] = zp_f32_to_bf16(zp_rf_at(key, (size_t)row * k + c));
	return r->rnd;
}

static const void *rows_get(void *vctx, int j)
{
	struct rows *r = vctx;
	for (int i = 0; i < r->nt; i++) {
		if (j < r->n[i])
			return r->q[i] ? r->q[i] + (size_t)j * r->k : row_src(r, r->t[i], j);
		j -= r->n[i];
	}
	return NULL;
}

/* Row j's block scales (weights.h zp_wsrc). */
static const void *rows_scale(void *vctx, int j)
{
	struct rows *r = vctx;
	for (int i = 0; i < r->nt; i++) {
		if (j < r->n[i])
			return r->sc[i] + (size_t)(j / ZP_FP8_BLOCK) * r->kb;
		j -= r->n[i];
	}
	return NULL;
}

/* Quantise source i (f32/bf16/f16, or made) to codes and scales, 128 rows at
   a time (zp_fp8_quantize). */
static void fp8_quantize_src(struct rows *r, int i)
{
	int n = r->n[i], k = r->k;
	float *blk = zp_xmalloc((size_t)ZP_FP8_BLOCK * k * sizeof *blk);
	const void *rp[ZP_FP8_BLOCK];
	r->q[i] = zp_xmalloc((size_t)n * k);
	for (int r0 = 0; r0 < n; r0 += ZP_FP8_BLOCK) {
		int nr = ZP_MIN(ZP_FP8_BLOCK, n - r0);
		for (int j = 0; j < nr; j++) {
			int dt = r->rnd ? ZP_DT_BF16 : (int)r->t[i]->dtype;
			zp_wrow_convert(blk + (size_t)j * k, ZP_W_F32, row_src(r, r->t[i], r0 + j),
					dt, k);
			rp[j] = blk + (size_t)j * k;
		}
		zp_fp8_quantize(rp, nr, k, ZP_DT_F32, r->q[i] + (size_t)r0 * k,
				r->sc[i] + (size_t)(r0 / ZP_FP8_BLOCK) * r->kb);
	}
	free(blk);
}

struct scales_args {
	const zp_st_tensor *t;
	size_t n;
	float *dst;
};

static int scales_read_fn(void *v)
{
	struct scales_args *a = v;
	for (size_t x = 0; x < a->n; x++)
		a->dst[x] = zp_st_elem_f32(a->t, x);
	return 0;
}

/* Make r an FP8 source for a k-column pack: the checkpoint's codes with
   their scales as f32, or the rows quantised here (--dtype fp8). */
static void fp8_prepare(struct rows *r, int k)
{
	r->k = k;
	r->kb = (k + ZP_FP8_BLOCK - 1) / ZP_FP8_BLOCK;
	for (int i = 0; i < r->nt; i++) {
		size_t ns = (size_t)((r->n[i] + ZP_FP8_BLOCK - 1) / ZP_FP8_BLOCK) * r->kb;
		r->sc[i] = zp_xmalloc(ns * sizeof *r->sc[i]);
		if (r->rnd || r->t[i]->dtype != ZP_DT_F8_E4M3) {
			fp8_quantize_src(r, i);
			continue;
		}
		struct scales_args a = { r->s[i], ns, r->sc[i] };
		if (!r->fault && zp_st_guard(r->st, scales_read_fn, &a, &r->err)) {
			r->fault = true;
			memset(r->sc[i], 0, ns * sizeof *r->sc[i]);
		}
	}
}

static void fp8_release(struct rows *r)
{
	for (int i = 0; i < r->nt; i++) {
		free(r->q[i]);
		free(r->sc[i]);
		r->q[i] = NULL;
		r->sc[i] = NULL;
	}
}

struct loader {
	zp_model *m;
	bool quant;	/* --dtype fp8: quantise plain linears at load */
	const zp_wlayout *lay;
	zp_err *e;
	char *arena;	/* NULL in the sizing pass */
	size_t used;
	zp_pool *pool;	/* packs a layer's experts in parallel */
	size_t packed_bytes; /* experts packed so far (progress) */
	double t0;
	zp_load_progress *progress;
	bool experts;	/* checking experts: their packing threads scan the values */
	bool random;		/* --random-weights: tensors made, not read */
	uint64_t seed;
	zp_st_tensor **made;	/* the made tensors of this pass (freed after it) */
	size_t nmade, capmade;
};

static void *carve(struct loader *ld, size_t bytes)
{
	void *p = ld->arena ? ld->arena + ld->used : NULL;
	ld->used += ZP_ALIGN_UP(bytes, 64);
	return p;
}

/* The first element of a float exponent field (Inf and NaN alike) in p[0..n),
   or -1. Chunks are ORed whole so the compiler vectorises the test (a pass
   at memory speed); only a chunk with a hit is walked again for its index. */
#define NONFINITE_AT(T, p, n, mask)                                               \
	do {                                                                      \
		for (size_t c0 = 0; c0 < (n); c0 += 4096) {                       \
			size_t c1 = ZP_MIN((size_t)(n), c0 + 4096);               \
			T acc = 0;                                                \
			for (size_t i = c0; i < c1; i++)                          \
				acc |= (T)(((p)[i] & (mask)) == (mask));          \
			for (size_t i = c0; acc && i < c1; i++)                   \
				if (((p)[i] & (mask)) == (mask))                  \
					return (int64_t)i;                        \
		}                                                                 \
	} while (0)

int64_t zp_model_nonfinite_at(const zp_st_tensor *t)
{
	size_t n = (size_t)(t->nbytes / zp_dtype_size(t->dtype));
	if (t->dtype == ZP_DT_F32)
		NONFINITE_AT(uint32_t, (const uint32_t *)t->data, n, 0x7f800000u);
	else if (t->dtype == ZP_DT_BF16)
		NONFINITE_AT(uint16_t, (const uint16_t *)t->data, n, 0x7f80u);
	else if (t->dtype == ZP_DT_F16)
		NONFINITE_AT(uint16_t, (const uint16_t *)t->data, n, 0x7c00u);
	else if (t->dtype == ZP_DT_F64)
		NONFINITE_AT(uint64_t, (const uint64_t *)t->data, n, 0x7ff0000000000000ull);
	else if (t->dtype == ZP_DT_F8_E4M3) /* e4m3fn: no Inf; 0x7f, 0xff are NaN */
		NONFINITE_AT(uint8_t, (const uint8_t *)t->data, n, 0x7fu);
	return -1;
}
#undef NONFINITE_AT

static int nonfinite_err(zp_err *e, const zp_st_tensor *t, int64_t at)
{
	return zp_errf(e, "tensor %s: element %lld is not finite (NaN or Inf): the checkpoint "
		       "is damaged", t->name, (long long)at);
}

struct scan {
	const zp_st_tensor *t;
	int64_t at;
};

static int scan_fn(void *v)
{
	struct scan *s = v;
	s->at = zp_model_nonfinite_at(s->t);
	return 0;
}

/* t's first non-finite index into *at (or -1), under a guard: -1 with e set
   when the file shrank under the scan. */
static int nonfinite_scan(const zp_st *st, const zp_st_tensor *t, int64_t *at, zp_err *e)
{
	struct scan s = { t, -1 };
	int rc = zp_st_guard(st, scan_fn, &s, e);
	*at = s.at;
	return rc;
}

/* A made tensor (random weights): the checkpoint's name, shape and bf16
   dtype; offset holds its random_fill.h id, data is NULL. */
static zp_st_tensor *made_tensor(const char *name, int ndim, int64_t d0, int64_t d1)
{
	zp_st_tensor *t = zp_xcalloc(1, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->dtype = ZP_DT_BF16;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = ndim > 1 ? d1 : 0;
	t->offset = zp_rf_tensor_id(name);
	return t;
}

/* Pass 2 reads every value it packs: a non-finite one fails the load there
   (pass 1 reads headers only). Experts are scanned by their packing threads.
   Random weights: the tensor is made (no values to scan). */
static int get(struct loader *ld, const char *name, int ndim, int64_t d0, int64_t d1,
	       const zp_st_tensor **t)
{
	int64_t shape[2] = { d0, d1 }, at;
	if (ld->random) {
		if (ld->nmade == ld->capmade) {
			size_t cap = ld->capmade ? 2 * ld->capmade : 1024;
			zp_st_tensor **made = zp_xmalloc(cap * sizeof *made);
			if (ld->nmade)
				memcpy(made, ld->made, ld->nmade * sizeof *made);
			free(ld->made);
			ld->made = made;
			ld->capmade = cap;
		}
		*t = ld->made[ld->nmade++] = made_tensor(name, ndim, d0, d1);
		return 0;
	}
	if (zp_st_get(&ld->m->st, name, ndim, shape, t, ld->e))
		return -1;
	if (!ld->arena)
		return 0;
	zp_st_fault_truncate(&ld->m->st, *t);
	if (!ld->experts && (nonfinite_scan(&ld->m->st, *t, &at, ld->e) || at >= 0))
		return at >= 0 ? nonfinite_err(ld->e, *t, at) : -1;
	return 0;
}

/* A linear layer's weight [n, k]: F8_E4M3 codes (an FP8 checkpoint) bring
   their W_scale_inv [ceil(n/128), ceil(k/128)] (F32 or BF16); pass 2 scans
   both (codes for NaN, scales for NaN and Inf). */
static int lin_get(struct loader *ld, const char *name, int n, int k, const zp_st_tensor **t,
		   const zp_st_tensor **sc)
{
	int64_t shape[2] = { n, k }, at;
	char sn[ZP_ST_NAME_MAX + 16];
	int b = ZP_FP8_BLOCK;

	*sc = NULL;
	if (ld->random)
		return get(ld, name, 2, n, k, t);
	if (zp_st_get_linear(&ld->m->st, name, 2, shape, t, ld->e))
		return -1;
	if ((*t)->dtype == ZP_DT_F8_E4M3) {
		if (!ld->m->cfg.fp8)
			return zp_errf(ld->e, "tensor %s: dtype F8_E4M3, but config.json has no fp8 "
				       "quantization_config (its block scales are unknown)", name);
		snprintf(sn, sizeof sn, "%s_scale_inv", name);
		if (get(ld, sn, 2, (n + b - 1) / b, (k + b - 1) / b, sc))
			return -1;
	}
	if (!ld->arena)
		return 0;
	zp_st_fault_truncate(&ld->m->st, *t);
	if (!ld->experts && (nonfinite_scan(&ld->m->st, *t, &at, ld->e) || at >= 0))
		return at >= 0 ? nonfinite_err(ld->e, *t, at) : -1;
	return 0;
}

/* How a group of sources (one matrix) is stored: FP8 where the checkpoint's
   codes are (same_dtype keeps a group uniform) or where the load quantises. */
static enum zp_wstore store_of(const struct loader *ld, const struct rows *r)
{
	return ld->quant || r->t[0]->dtype == ZP_DT_F8_E4M3 ? ZP_WS_FP8 : ZP_WS_PLAIN;
}

static void made_free(struct loader *ld)
{
	for (size_t i = 0; i < ld->nmade; i++)
		free(ld->made[i]);
	free(ld->made);
	ld->made = NULL;
	ld->nmade = ld->capmade = 0;
}

/* Check a vector tensor and, when dst is given, convert it to f32 there. */
static int vec_fill(struct loader *ld, const char *name, int n, float *dst)
{
	const zp_st_tensor *t;
	if (get(ld, name, 1, n, 0, &t))
		return -1;
	if (dst && !ld->random) {
		struct scales_args a = { t, (size_t)n, dst };
		return zp_st_guard(&ld->m->st, scales_read_fn, &a, ld->e);
	}
	for (int i = 0; dst && i < n; i++)
		dst[i] = zp_rf_is_norm(name) ? 1.0f : zp_rf_value(ld->seed, t->offset, (size_t)i);
	return 0;
}

static int vec(struct loader *ld, const char *name, int n, float **out)
{
	*out = carve(ld, (size_t)n * sizeof **out);
	return vec_fill(ld, name, n, *out);
}

/* Pack rows (already checked) through the layout into w, from ld's arena or
   from dst, stored as st (FP8: the sources' codes and scales, or quantised
   here). -1 when the file shrank under a row (r->err says where). */
static int pack(struct loader *ld, zp_wmat *w, void *dst, enum zp_wtype type,
		enum zp_wstore st, int n, int k, enum zp_wkind kind, struct rows *r)
{
	size_t bytes = ld->lay->bytes(type, st, n, k, kind);
	zp_wsrc src = { r->t[0]->dtype, rows_get, rows_scale, r };
	if (!dst)
		dst = carve(ld, bytes);
	if (!dst)
		return 0;
	/* a buffer per call: experts are packed on pool threads */
	if (ld->random) {
		r->rnd = zp_xmalloc((size_t)k * sizeof *r->rnd);
		r->seed = ld->seed;
	} else {
		r->st = &ld->m->st;
		r->row = zp_xmalloc((size_t)k * zp_dtype_size(r->t[0]->dtype));
	}
	if (st == ZP_WS_FP8) {
		fp8_prepare(r, k);
		src.dt = ZP_DT_F8_E4M3;
	}
	ld->lay->pack(w, dst, type, st, n, k, kind, &src);
	fp8_release(r);
	free(r->rnd);
	free(r->row);
	r->rnd = r->row = NULL;
	return r->fault ? -1 : 0;
}

/* pack on the loading thread: a fault's message goes to ld->e */
static int pack_main(struct loader *ld, zp_wmat *w, enum zp_wtype type, enum zp_wstore st,
		     int n, int k, enum zp_wkind kind, struct rows *r)
{
	if (pack(ld, w, NULL, type, st, n, k, kind, r)) {
		*ld->e = r->err;
		return -1;
	}
	return 0;
}

/* A matrix of one tensor that is never quantised (lm_head, routers). */
static int mat(struct loader *ld, zp_wmat *w, enum zp_wtype type, const char *name, int n,
	       int k)
{
	struct rows r = { .nt = 1, .n = { n } };
	if (get(ld, name, 2, n, k, &r.t[0]))
		return -1;
	return pack_main(ld, w, type, ZP_WS_PLAIN, n, k, ZP_WK_PLAIN, &r);
}

/* A linear layer of one tensor (o_proj). */
static int lin(struct loader *ld, zp_wmat *w, const char *name, int n, int k)
{
	struct rows r = { .nt = 1, .n = { n } };
	if (lin_get(ld, name, n, k, &r.t[0], &r.s[0]))
		return -1;
	return pack_main(ld, w, ld->m->wtype, store_of(ld, &r), n, k, ZP_WK_PLAIN, &r);
}

/* Stacked or interleaved sources must share one dtype to be packed together. */
static int same_dtype(struct loader *ld, struct rows *r)
{
	for (int i = 1; i < r->nt; i++)
		if (r->t[i]->dtype != r->t[0]->dtype)
			return zp_errf(ld->e, "tensors %s and %s: mixed dtypes %s and %s",
				       r->t[0]->name, r->t[i]->name, zp_dtype_name(r->t[0]->dtype),
				       zp_dtype_name(r->t[i]->dtype));
	return 0;
}

/* gate/up/down of one MLP (dense or one expert): check names and shapes. */
struct swiglu_src {
	struct rows gu, down;
	const zp_st_tensor *bad;	/* a tensor with a non-finite value (pass 2) */
	int64_t bad_at;
	bool fault;			/* the file shrank under a read: err says where */
	zp_err err;
};

static int swiglu_check(struct loader *ld, const char *pfx, int f, struct swiglu_src *s)
{
	const zp_config *c = &ld->m->cfg;
	char n1[ZP_ST_NAME_MAX], n2[ZP_ST_NAME_MAX];

	memset(s, 0, sizeof *s);
	s->gu = (struct rows){ .nt = 2, .n = { f, f } };	/* gate rows, then up rows */
	s->down = (struct rows){ .nt = 1, .n = { c->hidden } };
	snprintf(n1, sizeof n1, "%s.gate_proj.weight", pfx);
	snprintf(n2, sizeof n2, "%s.up_proj.weight", pfx);
	if (lin_get(ld, n1, f, c->hidden, &s->gu.t[0], &s->gu.s[0]) ||
	    lin_get(ld, n2, f, c->hidden, &s->gu.t[1], &s->gu.s[1]) || same_dtype(ld, &s->gu))
		return -1;
	snprintf(n1, sizeof n1, "%s.down_proj.weight", pfx);
	return lin_get(ld, n1, c->hidden, f, &s->down.t[0], &s->down.s[0]);
}

/* Every expert of the model is stored alike (one block size): FP8 in an FP8
   checkpoint or when quantising at load. */
static int expert_check(struct loader *ld, const struct swiglu_src *s)
{
	const zp_st_tensor *ts[3] = { s->gu.t[0], s->gu.t[1], s->down.t[0] };
	for (int i = 0; i < 3; i++)
		if (store_of(ld, i < 2 ? &s->gu : &s->down) != ld->m->expert_store)
			return zp_errf(ld->e, "tensor %s: dtype %s, but every expert of an fp8 "
				       "checkpoint must be F8_E4M3 (modules_to_not_convert may not "
				       "name experts)", ts[i]->name, zp_dtype_name(ts[i]->dtype));
	return 0;
}

size_t zp_model_expert_bytes(const zp_config *c, enum zp_wtype wtype, enum zp_wstore store,
			     const zp_wlayout *lay)
{
	return lay->bytes(wtype, store, 2 * c->moe_ffn, c->hidden, ZP_WK_SWIGLU) +
	       lay->bytes(wtype, store, c->hidden, c->moe_ffn, ZP_WK_PLAIN);
}

static size_t gate_up_bytes(const struct loader *ld, int f)
{
	return ld->lay->bytes(ld->m->wtype, ld->m->expert_store, 2 * f, ld->m->cfg.hidden,
			      ZP_WK_SWIGLU);
}

/* -1 with s->fault and s->err set when the file shrank under a row */
static int swiglu_pack(struct loader *ld, struct swiglu_src *s, int f, zp_wmat *gu,
		       void *gu_dst, zp_wmat *down, void *down_dst)
{
	struct rows *bad = NULL;
	if (pack(ld, gu, gu_dst, ld->m->wtype, store_of(ld, &s->gu), 2 * f, ld->m->cfg.hidden,
		 ZP_WK_SWIGLU, &s->gu))
		bad = &s->gu;
	else if (pack(ld, down, down_dst, ld->m->wtype, store_of(ld, &s->down),
		      ld->m->cfg.hidden, f, ZP_WK_PLAIN, &s->down))
		bad = &s->down;
	if (bad) {
		s->fault = true;
		s->err = bad->err;
	}
	return bad ? -1 : 0;
}

struct expert_job {
	struct loader *ld;
	zp_layer *L;
	struct swiglu_src *src;	/* [E], checked */
	size_t gu_bytes;
};

static void pack_expert(void *v, int x, int thread)
{
	struct expert_job *j = v;
	char *base = (char *)j->L->experts + (size_t)x * j->L->expert_bytes;
	struct swiglu_src *src = &j->src[x];
	const zp_st_tensor *ts[6] = { src->gu.t[0], src->gu.t[1], src->down.t[0],
				      src->gu.s[0], src->gu.s[1], src->down.s[0] };
	(void)thread;
	for (int i = 0; i < 6; i++) {
		if (!ts[i])
			continue;
		if (nonfinite_scan(&j->ld->m->st, ts[i], &src->bad_at, &src->err)) {
			src->fault = true;
			return;
		}
		if (src->bad_at >= 0) {
			src->bad = ts[i];
			return;
		}
	}
	(void)swiglu_pack(j->ld, &j->src[x], j->ld->m->cfg.moe_ffn, &j->L->exp_gate_up[x], base,
		    &j->L->exp_down[x], base + j->gu_bytes);
}

static int load_experts(struct loader *ld, zp_layer *L, int l)
{
	const zp_config *c = &ld->m->cfg;
	char pfx[ZP_ST_NAME_MAX];
	size_t gu_bytes = gate_up_bytes(ld, c->moe_ffn);
	struct swiglu_src *src = zp_xcalloc((size_t)c->experts, sizeof *src);
	struct expert_job job = { ld, L, src, gu_bytes };
	int rc = 0;

	L->expert_bytes = zp_model_expert_bytes(c, ld->m->wtype, ld->m->expert_store, ld->lay);
	ZP_ASSERT(L->expert_bytes > gu_bytes);
	L->experts_bytes = L->expert_bytes * (size_t)c->experts;
	if (ld->arena) {
		L->experts = zp_xalloc_aligned(L->experts_bytes);
		L->exp_gate_up = zp_xcalloc((size_t)c->experts, sizeof *L->exp_gate_up);
		L->exp_down = zp_xcalloc((size_t)c->experts, sizeof *L->exp_down);
	}
	ld->experts = true;
	for (int x = 0; x < c->experts && !rc; x++) {
		snprintf(pfx, sizeof pfx, "model.layers.%d.mlp.experts.%d", l, x);
		rc = swiglu_check(ld, pfx, c->moe_ffn, &src[x]) || expert_check(ld, &src[x]);
	}
	ld->experts = false;
	if (!rc && ld->arena) /* packing writes disjoint expert slots: no locks */
		zp_pool_run(ld->pool, c->experts, pack_expert, &job);
	for (int x = 0; x < c->experts && !rc && ld->arena; x++)
		if (src[x].fault) {
			*ld->e = src[x].err;
			rc = -1;
		} else if (src[x].bad) {
			rc = nonfinite_err(ld->e, src[x].bad, src[x].bad_at);
		}
	free(src);
	return rc;
}

static int load_layer(struct loader *ld, int l)
{
	zp_model *m = ld->m;
	const zp_config *c = &m->cfg;
	zp_layer *L = &m->layers[l];
	char n[ZP_ST_NAME_MAX], pfx[64];
	int qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
	struct rows r = { .nt = 3, .n = { qd, kvd, kvd } };
	const int H = c->hidden;

	snprintf(pfx, sizeof pfx, "model.layers.%d", l);
#define NAME(s) (snprintf(n, sizeof n, "%s.%s", pfx, s), n)
	if (vec(ld, NAME("input_layernorm.weight"), c->hidden, &L->attn_norm) ||
	    vec(ld, NAME("post_attention_layernorm.weight"), c->hidden, &L->ffn_norm) ||
	    vec(ld, NAME("self_attn.q_norm.weight"), c->head_dim, &L->q_norm) ||
	    vec(ld, NAME("self_attn.k_norm.weight"), c->head_dim, &L->k_norm) ||
	    lin_get(ld, NAME("self_attn.q_proj.weight"), qd, H, &r.t[0], &r.s[0]) ||
	    lin_get(ld, NAME("self_attn.k_proj.weight"), kvd, H, &r.t[1], &r.s[1]) ||
	    lin_get(ld, NAME("self_attn.v_proj.weight"), kvd, H, &r.t[2], &r.s[2]) ||
	    same_dtype(ld, &r) || lin(ld, &L->wo, NAME("self_attn.o_proj.weight"), H, qd))
		return -1;
	if (pack_main(ld, &L->wqkv, m->wtype, store_of(ld, &r), qd + 2 * kvd, H, ZP_WK_PLAIN, &r))
		return -1;
	L->bqkv = L->bo = NULL;
	if (c->attention_bias) {
		/* one vector [q | k | v], like the packed wqkv rows */
		L->bqkv = carve(ld, (size_t)(qd + 2 * kvd) * sizeof *L->bqkv);
		if (vec_fill(ld, NAME("self_attn.q_proj.bias"), qd, L->bqkv) ||
		    vec_fill(ld, NAME("self_attn.k_proj.bias"), kvd, L->bqkv ? L->bqkv + qd : NULL) ||
		    vec_fill(ld, NAME("self_attn.v_proj.bias"), kvd,
			     L->bqkv ? L->bqkv + qd + kvd : NULL) ||
		    vec(ld, NAME("self_attn.o_proj.bias"), c->hidden, &L->bo))
			return -1;
	}
	L->sparse = c->sparse[l];
	if (!L->sparse) {
		struct swiglu_src s;
		snprintf(n, sizeof n, "%s.mlp", pfx);
		if (swiglu_check(ld, n, c->ffn, &s))
			return -1;
		if (swiglu_pack(ld, &s, c->ffn, &L->w_gate_up, NULL, &L->w_down, NULL)) {
			*ld->e = s.err;
			return -1;
		}
		return 0;
	}
	if (mat(ld, &L->router, ZP_W_F32, NAME("mlp.gate.weight"), c->experts, c->hidden))
		return -1;
#undef NAME
	return load_experts(ld, L, l);
}

/* What was packed now lives in our layout: let the kernel drop the mapped pages
   (clean; a later touch, as an embedding row lookup, refaults from the file), so
   the peak is the packed weights plus about one layer of source. */
static void drop_source_pages(zp_model *m)
{
	for (int i = 0; i < m->st.nfiles; i++)
		madvise(m->st.files[i].map, m->st.files[i].size, MADV_DONTNEED);
}

static int load_all(struct loader *ld)
{
	zp_model *m = ld->m;
	const zp_config *c = &m->cfg;
	const zp_st_tensor *t;
	const char *head = c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";

	ld->used = 0;
	if (get(ld, "model.embed_tokens.weight", 2, c->vocab, c->hidden, &m->embed) ||
	    vec(ld, "model.norm.weight", c->hidden, &m->final_norm) ||
	    mat(ld, &m->lm_head, m->wtype, head, c->vocab, c->hidden))
		return -1;
	if (c->tie_embeddings && zp_st_find(&m->st, "lm_head.weight") &&
	    get(ld, "lm_head.weight", 2, c->vocab, c->hidden, &t))
		return -1;
	for (int l = 0; l < c->layers; l++) {
		if (load_layer(ld, l))
			return -1;
		if (ld->arena) {
			char label[96];
			ld->packed_bytes += m->layers[l].experts_bytes;
			double gb = (double)(ld->used + ld->packed_bytes) / 1e9;
			snprintf(label, sizeof label, "loading: %.2f GB packed, %.2f GB/s, layer", gb,
				 gb / ZP_MAX(zp_now_s() - ld->t0, 1e-6));
			drop_source_pages(m);
			zp_progress(label, (size_t)l + 1, (size_t)c->layers);
			if (ld->progress) {
				atomic_store(&ld->progress->layers, c->layers);
				atomic_store(&ld->progress->layers_done, l + 1);
				if (atomic_load(&ld->progress->cancel))
					return zp_errf(ld->e, "model load cancelled after layer %d of "
						       "%d", l + 1, c->layers);
			}
		}
	}
	return 0;
}

/* One pass of load_all; the made tensors (random weights) live through it only. */
static int load_pass(struct loader *ld)
{
	int rc = load_all(ld);
	ld->m->embed = NULL;	/* made or copied, for the model's lifetime, at the end */
	made_free(ld);
	return rc;
}

/* The embedding, the one tensor read while serving (row by row), becomes the
   model's own copy in the checkpoint's dtype (V x H x 2 bytes for bf16: 1.2 GB
   for Qwen3-235B, 0.3% of its weights): a checkpoint truncated or rewritten
   after the load then cannot fault an executor (SIGBUS) or change its answers.
   Random weights: a made tensor (its rows hashed on demand). */
static int embed_own(zp_model *m, zp_err *e)
{
	const char *name = "model.embed_tokens.weight";
	if (m->random) {
		m->embed = made_tensor(name, 2, m->cfg.vocab, m->cfg.hidden);
		return 0;
	}
	const zp_st_tensor *src = zp_st_find(&m->st, name);
	ZP_ASSERT(src);	/* checked by both passes */
	zp_st_tensor *t = zp_xmalloc(sizeof *t + src->nbytes);
	*t = *src;
	t->data = t + 1;
	if (zp_st_copy(&m->st, t + 1, src->data, src->nbytes, e)) {
		free(t);
		return -1;
	}
	m->embed = t;
	return 0;
}

/* FP8 storage needs a layout (and backend) that computes it. */
static int fp8_setup(struct loader *ld, const zp_load_opts *o, zp_err *e)
{
	zp_model *m = ld->m;
	ld->quant = o->fp8 || (ld->random && m->cfg.fp8);
	m->fp8 = ld->quant || m->cfg.fp8;
	m->fp8_compute = o->fp8_compute;
	m->expert_store = m->fp8 ? ZP_WS_FP8 : ZP_WS_PLAIN;
	if (m->fp8 && !ld->lay->fp8)
		return zp_errf(e, "%s: FP8 weights (%s) are not supported by the %s weight layout "
			       "yet: run it on the cpu device, or load a bf16 checkpoint",
			       m->cfg.fp8 ? "fp8 checkpoint" : "--dtype fp8",
			       m->cfg.fp8 ? "quantization_config" : "quantised at load",
			       ld->lay->name);
	return 0;
}

static int model_load(zp_model *m, const char *dir, const zp_load_opts *o, const zp_wlayout *lay,
		      int threads, zp_load_progress *progress, zp_err *e)
{
	struct loader ld = { .m = m, .lay = lay, .e = e, .progress = progress,
			     .random = o->random, .seed = o->seed };
	double t0 = zp_now_s();

	memset(m, 0, sizeof *m);
	ZP_ASSERT(o->wtype == ZP_W_F32 || o->wtype == ZP_W_BF16);
	m->wtype = o->wtype;
	m->layout = lay;
	m->random = ld.random;
	m->seed = ld.seed;
	if (zp_config_load(&m->cfg, dir, e) || fp8_setup(&ld, o, e) ||
	    (!ld.random && zp_st_open_dir(&m->st, dir, e)))
		return -1;
	m->layers = zp_xcalloc((size_t)m->cfg.layers, sizeof *m->layers);
	/* Pass 1 checks every tensor and sizes the arena; pass 2 packs. */
	if (load_pass(&ld)) {
		zp_model_free(m);
		return -1;
	}
	m->arena_bytes = ld.used;
	m->arena = ld.arena = zp_xalloc_aligned(ld.used);
	ld.pool = zp_pool_new(threads);
	ld.t0 = zp_now_s();
	/* pass 1 checked everything but the values: a non-finite one, or a
	   cancel, fails here */
	int rc = load_pass(&ld);
	zp_pool_free(ld.pool);
	if (!rc)
		rc = embed_own(m, e);
	if (rc) {
		zp_model_free(m);
		return -1;
	}
	ZP_ASSERT(ld.used == m->arena_bytes);
	for (int l = 0; l < m->cfg.layers; l++)
		m->expert_bytes_total += m->layers[l].experts_bytes;
	drop_source_pages(m);
	zp_log(ZP_LOG_INFO, "msg=\"model loaded\" dir=%s layers=%d experts=%d dtype=%s "
	       "weights=%s layout=%s dense_bytes=%zu expert_bytes=%zu load_s=%.2f %s", dir,
	       m->cfg.layers, m->cfg.experts, m->wtype == ZP_W_F32 ? "fp32" : "bf16",
	       !m->fp8 ? "as-compute" : ld.quant ? "fp8-quantised-at-load" : "fp8", lay->name,
	       m->arena_bytes,
	       m->expert_bytes_total, zp_now_s() - t0,
	       ld.random ? "weights=random" : "values=finite");
	return 0;
}

int zp_model_load(zp_model *m, const char *dir, enum zp_wtype wtype, const zp_wlayout *lay,
		  int threads, zp_load_progress *progress, zp_err *e)
{
	zp_load_opts o = { .wtype = wtype };
	return model_load(m, dir, &o, lay, threads, progress, e);
}

int zp_model_load_random(zp_model *m, const char *dir, enum zp_wtype wtype,
			 const zp_wlayout *lay, int threads, uint64_t seed,
			 zp_load_progress *progress, zp_err *e)
{
	zp_load_opts o = { .wtype = wtype, .random = true, .seed = seed };
	return model_load(m, dir, &o, lay, threads, progress, e);
}

int zp_model_load_opts(zp_model *m, const char *dir, const zp_load_opts *o,
		       const zp_wlayout *lay, int threads, zp_load_progress *progress, zp_err *e)
{
	return model_load(m, dir, o, lay, threads, progress, e);
}

zp_load_opts zp_load_opts_of(int dtype, long random_seed)
{
	ZP_ASSERT(dtype == ZP_DTYPE_FP32 || dtype == ZP_DTYPE_BF16 || dtype == ZP_DTYPE_FP8);
	return (zp_load_opts){ .wtype = dtype == ZP_DTYPE_FP32 ? ZP_W_F32 : ZP_W_BF16,
			       .fp8 = dtype == ZP_DTYPE_FP8, .random = random_seed >= 0,
			       .seed = random_seed >= 0 ? (uint64_t)random_seed : 0 };
}

const char *zp_model_dtype_name(const zp_model *m)
{
	if (m->wtype == ZP_W_F32)
		return m->fp8 ? "fp32/fp8" : "fp32";
	return m->fp8 ? "bf16/fp8" : "bf16";
}

void zp_model_drop_experts(zp_model *m)
{
	for (int l = 0; l < m->cfg.layers; l++) {
		zp_layer *L = &m->layers[l];
		if (!L->experts)
			continue;
		zp_free_aligned(L->experts);
		L->experts = NULL;
		for (int e = 0; e < m->cfg.experts; e++)
			L->exp_gate_up[e].data = L->exp_down[e].data = NULL;
	}
	m->expert_bytes_total = 0;
}

void zp_model_free(zp_model *m)
{
	if (m->layers)
		for (int l = 0; l < m->cfg.layers; l++) {
			zp_free_aligned(m->layers[l].experts);
			free(m->layers[l].exp_gate_up);
			free(m->layers[l].exp_down);
		}
	free(m->layers);
	free((void *)m->embed);	/* owned once loaded (NULL before) */
	zp_free_aligned(m->arena);
	zp_st_free(&m->st);
	memset(m, 0, sizeof *m);
}

void zp_model_embed(const zp_model *m, int tok, float *out)
{
	size_t H = (size_t)m->cfg.hidden;
	ZP_ASSERT(tok >= 0 && tok < m->cfg.vocab);
	if (m->random) {	/* bf16 values, as a bf16 checkpoint's */
		for (size_t i = 0; i < H; i++)
			out[i] = zp_bf16_to_f32(zp_f32_to_bf16(
				zp_rf_value(m->seed, m->embed->offset, (size_t)tok * H + i)));
		return;
	}
	for (size_t i = 0; i < H; i++)
		out[i] = zp_st_elem_f32(m->embed, (size_t)tok * H + i);
}
