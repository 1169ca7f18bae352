/* v1_warp.h -- the warp-level instructions of the v1 kernels played lane by
   lane for their host twins (C only; nvcc never includes it): ldmatrix .x4
   (and .trans), mma.sync m16n8k16 row.col f32.bf16.bf16.f32 and cp.async with
   commit_group / wait_group, with the fragment tables of the PTX ISA
   (groupID = lane >> 2, threadID_in_group = lane % 4). A twin calls the
   kernel's own per-lane address functions (expert_gemm_v1.h, attention_v1.h)
   and hands the 32 lanes' values to these models, so an address or fragment
   slip in the kernel's index math shows in the twin's results. Shared memory
   is a uint16_t array; an "address" is an element offset into it. The caller
   owns every array; no state outside the arguments. */
#ifndef ZP_V1_WARP_H
#define ZP_V1_WARP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "v1_common.h"

#define ZP_V1_LANES 32

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give the
   addresses of rows 0..7 of matrix i (16 bytes each, 16-byte aligned); lane t
   receives in r[t][i] the pair of matrix i at row t / 4, columns 2 (t % 4)
   and +1 (low half first); with .trans, at column t / 4 of rows 2 (t % 4)
   and +1, i.e. the pair of the transposed matrix. */
static inline void zp_v1_ldmatrix_x4(const uint16_t *smem, size_t smem_elems,
				     const uint32_t addr[ZP_V1_LANES], int trans,
				     uint32_t r[ZP_V1_LANES][4])
{
	for (int l = 0; l < ZP_V1_LANES; l++)
		if (addr[l] % 8 || addr[l] + 8 > smem_elems)
			abort();	/* misaligned or outside shared memory: the device faults */
	for (int i = 0; i < 4; i++)
		for (int t = 0; t < ZP_V1_LANES; t++) {
			const uint32_t *rows = addr + 8 * i;
			uint16_t lo, hi;
			if (!trans) {
				lo = smem[rows[t / 4] + 2 * (t % 4)];
				hi = smem[rows[t / 4] + 2 * (t % 4) + 1];
			} else {
				lo = smem[rows[2 * (t % 4)] + t / 4];
				hi = smem[rows[2 * (t % 4) + 1] + t / 4];
			}
			r[t][i] = (uint32_t)lo | (uint32_t)hi << 16;
		}
}

/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 d = a b + d over a
   warp's fragments (the ISA's tables):
     A 16x16: a[l][j] holds rows g (j = 0, 2) or g + 8 (j = 1, 3), columns
              2 t + 8 (j >> 1) and +1;
     B 16x8 (k x n): b[l][j] holds rows 2 t + 8 j and +1, column g;
     C/D 16x8: d[l][j] holds row g + 8 (j >> 1), column 2 t + (j & 1).
   The hardware's order inside the k step is not specified: here each element
   adds its 16 products k ascending to d in f32 (bf16 products are exact in
   f32), so a chain of steps sums k ascending from 0, the plain order. */
static inline void zp_v1_mma_bf16(float d[ZP_V1_LANES][4], const uint32_t a[ZP_V1_LANES][4],
				  const uint32_t b[ZP_V1_LANES][2])
{
	float A[16][16], B[16][8];
	for (int l = 0; l < ZP_V1_LANES; l++) {
		int g = l >> 2, t = l % 4;
		for (int j = 0; j < 4; j++) {
			int row = g + 8 * (j & 1), col = 2 * t + 8 * (j >> 1);
			A[row][col] = zp_v1_bf16_f32((uint16_t)a[l][j]);
			A[row][col + 1] = zp_v1_bf16_f32((uint16_t)(a[l][j] >> 16));
		}
		for (int j = 0; j < 2; j++) {
			B[2 * t + 8 * j][g] = zp_v1_bf16_f32((uint16_t)b[l][j]);
			B[2 * t + 8 * j + 1][g] = zp_v1_bf16_f32((uint16_t)(b[l][j] >> 16));
		}
	}
	for (int l = 0; l < ZP_V1_LANES; l++) {
		int g = l >> 2, t = l % 4;
		for (int j = 0; j < 4; j++) {
			int row = g + 8 * (j >> 1), col = 2 * t + (j & 1);
			float s = d[l][j];
			for (int k = 0; k < 16; k++)
				s += A[row][k] * B[k][col];
			d[l][j] = s;
		}
	}
}

/* cp.async.cg.shared.global [dst], [src], 16, src_bytes of one thread: the
   copy is taken at issue (global memory does not change under a kernel) but
   lands in shared memory only when a wait_group of its thread covers its
   group: until then a reader sees what was there before (the twins poison
   shared memory first, so a missing wait reads NaN). */
#define ZP_V1_CP_MAX 16	/* copies in flight per thread */

typedef struct {
	uint32_t dst;	/* element offset, 16-byte aligned */
	int group;
	uint16_t data[8];
} zp_v1_cp;

typedef struct {
	zp_v1_cp q[ZP_V1_CP_MAX];	/* in flight, oldest first */
	int n;
	int open;	/* the group the next copy joins (groups committed so far) */
} zp_v1_cp_thread;

static inline void zp_v1_cp_async16(zp_v1_cp_thread *th, uint32_t dst, const uint16_t *src,
				    int src_bytes)
{
	if (th->n == ZP_V1_CP_MAX || dst % 8 || src_bytes < 0 || src_bytes > 16 || src_bytes % 2)
		abort();	/* the twin's bound, or a copy the device rejects */
	zp_v1_cp *c = &th->q[th->n++];
	c->dst = dst;
	c->group = th->open;
	memset(c->data, 0, sizeof(c->data));	/* bytes past src_bytes are zeros */
	if (src_bytes)
		memcpy(c->data, src, (size_t)src_bytes);
}

static inline void zp_v1_cp_commit(zp_v1_cp_thread *th)
{
	th->open++;
}

/* cp.async.wait_group n: every group but the newest n committed ones lands. */
static inline void zp_v1_cp_wait(zp_v1_cp_thread *th, int n, uint16_t *smem, size_t smem_elems)
{
	int keep = 0;
	for (int i = 0; i < th->n; i++) {
		zp_v1_cp *c = &th->q[i];
		if (c->group < th->open - n) {
			if (c->dst + 8 > smem_elems)
				abort();
			memcpy(smem + c->dst, c->data, sizeof(c->data));
		} else {
			th->q[keep++] = *c;
		}
	}
	th->n = keep;
}

/* Shared memory as a kernel finds it: not zeros. A bf16 NaN in every element,
   so a read of what no copy or store has published poisons the result. */
static inline void zp_v1_smem_poison(uint16_t *smem, size_t elems)
{
	for (size_t i = 0; i < elems; i++)
		smem[i] = 0x7fc0;
}

#endif
