/* zk_fp8.h -- the FP8 (e4m3fn) math the CUDA backend's FP8 kernels share
   with their host twins (src/cuda/devrt_sim.c), and the argument blocks of
   those kernels: the dynamic activation quantisation of W8A8 (per token per
   128-column group, as vLLM's and SGLang's per_token_group_quant_fp8), the
   widening of an FP8 weight matrix to its compute type (W8A16), and the
   block-scaled FP8 GEMM's reference order (the sim's twin of cuBLASLt's
   VEC128 x BLK128x128 matmul, blas_contract.h).
   The encoder is the PTX ISA's cvt.rn.satfinite.e4m3x2.f32 (sm_89+): round
   to nearest even, |x| past 448 (Inf too) to +-448, NaN to NaN (0x7f); on
   the device that instruction runs, in the twin (and on sm_80) zk_e4m3_enc,
   equal to it for every f32 (tests/test_fp8_kernels.c checks every class of
   input; the device check compares them on a GPU). */
#ifndef ZP_ZK_FP8_H
#define ZP_ZK_FP8_H

#include <math.h>

#include "zk.h"

#define ZK_FP8_BLOCK 128	/* scale block, columns and rows (weights.h ZP_FP8_BLOCK) */
#define ZK_FP8_MAX 448.0f
#define ZK_FP8_KALIGN 16	/* FP8 rows padded to 16 codes: cuBLASLt's 16-byte rule */

/* act_quant: a[m][k] (f32, or bf16 when bf16) -> q[m][kq] codes (zeros past
   k) and s, the scales MN-major: s[g * m + row] for 128-column group g (the
   VEC128 layout of cuBLASLt's B operand). Block = row * groups + g, one warp:
   lane l owns columns g*128 + 4l .. 4l + 3. */
typedef struct {
	int m, k, kq;
	const void *a; size_t lda; int bf16;
	uint8_t *q; float *s;
} zk_actq;

/* fp8_widen: w codes [rows][kq] with per-row scales sc[row][ceil(k/128)]
   -> dst [rows][kp] of the compute type (f32, or bf16 when bf16), values
   e4m3(code) * scale rounded to that type, zeros past k. Block = row. */
typedef struct {
	int rows, k, kq, kp;
	const uint8_t *w; const float *sc;
	void *dst; int bf16;
} zk_fp8w;

ZP_HD uint32_t zk_f32_bits(float f)
{
	union { uint32_t u; float f; } v;
	v.f = f;
	return v.u;
}

ZP_HD float zk_bits_f32(uint32_t u)
{
	union { uint32_t u; float f; } v;
	v.u = u;
	return v.f;
}

/* the value of an e4m3fn code, exactly (0x7f / 0xff: NaN) */
ZP_HD float zk_e4m3_dec(uint8_t c)
{
	uint32_t sign = (uint32_t)(c & 0x80) << 24, e = (c >> 3) & 15, mt = c & 7;
	if (e == 15 && mt == 7)
		return zk_bits_f32(sign | 0x7fc00000u);
	if (e == 0) /* subnormal: mt * 2^-9, exact */
		return zk_bits_f32(zk_f32_bits((float)mt * 0.001953125f) | sign);
	return zk_bits_f32(sign | (e - 7 + 127) << 23 | mt << 20);
}

/* cvt.rn.satfinite.e4m3.f32 in plain arithmetic: every step exact but the
   one rounding, which is to nearest even */
ZP_HD uint8_t zk_e4m3_enc(float x)
{
	uint32_t u = zk_f32_bits(x), a = u & 0x7fffffffu;
	uint8_t sign = (uint8_t)((u >> 24) & 0x80);
	if (a > 0x7f800000u)
		return (uint8_t)(sign | 0x7f);
	if (a >= 0x43e00000u) /* >= 448, Inf: saturate */
		return (uint8_t)(sign | 0x7e);
	if (a < 0x3c800000u) { /* below 2^-6: the subnormal grid, step 2^-9 */
		float y = zk_bits_f32(a) * 512.0f; /* exact: a power of two */
		int i = (int)y;
		float fr = y - (float)i;
		if (fr > 0.5f || (fr == 0.5f && (i & 1)))
			i++;
		return (uint8_t)(sign | i); /* i == 8 is the smallest normal's code */
	}
	uint32_t base = a >> 20, rest = a & 0xfffffu; /* exponent and 3 mantissa bits */
	if (rest > 0x80000u || (rest == 0x80000u && (base & 1)))
		base++;
	uint32_t code = base - ((127u - 7u) << 3);
	return (uint8_t)(sign | (code > 0x7e ? 0x7e : code));
}

/* two values as cvt.rn.satfinite.e4m3x2.f32 d, hi, lo packs them */
ZP_HD uint16_t zk_e4m3x2(float hi, float lo)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
	unsigned short d;
	asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(d) : "f"(hi), "f"(lo));
	return d;
#else
	return (uint16_t)(zk_e4m3_enc(hi) << 8 | zk_e4m3_enc(lo));
#endif
}

/* ---- act_quant ---- */

ZP_HD float zk_actq_x(const zk_actq *p, int row, int c)
{
	if (c >= p->k)
		return 0.0f;
	if (p->bf16)
		return zk_bf16_to_f32(((const uint16_t *)p->a)[(size_t)row * p->lda + c]);
	return ((const float *)p->a)[(size_t)row * p->lda + c];
}

ZP_HD int zk_actq_groups(int k)
{
	return (k + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK;
}

/* lane's part of its group's amax (|x| of its 4 columns) */
ZP_HD float zk_actq_amax_part(const zk_actq *p, int block, int lane)
{
	int g = zk_actq_groups(p->k), row = block / g, c0 = (block % g) * ZK_FP8_BLOCK + 4 * lane;
	float m = 0.0f;
	for (int i = 0; i < 4; i++)
		m = fmaxf(m, fabsf(zk_actq_x(p, row, c0 + i)));
	return m;
}

/* the group's scale: amax / 448, 1 for an all-zero group (weights.h's
   quantiser: the codes are then all zero) */
ZP_HD float zk_actq_scale(float amax)
{
	return amax > 0.0f ? amax / ZK_FP8_MAX : 1.0f;
}

/* after the warp's amax: lane's 4 codes (zeros past k, none past kq), lane 0
   the scale */
ZP_HD void zk_actq_store(const zk_actq *p, int block, float scale, int lane)
{
	int g = zk_actq_groups(p->k), row = block / g, gi = block % g;
	int c0 = gi * ZK_FP8_BLOCK + 4 * lane;
	uint8_t *q = p->q + (size_t)row * p->kq;
	if (lane == 0)
		p->s[(size_t)gi * p->m + row] = scale;
	for (int i = 0; i < 4; i += 2) {
		uint16_t two = zk_e4m3x2(zk_actq_x(p, row, c0 + i + 1) / scale,
					 zk_actq_x(p, row, c0 + i) / scale);
		if (c0 + i < p->kq)
			q[c0 + i] = (uint8_t)(two & 0xff);
		if (c0 + i + 1 < p->kq)
			q[c0 + i + 1] = (uint8_t)(two >> 8);
	}
}

/* ---- fp8_widen: lane-strided columns of one row ---- */

ZP_HD void zk_fp8w_lane(const zk_fp8w *p, int row, int lane)
{
	int nkb = (p->k + ZK_FP8_BLOCK - 1) / ZK_FP8_BLOCK;
	const uint8_t *w = p->w + (size_t)row * p->kq;
	const float *sc = p->sc + (size_t)row * nkb;
	for (int c = lane; c < p->kp; c += ZK_WARP) {
		float v = c < p->k ? zk_e4m3_dec(w[c]) * sc[c / ZK_FP8_BLOCK] : 0.0f;
		if (p->bf16)
			((uint16_t *)p->dst)[(size_t)row * p->kp + c] = zk_f32_to_bf16(v);
		else
			((float *)p->dst)[(size_t)row * p->kp + c] = v;
	}
}

/* ---- the block-scaled FP8 GEMM's reference (the sim's cuBLASLt twin):
   c = sum over 128-wide k blocks b, in order, of (the block's exact products
   summed in f32, k ascending) * (sa[b][row] * sw[b][n / 128]). Products of
   two e4m3 values are exact in f32 (4 x 4 significant bits). ---- */

ZP_HD float zk_fp8_gemm_dot(const uint8_t *a, const uint8_t *w, int k, const float *sa,
			    size_t sa_ld, const float *sw, size_t sw_ld)
{
	float acc = 0.0f;
	for (int b = 0; b * ZK_FP8_BLOCK < k; b++) {
		float s = 0.0f;
		int e = b * ZK_FP8_BLOCK + ZK_FP8_BLOCK < k ? b * ZK_FP8_BLOCK + ZK_FP8_BLOCK : k;
		for (int c = b * ZK_FP8_BLOCK; c < e; c++)
			s = s + zk_e4m3_dec(a[c]) * zk_e4m3_dec(w[c]);
		acc = acc + s * (sa[(size_t)b * sa_ld] * sw[(size_t)b * sw_ld]);
	}
	return acc;
}

#endif
