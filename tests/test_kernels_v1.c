/* test_kernels_v1.c -- the v1 kernels (kernels/v1.h) against plain references.
   Everywhere: the host twins (zp_kv1_*_host) on ragged shapes -- experts with
   0, 1 and more than a tile of rows, K and F not multiples of the tile;
   sequences of 1..300 rows with cached prefixes -- with NaN-poisoned outputs
   and guard columns that must come back untouched; and batch invariance: an
   expert or a sequence alone gives the same bits as inside the batch, on 1 or
   3 threads; and every deliberate slip of the kernels' shared per-lane
   address functions (zp_v1_mut) makes its twin miss the reference. Bounds: expert GEMM vs the f64 sum of the same bf16 inputs,
   |err| <= 2^-16 sum|a w| + 1e-6 (f32 accumulation over K); attention vs the
   exact softmax of the f32 inputs, |err| <= 1/64 max|v| (q, k, v and p rounded
   to bf16). Built with CUDA (make gpu) and on a GPU: the device kernels on the
   same inputs, the same bounds, device vs twin, batch invariance on the
   device, and a 30B-A3B-sized expert layer (not with ZP_TEST_SMALL set, for
   compute-sanitizer); exit 77 there without a GPU. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attention_v1.h"
#include "check.h"
#include "expert_gemm_v1.h"

#define GUARD 1234.5f

/* Set while a deliberately mutated twin runs (test_mutations): echeck and
   acheck count what is wrong without failing the test. */
static bool expect_bad;

static uint16_t bf(float x)
{
	return zp_v1_f32_bf16(x);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

/* ---------------------------------------------------------------- experts */

typedef struct {
	int ne, N, K, epi;
	int *offs;	/* [ne + 1] */
	uint16_t *w;	/* [ne][N][K] */
	uint16_t *a;	/* [rows][lda] */
	size_t lda, ldc;
	int outs;	/* N or N / 2 */
} ecase;

static void ecase_init(ecase *c, int ne, const int *cnt, int N, int K, int epi)
{
	c->ne = ne;
	c->N = N;
	c->K = K;
	c->epi = epi;
	c->outs = epi == ZP_KV1_EPI_SWIGLU ? N / 2 : N;
	c->offs = xmalloc(sizeof(int) * (size_t)(ne + 1));
	c->offs[0] = 0;
	for (int e = 0; e < ne; e++)
		c->offs[e + 1] = c->offs[e] + cnt[e];
	c->lda = (size_t)K + 8;
	c->ldc = (size_t)c->outs + 6;	/* 6 guard columns */
	size_t wn = (size_t)ne * N * K, an = (size_t)c->offs[ne] * c->lda;
	c->w = xmalloc(2 * wn);
	c->a = xmalloc(2 * an + 2);
	for (size_t i = 0; i < wn; i++)
		c->w[i] = bf(check_frand(-0.25f, 0.25f));
	for (size_t i = 0; i < an; i++)
		c->a[i] = bf(check_frand(-1.0f, 1.0f));
}

static void ecase_free(ecase *c)
{
	free(c->offs);
	free(c->w);
	free(c->a);
}

static float *out_new(size_t rows, size_t ld, int cols)
{
	float *c = xmalloc(sizeof(float) * (rows ? rows : 1) * ld);
	for (size_t r = 0; r < rows; r++)
		for (size_t j = 0; j < ld; j++)
			c[r * ld + j] = (int)j < cols ? NAN : GUARD;
	return c;
}

/* f64 dot of row m with weight row n of expert e, and sum |a w| */
static double edot(const ecase *c, int e, int m, int n, double *mag)
{
	const uint16_t *ar = c->a + (size_t)m * c->lda;
	const uint16_t *wr = c->w + ((size_t)e * c->N + n) * c->K;
	double s = 0, g = 0;
	for (int k = 0; k < c->K; k++) {
		double t = (double)zp_v1_bf16_f32(ar[k]) * zp_v1_bf16_f32(wr[k]);
		s += t;
		g += fabs(t);
	}
	*mag = g;
	return s;
}

/* Every output within the bound of the reference, guards untouched; the
   count of outputs and guards that are not. */
static int echeck(const ecase *c, const float *out, const char *what)
{
	int bad = 0;
	double worst = 0;
	for (int e = 0; e < c->ne; e++)
		for (int m = c->offs[e]; m < c->offs[e + 1]; m++) {
			const float *row = out + (size_t)m * c->ldc;
			for (int j = 0; j < c->outs; j++) {
				double ref, tol, mg, mu;
				if (c->epi == ZP_KV1_EPI_SWIGLU) {
					double g = edot(c, e, m, j, &mg);
					double u = edot(c, e, m, c->outs + j, &mu);
					double sg = g / (1 + exp(-g));
					ref = sg * u;
					tol = 1.1 * ldexp(mg, -16) * fabs(u) +
					      ldexp(mu, -16) * (fabs(sg) + ldexp(mg, -16)) + 1e-6;
				} else {
					ref = edot(c, e, m, j, &mg);
					tol = ldexp(mg, -16) + 1e-6;
				}
				double err = fabs(row[j] - ref);
				if (!(err <= tol) && bad++ < 5 && !expect_bad)
					CHECK(0, "%s: expert %d row %d col %d: %g vs %g (tol %g)", what, e, m,
					      j, row[j], ref, tol);
				if (!(err <= worst))
					worst = err;
			}
			for (size_t j = (size_t)c->outs; j < c->ldc; j++)
				if (row[j] != GUARD && bad++ < 5 && !expect_bad)
					CHECK(0, "%s: guard column %zu of row %d written", what, j, m);
		}
	printf("  %s: max |err| %.3g%s\n", what, worst, bad ? " (FAILED)" : "");
	return bad;
}

/* Each expert alone (its rows only, e0 = e1 - 1) equals its rows in the batch. */
static void ealone(const ecase *c, const float *batch, int nthreads, const char *what)
{
	for (int e = 0; e < c->ne; e++) {
		int rows = c->offs[e + 1] - c->offs[e];
		int offs1[2] = { 0, rows };
		float *out = out_new((size_t)rows, c->ldc, c->outs);
		int rc = zp_kv1_expert_gemm_host(nthreads, c->w + (size_t)e * c->N * c->K, 0, 1, offs1,
						 c->a + (size_t)c->offs[e] * c->lda, c->lda, out, c->ldc,
						 (enum zp_kv1_epi)c->epi, c->N, c->K);
		CHECK(rc == 0, "twin rc %d", rc);
		CHECK(!memcmp(out, batch + (size_t)c->offs[e] * c->ldc,
			      sizeof(float) * (size_t)rows * c->ldc),
		      "%s: expert %d alone differs from inside the batch", what, e);
		free(out);
	}
}

static void test_experts_case(int ne, const int *cnt, int N, int K, int epi)
{
	ecase c;
	ecase_init(&c, ne, cnt, N, K, epi);
	char what[96];
	snprintf(what, sizeof(what), "experts twin E=%d N=%d K=%d %s rows=%d", ne, N, K,
		 epi == ZP_KV1_EPI_SWIGLU ? "swiglu" : "store", c.offs[ne]);
	float *out = out_new((size_t)c.offs[ne], c.ldc, c.outs);
	CHECK(zp_kv1_expert_gemm_host(3, c.w, 10, 10 + ne, c.offs, c.a, c.lda, out, c.ldc,
				      (enum zp_kv1_epi)epi, N, K) == 0, "twin failed");
	echeck(&c, out, what);
	ealone(&c, out, 1, what);
	free(out);
	ecase_free(&c);
}

static void test_experts(void)
{
	/* 0 rows, 1 row, a tile plus one, several tiles; F = 40 (not a multiple
	   of 64), K = 72 (not a multiple of 32) */
	int cnt1[6] = { 0, 1, 129, 17, 0, 300 };
	test_experts_case(6, cnt1, 80, 72, ZP_KV1_EPI_SWIGLU);
	test_experts_case(6, cnt1, 80, 72, ZP_KV1_EPI_STORE);
	/* down-like: N not a multiple of the 128-column tile, K = F */
	int cnt2[3] = { 128, 3, 0 };
	test_experts_case(3, cnt2, 144, 40, ZP_KV1_EPI_STORE);
	int cnt3[4] = { 1, 0, 64, 200 };
	test_experts_case(4, cnt3, 2 * 136, 256, ZP_KV1_EPI_SWIGLU);
}

/* -------------------------------------------------------------- attention */

typedef struct {
	int heads, kv_heads, d, nseq;
	int *seq_start;
	float *qkv;
	size_t ld_qkv, ld_out;
	zp_kv1_src *pre;	/* [nseq] */
	float **pk, **pv;	/* prefix storage */
} acase;

static void acase_init(acase *c, int heads, int kv_heads, int d, int nseq, const int *len,
		       const int *plen)
{
	c->heads = heads;
	c->kv_heads = kv_heads;
	c->d = d;
	c->nseq = nseq;
	c->seq_start = xmalloc(sizeof(int) * (size_t)(nseq + 1));
	c->seq_start[0] = 0;
	for (int s = 0; s < nseq; s++)
		c->seq_start[s + 1] = c->seq_start[s] + len[s];
	c->ld_qkv = (size_t)(heads + 2 * kv_heads) * d + 4;
	c->ld_out = (size_t)heads * d + 4;	/* 4 guard columns */
	size_t n = (size_t)c->seq_start[nseq] * c->ld_qkv;
	c->qkv = xmalloc(sizeof(float) * (n ? n : 1));
	for (size_t i = 0; i < n; i++)	/* q a little peaked, so softmax is not flat */
		c->qkv[i] = check_frand(-1.0f, 1.0f) * ((i % c->ld_qkv) < (size_t)heads * d ? 3.0f : 1.0f);
	c->pre = xmalloc(sizeof(zp_kv1_src) * (size_t)nseq);
	c->pk = xmalloc(sizeof(float *) * (size_t)nseq);
	c->pv = xmalloc(sizeof(float *) * (size_t)nseq);
	size_t pld = (size_t)kv_heads * d + 4;
	for (int s = 0; s < nseq; s++) {
		size_t pn = (size_t)plen[s] * pld;
		c->pk[s] = xmalloc(sizeof(float) * (pn ? pn : 1));
		c->pv[s] = xmalloc(sizeof(float) * (pn ? pn : 1));
		for (size_t i = 0; i < pn; i++) {
			c->pk[s][i] = check_frand(-1.0f, 1.0f);
			c->pv[s][i] = check_frand(-1.0f, 1.0f);
		}
		c->pre[s] = (zp_kv1_src){ .k = c->pk[s], .v = c->pv[s], .ld = pld, .len = plen[s] };
	}
}

static void acase_free(acase *c)
{
	for (int s = 0; s < c->nseq; s++) {
		free(c->pk[s]);
		free(c->pv[s]);
	}
	free(c->pk);
	free(c->pv);
	free(c->pre);
	free(c->qkv);
	free(c->seq_start);
}

/* Exact attention of row i of sequence s, head h, in f64 over the f32 inputs. */
static void aref(const acase *c, int s, int h, int i, double *o, double *scores)
{
	int d = c->d, r0 = c->seq_start[s], len = c->seq_start[s + 1] - r0;
	const zp_kv1_src *pre = &c->pre[s];
	int kvh = h / (c->heads / c->kv_heads), nk = pre->len + i + 1;
	const float *q = c->qkv + (size_t)(r0 + i) * c->ld_qkv + (size_t)h * d;
	double mx = -INFINITY, sum = 0;
	for (int kp = 0; kp < nk; kp++) {
		const float *k = zp_av1_kv_row(c->qkv, c->ld_qkv, c->heads, c->kv_heads, d, r0, len,
					       pre, kvh, kp, 0);
		double t = 0;
		for (int x = 0; x < d; x++)
			t += (double)q[x] * k[x];
		scores[kp] = t / sqrt((double)d);
		if (scores[kp] > mx)
			mx = scores[kp];
	}
	for (int x = 0; x < d; x++)
		o[x] = 0;
	for (int kp = 0; kp < nk; kp++) {
		const float *v = zp_av1_kv_row(c->qkv, c->ld_qkv, c->heads, c->kv_heads, d, r0, len,
					       pre, kvh, kp, 1);
		double p = exp(scores[kp] - mx);
		sum += p;
		for (int x = 0; x < d; x++)
			o[x] += p * v[x];
	}
	for (int x = 0; x < d; x++)
		o[x] /= sum;
}

static int acheck(const acase *c, const float *out, const char *what)
{
	int d = c->d, bad = 0, maxk = 0;
	for (int s = 0; s < c->nseq; s++)
		if (c->pre[s].len + c->seq_start[s + 1] - c->seq_start[s] > maxk)
			maxk = c->pre[s].len + c->seq_start[s + 1] - c->seq_start[s];
	double *o = xmalloc(sizeof(double) * (size_t)d);
	double *sc = xmalloc(sizeof(double) * (size_t)(maxk + 1));
	double worst = 0, tol = 1.0 / 64;	/* max |v| is 1 */
	for (int s = 0; s < c->nseq; s++)
		for (int i = 0; i < c->seq_start[s + 1] - c->seq_start[s]; i++) {
			const float *row = out + (size_t)(c->seq_start[s] + i) * c->ld_out;
			for (int h = 0; h < c->heads; h++) {
				aref(c, s, h, i, o, sc);
				for (int x = 0; x < d; x++) {
					double err = fabs(row[h * d + x] - o[x]);
					if (!(err <= tol) && bad++ < 5 && !expect_bad)
						CHECK(0, "%s: seq %d row %d head %d col %d: %g vs %g", what,
						      s, i, h, x, row[h * d + x], o[x]);
					if (!(err <= worst))
						worst = err;
				}
			}
			for (size_t j = (size_t)c->heads * d; j < c->ld_out; j++)
				if (row[j] != GUARD && bad++ < 5 && !expect_bad)
					CHECK(0, "%s: guard column %zu written", what, j);
		}
	printf("  %s: max |err| %.3g (bound %.3g)%s\n", what, worst, tol, bad ? " (FAILED)" : "");
	free(o);
	free(sc);
	return bad;
}

/* Each sequence alone (nseq = 1) equals its rows in the batch. */
static void aalone(const acase *c, const float *batch, int nthreads, const char *what)
{
	for (int s = 0; s < c->nseq; s++) {
		int rows = c->seq_start[s + 1] - c->seq_start[s];
		int ss[2] = { 0, rows };
		float *out = out_new((size_t)rows, c->ld_out, c->heads * c->d);
		CHECK(zp_kv1_attention_host(nthreads, c->heads, c->kv_heads, c->d, 1, ss,
					    c->qkv + (size_t)c->seq_start[s] * c->ld_qkv, c->ld_qkv,
					    out, c->ld_out, &c->pre[s]) == 0,
		      "twin failed");
		CHECK(!memcmp(out, batch + (size_t)c->seq_start[s] * c->ld_out,
			      sizeof(float) * (size_t)rows * c->ld_out),
		      "%s: sequence %d alone differs from inside the batch", what, s);
		free(out);
	}
}

static void test_attention_case(int heads, int kv_heads, int d, int nseq, const int *len,
				const int *plen)
{
	acase c;
	acase_init(&c, heads, kv_heads, d, nseq, len, plen);
	char what[96];
	snprintf(what, sizeof(what), "attention twin heads=%d/%d d=%d seqs=%d rows=%d", heads,
		 kv_heads, d, nseq, c.seq_start[nseq]);
	float *out = out_new((size_t)c.seq_start[nseq], c.ld_out, heads * d);
	CHECK(zp_kv1_attention_host(3, heads, kv_heads, d, nseq, c.seq_start, c.qkv, c.ld_qkv, out,
				    c.ld_out, c.pre) == 0,
	      "twin failed");
	acheck(&c, out, what);
	aalone(&c, out, 1, what);
	free(out);
	acase_free(&c);
}

static void test_attention(void)
{
	int len1[6] = { 1, 17, 64, 65, 300, 2 };
	int plen1[6] = { 0, 5, 0, 70, 16, 128 };
	test_attention_case(4, 2, 64, 6, len1, plen1);
	int len2[3] = { 130, 1, 33 };
	int plen2[3] = { 3, 64, 0 };
	test_attention_case(4, 1, 128, 3, len2, plen2);
}

/* ------------------------------------------------------------- mutations */

/* The twins run the kernels' own per-lane address functions: each deliberate
   slip of v1_common.h's zp_v1_mut (a swapped lane row, a swapped ldmatrix
   matrix, a transposed fragment, a wrong cp.async source, a missing wait)
   must make its twin miss the reference, and the unmutated twins must not:
   what proves that a layout slip in a .cu cannot pass CI. */
static void test_mutations(void)
{
	static const char *name[ZP_V1_MUT_COUNT] = {
		"none", "expert A ldmatrix lane rows", "expert B ldmatrix matrices",
		"expert cp.async source row", "expert cp.async wait_group", "expert C fragment rows",
		"attention Q fragment registers", "attention K ldmatrix lane rows",
		"attention V ldmatrix.trans matrices",
	};
	int cnt[3] = { 1, 129, 17 };
	ecase ec;
	ecase_init(&ec, 3, cnt, 80, 72, ZP_KV1_EPI_SWIGLU);
	int len[2] = { 70, 3 }, plen[2] = { 5, 0 };
	acase ac;
	acase_init(&ac, 2, 1, 64, 2, len, plen);
	int erows = ec.offs[3], arows = ac.seq_start[2];
	for (int m = 0; m < ZP_V1_MUT_COUNT; m++) {
		char what[128];
		int ebad = 0, abad = 0;
		bool ev1 = m >= ZP_V1_MUT_EV1_A_ROWS && m <= ZP_V1_MUT_EV1_C_ROW;
		zp_v1_mutate = m;
		expect_bad = m != ZP_V1_MUT_NONE;
		if (m == ZP_V1_MUT_NONE || ev1) {
			float *out = out_new((size_t)erows, ec.ldc, ec.outs);
			snprintf(what, sizeof(what), "mutation %d (%s): experts twin", m, name[m]);
			CHECK(zp_kv1_expert_gemm_host(2, ec.w, 0, 3, ec.offs, ec.a, ec.lda, out, ec.ldc,
						      ZP_KV1_EPI_SWIGLU, ec.N, ec.K) == 0, "twin");
			ebad = echeck(&ec, out, what);
			free(out);
		}
		if (m == ZP_V1_MUT_NONE || !ev1) {
			float *out = out_new((size_t)arows, ac.ld_out, ac.heads * ac.d);
			snprintf(what, sizeof(what), "mutation %d (%s): attention twin", m, name[m]);
			CHECK(zp_kv1_attention_host(2, ac.heads, ac.kv_heads, ac.d, 2, ac.seq_start, ac.qkv,
						    ac.ld_qkv, out, ac.ld_out, ac.pre) == 0, "twin");
			abad = acheck(&ac, out, what);
			free(out);
		}
		zp_v1_mutate = ZP_V1_MUT_NONE;
		expect_bad = false;
		if (m == ZP_V1_MUT_NONE) {
			printf("  mutation 0 (none): the twins match the references\n");
			continue;
		}
		CHECK(ebad + abad > 0, "mutation %d (%s): the twin still matches the reference", m,
		      name[m]);
		printf("  mutation %d (%s): caught (%s twin differs from the reference)\n", m, name[m],
		       ev1 ? "experts" : "attention");
	}
	ecase_free(&ec);
	acase_free(&ac);
}

#ifndef ZP_HAVE_CUDA
int main(void)
{
	test_experts();
	test_attention();
	test_mutations();
	return check_exit("test_kernels_v1");
}
#else
#include <cuda_runtime.h>

#define CU(x)                                                                                \
	do {                                                                                 \
		cudaError_t e_ = (x);                                                        \
		if (e_ != cudaSuccess) {                                                     \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
			exit(1);                                                             \
		}                                                                            \
	} while (0)

static void *dev_dup(const void *h, size_t n)
{
	void *d;
	CU(cudaMalloc(&d, n ? n : 1));
	if (n)
		CU(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
	return d;
}

/* The device kernel on ne experts (weights w, rows a [rows][lda]); the output
   poisoned as out_new, read back. rows_max > rows: the grid must not matter. */
static float *ev1_dev(const ecase *c, const uint16_t *w, int ne, const int *offs, const uint16_t *a)
{
	int rows = offs[ne];
	float *out = out_new((size_t)rows, c->ldc, c->outs);
	size_t ob = sizeof(float) * (size_t)rows * c->ldc;
	uint16_t *dw = dev_dup(w, 2 * (size_t)ne * c->N * c->K);
	uint16_t *da = dev_dup(a, 2 * (size_t)rows * c->lda);
	int *doffs = dev_dup(offs, sizeof(int) * (size_t)(ne + 1));
	float *dc = dev_dup(out, ob);
	CHECK(zp_kv1_expert_gemm(NULL, dw, 3, 3 + ne, doffs, rows + 77, da, c->lda, dc, c->ldc,
				 (enum zp_kv1_epi)c->epi, c->N, c->K) == 0,
	      "expert launch");
	CU(cudaDeviceSynchronize());
	CU(cudaMemcpy(out, dc, ob, cudaMemcpyDeviceToHost));
	cudaFree(dw);
	cudaFree(da);
	cudaFree(doffs);
	cudaFree(dc);
	return out;
}

static double max_abs_diff(const float *x, const float *y, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		if (isnan(x[i]) != isnan(y[i]) || fabs((double)x[i] - y[i]) > m)
			m = isnan(x[i]) != isnan(y[i]) ? INFINITY : fabs((double)x[i] - y[i]);
	return m;
}

static void gpu_experts_case(int ne, const int *cnt, int N, int K, int epi)
{
	ecase c;
	ecase_init(&c, ne, cnt, N, K, epi);
	int rows = c.offs[ne];
	char what[96];
	snprintf(what, sizeof(what), "experts device E=%d N=%d K=%d %s rows=%d", ne, N, K,
		 epi == ZP_KV1_EPI_SWIGLU ? "swiglu" : "store", rows);
	float *dev = ev1_dev(&c, c.w, ne, c.offs, c.a);
	echeck(&c, dev, what);
	float *twin = out_new((size_t)rows, c.ldc, c.outs);
	CHECK(zp_kv1_expert_gemm_host(8, c.w, 0, ne, c.offs, c.a, c.lda, twin, c.ldc,
				      (enum zp_kv1_epi)epi, N, K) == 0, "twin");
	printf("  %s: device vs twin max |diff| %.3g\n", what,
	       max_abs_diff(dev, twin, (size_t)rows * c.ldc));
	for (int e = 0; e < ne; e++) {
		int n1 = c.offs[e + 1] - c.offs[e], offs1[2] = { 0, n1 };
		float *one = ev1_dev(&c, c.w + (size_t)e * N * K, 1, offs1, c.a + (size_t)c.offs[e] * c.lda);
		CHECK(!memcmp(one, dev + (size_t)c.offs[e] * c.ldc, sizeof(float) * (size_t)n1 * c.ldc),
		      "%s: expert %d alone differs on the device", what, e);
		free(one);
	}
	free(twin);
	free(dev);
	ecase_free(&c);
}

/* A 30B-A3B gate_up layer slice: device vs twin by relative norm, and its rate. */
static void gpu_experts_big(void)
{
	enum { NE = 16 };
	int cnt[NE];
	for (int e = 0; e < NE; e++)
		cnt[e] = e % 5 == 0 ? 0 : (int)check_frand(1, 700);
	ecase c;
	ecase_init(&c, NE, cnt, 1536, 2048, ZP_KV1_EPI_SWIGLU);
	int rows = c.offs[NE];
	float *dev = ev1_dev(&c, c.w, NE, c.offs, c.a);
	float *twin = out_new((size_t)rows, c.ldc, c.outs);
	CHECK(zp_kv1_expert_gemm_host(16, c.w, 0, NE, c.offs, c.a, c.lda, twin, c.ldc,
				      ZP_KV1_EPI_SWIGLU, c.N, c.K) == 0, "twin");
	double num = 0, den = 0;
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < c.outs; j++) {
			double x = dev[(size_t)r * c.ldc + j], y = twin[(size_t)r * c.ldc + j];
			num += (x - y) * (x - y);
			den += y * y;
		}
	double rel = sqrt(num / den);
	CHECK(rel <= 1e-5 && !isnan(rel), "big experts: device vs twin rel %g", rel);
	printf("  experts device 16 x [1536 x 2048] swiglu rows=%d: rel L2 vs twin %.3g\n", rows, rel);
	free(dev);
	free(twin);
	ecase_free(&c);
}

/* The device kernel over c's sequences [s0, s0 + ns); read back. */
static float *av1_dev(const acase *c, int s0, int ns)
{
	int r0 = c->seq_start[s0], rows = c->seq_start[s0 + ns] - r0, maxr = 0;
	int *ss = xmalloc(sizeof(int) * (size_t)(ns + 1));
	zp_kv1_src *pre = xmalloc(sizeof(zp_kv1_src) * (size_t)ns);
	void **keep = xmalloc(sizeof(void *) * 2 * (size_t)ns);
	for (int s = 0; s <= ns; s++)
		ss[s] = c->seq_start[s0 + s] - r0;
	for (int s = 0; s < ns; s++) {
		if (ss[s + 1] - ss[s] > maxr)
			maxr = ss[s + 1] - ss[s];
		const zp_kv1_src *p = &c->pre[s0 + s];
		size_t pb = sizeof(float) * (size_t)p->len * p->ld;
		pre[s] = *p;
		pre[s].k = keep[2 * s] = dev_dup(p->k, pb);
		pre[s].v = keep[2 * s + 1] = dev_dup(p->v, pb);
	}
	float *out = out_new((size_t)rows, c->ld_out, c->heads * c->d);
	size_t ob = sizeof(float) * (size_t)rows * c->ld_out;
	int *dss = dev_dup(ss, sizeof(int) * (size_t)(ns + 1));
	zp_kv1_src *dpre = dev_dup(pre, sizeof(zp_kv1_src) * (size_t)ns);
	float *dq = dev_dup(c->qkv + (size_t)r0 * c->ld_qkv, sizeof(float) * (size_t)rows * c->ld_qkv);
	float *dout = dev_dup(out, ob);
	CHECK(zp_kv1_attention(NULL, c->heads, c->kv_heads, c->d, ns, dss, rows, maxr, dq, c->ld_qkv,
			       dout, c->ld_out, dpre, true) == 0,
	      "attention launch");
	CU(cudaDeviceSynchronize());
	CU(cudaMemcpy(out, dout, ob, cudaMemcpyDeviceToHost));
	for (int s = 0; s < 2 * ns; s++)
		cudaFree(keep[s]);
	cudaFree(dss);
	cudaFree(dpre);
	cudaFree(dq);
	cudaFree(dout);
	free(ss);
	free(pre);
	free(keep);
	return out;
}

static void gpu_attention_case(int heads, int kv_heads, int d, int nseq, const int *len,
			       const int *plen)
{
	acase c;
	acase_init(&c, heads, kv_heads, d, nseq, len, plen);
	int rows = c.seq_start[nseq];
	char what[96];
	snprintf(what, sizeof(what), "attention device heads=%d/%d d=%d seqs=%d rows=%d", heads,
		 kv_heads, d, nseq, rows);
	float *dev = av1_dev(&c, 0, nseq);
	acheck(&c, dev, what);
	float *twin = out_new((size_t)rows, c.ld_out, heads * d);
	CHECK(zp_kv1_attention_host(8, heads, kv_heads, d, nseq, c.seq_start, c.qkv, c.ld_qkv, twin,
				    c.ld_out, c.pre) == 0, "twin");
	printf("  %s: device vs twin max |diff| %.3g\n", what,
	       max_abs_diff(dev, twin, (size_t)rows * c.ld_out));
	for (int s = 0; s < nseq; s++) {
		float *one = av1_dev(&c, s, 1);
		size_t n = (size_t)(c.seq_start[s + 1] - c.seq_start[s]) * c.ld_out;
		CHECK(!memcmp(one, dev + (size_t)c.seq_start[s] * c.ld_out, sizeof(float) * n),
		      "%s: sequence %d alone differs on the device", what, s);
		free(one);
	}
	free(twin);
	free(dev);
	acase_free(&c);
}

int main(void)
{
	test_experts();
	test_attention();
	test_mutations();
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		if (check_failures)
			return check_exit("test_kernels_v1");
		printf("no GPU: the twins passed; the device kernels were not run\n");
		return 77;
	}
	int cnt1[6] = { 0, 1, 129, 17, 0, 300 };
	gpu_experts_case(6, cnt1, 80, 72, ZP_KV1_EPI_SWIGLU);
	gpu_experts_case(6, cnt1, 80, 72, ZP_KV1_EPI_STORE);
	int cnt3[4] = { 1, 0, 64, 200 };
	gpu_experts_case(4, cnt3, 2 * 136, 256, ZP_KV1_EPI_SWIGLU);
	int cnt4[5] = { 300, 0, 129, 1, 513 };
	if (!getenv("ZP_TEST_SMALL")) {	/* compute-sanitizer runs set it */
		gpu_experts_case(5, cnt4, 2048, 768, ZP_KV1_EPI_STORE);
		gpu_experts_big();
	}
	int len1[6] = { 1, 17, 64, 65, 300, 2 };
	int plen1[6] = { 0, 5, 0, 70, 16, 128 };
	gpu_attention_case(4, 2, 64, 6, len1, plen1);
	int len2[4] = { 130, 1, 33, 257 };
	int plen2[4] = { 3, 64, 0, 200 };
	gpu_attention_case(8, 2, 128, 4, len2, plen2);
	return check_exit("test_kernels_v1");
}
#endif
