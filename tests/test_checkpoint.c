/* test_checkpoint.c -- bad checkpoints: each gets a clear error that names the
   tensor and/or file, and the process does not crash. Each case copies the
   committed tests/models/odd (or tied-sharded) to a temporary directory, breaks
   one thing, and loads it. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "device.h"
#include "model.h"

static char tmp[256];

static void spit(const char *path, const void *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	ZP_ASSERT(f && fwrite(b, 1, n, f) == n);
	fclose(f);
}

static void copy_model(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/models/%s %s", tmp, name, tmp);
	ZP_ASSERT(system(cmd) == 0);
}

static void path(char *out, const char *file)
{
	snprintf(out, 512, "%s/%s", tmp, file);
}

/* Rewrite a safetensors file's header through fn, keeping the data section. */
static void edit_header(const char *file, void (*fn)(cJSON *h))
{
	char p[512];
	size_t len;
	uint64_t hlen;
	path(p, file);
	char *b = check_slurp(p, &len);
	memcpy(&hlen, b, 8);
	cJSON *h = cJSON_ParseWithLength(b + 8, hlen);
	fn(h);
	char *txt = cJSON_PrintUnformatted(h);
	uint64_t nh = strlen(txt);
	FILE *f = fopen(p, "wb");
	fwrite(&nh, 8, 1, f);
	fwrite(txt, 1, nh, f);
	fwrite(b + 8 + hlen, 1, len - 8 - hlen, f);
	fclose(f);
	free(txt);
	cJSON_Delete(h);
	free(b);
}

static void expect_fail(const char *what, const char *needle1, const char *needle2)
{
	zp_model m;
	zp_err e = { "" };
	int rc = zp_model_load(&m, tmp, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e);
	CHECK(rc == -1, "%s: load succeeded", what);
	if (rc == 0) {
		zp_model_free(&m);
		return;
	}
	CHECK(strstr(e.msg, needle1) != NULL, "%s: error \"%s\" lacks \"%s\"", what, e.msg, needle1);
	if (needle2)
		CHECK(strstr(e.msg, needle2) != NULL, "%s: error \"%s\" lacks \"%s\"", what, e.msg,
		      needle2);
	printf("%-28s -> %s\n", what, e.msg);
}

static void rename_norm(cJSON *h)
{
	cJSON *t = cJSON_DetachItemFromObject(h, "model.norm.weight");
	cJSON_AddItemToObject(h, "model.norm.weightX", t);
}

static void reshape_q(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.layers.1.self_attn.q_proj.weight");
	cJSON *s = cJSON_GetObjectItem(t, "shape");
	double a = cJSON_GetArrayItem(s, 0)->valuedouble, b = cJSON_GetArrayItem(s, 1)->valuedouble;
	cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), b);
	cJSON_SetNumberValue(cJSON_GetArrayItem(s, 1), a);
}

static void bad_dtype(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.layers.0.mlp.gate.weight");
	cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("Q4_K"));
}

static void int_dtype(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.layers.0.mlp.gate.weight");
	cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("I16")); /* same size as BF16 */
}

static void bad_offsets(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.layers.0.input_layernorm.weight");
	cJSON *o = cJSON_GetObjectItem(t, "data_offsets");
	cJSON_SetNumberValue(cJSON_GetArrayItem(o, 1), cJSON_GetArrayItem(o, 1)->valuedouble - 2);
}

static void huge_offsets(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.norm.weight");
	cJSON *o = cJSON_GetObjectItem(t, "data_offsets");
	cJSON_SetNumberValue(cJSON_GetArrayItem(o, 0), 1e15);
	cJSON_SetNumberValue(cJSON_GetArrayItem(o, 1), 1e15 + 144);
}

static void neg_shape(cJSON *h)
{
	cJSON *t = cJSON_GetObjectItem(h, "model.norm.weight");
	cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(t, "shape"), 0), -72);
}

static void truncate_file(const char *file, size_t cut)
{
	char p[512];
	struct stat sb;
	path(p, file);
	stat(p, &sb);
	ZP_ASSERT(truncate(p, sb.st_size - (off_t)cut) == 0);
}

static void edit_text(const char *file, const char *from, const char *to)
{
	char p[512];
	size_t len;
	path(p, file);
	char *b = check_slurp(p, &len), *at = strstr(b, from);
	ZP_ASSERT(at);
	size_t nf = strlen(from), nt = strlen(to);
	char *o = malloc(len - nf + nt + 1);
	memcpy(o, b, (size_t)(at - b));
	memcpy(o + (at - b), to, nt);
	memcpy(o + (at - b) + nt, at + nf, len - (size_t)(at - b) - nf);
	spit(p, o, len - nf + nt);
	free(o);
	free(b);
}

/* A load cancelled (the server got SIGTERM while loading) fails cleanly after
   the first layer, with nothing left allocated (ASAN checks), and the progress
   it reported is that layer. */
static void test_cancel(void)
{
	zp_model m;
	zp_err e;
	zp_load_progress pr = { 0 };
	atomic_store(&pr.cancel, true);
	int rc = zp_model_load(&m, "tests/models/odd", ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), 2, &pr, &e);
	CHECK(rc == -1 && strstr(e.msg, "cancelled after layer 1 of 3"), "cancel: %d %s", rc, e.msg);
	CHECK(atomic_load(&pr.layers_done) == 1 && atomic_load(&pr.layers) == 3, "progress 1/3");
	atomic_store(&pr.cancel, false);
	rc = zp_model_load(&m, "tests/models/odd", ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), 2, &pr, &e);
	CHECK(rc == 0 && atomic_load(&pr.layers_done) == 3, "load after a cancel: progress 3/3");
	if (rc == 0)
		zp_model_free(&m);
}

int main(void)
{
	char p[512];
	snprintf(tmp, sizeof tmp, "/tmp/zp-test-ckpt-%d", (int)getpid());
	test_cancel();

	copy_model("odd");
	path(p, "config.json");
	unlink(p);
	expect_fail("missing config.json", "config.json", "No such file");

	copy_model("odd");
	path(p, "model.safetensors");
	unlink(p);
	expect_fail("no weights", "neither model.safetensors", NULL);

	copy_model("odd");
	truncate_file("model.safetensors", 100);
	expect_fail("truncated file", "truncated", "model.safetensors");

	copy_model("odd");
	truncate_file("model.safetensors", 0);
	path(p, "model.safetensors");
	spit(p, "\xff\xff\xff\xff\xff\xff\x00\x00{}", 10);
	expect_fail("header length past end", "header length", "model.safetensors");

	copy_model("odd");
	path(p, "model.safetensors");
	spit(p, "\x08\x00\x00\x00\x00\x00\x00\x00not json", 16);
	expect_fail("header not JSON", "not a JSON object", "model.safetensors");

	copy_model("odd");
	path(p, "model.safetensors");
	spit(p, "\x04\x00\x00", 3);
	expect_fail("file of 3 bytes", "too short", "model.safetensors");

	copy_model("odd");
	edit_header("model.safetensors", rename_norm);
	expect_fail("misnamed tensor", "model.norm.weight", "missing");

	copy_model("odd");
	edit_header("model.safetensors", reshape_q);
	expect_fail("mis-shaped tensor", "model.layers.1.self_attn.q_proj.weight", "shape [72,96]");

	copy_model("odd");
	edit_header("model.safetensors", bad_dtype);
	expect_fail("unknown dtype", "model.layers.0.mlp.gate.weight", "unknown dtype");

	copy_model("odd");
	edit_header("model.safetensors", int_dtype);
	expect_fail("integer dtype", "model.layers.0.mlp.gate.weight", "dtype I16");

	copy_model("odd");
	edit_header("model.safetensors", bad_offsets);
	expect_fail("offsets vs shape", "model.layers.0.input_layernorm.weight", "bytes for a");

	copy_model("odd");
	edit_header("model.safetensors", huge_offsets);
	expect_fail("offsets past the end", "model.norm.weight", "past the end");

	copy_model("odd");
	edit_header("model.safetensors", neg_shape);
	expect_fail("negative shape", "model.norm.weight", "bad shape");

	copy_model("odd");
	edit_text("config.json", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
	expect_fail("heads not multiple of kv", "num_key_value_heads", NULL);

	copy_model("odd");
	edit_text("config.json", "Qwen3MoeForCausalLM", "LlamaForCausalLM");
	expect_fail("unsupported architecture", "LlamaForCausalLM", "not supported");

	copy_model("odd");
	edit_text("config.json", "\"hidden_size\": 72", "\"hidden_size\": \"72\"");
	expect_fail("config wrong type", "hidden_size", NULL);

	copy_model("odd");
	edit_text("config.json", "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\"}");
	expect_fail("unsupported rope scaling", "yarn", NULL);

	copy_model("tied-sharded");
	path(p, "model-00002-of-00003.safetensors");
	unlink(p);
	expect_fail("missing shard", "model-00002-of-00003.safetensors", "No such file");

	copy_model("tied-sharded");
	edit_text("model.safetensors.index.json", "model-00003-of-00003", "../../etc/passwd");
	expect_fail("index path traversal", "bad file name", NULL);

	copy_model("tied-sharded");
	edit_text("model.safetensors.index.json", "\"model.norm.weight\": \"model-00003-of-00003",
		  "\"model.norm.weight\": \"model-00001-of-00003");
	expect_fail("index names wrong shard", "model.norm.weight", "index says");

	copy_model("tied-sharded");
	edit_text("model.safetensors.index.json", "weight_map", "weight_mop");
	expect_fail("index without weight_map", "weight_map", NULL);

	copy_model("tied-sharded");
	truncate_file("model-00003-of-00003.safetensors", 1);
	expect_fail("truncated shard", "model-00003-of-00003.safetensors", "truncated");

	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_checkpoint");
}
