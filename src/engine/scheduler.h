/* scheduler.h -- the request queue and batch formation: admission bounded in
   requests and in tokens, FIFO order, and batches cut by a token budget after
   a short bounded wait. This is the one interface the FLOPs-threshold
   scheduler (DESIGN.md section 4) will replace. Reactor thread only; a batch
   is handed to one executor and comes back whole. */
#ifndef ZP_SCHED_H
#define ZP_SCHED_H

#include "api.h"
#include "forward.h"

typedef struct {
	zp_req *req[ZP_FWD_SEQS_MAX];	/* the sequences, in queue order */
	zp_job *job[ZP_FWD_SEQS_MAX];	/* the job each belongs to */
	int n, tokens;
	double fwd_s;			/* written by the executor */
	int failed;			/* written by the executor: the forward failed */
	char err[ZP_ERR_LEN];		/* why */
} zp_batch;

typedef struct {
	int requests_max;		/* jobs admitted and not yet answered */
	long tokens_max;		/* their tokens */
	int batch_tokens_max;
	double batch_wait_s;		/* longest a queued sequence waits for company */
	zp_job *head, *tail;		/* jobs with sequences not yet dispatched */
	int requests;			/* admitted, not finished */
	long tokens;
	long queued_tokens;		/* not yet dispatched */
} zp_sched;

void zp_sched_init(zp_sched *s, int requests_max, long tokens_max, int batch_tokens_max,
		   double batch_wait_s);

/* Admit a built job (every sequence <= batch_tokens_max). 0, or -1 when the
   queue is full (the caller answers 503 and frees the job). */
int zp_sched_admit(zp_sched *s, zp_job *j, double now);

/* Cut the next batch into b when one is due at now: the budget is reached or
   the oldest waiting sequence has waited batch_wait_s (or force). Returns
   b->n (0: none due; *wake_at then says when one will be, or 0 when empty). */
int zp_sched_next_batch(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at);

/* A sequence of j came back (or was dropped). true when j is now complete:
   the caller answers (or, if cancelled, frees) it and calls zp_sched_finish. */
bool zp_sched_seq_done(zp_sched *s, zp_job *j);

/* j's client has gone: its undispatched sequences are dropped. true when
   nothing of it is out (free it now); otherwise the last batch frees it. */
bool zp_sched_cancel(zp_sched *s, zp_job *j);

/* j left the system (answered or freed): release its admission. */
void zp_sched_finish(zp_sched *s, zp_job *j);

#endif
