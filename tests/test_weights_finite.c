/* test_weights_finite.c -- a NaN or Inf anywhere in a checkpoint (a norm
   weight, an expert, the embedding, lm_head; bf16, f16 and f32 files) fails
   the load with an error naming the tensor and the element; the untouched
   checkpoints still load. Prints what the scan costs: each tests/models load,
   and the scan's rate over 1 GiB of bf16, with the estimate for Qwen3-30B-A3B
   (61 GB of bf16 weights). Each case copies a committed model to a temporary
   directory and writes one value into its safetensors data. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "device.h"
#include "model.h"

static char tmp[256];

/* Element at (from the end when < 0) of tensor name in tmp/file: a NaN or
   an Inf of the tensor's own dtype. The tensor's dtype name is returned. */
static const char *poke(const char *file, const char *name, long at, bool nan)
{
	char p[512];
	size_t len;
	uint64_t hlen;
	static char dt[16];
	snprintf(p, sizeof p, "%s/%s", tmp, file);
	char *b = check_slurp(p, &len);
	ZP_ASSERT(b);
	memcpy(&hlen, b, 8);
	cJSON *h = cJSON_ParseWithLength(b + 8, hlen);
	cJSON *t = cJSON_GetObjectItem(h, name);
	ZP_ASSERT(t);
	snprintf(dt, sizeof dt, "%s", cJSON_GetObjectItem(t, "dtype")->valuestring);
	cJSON *o = cJSON_GetObjectItem(t, "data_offsets");
	size_t lo = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
	size_t hi = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
	char *data = b + 8 + hlen;
	if (!strcmp(dt, "F32")) {
		uint32_t v = nan ? 0x7fc00000u : 0xff800000u;
		size_t n = (hi - lo) / 4, i = at < 0 ? n + (size_t)at : (size_t)at;
		memcpy(data + lo + 4 * i, &v, 4);
	} else {
		ZP_ASSERT(!strcmp(dt, "BF16") || !strcmp(dt, "F16"));
		uint16_t v = !strcmp(dt, "BF16") ? (nan ? 0x7fc1 : 0x7f80) : (nan ? 0x7e01 : 0xfc00);
		size_t n = (hi - lo) / 2, i = at < 0 ? n + (size_t)at : (size_t)at;
		memcpy(data + lo + 2 * i, &v, 2);
	}
	FILE *f = fopen(p, "wb");
	ZP_ASSERT(f && fwrite(b, 1, len, f) == len);
	fclose(f);
	cJSON_Delete(h);
	free(b);
	return dt;
}

static void copy_model(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/models/%s %s", tmp, name, tmp);
	ZP_ASSERT(system(cmd) == 0);
}

static void bad_value(const char *model, const char *name, long at, bool nan, const char *elem)
{
	copy_model(model);
	const char *dt = poke("model.safetensors", name, at, nan);
	zp_model m;
	zp_err e = { "" };
	int rc = zp_model_load(&m, tmp, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e);
	CHECK(rc == -1, "%s %s: a %s loaded", model, name, nan ? "NaN" : "Inf");
	if (rc == 0) {
		zp_model_free(&m);
		return;
	}
	CHECK(strstr(e.msg, name) && strstr(e.msg, "not finite") && strstr(e.msg, elem),
	      "%s: error \"%s\" does not name the tensor and element %s", model, e.msg, elem);
	printf("%-8s %-5s %-4s -> %s\n", model, dt, nan ? "NaN" : "Inf", e.msg);
}

/* Every committed model still loads; the time each load takes, scan included. */
static void good_loads(void)
{
	static const char *const models[] = { "odd", "odd-f16", "dense-f32", "hd64", "tiny-tok",
					      "tied-sharded", "sparse-step" };
	for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
		char dir[128];
		snprintf(dir, sizeof dir, "tests/models/%s", models[i]);
		zp_model m;
		zp_err e = { "" };
		double t0 = zp_now_s();
		int rc = zp_model_load(&m, dir, ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e);
		double ms = (zp_now_s() - t0) * 1e3;
		CHECK(rc == 0, "%s: %s", dir, e.msg);
		if (rc == 0) {
			printf("load %-12s %.2f ms (every value scanned)\n", models[i], ms);
			zp_model_free(&m);
		}
	}
}

/* The scan's rate over 1 GiB of bf16 in memory (what packing reads anyway). */
static void scan_rate(void)
{
	size_t n = (size_t)1 << 29;
	uint16_t *v = zp_xalloc_aligned(n * 2);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint16_t)(0x3c00 + (i & 0x3ff));
	zp_st_tensor t = { .name = "scan", .dtype = ZP_DT_BF16, .ndim = 1, .shape = { (int64_t)n },
			   .nbytes = n * 2, .data = v };
	double t0 = zp_now_s();
	int64_t at = zp_model_nonfinite_at(&t);
	double s = zp_now_s() - t0;
	CHECK(at == -1, "clean buffer: hit at %lld", (long long)at);
	v[n - 7] = 0xff80;
	CHECK(zp_model_nonfinite_at(&t) == (int64_t)(n - 7), "-Inf near the end found");
	printf("scan: 1 GiB bf16 in %.3f s (%.1f GB/s, one core); Qwen3-30B-A3B's 61 GB: about "
	       "%.1f s on one core, spread over the packing threads for the experts\n", s,
	       1.073741824 / s, 61.0 / (1.073741824 / s));
	zp_free_aligned(v);
}

int main(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/zp-finite-%d", (int)getpid());
	bad_value("odd", "model.layers.1.post_attention_layernorm.weight", 5, true, "element 5");
	bad_value("odd", "model.layers.0.mlp.experts.3.down_proj.weight", -1, false, "element");
	bad_value("odd", "model.norm.weight", 0, true, "element 0");
	bad_value("odd-f16", "model.embed_tokens.weight", 1234, false, "element 1234");
	bad_value("dense-f32", "lm_head.weight", 77, true, "element 77");
	bad_value("dense-f32", "model.layers.1.mlp.down_proj.weight", -3, false, "element");
	good_loads();
	scan_rate();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	if (system(cmd))
		return 1;
	return check_exit("test_weights_finite");
}
