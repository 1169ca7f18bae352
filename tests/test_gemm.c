/* test_gemm.c -- zp_gemm_run against a double-precision reference and against
   its plain-C twin, f32 and bf16, every epilogue, odd shapes (1, 17, 4097 ...),
   guard bytes around C that must come back untouched, fresh random inputs. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gemm.h"
#include "safetensors.h"
#include "util.h"

#define GUARD 64
#define GUARD_VAL -12345.0f

static float frand(void)
{
	return check_frand(-1.0f, 1.0f);
}

struct mat {
	int n, k;
	float *w; /* [n, k] f32 source */
};

static const void *row_fn(void *ctx, int n)
{
	struct mat *m = ctx;
	return m->w + (size_t)n * m->k;
}

static float bf(float x)
{
	return zp_bf16_to_f32(zp_f32_to_bf16(x));
}

static void one(enum zp_wtype wt, enum zp_epi epi, int M, int N, int K, zp_pool *pool)
{
	int kp = ZP_ALIGN_UP(K, 2), ncols = N / 2; /* SWIGLU: N = 2 * 16 * panels */
	size_t lda = (size_t)kp + 3, ldc = (size_t)N + 5;
	struct mat src = { N, K, malloc((size_t)N * K * sizeof(float)) };
	float *a = calloc((size_t)M * lda, sizeof(float));
	uint16_t *a16 = calloc((size_t)M * lda, 2);
	float *c = malloc(((size_t)M * ldc + 2 * GUARD) * sizeof(float));
	float *c2 = malloc(((size_t)M * ldc + 2 * GUARD) * sizeof(float));
	void *packed = zp_xalloc_aligned(zp_wmat_bytes(wt, ZP_WS_PLAIN, N, K));
	zp_wmat w;
	double maxrel = 0; /* largest error as a fraction of the allowed bound */

	for (size_t i = 0; i < (size_t)N * K; i++)
		src.w[i] = frand();
	for (int m = 0; m < M; m++)
		for (int k = 0; k < K; k++) {
			a[(size_t)m * lda + k] = frand();
			a16[(size_t)m * lda + k] = zp_f32_to_bf16(a[(size_t)m * lda + k]);
		}
	zp_wmat_pack(&w, packed, wt, ZP_WS_PLAIN, N, K, &(zp_wsrc){ ZP_DT_F32, row_fn, NULL, &src });
	for (size_t i = 0; i < (size_t)M * ldc + 2 * GUARD; i++)
		c[i] = c2[i] = (epi == ZP_EPI_ADD && i >= GUARD && i < GUARD + (size_t)M * ldc)
				       ? 0.5f : GUARD_VAL;
	for (int pass = 0; pass < 2; pass++) {
		zp_gemm_op op = { .a = wt == ZP_W_F32 ? (void *)a : (void *)a16, .lda = lda, .m = M,
				  .w = &w, .c = (pass ? c2 : c) + GUARD, .ldc = ldc, .epi = epi,
				  .ncols = ncols };
		zp_gemm_force_ref(pass);
		zp_gemm_run(pool, &op, 1);
	}
	zp_gemm_force_ref(0);
	int amx = wt == ZP_W_BF16 && kp % 32 == 0 && strncmp(zp_gemm_isa(), "amx", 3) == 0;
	/* batch invariance: a row computed alone equals the same row inside M rows */
	for (int m = 0; m < M; m += (M > 8 ? M / 3 : 1)) {
		float one_row[4096 + 64];
		for (size_t i = 0; i < (size_t)N + 5; i++)
			one_row[i] = epi == ZP_EPI_ADD ? 0.5f : GUARD_VAL;
		zp_gemm_op op = { .a = wt == ZP_W_F32 ? (void *)(a + (size_t)m * lda)
						       : (void *)(a16 + (size_t)m * lda),
				  .lda = lda, .m = 1, .w = &w, .c = one_row, .ldc = ldc, .epi = epi,
				  .ncols = ncols };
		zp_gemm_run(pool, &op, 1);
		CHECK(memcmp(one_row, c + GUARD + (size_t)m * ldc, (size_t)(epi == ZP_EPI_SWIGLU ?
			ncols : N) * sizeof(float)) == 0, "row %d alone differs from it in M=%d "
		      "(wt=%d N=%d K=%d)", m, M, wt, N, K);
	}
	for (int m = 0; m < M; m++) {
		int ncheck = epi == ZP_EPI_SWIGLU ? ncols : N;
		for (int j = 0; j < ncheck; j++) {
			double ref, mag = 0; /* mag: sum of |terms|, the scale of rounding error */
			if (epi == ZP_EPI_SWIGLU) { /* panel p: 16 gate rows then 16 up rows */
				int p = j / 16, r = j % 16;
				double g = 0, u = 0;
				for (int k = 0; k < K; k++) {
					double x = wt == ZP_W_F32 ? a[(size_t)m * lda + k]
								  : bf(a[(size_t)m * lda + k]);
					double wg = src.w[(size_t)(p * 32 + r) * K + k];
					double wu = src.w[(size_t)(p * 32 + 16 + r) * K + k];
					g += x * (wt == ZP_W_F32 ? wg : bf((float)wg));
					u += x * (wt == ZP_W_F32 ? wu : bf((float)wu));
					mag += fabs(x * wg) + fabs(x * wu);
				}
				ref = g / (1 + exp(-g)) * u;
			} else {
				ref = epi == ZP_EPI_ADD ? 0.5 : 0;
				for (int k = 0; k < K; k++) {
					double x = a[(size_t)m * lda + k], y = src.w[(size_t)j * K + k];
					ref += wt == ZP_W_F32 ? x * y : (double)bf((float)x) * bf((float)y);
					mag += fabs(x * y);
				}
			}
			float got = c[GUARD + (size_t)m * ldc + j];
			/* sequential f32 sums: error grows with the sum of |terms| */
			double rel = fabs(got - ref) / (fabs(ref) * 1e-6 + mag * 2e-6 + 1e-30);
			maxrel = fmax(maxrel, rel);
			CHECK(isfinite(got) && rel <= 1, "wt=%d epi=%d M=%d N=%d K=%d (%d,%d): %g vs %g",
			      wt, epi, M, N, K, m, j, got, ref);
			/* AMX sums inside a tile step in its own order: the twin matches it to
			   rounding only; elsewhere they are the same sums, bit for bit */
			CHECK(got == c2[GUARD + (size_t)m * ldc + j] || (amx && rel <= 1),
			      "twin differs: wt=%d epi=%d M=%d N=%d K=%d (%d,%d): %.9g vs %.9g", wt, epi,
			      M, N, K, m, j, got, c2[GUARD + (size_t)m * ldc + j]);
		}
		for (int j = (epi == ZP_EPI_SWIGLU ? ncols : N); j < (int)ldc && m < M - 1; j++)
			CHECK(c[GUARD + (size_t)m * ldc + j] == (epi == ZP_EPI_ADD ? 0.5f : GUARD_VAL),
			      "padding column %d of row %d written", j, m);
	}
	for (int i = 0; i < GUARD; i++) {
		CHECK(c[i] == GUARD_VAL, "guard before C written");
		CHECK(c[GUARD + (size_t)M * ldc + i] == GUARD_VAL, "guard after C written");
	}
	free(src.w);
	free(a);
	free(a16);
	free(c);
	free(c2);
	zp_free_aligned(packed);
}

int main(void)
{
	static const int Ms[] = { 1, 7, 8, 17, 64, 65, 130 };
	static const int Ns[] = { 1, 17, 32, 33, 96 };
	static const int Ks[] = { 1, 2, 17, 64, 255, 600, 4097 };
	zp_pool *pool = zp_pool_new(2);

	printf("isa=%s\n", zp_gemm_isa());
	for (int wt = 0; wt < 2; wt++)
		for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
			for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
				for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++) {
					if (Ms[i] * Ks[k] > 200000 && Ns[j] > 33)
						continue;
					one(wt, ZP_EPI_STORE, Ms[i], Ns[j], Ks[k], pool);
					if (j == 2)
						one(wt, ZP_EPI_ADD, Ms[i], Ns[j], Ks[k], pool);
				}
	for (int wt = 0; wt < 2; wt++) /* SWIGLU: N = 32 per panel */
		for (int p = 1; p <= 3; p++) {
			one(wt, ZP_EPI_SWIGLU, 9, 32 * p, 17, pool);
			one(wt, ZP_EPI_SWIGLU, 70, 32 * p, 256, pool);
		}
	zp_pool_free(pool);
	return check_exit("test_gemm");
}
