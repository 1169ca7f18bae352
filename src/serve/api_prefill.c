/* api_prefill.c -- POST /v1/prefill, the native request (DESIGN.md section 5):
   one JSON line in request.c's format is one sequence; its result is written
   back in the same format. The line is parsed in the api's parse region (its
   tree is as large as the body allows), then the sequence is copied into the
   job's region, which outlives the parse. Reactor thread. */
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* n elements of sz bytes for r (in r's region), a copy of from when it is
   not NULL; NULL (and *full set) when the region is full. */
static void *take(zp_req *r, const void *from, size_t n, size_t sz, bool *full)
{
	void *p = zp_req_alloc(r, n, sz);
	if (!p)
		*full = true;
	else if (from)
		memcpy(p, from, n * sz);
	return p;
}

/* The parsed request in into r, a sequence of the job's region. */
static int keep(zp_req *r, const zp_req *in, zp_region *rg, zp_req_error *err)
{
	bool full = false;
	*r = *in;
	r->region = rg;
	r->id_json = take(r, in->id_json, strlen(in->id_json) + 1, 1, &full);
	r->tokens = take(r, in->tokens, (size_t)in->ntok, sizeof *r->tokens, &full);
	if (in->cands) {
		r->cands = take(r, in->cands, (size_t)in->ncand, sizeof *r->cands, &full);
		r->cand_lp = take(r, NULL, (size_t)in->ncand, sizeof *r->cand_lp, &full);
	}
	if (in->top_ids) {
		r->top_ids = take(r, NULL, (size_t)in->top_k, sizeof *r->top_ids, &full);
		r->top_lp = take(r, NULL, (size_t)in->top_k, sizeof *r->top_lp, &full);
	}
	if (in->plp)
		r->plp = take(r, in->plp, (size_t)(in->ntok - in->plp_start), sizeof *r->plp, &full);
	if (in->plp_rank) /* prompt_logprobs: k */
		r->plp_rank = take(r, NULL, (size_t)in->ntok, sizeof *r->plp_rank, &full);
	if (in->plp_top_ids) {
		size_t n = (size_t)in->ntok * in->plp_top_k;
		r->plp_top_ids = take(r, NULL, n, sizeof *r->plp_top_ids, &full);
		r->plp_top_lp = take(r, NULL, n, sizeof *r->plp_top_lp, &full);
	}
	if (in->emb)
		r->emb = take(r, NULL, (size_t)in->emb_dim, sizeof *r->emb, &full);
	return full ? zp_req_full(r, err) : 0;
}

int zp_api_prefill_build(zp_api_call *c)
{
	zp_req in;
	zp_req_error err;
	int rc;
	if (zp_req_parse_in(&in, &c->a->parse, c->body, c->len, &c->a->lim, &err)) {
		zp_req_write_error(in.id_json, &err, c->out);
		return err.code;
	}
	if ((rc = zp_api_alloc_seqs(c, 1)))
		return rc;
	c->job->eng.nseq = 1;
	if (keep(&c->job->eng.seq[0], &in, c->job->rg, &err)) {
		zp_req_write_error(in.id_json, &err, c->out);
		return err.code;
	}
	c->job->eng.tokens = in.ntok;
	return 0;
}

void zp_api_prefill_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	zp_req_write_result(&j->eng.seq[0], out);
}
