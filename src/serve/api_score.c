/* api_score.c -- label scoring: POST /v1/score and /score (SGLang's: label
   token probabilities after query+item) and POST /classify (labels of any
   length scored after each input, softmaxed). Reactor thread. */
#include <math.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* SGLang's /v1/score: text items are appended to the query as text, then
   tokenized; id items are appended as ids. */
int zp_api_score_build(zp_api_call *c)
{
	int32_t *ids = c->ids, *tmp = c->tmp;
	static const char *const known[] = { "query", "items", "label_token_ids", "apply_softmax",
					     "item_first", "model", NULL };
	const cJSON *q = zp_api_field(c->root, "query"), *items = zp_api_field(c->root, "items");
	int rc, nq = 0, nl, ni;
	bool item_first = false;
	if ((rc = zp_api_check_fields(c, known)) || (rc = zp_api_get_bool(c, "apply_softmax", &c->job->softmax)) ||
	    (rc = zp_api_get_bool(c, "item_first", &item_first)))
		return rc;
	const cJSON *labels = zp_api_field(c->root, "label_token_ids");
	if (!labels || !cJSON_IsArray(labels) || cJSON_GetArraySize(labels) == 0 ||
	    cJSON_GetArraySize(labels) > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "label_token_ids", "label_token_ids must be 1 to %d "
				  "token ids", ZP_API_ITEMS_MAX);
	int32_t lab[ZP_API_ITEMS_MAX];
	if ((rc = zp_api_get_ids(c, labels, "label_token_ids", lab, &nl)))
		return rc;
	if (!q || !items || (!cJSON_IsArray(items) && !cJSON_IsString(items)) ||
	    cJSON_GetArraySize(items) > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, q ? "items" : "query", "query and items (a string, or a list "
				  "of 0 to %d) are required", ZP_API_ITEMS_MAX);
	ni = cJSON_IsString(items) ? 1 : cJSON_GetArraySize(items);
	if (ni == 0) { /* as SGLang: nothing to score, an empty answer */
		zp_buf_puts(c->out, "{\"object\":\"scoring\",\"scores\":[]");
		zp_api_model_field(c->a, c->out);
		zp_api_usage(c->out, 0);
		zp_buf_puts(c->out, "}");
		return 200;
	}
	bool text = cJSON_IsString(q);
	if (!text && (rc = zp_api_get_ids(c, q, "query", ids, &nq)))
		return rc;
	if ((rc = zp_api_alloc_seqs(c, ni)))
		return rc;
	c->job->nout = ni;
	c->job->nlab = nl;
	for (int i = 0; i < ni; i++) {
		const cJSON *it = cJSON_IsString(items) ? items : cJSON_GetArrayItem(items, i);
		int n, ntmp;
		if (text != cJSON_IsString(it))
			return zp_api_bad(c, "items", "items[%d]: query and items must be all "
					  "text or all token ids", i);
		if (text) {
			/* both come from the body: together they fit the text scratch */
			size_t lq = zp_json_strlen(q), li = zp_json_strlen(it);
			char *s = c->a->text;
			ZP_ASSERT(lq + li < c->a->text_cap);
			memcpy(s + (item_first ? li : 0), q->valuestring, lq);
			memcpy(s + (item_first ? 0 : lq), it->valuestring, li);
			s[lq + li] = 0;
			if ((rc = zp_api_text_tokens(c, s, lq + li, "items", tmp, &n)))
				return rc;
		} else {
			if ((rc = zp_api_get_ids(c, it, "items", tmp + nq, &ntmp)))
				return rc;
			if (nq + ntmp > c->a->lim.seq_tokens_max)
				return zp_api_bad(c, "items", "query + items[%d] is %d tokens "
						  "(max %d)", i, nq + ntmp,
						  c->a->lim.seq_tokens_max);
			if (item_first) {
				memmove(tmp, tmp + nq, (size_t)ntmp * sizeof *tmp);
				memcpy(tmp + ntmp, ids, (size_t)nq * sizeof *ids);
			} else {
				memcpy(tmp, ids, (size_t)nq * sizeof *ids);
			}
			n = nq + ntmp;
		}
		if ((rc = zp_api_add_seq(c, tmp, n, "items")) || (rc = zp_api_seq_cands(c, lab, nl)))
			return rc;
	}
	return 0;
}

/* /classify: labels scored after each input. Single-token labels share one
   sequence per input (candidate log-probs); otherwise each (input, label) pair
   is a sequence whose label tokens' prompt log-probs are summed. */
int zp_api_classify_build(zp_api_call *c)
{
	int32_t *ids = c->ids, *tmp = c->tmp;
	static const char *const known[] = { "input", "labels", "model", NULL };
	const cJSON *in = zp_api_field(c->root, "input"), *labels = zp_api_field(c->root, "labels");
	int rc, nin, nl;
	if ((rc = zp_api_check_fields(c, known)) || (rc = zp_api_get_list(c, in, "input", true, &nin)))
		return rc;
	if (!c->a->ts)
		return zp_api_bad(c, "labels", "classify needs a tokenizer.json in the "
				  "model directory");
	if (!cJSON_IsArray(labels) || (nl = cJSON_GetArraySize(labels)) < 1 || nl > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "labels", "labels must be 1 to %d strings",
				  ZP_API_ITEMS_MAX);
	/* the label tokens: scratch of this build; the label texts: the job's */
	int32_t *lab = zp_region_alloc(&c->a->parse, (size_t)nl * ZP_API_LABEL_TOKENS_MAX * sizeof *lab);
	int *nlab = zp_region_alloc(&c->a->parse, (size_t)nl * sizeof *nlab);
	if (!lab || !nlab)
		return zp_api_full(c, &c->a->parse);
	if (!(c->job->labels = zp_region_alloc(c->job->rg, (size_t)nl * sizeof *c->job->labels)))
		return zp_api_full(c, c->job->rg);
	c->job->nlab = nl;
	c->job->nout = nin;
	rc = 0;
	for (int j = 0; j < nl && !rc; j++) {
		const cJSON *l = cJSON_GetArrayItem(labels, j);
		if (!cJSON_IsString(l))
			rc = zp_api_bad(c, "labels", "labels[%d] must be a string", j);
		else if ((nlab[j] = zp_tok_encode(c->a->ts, l->valuestring, zp_json_strlen(l),
						  lab + j * ZP_API_LABEL_TOKENS_MAX,
						  ZP_API_LABEL_TOKENS_MAX)) < 1 ||
			 nlab[j] > ZP_API_LABEL_TOKENS_MAX)
			rc = zp_api_bad(c, "labels", "labels[%d] must be 1 to %d tokens", j,
					ZP_API_LABEL_TOKENS_MAX);
		else if (!(c->job->labels[j] = zp_api_keep_json(c, l->valuestring, zp_json_strlen(l))))
			rc = zp_api_full(c, c->job->rg);
		if (!rc && nlab[j] > 1)
			c->job->multi = true;
	}
	if (!rc)
		rc = zp_api_alloc_seqs(c, c->job->multi ? nin * nl : nin);
	for (int i = 0; i < nin && !rc; i++) {
		int n;
		if ((rc = zp_api_get_tokens(c, zp_api_list_item(in, i), "input", ids, &n)))
			break;
		if (!c->job->multi) {
			int32_t first[ZP_API_ITEMS_MAX];
			for (int j = 0; j < nl; j++)
				first[j] = lab[j * ZP_API_LABEL_TOKENS_MAX];
			if (!(rc = zp_api_add_seq(c, ids, n, "input")))
				rc = zp_api_seq_cands(c, first, nl);
			continue;
		}
		for (int j = 0; j < nl && !rc; j++) {
			memcpy(tmp, ids, (size_t)n * sizeof *ids);
			memcpy(tmp + n, lab + j * ZP_API_LABEL_TOKENS_MAX, (size_t)nlab[j] * sizeof *lab);
			if (!(rc = zp_api_add_seq(c, tmp, n + nlab[j], "input"))) {
				zp_req *r = &c->job->eng.seq[c->job->eng.nseq - 1];
				r->plp_start = n;
				rc = zp_api_seq_floats(c, nlab[j], &r->plp);
			}
		}
	}
	return rc;
}

void zp_api_score_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	double v[ZP_API_ITEMS_MAX];
	zp_buf_puts(out, "{\"object\":\"scoring\",\"scores\":[");
	for (int i = 0; i < j->nout; i++) {
		for (int k = 0; k < j->nlab; k++)
			v[k] = j->eng.seq[i].cand_lp[k];
		if (j->softmax)
			zp_api_softmax(v, j->nlab);
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
	zp_api_model_field(a, out);
	zp_api_usage(out, j->eng.tokens);
	zp_buf_puts(out, "}");
}

void zp_api_classify_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	double v[ZP_API_ITEMS_MAX];
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		int best = 0;
		for (int k = 0; k < j->nlab; k++) {
			if (!j->multi) {
				v[k] = j->eng.seq[i].cand_lp[k];
				continue;
			}
			const zp_req *r = &j->eng.seq[i * j->nlab + k];
			v[k] = 0;
			for (int t = 0; t < r->ntok - r->plp_start; t++)
				v[k] += r->plp[t];
		}
		zp_api_softmax(v, j->nlab);
		for (int k = 1; k < j->nlab; k++)
			best = v[k] > v[best] ? k : best;
		zp_buf_printf(out, "%s{\"index\":%d,\"label\":", i ? "," : "", i);
		zp_buf_puts(out, j->labels[best]); /* kept as a JSON literal */
		zp_buf_puts(out, ",\"probs\":[");
		for (int k = 0; k < j->nlab; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, (float)v[k]);
		}
		zp_buf_printf(out, "],\"num_classes\":%d}", j->nlab);
	}
	zp_buf_puts(out, "]");
	zp_api_model_field(a, out);
	zp_api_usage(out, j->eng.tokens);
	zp_buf_puts(out, "}");
}

