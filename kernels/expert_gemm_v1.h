/* expert_gemm_v1.h -- the tile math of the v1 grouped expert GEMM
   (expert_gemm_v1.cu), built by nvcc for the device and by the C compiler for
   its host twin (expert_gemm_v1_host.c): the tile list over experts, which
   weight row each row of a B tile holds (SwiGLU pairs gate and up columns in
   one warp), the epilogue and every per-lane address (cp.async chunks,
   ldmatrix rows, accumulator fragments). The device accumulates with mma.sync
   (k steps of 16 in ascending order, the hardware's order inside a step); the
   twin's mma model (v1_warp.h) sums each element over k ascending in f32:
   equal to rounding, not bit for bit.
   Both compute every output element from its own row of a alone, in an order
   fixed by the shape: the results do not depend on the batch. */
#ifndef ZP_EXPERT_GEMM_V1_H
#define ZP_EXPERT_GEMM_V1_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "v1_common.h"

#define ZP_EV1_BM 128	/* rows of a tile (one expert's rows only) */
#define ZP_EV1_BN 128	/* weight rows of a tile: STORE 128 outputs, SWIGLU 64 */
#define ZP_EV1_BK 32	/* k per pipeline stage */
#define ZP_EV1_EXPERTS_MAX 1024	/* experts of one call (the tile prefix in shared memory) */
#define ZP_EV1_THREADS 256	/* 8 warps: 2 of 64 rows x 4 of 32 weight rows */
#define ZP_EV1_LDS (ZP_EV1_BK + 8)	/* bf16 per shared row: 80 bytes, ldmatrix without bank conflicts */
#define ZP_EV1_STAGE_A (ZP_EV1_BM * ZP_EV1_LDS)	/* elements of one shared A stage */
#define ZP_EV1_STAGE_B (ZP_EV1_BN * ZP_EV1_LDS)
#define ZP_EV1_CP 2	/* 16-byte cp.async chunks of A (and of B) per thread per stage */
/* cp.async groups wait_group leaves in flight while the next stage loads */
#define ZP_EV1_WAIT_AHEAD (1 + ZP_V1_MUT(ZP_V1_MUT_EV1_WAIT))

/* ---- per-lane addresses, the kernel's and its twin's (kernels/v1_warp.h
   plays the instructions with them) ---- */

/* Tile row of thread tid's cp.async chunk i (of ZP_EV1_CP), for A and B. */
static inline ZP_V1_HD int zp_ev1_cp_row(int tid, int i)
{
	return (tid + i * ZP_EV1_THREADS) / 4;
}

/* Its first k within the stage (4 chunks of 8 per row). */
static inline ZP_V1_HD int zp_ev1_cp_k(int tid, int i)
{
	return (tid + i * ZP_EV1_THREADS) % 4 * 8;
}

/* Its shared element offset within a stage. */
static inline ZP_V1_HD int zp_ev1_cp_smem(int tid, int i)
{
	return zp_ev1_cp_row(tid, i) * ZP_EV1_LDS + zp_ev1_cp_k(tid, i);
}

/* Row of a that tile row r of the tile at m0 copies, or -1 (past the
   expert's rows mend: zeros). */
static inline ZP_V1_HD int zp_ev1_a_row(int m0, int mend, int r)
{
	int m = m0 + r + (ZP_V1_MUT(ZP_V1_MUT_EV1_CP_ROW) ? 1 : 0);
	return m < mend ? m : -1;
}

/* The shared A row lane hands ldmatrix .x4 (element offset within a stage,
   at mi = 0, ks = 0) for warp row wm: matrices (rows 0-7, k 0-7), (rows
   8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15): registers 0..3 of
   mma's A fragment. */
static inline ZP_V1_HD int zp_ev1_a_lane(int wm, int lane)
{
	int r = lane % 16;
	if (ZP_V1_MUT(ZP_V1_MUT_EV1_A_ROWS) && r < 2)
		r ^= 1;
	return (wm * 64 + r) * ZP_EV1_LDS + (lane / 16) * 8;
}

/* What A fragment mi (16 rows) at k step ks adds to zp_ev1_a_lane. */
static inline ZP_V1_HD int zp_ev1_a_step(int mi, int ks)
{
	return mi * 16 * ZP_EV1_LDS + ks;
}

/* The shared B row lane hands ldmatrix .x4 for warp column wn at pr = 0,
   ks = 0: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15,
   k 8-15): registers b0, b1 of n tile 2 pr, then of n tile 2 pr + 1. */
static inline ZP_V1_HD int zp_ev1_b_lane(int wn, int lane)
{
	int m = lane / 8;
	if (ZP_V1_MUT(ZP_V1_MUT_EV1_B_MATS) && (m == 1 || m == 2))
		m = 3 - m;
	return (wn * 32 + lane % 8 + (m / 2) * 8) * ZP_EV1_LDS + (m % 2) * 8;
}

/* What the n tile pair pr (16 weight rows) at k step ks adds to zp_ev1_b_lane. */
static inline ZP_V1_HD int zp_ev1_b_step(int pr, int ks)
{
	return pr * 16 * ZP_EV1_LDS + ks;
}

/* Tile row of lane's accumulator acc[mi][.][2 h], [2 h + 1] (mma's C
   fragment: row groupID, + 8 for the second pair). */
static inline ZP_V1_HD int zp_ev1_c_row(int wm, int mi, int lane, int h)
{
	if (ZP_V1_MUT(ZP_V1_MUT_EV1_C_ROW))
		h ^= 1;
	return wm * 64 + mi * 16 + lane / 4 + h * 8;
}

/* Column (within the warp's 32 weight rows) of lane's acc[.][ni][2 h]; +1
   for [2 h + 1]. */
static inline ZP_V1_HD int zp_ev1_c_col(int ni, int lane)
{
	return ni * 8 + (lane % 4) * 2;
}

/* Tiles of one expert with cnt rows. */
static inline ZP_V1_HD int zp_ev1_mtiles(int cnt)
{
	return (cnt + ZP_EV1_BM - 1) / ZP_EV1_BM;
}

/* Column tiles of the output. */
static inline ZP_V1_HD int zp_ev1_ntiles(int epi, int N)
{
	int outs = epi == ZP_KV1_EPI_SWIGLU ? N / 2 : N;
	int per = epi == ZP_KV1_EPI_SWIGLU ? ZP_EV1_BN / 2 : ZP_EV1_BN;
	return (outs + per - 1) / per;
}

/* Weight row held by row r of column tile nt's B tile, or -1 (a zero row past
   the end). SWIGLU: the 32 rows of warp column r / 32 are 16 gate rows then
   the 16 up rows of the same outputs, so one thread holds both halves of
   every output it writes. */
static inline ZP_V1_HD int zp_ev1_wrow(int epi, int nt, int r, int N)
{
	if (epi != ZP_KV1_EPI_SWIGLU) {
		int n = nt * ZP_EV1_BN + r;
		return n < N ? n : -1;
	}
	int F = N / 2;
	int j = nt * (ZP_EV1_BN / 2) + (r / 32) * 16 + (r % 16);
	if (j >= F)
		return -1;
	return (r % 32) < 16 ? j : F + j;
}

/* Output column of the gate half's column c (c < 16 within warp column wc) of
   SWIGLU tile nt. */
static inline ZP_V1_HD int zp_ev1_swiglu_col(int nt, int wc, int c)
{
	return nt * (ZP_EV1_BN / 2) + wc * 16 + c;
}

static inline ZP_V1_HD float zp_ev1_silu_mul(float g, float u)
{
	return g / (1.0f + expf(-g)) * u;
}

/* tp[i] = tiles of experts before i (tp[0] = 0, tp[ne] = all): the tile list.
   Host form; the device builds the same array with a warp scan. */
static inline void zp_ev1_tile_prefix(const int *offs, int ne, int *tp)
{
	tp[0] = 0;
	for (int i = 0; i < ne; i++)
		tp[i + 1] = tp[i] + zp_ev1_mtiles(offs[i + 1] - offs[i]);
}

/* The expert (index from e0) owning tile t < tp[ne]: the last i with tp[i] <= t. */
static inline ZP_V1_HD int zp_ev1_tile_expert(const int *tp, int ne, int t)
{
	int lo = 0, hi = ne;	/* tp[lo] <= t < tp[hi] */
	while (hi - lo > 1) {
		int mid = (lo + hi) / 2;
		if (tp[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

#ifdef __cplusplus
extern "C" {
#endif

/* The host twin of zp_kv1_expert_gemm (v1.h): the same tiles, offs and every
   pointer host memory, run on nthreads threads (tiles split among them; the
   results do not depend on nthreads). 0, or -1 when a thread cannot start. */
int zp_kv1_expert_gemm_host(int nthreads, const uint16_t *w, int e0, int e1, const int *offs,
			    const uint16_t *a, size_t lda, float *c, size_t ldc,
			    enum zp_kv1_epi epi, int N, int K);

#ifdef __cplusplus
}
#endif

#endif
