/* job.h -- the engine's unit of admission: one request's sequences as the
   scheduler queues them, the executors fill them and the owner gets back
   once done (engine.h's zp_engine_submit_job / zp_engine_poll_job). No JSON and no endpoint: the server embeds a job as the first
   member of its own (serve/api.h's zp_api_job, the endpoint's shape beside
   it), the offline prefill driver as the first member of an input line.
   Threads: the owner thread (the reactor, or the prefill driver) reads and
   writes a job; executors only write into seq[i]'s result arrays while a
   batch holding seq[i] is out. */
#ifndef ZP_JOB_H
#define ZP_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "request.h"
#include "util.h"

typedef struct zp_job zp_job;

struct zp_job {
	zp_req *seq;			/* [nseq]; their memory is the owner's */
	int nseq;
	int tokens;			/* sum of seq[i].ntok */
	/* scheduler */
	zp_job *prev, *next;		/* queue links (the owner's free list too, while unused) */
	int dispatched, done;		/* sequences sent to executors / back */
	bool cancelled;			/* its client has gone */
	int lost;			/* its sequences lost with an executor and queued
					   again (engine.c bounds it) */
	double t_arrive, t_dispatch;	/* admitted / its first sequence went out */
	double t_passed;		/* prefix_flops: first passed over for a younger
					   job (-1: never; scheduler.h's aging) */
	/* the owner, once a batch holding part of it came back */
	bool failed;			/* a forward holding part of it failed */
	char err[ZP_ERR_LEN];		/* why */
	/* The owner's cookie, never read by the engine: the server packs its
	   connection's slot and generation here (server.c's owner_pack). */
	uint64_t owner;
};

/* A batch holding part of j came back failed with err: j is answered as
   failed once complete; the first failure's reason is kept. */
static inline void zp_job_fail(zp_job *j, const char *err)
{
	if (j->failed)
		return;
	j->failed = true;
	snprintf(j->err, sizeof j->err, "%s", err);
}

#endif
