/* api_chat.c -- POST /v1/chat/completions (OpenAI's chat shape), and the one
   generated token that it and /v1/completions with max_tokens 1 (api_vllm.c)
   read from the prefill's last position: greedy, or drawn from the model's
   distribution (temperature, seed; min_p, top_k, top_p in the order vLLM's
   v1 sampler applies them), with logit_bias, stop conditions and OpenAI's
   logprobs. The conversation is rendered by the checkpoint's chat
   template (model/chat.h: Qwen3's; any other answers 400). Nothing past one
   token: max_tokens above 1 is a 400 saying so. Builds run on the reactor or
   the offload worker; finishes on the reactor. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "endpoints.h"
#include "util.h"

#define LP_FLOOR -9999.0f	/* a -inf log-prob, as vLLM writes it */
#define TEMP_GREEDY 1e-5	/* below this, greedy (vLLM's _SAMPLING_EPS) */
#define BIAS_MAX 100.0		/* OpenAI's logit_bias range */
#define STOPS_MAX 16		/* stop strings, stop_token_ids */

struct zp_api_gen {
	double temperature;		/* < TEMP_GREEDY: greedy */
	uint64_t seed;
	int top_k;			/* alternatives asked at the token (0: none) */
	/* sampling filters (temperature > 0 only, as vLLM): */
	double min_p;			/* 0: off */
	int keep_k;			/* top_k; 0: off */
	double keep_p;			/* top_p; 1: off */
	struct zp_gen_kv *sorted;	/* keep_k or keep_p: [vocab] scratch for the cut */
	int nbias;
	int32_t *bias_ids;		/* [nbias], distinct */
	float *bias;			/* [nbias] */
	bool full;			/* each sequence asks every token's log-prob */
	int32_t *every;			/* full: [vocab] 0..vocab-1, every sequence's candidates */
	char *stop[STOPS_MAX];
	int nstop;
	int32_t stop_ids[STOPS_MAX];
	int nstop_ids;
	bool skip_special, ignore_eos, include_stop;
};

/* A token's log-prob and id, sorted to find where top_k and top_p cut. */
struct zp_gen_kv {
	float v;
	int32_t id;
};

/* ---- the one token's settings ---- */

/* A number field in [lo, hi] (integer when whole): *v, or dflt when absent. */
static int get_num(zp_api_call *c, const char *k, double lo, double hi, bool whole, double dflt,
		   double *v)
{
	const cJSON *x = zp_api_field(c->root, k);
	*v = dflt;
	if (!x)
		return 0;
	if (!cJSON_IsNumber(x) || x->valuedouble < lo || x->valuedouble > hi ||
	    (whole && x->valuedouble != floor(x->valuedouble)))
		return zp_api_bad(c, k, "%s must be %s in [%g, %g]", k, whole ? "an integer" : "a number",
				  lo, hi);
	*v = x->valuedouble;
	return 0;
}

/* min_p, top_k, top_p (vLLM's ranges; top_k 0 or -1 is off); with
   temperature 0 they change nothing, as in vLLM's greedy path. Then the
   settings one token cannot honour, each refused by name rather than
   ignored: they would change which token comes back. */
static int get_filters(zp_api_call *c, zp_api_gen *g)
{
	double v;
	int rc;
	if ((rc = get_num(c, "top_p", 0, 1, false, 1, &g->keep_p)))
		return rc;
	if (g->keep_p <= 0)
		return zp_api_bad(c, "top_p", "top_p must be in (0, 1]");
	if ((rc = get_num(c, "top_k", -1, c->a->lim.vocab, true, -1, &v)))
		return rc;
	g->keep_k = v > 0 && v < c->a->lim.vocab ? (int)v : 0;
	if ((rc = get_num(c, "min_p", 0, 1, false, 0, &g->min_p)))
		return rc;
	if ((rc = get_num(c, "repetition_penalty", 0, 1e9, false, 1, &v)))
		return rc;
	if (v != 1)
		return zp_api_bad(c, "repetition_penalty", "repetition_penalty is not served (send 1)");
	if ((rc = get_num(c, "min_tokens", 0, 1, true, 0, &v)))
		return rc;
	if (v > 0)
		return zp_api_bad(c, "min_tokens", "min_tokens is not served (send 0)");
	/* OpenAI's and vLLM's penalties count the tokens generated before: the
	   first token has none, so any value in range gives the same token */
	if ((rc = get_num(c, "presence_penalty", -2, 2, false, 0, &v)) ||
	    (rc = get_num(c, "frequency_penalty", -2, 2, false, 0, &v)))
		return rc;
	return 0;
}

/* logit_bias: {"token id": bias in [-100, 100]}, as OpenAI. */
static int get_bias(zp_api_call *c, zp_api_gen *g)
{
	const cJSON *b = zp_api_field(c->root, "logit_bias"), *it;
	if (!b)
		return 0;
	if (!cJSON_IsObject(b))
		return zp_api_bad(c, "logit_bias", "logit_bias must be an object of token id: bias");
	int n = cJSON_GetArraySize(b);
	if (n > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "logit_bias", "logit_bias holds at most %d tokens",
				  ZP_API_ITEMS_MAX);
	g->bias_ids = zp_region_alloc(c->job->rg, ((size_t)n + 1) * sizeof *g->bias_ids);
	g->bias = zp_region_alloc(c->job->rg, ((size_t)n + 1) * sizeof *g->bias);
	if (!g->bias_ids || !g->bias)
		return zp_api_full(c, c->job->rg);
	cJSON_ArrayForEach(it, b) {
		const char *k = it->string;
		long id = 0;
		size_t len = strlen(k);
		for (size_t i = 0; i < len && len <= 10 && id < c->a->lim.vocab; i++)
			id = k[i] >= '0' && k[i] <= '9' ? id * 10 + (k[i] - '0') : -1;
		if (!len || len > 10 || id < 0 || id >= c->a->lim.vocab)
			return zp_api_bad(c, "logit_bias", "logit_bias key \"%.32s\" must be a token id in "
					  "[0, %d]", k, c->a->lim.vocab - 1);
		if (!cJSON_IsNumber(it) || fabs(it->valuedouble) > BIAS_MAX)
			return zp_api_bad(c, "logit_bias", "logit_bias[\"%ld\"] must be a number in "
					  "[-100, 100]", id);
		for (int i = 0; i < g->nbias; i++)
			if (g->bias_ids[i] == id)
				return zp_api_bad(c, "logit_bias", "logit_bias names token %ld twice", id);
		g->bias_ids[g->nbias] = (int32_t)id;
		g->bias[g->nbias++] = (float)it->valuedouble;
	}
	return 0;
}

/* stop (a string or a list of them) and vLLM's stop_token_ids. */
static int get_stops(zp_api_call *c, zp_api_gen *g)
{
	const cJSON *s = zp_api_field(c->root, "stop"), *ids = zp_api_field(c->root, "stop_token_ids");
	const cJSON *it, *list = cJSON_IsArray(s) ? s : NULL;
	if (s && !cJSON_IsString(s) && !list)
		return zp_api_bad(c, "stop", "stop must be a string or a list of strings");
	cJSON_ArrayForEach(it, list) {
		if (!cJSON_IsString(it) || g->nstop == STOPS_MAX)
			return zp_api_bad(c, "stop", "stop must hold at most %d strings", STOPS_MAX);
		if (*it->valuestring && !(g->stop[g->nstop++] = zp_api_keep_text(c, it->valuestring)))
			return zp_api_full(c, c->job->rg);
	}
	if (cJSON_IsString(s) && *s->valuestring &&
	    !(g->stop[g->nstop++] = zp_api_keep_text(c, s->valuestring)))
		return zp_api_full(c, c->job->rg);
	if (ids && !cJSON_IsArray(ids))
		return zp_api_bad(c, "stop_token_ids", "stop_token_ids must be a list of token ids");
	cJSON_ArrayForEach(it, ids) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= c->a->lim.vocab ||
		    g->nstop_ids == STOPS_MAX)
			return zp_api_bad(c, "stop_token_ids", "stop_token_ids must hold at most %d "
					  "token ids in [0, %d]", STOPS_MAX, c->a->lim.vocab - 1);
		g->stop_ids[g->nstop_ids++] = (int32_t)d;
	}
	return 0;
}

/* A seed when the request gives none: distinct per request (builds run on
   two threads, hence atomic). */
static uint64_t fresh_seed(void)
{
	static _Atomic uint64_t n;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
	       (atomic_fetch_add(&n, 1) * 0x9E3779B97F4A7C15ull);
}

int zp_api_gen_read(zp_api_call *c, int top_k)
{
	zp_api_gen *g = zp_region_alloc(c->job->rg, sizeof *g);
	double seed;
	int rc;
	if (!g)
		return zp_api_full(c, c->job->rg);
	memset(g, 0, sizeof *g);
	c->job->gen = g;
	g->top_k = top_k;
	g->skip_special = true;
	if ((rc = get_num(c, "temperature", 0, 2, false, 0, &g->temperature)) ||
	    (rc = get_filters(c, g)) || (rc = get_bias(c, g)) ||
	    (rc = get_stops(c, g)) || (rc = zp_api_get_bool(c, "ignore_eos", &g->ignore_eos)) ||
	    (rc = zp_api_get_bool(c, "include_stop_str_in_output", &g->include_stop)) ||
	    (rc = get_num(c, "seed", -0x1p63, 0x1p63, true, NAN, &seed)))
		return rc;
	if (zp_api_field(c->root, "skip_special_tokens") &&
	    (rc = zp_api_get_bool(c, "skip_special_tokens", &g->skip_special)))
		return rc;
	/* an int64 as OpenAI's (2^63 itself wraps, as the bits it would have) */
	g->seed = isnan(seed) ? fresh_seed() : seed < 0 ? (uint64_t)(int64_t)seed : (uint64_t)seed;
	/* a sampled token, or a biased one, reads the whole distribution; the
	   greedy token without bias is the top 1 */
	g->full = g->temperature >= TEMP_GREEDY || g->nbias > 0;
	if (g->full) {
		int v = c->a->lim.vocab;
		if (!(g->every = zp_region_alloc(c->job->rg, (size_t)v * sizeof *g->every)))
			return zp_api_full(c, c->job->rg);
		for (int i = 0; i < v; i++)
			g->every[i] = i;
	}
	if (g->temperature >= TEMP_GREEDY && (g->keep_k || g->keep_p < 1) &&
	    !(g->sorted = zp_region_alloc(c->job->rg, (size_t)c->a->lim.vocab * sizeof *g->sorted)))
		return zp_api_full(c, c->job->rg);
	return 0;
}

int zp_api_gen_seq(zp_api_call *c)
{
	const zp_api_gen *g = c->job->gen;
	zp_req *r = &c->job->eng.seq[c->job->eng.nseq - 1];
	ZP_ASSERT(g && r->top_k == 0 && !r->want_cands);
	r->top_k = g->full ? g->top_k : ZP_MAX(g->top_k, 1);
	if (r->top_k && (!(r->top_ids = zp_req_alloc(r, (size_t)r->top_k, sizeof *r->top_ids)) ||
			 !(r->top_lp = zp_req_alloc(r, (size_t)r->top_k, sizeof *r->top_lp))))
		return zp_api_full(c, c->job->rg);
	if (!g->full)
		return 0;
	/* the candidates are shared: only the log-probs are the sequence's */
	if (!(r->cand_lp = zp_req_alloc(r, (size_t)c->a->lim.vocab, sizeof *r->cand_lp)))
		return zp_api_full(c, c->job->rg);
	r->cands = g->every;
	r->ncand = c->a->lim.vocab;
	r->want_cands = true;
	return 0;
}

/* ---- the token ---- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int kv_desc(const void *pa, const void *pb)
{
	const struct zp_gen_kv *a = pa, *b = pb;
	return a->v != b->v ? (a->v < b->v ? 1 : -1) : (a->id > b->id) - (a->id < b->id);
}

/* Tail: tokens whose tempered weight (relative to the top one's) is below
   this are dropped by top_p before any sort when their mass cannot reach
   1 - top_p (see cut()). */
#define TAIL_W -30.0

/* top_k then top_p over the tokens at or above floor (min_p's cut), as
   vLLM's apply_top_k_top_p: top_k keeps the k largest and every token tied
   with the k-th; top_p, over what top_k kept (renormalised), masks from the
   smallest up while the ascending cumulative probability is <= 1 - top_p,
   never the largest. Both cuts are log-prob thresholds, so the result is
   one: the smallest log-prob kept (ties at it are kept together, where
   vLLM's sort would split them in its own order). w(v) = (v - mx) / T. */
static float cut(const zp_api_gen *g, const float *v, int n, float floor, double mx,
		 double inv_t)
{
	struct zp_gen_kv *s = g->sorted;
	double tail = 0, total = 0;
	int m = 0;
	for (int i = 0; i < n; i++) {
		if (v[i] < floor)
			continue;
		double w = ((double)v[i] - mx) * inv_t, e = exp(w);
		total += e;
		if (w < TAIL_W)
			tail += e; /* < n e^-30 of the top one's weight: ~2e-8 for Qwen3's vocab */
		else
			s[m++] = (struct zp_gen_kv){ v[i], i };
	}
	/* the tail matters only to a top_k past the rest, or a top_p it could
	   reach: then every token is sorted */
	if ((g->keep_k && g->keep_k > m) || (g->keep_p < 1 && tail / total > (1 - g->keep_p) / 2)) {
		m = 0;
		tail = 0;
		for (int i = 0; i < n; i++)
			if (v[i] >= floor)
				s[m++] = (struct zp_gen_kv){ v[i], i };
	}
	qsort(s, (size_t)m, sizeof *s, kv_desc);
	int keep = m;
	if (g->keep_k && g->keep_k < m) {
		keep = g->keep_k;
		while (keep < m && s[keep].v == s[keep - 1].v)
			keep++;
		tail = 0; /* top_k masked it */
	}
	if (g->keep_p < 1) {
		double kept = tail, cum = tail;
		for (int i = 0; i < keep; i++)
			kept += exp(((double)s[i].v - mx) * inv_t);
		int j = keep - 1;
		for (; j > 0; j--) {
			cum += exp(((double)s[j].v - mx) * inv_t);
			if (cum / kept > 1 - g->keep_p)
				break;
		}
		keep = j + 1;
	}
	return s[keep - 1].v;
}

/* The biased log-probs of every token, in place (the raw ones of the biased
   tokens saved in raw[nbias]); then the greedy token, or one drawn with
   weights exp(v / T) over the tokens min_p, top_k and top_p keep, scanning
   ids in order with one uniform draw. vLLM's order: logit_bias, then (not
   greedy) temperature, min_p (a token below min_p times the top token's
   probability is masked), top_k, top_p, the draw. */
static int32_t pick_full(const zp_api_gen *g, zp_req *r, float *raw)
{
	float *v = r->cand_lp;
	int n = r->ncand, best = 0;
	for (int i = 0; i < g->nbias; i++) {
		raw[i] = v[g->bias_ids[i]];
		v[g->bias_ids[i]] += g->bias[i];
	}
	for (int i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	if (g->temperature < TEMP_GREEDY)
		return best;
	double inv_t = 1.0 / g->temperature, sum = 0, mx = v[best];
	float floor = -INFINITY;
	if (g->min_p > 0) { /* the lowest log-prob whose tempered weight reaches min_p */
		floor = v[best];
		for (int i = 0; i < n; i++)
			if (v[i] < floor && exp(((double)v[i] - mx) * inv_t) >= g->min_p)
				floor = v[i];
	}
	if (g->keep_k || g->keep_p < 1)
		floor = cut(g, v, n, floor, mx, inv_t);
	for (int i = 0; i < n; i++)
		if (v[i] >= floor)
			sum += exp(((double)v[i] - mx) * inv_t);
	uint64_t s = g->seed;
	double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53 * sum, acc = 0;
	for (int i = 0; i < n; i++) {
		if (v[i] < floor)
			continue;
		acc += exp(((double)v[i] - mx) * inv_t);
		if (u < acc)
			return i;
	}
	return best; /* u rounded onto the total: the last nonzero weight's place */
}

void zp_api_gen_pick(const zp_api_job *j, zp_req *r, zp_api_pick *p)
{
	const zp_api_gen *g = j->gen;
	float raw[ZP_API_ITEMS_MAX];
	ZP_ASSERT(g && (g->full ? r->ncand > 0 : r->top_k > 0));
	memset(p, 0, sizeof *p);
	p->stop_str = -1;
	if (!g->full) {
		p->id = r->top_ids[0];
		p->lp = r->top_lp[0];
		return;
	}
	p->id = pick_full(g, r, raw);
	p->lp = r->cand_lp[p->id];
	for (int i = 0; i < g->nbias; i++)
		if (g->bias_ids[i] == p->id)
			p->lp = raw[i];
}

static bool has_id(const int32_t *ids, int n, int32_t id)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

void zp_api_gen_text(const zp_api *a, const zp_api_job *j, zp_api_pick *p, zp_buf *tb)
{
	const zp_api_gen *g = j->gen;
	const zp_chat *ch = a->chat;
	bool special = ch && zp_chat_is_special(ch, p->id);
	size_t len;
	p->text_at = tb->len;
	p->finish = "length";
	if (has_id(g->stop_ids, g->nstop_ids, p->id)) {
		p->finish = "stop";
		p->stop_id = true;
		if (!g->include_stop)
			return; /* vLLM: a stop token's text is left out */
	} else if (!g->ignore_eos && ch && zp_chat_is_eos(ch, p->id)) {
		p->finish = "stop";
	}
	if ((special && g->skip_special) || !zp_tok_piece(a->tok, p->id, &len))
		return;
	zp_tok_decode(a->tok, &p->id, 1, tb);
	for (int k = 0; k < g->nstop && !p->stop_id; k++) {
		const char *at = strstr(tb->p + p->text_at, g->stop[k]);
		if (!at)
			continue;
		p->finish = "stop";
		p->stop_str = k;
		if (!g->include_stop)
			tb->len = (size_t)(at - tb->p);
		else
			tb->len = (size_t)(at - tb->p) + strlen(g->stop[k]);
		tb->p[tb->len] = '\0';
		break;
	}
}

void zp_api_gen_stop_reason(const zp_api_job *j, const zp_api_pick *p, zp_buf *out)
{
	zp_buf_puts(out, ",\"stop_reason\":");
	if (p->stop_id)
		zp_buf_printf(out, "%d", p->id);
	else if (p->stop_str >= 0)
		zp_buf_json_str(out, j->gen->stop[p->stop_str]);
	else
		zp_buf_puts(out, "null");
}

/* ---- /v1/chat/completions ---- */

static const char *const chat_known[] = {
	"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
	"stream", "stream_options", "stop", "seed", "logprobs", "top_logprobs", "logit_bias",
	"presence_penalty", "frequency_penalty", "user", "tools", "tool_choice",
	"parallel_tool_calls", "response_format", "add_generation_prompt", "continue_final_message",
	"chat_template", "chat_template_kwargs", "add_special_tokens", "echo",
	"skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
	"ignore_eos", "min_tokens", "top_k", "min_p", "repetition_penalty", "stop_token_ids",
	"truncate_prompt_tokens", "request_id", "priority", "documents", "metadata", "store",
	"service_tier", "reasoning_effort", "best_of", "use_beam_search", "length_penalty", NULL };

static const char *const msg_known[] = { "role", "content", "name", "tool_calls", "tool_call_id",
					 "reasoning_content", "refusal", NULL };

/* max_tokens (or max_completion_tokens, its newer name) must be 1. */
static int chat_one_token(zp_api_call *c)
{
	const char *k = zp_api_field(c->root, "max_completion_tokens") ? "max_completion_tokens"
								   : "max_tokens";
	const cJSON *mt = zp_api_field(c->root, k);
	if (!mt || !cJSON_IsNumber(mt) || mt->valuedouble != 1)
		return zp_api_bad(c, k, "zprefill is prefill-only: it reads one token, the answer "
				  "at the prompt's last position. Send max_tokens 1 (or "
				  "max_completion_tokens 1) and read choices[0].message and its logprobs");
	return 0;
}

/* What the one token cannot do, and what a prefill does not offer. */
static int chat_refusals(zp_api_call *c)
{
	const cJSON *n = zp_api_field(c->root, "n"), *tools = zp_api_field(c->root, "tools");
	const cJSON *rf = zp_api_field(c->root, "response_format");
	const cJSON *tc = zp_api_field(c->root, "tool_choice"), *bo = zp_api_field(c->root, "best_of");
	bool b = false;
	int rc;
	if ((rc = zp_api_get_bool(c, "stream", &b)))
		return rc;
	if (b)
		return zp_api_bad(c, "stream", "stream is not served: the answer is one token, sent "
				  "whole (send stream false)");
	if (n && (!cJSON_IsNumber(n) || n->valuedouble != 1))
		return zp_api_bad(c, "n", "n must be 1");
	if (bo && (!cJSON_IsNumber(bo) || bo->valuedouble != 1))
		return zp_api_bad(c, "best_of", "best_of must be 1");
	if ((rc = zp_api_get_bool(c, "use_beam_search", &b)) || b)
		return rc ? rc : zp_api_bad(c, "use_beam_search", "beam search is not served");
	if (tools && (!cJSON_IsArray(tools) || cJSON_GetArraySize(tools) > 0))
		return zp_api_bad(c, "tools", "tools are not served: the template's tool list would "
				  "be rendered by Jinja's tojson, which zprefill does not reproduce");
	if (tc && !(cJSON_IsString(tc) && (!strcmp(tc->valuestring, "none") ||
					   !strcmp(tc->valuestring, "auto"))))
		return zp_api_bad(c, "tool_choice", "tool_choice must be \"none\" or \"auto\" (no "
				  "tools are served)");
	if (rf && !(cJSON_IsObject(rf) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rf, "type")) &&
		    !strcmp(cJSON_GetObjectItemCaseSensitive(rf, "type")->valuestring, "text")))
		return zp_api_bad(c, "response_format", "response_format must be {\"type\": \"text\"}: "
				  "constrained output is not served");
	if (zp_api_field(c->root, "chat_template"))
		return zp_api_bad(c, "chat_template", "a request's own chat_template is not served: "
				  "the checkpoint's is rendered");
	if ((rc = zp_api_get_bool(c, "echo", &b)) || b)
		return rc ? rc : zp_api_bad(c, "echo", "echo is not served on chat (use /v1/completions)");
	return 0;
}

/* logprobs (bool) and top_logprobs (0..20, only with logprobs): *k -1 when
   logprobs is off. */
static int chat_logprobs(zp_api_call *c, int *k)
{
	const cJSON *t = zp_api_field(c->root, "top_logprobs");
	bool on = false;
	int rc;
	*k = -1;
	if ((rc = zp_api_get_bool(c, "logprobs", &on)))
		return rc;
	if (t && (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) ||
		  t->valuedouble < 0 || t->valuedouble > ZP_MIN(ZP_API_LOGPROBS_MAX, c->a->lim.vocab)))
		return zp_api_bad(c, "top_logprobs", "top_logprobs must be an integer in [0, %d]",
				  ZP_MIN(ZP_API_LOGPROBS_MAX, c->a->lim.vocab));
	if (t && t->valuedouble > 0 && !on)
		return zp_api_bad(c, "top_logprobs", "top_logprobs needs logprobs true");
	if (on)
		*k = t ? (int)t->valuedouble : 0;
	return 0;
}

/* content: a string, or a list of {"type": "text", "text"} parts joined with
   "\n" (as vLLM gives a string template); null or absent: "" for an
   assistant message (its tool calls carry it). */
static int msg_content(zp_api_call *c, const cJSON *m, int i, enum zp_chat_role role,
		       const char **out)
{
	const cJSON *v = zp_api_field(m, "content"), *part;
	size_t len = 0;
	if (!v && role == ZP_CHAT_ASSISTANT) {
		*out = "";
		return 0;
	}
	if (cJSON_IsString(v)) {
		*out = v->valuestring;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return zp_api_bad(c, "messages", "messages[%d].content must be a string or a list of "
				  "text parts", i);
	cJSON_ArrayForEach(part, v) {
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
		const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
		if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx))
			return zp_api_bad(c, "messages", "messages[%d].content: only {\"type\": \"text\", "
					  "\"text\": ...} parts are served", i);
		len += strlen(tx->valuestring) + 1;
	}
	char *s = zp_region_alloc(&c->a->parse, len + 1), *w = s;
	if (!s)
		return zp_api_full(c, &c->a->parse);
	*w = '\0';
	cJSON_ArrayForEach(part, v) {
		const char *tx = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
		size_t k = strlen(tx);
		if (w != s)
			*w++ = '\n';
		memcpy(w, tx, k + 1);
		w += k;
	}
	*out = s;
	return 0;
}

/* tool_calls: [{"function": {"name", "arguments": JSON text}}]. */
static int msg_calls(zp_api_call *c, const cJSON *m, int i, zp_chat_msg *out)
{
	const cJSON *tc = zp_api_field(m, "tool_calls"), *it;
	int k = 0;
	if (!tc)
		return 0;
	if (out->role != ZP_CHAT_ASSISTANT || !cJSON_IsArray(tc))
		return zp_api_bad(c, "messages", "messages[%d].tool_calls must be a list, on an "
				  "assistant message", i);
	zp_chat_call *calls = zp_region_alloc(&c->a->parse, ((size_t)cJSON_GetArraySize(tc) + 1) *
					      sizeof *calls);
	if (!calls)
		return zp_api_full(c, &c->a->parse);
	cJSON_ArrayForEach(it, tc) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "function");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
		if (!cJSON_IsString(name) || !cJSON_IsString(args))
			return zp_api_bad(c, "messages", "messages[%d].tool_calls[%d] must be {\"function\": "
					  "{\"name\": string, \"arguments\": JSON text as a string}}",
					  i, k);
		calls[k++] = (zp_chat_call){ .name = name->valuestring, .args = args->valuestring };
	}
	out->calls = calls;
	out->ncalls = k;
	return 0;
}

static int chat_message(zp_api_call *c, const cJSON *m, int i, zp_chat_msg *out)
{
	static const char *const roles[] = { "system", "user", "assistant", "tool" };
	const cJSON *role = zp_api_field(m, "role"), *rc_ = zp_api_field(m, "reasoning_content");
	char where[32];
	int rc, r = 0;
	if (!cJSON_IsObject(m))
		return zp_api_bad(c, "messages", "messages[%d] must be an object", i);
	if (!cJSON_IsString(role))
		return zp_api_bad(c, "messages", "messages[%d].role must be a string", i);
	while (r < 4 && strcmp(roles[r], role->valuestring))
		r++;
	if (r == 4)
		return zp_api_bad(c, "messages", "messages[%d].role \"%.32s\" is not served: the chat "
				  "template knows system, user, assistant and tool%s", i,
				  role->valuestring, !strcmp(role->valuestring, "developer") ?
				  " (send a developer message as system)" : "");
	snprintf(where, sizeof where, "messages[%d]", i);
	zp_api_ignore_unknown(c, m, where, msg_known);
	memset(out, 0, sizeof *out);
	out->role = (enum zp_chat_role)r;
	if ((rc = msg_content(c, m, i, out->role, &out->content)) || (rc = msg_calls(c, m, i, out)))
		return rc;
	if (rc_ && (out->role != ZP_CHAT_ASSISTANT || !cJSON_IsString(rc_)))
		return zp_api_bad(c, "messages", "messages[%d].reasoning_content must be a string, on "
				  "an assistant message", i);
	out->reasoning = rc_ ? rc_->valuestring : NULL;
	return 0;
}

/* add_generation_prompt (default true, as vLLM), continue_final_message
   (not with it, as vLLM and transformers) and chat_template_kwargs'
   enable_thinking (the one variable Qwen3's template reads): *think -1 when
   not passed. */
static int chat_flags(zp_api_call *c, bool *add_gen, bool *cont, int *think)
{
	static const char *const kw_known[] = { "enable_thinking", NULL };
	const cJSON *kw = zp_api_field(c->root, "chat_template_kwargs");
	const cJSON *et = kw ? zp_api_field(kw, "enable_thinking") : NULL;
	int rc;
	*add_gen = true;
	*think = -1;
	if ((zp_api_field(c->root, "add_generation_prompt") &&
	     (rc = zp_api_get_bool(c, "add_generation_prompt", add_gen))) ||
	    (rc = zp_api_get_bool(c, "continue_final_message", cont)))
		return rc;
	if (*cont && *add_gen)
		return zp_api_bad(c, "continue_final_message", "continue_final_message and "
				  "add_generation_prompt (true by default) cannot both be set: send "
				  "add_generation_prompt false to continue the final message");
	if (kw && !cJSON_IsObject(kw))
		return zp_api_bad(c, "chat_template_kwargs", "chat_template_kwargs must be an object");
	if (kw)
		zp_api_ignore_unknown(c, kw, "chat_template_kwargs", kw_known);
	if (et && !cJSON_IsBool(et))
		return zp_api_bad(c, "chat_template_kwargs", "chat_template_kwargs.enable_thinking "
				  "must be true or false");
	if (et)
		*think = cJSON_IsTrue(et);
	return 0;
}

/* The conversation rendered into the api's text buffer, then tokenized. */
static int chat_prompt(zp_api_call *c, int32_t **ids, int *n)
{
	const cJSON *ms = zp_api_field(c->root, "messages");
	bool add_gen, cont = false;
	int think, rc, nm, i = 0;
	if (!cJSON_IsArray(ms) || (nm = cJSON_GetArraySize(ms)) < 1 || nm > ZP_API_ITEMS_MAX)
		return zp_api_bad(c, "messages", "messages must be a list of 1 to %d messages",
				  ZP_API_ITEMS_MAX);
	if ((rc = chat_flags(c, &add_gen, &cont, &think)))
		return rc;
	zp_chat_msg *m = zp_region_alloc(&c->a->parse, (size_t)nm * sizeof *m);
	if (!m)
		return zp_api_full(c, &c->a->parse);
	const cJSON *it;
	cJSON_ArrayForEach(it, ms)
		if ((rc = chat_message(c, it, i, &m[i])))
			return rc;
		else
			i++;
	/* continue_final_message: the final content carries transformers' tag */
	const char *final = m[nm - 1].content;
	size_t fl = strlen(final);
	char *tagged = cont ? zp_region_alloc(&c->a->parse, fl + sizeof ZP_CHAT_CONTINUE_TAG) : NULL;
	if (cont && !tagged)
		return zp_api_full(c, &c->a->parse);
	if (cont) {
		memcpy(tagged, final, fl);
		memcpy(tagged + fl, ZP_CHAT_CONTINUE_TAG, sizeof ZP_CHAT_CONTINUE_TAG);
		m[nm - 1].content = tagged;
	}
	zp_buf text;
	zp_buf_init_fixed(&text, c->a->text, c->a->text_cap);
	if (zp_chat_render(c->a->chat, m, nm, add_gen, think, &text))
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "messages", "the rendered "
				    "conversation is over %zu bytes (the body limit and the "
				    "template's markers): send a shorter one", c->a->text_cap);
	if (cont && zp_chat_continue_cut(&text, 0, final))
		return zp_api_bad(c, "continue_final_message", "the final message does not appear "
				  "in the rendered conversation, so it cannot be continued (the template "
				  "rewrites it, as transformers would say)");
	return zp_api_encode_all(c, text.p, text.len, "messages", true, ids, n);
}

int zp_api_chat_build(zp_api_call *c)
{
	zp_api_job *j = c->job;
	int32_t *ids;
	int rc, n, k, keep;
	if ((rc = zp_api_check_fields(c, chat_known)))
		return rc;
	if (!c->a->tok || !c->a->chat || c->a->chat->kind != ZP_CHAT_QWEN3)
		return zp_api_bad(c, "messages", "chat is not served for this model: %s",
				  !c->a->tok ? "the model directory has no tokenizer.json" :
				  c->a->chat ? c->a->chat->why : "no chat template was loaded");
	if ((rc = chat_one_token(c)) || (rc = chat_refusals(c)) || (rc = chat_logprobs(c, &k)) ||
	    (rc = zp_api_get_truncate(c, "truncate_prompt_tokens", &keep)) ||
	    (rc = zp_api_gen_read(c, ZP_MAX(k, 0))) || (rc = chat_prompt(c, &ids, &n)))
		return rc;
	j->lp_k = k;
	zp_api_truncate(&ids, &n, keep, true);
	if (n == 0)
		return zp_api_bad(c, "messages", "the rendered conversation has no tokens");
	if ((rc = zp_api_alloc_seqs(c, 1)) || (rc = zp_api_add_seq(c, ids, n, "messages")) ||
	    (rc = zp_api_gen_seq(c)))
		return rc;
	j->nout = 1;
	return 0;
}

/* {"token", "logprob", "bytes"}: the token's text (one decode: a piece of
   a character shows as U+FFFD) and its raw bytes, which OpenAI gives so that
   such pieces can be joined. */
static void token_entry(const zp_api *a, int32_t id, float lp, zp_buf *out, zp_buf *tb)
{
	size_t len = 0;
	const char *piece = zp_tok_piece(a->tok, id, &len);
	zp_buf_reset(tb);
	if (piece)
		zp_tok_decode(a->tok, &id, 1, tb);
	zp_buf_puts(out, "\"token\":");
	zp_buf_json_strn(out, tb->p, tb->len);
	zp_buf_puts(out, ",\"logprob\":");
	zp_buf_json_float(out, lp < LP_FLOOR ? LP_FLOOR : lp);
	zp_buf_puts(out, ",\"bytes\":[");
	for (size_t i = 0; i < len; i++)
		zp_buf_printf(out, "%s%u", i ? "," : "", (unsigned char)piece[i]);
	zp_buf_puts(out, "]");
}

/* choices[].logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}. */
static void chat_logprobs_out(const zp_api *a, const zp_api_job *j, const zp_req *r,
			      const zp_api_pick *p, zp_buf *out, zp_buf *tb)
{
	zp_buf_puts(out, ",\"logprobs\":{\"content\":[{");
	token_entry(a, p->id, p->lp, out, tb);
	zp_buf_puts(out, ",\"top_logprobs\":[");
	for (int t = 0; t < j->lp_k; t++) {
		zp_buf_puts(out, t ? ",{" : "{");
		token_entry(a, r->top_ids[t], r->top_lp[t], out, tb);
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]}]}");
}

void zp_api_chat_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	static unsigned long long seq; /* the reactor's: response ids */
	zp_buf tb;
	zp_api_pick p;
	zp_req *r = &j->eng.seq[0];
	zp_buf_init_fixed(&tb, a->text, a->text_cap);
	zp_api_gen_pick(j, r, &p);
	zp_api_gen_text(a, j, &p, &tb);
	zp_buf_printf(out, "{\"id\":\"chatcmpl-%08llx%08llx\",\"object\":\"chat.completion\","
		      "\"created\":%lld", (unsigned long long)time(NULL), ++seq, (long long)time(NULL));
	zp_api_model_field(a, out);
	zp_buf_puts(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	zp_buf_json_strn(out, tb.p, tb.len);
	zp_buf_puts(out, ",\"refusal\":null,\"tool_calls\":[]}");
	if (j->lp_k >= 0)
		chat_logprobs_out(a, j, r, &p, out, &tb);
	else
		zp_buf_puts(out, ",\"logprobs\":null");
	zp_buf_printf(out, ",\"finish_reason\":\"%s\"", p.finish);
	zp_api_gen_stop_reason(j, &p, out);
	zp_buf_printf(out, "}],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":1,"
		      "\"total_tokens\":%d},\"system_fingerprint\":null}", r->ntok, r->ntok + 1);
	if (tb.overflow)
		out->overflow = true;
}
