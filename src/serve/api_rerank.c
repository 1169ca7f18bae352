/* api_rerank.c -- POST /v1/rerank and /rerank: each document scored as
   P(yes) against P(no) at the end of the configured Qwen3-Reranker prompt
   ([rerank] in the config), then sorted (a heap sort in place: glibc's qsort
   may malloc). Reactor thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* The prompt's parts that are not a document, each named when it is what
   passes max_tokens: a document is blamed only for its own tokens. */
static int check_head(zp_api_call *c, const char *instr, bool instr_given, const char *query)
{
	zp_req_error err;
	const zp_rerank_cfg *rr = &c->a->rerank;
	int n;
	if ((instr_given && zp_req_encode(&c->a->lim, instr, strlen(instr), c->ids, &n,
					  "instruction", &err)) ||
	    zp_req_encode(&c->a->lim, query, strlen(query), c->ids, &n, "query", &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	int w = snprintf(c->a->text, c->a->text_cap, "%s<Instruct>: %s\n<Query>: %s\n<Document>: "
			 "%s", rr->prefix, instr, query, rr->suffix);
	ZP_ASSERT(w >= 0 && (size_t)w < c->a->text_cap);
	if (zp_req_encode(&c->a->lim, c->a->text, (size_t)w, c->ids, &n, "query", &err))
		return zp_api_error(c->out, err.code, instr_given ? "instruction" : "query",
				    "the rerank prompt without its document (the [rerank] template, "
				    "instruction and query) is over max_tokens: %s", err.message);
	return 0;
}

int zp_api_rerank_build(zp_api_call *c)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "query", "documents", "top_n", "instruction", "model",
					     "return_documents", NULL };
	const cJSON *q = zp_api_field(c->root, "query"), *docs = zp_api_field(c->root, "documents");
	const cJSON *tn = zp_api_field(c->root, "top_n"), *ins = zp_api_field(c->root, "instruction");
	int rc, nd;
	if ((rc = zp_api_check_fields(c, known)))
		return rc;
	if (!c->a->ts || c->a->yes_id < 0 || c->a->no_id < 0)
		return zp_api_bad(c, NULL, "rerank needs a tokenizer.json in which the "
				  "configured yes/no labels are single tokens");
	if (!cJSON_IsString(q))
		return zp_api_bad(c, "query", "query must be a string");
	if (ins && !cJSON_IsString(ins))
		return zp_api_bad(c, "instruction", "instruction must be a string");
	if (!cJSON_IsArray(docs) || (nd = cJSON_GetArraySize(docs)) < 1 || nd > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "documents", "documents must be 1 to %d documents",
				  ZP_API_ITEMS_MAX);
	bool ret_docs = false;
	if ((rc = zp_api_get_bool(c, "return_documents", &ret_docs)))
		return rc;
	c->job->top_n = nd;
	if (tn) {
		if (!cJSON_IsNumber(tn) || tn->valuedouble != floor(tn->valuedouble) ||
		    tn->valuedouble < 1)
			return zp_api_bad(c, "top_n", "top_n must be a positive integer");
		c->job->top_n = tn->valuedouble < nd ? (int)tn->valuedouble : nd;
	}
	if ((rc = zp_api_alloc_seqs(c, nd)))
		return rc;
	c->job->nout = nd;
	if (!(c->job->order = zp_region_alloc(c->job->rg, (size_t)nd * sizeof *c->job->order)) ||
	    (ret_docs && !(c->job->docs = zp_region_alloc(c->job->rg,
							  (size_t)nd * sizeof *c->job->docs))))
		return zp_api_full(c, c->job->rg);
	int32_t yn[2] = { c->a->no_id, c->a->yes_id };
	const char *instr = ins ? ins->valuestring : c->a->rerank.instruction;
	if ((rc = check_head(c, instr, ins != NULL, q->valuestring)))
		return rc;
	for (int i = 0; i < nd; i++) {
		const cJSON *d = cJSON_GetArrayItem(docs, i), *dt;
		int n;
		if (cJSON_IsObject(d) && cJSON_GetArraySize(d) == 1 &&
		    cJSON_IsString(dt = cJSON_GetObjectItemCaseSensitive(d, "text")))
			d = dt; /* {"text": ...}, as Cohere and Jina accept */
		if (!cJSON_IsString(d))
			return zp_api_bad(c, "documents", "documents[%d] must be a string or "
					  "{\"text\": string}", i);
		if (ret_docs && !(c->job->docs[i] = zp_api_keep_text(c, d->valuestring)))
			return zp_api_full(c, c->job->rg);
		/* instruction, query and document all come from the body: the text
		   scratch holds them with the configured parts */
		int w = snprintf(c->a->text, c->a->text_cap, "%s<Instruct>: %s\n<Query>: %s\n<Document>: "
				 "%s%s", c->a->rerank.prefix, instr, q->valuestring, d->valuestring,
				 c->a->rerank.suffix);
		ZP_ASSERT(w >= 0 && (size_t)w < c->a->text_cap);
		if ((rc = zp_api_text_tokens(c, c->a->text, "documents", ids, &n)) ||
		    (rc = zp_api_add_seq(c, ids, n, "documents")) || (rc = zp_api_seq_cands(c, yn, 2)))
			return rc;
	}
	return 0;
}

/* Whether x goes before y: higher score first, then lower index. */
static bool before(const double *x, const double *y)
{
	return x[0] > y[0] || (x[0] == y[0] && x[1] < y[1]);
}

static void sift_down(double (*s)[2], int i, int n)
{
	for (int k; (k = 2 * i + 1) < n; i = k) {
		if (k + 1 < n && before(s[k], s[k + 1]))
			k++;
		if (!before(s[i], s[k]))
			return;
		double t[2] = { s[i][0], s[i][1] };
		s[i][0] = s[k][0], s[i][1] = s[k][1];
		s[k][0] = t[0], s[k][1] = t[1];
	}
}

/* s[0..n) in order (the order is total: indexes differ). */
static void sort_scores(double (*s)[2], int n)
{
	for (int i = n / 2 - 1; i >= 0; i--)
		sift_down(s, i, n);
	for (int end = n - 1; end > 0; end--) { /* the last in order to the end */
		double t[2] = { s[0][0], s[0][1] };
		s[0][0] = s[end][0], s[0][1] = s[end][1];
		s[end][0] = t[0], s[end][1] = t[1];
		sift_down(s, 0, end);
	}
}

void zp_api_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	double (*s)[2] = j->order;
	for (int i = 0; i < j->nout; i++) {
		double v[2] = { j->eng.seq[i].cand_lp[0], j->eng.seq[i].cand_lp[1] }; /* no, yes */
		zp_api_softmax(v, 2);
		s[i][0] = v[1];
		s[i][1] = i;
	}
	sort_scores(s, j->nout);
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
	zp_api_model_field(a, out);
	zp_buf_printf(out, ",\"usage\":{\"total_tokens\":%d}}", j->eng.tokens);
}
