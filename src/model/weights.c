/* weights.c -- see weights.h. */
#include "weights.h"

#include <string.h>

#include "safetensors.h"
#include "util.h"

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
