/* gemm.h -- C[M,N] = A[M,K] . W[N,K]^T on the CPU with packed weights, f32 or bf16.
   Packed layout: column panels of 32 outputs; f32 [P][Kp][32], bf16 [P][Kp/2][32][2]
   (k pairs interleaved: the operand layout of vdpbf16ps and of AMX B tiles). Every
   output element is reduced over k in one fixed order whatever M, the thread count
   or the task split: results do not depend on batch composition (DESIGN.md
   section 8). Paths: AMX-BF16 (bf16, K a multiple of 32), AVX512-BF16, AVX512 f32,
   and the plain-C twin; the AVX512 kernels and the twin compute the same sums bit
   for bit, AMX to rounding (its order inside a tile step is the hardware's). The
   path is chosen by the CPU and the shape, never by M. Packing at load (pool
   threads write disjoint matrices); zp_gemm_run from one owner thread + its pool. */
#ifndef ZP_GEMM_H
#define ZP_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"	/* zp_gemm_op, zp_wmat */
#include "pool.h"

#define ZP_GEMM_NR 32 /* outputs per panel */
#define ZP_GEMM_OPS_MAX 4096 /* ops in one zp_gemm_run (one per expert at most) */

/* The cpu's weight layout (weights.h): panels as above; a SWIGLU matrix of
   n = 2F rows holds 2 round_up(F, 16) rows, each panel 16 gate rows then the
   16 up rows of the same columns (ZP_EPI_SWIGLU's operand). */
extern const zp_wlayout zp_cpu_wlayout;

/* FP8 (weights.h ZP_WS_FP8) in this layout: the codes by the bf16 panel's
   k pairs, one byte an element ([P][kp/2][64] u8), each pair's 64 codes in
   the slot order of the widening (gemm.c fp8_slot: two byte lookups and the
   in-lane interleaves of AVX512-VBMI give the bf16 pairs in panel order);
   then at data + scale_off one f32 scale per packed row and 128-wide k block
   ([P][ceil(k/128)][32]: a row's own block scale, so stacked and SWIGLU
   rows need no shared blocks): 1/32 byte an element more than the codes.
   bf16 compute: the GEMM widens up to 4096 k of a panel at a time to
   bf16(e4m3 x scale) (one rounding of the dequantised weight: the bits of a
   bf16 checkpoint of it) and runs the plain bf16 kernels over them (AMX sums
   the whole chunk in its tiles). f32 compute: a 128-wide k block's codes are
   widened exactly (every e4m3 value is a bf16 value), that block is computed
   from zero and added times its scale to the f32 accumulators (one fma per
   element per block, in k order). 256 rows a task. */

/* The panel packing itself, rows as they come (the layout's PLAIN kind). */
size_t zp_wmat_bytes(enum zp_wtype type, enum zp_wstore store, int n, int k);
/* Pack into dst (zp_wmat_bytes, 64-byte aligned). */
void zp_wmat_pack(zp_wmat *w, void *dst, enum zp_wtype type, enum zp_wstore store, int n, int k,
		  const zp_wsrc *src);

/* Run ops (independent; their C regions must not overlap) as one parallel loop. */
void zp_gemm_run(zp_pool *pool, const zp_gemm_op *ops, int nops);

/* One 32 x 32 block on AMX, for other kernels built on the same tiles (attention):
   C[32, 32] (ldc floats) = A[32 rows, k] (bf16, lda) . panel (one packed bf16 panel
   of K = k rows, k a multiple of 32). zp_gemm_amx_begin loads the tile shapes in
   the calling thread; call it before a run of blocks (other AMX users may have
   released the tiles). Only where zp_gemm_amx() says AMX is in use. */
int zp_gemm_amx(void);
void zp_gemm_amx_begin(void);
void zp_gemm_amx_32x32(const uint16_t *a, size_t lda, const uint16_t *panel, int k, float *c,
		       size_t ldc);

/* Force the plain-C twin (tests compare the two). */
void zp_gemm_force_ref(int on);
/* "avx512bf16", "avx512f" or "ref": what zp_gemm_run will use. */
const char *zp_gemm_isa(void);

#endif
