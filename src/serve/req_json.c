/* req_json.c -- see req_json.h. */
#include "req_json.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

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
		return zp_req_fail(err, name, "%s must be an array of integers", name);
	*n = cJSON_GetArraySize(a);
	if (*n > max)
		return zp_req_fail(err, name, "%s has %d entries (max %d)", name, *n, max);
	cJSON_ArrayForEach(it, a) {
		long v;
		if (as_int(it, 0, vocab - 1, &v))
			return zp_req_fail(err, name, "%s[%d] must be a token id in [0, %d]", name, i,
					   vocab - 1);
		out[i++] = (int32_t)v;
	}
	return 0;
}

/* zp_req_ids into a new array of r's, of the array's length. */
static int int_array(zp_req *r, const cJSON *a, const char *name, int vocab, int max,
		     int32_t **out, int *n, zp_req_error *err)
{
	int size = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
	if (!(*out = zp_req_alloc(r, (size_t)ZP_MIN(size, max), sizeof **out)))
		return zp_req_full(r, err);
	return zp_req_ids(a, name, vocab, max, *out, n, err);
}

/* prompt_logprobs: k, vLLM's integer form: every position's top k and the
   prompt token's rank there, besides its log-prob. */
static int parse_plp_top(zp_req *r, const cJSON *p, const zp_req_limits *lim, zp_req_error *err)
{
	long k, hi = ZP_MIN(ZP_PLP_TOP_MAX, lim->vocab);
	if (as_int(p, 0, hi, &k))
		return zp_req_fail(err, "prompt_logprobs", "prompt_logprobs as a number must be an "
				   "integer in [0, %ld] (the top k at each position, as vLLM)", hi);
	r->plp_top_k = (int)k;
	if (!(r->plp_rank = zp_req_alloc(r, (size_t)r->ntok, sizeof *r->plp_rank)) ||
	    (k && (!(r->plp_top_ids = zp_req_alloc(r, (size_t)(r->ntok * k), sizeof *r->plp_top_ids)) ||
		   !(r->plp_top_lp = zp_req_alloc(r, (size_t)(r->ntok * k), sizeof *r->plp_top_lp)))))
		return zp_req_full(r, err);
	return 0;
}

static int parse_plp(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *p = field(o, "prompt_logprobs");
	long s = 0; /* as vLLM: every position, null for the first */
	if (!p || cJSON_IsFalse(p))
		return 0;
	if (cJSON_IsNumber(p) && parse_plp_top(r, p, lim, err))
		return -1;
	if (cJSON_IsObject(p)) {
		const cJSON *st = field(p, "start");
		if (st && as_int(st, 0, r->ntok - 1, &s))
			return zp_req_fail(err, "prompt_logprobs.start", "prompt_logprobs.start must "
					   "be an integer in [0, %d]", r->ntok - 1);
	} else if (!cJSON_IsTrue(p) && !cJSON_IsNumber(p)) {
		return zp_req_fail(err, "prompt_logprobs", "prompt_logprobs must be {\"start\": s}, "
				   "a bool or an integer k (the top k at each position)");
	}
	r->plp_start = (int)s;
	if (!(r->plp = zp_req_alloc(r, (size_t)(r->ntok - s), sizeof *r->plp)))
		return zp_req_full(r, err);
	for (long i = 0; i < r->ntok - s; i++) /* position 0 has no prediction: null */
		r->plp[i] = NAN;
	return 0;
}

bool zp_req_pooling(const cJSON *v, enum zp_pooling dflt, enum zp_pooling *out)
{
	*out = dflt;
	if (!v)
		return true;
	if (cJSON_IsString(v) && strcmp(v->valuestring, "last") == 0)
		*out = ZP_POOLING_LAST;
	else if (cJSON_IsString(v) && strcmp(v->valuestring, "mean") == 0)
		*out = ZP_POOLING_MEAN;
	else
		return false;
	return true;
}

static int parse_pool(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *p = field(o, "pooling"), *n = field(o, "normalize");
	if (!zp_req_pooling(p, ZP_POOLING_NONE, &r->pool))
		return zp_req_fail(err, "pooling", "pooling must be \"last\" or \"mean\"");
	if (n && !cJSON_IsBool(n))
		return zp_req_fail(err, "normalize", "normalize must be true or false");
	r->normalize = n && cJSON_IsTrue(n);
	if (r->normalize && r->pool == ZP_POOLING_NONE)
		return zp_req_fail(err, "normalize", "normalize needs pooling");
	if (r->pool != ZP_POOLING_NONE) {
		r->emb_dim = lim->hidden;
		if (!(r->emb = zp_req_alloc(r, (size_t)lim->hidden, sizeof *r->emb)))
			return zp_req_full(r, err);
	}
	return 0;
}

static const char *known[] = { "id", "prompt_token_ids", "prompt", "candidate_token_ids",
			       "candidates", "top_logprobs", "prompt_logprobs", "pooling",
			       "normalize" };

/* "candidates": strings, each exactly one token. */
static int parse_cand_strings(zp_req *r, const cJSON *a, const zp_req_limits *lim,
			      zp_req_error *err)
{
	const cJSON *it;
	int i = 0;
	if (!lim->tok)
		return zp_req_fail(err, "candidates", "candidates is text, but the model directory "
				   "has no tokenizer.json: send token ids");
	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > ZP_CANDIDATES_MAX)
		return zp_req_fail(err, "candidates", "candidates must be an array of at most %d "
				   "strings", ZP_CANDIDATES_MAX);
	r->ncand = cJSON_GetArraySize(a);
	if (!(r->cands = zp_req_alloc(r, (size_t)r->ncand, sizeof *r->cands)))
		return zp_req_full(r, err);
	cJSON_ArrayForEach(it, a) {
		int32_t id[2];
		if (!cJSON_IsString(it))
			return zp_req_fail(err, "candidates", "candidates[%d] must be a string", i);
		int n = zp_tok_encode(lim->tok, it->valuestring, zp_json_strlen(it), id, 2);
		if (n < 0) {
			zp_req_fail(err, "candidates", "candidates[%d] is over the %zu bytes of text "
				    "a request may hold", i, zp_tok_state_text_max(lim->tok));
			err->code = 413;
			return -1;
		}
		if (n != 1 || id[0] >= lim->vocab)
			return zp_req_fail(err, "candidates", "candidates[%d] is %d tokens; a candidate "
					   "must be exactly one token of the model's vocabulary", i,
					   n);
		r->cands[i++] = id[0];
	}
	return 0;
}

static int parse_prompt(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *toks = field(o, "prompt_token_ids"), *text = field(o, "prompt");
	if (!toks == !text)
		return zp_req_fail(err, "prompt_token_ids", "exactly one of prompt_token_ids and "
				   "prompt is required");
	if (text) {
		if (!cJSON_IsString(text))
			return zp_req_fail(err, "prompt", "prompt must be a string");
		if (zp_req_set_text(r, text->valuestring, zp_json_strlen(text), lim, "prompt",
				    err))
			return -1;
	} else if (int_array(r, toks, "prompt_token_ids", lim->vocab, lim->seq_tokens_max,
			     &r->tokens, &r->ntok, err)) {
		return -1;
	}
	if (r->ntok == 0)
		return zp_req_fail(err, "prompt_token_ids", "prompt_token_ids is empty");
	return 0;
}

static int parse_cands(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *c = field(o, "candidate_token_ids"), *cs = field(o, "candidates");
	if (c && cs)
		return zp_req_fail(err, "candidates", "give candidate_token_ids or candidates, not "
				   "both");
	if (!c && !cs)
		return 0;
	if (c ? int_array(r, c, "candidate_token_ids", lim->vocab, ZP_CANDIDATES_MAX, &r->cands,
			  &r->ncand, err)
	      : parse_cand_strings(r, cs, lim, err))
		return -1;
	r->want_cands = true;
	if (!(r->cand_lp = zp_req_alloc(r, (size_t)r->ncand, sizeof *r->cand_lp)))
		return zp_req_full(r, err);
	return 0;
}

static int parse_fields(zp_req *r, const cJSON *o, const zp_req_limits *lim, zp_req_error *err)
{
	const cJSON *it, *k;
	long v;

	cJSON_ArrayForEach(it, o) {
		size_t i;
		for (i = 0; i < sizeof known / sizeof *known; i++)
			if (strcmp(it->string, known[i]) == 0)
				break;
		if (i == sizeof known / sizeof *known)
			return zp_req_fail(err, NULL, "unknown field \"%.64s\"", it->string);
	}
	if (parse_prompt(r, o, lim, err) || parse_cands(r, o, lim, err))
		return -1;
	if ((k = field(o, "top_logprobs"))) {
		long hi = ZP_MIN(ZP_TOP_LOGPROBS_MAX, lim->vocab);
		if (as_int(k, 0, hi, &v))
			return zp_req_fail(err, "top_logprobs", "top_logprobs must be an integer in "
					   "[0, %ld]", hi);
		r->top_k = (int)v;
		if (!(r->top_ids = zp_req_alloc(r, (size_t)v, sizeof *r->top_ids)) ||
		    !(r->top_lp = zp_req_alloc(r, (size_t)v, sizeof *r->top_lp)))
			return zp_req_full(r, err);
	}
	if (parse_plp(r, o, lim, err))
		return -1;
	return parse_pool(r, o, lim, err);
}

/* The id re-serialised: onto the heap, or printed straight into the region's
   free space and trimmed to its length. NULL when it does not fit. */
static char *print_id(zp_req *r, const cJSON *id)
{
	if (!r->region)
		return cJSON_PrintUnformatted(id);
	int avail = (int)ZP_MIN(zp_region_avail(r->region), (size_t)INT_MAX);
	char *p = avail > 0 ? zp_region_alloc(r->region, (size_t)avail) : NULL;
	if (!p)
		return NULL;
	if (!cJSON_PrintPreallocated((cJSON *)id, p, avail, 0)) {
		zp_region_trim(r->region, p, 0);
		return NULL;
	}
	zp_region_trim(r->region, p, strlen(p) + 1);
	return p;
}

/* The whole parse, with cJSON allocating from r's region when it has one. */
static int parse(zp_req *r, const char *json, size_t len, const zp_req_limits *lim,
		 zp_req_error *err)
{
	cJSON *root;
	const cJSON *id;
	unsigned fails = r->region ? r->region->fails : 0;
	int rc;

	if (zp_json_check_utf8(json, len))
		return zp_req_fail(err, NULL, "request is not valid UTF-8 (or holds a NUL byte)");
	zp_json_err je; /* \u0000: in the two texts read with their length */
	root = zp_json_parse_err(json, len, true, &je);
	if (!root && r->region && r->region->fails != fails)
		return zp_req_full(r, err);
	if (!root) { /* param must outlive je: the known name it is, if any */
		const char *param = NULL;
		for (size_t i = 0; i < sizeof known / sizeof *known; i++)
			if (strcmp(je.field, known[i]) == 0)
				param = known[i];
		return zp_req_fail(err, param, "request %s", je.msg);
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return zp_req_fail(err, NULL, "request must be a JSON object");
	}
	if (zp_json_nul_outside(root, (const char *const[]){ "prompt", "candidates", NULL })) {
		cJSON_Delete(root);
		return zp_req_fail(err, NULL, "only prompt and candidates may hold \\u0000");
	}
	if ((id = cJSON_GetObjectItemCaseSensitive(root, "id"))) {
		char *s = print_id(r, id);
		if (!s && r->region) {
			cJSON_Delete(root);
			return zp_req_full(r, err);
		}
		if (s) {
			if (!r->region)
				free(r->id_json);
			r->id_json = s;
		}
	}
	rc = parse_fields(r, root, lim, err);
	cJSON_Delete(root);
	return rc;
}

int zp_req_parse(zp_req *r, const char *json, size_t len, const zp_req_limits *lim,
		 zp_req_error *err)
{
	ZP_ASSERT(!zp_region_current()); /* the tree would land in that region */
	zp_req_init(r, NULL);
	return parse(r, json, len, lim, err);
}

int zp_req_parse_in(zp_req *r, zp_region *rg, const char *json, size_t len,
		    const zp_req_limits *lim, zp_req_error *err)
{
	ZP_ASSERT(rg);
	zp_req_init(r, rg);
	zp_region *prev = zp_region_enter(rg);
	int rc = parse(r, json, len, lim, err);
	zp_region_leave(prev);
	return rc;
}

size_t zp_req_region_bytes(const zp_req_limits *lim, size_t body_max)
{
	/* cJSON: one node per 2 body bytes at worst ("[0,0,...", "[[[..."), plus a
	   key or string copy per node; the printed id fits in what is left of
	   the region when it is printed (it is printed into the free space). */
	size_t node = ZP_ALIGN_UP(sizeof(cJSON), ZP_REGION_ALIGN);
	size_t tree = (body_max / 2 + 2) * (node + ZP_REGION_ALIGN) + body_max;
	size_t id = 6 * body_max + 64; /* a raw control byte prints as \u00XX */
	size_t arrays = (size_t)lim->seq_tokens_max * (sizeof(int32_t) + sizeof(float)) +
			(size_t)ZP_CANDIDATES_MAX * (sizeof(int32_t) + sizeof(float)) +
			(size_t)ZP_TOP_LOGPROBS_MAX * (sizeof(int32_t) + sizeof(float)) +
			(size_t)lim->hidden * sizeof(float) + 8 * ZP_REGION_ALIGN +
			(size_t)lim->seq_tokens_max * /* prompt_logprobs: k */
			(ZP_PLP_TOP_MAX * (sizeof(int32_t) + sizeof(float)) + sizeof(int32_t)) +
			3 * ZP_REGION_ALIGN;
	return tree + id + arrays;
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

/* prompt_logprobs: k as vLLM writes it (without decoded_token: token ids
   here): [null, {"id": {"logprob", "rank"}, ...}, ...], the prompt token
   first, then the top k not already in. */
static void write_plp_top(const zp_req *r, zp_buf *b)
{
	int k = r->plp_top_k;
	zp_buf_puts(b, ",\"prompt_logprobs\":[null");
	for (int p = 1; p < r->ntok; p++) {
		int32_t tok = r->tokens[p];
		float lp = r->plp[p];
		int rank = r->plp_rank[p];
		for (int t = 0; t < k; t++) /* vLLM: the top-k entry of the token itself wins */
			if (r->plp_top_ids[(size_t)p * k + t] == tok) {
				lp = r->plp_top_lp[(size_t)p * k + t];
				rank = t + 1;
			}
		zp_buf_printf(b, ",{\"%d\":{\"logprob\":", tok);
		zp_buf_json_float(b, lp);
		zp_buf_printf(b, ",\"rank\":%d}", rank);
		for (int t = 0; t < k; t++) {
			int32_t x = r->plp_top_ids[(size_t)p * k + t];
			if (x == tok)
				continue;
			zp_buf_printf(b, ",\"%d\":{\"logprob\":", x);
			zp_buf_json_float(b, r->plp_top_lp[(size_t)p * k + t]);
			zp_buf_printf(b, ",\"rank\":%d}", t + 1);
		}
		zp_buf_puts(b, "}");
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
	if (r->plp_rank)
		write_plp_top(r, b);
	else if (r->plp_start >= 0)
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
