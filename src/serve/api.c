/* api.c -- see api.h: the endpoints' common part. zp_api_build parses a JSON
   body once for the endpoint (strict: unknown fields, wrong types and
   out-of-range values are 400s naming the field) and calls the build that
   router.c's table names; zp_api_finish calls its finish. The field readers
   and sequence builders every api_*.c uses are here (endpoints.h). */
#include "api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

static void error_v(zp_buf *out, int status, const char *param, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	out->len = 0;
	zp_buf_puts(out, "{\"error\":{\"message\":");
	zp_buf_json_str(out, msg);
	zp_buf_printf(out, ",\"type\":\"%s\",\"param\":", zp_http_err_type(status));
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

int zp_api_build(zp_api *a, enum zp_route ep, const zp_api_view *view, const char *body,
		 size_t len, zp_job *job, zp_api_reply *reply)
{
	const zp_route_entry *r = zp_route_of(ep);
	/* ids[max_tokens], then tmp[2 max_tokens] (a query plus an item before
	   their sum is checked) */
	zp_api_call c = { .a = a, .view = view, .body = body, .len = len, .job = job,
			  .out = reply->body, .reply = reply, .ids = a->scratch,
			  .tmp = a->scratch + a->lim.max_tokens };
	reply->content_type = "application/json";
	reply->retry_after_s = 0;
	job->ep = ep;
	if (!(r->flags & ZP_ROUTE_JSON))
		return r->build(&c);
	if (zp_json_check_utf8(body, len))
		return zp_api_bad(&c, NULL, "body is not valid UTF-8 (or holds a NUL byte)");
	cJSON *root = zp_json_parse(body, len);
	if (!root)
		return zp_api_bad(&c, NULL, "body is not valid JSON (one value, no \\u0000)");
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return zp_api_bad(&c, NULL, "body must be a JSON object");
	}
	c.root = root;
	int rc = r->build(&c);
	cJSON_Delete(root);
	return rc;
}

int zp_api_finish(zp_api *a, zp_job *j, zp_buf *out)
{
	const zp_route_entry *r = zp_route_of(j->ep);
	ZP_ASSERT(j->done == j->nseq && !j->cancelled);
	ZP_ASSERT(r->finish); /* only endpoints with sequences have something to finish */
	out->len = 0;
	r->finish(a, j, out);
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
		if (!known[k])
			return zp_api_bad(c, it->string, "unknown field \"%.64s\"", it->string);
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
	if (zp_req_ids(v, param, c->a->lim.vocab, c->a->lim.max_tokens, ids, n, &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	return 0;
}

/* Text tokenized into ids[max_tokens], checked against the limits. */
int zp_api_text_tokens(zp_api_call *c, const char *text, const char *param, int32_t *ids, int *n)
{
	zp_req_error err;
	if (zp_req_tokenize(&c->a->lim, text, strlen(text), ids, n, param, &err) == 0)
		return 0;
	return zp_api_error(c->out, err.code, err.param, "%s", err.message);
}

/* Text (tokenized) or token ids into ids[max_tokens]. */
int zp_api_get_tokens(zp_api_call *c, const cJSON *v, const char *param, int32_t *ids, int *n)
{
	if (!v)
		return zp_api_bad(c, param, "%s is required", param);
	if (!cJSON_IsString(v))
		return zp_api_get_ids(c, v, param, ids, n);
	return zp_api_text_tokens(c, v->valuestring, param, ids, n);
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
	*n = cJSON_GetArraySize(v);
	if (*n == 0 || *n > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, param, "%s must hold 1 to %d entries", param,
				  ZP_API_ITEMS_MAX);
	if (ids_ok && cJSON_IsNumber(v->child))
		*n = 1; /* one sequence of token ids */
	return 0;
}

const cJSON *zp_api_list_item(const cJSON *v, int i)
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

void zp_api_seq_cands(zp_req *r, const int32_t *ids, int n)
{
	r->cands = zp_xmalloc((size_t)n * sizeof *r->cands);
	memcpy(r->cands, ids, (size_t)n * sizeof *ids);
	r->ncand = n;
	r->want_cands = true;
	r->cand_lp = zp_xmalloc((size_t)n * sizeof *r->cand_lp);
}

void zp_api_alloc_seqs(zp_api_call *c, int n)
{
	c->job->seq = zp_xcalloc((size_t)n, sizeof *c->job->seq);
	c->job->nseq = 0;
}

int zp_api_add_seq(zp_api_call *c, const int32_t *ids, int n, const char *param)
{
	if (n > c->a->lim.max_tokens)
		return zp_api_bad(c, param, "a sequence built from %s is %d tokens (max "
				  "%d)", param, n, c->a->lim.max_tokens);
	seq_init(&c->job->seq[c->job->nseq++], ids, n);
	c->job->tokens += n;
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
