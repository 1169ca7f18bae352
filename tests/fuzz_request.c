/* fuzz_request.c -- libFuzzer target for the request path: the first byte picks
   an endpoint (every request family: native, SGLang/vLLM score, classify,
   rerank, embeddings, pooling, tokenize, detokenize, vLLM completions and
   chat, TEI embed and decode, Cohere's /v2/rerank, /invocations), the rest is its JSON body -> zp_api_build (strict UTF-8, cJSON,
   field validation, tokenizing text) -> sequences -> zp_api_finish (with
   made-up results) or the error body. Every built sequence must satisfy the
   limits the forward pass asserts on. Runs from the repository root (it reads
   tests/data/small-tokenizer.json). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* every route with a JSON body (byte 0 modulo their count; the seeds'
   first bytes name them) */
static const enum zp_route eps[] = { ZP_ROUTE_PREFILL, ZP_ROUTE_SCORE, ZP_ROUTE_CLASSIFY,
				     ZP_ROUTE_RERANK, ZP_ROUTE_EMBED, ZP_ROUTE_POOLING,
				     ZP_ROUTE_TOKENIZE, ZP_ROUTE_DETOKENIZE, ZP_ROUTE_COMPLETIONS,
				     ZP_ROUTE_CHAT, ZP_ROUTE_TEI_EMBED, ZP_ROUTE_RERANK_V2,
				     ZP_ROUTE_TEI_DECODE, ZP_ROUTE_INVOCATIONS };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static zp_api api;
	static zp_tok *tok;
	static zp_region job_rg;
	static const zp_rerank_cfg rr = { "<|im_start|>system\n", "<|im_end|>\n", "judge", "yes", "no" };
	static const zp_chat chat = { .kind = ZP_CHAT_QWEN3 }; /* rendering reads no more */
	if (!tok) {
		zp_err e;
		zp_req_limits lim = { .vocab = 640, .seq_tokens_max = 64, .hidden = 8 };
		if (!(tok = zp_tok_load("tests/data/small-tokenizer.json", &e)))
			abort();
		zp_api_init(&api, tok, &lim, 1 << 16, "m", &rr, &chat);
		zp_region_init(&job_rg, NULL, zp_api_job_bytes(&api, 1 << 16));
	}
	if (size < 1)
		return 0;
	enum zp_route ep = eps[data[0] % (sizeof eps / sizeof *eps)];
	zp_api_job job;
	zp_buf out;
	memset(&job, 0, sizeof job);
	job.rg = &job_rg;
	zp_buf_init(&out, 256);
	zp_api_reply reply = { .body = &out };
	int st = zp_api_build(&api, ep, NULL, (const char *)data + 1, size - 1, &job, &reply);
	if (st == 0) {
		if (job.eng.nseq < 1)
			abort();
		for (int s = 0; s < job.eng.nseq; s++) {
			zp_req *r = &job.eng.seq[s];
			if (r->ntok < 1 || r->ntok > 64 || r->top_k < 0 || r->plp_start >= r->ntok)
				abort();
			for (int i = 0; i < r->ntok; i++)
				if (r->tokens[i] < 0 || r->tokens[i] >= 640)
					abort();
			for (int i = 0; i < r->ncand; i++) {
				if (r->cands[i] < 0 || r->cands[i] >= 640)
					abort();
				r->cand_lp[i] = -1.5f;
			}
			for (int i = 0; i < r->top_k; i++) {
				r->top_ids[i] = i;
				r->top_lp[i] = -2.0f;
			}
			for (int i = 0; r->plp_start >= 0 && i < r->ntok - r->plp_start; i++)
				r->plp[i] = -0.5f;
			for (int i = 0; r->emb && i < r->emb_dim; i++)
				r->emb[i] = 0.125f;
		}
		job.eng.done = job.eng.dispatched = job.eng.nseq;
		if (zp_api_finish(&api, &job, &out) != 200)
			abort();
	} else if (st < 400 && st != 200) {
		abort();
	}
	zp_api_job_free(&job);
	zp_buf_free(&out);
	return 0;
}
