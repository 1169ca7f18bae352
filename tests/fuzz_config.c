/* fuzz_config.c -- libFuzzer target for the model's config.json parser
   (zp_config_parse, pure): any bytes give an error or a config whose shapes
   the loader and the cost model can use without overflow: every dimension
   positive and bounded, heads a multiple of kv_heads, top-k within the experts,
   the per-layer FLOPs finite and positive. */
#include <math.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	zp_config c;
	zp_err e;
	if (zp_config_parse(&c, (const char *)data, size, &e) != 0)
		return 0;
	if (c.hidden < 1 || c.layers < 1 || c.layers > ZP_LAYERS_MAX || c.heads < 1 ||
	    c.kv_heads < 1 || c.heads % c.kv_heads || c.head_dim < 1 || c.vocab < 1 ||
	    c.max_positions < 1 || !(c.rms_eps > 0) || !(c.rope_theta > 0))
		abort();
	if (c.moe && (c.experts < 1 || c.topk < 1 || c.topk > c.experts || c.moe_ffn < 1))
		abort();
	for (int l = 0; l < c.layers; l++) {
		if (c.sparse[l] && !c.moe)
			abort();
		if (!c.sparse[l] && c.ffn < 1)
			abort();
		double f = zp_config_layer_flops(&c, l);
		if (!isfinite(f) || f <= 0)
			abort();
	}
	return 0;
}
