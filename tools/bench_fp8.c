/* bench_fp8.c -- the cpu GEMM on FP8 weights (weights.h ZP_WS_FP8) against the
   same matrices in bf16, at Qwen3-30B-A3B and 235B-A22B layer shapes: a MoE
   layer's experts (gate_up with the SwiGLU epilogue, then down; `experts`
   of them with `rows` tokens each, one zp_gemm_run per projection as the cpu
   backend runs them) and the dense attention projections. bf16 and FP8 runs
   alternate, each shape `iters` times; prints each one's best and median
   seconds, GFLOP/s, weight bytes, and the ratios fp8 / bf16.
   Build and run: make build/bench_fp8 && build/bench_fp8 [threads] [iters] [shape] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "safetensors.h"
#include "util.h"

struct src {
	int k;
	uint16_t *bf;		/* [n][k] bf16 */
	uint8_t *codes;		/* [n][k] e4m3 */
	float *scale;		/* [ceil(n/128)][ceil(k/128)] */
};

static const void *row_bf(void *ctx, int j)
{
	struct src *s = ctx;
	return s->bf + (size_t)j * s->k;
}

static const void *row_fp8(void *ctx, int j)
{
	struct src *s = ctx;
	return s->codes + (size_t)j * s->k;
}

static const void *scale_fp8(void *ctx, int j)
{
	struct src *s = ctx;
	return s->scale + (size_t)(j / 128) * ((s->k + 127) / 128);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* A random [n, k] matrix packed both ways (the FP8 one quantised from the
   bf16 one as --dtype fp8 does). */
static void make(int n, int k, enum zp_wkind kind, zp_wmat *wb, zp_wmat *w8, size_t *bytes)
{
	struct src s = { k, malloc((size_t)n * k * 2), malloc((size_t)n * k),
			 malloc((size_t)((n + 127) / 128) * ((k + 127) / 128) * sizeof(float)) };
	float *blk = malloc((size_t)128 * k * sizeof *blk);
	const void *rows[128];
	for (size_t i = 0; i < (size_t)n * k; i++)
		s.bf[i] = zp_f32_to_bf16(frand() * 0.05f);
	for (int r0 = 0; r0 < n; r0 += 128) {
		int nr = ZP_MIN(128, n - r0);
		for (int j = 0; j < nr; j++) {
			zp_wrow_convert(blk + (size_t)j * k, ZP_W_F32, s.bf + (size_t)(r0 + j) * k,
					ZP_DT_BF16, k);
			rows[j] = blk + (size_t)j * k;
		}
		zp_fp8_quantize(rows, nr, k, ZP_DT_F32, s.codes + (size_t)r0 * k,
				s.scale + (size_t)(r0 / 128) * ((k + 127) / 128));
	}
	bytes[0] += zp_cpu_wlayout.bytes(ZP_W_BF16, ZP_WS_PLAIN, n, k, kind);
	bytes[1] += zp_cpu_wlayout.bytes(ZP_W_BF16, ZP_WS_FP8, n, k, kind);
	void *pb = zp_xalloc_aligned(zp_cpu_wlayout.bytes(ZP_W_BF16, ZP_WS_PLAIN, n, k, kind));
	void *p8 = zp_xalloc_aligned(zp_cpu_wlayout.bytes(ZP_W_BF16, ZP_WS_FP8, n, k, kind));
	zp_cpu_wlayout.pack(wb, pb, ZP_W_BF16, ZP_WS_PLAIN, n, k, kind,
			    &(zp_wsrc){ ZP_DT_BF16, row_bf, NULL, &s });
	zp_cpu_wlayout.pack(w8, p8, ZP_W_BF16, ZP_WS_FP8, n, k, kind,
			    &(zp_wsrc){ ZP_DT_F8_E4M3, row_fp8, scale_fp8, &s });
	free(blk);
	free(s.bf);
	free(s.codes);
	free(s.scale);
}

struct shape {
	const char *what;
	int experts, rows;	/* MoE: experts x rows each; dense: experts = 0 */
	int h, f;		/* MoE: hidden, expert width; dense: k, n */
};

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One run of the shape on weights set 0 (bf16) or 1 (fp8). */
static double run(zp_pool *pool, const struct shape *s, zp_wmat *gu, zp_wmat *dn, int nm,
		  const uint16_t *a, const uint16_t *mid16, float *mid, float *out)
{
	static zp_gemm_op ops[ZP_GEMM_OPS_MAX];
	double t0 = zp_now_s();
	int rows = s->rows;
	if (!s->experts) {
		ops[0] = (zp_gemm_op){ .a = a, .lda = (size_t)s->h, .m = rows, .w = &gu[0], .c = out,
				       .ldc = (size_t)s->f, .epi = ZP_EPI_STORE };
		zp_gemm_run(pool, ops, 1);
		return zp_now_s() - t0;
	}
	for (int e = 0; e < nm; e++)
		ops[e] = (zp_gemm_op){ .a = a + (size_t)e * rows * s->h, .lda = (size_t)s->h,
				       .m = rows, .w = &gu[e], .c = mid + (size_t)e * rows * s->f,
				       .ldc = (size_t)s->f, .epi = ZP_EPI_SWIGLU, .ncols = s->f };
	zp_gemm_run(pool, ops, nm);
	/* the activations between the two as the forward has them (bf16) */
	for (int e = 0; e < nm; e++)
		ops[e] = (zp_gemm_op){ .a = mid16 + (size_t)e * rows * s->f, .lda = (size_t)s->f,
				       .m = rows, .w = &dn[e], .c = out + (size_t)e * rows * s->h,
				       .ldc = (size_t)s->h, .epi = ZP_EPI_STORE };
	zp_gemm_run(pool, ops, nm);
	return zp_now_s() - t0;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2, iters = argc > 2 ? atoi(argv[2]) : 7;
	const char *only = argc > 3 ? argv[3] : NULL; /* shapes whose name holds this */
	/* 30B-A3B: hidden 2048, experts 768 wide, 2048 tokens x top-8 / 128 = 128 rows an
	   expert; 235B-A22B: hidden 4096, 1536 wide. Fewer experts than a layer holds
	   (memory), each well past the caches. */
	static const struct shape shapes[] = {
		{ "30B-A3B experts, 16 tok each", 32, 16, 2048, 768 },
		{ "30B-A3B experts, 128 tok each", 32, 128, 2048, 768 },
		{ "30B-A3B experts, 512 tok each", 16, 512, 2048, 768 },
		{ "235B-A22B experts, 128 tok each", 8, 128, 4096, 1536 },
		{ "30B-A3B qkv, 2048 tok", 0, 2048, 2048, 5120 },
		{ "235B-A22B o_proj, 512 tok", 0, 512, 8192, 4096 },
	};
	zp_pool *pool = zp_pool_new(threads);

	printf("isa=%s threads=%d iters=%d (bf16 and fp8 alternate; bf16 activations both)\n",
	       zp_gemm_isa(), threads, iters);
	for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
		const struct shape *s = &shapes[si];
		if (only && !strstr(s->what, only))
			continue;
		int nm = s->experts ? s->experts : 1, rows = s->rows;
		size_t bytes[2] = { 0, 0 };
		zp_wmat *gu[2] = { calloc((size_t)nm, sizeof(zp_wmat)), calloc((size_t)nm, sizeof(zp_wmat)) };
		zp_wmat *dn[2] = { calloc((size_t)nm, sizeof(zp_wmat)), calloc((size_t)nm, sizeof(zp_wmat)) };
		for (int e = 0; e < nm; e++) {
			if (s->experts) {
				make(2 * s->f, s->h, ZP_WK_SWIGLU, &gu[0][e], &gu[1][e], bytes);
				make(s->h, s->f, ZP_WK_PLAIN, &dn[0][e], &dn[1][e], bytes);
			} else {
				make(s->f, s->h, ZP_WK_PLAIN, &gu[0][e], &gu[1][e], bytes);
			}
		}
		size_t na = (size_t)nm * rows * ZP_MAX(s->h, s->f);
		uint16_t *a = malloc(na * 2), *mid16 = malloc(na * 2);
		float *mid = malloc(na * 4), *out = malloc((size_t)nm * rows * ZP_MAX(s->h, s->f) * 4);
		for (size_t i = 0; i < na; i++)
			a[i] = mid16[i] = zp_f32_to_bf16(frand());
		double flops = 2.0 * nm * rows * (s->experts ? 3.0 * s->h * s->f : (double)s->h * s->f);
		double *t[2] = { malloc((size_t)iters * 8), malloc((size_t)iters * 8) };
		for (int w = 0; w < 2; w++) /* warm up both */
			run(pool, s, gu[w], dn[w], nm, a, mid16, mid, out);
		for (int it = 0; it < iters; it++)
			for (int w0 = 0; w0 < 2; w0++) { /* alternate, starting with each in turn */
				int w = (it + w0) % 2;
				t[w][it] = run(pool, s, gu[w], dn[w], nm, a, mid16, mid, out);
			}
		qsort(t[0], (size_t)iters, 8, cmp_d);
		qsort(t[1], (size_t)iters, 8, cmp_d);
		printf("%-34s bf16: best %.4f s median %.4f s %6.1f GFLOP/s %7.1f MB | fp8: best %.4f s "
		       "median %.4f s %6.1f GFLOP/s %7.1f MB | fp8/bf16 time %.2f (median %.2f) bytes "
		       "%.3f\n", s->what, t[0][0], t[0][iters / 2], flops / t[0][0] * 1e-9,
		       bytes[0] / 1e6, t[1][0], t[1][iters / 2], flops / t[1][0] * 1e-9, bytes[1] / 1e6,
		       t[1][0] / t[0][0], t[1][iters / 2] / t[0][iters / 2],
		       (double)bytes[1] / (double)bytes[0]);
		fflush(stdout);
		for (int w = 0; w < 2; w++) {
			for (int e = 0; e < nm; e++) {
				zp_free_aligned(gu[w][e].data);
				if (s->experts)
					zp_free_aligned(dn[w][e].data);
			}
			free(gu[w]);
			free(dn[w]);
			free(t[w]);
		}
		free(a);
		free(mid16);
		free(mid);
		free(out);
	}
	zp_pool_free(pool);
	return 0;
}
