/* test_sched.c -- the scheduler (src/engine/scheduler.h) on its own, with
   jobs built by hand: admission bounded in requests and in tokens (and
   released by finish); FIFO order across jobs; a batch cut by the token
   budget, by the sequence cap of one forward, and by the wait (not before
   it: the wake-up time is reported); force; a job whose sequences span
   batches; cancel of a queued job and of one partly out. */
#include <string.h>

#include "check.h"
#include "scheduler.h"

#define JOBS 8
#define SEQS 4

static zp_job job[JOBS];
static zp_req seq[JOBS][SEQS];
static zp_batch batch;

/* Job i with n sequences of ntok tokens each. */
static zp_job *mk(int i, int n, int ntok)
{
	memset(&job[i], 0, sizeof job[i]);
	for (int k = 0; k < n; k++) {
		memset(&seq[i][k], 0, sizeof seq[i][k]);
		seq[i][k].ntok = ntok;
	}
	job[i].seq = seq[i];
	job[i].nseq = n;
	job[i].tokens = n * ntok;
	return &job[i];
}

static void admission(void)
{
	zp_sched s;
	double wake;
	zp_sched_init(&s, 3, 100, 50, 0.010);
	CHECK(zp_sched_admit(&s, mk(0, 1, 10), 0) == 0, "admit 0");
	CHECK(zp_sched_admit(&s, mk(1, 1, 10), 0) == 0, "admit 1");
	CHECK(zp_sched_admit(&s, mk(2, 1, 10), 0) == 0, "admit 2");
	CHECK(zp_sched_admit(&s, mk(3, 1, 10), 0) == -1, "the 4th request is refused");
	CHECK(s.requests == 3 && s.tokens == 30, "refusal changes nothing");
	CHECK(zp_sched_next_batch(&s, 1, false, &batch, &wake) == 3, "all three due");
	for (int k = 0; k < 3; k++)
		if (zp_sched_seq_done(&s, batch.job[k]))
			zp_sched_finish(&s, batch.job[k]);
	CHECK(s.requests == 0 && s.tokens == 0, "finish releases the admission");
	/* tokens: 100 at most */
	CHECK(zp_sched_admit(&s, mk(0, 2, 40), 0) == 0, "80 tokens");
	CHECK(zp_sched_admit(&s, mk(1, 1, 21), 0) == -1, "101 tokens refused");
	CHECK(zp_sched_admit(&s, mk(1, 1, 20), 0) == 0, "100 tokens fit");
}

static void fifo_and_budget(void)
{
	zp_sched s;
	double wake;
	zp_sched_init(&s, 8, 1000, 10, 0.010);
	zp_sched_admit(&s, mk(0, 3, 4), 0); /* 12 tokens: spans two batches */
	zp_sched_admit(&s, mk(1, 1, 2), 0);
	zp_sched_admit(&s, mk(2, 1, 3), 0);
	CHECK(zp_sched_next_batch(&s, 0, false, &batch, &wake) == 2 && batch.tokens == 8,
	      "budget reached: cut at once, the next sequence would pass 10 (n %d, tokens %d)",
	      batch.n, batch.tokens);
	CHECK(batch.req[0] == &seq[0][0] && batch.req[1] == &seq[0][1] && batch.job[1] == &job[0],
	      "first job's first sequences first");
	CHECK(job[0].dispatched == 2 && s.head == &job[0], "job 0 still queued for its third");
	CHECK(zp_sched_next_batch(&s, 0.005, false, &batch, &wake) == 0 && wake == 0.010,
	      "9 tokens left: not due before the wait (wake at %g)", wake);
	CHECK(zp_sched_next_batch(&s, 0.010, false, &batch, &wake) == 3 && batch.tokens == 9,
	      "due after the wait (n %d tokens %d)", batch.n, batch.tokens);
	CHECK(batch.req[0] == &seq[0][2] && batch.req[1] == &seq[1][0] && batch.req[2] == &seq[2][0],
	      "FIFO across jobs");
	CHECK(zp_sched_next_batch(&s, 1, true, &batch, &wake) == 0 && wake == 0 && !s.head,
	      "empty: nothing, no wake-up even forced");
	zp_sched_admit(&s, mk(5, 1, 1), 0);
	CHECK(zp_sched_next_batch(&s, 0, true, &batch, &wake) == 1 && batch.req[0] == &seq[5][0],
	      "force cuts at once");
	CHECK(s.queued_tokens == 0 && s.queued_seqs == 0, "queue counters back to 0");
	/* a sequence over the budget goes alone (prefill's long prompts) */
	zp_sched_admit(&s, mk(3, 1, 25), 0);
	zp_sched_admit(&s, mk(4, 1, 1), 0);
	CHECK(zp_sched_next_batch(&s, 0, false, &batch, &wake) == 1 && batch.tokens == 25,
	      "25 tokens over a budget of 10: a batch of its own");
	CHECK(zp_sched_next_batch(&s, 0, true, &batch, &wake) == 1 && batch.req[0] == &seq[4][0],
	      "then the next");
	/* job 0 completes only with its last sequence */
	CHECK(!zp_sched_seq_done(&s, &job[0]) && !zp_sched_seq_done(&s, &job[0]) &&
	      zp_sched_seq_done(&s, &job[0]), "a job is done with its last sequence");
}

/* ZP_FWD_SEQS_MAX sequences queued fill a forward: due without waiting. */
static void seq_cap(void)
{
	static zp_job many[ZP_FWD_SEQS_MAX + 1];
	static zp_req one[ZP_FWD_SEQS_MAX + 1];
	zp_sched s;
	double wake;
	zp_sched_init(&s, ZP_FWD_SEQS_MAX + 1, 1 << 20, 1 << 16, 10.0);
	for (int i = 0; i < ZP_FWD_SEQS_MAX; i++) {
		one[i] = (zp_req){ .ntok = 1 };
		many[i] = (zp_job){ .seq = &one[i], .nseq = 1, .tokens = 1 };
		zp_sched_admit(&s, &many[i], 0);
		if (i == ZP_FWD_SEQS_MAX - 2)
			CHECK(zp_sched_next_batch(&s, 0, false, &batch, &wake) == 0,
			      "one short of the cap: it waits");
	}
	one[ZP_FWD_SEQS_MAX] = (zp_req){ .ntok = 1 };
	many[ZP_FWD_SEQS_MAX] = (zp_job){ .seq = &one[ZP_FWD_SEQS_MAX], .nseq = 1, .tokens = 1 };
	zp_sched_admit(&s, &many[ZP_FWD_SEQS_MAX], 0);
	CHECK(zp_sched_next_batch(&s, 0, false, &batch, &wake) == ZP_FWD_SEQS_MAX,
	      "the cap reached: one full forward at once (n %d)", batch.n);
	CHECK(s.head == &many[ZP_FWD_SEQS_MAX] && s.queued_seqs == 1, "the one over waits");
}

static void cancel(void)
{
	zp_sched s;
	double wake;
	zp_sched_init(&s, 8, 1000, 10, 0.010);
	zp_sched_admit(&s, mk(0, 1, 3), 0);
	zp_sched_admit(&s, mk(1, 3, 4), 0);
	zp_sched_admit(&s, mk(2, 1, 2), 0);
	CHECK(zp_sched_cancel(&s, &job[2]), "a queued job: nothing out, free it now");
	zp_sched_finish(&s, &job[2]);
	CHECK(s.queued_tokens == 15 && s.requests == 2, "its tokens leave the queue");
	CHECK(zp_sched_next_batch(&s, 0, true, &batch, &wake) == 2, "job 0 and job 1's first");
	CHECK(!zp_sched_cancel(&s, &job[1]), "job 1 partly out: the batch frees it");
	CHECK(!s.head && s.queued_tokens == 0 && s.queued_seqs == 0, "its queued rest dropped");
	CHECK(zp_sched_next_batch(&s, 1, true, &batch, &wake) == 0, "nothing left to cut");
	CHECK(zp_sched_seq_done(&s, &job[0]), "job 0 completes");
	CHECK(zp_sched_seq_done(&s, &job[1]), "cancelled job 1 completes when its last out "
	      "sequence comes back");
	zp_sched_finish(&s, &job[0]);
	zp_sched_finish(&s, &job[1]);
	CHECK(s.requests == 0 && s.tokens == 0, "all released");
}

int main(void)
{
	admission();
	fifo_and_budget();
	seq_cap();
	cancel();
	return check_exit("test_sched");
}
