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
#include "ckpt_edit.h"
#include "device.h"
#include "model.h"

/* Rewrite a safetensors file's header through fn, keeping the data section. */
static void edit_header(const char *file, void (*fn)(cJSON *h))
{
	struct ckpt_st st;
	ckpt_st_open(&st, file);
	fn(st.h);
	ckpt_st_save(&st, true);
}

static void expect_fail(const char *what, const char *needle1, const char *needle2)
{
	ckpt_expect_fail(ZP_W_F32, what, needle1, needle2);
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
	ckpt_path(p, file);
	stat(p, &sb);
	ZP_ASSERT(truncate(p, sb.st_size - (off_t)cut) == 0);
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
	snprintf(ckpt_dir, sizeof ckpt_dir, "/tmp/zp-test-ckpt-%d", (int)getpid());
	test_cancel();

	ckpt_copy("odd");
	ckpt_path(p, "config.json");
	unlink(p);
	expect_fail("missing config.json", "config.json", "No such file");

	ckpt_copy("odd");
	ckpt_path(p, "model.safetensors");
	unlink(p);
	expect_fail("no weights", "neither model.safetensors", NULL);

	ckpt_copy("odd");
	truncate_file("model.safetensors", 100);
	expect_fail("truncated file", "truncated", "model.safetensors");

	ckpt_copy("odd");
	truncate_file("model.safetensors", 0);
	ckpt_path(p, "model.safetensors");
	ckpt_spit(p, "\xff\xff\xff\xff\xff\xff\x00\x00{}", 10);
	expect_fail("header length past end", "header length", "model.safetensors");

	ckpt_copy("odd");
	ckpt_path(p, "model.safetensors");
	ckpt_spit(p, "\x08\x00\x00\x00\x00\x00\x00\x00not json", 16);
	expect_fail("header not JSON", "not a JSON object", "model.safetensors");

	ckpt_copy("odd");
	ckpt_path(p, "model.safetensors");
	ckpt_spit(p, "\x04\x00\x00", 3);
	expect_fail("file of 3 bytes", "too short", "model.safetensors");

	ckpt_copy("odd");
	edit_header("model.safetensors", rename_norm);
	expect_fail("misnamed tensor", "model.norm.weight", "missing");

	ckpt_copy("odd");
	edit_header("model.safetensors", reshape_q);
	expect_fail("mis-shaped tensor", "model.layers.1.self_attn.q_proj.weight", "shape [72,96]");

	ckpt_copy("odd");
	edit_header("model.safetensors", bad_dtype);
	expect_fail("unknown dtype", "model.layers.0.mlp.gate.weight", "unknown dtype");

	ckpt_copy("odd");
	edit_header("model.safetensors", int_dtype);
	expect_fail("integer dtype", "model.layers.0.mlp.gate.weight", "dtype I16");

	ckpt_copy("odd");
	edit_header("model.safetensors", bad_offsets);
	expect_fail("offsets vs shape", "model.layers.0.input_layernorm.weight", "bytes for a");

	ckpt_copy("odd");
	edit_header("model.safetensors", huge_offsets);
	expect_fail("offsets past the end", "model.norm.weight", "past the end");

	ckpt_copy("odd");
	edit_header("model.safetensors", neg_shape);
	expect_fail("negative shape", "model.norm.weight", "bad shape");

	ckpt_copy("odd");
	ckpt_edit_text("config.json", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
	expect_fail("heads not multiple of kv", "num_key_value_heads", NULL);

	ckpt_copy("odd");
	ckpt_edit_text("config.json", "Qwen3MoeForCausalLM", "LlamaForCausalLM");
	expect_fail("unsupported architecture", "LlamaForCausalLM", "not supported");

	ckpt_copy("odd");
	ckpt_edit_text("config.json", "\"hidden_size\": 72", "\"hidden_size\": \"72\"");
	expect_fail("config wrong type", "hidden_size", NULL);

	ckpt_copy("odd");
	ckpt_edit_text("config.json", "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\"}");
	expect_fail("unsupported rope scaling", "yarn", NULL);

	ckpt_copy("tied-sharded");
	ckpt_path(p, "model-00002-of-00003.safetensors");
	unlink(p);
	expect_fail("missing shard", "model-00002-of-00003.safetensors", "No such file");

	ckpt_copy("tied-sharded");
	ckpt_edit_text("model.safetensors.index.json", "model-00003-of-00003", "../../etc/passwd");
	expect_fail("index path traversal", "bad file name", NULL);

	ckpt_copy("tied-sharded");
	ckpt_edit_text("model.safetensors.index.json", "\"model.norm.weight\": \"model-00003-of-00003",
		  "\"model.norm.weight\": \"model-00001-of-00003");
	expect_fail("index names wrong shard", "model.norm.weight", "index says");

	ckpt_copy("tied-sharded");
	ckpt_edit_text("model.safetensors.index.json", "weight_map", "weight_mop");
	expect_fail("index without weight_map", "weight_map", NULL);

	ckpt_copy("tied-sharded");
	truncate_file("model-00003-of-00003.safetensors", 1);
	expect_fail("truncated shard", "model-00003-of-00003.safetensors", "truncated");

	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf %s", ckpt_dir);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_checkpoint");
}
