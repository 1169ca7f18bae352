/* api_tokenize.c -- POST /tokenize and /detokenize (vLLM's shapes): the
   tokenizer alone, answered at once without the model (they work while the
   weights load). Reactor thread. */
#include <math.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

int zp_api_tokenize_build(zp_api_call *c)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "prompt", "add_special_tokens", "model", NULL };
	const cJSON *p = zp_api_field(c->root, "prompt");
	bool add_special;
	int rc, n;
	/* before anything reads another field as a C string */
	if (zp_json_nul_outside(c->root, (const char *const[]){ "prompt", NULL }))
		return zp_api_bad(c, NULL, "only prompt may hold \\u0000");
	if ((rc = zp_api_check_fields(c, known)) || (rc = zp_api_get_bool(c, "add_special_tokens", &add_special)))
		return rc;
	if (!cJSON_IsString(p))
		return zp_api_bad(c, "prompt", "prompt must be a string");
	/* The Qwen post-processor adds no tokens, so add_special_tokens changes nothing. */
	zp_req_error err;
	if (zp_req_encode(&c->a->lim, p->valuestring, zp_json_strlen(p), ids, &n, "prompt",
			  &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	zp_buf_reset(c->out);
	zp_buf_printf(c->out, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", n,
		      c->a->lim.seq_tokens_max);
	for (int i = 0; i < n; i++)
		zp_buf_printf(c->out, "%s%d", i ? "," : "", ids[i]);
	zp_buf_puts(c->out, "]}");
	return 200;
}

int zp_api_detokenize_build(zp_api_call *c)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "tokens", "model", NULL };
	const cJSON *t = zp_api_field(c->root, "tokens"), *it;
	int rc, n = 0;
	/* before anything reads another field as a C string */
	if (zp_json_nul_outside(c->root, (const char *const[]){ "prompt", NULL }))
		return zp_api_bad(c, NULL, "only prompt may hold \\u0000");
	if ((rc = zp_api_check_fields(c, known)))
		return rc;
	if (!c->a->tok)
		return zp_api_bad(c, "tokens", "the model directory has no tokenizer.json");
	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) > c->a->lim.seq_tokens_max)
		return zp_api_bad(c, "tokens", "tokens must be an array of at most %d ids",
				  c->a->lim.seq_tokens_max);
	cJSON_ArrayForEach(it, t) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= zp_tok_vocab_size(c->a->tok))
			return zp_api_bad(c, "tokens", "tokens[%d] is not a token id", n);
		ids[n++] = (int32_t)d;
	}
	/* decoded into what the parse region has left (the tree of a list of ids
	   is small), no more than the response can hold escaped (6 bytes for a
	   control byte) */
	size_t cap = zp_region_avail(&c->a->parse);
	if (c->out->fixed)
		cap = ZP_MIN(cap, (c->out->cap - ZP_API_ITEM_CHARS) / 6);
	char *mem = cap ? zp_region_alloc(&c->a->parse, cap) : NULL;
	if (!mem)
		return zp_api_full(c, &c->a->parse);
	zp_buf text;
	zp_buf_init_fixed(&text, mem, cap);
	if (zp_tok_decode(c->a->tok, ids, n, &text))
		return zp_api_bad(c, "tokens", "tokens holds an id with no text");
	if (text.overflow)
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "tokens", "the text of these "
				    "tokens is over the %zu bytes a response may hold", cap - 1);
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "{\"prompt\":");
	zp_buf_json_strn(c->out, text.p, text.len);
	zp_buf_puts(c->out, "}");
	return 200;
}
