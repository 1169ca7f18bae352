/* test_alloc.c -- the request path below HTTP allocates nothing after
   start-up: with malloc interposed (alloc_count.h), it tokenizes a varied
   corpus (ASCII, CJK, emoji, combining marks, added tokens, long inputs, the
   golden corpus) on the small and the Qwen3 tokenizer (models/default's),
   decodes, parses native requests into a region (ids and text, candidates,
   top-k, prompt log-probs, pooling, errors), writes their results into a fixed
   zp_buf, parses and prints JSON through the cJSON hooks, and fails cleanly
   (413, overflow) when a region, a buffer or the tokenizer's text limit is
   too small; zero allocations counted, and the same answers as the heap path.
   Under ASan/TSan (they own malloc) nothing is counted: the same work runs
   for its answers and memory safety only. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "alloc_count.h"
#include "check.h"
#include "json.h"
#include "region.h"
#include "req_json.h"
#include "tokenizer.h"

#define IDS_MAX (1 << 18)
#define BODY_MAX (64u << 10)
#define GOLDEN_MAX 1024

struct fixture {
	zp_tok *tok;
	zp_tok_state *ts;
	zp_req_limits lim;
	zp_region rg;
	zp_buf out;		/* fixed: the response buffer */
	int32_t *ids;		/* [IDS_MAX] */
	const char *text[GOLDEN_MAX + 32];
	size_t text_len[GOLDEN_MAX + 32];
	int ntext;
	int golden_n[GOLDEN_MAX + 32]; /* golden id counts (-1: not a golden line) */
	int32_t *golden_ids[GOLDEN_MAX + 32];
	int enc_n[GOLDEN_MAX + 32];
	int32_t *enc_ids[GOLDEN_MAX + 32];
};

static long total;

/* fn(arg) with allocations counted: zero expected. */
static void counted(const char *what, void (*fn)(struct fixture *, const void *),
		    struct fixture *fx, const void *arg)
{
	zp_alloc_count_begin();
	fn(fx, arg);
	long n = zp_alloc_count_end();
	CHECK(n == 0, "%s: %ld allocations", what, n);
	zp_alloc_count_report(stderr, what, n);
	total += n;
}

/* ---- start-up: the corpus ---- */

static char *repeat(const char *unit, size_t bytes)
{
	size_t u = strlen(unit), n = bytes / u * u;
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i += u)
		memcpy(s + i, unit, u);
	s[n] = 0;
	return s;
}

static void add_text(struct fixture *fx, const char *s)
{
	fx->text[fx->ntext] = s;
	fx->text_len[fx->ntext] = strlen(s);
	fx->golden_n[fx->ntext] = -1;
	fx->enc_ids[fx->ntext] = malloc(IDS_MAX * sizeof(int32_t));
	fx->ntext++;
}

static void load_corpus(struct fixture *fx, const char *golden)
{
	static const char *fixed[] = {
		"Hello, world! The quick brown fox jumps over the lazy dog's back; it's 42.",
		"\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82"
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
		"emoji \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd family \xf0\x9f\x91\xa8\xe2\x80\x8d"
		"\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 flag \xf0\x9f\x87\xaf\xf0\x9f\x87\xb5",
		/* combining marks NFC composes: e + acute, A + ring, Hangul jamo */
		"cafe\xcc\x81 A\xcc\x8a \xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8 \xc7\x95",
		/* NFC expands U+0958 (a composition exclusion) to two code points */
		"\xe0\xa5\x98\xe0\xa5\x98 x",
		"<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
		"int main(void)\n{\n\treturn 0;   \n}\n\n\n   x  ",
	};
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		add_text(fx, fixed[i]);
	add_text(fx, repeat("The tokenizer's piece cache, merges and NFC \xe2\x80\x94 "
			    "\xe6\xb7\xb7\xe5\x90\x88 text e\xcc\x81 \xf0\x9f\x98\x80. ", 200 << 10));
	add_text(fx, repeat("abcdefghij", 60 << 10)); /* one piece of 60 KB */
	add_text(fx, repeat("\xe4\xb8\x80\xe4\xba\x8c\xe4\xb8\x89\xe5\x9b\x9b", 100 << 10));
	add_text(fx, repeat("o\xcc\x88", 30 << 10));  /* all combining, all composed */

	FILE *f = fopen(golden, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	CHECK(f, "open %s", golden);
	while (f && (n = getline(&line, &cap, f)) > 0 && fx->ntext < GOLDEN_MAX) {
		cJSON *o = zp_json_parse(line, (size_t)n);
		const cJSON *t = cJSON_GetObjectItem(o, "text"), *ids = cJSON_GetObjectItem(o, "ids");
		if (cJSON_IsString(t)) {
			int i = fx->ntext;
			add_text(fx, strdup(t->valuestring));
			fx->golden_n[i] = cJSON_GetArraySize(ids);
			fx->golden_ids[i] = malloc((size_t)(fx->golden_n[i] + 1) * sizeof(int32_t));
			for (int k = 0; k < fx->golden_n[i]; k++)
				fx->golden_ids[i][k] = cJSON_GetArrayItem(ids, k)->valueint;
		}
		cJSON_Delete(o);
	}
	free(line);
	if (f)
		fclose(f);
}

/* ---- the counted work ---- */

static void encode_all(struct fixture *fx, const void *arg)
{
	zp_tok_state *ts = (zp_tok_state *)arg;
	for (int i = 0; i < fx->ntext; i++)
		fx->enc_n[i] = zp_tok_encode(ts, fx->text[i], fx->text_len[i], fx->enc_ids[i],
					     IDS_MAX);
}

static void decode_all(struct fixture *fx, const void *arg)
{
	const zp_tok *tok = arg;
	for (int i = 0; i < fx->ntext; i++) {
		zp_buf_reset(&fx->out);
		if (zp_tok_decode(tok, fx->enc_ids[i], ZP_MIN(fx->enc_n[i], IDS_MAX), &fx->out))
			fx->enc_n[i] = -2; /* checked after */
		if (fx->out.overflow)
			fx->enc_n[i] = -3;
	}
}

/* Made-up results, the same for the heap and the region request. */
static void fill_results(zp_req *r)
{
	for (int i = 0; i < r->ncand; i++)
		r->cand_lp[i] = -0.25f * (float)(i + 1);
	for (int i = 0; i < r->top_k; i++) {
		r->top_ids[i] = i * 3;
		r->top_lp[i] = -1.0f / (float)(i + 1);
	}
	for (int i = 1; r->plp_start >= 0 && i < r->ntok - r->plp_start; i++)
		r->plp[i] = -0.125f * (float)i;
	for (int i = 0; r->emb && i < r->emb_dim; i++)
		r->emb[i] = sinf((float)i);
}

struct answer {
	const char *body;
	int rc, code;
};

static void answer_in_region(struct fixture *fx, const void *arg)
{
	struct answer *a = (struct answer *)arg;
	zp_req r;
	zp_req_error err;
	zp_region_reset(&fx->rg);
	zp_buf_reset(&fx->out);
	a->rc = zp_req_parse_in(&r, &fx->rg, a->body, strlen(a->body), &fx->lim, &err);
	a->code = a->rc ? err.code : 200;
	if (a->rc) {
		zp_req_write_error(r.id_json, &err, &fx->out);
	} else {
		fill_results(&r);
		zp_req_write_result(&r, &fx->out);
	}
	zp_req_free(&r);
}

/* The heap path's answer (not counted), to compare with the region's. */
static char *answer_on_heap(struct fixture *fx, const char *body, int *code)
{
	zp_req r;
	zp_req_error err;
	zp_buf b;
	zp_buf_init(&b, 256);
	if (zp_req_parse(&r, body, strlen(body), &fx->lim, &err)) {
		zp_req_write_error(r.id_json, &err, &b);
		*code = err.code;
	} else {
		fill_results(&r);
		zp_req_write_result(&r, &b);
		*code = 200;
	}
	zp_req_free(&r);
	return b.p;
}

static void requests(struct fixture *fx)
{
	static const char *fixed[] = {
		"{\"id\":\"r1\",\"prompt_token_ids\":[1,2,3,4,5]}",
		"{\"id\":7,\"prompt\":\"The quick brown fox\",\"candidates\":[\" yes\",\" no\"],"
		"\"top_logprobs\":5}",
		"{\"id\":{\"a\":[1,\"x\\u00e9\"]},\"prompt\":\"caf\\u00e9 \\u4f60\\u597d\","
		"\"prompt_logprobs\":true}",
		"{\"prompt_token_ids\":[9,8,7,6],\"candidate_token_ids\":[1,2,3],"
		"\"prompt_logprobs\":{\"start\":2},\"top_logprobs\":0}",
		"{\"id\":null,\"prompt\":\"<|im_start|>user\\nhi<|im_end|>\",\"pooling\":\"mean\","
		"\"normalize\":true}",
		"{\"prompt_token_ids\":[3,4],\"pooling\":\"last\"}",
		"{\"id\":\"bad\",\"prompt_token_ids\":[1],\"nope\":1}",
		"{\"id\":\"bad2\",\"prompt_token_ids\":[99999999]}",
		"{\"id\":[1,2],\"prompt\":\"\"}",
		"{\"id\":\"x\",\"prompt\":\"a\",\"candidates\":[\"two words\"]}",
		"not json at all",
		"[1,2,3]",
		"{\"id\":\"s\",\"prompt_token_ids\":[1],\"normalize\":true}",
	};
	char *big = malloc(BODY_MAX), *cands = malloc(BODY_MAX);
	int n = snprintf(big, BODY_MAX, "{\"id\":\"big\",\"prompt_token_ids\":[");
	for (int i = 0; i < 3000; i++)
		n += snprintf(big + n, BODY_MAX - (size_t)n, "%s%d", i ? "," : "", (i * 37) % 600);
	snprintf(big + n, BODY_MAX - (size_t)n, "],\"prompt_logprobs\":true,\"top_logprobs\":20}");
	n = snprintf(cands, BODY_MAX, "{\"prompt\":\"%s\",\"candidate_token_ids\":[",
		     "Long enough prompt, with words and \\u00e9 and \\ud83d\\ude00");
	for (int i = 0; i < 2000; i++)
		n += snprintf(cands + n, BODY_MAX - (size_t)n, "%s%d", i ? "," : "", i % 600);
	snprintf(cands + n, BODY_MAX - (size_t)n, "]}");

	int nreq = (int)(sizeof fixed / sizeof *fixed) + 2, ok = 0;
	for (int i = 0; i < nreq; i++) {
		const char *body = i < nreq - 2 ? fixed[i] : i == nreq - 2 ? big : cands;
		int want_code;
		char *want = answer_on_heap(fx, body, &want_code);
		struct answer a = { body, 0, 0 };
		counted("native request in a region", answer_in_region, fx, &a);
		CHECK(a.code == want_code && !fx->out.overflow && strcmp(fx->out.p, want) == 0,
		      "request %d: region answer (%d) %.200s\n  differs from heap answer (%d) %.200s",
		      i, a.code, fx->out.p, want_code, want);
		ok += a.code == 200;
		free(want);
	}
	CHECK(ok == 8, "%d of the requests were served (8 expected)", ok);
	printf("requests: %d answered in a region (%d served, %d refused), region peak %zu of %zu "
	       "bytes\n", nreq, ok, nreq - ok, fx->rg.peak, fx->rg.cap);
	free(big);
	free(cands);
}

/* ---- failures that must stay clean ---- */

static void json_in_region(struct fixture *fx, const void *arg)
{
	static const char doc[] = "{\"a\":[1,2.5,-3e10,true,false,null,\"s\\u00e9\\n\"],"
				  "\"b\":{\"c\":{\"d\":[[],{}]}},\"e\":\"\xe4\xbd\xa0\"}";
	int *ok = (int *)arg;
	zp_region_reset(&fx->rg);
	zp_region *prev = zp_region_enter(&fx->rg);
	cJSON *o = zp_json_parse(doc, sizeof doc - 1);
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON *made = cJSON_CreateObject();
	cJSON_AddNumberToObject(made, "x", 1.5);
	cJSON_AddStringToObject(made, "y", "z");
	*ok = o && s && made && zp_region_owns(&fx->rg, o) && zp_region_owns(&fx->rg, s) &&
	      zp_region_owns(&fx->rg, made) && cJSON_GetArraySize(cJSON_GetObjectItem(o, "a")) == 7;
	cJSON_free(s);
	cJSON_Delete(o);
	cJSON_Delete(made);
	zp_region_leave(prev);
}

static void region_full(struct fixture *fx, const void *arg)
{
	struct answer *a = (struct answer *)arg;
	zp_region small;
	static char mem[4096] __attribute__((aligned(16)));
	zp_req r;
	zp_req_error err;
	zp_region_init(&small, mem, sizeof mem);
	a->rc = zp_req_parse_in(&r, &small, a->body, strlen(a->body), &fx->lim, &err);
	a->code = err.code;
	zp_buf_reset(&fx->out);
	zp_req_write_error(r.id_json, &err, &fx->out);
	zp_req_free(&r);
	zp_region_free(&small);
}

static void buf_overflow(struct fixture *fx, const void *arg)
{
	int *ok = (int *)arg;
	static char mem[32];
	zp_buf b;
	zp_buf_init_fixed(&b, mem, sizeof mem);
	zp_buf_puts(&b, "{\"ok\":");
	size_t len = b.len;
	zp_buf_printf(&b, "\"%s\"", "a string longer than the 32 bytes of the buffer");
	zp_buf_puts(&b, "}"); /* dropped too: the text is never a cut answer */
	*ok = b.overflow && b.len == len && strcmp(b.p, "{\"ok\":") == 0;
	zp_buf_reset(&b);
	zp_buf_json_float(&b, 0.1f);
	*ok = *ok && !b.overflow && strcmp(b.p, "0.100000001") == 0;
	zp_buf_free(&b);
}

static void text_too_long(struct fixture *fx, const void *arg)
{
	int *code = (int *)arg;
	zp_tok_state *tiny = (zp_tok_state *)fx->lim.tok;
	zp_req_error err;
	int n;
	const char *t = fx->text[7]; /* 200 KB, over the 4 KB state */
	*code = zp_req_tokenize(&fx->lim, t, fx->text_len[7], fx->ids, &n, "prompt", &err) ? err.code
											    : 0;
	/* NFC more than doubles U+0958 runs: 3000 bytes in, 6000 out */
	static char expand[3001];
	for (int i = 0; i < 3000; i += 3)
		memcpy(expand + i, "\xe0\xa5\x98", 3);
	if (zp_tok_encode(tiny, expand, 3000, fx->ids, IDS_MAX) != -1)
		*code = -1;
}

/* ---- driver ---- */

static void check_tokenizer(struct fixture *fx, const char *name)
{
	int same = 0, golden = 0;
	counted("encode", encode_all, fx, fx->ts);
	for (int i = 0; i < fx->ntext; i++) {
		CHECK(fx->enc_n[i] >= 0 && (fx->enc_n[i] > 0) == (fx->text_len[i] > 0),
		      "%s text %d: %d ids", name, i, fx->enc_n[i]);
		if (fx->golden_n[i] < 0)
			continue;
		golden++;
		same += fx->enc_n[i] == fx->golden_n[i] &&
			memcmp(fx->enc_ids[i], fx->golden_ids[i],
			       (size_t)fx->golden_n[i] * sizeof(int32_t)) == 0;
	}
	CHECK(same == golden, "%s: %d of %d golden lines encode as HF does", name, same, golden);
	counted("decode", decode_all, fx, fx->tok);
	for (int i = 0; i < fx->ntext; i++)
		CHECK(fx->enc_n[i] >= 0, "%s text %d: decode %s", name, i,
		      fx->enc_n[i] == -3 ? "overflowed the buffer" : "failed");
	printf("%s: %d texts (%d golden, all identical: %s) encoded and decoded\n", name, fx->ntext,
	       golden, same == golden ? "yes" : "no");
}

static int run_tokenizer(struct fixture *fx, const char *path, const char *golden)
{
	zp_err e;
	if (!(fx->tok = zp_tok_load(path, &e))) {
		CHECK(0, "load %s: %s", path, e.msg);
		return 0;
	}
	fx->ts = zp_tok_state_new(fx->tok);
	fx->ntext = 0;
	load_corpus(fx, golden);
	check_tokenizer(fx, path);
	return 1;
}

static void free_tokenizer(struct fixture *fx)
{
	for (int i = 0; i < fx->ntext; i++) {
		free(fx->enc_ids[i]);
		if (fx->golden_n[i] >= 0) {
			free((char *)fx->text[i]);
			free(fx->golden_ids[i]);
		} else if (i >= 7) {
			free((char *)fx->text[i]); /* the repeated ones */
		}
	}
	zp_tok_state_free(fx->ts);
	zp_tok_free(fx->tok);
}

int main(void)
{
	static struct fixture fx;
	bool counting = zp_alloc_count_available();
	printf("test_alloc: %s\n", counting ? "counting allocations on the request path" :
		"malloc is the sanitizer's here: nothing counted, answers checked only");
	if (counting) { /* the counter counts: a malloc and glibc's own strdup, seen */
		zp_alloc_count_begin();
		void *(*volatile m)(size_t) = malloc;
		void *p = m(24);
		char *d = strdup("x");
		long self = zp_alloc_count_end();
		free(p);
		free(d);
		CHECK(self == 2, "the interposed malloc counted %ld of 2 allocations", self);
	}

	zp_buf_init_fixed(&fx.out, NULL, 4u << 20);
	fx.ids = malloc(IDS_MAX * sizeof *fx.ids);
	const char *qwen = getenv("ZP_QWEN_TOKENIZER");
	if (!qwen)
		qwen = "models/default/tokenizer.json";
	CHECK(access(qwen, R_OK) == 0, "the Qwen3 tokenizer.json is not at %s", qwen);
	if (run_tokenizer(&fx, qwen, "tests/golden/tok-qwen3.jsonl"))
		free_tokenizer(&fx);
	if (!run_tokenizer(&fx, "tests/data/small-tokenizer.json", "tests/golden/tok-small.jsonl"))
		return check_exit("test_alloc");
	fx.lim = (zp_req_limits){ .vocab = zp_tok_vocab_size(fx.tok), .seq_tokens_max = 4096,
				  .hidden = 64, .tok = fx.ts };
	zp_region_init(&fx.rg, NULL, zp_req_region_bytes(&fx.lim, BODY_MAX));
	requests(&fx);

	int ok = 0;
	counted("JSON through the cJSON hooks", json_in_region, &fx, &ok);
	CHECK(ok, "cJSON parsed, printed and built in the region");

	struct answer a = { "{\"id\":\"full\",\"prompt_token_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,"
			    "14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,"
			    "37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,"
			    "60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80]}", 0, 0 };
	counted("a region too small", region_full, &fx, &a);
	CHECK(a.rc == -1 && a.code == 413 && strstr(fx.out.p, "\"code\":413"),
	      "a request over its region is a 413: %s", fx.out.p);

	ok = 0;
	counted("a fixed buffer too small", buf_overflow, &fx, &ok);
	CHECK(ok, "a fixed zp_buf overflows cleanly");

	zp_tok_state *tiny = zp_tok_state_new_sized(fx.tok, 4096);
	fx.lim.tok = tiny;
	int code = 0;
	counted("text over the tokenizer's buffers", text_too_long, &fx, &code);
	CHECK(code == 413, "text over the tokenizer state's buffers is a 413 (got %d)", code);
	zp_tok_state_free(tiny);

	if (counting)
		printf("allocations counted after start-up: %ld\n", total);
	zp_region_free(&fx.rg);
	zp_buf_free(&fx.out);
	free(fx.ids);
	free_tokenizer(&fx);
	return check_exit("test_alloc");
}
