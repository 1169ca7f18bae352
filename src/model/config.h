/* config.h -- the model hyper-parameters read from a Hugging Face config.json
   (Qwen3MoeForCausalLM or dense Qwen3ForCausalLM). Only fields that change the
   math are kept; an unsupported setting is an error, never silently ignored.
   Read once at load; immutable afterwards (any thread may read). */
#ifndef ZP_CONFIG_H
#define ZP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define ZP_LAYERS_MAX 256

typedef struct {
	bool moe;		/* Qwen3MoeForCausalLM; false: dense Qwen3ForCausalLM */
	int hidden;		/* H */
	int layers;
	int heads;		/* Nq */
	int kv_heads;		/* Nkv */
	int head_dim;		/* d: from config, not H / Nq */
	int ffn;		/* intermediate_size: dense MLP width */
	int moe_ffn;		/* moe_intermediate_size: expert width */
	int experts;		/* E (0 when dense) */
	int topk;		/* num_experts_per_tok */
	bool norm_topk_prob;
	int decoder_sparse_step;
	bool sparse[ZP_LAYERS_MAX]; /* per layer: MoE block, else dense MLP */
	int vocab;
	float rms_eps;
	float rope_theta;
	bool tie_embeddings;
	bool attention_bias;
	int max_positions;
	/* quantization_config: quant_method "fp8" (fmt e4m3, weight_block_size
	   [128, 128]): the linears of attention and of every MLP and expert are
	   F8_E4M3 with W_scale_inv block scales (weights.h), except those a
	   modules_to_not_convert entry names (which the loader finds in the
	   checkpoint's dtypes). Any other quant_method is refused. */
	bool fp8;
} zp_config;

/* Parse config.json text. 0, or -1 with e set. */
int zp_config_parse(zp_config *c, const char *json, size_t len, zp_err *e);
/* Read dir/config.json. */
int zp_config_load(zp_config *c, const char *dir, zp_err *e);

/* Per-token, per-layer FLOPs of the linear parts (DESIGN.md section 4) and
   total parameters of one layer's experts. */
double zp_config_layer_flops(const zp_config *c, int layer);

#endif
