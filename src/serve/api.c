/* api.c -- see api.h. Each endpoint is a pair: build (JSON -> sequences) and
   finish (results -> JSON). Field checks are strict: unknown fields, wrong
   types and out-of-range values are 400s naming the field. */
#include "api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "req_json.h"
#include "util.h"

typedef struct {
	zp_api *a;
	zp_job *job;
	zp_buf *out;
	const cJSON *root;
} ctx;

int zp_api_error(zp_buf *out, int status, const char *param, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	const char *type = status == 503 ? "service_unavailable" :
			   status >= 500 ? "internal_error" :
			   status == 404 ? "not_found_error" : "invalid_request_error";
	out->len = 0;
	zp_buf_puts(out, "{\"error\":{\"message\":");
	zp_buf_json_str(out, msg);
	zp_buf_printf(out, ",\"type\":\"%s\",\"param\":", type);
	if (param)
		zp_buf_json_str(out, param);
	else
		zp_buf_puts(out, "null");
	zp_buf_printf(out, ",\"code\":%d}}", status);
	return status;
}

void zp_api_init(zp_api *a, const zp_tok *tok, const zp_req_limits *lim, const char *model_name,
		 const zp_rerank_cfg *rr)
{
	memset(a, 0, sizeof *a);
	a->tok = tok;
	a->ts = tok ? zp_tok_state_new(tok) : NULL;
	a->lim = *lim;
	a->lim.tok = a->ts;
	a->model_name = model_name;
	a->rerank = *rr;
	a->yes_id = a->no_id = -1;
	a->scratch = zp_xmalloc((size_t)lim->max_tokens * 3 * sizeof *a->scratch);
	if (tok) { /* the configured label tokens, exactly as the vocabulary spells them */
		a->yes_id = zp_tok_find(tok, rr->yes_token, strlen(rr->yes_token));
		a->no_id = zp_tok_find(tok, rr->no_token, strlen(rr->no_token));
	}
}

void zp_api_free(zp_api *a)
{
	zp_tok_state_free(a->ts);
	free(a->scratch);
	memset(a, 0, sizeof *a);
}

static const struct {
	const char *path;
	enum zp_api_ep ep;
	enum zp_http_method method;
} routes[] = {
	{ "/v1/prefill", ZP_EP_PREFILL, ZP_HTTP_POST },
	{ "/v1/score", ZP_EP_SCORE, ZP_HTTP_POST },
	{ "/score", ZP_EP_SCORE, ZP_HTTP_POST },
	{ "/classify", ZP_EP_CLASSIFY, ZP_HTTP_POST },
	{ "/v1/rerank", ZP_EP_RERANK, ZP_HTTP_POST },
	{ "/rerank", ZP_EP_RERANK, ZP_HTTP_POST },
	{ "/v1/embeddings", ZP_EP_EMBED, ZP_HTTP_POST },
	{ "/pooling", ZP_EP_POOLING, ZP_HTTP_POST },
	{ "/tokenize", ZP_EP_TOKENIZE, ZP_HTTP_POST },
	{ "/detokenize", ZP_EP_DETOKENIZE, ZP_HTTP_POST },
	{ "/v1/models", ZP_EP_MODELS, ZP_HTTP_GET },
	{ "/health", ZP_EP_HEALTH, ZP_HTTP_GET },
	{ "/metrics", ZP_EP_METRICS, ZP_HTTP_GET },
};

enum zp_api_ep zp_api_route(const char *path, enum zp_http_method m, int *status)
{
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
		if (strcmp(path, routes[i].path) == 0) {
			if (routes[i].method == m)
				return routes[i].ep;
			*status = 405;
			return ZP_EP_OTHER;
		}
	*status = 404;
	return ZP_EP_OTHER;
}

const char *zp_api_allow(const char *path)
{
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
		if (strcmp(path, routes[i].path) == 0)
			return routes[i].method == ZP_HTTP_GET ? "GET" : "POST";
	return NULL;
}

const char *zp_api_ep_name(enum zp_api_ep ep)
{
	static const char *names[ZP_EP_COUNT] = { "prefill",  "score",	    "classify", "rerank",
						  "embeddings", "pooling",  "tokenize", "detokenize",
						  "models",	"health",   "metrics",  "other" };
	ZP_ASSERT(ep >= 0 && ep < ZP_EP_COUNT);
	return names[ep];
}

bool zp_api_needs_model(enum zp_api_ep ep)
{
	return ep <= ZP_EP_POOLING;
}

/* ---- field helpers (each returns 0, or the status with out written) ---- */

static const cJSON *field(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNull(v) ? NULL : v;
}

static int check_fields(ctx *c, const char *const *known)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, c->root) {
		int k = 0;
		while (known[k] && strcmp(known[k], it->string))
			k++;
		if (!known[k])
			return zp_api_error(c->out, 400, it->string, "unknown field \"%.64s\"", it->string);
	}
	const cJSON *m = field(c->root, "model");
	if (m && (!cJSON_IsString(m) || strcmp(m->valuestring, c->a->model_name)))
		return zp_api_error(c->out, 404, "model", "model must be \"%s\" (the one this server "
				    "serves)", c->a->model_name);
	return 0;
}

static int get_bool(ctx *c, const char *k, bool *v)
{
	const cJSON *b = field(c->root, k);
	if (b && !cJSON_IsBool(b))
		return zp_api_error(c->out, 400, k, "%s must be true or false", k);
	*v = b && cJSON_IsTrue(b);
	return 0;
}

/* A JSON array of token ids, checked against the vocabulary and length limit. */
static int get_ids(ctx *c, const cJSON *v, const char *param, int32_t *ids, int *n)
{
	zp_req_error err;
	if (!cJSON_IsArray(v))
		return zp_api_error(c->out, 400, param, "%s must be text or an array of token ids",
				    param);
	if (cJSON_GetArraySize(v) == 0)
		return zp_api_error(c->out, 400, param, "%s is empty", param);
	if (zp_req_ids(v, param, c->a->lim.vocab, c->a->lim.max_tokens, ids, n, &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	return 0;
}

/* Text tokenized into ids[max_tokens], checked against the limits. */
static int text_tokens(ctx *c, const char *text, const char *param, int32_t *ids, int *n)
{
	zp_req_error err;
	if (zp_req_tokenize(&c->a->lim, text, strlen(text), ids, n, param, &err) == 0)
		return 0;
	return zp_api_error(c->out, err.code, err.param, "%s", err.message);
}

/* Text (tokenized) or token ids into ids[max_tokens]. */
static int get_tokens(ctx *c, const cJSON *v, const char *param, int32_t *ids, int *n)
{
	if (!v)
		return zp_api_error(c->out, 400, param, "%s is required", param);
	if (!cJSON_IsString(v))
		return get_ids(c, v, param, ids, n);
	return text_tokens(c, v->valuestring, param, ids, n);
}

/* A list of inputs: one string or id array, or an array of them (*n of them). */
static int get_list(ctx *c, const cJSON *v, const char *param, bool ids_ok, int *n)
{
	if (!v)
		return zp_api_error(c->out, 400, param, "%s is required", param);
	if (cJSON_IsString(v)) {
		*n = 1;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return zp_api_error(c->out, 400, param, "%s must be text or a list", param);
	*n = cJSON_GetArraySize(v);
	if (*n == 0 || *n > ZP_API_ITEMS_MAX)
		return zp_api_error(c->out, 400, param, "%s must hold 1 to %d entries", param,
				    ZP_API_ITEMS_MAX);
	if (ids_ok && cJSON_IsNumber(v->child))
		*n = 1; /* one sequence of token ids */
	return 0;
}

static const cJSON *list_item(const cJSON *v, int i)
{
	if (cJSON_IsString(v) || (cJSON_IsArray(v) && cJSON_IsNumber(v->child)))
		return v;
	return cJSON_GetArrayItem(v, i);
}

static void seq_init(zp_req *r, const int32_t *ids, int n)
{
	memset(r, 0, sizeof *r);
	r->id_json = strdup("null");
	r->tokens = zp_xmalloc((size_t)n * sizeof *r->tokens);
	memcpy(r->tokens, ids, (size_t)n * sizeof *ids);
	r->ntok = n;
	r->plp_start = -1;
}

static void seq_cands(zp_req *r, const int32_t *ids, int n)
{
	r->cands = zp_xmalloc((size_t)n * sizeof *r->cands);
	memcpy(r->cands, ids, (size_t)n * sizeof *ids);
	r->ncand = n;
	r->want_cands = true;
	r->cand_lp = zp_xmalloc((size_t)n * sizeof *r->cand_lp);
}

static void alloc_seqs(ctx *c, int n)
{
	c->job->seq = zp_xcalloc((size_t)n, sizeof *c->job->seq);
	c->job->nseq = 0;
}

static int add_seq(ctx *c, const int32_t *ids, int n, const char *param)
{
	if (n > c->a->lim.max_tokens)
		return zp_api_error(c->out, 400, param, "a sequence built from %s is %d tokens (max "
				    "%d)", param, n, c->a->lim.max_tokens);
	seq_init(&c->job->seq[c->job->nseq++], ids, n);
	c->job->tokens += n;
	return 0;
}

/* ---- endpoints: build ---- */

static int build_prefill(ctx *c, const char *body, size_t len)
{
	zp_req_error err;
	alloc_seqs(c, 1);
	c->job->nseq = 1;
	if (zp_req_parse(&c->job->seq[0], body, len, &c->a->lim, &err)) {
		c->out->len = 0;
		zp_req_write_error(c->job->seq[0].id_json, &err, c->out);
		return err.code;
	}
	c->job->tokens = c->job->seq[0].ntok;
	return 0;
}

/* SGLang's /v1/score: text items are appended to the query as text, then
   tokenized; id items are appended as ids. */
static int build_score(ctx *c, int32_t *ids, int32_t *tmp)
{
	static const char *const known[] = { "query", "items", "label_token_ids", "apply_softmax",
					     "item_first", "model", NULL };
	const cJSON *q = field(c->root, "query"), *items = field(c->root, "items");
	int rc, nq = 0, nl, ni;
	bool item_first = false;
	if ((rc = check_fields(c, known)) || (rc = get_bool(c, "apply_softmax", &c->job->softmax)) ||
	    (rc = get_bool(c, "item_first", &item_first)))
		return rc;
	const cJSON *labels = field(c->root, "label_token_ids");
	if (!labels || !cJSON_IsArray(labels) || cJSON_GetArraySize(labels) == 0 ||
	    cJSON_GetArraySize(labels) > ZP_API_ITEMS_MAX)
		return zp_api_error(c->out, 400, "label_token_ids", "label_token_ids must be 1 to %d "
				    "token ids", ZP_API_ITEMS_MAX);
	int32_t lab[ZP_API_ITEMS_MAX];
	if ((rc = get_ids(c, labels, "label_token_ids", lab, &nl)))
		return rc;
	if (!q || !items || !cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0 ||
	    cJSON_GetArraySize(items) > ZP_API_ITEMS_MAX)
		return zp_api_error(c->out, 400, q ? "items" : "query", "query and items (1 to %d) "
				    "are required", ZP_API_ITEMS_MAX);
	ni = cJSON_GetArraySize(items);
	bool text = cJSON_IsString(q);
	if (!text && (rc = get_ids(c, q, "query", ids, &nq)))
		return rc;
	alloc_seqs(c, ni);
	c->job->nout = ni;
	c->job->nlab = nl;
	for (int i = 0; i < ni; i++) {
		const cJSON *it = cJSON_GetArrayItem(items, i);
		int n, ntmp;
		if (text != cJSON_IsString(it))
			return zp_api_error(c->out, 400, "items", "items[%d]: query and items must be all "
					    "text or all token ids", i);
		if (text) {
			size_t lq = strlen(q->valuestring), li = strlen(it->valuestring);
			char *s = zp_xmalloc(lq + li + 1);
			memcpy(s + (item_first ? li : 0), q->valuestring, lq);
			memcpy(s + (item_first ? 0 : lq), it->valuestring, li);
			s[lq + li] = 0;
			rc = text_tokens(c, s, "items", tmp, &n);
			free(s);
			if (rc)
				return rc;
		} else {
			if ((rc = get_ids(c, it, "items", tmp + nq, &ntmp)))
				return rc;
			if (nq + ntmp > c->a->lim.max_tokens)
				return zp_api_error(c->out, 400, "items", "query + items[%d] is %d tokens "
						    "(max %d)", i, nq + ntmp, c->a->lim.max_tokens);
			if (item_first) {
				memmove(tmp, tmp + nq, (size_t)ntmp * sizeof *tmp);
				memcpy(tmp + ntmp, ids, (size_t)nq * sizeof *ids);
			} else {
				memcpy(tmp, ids, (size_t)nq * sizeof *ids);
			}
			n = nq + ntmp;
		}
		if ((rc = add_seq(c, tmp, n, "items")))
			return rc;
		seq_cands(&c->job->seq[i], lab, nl);
	}
	return 0;
}

/* /classify: labels scored after each input. Single-token labels share one
   sequence per input (candidate log-probs); otherwise each (input, label) pair
   is a sequence whose label tokens' prompt log-probs are summed. */
static int build_classify(ctx *c, int32_t *ids, int32_t *tmp)
{
	static const char *const known[] = { "input", "labels", "model", NULL };
	const cJSON *in = field(c->root, "input"), *labels = field(c->root, "labels");
	int rc, nin, nl;
	if ((rc = check_fields(c, known)) || (rc = get_list(c, in, "input", false, &nin)))
		return rc;
	if (!c->a->ts)
		return zp_api_error(c->out, 400, "labels", "classify needs a tokenizer.json in the "
				    "model directory");
	if (!cJSON_IsArray(labels) || (nl = cJSON_GetArraySize(labels)) < 1 || nl > ZP_API_ITEMS_MAX)
		return zp_api_error(c->out, 400, "labels", "labels must be 1 to %d strings",
				    ZP_API_ITEMS_MAX);
	int32_t *lab = zp_xmalloc((size_t)nl * 64 * sizeof *lab);
	int *nlab = zp_xmalloc((size_t)nl * sizeof *nlab);
	c->job->labels = zp_xcalloc((size_t)nl, sizeof *c->job->labels);
	c->job->nlab = nl;
	c->job->nout = nin;
	rc = 0;
	for (int j = 0; j < nl && !rc; j++) {
		const cJSON *l = cJSON_GetArrayItem(labels, j);
		if (!cJSON_IsString(l))
			rc = zp_api_error(c->out, 400, "labels", "labels[%d] must be a string", j);
		else if ((nlab[j] = zp_tok_encode(c->a->ts, l->valuestring, strlen(l->valuestring),
						  lab + j * 64, 64)) < 1 || nlab[j] > 64)
			rc = zp_api_error(c->out, 400, "labels", "labels[%d] must be 1 to 64 tokens", j);
		else
			c->job->labels[j] = strdup(l->valuestring);
		if (!rc && nlab[j] > 1)
			c->job->multi = true;
	}
	if (!rc)
		alloc_seqs(c, c->job->multi ? nin * nl : nin);
	for (int i = 0; i < nin && !rc; i++) {
		int n;
		if ((rc = get_tokens(c, list_item(in, i), "input", ids, &n)))
			break;
		if (!c->job->multi) {
			int32_t first[ZP_API_ITEMS_MAX];
			for (int j = 0; j < nl; j++)
				first[j] = lab[j * 64];
			if (!(rc = add_seq(c, ids, n, "input")))
				seq_cands(&c->job->seq[i], first, nl);
			continue;
		}
		for (int j = 0; j < nl && !rc; j++) {
			memcpy(tmp, ids, (size_t)n * sizeof *ids);
			memcpy(tmp + n, lab + j * 64, (size_t)nlab[j] * sizeof *lab);
			if (!(rc = add_seq(c, tmp, n + nlab[j], "input"))) {
				zp_req *r = &c->job->seq[c->job->nseq - 1];
				r->plp_start = n;
				r->plp = zp_xmalloc((size_t)nlab[j] * sizeof *r->plp);
			}
		}
	}
	free(lab);
	free(nlab);
	return rc;
}

static int build_rerank(ctx *c, int32_t *ids)
{
	static const char *const known[] = { "query", "documents", "top_n", "instruction", "model",
					     "return_documents", NULL };
	const cJSON *q = field(c->root, "query"), *docs = field(c->root, "documents");
	const cJSON *tn = field(c->root, "top_n"), *ins = field(c->root, "instruction");
	int rc, nd;
	if ((rc = check_fields(c, known)))
		return rc;
	if (!c->a->ts || c->a->yes_id < 0 || c->a->no_id < 0)
		return zp_api_error(c->out, 400, NULL, "rerank needs a tokenizer.json in which the "
				    "configured yes/no labels are single tokens");
	if (!cJSON_IsString(q))
		return zp_api_error(c->out, 400, "query", "query must be a string");
	if (ins && !cJSON_IsString(ins))
		return zp_api_error(c->out, 400, "instruction", "instruction must be a string");
	if (!cJSON_IsArray(docs) || (nd = cJSON_GetArraySize(docs)) < 1 || nd > ZP_API_ITEMS_MAX)
		return zp_api_error(c->out, 400, "documents", "documents must be 1 to %d documents",
				    ZP_API_ITEMS_MAX);
	bool ret_docs = false;
	if ((rc = get_bool(c, "return_documents", &ret_docs)))
		return rc;
	c->job->top_n = nd;
	if (tn) {
		if (!cJSON_IsNumber(tn) || tn->valuedouble != floor(tn->valuedouble) ||
		    tn->valuedouble < 1)
			return zp_api_error(c->out, 400, "top_n", "top_n must be a positive integer");
		c->job->top_n = tn->valuedouble < nd ? (int)tn->valuedouble : nd;
	}
	alloc_seqs(c, nd);
	c->job->nout = nd;
	if (ret_docs)
		c->job->docs = zp_xcalloc((size_t)nd, sizeof *c->job->docs);
	int32_t yn[2] = { c->a->no_id, c->a->yes_id };
	zp_buf s;
	zp_buf_init(&s, 1024);
	rc = 0;
	for (int i = 0; i < nd && !rc; i++) {
		const cJSON *d = cJSON_GetArrayItem(docs, i), *dt;
		int n;
		if (cJSON_IsObject(d) && cJSON_GetArraySize(d) == 1 &&
		    cJSON_IsString(dt = cJSON_GetObjectItemCaseSensitive(d, "text")))
			d = dt; /* {"text": ...}, as Cohere and Jina accept */
		if (!cJSON_IsString(d)) {
			rc = zp_api_error(c->out, 400, "documents", "documents[%d] must be a string or "
					  "{\"text\": string}", i);
			break;
		}
		if (ret_docs)
			c->job->docs[i] = strdup(d->valuestring);
		s.len = 0;
		zp_buf_printf(&s, "%s<Instruct>: %s\n<Query>: %s\n<Document>: %s%s", c->a->rerank.prefix,
			      ins ? ins->valuestring : c->a->rerank.instruction, q->valuestring,
			      d->valuestring, c->a->rerank.suffix);
		if (!(rc = text_tokens(c, s.p, "documents", ids, &n)) &&
		    !(rc = add_seq(c, ids, n, "documents")))
			seq_cands(&c->job->seq[i], yn, 2);
	}
	zp_buf_free(&s);
	return rc;
}

/* /v1/embeddings (OpenAI: last token, normalised) and /pooling (the pooled
   final-norm state: "pooling" last or mean, "normalize" off by default). */
static int build_embed(ctx *c, int32_t *ids, bool pooling)
{
	static const char *const known[] = { "input", "model", "encoding_format", "user", NULL };
	static const char *const known_p[] = { "input", "model", "encoding_format", "pooling",
					       "normalize", NULL };
	const cJSON *in = field(c->root, "input"), *fmt = field(c->root, "encoding_format");
	const cJSON *pl = field(c->root, "pooling");
	int rc, nin;
	bool norm = true;
	if ((rc = check_fields(c, pooling ? known_p : known)) ||
	    (rc = get_list(c, in, "input", true, &nin)))
		return rc;
	if (pooling && (rc = get_bool(c, "normalize", &norm)))
		return rc;
	if (pl && (!cJSON_IsString(pl) || (strcmp(pl->valuestring, "last") &&
					   strcmp(pl->valuestring, "mean"))))
		return zp_api_error(c->out, 400, "pooling", "pooling must be \"last\" or \"mean\"");
	c->job->pooling_ep = pooling;
	if (fmt && (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") &&
					     strcmp(fmt->valuestring, "base64"))))
		return zp_api_error(c->out, 400, "encoding_format", "encoding_format must be \"float\" "
				    "or \"base64\"");
	c->job->base64 = fmt && strcmp(fmt->valuestring, "base64") == 0;
	if (field(c->root, "user") && !cJSON_IsString(field(c->root, "user")))
		return zp_api_error(c->out, 400, "user", "user must be a string");
	alloc_seqs(c, nin);
	c->job->nout = nin;
	for (int i = 0; i < nin; i++) {
		int n;
		if ((rc = get_tokens(c, list_item(in, i), "input", ids, &n)) ||
		    (rc = add_seq(c, ids, n, "input")))
			return rc;
		zp_req *r = &c->job->seq[i];
		r->pool = pl && !strcmp(pl->valuestring, "mean") ? ZP_POOL_MEAN : ZP_POOL_LAST;
		r->normalize = norm;
		r->emb_dim = c->a->lim.hidden;
		r->emb = zp_xmalloc((size_t)r->emb_dim * sizeof *r->emb);
	}
	return 0;
}

static int answer_tokenize(ctx *c, int32_t *ids)
{
	static const char *const known[] = { "prompt", "add_special_tokens", "model", NULL };
	const cJSON *p = field(c->root, "prompt");
	bool add_special;
	int rc, n;
	if ((rc = check_fields(c, known)) || (rc = get_bool(c, "add_special_tokens", &add_special)))
		return rc;
	if (!cJSON_IsString(p))
		return zp_api_error(c->out, 400, "prompt", "prompt must be a string");
	if (!c->a->ts)
		return zp_api_error(c->out, 400, "prompt", "the model directory has no tokenizer.json");
	/* The Qwen post-processor adds no tokens, so add_special_tokens changes nothing. */
	n = zp_tok_encode(c->a->ts, p->valuestring, strlen(p->valuestring), ids, c->a->lim.max_tokens);
	if (n > c->a->lim.max_tokens)
		return zp_api_error(c->out, 400, "prompt", "prompt is %d tokens (max %d)", n,
				    c->a->lim.max_tokens);
	c->out->len = 0;
	zp_buf_printf(c->out, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", n,
		      c->a->lim.max_tokens);
	for (int i = 0; i < n; i++)
		zp_buf_printf(c->out, "%s%d", i ? "," : "", ids[i]);
	zp_buf_puts(c->out, "]}");
	return 200;
}

static int answer_detokenize(ctx *c, int32_t *ids)
{
	static const char *const known[] = { "tokens", "model", NULL };
	const cJSON *t = field(c->root, "tokens"), *it;
	int rc, n = 0;
	if ((rc = check_fields(c, known)))
		return rc;
	if (!c->a->tok)
		return zp_api_error(c->out, 400, "tokens", "the model directory has no tokenizer.json");
	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) > c->a->lim.max_tokens)
		return zp_api_error(c->out, 400, "tokens", "tokens must be an array of at most %d ids",
				    c->a->lim.max_tokens);
	cJSON_ArrayForEach(it, t) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= zp_tok_vocab_size(c->a->tok))
			return zp_api_error(c->out, 400, "tokens", "tokens[%d] is not a token id", n);
		ids[n++] = (int32_t)d;
	}
	zp_buf text;
	zp_buf_init(&text, 256);
	if (zp_tok_decode(c->a->tok, ids, n, &text)) {
		zp_buf_free(&text);
		return zp_api_error(c->out, 400, "tokens", "tokens holds an id with no text");
	}
	c->out->len = 0;
	zp_buf_puts(c->out, "{\"prompt\":");
	zp_buf_json_strn(c->out, text.p, text.len);
	zp_buf_puts(c->out, "}");
	zp_buf_free(&text);
	return 200;
}

static int answer_models(zp_api *a, zp_buf *out)
{
	out->len = 0;
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[{\"id\":");
	zp_buf_json_str(out, a->model_name);
	zp_buf_printf(out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"zprefill\","
		      "\"max_model_len\":%d}]}", a->lim.max_tokens);
	return 200;
}

int zp_api_build(zp_api *a, enum zp_api_ep ep, const char *body, size_t len, zp_job *job,
		 zp_buf *out)
{
	ctx c = { a, job, out, NULL };
	int rc;
	job->ep = ep;
	if (ep == ZP_EP_MODELS)
		return answer_models(a, out);
	if (ep == ZP_EP_PREFILL)
		return build_prefill(&c, body, len);
	if (zp_json_check_utf8(body, len))
		return zp_api_error(out, 400, NULL, "body is not valid UTF-8 (or holds a NUL byte)");
	cJSON *root = zp_json_parse(body, len);
	if (!root)
		return zp_api_error(out, 400, NULL, "body is not valid JSON (one value, no \\u0000)");
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return zp_api_error(out, 400, NULL, "body must be a JSON object");
	}
	c.root = root;
	/* ids[max_tokens], then tmp[2 max_tokens] (a query plus an item before
	   their sum is checked) */
	int32_t *ids = a->scratch, *tmp = ids + a->lim.max_tokens;
	switch (ep) {
	case ZP_EP_SCORE: rc = build_score(&c, ids, tmp); break;
	case ZP_EP_CLASSIFY: rc = build_classify(&c, ids, tmp); break;
	case ZP_EP_RERANK: rc = build_rerank(&c, ids); break;
	case ZP_EP_EMBED: rc = build_embed(&c, ids, false); break;
	case ZP_EP_POOLING: rc = build_embed(&c, ids, true); break;
	case ZP_EP_TOKENIZE: rc = answer_tokenize(&c, ids); break;
	case ZP_EP_DETOKENIZE: rc = answer_detokenize(&c, ids); break;
	default: rc = zp_api_error(out, 500, NULL, "endpoint %s has no body handler",
				   zp_api_ep_name(ep));
	}
	cJSON_Delete(root);
	return rc;
}

/* ---- endpoints: finish ---- */

static void softmax(double *v, int n)
{
	double mx = -INFINITY, s = 0;
	for (int i = 0; i < n; i++)
		mx = v[i] > mx ? v[i] : mx;
	for (int i = 0; i < n; i++)
		s += (v[i] = exp(v[i] - mx));
	for (int i = 0; i < n; i++)
		v[i] /= s;
}

static void usage(zp_buf *out, int tokens)
{
	zp_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}", tokens, tokens);
}

static void model_field(zp_api *a, zp_buf *out)
{
	zp_buf_puts(out, ",\"model\":");
	zp_buf_json_str(out, a->model_name);
}

static void finish_score(zp_api *a, zp_job *j, zp_buf *out)
{
	double v[ZP_API_ITEMS_MAX];
	zp_buf_puts(out, "{\"object\":\"scoring\",\"scores\":[");
	for (int i = 0; i < j->nout; i++) {
		for (int k = 0; k < j->nlab; k++)
			v[k] = j->seq[i].cand_lp[k];
		if (j->softmax)
			softmax(v, j->nlab);
		else
			for (int k = 0; k < j->nlab; k++)
				v[k] = exp(v[k]);
		zp_buf_puts(out, i ? ",[" : "[");
		for (int k = 0; k < j->nlab; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, (float)v[k]);
		}
		zp_buf_puts(out, "]");
	}
	zp_buf_puts(out, "]");
	model_field(a, out);
	usage(out, j->tokens);
	zp_buf_puts(out, "}");
}

static void finish_classify(zp_api *a, zp_job *j, zp_buf *out)
{
	double v[ZP_API_ITEMS_MAX];
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		int best = 0;
		for (int k = 0; k < j->nlab; k++) {
			if (!j->multi) {
				v[k] = j->seq[i].cand_lp[k];
				continue;
			}
			const zp_req *r = &j->seq[i * j->nlab + k];
			v[k] = 0;
			for (int t = 0; t < r->ntok - r->plp_start; t++)
				v[k] += r->plp[t];
		}
		softmax(v, j->nlab);
		for (int k = 1; k < j->nlab; k++)
			best = v[k] > v[best] ? k : best;
		zp_buf_printf(out, "%s{\"index\":%d,\"label\":", i ? "," : "", i);
		zp_buf_json_str(out, j->labels[best]);
		zp_buf_puts(out, ",\"probs\":[");
		for (int k = 0; k < j->nlab; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, (float)v[k]);
		}
		zp_buf_printf(out, "],\"num_classes\":%d}", j->nlab);
	}
	zp_buf_puts(out, "]");
	model_field(a, out);
	usage(out, j->tokens);
	zp_buf_puts(out, "}");
}

static int cmp_score(const void *x, const void *y)
{
	const double *a = x, *b = y;
	return a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : a[1] < b[1] ? -1 : a[1] > b[1];
}

static void finish_rerank(zp_api *a, zp_job *j, zp_buf *out)
{
	double (*s)[2] = zp_xmalloc((size_t)j->nout * sizeof *s);
	for (int i = 0; i < j->nout; i++) {
		double v[2] = { j->seq[i].cand_lp[0], j->seq[i].cand_lp[1] }; /* no, yes */
		softmax(v, 2);
		s[i][0] = v[1];
		s[i][1] = i;
	}
	qsort(s, (size_t)j->nout, sizeof *s, cmp_score);
	zp_buf_puts(out, "{\"object\":\"rerank\",\"results\":[");
	for (int i = 0; i < j->top_n; i++) {
		zp_buf_printf(out, "%s{\"index\":%d,\"relevance_score\":", i ? "," : "", (int)s[i][1]);
		zp_buf_json_float(out, (float)s[i][0]);
		if (j->docs) {
			zp_buf_puts(out, ",\"document\":{\"text\":");
			zp_buf_json_str(out, j->docs[(int)s[i][1]]);
			zp_buf_puts(out, "}");
		}
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
	model_field(a, out);
	zp_buf_printf(out, ",\"usage\":{\"total_tokens\":%d}}", j->tokens);
	free(s);
}

static void base64(zp_buf *out, const uint8_t *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		zp_buf_put(out, q, 4);
	}
}

static void finish_embed(zp_api *a, zp_job *j, zp_buf *out)
{
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		const zp_req *r = &j->seq[i];
		zp_buf_printf(out, j->pooling_ep ? "%s{\"object\":\"pooling\",\"index\":%d,\"data\":" :
			      "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
		if (j->base64) { /* little-endian float32, as OpenAI's */
			zp_buf_puts(out, "\"");
			base64(out, (const uint8_t *)r->emb, (size_t)r->emb_dim * sizeof(float));
			zp_buf_puts(out, "\"}");
			continue;
		}
		zp_buf_puts(out, "[");
		for (int k = 0; k < r->emb_dim; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, r->emb[k]);
		}
		zp_buf_puts(out, "]}");
	}
	zp_buf_puts(out, "]");
	model_field(a, out);
	usage(out, j->tokens);
	zp_buf_puts(out, "}");
}

int zp_api_finish(zp_api *a, zp_job *j, zp_buf *out)
{
	ZP_ASSERT(j->done == j->nseq && !j->cancelled);
	out->len = 0;
	switch (j->ep) {
	case ZP_EP_PREFILL: zp_req_write_result(&j->seq[0], out); break;
	case ZP_EP_SCORE: finish_score(a, j, out); break;
	case ZP_EP_CLASSIFY: finish_classify(a, j, out); break;
	case ZP_EP_RERANK: finish_rerank(a, j, out); break;
	case ZP_EP_EMBED:
	case ZP_EP_POOLING: finish_embed(a, j, out); break;
	default: ZP_ASSERT(!"an endpoint without sequences has nothing to finish");
	}
	return 200;
}

void zp_api_job_free(zp_job *j)
{
	for (int i = 0; i < j->nseq; i++)
		zp_req_free(&j->seq[i]);
	free(j->seq);
	for (int k = 0; j->labels && k < j->nlab; k++)
		free(j->labels[k]);
	free(j->labels);
	for (int k = 0; j->docs && k < j->nout; k++)
		free(j->docs[k]);
	free(j->docs);
	j->docs = NULL;
	j->seq = NULL;
	j->labels = NULL;
	j->nseq = 0;
}
