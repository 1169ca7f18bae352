/* gemm_check.h -- what the GEMM tests share (test_gemm.c, test_gemm_fp8.c):
   the activations (f32 and their bf16), C with guard bytes around it, both
   runs (the fast path and the plain-C twin), a row alone against the same
   row in the batch, and the padding and guard checks. The reference sums
   stay in each test: they are what differs. Header only; include after
   check.h and gemm.h. */
#ifndef ZP_GEMM_CHECK_H
#define ZP_GEMM_CHECK_H

#include <string.h>

#include "gemm.h"
#include "util.h"

#define GUARD 64
#define GUARD_VAL -12345.0f

struct gemm_bufs {
	int M;
	size_t lda, ldc;
	float *a;      /* [M, lda] f32 activations, fresh random in [-1, 1) */
	uint16_t *a16; /* [M, lda] the same, bf16 */
	float *c, *c2; /* [GUARD + M * ldc + GUARD]: fast path, twin */
};

static inline void gemm_bufs_init(struct gemm_bufs *b, int M, int K, int N, enum zp_epi epi)
{
	b->M = M;
	b->lda = (size_t)ZP_ALIGN_UP(K, 2) + 3;
	b->ldc = (size_t)N + 5;
	b->a = calloc((size_t)M * b->lda, sizeof(float));
	b->a16 = calloc((size_t)M * b->lda, 2);
	b->c = malloc(((size_t)M * b->ldc + 2 * GUARD) * sizeof(float));
	b->c2 = malloc(((size_t)M * b->ldc + 2 * GUARD) * sizeof(float));
	ZP_ASSERT(b->a && b->a16 && b->c && b->c2);
	for (int m = 0; m < M; m++)
		for (int k = 0; k < K; k++) {
			b->a[(size_t)m * b->lda + k] = check_frand(-1.0f, 1.0f);
			b->a16[(size_t)m * b->lda + k] = zp_f32_to_bf16(b->a[(size_t)m * b->lda + k]);
		}
	for (size_t i = 0; i < (size_t)M * b->ldc + 2 * GUARD; i++)
		b->c[i] = b->c2[i] = (epi == ZP_EPI_ADD && i >= GUARD &&
				      i < GUARD + (size_t)M * b->ldc) ? 0.5f : GUARD_VAL;
}

static inline void gemm_bufs_free(struct gemm_bufs *b)
{
	free(b->a);
	free(b->a16);
	free(b->c);
	free(b->c2);
}

/* rows [m, m + M) of the activations in wt's compute type */
static inline const void *gemm_a(const struct gemm_bufs *b, enum zp_wtype wt, int m)
{
	return wt == ZP_W_F32 ? (const void *)(b->a + (size_t)m * b->lda)
			      : (const void *)(b->a16 + (size_t)m * b->lda);
}

/* The fast path into c, the plain-C twin into c2. */
static inline void gemm_run_both(zp_pool *pool, struct gemm_bufs *b, zp_wmat *w,
				 enum zp_wtype wt, enum zp_epi epi, int ncols)
{
	for (int pass = 0; pass < 2; pass++) {
		zp_gemm_op op = { .a = (void *)gemm_a(b, wt, 0), .lda = b->lda, .m = b->M, .w = w,
				  .c = (pass ? b->c2 : b->c) + GUARD, .ldc = b->ldc, .epi = epi,
				  .ncols = ncols };
		zp_gemm_force_ref(pass);
		zp_gemm_run(pool, &op, 1);
	}
	zp_gemm_force_ref(0);
}

/* Batch invariance: a row computed alone equals the same row inside M rows
   (its first ncheck columns). */
static inline void gemm_check_alone(zp_pool *pool, const struct gemm_bufs *b, zp_wmat *w,
				    enum zp_wtype wt, enum zp_epi epi, int ncols, int ncheck,
				    int N, int K)
{
	for (int m = 0; m < b->M; m += (b->M > 8 ? b->M / 3 : 1)) {
		float row1[4096 + 64];
		ZP_ASSERT(b->ldc <= sizeof row1 / sizeof *row1);
		for (size_t i = 0; i < b->ldc; i++)
			row1[i] = epi == ZP_EPI_ADD ? 0.5f : GUARD_VAL;
		zp_gemm_op op = { .a = (void *)gemm_a(b, wt, m), .lda = b->lda, .m = 1, .w = w,
				  .c = row1, .ldc = b->ldc, .epi = epi, .ncols = ncols };
		zp_gemm_run(pool, &op, 1);
		CHECK(memcmp(row1, b->c + GUARD + (size_t)m * b->ldc,
			     (size_t)ncheck * sizeof(float)) == 0,
		      "row %d alone differs from it in M=%d (wt=%d N=%d K=%d)", m, b->M, wt, N, K);
	}
}

/* Columns past ncheck (but the last row's) and the guards: untouched. */
static inline void gemm_check_untouched(const struct gemm_bufs *b, enum zp_epi epi, int ncheck)
{
	for (int m = 0; m + 1 < b->M; m++)
		for (int j = ncheck; j < (int)b->ldc; j++)
			CHECK(b->c[GUARD + (size_t)m * b->ldc + j] ==
			      (epi == ZP_EPI_ADD ? 0.5f : GUARD_VAL),
			      "padding column %d of row %d written", j, m);
	for (int i = 0; i < GUARD; i++) {
		CHECK(b->c[i] == GUARD_VAL, "guard before C written");
		CHECK(b->c[GUARD + (size_t)b->M * b->ldc + i] == GUARD_VAL, "guard after C written");
	}
}

#endif
