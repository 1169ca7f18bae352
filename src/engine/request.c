/* request.c -- see request.h. */
#include "request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

/* A region request's id until its JSON gives one: never written, never freed
   (zp_req_free frees nothing of a region request). */
static char null_id[] = "null";

int zp_req_fail(zp_req_error *err, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	err->type = "invalid_request_error";
	err->param = param;
	err->code = 400;
	return -1;
}

int zp_req_full(const zp_req *r, zp_req_error *err)
{
	ZP_ASSERT(r->region);
	zp_req_fail(err, NULL, "request needs more than the %zu bytes of memory a request may "
		    "use: send a smaller one", r->region->cap);
	err->code = 413;
	return -1;
}

void zp_req_init(zp_req *r, zp_region *rg)
{
	memset(r, 0, sizeof *r);
	r->region = rg;
	r->plp_start = -1;
	r->id_json = rg ? null_id : strdup("null");
	ZP_ASSERT(r->id_json);
}

void *zp_req_alloc(zp_req *r, size_t n, size_t sz)
{
	size_t bytes = (n ? n : 1) * sz; /* an empty array still gets a pointer */
	ZP_ASSERT(n <= SIZE_MAX / (sz ? sz : 1));
	return r->region ? zp_region_alloc(r->region, bytes) : zp_xmalloc(bytes);
}

void zp_req_free(zp_req *r)
{
	if (!r->region) {
		free(r->id_json);
		free(r->tokens);
		free(r->cands);
		free(r->cand_lp);
		free(r->top_ids);
		free(r->top_lp);
		free(r->plp);
		free(r->plp_top_ids);
		free(r->plp_top_lp);
		free(r->plp_rank);
		free(r->emb);
	}
	memset(r, 0, sizeof *r);
}

int zp_req_set_tokens(zp_req *r, const int32_t *ids, int n, zp_req_error *err)
{
	ZP_ASSERT(!r->tokens && n >= 0);
	if (!(r->tokens = zp_req_alloc(r, (size_t)n, sizeof *r->tokens)))
		return zp_req_full(r, err);
	memcpy(r->tokens, ids, (size_t)n * sizeof *ids);
	r->ntok = n;
	return 0;
}

int zp_req_set_cands(zp_req *r, const int32_t *ids, int n, zp_req_error *err)
{
	ZP_ASSERT(!r->cands && n >= 0);
	if (!(r->cands = zp_req_alloc(r, (size_t)n, sizeof *r->cands)) ||
	    !(r->cand_lp = zp_req_alloc(r, (size_t)n, sizeof *r->cand_lp)))
		return zp_req_full(r, err);
	memcpy(r->cands, ids, (size_t)n * sizeof *ids);
	r->ncand = n;
	r->want_cands = true;
	return 0;
}

static int no_tokenizer(zp_req_error *err, const char *param)
{
	return zp_req_fail(err, param, "%s is text, but the model directory has no tokenizer.json: "
			   "send token ids", param);
}

int zp_req_encode(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		  const char *param, zp_req_error *err)
{
	if (!lim->tok)
		return no_tokenizer(err, param);
	*n = zp_tok_encode(lim->tok, text, len, ids, lim->seq_tokens_max);
	if (*n < 0) {
		zp_req_fail(err, param, "%s is %zu bytes, over the %zu bytes of text a request may "
			    "hold", param, len, zp_tok_state_text_max(lim->tok));
		err->code = 413;
		return -1;
	}
	if (*n > lim->seq_tokens_max)
		return zp_req_fail(err, param, "%s is %d tokens (max %d)", param, *n,
				   lim->seq_tokens_max);
	return 0;
}

int zp_req_tokenize(const zp_req_limits *lim, const char *text, size_t len, int32_t *ids, int *n,
		    const char *param, zp_req_error *err)
{
	if (zp_req_encode(lim, text, len, ids, n, param, err))
		return -1;
	if (*n == 0)
		return zp_req_fail(err, param, "%s is empty", param);
	for (int i = 0; i < *n; i++)
		if (ids[i] >= lim->vocab)
			return zp_req_fail(err, param, "%s holds token %d, outside the model's "
					   "vocabulary (%d): tokenizer.json does not fit this model",
					   param, ids[i], lim->vocab);
	return 0;
}

int zp_req_set_text(zp_req *r, const char *text, size_t len, const zp_req_limits *lim,
		    const char *param, zp_req_error *err)
{
	if (!r->region)
		free(r->tokens);
	r->tokens = zp_req_alloc(r, (size_t)lim->seq_tokens_max, sizeof *r->tokens);
	if (!r->tokens)
		return zp_req_full(r, err);
	return zp_req_tokenize(lim, text, len, r->tokens, &r->ntok, param, err);
}
