/* devrt_sim.c -- the sim device (devrt.h): host memory; each stream an
   in-order queue drained by its own thread; events count records reached;
   kernels run by their host twins (kernels/zk_ops.h) block by block on a
   thread pool, lane by lane inside a block, phase by phase where the kernel
   syncs its lanes; GEMMs by the twin zk_gemm_dot (gemm.c's plain-C order),
   the block-scaled FP8 matmul by zk_fp8_gemm_dot (zk_fp8.h), each refused
   first where blas_contract.h says the library would; GPUDirect Storage's
   file reads by pread under cuFile's O_DIRECT rule.
   A failed call (a contract refusal, an injected fault) is the runtime's
   sticky error (devrt.h): queued copies, launches and GEMMs are then skipped,
   records and waits still run (so no waiter hangs).
   Threads: the owner enqueues; each stream's thread runs its items; the pool's
   workers run blocks; event_sync from any thread. */
#define _GNU_SOURCE /* O_DIRECT */
#include "devrt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "blas_contract.h"
#include "pool.h"

enum item_kind { IT_COPY, IT_LAUNCH, IT_GEMM, IT_RECORD, IT_WAIT, IT_STOP };

struct zp_devent {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t issued, done;
};

typedef struct item {
	struct item *next;
	enum item_kind kind;
	void *dst;
	const void *src;
	size_t bytes;
	size_t dpitch, spitch, rows;	/* IT_COPY: rows of bytes (1: a plain copy) */
	zk_launch l;
	zp_dgemm *g;	/* owned: ng ops */
	int ng;
	zp_devent *ev;
	uint64_t target;
	bool fault;	/* injected (zp_drt_sim_fail_after): fails instead of running */
} item;

#define SIM_STREAMS 16

typedef struct {
	zp_pool *pool;
	pthread_mutex_t pool_mu;	/* one stream at a time runs on the pool */
	int copy_delay_us;		/* ZP_SIM_COPY_DELAY_US: a copy queue's copies land
					   this late (zp_drt_sim_copy_queue) */
	int threads;
	enum zp_grouped_mode grouped;	/* ZP_GROUPED_GEMM, as devrt_cuda.c */
	zp_dstream *streams[SIM_STREAMS];	/* live ones (free waits for them) */
	size_t mem_bytes;		/* ZP_SIM_MEMORY_BYTES: a device of this size (0: the host's) */
	_Atomic size_t mem_used;	/* allocated since start (frees not counted) */
	_Atomic size_t *dev_used;	/* its device's, shared with the runtimes on it
					   (NULL: the host's memory) */
	int devices;
} sim_ctx;

/* With ZP_SIM_MEMORY_BYTES (tests) the runtimes share the memory of
   ZP_SIM_DEVICES (default 1) sim devices of that size, zp_drt_sim_new_on's
   ordinal o on device o mod n, as executors sharing a GPU share its memory. */
#define SIM_DEVICES_MAX 64
static _Atomic size_t sim_dev_used[SIM_DEVICES_MAX];

/* What r's device has allocated. */
static size_t sim_used(zp_drt *r);

struct zp_dstream {
	zp_drt *r;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	item *head, *tail;
	zp_devent *idle;	/* stream_sync's own event */
	bool copy_queue;	/* a backend's copy queue (zp_drt_sim_copy_queue) */
};

static sim_ctx *S(zp_drt *r)
{
	return r->ctx;
}

/* ---- kernels: the twins ---- */

typedef void (*lane_fn)(const void *a, int block, int lane);

static void lanes(lane_fn fn, const void *a, int block)
{
	for (int l = 0; l < ZK_WARP; l++)
		fn(a, block, l);
}

static void twin_rmsnorm(const zk_rmsnorm *a, int b)
{
	double part[8];
	for (int l = 0; l < 8; l++)
		part[l] = zk_rms_part(zk_rmsnorm_x(a, b), a->cols, l);
	float r = zk_rms_scale(part, a->cols, a->eps);
	for (int l = 0; l < ZK_WARP; l++)
		zk_rmsnorm_apply(a, b, r, l);
}

static void twin_rope(const zk_rope *a, int b)
{
	double part[8];
	const float *w;
	const float *v = zk_rope_vec(a, b, &w);
	for (int l = 0; l < 8; l++)
		part[l] = zk_rms_part(v, a->d, l);
	float r = zk_rms_scale(part, a->d, a->eps);
	for (int l = 0; l < ZK_WARP; l++)
		zk_rope_apply(a, b, r, l);
}

static void twin_attn(const zk_attn *a, int b)
{
	zk_att_row s[ZK_WARP];
	float part[ZK_WARP];
	for (int l = 0; l < ZK_WARP; l++)
		zk_att_begin(a, b, &s[l]);
	for (int j = 0; j < s[0].nkeys; j++) {
		const float *k = zk_att_kv(a, &s[0], j, 0, b), *v = zk_att_kv(a, &s[0], j, 1, b);
		for (int l = 0; l < ZK_WARP; l++)
			part[l] = zk_att_dot_part(a, &s[l], k, l);
		float dot = zk_bfly_sum_host(part);
		for (int l = 0; l < ZK_WARP; l++)
			zk_att_update(a, &s[l], dot, v, l);
	}
	for (int l = 0; l < ZK_WARP; l++)
		zk_att_end(a, &s[l], b, l);
}

static void twin_lse(const zk_lse *a, int b)
{
	zk_lse_acc acc[ZK_WARP];
	for (int l = 0; l < ZK_WARP; l++)
		acc[l] = zk_lse_part(a, b, l);
	zk_lse_acc t = zk_lse_bfly_host(acc);
	float lse = t.m + logf(t.s);
	zk_topk_lane tk[ZK_WARP];
	int above = 0;
	for (int l = 0; l < ZK_WARP; l++) {
		zk_lse_out(a, b, lse, l);
		above += zk_lse_rank_part(a, b, l);
		zk_lse_topk_lane(a, b, l, &tk[l]);
	}
	zk_lse_rank_out(a, b, above);
	zk_lse_topk_out(a, b, lse, tk);
}

static void twin_pool(const zk_pool *a)
{
	double part[8];
	for (int p = a->mean ? 0 : a->n - 1; p < a->n; p++) {
		for (int l = 0; l < 8; l++)
			part[l] = zk_rms_part(a->x + (size_t)p * a->ldx, a->cols, l);
		float r = zk_rms_scale(part, a->cols, a->eps);
		for (int l = 0; l < ZK_WARP; l++)
			zk_pool_row(a, p, r, l);
	}
	for (int l = 0; l < ZK_WARP; l++)
		zk_pool_mean(a, l);
	if (!a->normalize)
		return;
	float inv = zk_pool_l2(a);
	for (int l = 0; l < ZK_WARP; l++)
		zk_pool_scale(a, inv, l);
}

static void twin_dispatch(const zk_dispatch *a, int b)
{
	for (int l = 0; l < ZK_DISPATCH_LANES; l++) {
		if (a->phase == ZK_DISPATCH_COUNT)
			zk_dispatch_count(a, b, l);
		else if (a->phase == ZK_DISPATCH_PLACE)
			zk_dispatch_place(a, b, l);
		else
			zk_dispatch_sum(a, l);
	}
	if (a->phase != ZK_DISPATCH_SCAN)
		return;
	zk_dispatch_scan(a);
	for (int l = 0; l < ZK_DISPATCH_LANES; l++)
		zk_dispatch_starts(a, l);
}

/* the warp's amax: max is exact whatever the order of the butterfly */
static void twin_act_quant(const zk_actq *a, int b)
{
	float m = 0.0f;
	for (int l = 0; l < ZK_WARP; l++)
		m = fmaxf(m, zk_actq_amax_part(a, b, l));
	float s = zk_actq_scale(m);
	for (int l = 0; l < ZK_WARP; l++)
		zk_actq_store(a, b, s, l);
}

#define LANE(f, T) static void f##_v(const void *a, int b, int l) { f((const T *)a, b, l); }
LANE(zk_embed_lane, zk_embed)
LANE(zk_gather_lane, zk_gather)
LANE(zk_combine_lane, zk_combine)
LANE(zk_residual_lane, zk_vec)
LANE(zk_bias_lane, zk_vec)
LANE(zk_tobf16_lane, zk_tobf16)
LANE(zk_swiglu_lane, zk_swiglu)
LANE(zk_fp8w_lane, zk_fp8w)

static void block_task(void *v, int b, int thread)
{
	const zk_launch *l = v;
	(void)thread;
	switch (l->kind) {
	case ZK_EMBED: lanes(zk_embed_lane_v, &l->u.embed, b); break;
	case ZK_RMSNORM: twin_rmsnorm(&l->u.rmsnorm, b); break;
	case ZK_ROPE: twin_rope(&l->u.rope, b); break;
	case ZK_ATTN: twin_attn(&l->u.attn, b); break;
	case ZK_ROUTE:
		for (int i = 0; i < ZK_ROWS_PER_BLOCK; i++)
			if (b * ZK_ROWS_PER_BLOCK + i < l->u.route.n)
				zk_route_row(&l->u.route, b * ZK_ROWS_PER_BLOCK + i);
		break;
	case ZK_DISPATCH: twin_dispatch(&l->u.dispatch, b); break;
	case ZK_GATHER: lanes(zk_gather_lane_v, &l->u.gather, b); break;
	case ZK_COMBINE: lanes(zk_combine_lane_v, &l->u.combine, b); break;
	case ZK_RESIDUAL: lanes(zk_residual_lane_v, &l->u.vec, b); break;
	case ZK_BIAS: lanes(zk_bias_lane_v, &l->u.vec, b); break;
	case ZK_TO_BF16: lanes(zk_tobf16_lane_v, &l->u.tobf16, b); break;
	case ZK_SWIGLU: lanes(zk_swiglu_lane_v, &l->u.swiglu, b); break;
	case ZK_LSE: twin_lse(&l->u.lse, b); break;
	case ZK_POOL: twin_pool(&l->u.pool); break;
	case ZK_ACT_QUANT: twin_act_quant(&l->u.actq, b); break;
	case ZK_FP8_WIDEN: lanes(zk_fp8w_lane_v, &l->u.fp8w, b); break;
	case ZK_NKINDS: ZP_ASSERT(0);
	}
}

/* GEMM twin: tasks of 8 rows of one op */
#define GEMM_ROWS 8
struct gemm_run {
	const zp_dgemm *g;
	int ng;
	int *first;	/* [ng + 1] task prefix */
};

static void gemm_task(void *v, int t, int thread)
{
	struct gemm_run *r = v;
	int o = 0;
	(void)thread;
	while (r->first[o + 1] <= t)
		o++;
	const zp_dgemm *g = &r->g[o];
	size_t es = g->fp8 ? 1 : g->bf16 ? 2 : 4;
	int m0 = (t - r->first[o]) * GEMM_ROWS, m1 = ZP_MIN(m0 + GEMM_ROWS, g->m);
	int nrb = (g->n + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK;
	for (int i = m0; i < m1; i++) {
		const char *a = (const char *)g->a + (size_t)i * g->lda * es;
		float *c = g->c + (size_t)i * g->ldc;
		for (int j = 0; j < g->n; j++) {
			const char *w = (const char *)g->w + (size_t)j * g->kp * es;
			float v2 = g->fp8 ? zk_fp8_gemm_dot((const uint8_t *)a, (const uint8_t *)w, g->kp,
							 g->sa + i, (size_t)g->m,
							 g->sw + j / ZK_FP8_BLOCK, (size_t)nrb)
					  : zk_gemm_dot(a, g->bf16, w, g->kp);
			c[j] = g->add ? c[j] + v2 : v2;
		}
	}
}

static void run_gemms(zp_drt *r, const zp_dgemm *g, int ng)
{
	int *first = zp_xcalloc((size_t)ng + 1, sizeof *first);
	for (int o = 0; o < ng; o++)
		first[o + 1] = first[o] + (g[o].m + GEMM_ROWS - 1) / GEMM_ROWS;
	struct gemm_run run = { g, ng, first };
	zp_pool_run(S(r)->pool, first[ng], gemm_task, &run);
	free(first);
}

/* ---- streams ---- */

static void ev_reach(zp_devent *ev, uint64_t target)
{
	pthread_mutex_lock(&ev->mu);
	if (ev->done < target)
		ev->done = target;
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
}

static void ev_wait(zp_devent *ev, uint64_t target)
{
	pthread_mutex_lock(&ev->mu);
	while (ev->done < target)
		pthread_cond_wait(&ev->cv, &ev->mu);
	pthread_mutex_unlock(&ev->mu);
}

/* ---- fault injection (tests): one count for the whole process, so a
   runtime rebuilt after the fault does not fail again ---- */

static _Atomic long fault_left;	/* > 0: launches and GEMMs until the fault */

void zp_drt_sim_fail_after(long n)
{
	atomic_store(&fault_left, n > 0 ? n : 0);
}

/* this launch or GEMM is the armed one */
static bool fault_due(void)
{
	long due = atomic_load(&fault_left);
	return due > 0 && atomic_fetch_sub(&fault_left, 1) == 1;
}

static void arm_from_env(void)
{
	static _Atomic bool done;
	const char *f = getenv("ZP_FAULT_DEVICE_AFTER"); /* tests: see devrt.h */
	if (atomic_exchange(&done, true) || !f || atol(f) <= 0)
		return;
	zp_drt_sim_fail_after(atol(f));
	zp_log(ZP_LOG_WARN, "msg=\"fault injection armed\" device=sim fail_after=%ld", atol(f));
}

static void run_item(zp_drt *r, zp_dstream *s, item *it)
{
	bool work = it->kind == IT_COPY || it->kind == IT_LAUNCH || it->kind == IT_GEMM;
	if (work && it->fault) /* as a kernel fault: found when the stream gets there */
		zp_drt_fail(r, it->kind == IT_GEMM ? "gemm" : "kernel launch",
			    "injected fault (ZP_FAULT_DEVICE_AFTER)", __FILE__, __LINE__);
	if (work && zp_drt_failed(r))
		return;
	switch (it->kind) {
	case IT_COPY:
		if (s->copy_queue && S(r)->copy_delay_us) /* a slow copy engine: a read not
							     ordered after it shows */
			usleep((useconds_t)S(r)->copy_delay_us);
		for (size_t i = 0; i < it->rows; i++)
			memmove((char *)it->dst + i * it->dpitch,
				(const char *)it->src + i * it->spitch, it->bytes);
		break;
	case IT_LAUNCH:
		pthread_mutex_lock(&S(r)->pool_mu);
		zp_pool_run(S(r)->pool, it->l.blocks, block_task, &it->l);
		pthread_mutex_unlock(&S(r)->pool_mu);
		break;
	case IT_GEMM:
		pthread_mutex_lock(&S(r)->pool_mu);
		run_gemms(r, it->g, it->ng);
		pthread_mutex_unlock(&S(r)->pool_mu);
		break;
	case IT_RECORD:
		ev_reach(it->ev, it->target);
		break;
	case IT_WAIT:
		ev_wait(it->ev, it->target);
		break;
	case IT_STOP:
		break;
	}
}

static void *stream_main(void *v)
{
	zp_dstream *s = v;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (!s->head)
			pthread_cond_wait(&s->cv, &s->mu);
		item *it = s->head;
		pthread_mutex_unlock(&s->mu);
		run_item(s->r, s, it);
		/* unlinked after it ran: an empty queue means all done */
		pthread_mutex_lock(&s->mu);
		s->head = it->next;
		if (!s->head)
			s->tail = NULL;
		pthread_mutex_unlock(&s->mu);
		enum item_kind k = it->kind;
		free(it->g);
		free(it);
		if (k == IT_STOP)
			return NULL;
	}
}

static void push(zp_dstream *s, item *it)
{
	pthread_mutex_lock(&s->mu);
	if (s->tail)
		s->tail->next = it;
	else
		s->head = it;
	s->tail = it;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static item *mk(enum item_kind k)
{
	item *it = zp_xcalloc(1, sizeof *it);
	it->kind = k;
	return it;
}

static zp_devent *sim_event_new(zp_drt *r)
{
	zp_devent *ev = zp_xcalloc(1, sizeof *ev);
	pthread_mutex_init(&ev->mu, NULL);
	pthread_cond_init(&ev->cv, NULL);
	return ev;
}

static void sim_event_free(zp_drt *r, zp_devent *ev)
{
	if (!ev)
		return;
	pthread_mutex_destroy(&ev->mu);
	pthread_cond_destroy(&ev->cv);
	free(ev);
}

static void sim_event_record(zp_drt *r, zp_devent *ev, zp_dstream *s)
{
	item *it = mk(IT_RECORD);
	pthread_mutex_lock(&ev->mu);
	it->target = ++ev->issued;
	pthread_mutex_unlock(&ev->mu);
	it->ev = ev;
	push(s, it);
}

static void sim_event_sync(zp_drt *r, zp_devent *ev)
{
	pthread_mutex_lock(&ev->mu);
	uint64_t t = ev->issued;
	pthread_mutex_unlock(&ev->mu);
	ev_wait(ev, t);
}

static void sim_stream_wait(zp_drt *r, zp_dstream *s, zp_devent *ev)
{
	item *it = mk(IT_WAIT);
	pthread_mutex_lock(&ev->mu);
	it->target = ev->issued;
	pthread_mutex_unlock(&ev->mu);
	it->ev = ev;
	push(s, it);
}

static zp_dstream *sim_stream_new(zp_drt *r)
{
	zp_dstream *s = zp_xcalloc(1, sizeof *s);
	s->r = r;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->idle = sim_event_new(r);
	ZP_ASSERT(pthread_create(&s->th, NULL, stream_main, s) == 0);
	int i = 0;
	while (i < SIM_STREAMS && S(r)->streams[i])
		i++;
	ZP_ASSERT(i < SIM_STREAMS);
	S(r)->streams[i] = s;
	return s;
}

static void sim_stream_sync(zp_drt *r, zp_dstream *s)
{
	sim_event_record(r, s->idle, s);
	sim_event_sync(r, s->idle);
}

static void sim_stream_free(zp_drt *r, zp_dstream *s)
{
	if (!s)
		return;
	for (int i = 0; i < SIM_STREAMS; i++)
		if (S(r)->streams[i] == s)
			S(r)->streams[i] = NULL;
	push(s, mk(IT_STOP));
	pthread_join(s->th, NULL);
	sim_event_free(r, s->idle);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static void sim_copy(zp_drt *r, zp_dstream *s, void *dst, const void *src, size_t bytes)
{
	if (!bytes || zp_drt_failed(r))
		return;
	item *it = mk(IT_COPY);
	it->dst = dst;
	it->src = src;
	it->bytes = bytes;
	it->rows = 1;
	push(s, it);
}

/* as cudaMemcpy2DAsync: its pitch contract checked */
static void sim_copy2d(zp_drt *r, zp_dstream *s, void *dst, size_t dpitch, const void *src,
		       size_t spitch, size_t width, size_t rows)
{
	if (!width || !rows || zp_drt_failed(r))
		return;
	ZP_ASSERT(width <= dpitch && width <= spitch);
	item *it = mk(IT_COPY);
	it->dst = dst;
	it->src = src;
	it->bytes = width;
	it->dpitch = dpitch;
	it->spitch = spitch;
	it->rows = rows;
	push(s, it);
}

static void sim_launch(zp_drt *r, zp_dstream *s, const zk_launch *l)
{
	if (l->blocks <= 0 || zp_drt_failed(r))
		return;
	item *it = mk(IT_LAUNCH);
	it->l = *l;
	it->fault = fault_due();
	push(s, it);
}

/* the library call devrt_cuda.c would make for g, refused where it would be
   (the sticky error, at once: the library returns its status to the call) */
static bool sim_refused(zp_drt *r, const zp_dgemm *g, enum zp_blas_lib lib)
{
	char why[256];
	zp_blas_call bc = zp_blas_plan(g, lib);
	if (!zp_blas_refusal(&bc, why, sizeof why))
		return false;
	zp_drt_fail(r, zp_blas_lib_name(lib), why, __FILE__, __LINE__);
	return true;
}

static void sim_enqueue_gemms(zp_dstream *s, const zp_dgemm *g, int n)
{
	item *it = mk(IT_GEMM);
	it->g = zp_xmalloc((size_t)n * sizeof *g);
	memcpy(it->g, g, (size_t)n * sizeof *g);
	it->ng = n;
	it->fault = fault_due();
	push(s, it);
}

static void sim_gemm_grouped(zp_drt *r, zp_dstream *s, const zp_dgemm *g, int n)
{
	if (n <= 0 || zp_drt_failed(r))
		return;
	for (int i = 0; i < n; i++)
		if (sim_refused(r, &g[i], S(r)->grouped == ZP_GROUPED_CUBLAS ? ZP_BLAS_GROUPED
									    : ZP_BLAS_LT_MATMUL))
			return;
	sim_enqueue_gemms(s, g, n);
}

static void sim_gemm(zp_drt *r, zp_dstream *s, const zp_dgemm *g)
{
	if (!g->m || zp_drt_failed(r) || sim_refused(r, g, ZP_BLAS_LT_MATMUL))
		return;
	sim_enqueue_gemms(s, g, 1);
}

/* ---- memory ---- */

static void *sim_alloc(zp_drt *r, size_t bytes)
{
	if (zp_drt_failed(r))
		return NULL;
	if (S(r)->mem_bytes && sim_used(r) + bytes > S(r)->mem_bytes)
		return NULL; /* as cudaMalloc: out of the device's memory */
	atomic_fetch_add(&S(r)->mem_used, bytes);
	if (S(r)->dev_used)
		atomic_fetch_add(S(r)->dev_used, bytes);
	void *p = zp_xalloc_aligned(ZP_ALIGN_UP(ZP_MAX(bytes, 64), 64));
	memset(p, 0, ZP_ALIGN_UP(ZP_MAX(bytes, 64), 64));
	return p;
}

/* pinned host memory: contents undefined, as cudaMallocHost's */
/* the sim's memory is the host's: nothing to pin */
static void sim_host_register(zp_drt *r, void *p, size_t bytes, bool on)
{
}

static void *sim_host_alloc(zp_drt *r, size_t bytes)
{
	return zp_xalloc_aligned(ZP_ALIGN_UP(ZP_MAX(bytes, 64), 64));
}

/* as cudaFree: the work in flight is done first (it may still read p) */
static void sim_free(zp_drt *r, void *p)
{
	for (int i = 0; i < SIM_STREAMS; i++)
		if (S(r)->streams[i])
			sim_stream_sync(r, S(r)->streams[i]);
	zp_free_aligned(p);
}

/* ---- GPUDirect Storage, played: pread into the sim's device memory, with
   cuFile's O_DIRECT rule kept (an unaligned read is refused as it would be
   on the GPU path). A file system that refuses O_DIRECT (tmpfs) is read
   through the page cache, as cuFile's compat mode would: said once. ---- */

struct zp_dfile {
	int fd;
};

static zp_dfile *sim_file_open(zp_drt *r, const char *path, char *why, size_t len)
{
	static _Atomic bool said;
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 && errno == EINVAL) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !atomic_exchange(&said, true))
			zp_log(ZP_LOG_INFO, "msg=\"GDS (sim): the file system refuses O_DIRECT; reads go "
			       "through the page cache, as cuFile's compat mode\" file=%s", path);
	}
	if (fd < 0) {
		snprintf(why, len, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	zp_dfile *f = zp_xcalloc(1, sizeof *f);
	f->fd = fd;
	return f;
}

static int64_t sim_file_read(zp_drt *r, zp_dfile *f, void *dst, uint64_t off, size_t bytes,
			     char *why, size_t len)
{
	const char *bad = zp_dfile_misaligned(dst, off, bytes);
	size_t got = 0;
	if (bad) {
		snprintf(why, len, "cuFileRead (sim): %s", bad);
		return -1;
	}
	while (got < bytes) {
		ssize_t n = pread(f->fd, (char *)dst + got, bytes - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, len, "cuFileRead (sim): pread: %s", strerror(errno));
			return -1;
		}
		if (n == 0) /* the end of the file */
			break;
		got += (size_t)n;
	}
	return (int64_t)got;
}

static void sim_file_close(zp_drt *r, zp_dfile *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f);
}

/* the sim's memory is the host's: nothing to register */
static void sim_file_buf(zp_drt *r, void *p, size_t bytes, bool on)
{
}

/* every sim device is host memory and any thread may drive it */
static void sim_bind(zp_drt *r)
{
}

static void *sim_native_stream(zp_drt *r, zp_dstream *s)
{
	return NULL;
}

static int sim_mem_info(zp_drt *r, size_t *free_bytes, size_t *total_bytes, int *devices,
			bool *host)
{
	size_t used = sim_used(r);
	*host = S(r)->mem_bytes == 0;
	*total_bytes = S(r)->mem_bytes;
	*free_bytes = used < S(r)->mem_bytes ? S(r)->mem_bytes - used : 0;
	*devices = S(r)->devices;
	return zp_drt_failed(r) ? -1 : 0;
}

static void sim_describe(zp_drt *r, char *buf, size_t len)
{
	snprintf(buf, len, "sim (host twins on %d threads; a test device)", S(r)->threads);
}

/* the sim records its errors when they happen */
static void sim_check(zp_drt *r)
{
}

static void sim_close(zp_drt *r);

/* a fresh sim runtime starts clean: nothing of the device to reset */
static void sim_reset(zp_drt *r)
{
	sim_close(r);
}

static size_t sim_used(zp_drt *r)
{
	return atomic_load(S(r)->dev_used ? S(r)->dev_used : &S(r)->mem_used);
}

static void sim_close(zp_drt *r)
{
	if (!r)
		return;
	if (S(r)->dev_used) /* its device gets back what it took */
		atomic_fetch_sub(S(r)->dev_used, atomic_load(&S(r)->mem_used));
	zp_pool_free(S(r)->pool);
	pthread_mutex_destroy(&S(r)->pool_mu);
	free(r->ctx);
	free(r);
}

static const struct zp_drt_ops sim_ops = {
	.name = "sim",
	.close = sim_close,
	.alloc = sim_alloc,
	.free = sim_free,
	.host_alloc = sim_host_alloc,
	.host_free = sim_free,
	.host_register = sim_host_register,
	.stream_new = sim_stream_new,
	.stream_free = sim_stream_free,
	.copy = sim_copy,
	.copy2d = sim_copy2d,
	.stream_sync = sim_stream_sync,
	.event_new = sim_event_new,
	.event_free = sim_event_free,
	.event_record = sim_event_record,
	.event_sync = sim_event_sync,
	.stream_wait = sim_stream_wait,
	.launch = sim_launch,
	.gemm = sim_gemm,
	.gemm_grouped = sim_gemm_grouped,
	.file_open = sim_file_open,
	.file_read = sim_file_read,
	.file_close = sim_file_close,
	.file_buf = sim_file_buf,
	.native_stream = sim_native_stream,
	.bind = sim_bind,
	.describe = sim_describe,
	.mem_info = sim_mem_info,
	.check = sim_check,
	.reset = sim_reset,
};

void zp_drt_sim_copy_queue(zp_drt *r, zp_dstream *s)
{
	ZP_ASSERT(r->sim);
	s->copy_queue = true;
}

zp_drt *zp_drt_sim_new(int threads)
{
	return zp_drt_sim_new_on(threads, 0);
}

zp_drt *zp_drt_sim_new_on(int threads, int ordinal)
{
	zp_drt *r = zp_xcalloc(1, sizeof *r);
	sim_ctx *c = zp_xcalloc(1, sizeof *c);
	arm_from_env();
	c->threads = ZP_MAX(threads, 1);
	c->grouped = zp_grouped_mode_env();
	const char *mb = getenv("ZP_SIM_MEMORY_BYTES"); /* tests: see sim_ctx */
	if (mb)
		c->mem_bytes = strtoull(mb, NULL, 10);
	const char *nd = getenv("ZP_SIM_DEVICES"); /* tests: see sim_dev_used */
	c->devices = nd && atoi(nd) > 0 ? ZP_MIN(atoi(nd), SIM_DEVICES_MAX) : 1;
	if (c->mem_bytes)
		c->dev_used = &sim_dev_used[ordinal % c->devices];
	const char *d = getenv("ZP_SIM_COPY_DELAY_US"); /* tests: see sim_ctx */
	c->copy_delay_us = d ? atoi(d) : 0;
	c->pool = zp_pool_new(c->threads);
	pthread_mutex_init(&c->pool_mu, NULL);
	r->ops = &sim_ops;
	r->ctx = c;
	r->sim = true;
	r->fp8_blk = true; /* it plays an sm_90, cuBLASLt's block-scaled FP8 included */
	return r;
}
