/* attention.c -- see attention.h. K is transposed once per layer so that 16 keys'
   scores come from one FMA chain over d; exp is a vector polynomial (<= 2 ulp). */
#include "attention.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "gemm.h"
#include "util.h"
#include "vecmath.h"

#define QG 8  /* queries sharing each K load */
#define KB 64 /* keys per block: a K block (d x 64 f32) stays in L1 across queries */
#define AVX512 ZP_AVX512

size_t zp_attn_scratch_floats(const zp_attn *a, int q_block, int q_max)
{
	size_t nk = (size_t)ZP_ALIGN_UP(q_max, 16), rep = (size_t)(a->heads / a->kv_heads);
	return rep * (size_t)q_block * nk;
}

void zp_attn_transpose_k(const zp_attn *a, int t0, int t1)
{
	for (int h = 0; h < a->kv_heads; h++)
		for (int t = t0; t < t1; t++) {
			const float *k = a->qkv + (size_t)t * a->ld + (size_t)(a->heads + h) * a->d;
			float *dst = a->kt + (size_t)h * a->d * a->ldk + (size_t)t;
			for (int i = 0; i < a->d; i++)
				dst[(size_t)i * a->ldk] = k[i];
		}
}

/* Scores of queries q..q+nq-1 (head h) against keys [kb, kb + nkb) (kt: this KV
   head's transposed K from the sequence's first token, row stride a->ldk), scaled,
   -inf past each query, into columns kb.. of sc rows (stride nk). Each score is
   one FMA chain over d, in order. Keys read past the sequence are masked. */
AVX512 static void scores_block(const zp_attn *a, int s0, int h, int q, int nq, const float *kt,
				int kb, int nkb, float *sc, int nk)
{
	const float *qv[QG];
	float scale = (float)pow((double)a->d, -0.5);
	for (int g = 0; g < QG; g++) /* rows past nq repeat the last query, unused */
		qv[g] = a->qkv + (size_t)(s0 + q + ZP_MIN(g, nq - 1)) * a->ld + (size_t)h * a->d;
	for (int j = 0; j < nkb; j += 16) {
		__m512 acc[QG];
#pragma GCC unroll 8
		for (int g = 0; g < QG; g++)
			acc[g] = _mm512_setzero_ps();
		for (int i = 0; i < a->d; i++) {
			__m512 kv = _mm512_loadu_ps(kt + (size_t)i * a->ldk + kb + j);
#pragma GCC unroll 8
			for (int g = 0; g < QG; g++)
				acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(qv[g][i]), kv, acc[g]);
		}
#pragma GCC unroll 8
		for (int g = 0; g < QG; g++) {
			if (g >= nq)
				break;
			int vis = q + g - (kb + j) + 1; /* keys kb + j + l <= q + g are visible */
			__mmask16 m = vis >= 16 ? 0xffff : vis <= 0 ? 0 : (__mmask16)((1u << vis) - 1);
			__m512 sv = _mm512_mul_ps(acc[g], _mm512_set1_ps(scale));
			_mm512_storeu_ps(sc + (size_t)g * nk + kb + j,
					 _mm512_mask_blend_ps(m, _mm512_set1_ps(-INFINITY), sv));
		}
	}
}


/* softmax over sc[0..n) in place, zeros in [n, nmax): p_j = e_j / sum, as
   transformers' softmax hands it to the matmul. */
AVX512 static void softmax_row(float *sc, int n, int nmax)
{
	int nv = ZP_ALIGN_UP(n, 16);
	__m512 mx = _mm512_set1_ps(-FLT_MAX), sum = _mm512_setzero_ps();
	for (int j = 0; j < nv; j += 16)
		mx = _mm512_max_ps(mx, _mm512_loadu_ps(sc + j));
	__m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
	for (int j = 0; j < nv; j += 16) {
		__mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
		__m512 e = _mm512_maskz_mov_ps(k, zp_exp512(_mm512_sub_ps(_mm512_loadu_ps(sc + j), m)));
		_mm512_storeu_ps(sc + j, e);
		sum = _mm512_add_ps(sum, e);
	}
	__m512 total = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
	for (int j = 0; j < nv; j += 16)
		_mm512_storeu_ps(sc + j, _mm512_div_ps(_mm512_loadu_ps(sc + j), total));
	for (int j = nv; j < nmax; j++)
		sc[j] = 0;
}

/* out_g += sum_{j in [j0, j1)} p_gj v_j for 4 queries at once: each v row is
   loaded once per 4 queries, the accumulators stay in registers over the block
   and go back to out between blocks (an exact f32 store: the sum over j keeps
   its order). Zero p terms add exact zeros. */
AVX512 static void pv_block(const zp_attn *a, int s0, int kvh, int j0, int j1, const float *p0,
			    int nk, int ng, float **out)
{
	const float *v0 = a->qkv + (size_t)s0 * a->ld + (size_t)(a->heads + a->kv_heads + kvh) * a->d;
	for (int i0 = 0; i0 < a->d; i0 += 64) {
		__m512 acc[4][4];
		__mmask16 k[4];
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++) {
			int left = a->d - i0 - 16 * c;
			k[c] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
#pragma GCC unroll 4
			for (int g = 0; g < 4; g++) /* rows g >= ng: scratch, never stored */
				acc[g][c] = _mm512_maskz_loadu_ps(k[c], out[ZP_MIN(g, ng - 1)] + i0 + 16 * c);
		}
		for (int j = j0; j < j1; j++) {
			const float *v = v0 + (size_t)j * a->ld + i0;
			__m512 vv[4];
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				vv[c] = _mm512_maskz_loadu_ps(k[c], v + 16 * c);
#pragma GCC unroll 4
			for (int g = 0; g < 4; g++) {
				__m512 p = _mm512_set1_ps(p0[(size_t)ZP_MIN(g, ng - 1) * nk + j]);
#pragma GCC unroll 4
				for (int c = 0; c < 4; c++)
					acc[g][c] = _mm512_fmadd_ps(p, vv[c], acc[g][c]);
			}
		}
#pragma GCC unroll 4
		for (int g = 0; g < 4; g++) /* constant bounds: acc stays in registers */
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				if (g < ng)
					_mm512_mask_storeu_ps(out[g] + i0 + 16 * c, k[c], acc[g][c]);
	}
}

static void attn_ref_in(const zp_attn *a, int s0, int h, int q, float *sc);

/* Two passes over the keys in blocks of KB: scores (a K block in L1, reused by
   every query and q head of the group), exact softmax per row, then P.V (a V
   block reused likewise). */
void zp_attn_block(const zp_attn *a, int s0, int kvh, int q0, int q1, float *scratch)
{
	int nk = ZP_ALIGN_UP(q1, 16), rep = a->heads / a->kv_heads, nq_all = q1 - q0;
	const float *kt = a->kt + (size_t)kvh * a->d * a->ldk + (size_t)s0;
	float *sc = scratch;

	ZP_ASSERT(q0 >= 0 && q0 < q1 && a->heads % a->kv_heads == 0);
	if (!zp_cpu_avx512()) { /* no vector path: the reference, in the scratch (>= q1 floats) */
		for (int h = kvh * rep; h < (kvh + 1) * rep; h++)
			for (int q = q0; q < q1; q++)
				attn_ref_in(a, s0, h, q, scratch);
		return;
	}
#define SC_ROW(hi, q) (sc + ((size_t)(hi) * nq_all + (size_t)((q) - q0)) * nk)
	for (int kb = 0; kb < q1; kb += KB) {
		int nkb = ZP_MIN(KB, q1 - kb);
		for (int hi = 0; hi < rep; hi++)
			for (int q = q0; q < q1; q += QG) {
				int nq = ZP_MIN(QG, q1 - q);
				if (kb <= q + nq - 1)
					scores_block(a, s0, kvh * rep + hi, q, nq, kt, kb,
						     ZP_MIN(nkb, ZP_ALIGN_UP(q + nq - kb, 16)), SC_ROW(hi, q), nk);
			}
	}
	for (int hi = 0; hi < rep; hi++)
		for (int q = q0; q < q1; q++) {
			softmax_row(SC_ROW(hi, q), q + 1, ZP_MIN(ZP_ALIGN_UP(q + 4, 4), q1));
			memset(a->out + (size_t)(s0 + q) * a->ldo + (size_t)(kvh * rep + hi) * a->d, 0,
			       (size_t)a->d * sizeof(float));
		}
	for (int kb = 0; kb < q1; kb += KB)
		for (int hi = 0; hi < rep; hi++)
			for (int q = q0; q < q1; q += 4) {
				int ng = ZP_MIN(4, q1 - q), jend = ZP_MIN(kb + KB, q + ng);
				float *out[4];
				if (kb >= jend)
					continue;
				for (int g = 0; g < ng; g++)
					out[g] = a->out + (size_t)(s0 + q + g) * a->ldo +
						 (size_t)(kvh * rep + hi) * a->d;
				pv_block(a, s0, kvh, kb, jend, SC_ROW(hi, q), nk, ng, out);
			}
#undef SC_ROW
}

/* One query of one head, its scores in sc[q + 1]. */
static void attn_ref_in(const zp_attn *a, int s0, int h, int q, float *sc)
{
	int d = a->d, kvh = h / (a->heads / a->kv_heads);
	const float *qv = a->qkv + (size_t)(s0 + q) * a->ld + (size_t)h * d;
	float scale = (float)pow((double)d, -0.5), mx = -FLT_MAX, sum = 0;
	float *o = a->out + (size_t)(s0 + q) * a->ldo + (size_t)h * d;

	for (int j = 0; j <= q; j++) {
		const float *k = a->qkv + (size_t)(s0 + j) * a->ld + (size_t)(a->heads + kvh) * d;
		double s = 0;
		for (int i = 0; i < d; i++)
			s += (double)qv[i] * k[i];
		sc[j] = (float)s * scale;
		mx = fmaxf(mx, sc[j]);
	}
	for (int j = 0; j <= q; j++)
		sum += sc[j] = expf(sc[j] - mx);
	for (int i = 0; i < d; i++) {
		double acc = 0;
		for (int j = 0; j <= q; j++)
			acc += (double)(sc[j] / sum) *
			       a->qkv[(size_t)(s0 + j) * a->ld + (size_t)(a->heads + a->kv_heads + kvh) * d + i];
		o[i] = (float)acc;
	}
}

void zp_attn_ref(const zp_attn *a, int s0, int h, int q)
{
	float *sc = zp_xmalloc((size_t)(q + 1) * sizeof *sc);
	attn_ref_in(a, s0, h, q, sc);
	free(sc);
}

/* ---- bf16 on AMX ------------------------------------------------------------- */

void zp_attn16_pack(const zp_attn16 *a, const float *row, size_t slot)
{
	size_t d = (size_t)a->d, panel = slot / 32, col = slot % 32;
	for (int h = 0; h < a->kv_heads; h++) {
		const float *k = row + (size_t)(a->heads + h) * d;
		const float *v = row + (size_t)(a->heads + a->kv_heads + h) * d;
		uint16_t *kp = a->kp + ((size_t)h * (a->slots / 32) + panel) * d * 32 + col * 2;
		for (size_t i = 0; i < d; i++)
			kp[(i / 2) * 64 + i % 2] = zp_f32_to_bf16(k[i]);
		for (size_t dp = 0; dp < d / 32; dp++) {
			uint16_t *vp = a->vp + ((size_t)h * (d / 32) + dp) * a->slots * 32 +
				       (slot / 2) * 64 + slot % 2;
			for (size_t c = 0; c < 32; c++)
				vp[c * 2] = zp_f32_to_bf16(v[dp * 32 + c]);
		}
	}
}

void zp_attn16_clear(const zp_attn16 *a, size_t s0, size_t s1)
{
	size_t d = (size_t)a->d;
	for (size_t slot = s0; slot < s1; slot++)
		for (int h = 0; h < a->kv_heads; h++) {
			uint16_t *kp = a->kp + ((size_t)h * (a->slots / 32) + slot / 32) * d * 32 +
				       (slot % 32) * 2;
			for (size_t i = 0; i < d; i++)
				kp[(i / 2) * 64 + i % 2] = 0;
			for (size_t dp = 0; dp < d / 32; dp++) {
				uint16_t *vp = a->vp + ((size_t)h * (d / 32) + dp) * a->slots * 32 +
					       (slot / 2) * 64 + slot % 2;
				for (size_t c = 0; c < 32; c++)
					vp[c * 2] = 0;
			}
		}
}

size_t zp_attn16_scratch_bytes(int q_max)
{
	size_t nk = (size_t)ZP_ALIGN_UP(q_max, 32);
	return 32 * nk * sizeof(float) + 32 * nk * 2 + 32 * 32 * sizeof(float) + 256;
}

/* Row r's scores s[0..n) -> p = softmax(s * scale) as bf16 in p16[0..nk), zeros
   past n. */
AVX512 static void softmax16_row(float *s, int n, int nk, float scale, uint16_t *p16)
{
	int nv = ZP_ALIGN_UP(n, 16);
	for (int j = 0; j < nv; j += 16) { /* scale; -inf past n, as softmax_row wants */
		__mmask16 k = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
		_mm512_storeu_ps(s + j, _mm512_mask_blend_ps(k, _mm512_set1_ps(-INFINITY),
			_mm512_mul_ps(_mm512_loadu_ps(s + j), _mm512_set1_ps(scale))));
	}
	softmax_row(s, n, nv);
	for (int j = 0; j < nv; j += 16)
		_mm256_storeu_si256((__m256i *)(p16 + j), zp_bf16_512(_mm512_loadu_ps(s + j)));
	memset(p16 + nv, 0, (size_t)(nk - nv) * 2);
}

void zp_attn16_block(const zp_attn16 *a, int s0, size_t ks0, int kvh, int q0, int q1,
		     void *scratch)
{
	int rep = a->heads / a->kv_heads, nq = q1 - q0, nk = ZP_ALIGN_UP(q1, 32), d = a->d;
	float scale = (float)pow((double)d, -0.5);
	float *s = (float *)ZP_ALIGN_UP((uintptr_t)scratch, 64);
	uint16_t *p16 = (uint16_t *)(s + (size_t)32 * nk);
	float *o = (float *)(p16 + (size_t)32 * nk);
	const uint16_t *kp = a->kp + ((size_t)kvh * (a->slots / 32) + ks0 / 32) * (size_t)d * 32;

	ZP_ASSERT(nq >= 1 && nq <= 32 && d % 32 == 0 && ks0 % 32 == 0);
	zp_gemm_amx_begin();
	for (int h = kvh * rep; h < (kvh + 1) * rep; h++) {
		/* rows past q1 read the following rows of q16 (padded by 32): unused */
		const uint16_t *q = a->q16 + (size_t)(s0 + q0) * a->ldq + (size_t)h * d;
		for (int pn = 0; pn < nk / 32; pn++)
			zp_gemm_amx_32x32(q, a->ldq, kp + (size_t)pn * d * 32, d, s + pn * 32,
					  (size_t)nk);
		for (int r = 0; r < 32; r++) {
			if (r < nq)
				softmax16_row(s + (size_t)r * nk, q0 + r + 1, nk, scale,
					      p16 + (size_t)r * nk);
			else
				memset(p16 + (size_t)r * nk, 0, (size_t)nk * 2);
		}
		for (int dp = 0; dp < d / 32; dp++) {
			const uint16_t *vp = a->vp + ((size_t)kvh * (d / 32) + dp) * a->slots * 32 +
					     (ks0 / 2) * 64;
			zp_gemm_amx_32x32(p16, (size_t)nk, vp, nk, o, 32);
			for (int r = 0; r < nq; r++)
				memcpy(a->out + (size_t)(s0 + q0 + r) * a->ldo + (size_t)h * d + dp * 32,
				       o + r * 32, 32 * sizeof(float));
		}
	}
}
