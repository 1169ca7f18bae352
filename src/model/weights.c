/* weights.c -- see weights.h: row conversion for layouts, and the e4m3fn
   format's arithmetic (decode, encode, block quantisation). Pure functions. */
#include "weights.h"

#include <math.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

float zp_fp8_to_f32(uint8_t code)
{
	int e = (code >> 3) & 15, m = code & 7;
	float v;
	if ((code & 0x7f) == 0x7f)
		return NAN;
	v = e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m, -9);
	return code & 0x80 ? -v : v;
}

uint16_t zp_fp8_to_bf16(uint8_t code)
{
	return zp_f32_to_bf16(zp_fp8_to_f32(code));
}

/* Bit arithmetic (this runs for every weight of a checkpoint quantised at
   load): a normal result rounds the f32 mantissa to 3 bits to nearest even
   (a carry moves into the exponent, as it should), then rebiases 127 -> 7;
   below 2^-6 the result counts steps of 2^-9, rounded by the float adder. */
uint8_t zp_f32_to_fp8(float v)
{
	uint32_t u;
	float a = fabsf(v);
	uint8_t sign = signbit(v) ? 0x80 : 0;
	if (a > ZP_FP8_MAX)
		a = ZP_FP8_MAX;
	if (a < 0x1p-6f) {
		float f = a * 512.0f + 0x1p23f; /* exact scaling; the add rounds to even */
		memcpy(&u, &f, 4);
		return sign | (uint8_t)(u - 0x4b000000u);
	}
	memcpy(&u, &a, 4);
	u += 0x7ffffu + ((u >> 20) & 1);
	return sign | (uint8_t)((u >> 20) - ((127 - 7) << 3));
}

static float elem(const void *row, int dt, int i)
{
	uint16_t h;
	float f;
	switch (dt) {
	case ZP_DT_F32:
		memcpy(&f, (const char *)row + 4 * (size_t)i, 4);
		return f;
	case ZP_DT_BF16:
		memcpy(&h, (const char *)row + 2 * (size_t)i, 2);
		return zp_bf16_to_f32(h);
	case ZP_DT_F16:
		memcpy(&h, (const char *)row + 2 * (size_t)i, 2);
		return zp_f16_to_f32(h);
	case ZP_DT_F8_E4M3:
		return zp_fp8_to_f32(((const uint8_t *)row)[i]);
	}
	zp_panic(__FILE__, __LINE__, "packing from an unsupported dtype");
}

void zp_wrow_convert(void *dst, enum zp_wtype t, const void *src, int src_dt, int k)
{
	if (t == ZP_W_BF16 && src_dt == ZP_DT_BF16) {
		memcpy(dst, src, (size_t)k * 2);
		return;
	}
	for (int i = 0; i < k; i++) {
		float v = elem(src, src_dt, i);
		if (t == ZP_W_F32)
			((float *)dst)[i] = v;
		else
			((uint16_t *)dst)[i] = zp_f32_to_bf16(v);
	}
}

void zp_fp8_quantize(const void *const *rows, int nr, int k, int src_dt, uint8_t *codes,
		     float *scale)
{
	ZP_ASSERT(nr > 0 && nr <= ZP_FP8_BLOCK);
	for (int c0 = 0, b = 0; c0 < k; c0 += ZP_FP8_BLOCK, b++) {
		int c1 = ZP_MIN(k, c0 + ZP_FP8_BLOCK);
		float amax = 0.0f, x;
		for (int r = 0; r < nr; r++)
			for (int c = c0; c < c1; c++) {
				x = fabsf(src_dt == ZP_DT_F32 ? ((const float *)rows[r])[c]
							       : elem(rows[r], src_dt, c));
				amax = x > amax ? x : amax;
			}
		scale[b] = amax > 0.0f ? amax / ZP_FP8_MAX : 1.0f;
		for (int r = 0; r < nr; r++)
			for (int c = c0; c < c1; c++) {
				x = src_dt == ZP_DT_F32 ? ((const float *)rows[r])[c]
							: elem(rows[r], src_dt, c);
				codes[(size_t)r * k + c] = zp_f32_to_fp8(x / scale[b]);
			}
	}
}
