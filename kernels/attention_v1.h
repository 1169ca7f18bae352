/* attention_v1.h -- the per-block math of the v1 attention (attention_v1.cu),
   built by nvcc for the device and by the C compiler for its host twin
   (attention_v1_host.c). A block is 64 query rows of one sequence and one q
   head (4 warps of 16 rows); it walks its sequence's keys in tiles of 64
   positions from position 0 (the cached prefix first, then the sequence's own
   rows) up to its last row, in that order whatever the batch holds: a
   sequence's outputs are the same bits alone or inside any batch. q, k, v are
   rounded to bf16 on load, scores in f32 (scaled by log2(e) / sqrt(d), exp2),
   online softmax per key tile, p rounded to bf16 for P.V, the row sum kept in
   4 lane partials combined by the butterfly (l0 + l1) + (l2 + l3). The twin
   repeats all of it; the device's mma order inside a k step of 16 and its
   exp2f differ from the host's: equal to rounding, not bit for bit. */
#ifndef ZP_ATTENTION_V1_H
#define ZP_ATTENTION_V1_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "v1_common.h"

#define ZP_AV1_BQ 64	/* query rows of a block */
#define ZP_AV1_BKV 64	/* key positions of a tile */
#define ZP_AV1_THREADS 128	/* 4 warps of 16 query rows */
#define ZP_AV1_LDS(D) ((D) + 8)	/* bf16 per shared key row: ldmatrix without bank conflicts */

/* ---- per-lane addresses, the kernel's and its twin's (kernels/v1_warp.h
   plays the instructions with them) ---- */

/* Block row (from the block's first row i0) of lane's Q register q: mma's A
   fragment, row groupID (+ 8 for registers 1, 3), of warp's 16 rows. */
static inline ZP_V1_HD int zp_av1_q_row(int warp, int lane, int q)
{
	if (ZP_V1_MUT(ZP_V1_MUT_AV1_Q_FRAG) && (q == 1 || q == 2))
		q = 3 - q;
	return warp * 16 + lane / 4 + (q & 1) * 8;
}

/* Column (within head, d) of the low half of lane's Q register q of k chunk
   kc: 2 threadID_in_group (+ 8 for registers 2, 3); the high half is +1. */
static inline ZP_V1_HD int zp_av1_q_col(int kc, int lane, int q)
{
	if (ZP_V1_MUT(ZP_V1_MUT_AV1_Q_FRAG) && (q == 1 || q == 2))
		q = 3 - q;
	return kc * 16 + (lane % 4) * 2 + (q >> 1) * 8;
}

/* Block row of lane's accumulator pair r (scores S and output O, mma's C
   fragment: row groupID, + 8 for the second pair). */
static inline ZP_V1_HD int zp_av1_c_row(int warp, int lane, int r)
{
	return warp * 16 + lane / 4 + r * 8;
}

/* Column of the first of lane's accumulator pair in 8-wide tile nt: the key
   (within the key tile) of S, or the column (within head) of O. */
static inline ZP_V1_HD int zp_av1_c_col(int nt, int lane)
{
	return nt * 8 + (lane % 4) * 2;
}

/* Item idx of the key tile load (4 floats each): key row and first column. */
static inline ZP_V1_HD int zp_av1_ld_key(int idx, int d)
{
	return idx / (d / 4);
}

static inline ZP_V1_HD int zp_av1_ld_col(int idx, int d)
{
	return (idx % (d / 4)) * 4;
}

/* Shared element offset of key row c, column x of the K or V tile. */
static inline ZP_V1_HD int zp_av1_soff(int c, int x, int d)
{
	return c * ZP_AV1_LDS(d) + x;
}

/* The K row lane hands ldmatrix .x4 (pr = 0, kc = 0): matrices (keys 0-7, d
   0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15):
   registers b0, b1 of S's key tile 2 pr, then of 2 pr + 1. */
static inline ZP_V1_HD int zp_av1_k_lane(int lane, int d)
{
	int r = lane % 8;
	if (ZP_V1_MUT(ZP_V1_MUT_AV1_K_ROWS) && r < 2)
		r ^= 1;
	return zp_av1_soff(r + (lane / 16) * 8, ((lane / 8) % 2) * 8, d);
}

/* What key tile pair pr at d chunk kc adds to zp_av1_k_lane. */
static inline ZP_V1_HD int zp_av1_k_step(int pr, int kc, int d)
{
	return zp_av1_soff(pr * 16, kc * 16, d);
}

/* The V row lane hands ldmatrix .x4 .trans (kc = 0, dq = 0): matrices (keys
   0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15):
   transposed, registers b0, b1 of O's d tile 2 dq, then of 2 dq + 1. */
static inline ZP_V1_HD int zp_av1_v_lane(int lane, int d)
{
	int m = lane / 8;
	if (ZP_V1_MUT(ZP_V1_MUT_AV1_V_TRANS) && (m == 1 || m == 2))
		m = 3 - m;
	return zp_av1_soff(lane % 8 + (m % 2) * 8, (m / 2) * 8, d);
}

/* What key chunk kc (16 keys) at d pair dq adds to zp_av1_v_lane. */
static inline ZP_V1_HD int zp_av1_v_step(int kc, int dq, int d)
{
	return zp_av1_soff(kc * 16, dq * 16, d);
}

/* Two floats as a bf16 pair, lo in the low half (an mma operand register). */
static inline ZP_V1_HD uint32_t zp_av1_pack(float lo, float hi)
{
	return (uint32_t)zp_v1_f32_bf16(lo) | ((uint32_t)zp_v1_f32_bf16(hi) << 16);
}

/* P's A fragment for keys 16 kc .. 16 kc + 15 from S's C fragments s0 (key
   tile 2 kc) and s1 (2 kc + 1): C's (row g, cols 2t, +1), (row g + 8) are A's
   registers 0, 1 for k 0-7; the next tile's, registers 2, 3 for k 8-15. */
static inline ZP_V1_HD void zp_av1_p_frag(const float *s0, const float *s1, uint32_t *pa)
{
	pa[0] = zp_av1_pack(s0[0], s0[1]);
	pa[1] = zp_av1_pack(s0[2], s0[3]);
	pa[2] = zp_av1_pack(s1[0], s1[1]);
	pa[3] = zp_av1_pack(s1[2], s1[3]);
}

/* Key tiles a block of rows [i0, iend) of a sequence with plen prefix
   positions reads: positions [0, plen + iend). */
static inline ZP_V1_HD int zp_av1_key_tiles(int plen, int iend)
{
	return (plen + iend + ZP_AV1_BKV - 1) / ZP_AV1_BKV;
}

static inline ZP_V1_HD float zp_av1_scale_log2(int d)
{
	return 1.4426950408889634f / sqrtf((float)d);
}

/* Keys (v = 0) or values (v = 1) of position kp of sequence s, head kvh: a
   prefix row, a row of the sequence's own qkv rows, or NULL (past the end: a
   zero row, always masked). */
static inline ZP_V1_HD const float *zp_av1_kv_row(const float *qkv, size_t ld_qkv, int heads,
					       int kv_heads, int d, int r0, int len,
					       const zp_kv1_src *pre, int kvh, int kp, int v)
{
	int plen = pre ? pre->len : 0;
	if (kp < plen)
		return (v ? pre->v : pre->k) + (size_t)kp * pre->ld + (size_t)kvh * d;
	if (kp < plen + len)
		return qkv + (size_t)(r0 + kp - plen) * ld_qkv +
		       (size_t)(heads + (v ? kv_heads : 0) + kvh) * d;
	return NULL;
}

/* The running max update: the tile's max mx, the row's max so far m (-inf
   before the first key). Returns the new max to subtract (0 while the row has
   seen no key, so exp2 of a masked score stays 0 and nothing is NaN). */
static inline ZP_V1_HD float zp_av1_max_ref(float m, float mx)
{
	float mn = fmaxf(m, mx);
	return mn == -INFINITY ? 0.0f : mn;
}

static inline ZP_V1_HD float zp_av1_round_bf16(float x)
{
	return zp_v1_bf16_f32(zp_v1_f32_bf16(x));
}

#ifdef __cplusplus
extern "C" {
#endif

/* The host twin of zp_kv1_attention (v1.h, bf16 true): the same blocks, every
   pointer (seq_start, prefix and what it points to) host memory, run on
   nthreads threads (the results do not depend on nthreads). 0, or -1 when a
   thread cannot start. */
int zp_kv1_attention_host(int nthreads, int heads, int kv_heads, int d, int nseq,
			  const int *seq_start, const float *qkv, size_t ld_qkv, float *out,
			  size_t ld_out, const zp_kv1_src *prefix);

#ifdef __cplusplus
}
#endif

#endif
