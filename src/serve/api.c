/* api.c -- see api.h: the endpoints' common part. zp_api_build parses a JSON
   body once for the endpoint (wrong types and out-of-range values are 400s
   naming the field; unknown fields are ignored with a warning, as vLLM does) and calls the build that
   router.c's table names; zp_api_finish calls its finish. The field readers
   and sequence builders every api_*.c uses are here (endpoints.h), with the
   bounds the server sizes its regions and response buffers from. */
#include "api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* Whether the endpoint being built answers errors with vLLM's and SGLang's
   type names (BadRequestError, ...) rather than OpenAI's
   (invalid_request_error, ...): set by zp_api_build on its thread. */
static __thread bool vllm_types;

static bool vllm_family(enum zp_route ep)
{
	return ep == ZP_ROUTE_SCORE || ep == ZP_ROUTE_CLASSIFY || ep == ZP_ROUTE_RERANK ||
	       ep == ZP_ROUTE_RERANK_V2 ||
	       ep == ZP_ROUTE_POOLING || ep == ZP_ROUTE_TOKENIZE || ep == ZP_ROUTE_DETOKENIZE ||
	       ep == ZP_ROUTE_INVOCATIONS;
}

static const char *err_type(int status)
{
	if (vllm_types && (status == 400 || status == 404 || status == 500))
		return status == 400 ? "BadRequestError" : status == 404 ? "NotFoundError" :
		       "InternalServerError";
	return zp_http_err_type(status);
}

static void error_v(zp_buf *out, int status, const char *param, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	zp_buf_reset(out);
	zp_buf_puts(out, "{\"error\":{\"message\":");
	zp_buf_json_str(out, msg);
	zp_buf_printf(out, ",\"type\":\"%s\",\"param\":", err_type(status));
	if (param)
		zp_buf_json_str(out, param);
	else
		zp_buf_puts(out, "null");
	zp_buf_printf(out, ",\"code\":%d}}", status);
}

int zp_api_error(zp_buf *out, int status, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(out, status, param, fmt, ap);
	va_end(ap);
	return status;
}

int zp_api_bad(zp_api_call *c, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(c->out, ZP_HTTP_ERR_BAD_REQUEST, param, fmt, ap);
	va_end(ap);
	return ZP_HTTP_ERR_BAD_REQUEST;
}

int zp_api_full(zp_api_call *c, const zp_region *rg)
{
	return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, NULL, "request needs more than the "
			    "%zu bytes of memory a request may use (sized from the server's limits: "
			    "body_bytes_max, max_tokens, queue_tokens_max): send a smaller one",
			    rg->cap);
}

void zp_api_init(zp_api *a, const zp_tok *tok, const zp_req_limits *lim, size_t body_max,
		 const char *model_name, const zp_rerank_cfg *rr, const zp_chat *chat)
{
	memset(a, 0, sizeof *a);
	a->tok = tok;
	a->ts = tok ? zp_tok_state_new(tok) : NULL;
	a->lim = *lim;
	a->lim.tok = a->ts;
	a->model_name = model_name;
	a->rerank = *rr;
	a->chat = chat;
	a->yes_id = a->no_id = -1;
	a->body_max = body_max;
	a->warn_ignored = (zp_log_limit){ .what = "ignored unknown request fields", .lvl = ZP_LOG_WARN,
					  .window_s = 10.0, .burst = 8 };
	a->scratch = zp_xmalloc((size_t)lim->seq_tokens_max * 3 * sizeof *a->scratch);
	/* the texts put together from one body (query + item, rerank's prompt) */
	a->text_cap = body_max + strlen(rr->prefix) + strlen(rr->suffix) + strlen(rr->instruction) +
		      ZP_API_PROMPT_EXTRA;
	a->text = zp_xmalloc(a->text_cap);
	/* the tree, plus classify's label tokens (detokenize decodes into what
	   its small tree leaves) */
	zp_region_init(&a->parse, NULL, zp_req_region_bytes(lim, body_max) +
		       (size_t)ZP_API_ITEMS_MAX * (ZP_API_LABEL_TOKENS_MAX + 1) * sizeof(int32_t));
	if (tok) { /* the configured label tokens, exactly as the vocabulary spells them */
		a->yes_id = zp_tok_find(tok, rr->yes_token, strlen(rr->yes_token));
		a->no_id = zp_tok_find(tok, rr->no_token, strlen(rr->no_token));
	}
}

int zp_api_check(zp_api *a, zp_err *e)
{
	const zp_rerank_cfg *rr = &a->rerank;
	if (!a->tok)
		return 0;
	if (a->yes_id < 0 || a->no_id < 0)
		return zp_errf(e, "[rerank] %s = \"%s\" is not one token of tokenizer.json (rerank "
			       "compares the yes and no tokens' probabilities at one position)",
			       a->yes_id < 0 ? "yes_token" : "no_token",
			       a->yes_id < 0 ? rr->yes_token : rr->no_token);
	int w = snprintf(a->text, a->text_cap, "%s<Instruct>: %s\n<Query>: \n<Document>: %s",
			 rr->prefix, rr->instruction, rr->suffix);
	ZP_ASSERT(w >= 0 && (size_t)w < a->text_cap);
	int n = zp_tok_encode(a->ts, a->text, (size_t)w, a->scratch, a->lim.seq_tokens_max);
	if (n < 0 || n >= a->lim.seq_tokens_max)
		return zp_errf(e, "[rerank] prefix, instruction and suffix are %s tokens, leaving no "
			       "room for a query and a document in max_tokens (%d)",
			       n < 0 ? "too many" : "that many", a->lim.seq_tokens_max);
	return 0;
}

void zp_api_free(zp_api *a)
{
	zp_log_limit_flush(&a->warn_ignored, zp_now_s(), true); /* the last window's count */
	zp_tok_state_free(a->ts);
	free(a->scratch);
	free(a->text);
	zp_region_free(&a->parse);
	memset(a, 0, sizeof *a);
}

size_t zp_api_job_bytes(const zp_api *a, long tokens_max)
{
	const size_t A = ZP_REGION_ALIGN, items = ZP_API_ITEMS_MAX;
	size_t toks = (size_t)ZP_MIN(tokens_max, (long)items * a->lim.seq_tokens_max);
	/* a sequence per item: itself, its arrays' alignment, an embedding,
	   ZP_API_ITEMS_MAX candidate labels (id and log-prob); the rerank order */
	size_t seqs = items * (ZP_ALIGN_UP(sizeof(zp_req), A) + 6 * A +
			       (size_t)a->lim.hidden * sizeof(float) +
			       items * (sizeof(int32_t) + sizeof(float)) + 2 * sizeof(double));
	/* every token's id and prompt log-prob; the seq, label and doc arrays */
	size_t tokens = toks * (sizeof(int32_t) + sizeof(float)) + 3 * items * sizeof(char *) + 3 * A;
	/* the largest native request's arrays */
	size_t native = (size_t)(ZP_CANDIDATES_MAX + ZP_TOP_LOGPROBS_MAX + a->lim.seq_tokens_max) *
			(sizeof(int32_t) + sizeof(float)) + 8 * A;
	/* the text kept (labels, documents, the id): never longer than the body
	   (an id printed longer, by \u00XX escapes of raw control bytes past a
	   body's worth, is a 413) */
	size_t text = a->body_max + 2 * items * A;
	/* vLLM's per-position prompt log-probs: top-k, the token's rank */
	size_t plp_top = (size_t)a->lim.seq_tokens_max *
			 (ZP_API_LOGPROBS_MAX * (sizeof(int32_t) + sizeof(float)) + sizeof(int32_t)) + 4 * A;
	return seqs + tokens + native + text + plp_top;
}

size_t zp_api_response_bytes(const zp_api *a)
{
	const size_t items = ZP_API_ITEMS_MAX, f = ZP_API_FLOAT_CHARS;
	size_t hidden = (size_t)a->lim.hidden, toks = (size_t)a->lim.seq_tokens_max;
	size_t embed = items * (ZP_API_ITEM_CHARS + hidden * f);
	size_t labels = items * (ZP_API_ITEM_CHARS + items * f);	/* score, classify */
	size_t prefill = 6 * a->body_max + (toks + ZP_CANDIDATES_MAX + hidden) * f +
			 ZP_TOP_LOGPROBS_MAX * (f + 12);
	size_t rerank = items * ZP_API_ITEM_CHARS + 6 * a->body_max;	/* documents echoed */
	size_t tokenize = toks * (12 + ZP_API_TOKEN_CHARS) + ZP_API_ITEM_CHARS; /* ids, token_strs */
	/* /v1/completions' logprobs and prompt_logprobs: each position's tokens, and the
	   generated one's (chat's one token is far less) */
	size_t completions = (toks + 1) * (ZP_API_LOGPROBS_MAX + 2) * 2 * (ZP_API_TOKEN_CHARS + f) + 2 * a->body_max;
	size_t b = ZP_MAX(ZP_MAX(embed, labels), ZP_MAX(prefill, rerank));
	return ZP_MAX(ZP_MAX(ZP_MAX(b, tokenize), completions), ZP_API_INFO_BYTES) + ZP_API_ITEM_CHARS;
}

/* The fields of each endpoint whose texts are read with their lengths, so a
   \u0000 in them is text (as Python's json reads it); every other string is
   read as a C string and refuses it. */
static const char *const *nul_fields(enum zp_route ep)
{
	static const char *const score[] = { "text_1", "text_2", "data_1", "data_2", "queries",
					     "documents", "items", "query", NULL };
	static const char *const classify[] = { "input", "labels", NULL };
	static const char *const rerank[] = { "query", "documents", "instruction", NULL };
	static const char *const input[] = { "input", NULL }, *const inputs[] = { "inputs", NULL };
	static const char *const prompt[] = { "prompt", NULL }, *const none[] = { NULL };
	switch (ep) {
	case ZP_ROUTE_SCORE: return score;
	case ZP_ROUTE_CLASSIFY: return classify;
	case ZP_ROUTE_RERANK: case ZP_ROUTE_RERANK_V2: return rerank;
	case ZP_ROUTE_EMBED: case ZP_ROUTE_POOLING: return input;
	case ZP_ROUTE_TEI_EMBED: return inputs;
	case ZP_ROUTE_TOKENIZE: case ZP_ROUTE_COMPLETIONS: return prompt;
	default: return none;
	}
}

/* nul_fields(ep) as text for an error message. */
static const char *nul_names(enum zp_route ep)
{
	static __thread char s[160]; /* the reactor's, or an offload worker's */
	size_t w = 0;
	s[0] = 0;
	for (const char *const *f = nul_fields(ep); *f; f++)
		w += (size_t)snprintf(s + w, sizeof s - w, "%s%s", w ? ", " : "", *f);
	return w ? s : "none on this endpoint";
}

int zp_api_build(zp_api *a, enum zp_route ep, const zp_api_view *view, const char *body,
		 size_t len, zp_api_job *job, zp_api_reply *reply)
{
	const zp_route_entry *r = zp_route_of(ep);
	/* ids[seq_tokens_max], then tmp[2 seq_tokens_max] (a query plus an item before
	   their sum is checked) */
	zp_api_call c = { .a = a, .view = view, .body = body, .len = len, .job = job,
			  .out = reply->body, .reply = reply, .ids = a->scratch,
			  .tmp = a->scratch + a->lim.seq_tokens_max };
	reply->content_type = "application/json";
	reply->retry_after_s = 0;
	job->ep = ep;
	vllm_types = vllm_family(ep);
	zp_buf_reset(reply->body);
	zp_region_reset(&a->parse);
	if (job->rg)
		zp_region_reset(job->rg);
	if (!(r->flags & ZP_ROUTE_JSON)) {
		int st = r->build(&c);
		vllm_types = false;
		return st;
	}
	if (zp_json_check_utf8(body, len))
		return zp_api_bad(&c, NULL, "body is not valid UTF-8 (or holds a NUL byte)");
	/* the tree lands in the parse region; deleting it there is a no-op, and
	   the endpoints may keep pointers into it until the next build */
	zp_region *prev = zp_region_enter(&a->parse);
	/* /tokenize reads its prompt with its length: the one route taking \u0000 */
	zp_json_err je;
	cJSON *root = zp_json_parse_err(body, len, true, &je);
	int rc;
	if (!root && a->parse.fails)
		rc = zp_api_full(&c, &a->parse);
	else if (!root)
		rc = zp_api_bad(&c, je.field[0] ? je.field : NULL, "%s", je.msg);
	else if (!cJSON_IsObject(root))
		rc = zp_api_bad(&c, NULL, "body must be a JSON object");
	else {
		/* /invocations answers as the endpoint its fields pick (ZP_ROUTE_OTHER:
		   none, its build says so): picked once here, so its texts are
		   checked as that endpoint's */
		if (ep == ZP_ROUTE_INVOCATIONS)
			job->ep = zp_api_invocations_pick(root);
		if (zp_json_nul_outside(root, nul_fields(job->ep)))
			rc = zp_api_bad(&c, NULL, "\\u0000 is text only in the text fields (%s)",
					nul_names(job->ep));
		else {
			c.root = root;
			rc = r->build(&c);
		}
	}
	cJSON_Delete(root);
	zp_region_leave(prev);
	vllm_types = false;
	return rc;
}

static bool all_finite(const float *v, int n)
{
	for (int i = 0; v && i < n; i++)
		if (!isfinite(v[i]))
			return false;
	return true;
}

/* Every result the sequence carries is a number (position 0's prompt
   log-prob has no prediction: NaN by design, written as null). */
static bool seq_finite(const zp_req *r)
{
	int skip = r->plp_start == 0;
	return all_finite(r->cand_lp, r->ncand) && all_finite(r->top_lp, r->top_k) &&
	       all_finite(r->emb, r->emb_dim) &&
	       (r->plp_start < 0 || all_finite(r->plp + skip, r->ntok - r->plp_start - skip));
}

int zp_api_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	const zp_route_entry *r = zp_route_of(j->ep);
	ZP_ASSERT(j->eng.done == j->eng.nseq && !j->eng.cancelled);
	ZP_ASSERT(r->finish); /* only endpoints with sequences have something to finish */
	zp_buf_reset(out);
	/* a score, label or vector computed from a NaN is no answer: never a 200 */
	for (int i = 0; i < j->eng.nseq; i++)
		if (!seq_finite(&j->eng.seq[i]))
			return zp_api_error(out, ZP_HTTP_ERR_INTERNAL, NULL, "the forward pass gave "
					    "a non-finite value (NaN or Inf) for sequence %d: the "
					    "model's activations overflow on this input", i);
	r->finish(a, j, out);
	if (out->overflow)
		return zp_api_error(out, ZP_HTTP_ERR_INTERNAL, NULL, "the response is over the "
				    "%zu-byte response buffer (sized from the limits; documents and "
				    "labels are echoed): ask for less", out->cap);
	return 200;
}

void zp_api_job_free(zp_api_job *j)
{
	if (j->rg)
		zp_region_reset(j->rg); /* the sequences, their arrays, labels, documents */
	else
		ZP_ASSERT(j->eng.nseq == 0 && !j->eng.seq);
	j->eng.seq = NULL;
	j->labels = j->docs = NULL;
	j->order = NULL;
	j->gen = NULL;
	j->eng.nseq = 0;
}

/* A copy of s in the job's region; NULL when it is full. */
char *zp_api_keep_text(zp_api_call *c, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = zp_region_alloc(c->job->rg, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

/* s[0..len) as a JSON string literal (quoted, escaped: it may hold NUL bytes),
   in the job's region; NULL when it is full. */
char *zp_api_keep_json(zp_api_call *c, const char *s, size_t len)
{
	size_t avail = zp_region_avail(c->job->rg);
	char *p = avail > 0 ? zp_region_alloc(c->job->rg, avail) : NULL;
	if (!p)
		return NULL;
	zp_buf b; /* written into the free space, then trimmed to its length */
	zp_buf_init_fixed(&b, p, avail);
	zp_buf_json_strn(&b, s, len);
	zp_region_trim(c->job->rg, p, b.overflow ? 0 : b.len + 1);
	return b.overflow ? NULL : p;
}

/* ---- field readers (each returns 0, or the status with out written) ---- */

const cJSON *zp_api_field(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNull(v) ? NULL : v;
}

int zp_api_check_fields(zp_api_call *c, const char *const *known)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, c->root) {
		int k = 0;
		while (known[k] && strcmp(known[k], it->string))
			k++;
		if (!known[k]) /* as vLLM: ignored, with a warning (api_compat.c) */
			zp_api_ignored(c, it->string);
	}
	const cJSON *m = zp_api_field(c->root, "model");
	if (m && (!cJSON_IsString(m) || strcmp(m->valuestring, c->a->model_name)))
		return zp_api_error(c->out, ZP_HTTP_ERR_NOT_FOUND, "model", "model must be \"%s\" (the one this server "
				    "serves)", c->a->model_name);
	return 0;
}

int zp_api_get_bool(zp_api_call *c, const char *k, bool *v)
{
	const cJSON *b = zp_api_field(c->root, k);
	if (b && !cJSON_IsBool(b))
		return zp_api_bad(c, k, "%s must be true or false", k);
	*v = b && cJSON_IsTrue(b);
	return 0;
}

/* A JSON array of token ids, checked against the vocabulary and length limit. */
int zp_api_get_ids(zp_api_call *c, const cJSON *v, const char *param, int32_t *ids, int *n)
{
	zp_req_error err;
	if (!cJSON_IsArray(v))
		return zp_api_bad(c, param, "%s must be text or an array of token ids",
				  param);
	if (cJSON_GetArraySize(v) == 0)
		return zp_api_bad(c, param, "%s is empty", param);
	if (zp_req_ids(v, param, c->a->lim.vocab, c->a->lim.seq_tokens_max, ids, n, &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	return 0;
}

/* vLLM's words for a sequence over the longest (clients and vLLM's tests
   match on them), then ours. */
int zp_api_too_long(zp_api_call *c, const char *param, int n)
{
	enum zp_route ep = c->job->ep;
	const char *op = ep == ZP_ROUTE_SCORE ? "score" : ep == ZP_ROUTE_CLASSIFY ? "classification" :
			 ep == ZP_ROUTE_RERANK || ep == ZP_ROUTE_RERANK_V2 ? "rerank" :
			 ep == ZP_ROUTE_COMPLETIONS ? "completion" :
			 "embedding generation";
	int max = c->a->lim.seq_tokens_max;
	return zp_api_bad(c, param, "This model's maximum context length is %d tokens. However, you "
			  "requested %d tokens in the input for %s. Please reduce the length of the "
			  "input. (zprefill: the sequence built from %s is %d tokens, over max_tokens "
			  "%d)", max, n, op, param, n, max);
}

/* Text tokenized into ids[seq_tokens_max], checked against the limits. */
int zp_api_text_tokens(zp_api_call *c, const char *text, size_t len, const char *param,
		       int32_t *ids, int *n)
{
	zp_req_error err;
	if (zp_req_tokenize(&c->a->lim, text, len, ids, n, param, &err) == 0)
		return 0;
	if (err.code == ZP_HTTP_ERR_BAD_REQUEST && *n > c->a->lim.seq_tokens_max)
		return zp_api_too_long(c, param, *n);
	return zp_api_error(c->out, err.code, err.param, "%s", err.message);
}

/* Text (tokenized) or token ids into ids[seq_tokens_max]. */
int zp_api_get_tokens(zp_api_call *c, const cJSON *v, const char *param, int32_t *ids, int *n)
{
	if (!v)
		return zp_api_bad(c, param, "%s is required", param);
	if (!cJSON_IsString(v))
		return zp_api_get_ids(c, v, param, ids, n);
	return zp_api_text_tokens(c, v->valuestring, zp_json_strlen(v), param, ids, n);
}

/* A list of inputs: one string or id array, or an array of them (*n of them). */
int zp_api_get_list(zp_api_call *c, const cJSON *v, const char *param, bool ids_ok, int *n)
{
	if (!v)
		return zp_api_bad(c, param, "%s is required", param);
	if (cJSON_IsString(v)) {
		*n = 1;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return zp_api_bad(c, param, "%s must be text or a list", param);
	/* one sequence of token ids: its length is max_tokens' to check, not
	   the item count's */
	if (ids_ok && cJSON_IsNumber(v->child)) {
		*n = 1;
		return 0;
	}
	*n = cJSON_GetArraySize(v);
	if (*n == 0 || *n > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, param, "%s must hold 1 to %d entries", param,
				  ZP_API_ITEMS_MAX);
	return 0;
}

const cJSON *zp_api_list_item(const cJSON *v, int i)
{
	if (cJSON_IsString(v) || (cJSON_IsArray(v) && cJSON_IsNumber(v->child)))
		return v;
	return cJSON_GetArrayItem(v, i);
}

/* The last sequence added: r scores these candidate tokens at its last
   position. */
int zp_api_seq_cands(zp_api_call *c, const int32_t *ids, int n)
{
	zp_req_error err;
	if (zp_req_set_cands(&c->job->eng.seq[c->job->eng.nseq - 1], ids, n, &err))
		return zp_api_full(c, c->job->rg);
	return 0;
}

/* n floats for the last sequence added, into *out. */
int zp_api_seq_floats(zp_api_call *c, int n, float **out)
{
	if (!(*out = zp_req_alloc(&c->job->eng.seq[c->job->eng.nseq - 1], (size_t)n, sizeof **out)))
		return zp_api_full(c, c->job->rg);
	return 0;
}

int zp_api_alloc_seqs(zp_api_call *c, int n)
{
	ZP_ASSERT(c->job->rg && n > 0);
	c->job->eng.seq = zp_region_alloc(c->job->rg, (size_t)n * sizeof *c->job->eng.seq);
	c->job->eng.nseq = 0;
	return c->job->eng.seq ? 0 : zp_api_full(c, c->job->rg);
}

int zp_api_add_seq(zp_api_call *c, const int32_t *ids, int n, const char *param)
{
	zp_req_error err;
	if (n > c->a->lim.seq_tokens_max)
		return zp_api_too_long(c, param, n);
	zp_req *r = &c->job->eng.seq[c->job->eng.nseq++];
	zp_req_init(r, c->job->rg);
	if (zp_req_set_tokens(r, ids, n, &err))
		return zp_api_full(c, c->job->rg);
	c->job->eng.tokens += n;
	return 0;
}

void zp_api_softmax(double *v, int n)
{
	double mx = -INFINITY, s = 0;
	for (int i = 0; i < n; i++)
		mx = v[i] > mx ? v[i] : mx;
	for (int i = 0; i < n; i++)
		s += (v[i] = exp(v[i] - mx));
	for (int i = 0; i < n; i++)
		v[i] /= s;
}

void zp_api_usage(zp_buf *out, int tokens)
{
	zp_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}", tokens, tokens);
}

void zp_api_model_field(const zp_api *a, zp_buf *out)
{
	zp_buf_puts(out, ",\"model\":");
	zp_buf_json_str(out, a->model_name);
}
