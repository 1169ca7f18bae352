/* devrt_cuda.c -- devrt.h on a GPU: the CUDA runtime (cudaMalloc at start,
   pinned host memory, non-blocking streams, events without timing), the
   kernels of kernels/ (their zk_cu_* launchers), dense GEMMs through cuBLASLt
   and grouped ones through cublasGemmGroupedBatchedEx. Built only where the
   toolkit is (ZP_CUDA_BACKEND); elsewhere zp_drt_cuda_new says so.

   Dense GEMM: per shape class (n, kp, dtype, add) one cuBLASLt algorithm,
   picked by the heuristic at the class's first use for m_max rows, then
   forced to split-K 1 and no reduction scheme, and reused for every m: a
   row's sums do not depend on the batch. bf16 in, f32 accumulate and out;
   f32 in: CUBLAS_COMPUTE_32F_PEDANTIC (no TF32). The class also holds the
   operands' alignment (min of 16, the pointer's, the row stride's): a row
   subset of a batch has the batch's, so it gets the same algorithm.
   Grouped: cuBLAS chooses its kernels per group size, which may change a
   row's sums with its expert's row count; ZP_GROUPED_GEMM=lt runs the
   experts as cuBLASLt GEMMs of fixed algorithms instead (gpu_check compares). */
#include "devrt.h"

#ifndef ZP_CUDA_BACKEND

zp_drt *zp_drt_cuda_new(int device, int m_max, zp_err *e)
{
	zp_errf(e, "--device cuda: this zprefill was built without CUDA (nvcc not found at build "
		   "time)");
	return NULL;
}

#else

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <string.h>

#define GEMM_CLASSES 64
#define GROUP_MAX 4096
#define PTR_SLOTS 8
#define LT_WORKSPACE ((size_t)32 << 20)

/* the launchers of kernels/<op>.cu */
#define K(name) int zk_cu_##name(cudaStream_t s, const zk_launch *l);
K(embed) K(rmsnorm) K(rope) K(attention) K(route) K(dispatch) K(gather) K(combine)
K(residual) K(add_bias) K(to_bf16) K(swiglu) K(logprobs) K(pool)
#undef K

typedef struct {
	int n, kp;
	bool bf16, add;
	int align_a, align_c;	/* bytes: the A rows' and C rows' */
	cublasLtMatmulAlgo_t algo;
} gemm_class;

typedef struct {
	int dev, m_max;
	cublasLtHandle_t lt;
	cublasHandle_t blas;
	void *ws;		/* cuBLASLt workspace */
	gemm_class cls[GEMM_CLASSES];
	int ncls;
	pthread_mutex_t cls_mu;
	/* grouped GEMM pointer arrays: pinned slots copied to the device in
	   stream order, a slot reused once its copy is done */
	const void **ptr_h[PTR_SLOTS];
	const void **ptr_d[PTR_SLOTS];
	cudaEvent_t ptr_ev[PTR_SLOTS];
	int ptr_cur;
	bool grouped_lt;	/* ZP_GROUPED_GEMM=lt */
} cu_rt;

struct zp_dstream {
	cudaStream_t s;
};

struct zp_devent {
	cudaEvent_t e;
};

static cu_rt *R(zp_drt *r)
{
	return r->ctx;
}

static void ck(cudaError_t rc, const char *what)
{
	if (rc != cudaSuccess) {
		zp_log(ZP_LOG_ERROR, "msg=\"CUDA call failed\" call=%s error=\"%s\"", what,
		       cudaGetErrorString(rc));
		zp_panic(__FILE__, __LINE__, what);
	}
}

static void ckb(cublasStatus_t rc, const char *what)
{
	if (rc != CUBLAS_STATUS_SUCCESS) {
		zp_log(ZP_LOG_ERROR, "msg=\"cuBLAS call failed\" call=%s status=%d", what, (int)rc);
		zp_panic(__FILE__, __LINE__, what);
	}
}

static void *c_alloc(zp_drt *r, size_t bytes)
{
	void *p = NULL;
	ck(cudaSetDevice(R(r)->dev), "cudaSetDevice");
	if (cudaMalloc(&p, bytes) != cudaSuccess)
		return NULL;
	ck(cudaMemset(p, 0, bytes), "cudaMemset");
	return p;
}

static void c_free(zp_drt *r, void *p)
{
	if (p)
		ck(cudaFree(p), "cudaFree");
}

static void *c_host_alloc(zp_drt *r, size_t bytes)
{
	void *p = NULL;
	ck(cudaMallocHost(&p, bytes), "cudaMallocHost");
	return p;
}

static void c_host_free(zp_drt *r, void *p)
{
	if (p)
		ck(cudaFreeHost(p), "cudaFreeHost");
}

static zp_dstream *c_stream_new(zp_drt *r)
{
	zp_dstream *s = zp_xcalloc(1, sizeof *s);
	ck(cudaSetDevice(R(r)->dev), "cudaSetDevice");
	ck(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking), "cudaStreamCreate");
	return s;
}

static void c_stream_free(zp_drt *r, zp_dstream *s)
{
	if (!s)
		return;
	ck(cudaStreamDestroy(s->s), "cudaStreamDestroy");
	free(s);
}

static void c_copy(zp_drt *r, zp_dstream *s, void *dst, const void *src, size_t bytes)
{
	if (bytes)
		ck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s->s), "cudaMemcpyAsync");
}

static void c_stream_sync(zp_drt *r, zp_dstream *s)
{
	ck(cudaStreamSynchronize(s->s), "cudaStreamSynchronize");
}

static zp_devent *c_event_new(zp_drt *r)
{
	zp_devent *ev = zp_xcalloc(1, sizeof *ev);
	ck(cudaSetDevice(R(r)->dev), "cudaSetDevice");
	ck(cudaEventCreateWithFlags(&ev->e, cudaEventDisableTiming), "cudaEventCreate");
	return ev;
}

static void c_event_free(zp_drt *r, zp_devent *ev)
{
	if (!ev)
		return;
	ck(cudaEventDestroy(ev->e), "cudaEventDestroy");
	free(ev);
}

static void c_event_record(zp_drt *r, zp_devent *ev, zp_dstream *s)
{
	ck(cudaEventRecord(ev->e, s->s), "cudaEventRecord");
}

static void c_event_sync(zp_drt *r, zp_devent *ev)
{
	ck(cudaEventSynchronize(ev->e), "cudaEventSynchronize");
}

static void c_stream_wait(zp_drt *r, zp_dstream *s, zp_devent *ev)
{
	ck(cudaStreamWaitEvent(s->s, ev->e, 0), "cudaStreamWaitEvent");
}

static void c_launch(zp_drt *r, zp_dstream *s, const zk_launch *l)
{
	static int (*const fn[ZK_NKINDS])(cudaStream_t, const zk_launch *) = {
		[ZK_EMBED] = zk_cu_embed, [ZK_RMSNORM] = zk_cu_rmsnorm, [ZK_ROPE] = zk_cu_rope,
		[ZK_ATTN] = zk_cu_attention, [ZK_ROUTE] = zk_cu_route,
		[ZK_DISPATCH] = zk_cu_dispatch, [ZK_GATHER] = zk_cu_gather,
		[ZK_COMBINE] = zk_cu_combine, [ZK_RESIDUAL] = zk_cu_residual,
		[ZK_BIAS] = zk_cu_add_bias, [ZK_TO_BF16] = zk_cu_to_bf16,
		[ZK_SWIGLU] = zk_cu_swiglu, [ZK_LSE] = zk_cu_logprobs, [ZK_POOL] = zk_cu_pool,
	};
	if (l->blocks <= 0)
		return;
	ck((cudaError_t)fn[l->kind](s->s, l), "kernel launch");
}

/* ---- dense GEMM through cuBLASLt ----
   Row-major C[m][n] = A[m][kp] W[n][kp]^T is, column-major, C^T = W^T A^T:
   cuBLASLt's A = W (kp x n, ld kp, transposed), B = A (kp x m, ld lda). */

typedef struct {
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
} lt_problem;

static void lt_open(lt_problem *p, const zp_dgemm *g, int m)
{
	cudaDataType_t in = g->bf16 ? CUDA_R_16BF : CUDA_R_32F;
	cublasComputeType_t ct = g->bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC;
	cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
	ckb(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
	ckb(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "transa");
	ckb(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn), "transb");
	ckb(cublasLtMatrixLayoutCreate(&p->la, in, (uint64_t)g->kp, (uint64_t)g->n, (int64_t)g->kp), "layout w");
	ckb(cublasLtMatrixLayoutCreate(&p->lb, in, (uint64_t)g->kp, (uint64_t)m, (int64_t)g->lda), "layout a");
	ckb(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, (uint64_t)g->n, (uint64_t)m, (int64_t)g->ldc), "layout c");
}

static void lt_close(lt_problem *p)
{
	cublasLtMatrixLayoutDestroy(p->lc);
	cublasLtMatrixLayoutDestroy(p->lb);
	cublasLtMatrixLayoutDestroy(p->la);
	cublasLtMatmulDescDestroy(p->op);
}

static int align_of(const void *p, size_t stride_bytes)
{
	uintptr_t x = (uintptr_t)p | stride_bytes | 16;
	return (int)(x & -x);
}

static const cublasLtMatmulAlgo_t *gemm_algo(zp_drt *r, const zp_dgemm *g)
{
	cu_rt *c = R(r);
	int aa = align_of(g->a, g->lda * (g->bf16 ? 2 : 4)), ac = align_of(g->c, g->ldc * 4);
	pthread_mutex_lock(&c->cls_mu);
	for (int i = 0; i < c->ncls; i++) {
		gemm_class *k = &c->cls[i];
		if (k->n == g->n && k->kp == g->kp && k->bf16 == g->bf16 && k->add == g->add &&
		    k->align_a == aa && k->align_c == ac) {
			pthread_mutex_unlock(&c->cls_mu);
			return &k->algo;
		}
	}
	ZP_ASSERT(c->ncls < GEMM_CLASSES);
	gemm_class *k = &c->cls[c->ncls];
	lt_problem p;
	zp_dgemm shape = *g;
	shape.lda = (size_t)g->kp;
	shape.ldc = (size_t)g->n;
	lt_open(&p, &shape, c->m_max);
	cublasLtMatmulPreference_t pref;
	size_t ws = LT_WORKSPACE;
	ckb(cublasLtMatmulPreferenceCreate(&pref), "preference");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
						  sizeof ws), "preference workspace");
	uint32_t al_w = (uint32_t)align_of(g->w, (size_t)g->kp * (g->bf16 ? 2 : 4));
	uint32_t al_a = (uint32_t)aa, al_c = (uint32_t)ac;
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
						  &al_w, sizeof al_w), "alignment w");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
						  &al_a, sizeof al_a), "alignment a");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
						  &al_c, sizeof al_c), "alignment c");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
						  &al_c, sizeof al_c), "alignment d");
	cublasLtMatmulHeuristicResult_t res;
	int got = 0;
	ckb(cublasLtMatmulAlgoGetHeuristic(c->lt, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &got),
	    "cublasLtMatmulAlgoGetHeuristic");
	if (!got)
		zp_panic(__FILE__, __LINE__, "cuBLASLt has no algorithm for a GEMM shape");
	int32_t one = 1;
	uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
	ckb(cublasLtMatmulAlgoConfigSetAttribute(&res.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
						 sizeof one), "split-K 1");
	ckb(cublasLtMatmulAlgoConfigSetAttribute(&res.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
						 &none, sizeof none), "no reduction scheme");
	*k = (gemm_class){ g->n, g->kp, g->bf16, g->add, aa, ac, res.algo };
	c->ncls++;
	cublasLtMatmulPreferenceDestroy(pref);
	lt_close(&p);
	pthread_mutex_unlock(&c->cls_mu);
	return &k->algo;
}

static void c_gemm(zp_drt *r, zp_dstream *s, const zp_dgemm *g)
{
	cu_rt *c = R(r);
	if (!g->m)
		return;
	const cublasLtMatmulAlgo_t *algo = gemm_algo(r, g);
	lt_problem p;
	float alpha = 1, beta = g->add ? 1.0f : 0.0f;
	lt_open(&p, g, g->m);
	ckb(cublasLtMatmul(c->lt, p.op, &alpha, g->w, p.la, g->a, p.lb, &beta, g->c, p.lc, g->c, p.lc,
			   algo, c->ws, LT_WORKSPACE, s->s), "cublasLtMatmul");
	lt_close(&p);
}

/* ---- grouped: one cublasGemmGroupedBatchedEx, a group of one per GEMM ---- */

static void c_gemm_grouped(zp_drt *r, zp_dstream *s, const zp_dgemm *g, int n)
{
	cu_rt *c = R(r);
	cublasOperation_t ta[GROUP_MAX], tb[GROUP_MAX];
	int m[GROUP_MAX], nn[GROUP_MAX], k[GROUP_MAX], lda[GROUP_MAX], ldb[GROUP_MAX], ldc[GROUP_MAX];
	int size[GROUP_MAX];
	float alpha[GROUP_MAX], beta[GROUP_MAX];
	if (n <= 0)
		return;
	if (c->grouped_lt) {
		for (int i = 0; i < n; i++)
			c_gemm(r, s, &g[i]);
		return;
	}
	ZP_ASSERT(n <= GROUP_MAX);
	int slot = c->ptr_cur;
	c->ptr_cur = (c->ptr_cur + 1) % PTR_SLOTS;
	ck(cudaEventSynchronize(c->ptr_ev[slot]), "cudaEventSynchronize");
	const void **ph = c->ptr_h[slot];
	for (int i = 0; i < n; i++) {
		ZP_ASSERT(g[i].bf16 == g[0].bf16 && !g[i].add);
		ta[i] = CUBLAS_OP_T;
		tb[i] = CUBLAS_OP_N;
		m[i] = g[i].n;
		nn[i] = g[i].m;
		k[i] = g[i].kp;
		lda[i] = g[i].kp;
		ldb[i] = (int)g[i].lda;
		ldc[i] = (int)g[i].ldc;
		size[i] = 1;
		alpha[i] = 1;
		beta[i] = 0;
		ph[i] = g[i].w;
		ph[GROUP_MAX + i] = g[i].a;
		ph[2 * GROUP_MAX + i] = g[i].c;
	}
	const void **pd = c->ptr_d[slot];
	ck(cudaMemcpyAsync(pd, ph, 3 * GROUP_MAX * sizeof *ph, cudaMemcpyHostToDevice, s->s),
	   "cudaMemcpyAsync pointers");
	ck(cudaEventRecord(c->ptr_ev[slot], s->s), "cudaEventRecord");
	cudaDataType_t in = g[0].bf16 ? CUDA_R_16BF : CUDA_R_32F;
	ckb(cublasSetStream(c->blas, s->s), "cublasSetStream");
	ckb(cublasGemmGroupedBatchedEx(c->blas, ta, tb, m, nn, k, alpha, pd, in, lda,
				       pd + GROUP_MAX, in, ldb, beta, (void *const *)(pd + 2 * GROUP_MAX),
				       CUDA_R_32F, ldc, n, size,
				       g[0].bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC),
	    "cublasGemmGroupedBatchedEx");
}

static void *c_native_stream(zp_drt *r, zp_dstream *s)
{
	return s->s;
}

static void c_describe(zp_drt *r, char *buf, size_t len)
{
	struct cudaDeviceProp p;
	size_t fr = 0, tot = 0;
	ck(cudaGetDeviceProperties(&p, R(r)->dev), "cudaGetDeviceProperties");
	ck(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
	snprintf(buf, len, "cuda:%d %s sm_%d%d %.1f GiB (%.1f free)", R(r)->dev, p.name, p.major,
		 p.minor, tot / 1073741824.0, fr / 1073741824.0);
}

static void c_close(zp_drt *r)
{
	if (!r)
		return;
	cu_rt *c = R(r);
	for (int i = 0; i < PTR_SLOTS; i++) {
		cudaEventDestroy(c->ptr_ev[i]);
		cudaFreeHost(c->ptr_h[i]);
		cudaFree(c->ptr_d[i]);
	}
	cudaFree(c->ws);
	cublasDestroy(c->blas);
	cublasLtDestroy(c->lt);
	pthread_mutex_destroy(&c->cls_mu);
	free(c);
	free(r);
}

static const struct zp_drt_ops cuda_rt_ops = {
	.name = "cuda",
	.close = c_close,
	.alloc = c_alloc,
	.free = c_free,
	.host_alloc = c_host_alloc,
	.host_free = c_host_free,
	.stream_new = c_stream_new,
	.stream_free = c_stream_free,
	.copy = c_copy,
	.stream_sync = c_stream_sync,
	.event_new = c_event_new,
	.event_free = c_event_free,
	.event_record = c_event_record,
	.event_sync = c_event_sync,
	.stream_wait = c_stream_wait,
	.launch = c_launch,
	.gemm = c_gemm,
	.gemm_grouped = c_gemm_grouped,
	.native_stream = c_native_stream,
	.describe = c_describe,
};

zp_drt *zp_drt_cuda_new(int device, int m_max, zp_err *e)
{
	int n = 0;
	cudaError_t rc = cudaGetDeviceCount(&n);
	if (rc != cudaSuccess || n == 0) {
		zp_errf(e, "--device cuda: no CUDA GPU here (%s)",
			rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
		return NULL;
	}
	if (device < 0 || device >= n) {
		zp_errf(e, "--device cuda: device %d of %d", device, n);
		return NULL;
	}
	ck(cudaSetDevice(device), "cudaSetDevice");
	zp_drt *r = zp_xcalloc(1, sizeof *r);
	cu_rt *c = zp_xcalloc(1, sizeof *c);
	r->ops = &cuda_rt_ops;
	r->ctx = c;
	c->dev = device;
	c->m_max = ZP_MAX(m_max, 1);
	const char *gg = getenv("ZP_GROUPED_GEMM");
	c->grouped_lt = gg && !strcmp(gg, "lt");
	pthread_mutex_init(&c->cls_mu, NULL);
	ckb(cublasLtCreate(&c->lt), "cublasLtCreate");
	ckb(cublasCreate(&c->blas), "cublasCreate");
	ck(cudaMalloc(&c->ws, LT_WORKSPACE), "cudaMalloc workspace");
	for (int i = 0; i < PTR_SLOTS; i++) {
		ck(cudaMallocHost((void **)&c->ptr_h[i], 3 * GROUP_MAX * sizeof(void *)), "cudaMallocHost");
		ck(cudaMalloc((void **)&c->ptr_d[i], 3 * GROUP_MAX * sizeof(void *)), "cudaMalloc");
		ck(cudaEventCreateWithFlags(&c->ptr_ev[i], cudaEventDisableTiming), "cudaEventCreate");
	}
	return r;
}

#endif
