/* request.h -- one prefill request (the "prefill-as-a-service" atom) and its
   results; JSON in and out, the shape of POST /v1/prefill. A request is parsed
   and answered by the driver thread; the forward pass fills the result arrays.
   Parse errors are outside-world failures: they fail that request only. */
#ifndef ZP_REQUEST_H
#define ZP_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "json.h"

#define ZP_TOP_LOGPROBS_MAX 1024
#define ZP_CANDIDATES_MAX 65536

enum zp_pool_mode { ZP_POOL_NONE, ZP_POOL_LAST, ZP_POOL_MEAN };

struct zp_tok_state;

typedef struct {
	int vocab;
	int max_tokens;		/* prompt length limit */
	int hidden;		/* embedding width */
	struct zp_tok_state *tok; /* for "prompt" text and "candidates" strings; NULL:
				     the model has no tokenizer, such requests get a 400 */
} zp_req_limits;

typedef struct {
	char *id_json;		/* the caller's id, re-serialised; "null" when absent */
	int32_t *tokens;	/* [ntok] */
	int ntok;
	int32_t *cands;		/* [ncand] */
	int ncand;
	bool want_cands;
	int top_k;		/* 0: not asked */
	int plp_start;		/* -1: not asked */
	enum zp_pool_mode pool;
	bool normalize;
	/* results, sized at parse */
	float *cand_lp;		/* [ncand] */
	int32_t *top_ids;	/* [top_k] */
	float *top_lp;		/* [top_k] */
	float *plp;		/* [ntok - plp_start]; NaN for position 0 */
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

struct cJSON;

/* A JSON array of token ids into out[max]: *n of them, each in [0, vocab).
   0, or -1 with err set (name is the field). */
int zp_req_ids(const struct cJSON *a, const char *name, int vocab, int max, int32_t *out, int *n,
	       zp_req_error *err);

/* Tokenize text into ids[lim->max_tokens]: *n ids, at least one, every one
   inside the model's vocabulary. 0, or -1 with err set (param names the field;
   a model without tokenizer.json refuses text). */
int zp_req_tokenize(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		    const char *param, zp_req_error *err);

/* Tokenize text into r->tokens (the prompt), as zp_req_tokenize. */
int zp_req_set_text(zp_req *r, const char *text, size_t len, const zp_req_limits *lim,
		    const char *param, zp_req_error *err);

/* Parse one JSON request. 0, or -1 with err set; either way *r must be freed
   with zp_req_free. The id is recovered even when the rest is bad. */
int zp_req_parse(zp_req *r, const char *json, size_t len, const zp_req_limits *lim,
		 zp_req_error *err);
void zp_req_free(zp_req *r);

/* One result line (no newline): the fields asked for, or the error. */
void zp_req_write_result(const zp_req *r, zp_buf *out);
void zp_req_write_error(const char *id_json, const zp_req_error *err, zp_buf *out);

#endif
