/* test_engine.c -- the engine's one face (engine.h): jobs in, finished jobs
   out, the scheduler, placement and calibration behind it.
   - every submitted job comes back once, whole, its results bit-identical to
     the same sequences run by hand (the bench's path) on one executor: jobs
     of one to three sequences, every policy, replicate, asyncep and dpep
     over two executors; the admissions are all released after;
   - the engine's own accessors: per-layer stats taken at each return
     (asyncep), the calibration where asyncep is in effect (and none where
     not);
   - a full queue refuses (-1) and the caller keeps the job;
   - cancel: a queued job leaves at once (true) and never comes back; one
     with a batch out comes back, cancelled, with it. */
#include <string.h>

#include "check.h"
#include "reqs.h"
#include "engine.h"

#define SEQS 12
#define JOBS 6 /* job i holds 1 + i % 3 sequences: 12 in all */
#define LOOPS 1000 /* pump/wait turns a run may take */
#define MODEL "tests/models/odd" /* 10 experts, MoE and dense layers */

/* The reference: one executor, batches of 4 filled by hand. */
static void run_by_hand(zp_model *m, zp_req *r)
{
	zp_err e;
	zp_engine_cfg c = { .executors = 1, .parallel = ZP_PAR_REPLICATE, .transport = "cpu",
			    .threads_per_executor = 1, .batch_tokens_max = 4096 };
	zp_engine *g = zp_engine_start(m, &c, &e);
	ZP_ASSERT(g);
	for (int s0 = 0; s0 < SEQS; s0 += 4) {
		zp_batch *b = zp_engine_batch(g);
		ZP_ASSERT(b);
		b->n = 4;
		for (int k = 0; k < 4; k++)
			b->req[k] = &r[s0 + k];
		zp_engine_submit(g, b);
		zp_engine_flush(g);
		b = zp_engine_wait(g);
		CHECK(b && !b->failed, "reference batch");
		zp_engine_release(g, b);
	}
	zp_engine_stop(g);
}

static zp_engine *start(zp_model *m, int n, enum zp_parallel par, enum zp_sched_policy pol,
			int requests_max)
{
	zp_err e;
	zp_engine_cfg c = { .executors = n, .parallel = par, .transport = "cpu",
			    .threads_per_executor = 1, .batch_tokens_max = 4096,
			    .queue = { .policy = pol, .requests_max = requests_max,
				       .tokens_max = 1 << 20, .batch_tokens_max = 64,
				       .min_tokens = 16 } };
	zp_engine *g = zp_engine_start(m, &c, &e);
	CHECK(g, "start %s: %s", zp_parallel_name(par), e.msg);
	return g;
}

/* Every job submitted, pumped and waited for until all are back (a fresh
   model each time: asyncep drops the model's own expert blocks). */
static void jobs_back(const zp_req *ref, enum zp_parallel par, enum zp_sched_policy pol)
{
	zp_model mm, *m = &mm;
	zp_err e;
	zp_req got[SEQS];
	zp_job job[JOBS] = { 0 };
	int back[JOBS] = { 0 }, nback = 0, loops = 0;
	const char *tag = zp_sched_policy_name(pol);
	if (zp_model_load(m, MODEL, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e)) {
		CHECK(0, "load: %s", e.msg);
		return;
	}
	make_reqs(got, SEQS, m->cfg.vocab, 11);
	zp_engine *g = start(m, 2, par, pol, JOBS);
	if (!g) {
		free_reqs(got, SEQS);
		zp_model_free(m);
		return;
	}
	for (int i = 0, s = 0; i < JOBS; s += job[i++].nseq) {
		job[i].seq = &got[s];
		job[i].nseq = 1 + i % 3;
		for (int k = 0; k < job[i].nseq; k++)
			job[i].tokens += got[s + k].ntok;
		CHECK(zp_engine_submit_job(g, &job[i], zp_now_s()) == 0, "%s: job %d admitted", tag, i);
	}
	CHECK(zp_engine_sched(g)->requests == JOBS, "%s: %d admitted", tag, JOBS);
	while (nback < JOBS && loops++ < LOOPS) {
		zp_engine_pump(g, zp_now_s(), true);
		for (zp_job *j; (j = zp_engine_wait_job(g));) {
			int i = (int)(j - job);
			ZP_ASSERT(i >= 0 && i < JOBS);
			back[i]++;
			nback++;
			CHECK(!j->failed && j->done == j->nseq, "%s: job %d whole (%d of %d): %s", tag, i,
			      j->done, j->nseq, j->err);
		}
	}
	for (int i = 0; i < JOBS; i++)
		CHECK(back[i] == 1, "%s: job %d came back %d times", tag, i, back[i]);
	CHECK(!zp_engine_poll_job(g), "%s: nothing more", tag);
	CHECK(zp_engine_sched(g)->requests == 0 && zp_engine_sched(g)->tokens == 0,
	      "%s: every admission released (%d left)", tag, zp_engine_sched(g)->requests);
	CHECK(same_reqs(ref, got, SEQS), "%s %s: the results are the hand-run ones", tag,
	      zp_parallel_name(par));
	long fw = 0;
	for (int x = 0; x < 2; x++)
		for (int l = 0; l < m->cfg.layers; l++)
			fw += zp_engine_layer_stats(g)[(size_t)x * m->cfg.layers + l].forwards;
	CHECK(par != ZP_PAR_ASYNCEP || fw > 0, "%s: per-layer stats taken as batches came back",
	      tag); /* (asyncep's gathers are what they time) */
	CHECK((zp_engine_calib(g) != NULL) == (par == ZP_PAR_ASYNCEP),
	      "%s: calibrated where asyncep is in effect only", tag);
	CHECK(zp_engine_parallel(g) == par && zp_engine_resident_bytes(g) > 0, "%s: placement", tag);
	zp_engine_stop(g);
	zp_model_free(m);
	free_reqs(got, SEQS);
}

/* A full queue, then cancel before and after dispatch. */
static void full_and_cancel(zp_model *m)
{
	zp_req r[3];
	zp_job a = { .seq = &r[0], .nseq = 1 }, b = { .seq = &r[1], .nseq = 1 },
	       c = { .seq = &r[2], .nseq = 1 };
	make_reqs(r, 3, m->cfg.vocab, 5);
	a.tokens = r[0].ntok;
	b.tokens = r[1].ntok;
	c.tokens = r[2].ntok;
	zp_engine *g = start(m, 2, ZP_PAR_REPLICATE, ZP_SCHED_FIFO, 2);
	if (!g) {
		free_reqs(r, 3);
		return;
	}
	double now = zp_now_s();
	CHECK(zp_engine_submit_job(g, &a, now) == 0 && zp_engine_submit_job(g, &b, now) == 0,
	      "two admitted");
	CHECK(zp_engine_submit_job(g, &c, now) == -1, "the third: queue full");
	CHECK(zp_engine_cancel(g, &a), "a queued job leaves at once");
	CHECK(zp_engine_sched(g)->requests == 1, "its admission released");
	zp_engine_pump(g, now, true); /* b goes out */
	CHECK(zp_engine_busy(g) == 1, "b is out");
	CHECK(!zp_engine_cancel(g, &b), "b has a batch out: it comes back later");
	CHECK(zp_engine_submit_job(g, &c, now) == 0, "room again for c");
	zp_job *j = zp_engine_wait_job(g);
	CHECK(j == &b && b.cancelled, "b comes back cancelled");
	zp_engine_pump(g, zp_now_s(), true);
	CHECK(zp_engine_busy(g) == 1, "c goes out");
	j = zp_engine_wait_job(g);
	CHECK(j == &c && !c.cancelled && !c.failed && c.done == 1, "c comes back done");
	CHECK(!zp_engine_wait_job(g) && zp_engine_sched(g)->requests == 0,
	      "a never comes back; nothing left admitted");
	zp_engine_stop(g);
	free_reqs(r, 3);
}

int main(void)
{
	zp_model m;
	zp_err e;
	zp_req ref[SEQS];
	zp_log_min = ZP_LOG_WARN;
	if (zp_model_load(&m, MODEL, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e)) {
		fprintf(stderr, "load: %s\n", e.msg);
		return 1;
	}
	make_reqs(ref, SEQS, m.cfg.vocab, 11);
	run_by_hand(&m, ref);
	full_and_cancel(&m);
	zp_model_free(&m);
	static const enum zp_sched_policy pol[] = { ZP_SCHED_FIFO, ZP_SCHED_PREFIX_FLOPS,
						    ZP_SCHED_LEAST_TOKENS, ZP_SCHED_VLLM };
	for (int p = 0; p < 4; p++) {
		jobs_back(ref, ZP_PAR_REPLICATE, pol[p]);
		jobs_back(ref, ZP_PAR_ASYNCEP, pol[p]);
		jobs_back(ref, ZP_PAR_DPEP, pol[p]); /* forwards start together, fillers unseen */
	}
	free_reqs(ref, SEQS);
	printf("test_engine: %s (%d failures)\n", check_failures ? "FAIL" : "ok", check_failures);
	return check_failures ? 1 : 0;
}
