/* test_gemm.c -- zp_gemm_run against a double-precision reference and against
   its plain-C twin, f32 and bf16, every epilogue, odd shapes (1, 17, 4097 ...),
   guard bytes around C that must come back untouched, fresh random inputs. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gemm.h"
#include "gemm_check.h"
#include "safetensors.h"
#include "util.h"

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
	struct mat src = { N, K, malloc((size_t)N * K * sizeof(float)) };
	void *packed = zp_xalloc_aligned(zp_wmat_bytes(wt, ZP_WS_PLAIN, N, K));
	zp_wmat w;
	double maxrel = 0; /* largest error as a fraction of the allowed bound */

	for (size_t i = 0; i < (size_t)N * K; i++)
		src.w[i] = frand();
	struct gemm_bufs b;
	gemm_bufs_init(&b, M, K, N, epi);
	const float *a = b.a, *c = b.c, *c2 = b.c2;
	size_t lda = b.lda, ldc = b.ldc;
	zp_wmat_pack(&w, packed, wt, ZP_WS_PLAIN, N, K, &(zp_wsrc){ ZP_DT_F32, row_fn, NULL, &src });
	gemm_run_both(pool, &b, &w, wt, epi, ncols);
	int amx = wt == ZP_W_BF16 && kp % 32 == 0 && strncmp(zp_gemm_isa(), "amx", 3) == 0;
	gemm_check_alone(pool, &b, &w, wt, epi, ncols, epi == ZP_EPI_SWIGLU ? ncols : N, N, K);
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
	}
	gemm_check_untouched(&b, epi, epi == ZP_EPI_SWIGLU ? ncols : N);
	free(src.w);
	gemm_bufs_free(&b);
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
