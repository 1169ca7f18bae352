/* expert_gemm_v1.h -- the tile math of the v1 grouped expert GEMM
   (expert_gemm_v1.cu), built by nvcc for the device and by the C compiler for
   its host twin (expert_gemm_v1_host.c): the tile list over experts, which
   weight row each row of a B tile holds (SwiGLU pairs gate and up columns in
   one warp), and the epilogue. The device accumulates with mma.sync (k steps of
   16 in ascending order, the hardware's order inside a step); the twin sums
   each element over k ascending in f32: equal to rounding, not bit for bit.
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
