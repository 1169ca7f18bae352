/* config.c -- see config.h. */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "weights.h"

static const cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Integer field in [lo, hi]; absent -> def (def < lo means required). */
static int get_int(const cJSON *o, const char *k, int def, int lo, int hi, int *out, zp_err *e)
{
	const cJSON *v = get(o, k);
	if (!v || cJSON_IsNull(v)) {
		if (def < lo)
			return zp_errf(e, "config.json: missing \"%s\"", k);
		*out = def;
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
	    v->valuedouble < lo || v->valuedouble > hi)
		return zp_errf(e, "config.json: \"%s\" must be an integer in [%d, %d]", k, lo, hi);
	*out = (int)v->valuedouble;
	return 0;
}

static int get_float(const cJSON *o, const char *k, double def, float *out, zp_err *e)
{
	const cJSON *v = get(o, k);
	if (!v || cJSON_IsNull(v)) {
		if (isnan(def))
			return zp_errf(e, "config.json: missing \"%s\"", k);
		*out = (float)def;
		return 0;
	}
	/* as the f32 the math uses: 1e-56 would become 0, 1e300 Inf (fuzz_config) */
	float f = cJSON_IsNumber(v) ? (float)v->valuedouble : 0.0f;
	if (!(f > 0) || isinf(f))
		return zp_errf(e, "config.json: \"%s\" must be a positive number a float holds "
			       "(%g .. %g)", k, (double)FLT_TRUE_MIN, (double)FLT_MAX);
	*out = f;
	return 0;
}

static int get_bool(const cJSON *o, const char *k, bool def, bool *out, zp_err *e)
{
	const cJSON *v = get(o, k);
	if (!v || cJSON_IsNull(v)) {
		*out = def;
		return 0;
	}
	if (!cJSON_IsBool(v))
		return zp_errf(e, "config.json: \"%s\" must be true or false", k);
	*out = cJSON_IsTrue(v);
	return 0;
}

/* rope_theta sits at the top level (transformers 4.x) or in rope_parameters
   (5.x); any scaling other than the default one changes the math: refuse it. */
static int parse_rope(zp_config *c, const cJSON *root, zp_err *e)
{
	const cJSON *rp = get(root, "rope_parameters");
	const cJSON *rs = get(root, "rope_scaling");
	const cJSON *src = cJSON_IsObject(rp) ? rp : root;
	const cJSON *scal = cJSON_IsObject(rp) ? rp : rs;

	if (get_float(src, "rope_theta", 10000.0, &c->rope_theta, e))
		return -1;
	if (cJSON_IsObject(scal)) {
		const cJSON *t = get(scal, "rope_type");
		if (!t)
			t = get(scal, "type");
		if (t && !(cJSON_IsString(t) && strcmp(t->valuestring, "default") == 0))
			return zp_errf(e, "config.json: rope scaling \"%.40s\" is not supported "
				       "(only the default RoPE)", cJSON_IsString(t) ? t->valuestring : "?");
	}
	return 0;
}

static int parse_arch(zp_config *c, const cJSON *root, zp_err *e)
{
	const cJSON *a = get(root, "architectures");
	const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
	const cJSON *act = get(root, "hidden_act");

	if (!cJSON_IsString(a0))
		return zp_errf(e, "config.json: missing \"architectures\"");
	if (strcmp(a0->valuestring, "Qwen3MoeForCausalLM") == 0)
		c->moe = true;
	else if (strcmp(a0->valuestring, "Qwen3ForCausalLM") == 0)
		c->moe = false;
	else
		return zp_errf(e, "config.json: architecture \"%.60s\" is not supported "
			       "(Qwen3MoeForCausalLM, Qwen3ForCausalLM)", a0->valuestring);
	if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
		return zp_errf(e, "config.json: hidden_act must be \"silu\"");
	if (cJSON_IsTrue(get(root, "use_sliding_window")))
		return zp_errf(e, "config.json: use_sliding_window is not supported");
	return 0;
}

static int parse_moe(zp_config *c, const cJSON *root, zp_err *e)
{
	const cJSON *mlp_only = get(root, "mlp_only_layers");
	const cJSON *it;

	if (!c->moe) {
		c->experts = c->topk = 0;
		c->decoder_sparse_step = 1;
		return 0;
	}
	if (get_int(root, "num_experts", -1, 1, 4096, &c->experts, e) ||
	    get_int(root, "num_experts_per_tok", -1, 1, c->experts, &c->topk, e) ||
	    get_int(root, "moe_intermediate_size", -1, 1, 1 << 20, &c->moe_ffn, e) ||
	    get_int(root, "decoder_sparse_step", 1, 1, 1 << 20, &c->decoder_sparse_step, e) ||
	    get_bool(root, "norm_topk_prob", false, &c->norm_topk_prob, e))
		return -1;
	for (int l = 0; l < c->layers; l++)
		c->sparse[l] = (l + 1) % c->decoder_sparse_step == 0;
	if (mlp_only && !cJSON_IsNull(mlp_only)) {
		if (!cJSON_IsArray(mlp_only))
			return zp_errf(e, "config.json: mlp_only_layers must be a list");
		cJSON_ArrayForEach(it, mlp_only) {
			double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
			if (v != floor(v) || v < 0 || v >= c->layers)
				return zp_errf(e, "config.json: mlp_only_layers holds a bad layer index");
			c->sparse[(int)v] = false;
		}
	}
	return 0;
}

/* quantization_config: only the FP8 block format the engine computes; any
   other method or block shape is refused by name, never loaded as plain
   weights (their tensors would be packed integers or other scales). */
static int parse_quant(zp_config *c, const cJSON *root, zp_err *e)
{
	const cJSON *q = get(root, "quantization_config");
	const cJSON *m, *fmt, *bs, *act;

	c->fp8 = false;
	if (!q || cJSON_IsNull(q))
		return 0;
	m = get(q, "quant_method");
	if (!cJSON_IsObject(q) || !cJSON_IsString(m))
		return zp_errf(e, "config.json: quantization_config without a quant_method");
	if (strcmp(m->valuestring, "fp8"))
		return zp_errf(e, "config.json: quant_method \"%.40s\" is not supported (only "
			       "\"fp8\": e4m3 weights with 128x128 block scales)", m->valuestring);
	fmt = get(q, "fmt");
	if (fmt && !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "e4m3") == 0))
		return zp_errf(e, "config.json: fp8 fmt \"%.20s\" is not supported (only e4m3)",
			       cJSON_IsString(fmt) ? fmt->valuestring : "?");
	act = get(q, "activation_scheme");
	if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "dynamic") == 0))
		return zp_errf(e, "config.json: fp8 activation_scheme must be \"dynamic\" (static "
			       "activation scales are not supported)");
	bs = get(q, "weight_block_size");
	if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 ||
	    !cJSON_IsNumber(cJSON_GetArrayItem(bs, 0)) ||
	    !cJSON_IsNumber(cJSON_GetArrayItem(bs, 1)) ||
	    cJSON_GetArrayItem(bs, 0)->valuedouble != ZP_FP8_BLOCK ||
	    cJSON_GetArrayItem(bs, 1)->valuedouble != ZP_FP8_BLOCK)
		return zp_errf(e, "config.json: fp8 weight_block_size must be [128, 128] (per-tensor "
			       "and other block shapes are not supported)");
	c->fp8 = true;
	return 0;
}

int zp_config_parse(zp_config *c, const char *json, size_t len, zp_err *e)
{
	cJSON *root;
	int rc;

	memset(c, 0, sizeof *c);
	if (zp_json_check_utf8(json, len))
		return zp_errf(e, "config.json: not valid UTF-8");
	root = zp_json_parse(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return zp_errf(e, "config.json: not a JSON object");
	}
	rc = parse_arch(c, root, e) ||
	     get_int(root, "hidden_size", -1, 1, 1 << 16, &c->hidden, e) ||
	     get_int(root, "num_hidden_layers", -1, 1, ZP_LAYERS_MAX, &c->layers, e) ||
	     get_int(root, "num_attention_heads", -1, 1, 1024, &c->heads, e) ||
	     get_int(root, "num_key_value_heads", c->heads, 1, c->heads, &c->kv_heads, e) ||
	     get_int(root, "head_dim", c->hidden / c->heads, 2, 1024, &c->head_dim, e) ||
	     get_int(root, "intermediate_size", -1, 1, 1 << 20, &c->ffn, e) ||
	     get_int(root, "vocab_size", -1, 1, 1 << 24, &c->vocab, e) ||
	     get_int(root, "max_position_embeddings", 32768, 1, 1 << 24, &c->max_positions, e) ||
	     get_float(root, "rms_norm_eps", 1e-6, &c->rms_eps, e) ||
	     get_bool(root, "tie_word_embeddings", false, &c->tie_embeddings, e) ||
	     get_bool(root, "attention_bias", false, &c->attention_bias, e) ||
	     parse_rope(c, root, e) || parse_moe(c, root, e) || parse_quant(c, root, e);
	cJSON_Delete(root);
	if (rc)
		return -1;
	if (c->heads % c->kv_heads)
		return zp_errf(e, "config.json: num_attention_heads %d not a multiple of "
			       "num_key_value_heads %d", c->heads, c->kv_heads);
	if (c->head_dim % 2)
		return zp_errf(e, "config.json: head_dim %d must be even (RoPE)", c->head_dim);
	return 0;
}

int zp_config_load(zp_config *c, const char *dir, zp_err *e)
{
	char path[4096], buf[1 << 16];
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "%s/config.json", dir);
	f = fopen(path, "rb");
	if (!f)
		return zp_errf(e, "%s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	if (n == sizeof buf)
		return zp_errf(e, "%s: larger than %zu bytes", path, sizeof buf);
	return zp_config_parse(c, buf, n, e);
}

double zp_config_layer_flops(const zp_config *c, int layer)
{
	double H = c->hidden, d = c->head_dim, nq = c->heads, nkv = c->kv_heads;
	double f = 2 * H * (nq * d + 2 * nkv * d) + 2 * nq * d * H;
	if (c->sparse[layer])
		f += 2 * H * c->experts + 2.0 * c->topk * 3 * H * c->moe_ffn;
	else
		f += 2 * 3 * H * c->ffn;
	return f;
}
