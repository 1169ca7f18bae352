/* test_exec_loss.c -- a lost executor costs no request (issue 17, item 2),
   through the engine's one face (engine.h) under load: JOBS jobs of one to
   three sequences, the queue kept full, on cpu and sim executors, for
   replicate, asyncep and dpep with N = 2..4 executors:
   - ZP_FAULT_EXEC_DIE=K:2 (executor K's second batch faults as a device
     that never comes back): no job fails, every answer has the bits of the
     same run without the fault, the engine counts one executor lost, its
     batch's sequences queued again, and (asyncep, dpep) the experts
     re-placed over the others;
   - ZP_FAULT_EXEC_DIE=K:2:2 (the device comes back at the third try): the
     executor rejoins (the experts re-placed over all again) and later jobs
     are exact too;
   - a real sim device fault mid-load (the batch, under dpep the round, lost
     and run again);
   - one executor lost for good: the queued jobs fail at once, saying so.
   Prints the table (device, mode, N, requests, failed, answers identical).
   Under a sanitizer (10-50x slower) a smaller matrix: N = 2, one rejoin,
   dpep's device fault; each thread hand-off is still crossed. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "reqs.h"
#include "device.h"
#include "devrt.h"
#include "engine.h"

#define MODEL "tests/models/odd" /* 10 experts, MoE and dense layers */
#define JOBS 32
#define SEQS_MAX (3 * JOBS)
#define QUEUE 8 /* jobs admitted at once: the load */
#define LOOPS 2000000 /* pump/wait turns a run may take */
#define VOCAB 331 /* the model's */

typedef struct {
	int requests, failed;
	zp_engine_counts counts;
	char err[ZP_ERR_LEN];
} outcome;

static int nseq_of(int i)
{
	return 1 + i % 3;
}

/* Every job through an engine of n executors (fault as the environment
   says), QUEUE admitted at a time, the results into r. */
static outcome run(enum zp_device dev, enum zp_parallel par, int n, zp_req *r, int nr,
		   double hold_s)
{
	zp_model m;
	zp_err e;
	outcome o = { 0 };
	zp_job job[JOBS] = { 0 };
	if (zp_model_load(&m, MODEL, ZP_W_F32, zp_device_layout(dev), 2, NULL, &e)) {
		CHECK(0, "load: %s", e.msg);
		return o;
	}
	zp_engine_cfg c = { .executors = n, .parallel = par,
			    .transport = dev == ZP_DEV_SIM ? "p2p" : "cpu",
			    .threads_per_executor = 1, .batch_tokens_max = 4096, .device = dev,
			    .queue = { .policy = dev == ZP_DEV_SIM ? ZP_SCHED_FIFO : ZP_SCHED_PREFIX_FLOPS,
				       .requests_max = QUEUE, .tokens_max = 1 << 20,
				       .batch_tokens_max = 48, .min_tokens = 16 } };
	zp_engine *g = zp_engine_start(&m, &c, &e);
	CHECK(g, "start %s N=%d: %s", zp_parallel_name(par), n, e.msg);
	if (!g) {
		zp_model_free(&m);
		return o;
	}
	int next = 0, back = 0, s = 0, loops = 0;
	double t_end = 0;
	while ((back < JOBS || zp_now_s() < t_end) && loops++ < LOOPS) {
		while (next < JOBS) {
			zp_job *j = &job[next];
			if (!j->seq) {
				j->seq = &r[s];
				j->nseq = nseq_of(next);
				for (int k = 0; k < j->nseq; k++)
					j->tokens += r[s + k].ntok;
				ZP_ASSERT(s + j->nseq <= nr);
			}
			if (zp_engine_submit_job(g, j, zp_now_s()))
				break; /* full: the load */
			s += j->nseq;
			next++;
		}
		double wake = zp_engine_pump(g, zp_now_s(), back + QUEUE >= JOBS);
		zp_job *j = zp_engine_poll_job(g);
		if (!j && !zp_engine_busy(g)) {
			double d = wake > 0 ? wake - zp_now_s() : 0.001;
			if (d > 0)
				usleep((useconds_t)(ZP_MIN(d, 0.01) * 1e6));
			continue;
		}
		if (!j)
			j = zp_engine_wait_job(g);
		for (; j; j = zp_engine_poll_job(g)) {
			back++;
			o.requests++;
			if (j->failed) {
				o.failed++;
				snprintf(o.err, sizeof o.err, "%s", j->err);
			}
			if (back == JOBS)
				t_end = zp_now_s() + hold_s; /* rejoins: let the probes run */
		}
	}
	CHECK(back == JOBS, "%s N=%d: every job came back (%d of %d)", zp_parallel_name(par), n,
	      back, JOBS);
	CHECK(zp_engine_sched(g)->requests == 0, "every admission released");
	o.counts = zp_engine_get_counts(g);
	zp_engine_stop(g);
	zp_model_free(&m);
	return o;
}

static void set_fault(const char *v)
{
	if (v)
		setenv("ZP_FAULT_EXEC_DIE", v, 1);
	else
		unsetenv("ZP_FAULT_EXEC_DIE");
}

/* One row of the table; rejoin: the device comes back. */
static void check_case(enum zp_device dev, enum zp_parallel par, int n, bool rejoin)
{
	zp_req ref[SEQS_MAX], got[SEQS_MAX];
	int nr = 0;
	char fault[32];
	const char *name = zp_parallel_name(par);
	for (int i = 0; i < JOBS; i++)
		nr += nseq_of(i);
	make_reqs(ref, nr, VOCAB, 23);
	make_reqs(got, nr, VOCAB, 23);
	set_fault(NULL);
	outcome clean = run(dev, par, n, ref, nr, 0);
	CHECK(clean.failed == 0 && clean.counts.lost == 0, "%s N=%d: the clean run", name, n);
	snprintf(fault, sizeof fault, "%d:2%s", n - 1, rejoin ? ":2" : "");
	set_fault(fault);
	outcome o = run(dev, par, n, got, nr, rejoin ? 3.5 : 0);
	set_fault(NULL);
	bool same = same_reqs(ref, got, nr);
	printf("| %-4s | %-9s | %d | %-6s | %8d | %6d | %-17s | lost %ld, requeued %ld, "
	       "re-placed %ld, rejoined %ld\n", zp_device_name(dev), name, n,
	       rejoin ? "rejoin" : "die", o.requests, o.failed, same ? "yes" : "NO",
	       o.counts.lost, o.counts.requeued, o.counts.replacements, o.counts.rejoined);
	CHECK(o.failed == 0, "%s N=%d %s: no request failed (%d did: %s)", name, n, fault, o.failed,
	      o.err);
	CHECK(same, "%s N=%d %s: the answers are the clean run's bits", name, n, fault);
	CHECK(o.counts.lost == 1 && o.counts.lost_batches >= 1 && o.counts.requeued >= 1,
	      "%s N=%d %s: one executor lost, its batch queued again (lost %ld, batches %ld, "
	      "requeued %ld)", name, n, fault, o.counts.lost, o.counts.lost_batches,
	      o.counts.requeued);
	CHECK(par == ZP_PAR_REPLICATE || o.counts.replacements >= (rejoin ? 2 : 1),
	      "%s N=%d %s: the experts re-placed (%ld times)", name, n, fault,
	      o.counts.replacements);
	CHECK(rejoin ? o.counts.rejoined == 1 && o.counts.up == n : o.counts.up == n - 1,
	      "%s N=%d %s: %d up at the end, %ld rejoined", name, n, fault, o.counts.up,
	      o.counts.rejoined);
	free_reqs(ref, nr);
	free_reqs(got, nr);
}

/* A real sticky device fault (the sim's, the n-th launch of the process)
   in the middle of the load: the faulted batch (under dpep its whole round)
   comes back lost and runs again; the executor resets (replicate, dpep) or
   goes down, has its experts re-placed and rejoins at its first retry
   (asyncep). No request fails, the bits are the clean run's. */
static void check_device_fault(enum zp_parallel par)
{
	zp_req ref[SEQS_MAX], got[SEQS_MAX];
	int nr = 0;
	const char *name = zp_parallel_name(par);
	for (int i = 0; i < JOBS; i++)
		nr += nseq_of(i);
	make_reqs(ref, nr, VOCAB, 29);
	make_reqs(got, nr, VOCAB, 29);
	outcome clean = run(ZP_DEV_SIM, par, 2, ref, nr, 0);
	zp_drt_sim_fail_after(400); /* a few forwards in */
	outcome o = run(ZP_DEV_SIM, par, 2, got, nr, par == ZP_PAR_ASYNCEP ? 2.5 : 0);
	zp_drt_sim_fail_after(0);
	bool same = same_reqs(ref, got, nr);
	printf("| sim  | %-9s | 2 | device | %8d | %6d | %-17s | lost %ld, lost batches %ld, "
	       "requeued %ld, re-placed %ld, rejoined %ld\n", name, o.requests, o.failed,
	       same ? "yes" : "NO", o.counts.lost, o.counts.lost_batches, o.counts.requeued,
	       o.counts.replacements, o.counts.rejoined);
	CHECK(clean.failed == 0 && o.failed == 0, "%s: device fault: no request failed (%d: %s)",
	      name, o.failed, o.err);
	CHECK(same, "%s: device fault: the answers are the clean run's bits", name);
	CHECK(o.counts.lost_batches >= (par == ZP_PAR_DPEP ? 2 : 1) && o.counts.requeued >= 1,
	      "%s: device fault: the batch (dpep: the round) lost and queued again (%ld, %ld)",
	      name, o.counts.lost_batches, o.counts.requeued);
	CHECK(par == ZP_PAR_ASYNCEP ? o.counts.lost == 1 && o.counts.rejoined == 1 :
				      o.counts.lost == 0, "%s: device fault: %ld lost, %ld rejoined",
	      name, o.counts.lost, o.counts.rejoined);
	CHECK(o.counts.up == 2, "%s: both executors up at the end", name);
	free_reqs(ref, nr);
	free_reqs(got, nr);
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* One executor, lost for good (ZP_FAULT_EXEC_DIE=0:2): nothing can run the
   queued jobs, so they fail at once saying so (none waits for a device that
   may not come back); its lost batch's are among them. Every job comes
   back. */
static void check_all_down(void)
{
	zp_req r[SEQS_MAX];
	int nr = 0;
	for (int i = 0; i < JOBS; i++)
		nr += nseq_of(i);
	make_reqs(r, nr, VOCAB, 31);
	set_fault("0:2");
	outcome o = run(ZP_DEV_CPU, ZP_PAR_REPLICATE, 1, r, nr, 0);
	set_fault(NULL);
	printf("| cpu  | replicate | 1 | die    | %8d | %6d | (none can run)    | lost %ld: %s\n",
	       o.requests, o.failed, o.counts.lost, o.err);
	CHECK(o.requests == JOBS && o.failed > 0 && o.failed < JOBS && o.counts.lost == 1 &&
	      strstr(o.err, "every executor is down"), "all down: the queued jobs fail at once, "
	      "saying so (%d of %d: %s)", o.failed, o.requests, o.err);
	free_reqs(r, nr);
}

int main(void)
{
	zp_log_min = getenv("V") ? ZP_LOG_INFO : ZP_LOG_ERROR;
	static const enum zp_parallel pars[] = { ZP_PAR_REPLICATE, ZP_PAR_ASYNCEP, ZP_PAR_DPEP };
	static const enum zp_device devs[] = { ZP_DEV_CPU, ZP_DEV_SIM };
	printf("| dev  | mode      | N | fault  | requests | failed | answers identical |\n");
	for (int d = 0; d < 2; d++)
		for (int p = 0; p < 3; p++)
			for (int n = 2; n <= (SANITIZED ? 2 : 4); n++)
				check_case(devs[d], pars[p], n, false);
	check_case(ZP_DEV_CPU, ZP_PAR_ASYNCEP, 3, true);
	if (!SANITIZED) {
		check_case(ZP_DEV_SIM, ZP_PAR_DPEP, 2, true);
		check_case(ZP_DEV_CPU, ZP_PAR_REPLICATE, 2, true);
	}
	for (int p = SANITIZED ? 2 : 0; p < 3; p++)
		check_device_fault(pars[p]);
	check_all_down();
	printf("test_exec_loss: %s (%d failures)\n", check_failures ? "FAIL" : "ok", check_failures);
	return check_failures ? 1 : 0;
}
