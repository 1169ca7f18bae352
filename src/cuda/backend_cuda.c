/* backend_cuda.c -- see backend_cuda.h. Every op enqueues on the compute
   stream; what comes back to the host (download, log-prob rows, pooling) syncs
   it. Host metadata an op needs (ids, positions, row lists, sequence starts,
   per-expert offsets) goes through one staging ring (pinned host -> device,
   in stream order); the ring restarts after a stream sync when full. Weights
   (already in this backend's layout) are copied into pinned staging buffers
   by the owner and a short-lived pool of copy threads while the copy stream
   moves the previous buffer.
   A device fault is the runtime's sticky error (devrt.h): from then on every
   op returns at its entry (download zero-fills its host bytes, so metadata
   read back is zeros, never garbage indices) and status / sync report it;
   freeing the backend resets the poisoned device. Threads: one owner; events
   from any thread. */
#include "backend_cuda.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "attention_v1.h"	/* the v1 twins: the sim device runs them */
#include "devrt.h"
#include "expert_gemm_v1.h"
#include "gds_load.h"
#include "pool.h"
#include "v1.h"
#include "zk_fp8.h"

/* cuda-fast's kernels (the kernels/ files named v1_*.cu): absent until built in */
#pragma weak zp_kv1_expert_gemm
#pragma weak zp_kv1_attention

#define META_BYTES ((size_t)32 << 20)
#define STAGE_BUFS 4
#define STAGE_BYTES ((size_t)64 << 20)
#define STAGE_THREADS_MAX 8	/* host threads filling a staging buffer */
#define STAGE_SPLIT_BYTES ((size_t)64 << 10)	/* smaller copies: one thread */
#define GDS_IN_FLIGHT 4	/* GDS reads in flight (gds_load.h) */
#define EV_RING 64	/* records of one zp_event a waiter can still find */

struct zp_event {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t n;
	zp_devent *ring[EV_RING];
};

typedef struct {
	zp_drt *rt;
	int gpu;			/* the CUDA device it runs on (-1: the sim) */
	zp_dstream *cs, *xs;	/* compute, copy */
	zp_cuda_opts o;
	char *meta_h, *meta_d;	/* the staging ring, pinned host and device */
	size_t meta_at;
	float *tmp;		/* [rows_max][cols_max]: GEMM output before SwiGLU */
	size_t tmp_floats;
	/* the model mirror */
	zp_model mdev;
	bool have_model;
	float *embed;		/* [V][H] f32 */
	const char *v1_expert_said, *v1_attn_said;	/* the v1 fallback's last reason logged */
	/* FP8 (zk_fp8.h): the compute mode, and its scratch, sized at the mirror */
	enum zp_fp8_compute fp8c;
	void *wide;		/* W8A16: one widened matrix [n][kp] of the compute type */
	size_t wide_bytes;
	uint8_t *q8;		/* W8A8: quantised activations [rows][kq] */
	float *q8s;		/* and their scales, [nkb][m] per GEMM, GEMMs side by side */
	size_t q8_bytes, q8s_floats;
	const void **w16;	/* dense FP8 matrices whose BLK128x128 tensor has NaN
				   blocks (a 128-row block spans two sources): W8A16 */
	int nw16;
	unsigned fp8_said;	/* the W8A16 fallback reasons logged (bits) */
	void **owned;		/* device arrays of the mirror */
	int nowned, capowned;
} cu_ctx;

static cu_ctx *C(zp_backend *b)
{
	return b->ctx;
}

/* the device failed: ops do nothing more (status and sync say why) */
static bool dead(zp_backend *b)
{
	return zp_drt_failed(C(b)->rt);
}

/* ---- memory ---- */

static void *dalloc(cu_ctx *c, size_t bytes)
{
	void *p = c->rt->ops->alloc(c->rt, ZP_MAX(bytes, 64));
	if (!p && !zp_drt_failed(c->rt)) /* a fault: NULL, reported by status */
		zp_panic(__FILE__, __LINE__, "device out of memory");
	return p;
}

static void *cu_alloc(zp_backend *b, size_t bytes)
{
	return dalloc(C(b), bytes);
}

static void cu_host_pin(zp_backend *b, void *p, size_t bytes, bool on)
{
	C(b)->rt->ops->host_register(C(b)->rt, p, bytes, on);
}

static void cu_mfree(zp_backend *b, void *p)
{
	C(b)->rt->ops->free(C(b)->rt, p);
}

/* the host buffer may change once these return: both sync */
static void cu_upload(zp_backend *b, void *dst, const void *host, size_t bytes)
{
	cu_ctx *c = C(b);
	if (dead(b))
		return;
	c->rt->ops->copy(c->rt, c->cs, dst, host, bytes);
	c->rt->ops->stream_sync(c->rt, c->cs);
}

/* a fault before or during the copy leaves zeros: a caller reading offsets
   or ids back before it asks status sees an empty batch, never garbage */
static void cu_download(zp_backend *b, void *host, const void *src, size_t bytes)
{
	cu_ctx *c = C(b);
	if (!dead(b)) {
		c->rt->ops->copy(c->rt, c->cs, host, src, bytes);
		c->rt->ops->stream_sync(c->rt, c->cs);
	}
	if (dead(b))
		memset(host, 0, bytes);
}

/* non-blocking: the sticky error, or one the device holds (cudaGetLastError) */
static int cu_status(zp_backend *b, zp_err *e)
{
	C(b)->rt->ops->check(C(b)->rt);
	return zp_drt_error(C(b)->rt, e);
}

/* every op runs on the compute stream: it drained, they completed (or the
   first that failed is the sticky error) */
static int cu_sync(zp_backend *b, zp_err *e)
{
	C(b)->rt->ops->stream_sync(C(b)->rt, C(b)->cs);
	return cu_status(b, e);
}

static void cu_copy(zp_backend *b, void *dst, const void *src, size_t bytes)
{
	if (!dead(b))
		C(b)->rt->ops->copy(C(b)->rt, C(b)->cs, dst, src, bytes);
}

static void cu_mem_info(zp_backend *b, zp_mem_info *mi)
{
	*mi = (zp_mem_info){ .devices = 1 };
	if (C(b)->rt->ops->mem_info(C(b)->rt, &mi->free_bytes, &mi->total_bytes, &mi->devices,
				    &mi->host))
		*mi = (zp_mem_info){ .devices = 1 }; /* a failed device: nothing free */
}

static void cu_copy2d(zp_backend *b, void *dst, size_t dpitch, const void *src, size_t spitch,
		      size_t width, int rows)
{
	ZP_ASSERT(rows >= 0 && width <= dpitch && width <= spitch);
	if (!dead(b))
		C(b)->rt->ops->copy2d(C(b)->rt, C(b)->cs, dst, dpitch, src, spitch, width,
				      (size_t)rows);
}

/* Device room for bytes of metadata, filled from host (when set) in stream
   order; valid for work enqueued before the ring wraps. */
static void *meta(cu_ctx *c, const void *host, size_t bytes)
{
	size_t need = ZP_ALIGN_UP(ZP_MAX(bytes, 1), 64);
	ZP_ASSERT(need <= META_BYTES);
	if (c->meta_at + need > META_BYTES) { /* every earlier reader is done */
		c->rt->ops->stream_sync(c->rt, c->cs);
		c->meta_at = 0;
	}
	char *h = c->meta_h + c->meta_at, *d = c->meta_d + c->meta_at;
	c->meta_at += need;
	if (host) {
		memcpy(h, host, bytes);
		c->rt->ops->copy(c->rt, c->cs, d, h, bytes);
	}
	return d;
}

/* ---- events: a ring of device events per count ---- */

static zp_event *cu_event_new(zp_backend *b)
{
	zp_event *ev = zp_xcalloc(1, sizeof *ev);
	pthread_mutex_init(&ev->mu, NULL);
	pthread_cond_init(&ev->cv, NULL);
	for (int i = 0; i < EV_RING; i++)
		ev->ring[i] = C(b)->rt->ops->event_new(C(b)->rt);
	return ev;
}

static void cu_event_free(zp_backend *b, zp_event *ev)
{
	if (!ev)
		return;
	for (int i = 0; i < EV_RING; i++)
		C(b)->rt->ops->event_free(C(b)->rt, ev->ring[i]);
	pthread_mutex_destroy(&ev->mu);
	pthread_cond_destroy(&ev->cv);
	free(ev);
}

static uint64_t cu_event_record(zp_backend *b, zp_event *ev)
{
	cu_ctx *c = C(b);
	pthread_mutex_lock(&ev->mu);
	uint64_t n = ++ev->n;
	c->rt->ops->event_record(c->rt, ev->ring[n % EV_RING], c->cs);
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
	return n;
}

/* A slot re-recorded since n waits for the later record: later work in the
   same stream, so n's is done too. */
static void cu_event_wait(zp_backend *b, zp_event *ev, uint64_t n)
{
	pthread_mutex_lock(&ev->mu);
	while (ev->n < n)
		pthread_cond_wait(&ev->cv, &ev->mu);
	zp_devent *d = ev->ring[n % EV_RING];
	pthread_mutex_unlock(&ev->mu);
	C(b)->rt->ops->event_sync(C(b)->rt, d);
}

/* The owner's compute stream waits for record n (its ring slot: a later
   record of the slot is later work of the same recording stream, which n's
   precedes). The host waits only until record n was issued. */
static zp_devent *slot_issued(zp_event *ev, uint64_t n)
{
	pthread_mutex_lock(&ev->mu);
	while (ev->n < n)
		pthread_cond_wait(&ev->cv, &ev->mu);
	zp_devent *d = ev->ring[n % EV_RING];
	pthread_mutex_unlock(&ev->mu);
	return d;
}

static void cu_event_after(zp_backend *b, zp_event *ev, uint64_t n)
{
	cu_ctx *c = C(b);
	c->rt->ops->stream_wait(c->rt, c->cs, slot_issued(ev, n));
}

/* ---- the copy queue: a stream of its own, driven by another thread ---- */

struct zp_bqueue {
	zp_dstream *s;
};

static zp_bqueue *cu_queue_new(zp_backend *b)
{
	zp_bqueue *q = zp_xcalloc(1, sizeof *q);
	q->s = C(b)->rt->ops->stream_new(C(b)->rt);
	if (C(b)->rt->sim)
		zp_drt_sim_copy_queue(C(b)->rt, q->s);
	return q;
}

void *zp_backend_cuda_queue_stream(zp_backend *b, zp_bqueue *q)
{
	return C(b)->rt->ops->native_stream(C(b)->rt, q->s);
}

int zp_backend_cuda_ordinal(const zp_backend *b)
{
	return ((const cu_ctx *)b->ctx)->gpu;
}

static void cu_queue_free(zp_backend *b, zp_bqueue *q)
{
	if (!q)
		return;
	C(b)->rt->ops->stream_sync(C(b)->rt, q->s);
	C(b)->rt->ops->stream_free(C(b)->rt, q->s);
	free(q);
}

/* the driving thread is not the owner: it binds to the device first */
static void cu_queue_copy(zp_backend *b, zp_bqueue *q, void *dst, const void *src, size_t bytes)
{
	cu_ctx *c = C(b);
	c->rt->ops->bind(c->rt);
	c->rt->ops->copy(c->rt, q->s, dst, src, bytes);
}

static uint64_t cu_queue_record(zp_backend *b, zp_bqueue *q, zp_event *ev)
{
	cu_ctx *c = C(b);
	c->rt->ops->bind(c->rt);
	pthread_mutex_lock(&ev->mu);
	uint64_t n = ++ev->n;
	c->rt->ops->event_record(c->rt, ev->ring[n % EV_RING], q->s);
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
	return n;
}

static void cu_queue_after(zp_backend *b, zp_bqueue *q, zp_event *ev, uint64_t n)
{
	cu_ctx *c = C(b);
	c->rt->ops->bind(c->rt);
	c->rt->ops->stream_wait(c->rt, q->s, slot_issued(ev, n));
}

/* ---- rows ---- */

static void launch(cu_ctx *c, zk_launch *l)
{
	c->rt->ops->launch(c->rt, c->cs, l);
}

static void cu_embed(zp_backend *b, const zp_model *m, const int32_t *ids, int n, zp_view x)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	ZP_ASSERT(c->have_model && m == &c->mdev);
	zk_launch l = { .kind = ZK_EMBED, .blocks = n };
	l.u.embed = (zk_embed){ c->embed, m->cfg.hidden, meta(c, ids, (size_t)n * 4), x.data, x.ld };
	launch(c, &l);
}

static void cu_rmsnorm(zp_backend *b, int n, int cols, zp_view x, const int *rows,
		       const float *w, float eps, zp_view out, zp_view out16)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	zk_launch l = { .kind = ZK_RMSNORM, .blocks = n };
	l.u.rmsnorm = (zk_rmsnorm){ x.data, x.ld, rows ? meta(c, rows, (size_t)n * 4) : NULL, w, eps,
				    cols, out.data, out.ld, out16.data, out16.ld };
	launch(c, &l);
}

static void cu_add_bias(zp_backend *b, int n, int cols, zp_view y, const float *bias)
{
	if (dead(b))
		return;
	zk_launch l = { .kind = ZK_BIAS, .blocks = n };
	l.u.vec = (zk_vec){ cols, y.data, y.ld, NULL, 0, bias };
	launch(C(b), &l);
}

static void cu_qk_norm_rope(zp_backend *b, int n, zp_view qkv, int heads, int kv_heads, int d,
			    const float *q_norm, const float *k_norm, float eps, const int *pos,
			    const float *cos, const float *sin)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	zk_launch l = { .kind = ZK_ROPE, .blocks = n * (heads + kv_heads) };
	l.u.rope = (zk_rope){ qkv.data, qkv.ld, heads, kv_heads, d, q_norm, k_norm, eps,
			      meta(c, pos, (size_t)n * 4), cos, sin };
	launch(c, &l);
}

static void cu_residual(zp_backend *b, int n, int cols, zp_view x, zp_view y, const float *bias)
{
	if (dead(b))
		return;
	zk_launch l = { .kind = ZK_RESIDUAL, .blocks = n };
	l.u.vec = (zk_vec){ cols, x.data, x.ld, y.data, y.ld, bias };
	launch(C(b), &l);
}

static void cu_to_bf16(zp_backend *b, int n, int cols, zp_view src, zp_view dst)
{
	if (dead(b))
		return;
	zk_launch l = { .kind = ZK_TO_BF16, .blocks = n };
	l.u.tobf16 = (zk_tobf16){ cols, src.data, src.ld, dst.data, dst.ld };
	launch(C(b), &l);
}

/* ---- weights: the layout (weights.h) ---- */

/* rows held: a SWIGLU matrix's gate and up halves each padded to 16 rows
   (the SwiGLU kernel reads up row r at r + n / 2) */
static int held_rows(int n, enum zp_wkind kind)
{
	return kind == ZP_WK_SWIGLU ? 2 * ZP_ALIGN_UP(n / 2, 16) : n;
}

static size_t row_bytes(enum zp_wtype t, int k)
{
	return (size_t)ZP_ALIGN_UP(k, 2) * (t == ZP_W_F32 ? 4 : 2);
}

/* FP8 (weights.h ZP_WS_FP8) in this layout: the codes [rows][kq] (kq = k
   up to 16: cuBLASLt's 16-byte FP8 rows), zeros past k and in padding rows;
   at scale_off the contract's per-row scales [rows][nkb] f32 (padding rows
   1: what the W8A16 widening reads); after them, 64-aligned, the
   BLK128x128 tensor the W8A8 matmul reads (blas_contract.h), MN-major
   [nkb][ceil(rows / 128)]: row block rb's scale for k block b where every
   row of rb holds the same one (one source block, or equal values), NaN
   where they differ (a q/k/v or gate/up seam inside a 128-row block: that
   matrix runs W8A16, fp8_w8a16_why). An expert is the same bytes wherever it
   is copied (a gather, an offload prefetch): codes and scales together. */
static int fp8_nkb(int k)
{
	return (k + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK;
}

static size_t fp8_codes_bytes(int rows, int k)
{
	return ZP_ALIGN_UP((size_t)rows * ZP_ALIGN_UP(k, ZK_FP8_KALIGN), 64);
}

static size_t fp8_rs_bytes(int rows, int k)
{
	return ZP_ALIGN_UP((size_t)rows * fp8_nkb(k) * 4, 64);
}

static size_t fp8_blk_bytes(int rows, int k)
{
	return ZP_ALIGN_UP((size_t)fp8_nkb(k) * ((rows + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK) * 4, 64);
}

/* the BLK128x128 tensor of FP8 matrix w */
static const float *fp8_blk(const zp_wmat *w)
{
	return (const float *)((const char *)w->data + w->scale_off + fp8_rs_bytes(w->n, w->k));
}

static size_t layout_bytes(enum zp_wtype t, enum zp_wstore st, int n, int k, enum zp_wkind kind)
{
	int rows = held_rows(n, kind);
	if (st == ZP_WS_FP8)
		return fp8_codes_bytes(rows, k) + fp8_rs_bytes(rows, k) + fp8_blk_bytes(rows, k);
	return ZP_ALIGN_UP((size_t)rows * row_bytes(t, k), 64);
}

/* the source row packed row r holds (-1: a padding row) */
static int src_row(int r, int rows, int n, enum zp_wkind kind)
{
	int h = rows / 2, f = n / 2, up = kind == ZP_WK_SWIGLU && r >= h, q = up ? r - h : r;
	return kind == ZP_WK_PLAIN ? r : q < f ? (up ? f + q : q) : -1;
}

/* the BLK128x128 tensor from the per-row scales (NaN where a row block's
   rows disagree) */
static void fp8_blk_fill(const zp_wmat *w, const bool *real)
{
	int nkb = fp8_nkb(w->k), nrb = (w->n + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK;
	const float *rs = (const float *)((const char *)w->data + w->scale_off);
	float *blk = (float *)fp8_blk(w);
	for (int rb = 0; rb < nrb; rb++)
		for (int b = 0; b < nkb; b++) {
			float v = 1.0f;
			bool first = true;
			for (int r = rb * ZK_FP8_BLOCK; r < ZP_MIN(w->n, (rb + 1) * ZK_FP8_BLOCK); r++) {
				float s = rs[(size_t)r * nkb + b];
				if (!real[r])
					continue;
				v = first || s == v ? s : NAN;
				if (isnan(v))
					break;
				first = false;
			}
			blk[(size_t)b * nrb + rb] = v;
		}
}

static void pack_fp8(zp_wmat *w, void *dst, enum zp_wtype t, int n, int k, enum zp_wkind kind,
		     const zp_wsrc *src)
{
	int rows = held_rows(n, kind), kq = ZP_ALIGN_UP(k, ZK_FP8_KALIGN), nkb = fp8_nkb(k);
	ZP_ASSERT(src->dt == ZP_DT_F8_E4M3 && src->scale);
	*w = (zp_wmat){ .type = t, .store = ZP_WS_FP8, .n = rows, .k = k, .kp = kq, .data = dst,
			.scale_off = fp8_codes_bytes(rows, k) };
	memset(dst, 0, layout_bytes(t, ZP_WS_FP8, n, k, kind));
	float *rs = (float *)((char *)dst + w->scale_off);
	bool *real = zp_xcalloc((size_t)rows, sizeof *real);
	for (int r = 0; r < rows; r++) {
		int j = src_row(r, rows, n, kind);
		const void *codes = j >= 0 ? src->row(src->ctx, j) : NULL;
		const float *sc = codes ? src->scale(src->ctx, j) : NULL;
		real[r] = codes != NULL;
		if (codes)
			memcpy((char *)dst + (size_t)r * kq, codes, (size_t)k);
		for (int b = 0; b < nkb; b++)
			rs[(size_t)r * nkb + b] = sc ? sc[b] : 1.0f;
	}
	fp8_blk_fill(w, real);
	free(real);
}

/* row-major [rows][kp], zeros past k and in padding rows; FP8: above */
static void layout_pack(zp_wmat *w, void *dst, enum zp_wtype t, enum zp_wstore st, int n, int k,
			enum zp_wkind kind, const zp_wsrc *wsrc)
{
	int rows = held_rows(n, kind);
	size_t rb = row_bytes(t, k);
	ZP_ASSERT(((uintptr_t)dst & 63) == 0 && (kind == ZP_WK_PLAIN || n % 2 == 0));
	if (st == ZP_WS_FP8) {
		pack_fp8(w, dst, t, n, k, kind, wsrc);
		return;
	}
	*w = (zp_wmat){ .type = t, .n = rows, .k = k, .kp = ZP_ALIGN_UP(k, 2), .data = dst };
	memset(dst, 0, layout_bytes(t, st, n, k, kind));
	for (int r = 0; r < rows; r++) {
		int j = src_row(r, rows, n, kind);
		const void *src = j >= 0 ? wsrc->row(wsrc->ctx, j) : NULL;
		if (src)
			zp_wrow_convert((char *)dst + (size_t)r * rb, t, src, wsrc->dt, k);
	}
}

const zp_wlayout zp_cuda_wlayout = { "cuda-rows", layout_bytes, layout_pack, .fp8 = true };

/* ---- matrix products ---- */

static zp_dgemm dgemm(const zp_wmat *w, const void *a, size_t lda, int m, float *c, size_t ldc,
		      bool add)
{
	return (zp_dgemm){ .bf16 = w->type == ZP_W_BF16, .add = add, .a = a, .lda = lda, .m = m,
			   .w = w->data, .n = w->n, .kp = w->kp, .c = c, .ldc = ldc };
}

/* ---- FP8 weights (weights.h ZP_WS_FP8): W8A8 quantises the activations
   per token per 128 columns (the act_quant kernel) and runs cuBLASLt's
   block-scaled matmul; W8A16 widens the matrix to its compute type (the
   fp8_widen kernel) and runs the ordinary GEMM. W8A8 needs the weight's
   BLK128x128 tensor whole and a device that has the matmul (sm_90); where
   not, that GEMM runs W8A16, said once per reason. ---- */

static void fp8_scratch(cu_ctx *c);

static const char *const fp8_w8a16_reasons[] = {
	"this GPU has no block-scaled FP8 cuBLASLt matmul (sm_90 only): W8A16",
	"a SwiGLU matrix's gate/up seam is inside a 128-row block (its half % 128): W8A16",
	"a dense matrix's 128-row block spans two source tensors (q/k/v): W8A16",
	"the output's rows are not 16-byte multiples (cuBLASLt FP8's C rule): W8A16",
};

/* why FP8 matrix w runs W8A16 in W8A8 mode: an index of the reasons above,
   or -1 (it runs W8A8). A SwiGLU matrix's halves are two sources: by its
   shape; a plain one is one source unless the mirror found otherwise (wqkv) */
static int fp8_w8a16_why(cu_ctx *c, const zp_wmat *w, bool gate_up, const float *out,
			 size_t ldc)
{
	if (!c->rt->fp8_blk)
		return 0;
	if (ldc % 4 || (uintptr_t)out % 16)
		return 3;
	if (gate_up && (w->n / 2) % ZK_FP8_BLOCK)
		return 1;
	for (int i = 0; i < c->nw16; i++)
		if (c->w16[i] == w->data)
			return 2;
	return -1;
}

static bool fp8_w8a8(cu_ctx *c, const zp_wmat *w, bool gate_up, const float *out, size_t ldc)
{
	if (c->fp8c == ZP_FP8_W8A16)
		return false;
	int why = fp8_w8a16_why(c, w, gate_up, out, ldc);
	if (why >= 0 && !(c->fp8_said & 1u << why))
		zp_log(ZP_LOG_WARN, "msg=\"FP8 GEMM outside W8A8's contract\" why=\"%s\"",
		       fp8_w8a16_reasons[why]);
	if (why >= 0)
		c->fp8_said |= 1u << why;
	return why < 0;
}

/* c[m][n] (=, or +=) a . w^T for FP8 w; q_row, s_at: where this GEMM's
   quantised rows and their scales go in q8 and q8s (GEMMs of one call side
   by side: the experts; s_at a multiple of 4, the scales' 16-byte rule) */
static void fp8_gemm(cu_ctx *c, const zp_wmat *w, const void *a, size_t lda, int m, float *out,
		     size_t ldc, bool add, bool w8a8, size_t q_row, size_t s_at)
{
	bool bf16 = w->type == ZP_W_BF16;
	int nkb = fp8_nkb(w->k);
	fp8_scratch(c); /* once: the first FP8 GEMM of a backend without a mirror */
	if (w8a8) {
		ZP_ASSERT((q_row + (size_t)m) * (size_t)w->kp <= c->q8_bytes && s_at % 4 == 0 &&
			  s_at + (size_t)m * (size_t)nkb <= c->q8s_floats);
		uint8_t *q = c->q8 + q_row * (size_t)w->kp;
		float *qs = c->q8s + s_at;
		zk_launch l = { .kind = ZK_ACT_QUANT, .blocks = m * zk_actq_groups(w->k) };
		l.u.actq = (zk_actq){ m, w->k, w->kp, a, lda, bf16, q, qs };
		launch(c, &l);
		zp_dgemm g = { .fp8 = true, .add = add, .a = q, .lda = (size_t)w->kp, .m = m,
			       .w = w->data, .n = w->n, .kp = w->kp, .c = out, .ldc = ldc, .sa = qs,
			       .sw = fp8_blk(w) };
		c->rt->ops->gemm(c->rt, c->cs, &g);
		return;
	}
	int kp = ZP_ALIGN_UP(w->k, 2);
	ZP_ASSERT((size_t)w->n * row_bytes(w->type, w->k) <= c->wide_bytes);
	zk_launch l = { .kind = ZK_FP8_WIDEN, .blocks = w->n };
	l.u.fp8w = (zk_fp8w){ w->n, w->k, w->kp, kp, w->data,
			      (const float *)((const char *)w->data + w->scale_off), c->wide, bf16 };
	launch(c, &l);
	zp_dgemm g = { .bf16 = bf16, .add = add, .a = a, .lda = lda, .m = m, .w = c->wide, .n = w->n,
		       .kp = kp, .c = out, .ldc = ldc };
	c->rt->ops->gemm(c->rt, c->cs, &g);
}

/* one GEMM of either store (gate_up: a SwiGLU matrix) */
static void any_gemm(cu_ctx *c, const zp_wmat *w, const void *a, size_t lda, int m, float *out,
		     size_t ldc, bool add, bool gate_up)
{
	if (w->store == ZP_WS_FP8) {
		fp8_gemm(c, w, a, lda, m, out, ldc, add, fp8_w8a8(c, w, gate_up, out, ldc), 0, 0);
		return;
	}
	zp_dgemm g = dgemm(w, a, lda, m, out, ldc, add);
	c->rt->ops->gemm(c->rt, c->cs, &g);
}

/* rows of tmp [.., n] (gate half then up half) -> SwiGLU into c */
static void swiglu(cu_ctx *c, int rows, int n, int ncols, const float *t, float *out, size_t ldc)
{
	zk_launch l = { .kind = ZK_SWIGLU, .blocks = rows };
	l.u.swiglu = (zk_swiglu){ ncols, n / 2, t, (size_t)n, out, ldc };
	launch(c, &l);
}

static void cu_gemm(zp_backend *b, const zp_gemm_op *op)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	if (!op->m)
		return;
	if (op->epi != ZP_EPI_SWIGLU) {
		any_gemm(c, op->w, op->a, op->lda, op->m, op->c, op->ldc, op->epi == ZP_EPI_ADD, false);
		return;
	}
	ZP_ASSERT((size_t)op->m * op->w->n <= c->tmp_floats);
	any_gemm(c, op->w, op->a, op->lda, op->m, c->tmp, (size_t)op->w->n, false, true);
	swiglu(c, op->m, op->w->n, op->ncols, c->tmp, op->c, op->ldc);
}

/* The sim runs the twin on host memory (its device memory) once the stream
   has drained: the twin reads the host offsets as they are. */
static void expert_v1(cu_ctx *c, const zp_wmat *w, int e0, int e1, const int *offs, zp_view a,
		      zp_view out, enum zp_epi epi)
{
	int E = e1 - e0;
	enum zp_kv1_epi ke = epi == ZP_EPI_SWIGLU ? ZP_KV1_EPI_SWIGLU : ZP_KV1_EPI_STORE;
	if (c->o.dev == ZP_DEV_SIM) {
		c->rt->ops->stream_sync(c->rt, c->cs);
		if (zp_kv1_expert_gemm_host(ZP_MAX(c->o.threads, 1), w[e0].data, e0, e1, offs,
					    a.data, a.ld, out.data, out.ld, ke, w[e0].n, w[e0].kp))
			zp_panic(__FILE__, __LINE__, "zp_kv1_expert_gemm_host: a thread did not start");
		return;
	}
	int *doffs = meta(c, offs, (size_t)(E + 1) * sizeof *offs);
	void *st = c->rt->ops->native_stream(c->rt, c->cs);
	int rc = zp_kv1_expert_gemm(st, w[e0].data, e0, e1, doffs, offs[E], a.data, a.ld, out.data,
				    out.ld, ke, w[e0].n, w[e0].kp);
	if (rc)
		zp_panic(__FILE__, __LINE__, "zp_kv1_expert_gemm failed to launch");
}

/* Why the v1 expert kernel cannot take these operands (kernels/v1.h: bf16
   weights, K % 8 == 0, N % 16 == 0, lda % 8 == 0, experts [e0, e1) one
   contiguous [E][N][K] array), NULL when it can. The model mirror's experts
   are one array per matrix kind (experts_up); an AsyncEP layer buffer holds
   them expert-major (gate_up then down per expert), another stride. */
static const char *v1_expert_misfit(const zp_wmat *w, int e0, int e1, zp_view a)
{
	size_t mat = (size_t)w[e0].n * w[e0].kp;
	if (w[e0].store != ZP_WS_PLAIN)
		return "the expert weights are FP8 (v0 runs them: per-expert block-scaled matmuls)";
	if (w[e0].type != ZP_W_BF16)
		return "the expert weights are not bf16";
	if (w[e0].k % 8 || w[e0].kp != w[e0].k)
		return "K % 8 != 0";
	if (w[e0].n % 16)
		return "N % 16 != 0 (hidden, or 2 x moe_ffn)";
	if (a.ld % 8)
		return "the activations' row stride % 8 != 0";
	for (int e = e0 + 1; e < e1; e++)
		if ((const uint16_t *)w[e].data != (const uint16_t *)w[e0].data + (e - e0) * mat)
			return "the experts are not one contiguous [E][N][K] array (an AsyncEP "
			       "layer buffer)";
	return NULL;
}

/* the v1 switch is a request: outside the kernel's contract v0 runs, and
   the log says so once per reason (per kind, per backend) */
static bool v1_use(const char **said, const char *kind, const char *why)
{
	if (!why)
		return true;
	if (*said != why)
		zp_log(ZP_LOG_WARN, "msg=\"v1 %s outside its kernel's contract: v0 runs instead\" "
		       "why=\"%s\"", kind, why);
	*said = why;
	return false;
}

/* FP8 experts: one matmul per expert in stream order (W8A16 widens each
   into the one scratch matrix before its GEMM; W8A8 quantises each expert's
   rows into its own part of q8), then SwiGLU over every routed row */
static void expert_fp8(cu_ctx *c, const zp_wmat *w, int e0, int e1, const int *offs, zp_view a,
		       zp_view out, enum zp_epi epi, int ncols)
{
	bool sw = epi == ZP_EPI_SWIGLU;
	int r0 = offs[0], rows = offs[e1 - e0] - r0;
	size_t es = w[e0].type == ZP_W_BF16 ? 2 : 4, N = (size_t)w[e0].n, s_at = 0;
	/* every expert's rows start at a multiple of the row stride: one check */
	bool w8a8 = fp8_w8a8(c, &w[e0], sw, sw ? c->tmp : (float *)out.data, sw ? N : out.ld);
	for (int e = e0; e < e1; e++) {
		int r = offs[e - e0], m = offs[e - e0 + 1] - r;
		if (!m)
			continue;
		float *dst = sw ? c->tmp + (size_t)(r - r0) * N : (float *)out.data + (size_t)r * out.ld;
		fp8_gemm(c, &w[e], (const char *)a.data + (size_t)r * a.ld * es, a.ld, m, dst,
			 sw ? N : out.ld, false, w8a8, (size_t)(r - r0), s_at);
		s_at += ZP_ALIGN_UP((size_t)m * fp8_nkb(w[e].k), 4);
	}
	if (sw)
		swiglu(c, rows, (int)N, ncols, c->tmp, (float *)out.data + (size_t)r0 * out.ld, out.ld);
}

/* v0: one grouped GEMM (host-side sizes: the offsets came back once per
   layer), then SwiGLU over every routed row */
static void cu_expert_gemm(zp_backend *b, const zp_wmat *w, int e0, int e1, const int *offs,
			   zp_view a, zp_view out, enum zp_epi epi, int ncols)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	int E = e1 - e0, r0 = offs[0], rows = offs[E] - offs[0], n = 0;
	ZP_ASSERT(epi != ZP_EPI_ADD);
	if (!rows)
		return;
	if (c->o.expert_v1 &&
	    v1_use(&c->v1_expert_said, "expert GEMM", v1_expert_misfit(w, e0, e1, a))) {
		expert_v1(c, w, e0, e1, offs, a, out, epi);
		return;
	}
	bool sw = epi == ZP_EPI_SWIGLU;
	size_t es = w[e0].type == ZP_W_BF16 ? 2 : 4, N = (size_t)w[e0].n;
	ZP_ASSERT(!sw || (size_t)rows * N <= c->tmp_floats);
	if (w[e0].store == ZP_WS_FP8) {
		expert_fp8(c, w, e0, e1, offs, a, out, epi, ncols);
		return;
	}
	zp_dgemm *g = zp_xmalloc((size_t)E * sizeof *g);
	for (int e = e0; e < e1; e++) {
		int r = offs[e - e0], m = offs[e - e0 + 1] - r;
		if (!m)
			continue;
		float *dst = sw ? c->tmp + (size_t)(r - r0) * N : (float *)out.data + (size_t)r * out.ld;
		g[n++] = dgemm(&w[e], (const char *)a.data + (size_t)r * a.ld * es, a.ld, m, dst,
			       sw ? N : out.ld, false);
	}
	c->rt->ops->gemm_grouped(c->rt, c->cs, g, n);
	free(g);
	if (sw)
		swiglu(c, rows, (int)N, ncols, c->tmp, (float *)out.data + (size_t)r0 * out.ld, out.ld);
}

/* ---- attention ---- */

struct zp_attn_work {
	int heads, kv_heads, d, rows_max, seqs_max;
};

static zp_attn_work *cu_attn_work_new(zp_backend *b, int heads, int kv_heads, int d,
				      int rows_max, int seqs_max, bool bf16)
{
	zp_attn_work *w = zp_xcalloc(1, sizeof *w);
	ZP_ASSERT(d <= ZK_DMAX && heads % kv_heads == 0);
	*w = (zp_attn_work){ heads, kv_heads, d, rows_max, seqs_max };
	return w;
}

static void cu_attn_work_free(zp_backend *b, zp_attn_work *w)
{
	free(w);
}

static int cu_attention(zp_backend *b, const zp_attn_args *a, zp_err *e)
{
	if (dead(b)) /* a no-op: status reports the fault */
		return 0;
	cu_ctx *c = C(b);
	zp_attn_work *w = a->work;
	int T = a->seq_start[a->nseq], rows = T, longest = 0;
	ZP_ASSERT(a->heads == w->heads && a->kv_heads == w->kv_heads && a->d == w->d);
	ZP_ASSERT(a->nseq >= 1 && a->nseq <= w->seqs_max && T <= w->rows_max);
	_Static_assert(sizeof(zk_kv) == sizeof(zp_kv_src), "zk_kv mirrors zp_kv_src");
	for (int s = 0; s < a->nseq; s++)
		longest = ZP_MAX(longest, a->seq_start[s + 1] - a->seq_start[s]);
	for (int s = 0; a->prefix && s < a->nseq; s++)
		rows += a->prefix[s].len;
	if (rows > w->rows_max) /* as the cpu backend: the same limit, the same answer */
		return zp_errf(e, "attention: %d rows with their prefixes, the workspace holds %d",
			       rows, w->rows_max);
	const int *ss = meta(c, a->seq_start, (size_t)(a->nseq + 1) * sizeof(int));
	const zk_kv *pf = a->prefix ? meta(c, a->prefix, (size_t)a->nseq * sizeof(zk_kv)) : NULL;
	const char *misfit = !a->bf16 ? "an f32 model (the v1 attention is bf16)"
			     : a->d != 64 && a->d != 128 ? "head_dim not 64 or 128" : NULL;
	if (c->o.attn_v1 && v1_use(&c->v1_attn_said, "attention", misfit) &&
	    c->o.dev == ZP_DEV_SIM) { /* the twin, on host memory, after what the stream holds */
		c->rt->ops->stream_sync(c->rt, c->cs);
		if (zp_kv1_attention_host(ZP_MAX(c->o.threads, 1), a->heads, a->kv_heads, a->d,
					  a->nseq, a->seq_start, a->qkv.data, a->qkv.ld,
					  a->out.data, a->out.ld, (const zp_kv1_src *)a->prefix))
			zp_panic(__FILE__, __LINE__, "zp_kv1_attention_host: a thread did not start");
		return 0;
	}
	if (c->o.attn_v1 && !misfit) {
		void *st = c->rt->ops->native_stream(c->rt, c->cs);
		if (zp_kv1_attention(st, a->heads, a->kv_heads, a->d, a->nseq, ss, T, longest,
				     a->qkv.data, a->qkv.ld, a->out.data, a->out.ld,
				     (const zp_kv1_src *)pf, a->bf16))
			zp_panic(__FILE__, __LINE__, "zp_kv1_attention failed to launch");
		return 0;
	}
	zk_launch l = { .kind = ZK_ATTN, .blocks = T * a->heads };
	l.u.attn = (zk_attn){ a->qkv.data, a->qkv.ld, a->out.data, a->out.ld, a->heads, a->kv_heads,
			      a->d, a->nseq, ss, pf, 1.0f / sqrtf((float)a->d) };
	launch(c, &l);
	return 0;
}

/* ---- MoE ---- */

static void cu_route(zp_backend *b, int n, int E, int K, bool norm_topk, zp_view logits,
		     int *sel, float *selw, float *gap)
{
	if (dead(b))
		return;
	zk_launch l = { .kind = ZK_ROUTE, .blocks = (n + ZK_ROWS_PER_BLOCK - 1) / ZK_ROWS_PER_BLOCK };
	l.u.route = (zk_route){ logits.data, logits.ld, n, E, K, norm_topk, sel, selw, gap };
	launch(C(b), &l);
}

/* three launches (zk_ops.h): per-slice counts, the scan, the placement; the
   per-slice histograms in the metadata ring (device-written scratch) */
static void cu_dispatch(zp_backend *b, int n, int K, int E, const int *sel, int *offs,
			int *slot_row)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	int nb = zk_dispatch_blocks(n * K);
	int *hist = meta(c, NULL, (size_t)nb * E * sizeof *hist);
	static const int phase[3] = { ZK_DISPATCH_COUNT, ZK_DISPATCH_SCAN, ZK_DISPATCH_PLACE };
	for (int p = 0; p < 3; p++) {
		zk_launch l = { .kind = ZK_DISPATCH, .blocks = phase[p] == ZK_DISPATCH_SCAN ? 1 : nb };
		l.u.dispatch = (zk_dispatch){ n * K, E, sel, offs, slot_row, phase[p], hist };
		launch(c, &l);
	}
}

static void cu_gather(zp_backend *b, int n, int K, const int *slot_row, const void *src, void *dst,
		      size_t row_bytes)
{
	if (dead(b))
		return;
	ZP_ASSERT(row_bytes % 2 == 0);
	zk_launch l = { .kind = ZK_GATHER, .blocks = n };
	l.u.gather = (zk_gather){ K, slot_row, src, dst, row_bytes / 2 };
	launch(C(b), &l);
}

static void cu_combine(zp_backend *b, int n, int K, int cols, const int *slot_row,
		       const float *selw, zp_view y, zp_view out)
{
	if (dead(b))
		return;
	zk_launch l = { .kind = ZK_COMBINE, .blocks = n };
	l.u.combine = (zk_combine){ K, cols, slot_row, selw, y.data, y.ld, out.data, out.ld };
	launch(C(b), &l);
}

/* ---- outputs ---- */

/* Rows' outputs in device room of the ring, downloaded once and scattered to
   the rows' host pointers. */
static void cu_logprobs(zp_backend *b, int n, int V, zp_view logits, const zp_lp_row *rows)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	zk_lp_meta *mt = zp_xcalloc((size_t)n, sizeof *mt);
	int nc = 0, nf = 0, ni = 0;
	for (int i = 0; i < n; i++) {
		const zp_lp_row *r = &rows[i];
		mt[i] = (zk_lp_meta){ r->next, r->plp != NULL, r->ncand, nc, r->top_k, nf, ni,
				      r->rank != NULL, ni + r->top_k };
		nc += r->ncand;
		nf += 1 + r->ncand + r->top_k;
		ni += r->top_k + (r->rank != NULL);
	}
	int32_t *cands = zp_xmalloc((size_t)ZP_MAX(nc, 1) * sizeof *cands);
	for (int i = 0; i < n; i++)
		if (rows[i].ncand)
			memcpy(cands + mt[i].cand_off, rows[i].cands, (size_t)rows[i].ncand * 4);
	size_t fb = (size_t)nf * 4, ib = (size_t)ZP_MAX(ni, 1) * 4;
	zk_launch l = { .kind = ZK_LSE, .blocks = n };
	l.u.lse = (zk_lse){ logits.data, logits.ld, V, meta(c, mt, (size_t)n * sizeof *mt),
			    meta(c, cands, (size_t)ZP_MAX(nc, 1) * 4), meta(c, NULL, fb),
			    meta(c, NULL, ib) };
	launch(c, &l);
	float *of = zp_xmalloc(fb);
	int *oi = zp_xmalloc(ib);
	c->rt->ops->copy(c->rt, c->cs, of, l.u.lse.outf, fb);
	c->rt->ops->copy(c->rt, c->cs, oi, l.u.lse.outi, ib);
	c->rt->ops->stream_sync(c->rt, c->cs);
	for (int i = 0; i < n; i++) {
		const zp_lp_row *r = &rows[i];
		const float *o = of + mt[i].out_off;
		if (r->plp)
			*r->plp = o[0];
		if (r->ncand)
			memcpy(r->cand_lp, o + 1, (size_t)r->ncand * 4);
		if (r->top_k) {
			memcpy(r->top_lp, o + 1 + r->ncand, (size_t)r->top_k * 4);
			memcpy(r->top_ids, oi + mt[i].ids_off, (size_t)r->top_k * 4);
		}
		if (r->rank)
			*r->rank = oi[mt[i].rank_off];
	}
	free(mt), free(cands), free(of), free(oi);
}

static void cu_pool(zp_backend *b, int n, int cols, zp_view x, const float *w, float eps,
		    enum zp_pooling mode, bool normalize, float *out, void *work)
{
	if (dead(b))
		return;
	cu_ctx *c = C(b);
	ZP_ASSERT(n >= 1);
	zk_launch l = { .kind = ZK_POOL, .blocks = 1 };
	double *acc = work;
	l.u.pool = (zk_pool){ n, cols, x.data, x.ld, w, eps, mode == ZP_POOLING_MEAN, normalize, acc,
			      (float *)(acc + cols) };
	launch(c, &l);
	cu_download(b, out, acc + cols, (size_t)cols * 4);
}


/* ---- weights: the model mirror, uploaded through pinned staging ---- */

/* STAGE_BUFS pinned buffers in turn: while the copy stream moves one to the
   device, the host fills the next, split across the stager's pool threads. */
typedef struct {
	cu_ctx *c;
	char *buf[STAGE_BUFS];
	zp_devent *ev[STAGE_BUFS];
	size_t size;	/* bytes of each buffer */
	int cur, threads;
	zp_pool *pool;	/* the memcpy into staging; the caller is one of its threads */
	double bytes, t0, next_log;
	zp_gds *gds;	/* the file-served matrices, or NULL (gds_load.h) */
} stager;

/* buffers of at most STAGE_BYTES, less when the whole upload is smaller */
static void stage_open(stager *s, cu_ctx *c, size_t total)
{
	*s = (stager){ .c = c, .t0 = zp_now_s(), .next_log = 1e9 };
	s->size = ZP_MIN(STAGE_BYTES, ZP_MAX(total, 64));
	s->threads = ZP_MAX(1, ZP_MIN(c->o.threads, STAGE_THREADS_MAX));
	s->pool = zp_pool_new(s->threads);
	for (int i = 0; i < STAGE_BUFS; i++) {
		s->buf[i] = c->rt->ops->host_alloc(c->rt, s->size);
		s->ev[i] = c->rt->ops->event_new(c->rt);
	}
}

static void stage_close(stager *s, const char *what)
{
	cu_ctx *c = s->c;
	c->rt->ops->stream_sync(c->rt, c->xs);
	for (int i = 0; i < STAGE_BUFS; i++) {
		c->rt->ops->host_free(c->rt, s->buf[i]);
		c->rt->ops->event_free(c->rt, s->ev[i]);
	}
	zp_pool_free(s->pool);
	double dt = zp_now_s() - s->t0;
	zp_log(ZP_LOG_INFO, "msg=\"weights uploaded\" what=%s path=staged gb=%.3f gbps=%.2f s=%.2f "
	       "copy_threads=%d", what, s->bytes / 1e9, dt > 0 ? s->bytes / 1e9 / dt : 0.0, dt,
	       s->threads);
}

typedef struct {
	char *dst;
	const char *src;
	size_t bytes, piece;
} stage_fill;

static void stage_fill_task(void *ctx, int t, int thread)
{
	const stage_fill *f = ctx;
	size_t at = (size_t)t * f->piece;
	memcpy(f->dst + at, f->src + at, ZP_MIN(f->piece, f->bytes - at));
}

/* host src into a staging buffer: pieces of 64-byte multiples, one a thread */
static void stage_fill_buf(stager *s, char *dst, const char *src, size_t nb)
{
	if (s->threads == 1 || nb < STAGE_SPLIT_BYTES) {
		memcpy(dst, src, nb);
		return;
	}
	stage_fill f = { dst, src, nb, ZP_ALIGN_UP((nb + s->threads - 1) / s->threads, 64) };
	zp_pool_run(s->pool, (int)((nb + f.piece - 1) / f.piece), stage_fill_task, &f);
}

/* bytes from host src to device dst through the staging buffers */
static void stage_bytes(stager *s, void *dst, const void *src, size_t bytes)
{
	cu_ctx *c = s->c;
	for (size_t at = 0; at < bytes; at += s->size) {
		size_t nb = ZP_MIN(s->size, bytes - at);
		int i = s->cur;
		s->cur = (s->cur + 1) % STAGE_BUFS;
		c->rt->ops->event_sync(c->rt, s->ev[i]); /* its last DMA is done */
		stage_fill_buf(s, s->buf[i], (const char *)src + at, nb);
		c->rt->ops->copy(c->rt, c->xs, (char *)dst + at, s->buf[i], nb);
		c->rt->ops->event_record(c->rt, s->ev[i], c->xs);
		s->bytes += (double)nb;
	}
}

static void *own(cu_ctx *c, size_t bytes)
{
	if (c->nowned == c->capowned) {
		c->capowned = c->capowned ? 2 * c->capowned : 64;
		c->owned = realloc(c->owned, (size_t)c->capowned * sizeof *c->owned);
		ZP_ASSERT(c->owned);
	}
	return c->owned[c->nowned++] = dalloc(c, bytes);
}

static float *vec_up(stager *s, const float *v, size_t n)
{
	if (!v)
		return NULL;
	float *d = own(s->c, n * 4);
	stage_bytes(s, d, v, n * 4);
	return d;
}

static size_t wbytes(const zp_wmat *w)
{
	if (w->store == ZP_WS_FP8)
		return fp8_codes_bytes(w->n, w->k) + fp8_rs_bytes(w->n, w->k) + fp8_blk_bytes(w->n, w->k);
	return (size_t)w->n * row_bytes(w->type, w->k);
}

/* what gds_load.h read (the codes of an FP8 matrix: its scales, expanded
   per row, are this layout's own bytes) */
static void gds_rest(stager *s, const zp_wmat *w, const void *host)
{
	if (w->store == ZP_WS_FP8)
		stage_bytes(s, (char *)w->data + w->scale_off, (const char *)host + w->scale_off,
			    wbytes(w) - w->scale_off);
}

/* the host matrix's bytes are already in this layout: read from the file
   (GDS, when its sources qualify: gds_load.h) or copied as they are */
static void mat_up(stager *s, zp_wmat *w, const char *const *names, const int *rows, int nsrc)
{
	const void *host = w->data;
	w->data = own(s->c, wbytes(w));
	if (!nsrc || !s->gds || !zp_gds_add(s->gds, w, host, names, rows, nsrc))
		stage_bytes(s, w->data, host, wbytes(w));
	else
		gds_rest(s, w, host);
}

/* one source: the tensor name, at row 0 */
static void mat_up1(stager *s, zp_wmat *w, const char *name)
{
	static const int row0 = 0;
	mat_up(s, w, &name, &row0, 1);
}

/* a SwiGLU matrix: gate rows at 0, up rows at its padded half */
static void swiglu_up(stager *s, zp_wmat *w, const char *pfx)
{
	char g[ZP_ST_NAME_MAX], u[ZP_ST_NAME_MAX];
	const char *names[2] = { g, u };
	int rows[2] = { 0, w->n / 2 };
	snprintf(g, sizeof g, "%s.gate_proj.weight", pfx);
	snprintf(u, sizeof u, "%s.up_proj.weight", pfx);
	mat_up(s, w, names, rows, 2);
}

static void down_up(stager *s, zp_wmat *w, const char *pfx)
{
	char d[ZP_ST_NAME_MAX];
	snprintf(d, sizeof d, "%s.down_proj.weight", pfx);
	mat_up1(s, w, d);
}

/* a layer's experts: one array per matrix kind, expert e at e * its bytes
   (the v1 kernels' contract) */
static zp_wmat *experts_up(stager *s, const zp_wmat *src, int E, int l, bool gate_up)
{
	zp_wmat *w = zp_xcalloc((size_t)E, sizeof *w);
	size_t mat = wbytes(&src[0]);
	char *base = own(s->c, mat * (size_t)E), pfx[96];
	for (int e = 0; e < E; e++) {
		const void *host = src[e].data;
		w[e] = src[e];
		w[e].data = base + (size_t)e * mat;
		snprintf(pfx, sizeof pfx, "model.layers.%d.mlp.experts.%d", l, e);
		char g[ZP_ST_NAME_MAX], u[ZP_ST_NAME_MAX];
		snprintf(g, sizeof g, "%s.%s_proj.weight", pfx, gate_up ? "gate" : "down");
		snprintf(u, sizeof u, "%s.up_proj.weight", pfx);
		const char *names[2] = { g, u };
		int rows[2] = { 0, w[e].n / 2 };
		if (!s->gds || !zp_gds_add(s->gds, &w[e], host, names, rows, gate_up ? 2 : 1))
			stage_bytes(s, w[e].data, host, mat);
		else
			gds_rest(s, &w[e], host);
	}
	return w;
}

/* ---- FP8 scratch, sized once the mirror is known ---- */

/* a dense FP8 matrix whose BLK128x128 tensor has a NaN block (host copy:
   the same layout bytes) runs W8A16 */
static void fp8_blk_check(cu_ctx *c, const zp_wmat *dev, const zp_wmat *host)
{
	if (host->store != ZP_WS_FP8)
		return;
	const float *blk = fp8_blk(host);
	size_t nb = (size_t)fp8_nkb(host->k) * ((host->n + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK);
	for (size_t i = 0; i < nb; i++)
		if (isnan(blk[i])) {
			c->w16 = realloc(c->w16, (size_t)(c->nw16 + 1) * sizeof *c->w16);
			ZP_ASSERT(c->w16);
			c->w16[c->nw16++] = dev->data;
			return;
		}
}

/* the W8A16 widening scratch (one matrix, f32 at most), W8A8's quantised
   activations (rows_max rows of the widest K) and their scales, from the
   model's shapes (zp_cuda_opts): made once, at the first FP8 matrix, so a
   backend that runs only AsyncEP's expert GEMMs has it too */
static void fp8_scratch(cu_ctx *c)
{
	const zp_cuda_opts *o = &c->o;
	int ks[4] = { o->hidden, o->qd, o->ffn, o->moe_ffn }, kmax = 1;
	size_t wide = 0;
	struct { int rows, k; } mats[6] = {
		{ o->qkv_rows, o->hidden }, { o->hidden, o->qd },
		{ held_rows(2 * o->ffn, ZP_WK_SWIGLU), o->hidden }, { o->hidden, o->ffn },
		{ held_rows(2 * o->moe_ffn, ZP_WK_SWIGLU), o->hidden }, { o->hidden, o->moe_ffn },
	};
	if (c->wide)
		return;
	for (int i = 0; i < 6; i++)
		wide = ZP_MAX(wide, (size_t)mats[i].rows * row_bytes(ZP_W_F32, mats[i].k));
	for (int i = 0; i < 4; i++)
		kmax = ZP_MAX(kmax, ks[i]);
	c->wide_bytes = ZP_MAX(wide, 64);
	c->q8_bytes = (size_t)o->rows_max * ZP_ALIGN_UP(kmax, ZK_FP8_KALIGN);
	/* each expert's scales start 16-byte aligned: 3 floats of slack each */
	c->q8s_floats = (size_t)o->rows_max * fp8_nkb(kmax) + 4 * (size_t)ZP_MAX(o->experts, 1);
	c->wide = own(c, c->wide_bytes);
	c->q8 = own(c, c->q8_bytes);
	c->q8s = own(c, c->q8s_floats * 4);
	zp_log(ZP_LOG_INFO, "msg=\"FP8 scratch\" compute=%s blockscaled_matmul=%s scratch_mb=%.1f",
	       c->fp8c == ZP_FP8_W8A8 ? "w8a8" : "w8a16", c->rt->fp8_blk ? "yes" : "no (not sm_90)",
	       (c->wide_bytes + c->q8_bytes + c->q8s_floats * 4) / 1048576.0);
}

/* the mirror's dense FP8 matrices that run W8A16 (fp8_blk_check) */
static void fp8_mirror(cu_ctx *c, const zp_model *m)
{
	for (int l = 0; l < m->cfg.layers; l++) {
		const zp_layer *D = &c->mdev.layers[l], *L = &m->layers[l];
		const zp_wmat *dv[4] = { &D->wqkv, &D->wo, &D->w_gate_up, &D->w_down };
		const zp_wmat *hv[4] = { &L->wqkv, &L->wo, &L->w_gate_up, &L->w_down };
		for (int i = 0; i < (L->sparse ? 2 : 4); i++)
			fp8_blk_check(c, dv[i], hv[i]);
	}
	fp8_scratch(c);
	zp_log(ZP_LOG_INFO, "msg=\"FP8 weights\" dense_w8a16=%d (a 128-row block spans two sources)",
	       c->nw16);
}

/* gds_load.h's fallback: a matrix staged after all */
static void stage_cb(void *ctx, void *dst, const void *host, size_t bytes)
{
	stage_bytes(ctx, dst, host, bytes);
}

/* The file-served matrices (when GDS opened): read now, or staged when a
   read fails; the path and why, once. */
static void gds_finish(stager *s, const char *why_not)
{
	char why[256] = "";
	if (s->gds && !zp_gds_bytes(s->gds))
		why_not = "no matrix holds the file's bytes as they are (not bf16 rows of even k)";
	if (s->gds && zp_gds_bytes(s->gds) && zp_gds_run(s->gds, stage_cb, s, why, sizeof why) == 0)
		return;
	zp_log(ZP_LOG_INFO, "msg=\"weights path\" path=staged why=\"%s\"", why[0] ? why : why_not);
}

const zp_model *zp_backend_cuda_model(zp_backend *b, const zp_model *m, bool experts, zp_err *e)
{
	cu_ctx *c = C(b);
	const zp_config *cf = &m->cfg;
	size_t H = (size_t)cf->hidden, d = (size_t)cf->head_dim;
	size_t qkv = (size_t)(cf->heads + 2 * cf->kv_heads) * d;
	stager s;
	ZP_ASSERT(!c->have_model);
	if (m->fp8_compute != ZP_FP8_AUTO)
		c->fp8c = m->fp8_compute;
	if (m->layout != &zp_cuda_wlayout) {
		zp_errf(e, "--device %s: the model was packed for the %s layout, not %s (load it "
			"through zp_device_layout)", c->o.dev == ZP_DEV_SIM ? "sim" : "cuda",
			m->layout->name, zp_cuda_wlayout.name);
		return NULL;
	}
	c->mdev = *m;
	c->mdev.layers = zp_xcalloc((size_t)cf->layers, sizeof *c->mdev.layers);
	stage_open(&s, c, STAGE_BYTES);
	char why_not[256] = "";
	s.gds = zp_gds_new(c->rt, m, GDS_IN_FLIGHT, why_not, sizeof why_not);
	zp_log(ZP_LOG_INFO, "msg=\"weights to the device\" device=%s gds=%s", c->rt->ops->name,
	       s.gds ? (c->rt->sim ? "yes (sim: pread)" : "yes (cuFile)") : "no");
	/* the embedding as f32 rows: the cpu's zp_model_embed values */
	c->embed = own(c, (size_t)cf->vocab * H * 4);
	float *row = zp_xmalloc(H * 4 * 256);
	for (int t0 = 0; t0 < cf->vocab; t0 += 256) {
		int t1 = ZP_MIN(cf->vocab, t0 + 256);
		for (int t = t0; t < t1; t++)
			zp_model_embed(m, t, row + (size_t)(t - t0) * H);
		stage_bytes(&s, c->embed + (size_t)t0 * H, row, (size_t)(t1 - t0) * H * 4);
	}
	c->rt->ops->stream_sync(c->rt, c->xs); /* row is reused no more */
	free(row);
	c->mdev.final_norm = vec_up(&s, m->final_norm, H);
	mat_up1(&s, &c->mdev.lm_head, cf->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
	for (int l = 0; l < cf->layers; l++) {
		const zp_layer *L = &m->layers[l];
		zp_layer *D = &c->mdev.layers[l];
		char pfx[96], q[ZP_ST_NAME_MAX], k[ZP_ST_NAME_MAX], v[ZP_ST_NAME_MAX],
			o[ZP_ST_NAME_MAX];
		snprintf(pfx, sizeof pfx, "model.layers.%d", l);
		snprintf(q, sizeof q, "%s.self_attn.q_proj.weight", pfx);
		snprintf(k, sizeof k, "%s.self_attn.k_proj.weight", pfx);
		snprintf(v, sizeof v, "%s.self_attn.v_proj.weight", pfx);
		snprintf(o, sizeof o, "%s.self_attn.o_proj.weight", pfx);
		const char *qkv_names[3] = { q, k, v };
		int qd = cf->heads * cf->head_dim, kvd = cf->kv_heads * cf->head_dim;
		int qkv_rows[3] = { 0, qd, qd + kvd };
		*D = *L;
		D->attn_norm = vec_up(&s, L->attn_norm, H);
		D->q_norm = vec_up(&s, L->q_norm, d);
		D->k_norm = vec_up(&s, L->k_norm, d);
		D->bqkv = vec_up(&s, L->bqkv, qkv);
		D->bo = vec_up(&s, L->bo, H);
		D->ffn_norm = vec_up(&s, L->ffn_norm, H);
		mat_up(&s, &D->wqkv, qkv_names, qkv_rows, 3);
		mat_up1(&s, &D->wo, o);
		if (!L->sparse) {
			snprintf(pfx, sizeof pfx, "model.layers.%d.mlp", l);
			swiglu_up(&s, &D->w_gate_up, pfx);
			down_up(&s, &D->w_down, pfx);
			continue;
		}
		mat_up(&s, &D->router, NULL, NULL, 0); /* f32 on the device: staged */
		D->experts = NULL;
		D->exp_gate_up = D->exp_down = NULL;
		if (experts && L->experts && L->exp_gate_up[0].data) {
			D->exp_gate_up = experts_up(&s, L->exp_gate_up, cf->experts, l, true);
			D->exp_down = experts_up(&s, L->exp_down, cf->experts, l, false);
		}
	}
	gds_finish(&s, why_not);
	zp_gds_free(s.gds);
	if (m->fp8)
		fp8_mirror(c, m);
	stage_close(&s, "model");
	c->have_model = true;
	return &c->mdev;
}

/* ---- the table ---- */

static void cu_free(zp_backend *b)
{
	if (!b)
		return;
	cu_ctx *c = C(b);
	c->rt->ops->stream_sync(c->rt, c->cs);
	if (c->have_model) {
		for (int l = 0; l < c->mdev.cfg.layers; l++) {
			free(c->mdev.layers[l].exp_gate_up);
			free(c->mdev.layers[l].exp_down);
		}
		free(c->mdev.layers);
	}
	for (int i = 0; i < c->nowned; i++)
		c->rt->ops->free(c->rt, c->owned[i]);
	free(c->owned);
	free(c->w16);
	c->rt->ops->free(c->rt, c->tmp);
	c->rt->ops->free(c->rt, c->meta_d);
	c->rt->ops->host_free(c->rt, c->meta_h);
	c->rt->ops->stream_free(c->rt, c->cs);
	c->rt->ops->stream_free(c->rt, c->xs);
	if (zp_drt_failed(c->rt)) /* a poisoned context: the next instance needs a clean one */
		c->rt->ops->reset(c->rt);
	else
		c->rt->ops->close(c->rt);
	free(c);
	free(b);
}

static const struct zp_backend_ops cuda_ops = {
	.name = "cuda",
	.free = cu_free,
	.model = zp_backend_cuda_model,
	.sync = cu_sync,
	.status = cu_status,
	.alloc = cu_alloc,
	.mfree = cu_mfree,
	.host_pin = cu_host_pin,
	.upload = cu_upload,
	.download = cu_download,
	.copy = cu_copy,
	.copy2d = cu_copy2d,
	.mem_info = cu_mem_info,
	.event_new = cu_event_new,
	.event_free = cu_event_free,
	.event_record = cu_event_record,
	.event_wait = cu_event_wait,
	.event_after = cu_event_after,
	.queue_new = cu_queue_new,
	.queue_free = cu_queue_free,
	.queue_copy = cu_queue_copy,
	.queue_record = cu_queue_record,
	.queue_after = cu_queue_after,
	.embed = cu_embed,
	.rmsnorm = cu_rmsnorm,
	.add_bias = cu_add_bias,
	.qk_norm_rope = cu_qk_norm_rope,
	.residual = cu_residual,
	.to_bf16 = cu_to_bf16,
	.gemm = cu_gemm,
	.expert_gemm = cu_expert_gemm,
	.attn_work_new = cu_attn_work_new,
	.attn_work_free = cu_attn_work_free,
	.attention = cu_attention,
	.route = cu_route,
	.dispatch = cu_dispatch,
	.gather = cu_gather,
	.combine = cu_combine,
	.logprobs = cu_logprobs,
	.pool = cu_pool,
};

/* Executor i runs on GPU i mod the GPUs here: several executors may share one */
static int cuda_ordinal(int i)
{
	int n = zp_drt_cuda_count();
	if (n <= 0 || i < n)
		return i; /* none: zp_drt_cuda_new says so */
	zp_log(ZP_LOG_INFO, "msg=\"executors share GPUs\" executor=%d gpu=%d gpus=%d", i, i % n, n);
	return i % n;
}

zp_backend *zp_backend_cuda_new(const zp_cuda_opts *o, zp_err *e)
{
	zp_drt *rt;
	ZP_ASSERT(o->dev == ZP_DEV_CUDA || o->dev == ZP_DEV_SIM);
	if (o->dev == ZP_DEV_CUDA &&
	    ((o->expert_v1 && !zp_kv1_expert_gemm) || (o->attn_v1 && !zp_kv1_attention))) {
		zp_errf(e, "v1 %s kernel not built (the kernels/ files named v1_*.cu)",
			o->expert_v1 && !zp_kv1_expert_gemm ? "expert GEMM" : "attention");
		return NULL;
	}
	int gpu = o->dev == ZP_DEV_SIM ? -1 : cuda_ordinal(o->ordinal);
	rt = o->dev == ZP_DEV_SIM ? zp_drt_sim_new_on(o->threads, o->ordinal) :
				    zp_drt_cuda_new(gpu, o->rows_max, e);
	if (!rt)
		return NULL;
	zp_backend *b = zp_xcalloc(1, sizeof *b);
	cu_ctx *c = zp_xcalloc(1, sizeof *c);
	b->ctx = c;
	c->gpu = gpu;
	b->ops = &cuda_ops;
	c->rt = rt;
	c->o = *o;
	c->fp8c = o->fp8c;
	c->cs = rt->ops->stream_new(rt);
	c->xs = rt->ops->stream_new(rt);
	c->meta_h = rt->ops->host_alloc(rt, META_BYTES);
	c->meta_d = dalloc(c, META_BYTES);
	c->tmp_floats = ZP_MAX(o->tmp_floats, 1);
	c->tmp = dalloc(c, c->tmp_floats * 4);
	if (zp_drt_error(rt, e)) { /* the device failed as it started */
		cu_free(b);
		return NULL;
	}
	char desc[256];
	rt->ops->describe(rt, desc, sizeof desc);
	zp_log(ZP_LOG_INFO, "msg=\"device backend\" device=\"%s\" expert_gemm=%s attention=%s "
	       "workspace_mb=%.1f", desc, o->expert_v1 ? "v1" : "v0", o->attn_v1 ? "v1" : "v0",
	       (c->tmp_floats * 4 + META_BYTES) / 1048576.0);
	return b;
}

zp_backend *zp_backend_device_new(enum zp_device dev, int ordinal, int threads,
				  const zp_config *c, int batch_tokens_max, zp_err *e)
{
	size_t T = (size_t)batch_tokens_max, K = (size_t)ZP_MAX(c->topk, 1);
	size_t fp = (size_t)ZP_ALIGN_UP(c->ffn, 16), mfp = (size_t)ZP_ALIGN_UP(ZP_MAX(c->moe_ffn, 1), 16);
	/* the SwiGLU scratch: a dense MLP's [T][2F] or the routed rows' [T K][2F'] */
	zp_cuda_opts o = { .dev = dev, .ordinal = ordinal, .threads = threads,
			   .rows_max = (int)(T * (c->moe ? K : 1)),
			   .hidden = c->hidden, .qkv_rows = (c->heads + 2 * c->kv_heads) * c->head_dim,
			   .qd = c->heads * c->head_dim, .ffn = c->ffn, .moe_ffn = c->moe_ffn,
			   .experts = c->moe ? c->experts : 0,
			   .tmp_floats = ZP_MAX(T * 2 * fp, c->moe ? T * K * 2 * mfp : 0) };
	const char *ev = getenv("ZP_EXPERT_GEMM"), *av = getenv("ZP_ATTENTION");
	const char *fv = getenv("ZP_FP8_COMPUTE");
	o.expert_v1 = ev && !strcmp(ev, "v1");
	o.attn_v1 = av && !strcmp(av, "v1");
	if (fv && *fv && strcmp(fv, "w8a8") && strcmp(fv, "w8a16")) { /* empty: the default */
		zp_errf(e, "ZP_FP8_COMPUTE=%s: w8a8 or w8a16", fv);
		return NULL;
	}
	/* the environment's mode is a test hook: a model loaded with an explicit
	   --fp8-compute overrides it (zp_backend_cuda_model) */
	o.fp8c = fv && !strcmp(fv, "w8a16") ? ZP_FP8_W8A16 : ZP_FP8_W8A8;
	return zp_backend_cuda_new(&o, e);
}
