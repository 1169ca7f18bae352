/* test_gemm_fp8.c -- FP8 weights (weights.h ZP_WS_FP8) on the cpu: the e4m3fn
   format's arithmetic (every code decoded, encoded back, rounding and
   clamping, block quantisation), and zp_gemm_run on FP8 matrices packed
   through the cpu layout against a double-precision reference of the
   dequantised matrix (sum over each 128-wide k block of exact products, times
   the block scale), against its plain-C twin (bit for bit off AMX) and a row
   alone against the same row in a batch: f32 and bf16 compute, every
   epilogue, partial edge blocks in n and k, gate and up with their own
   scales, guard bytes around C. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gemm.h"
#include "gemm_check.h"
#include "safetensors.h"
#include "util.h"

static void format_checks(void)
{
	int nan = 0;
	for (int c = 0; c < 256; c++) {
		float v = zp_fp8_to_f32((uint8_t)c);
		if ((c & 0x7f) == 0x7f) {
			nan += isnan(v);
			continue;
		}
		CHECK(isfinite(v) && fabsf(v) <= 448.0f, "code %#x: %g", c, v);
		CHECK(zp_f32_to_fp8(v) == c, "code %#x -> %g -> %#x", c, v, zp_f32_to_fp8(v));
		CHECK(zp_bf16_to_f32(zp_fp8_to_bf16((uint8_t)c)) == v, "code %#x: bf16 not exact", c);
	}
	CHECK(nan == 2, "0x7f and 0xff decode as NaN");
	CHECK(zp_fp8_to_f32(0x7e) == 448.0f && zp_fp8_to_f32(0x01) == 0x1p-9f &&
	      zp_fp8_to_f32(0x08) == 0x1p-6f && zp_fp8_to_f32(0x38) == 1.0f &&
	      zp_fp8_to_f32(0xb8) == -1.0f, "known codes");
	CHECK(zp_f32_to_fp8(1e6f) == 0x7e && zp_f32_to_fp8(-500.0f) == 0xfe, "clamped to 448");
	CHECK(zp_f32_to_fp8(1.0625f) == 0x38, "1 + 1/16: tie to even (1)");
	CHECK(zp_f32_to_fp8(1.1875f) == 0x3a, "1 + 3/16: tie to even (1.25)");
	CHECK(zp_f32_to_fp8(0x1p-10f) == 0x00 && zp_f32_to_fp8(0x1.8p-10f) == 0x01,
	      "subnormal rounding");
	CHECK(zp_f32_to_fp8(0x1.ep-7f) == 0x08, "rounds up into the first normal");
	/* against a search over every code: nearest, ties to the even code; values
	   at random magnitudes and every midpoint between neighbours */
	for (int i = 0; i < 300000; i++) {
		float v;
		if (i < 254) { /* midpoints of neighbouring positive codes */
			int c = i % 126;
			v = (zp_fp8_to_f32((uint8_t)c) + zp_fp8_to_f32((uint8_t)(c + 1))) / 2;
			v = i >= 126 ? -v : v;
		} else {
			v = ldexpf(check_frand(-1.0f, 1.0f), (int)check_frand(-14.0f, 10.0f));
		}
		int best = -1;
		double bd = INFINITY;
		for (int c = 0; c < 256; c++) {
			if ((c & 0x7f) == 0x7f || (c & 0x80) != (signbit(v) ? 0x80 : 0))
				continue;
			double d = fabs((double)zp_fp8_to_f32((uint8_t)c) - fmin(fabs(v), 448.0) *
					(signbit(v) ? -1 : 1));
			if (d < bd || (d == bd && !(c & 1))) {
				bd = d;
				best = c;
			}
		}
		CHECK(zp_f32_to_fp8(v) == best, "%a -> %#x, nearest %#x", v, zp_f32_to_fp8(v), best);
	}
	/* block quantisation: the block's largest magnitude maps to 448 */
	float x[3][200];
	const void *rows[3] = { x[0], x[1], x[2] };
	uint8_t codes[3 * 200];
	float sc[2];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 200; c++)
			x[r][c] = check_frand(-3.0f, 3.0f);
	x[1][7] = -5.0f;
	x[2][150] = 0.25f;
	for (int r = 0; r < 3; r++)
		for (int c = 128; c < 200; c++)
			x[r][c] = c == 150 && r == 2 ? 0.25f : 0.0f;
	zp_fp8_quantize(rows, 3, 200, ZP_DT_F32, codes, sc);
	CHECK(sc[0] == 5.0f / 448.0f && sc[1] == 0.25f / 448.0f, "scales %g %g", sc[0], sc[1]);
	CHECK(codes[200 + 7] == 0xfe && codes[2 * 200 + 150] == 0x7e, "amax -> 448");
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 200; c++) {
			float back = zp_fp8_to_f32(codes[r * 200 + c]) * sc[c / 128];
			CHECK(fabsf(back - x[r][c]) <= fabsf(x[r][c]) / 16 + sc[c / 128] * 0x1p-9f,
			      "quantised (%d,%d): %g vs %g", r, c, back, x[r][c]);
		}
}

/* 1: every row its own block scales (not the format's 128-row groups: the
   widening's general path, each element times its column's scale) */
static int per_row_scales;

/* An FP8 source: codes [n][k], block scales per tensor. SWIGLU sources are
   two tensors (gate rows [0, f), up rows [f, 2f)) with scales of their own. */
struct src {
	int n, k, kb, f; /* f: rows of the first tensor (n for PLAIN) */
	uint8_t *codes;
	float *sc[2]; /* [ceil(rows/128)][kb] each */
};

static const void *row_fn(void *ctx, int j)
{
	struct src *s = ctx;
	return s->codes + (size_t)j * s->k;
}

static const void *scale_fn(void *ctx, int j)
{
	struct src *s = ctx;
	int t = j >= s->f, r = t ? j - s->f : j;
	return s->sc[t] + (size_t)(per_row_scales ? r : r / 128) * s->kb;
}

static float w_at(const struct src *s, int j, int k)
{
	return zp_fp8_to_f32(s->codes[(size_t)j * s->k + k]) *
	       ((const float *)scale_fn((void *)s, j))[k / 128];
}

static uint8_t rand_code(void)
{
	uint8_t c;
	do
		c = (uint8_t)(check_frand(0, 256));
	while ((c & 0x7f) == 0x7f || (c & 0x78) > 0x58); /* |x| <= 2^4: moderate sums */
	return c;
}

static float bf(float x)
{
	return zp_bf16_to_f32(zp_f32_to_bf16(x));
}

/* the dequantised matrix [n][k] f32 (what the twin checkpoint holds) */
struct deq {
	int k;
	float *w;
};

static const void *deq_row(void *ctx, int j)
{
	struct deq *d = ctx;
	return d->w + (size_t)j * d->k;
}

/* bf16 compute on FP8 weights gives the bits of a bf16 checkpoint of the
   dequantised model: the same op on a plain bf16 matrix packed from it. */
static void plain_twin(const struct src *s, enum zp_wkind kind, zp_gemm_op op, const float *c,
		       int ncheck, zp_pool *pool)
{
	struct deq d = { s->k, malloc((size_t)s->n * s->k * sizeof(float)) };
	size_t bytes = zp_cpu_wlayout.bytes(ZP_W_BF16, ZP_WS_PLAIN, s->n, s->k, kind);
	void *packed = zp_xalloc_aligned(bytes);
	float *c2 = malloc((size_t)op.m * op.ldc * sizeof(float));
	zp_wmat w;

	for (int j = 0; j < s->n; j++)
		for (int k = 0; k < s->k; k++)
			d.w[(size_t)j * s->k + k] = w_at(s, j, k);
	zp_cpu_wlayout.pack(&w, packed, ZP_W_BF16, ZP_WS_PLAIN, s->n, s->k, kind,
			    &(zp_wsrc){ ZP_DT_F32, deq_row, NULL, &d });
	for (size_t i = 0; i < (size_t)op.m * op.ldc; i++)
		c2[i] = op.epi == ZP_EPI_ADD ? 0.5f : GUARD_VAL;
	op.w = &w;
	op.c = c2;
	zp_gemm_run(pool, &op, 1);
	for (int m = 0; m < op.m; m++)
		CHECK(memcmp(c2 + (size_t)m * op.ldc, c + (size_t)m * op.ldc,
			     (size_t)ncheck * sizeof(float)) == 0,
		      "bf16 on FP8 differs from bf16 of the dequantised matrix: row %d (M=%d N=%d K=%d)",
		      m, op.m, s->n, s->k);
	free(d.w);
	free(c2);
	zp_free_aligned(packed);
}

static void one(enum zp_wtype wt, enum zp_epi epi, int M, int N, int K, zp_pool *pool)
{
	bool swiglu = epi == ZP_EPI_SWIGLU;
	int kp = ZP_ALIGN_UP(K, 2), f = swiglu ? N / 2 : N, ncols = f;
	struct src s = { N, K, (K + 127) / 128, f, malloc((size_t)N * K), { NULL, NULL } };
	enum zp_wkind kind = swiglu ? ZP_WK_SWIGLU : ZP_WK_PLAIN;
	size_t bytes = zp_cpu_wlayout.bytes(wt, ZP_WS_FP8, N, K, kind);
	void *packed = zp_xalloc_aligned(bytes);
	zp_wmat w;

	for (int t = 0; t < 2; t++) {
		int rows = t ? N - f : f;
		int nb = (per_row_scales ? ZP_MAX(rows, 1) : (ZP_MAX(rows, 1) + 127) / 128) * s.kb;
		s.sc[t] = malloc((size_t)nb * sizeof(float));
		for (int i = 0; i < nb; i++) /* not powers of two: the scale product rounds */
			s.sc[t][i] = check_frand(0.001f, 0.02f);
	}
	for (size_t i = 0; i < (size_t)N * K; i++)
		s.codes[i] = rand_code();
	struct gemm_bufs b;
	gemm_bufs_init(&b, M, K, N, epi);
	const float *a = b.a, *c = b.c, *c2 = b.c2;
	size_t lda = b.lda, ldc = b.ldc;
	zp_cpu_wlayout.pack(&w, packed, wt, ZP_WS_FP8, N, K, kind,
			    &(zp_wsrc){ ZP_DT_F8_E4M3, row_fn, scale_fn, &s });
	CHECK(w.store == ZP_WS_FP8 && w.scale_off % 64 == 0 && w.scale_off < bytes, "packed FP8");
	/* codes are half of bf16; the per-row block scales add 4 bytes per 128 */
	CHECK(K < 128 || bytes * 2.0 <= zp_cpu_wlayout.bytes(wt, ZP_WS_PLAIN, N, K, kind) *
						 (wt == ZP_W_BF16 ? 1.07 : 0.54),
	      "FP8 bytes %zu for N=%d K=%d: not about half of bf16", bytes, N, K);
	gemm_run_both(pool, &b, &w, wt, epi, ncols);
	int ncheck = swiglu ? ncols : N;
	if (wt == ZP_W_BF16)
		plain_twin(&s, kind, (zp_gemm_op){ .a = b.a16, .lda = lda, .m = M, .ldc = ldc,
						   .epi = epi, .ncols = ncols }, b.c + GUARD, ncheck,
			   pool);
	int amx = wt == ZP_W_BF16 && kp % 32 == 0 && strncmp(zp_gemm_isa(), "amx", 3) == 0;
	gemm_check_alone(pool, &b, &w, wt, epi, ncols, ncheck, N, K);
	for (int m = 0; m < M; m++)
		for (int j = 0; j < ncheck; j++) {
			double acc[2] = { 0, 0 }, mag = 0;
			for (int t = 0; t < (swiglu ? 2 : 1); t++) {
				int row = swiglu ? j + t * f : j;
				for (int k = 0; k < K; k++) {
					double x = a[(size_t)m * lda + k], wv = w_at(&s, row, k);
					x = wt == ZP_W_F32 ? x : bf((float)x);
					wv = wt == ZP_W_F32 ? wv : bf((float)wv); /* a bf16 checkpoint */
					acc[t] += x * wv; /* dequantised, as the twin file */
					mag += fabs(x * wv);
				}
			}
			double ref = swiglu ? acc[0] / (1 + exp(-acc[0])) * acc[1]
					    : acc[0] + (epi == ZP_EPI_ADD ? 0.5 : 0);
			float got = c[GUARD + (size_t)m * ldc + j];
			double rel = fabs(got - ref) / (fabs(ref) * 1e-6 + mag * 2e-6 + 1e-30);
			CHECK(isfinite(got) && rel <= 1, "wt=%d epi=%d M=%d N=%d K=%d (%d,%d): %g vs %g",
			      wt, epi, M, N, K, m, j, got, ref);
			CHECK(got == c2[GUARD + (size_t)m * ldc + j] || (amx && rel <= 1),
			      "twin differs: wt=%d epi=%d M=%d N=%d K=%d (%d,%d): %.9g vs %.9g", wt,
			      epi, M, N, K, m, j, got, c2[GUARD + (size_t)m * ldc + j]);
		}
	gemm_check_untouched(&b, epi, ncheck);
	free(s.codes);
	free(s.sc[0]);
	free(s.sc[1]);
	gemm_bufs_free(&b);
	zp_free_aligned(packed);
}

int main(void)
{
	static const int Ms[] = { 1, 7, 33, 257, 300 };
	static const int Ns[] = { 1, 17, 33, 160 };
	static const int Ks[] = { 1, 17, 128, 130, 384, 600 };
	zp_pool *pool = zp_pool_new(2);

	printf("isa=%s\n", zp_gemm_isa());
	format_checks();
	for (int wt = 0; wt < 2; wt++)
		for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
			for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
				for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++) {
					if (Ms[i] > 40 && Ns[j] > 33 && Ks[k] > 200)
						continue;
					one(wt, j == 2 && k % 2 ? ZP_EPI_ADD : ZP_EPI_STORE, Ms[i], Ns[j],
					    Ks[k], pool);
				}
	for (int wt = 0; wt < 2; wt++) { /* SWIGLU: f gate rows, f up rows, own scales */
		one(wt, ZP_EPI_SWIGLU, 9, 2 * 16, 17, pool);
		one(wt, ZP_EPI_SWIGLU, 70, 2 * 150, 256, pool);
		one(wt, ZP_EPI_SWIGLU, 33, 2 * 130, 300, pool);
	}
	one(ZP_W_BF16, ZP_EPI_STORE, 64, 64, 4097, pool);
	one(ZP_W_BF16, ZP_EPI_STORE, 40, 81, 4096 + 128 + 2, pool); /* two k chunks, k tail */
	per_row_scales = 1;
	for (int wt = 0; wt < 2; wt++) {
		one(wt, ZP_EPI_STORE, 33, 70, 600, pool);
		one(wt, ZP_EPI_SWIGLU, 17, 2 * 40, 256, pool);
	}
	zp_pool_free(pool);
	return check_exit("test_gemm_fp8");
}
