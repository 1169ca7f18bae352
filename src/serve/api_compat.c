/* api_compat.c -- what the other engines' client shapes (api_vllm.c,
   api_tei.c) share with the endpoints: the unknown-field policy (ignored
   with a rate-limited warning, as vLLM does), text encoded whole into the
   parse region (so truncation can keep either end), truncation, and the
   Matryoshka cut of an embedding. The thread that builds with an api (the
   reactor, the offload worker) owns its warning counts. */
#include <math.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

void zp_api_ignored(zp_api_call *c, const char *field)
{
	/* the name is the client's: controls, quotes and backslashes become '?'
	   so that it cannot end the line or the field (a forged log line) */
	char safe[65];
	size_t n = 0;
	for (; field[n] && n < sizeof safe - 1; n++) {
		unsigned char ch = (unsigned char)field[n];
		safe[n] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
	}
	safe[n] = '\0';
	zp_log_limited(&c->a->warn_ignored, zp_now_s(), "msg=\"ignored unknown request field (as "
		       "vLLM does)\" endpoint=%s field=\"%s\"", zp_route_name(c->job->ep), safe);
}

void zp_api_ignore_unknown(zp_api_call *c, const cJSON *o, const char *where,
			   const char *const *known)
{
	const cJSON *it;
	char name[160];
	cJSON_ArrayForEach(it, o) {
		int k = 0;
		while (known[k] && strcmp(known[k], it->string))
			k++;
		if (known[k])
			continue;
		snprintf(name, sizeof name, "%s%s%.64s", where ? where : "", where ? "." : "",
			 it->string);
		zp_api_ignored(c, name);
	}
}

int zp_api_encode_all(zp_api_call *c, const char *text, size_t len, const char *param,
		      bool model_vocab, int32_t **ids, int *n)
{
	if (!c->a->ts)
		return zp_api_bad(c, param, "%s is text, but the model directory has no "
				  "tokenizer.json: send token ids", param);
	/* a byte-level token holds at least one byte of the NFC text, which is
	   rarely longer than the text: one retry covers the rest */
	size_t cap = len + 1;
	for (int pass = 0; pass < 2; pass++) {
		int32_t *p = zp_region_alloc(&c->a->parse, cap * sizeof *p);
		if (!p)
			return zp_api_full(c, &c->a->parse);
		int k = zp_tok_encode(c->a->ts, text, len, p, (int)ZP_MIN(cap, (size_t)INT32_MAX));
		if (k < 0)
			return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, param, "%s is over the %zu "
					    "bytes of text the tokenizer takes at once", param,
					    zp_tok_state_text_max(c->a->ts));
		if ((size_t)k > cap) {
			cap = (size_t)k;
			continue;
		}
		for (int i = 0; i < k && model_vocab; i++)
			if (p[i] >= c->a->lim.vocab)
				return zp_api_bad(c, param, "%s holds token %d, outside the model's "
						  "vocabulary of %d", param, p[i], c->a->lim.vocab);
		*ids = p;
		*n = k;
		return 0;
	}
	ZP_ASSERT(!"a text whose token count grew between two encodes");
	return 0;
}

int zp_api_ids_all(zp_api_call *c, const cJSON *v, const char *param, int32_t **ids, int *n)
{
	const cJSON *it;
	int k = 0;
	if (!cJSON_IsArray(v))
		return zp_api_bad(c, param, "%s must be text or an array of token ids", param);
	int32_t *p = zp_region_alloc(&c->a->parse, ((size_t)cJSON_GetArraySize(v) + 1) * sizeof *p);
	if (!p)
		return zp_api_full(c, &c->a->parse);
	cJSON_ArrayForEach(it, v) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= c->a->lim.vocab)
			return zp_api_bad(c, param, "%s[%d] must be a token id in [0, %d]", param, k,
					  c->a->lim.vocab - 1);
		p[k++] = (int32_t)d;
	}
	*ids = p;
	*n = k;
	return 0;
}

int zp_api_get_truncate(zp_api_call *c, const char *k, int *keep)
{
	const cJSON *t = zp_api_field(c->root, k);
	int max = c->a->lim.seq_tokens_max;
	*keep = 0;
	if (!t)
		return 0;
	if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || t->valuedouble != floor(t->valuedouble) ||
	    t->valuedouble < -1 || t->valuedouble == 0)
		return zp_api_bad(c, k, "%s must be -1 (the longest sequence, %d) or an integer in "
				  "[1, %d]", k, max, max);
	if (t->valuedouble > max) /* vLLM's words, which its clients match */
		return zp_api_bad(c, k, "%s value (%.0f) is greater than max_model_len (%d). Please, "
				  "select a smaller truncation size.", k, t->valuedouble, max);
	*keep = t->valuedouble == -1 ? max : (int)t->valuedouble;
	return 0;
}

void zp_api_truncate(int32_t **ids, int *n, int keep, bool keep_last)
{
	if (!keep || *n <= keep)
		return;
	if (keep_last)
		*ids += *n - keep;
	*n = keep;
}

int zp_api_get_dims(zp_api_call *c, int *dims)
{
	const cJSON *d = zp_api_field(c->root, "dimensions");
	int hidden = c->a->lim.hidden;
	*dims = 0;
	if (!d)
		return 0;
	if (!cJSON_IsNumber(d) || d->valuedouble != floor(d->valuedouble) || d->valuedouble < 1 ||
	    d->valuedouble > hidden)
		return zp_api_bad(c, "dimensions", "dimensions must be an integer in [1, %d] (the "
				  "model's hidden size)", hidden);
	*dims = (int)d->valuedouble;
	return 0;
}

void zp_api_emb_dims(zp_req *r, int dims)
{
	if (!dims || dims >= r->emb_dim)
		return;
	r->emb_dim = dims;
	if (!r->normalize)
		return;
	/* a Matryoshka prefix of a unit vector, made a unit vector again */
	double ss = 0;
	for (int k = 0; k < dims; k++)
		ss += (double)r->emb[k] * r->emb[k];
	float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
	for (int k = 0; k < dims; k++)
		r->emb[k] *= inv;
}
