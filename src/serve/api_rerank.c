/* api_rerank.c -- POST /v1/rerank, /rerank, /v2/rerank (vLLM's, Cohere's and
   Jina's documents shape; TEI's texts shape is api_tei.c's): each document
   scored as P(yes) against P(no) at the end of the configured Qwen3-Reranker
   prompt ([rerank] in the config), then sorted (a heap sort in place: glibc's
   qsort may malloc); the response is vLLM's RerankResponse. Texts may hold
   NUL bytes (\u0000): they are read with their lengths. Reactor thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "endpoints.h"
#include "util.h"

/* Appends n bytes of s at *w in the api's text scratch; false when full. */
static bool put(zp_api_call *c, size_t *w, const char *s, size_t n)
{
	if (n >= c->a->text_cap - *w)
		return false;
	memcpy(c->a->text + *w, s, n);
	*w += n;
	return true;
}

/* The Qwen3-Reranker prompt of (instruction, query, document) in the api's
   text scratch, *len bytes (texts may hold NUL bytes: lengths, not C
   strings); a 413 when it does not fit (a document cut by max_tokens_per_doc
   is decoded in NFC form, which can be longer than the text sent). */
static int prompt(zp_api_call *c, const char *const part[3], const size_t plen[3], size_t *len)
{
	const zp_rerank_cfg *rr = &c->a->rerank;
	size_t w = 0;
	bool ok = put(c, &w, rr->prefix, strlen(rr->prefix)) && put(c, &w, "<Instruct>: ", 12) &&
		  put(c, &w, part[0], plen[0]) && put(c, &w, "\n<Query>: ", 10) &&
		  put(c, &w, part[1], plen[1]) && put(c, &w, "\n<Document>: ", 13) &&
		  put(c, &w, part[2], plen[2]) && put(c, &w, rr->suffix, strlen(rr->suffix));
	if (!ok)
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "documents", "the reranker prompt "
				    "of this document is over %zu bytes", c->a->text_cap);
	c->a->text[w] = 0;
	*len = w;
	return 0;
}

/* max_tokens_per_doc (Cohere's, vLLM's): the document's first max tokens,
   decoded again (into the parse region). */
static int cut_doc(zp_api_call *c, int max, const char **d, size_t *dl)
{
	int32_t *ids;
	int n, rc;
	if ((rc = zp_api_encode_all(c, *d, *dl, "documents", true, &ids, &n)) || n <= max)
		return rc;
	size_t cap = 3 * *dl + 4; /* U+FFFD for a cut character: at most 3 bytes a byte */
	char *cut = zp_region_alloc(&c->a->parse, cap);
	if (!cut)
		return zp_api_full(c, &c->a->parse);
	zp_buf b;
	zp_buf_init_fixed(&b, cut, cap);
	rc = zp_tok_decode(c->a->tok, ids, max, &b);
	ZP_ASSERT(rc == 0 && !b.overflow); /* the tokenizer's own ids, within the bound */
	*d = cut;
	*dl = b.len;
	return 0;
}

/* The request's settings: top_n (vLLM: 0 or absent is every document),
   max_tokens_per_doc, truncate_prompt_tokens, use_activation. */
static int settings(zp_api_call *c, int nd, int *per_doc, int *keep, bool *ret_docs)
{
	const cJSON *tn = zp_api_field(c->root, "top_n");
	const cJSON *pd = zp_api_field(c->root, "max_tokens_per_doc");
	int rc;
	*ret_docs = true; /* vLLM always echoes them; return_documents false (Cohere's) does not */
	if ((rc = zp_api_field(c->root, "return_documents") ? zp_api_get_bool(c, "return_documents",
									       ret_docs) : 0) ||
	    (rc = zp_api_get_truncate(c, "truncate_prompt_tokens", keep)) ||
	    (rc = zp_api_get_activation(c, &c->job->raw)))
		return rc;
	c->job->top_n = nd;
	if (tn && (!cJSON_IsNumber(tn) || !isfinite(tn->valuedouble) ||
		   tn->valuedouble != floor(tn->valuedouble) || tn->valuedouble < 0))
		return zp_api_bad(c, "top_n", "top_n must be an integer >= 0 (0: every document)");
	if (tn && tn->valuedouble >= 1 && tn->valuedouble < nd)
		c->job->top_n = (int)tn->valuedouble;
	*per_doc = 0;
	if (pd && (!cJSON_IsNumber(pd) || !isfinite(pd->valuedouble) ||
		   pd->valuedouble != floor(pd->valuedouble) || pd->valuedouble < 1))
		return zp_api_bad(c, "max_tokens_per_doc", "max_tokens_per_doc must be a positive "
				  "integer");
	if (pd)
		*per_doc = (int)ZP_MIN(pd->valuedouble, (double)c->a->lim.seq_tokens_max);
	return 0;
}

/* Document i's text (a string, or {"text": string} as Cohere and Jina
   accept; other keys ignored, as vLLM does). */
static int doc_text(zp_api_call *c, const cJSON *docs, int i, const char **d, size_t *dl)
{
	const cJSON *v = cJSON_GetArrayItem(docs, i), *t;
	if (cJSON_IsObject(v) && cJSON_IsString(t = cJSON_GetObjectItemCaseSensitive(v, "text"))) {
		static const char *const text_only[] = { "text", NULL };
		zp_api_ignore_unknown(c, v, "documents[]", text_only);
		v = t;
	}
	if (!cJSON_IsString(v))
		return zp_api_bad(c, "documents", "documents[%d] must be a string or {\"text\": "
				  "string}", i);
	*d = v->valuestring;
	*dl = zp_json_strlen(v);
	return 0;
}

int zp_api_rerank_build(zp_api_call *c)
{
	static const char *const known[] = { "query", "documents", "top_n", "instruction", "model",
					     "return_documents", "truncate_prompt_tokens",
					     "max_tokens_per_doc", "use_activation", "activation",
					     "softmax", "priority", "mm_processor_kwargs", "user",
					     "request_id", NULL };
	const cJSON *q = zp_api_field(c->root, "query"), *docs = zp_api_field(c->root, "documents");
	const cJSON *ins = zp_api_field(c->root, "instruction");
	zp_api_job *j = c->job;
	int rc, nd, per_doc, keep, max = c->a->lim.seq_tokens_max;
	bool ret_docs;
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
	if ((rc = settings(c, nd, &per_doc, &keep, &ret_docs)) || (rc = zp_api_alloc_seqs(c, nd)))
		return rc;
	j->nout = nd;
	if (!(j->order = zp_region_alloc(j->rg, (size_t)nd * sizeof *j->order)) ||
	    (ret_docs && !(j->docs = zp_region_alloc(j->rg, (size_t)nd * sizeof *j->docs))))
		return zp_api_full(c, j->rg);
	int32_t yn[2] = { c->a->no_id, c->a->yes_id }, *ids;
	const char *part[3] = { ins ? ins->valuestring : c->a->rerank.instruction, q->valuestring, "" };
	size_t plen[3] = { ins ? zp_json_strlen(ins) : strlen(part[0]), zp_json_strlen(q), 0 }, len;
	int n, nhead;
	/* the prompt without its document: a document is blamed only for its own tokens */
	if ((rc = prompt(c, part, plen, &len)) ||
	    (rc = zp_api_encode_all(c, c->a->text, len, "query", true, &ids, &nhead)))
		return rc;
	for (int i = 0; i < nd; i++) {
		if ((rc = doc_text(c, docs, i, &part[2], &plen[2])))
			return rc;
		if (ret_docs && !(j->docs[i] = zp_api_keep_json(c, part[2], plen[2])))
			return zp_api_full(c, j->rg);
		if ((per_doc && (rc = cut_doc(c, per_doc, &part[2], &plen[2]))) ||
		    (rc = prompt(c, part, plen, &len)) ||
		    (rc = zp_api_encode_all(c, c->a->text, len, "documents", true, &ids, &n)))
			return rc;
		zp_api_truncate(&ids, &n, keep, true); /* vLLM: the last tokens are kept */
		if (n > max)
			return zp_api_too_long(c, nhead <= max ? "documents" : ins ? "instruction" :
					       "query", n);
		if ((rc = zp_api_add_seq(c, ids, n, "documents")) || (rc = zp_api_seq_cands(c, yn, 2)))
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

/* Numbers the response ids: finish runs on the reactor thread only. */
static unsigned long long rerank_seq;

/* vLLM's RerankResponse (id, model, usage, results[{index, document,
   relevance_score}]), which Cohere's and Jina's clients also read; cohere:
   Cohere's v2 meta after it (api_version 2; billed_units.search_units as
   Cohere bills: one per 100 documents, begun). */
static void rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out, bool cohere)
{
	double (*s)[2] = j->order;
	for (int i = 0; i < j->nout; i++) {
		/* P(yes) against P(no): the sigmoid of the logit yes - no */
		double d = (double)j->eng.seq[i].cand_lp[1] - j->eng.seq[i].cand_lp[0];
		s[i][0] = j->raw ? d : 1.0 / (1.0 + exp(-d));
		s[i][1] = i;
	}
	sort_scores(s, j->nout);
	zp_buf_printf(out, "{\"id\":\"rerank-%08llx%08llx\",\"object\":\"rerank\"",
		      (unsigned long long)time(NULL), ++rerank_seq);
	zp_api_model_field(a, out);
	zp_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d},\"results\":[",
		      j->eng.tokens, j->eng.tokens);
	for (int i = 0; i < j->top_n; i++) {
		zp_buf_printf(out, "%s{\"index\":%d,\"relevance_score\":", i ? "," : "", (int)s[i][1]);
		zp_buf_json_float(out, (float)s[i][0]);
		if (j->docs) {
			zp_buf_puts(out, ",\"document\":{\"text\":");
			zp_buf_puts(out, j->docs[(int)s[i][1]]); /* kept as a JSON literal */
			zp_buf_puts(out, "}");
		}
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
	if (cohere)
		zp_buf_printf(out, ",\"meta\":{\"api_version\":{\"version\":\"2\",\"is_experimental\":"
			      "false},\"billed_units\":{\"search_units\":%d}}", (j->nout + 99) / 100);
	zp_buf_puts(out, "}");
}

void zp_api_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	rerank_finish(a, j, out, false);
}

void zp_api_cohere_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	if (j->shape == ZP_API_SHAPE_TEI) /* TEI's texts, sent to this path too */
		return zp_api_tei_rerank_finish(a, j, out);
	rerank_finish(a, j, out, true);
}
