/* test_default_model.c -- the embedded default (models/default, trained by
   tools/train_default.py on WordNet) answers its task, and answers it as
   transformers does. For each request of tests/golden/default.jsonl (held-out
   glosses and words scored against the ten category tokens, whose id is the
   WordNet category; two rerank prompts; pooled embeddings), run through the real
   path (JSON -> zp_req_parse -> zp_fwd_run):
     fp32: every log-prob within 1e-4 of transformers, 1 - cos <= 1e-5, and the
           same category chosen;
     fp32 and bf16 (what `make run` serves): at least HELD_OUT_MIN of the 40
           held-out items get their WordNet category.
   The rerank prompts are compared with transformers but their ranking is not
   asserted: this checkpoint did not learn reranking (models/default/RECIPE.md). */
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
#define MAXREQ 64
/* The ten labels, in the order of every request's candidate_token_ids
   (tools/train_default.py CATEGORIES). */
static const char *const labels[] = { "food", "animal", "plant", "person", "place",
				      "artifact", "body", "time", "emotion", "material" };
#define NLABELS 10
/* Of the 40 held-out items transformers gets 32 right (its argmax, recorded in the
   golden); the engine gets the same argmax in fp32, and may lose a near-tie or
   two in bf16. A floor, not a score: the accuracy over all held-out synsets is in
   models/default/heldout.json (87.6% from glosses, 56.7% from words). */
#define HELD_OUT_MIN 30

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
	if ((a = cJSON_GetObjectItem(exp, "top_logprobs")))
		cJSON_ArrayForEach(it, a) {
			CHECK(r->top_ids[i] == cJSON_GetArrayItem(it, 0)->valueint, "%s top[%d] id",
			      id, i);
			close_to(id, "top_logprob", r->top_lp[i++], cJSON_GetArrayItem(it, 1));
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

static double p_yes(const zp_req *r) /* candidates: no, yes */
{
	return 1 / (1 + exp(r->cand_lp[0] - r->cand_lp[1]));
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
	int items = 0, right = 0, hf_right = 0;
	double yes = NAN, no = NAN;
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
		} else if (!strcmp(id, "rerank-yes")) {
			yes = p_yes(&req[i]);
		} else if (!strcmp(id, "rerank-no")) {
			no = p_yes(&req[i]);
		}
	}
	printf("%s: held-out categories right %d/%d (transformers: %d), rerank P(yes) violin "
	       "gloss %.3f vs banana gloss %.3f", wt == ZP_W_F32 ? "fp32" : "bf16", right, items,
	       hf_right, yes, no);
	if (wt == ZP_W_F32)
		printf(", max|dlogprob| vs transformers %.2e", maxerr);
	printf("\n");
	CHECK(items == 40, "%d held-out items in %s", items, GOLDEN);
	CHECK(right >= HELD_OUT_MIN, "%d of %d held-out items right (< %d)", right, items,
	      HELD_OUT_MIN);
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
