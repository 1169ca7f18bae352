/* api.h -- the HTTP endpoints (DESIGN.md section 5): routing, each endpoint's
   JSON request turned into prefill sequences (a job), and the job's results
   turned into that endpoint's JSON response. Every endpoint maps onto the
   native prefill request. Reactor thread only (it owns the tokenizer state);
   executors only fill the sequences' result arrays.
   Return contract: input faults are 4xx with an OpenAI-style error body. */
#ifndef ZP_API_H
#define ZP_API_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "json.h"
#include "request.h"
#include "tokenizer.h"

enum zp_api_ep {
	ZP_EP_PREFILL, ZP_EP_SCORE, ZP_EP_CLASSIFY, ZP_EP_RERANK, ZP_EP_EMBED, ZP_EP_POOLING,
	ZP_EP_TOKENIZE, ZP_EP_DETOKENIZE, ZP_EP_MODELS, ZP_EP_HEALTH, ZP_EP_METRICS,
	ZP_EP_OTHER,	/* unknown path or method */
	ZP_EP_COUNT
};

#define ZP_API_ITEMS_MAX 1024	/* items, documents, inputs or labels in one request */

/* Qwen3-Reranker's yes/no formulation; every part comes from the config. */
typedef struct {
	const char *prefix, *suffix, *instruction;
	const char *yes_token, *no_token;
} zp_rerank_cfg;

typedef struct {
	const zp_tok *tok;		/* NULL: the model directory has none */
	zp_tok_state *ts;
	zp_req_limits lim;		/* lim.tok = ts */
	const char *model_name;
	zp_rerank_cfg rerank;
	int32_t yes_id, no_id;		/* -1 when the tokenizer lacks them */
	int32_t *scratch;		/* [3 max_tokens] token ids while a body is built */
} zp_api;

/* A request turned into sequences. Owned by the reactor from admission until
   its response is written; executors write only into seq[i]'s result arrays
   while a batch holding seq[i] is out. */
typedef struct zp_job zp_job;
struct zp_job {
	enum zp_api_ep ep;
	zp_req *seq;			/* [nseq] */
	int nseq;
	int tokens;			/* sum of seq[i].ntok */
	/* endpoint shape */
	int nout;			/* items, inputs or documents */
	int nlab;			/* labels per output (score, classify) */
	bool softmax;			/* score: apply_softmax */
	bool multi;			/* classify: a label is several tokens (one seq per pair) */
	bool base64;			/* embeddings */
	int top_n;			/* rerank */
	char **labels;			/* classify: [nlab] label text */
	char **docs;			/* rerank with return_documents: [nout] document text */
	bool pooling_ep;		/* /pooling: raw pooled state, its own shape */
	/* scheduler and reactor */
	zp_job *prev, *next;		/* queue links */
	int dispatched, done;		/* sequences sent to executors / back */
	bool cancelled;			/* its client has gone */
	bool failed;			/* a forward holding part of it failed */
	char err[ZP_ERR_LEN];		/* why */
	uint32_t conn, conn_gen;
	double t_arrive, t_dispatch, fwd_s;
};

void zp_api_init(zp_api *a, const zp_tok *tok, const zp_req_limits *lim, const char *model_name,
		 const zp_rerank_cfg *rr);
void zp_api_free(zp_api *a);

/* The endpoint of a request, or ZP_EP_OTHER with *status 404 (path) or 405
   (method). */
enum zp_api_ep zp_api_route(const char *path, enum zp_http_method m, int *status);
const char *zp_api_ep_name(enum zp_api_ep ep);
/* The method a known path takes ("GET" or "POST"), or NULL. */
const char *zp_api_allow(const char *path);
/* Does ep run a forward pass (and so need the model loaded)? */
bool zp_api_needs_model(enum zp_api_ep ep);

/* Parse body for ep. 0: job filled with sequences to run. > 0: an HTTP status
   whose whole JSON body is in out (answers that need no forward pass, and
   every input fault). The job is zero-initialised by the caller. */
int zp_api_build(zp_api *a, enum zp_api_ep ep, const char *body, size_t len, zp_job *job,
		 zp_buf *out);

/* Every sequence done: the response JSON into out; returns the HTTP status. */
int zp_api_finish(zp_api *a, zp_job *job, zp_buf *out);

/* Free what zp_api_build allocated (safe on a zeroed or half-built job). */
void zp_api_job_free(zp_job *job);

/* The error body {"error": {message, type, param, code}}; returns status. */
int zp_api_error(zp_buf *out, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
