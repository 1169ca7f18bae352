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
