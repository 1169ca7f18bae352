/* test_config.c -- config.json parsing on the real Qwen3-30B-A3B shapes (the
   config-only preset of tools/gen_model.py) and on hand-written variants: every
   field that changes the math is read, defaults apply where a field is absent,
   and the per-layer FLOPs follow DESIGN.md section 4. */
#include <string.h>

#include "check.h"
#include "config.h"
#include "device.h"
#include "model.h"

static int parse(zp_config *c, const char *json, zp_err *e)
{
	return zp_config_parse(c, json, strlen(json), e);
}

int main(void)
{
	zp_config c;
	zp_err e;

	CHECK(zp_config_load(&c, "tests/models/qwen3-30b-a3b-config", &e) == 0, "%s", e.msg);
	CHECK(c.moe && c.hidden == 2048 && c.layers == 48 && c.heads == 32 && c.kv_heads == 4,
	      "30B shapes");
	CHECK(c.head_dim == 128 && c.heads * c.head_dim != c.hidden, "head_dim from config");
	CHECK(c.experts == 128 && c.topk == 8 && c.moe_ffn == 768 && c.vocab == 151936, "30B MoE");
	CHECK(c.norm_topk_prob && c.rope_theta == 1000000.0f && c.rms_eps == 1e-6f, "30B consts");
	for (int l = 0; l < c.layers; l++)
		CHECK(c.sparse[l], "layer %d sparse", l);
	/* 2H(Nq d + 2 Nkv d) + 2 Nq d H + 2 H E + 2 k 3 H F' */
	double want = 2.0 * 2048 * (32 * 128 + 2 * 4 * 128) + 2.0 * 32 * 128 * 2048 +
		      2.0 * 2048 * 128 + 2.0 * 8 * 3 * 2048 * 768;
	CHECK(zp_config_layer_flops(&c, 0) == want, "flops %g vs %g", zp_config_layer_flops(&c, 0),
	      want);

	/* Qwen3-235B-A22B: one layer's experts = 2.42 G parameters, 4.83 GB bf16
	   (DESIGN.md section 1), in the packed layout the loader uses */
	CHECK(zp_config_load(&c, "tests/models/qwen3-235b-a22b-config", &e) == 0, "%s", e.msg);
	CHECK(c.layers == 94 && c.hidden == 4096 && c.heads == 64 && c.kv_heads == 4 &&
	      c.experts == 128 && c.moe_ffn == 1536, "235B shapes");
	size_t layer_bytes = zp_model_expert_bytes(&c, ZP_W_BF16, ZP_WS_PLAIN, zp_device_layout(ZP_DEV_CPU)) * (size_t)c.experts;
	CHECK(layer_bytes == 128ull * 3 * 4096 * 1536 * 2, "235B expert block %zu bytes", layer_bytes);
	printf("qwen3-235b-a22b: %.2f GB of bf16 experts per layer\n", layer_bytes / 1e9);

	const char *base = "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"hidden_size\":64,"
			   "\"num_hidden_layers\":6,\"num_attention_heads\":4,"
			   "\"intermediate_size\":96,\"vocab_size\":100,\"num_experts\":8,"
			   "\"num_experts_per_tok\":2,\"moe_intermediate_size\":32";
	char buf[1024];
	snprintf(buf, sizeof buf, "%s,\"decoder_sparse_step\":3,\"mlp_only_layers\":[5]}", base);
	CHECK(parse(&c, buf, &e) == 0, "%s", e.msg);
	CHECK(!c.sparse[0] && !c.sparse[1] && c.sparse[2] && !c.sparse[3] && !c.sparse[4] &&
	      !c.sparse[5], "decoder_sparse_step 3 + mlp_only_layers [5]");
	CHECK(c.kv_heads == 4 && c.head_dim == 16 && !c.norm_topk_prob && !c.tie_embeddings &&
	      c.rope_theta == 10000.0f, "defaults");
	/* found by fuzz_config: a value that is 0 or Inf as a float is refused */
	snprintf(buf, sizeof buf, "%s,\"rms_norm_eps\":1e-56}", base);
	CHECK(parse(&c, buf, &e) == -1 && strstr(e.msg, "rms_norm_eps"), "rms_norm_eps 1e-56 (0 "
	      "as a float) accepted: eps %g", (double)c.rms_eps);
	snprintf(buf, sizeof buf, "%s,\"rope_theta\":1e300}", base);
	CHECK(parse(&c, buf, &e) == -1 && strstr(e.msg, "rope_theta"), "rope_theta 1e300 (Inf as "
	      "a float) accepted");
	snprintf(buf, sizeof buf, "%s,\"rms_norm_eps\":1e-40}", base); /* subnormal: still > 0 */
	CHECK(parse(&c, buf, &e) == 0 && c.rms_eps > 0, "rms_norm_eps 1e-40: %s", e.msg);
	snprintf(buf, sizeof buf, "%s,\"rope_parameters\":{\"rope_theta\":5e5,\"rope_type\":\"default\"},"
		 "\"tie_word_embeddings\":true,\"attention_bias\":true,\"head_dim\":24}", base);
	CHECK(parse(&c, buf, &e) == 0, "%s", e.msg);
	CHECK(c.rope_theta == 5e5f && c.tie_embeddings && c.attention_bias && c.head_dim == 24,
	      "rope_parameters (transformers 5), tie, bias, head_dim");
	snprintf(buf, sizeof buf, "%s,\"mlp_only_layers\":[6]}", base);
	CHECK(parse(&c, buf, &e) == -1 && strstr(e.msg, "mlp_only_layers"), "layer index range");
	CHECK(parse(&c, "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"hidden_size\":64,"
		  "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"intermediate_size\":96,"
		  "\"vocab_size\":100,\"num_experts\":8,\"num_experts_per_tok\":9,"
		  "\"moe_intermediate_size\":32}", &e) == -1 && strstr(e.msg, "num_experts_per_tok"),
	      "top-k > experts");
	snprintf(buf, sizeof buf, "%s,\"hidden_act\":\"gelu\"}", base);
	CHECK(parse(&c, buf, &e) == -1 && strstr(e.msg, "silu"), "activation");
	snprintf(buf, sizeof buf, "%s,\"head_dim\":15}", base);
	CHECK(parse(&c, buf, &e) == -1 && strstr(e.msg, "even"), "odd head_dim");
	snprintf(buf, sizeof buf, "%s} trailing", base);
	CHECK(parse(&c, buf, &e) == -1, "trailing garbage");
	CHECK(parse(&c, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":8,"
		  "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":8,"
		  "\"vocab_size\":10}", &e) == 0 && !c.moe && !c.sparse[0], "dense Qwen3: %s", e.msg);
	return check_exit("test_config");
}
