/* gen_man.c -- writes the man page zprefill(1) (roff) to stdout at build time.
   The flags and ini keys come from the one key table (serve_config.c) and the
   endpoints from the router's table, so the page lists exactly what the
   binary takes; the prose around them is here. `make` writes
   build/zprefill.1; `man -l build/zprefill.1` renders it. */
#include <stdio.h>
#include <string.h>

#include "router.h"
#include "serve.h"

/* s with roff's specials escaped: backslash, a leading dot or quote, and
   hyphens (so they stay ASCII hyphens in UTF-8 output). */
static void roff(const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", stdout);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", stdout);
		else if (*s == '-')
			fputs("\\-", stdout);
		else if (*s == '\n')
			fputs("\\n", stdout);
		else
			putchar(*s);
	}
}

static const char *cmd_name(unsigned cmd)
{
	return cmd == ZP_CMD_SERVE ? "serve" : cmd == ZP_CMD_PREFILL ? "prefill" : "bench";
}

static void flags_of(const zp_opt_table *t, unsigned cmd)
{
	char def[96];
	printf(".SS Flags of zprefill %s\n", cmd_name(cmd));
	printf(".TP\n.BI \\-\\-config \" FILE\"\nan ini file (below); flags override its keys\n");
	for (size_t i = 0; i < t->n; i++) {
		const zp_opt *k = &t->keys[i];
		if (!k->flag || !(k->cmds & cmd))
			continue;
		zp_opt_spell_default(k, def, sizeof def);
		printf(".TP\n.BR \\-\\-");
		roff(k->flag);
		printf(" \" VALUE\"\n");
		roff(k->help);
		if (k->required & cmd)
			printf(" (required)");
		else if (!strchr(def, '\n')) {
			printf(" (default ");
			roff(def);
			printf(")");
		}
		printf("; ini \\fB[%s] %s\\fR\n", k->section, k->name);
	}
}

static void ini_keys(const zp_opt_table *t)
{
	const char *section = NULL;
	char def[96];
	for (size_t i = 0; i < t->n; i++) {
		const zp_opt *k = &t->keys[i];
		if (!section || strcmp(section, k->section)) {
			section = k->section;
			printf(".SS [%s]\n", section);
		}
		zp_opt_spell_default(k, def, sizeof def);
		printf(".TP\n.B ");
		roff(k->name);
		printf("\n");
		roff(k->help);
		if (!strchr(def, '\n') && strlen(def) < 60) {
			printf(" (default ");
			roff(def);
			printf(")");
		} else {
			printf(" (default: see the example file)");
		}
		if (k->flag) {
			printf("; flag \\fB\\-\\-");
			roff(k->flag);
			printf("\\fR");
		}
		printf("\n");
	}
}

static void endpoints(void)
{
	static const char *const method[] = { "GET", "POST", "HEAD", "?" };
	size_t n;
	const zp_route_entry *r = zp_route_rows(&n);
	for (size_t i = 0; i < n; i++) {
		printf(".TP\n.B %s ", method[r[i].method]);
		roff(r[i].path);
		printf("\n%s%s%s\n", r[i].name,
		       r[i].flags & ZP_ROUTE_NEEDS_MODEL ? ": runs a prefill (503 while loading)" : "",
		       r[i].flags & ZP_ROUTE_SCRAPE ? "; also on the metrics port" : "");
	}
}

int main(void)
{
	const zp_opt_table *t = zp_serve_cfg_table();
	fputs(".TH ZPREFILL 1 \"\" \"zprefill\" \"User Commands\"\n"
	      ".SH NAME\n"
	      "zprefill \\- prefill\\-only serving engine for mixture\\-of\\-experts LLMs\n"
	      ".SH SYNOPSIS\n"
	      ".B zprefill serve\n.B \\-\\-model\n.I DIR\n[\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fIFLAG VALUE\\fR]...\n.br\n"
	      ".B zprefill prefill\n.B \\-\\-model\n.I DIR\n[\\fIFLAG VALUE\\fR]... < \\fIrequests.jsonl\\fR\n.br\n"
	      ".B zprefill bench\n.B \\-\\-model\n.I DIR\n.B \\-\\-tokens\n.I L\n.B \\-\\-seqs\n.I B\n[\\fIFLAG VALUE\\fR]...\n.br\n"
	      ".B zprefill tokenize\n.B \\-\\-tokenizer\n.I FILE\n< \\fItexts.jsonl\\fR\n.br\n"
	      ".B zprefill classify\\fR|\\fBscore\\fR|\\fBembed\\fR|\\fBhealth\n.B \\-\\-socket\n.I PATH\n\\&...\n"
	      ".SH DESCRIPTION\n"
	      "zprefill serves Qwen3\\-MoE checkpoints (Hugging Face layout: config.json, safetensors,\n"
	      "tokenizer.json) for jobs whose answer is read from one prefill pass: classification,\n"
	      "verification, reranking, scoring and embeddings. It speaks HTTP/1.1 + JSON on a Unix\n"
	      "socket. Experts are spread over executors with AsyncEP: each holds part of every MoE\n"
	      "layer and gathers the rest of the next layer while it computes the current one.\n"
	      ".SH COMMANDS\n"
	      ".TP\n.B serve\nThe daemon: loads the model, answers on its socket until SIGTERM or SIGINT,\n"
	      "then finishes the admitted requests. Under systemd it takes its socket from socket\n"
	      "activation (LISTEN_FDS) and reports READY=1, STATUS=, STOPPING=1 and watchdog pings\n"
	      "(NOTIFY_SOCKET, WATCHDOG_USEC); see zprefill.socket and zprefill.service.\n"
	      ".TP\n.B prefill\nOffline: one JSON request per line on standard input, one result per line\n"
	      "on standard output, through the same scheduler and engine as the server.\n"
	      ".TP\n.B bench\nTimes forwards of B random sequences of L tokens on every executor.\n"
	      ".TP\n.B tokenize\nEncodes {\"text\": ...} lines with a tokenizer.json into {\"ids\": [...]}.\n"
	      ".TP\n.B classify\\fR, \\fBscore\\fR, \\fBembed\\fR, \\fBhealth\n"
	      "A client of a running server on \\fB\\-\\-socket\\fR \\fIPATH\\fR: classify TEXT... with\n"
	      "\\fB\\-\\-labels\\fR A,B; score ITEM... against \\fB\\-\\-query\\fR TEXT with\n"
	      "\\fB\\-\\-label\\-ids\\fR ID,... [\\fB\\-\\-softmax\\fR]; embed TEXT...; health.\n"
	      ".SH OPTIONS\n"
	      "Every command prints its flags with \\fB\\-\\-help\\fR. Each flag sets the ini key named\n"
	      "with it; the flag wins over the file.\n", stdout);
	flags_of(t, ZP_CMD_SERVE);
	flags_of(t, ZP_CMD_PREFILL);
	flags_of(t, ZP_CMD_BENCH);
	fputs(".SH CONFIGURATION FILE\n"
	      "An ini file given with \\fB\\-\\-config\\fR, read strictly: an unknown section or key, a\n"
	      "key given twice or a bad value stops the start with the line named. The installed\n"
	      "example (share/doc/zprefill/zprefill.ini) lists every key with its default.\n", stdout);
	ini_keys(t);
	fputs(".SH ENDPOINTS\n"
	      "HTTP/1.1 with keep\\-alive and pipelining; JSON bodies in UTF\\-8 (an invalid escape,\n"
	      "a key given twice or a \\eu0000 outside a text field is a 400 naming the field). Errors\n"
	      "come in the shape of the family the endpoint belongs to, with the HTTP status:\n"
	      ".TP\n.B OpenAI and native\n"
	      "/v1/embeddings, /v1/completions, /v1/prefill: {\"error\": {\"message\", \"type\",\n"
	      "\"param\", \"code\"}}, type invalid_request_error, not_found_error, ...\n"
	      ".TP\n.B vLLM and SGLang\n"
	      "/v1/score, /score, /classify, /v1/rerank, /rerank with documents, /v2/rerank, /pooling,\n"
	      "/tokenize with prompt, /detokenize, /invocations: the same object, with vLLM's type\n"
	      "names (BadRequestError, NotFoundError, InternalServerError).\n"
	      ".TP\n.B TEI\n"
	      "/embed, /rerank with texts, /tokenize with inputs, /decode: {\"error\": message, \"error_type\":\n"
	      "Validation, Empty, Overloaded or Backend} (an input fault is a 422, an empty batch a 400).\n"
	      ".TP\n.B zprefill prefill\n"
	      "A bad line's output line is {\"id\", \"error\": {\"message\", \"type\", \"param\", \"code\"}}.\n"
	      ".PP\nThe endpoints:\n", stdout);
	endpoints();
	fputs(".SS One generated token: chat and completions\n"
	      "The commonest way to classify with an LLM is OpenAI's chat or completions call with\n"
	      "\\fBmax_tokens\\fR 1: the token is read at the prompt's last position, with its\n"
	      "alternatives.\n"
	      ".TP\n.B POST /v1/chat/completions\n"
	      "\\fBmessages\\fR (roles system, user, assistant with \\fBtool_calls\\fR and\n"
	      "\\fBreasoning_content\\fR, tool; content a string or text parts) rendered by the\n"
	      "checkpoint's chat template exactly as transformers' apply_chat_template does:\n"
	      "Qwen3's template is rendered by hand; any other is refused at load (logged) and this\n"
	      "endpoint answers 400 saying why. \\fBadd_generation_prompt\\fR (default true), or\n"
	      "\\fBcontinue_final_message\\fR true with it false (the last message continued), and\n"
	      "\\fBchat_template_kwargs\\fR {\"enable_thinking\": bool}. \\fBmax_tokens\\fR (or\n"
	      "\\fBmax_completion_tokens\\fR) must be 1. Answer: choices[0].message, and with\n"
	      "\\fBlogprobs\\fR true choices[0].logprobs.content [{token, logprob, bytes,\n"
	      "top_logprobs}] (\\fBtop_logprobs\\fR 0 to 20); usage.\n"
	      ".TP\n.B POST /v1/completions\n"
	      "\\fBmax_tokens\\fR 1 (the token, after the prompt when \\fBecho\\fR), or 0 with\n"
	      "\\fBecho\\fR true (the prompt's log\\-probs only); \\fBlogprobs\\fR k gives the legacy\n"
	      "object {text_offset, token_logprobs, tokens, top_logprobs}.\n"
	      ".PP\n"
	      "Both: greedy unless \\fBtemperature\\fR > 0 (at most 2), which draws from the model's\n"
	      "whole distribution with \\fBseed\\fR (the same seed, the same token);\n"
	      "\\fBlogit_bias\\fR {\"id\": \\-100..100} is added before the choice; reported\n"
	      "log\\-probs are the model's, before bias and temperature. \\fBstop\\fR,\n"
	      "\\fBstop_token_ids\\fR and the end token give finish_reason \"stop\".\n"
	      "\\fBmin_p\\fR, \\fBtop_k\\fR and \\fBtop_p\\fR (with \\fBtemperature\\fR > 0) are\n"
	      "applied in vLLM's order: the bias, the temperature, min_p, top_k, then top_p over what\n"
	      "top_k kept. A \\fBmax_tokens\\fR over 1, \\fBn\\fR over 1, \\fBstream\\fR true and\n"
	      "tools are 400s naming the field.\n",
	      stdout);
	fputs(".SH SIGNALS\n"
	      ".TP\n.BR SIGTERM \", \" SIGINT\nStop accepting, finish every admitted request, exit 0.\n"
	      ".SH EXIT STATUS\n"
	      ".TP\n.B 0\nSuccess (serve: stopped by a signal after finishing its requests).\n"
	      ".TP\n.B 1\nA run\\-time failure: the model did not load, the socket could not be made or\n"
	      "passed, a request line failed (prefill), the server could not be reached (clients).\n"
	      ".TP\n.B 2\nA usage error: an unknown flag or key, a bad value, a missing required one.\n"
	      ".SH ENVIRONMENT\n"
	      ".TP\n.BR LISTEN_FDS \", \" LISTEN_PID\nSocket activation: serve on the one listening Unix\n"
	      "stream socket passed as descriptor 3; the socket file is systemd's and is never removed.\n"
	      ".TP\n.B NOTIFY_SOCKET\nWhere READY=1, STATUS= (loading progress), STOPPING=1 go.\n"
	      ".TP\n.BR WATCHDOG_USEC \", \" WATCHDOG_PID\nPing WATCHDOG=1 every half period while every\n"
	      "executor makes progress; a wedged executor stops the pings and systemd restarts the service.\n"
	      ".SH FILES\n"
	      ".TP\n.I /run/zprefill/zprefill.sock\nThe socket of the installed units.\n"
	      ".TP\n.I lib/systemd/system/zprefill.socket\\fR, \\fIzprefill.service\nThe units (under PREFIX).\n"
	      ".SH SEE ALSO\n"
	      ".BR systemd.socket (5),\n.BR systemd.service (5),\n.BR sd_notify (3)\n", stdout);
	return 0;
}
