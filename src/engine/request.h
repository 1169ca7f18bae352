/* request.h -- one sequence of the engine (the "prefill-as-a-service" atom):
   its prompt tokens, what it asks for, and the result arrays the forward pass
   fills. No JSON here: the native request's JSON lives in serve/req_json.h.
   A request is built and answered by one driver/reactor thread; the forward
   pass fills its result arrays in between. Its arrays come from a region (the
   request path: nothing to free, the region's reset drops them) or from the
   heap (start-up, CLI, tests: zp_req_free frees them). Failures from outside
   (bad text, a full region) fail that request only. */
#ifndef ZP_REQUEST_H
#define ZP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pooling.h"
#include "region.h"

#define ZP_TOP_LOGPROBS_MAX 1024
#define ZP_CANDIDATES_MAX 65536
#define ZP_PLP_TOP_MAX 20	/* top-k at each prompt position: vLLM's max_logprobs default */


struct zp_tok_state;

typedef struct {
	int vocab;
	int seq_tokens_max;	/* prompt length limit (ini: max_tokens) */
	int hidden;		/* embedding width */
	struct zp_tok_state *tok; /* for "prompt" text and "candidates" strings; NULL:
				     the model has no tokenizer, such requests get a 400 */
} zp_req_limits;

typedef struct {
	zp_region *region;	/* where every array below lives; NULL: the heap */
	char *id_json;		/* the caller's id, re-serialised; "null" when absent */
	int32_t *tokens;	/* [ntok] */
	int ntok;
	int32_t *cands;		/* [ncand] */
	int ncand;
	bool want_cands;
	int top_k;		/* 0: not asked */
	int plp_start;		/* -1: not asked */
	enum zp_pooling pool;
	bool normalize;
	/* results, sized at parse */
	float *cand_lp;		/* [ncand] */
	int32_t *top_ids;	/* [top_k] */
	float *top_lp;		/* [top_k] */
	float *plp;		/* [ntok - plp_start]; NaN for position 0 */
	/* with plp: the plp_top_k most likely tokens at each of its positions
	   (vLLM's integer prompt_logprobs), and the prompt token's rank there
	   (1 + the tokens more likely than it); position 0 is left unset */
	int plp_top_k;		/* 0: not asked */
	int32_t *plp_top_ids;	/* [(ntok - plp_start) plp_top_k] */
	float *plp_top_lp;	/* [(ntok - plp_start) plp_top_k] */
	int32_t *plp_rank;	/* [ntok - plp_start], or NULL: not asked */
	float *emb;		/* [emb_dim] */
	int emb_dim;
} zp_req;

/* The error of a request that cannot be served: OpenAI-style type and code. */
typedef struct {
	char message[256];
	const char *type;	/* "invalid_request_error", ... */
	const char *param;	/* the offending field, or NULL */
	int code;		/* HTTP status it maps to */
} zp_req_error;

/* An empty request (id "null", nothing asked) whose arrays will come from rg,
   or from the heap when rg is NULL. */
void zp_req_init(zp_req *r, zp_region *rg);
/* Free the heap arrays (a region's are left to its reset); r is empty after. */
void zp_req_free(zp_req *r);

/* n elements of sz bytes for one of r's arrays, from r's region or the heap.
   NULL only when the region is full: answer zp_req_full. */
void *zp_req_alloc(zp_req *r, size_t n, size_t sz);
/* Fail with 413: r's region cannot hold the request. Returns -1. */
int zp_req_full(const zp_req *r, zp_req_error *err);

/* The prompt / the candidates (with their result array) copied from ids[n].
   0, or -1 with err set (413: the region is full). */
int zp_req_set_tokens(zp_req *r, const int32_t *ids, int n, zp_req_error *err);
int zp_req_set_cands(zp_req *r, const int32_t *ids, int n, zp_req_error *err);

/* Encode text into ids[lim->seq_tokens_max]: *n ids (none for empty text).
   0, or -1 with err set (param names the field; a model without
   tokenizer.json refuses text; 413: the text is longer than the tokenizer
   state's buffers; more than seq_tokens_max ids). */
int zp_req_encode(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		  const char *param, zp_req_error *err);
/* zp_req_encode for a prompt: at least one id, every one inside the model's
   vocabulary. */
int zp_req_tokenize(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		    const char *param, zp_req_error *err);

/* Tokenize text into r->tokens (the prompt), as zp_req_tokenize. */
int zp_req_set_text(zp_req *r, const char *text, size_t len, const zp_req_limits *lim,
		    const char *param, zp_req_error *err);

/* Fail with 400 invalid_request_error: message from fmt, param the field (or
   NULL). Returns -1. */
int zp_req_fail(zp_req_error *err, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
