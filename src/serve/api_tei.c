/* api_tei.c -- Hugging Face text-embeddings-inference's shapes (its
   router/src/http/types.rs): POST /embed (a bare list of embeddings), POST
   /rerank with texts (a bare list of {index, text?, score}, best first; the
   documents shape goes to api_rerank.c), POST /tokenize with inputs (each
   token's id, text and byte offsets; the prompt shape goes to
   api_tokenize.c), POST /decode (ids to text as tokenizers' decode,
   skip_special_tokens true by default) and GET /info. TEI ignores unknown fields; so do these,
   with the warning the other endpoints give. Refusals come in TEI's error
   shape. Reactor thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api_info.h"
#include "endpoints.h"
#include "util.h"

/* normalize and the like: absent gives dflt. */
static int get_bool_or(zp_api_call *c, const char *k, bool dflt, bool *v)
{
	*v = dflt;
	return zp_api_field(c->root, k) ? zp_api_get_bool(c, k, v) : 0;
}

/* truncate (off when absent or null: TEI's auto_truncate false) and
   truncation_direction (Right, TEI's default: the first tokens are kept). */
static int get_truncation(zp_api_call *c, bool *truncate, bool *keep_last)
{
	const cJSON *d = zp_api_field(c->root, "truncation_direction");
	int rc;
	if ((rc = get_bool_or(c, "truncate", false, truncate)))
		return rc;
	*keep_last = false;
	if (!d)
		return 0;
	if (cJSON_IsString(d) && (!strcmp(d->valuestring, "left") || !strcmp(d->valuestring, "Left")))
		*keep_last = true;
	else if (!cJSON_IsString(d) || (strcmp(d->valuestring, "right") &&
					strcmp(d->valuestring, "Right")))
		return zp_api_bad(c, "truncation_direction", "truncation_direction must be "
				  "\"left\" or \"right\"");
	return 0;
}

/* A refused TEI-shaped request answers as TEI does: {"error", "error_type"},
   an input fault being a 422 Validation error there (a 413 stays one). The
   message is read back from the error body the readers wrote. */
static int tei_error(zp_api_call *c, int rc)
{
	char msg[512];
	if (rc == 0 || rc == 200)
		return rc;
	cJSON *e = zp_json_parse(c->out->p, c->out->len); /* in the parse region: no free */
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "error"),
							 "message");
	if (!cJSON_IsString(m)) /* the parse region is full: the error stays as it is */
		return rc;
	snprintf(msg, sizeof msg, "%s", m->valuestring);
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "{\"error\":");
	zp_buf_json_str(c->out, msg);
	zp_buf_printf(c->out, ",\"error_type\":\"%s\"}", rc == ZP_HTTP_ERR_UNAVAILABLE ? "Overloaded" :
		      rc >= 500 ? "Backend" : "Validation");
	return rc == ZP_HTTP_ERR_BAD_REQUEST ? 422 : rc;
}

/* TEI ignores fields it does not know, "model" among them (it has no such
   field): ignored with the warning every endpoint gives, never a 404. */
static int tei_fields(zp_api_call *c, const char *const *known)
{
	zp_api_ignore_unknown(c, c->root, NULL, known);
	return 0;
}

/* TEI's answer to an empty batch: 400 {"error": "`inputs` cannot be empty",
   "error_type": "Empty"}. */
static int tei_empty(zp_api_call *c, const char *field)
{
	zp_buf_reset(c->out);
	zp_buf_printf(c->out, "{\"error\":\"`%s` cannot be empty\",\"error_type\":\"Empty\"}", field);
	return ZP_HTTP_ERR_BAD_REQUEST;
}

static bool empty_list(const cJSON *v)
{
	return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0;
}

static int no_prompt_name(zp_api_call *c)
{
	if (zp_api_field(c->root, "prompt_name"))
		return zp_api_bad(c, "prompt_name", "prompt_name: this model has no "
				  "sentence-transformers prompts");
	return 0;
}

/* ---- /embed ---- */

static int tei_embed_build(zp_api_call *c)
{
	static const char *const known[] = { "inputs", "normalize", "truncate",
					     "truncation_direction", "prompt_name", "dimensions",
					     NULL };
	const cJSON *in = zp_api_field(c->root, "inputs");
	zp_api_job *j = c->job;
	bool norm, truncate, keep_last;
	int rc, nin;
	j->shape = ZP_API_SHAPE_TEI;
	if ((rc = tei_fields(c, known)) || (rc = get_bool_or(c, "normalize", true, &norm)) ||
	    (rc = get_truncation(c, &truncate, &keep_last)) || (rc = no_prompt_name(c)) ||
	    (rc = zp_api_get_dims(c, &j->dims)) || (rc = zp_api_get_list(c, in, "inputs", true, &nin)) ||
	    (rc = zp_api_alloc_seqs(c, nin)))
		return rc;
	j->nout = nin;
	for (int i = 0; i < nin; i++) {
		const cJSON *it = zp_api_list_item(in, i);
		int32_t *ids;
		int n;
		if ((rc = cJSON_IsString(it) ? zp_api_encode_all(c, it->valuestring, zp_json_strlen(it),
								 "inputs", true, &ids, &n)
					     : zp_api_ids_all(c, it, "inputs", &ids, &n)))
			return rc;
		if (n == 0)
			return zp_api_bad(c, "inputs", "inputs[%d] is empty", i);
		zp_api_truncate(&ids, &n, truncate ? c->a->lim.seq_tokens_max : 0, keep_last);
		if ((rc = zp_api_add_seq(c, ids, n, "inputs")))
			return rc;
		zp_req *r = &j->eng.seq[i];
		r->pool = ZP_POOLING_LAST; /* Qwen3-Embedding's */
		r->normalize = norm;
		r->emb_dim = c->a->lim.hidden;
		if ((rc = zp_api_seq_floats(c, r->emb_dim, &r->emb)))
			return rc;
	}
	return 0;
}

int zp_api_tei_embed_build(zp_api_call *c)
{
	if (empty_list(zp_api_field(c->root, "inputs")))
		return tei_empty(c, "inputs");
	return tei_error(c, tei_embed_build(c));
}

void zp_api_tei_embed_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	zp_buf_puts(out, "[");
	for (int i = 0; i < j->nout; i++) {
		zp_req *r = &j->eng.seq[i];
		zp_api_emb_dims(r, j->dims);
		zp_buf_puts(out, i ? ",[" : "[");
		for (int k = 0; k < r->emb_dim; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, r->emb[k]);
		}
		zp_buf_puts(out, "]");
	}
	zp_buf_puts(out, "]");
}

/* ---- /rerank with texts ---- */

/* The Qwen3-Reranker prompt of (query, doc) in the api's text scratch, or
   NULL when it does not fit: the scratch holds a body's worth plus the
   template, but a truncated document is decoded from tokens in NFC form,
   which can be longer than the text sent (U+1D160: 4 bytes, 12 in NFC). */
static const char *rerank_prompt(zp_api_call *c, const char *query, const char *doc)
{
	const zp_rerank_cfg *rr = &c->a->rerank;
	int w = snprintf(c->a->text, c->a->text_cap, "%s<Instruct>: %s\n<Query>: %s\n<Document>: %s%s",
			 rr->prefix, rr->instruction, query, doc, rr->suffix);
	return w >= 0 && (size_t)w < c->a->text_cap ? c->a->text : NULL;
}

/* rerank_prompt's prompt encoded, or a 413 when it did not fit. */
static int rerank_encode(zp_api_call *c, const char *query, const char *doc, int32_t **ids, int *n)
{
	const char *p = rerank_prompt(c, query, doc);
	if (!p)
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "texts", "the reranker prompt "
				    "of this document is over %zu bytes", c->a->text_cap);
	return zp_api_encode_all(c, p, strlen(p), "texts", true, ids, n);
}

/* truncate: a prompt over the longest sequence keeps its template and query
   whole and cuts the document's tokens from the truncation direction (cut,
   decoded and encoded again in place: a few boundary tokens may differ, so
   the cut grows until the prompt fits). */
static int rerank_tokens(zp_api_call *c, const char *query, const char *doc, bool truncate,
			 bool keep_last, int32_t **ids, int *n)
{
	int max = c->a->lim.seq_tokens_max, rc, nd, over;
	int32_t *d;
	if ((rc = rerank_encode(c, query, doc, ids, n)) ||
	    *n <= max || !truncate)
		return rc;
	if ((rc = zp_api_encode_all(c, doc, strlen(doc), "texts", true, &d, &nd)))
		return rc;
	size_t cap = 3 * strlen(doc) + 4; /* U+FFFD for a cut character: at most 3 bytes a byte */
	char *cut = zp_region_alloc(&c->a->parse, cap);
	if (!cut)
		return zp_api_full(c, &c->a->parse);
	for (over = *n - max; *n > max; over += *n - max) {
		if (over >= nd)
			return zp_api_bad(c, "query", "the query and the template alone are over "
					  "the longest sequence (%d tokens)", max);
		int32_t *keep = d;
		int nk = nd;
		zp_api_truncate(&keep, &nk, nd - over, keep_last);
		zp_buf b;
		zp_buf_init_fixed(&b, cut, cap);
		rc = zp_tok_decode(c->a->tok, keep, nk, &b);
		ZP_ASSERT(rc == 0 && !b.overflow && b.len < cap);
		cut[b.len] = 0;
		if ((rc = rerank_encode(c, query, cut, ids, n)))
			return rc;
	}
	return 0;
}

static int tei_rerank_build(zp_api_call *c)
{
	static const char *const known[] = { "query", "texts", "truncate", "truncation_direction",
					     "raw_scores", "return_text", NULL };
	const cJSON *q = zp_api_field(c->root, "query"), *texts = zp_api_field(c->root, "texts");
	zp_api_job *j = c->job;
	bool ret_text, truncate, keep_last;
	int rc, nt;
	j->shape = ZP_API_SHAPE_TEI;
	if ((rc = tei_fields(c, known)) || (rc = zp_api_get_bool(c, "raw_scores", &j->raw)) ||
	    (rc = zp_api_get_bool(c, "return_text", &ret_text)) ||
	    (rc = get_truncation(c, &truncate, &keep_last)))
		return rc;
	if (!c->a->ts || c->a->yes_id < 0 || c->a->no_id < 0)
		return zp_api_bad(c, NULL, "rerank needs a tokenizer.json in which the configured "
				  "yes/no labels are single tokens");
	if (!cJSON_IsString(q))
		return zp_api_bad(c, "query", "query must be a string");
	if (!cJSON_IsArray(texts) || (nt = cJSON_GetArraySize(texts)) < 1 || nt > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "texts", "texts must be 1 to %d strings", ZP_API_ITEMS_MAX);
	if ((rc = zp_api_alloc_seqs(c, nt)))
		return rc;
	j->nout = j->top_n = nt;
	if (!(j->order = zp_region_alloc(j->rg, (size_t)nt * sizeof *j->order)) ||
	    (ret_text && !(j->docs = zp_region_alloc(j->rg, (size_t)nt * sizeof *j->docs))))
		return zp_api_full(c, j->rg);
	int32_t yn[2] = { c->a->no_id, c->a->yes_id }, *ids;
	for (int i = 0; i < nt; i++) {
		const cJSON *t = cJSON_GetArrayItem(texts, i);
		int n;
		if (!cJSON_IsString(t))
			return zp_api_bad(c, "texts", "texts[%d] must be a string", i);
		if (ret_text && !(j->docs[i] = zp_api_keep_text(c, t->valuestring)))
			return zp_api_full(c, j->rg);
		if ((rc = rerank_tokens(c, q->valuestring, t->valuestring, truncate, keep_last, &ids, &n)) ||
		    (rc = zp_api_add_seq(c, ids, n, "texts")) || (rc = zp_api_seq_cands(c, yn, 2)))
			return rc;
	}
	return 0;
}

int zp_api_tei_rerank_build(zp_api_call *c)
{
	if (!zp_api_field(c->root, "texts"))
		return zp_api_rerank_build(c); /* documents: Cohere's, Jina's, vLLM's */
	/* the body was parsed keeping \u0000 (for the documents shape); TEI's
	   texts are read as C strings here: refuse it rather than cut a text */
	if (zp_json_nul_outside(c->root, (const char *const[]){ NULL }))
		return tei_error(c, zp_api_bad(c, "texts", "\\u0000 is not accepted in TEI's "
					       "/rerank (it is in the documents shape)"));
	if (empty_list(zp_api_field(c->root, "texts")))
		return tei_empty(c, "texts");
	return tei_error(c, tei_rerank_build(c));
}

/* TEI's order: a stable sort by score, reversed (equal scores: the later text first). */
static bool tei_before(const double *x, const double *y)
{
	return x[0] > y[0] || (x[0] == y[0] && x[1] > y[1]);
}

void zp_api_tei_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	if (j->shape != ZP_API_SHAPE_TEI)
		return zp_api_rerank_finish(a, j, out);
	double (*s)[2] = j->order;
	for (int i = 0; i < j->nout; i++) {
		double d = (double)j->eng.seq[i].cand_lp[1] - j->eng.seq[i].cand_lp[0]; /* yes - no */
		s[i][0] = j->raw ? d : 1.0 / (1.0 + exp(-d));
		s[i][1] = i;
		for (int k = i; k > 0 && tei_before(s[k], s[k - 1]); k--) { /* insertion: no malloc */
			double t[2] = { s[k][0], s[k][1] };
			s[k][0] = s[k - 1][0], s[k][1] = s[k - 1][1];
			s[k - 1][0] = t[0], s[k - 1][1] = t[1];
		}
	}
	zp_buf_puts(out, "[");
	for (int i = 0; i < j->nout; i++) {
		int idx = (int)s[i][1];
		zp_buf_printf(out, "%s{\"index\":%d", i ? "," : "", idx);
		if (j->docs) {
			zp_buf_puts(out, ",\"text\":");
			zp_buf_json_str(out, j->docs[idx]);
		}
		zp_buf_puts(out, ",\"score\":");
		zp_buf_json_float(out, (float)s[i][0]);
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
}

/* ---- /tokenize with inputs ---- */

/* One input's tokens: id, text, special (false: the Qwen post-processor adds
   no special tokens, and TEI marks only those), start and stop, byte offsets
   in the (NFC) text, widened to whole characters as tokenizers' offsets are
   when a byte-level token splits one. */
static int tei_tokens(zp_api_call *c, const char *text, int i, int *total)
{
	int32_t *ids;
	int n, rc;
	if ((rc = zp_api_encode_all(c, text, strlen(text), "inputs", false, &ids, &n)))
		return rc;
	if ((*total += n) > c->a->lim.seq_tokens_max)
		return zp_api_bad(c, "inputs", "inputs hold more than %d tokens in all (the longest "
				  "sequence)", c->a->lim.seq_tokens_max);
	size_t len = 0, pl;
	for (int k = 0; k < n; k++) {
		const char *p = zp_tok_piece(c->a->tok, ids[k], &pl);
		ZP_ASSERT(p); /* the tokenizer's own ids */
		len += pl;
	}
	char *all = zp_region_alloc(&c->a->parse, len + 1); /* the tokens' bytes, joined */
	if (!all)
		return zp_api_full(c, &c->a->parse);
	len = 0;
	for (int k = 0; k < n; k++) {
		const char *p = zp_tok_piece(c->a->tok, ids[k], &pl);
		memcpy(all + len, p, pl);
		len += pl;
	}
	zp_buf_puts(c->out, i ? ",[" : "[");
	size_t at = 0;
	for (int k = 0; k < n; k++) {
		zp_tok_piece(c->a->tok, ids[k], &pl);
		size_t start = at, stop = at + pl;
		at = stop;
		while (start > 0 && ((unsigned char)all[start] & 0xC0) == 0x80)
			start--;
		while (stop < len && ((unsigned char)all[stop] & 0xC0) == 0x80)
			stop++;
		zp_buf_printf(c->out, "%s{\"id\":%d,\"text\":", k ? "," : "", ids[k]);
		zp_buf_json_strn(c->out, all + start, stop - start);
		zp_buf_printf(c->out, ",\"special\":false,\"start\":%zu,\"stop\":%zu}", start, stop);
	}
	zp_buf_puts(c->out, "]");
	return 0;
}

static int tei_tokenize_build(zp_api_call *c, const cJSON *in)
{
	static const char *const known[] = { "inputs", "add_special_tokens", "prompt_name", NULL };
	bool add_special;
	int rc, n = 1, total = 0;
	c->job->shape = ZP_API_SHAPE_TEI;
	if ((rc = tei_fields(c, known)) || (rc = zp_api_get_bool(c, "add_special_tokens", &add_special)) ||
	    (rc = no_prompt_name(c)))
		return rc;
	/* add_special_tokens: the Qwen post-processor adds none either way */
	if (!cJSON_IsString(in) && (!cJSON_IsArray(in) || (n = cJSON_GetArraySize(in)) < 1 ||
				    n > ZP_API_ITEMS_MAX))
		return zp_api_bad(c, "inputs", "inputs must be a string or 1 to %d strings",
				  ZP_API_ITEMS_MAX);
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "[");
	for (int i = 0; i < n; i++) {
		const cJSON *it = cJSON_IsString(in) ? in : cJSON_GetArrayItem(in, i);
		if (!cJSON_IsString(it))
			return zp_api_bad(c, "inputs", "inputs[%d] must be a string", i);
		if ((rc = tei_tokens(c, it->valuestring, i, &total)))
			return rc;
	}
	zp_buf_puts(c->out, "]");
	return 200;
}

int zp_api_tei_tokenize_build(zp_api_call *c)
{
	const cJSON *in = zp_api_field(c->root, "inputs");
	if (!in)
		return zp_api_tokenize_build(c); /* vLLM's prompt */
	/* the body was parsed keeping \u0000 (for vLLM's prompt); TEI's inputs
	   are read as C strings here: refuse it rather than cut the text there */
	if (zp_json_nul_outside(c->root, (const char *const[]){ NULL }))
		return tei_error(c, zp_api_bad(c, "inputs", "\\u0000 is not accepted in TEI's "
					       "/tokenize inputs (it is in vLLM's prompt)"));
	return tei_error(c, tei_tokenize_build(c, in));
}

/* ---- /decode ---- */

/* One list of ids (a JSON array) decoded as tokenizers' decode does: ids with
   no token (past the vocabulary, or a gap in it) left out, the special added
   tokens too when skip; appended to the response as a JSON string. */
static int tei_decode_one(zp_api_call *c, const cJSON *list, int i, bool skip, zp_buf *text)
{
	const cJSON *it;
	int n = 0;
	size_t len;
	if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > c->a->lim.seq_tokens_max)
		return zp_api_bad(c, "ids", "ids must be a list of at most %d token ids, or a list "
				  "of such lists", c->a->lim.seq_tokens_max);
	cJSON_ArrayForEach(it, list) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d > 4294967295.0)
			return zp_api_bad(c, "ids", "ids[%d] is not a token id (an integer in [0, "
					  "2^32))", n);
		if (d < zp_tok_vocab_size(c->a->tok) && zp_tok_piece(c->a->tok, (int32_t)d, &len))
			c->ids[n++] = (int32_t)d;
	}
	zp_buf_reset(text);
	if (skip)
		zp_tok_decode_skip_special(c->a->tok, c->ids, n, text);
	else
		zp_tok_decode(c->a->tok, c->ids, n, text);
	if (text->overflow)
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "ids", "the text of these ids is "
				    "over the %zu bytes a response may hold", text->cap - 1);
	zp_buf_puts(c->out, i ? "," : "");
	zp_buf_json_strn(c->out, text->p, text->len);
	return 0;
}

/* TEI's /decode: {"ids": [ids] or [[ids], ...], "skip_special_tokens": true
   by default} -> one string per list of ids, always in a list. */
static int tei_decode_build(zp_api_call *c)
{
	static const char *const known[] = { "ids", "skip_special_tokens", NULL };
	const cJSON *ids = zp_api_field(c->root, "ids"), *first;
	bool skip = true;
	int rc;
	if ((rc = tei_fields(c, known)))
		return rc;
	if (zp_api_field(c->root, "skip_special_tokens") &&
	    (rc = zp_api_get_bool(c, "skip_special_tokens", &skip)))
		return rc;
	if (!c->a->tok)
		return zp_api_bad(c, "ids", "the model directory has no tokenizer.json");
	if (!cJSON_IsArray(ids))
		return zp_api_bad(c, "ids", "ids must be a list of token ids, or a list of such lists");
	bool batch = (first = cJSON_GetArrayItem(ids, 0)) && cJSON_IsArray(first);
	int n = batch ? cJSON_GetArraySize(ids) : 1;
	if (n > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "ids", "ids holds at most %d lists", ZP_API_ITEMS_MAX);
	zp_buf text; /* each list's text, in turn */
	if ((rc = zp_api_text_scratch(c, &text)))
		return rc;
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "[");
	for (int i = 0; i < n; i++)
		if ((rc = tei_decode_one(c, batch ? cJSON_GetArrayItem(ids, i) : ids, i, skip, &text)))
			return rc;
	zp_buf_puts(c->out, "]");
	return 200;
}

int zp_api_tei_decode_build(zp_api_call *c)
{
	return tei_error(c, tei_decode_build(c));
}

/* ---- /info ---- */

int zp_api_tei_info_build(zp_api_call *c)
{
	const zp_api_view *v = c->view;
	zp_buf *out = c->out;
	ZP_ASSERT(v);
	zp_buf_reset(out);
	zp_buf_puts(out, "{\"model_id\":");
	zp_buf_json_str(out, c->a->model_name);
	zp_buf_printf(out, ",\"model_sha\":null,\"model_dtype\":\"%s\",\"served_model_name\":",
		      v->dtype_name);
	zp_buf_json_str(out, c->a->model_name);
	/* one model answers every endpoint; TEI has one type: an embedder, as
	   /embed and /v1/embeddings pool it */
	zp_buf_printf(out, ",\"model_type\":{\"embedding\":{\"pooling\":\"last\"}},"
		      "\"max_concurrent_requests\":%d,\"max_input_length\":%d,\"max_batch_tokens\":%d,"
		      "\"max_batch_requests\":null,\"max_client_batch_size\":%d,\"auto_truncate\":false,"
		      "\"tokenization_workers\":1,\"version\":\"zprefill\",\"sha\":null,"
		      "\"docker_label\":null}", v->queue_requests_max, c->a->lim.seq_tokens_max,
		      v->batch_tokens_max, ZP_API_ITEMS_MAX);
	return 200;
}
