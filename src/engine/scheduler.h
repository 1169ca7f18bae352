/* scheduler.h -- the request queue and batch formation, for the server and the
   offline `zprefill prefill` alike: admission bounded in requests and in
   tokens, FIFO order, and batches cut by the token budget (or the sequence
   cap of one forward) after a short bounded wait. This is the one interface
   the FLOPs-threshold scheduler (DESIGN.md section 4) will replace. Owner
   thread only (the reactor, or the prefill driver); a batch is handed to one
   executor by the engine (engine.h) and comes back whole. */
#ifndef ZP_SCHED_H
#define ZP_SCHED_H

#include <stdbool.h>

#include "forward.h"
#include "job.h"
#include "ring.h"

/* A batch: one forward's sequences. Lives in its executor's slab (executor.h);
   the owner fills it, the executor writes the results and the fields marked. */
typedef struct {
	zp_req *req[ZP_FWD_SEQS_MAX];	/* the sequences, in queue order */
	zp_job *job[ZP_FWD_SEQS_MAX];	/* the job each belongs to */
	int n, tokens;
	/* engine */
	zp_rec rec;			/* its slot and generation in its executor's slab */
	int exec;			/* the executor it belongs to */
	bool filler;			/* dpep: an empty forward that serves experts only */
	/* written by the executor */
	double fwd_s;
	int failed;			/* the forward failed */
	char err[ZP_ERR_LEN];		/* why */
	zp_fwd_stats stats;		/* the forward's phases */

	/* ---- prefix reuse: written by the executor (forward.h's zp_fwd_kv_report).
	   After the batch every full leading block of each of its sequences was
	   inserted into its executor's prefix cache, then perhaps evicted: the
	   evicted keys are listed (none when it has no cache). ---- */
	int kv_hit_tokens[ZP_FWD_SEQS_MAX];	/* per sequence: tokens served from the
						   cache or a sibling, not computed */
	int kv_evicted_n;			/* keys in kv_evicted */
	bool kv_evicted_overflow;		/* more were evicted than kv_evicted holds:
						   forget the shadow of this executor */
	zp_blk_key kv_evicted[ZP_KV_EVICT_REPORT];
} zp_batch;

typedef struct {
	int requests_max;		/* jobs admitted and not yet answered */
	long tokens_max;		/* their tokens */
	int batch_tokens_max;		/* tokens in one forward (ini: max_batch_tokens) */
	double batch_wait_s;		/* longest a queued sequence waits for company */
	zp_job *head, *tail;		/* jobs with sequences not yet dispatched */
	int requests;			/* admitted, not finished */
	long tokens;
	long queued_tokens;		/* not yet dispatched */
	int queued_seqs;
} zp_sched;

void zp_sched_init(zp_sched *s, int requests_max, long tokens_max, int batch_tokens_max,
		   double batch_wait_s);

/* Admit a built job. A sequence over batch_tokens_max is cut into a batch of
   its own (the forward must be sized for it: prefill's long prompts). 0, or
   -1 when the queue is full (the caller answers 503 and frees the job). */
int zp_sched_admit(zp_sched *s, zp_job *j, double now);

/* Cut the next batch into b when one is due at now: the budget (tokens, or
   ZP_FWD_SEQS_MAX sequences) is reached, or the oldest waiting sequence has
   waited batch_wait_s, or force. Returns b->n (0: none due; *wake_at then
   says when one will be, or 0 when empty). */
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
