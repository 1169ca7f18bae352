/* api_rerank.c -- POST /v1/rerank and /rerank: each document scored as
   P(yes) against P(no) at the end of the configured Qwen3-Reranker prompt
   ([rerank] in the config), then sorted. Reactor thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

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
	zp_api_alloc_seqs(c, nd);
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
			rc = zp_api_bad(c, "documents", "documents[%d] must be a string or "
					"{\"text\": string}", i);
			break;
		}
		if (ret_docs)
			c->job->docs[i] = strdup(d->valuestring);
		s.len = 0;
		zp_buf_printf(&s, "%s<Instruct>: %s\n<Query>: %s\n<Document>: %s%s", c->a->rerank.prefix,
			      ins ? ins->valuestring : c->a->rerank.instruction, q->valuestring,
			      d->valuestring, c->a->rerank.suffix);
		if (!(rc = zp_api_text_tokens(c, s.p, "documents", ids, &n)) &&
		    !(rc = zp_api_add_seq(c, ids, n, "documents")))
			zp_api_seq_cands(&c->job->seq[i], yn, 2);
	}
	zp_buf_free(&s);
	return rc;
}

static int cmp_score(const void *x, const void *y)
{
	const double *a = x, *b = y;
	return a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : a[1] < b[1] ? -1 : a[1] > b[1];
}

void zp_api_rerank_finish(zp_api *a, zp_job *j, zp_buf *out)
{
	double (*s)[2] = zp_xmalloc((size_t)j->nout * sizeof *s);
	for (int i = 0; i < j->nout; i++) {
		double v[2] = { j->seq[i].cand_lp[0], j->seq[i].cand_lp[1] }; /* no, yes */
		zp_api_softmax(v, 2);
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
	zp_api_model_field(a, out);
	zp_buf_printf(out, ",\"usage\":{\"total_tokens\":%d}}", j->tokens);
	free(s);
}

