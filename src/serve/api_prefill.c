/* api_prefill.c -- POST /v1/prefill, the native request (DESIGN.md section 5):
   one JSON line in request.c's format is one sequence; its result is written
   back in the same format. Reactor thread. */
#include <string.h>

#include "endpoints.h"
#include "util.h"

int zp_api_prefill_build(zp_api_call *c)
{
	zp_req_error err;
	zp_api_alloc_seqs(c, 1);
	c->job->nseq = 1;
	if (zp_req_parse(&c->job->seq[0], c->body, c->len, &c->a->lim, &err)) {
		c->out->len = 0;
		zp_req_write_error(c->job->seq[0].id_json, &err, c->out);
		return err.code;
	}
	c->job->tokens = c->job->seq[0].ntok;
	return 0;
}

void zp_api_prefill_finish(zp_api *a, zp_job *j, zp_buf *out)
{
	zp_req_write_result(&j->seq[0], out);
}
