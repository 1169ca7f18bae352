/* model.c -- see model.h. Loading walks the layers once: check every tensor's
   name and shape, then pack it into the compute layout. */
#include "model.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "pool.h"

/* Row source for packing a tensor, or several stacked / interleaved ones. */
struct rows {
	const zp_st_tensor *t[3];	/* stacked sources (q, k, v) or gate, up */
	int n[3];			/* rows of each */
	int nt;
	bool interleave16;		/* gate/up by 16 rows */
};

static const void *row_of(const zp_st_tensor *t, int r)
{
	return (const char *)t->data + (size_t)r * (size_t)t->shape[1] * zp_dtype_size(t->dtype);
}

static const void *rows_get(void *vctx, int j)
{
	struct rows *r = vctx;
	if (r->interleave16) {
		int p = j / 32, c = j % 32, src = c / 16, row = p * 16 + c % 16;
		return row < r->n[src] ? row_of(r->t[src], row) : NULL;
	}
	for (int i = 0; i < r->nt; i++) {
		if (j < r->n[i])
			return row_of(r->t[i], j);
		j -= r->n[i];
	}
	return NULL;
}

struct loader {
	zp_model *m;
	zp_err *e;
	char *arena;	/* NULL in the sizing pass */
	size_t used;
	zp_pool *pool;	/* packs a layer's experts in parallel */
	size_t packed_bytes; /* experts packed so far (progress) */
	double t0;
	zp_load_progress *progress;
	bool experts;	/* checking experts: their packing threads scan the values */
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
	return -1;
}
#undef NONFINITE_AT

static int nonfinite_err(zp_err *e, const zp_st_tensor *t, int64_t at)
{
	return zp_errf(e, "tensor %s: element %lld is not finite (NaN or Inf): the checkpoint "
		       "is damaged", t->name, (long long)at);
}

/* Pass 2 reads every value it packs: a non-finite one fails the load there
   (pass 1 reads headers only). Experts are scanned by their packing threads. */
static int get(struct loader *ld, const char *name, int ndim, int64_t d0, int64_t d1,
	       const zp_st_tensor **t)
{
	int64_t shape[2] = { d0, d1 }, at;
	if (zp_st_get(&ld->m->st, name, ndim, shape, t, ld->e))
		return -1;
	if (ld->arena && !ld->experts && (at = zp_model_nonfinite_at(*t)) >= 0)
		return nonfinite_err(ld->e, *t, at);
	return 0;
}

/* Check a vector tensor and, when dst is given, convert it to f32 there. */
static int vec_fill(struct loader *ld, const char *name, int n, float *dst)
{
	const zp_st_tensor *t;
	if (get(ld, name, 1, n, 0, &t))
		return -1;
	if (dst)
		for (int i = 0; i < n; i++)
			dst[i] = zp_st_elem_f32(t, (size_t)i);
	return 0;
}

static int vec(struct loader *ld, const char *name, int n, float **out)
{
	*out = carve(ld, (size_t)n * sizeof **out);
	return vec_fill(ld, name, n, *out);
}

/* Pack rows (already checked) into w, from ld's arena or from dst. */
static void pack(struct loader *ld, zp_wmat *w, void *dst, enum zp_wtype type, int n, int k,
		 struct rows *r)
{
	size_t bytes = zp_wmat_bytes(type, n, k);
	if (!dst)
		dst = carve(ld, bytes);
	if (dst)
		zp_wmat_pack(w, dst, type, n, k, r->t[0]->dtype, rows_get, r);
}

static int mat(struct loader *ld, zp_wmat *w, enum zp_wtype type, const char *name, int n,
	       int k)
{
	struct rows r = { .nt = 1, .n = { n } };
	if (get(ld, name, 2, n, k, &r.t[0]))
		return -1;
	pack(ld, w, NULL, type, n, k, &r);
	return 0;
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
};

static int swiglu_check(struct loader *ld, const char *pfx, int f, struct swiglu_src *s)
{
	const zp_config *c = &ld->m->cfg;
	char n1[ZP_ST_NAME_MAX], n2[ZP_ST_NAME_MAX];

	memset(s, 0, sizeof *s);
	s->gu = (struct rows){ .nt = 2, .n = { f, f }, .interleave16 = true };
	s->down = (struct rows){ .nt = 1, .n = { c->hidden } };
	snprintf(n1, sizeof n1, "%s.gate_proj.weight", pfx);
	snprintf(n2, sizeof n2, "%s.up_proj.weight", pfx);
	if (get(ld, n1, 2, f, c->hidden, &s->gu.t[0]) ||
	    get(ld, n2, 2, f, c->hidden, &s->gu.t[1]) || same_dtype(ld, &s->gu))
		return -1;
	snprintf(n1, sizeof n1, "%s.down_proj.weight", pfx);
	return get(ld, n1, 2, c->hidden, f, &s->down.t[0]);
}

/* 2 * round_up(F, 16) gate/up outputs: each panel = 16 gate + 16 up columns. */
size_t zp_model_expert_bytes(const zp_config *c, enum zp_wtype wtype)
{
	return zp_wmat_bytes(wtype, 2 * ZP_ALIGN_UP(c->moe_ffn, 16), c->hidden) +
	       zp_wmat_bytes(wtype, c->hidden, c->moe_ffn);
}

static size_t gate_up_bytes(const zp_model *m, int f)
{
	return zp_wmat_bytes(m->wtype, 2 * ZP_ALIGN_UP(f, 16), m->cfg.hidden);
}

static void swiglu_pack(struct loader *ld, struct swiglu_src *s, int f, zp_wmat *gu,
			void *gu_dst, zp_wmat *down, void *down_dst)
{
	pack(ld, gu, gu_dst, ld->m->wtype, 2 * ZP_ALIGN_UP(f, 16), ld->m->cfg.hidden, &s->gu);
	pack(ld, down, down_dst, ld->m->wtype, ld->m->cfg.hidden, f, &s->down);
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
	const zp_st_tensor *ts[3] = { src->gu.t[0], src->gu.t[1], src->down.t[0] };
	(void)thread;
	for (int i = 0; i < 3; i++)
		if ((src->bad_at = zp_model_nonfinite_at(ts[i])) >= 0) {
			src->bad = ts[i];
			return;
		}
	swiglu_pack(j->ld, &j->src[x], j->ld->m->cfg.moe_ffn, &j->L->exp_gate_up[x], base,
		    &j->L->exp_down[x], base + j->gu_bytes);
}

static int load_experts(struct loader *ld, zp_layer *L, int l)
{
	const zp_config *c = &ld->m->cfg;
	char pfx[ZP_ST_NAME_MAX];
	size_t gu_bytes = gate_up_bytes(ld->m, c->moe_ffn);
	struct swiglu_src *src = zp_xcalloc((size_t)c->experts, sizeof *src);
	struct expert_job job = { ld, L, src, gu_bytes };
	int rc = 0;

	L->expert_bytes = zp_model_expert_bytes(c, ld->m->wtype);
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
		rc = swiglu_check(ld, pfx, c->moe_ffn, &src[x]);
	}
	ld->experts = false;
	if (!rc && ld->arena) /* packing writes disjoint expert slots: no locks */
		zp_pool_run(ld->pool, c->experts, pack_expert, &job);
	for (int x = 0; x < c->experts && !rc && ld->arena; x++)
		if (src[x].bad)
			rc = nonfinite_err(ld->e, src[x].bad, src[x].bad_at);
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

	snprintf(pfx, sizeof pfx, "model.layers.%d", l);
#define NAME(s) (snprintf(n, sizeof n, "%s.%s", pfx, s), n)
	if (vec(ld, NAME("input_layernorm.weight"), c->hidden, &L->attn_norm) ||
	    vec(ld, NAME("post_attention_layernorm.weight"), c->hidden, &L->ffn_norm) ||
	    vec(ld, NAME("self_attn.q_norm.weight"), c->head_dim, &L->q_norm) ||
	    vec(ld, NAME("self_attn.k_norm.weight"), c->head_dim, &L->k_norm) ||
	    get(ld, NAME("self_attn.q_proj.weight"), 2, qd, c->hidden, &r.t[0]) ||
	    get(ld, NAME("self_attn.k_proj.weight"), 2, kvd, c->hidden, &r.t[1]) ||
	    get(ld, NAME("self_attn.v_proj.weight"), 2, kvd, c->hidden, &r.t[2]) ||
	    same_dtype(ld, &r) ||
	    mat(ld, &L->wo, m->wtype, NAME("self_attn.o_proj.weight"), c->hidden, qd))
		return -1;
	pack(ld, &L->wqkv, NULL, m->wtype, qd + 2 * kvd, c->hidden, &r);
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
		swiglu_pack(ld, &s, c->ffn, &L->w_gate_up, NULL, &L->w_down, NULL);
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

int zp_model_load(zp_model *m, const char *dir, enum zp_wtype wtype, int threads,
		  zp_load_progress *progress, zp_err *e)
{
	struct loader ld = { .m = m, .e = e, .progress = progress };
	double t0 = zp_now_s();

	memset(m, 0, sizeof *m);
	m->wtype = wtype;
	if (zp_config_load(&m->cfg, dir, e) || zp_st_open_dir(&m->st, dir, e))
		return -1;
	m->layers = zp_xcalloc((size_t)m->cfg.layers, sizeof *m->layers);
	/* Pass 1 checks every tensor and sizes the arena; pass 2 packs. */
	if (load_all(&ld)) {
		zp_model_free(m);
		return -1;
	}
	m->arena_bytes = ld.used;
	m->arena = ld.arena = zp_xalloc_aligned(ld.used);
	ld.pool = zp_pool_new(threads);
	ld.t0 = zp_now_s();
	/* pass 1 checked everything but the values: a non-finite one, or a
	   cancel, fails here */
	int rc = load_all(&ld);
	zp_pool_free(ld.pool);
	if (rc) {
		zp_model_free(m);
		return -1;
	}
	ZP_ASSERT(ld.used == m->arena_bytes);
	for (int l = 0; l < m->cfg.layers; l++)
		m->expert_bytes_total += m->layers[l].experts_bytes;
	drop_source_pages(m);
	zp_log(ZP_LOG_INFO, "msg=\"model loaded\" dir=%s layers=%d experts=%d dtype=%s "
	       "dense_bytes=%zu expert_bytes=%zu load_s=%.2f values=finite", dir, m->cfg.layers,
	       m->cfg.experts, wtype == ZP_W_F32 ? "fp32" : "bf16", m->arena_bytes,
	       m->expert_bytes_total, zp_now_s() - t0);
	return 0;
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
	zp_free_aligned(m->arena);
	zp_st_free(&m->st);
	memset(m, 0, sizeof *m);
}

void zp_model_embed(const zp_model *m, int tok, float *out)
{
	size_t H = (size_t)m->cfg.hidden;
	ZP_ASSERT(tok >= 0 && tok < m->cfg.vocab);
	for (size_t i = 0; i < H; i++)
		out[i] = zp_st_elem_f32(m->embed, (size_t)tok * H + i);
}
