/* api_vllm.c -- vLLM's own request and response shapes (its
   vllm/entrypoints/openai protocol): POST /v1/score and /score with text_1 and
   text_2, or their newer names (pairs scored as a Qwen3-Reranker cross-encoder: P(yes) against P(no)
   after the two texts' tokens; SGLang's query/items shape goes to
   api_score.c), and POST /v1/completions: with echo and max_tokens 0, the way
   vLLM users read a prompt's log-probs (OpenAI's completions logprobs, and
   vLLM's prompt_logprobs with top-k and ranks), or with max_tokens 1, the one
   token at the prompt's end (api_chat.c picks it). Nothing past one token:
   any other max_tokens is a 400 saying so. POST /invocations (SageMaker's one
   path) answers as the endpoint its body's fields name. Reactor thread. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "endpoints.h"
#include "util.h"

#define LP_FLOOR -9999.0f	/* vLLM writes -inf log-probs as this */

/* Numbers the response ids: finish runs on the reactor thread only. */
static unsigned long long resp_seq;

static void resp_id(zp_buf *out, const char *kind)
{
	zp_buf_printf(out, "{\"id\":\"%s-%08llx%08llx\"", kind, (unsigned long long)time(NULL),
		      ++resp_seq);
}

static void vllm_usage(zp_buf *out, int tokens, int generated)
{
	zp_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d,"
		      "\"completion_tokens\":%d,\"prompt_tokens_details\":null}", tokens,
		      tokens + generated, generated);
}

static void put_lp(zp_buf *out, float lp)
{
	zp_buf_json_float(out, lp < LP_FLOOR ? LP_FLOOR : lp);
}

/* ---- /v1/score with text_1, text_2 ---- */

/* A string, or a list of 1 to ZP_API_ITEMS_MAX strings: *n of them. */
static int text_list(zp_api_call *c, const cJSON *v, const char *k, int *n)
{
	const cJSON *it;
	if (!v)
		return zp_api_bad(c, k, "%s is required", k);
	*n = 1;
	if (cJSON_IsString(v))
		return 0;
	if (!cJSON_IsArray(v) || (*n = cJSON_GetArraySize(v)) < 1 || *n > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, k, "%s must be a string or a list of 1 to %d strings", k,
				  ZP_API_ITEMS_MAX);
	int i = 0;
	cJSON_ArrayForEach(it, v)
		if (!cJSON_IsString(it))
			return zp_api_bad(c, k, "%s[%d] must be a string", k, i);
		else
			i++;
	return 0;
}

static const cJSON *text_at(const cJSON *v, int i)
{
	return cJSON_IsString(v) ? v : cJSON_GetArrayItem(v, i);
}

int zp_api_get_activation(zp_api_call *c, bool *raw)
{
	static const char *const names[] = { "softmax", "activation", "use_activation" };
	bool act = true;
	int rc;
	*raw = false;
	for (int k = 0; k < 3; k++) { /* the current name last: it wins */
		const char *name = names[k];
		if (!zp_api_field(c->root, name))
			continue;
		if ((rc = zp_api_get_bool(c, name, &act)))
			return rc;
		*raw = !act;
	}
	return 0;
}

/* vLLM's pairing: text_1 one and text_2 N (1 to N), or N and N (N to N). Each
   pair is text_1's tokens then text_2's (a Qwen tokenizer adds none between),
   truncate_prompt_tokens keeping the last ones, scored at the end. */
static int score_pairs_build(zp_api_call *c, const char *k1, const char *k2)
{
	const char *const known[] = { "model", k1, k2, "truncate_prompt_tokens", "use_activation",
				      "activation", "softmax", "user", "request_id", "priority",
				      "add_special_tokens", "mm_processor_kwargs", NULL };
	const cJSON *t1 = zp_api_field(c->root, k1), *t2 = zp_api_field(c->root, k2);
	zp_api_job *j = c->job;
	int rc, n1, n2, keep;
	j->shape = ZP_API_SHAPE_VLLM;
	if ((rc = zp_api_check_fields(c, known)) || (rc = text_list(c, t1, k1, &n1)) ||
	    (rc = text_list(c, t2, k2, &n2)) ||
	    (rc = zp_api_get_truncate(c, "truncate_prompt_tokens", &keep)) ||
	    (rc = zp_api_get_activation(c, &j->raw)))
		return rc;
	if (n1 != 1 && n1 != n2)
		return zp_api_bad(c, k1, "%s (%d) and %s (%d) must pair 1 to 1, 1 to N or N to N", k1,
				  n1, k2, n2);
	if (!c->a->ts || c->a->yes_id < 0 || c->a->no_id < 0)
		return zp_api_bad(c, NULL, "score needs a tokenizer.json in which the configured "
				  "yes/no labels ([rerank] yes_token, no_token) are single tokens");
	if ((rc = zp_api_alloc_seqs(c, n2)))
		return rc;
	j->nout = n2;
	int32_t yn[2] = { c->a->no_id, c->a->yes_id }, *a = NULL, *b, *p;
	int na = 0, nb, n;
	for (int i = 0; i < n2; i++) {
		const cJSON *x = text_at(t1, i), *y = text_at(t2, i);
		if ((i == 0 || n1 > 1) && (rc = zp_api_encode_all(c, x->valuestring, zp_json_strlen(x),
								   k1, true, &a, &na)))
			return rc;
		if ((rc = zp_api_encode_all(c, y->valuestring, zp_json_strlen(y), k2, true, &b, &nb)))
			return rc;
		if (!(p = zp_region_alloc(&c->a->parse, ((size_t)na + nb + 1) * sizeof *p)))
			return zp_api_full(c, &c->a->parse);
		memcpy(p, a, (size_t)na * sizeof *p);
		memcpy(p + na, b, (size_t)nb * sizeof *p);
		n = na + nb;
		zp_api_truncate(&p, &n, keep, true);
		if (n == 0)
			return zp_api_bad(c, k2, "pair %d (%s + %s) is empty", i, k1, k2);
		if ((rc = zp_api_add_seq(c, p, n, k2)) || (rc = zp_api_seq_cands(c, yn, 2)))
			return rc;
	}
	return 0;
}

/* The pair fields vLLM has named over its releases (text_1/text_2, then
   data_1/data_2, queries/documents and queries/items): one pair of them, or
   SGLang's query/items/label_token_ids. */
int zp_api_vllm_score_build(zp_api_call *c)
{
	const cJSON *r = c->root;
	bool text = zp_api_field(r, "text_1") || zp_api_field(r, "text_2");
	bool data = zp_api_field(r, "data_1") || zp_api_field(r, "data_2");
	bool queries = zp_api_field(r, "queries"), docs = zp_api_field(r, "documents");
	if (text + data + queries > 1 || (queries && docs && zp_api_field(r, "items")))
		return zp_api_bad(c, NULL, "give one pair of score inputs: text_1 and text_2, data_1 "
				  "and data_2, queries and documents, or queries and items (vLLM's), "
				  "or query, items and label_token_ids (SGLang's)");
	if (text)
		return score_pairs_build(c, "text_1", "text_2");
	if (data)
		return score_pairs_build(c, "data_1", "data_2");
	if (queries)
		return score_pairs_build(c, "queries", docs ? "documents" : "items");
	return zp_api_score_build(c); /* SGLang's query, items, label_token_ids */
}

void zp_api_vllm_score_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	if (j->shape != ZP_API_SHAPE_VLLM)
		return zp_api_score_finish(a, j, out);
	resp_id(out, "score");
	zp_buf_printf(out, ",\"object\":\"list\",\"created\":%lld", (long long)time(NULL));
	zp_api_model_field(a, out);
	zp_buf_puts(out, ",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		/* the seq-cls head vLLM makes of a Qwen3 reranker: logit yes - no, sigmoid */
		double d = (double)j->eng.seq[i].cand_lp[1] - j->eng.seq[i].cand_lp[0];
		zp_buf_printf(out, "%s{\"index\":%d,\"object\":\"score\",\"score\":", i ? "," : "", i);
		zp_buf_json_float(out, (float)(j->raw ? d : 1.0 / (1.0 + exp(-d))));
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
	vllm_usage(out, j->eng.tokens, 0);
	zp_buf_puts(out, "}");
}

/* ---- /invocations ---- */

/* vLLM's SageMaker path tries its request types in turn; here the fields that
   set each shape apart pick it (ZP_ROUTE_OTHER: none does). */
enum zp_route zp_api_invocations_pick(const cJSON *r)
{
	if (zp_api_field(r, "messages"))
		return ZP_ROUTE_CHAT;
	if (zp_api_field(r, "prompt"))
		return ZP_ROUTE_COMPLETIONS;
	if (zp_api_field(r, "query") && (zp_api_field(r, "documents") || zp_api_field(r, "texts")))
		return ZP_ROUTE_RERANK;
	if (zp_api_field(r, "text_1") || zp_api_field(r, "data_1") || zp_api_field(r, "queries") ||
	    zp_api_field(r, "label_token_ids"))
		return ZP_ROUTE_SCORE;
	if (zp_api_field(r, "input") && zp_api_field(r, "labels"))
		return ZP_ROUTE_CLASSIFY;
	if (zp_api_field(r, "input") && (zp_api_field(r, "task") || zp_api_field(r, "pooling")))
		return ZP_ROUTE_POOLING;
	if (zp_api_field(r, "input"))
		return ZP_ROUTE_EMBED;
	return ZP_ROUTE_OTHER;
}

/* The job answers as the endpoint zp_api_invocations_pick named: zp_api_build
   picked it into the job's ep before checking the texts. */
int zp_api_invocations_build(zp_api_call *c)
{
	enum zp_route ep = c->job->ep;
	if (ep == ZP_ROUTE_OTHER)
		return zp_api_bad(c, NULL, "/invocations could not tell the request's endpoint from its "
				  "fields: messages (chat), prompt (completions), query and documents (rerank), text_1 "
				  "and text_2 (score), input (embeddings; with labels: classify; with "
				  "task: pooling)");
	return zp_route_of(ep)->build(c);
}

void zp_api_invocations_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	ZP_ASSERT(!"an invocations job answers as the endpoint its build picked");
}

/* ---- /v1/completions ---- */

/* logprobs, prompt_logprobs: *v -1 (absent) or 0..ZP_API_LOGPROBS_MAX. */
static int get_k(zp_api_call *c, const char *k, int *v)
{
	const cJSON *x = zp_api_field(c->root, k);
	int hi = ZP_MIN(ZP_API_LOGPROBS_MAX, c->a->lim.vocab);
	*v = -1;
	if (!x)
		return 0;
	if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
	    x->valuedouble > hi)
		return zp_api_bad(c, k, "%s must be an integer in [0, %d] (-1, the whole "
				  "vocabulary, is not served)", k, hi);
	*v = (int)x->valuedouble;
	return 0;
}

/* The last sequence added returns, at each position, its token's log-prob and
   rank and the k most likely tokens. */
static int want_plp(zp_api_call *c, int k)
{
	zp_req *r = &c->job->eng.seq[c->job->eng.nseq - 1];
	r->plp_start = 0;
	r->plp_top_k = k;
	r->plp = zp_req_alloc(r, (size_t)r->ntok, sizeof *r->plp);
	r->plp_rank = zp_req_alloc(r, (size_t)r->ntok, sizeof *r->plp_rank);
	if (k) {
		r->plp_top_ids = zp_req_alloc(r, (size_t)r->ntok * k, sizeof *r->plp_top_ids);
		r->plp_top_lp = zp_req_alloc(r, (size_t)r->ntok * k, sizeof *r->plp_top_lp);
	}
	if (!r->plp || !r->plp_rank || (k && (!r->plp_top_ids || !r->plp_top_lp)))
		return zp_api_full(c, c->job->rg);
	r->plp[0] = NAN; /* position 0 has no prediction */
	return 0;
}

/* The sampling settings are read by zp_api_gen_read with max_tokens 1 (those
   it cannot honour refused there); with max_tokens 0 they change nothing. */
static const char *const completions_known[] = {
	"model", "prompt", "echo", "max_tokens", "logprobs", "prompt_logprobs",
	"truncate_prompt_tokens", "truncation_side", "stream", "n", "user", "request_id",
	"priority", "add_special_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
	"stop_token_ids", "presence_penalty", "frequency_penalty", "repetition_penalty",
	"logit_bias", "best_of", "ignore_eos", "min_tokens", "skip_special_tokens",
	"spaces_between_special_tokens", "include_stop_str_in_output", "length_penalty",
	"use_beam_search", NULL };

/* The request's settings; *keep_last: truncation keeps the last tokens. */
static int completions_settings(zp_api_call *c, int *keep, bool *keep_last, bool *echo)
{
	const cJSON *mt = zp_api_field(c->root, "max_tokens"), *n = zp_api_field(c->root, "n");
	const cJSON *side = zp_api_field(c->root, "truncation_side"), *bo = zp_api_field(c->root, "best_of");
	bool stream = false, beam = false;
	int rc;
	if ((rc = zp_api_check_fields(c, completions_known)) ||
	    (rc = zp_api_get_bool(c, "echo", echo)) || (rc = zp_api_get_bool(c, "stream", &stream)) ||
	    (rc = zp_api_get_bool(c, "use_beam_search", &beam)) ||
	    (rc = zp_api_get_truncate(c, "truncate_prompt_tokens", keep)) ||
	    (rc = get_k(c, "logprobs", &c->job->lp_k)) ||
	    (rc = get_k(c, "prompt_logprobs", &c->job->plp_k)))
		return rc;
	if (stream)
		return zp_api_bad(c, "stream", "stream is not served: the answer comes whole");
	if (n && (!cJSON_IsNumber(n) || n->valuedouble != 1))
		return zp_api_bad(c, "n", "n must be 1");
	if (bo && (!cJSON_IsNumber(bo) || bo->valuedouble != 1))
		return zp_api_bad(c, "best_of", "best_of must be 1");
	if (beam)
		return zp_api_bad(c, "use_beam_search", "beam search is not served");
	if (!mt || !cJSON_IsNumber(mt) || (mt->valuedouble != 1 && (mt->valuedouble != 0 || !*echo)))
		return zp_api_bad(c, "max_tokens", "zprefill is prefill-only: it reads one token, the "
				  "answer at the prompt's last position. Send max_tokens 1 (that token, "
				  "greedy or sampled, with its logprobs), or max_tokens 0 with echo true "
				  "(the prompt back, with its log-probs when logprobs or prompt_logprobs "
				  "is set)");
	if (side && (!cJSON_IsString(side) || (strcmp(side->valuestring, "left") &&
					       strcmp(side->valuestring, "right"))))
		return zp_api_bad(c, "truncation_side", "truncation_side must be \"left\" or "
				  "\"right\"");
	*keep_last = !side || !strcmp(side->valuestring, "left");
	if (!c->a->tok)
		return zp_api_bad(c, "prompt", "completions needs a tokenizer.json in the model "
				  "directory (the prompt's tokens come back as text)");
	return 0;
}

int zp_api_completions_build(zp_api_call *c)
{
	const cJSON *p = zp_api_field(c->root, "prompt");
	zp_api_job *j = c->job;
	int rc, np, keep;
	bool keep_last = true, echo = false;
	j->shape = ZP_API_SHAPE_VLLM;
	if ((rc = completions_settings(c, &keep, &keep_last, &echo)) ||
	    (rc = zp_api_get_list(c, p, "prompt", true, &np)) || (rc = zp_api_alloc_seqs(c, np)))
		return rc;
	const cJSON *mt = zp_api_field(c->root, "max_tokens");
	if (mt->valuedouble == 1 && (rc = zp_api_gen_read(c, ZP_MAX(j->lp_k, 0))))
		return rc;
	j->nout = np;
	/* docs: the text echoed (NULL: no echo) */
	if (echo && !(j->docs = zp_region_alloc(j->rg, (size_t)np * sizeof *j->docs)))
		return zp_api_full(c, j->rg);
	/* as vLLM: prompt_logprobs when given, else (echo) logprobs */
	int k = j->plp_k >= 0 ? j->plp_k : echo ? j->lp_k : -1;
	for (int i = 0; i < np; i++) {
		const cJSON *it = zp_api_list_item(p, i);
		int32_t *ids;
		int n, whole;
		bool text = cJSON_IsString(it);
		if ((rc = text ? zp_api_encode_all(c, it->valuestring, zp_json_strlen(it), "prompt", true,
						   &ids, &n)
			       : zp_api_ids_all(c, it, "prompt", &ids, &n)))
			return rc;
		whole = n;
		zp_api_truncate(&ids, &n, keep, keep_last);
		if (n == 0)
			return zp_api_bad(c, "prompt", "prompt %d is empty", i);
		if ((rc = zp_api_add_seq(c, ids, n, "prompt")) || (k >= 0 && (rc = want_plp(c, k))) ||
		    (j->gen && (rc = zp_api_gen_seq(c))))
			return rc;
		if (!echo)
			continue;
		/* the text echoed: the prompt as sent, or its tokens decoded at finish */
		j->docs[i] = NULL;
		/* a text holding NUL is echoed from its tokens (a C string would end there) */
		if (text && n == whole && zp_json_strlen(it) == strlen(it->valuestring) &&
		    !(j->docs[i] = zp_api_keep_text(c, it->valuestring)))
			return zp_api_full(c, j->rg);
	}
	return 0;
}

/* Position p's entries as vLLM's dictionary holds them: the prompt token
   first, then the top k not already in (a top-k entry of the prompt token
   itself gives it its rank there). Returns how many. */
static int pos_entries(const zp_req *r, int p, int32_t *id, float *lp, int *rank)
{
	int m = 1, k = r->plp_top_k;
	id[0] = r->tokens[p];
	lp[0] = r->plp[p];
	rank[0] = r->plp_rank[p];
	for (int t = 0; t < k; t++) {
		int32_t x = r->plp_top_ids[(size_t)p * k + t];
		float v = r->plp_top_lp[(size_t)p * k + t];
		if (x == id[0]) {
			lp[0] = v;
			rank[0] = t + 1;
			continue;
		}
		id[m] = x;
		lp[m] = v;
		rank[m++] = t + 1;
	}
	return m;
}

/* The text of ids into tb, as one decode; ids the tokenizer has no text for
   (a model vocabulary padded past the tokenizer's) add nothing. */
static void decode_ids(const zp_api *a, const int32_t *id, int n, zp_buf *tb)
{
	size_t len;
	for (int s = 0, e; s < n; s = e + 1) {
		for (e = s; e < n && zp_tok_piece(a->tok, id[e], &len); e++)
			;
		int rc = zp_tok_decode(a->tok, id + s, e - s, tb);
		ZP_ASSERT(rc == 0); /* every id of the run has text */
	}
}

/* Token texts, one after another in tb: text i is tb[off[i], off[i + 1]). */
static void texts_of(const zp_api *a, const int32_t *id, int m, zp_buf *tb, size_t *off)
{
	zp_buf_reset(tb);
	for (int i = 0; i < m; i++) {
		off[i] = tb->len;
		decode_ids(a, &id[i], 1, tb);
	}
	off[m] = tb->len;
}

static bool same_text(const zp_buf *tb, const size_t *off, int x, int y)
{
	size_t lx = off[x + 1] - off[x], ly = off[y + 1] - off[y];
	return lx == ly && !memcmp(tb->p + off[x], tb->p + off[y], lx);
}

/* OpenAI's top_logprobs at one position: {text: log-prob} for the first
   shown entries, a text given twice keeping its first place and last value
   (a Python dict built from them). */
static void top_dict(zp_buf *out, const zp_buf *tb, const size_t *off, const float *lp, int shown)
{
	bool first = true;
	zp_buf_puts(out, "{");
	for (int i = 0; i < shown; i++) {
		int last = i, e;
		for (e = 0; e < i && !same_text(tb, off, e, i); e++)
			;
		if (e < i)
			continue; /* written at its first place */
		for (e = i + 1; e < shown; e++)
			if (same_text(tb, off, e, i))
				last = e;
		zp_buf_puts(out, first ? "" : ",");
		zp_buf_json_strn(out, tb->p + off[i], off[i + 1] - off[i]);
		zp_buf_puts(out, ":");
		put_lp(out, lp[last]);
		first = false;
	}
	zp_buf_puts(out, "}");
}

/* Characters (code points) of UTF-8 text, as Python's len. */
static int chars(const char *s, size_t n)
{
	int k = 0;
	for (size_t i = 0; i < n; i++)
		k += ((unsigned char)s[i] & 0xC0) != 0x80;
	return k;
}

/* The generated token's entries as vLLM's dictionary holds them: the token
   first, then the top k not already in. Returns how many. */
static int gen_entries(const zp_req *r, const zp_api_pick *g, int k, int32_t *id, float *lp)
{
	int m = 1;
	id[0] = g->id;
	lp[0] = g->lp;
	for (int t = 0; t < k; t++)
		if (r->top_ids[t] != g->id) {
			id[m] = r->top_ids[t];
			lp[m++] = r->top_lp[t];
		}
	return m;
}

/* choices[].logprobs: OpenAI's completions shape over the prompt's tokens
   (echo) and the generated one (g, or NULL). */
static void completion_logprobs(const zp_api *a, const zp_api_job *j, const zp_req *r,
				const zp_api_pick *g, zp_buf *out, zp_buf *tb)
{
	int32_t id[ZP_API_LOGPROBS_MAX + 1];
	float lp[ZP_API_LOGPROBS_MAX + 1];
	int rank[ZP_API_LOGPROBS_MAX + 1], offset = 0, np = j->docs ? r->ntok : 0;
	size_t off[ZP_API_LOGPROBS_MAX + 2];
	zp_buf_puts(out, "{\"text_offset\":[");
	for (int p = 0; p < np; p++) {
		texts_of(a, &r->tokens[p], 1, tb, off);
		zp_buf_printf(out, "%s%d", p ? "," : "", offset);
		offset += chars(tb->p, tb->len);
	}
	if (g)
		zp_buf_printf(out, "%s%d", np ? "," : "", offset);
	zp_buf_puts(out, "],\"token_logprobs\":[");
	for (int p = 0; p < np; p++) {
		zp_buf_puts(out, p ? "," : "null");
		if (p)
			put_lp(out, r->plp[p]);
	}
	if (g) {
		zp_buf_puts(out, np ? "," : "");
		put_lp(out, g->lp);
	}
	zp_buf_puts(out, "],\"tokens\":[");
	for (int p = 0; p < np + (g != NULL); p++) {
		texts_of(a, p < np ? &r->tokens[p] : &g->id, 1, tb, off);
		zp_buf_puts(out, p ? "," : "");
		zp_buf_json_strn(out, tb->p, tb->len);
	}
	zp_buf_puts(out, "],\"top_logprobs\":[");
	for (int p = 0; p < np; p++) {
		if (!p) {
			zp_buf_puts(out, "null");
			continue;
		}
		int m = pos_entries(r, p, id, lp, rank);
		texts_of(a, id, m, tb, off);
		zp_buf_puts(out, ",");
		top_dict(out, tb, off, lp, ZP_MIN(m, j->lp_k + 1));
	}
	if (g) {
		int m = gen_entries(r, g, j->lp_k, id, lp);
		texts_of(a, id, m, tb, off);
		zp_buf_puts(out, np ? "," : "");
		top_dict(out, tb, off, lp, ZP_MIN(m, j->lp_k + 1));
	}
	zp_buf_puts(out, "]}");
}

/* choices[].prompt_logprobs: vLLM's [null, {"id": {logprob, rank,
   decoded_token}}, ...]. */
static void prompt_logprobs(const zp_api *a, const zp_req *r, zp_buf *out, zp_buf *tb)
{
	int32_t id[ZP_API_LOGPROBS_MAX + 1];
	float lp[ZP_API_LOGPROBS_MAX + 1];
	int rank[ZP_API_LOGPROBS_MAX + 1];
	size_t off[ZP_API_LOGPROBS_MAX + 2];
	zp_buf_puts(out, "[null");
	for (int p = 1; p < r->ntok; p++) {
		int m = pos_entries(r, p, id, lp, rank);
		texts_of(a, id, m, tb, off);
		zp_buf_puts(out, ",{");
		for (int i = 0; i < m; i++) {
			zp_buf_printf(out, "%s\"%d\":{\"logprob\":", i ? "," : "", id[i]);
			put_lp(out, lp[i]);
			zp_buf_printf(out, ",\"rank\":%d,\"decoded_token\":", rank[i]);
			zp_buf_json_strn(out, tb->p + off[i], off[i + 1] - off[i]);
			zp_buf_puts(out, "}");
		}
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
}

void zp_api_completions_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	zp_buf tb; /* token texts: the api's text scratch, free once a build is done */
	zp_api_pick g;
	zp_buf_init_fixed(&tb, a->text, a->text_cap);
	resp_id(out, "cmpl");
	zp_buf_printf(out, ",\"object\":\"text_completion\",\"created\":%lld", (long long)time(NULL));
	zp_api_model_field(a, out);
	zp_buf_puts(out, ",\"choices\":[");
	for (int i = 0; i < j->nout; i++) {
		zp_req *r = &j->eng.seq[i];
		zp_buf_printf(out, "%s{\"index\":%d,\"text\":", i ? "," : "", i);
		/* the text: the prompt echoed (as sent, or its tokens decoded), then
		   the generated token's */
		zp_buf_reset(&tb);
		if (j->docs && j->docs[i])
			zp_buf_puts(&tb, j->docs[i]);
		else if (j->docs)
			decode_ids(a, r->tokens, r->ntok, &tb);
		if (j->gen) {
			zp_api_gen_pick(j, r, &g);
			zp_api_gen_text(a, j, &g, &tb);
		}
		zp_buf_json_strn(out, tb.p, tb.len);
		if (tb.overflow) /* the logprobs' texts below reset tb: say it now */
			out->overflow = true;
		zp_buf_puts(out, ",\"logprobs\":");
		if (j->lp_k >= 0) {
			completion_logprobs(a, j, r, j->gen ? &g : NULL, out, &tb);
			if (tb.overflow)
				out->overflow = true;
		} else {
			zp_buf_puts(out, "null");
		}
		/* vLLM's answer to max_tokens 0: the prompt, "length" */
		zp_buf_printf(out, ",\"finish_reason\":\"%s\"", j->gen ? g.finish : "length");
		if (j->gen)
			zp_api_gen_stop_reason(j, &g, out);
		else
			zp_buf_puts(out, ",\"stop_reason\":null");
		zp_buf_puts(out, ",\"prompt_logprobs\":");
		if (r->plp)
			prompt_logprobs(a, r, out, &tb);
		else
			zp_buf_puts(out, "null");
		zp_buf_puts(out, "}");
		if (tb.overflow) /* a text over the scratch: the response says it is too big */
			out->overflow = true;
	}
	zp_buf_puts(out, "]");
	vllm_usage(out, j->eng.tokens, j->gen ? j->nout : 0);
	zp_buf_puts(out, "}");
}
