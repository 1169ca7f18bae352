/* request.c -- see request.h. */
#include "request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

static int fail(zp_req_error *err, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(zp_req_error *err, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	err->type = "invalid_request_error";
	err->param = param;
	err->code = 400;
	return -1;
}

static const cJSON *field(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNull(v) ? NULL : v;
}

static int as_int(const cJSON *v, long lo, long hi, long *out)
{
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (d != floor(d) || d < (double)lo || d > (double)hi)
		return -1;
	*out = (long)d;
	return 0;
}

int zp_req_ids(const cJSON *a, const char *name, int vocab, int max, int32_t *out, int *n,
	       zp_req_error *err)
{
	const cJSON *it;
	int i = 0;
	if (!cJSON_IsArray(a))
		return fail(err, name, "%s must be an array of integers", name);
	*n = cJSON_GetArraySize(a);
	if (*n > max)
		return fail(err, name, "%s has %d entries (max %d)", name, *n, max);
	cJSON_ArrayForEach(it, a) {
		long v;
		if (as_int(it, 0, vocab - 1, &v))
			return fail(err, name, "%s[%d] must be a token id in [0, %d]", name, i,
				    vocab - 1);
		out[i++] = (int32_t)v;
	}
	return 0;
}

/* zp_req_ids into a new array of its length. */
static int int_array(const cJSON *a, const char *name, int vocab, int max, int32_t **out, int *n,
		     zp_req_error *err)
{
	int size = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
	*out = zp_xmalloc((size_t)ZP_MAX(ZP_MIN(size, max), 1) * sizeof **out);
	return zp_req_ids(a, name, vocab, max, *out, n, err);
}

static int parse_plp(zp_req *r, const cJSON *o, zp_req_error *err)
{
	const cJSON *p = field(o, "prompt_logprobs");
	long s = 0; /* as vLLM: every position, null for the first */
	if (!p) {
		r->plp_start = -1;
		return 0;
	}
	if (cJSON_IsObject(p)) {
		const cJSON *st = field(p, "start");
		if (st && as_int(st, 0, r->ntok - 1, &s))
			return fail(err, "prompt_logprobs.start", "prompt_logprobs.start must be an "
				    "integer in [0, %d]", r->ntok - 1);
	} else if (!cJSON_IsTrue(p) && !cJSON_IsFalse(p)) {
		return fail(err, "prompt_logprobs", "prompt_logprobs must be {\"start\": s} or a bool");
	} else if (cJSON_IsFalse(p)) {
		r->plp_start = -1;
		return 0;
	}
	r->plp_start = (int)s;
	r->plp = zp_xmalloc((size_t)(r->ntok - s) * sizeof *r->plp);
	for (long i = 0; i < r->ntok - s; i++) /* position 0 has no prediction: null */
		r->plp[i] = NAN;
	return 0;
}

static int parse_pool(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *p = field(o, "pooling"), *n = field(o, "normalize");
	r->pool = ZP_POOL_NONE;
	if (p) {
		if (!cJSON_IsString(p))
			return fail(err, "pooling", "pooling must be \"last\" or \"mean\"");
		if (strcmp(p->valuestring, "last") == 0)
			r->pool = ZP_POOL_LAST;
		else if (strcmp(p->valuestring, "mean") == 0)
			r->pool = ZP_POOL_MEAN;
		else
			return fail(err, "pooling", "pooling must be \"last\" or \"mean\"");
	}
	if (n && !cJSON_IsBool(n))
		return fail(err, "normalize", "normalize must be true or false");
	r->normalize = n && cJSON_IsTrue(n);
	if (r->normalize && r->pool == ZP_POOL_NONE)
		return fail(err, "normalize", "normalize needs pooling");
	if (r->pool != ZP_POOL_NONE) {
		r->emb_dim = lim->hidden;
		r->emb = zp_xmalloc((size_t)lim->hidden * sizeof *r->emb);
	}
	return 0;
}

static const char *known[] = { "id", "prompt_token_ids", "prompt", "candidate_token_ids",
			       "candidates", "top_logprobs", "prompt_logprobs", "pooling",
			       "normalize" };

static int no_tokenizer(zp_req_error *err, const char *param)
{
	return fail(err, param, "%s is text, but the model directory has no tokenizer.json: send "
		    "token ids", param);
}

int zp_req_tokenize(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		    const char *param, zp_req_error *err)
{
	if (!lim->tok)
		return no_tokenizer(err, param);
	*n = zp_tok_encode(lim->tok, text, len, ids, lim->max_tokens);
	if (*n > lim->max_tokens)
		return fail(err, param, "%s is %d tokens (max %d)", param, *n, lim->max_tokens);
	if (*n == 0)
		return fail(err, param, "%s is empty", param);
	for (int i = 0; i < *n; i++)
		if (ids[i] >= lim->vocab)
			return fail(err, param, "%s holds token %d, outside the model's vocabulary "
				    "(%d): tokenizer.json does not fit this model", param, ids[i],
				    lim->vocab);
	return 0;
}

int zp_req_set_text(zp_req *r, const char *text, size_t len, const zp_req_limits *lim,
		    const char *param, zp_req_error *err)
{
	free(r->tokens);
	r->tokens = zp_xmalloc((size_t)lim->max_tokens * sizeof *r->tokens);
	return zp_req_tokenize(lim, text, len, r->tokens, &r->ntok, param, err);
}

/* "candidates": strings, each exactly one token. */
static int parse_cand_strings(zp_req *r, const cJSON *a, const zp_req_limits *lim,
			      zp_req_error *err)
{
	const cJSON *it;
	int i = 0;
	if (!lim->tok)
		return no_tokenizer(err, "candidates");
	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > ZP_CANDIDATES_MAX)
		return fail(err, "candidates", "candidates must be an array of at most %d strings",
			    ZP_CANDIDATES_MAX);
	r->ncand = cJSON_GetArraySize(a);
	r->cands = zp_xmalloc((size_t)(r->ncand ? r->ncand : 1) * sizeof *r->cands);
	cJSON_ArrayForEach(it, a) {
		int32_t id[2];
		if (!cJSON_IsString(it))
			return fail(err, "candidates", "candidates[%d] must be a string", i);
		int n = zp_tok_encode(lim->tok, it->valuestring, strlen(it->valuestring), id, 2);
		if (n != 1 || id[0] >= lim->vocab)
			return fail(err, "candidates", "candidates[%d] is %d tokens; a candidate must be "
				    "exactly one token of the model's vocabulary", i, n);
		r->cands[i++] = id[0];
	}
	return 0;
}

static int parse_fields(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *it, *toks = field(o, "prompt_token_ids"), *c, *k;
	long v;

	cJSON_ArrayForEach(it, o) {
		size_t i;
		for (i = 0; i < sizeof known / sizeof *known; i++)
			if (strcmp(it->string, known[i]) == 0)
				break;
		if (i == sizeof known / sizeof *known)
			return fail(err, NULL, "unknown field \"%.64s\"", it->string);
	}
	const cJSON *text = field(o, "prompt"), *cs = field(o, "candidates");
	if (!toks == !text)
		return fail(err, "prompt_token_ids", "exactly one of prompt_token_ids and prompt is "
			    "required");
	if (text) {
		if (!cJSON_IsString(text))
			return fail(err, "prompt", "prompt must be a string");
		if (zp_req_set_text(r, text->valuestring, strlen(text->valuestring), lim, "prompt",
				    err))
			return -1;
	} else if (int_array(toks, "prompt_token_ids", lim->vocab, lim->max_tokens,
			     &r->tokens, &r->ntok, err)) {
		return -1;
	}
	if (r->ntok == 0)
		return fail(err, "prompt_token_ids", "prompt_token_ids is empty");
	c = field(o, "candidate_token_ids");
	if (c && cs)
		return fail(err, "candidates", "give candidate_token_ids or candidates, not both");
	if (c || cs) {
		if (c ? int_array(c, "candidate_token_ids", lim->vocab, ZP_CANDIDATES_MAX,
				  &r->cands, &r->ncand, err)
		      : parse_cand_strings(r, cs, lim, err))
			return -1;
		r->want_cands = true;
		r->cand_lp = zp_xmalloc((size_t)(r->ncand ? r->ncand : 1) * sizeof *r->cand_lp);
	}
	if ((k = field(o, "top_logprobs"))) {
		long hi = ZP_MIN(ZP_TOP_LOGPROBS_MAX, lim->vocab);
		if (as_int(k, 0, hi, &v))
			return fail(err, "top_logprobs", "top_logprobs must be an integer in [0, %ld]",
				    hi);
		r->top_k = (int)v;
		r->top_ids = zp_xmalloc((size_t)(v ? v : 1) * sizeof *r->top_ids);
		r->top_lp = zp_xmalloc((size_t)(v ? v : 1) * sizeof *r->top_lp);
	}
	if (parse_plp(r, o, err))
		return -1;
	return parse_pool(r, o, lim, err);
}

int zp_req_parse(zp_req *r, const char *json, size_t len, const zp_req_limits *lim,
		 zp_req_error *err)
{
	cJSON *root;
	const cJSON *id;
	int rc;

	memset(r, 0, sizeof *r);
	r->plp_start = -1;
	r->id_json = strdup("null");
	if (zp_json_check_utf8(json, len))
		return fail(err, NULL, "request is not valid UTF-8 (or holds a NUL byte)");
	root = zp_json_parse(json, len);
	if (!root)
		return fail(err, NULL, "request is not valid JSON (one value per line, no NUL escapes)");
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return fail(err, NULL, "request must be a JSON object");
	}
	if ((id = cJSON_GetObjectItemCaseSensitive(root, "id"))) {
		char *s = cJSON_PrintUnformatted(id);
		if (s) {
			free(r->id_json);
			r->id_json = s;
		}
	}
	rc = parse_fields(r, root, lim, err);
	cJSON_Delete(root);
	return rc;
}

void zp_req_free(zp_req *r)
{
	free(r->id_json);
	free(r->tokens);
	free(r->cands);
	free(r->cand_lp);
	free(r->top_ids);
	free(r->top_lp);
	free(r->plp);
	free(r->emb);
	memset(r, 0, sizeof *r);
}

static void write_floats(zp_buf *b, const char *key, const float *v, int n)
{
	zp_buf_printf(b, ",\"%s\":[", key);
	for (int i = 0; i < n; i++) {
		if (i)
			zp_buf_puts(b, ",");
		zp_buf_json_float(b, v[i]);
	}
	zp_buf_puts(b, "]");
}

void zp_req_write_result(const zp_req *r, zp_buf *b)
{
	zp_buf_printf(b, "{\"id\":%s,\"num_prompt_tokens\":%d", r->id_json, r->ntok);
	if (r->want_cands)
		write_floats(b, "candidate_logprobs", r->cand_lp, r->ncand);
	if (r->top_ids) {
		zp_buf_puts(b, ",\"top_logprobs\":[");
		for (int i = 0; i < r->top_k; i++) {
			zp_buf_printf(b, "%s[%d,", i ? "," : "", r->top_ids[i]);
			zp_buf_json_float(b, r->top_lp[i]);
			zp_buf_puts(b, "]");
		}
		zp_buf_puts(b, "]");
	}
	if (r->plp_start >= 0)
		write_floats(b, "prompt_logprobs", r->plp, r->ntok - r->plp_start);
	if (r->emb)
		write_floats(b, "embedding", r->emb, r->emb_dim);
	zp_buf_puts(b, "}");
}

void zp_req_write_error(const char *id_json, const zp_req_error *err, zp_buf *b)
{
	zp_buf_printf(b, "{\"id\":%s,\"error\":{\"message\":", id_json ? id_json : "null");
	zp_buf_json_str(b, err->message);
	zp_buf_printf(b, ",\"type\":\"%s\",\"param\":", err->type);
	if (err->param)
		zp_buf_json_str(b, err->param);
	else
		zp_buf_puts(b, "null");
	zp_buf_printf(b, ",\"code\":%d}}", err->code);
}
