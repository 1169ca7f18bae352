/* endpoints.h -- what the endpoint files (api_*.c) share, for them and the
   router's table only: the call context, the JSON field readers and sequence
   builders (api.c), and each endpoint's build and finish. Reactor thread.
   Every reader returns 0, or an HTTP status with the error body written. */
#ifndef ZP_ENDPOINTS_H
#define ZP_ENDPOINTS_H

#include <cjson/cJSON.h>

#include "api.h"
#include "req_json.h"

#define ZP_API_LABEL_TOKENS_MAX 64	/* tokens in one /classify label */
#define ZP_API_PROMPT_EXTRA 64		/* rerank's prompt around its parts, and the NUL */
#define ZP_API_FLOAT_CHARS 16		/* "-1.17549435e-38," */
#define ZP_API_ITEM_CHARS 256		/* a response item's keys, index and brackets */
#define ZP_API_INFO_BYTES (1u << 20)	/* /metrics, /health, /v1/models */

struct zp_api_call {
	zp_api *a;
	const zp_api_view *view;	/* the server's state (/health, /metrics); may be NULL */
	const char *body;		/* the raw request body */
	size_t len;
	const cJSON *root;		/* ZP_ROUTE_JSON rows: the parsed body object */
	zp_api_job *job;
	zp_buf *out;			/* = reply->body */
	zp_api_reply *reply;
	int32_t *ids, *tmp;		/* scratch: ids[seq_tokens_max], tmp[2 seq_tokens_max] */
};

/* The error body of a request over the memory rg gives it (413); returns 413. */
int zp_api_full(zp_api_call *c, const zp_region *rg);
/* A copy of s in the job's region; NULL when it is full (answer zp_api_full). */
char *zp_api_keep_text(zp_api_call *c, const char *s);
/* s[0..len) as a JSON string literal, quoted and escaped (a text that may hold
   NUL bytes, echoed as it is), in the job's region; NULL when it is full. */
char *zp_api_keep_json(zp_api_call *c, const char *s, size_t len);

/* The error body of an invalid request (400) naming param; returns 400. */
int zp_api_bad(zp_api_call *c, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- JSON field readers (api.c) ---- */
const cJSON *zp_api_field(const cJSON *o, const char *k);	/* NULL when absent or null */
/* Unknown fields are ignored with a warning (zp_api_ignored); a "model" field
   must name the served model (404). */
int zp_api_check_fields(zp_api_call *c, const char *const *known);
int zp_api_get_bool(zp_api_call *c, const char *k, bool *v);
/* A fixed buffer for decoded text in what the parse region has left, no
   larger than the response could hold it escaped: 0, or the error answered. */
int zp_api_text_scratch(zp_api_call *c, zp_buf *text);
/* A JSON array of token ids, checked against the vocabulary and length limit. */
int zp_api_get_ids(zp_api_call *c, const cJSON *v, const char *param, int32_t *ids, int *n);
/* Text (len bytes, NUL bytes included) tokenized into ids[seq_tokens_max],
   checked against the limits. */
int zp_api_text_tokens(zp_api_call *c, const char *text, size_t len, const char *param,
		       int32_t *ids, int *n);
/* The 400 of a sequence of n tokens over the longest, in vLLM's words (its
   clients and tests match on them), then ours. */
int zp_api_too_long(zp_api_call *c, const char *param, int n);
/* Text (tokenized) or token ids into ids[seq_tokens_max]. */
int zp_api_get_tokens(zp_api_call *c, const cJSON *v, const char *param, int32_t *ids, int *n);
/* A list of inputs: one string or id array, or an array of them (*n of them). */
int zp_api_get_list(zp_api_call *c, const cJSON *v, const char *param, bool ids_ok, int *n);
const cJSON *zp_api_list_item(const cJSON *v, int i);

/* ---- the other engines' client shapes (api_compat.c) ---- */
#define ZP_API_LOGPROBS_MAX ZP_PLP_TOP_MAX	/* logprobs, prompt_logprobs */
#define ZP_API_TOKEN_CHARS 64		/* a token's text and its key in a response, usually */
/* A field the endpoint does not know: ignored, with a warning line (a few
   per period at most; the next line counts those not written), as vLLM
   does. */
void zp_api_ignored(zp_api_call *c, const char *field);
/* Every key of object o not in known (NULL-ended), as zp_api_ignored
   (where: the object's name, or NULL for the body). */
void zp_api_ignore_unknown(zp_api_call *c, const cJSON *o, const char *where,
			   const char *const *known);
/* All the tokens of a text, or of an id array, in the parse region (no
   length limit: truncation comes after); model_vocab: every id must be in
   the model's vocabulary (the tokenizer's may be larger). */
int zp_api_encode_all(zp_api_call *c, const char *text, size_t len, const char *param,
		      bool model_vocab, int32_t **ids, int *n);
int zp_api_ids_all(zp_api_call *c, const cJSON *v, const char *param, int32_t **ids, int *n);
/* vLLM's truncate_prompt_tokens in field k: *keep 0 (absent: off), the
   longest sequence (-1), or 1..seq_tokens_max. */
int zp_api_get_truncate(zp_api_call *c, const char *k, int *keep);
/* use_activation (and its deprecated names activation, softmax): *raw when
   false (the score before its sigmoid). */
int zp_api_get_activation(zp_api_call *c, bool *raw);
/* Keep the last (or first) keep of *n ids; keep 0: all. */
void zp_api_truncate(int32_t **ids, int *n, int keep, bool keep_last);
/* "dimensions": *dims 0 (absent) or 1..hidden. */
int zp_api_get_dims(zp_api_call *c, int *dims);
/* The embedding cut to its first dims values, renormalised when it was
   normalised (Matryoshka); dims 0: unchanged. */
void zp_api_emb_dims(zp_req *r, int dims);

/* ---- the one generated token (api_chat.c): chat, and completions with
   max_tokens 1 ---- */
typedef struct zp_api_gen zp_api_gen;
typedef struct {
	int32_t id;			/* the token */
	float lp;			/* its log-prob under the model (before bias) */
	const char *finish;		/* "length", or "stop" (an end token, a stop) */
	int stop_str;			/* the stop string that matched, or -1 */
	bool stop_id;			/* a stop_token_ids entry */
	size_t text_at;			/* its text in the buffer zp_api_gen_text wrote */
} zp_api_pick;
/* The request's temperature, seed, logit_bias, stops (and the settings one
   token cannot honour, refused by name) into job->gen; top_k: the
   alternatives each sequence returns at its last position. */
int zp_api_gen_read(zp_api_call *c, int top_k);
/* The last sequence added asks what its token needs (after zp_api_gen_read). */
int zp_api_gen_seq(zp_api_call *c);
/* The token of a finished sequence: greedy, or drawn with job->gen's seed.
   r's candidate log-probs are biased in place (finish reads them once). */
void zp_api_gen_pick(const zp_api_job *j, zp_req *r, zp_api_pick *p);
/* Its text appended to tb (special tokens skipped, a stop string cut), and
   p->finish set. */
void zp_api_gen_text(const zp_api *a, const zp_api_job *j, zp_api_pick *p, zp_buf *tb);
/* ,"stop_reason": null, the stop string, or the stop token id (vLLM's). */
void zp_api_gen_stop_reason(const zp_api_job *j, const zp_api_pick *p, zp_buf *out);

/* ---- sequences of the job, in its region (api.c; 413 when it is full) ---- */
int zp_api_alloc_seqs(zp_api_call *c, int n);
/* Append a sequence of ids (400 when over seq_tokens_max). */
int zp_api_add_seq(zp_api_call *c, const int32_t *ids, int n, const char *param);
/* The last sequence added scores these candidate tokens at its last position. */
int zp_api_seq_cands(zp_api_call *c, const int32_t *ids, int n);
/* n floats for the last sequence added (its embedding, its prompt log-probs). */
int zp_api_seq_floats(zp_api_call *c, int n, float **out);

/* ---- response pieces (api.c) ---- */
void zp_api_softmax(double *v, int n);
void zp_api_usage(zp_buf *out, int tokens);
void zp_api_model_field(const zp_api *a, zp_buf *out);

/* ---- the endpoints, as router.c's table names them ---- */
int zp_api_prefill_build(zp_api_call *c);	/* api_prefill.c */
void zp_api_prefill_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_score_build(zp_api_call *c);		/* api_score.c */
void zp_api_score_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_classify_build(zp_api_call *c);
void zp_api_classify_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_rerank_build(zp_api_call *c);	/* api_rerank.c */
void zp_api_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out);
/* /v2/rerank: the same, with Cohere's v2 meta (TEI's texts: TEI's answer) */
void zp_api_cohere_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_embed_build(zp_api_call *c);		/* api_embed.c */
int zp_api_pooling_build(zp_api_call *c);
void zp_api_embed_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_tokenize_build(zp_api_call *c);	/* api_tokenize.c */
int zp_api_detokenize_build(zp_api_call *c);
int zp_api_models_build(zp_api_call *c);	/* api_info.c */
int zp_api_health_build(zp_api_call *c);
int zp_api_metrics_build(zp_api_call *c);
/* api_vllm.c: vLLM's /v1/score pairs (SGLang's shape otherwise), /v1/completions */
int zp_api_vllm_score_build(zp_api_call *c);
void zp_api_vllm_score_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_completions_build(zp_api_call *c);
/* POST /invocations: the endpoint the body's fields name, as vLLM picks it */
enum zp_route zp_api_invocations_pick(const cJSON *root);
int zp_api_invocations_build(zp_api_call *c);
void zp_api_invocations_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_version_build(zp_api_call *c);	/* api_info.c */
void zp_api_completions_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_chat_build(zp_api_call *c);		/* api_chat.c */
void zp_api_chat_finish(zp_api *a, zp_api_job *j, zp_buf *out);
/* api_tei.c: /embed, /info; /rerank with texts and /tokenize with inputs
   (the shapes above otherwise) */
int zp_api_tei_embed_build(zp_api_call *c);
void zp_api_tei_embed_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_tei_rerank_build(zp_api_call *c);
void zp_api_tei_rerank_finish(zp_api *a, zp_api_job *j, zp_buf *out);
int zp_api_tei_tokenize_build(zp_api_call *c);
int zp_api_tei_decode_build(zp_api_call *c);
int zp_api_tei_info_build(zp_api_call *c);

#endif
