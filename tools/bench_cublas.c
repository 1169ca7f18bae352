/* bench_cublas.c -- the GPU ceilings and the v1 kernels at model shapes, for
   tools/gpu_check.sh (built by `make gpu` into build/gpu/bench_cublas).
     1. a cuBLAS 8192^3 bf16 GEMM (f32 compute): the achievable TFLOP/s that
        MFU is also reported against;
     2. one MoE layer's experts at Qwen3-30B-A3B and -235B-A22B shapes (128
        experts, top-8, T tokens): v0's call (cublasGemmGroupedBatchedEx, host
        row counts, gate_up stored then SwiGLU elsewhere) beside v1
        (zp_kv1_expert_gemm, device row counts, SwiGLU fused), and v1's values
        against v0's (relative L2; the run fails over 1e-3);
     3. v1 attention (zp_kv1_attention) at each model's heads, T tokens in
        sequences of S tokens.
   Random inputs (never zeros), 3 warm-ups, the median of the timed runs by
   CUDA events. Prints one "bench_cublas: WHAT key=value ..." line per
   measurement (tools/gpu_check.sh reads the keys). One thread;
   exits 1 on any CUDA or cuBLAS error, 77 without a GPU. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_v1.h"
#include "expert_gemm_v1.h"

#define CU(x)                                                                                 \
	do {                                                                                  \
		cudaError_t e_ = (x);                                                         \
		if (e_ != cudaSuccess) {                                                      \
			fprintf(stderr, "bench_cublas: %s:%d: %s\n", __FILE__, __LINE__,      \
				cudaGetErrorString(e_));                                      \
			exit(1);                                                              \
		}                                                                             \
	} while (0)
#define CB(x)                                                                                 \
	do {                                                                                  \
		cublasStatus_t s_ = (x);                                                      \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                            \
			fprintf(stderr, "bench_cublas: %s:%d: cuBLAS status %d\n", __FILE__,  \
				__LINE__, (int)s_);                                           \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

#define RUNS 15

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* n bf16 values uniform in (-scale, scale), on the device */
static uint16_t *dev_bf16(size_t n, float scale)
{
	uint16_t *h = malloc(2 * n), *d;
	if (!h)
		abort();
	for (size_t i = 0; i < n; i++)
		h[i] = zp_v1_f32_bf16(frand() * scale);
	CU(cudaMalloc((void **)&d, 2 * n));
	CU(cudaMemcpy(d, h, 2 * n, cudaMemcpyHostToDevice));
	free(h);
	return d;
}

static float *dev_f32(size_t n, float scale)
{
	float *h = malloc(4 * n), *d;
	if (!h)
		abort();
	for (size_t i = 0; i < n; i++)
		h[i] = frand() * scale;
	CU(cudaMalloc((void **)&d, 4 * n));
	CU(cudaMemcpy(d, h, 4 * n, cudaMemcpyHostToDevice));
	free(h);
	return d;
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

typedef void (*run_fn)(void *ctx);

/* median milliseconds of RUNS runs after 3 warm-ups */
static float time_ms(run_fn fn, void *ctx)
{
	cudaEvent_t a, b;
	float ms[RUNS];
	CU(cudaEventCreate(&a));
	CU(cudaEventCreate(&b));
	for (int i = 0; i < 3; i++)
		fn(ctx);
	CU(cudaDeviceSynchronize());
	for (int i = 0; i < RUNS; i++) {
		CU(cudaEventRecord(a, 0));
		fn(ctx);
		CU(cudaEventRecord(b, 0));
		CU(cudaEventSynchronize(b));
		CU(cudaEventElapsedTime(&ms[i], a, b));
	}
	CU(cudaGetLastError());
	CU(cudaEventDestroy(a));
	CU(cudaEventDestroy(b));
	qsort(ms, RUNS, sizeof(float), cmpf);
	return ms[RUNS / 2];
}

/* ---- 1. the dense ceiling ---- */

typedef struct {
	cublasHandle_t h;
	int n;
	uint16_t *a, *b, *c;
} gemm_ctx;

static void gemm_run(void *p)
{
	gemm_ctx *g = p;
	float one = 1.0f, zero = 0.0f;
	CB(cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, g->n, g->n, g->n, &one, g->a, CUDA_R_16BF,
			g->n, g->b, CUDA_R_16BF, g->n, &zero, g->c, CUDA_R_16BF, g->n,
			CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void bench_dense(cublasHandle_t h)
{
	gemm_ctx g = { h, 8192, NULL, NULL, NULL };
	size_t n2 = (size_t)g.n * g.n;
	g.a = dev_bf16(n2, 1.0f);
	g.b = dev_bf16(n2, 1.0f);
	CU(cudaMalloc((void **)&g.c, 2 * n2));
	float ms = time_ms(gemm_run, &g);
	printf("bench_cublas: gemm n=8192 bf16_f32compute ms=%.3f tflops=%.1f\n", ms,
	       2.0 * g.n * n2 / (ms * 1e-3) / 1e12);
	cudaFree(g.a);
	cudaFree(g.b);
	cudaFree(g.c);
}

/* ---- 2. experts ---- */

typedef struct {
	cublasHandle_t h;
	int E, H, F, rows;
	int *cnt, *offs, *doffs;
	uint16_t *wgu, *wd, *x, *act;	/* [E][2F][H], [E][H][F], [rows][H], [rows][F] */
	float *gu, *y;			/* [rows][2F] (v0), [rows][H] */
	const void **dA, **dB;		/* device pointer arrays for v0 */
	void **dC;
	int ng;				/* experts with rows */
	int v0_status;			/* the last grouped call's cublasStatus_t */
} moe_ctx;

/* v0: two grouped calls over the experts with rows (host row counts); the
   SwiGLU between them is a separate kernel in the backend, not timed here. */
static void v0_group(moe_ctx *m, int N, int K, const uint16_t *w, const uint16_t *a, float *c)
{
	enum { GMAX = 1024 };
	static cublasOperation_t ta[GMAX], tb[GMAX];
	static int mm[GMAX], nn[GMAX], kk[GMAX], lda[GMAX], ldb[GMAX], ldc[GMAX], gs[GMAX];
	static float alpha[GMAX], beta[GMAX];
	static const void *A[GMAX], *B[GMAX];
	static void *C[GMAX];
	int g = 0;
	for (int e = 0; e < m->E; e++) {
		if (!m->cnt[e])
			continue;
		/* column-major: C^T [N x r] = W [K x N]^T . A^T [K x r] */
		ta[g] = CUBLAS_OP_T;
		tb[g] = CUBLAS_OP_N;
		mm[g] = N;
		nn[g] = m->cnt[e];
		kk[g] = K;
		lda[g] = K;
		ldb[g] = K;
		ldc[g] = N;
		gs[g] = 1;
		alpha[g] = 1.0f;
		beta[g] = 0.0f;
		A[g] = w + (size_t)e * N * K;
		B[g] = a + (size_t)m->offs[e] * K;
		C[g] = c + (size_t)m->offs[e] * N;
		g++;
	}
	m->ng = g;
	CU(cudaMemcpyAsync(m->dA, A, sizeof(void *) * g, cudaMemcpyHostToDevice, 0));
	CU(cudaMemcpyAsync(m->dB, B, sizeof(void *) * g, cudaMemcpyHostToDevice, 0));
	CU(cudaMemcpyAsync(m->dC, C, sizeof(void *) * g, cudaMemcpyHostToDevice, 0));
	/* not CB: where cuBLAS refuses this type combination, v1 is still measured */
	m->v0_status = (int)cublasGemmGroupedBatchedEx(m->h, ta, tb, mm, nn, kk, alpha, m->dA,
						       CUDA_R_16BF, lda, m->dB, CUDA_R_16BF, ldb,
						       beta, (void *const *)m->dC, CUDA_R_32F, ldc,
						       g, gs, CUBLAS_COMPUTE_32F);
}

static void v0_run(void *p)
{
	moe_ctx *m = p;
	int cnt_h[1025];
	/* v0 copies the row counts back once per layer: that round trip is part of it */
	CU(cudaMemcpy(cnt_h, m->doffs, sizeof(int) * (size_t)(m->E + 1), cudaMemcpyDeviceToHost));
	v0_group(m, 2 * m->F, m->H, m->wgu, m->x, m->gu);
	v0_group(m, m->H, m->F, m->wd, m->act, m->y);
}

static void v1_run(void *p)
{
	moe_ctx *m = p;
	float *act32 = m->gu;	/* [rows][F] f32 out of the fused gate_up */
	CU((cudaError_t)zp_kv1_expert_gemm(NULL, m->wgu, 0, m->E, m->doffs, m->rows, m->x,
					   (size_t)m->H, act32, (size_t)m->F, ZP_KV1_EPI_SWIGLU,
					   2 * m->F, m->H));
	CU((cudaError_t)zp_kv1_expert_gemm(NULL, m->wd, 0, m->E, m->doffs, m->rows, m->act,
					   (size_t)m->F, m->y, (size_t)m->H, ZP_KV1_EPI_STORE,
					   m->H, m->F));
}

/* v1 against v0 on the same inputs (the values, not the time): the down
   projection over every row, the fused SwiGLU against v0's gate_up stored and
   SwiGLU'd here, on the first 512 rows. Relative L2 errors. */
static double rel_l2(const float *x, const float *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		num += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

static void check_v1(moe_ctx *m, double *rel_gu, double *rel_down)
{
	size_t ny = (size_t)m->rows * m->H, F = (size_t)m->F, R = 512;
	float *y0 = malloc(4 * ny), *y1 = malloc(4 * ny);
	float *gu0 = malloc(4 * R * 2 * F), *act1 = malloc(4 * R * F), *act0 = malloc(4 * R * F);
	if (!y0 || !y1 || !gu0 || !act1 || !act0)
		abort();
	v0_run(m);
	CU(cudaDeviceSynchronize());
	CU(cudaMemcpy(y0, m->y, 4 * ny, cudaMemcpyDeviceToHost));
	CU(cudaMemcpy(gu0, m->gu, 4 * R * 2 * F, cudaMemcpyDeviceToHost));
	v1_run(m);
	CU(cudaDeviceSynchronize());
	CU(cudaMemcpy(y1, m->y, 4 * ny, cudaMemcpyDeviceToHost));
	CU(cudaMemcpy(act1, m->gu, 4 * R * F, cudaMemcpyDeviceToHost));
	for (size_t r = 0; r < R; r++)
		for (size_t j = 0; j < F; j++)
			act0[r * F + j] = zp_ev1_silu_mul(gu0[r * 2 * F + j], gu0[r * 2 * F + F + j]);
	*rel_down = rel_l2(y1, y0, ny);
	*rel_gu = rel_l2(act1, act0, R * F);
	free(y0);
	free(y1);
	free(gu0);
	free(act1);
	free(act0);
}

static void bench_experts(cublasHandle_t h, const char *name, int H, int F, int T)
{
	moe_ctx m = { .h = h, .E = 128, .H = H, .F = F, .rows = T * 8 };
	m.cnt = malloc(sizeof(int) * 128);
	m.offs = malloc(sizeof(int) * 129);
	/* top-8 of 128 with a skew (popular experts get ~4x the rows of rare ones) */
	double wsum = 0, wt[128];
	for (int e = 0; e < 128; e++)
		wsum += wt[e] = 1.0 + 3.0 * (frand() * 0.5 + 0.5);
	int left = m.rows;
	for (int e = 0; e < 128; e++) {
		m.cnt[e] = e == 127 ? left : (int)(m.rows * wt[e] / wsum);
		left -= m.cnt[e];
	}
	m.offs[0] = 0;
	for (int e = 0; e < 128; e++)
		m.offs[e + 1] = m.offs[e] + m.cnt[e];
	CU(cudaMalloc((void **)&m.doffs, sizeof(int) * 129));
	CU(cudaMemcpy(m.doffs, m.offs, sizeof(int) * 129, cudaMemcpyHostToDevice));
	m.wgu = dev_bf16((size_t)128 * 2 * F * H, 0.02f);
	m.wd = dev_bf16((size_t)128 * H * F, 0.02f);
	m.x = dev_bf16((size_t)m.rows * H, 1.0f);
	m.act = dev_bf16((size_t)m.rows * F, 1.0f);
	CU(cudaMalloc((void **)&m.gu, sizeof(float) * (size_t)m.rows * 2 * F));
	CU(cudaMalloc((void **)&m.y, sizeof(float) * (size_t)m.rows * H));
	CU(cudaMalloc((void **)&m.dA, sizeof(void *) * 1024));
	CU(cudaMalloc((void **)&m.dB, sizeof(void *) * 1024));
	CU(cudaMalloc((void **)&m.dC, sizeof(void *) * 1024));
	double flop = 2.0 * m.rows * (2.0 * F * H + (double)H * F);
	v0_run(&m);
	CU(cudaDeviceSynchronize());
	int v0_ok = m.v0_status == 0;
	if (!v0_ok)
		fprintf(stderr, "bench_cublas: v0 (cublasGemmGroupedBatchedEx) status %d\n", m.v0_status);
	float ms0 = v0_ok ? time_ms(v0_run, &m) : NAN, ms1 = time_ms(v1_run, &m);
	double rel_gu = NAN, rel_down = NAN;
	if (v0_ok)
		check_v1(&m, &rel_gu, &rel_down);
	printf("bench_cublas: experts model=%s T=%d rows=%d E=128 H=%d F=%d v0_ms=%.3f v0_tflops=%.1f "
	       "v1_ms=%.3f v1_tflops=%.1f v1_vs_v0_rel_l2_gate_up=%.2g v1_vs_v0_rel_l2_down=%.2g\n",
	       name, T, m.rows, H, F, ms0, flop / (ms0 * 1e-3) / 1e12, ms1,
	       flop / (ms1 * 1e-3) / 1e12, rel_gu, rel_down);
	if (v0_ok && !(rel_gu < 1e-3 && rel_down < 1e-3)) {	/* f32 sums of the same bf16 products */
		fprintf(stderr, "bench_cublas: v1 experts disagree with v0\n");
		exit(1);
	}
	cudaFree(m.doffs);
	cudaFree(m.wgu);
	cudaFree(m.wd);
	cudaFree(m.x);
	cudaFree(m.act);
	cudaFree(m.gu);
	cudaFree(m.y);
	cudaFree(m.dA);
	cudaFree(m.dB);
	cudaFree(m.dC);
	free(m.cnt);
	free(m.offs);
}

/* ---- 3. attention ---- */

typedef struct {
	int heads, kv, nseq, S;
	int *dss;
	float *qkv, *out;
} attn_ctx;

static void attn_run(void *p)
{
	attn_ctx *a = p;
	size_t ld = (size_t)(a->heads + 2 * a->kv) * 128;
	CU((cudaError_t)zp_kv1_attention(NULL, a->heads, a->kv, 128, a->nseq, a->dss,
					 a->nseq * a->S, a->S, a->qkv, ld, a->out,
					 (size_t)a->heads * 128, NULL, true));
}

static void bench_attention(const char *name, int heads, int kv, int T, int S)
{
	attn_ctx a = { heads, kv, T / S, S, NULL, NULL, NULL };
	int *ss = malloc(sizeof(int) * (size_t)(a.nseq + 1));
	for (int s = 0; s <= a.nseq; s++)
		ss[s] = s * S;
	CU(cudaMalloc((void **)&a.dss, sizeof(int) * (size_t)(a.nseq + 1)));
	CU(cudaMemcpy(a.dss, ss, sizeof(int) * (size_t)(a.nseq + 1), cudaMemcpyHostToDevice));
	a.qkv = dev_f32((size_t)T * (heads + 2 * kv) * 128, 1.0f);
	CU(cudaMalloc((void **)&a.out, sizeof(float) * (size_t)T * heads * 128));
	/* causal: S (S + 1) / 2 (query, key) pairs per sequence, 4 d flops each */
	double flop = 4.0 * 128 * heads * a.nseq * ((double)S * (S + 1) / 2);
	float ms = time_ms(attn_run, &a);
	printf("bench_cublas: attention_v1 model=%s T=%d seq=%d heads=%d kv_heads=%d d=128 ms=%.3f "
	       "tflops=%.1f\n",
	       name, T, S, heads, kv, ms, flop / (ms * 1e-3) / 1e12);
	cudaFree(a.dss);
	cudaFree(a.qkv);
	cudaFree(a.out);
	free(ss);
}

int main(int argc, char **argv)
{
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		printf("bench_cublas: no GPU\n");
		return 77;
	}
	int only_dense = argc > 1 && !strcmp(argv[1], "--dense");
	cublasHandle_t h;
	CB(cublasCreate(&h));
	bench_dense(h);
	if (!only_dense) {
		int T[2] = { 4096, 16384 };
		for (int i = 0; i < 2; i++) {
			bench_experts(h, "30B-A3B", 2048, 768, T[i]);
			bench_experts(h, "235B-A22B", 4096, 1536, T[i]);
		}
		for (int i = 0; i < 2; i++) {
			bench_attention("30B-A3B", 32, 4, T[i], 4096);
			bench_attention("235B-A22B", 64, 4, T[i], 4096);
		}
		bench_attention("30B-A3B", 32, 4, 16384, 16384);
	}
	CB(cublasDestroy(h));
	return 0;
}
