/* test_default_model.c -- the embedded default (models/default, trained by
   tools/train_default.py on WordNet) answers its task, and answers it as
   transformers does. For each request of tests/golden/default.jsonl
   (tools/train_default.py --requests: held-out glosses and words scored against
   the ten category tokens, whose id is the WordNet category; held-out words
   against their own gloss and 3 others as rerank prompts, groups
   rerank:GROUP:yes|no; what the demo asks, tools/demo_items.json, with the
   answers a person accepts; pooled embeddings), run through the real path
   (JSON -> zp_req_parse -> zp_fwd_run):
     fp32: every log-prob within 1e-4 of transformers, 1 - cos <= 1e-5, and the
           same category and the same first document chosen;
     fp32 and bf16 (what `make run` serves): at least HELD_OUT_MIN of the 40
           held-out items get their WordNet category, and at least DEMO_MIN of
           the demo's 20 classify answers are ones a person accepts.
   Floors, not scores: they hold this checkpoint to what it does, and the
   held-out rerank groups won, and the demo's violin group won or lost, as
   transformers has them. Not asserted, because this checkpoint does not do
   them (models/default/RECIPE.md, issue 19): every demo answer right. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "device.h"
#include "forward.h"
#include "req_json.h"

#define DIR "models/default"
#define GOLDEN "tests/golden/default.jsonl"
#define MAXREQ 128
#define MAXGROUPS 16
/* The ten labels, in the order of every request's candidate_token_ids
   (tools/train_default.py CATEGORIES). */
static const char *const labels[] = { "food", "animal", "plant", "person", "place",
				      "artifact", "body", "time", "emotion", "material" };
#define NLABELS 10
/* Of the 40 held-out items (20 glosses, 20 words) transformers gets 29 right (its
   argmax, recorded in the golden); the engine gets the same argmax in fp32, and
   may lose a near-tie in bf16. A floor, not a score: the accuracy over all
   held-out synsets is in models/default/heldout.json (91.6% from glosses, 66.0%
   from words, own gloss first of 4 in 68.6%). */
#define HELD_OUT_MIN 29
/* Of the demo's 20 classify answers transformers gives 18 a person accepts (not
   tiger -> person, WordNet's first sense of it, nor oak -> person; the demo
   marks them). */
#define DEMO_MIN 18
/* Of the 10 held-out rerank groups transformers puts the own gloss first in 7. */
#define RERANK_MIN 7
/* The demo's violin gloss is first: 0.917 against the hammer's 0.645. */
#define DEMO_RERANK 1

static int label_index(const char *id)
{
	for (int i = 0; i < NLABELS; i++)
		if (!strcmp(id, labels[i]))
			return i;
	return -1;
}

static int argmax(const float *v, int n)
{
	int b = 0;
	for (int i = 1; i < n; i++)
		b = v[i] > v[b] ? i : b;
	return b;
}

static int argmax_json(const cJSON *a)
{
	int b = 0, i = 0;
	double best = -INFINITY;
	const cJSON *it;
	cJSON_ArrayForEach(it, a) {
		if (it->valuedouble > best)
			best = it->valuedouble, b = i;
		i++;
	}
	return b;
}

static double maxerr;

static void close_to(const char *id, const char *what, double got, const cJSON *want)
{
	if (cJSON_IsNull(want)) {
		CHECK(isnan(got), "%s %s: expected null, got %g", id, what, got);
		return;
	}
	double d = fabs(got - want->valuedouble);
	maxerr = fmax(maxerr, d);
	CHECK(d <= 1e-4, "%s %s: got %.7f want %.7f", id, what, got, want->valuedouble);
}

/* fp32 against transformers: every number it recorded. */
static void exact(const zp_req *r, const cJSON *exp)
{
	const char *id = r->id_json;
	const cJSON *a, *it;
	int i = 0;
	if ((a = cJSON_GetObjectItem(exp, "candidate_logprobs")))
		cJSON_ArrayForEach(it, a) close_to(id, "candidate", r->cand_lp[i++], it);
	i = 0;
	if ((a = cJSON_GetObjectItem(exp, "prompt_logprobs")))
		cJSON_ArrayForEach(it, a) close_to(id, "prompt_logprob", r->plp[i++], it);
	i = 0;
	if ((a = cJSON_GetObjectItem(exp, "top_logprobs"))) {
		int k = cJSON_GetArraySize(a);
		cJSON_ArrayForEach(it, a) {
			/* Tokens sharing an embedding row (this checkpoint's word tokens
			   across case and a leading space: tools/train_default.py Data.key)
			   tie exactly, and a tie's order is either side's: an id may
			   differ where transformers' log-prob ties another of its list,
			   or at the last place (a tie cut by k). */
			double lp = cJSON_GetArrayItem(it, 1)->valuedouble;
			int tied = i == k - 1;
			for (int j = 0; j < k; j++)
				tied |= j != i &&
					fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(a, j), 1)->valuedouble - lp) < 1e-6;
			CHECK(r->top_ids[i] == cJSON_GetArrayItem(it, 0)->valueint || tied,
			      "%s top[%d] id %d, transformers %d", id, i, r->top_ids[i],
			      cJSON_GetArrayItem(it, 0)->valueint);
			close_to(id, "top_logprob", r->top_lp[i++], cJSON_GetArrayItem(it, 1));
		}
	}
	if ((a = cJSON_GetObjectItem(exp, "embedding"))) {
		double dot = 0, na = 0, nb = 0;
		CHECK(cJSON_GetArraySize(a) == r->emb_dim, "%s embedding size", id);
		i = 0;
		cJSON_ArrayForEach(it, a) {
			double w = it->valuedouble, g = r->emb[i++];
			dot += w * g, na += w * w, nb += g * g;
		}
		CHECK(1 - dot / sqrt(na * nb) <= 1e-5, "%s embedding: 1 - cos = %.2e", id,
		      1 - dot / sqrt(na * nb));
	}
}

static double p_yes(double lp_no, double lp_yes) /* candidates: no, yes */
{
	return 1 / (1 + exp(lp_no - lp_yes));
}

/* "demo:food|plant:banana": is label one of those the id accepts? */
static int demo_accepts(const char *id, const char *label)
{
	const char *p = id + 5, *end = strchr(p, ':');
	size_t n = strlen(label);
	while (p < end) {
		const char *bar = memchr(p, '|', (size_t)(end - p));
		const char *q = bar ? bar : end;
		if ((size_t)(q - p) == n && !memcmp(p, label, n))
			return 1;
		p = q + 1;
	}
	return 0;
}

/* A rerank group (rerank:GROUP:yes|no): the documents' best P(yes), the
   engine's and transformers', and whether that document is the own one. */
struct group {
	char name[16];
	double best, hf_best;
	int best_yes, hf_best_yes, docs;
};

static struct group *group_of(struct group *g, int *ng, const char *id)
{
	const char *p = id + 7, *end = strchr(p, ':');
	ZP_ASSERT(end && end - p < 16);
	for (int i = 0; i < *ng; i++)
		if (strlen(g[i].name) == (size_t)(end - p) && !memcmp(g[i].name, p, (size_t)(end - p)))
			return &g[i];
	ZP_ASSERT(*ng < MAXGROUPS);
	struct group *n = &g[(*ng)++];
	memset(n, 0, sizeof *n);
	memcpy(n->name, p, (size_t)(end - p));
	n->best = n->hf_best = -1;
	return n;
}

static void run(enum zp_wtype wt, const char *text)
{
	zp_model m;
	zp_err e;
	zp_req req[MAXREQ], *ptr[MAXREQ];
	cJSON *row[MAXREQ];
	if (zp_model_load(&m, DIR, wt, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e)) {
		CHECK(0, "%s: %s", DIR, e.msg);
		return;
	}
	zp_req_limits lim = { .vocab = m.cfg.vocab, .seq_tokens_max = 4096, .hidden = m.cfg.hidden };
	char *copy = strdup(text), *save = NULL;
	int n = 0, total = 0;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		cJSON *r = cJSON_Parse(l);
		if (cJSON_GetObjectItem(r, "_meta")) {
			cJSON_Delete(r);
			continue;
		}
		ZP_ASSERT(n < MAXREQ);
		char *rq = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "request"));
		zp_req_error err;
		CHECK(zp_req_parse(&req[n], rq, strlen(rq), &lim, &err) == 0, "%s", err.message);
		free(rq);
		row[n] = r, ptr[n] = &req[n], total += req[n].ntok, n++;
	}
	zp_fwd *f = zp_fwd_new_cpu(&m, 2, total);
	ZP_ASSERT(zp_fwd_run(f, ptr, n, NULL) == 0);
	int items = 0, right = 0, hf_right = 0, demo = 0, demo_ok = 0, ng = 0;
	struct group g[MAXGROUPS];
	maxerr = 0;
	for (int i = 0; i < n; i++) {
		const cJSON *exp = cJSON_GetObjectItem(row[i], "expected");
		const char *id = cJSON_GetObjectItem(cJSON_GetObjectItem(row[i], "request"), "id")->valuestring;
		int want = label_index(id);
		if (wt == ZP_W_F32)
			exact(&req[i], exp);
		if (want >= 0) {
			ZP_ASSERT(req[i].ncand == NLABELS);
			int got = argmax(req[i].cand_lp, NLABELS);
			int hf = argmax_json(cJSON_GetObjectItem(exp, "candidate_logprobs"));
			items++, right += got == want, hf_right += hf == want;
			if (wt == ZP_W_F32)
				CHECK(got == hf, "%s: engine says %s, transformers %s", id, labels[got],
				      labels[hf]);
		} else if (!strncmp(id, "demo:", 5)) {
			ZP_ASSERT(req[i].ncand == NLABELS);
			int got = argmax(req[i].cand_lp, NLABELS);
			int hf = argmax_json(cJSON_GetObjectItem(exp, "candidate_logprobs"));
			if (wt == ZP_W_F32)
				CHECK(got == hf, "%s: engine says %s, transformers %s", id, labels[got],
				      labels[hf]);
			if (demo_accepts(id, labels[got]))
				demo_ok++;
			else
				printf("%s: %s, which a person would not say\n", id, labels[got]);
			demo++;
		} else if (!strncmp(id, "rerank:", 7)) {
			ZP_ASSERT(req[i].ncand == 2);
			struct group *gr = group_of(g, &ng, id);
			int own = !strcmp(strrchr(id, ':'), ":yes");
			const cJSON *hf = cJSON_GetObjectItem(exp, "candidate_logprobs");
			double p = p_yes(req[i].cand_lp[0], req[i].cand_lp[1]);
			double hp = p_yes(cJSON_GetArrayItem(hf, 0)->valuedouble,
					  cJSON_GetArrayItem(hf, 1)->valuedouble);
			if (p > gr->best)
				gr->best = p, gr->best_yes = own;
			if (hp > gr->hf_best)
				gr->hf_best = hp, gr->hf_best_yes = own;
			gr->docs++;
		}
	}
	int groups = 0, rr_right = 0, rr_hf = 0, demo_rr = -1;
	for (int k = 0; k < ng; k++) {
		CHECK(g[k].docs == 4, "rerank group %s: %d documents", g[k].name, g[k].docs);
		if (wt == ZP_W_F32)
			CHECK(g[k].best_yes == g[k].hf_best_yes,
			      "rerank group %s: the engine and transformers disagree", g[k].name);
		if (!strcmp(g[k].name, "demo"))
			demo_rr = g[k].best_yes;
		else
			groups++, rr_right += g[k].best_yes, rr_hf += g[k].hf_best_yes;
	}
	printf("%s: held-out categories right %d/%d (transformers: %d), held-out own gloss first "
	       "of 4 in %d/%d (transformers: %d; chance 1 in 4), demo answers a person accepts "
	       "%d/%d, the demo's violin gloss first: %s", wt == ZP_W_F32 ? "fp32" : "bf16",
	       right, items, hf_right, rr_right, groups, rr_hf, demo_ok, demo,
	       demo_rr == 1 ? "yes" : "no");
	if (wt == ZP_W_F32)
		printf(", max|dlogprob| vs transformers %.2e", maxerr);
	printf("\n");
	CHECK(items == 40, "%d held-out items in %s", items, GOLDEN);
	CHECK(right >= HELD_OUT_MIN, "%d of %d held-out items right (< %d)", right, items,
	      HELD_OUT_MIN);
	CHECK(groups == 10 && demo_rr >= 0, "%d held-out rerank groups and %s demo group in %s",
	      groups, demo_rr >= 0 ? "a" : "no", GOLDEN);
	CHECK(rr_right >= RERANK_MIN, "the own gloss first in %d of %d held-out rerank groups (< %d)",
	      rr_right, groups, RERANK_MIN);
	CHECK(demo_rr == DEMO_RERANK, "the demo's violin gloss first: %s (want %s)",
	      demo_rr == 1 ? "yes" : "no", DEMO_RERANK ? "yes" : "no");
	CHECK(demo == 20 && demo_ok >= DEMO_MIN, "%d of %d demo answers a person accepts (< %d)",
	      demo_ok, demo, DEMO_MIN);
	for (int i = 0; i < n; i++) {
		zp_req_free(&req[i]);
		cJSON_Delete(row[i]);
	}
	zp_fwd_free(f);
	free(copy);
	zp_model_free(&m);
}

int main(void)
{
	char *text = check_slurp(GOLDEN, NULL);
	CHECK(text != NULL, "%s: missing", GOLDEN);
	if (text) {
		run(ZP_W_F32, text);
		run(ZP_W_BF16, text);
	}
	free(text);
	return check_exit("test_default_model");
}
