/* test_attention.c -- the vector attention kernel against its scalar reference
   (double sums) on odd shapes: head_dim 16, 40, 128, 136; sequence lengths 1, 17,
   70, 300; GQA groups of 1, 3, 4. The same queries split into different blocks
   must give bit-identical outputs (a query never depends on its block). */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "check.h"
#include "gemm.h"
#include "util.h"

static float frand(void)
{
	return check_frand(-2.0f, 2.0f);
}

static void one(int d, int heads, int kvh, int len)
{
	size_t ld = (size_t)(heads + 2 * kvh) * d + 3, ldo = (size_t)heads * d + 5;
	int pre = 5; /* rows of another sequence before this one: must not be read */
	float *qkv = malloc((size_t)(len + pre) * ld * sizeof(float));
	float *out = malloc((size_t)(len + pre) * ldo * sizeof(float));
	float *out2 = malloc((size_t)(len + pre) * ldo * sizeof(float));
	float *ref = malloc((size_t)(len + pre) * ldo * sizeof(float));
	zp_attn shape = { .heads = heads, .kv_heads = kvh, .d = d };
	float *scratch = zp_xalloc_aligned(zp_attn_scratch_floats(&shape, len, len) * sizeof(float));

	for (size_t i = 0; i < (size_t)(len + pre) * ld; i++)
		qkv[i] = i < (size_t)pre * ld ? NAN : frand();
	for (size_t i = 0; i < (size_t)(len + pre) * ldo; i++)
		out[i] = out2[i] = ref[i] = -7.0f;
	size_t ldk = (size_t)len + pre + 16 + 3;
	float *kt = calloc((size_t)kvh * d * ldk, sizeof(float));
	zp_attn a = { qkv, ld, heads, kvh, d, out, ldo, kt, ldk };
	zp_attn_transpose_k(&a, pre, pre + len);
	for (int g = 0; g < kvh; g++)
		zp_attn_block(&a, pre, g, 0, len, scratch);
	a.out = out2; /* the same queries in blocks of 7 */
	for (int g = 0; g < kvh; g++)
		for (int q = 0; q < len; q += 7)
			zp_attn_block(&a, pre, g, q, ZP_MIN(q + 7, len), scratch);
	a.out = ref;
	for (int h = 0; h < heads; h++)
		for (int q = 0; q < len; q++)
			zp_attn_ref(&a, pre, h, q);
	double maxd = 0;
	for (int q = 0; q < len; q++)
		for (int i = 0; i < heads * d; i++) {
			size_t at = (size_t)(pre + q) * ldo + i;
			double diff = fabs(out[at] - ref[at]);
			maxd = fmax(maxd, diff);
			CHECK(isfinite(out[at]) && diff <= 2e-5 * (1 + fabs(ref[at])),
			      "d=%d heads=%d/%d len=%d q=%d i=%d: %g vs %g", d, heads, kvh, len, q, i,
			      out[at], ref[at]);
			CHECK(out[at] == out2[at], "d=%d len=%d q=%d: block split changed the result", d,
			      len, q);
		}
	for (size_t i = 0; i < (size_t)pre * ldo; i++)
		CHECK(out[i] == -7.0f, "wrote outside the sequence");
	printf("d=%-3d heads=%d kv=%d len=%-3d max|diff|=%.2e\n", d, heads, kvh, len, maxd);
	free(qkv);
	free(out);
	free(out2);
	free(ref);
	zp_free_aligned(scratch);
	free(kt);
}

/* bf16 on AMX: against the f32 reference at bf16 accuracy, and bit-identical
   whatever the sequence's row and key slot (its place in a batch). */
static void one16(int d, int heads, int kvh, int len)
{
	size_t ld = (size_t)(heads + 2 * kvh) * d, ldo = (size_t)heads * d;
	int pre[2] = { 3, 40 };
	size_t ks0[2] = { 0, 96 };
	int rows = len + 40 + 32;
	float *qkv = calloc((size_t)rows * ld, sizeof(float));
	float *out[2], *ref = calloc((size_t)rows * ldo, sizeof(float));
	uint16_t *q16 = calloc((size_t)rows * ldo, 2);
	void *scratch = zp_xalloc_aligned(zp_attn16_scratch_bytes(len));
	zp_attn16 a = { heads, kvh, d, q16, ldo, NULL, NULL, 0, NULL, ldo };

	a.slots = (size_t)ZP_ALIGN_UP(len, 32) + 128;
	a.kp = zp_xalloc_aligned((size_t)kvh * a.slots * d * 2);
	a.vp = zp_xalloc_aligned((size_t)kvh * a.slots * d * 2);
	for (int v = 0; v < 2; v++) { /* the same sequence at two places */
		out[v] = calloc((size_t)rows * ldo, sizeof(float));
		for (int t = 0; t < len; t++)
			for (size_t i = 0; i < ld; i++) {
				float x = (float)sin(1.7 * t + 0.37 * (double)i) * 2.0f;
				qkv[(size_t)(pre[v] + t) * ld + i] = x;
			}
		for (int t = 0; t < len; t++) {
			const float *row = qkv + (size_t)(pre[v] + t) * ld;
			for (size_t i = 0; i < ldo; i++)
				q16[(size_t)(pre[v] + t) * ldo + i] = zp_f32_to_bf16(row[i]);
			zp_attn16_pack(&a, row, ks0[v] + (size_t)t);
		}
		zp_attn16_clear(&a, ks0[v] + (size_t)len, ks0[v] + ZP_ALIGN_UP((size_t)len, 32));
		a.out = out[v];
		for (int g = 0; g < kvh; g++)
			for (int q = 0; q < len; q += 32)
				zp_attn16_block(&a, pre[v], ks0[v], g, q, ZP_MIN(q + 32, len), scratch);
	}
	zp_attn r = { qkv, ld, heads, kvh, d, ref, ldo, NULL, 0 };
	for (int h = 0; h < heads; h++)
		for (int q = 0; q < len; q++)
			zp_attn_ref(&r, pre[1], h, q);
	double maxd = 0;
	for (int q = 0; q < len; q++)
		for (size_t i = 0; i < ldo; i++) {
			float g0 = out[0][(size_t)(pre[0] + q) * ldo + i];
			float g1 = out[1][(size_t)(pre[1] + q) * ldo + i];
			float w = ref[(size_t)(pre[1] + q) * ldo + i];
			maxd = fmax(maxd, fabs(g1 - w));
			CHECK(isfinite(g1) && fabs(g1 - w) <= 3e-2 * (1 + fabs(w)),
			      "bf16 d=%d len=%d q=%d i=%zu: %g vs %g", d, len, q, i, g1, w);
			CHECK(g0 == g1, "bf16 d=%d len=%d q=%d: depends on the sequence's place", d, len,
			      q);
		}
	printf("bf16/AMX d=%-3d heads=%d kv=%d len=%-3d max|diff|=%.2e\n", d, heads, kvh, len, maxd);
	free(qkv);
	free(ref);
	free(q16);
	free(out[0]);
	free(out[1]);
	zp_free_aligned(scratch);
	zp_free_aligned(a.kp);
	zp_free_aligned(a.vp);
}

int main(void)
{
	static const int ds[] = { 16, 40, 128, 136 }, lens[] = { 1, 17, 70, 300 };
	static const int groups[][2] = { { 1, 1 }, { 6, 2 }, { 8, 2 } };
	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < 4; j++)
			for (size_t g = 0; g < 3; g++)
				one(ds[i], groups[g][0], groups[g][1], lens[j]);
	if (zp_gemm_amx()) {
		static const int d16[] = { 32, 64, 128 }, len16[] = { 1, 31, 33, 100 };
		for (size_t i = 0; i < 3; i++)
			for (size_t j = 0; j < 4; j++)
				one16(d16[i], 8, 2, len16[j]);
		one16(128, 64, 4, 45); /* Qwen3-235B-A22B's attention shape */
	} else {
		printf("bf16/AMX attention: no AMX on this CPU, not tested\n");
	}
	return check_exit("test_attention");
}
