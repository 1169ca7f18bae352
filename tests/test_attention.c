/* test_attention.c -- the vector attention kernel against its scalar reference
   (double sums) on odd shapes: head_dim 16, 40, 128, 136; sequence lengths 1, 17,
   70, 300; GQA groups of 1, 3, 4. The same queries split into different blocks
   must give bit-identical outputs (a query never depends on its block). */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "check.h"
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

int main(void)
{
	static const int ds[] = { 16, 40, 128, 136 }, lens[] = { 1, 17, 70, 300 };
	static const int groups[][2] = { { 1, 1 }, { 6, 2 }, { 8, 2 } };
	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < 4; j++)
			for (size_t g = 0; g < 3; g++)
				one(ds[i], groups[g][0], groups[g][1], lens[j]);
	return check_exit("test_attention");
}
