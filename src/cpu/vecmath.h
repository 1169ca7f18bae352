/* vecmath.h -- AVX512 helpers shared by the CPU kernels: exp, f32 -> bf16 with
   round-to-nearest-even (bit-identical to zp_f32_to_bf16, NaN kept quiet). Header
   only; callers are compiled with the same target attribute. Thread-free. */
#ifndef ZP_VECMATH_H
#define ZP_VECMATH_H

#include <immintrin.h>
#include <stdint.h>

#define ZP_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))

/* exp(x), <= 2 ulp for x in [-104, 88]: Cody-Waite reduction, degree-6
   polynomial (Cephes expf) on |r| <= ln2/2, scaled by 2^n. */
ZP_AVX512 static inline __m512 zp_exp512(__m512 x)
{
	const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
	const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
	x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
	__m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
	r = _mm512_fnmadd_ps(n, ln2lo, r);
	__m512 p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	__m512 r2 = _mm512_mul_ps(r, r);
	p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
	return _mm512_scalef_ps(p, n);
}

/* silu(x) = x / (1 + exp(-x)), as torch computes it in f32. */
ZP_AVX512 static inline __m512 zp_silu512(__m512 x)
{
	__m512 e = zp_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
	return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* 16 floats -> 16 bf16, the same bits as zp_f32_to_bf16. */
ZP_AVX512 static inline __m256i zp_bf16_512(__m512 x)
{
	__m512i u = _mm512_castps_si512(x);
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
	__m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
						       lsb), 16);
	__mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
	__m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
	return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, nan, q));
}

#endif
