/* devrt_cuda.c -- devrt.h on a GPU: the CUDA runtime (cudaMalloc at start,
   pinned host memory, non-blocking streams, events without timing), the
   kernels of kernels/ (their zk_cu_* launchers), dense and expert GEMMs
   through cuBLASLt (cublasGemmGroupedBatchedEx only for f32 experts under
   ZP_GROUPED_GEMM=cublas). Built only where the toolkit is
   (ZP_CUDA_BACKEND); elsewhere zp_drt_cuda_new says so. Every GEMM is planned
   and checked against blas_contract.h before the library sees it; every
   failed call goes to zp_drt_fail (the sticky error, devrt.h) and its caller
   returns; once it is set, every call here returns at its entry (the free
   calls still release).

   Dense GEMM: per shape class (n, kp, dtype, add, the operands' alignments)
   one cuBLASLt algorithm, the first of the heuristic's candidates (asked at
   m_max rows) that cublasLtMatmulAlgoCheck accepts with split-K forced to 1
   and no reduction scheme at m = 1 and m = m_max; if none does, the first
   candidate whose own configuration has no split-K. It is reused for every m:
   a row's sums do not depend on the batch (batch invariance). Before an m of
   a new power-of-two bucket runs, AlgoCheck confirms the algorithm at that m;
   where it refuses, that bucket gets its own algorithm (logged once: rows in
   that bucket may then differ from the same rows in another bucket).
   bf16 in, f32 accumulate and out; f32 in: CUBLAS_COMPUTE_32F_PEDANTIC (no
   TF32). Experts: by default one such matmul per expert (the same classes,
   so an expert's rows are batch-invariant too). */
#define _GNU_SOURCE /* O_DIRECT */
#include "devrt.h"

#ifndef ZP_CUDA_BACKEND

zp_drt *zp_drt_cuda_new(int device, int m_max, zp_err *e)
{
	zp_errf(e, "--device cuda: this zprefill was built without CUDA (nvcc not found at build "
		   "time)");
	return NULL;
}

int zp_drt_cuda_count(void)
{
	return 0;
}

#else

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "blas_contract.h"

#define GEMM_CLASSES 64
#define GROUP_MAX 4096
#define PTR_SLOTS 8
#define LT_WORKSPACE ((size_t)32 << 20)

/* the launchers of kernels/<op>.cu */
#define K(name) int zk_cu_##name(cudaStream_t s, const zk_launch *l);
K(embed) K(rmsnorm) K(rope) K(attention) K(route) K(dispatch) K(gather) K(combine)
K(residual) K(add_bias) K(to_bf16) K(swiglu) K(logprobs) K(pool) K(act_quant) K(fp8_widen)
#undef K

#define M_BUCKETS 32	/* m in [2^b, 2^(b+1)): bucket b */
#define LT_CANDIDATES 8

typedef struct {
	int n, kp;
	bool bf16, add, fp8;
	int align_w, align_a, align_c;	/* bytes: W's, the A rows' and C rows' */
	cublasLtMatmulAlgo_t algo;
	uint32_t checked;	/* buckets AlgoCheck accepted algo at */
	uint32_t own;		/* buckets where it refused: they run bucket_algo[b] */
	cublasLtMatmulAlgo_t bucket_algo[M_BUCKETS];
} gemm_class;

typedef struct {
	zp_drt *r;		/* the runtime this is the context of */
	int dev, m_max;
	cublasLtHandle_t lt;
	cublasHandle_t blas;
	cudaStream_t zs;	/* alloc's zero-fill */
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
	enum zp_grouped_mode grouped;	/* ZP_GROUPED_GEMM */
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

/* the checked-call helpers: both end in zp_drt_fail (devrt.h); true when
   the call failed (the caller then returns) */
static bool ck_at(zp_drt *r, cudaError_t rc, const char *what, const char *file, int line)
{
	if (rc != cudaSuccess)
		zp_drt_fail(r, what, cudaGetErrorString(rc), file, line);
	return rc != cudaSuccess;
}

static bool ckb_at(zp_drt *r, cublasStatus_t rc, const char *what, const char *file, int line)
{
	if (rc != CUBLAS_STATUS_SUCCESS)
		zp_drt_fail(r, what, cublasGetStatusString(rc), file, line);
	return rc != CUBLAS_STATUS_SUCCESS;
}

/* r: the runtime in scope */
#define ck(rc, what) ck_at(r, (rc), (what), __FILE__, __LINE__)
#define ckb(rc, what) ckb_at(r, (rc), (what), __FILE__, __LINE__)

/* the call as planned is one the library accepts (blas_contract.h); false
   with the sticky error set when it is not */
static bool contract_ok(zp_drt *r, const zp_blas_call *bc, const char *file, int line)
{
	char why[256];
	if (!zp_blas_refusal(bc, why, sizeof why))
		return true;
	zp_drt_fail(r, zp_blas_lib_name(bc->lib), why, file, line);
	return false;
}

static void *c_alloc(zp_drt *r, size_t bytes)
{
	void *p = NULL;
	if (zp_drt_failed(r) || ck(cudaSetDevice(R(r)->dev), "cudaSetDevice"))
		return NULL;
	if (cudaMalloc(&p, bytes) != cudaSuccess) /* out of memory: not a device fault */
		return NULL;
	/* cudaMemset would run on the legacy default stream, which the
	   non-blocking work streams do not wait for: zero on zs and wait, so the
	   memory is zero before any stream can touch it */
	if (ck(cudaMemsetAsync(p, 0, bytes, R(r)->zs), "cudaMemsetAsync") ||
	    ck(cudaStreamSynchronize(R(r)->zs), "cudaStreamSynchronize zero-fill")) {
		cudaFree(p);
		return NULL;
	}
	return p;
}

/* The free calls release after a fault too; their errors then are the
   fault's echo, not checked. */
static void c_free(zp_drt *r, void *p)
{
	if (p && zp_drt_failed(r))
		cudaFree(p);
	else if (p)
		ck(cudaFree(p), "cudaFree");
}

static void *c_host_alloc(zp_drt *r, size_t bytes)
{
	void *p = NULL;
	if (zp_drt_failed(r) || ck(cudaMallocHost(&p, bytes), "cudaMallocHost"))
		return NULL;
	return p;
}

static void c_host_register(zp_drt *r, void *p, size_t bytes, bool on)
{
	if (!p || zp_drt_failed(r))
		return;
	if (on)
		ck(cudaHostRegister(p, bytes, cudaHostRegisterPortable), "cudaHostRegister");
	else
		ck(cudaHostUnregister(p), "cudaHostUnregister");
}

static void c_host_free(zp_drt *r, void *p)
{
	if (p && zp_drt_failed(r))
		cudaFreeHost(p);
	else if (p)
		ck(cudaFreeHost(p), "cudaFreeHost");
}

/* after a fault: a stream (an event) of nothing, whose calls return at entry */
static zp_dstream *c_stream_new(zp_drt *r)
{
	zp_dstream *s = zp_xcalloc(1, sizeof *s);
	if (!zp_drt_failed(r) && !ck(cudaSetDevice(R(r)->dev), "cudaSetDevice"))
		ck(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking), "cudaStreamCreate");
	return s;
}

static void c_stream_free(zp_drt *r, zp_dstream *s)
{
	if (s && s->s && zp_drt_failed(r))
		cudaStreamDestroy(s->s);
	else if (s && s->s)
		ck(cudaStreamDestroy(s->s), "cudaStreamDestroy");
	free(s);
}

static void c_copy(zp_drt *r, zp_dstream *s, void *dst, const void *src, size_t bytes)
{
	if (bytes && !zp_drt_failed(r))
		ck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s->s), "cudaMemcpyAsync");
}

static void c_copy2d(zp_drt *r, zp_dstream *s, void *dst, size_t dpitch, const void *src,
		     size_t spitch, size_t width, size_t rows)
{
	if (width && rows && !zp_drt_failed(r))
		ck(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDefault, s->s),
		   "cudaMemcpy2DAsync");
}

static void c_stream_sync(zp_drt *r, zp_dstream *s)
{
	if (!zp_drt_failed(r))
		ck(cudaStreamSynchronize(s->s), "cudaStreamSynchronize");
}

static zp_devent *c_event_new(zp_drt *r)
{
	zp_devent *ev = zp_xcalloc(1, sizeof *ev);
	if (!zp_drt_failed(r) && !ck(cudaSetDevice(R(r)->dev), "cudaSetDevice"))
		ck(cudaEventCreateWithFlags(&ev->e, cudaEventDisableTiming), "cudaEventCreate");
	return ev;
}

static void c_event_free(zp_drt *r, zp_devent *ev)
{
	if (ev && ev->e && zp_drt_failed(r))
		cudaEventDestroy(ev->e);
	else if (ev && ev->e)
		ck(cudaEventDestroy(ev->e), "cudaEventDestroy");
	free(ev);
}

static void c_event_record(zp_drt *r, zp_devent *ev, zp_dstream *s)
{
	if (!zp_drt_failed(r))
		ck(cudaEventRecord(ev->e, s->s), "cudaEventRecord");
}

static void c_event_sync(zp_drt *r, zp_devent *ev)
{
	if (!zp_drt_failed(r))
		ck(cudaEventSynchronize(ev->e), "cudaEventSynchronize");
}

static void c_stream_wait(zp_drt *r, zp_dstream *s, zp_devent *ev)
{
	if (!zp_drt_failed(r))
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
		[ZK_ACT_QUANT] = zk_cu_act_quant, [ZK_FP8_WIDEN] = zk_cu_fp8_widen,
	};
	if (l->blocks <= 0 || zp_drt_failed(r))
		return;
	ck((cudaError_t)fn[l->kind](s->s, l), "kernel launch");
}

/* ---- dense GEMM through cuBLASLt (the call blas_contract.h's zp_blas_plan
   describes: A = W transposed, B = the activations, C in place) ---- */

typedef struct {
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
} lt_problem;

static cudaDataType_t lt_type(enum zp_blas_type t)
{
	return t == ZP_BT_8F_E4M3 ? CUDA_R_8F_E4M3 : t == ZP_BT_16BF ? CUDA_R_16BF : CUDA_R_32F;
}

static int32_t lt_scale_mode(enum zp_blas_scale m)
{
	return m == ZP_BS_BLK128x128_32F ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
					 : CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
}

/* W8A8: the block scales' modes and pointers (blas_contract.h), fast
   accumulation off (the default, said: the contract's compute) */
static void lt_scales(zp_drt *r, cublasLtMatmulDesc_t op, const zp_blas_call *bc)
{
	int32_t ma = lt_scale_mode(bc->sa_mode), mb = lt_scale_mode(bc->sb_mode);
	int8_t fast = 0;
	ckb(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &ma, sizeof ma),
	    "a scale mode");
	ckb(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mb, sizeof mb),
	    "b scale mode");
	ckb(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &bc->sa,
					   sizeof bc->sa), "a scale pointer");
	ckb(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bc->sb,
					   sizeof bc->sb), "b scale pointer");
	ckb(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast),
	    "fast accumulation off");
}

static cublasComputeType_t lt_compute(enum zp_blas_compute ct)
{
	return ct == ZP_BC_32F_PEDANTIC	 ? CUBLAS_COMPUTE_32F_PEDANTIC
	       : ct == ZP_BC_32F_FAST_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
					   : CUBLAS_COMPUTE_32F;
}

static void lt_open(zp_drt *r, lt_problem *p, const zp_blas_call *bc)
{
	cublasOperation_t ta = bc->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasOperation_t tb = bc->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
	ZP_ASSERT(bc->lib == ZP_BLAS_LT_MATMUL && bc->trans_a && !bc->trans_b);
	ckb(cublasLtMatmulDescCreate(&p->op, lt_compute(bc->ct), CUDA_R_32F), "cublasLtMatmulDescCreate");
	ckb(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
	ckb(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
	if (bc->sa_mode != ZP_BS_NONE)
		lt_scales(r, p->op, bc);
	ckb(cublasLtMatrixLayoutCreate(&p->la, lt_type(bc->ta), (uint64_t)bc->k, (uint64_t)bc->m, bc->lda),
	    "layout w");
	ckb(cublasLtMatrixLayoutCreate(&p->lb, lt_type(bc->tb), (uint64_t)bc->k, (uint64_t)bc->n, bc->ldb),
	    "layout a");
	ckb(cublasLtMatrixLayoutCreate(&p->lc, lt_type(bc->tc), (uint64_t)bc->m, (uint64_t)bc->n, bc->ldc),
	    "layout c");
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

static int m_bucket(int m)
{
	int b = 0;
	while (b < M_BUCKETS - 1 && (m >> (b + 1)))
		b++;
	return b;
}

/* cublasLtMatmulAlgoCheck: algo runs problem p within the workspace */
static bool lt_check(cu_rt *c, const lt_problem *p, const cublasLtMatmulAlgo_t *algo)
{
	cublasLtMatmulHeuristicResult_t res;
	cublasStatus_t rc = cublasLtMatmulAlgoCheck(c->lt, p->op, p->la, p->lb, p->lc, p->lc, algo, &res);
	return rc == CUBLAS_STATUS_SUCCESS && res.workspaceSize <= LT_WORKSPACE;
}

static int32_t lt_splitk(const cublasLtMatmulAlgo_t *algo)
{
	int32_t v = 0;
	size_t got = 0;
	if (cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &v, sizeof v,
						 &got) != CUBLAS_STATUS_SUCCESS)
		return -1;
	return v;
}

/* The heuristic's candidates for g at m rows (the class's alignments), then
   the first that AlgoCheck accepts, with split-K forced to 1, at every m in
   ms; else the first whose own configuration has no split-K. false: none. */
static bool lt_pick(cu_rt *c, const zp_dgemm *g, const gemm_class *k, const int *ms, int nms,
		    cublasLtMatmulAlgo_t *out)
{
	zp_drt *r = c->r;
	lt_problem p[2] = { 0 };
	zp_blas_call bc[2];
	ZP_ASSERT(nms >= 1 && nms <= 2);
	for (int i = 0; i < nms; i++) {
		zp_dgemm shape = *g;
		shape.m = ms[i];
		bc[i] = zp_blas_plan(&shape, ZP_BLAS_LT_MATMUL);
		lt_open(r, &p[i], &bc[i]);
	}
	cublasLtMatmulPreference_t pref;
	size_t ws = LT_WORKSPACE;
	uint32_t al_w = (uint32_t)k->align_w, al_a = (uint32_t)k->align_a, al_c = (uint32_t)k->align_c;
	ckb(cublasLtMatmulPreferenceCreate(&pref), "preference");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
						  sizeof ws), "preference workspace");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
						  &al_w, sizeof al_w), "alignment w");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
						  &al_a, sizeof al_a), "alignment a");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
						  &al_c, sizeof al_c), "alignment c");
	ckb(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
						  &al_c, sizeof al_c), "alignment d");
	cublasLtMatmulHeuristicResult_t res[LT_CANDIDATES];
	int got = 0;
	if (!zp_drt_failed(r)) /* the descriptors above were made */
		ckb(cublasLtMatmulAlgoGetHeuristic(c->lt, p[nms - 1].op, p[nms - 1].la,
						   p[nms - 1].lb, p[nms - 1].lc, p[nms - 1].lc, pref,
						   LT_CANDIDATES, res, &got),
		    "cublasLtMatmulAlgoGetHeuristic");
	bool found = false;
	int32_t one = 1;
	uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
	for (int i = 0; i < got && !found; i++) {
		cublasLtMatmulAlgo_t a = res[i].algo;
		if (cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
							 sizeof one) != CUBLAS_STATUS_SUCCESS ||
		    cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
							 &none, sizeof none) != CUBLAS_STATUS_SUCCESS)
			continue;
		found = true;
		for (int j = 0; j < nms; j++)
			found = found && lt_check(c, &p[j], &a);
		if (found)
			*out = a;
	}
	for (int i = 0; i < got && !found; i++) { /* the heuristic's own, without split-K */
		found = lt_splitk(&res[i].algo) <= 1;
		for (int j = 0; found && j < nms; j++)
			found = lt_check(c, &p[j], &res[i].algo);
		if (found)
			*out = res[i].algo;
	}
	cublasLtMatmulPreferenceDestroy(pref);
	for (int i = 0; i < nms; i++)
		lt_close(&p[i]);
	return found;
}

static gemm_class *gemm_class_of(cu_rt *c, const zp_dgemm *g)
{
	size_t es = g->fp8 ? 1 : g->bf16 ? 2 : 4;
	int aw = align_of(g->w, (size_t)g->kp * es), aa = align_of(g->a, g->lda * es),
	    ac = align_of(g->c, g->ldc * 4);
	for (int i = 0; i < c->ncls; i++) {
		gemm_class *k = &c->cls[i];
		if (k->n == g->n && k->kp == g->kp && k->bf16 == g->bf16 && k->add == g->add &&
		    k->fp8 == g->fp8 &&
		    k->align_w == aw && k->align_a == aa && k->align_c == ac)
			return k;
	}
	ZP_ASSERT(c->ncls < GEMM_CLASSES);
	gemm_class *k = &c->cls[c->ncls];
	*k = (gemm_class){ .n = g->n, .kp = g->kp, .bf16 = g->bf16, .add = g->add, .fp8 = g->fp8,
			   .align_w = aw,
			   .align_a = aa, .align_c = ac };
	int ms[2] = { 1, c->m_max };
	if (!lt_pick(c, g, k, ms, c->m_max > 1 ? 2 : 1, &k->algo)) {
		zp_drt_fail(c->r, "cublasLtMatmulAlgoGetHeuristic",
			    "no candidate passes cublasLtMatmulAlgoCheck without split-K", __FILE__,
			    __LINE__);
		return NULL;
	}
	k->checked = 1u << m_bucket(1) | 1u << m_bucket(c->m_max);
	c->ncls++;
	return k;
}

/* the algorithm for g at its m: the class's, unless AlgoCheck refused it in
   m's bucket (then the bucket's own) */
static const cublasLtMatmulAlgo_t *gemm_algo(zp_drt *r, const zp_dgemm *g, const lt_problem *p)
{
	cu_rt *c = R(r);
	const cublasLtMatmulAlgo_t *algo = NULL;
	pthread_mutex_lock(&c->cls_mu);
	gemm_class *k = gemm_class_of(c, g);
	int b = m_bucket(g->m);
	uint32_t bit = 1u << b;
	if (k && !(k->checked & bit) && !(k->own & bit)) {
		if (lt_check(c, p, &k->algo)) {
			k->checked |= bit;
		} else if (lt_pick(c, g, k, &g->m, 1, &k->bucket_algo[b])) {
			k->own |= bit;
			zp_log(ZP_LOG_WARN, "msg=\"cuBLASLt: the class algorithm is refused at this m; "
			       "its bucket gets its own (rows here are not batch-invariant against "
			       "other buckets)\" n=%d kp=%d bf16=%d m=%d", g->n, g->kp, g->bf16, g->m);
		} else {
			zp_drt_fail(r, "cublasLtMatmulAlgoCheck", "no algorithm for this m", __FILE__,
				    __LINE__);
		}
	}
	if (k)
		algo = k->own & bit ? &k->bucket_algo[b] : &k->algo;
	pthread_mutex_unlock(&c->cls_mu);
	return algo;
}

static void c_gemm(zp_drt *r, zp_dstream *s, const zp_dgemm *g)
{
	cu_rt *c = R(r);
	if (!g->m || zp_drt_failed(r))
		return;
	zp_blas_call bc = zp_blas_plan(g, ZP_BLAS_LT_MATMUL);
	if (!contract_ok(r, &bc, __FILE__, __LINE__))
		return;
	lt_problem p = { 0 };
	float alpha = 1, beta = g->add ? 1.0f : 0.0f;
	lt_open(r, &p, &bc);
	const cublasLtMatmulAlgo_t *algo = zp_drt_failed(r) ? NULL : gemm_algo(r, g, &p);
	if (algo && !zp_drt_failed(r)) /* lt_open's and the pick's calls passed */
		ckb(cublasLtMatmul(c->lt, p.op, &alpha, g->w, p.la, g->a, p.lb, &beta, g->c, p.lc,
				   g->c, p.lc, algo, c->ws, LT_WORKSPACE, s->s), "cublasLtMatmul");
	lt_close(&p);
}

/* ---- experts: per-expert cuBLASLt matmuls (default), or, under
   ZP_GROUPED_GEMM=cublas, one cublasGemmGroupedBatchedEx with a group of
   one per GEMM: its table takes f32 -> f32 (compute 32F; default math mode,
   so no TF32) but has no bf16 -> f32 row, so a bf16 model fails its first
   MoE layer there with the contract's reason. cuBLAS picks its kernels per
   group size: rows are not batch-invariant on that path. ---- */

static void c_gemm_grouped(zp_drt *r, zp_dstream *s, const zp_dgemm *g, int n)
{
	cu_rt *c = R(r);
	cublasOperation_t ta[GROUP_MAX], tb[GROUP_MAX];
	int m[GROUP_MAX], nn[GROUP_MAX], k[GROUP_MAX], lda[GROUP_MAX], ldb[GROUP_MAX], ldc[GROUP_MAX];
	int size[GROUP_MAX];
	float alpha[GROUP_MAX], beta[GROUP_MAX];
	if (n <= 0 || zp_drt_failed(r))
		return;
	if (c->grouped == ZP_GROUPED_LT) {
		for (int i = 0; i < n; i++)
			c_gemm(r, s, &g[i]);
		return;
	}
	ZP_ASSERT(n <= GROUP_MAX);
	zp_blas_call bc0 = zp_blas_plan(&g[0], ZP_BLAS_GROUPED);
	for (int i = 0; i < n; i++) {
		zp_blas_call bc = zp_blas_plan(&g[i], ZP_BLAS_GROUPED);
		ZP_ASSERT(g[i].bf16 == g[0].bf16 && !g[i].add);
		if (!contract_ok(r, &bc, __FILE__, __LINE__))
			return;
		ta[i] = bc.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
		tb[i] = bc.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
		m[i] = (int)bc.m;
		nn[i] = (int)bc.n;
		k[i] = (int)bc.k;
		lda[i] = (int)bc.lda;
		ldb[i] = (int)bc.ldb;
		ldc[i] = (int)bc.ldc;
		size[i] = 1;
		alpha[i] = 1;
		beta[i] = 0;
	}
	int slot = c->ptr_cur;
	c->ptr_cur = (c->ptr_cur + 1) % PTR_SLOTS;
	if (ck(cudaEventSynchronize(c->ptr_ev[slot]), "cudaEventSynchronize"))
		return;
	const void **ph = c->ptr_h[slot];
	for (int i = 0; i < n; i++) {
		ph[i] = g[i].w;
		ph[GROUP_MAX + i] = g[i].a;
		ph[2 * GROUP_MAX + i] = g[i].c;
	}
	const void **pd = c->ptr_d[slot];
	if (ck(cudaMemcpyAsync(pd, ph, 3 * GROUP_MAX * sizeof *ph, cudaMemcpyHostToDevice, s->s),
	       "cudaMemcpyAsync pointers") ||
	    ck(cudaEventRecord(c->ptr_ev[slot], s->s), "cudaEventRecord") ||
	    ckb(cublasSetStream(c->blas, s->s), "cublasSetStream"))
		return;
	ckb(cublasGemmGroupedBatchedEx(c->blas, ta, tb, m, nn, k, alpha, pd, lt_type(bc0.ta), lda,
				       pd + GROUP_MAX, lt_type(bc0.tb), ldb, beta,
				       (void *const *)(pd + 2 * GROUP_MAX), lt_type(bc0.tc), ldc, n,
				       size, lt_compute(bc0.ct)),
	    "cublasGemmGroupedBatchedEx");
}

/* ---- GPUDirect Storage: cuFile, loaded at run time (libcufile.so.0: the
   CUDA install's, or the PyPI nvidia-cufile wheel's on LD_LIBRARY_PATH /
   the binary's RUNPATH), so a build or a box without it loses only this
   path. The few declarations used, as cufile.h has them (its header is not
   needed to build): CUfileError_t, CUfileDescr_t, the entry points. The
   driver opens once per process and stays open (other runtimes of the
   process use it; the process's exit closes it). ---- */

typedef struct {
	int err;	/* CUfileOpError: 0 CU_FILE_SUCCESS, else 5000 + n */
	int cu_err;	/* CUresult */
} cf_error;

typedef struct {
	int type;	/* enum CUfileFileHandleType: 1 CU_FILE_HANDLE_TYPE_OPAQUE_FD */
	union {
		int fd;
		void *handle;
	} handle;
	const void *fs_ops;	/* CUfileFSOps_t: NULL for a kernel file system */
} cf_descr;

#define CF_HANDLE_TYPE_OPAQUE_FD 1

static struct {
	pthread_once_t once;
	bool ok;
	char why[192];
	cf_error (*driver_open)(void);
	cf_error (*handle_register)(void **fh, cf_descr *d);
	void (*handle_deregister)(void *fh);
	ssize_t (*read)(void *fh, void *buf, size_t size, off_t file_off, off_t buf_off);
	cf_error (*buf_register)(const void *p, size_t bytes, int flags);
	cf_error (*buf_deregister)(const void *p);
} cf = { .once = PTHREAD_ONCE_INIT };

static void cf_load(void)
{
	void *h = dlopen("libcufile.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(cf.why, sizeof cf.why, "libcufile.so.0 not found (%s)", dlerror());
		return;
	}
#define SYM(field, name) (*(void **)&cf.field = dlsym(h, name))
	if (!SYM(driver_open, "cuFileDriverOpen") || !SYM(handle_register, "cuFileHandleRegister") ||
	    !SYM(handle_deregister, "cuFileHandleDeregister") || !SYM(read, "cuFileRead") ||
	    !SYM(buf_register, "cuFileBufRegister") || !SYM(buf_deregister, "cuFileBufDeregister")) {
		snprintf(cf.why, sizeof cf.why, "libcufile.so.0 lacks a cuFile entry point");
		return;
	}
#undef SYM
	cf_error e = cf.driver_open();
	if (e.err) {
		snprintf(cf.why, sizeof cf.why, "cuFileDriverOpen: CUfileOpError %d (CUresult %d)",
			 e.err, e.cu_err);
		return;
	}
	cf.ok = true;
}

struct zp_dfile {
	int fd;
	void *fh;
};

static zp_dfile *c_file_open(zp_drt *r, const char *path, char *why, size_t len)
{
	pthread_once(&cf.once, cf_load);
	if (!cf.ok) {
		snprintf(why, len, "%s", cf.why);
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "open %s with O_DIRECT: %s", path, strerror(errno));
		return NULL;
	}
	cf_descr d = { .type = CF_HANDLE_TYPE_OPAQUE_FD, .handle.fd = fd };
	void *fh = NULL;
	cf_error e = cf.handle_register(&fh, &d);
	if (e.err) {
		snprintf(why, len, "cuFileHandleRegister %s: CUfileOpError %d (CUresult %d)", path,
			 e.err, e.cu_err);
		close(fd);
		return NULL;
	}
	zp_dfile *f = zp_xcalloc(1, sizeof *f);
	*f = (zp_dfile){ fd, fh };
	return f;
}

static int64_t c_file_read(zp_drt *r, zp_dfile *f, void *dst, uint64_t off, size_t bytes,
			   char *why, size_t len)
{
	const char *bad = zp_dfile_misaligned(dst, off, bytes);
	if (bad) {
		snprintf(why, len, "cuFileRead: %s", bad);
		return -1;
	}
	ssize_t n = cf.read(f->fh, dst, bytes, (off_t)off, 0);
	if (n < 0) { /* -1: errno; below: -CUfileOpError */
		snprintf(why, len, "cuFileRead: %s", n == -1 ? strerror(errno) : "CUfileOpError");
		if (n != -1)
			snprintf(why, len, "cuFileRead: CUfileOpError %zd", -n);
		return -1;
	}
	return (int64_t)n;
}

static void c_file_close(zp_drt *r, zp_dfile *f)
{
	if (!f)
		return;
	cf.handle_deregister(f->fh);
	close(f->fd);
	free(f);
}

/* registration makes the reads DMA into p without cuFile's own bounce
   buffers; a refusal only costs speed (said in the log) */
static void c_file_buf(zp_drt *r, void *p, size_t bytes, bool on)
{
	if (!cf.ok || !p)
		return;
	cf_error e = on ? cf.buf_register(p, bytes, 0) : cf.buf_deregister(p);
	if (e.err)
		zp_log(ZP_LOG_WARN, "msg=\"cuFileBuf%sregister refused\" error=%d cu_error=%d",
		       on ? "" : "De", e.err, e.cu_err);
}

static void c_bind(zp_drt *r)
{
	ck(cudaSetDevice(R(r)->dev), "cudaSetDevice");
}

/* A peer's memory read straight over NVLink/PCIe by the copy engines (the
   p2p transport's copies); without a peer path cudaMemcpyAsync stages
   through the host, slower but correct: said once in the log. */
static void enable_peers(int device, int n)
{
	for (int p = 0; p < n; p++) {
		int ok = 0;
		if (p == device || cudaDeviceCanAccessPeer(&ok, device, p) != cudaSuccess)
			continue;
		if (!ok) {
			zp_log(ZP_LOG_WARN, "msg=\"no peer path\" device=%d peer=%d note=\"copies between "
			       "them go through host memory\"", device, p);
			continue;
		}
		cudaError_t rc = cudaDeviceEnablePeerAccess(p, 0);
		if (rc == cudaErrorPeerAccessAlreadyEnabled) {
			(void)cudaGetLastError(); /* not sticky: clear it */
		} else if (rc != cudaSuccess) {
			(void)cudaGetLastError();
			zp_log(ZP_LOG_WARN, "msg=\"peer access refused\" device=%d peer=%d error=\"%s\" "
			       "note=\"copies between them go through host memory\"", device, p,
			       cudaGetErrorString(rc));
		}
	}
}

static void *c_native_stream(zp_drt *r, zp_dstream *s)
{
	return s->s;
}

static int c_mem_info(zp_drt *r, size_t *free_bytes, size_t *total_bytes, int *devices, bool *host)
{
	*host = false;
	if (zp_drt_failed(r) || ck(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo") ||
	    ck(cudaGetDeviceCount(devices), "cudaGetDeviceCount"))
		return -1;
	return 0;
}

static void c_describe(zp_drt *r, char *buf, size_t len)
{
	struct cudaDeviceProp p;
	size_t fr = 0, tot = 0;
	zp_err e;
	if (zp_drt_failed(r) || ck(cudaGetDeviceProperties(&p, R(r)->dev), "cudaGetDeviceProperties") ||
	    ck(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo")) {
		zp_drt_error(r, &e);
		snprintf(buf, len, "cuda:%d (%s)", R(r)->dev, e.msg);
		return;
	}
	snprintf(buf, len, "cuda:%d %s sm_%d%d %.1f GiB (%.1f free)", R(r)->dev, p.name, p.major,
		 p.minor, tot / 1073741824.0, fr / 1073741824.0);
}

/* an error a kernel left behind (a launch the runtime refused, or an
   asynchronous fault it has seen) becomes the sticky error */
static void c_check(zp_drt *r)
{
	if (!zp_drt_failed(r))
		ck(cudaGetLastError(), "cudaGetLastError (an earlier kernel)");
}

static void c_close(zp_drt *r);

/* runtimes open per GPU (executors may share one): a reset wipes the
   primary context of every one of them */
#define USERS_MAX 64
static _Atomic int users[USERS_MAX];

/* cudaDeviceReset once r's handles are gone: the primary context and
   everything in it go (the sticky error with them); the next runtime on the
   device starts a fresh one. Not while another runtime (another executor)
   uses the GPU: its memory would go from under it; the context stays
   poisoned, and the rebuilt runtime then fails to start (that executor is
   down, said in the log). */
static void c_reset(zp_drt *r)
{
	int dev = R(r)->dev;
	c_close(r);
	if (dev < USERS_MAX && atomic_load(&users[dev]) > 0) {
		zp_log(ZP_LOG_ERROR, "msg=\"device not reset\" device=cuda:%d why=\"%d other "
		       "executor(s) use this GPU; restart the server to recover it\"", dev,
		       atomic_load(&users[dev]));
		return;
	}
	cudaError_t rc = cudaSetDevice(dev);
	if (rc == cudaSuccess)
		rc = cudaDeviceReset();
	zp_log(rc == cudaSuccess ? ZP_LOG_WARN : ZP_LOG_ERROR, "msg=\"device reset\" device=cuda:%d "
	       "result=\"%s\"", dev, cudaGetErrorString(rc));
}

static void c_close(zp_drt *r)
{
	if (!r)
		return;
	cu_rt *c = R(r);
	if (c->dev < USERS_MAX)
		atomic_fetch_sub(&users[c->dev], 1);
	for (int i = 0; i < PTR_SLOTS; i++) {
		cudaEventDestroy(c->ptr_ev[i]);
		cudaFreeHost(c->ptr_h[i]);
		cudaFree(c->ptr_d[i]);
	}
	cudaFree(c->ws);
	cudaStreamDestroy(c->zs);
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
	.host_register = c_host_register,
	.stream_new = c_stream_new,
	.stream_free = c_stream_free,
	.copy = c_copy,
	.copy2d = c_copy2d,
	.stream_sync = c_stream_sync,
	.event_new = c_event_new,
	.event_free = c_event_free,
	.event_record = c_event_record,
	.event_sync = c_event_sync,
	.stream_wait = c_stream_wait,
	.launch = c_launch,
	.gemm = c_gemm,
	.gemm_grouped = c_gemm_grouped,
	.file_open = c_file_open,
	.file_read = c_file_read,
	.file_close = c_file_close,
	.file_buf = c_file_buf,
	.native_stream = c_native_stream,
	.bind = c_bind,
	.describe = c_describe,
	.mem_info = c_mem_info,
	.check = c_check,
	.reset = c_reset,
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
	if ((rc = cudaSetDevice(device)) != cudaSuccess) {
		zp_errf(e, "--device cuda: cudaSetDevice(%d): %s", device, cudaGetErrorString(rc));
		return NULL;
	}
	enable_peers(device, n);
	struct cudaDeviceProp prop;
	zp_drt *r = zp_xcalloc(1, sizeof *r);
	/* cuBLASLt's VEC128 / BLK128x128 FP8 scaling: sm_90 only (cuBLAS 12.9+) */
	r->fp8_blk = cudaGetDeviceProperties(&prop, device) == cudaSuccess && prop.major == 9 &&
		     prop.minor == 0 && CUBLAS_VERSION >= 120900;
	cu_rt *c = zp_xcalloc(1, sizeof *c);
	r->ops = &cuda_rt_ops;
	r->ctx = c;
	c->r = r;
	c->dev = device;
	if (device < USERS_MAX)
		atomic_fetch_add(&users[device], 1);
	c->m_max = ZP_MAX(m_max, 1);
	c->grouped = zp_grouped_mode_env();
	pthread_mutex_init(&c->cls_mu, NULL);
	ckb(cublasLtCreate(&c->lt), "cublasLtCreate");
	ckb(cublasCreate(&c->blas), "cublasCreate");
	ck(cudaStreamCreateWithFlags(&c->zs, cudaStreamNonBlocking), "cudaStreamCreate");
	ck(cudaMalloc(&c->ws, LT_WORKSPACE), "cudaMalloc workspace");
	for (int i = 0; i < PTR_SLOTS; i++) {
		ck(cudaMallocHost((void **)&c->ptr_h[i], 3 * GROUP_MAX * sizeof(void *)), "cudaMallocHost");
		ck(cudaMalloc((void **)&c->ptr_d[i], 3 * GROUP_MAX * sizeof(void *)), "cudaMalloc");
		ck(cudaEventCreateWithFlags(&c->ptr_ev[i], cudaEventDisableTiming), "cudaEventCreate");
	}
	if (zp_drt_error(r, e)) { /* the device did not start: say why, leave nothing */
		c_close(r);
		return NULL;
	}
	return r;
}

int zp_drt_cuda_count(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

#endif
