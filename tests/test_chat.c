/* test_chat.c -- the chat template renderer and the one generated token
   (model/chat.c, serve/api_chat.c, /v1/completions' max_tokens 1 in
   api_vllm.c), without a model: (1) every line of tests/golden/chat-qwen3.jsonl
   (transformers' apply_chat_template, tools/chat_golden.py) rendered to the
   same text and tokenized to the same ids, through the renderer and through
   the endpoint's build; (2) templates refused at load; (3) the endpoints'
   faults, each a 400 naming its field; (4) the token picked from made-up
   log-probs: greedy, logit_bias, seeded draws whose frequencies follow the
   tempered distribution (and, with min_p, top_k and top_p, the part of it
   vLLM's filters keep), end and stop tokens, OpenAI's response shapes.
   Runs from the repository root (models/default: the Qwen3 tokenizer and
   template). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "chat.h"
#include "check.h"
#include "tokenizer.h"

#define VOCAB 151936
#define DIR "models/default"

static zp_api api;
static zp_tok *tok;
static zp_chat chat;
static zp_region job_rg;
static zp_api_job job;
static zp_buf out;

/* ---- (1) goldens ---- */

static void msgs_of(const cJSON *ms, zp_chat_msg *m, zp_chat_call *calls, int *n)
{
	static const char *const roles[] = { "system", "user", "assistant", "tool" };
	const cJSON *it;
	int k = 0, nc = 0;
	cJSON_ArrayForEach(it, ms) {
		const char *role = cJSON_GetObjectItem(it, "role")->valuestring;
		const cJSON *rc = cJSON_GetObjectItem(it, "reasoning_content");
		const cJSON *tc = cJSON_GetObjectItem(it, "tool_calls"), *c;
		int r = 0;
		while (strcmp(roles[r], role))
			r++;
		m[k] = (zp_chat_msg){ .role = (enum zp_chat_role)r,
				      .content = cJSON_GetObjectItem(it, "content")->valuestring,
				      .reasoning = rc ? rc->valuestring : NULL, .calls = calls + nc };
		cJSON_ArrayForEach(c, tc) {
			const cJSON *f = cJSON_GetObjectItem(c, "function");
			calls[nc++] = (zp_chat_call){ cJSON_GetObjectItem(f, "name")->valuestring,
						      cJSON_GetObjectItem(f, "arguments")->valuestring };
			m[k].ncalls++;
		}
		k++;
	}
	*n = k;
}

static int build(enum zp_route ep, const char *body)
{
	zp_api_reply reply = { .body = &out };
	zp_api_job_free(&job);
	memset(&job, 0, sizeof job);
	job.rg = &job_rg;
	return zp_api_build(&api, ep, NULL, body, strlen(body), &job, &reply);
}

/* The golden's conversation as a chat request body. */
static char *chat_body(const cJSON *g)
{
	cJSON *b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "messages", cJSON_Duplicate(cJSON_GetObjectItem(g, "messages"), 1));
	cJSON_AddNumberToObject(b, "max_tokens", 1);
	cJSON_AddBoolToObject(b, "add_generation_prompt",
			      cJSON_IsTrue(cJSON_GetObjectItem(g, "add_generation_prompt")));
	cJSON_AddBoolToObject(b, "continue_final_message",
			      cJSON_IsTrue(cJSON_GetObjectItem(g, "continue_final_message")));
	const cJSON *et = cJSON_GetObjectItem(g, "enable_thinking");
	if (!cJSON_IsNull(et)) {
		cJSON *kw = cJSON_AddObjectToObject(b, "chat_template_kwargs");
		cJSON_AddBoolToObject(kw, "enable_thinking", cJSON_IsTrue(et));
	}
	char *s = cJSON_PrintUnformatted(b);
	cJSON_Delete(b);
	return s;
}

static void goldens(void)
{
	char *all = check_slurp("tests/golden/chat-qwen3.jsonl", NULL);
	int lines = 0, line = 0, conts = 0;
	CHECK(all, "tests/golden/chat-qwen3.jsonl is missing");
	if (!all)
		return;
	zp_tok_state *ts = zp_tok_state_new(tok);
	int32_t *ids = malloc(65536 * sizeof *ids);
	zp_buf text;
	zp_buf_init(&text, 256);
	for (char *s = strtok(all, "\n"); s; s = strtok(NULL, "\n")) {
		cJSON *g = cJSON_Parse(s);
		const cJSON *ms = cJSON_GetObjectItem(g, "messages");
		line++;
		if (!ms) { /* the header: who made the file */
			cJSON_Delete(g);
			continue;
		}
		zp_chat_msg m[32];
		zp_chat_call calls[32];
		int n;
		const cJSON *et = cJSON_GetObjectItem(g, "enable_thinking");
		const char *want = cJSON_GetObjectItem(g, "text")->valuestring;
		const cJSON *wid = cJSON_GetObjectItem(g, "ids"), *it;
		bool cont = cJSON_IsTrue(cJSON_GetObjectItem(g, "continue_final_message"));
		char tagged[256];
		msgs_of(ms, m, calls, &n);
		const char *final = m[n - 1].content;
		if (cont) { /* transformers' way: the tag after the final content, then a cut */
			snprintf(tagged, sizeof tagged, "%s%s", final, ZP_CHAT_CONTINUE_TAG);
			m[n - 1].content = tagged;
		}
		zp_buf_reset(&text);
		CHECK(zp_chat_render(&chat, m, n, cJSON_IsTrue(cJSON_GetObjectItem(g,
			"add_generation_prompt")), cJSON_IsNull(et) ? -1 : cJSON_IsTrue(et), &text) == 0,
		      "line %d: render failed", line);
		CHECK(!cont || zp_chat_continue_cut(&text, 0, final) == 0, "line %d: no cut", line);
		conts += cont;
		CHECK(!strcmp(text.p, want), "line %d: rendered\n%s\nwant\n%s", line, text.p, want);
		int k = zp_tok_encode(ts, text.p, text.len, ids, 65536), i = 0;
		bool same = k == cJSON_GetArraySize(wid);
		cJSON_ArrayForEach(it, wid)
			same = same && i < k && ids[i++] == (int32_t)it->valuedouble;
		CHECK(same, "line %d: token ids differ from transformers'", line);
		/* the endpoint renders and tokenizes the same conversation alike */
		char *body = chat_body(g);
		int st = build(ZP_ROUTE_CHAT, body);
		CHECK(st == 0, "line %d: chat build %d: %s", line, st, out.p);
		same = st == 0 && job.eng.nseq == 1 && job.eng.seq[0].ntok == cJSON_GetArraySize(wid);
		i = 0;
		cJSON_ArrayForEach(it, wid)
			same = same && job.eng.seq[0].tokens[i++] == (int32_t)it->valuedouble;
		CHECK(same, "line %d: the endpoint's tokens differ from transformers'", line);
		free(body);
		cJSON_Delete(g);
		lines++;
	}
	CHECK(lines >= 150 && conts >= 50, "only %d golden conversations (%d continued)", lines, conts);
	printf("goldens: %d renderings identical to transformers' (text and ids; %d continue the "
	       "final message)\n", lines, conts);
	zp_buf_free(&text);
	free(ids);
	zp_tok_state_free(ts);
	free(all);
}

/* ---- (2) templates at load ---- */

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	fputs(s, f);
	fclose(f);
}

static void loading(void)
{
	char dir[] = "/tmp/zp-chat-XXXXXX", path[256];
	zp_chat c;
	zp_err e;
	CHECK(chat.kind == ZP_CHAT_QWEN3, "models/default's template is not recognised: %s", chat.why);
	CHECK(chat.neos == 1 && chat.eos[0] == 151645, "eos: %d ids, first %d", chat.neos, chat.eos[0]);
	CHECK(zp_chat_is_special(&chat, 151643) && zp_chat_is_special(&chat, 151644) &&
	      !zp_chat_is_special(&chat, 151667), "special tokens (<think> is not one)");
	if (!mkdtemp(dir))
		return;
	CHECK(zp_chat_load(&c, dir, &e) == 0 && c.kind == ZP_CHAT_NONE && strstr(c.why, "no tokenizer_config"),
	      "no file: %s", c.why);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	write_file(path, "{\"eos_token\": \"<|im_end|>\"}");
	CHECK(zp_chat_load(&c, dir, &e) == 0 && c.kind == ZP_CHAT_NONE && strstr(c.why, "no chat_template"),
	      "no template: %s", c.why);
	/* Qwen3's template with one byte changed is another template */
	char *cfg = check_slurp(DIR "/tokenizer_config.json", NULL);
	char *at = strstr(cfg, "<|im_start|>system");
	at[1] = 'I';
	write_file(path, cfg);
	CHECK(zp_chat_load(&c, dir, &e) == 0 && c.kind == ZP_CHAT_OTHER && strstr(c.why, "not Qwen3's"),
	      "another template: %s", c.why);
	free(cfg);
	write_file(path, "{\"chat_template\": ");
	CHECK(zp_chat_load(&c, dir, &e) == -1 && strstr(e.msg, "not a JSON object"), "bad JSON: %s", e.msg);
	/* generation_config.json's eos ids are end tokens too */
	write_file(path, "{\"eos_token\": \"<|im_end|>\", \"added_tokens_decoder\": {\"7\": {\"content\": "
		   "\"<|im_end|>\", \"special\": true}}}");
	snprintf(path, sizeof path, "%s/generation_config.json", dir);
	write_file(path, "{\"eos_token_id\": [7, 9]}");
	CHECK(zp_chat_load(&c, dir, &e) == 0 && c.neos == 2 && zp_chat_is_eos(&c, 7) &&
	      zp_chat_is_eos(&c, 9) && zp_chat_is_special(&c, 7), "eos ids: %d", c.neos);
	unlink(path);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	unlink(path);
	rmdir(dir);
}

/* ---- (3) faults ---- */

static void expect_400(enum zp_route ep, const char *body, const char *param, const char *says)
{
	int st = build(ep, body);
	cJSON *r = cJSON_Parse(out.p);
	const cJSON *e = cJSON_GetObjectItem(r, "error");
	const cJSON *p = cJSON_GetObjectItem(e, "param"), *m = cJSON_GetObjectItem(e, "message");
	CHECK(st == 400, "%s: status %d, want 400", body, st);
	CHECK(cJSON_IsString(p) && !strcmp(p->valuestring, param), "%s: param %s, want %s", body,
	      cJSON_IsString(p) ? p->valuestring : "null", param);
	CHECK(cJSON_IsString(m) && strstr(m->valuestring, says), "%s: message %s, want \"%s\" in it",
	      body, cJSON_IsString(m) ? m->valuestring : "-", says);
	cJSON_Delete(r);
}

#define U "{\"role\":\"user\",\"content\":\"hi\"}"
#define CHAT(extra) "{\"messages\":[" U "],\"max_tokens\":1" extra "}"

static void faults(void)
{
	static const struct { const char *body, *param, *says; } chat_cases[] = {
		{ "{\"messages\":[],\"max_tokens\":1}", "messages", "1 to" },
		{ "{\"max_tokens\":1}", "messages", "1 to" },
		{ "{\"messages\":\"hi\",\"max_tokens\":1}", "messages", "list" },
		{ "{\"messages\":[\"hi\"],\"max_tokens\":1}", "messages", "must be an object" },
		{ "{\"messages\":[{\"content\":\"hi\"}],\"max_tokens\":1}", "messages", "role must be" },
		{ "{\"messages\":[{\"role\":\"bot\",\"content\":\"hi\"}],\"max_tokens\":1}", "messages", "not served" },
		{ "{\"messages\":[{\"role\":\"developer\",\"content\":\"hi\"}],\"max_tokens\":1}", "messages", "as system" },
		{ "{\"messages\":[{\"role\":7,\"content\":\"hi\"}],\"max_tokens\":1}", "messages", "role must be" },
		{ "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1}", "messages", "content must be" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":5}],\"max_tokens\":1}", "messages", "content must be" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}],\"max_tokens\":1}",
		  "messages", "text" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[]}],\"max_tokens\":1}",
		  "messages", "assistant" },
		{ "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{\"function\":"
		  "{\"name\":\"f\",\"arguments\":{}}}]}],\"max_tokens\":1}", "messages", "JSON text as a string" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"reasoning_content\":\"b\"}],"
		  "\"max_tokens\":1}", "messages", "reasoning_content" },
		{ "{\"messages\":[" U "]}", "max_tokens", "reads one token" },
		{ "{\"messages\":[" U "],\"max_tokens\":2}", "max_tokens", "reads one token" },
		{ "{\"messages\":[" U "],\"max_tokens\":0}", "max_tokens", "reads one token" },
		{ "{\"messages\":[" U "],\"max_completion_tokens\":16}", "max_completion_tokens", "reads one token" },
		{ "{\"messages\":[" U "],\"max_tokens\":\"1\"}", "max_tokens", "reads one token" },
		{ CHAT(",\"stream\":true"), "stream", "not served" },
		{ CHAT(",\"stream\":1"), "stream", "true or false" },
		{ CHAT(",\"n\":2"), "n", "must be 1" },
		{ CHAT(",\"tools\":[{\"type\":\"function\"}]"), "tools", "not served" },
		{ CHAT(",\"response_format\":{\"type\":\"json_object\"}"), "response_format", "text" },
		{ CHAT(",\"chat_template\":\"{{x}}\""), "chat_template", "not served" },
		{ CHAT(",\"logprobs\":\"yes\""), "logprobs", "true or false" },
		{ CHAT(",\"top_logprobs\":3"), "top_logprobs", "needs logprobs" },
		{ CHAT(",\"logprobs\":true,\"top_logprobs\":21"), "top_logprobs", "[0, 20]" },
		{ CHAT(",\"temperature\":3"), "temperature", "[0, 2]" },
		{ CHAT(",\"temperature\":\"hot\""), "temperature", "a number" },
		{ CHAT(",\"temperature\":1,\"top_p\":0"), "top_p", "(0, 1]" },
		{ CHAT(",\"temperature\":1,\"top_p\":1.5"), "top_p", "[0, 1]" },
		{ CHAT(",\"temperature\":1,\"top_k\":-2"), "top_k", "[-1, 151936]" },
		{ CHAT(",\"temperature\":1,\"top_k\":2.5"), "top_k", "integer" },
		{ CHAT(",\"temperature\":1,\"min_p\":2"), "min_p", "[0, 1]" },
		{ CHAT(",\"repetition_penalty\":1.2"), "repetition_penalty", "not served" },
		{ CHAT(",\"seed\":1.5"), "seed", "integer" },
		{ CHAT(",\"logit_bias\":[1]"), "logit_bias", "object" },
		{ CHAT(",\"logit_bias\":{\"x\":1}"), "logit_bias", "token id" },
		{ CHAT(",\"logit_bias\":{\"151936\":1}"), "logit_bias", "token id" },
		{ CHAT(",\"logit_bias\":{\"-1\":1}"), "logit_bias", "token id" },
		{ CHAT(",\"logit_bias\":{\"5\":101}"), "logit_bias", "[-100, 100]" },
		{ CHAT(",\"logit_bias\":{\"5\":\"1\"}"), "logit_bias", "[-100, 100]" },
		{ CHAT(",\"logit_bias\":{\"5\":1,\"05\":2}"), "logit_bias", "twice" },
		{ CHAT(",\"stop\":5"), "stop", "string" },
		{ CHAT(",\"stop_token_ids\":[-1]"), "stop_token_ids", "token ids" },
		{ CHAT(",\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}"), "chat_template_kwargs", "true or false" },
		{ CHAT(",\"chat_template_kwargs\":[]"), "chat_template_kwargs", "object" },
		{ CHAT(",\"add_generation_prompt\":1"), "add_generation_prompt", "true or false" },
		{ CHAT(",\"echo\":true"), "echo", "not served" },
		{ CHAT(",\"continue_final_message\":true"), "continue_final_message", "add_generation_prompt false" },
		{ "{\"messages\":[" U ",{\"role\":\"assistant\",\"content\":\"a </think> b </think>\\nc\"}],"
		  "\"max_tokens\":1,\"continue_final_message\":true,\"add_generation_prompt\":false}",
		  "continue_final_message", "does not appear" },
	};
	for (size_t i = 0; i < sizeof chat_cases / sizeof *chat_cases; i++)
		expect_400(ZP_ROUTE_CHAT, chat_cases[i].body, chat_cases[i].param, chat_cases[i].says);
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":2}", "max_tokens", "reads one token");
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens", "echo true");
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\"}", "max_tokens", "reads one token");
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1,\"temperature\":1,\"min_p\":-0.1}",
		   "min_p", "[0, 1]");
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1,\"logit_bias\":{\"1\":-200}}",
		   "logit_bias", "[-100, 100]");
	expect_400(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1,\"best_of\":2}", "best_of", "be 1");
	/* what one token ignores rightly is accepted */
	CHECK(build(ZP_ROUTE_CHAT, CHAT(",\"temperature\":0,\"top_p\":0.5,\"top_k\":3,\"presence_penalty\":1,"
					"\"tool_choice\":\"none\",\"tools\":[],\"stream\":false,"
					"\"response_format\":{\"type\":\"text\"}")) == 0, "%s", out.p);
	CHECK(build(ZP_ROUTE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
			"\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\","
			"\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}],"
			"\"max_completion_tokens\":1,\"add_generation_prompt\":false}") == 0, "%s", out.p);
	CHECK(build(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1}") == 0, "%s", out.p);
	CHECK(build(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":0,\"echo\":true}") == 0, "%s", out.p);
	/* a model whose template is not rendered says why */
	zp_chat other = { .kind = ZP_CHAT_OTHER };
	snprintf(other.why, sizeof other.why, "the reason");
	api.chat = &other;
	expect_400(ZP_ROUTE_CHAT, CHAT(""), "messages", "not served for this model: the reason");
	api.chat = &chat;
}

/* ---- (4) the token ---- */

/* Made-up results for the built job: at the last position, token i's
   log-prob is lp[i] for i < n and -50 for every other; the top k follow. */
static cJSON *finish_with(const float *lp, int n)
{
	zp_req *r = &job.eng.seq[0];
	if (r->want_cands)
		for (int i = 0; i < r->ncand; i++)
			r->cand_lp[i] = i < n ? lp[i] : -50.0f;
	for (int t = 0; t < r->top_k; t++) { /* lp[] is given sorted, descending */
		r->top_ids[t] = t;
		r->top_lp[t] = t < n ? lp[t] : -50.0f;
	}
	job.eng.done = job.eng.dispatched = job.eng.nseq;
	int st = zp_api_finish(&api, &job, &out);
	CHECK(st == 200, "finish: %d %s", st, out.p);
	return cJSON_Parse(out.p);
}

static const cJSON *path(const cJSON *o, const char *p)
{
	char key[32];
	while (o && *p) {
		size_t n = strcspn(p, ".");
		snprintf(key, sizeof key, "%.*s", (int)n, p);
		o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(key)) : cJSON_GetObjectItem(o, key);
		p += n + (p[n] == '.');
	}
	return o;
}

/* The token chat answers for body, given lp. */
static int chat_token(const char *body, const float *lp, int n, cJSON **resp)
{
	int st = build(ZP_ROUTE_CHAT, body);
	CHECK(st == 0, "%s: %d %s", body, st, out.p);
	if (st)
		return -1;
	cJSON *r = finish_with(lp, n);
	const cJSON *c = path(r, "choices.0.message.content");
	int id = -1;
	for (int i = 0; c && i < 8; i++) { /* which of the first tokens has that text */
		size_t len;
		const char *p = zp_tok_piece(tok, i, &len);
		if (strlen(c->valuestring) == len && !memcmp(p, c->valuestring, len))
			id = i;
	}
	if (resp)
		*resp = r;
	else
		cJSON_Delete(r);
	return id;
}

static void token(void)
{
	const float lp[4] = { logf(0.5f), logf(0.3f), logf(0.2f), -40.0f }; /* tokens !, ", #, $ */
	cJSON *r;
	/* greedy, with OpenAI's shapes */
	CHECK(chat_token(CHAT(",\"logprobs\":true,\"top_logprobs\":2"), lp, 4, &r) == 0, "greedy");
	CHECK(!strcmp(path(r, "object")->valuestring, "chat.completion") &&
	      !strcmp(path(r, "choices.0.message.role")->valuestring, "assistant") &&
	      !strcmp(path(r, "choices.0.finish_reason")->valuestring, "length") &&
	      path(r, "usage.completion_tokens")->valueint == 1 &&
	      path(r, "usage.total_tokens")->valueint == path(r, "usage.prompt_tokens")->valueint + 1,
	      "chat shape: %s", out.p);
	const cJSON *e = path(r, "choices.0.logprobs.content.0");
	CHECK(e && !strcmp(path(e, "token")->valuestring, "!") &&
	      fabs(path(e, "logprob")->valuedouble - lp[0]) < 1e-6 &&
	      cJSON_GetArraySize(path(e, "bytes")) == 1 && path(e, "bytes.0")->valueint == '!' &&
	      cJSON_GetArraySize(path(e, "top_logprobs")) == 2 &&
	      !strcmp(path(e, "top_logprobs.1.token")->valuestring, "\"") &&
	      fabs(path(e, "top_logprobs.1.logprob")->valuedouble - lp[1]) < 1e-6,
	      "chat logprobs: %s", out.p);
	cJSON_Delete(r);
	CHECK(chat_token(CHAT(""), lp, 4, &r) == 0 && cJSON_IsNull(path(r, "choices.0.logprobs")),
	      "logprobs off: null");
	cJSON_Delete(r);
	/* logit_bias moves the greedy token; the logprob stays the model's */
	CHECK(chat_token(CHAT(",\"logit_bias\":{\"2\":1.0},\"logprobs\":true"), lp, 4, &r) == 2,
	      "bias +1 on token 2 (log 0.2 + 1 > log 0.5)");
	CHECK(fabs(path(r, "choices.0.logprobs.content.0.logprob")->valuedouble - lp[2]) < 1e-6,
	      "the biased token's logprob is the model's: %s", out.p);
	cJSON_Delete(r);
	CHECK(chat_token(CHAT(",\"logit_bias\":{\"2\":0.5}"), lp, 4, NULL) == 0, "bias +0.5: not enough");
	CHECK(chat_token(CHAT(",\"logit_bias\":{\"0\":-100}"), lp, 4, NULL) == 1, "bias -100 bans");
	/* draws: the same seed, the same token; frequencies follow p^(1/T) */
	char body[256];
	for (int t = 0; t < 2; t++) {
		double T = t ? 0.5 : 1.0, w[3], s = 0;
		int cnt[4] = { 0 }, N = 2000;
		for (int i = 0; i < 3; i++)
			s += w[i] = pow(exp(lp[i]), 1 / T);
		for (int k = 0; k < N; k++) {
			snprintf(body, sizeof body, CHAT(",\"temperature\":%g,\"seed\":%d"), T, k);
			int id = chat_token(body, lp, 4, NULL);
			cnt[id < 0 || id > 3 ? 3 : id]++;
		}
		for (int i = 0; i < 3; i++) {
			double p = w[i] / s, sd = sqrt(N * p * (1 - p));
			CHECK(fabs(cnt[i] - N * p) < 5 * sd, "T=%g token %d drawn %d of %d, expected %.0f",
			      T, i, cnt[i], N, N * p);
		}
		CHECK(cnt[3] == 0, "T=%g: %d draws of tokens of weight e^-40", T, cnt[3]);
		printf("T=%g: %d/%d/%d draws of 2000 (p %.3f/%.3f/%.3f)\n", T, cnt[0], cnt[1], cnt[2],
		       w[0] / s, w[1] / s, w[2] / s);
	}
	snprintf(body, sizeof body, CHAT(",\"temperature\":1,\"seed\":42"));
	int a = chat_token(body, lp, 4, NULL), b = chat_token(body, lp, 4, NULL);
	CHECK(a == b && a >= 0, "seed 42 twice: %d then %d", a, b);
	/* the end token: "stop", no text; a stop token id; a stop string */
	const float eos_lp[1] = { 0 };
	float big[151646];
	for (int i = 0; i < 151646; i++)
		big[i] = i == 151645 ? -0.01f : -50.0f;
	CHECK(build(ZP_ROUTE_CHAT, CHAT(",\"logit_bias\":{\"151645\":1}")) == 0, "%s", out.p);
	r = finish_with(big, 151646);
	CHECK(!strcmp(path(r, "choices.0.finish_reason")->valuestring, "stop") &&
	      !strcmp(path(r, "choices.0.message.content")->valuestring, ""),
	      "<|im_end|>: stop, no text: %s", out.p);
	cJSON_Delete(r);
	CHECK(chat_token(CHAT(",\"stop_token_ids\":[0]"), eos_lp, 1, &r) == -1 &&
	      !strcmp(path(r, "choices.0.finish_reason")->valuestring, "stop") &&
	      path(r, "choices.0.stop_reason")->valueint == 0, "stop_token_ids: %s", out.p);
	cJSON_Delete(r);
	CHECK(chat_token(CHAT(",\"stop\":[\"x\",\"!\"]"), eos_lp, 1, &r) == -1 &&
	      !strcmp(path(r, "choices.0.stop_reason")->valuestring, "!"), "stop string: %s", out.p);
	cJSON_Delete(r);
	/* completions: the legacy logprobs of the generated token, echo or not */
	CHECK(build(ZP_ROUTE_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1,\"logprobs\":2}") == 0, "%s", out.p);
	r = finish_with(lp, 4);
	CHECK(!strcmp(path(r, "choices.0.text")->valuestring, "!") &&
	      !strcmp(path(r, "choices.0.logprobs.tokens.0")->valuestring, "!") &&
	      fabs(path(r, "choices.0.logprobs.token_logprobs.0")->valuedouble - lp[0]) < 1e-6 &&
	      path(r, "choices.0.logprobs.text_offset.0")->valueint == 0 &&
	      cJSON_GetArraySize(path(r, "choices.0.logprobs.top_logprobs.0")) == 2 &&
	      path(r, "usage.completion_tokens")->valueint == 1, "completions: %s", out.p);
	cJSON_Delete(r);
}

/* min_p, top_k, top_p with temperature > 0: seeded draws whose frequencies
   follow the tempered distribution over the tokens vLLM's filters keep, in
   vLLM's order (temperature, min_p, top_k, top_p on what top_k kept), and
   never a token they drop. */
static void filters(void)
{
	/* tokens !, ", #, $, %, & */
	const double p[6] = { 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 };
	float lp[6];
	for (int i = 0; i < 6; i++)
		lp[i] = logf((float)p[i]);
	static const struct {
		const char *knobs;
		double T;
		int keep; /* tokens 0 .. keep-1 are kept */
		const char *why;
	} cases[] = {
		{ "\"top_k\":2", 1, 2, "top_k 2" },
		{ "\"top_k\":-1", 1, 6, "top_k -1: off" },
		/* ascending sums 0.04, 0.10, 0.20, 0.35: <= 0.3 masked */
		{ "\"top_p\":0.7", 1, 3, "top_p 0.7" },
		{ "\"top_p\":0.01", 1, 1, "top_p 0.01: the top token always stays" },
		{ "\"min_p\":0.2", 1, 4, "min_p 0.2 (p >= 0.08)" },
		/* at T 0.5 the weights are p^2: min_p 0.1 of 0.16 keeps 0.0225 and
		   drops 0.01 (before the temperature it would keep all six) */
		{ "\"min_p\":0.1", 0.5, 3, "min_p after the temperature" },
		/* top_p over what top_k kept, renormalised: 0.25/0.65 = 0.385 <= 0.4
		   masked (top_p first would keep two) */
		{ "\"top_k\":2,\"top_p\":0.6", 1, 1, "top_p after top_k" },
		/* min_p 0.3 keeps three (>= 0.12), top_k 5 keeps them, top_p 0.75
		   over 0.4/0.25/0.15 of 0.8: ascending 0.1875 <= 0.25 masked */
		{ "\"min_p\":0.3,\"top_k\":5,\"top_p\":0.75", 1, 2, "all three" },
	};
	char body[256];
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		double T = cases[c].T, w[6], s = 0;
		int cnt[7] = { 0 }, N = 1000, keep = cases[c].keep;
		for (int i = 0; i < keep; i++)
			s += w[i] = pow(p[i], 1 / T);
		for (int k = 0; k < N; k++) {
			snprintf(body, sizeof body, CHAT(",\"temperature\":%g,\"seed\":%d,%s"), T, k,
				 cases[c].knobs);
			int id = chat_token(body, lp, 6, NULL);
			cnt[id < 0 || id > 5 ? 6 : id]++;
		}
		for (int i = 0; i < keep; i++) {
			double q = w[i] / s, sd = sqrt(N * q * (1 - q));
			CHECK(fabs(cnt[i] - N * q) <= 5 * sd, "%s: token %d drawn %d of %d, expected %.0f",
			      cases[c].why, i, cnt[i], N, N * q);
		}
		for (int i = keep; i < 7; i++)
			CHECK(cnt[i] == 0, "%s: token %d (dropped) drawn %d times", cases[c].why, i, cnt[i]);
		printf("%-28s %d/%d/%d/%d/%d/%d of %d\n", cases[c].why, cnt[0], cnt[1], cnt[2], cnt[3],
		       cnt[4], cnt[5], N);
	}
	/* greedy ignores them, as vLLM's greedy path */
	CHECK(chat_token(CHAT(",\"temperature\":0,\"top_k\":3,\"top_p\":0.1,\"min_p\":0.9"), lp, 6,
			 NULL) == 0, "greedy with filters: the top token");
}

int main(void)
{
	zp_err e;
	static const zp_rerank_cfg rr = { "<|im_start|>system\n", "<|im_end|>\n", "judge", "yes", "no" };
	if (access(DIR "/tokenizer.json", R_OK)) {
		printf("no %s/tokenizer.json\n", DIR);
		return 77;
	}
	if (!(tok = zp_tok_load(DIR "/tokenizer.json", &e)) || zp_chat_load(&chat, DIR, &e)) {
		fprintf(stderr, "load: %s\n", e.msg);
		return 1;
	}
	zp_req_limits lim = { .vocab = VOCAB, .seq_tokens_max = 4096, .hidden = 8 };
	zp_api_init(&api, tok, &lim, 1 << 20, "default", &rr, &chat);
	zp_region_init(&job_rg, NULL, zp_api_job_bytes(&api, 1 << 16));
	zp_buf_init_fixed(&out, NULL, zp_api_response_bytes(&api));
	loading();
	goldens();
	faults();
	token();
	filters();
	zp_api_job_free(&job);
	zp_region_free(&job_rg);
	zp_api_free(&api);
	zp_tok_free(tok);
	return check_exit("test_chat");
}
