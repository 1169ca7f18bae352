/* attention.c -- see attention.h. K is transposed per block so that 16 keys' scores
   come from one FMA chain over d; exp is a vector polynomial (<= 2 ulp). */
#include "attention.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "util.h"
#include "vecmath.h"

#define QG 8 /* queries sharing each K load */

size_t zp_attn_scratch_floats(int d, int q_max)
{
	size_t nk = (size_t)ZP_ALIGN_UP(q_max, 16);
	return nk * (size_t)d + QG * nk;
}

#define AVX512 ZP_AVX512

/* kt[i][j] = k_j[i] for the block's keys, zero padded to nk. */
static void transpose_k(const zp_attn *a, int s0, int kvh, int nkeys, int nk, float *kt)
{
	const float *k0 = a->qkv + (size_t)s0 * a->ld + (size_t)(a->heads + kvh) * a->d;
	for (int i = 0; i < a->d; i++)
		memset(kt + (size_t)i * nk + nkeys, 0, (size_t)(nk - nkeys) * sizeof *kt);
	for (int j = 0; j < nkeys; j++) {
		const float *k = k0 + (size_t)j * a->ld;
		for (int i = 0; i < a->d; i++)
			kt[(size_t)i * nk + j] = k[i];
	}
}

/* Scores of queries q..q+nq-1 (head h) against keys 0..q+nq-1, scaled, masked
   (-inf past each query), into sc[nq][nk]. */
AVX512 static void scores(const zp_attn *a, int s0, int h, int q, int nq, const float *kt, int nk,
			  float *sc)
{
	const float *qv[QG];
	float scale = (float)pow((double)a->d, -0.5);
	int nkeys = q + nq;
	for (int g = 0; g < QG; g++) /* rows past nq repeat the last query, unused */
		qv[g] = a->qkv + (size_t)(s0 + q + ZP_MIN(g, nq - 1)) * a->ld + (size_t)h * a->d;
	for (int j = 0; j < nkeys; j += 16) {
		__m512 acc[QG];
#pragma GCC unroll 8
		for (int g = 0; g < QG; g++)
			acc[g] = _mm512_setzero_ps();
		for (int i = 0; i < a->d; i++) {
			__m512 kv = _mm512_loadu_ps(kt + (size_t)i * nk + j);
#pragma GCC unroll 8
			for (int g = 0; g < QG; g++)
				acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(qv[g][i]), kv, acc[g]);
		}
		for (int g = 0; g < nq; g++) {
			/* keys j + l <= q + g are visible */
			int vis = q + g - j + 1;
			__mmask16 m = vis >= 16 ? 0xffff : vis <= 0 ? 0 : (__mmask16)((1u << vis) - 1);
			__m512 s = _mm512_mul_ps(acc[g], _mm512_set1_ps(scale));
			_mm512_storeu_ps(sc + (size_t)g * nk + j,
					 _mm512_mask_blend_ps(m, _mm512_set1_ps(-INFINITY), s));
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

/* out_g = sum_j p_gj v_j for nq (<= QG) queries at once over keys [0, n): each v
   row is loaded once per 4 queries. Zero p terms add exact zeros. */
AVX512 static void pv_group(const zp_attn *a, int s0, int kvh, int nq, int n, const float *sc,
			    int nk, float **out)
{
	const float *v0 = a->qkv + (size_t)s0 * a->ld + (size_t)(a->heads + a->kv_heads + kvh) * a->d;
	for (int g0 = 0; g0 < nq; g0 += 4) {
		int ng = ZP_MIN(4, nq - g0);
		for (int i0 = 0; i0 < a->d; i0 += 64) {
			__m512 acc[4][4];
			__mmask16 k[4];
			for (int c = 0; c < 4; c++) {
				int left = a->d - i0 - 16 * c;
				k[c] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
				for (int g = 0; g < 4; g++)
					acc[g][c] = _mm512_setzero_ps();
			}
			/* constant trip counts, fully unrolled: the 16 accumulators stay in
			   registers (rows g >= ng compute on scratch and are not stored) */
			const float *p0 = sc + (size_t)g0 * nk;
			for (int j = 0; j < n; j++) {
				const float *v = v0 + (size_t)j * a->ld + i0;
				__m512 vv[4];
#pragma GCC unroll 4
				for (int c = 0; c < 4; c++)
					vv[c] = _mm512_maskz_loadu_ps(k[c], v + 16 * c);
#pragma GCC unroll 4
				for (int g = 0; g < 4; g++) {
					__m512 p = _mm512_set1_ps(p0[(size_t)g * nk + j]);
#pragma GCC unroll 4
					for (int c = 0; c < 4; c++)
						acc[g][c] = _mm512_fmadd_ps(p, vv[c], acc[g][c]);
				}
			}
			for (int g = 0; g < ng; g++)
				for (int c = 0; c < 4; c++)
					_mm512_mask_storeu_ps(out[g0 + g] + i0 + 16 * c, k[c], acc[g][c]);
		}
	}
}

void zp_attn_block(const zp_attn *a, int s0, int kvh, int q0, int q1, float *scratch)
{
	int nk = ZP_ALIGN_UP(q1, 16), rep = a->heads / a->kv_heads;
	float *kt = scratch, *sc = scratch + (size_t)nk * a->d;

	ZP_ASSERT(q0 >= 0 && q0 < q1 && a->heads % a->kv_heads == 0);
	if (!zp_cpu_avx512()) { /* no vector path: the reference */
		for (int h = kvh * rep; h < (kvh + 1) * rep; h++)
			for (int q = q0; q < q1; q++)
				zp_attn_ref(a, s0, h, q);
		return;
	}
	transpose_k(a, s0, kvh, q1, nk, kt);
	for (int h = kvh * rep; h < (kvh + 1) * rep; h++)
		for (int q = q0; q < q1; q += QG) {
			int nq = ZP_MIN(QG, q1 - q);
			float *out[QG];
			scores(a, s0, h, q, nq, kt, nk, sc);
			for (int g = 0; g < nq; g++) {
				softmax_row(sc + (size_t)g * nk, q + g + 1, q + nq);
				out[g] = a->out + (size_t)(s0 + q + g) * a->ldo + (size_t)h * a->d;
			}
			pv_group(a, s0, kvh, nq, q + nq, sc, nk, out);
		}
}

void zp_attn_ref(const zp_attn *a, int s0, int h, int q)
{
	int d = a->d, kvh = h / (a->heads / a->kv_heads);
	const float *qv = a->qkv + (size_t)(s0 + q) * a->ld + (size_t)h * d;
	float scale = (float)pow((double)d, -0.5), mx = -FLT_MAX, sum = 0;
	float *o = a->out + (size_t)(s0 + q) * a->ldo + (size_t)h * d;
	float *sc = zp_xmalloc((size_t)(q + 1) * sizeof *sc);

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
	free(sc);
}
