/* blas_contract.h -- the GEMM library calls devrt_cuda.c issues, described in
   plain C (no CUDA header: the sim builds everywhere), and the libraries'
   documented rules for exactly those calls. devrt_cuda.c plans every call
   with zp_blas_plan and fails it (zp_drt_fail) before the library sees it when
   zp_blas_refusal says no; devrt_sim.c plans and checks the same way and fails
   the same call, so a CI run on the sim catches what cuBLAS would refuse.
   Pure functions; any thread.

   The rules (cuBLAS docs: cublasLtMatmul's datatype table,
   cublasGemmGroupedBatchedEx's table, the lda/ldb/ldc rules of the GEMM
   family), for the calls this engine makes and nothing wider:
     cublasLtMatmul   16BF x 16BF -> 32F  compute 32F        (scale 32F)
                      32F  x 32F  -> 32F  compute 32F or 32F_PEDANTIC
     cublasGemmGroupedBatchedEx
                      16BF x 16BF -> 16BF compute 32F   (no 16BF -> 32F row:
                      the old bf16 expert call, refused)
                      32F  x 32F  -> 32F  compute 32F (or 32F_FAST_TF32)
                      16-bit inputs: a pointer is 16-byte aligned when its
                      rows are (k * 2 % 16 == 0), as cublasGemmBatchedEx
     every call: m, n, k >= 1; ld >= the stored matrix's rows; pointers
                 aligned to their element; grouped: int-sized arguments.
   and the block-scaled FP8 matmul of W8A8 (cuBLAS 12.9+, sm_90 only:
   cuBLASLt's "1D / 2D block scaling"; the enums of CUDA 13's cublasLt.h):
     cublasLtMatmul   8F_E4M3 x 8F_E4M3 -> 32F (C = D), compute 32F, scale
                      type 32F, CUBLASLT_MATMUL_DESC_FAST_ACCUM off;
                      A (the weight) CUBLASLT_MATMUL_DESC_A_SCALE_MODE =
                      CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, B (the
                      activations) CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F,
                      both scale pointers set (f32, 16-byte aligned);
                      FP8 kernels need "TN": A transposed, B not; FP8 rows
                      of 16-byte multiples: k, lda, ldb % 16 == 0, A and B
                      16-byte aligned; C rows 16-byte (ldc % 4, C aligned).
   What waits for a GPU to confirm (the docs' layout figures were not
   reachable here): the scale tensors' order, taken MN-major as the PyTorch
   and DeepGEMM callers of these modes feed them: VEC128 [ceil(k/128)][m],
   BLK128x128 [ceil(k/128)][ceil(n/128)] (n = the weight's rows), and the
   32F output row of the table in block-scaled mode; gpu_check's w8a8 steps
   compare the device against the sim's twin of this call. */
#ifndef ZP_BLAS_CONTRACT_H
#define ZP_BLAS_CONTRACT_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devrt.h"

enum zp_blas_lib { ZP_BLAS_LT_MATMUL, ZP_BLAS_GROUPED };
enum zp_blas_type { ZP_BT_32F, ZP_BT_16BF, ZP_BT_8F_E4M3 };
/* how a matrix's scale pointer is read (cublasLtMatmulMatrixScale_t) */
enum zp_blas_scale { ZP_BS_NONE, ZP_BS_VEC128_32F, ZP_BS_BLK128x128_32F };
enum zp_blas_compute { ZP_BC_32F, ZP_BC_32F_PEDANTIC, ZP_BC_32F_FAST_TF32 };

/* One column-major GEMM as the library sees it: C (m x n, ldc) = op(A) (m x
   k) op(B) (k x n); A stored k x m when trans_a (else m x k), B k x n unless
   trans_b. D is C (in place). */
typedef struct {
	enum zp_blas_lib lib;
	enum zp_blas_type ta, tb, tc;
	enum zp_blas_compute ct;
	bool trans_a, trans_b;
	int64_t m, n, k, lda, ldb, ldc;
	const void *a, *b, *c;
	enum zp_blas_scale sa_mode, sb_mode;	/* FP8: A's and B's scales */
	const float *sa, *sb;
} zp_blas_call;

/* how the experts' GEMMs go out: per-expert cuBLASLt matmuls of fixed
   algorithms (the default: batch-invariant), or one cuBLAS grouped call
   (ZP_GROUPED_GEMM=cublas: f32 models only, its table has no bf16 -> f32) */
enum zp_grouped_mode { ZP_GROUPED_LT, ZP_GROUPED_CUBLAS };

static inline enum zp_grouped_mode zp_grouped_mode_env(void)
{
	const char *v = getenv("ZP_GROUPED_GEMM");
	return v && !strcmp(v, "cublas") ? ZP_GROUPED_CUBLAS : ZP_GROUPED_LT;
}

static inline const char *zp_blas_lib_name(enum zp_blas_lib l)
{
	return l == ZP_BLAS_GROUPED ? "cublasGemmGroupedBatchedEx" : "cublasLtMatmul";
}

/* Row-major c[m][n] = a[m][kp] w[n][kp]^T is, column-major, C^T = W^T A^T:
   the library's A = w (kp x n stored, transposed), B = a (kp x m, ld lda),
   C = c (n x m, ld ldc). The compute type is the one devrt_cuda.c passes. */
static inline zp_blas_call zp_blas_plan(const zp_dgemm *g, enum zp_blas_lib lib)
{
	enum zp_blas_type in = g->fp8 ? ZP_BT_8F_E4M3 : g->bf16 ? ZP_BT_16BF : ZP_BT_32F;
	if (g->fp8) { /* W8A8: K is the codes' padded rows (zeros past the real K) */
		zp_blas_call c = {
			.lib = lib, .ta = in, .tb = in, .tc = ZP_BT_32F, .ct = ZP_BC_32F,
			.trans_a = true, .trans_b = false,
			.m = g->n, .n = g->m, .k = g->kp,
			.lda = g->kp, .ldb = (int64_t)g->lda, .ldc = (int64_t)g->ldc,
			.a = g->w, .b = g->a, .c = g->c,
			.sa_mode = ZP_BS_BLK128x128_32F, .sb_mode = ZP_BS_VEC128_32F,
			.sa = g->sw, .sb = g->sa,
		};
		return c;
	}
	zp_blas_call c = {
		.lib = lib, .ta = in, .tb = in, .tc = ZP_BT_32F,
		.ct = g->bf16 || lib == ZP_BLAS_GROUPED ? ZP_BC_32F : ZP_BC_32F_PEDANTIC,
		.trans_a = true, .trans_b = false,
		.m = g->n, .n = g->m, .k = g->kp,
		.lda = g->kp, .ldb = (int64_t)g->lda, .ldc = (int64_t)g->ldc,
		.a = g->w, .b = g->a, .c = g->c,
	};
	return c;
}

static inline size_t zp_blas_type_bytes(enum zp_blas_type t)
{
	return t == ZP_BT_8F_E4M3 ? 1 : t == ZP_BT_16BF ? 2 : 4;
}

/* the FP8 rules above; NULL when c keeps them */
static inline const char *zp_blas_fp8_refusal(const zp_blas_call *c)
{
	if (c->lib != ZP_BLAS_LT_MATMUL)
		return "cublasGemmGroupedBatchedEx: no FP8 row in its table";
	if (c->ta != ZP_BT_8F_E4M3 || c->tb != ZP_BT_8F_E4M3 || c->tc != ZP_BT_32F ||
	    c->ct != ZP_BC_32F)
		return "cublasLtMatmul FP8: E4M3 x E4M3 -> 32F with compute 32F only (this engine's row)";
	if (!c->trans_a || c->trans_b)
		return "cublasLtMatmul FP8: A must be transposed and B not (TN)";
	if (c->sa_mode != ZP_BS_BLK128x128_32F || c->sb_mode != ZP_BS_VEC128_32F)
		return "cublasLtMatmul FP8: A scales BLK128x128_32F and B scales VEC128_32F expected";
	if (!c->sa || !c->sb || (uintptr_t)c->sa % 16 || (uintptr_t)c->sb % 16)
		return "cublasLtMatmul FP8: a block-scale pointer missing or not 16-byte aligned";
	if (c->k % 16 || c->lda % 16 || c->ldb % 16 || (uintptr_t)c->a % 16 || (uintptr_t)c->b % 16)
		return "cublasLtMatmul FP8: k, lda, ldb and the A/B pointers must be 16-byte multiples";
	if (c->ldc % 4 || (uintptr_t)c->c % 16)
		return "cublasLtMatmul FP8: C rows must be 16-byte multiples (ldc % 4, C aligned)";
	return NULL;
}

static inline const char *zp_blas_types_ok(const zp_blas_call *c)
{
	if (c->ta == ZP_BT_8F_E4M3 || c->tb == ZP_BT_8F_E4M3)
		return zp_blas_fp8_refusal(c);
	if (c->sa_mode != ZP_BS_NONE || c->sb_mode != ZP_BS_NONE)
		return "cublasLtMatmul: block scales are for FP8 inputs only";
	bool bf = c->ta == ZP_BT_16BF && c->tb == ZP_BT_16BF, f32 = c->ta == ZP_BT_32F && c->tb == ZP_BT_32F;
	if (c->lib == ZP_BLAS_LT_MATMUL) {
		if (bf && c->tc == ZP_BT_32F && c->ct == ZP_BC_32F)
			return NULL;
		if (f32 && c->tc == ZP_BT_32F && (c->ct == ZP_BC_32F || c->ct == ZP_BC_32F_PEDANTIC))
			return NULL;
		return "cublasLtMatmul: no row of its datatype table for these A/B/C types and compute type";
	}
	if (bf && c->tc == ZP_BT_16BF && c->ct == ZP_BC_32F)
		return NULL;
	if (f32 && c->tc == ZP_BT_32F && (c->ct == ZP_BC_32F || c->ct == ZP_BC_32F_FAST_TF32))
		return NULL;
	if (bf && c->tc == ZP_BT_32F)
		return "cublasGemmGroupedBatchedEx: 16BF x 16BF -> 32F is not in its table (16BF "
		       "inputs need a 16BF C)";
	return "cublasGemmGroupedBatchedEx: no row of its table for these types and compute type";
}

/* NULL when the library accepts the call, else why not (in buf) */
static inline const char *zp_blas_refusal(const zp_blas_call *c, char *buf, size_t len)
{
	const char *t = zp_blas_types_ok(c);
	if (t) {
		snprintf(buf, len, "%s", t);
		return buf;
	}
	const char *lib = zp_blas_lib_name(c->lib);
	int64_t ra = c->trans_a ? c->k : c->m, rb = c->trans_b ? c->n : c->k;
	size_t ea = zp_blas_type_bytes(c->ta), eb = zp_blas_type_bytes(c->tb),
	       ec = zp_blas_type_bytes(c->tc);
	if (c->m < 1 || c->n < 1 || c->k < 1)
		snprintf(buf, len, "%s: m=%lld n=%lld k=%lld (each must be >= 1)", lib,
			 (long long)c->m, (long long)c->n, (long long)c->k);
	else if (c->lda < ra || c->ldb < rb || c->ldc < c->m)
		snprintf(buf, len, "%s: lda=%lld ldb=%lld ldc=%lld under the stored rows %lld, %lld, %lld",
			 lib, (long long)c->lda, (long long)c->ldb, (long long)c->ldc, (long long)ra,
			 (long long)rb, (long long)c->m);
	else if ((uintptr_t)c->a % ea || (uintptr_t)c->b % eb || (uintptr_t)c->c % ec)
		snprintf(buf, len, "%s: a pointer not aligned to its element (A %p, B %p, C %p)", lib,
			 c->a, c->b, c->c);
	else if (c->lib == ZP_BLAS_GROUPED &&
		 (c->m > INT_MAX || c->n > INT_MAX || c->k > INT_MAX || c->lda > INT_MAX ||
		  c->ldb > INT_MAX || c->ldc > INT_MAX))
		snprintf(buf, len, "%s: an argument past int (the _64 variant is not used)", lib);
	else if (c->lib == ZP_BLAS_GROUPED && ea == 2 &&
		 (((size_t)c->lda * ea % 16 == 0 && (uintptr_t)c->a % 16) ||
		  ((size_t)c->ldb * eb % 16 == 0 && (uintptr_t)c->b % 16)))
		snprintf(buf, len, "%s: 16-bit rows of 16-byte multiples on a pointer not 16-aligned",
			 lib);
	else
		return NULL;
	return buf;
}

#endif
