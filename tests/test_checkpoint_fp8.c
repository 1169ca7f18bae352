/* test_checkpoint_fp8.c -- FP8 checkpoints at load (weights.h ZP_WS_FP8):
   a malformed one fails with an error naming the tensor (missing or
   mis-shaped W_scale_inv, NaN or Inf in a scale, NaN codes 0x7f / 0xff in
   a dense weight or an expert), config.json's quantization_config is refused
   by name for any other method or block shape, F8_E4M3 tensors without it are
   refused; --dtype fp8 quantises a bf16 checkpoint into exactly the bytes of
   the generator's FP8 checkpoint of it (dense vs dense-fp8); random weights of
   an fp8 config load FP8. Each case copies a committed model to a temporary
   directory and breaks one thing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ckpt_edit.h"
#include "device.h"
#include "model.h"

/* Patch element `at` (of size es) of tensor name in file. */
static void patch(const char *file, const char *name, size_t at, size_t es, const void *v)
{
	struct ckpt_st st;
	ckpt_st_open(&st, file);
	memcpy(st.b + ckpt_st_data(&st, name) + at * es, v, es);
	ckpt_st_save(&st, false);
}

/* Rewrite one tensor's header entry: rename it, or set its shape. */
static void edit_entry(const char *file, const char *name, const char *rename, int d0, int d1)
{
	struct ckpt_st st;
	ckpt_st_open(&st, file);
	if (rename) {
		cJSON *t = cJSON_DetachItemFromObject(st.h, name);
		cJSON_AddItemToObject(st.h, rename, t);
	} else {
		cJSON *sh = cJSON_GetObjectItem(cJSON_GetObjectItem(st.h, name), "shape");
		cJSON_SetNumberValue(cJSON_GetArrayItem(sh, 0), d0);
		cJSON_SetNumberValue(cJSON_GetArrayItem(sh, 1), d1);
	}
	ckpt_st_save(&st, true);
}

static void expect_fail(const char *what, const char *needle1, const char *needle2)
{
	ckpt_expect_fail(ZP_W_BF16, what, needle1, needle2);
}

#define Q0 "model.layers.0.self_attn.q_proj.weight"
#define X3 "model.layers.2.mlp.experts.3.up_proj.weight"
#define ODD1 "model-00001-of-00003.safetensors"
#define ODD3 "model-00003-of-00003.safetensors"

static void malformed(void)
{
	static const char *methods[] = { "awq", "gptq", "compressed-tensors", "bitsandbytes" };
	float nan = NAN, inf = INFINITY;
	uint16_t bnan = 0x7fc0, binf = 0x7f80; /* BF16 scales (fp8-odd) */
	uint8_t c7f = 0x7f, cff = 0xff;
	char from[256], to[256];

	ckpt_copy("dense-fp8");
	edit_entry("model.safetensors", Q0 "_scale_inv", Q0 "_scale_inX", 0, 0);
	expect_fail("missing scale", Q0 "_scale_inv", "missing");

	ckpt_copy("fp8-odd"); /* q_proj 192 x 200: scale [2, 2] */
	edit_entry(ODD1, Q0 "_scale_inv", NULL, 4, 1);
	expect_fail("mis-shaped scale", Q0 "_scale_inv", "shape [4,1], expected [2,2]");

	ckpt_copy("dense-fp8");
	patch("model.safetensors", Q0 "_scale_inv", 0, 4, &nan);
	expect_fail("NaN scale (F32)", Q0 "_scale_inv", "not finite");

	ckpt_copy("dense-fp8");
	patch("model.safetensors", Q0 "_scale_inv", 0, 4, &inf);
	expect_fail("Inf scale (F32)", Q0 "_scale_inv", "not finite");

	ckpt_copy("fp8-odd");
	patch(ODD1, Q0 "_scale_inv", 3, 2, &binf);
	expect_fail("Inf scale (BF16)", Q0 "_scale_inv", "element 3 is not finite");

	ckpt_copy("fp8-odd");
	patch(ODD3, X3 "_scale_inv", 1, 2, &bnan);
	expect_fail("NaN scale of an expert", X3 "_scale_inv", "not finite");

	ckpt_copy("dense-fp8");
	patch("model.safetensors", Q0, 77, 1, &c7f);
	expect_fail("NaN code 0x7f", Q0, "element 77 is not finite");

	ckpt_copy("fp8-odd");
	patch(ODD3, X3, 1000, 1, &cff);
	expect_fail("NaN code 0xff in an expert", X3, "element 1000 is not finite");

	ckpt_copy("dense-fp8");
	ckpt_edit_text("config.json", "\"quant_method\": \"fp8\"", "\"quant_method\": \"fp8\", \"x\": 0");
	ckpt_edit_text("config.json", "\"quantization_config\"", "\"no_quantization_config\"");
	expect_fail("F8_E4M3 without its config", "model.layers.0.self_attn.q_proj.weight",
		    "no fp8 quantization_config");

	for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
		ckpt_copy("dense-fp8");
		snprintf(to, sizeof to, "\"quant_method\": \"%s\"", methods[i]);
		ckpt_edit_text("config.json", "\"quant_method\": \"fp8\"", to);
		snprintf(from, sizeof from, "quant_method %s", methods[i]);
		snprintf(to, sizeof to, "\"%s\" is not supported", methods[i]);
		expect_fail(from, to, NULL);
	}
	ckpt_copy("dense-fp8");
	ckpt_edit_text("config.json", "\"weight_block_size\": [\n      128,\n      128\n    ]",
		    "\"weight_block_size\": [64, 64]");
	expect_fail("64x64 blocks", "weight_block_size must be [128, 128]", NULL);

	ckpt_copy("dense-fp8");
	ckpt_edit_text("config.json", "\"fmt\": \"e4m3\"", "\"fmt\": \"e5m2\"");
	expect_fail("e5m2", "e5m2", "not supported");

	ckpt_copy("dense-fp8");
	ckpt_edit_text("config.json", "\"activation_scheme\": \"dynamic\"", "\"activation_scheme\": \"static\"");
	expect_fail("static activation scales", "activation_scheme", NULL);
}

/* --dtype fp8 on dense quantises as the generator did for dense-fp8: the
   packed weights are the same bytes (the same codes and scales). */
static void quantise_at_load(void)
{
	zp_model a, b;
	zp_err e;
	for (int wt = 0; wt < 2; wt++) {
		zp_load_opts q = { .wtype = (enum zp_wtype)wt, .fp8 = true };
		CHECK(zp_model_load_opts(&a, "tests/models/dense", &q, zp_device_layout(ZP_DEV_CPU), 2,
					 NULL, &e) == 0, "dense --dtype fp8: %s", e.msg);
		CHECK(zp_model_load(&b, "tests/models/dense-fp8", (enum zp_wtype)wt,
				    zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) == 0, "dense-fp8: %s",
		      e.msg);
		CHECK(a.fp8 && b.fp8 && a.layers[0].wqkv.store == ZP_WS_FP8 &&
		      a.layers[1].w_down.store == ZP_WS_FP8 && a.lm_head.store == ZP_WS_PLAIN,
		      "linears FP8, lm_head not");
		CHECK(a.arena_bytes == b.arena_bytes && !memcmp(a.arena, b.arena, a.arena_bytes),
		      "wt=%d: dense quantised at load differs from dense-fp8", wt);
		zp_model_free(&a);
		zp_model_free(&b);
	}
	/* MoE too: the experts of fp8-odd are FP8, half their bf16 bytes (and a bit) */
	CHECK(zp_model_load(&a, "tests/models/fp8-odd", ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), 2,
			    NULL, &e) == 0, "fp8-odd: %s", e.msg);
	size_t bf = zp_model_expert_bytes(&a.cfg, ZP_W_BF16, ZP_WS_PLAIN, zp_device_layout(ZP_DEV_CPU));
	CHECK(a.expert_store == ZP_WS_FP8 && a.layers[0].exp_gate_up[0].store == ZP_WS_FP8 &&
	      a.layers[0].expert_bytes * 2 <= bf * 1.1, "fp8-odd experts: %zu bytes vs bf16 %zu",
	      a.layers[0].expert_bytes, bf);
	zp_model_free(&a);
	/* random weights of an fp8 config are FP8 */
	CHECK(zp_model_load_random(&a, "tests/models/fp8-odd", ZP_W_BF16,
				   zp_device_layout(ZP_DEV_CPU), 2, 5, NULL, &e) == 0, "random: %s",
	      e.msg);
	CHECK(a.fp8 && a.layers[2].exp_down[5].store == ZP_WS_FP8, "random fp8 weights");
	zp_model_free(&a);
}

int main(void)
{
	snprintf(ckpt_dir, sizeof ckpt_dir, "/tmp/zp-test-ckpt-fp8-%d", (int)getpid());
	malformed();
	quantise_at_load();
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf %s", ckpt_dir);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_checkpoint_fp8");
}
