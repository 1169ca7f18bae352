/* ops.c -- see ops.h. Moved out of the forward pass unchanged: the sums and
   their order are what test_golden's exactness rests on. */
#include "ops.h"

#include <float.h>
#include <math.h>

#include "cpu.h"
#include "util.h"
#include "vecmath.h"
#include "zk_ops.h"	/* the router row, shared with the CUDA kernel */

void zp_ops_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	double part[8] = { 0 }, ss = 0; /* 8 lanes, summed in a fixed order */
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			part[l] += (double)x[i + l] * x[i + l];
	for (int l = 0; i < n; i++, l++)
		part[l] += (double)x[i] * x[i];
	for (int l = 0; l < 8; l++)
		ss += part[l];
	float r = 1.0f / sqrtf((float)(ss / n) + eps);
	for (i = 0; i < n; i++)
		out[i] = w[i] * (x[i] * r);
}

ZP_AVX512 static void to_bf16_avx512(uint16_t *dst, const float *src, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(dst + i), zp_bf16_512(_mm512_loadu_ps(src + i)));
	for (; i < n; i++)
		dst[i] = zp_f32_to_bf16(src[i]);
}

void zp_ops_to_bf16(uint16_t *dst, const float *src, int n)
{
	if (zp_cpu_avx512()) {
		to_bf16_avx512(dst, src, n);
		return;
	}
	for (int i = 0; i < n; i++)
		dst[i] = zp_f32_to_bf16(src[i]);
}

void zp_ops_norm_rope(float *v, const float *w, int d, float eps, const float *cs,
		      const float *sn)
{
	float tmp[2048];
	int h2 = d / 2;
	ZP_ASSERT(d <= 2048);
	zp_ops_rmsnorm(tmp, v, w, d, eps);
	for (int i = 0; i < h2; i++) {
		v[i] = tmp[i] * cs[i] - tmp[i + h2] * sn[i];
		v[i + h2] = tmp[i + h2] * cs[i] + tmp[i] * sn[i];
	}
}

/* transformers: softmax over all experts in f32, top-k, renormalise when
   norm_topk_prob. The math is the CUDA kernel's (kernels/zk_ops.h), one row:
   the cpu and sim backends route alike by construction. */
void zp_ops_route(float *lg, int E, int K, bool norm_topk, int *sel, float *w, float *gap)
{
	zk_route a = { lg, (size_t)E, 1, E, K, norm_topk, sel, w, gap };
	zk_route_row(&a, 0);
}

ZP_AVX512 static float logsumexp_avx512(const float *lg, int V)
{
	__m512 mx = _mm512_set1_ps(-FLT_MAX), sum = _mm512_setzero_ps();
	int x = 0;
	for (; x + 16 <= V; x += 16)
		mx = _mm512_max_ps(mx, _mm512_loadu_ps(lg + x));
	float m = _mm512_reduce_max_ps(mx);
	for (int t = x; t < V; t++)
		m = fmaxf(m, lg[t]);
	__m512 mv = _mm512_set1_ps(m);
	for (x = 0; x + 16 <= V; x += 16)
		sum = _mm512_add_ps(sum, zp_exp512(_mm512_sub_ps(_mm512_loadu_ps(lg + x), mv)));
	__mmask16 k = (__mmask16)((1u << (V - x)) - 1);
	sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, zp_exp512(_mm512_sub_ps(
						 _mm512_maskz_loadu_ps(k, lg + x), mv))));
	return m + logf(_mm512_reduce_add_ps(sum));
}

float zp_ops_logsumexp(const float *lg, int V)
{
	if (zp_cpu_avx512())
		return logsumexp_avx512(lg, V);
	float m = -FLT_MAX, sum = 0;
	for (int x = 0; x < V; x++)
		m = fmaxf(m, lg[x]);
	for (int x = 0; x < V; x++)
		sum += expf(lg[x] - m);
	return m + logf(sum);
}

void zp_ops_top_k(const float *lg, int V, float lse, int k, int32_t *ids, float *lp)
{
	int n = 0;
	for (int v = 0; v < V; v++) {
		if (n == k && !(lg[v] > lg[ids[n - 1]]))
			continue;
		int j = n < k ? n++ : k - 1;
		while (j > 0 && lg[v] > lg[ids[j - 1]]) { /* ties keep the lower id first */
			ids[j] = ids[j - 1];
			j--;
		}
		ids[j] = v;
	}
	for (int i = 0; i < k; i++)
		lp[i] = lg[ids[i]] - lse;
}
