/* api.h -- the HTTP endpoints (DESIGN.md section 5) as the server calls them:
   a request body turned into prefill sequences (a job), and the job's results
   turned into that endpoint's JSON response. Every endpoint maps onto the
   native prefill request; router.c's table says which api_*.c serves which
   path. Reactor thread only (it owns the tokenizer state); executors only
   fill the sequences' result arrays.
   Memory: nothing here allocates after zp_api_init. A request's JSON tree
   and its scratch live in the api's parse region (reset at each build); a
   job's sequences, their arrays and the text it keeps (labels, documents)
   live in the job's region (given by the server, sized at start-up by
   zp_api_job_bytes, reset by zp_api_job_free). A request that does not fit
   either is a 413 saying so, never an abort.
   Return contract: input faults are 4xx with an OpenAI-style error body. */
#ifndef ZP_API_H
#define ZP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "http.h"
#include "job.h"
#include "json.h"
#include "router.h"
#include "tokenizer.h"

#define ZP_API_ITEMS_MAX 1024	/* items, documents, inputs or labels in one request */

/* Qwen3-Reranker's yes/no formulation; every part comes from the config. */
typedef struct {
	const char *prefix, *suffix, *instruction;
	const char *yes_token, *no_token;
} zp_rerank_cfg;

struct zp_api {
	const zp_tok *tok;		/* NULL: the model directory has none */
	zp_tok_state *ts;
	zp_req_limits lim;		/* lim.tok = ts */
	const char *model_name;
	zp_rerank_cfg rerank;
	const zp_chat *chat;		/* the chat template (api_chat.c); NULL: none */
	int32_t yes_id, no_id;		/* -1 when the tokenizer lacks them */
	int32_t *scratch;		/* [3 seq_tokens_max] token ids while a body is built */
	zp_region parse;		/* the body's cJSON tree and a build's scratch */
	char *text;			/* [text_cap]: text put together to be tokenized */
	size_t text_cap;
	size_t body_max;		/* the body limit everything here is sized from */
	/* ignored-field warnings (api_compat.c): a few lines a window, the rest
	   counted; each api's thread its own */
	zp_log_limit warn_ignored;
};

/* Whose response shape a job answers in, where one path serves several. */
enum zp_api_shape {
	ZP_API_SHAPE_OWN,		/* the endpoint's first shape (SGLang score, Cohere rerank, ...) */
	ZP_API_SHAPE_VLLM,		/* /v1/score with text_1, text_2; /v1/completions */
	ZP_API_SHAPE_TEI,		/* /embed, /rerank with texts */
};

/* A request turned into sequences: the engine's job (first member: the
   scheduler queues &job.eng, zp_api_job_of finds this again) and the
   endpoint's shape, which only build and finish read. Owned by the reactor
   from admission until its response is written. */
struct zp_api_job {
	zp_job eng;			/* first: see zp_api_job_of */
	enum zp_route ep;
	zp_region *rg;			/* where the sequences and everything below live; set
					   by the owner of the job (NULL: a job that needs no
					   sequences) */
	int nout;			/* items, inputs or documents */
	int nlab;			/* labels per output (score, classify) */
	bool softmax;			/* score: apply_softmax */
	bool multi;			/* classify: a label is several tokens (one seq per pair) */
	bool base64;			/* embeddings */
	int dtype;			/* embeddings base64: 0 float32, 1 float16, 2 bfloat16 */
	bool big_endian;		/* embeddings base64: vLLM's endianness "big" */
	int top_n;			/* rerank */
	char **labels;			/* classify: [nlab] label text */
	char **docs;			/* rerank with return_documents: [nout] document text */
	double (*order)[2];		/* rerank: [nout] (score, index), sorted at finish */
	bool pooling_ep;		/* /pooling: raw pooled state, its own shape */
	/* the client shapes of api_vllm.c and api_tei.c, on paths shared with
	   the shapes above */
	enum zp_api_shape shape;
	int lp_k;			/* completions: logprobs (-1: not asked) */
	int plp_k;			/* completions: prompt_logprobs (-1: not asked) */
	int dims;			/* embeddings: dimensions kept (0: all) */
	bool raw;			/* TEI rerank: raw_scores */
	struct zp_api_gen *gen;		/* chat, completions with max_tokens 1: the one
					   token's settings (api_chat.c), in rg; NULL: none */
};

_Static_assert(offsetof(zp_api_job, eng) == 0, "an api job starts with its engine job");

/* The api job whose engine job j is (a job the server admitted: every job in
   its scheduler and batches is one). */
static inline zp_api_job *zp_api_job_of(zp_job *j)
{
	ZP_ASSERT(j);
	return (zp_api_job *)((char *)j - offsetof(zp_api_job, eng));
}

/* The server's state as /health and /metrics report it (api_info.h). */
typedef struct zp_api_view zp_api_view;

/* An answer given without a forward pass: its body, and its head's extras. */
typedef struct {
	zp_buf *body;
	const char *content_type;	/* set by zp_api_build */
	int retry_after_s;		/* > 0: a Retry-After header */
} zp_api_reply;

/* Start-up: the parse region and scratch are sized from lim and body_max;
   chat (may be NULL: no chat template) outlives a. */
void zp_api_init(zp_api *a, const zp_tok *tok, const zp_req_limits *lim, size_t body_max,
		 const char *model_name, const zp_rerank_cfg *rr, const zp_chat *chat);
void zp_api_free(zp_api *a);
/* The settings the endpoints use, checked at start so that a bad one is not
   blamed on every client with a 400: the [rerank] yes/no labels are one
   token each, and the rerank template fits max_tokens. 0, or -1 with e
   naming the key. Nothing to check without a tokenizer (text is refused). */
int zp_api_check(zp_api *a, zp_err *e);

/* Region bytes a job needs for any request the limits admit: up to
   ZP_API_ITEMS_MAX sequences (each with an embedding and ZP_API_ITEMS_MAX
   label candidates), tokens_max tokens in all, the largest native request's
   arrays, and the body's text. Requests past that (classify with more than
   ZP_API_ITEMS_MAX (input, label) pairs, ...) are 413s. */
size_t zp_api_job_bytes(const zp_api *a, long tokens_max);
/* The largest response body the endpoints write at these limits (rerank's
   documents and classify's labels are echoed: past that bound, a 500 says the
   response is over the buffer). */
size_t zp_api_response_bytes(const zp_api *a);

/* Build endpoint ep's request from body. 0: job filled with sequences to run
   (ZP_ROUTE_NEEDS_MODEL endpoints only). > 0: an HTTP status whose whole
   body is in reply (answers that need no forward pass, and every input
   fault). The job is zero-initialised by the caller; view may be NULL except
   for /health and /metrics. */
int zp_api_build(zp_api *a, enum zp_route ep, const zp_api_view *view, const char *body,
		 size_t len, zp_api_job *job, zp_api_reply *reply);

/* Every sequence done: the response JSON into out; returns the HTTP status
   (500 when out is fixed and the response does not fit it). */
int zp_api_finish(zp_api *a, zp_api_job *job, zp_buf *out);

/* Drop what zp_api_build put in the job's region (safe on a zeroed or
   half-built job); the region is reset. */
void zp_api_job_free(zp_api_job *job);

/* The error body {"error": {message, type, param, code}} of an error kind
   (http.h: its status, and its type); returns the status. */
int zp_api_error(zp_buf *out, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
