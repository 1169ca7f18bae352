/* test_device_fault.c -- a device fault fails its batch, never the process
   (DESIGN.md section 7), on the sim device (the cuda backend's host path):
   - the backend: after a failed launch, status and sync return -1 naming the
     device fault, the failed op wrote nothing, every later op is a no-op
     (guard bytes in its output stay), download zero-fills; a new instance
     computes again;
   - the engine: with the fault armed (the n-th launch or GEMM of the
     process; early, mid-layer and late in the forward), the batch fails with
     an error naming it, the executor resets (a fresh backend), and the next
     batch gives the bits of a clean run;
   - groups (2 executors whose forwards run together): dpep, where a fault
     fails the round (no member returns outputs its faulted peer's experts
     never computed) and the member resets; asyncep over nccl's lockstep,
     where the faulted member walks its remaining rounds (no peer waits for
     it forever), is marked down, and so is its group: later batches fail at
     once, none hangs. */
#include <string.h>

#include "check.h"
#include "reqs.h"
#include "devrt.h"
#include "device.h"
#include "engine.h"

#define MODEL "tests/models/odd" /* 3 MoE layers: ~50 launches a forward */
#define SEQS 4
#define ROWS 5
#define COLS 24

/* One batch of the SEQS requests on the engine's executor: 0, or -1 with its
   error in e. */
static int run(zp_engine *g, zp_req *r, zp_err *e)
{
	zp_batch *b = zp_engine_batch(g);
	CHECK(b, "the executor is idle");
	if (!b)
		return -1;
	b->n = SEQS;
	for (int s = 0; s < SEQS; s++)
		b->req[s] = &r[s];
	zp_engine_submit(g, b);
	zp_engine_flush(g);
	b = zp_engine_wait(g);
	ZP_ASSERT(b);
	int rc = b->failed ? -1 : 0;
	snprintf(e->msg, sizeof e->msg, "%s", b->failed ? b->err : "");
	zp_engine_release(g, b);
	return rc;
}

static void check_engine(void)
{
	static const long at[] = { 1, 20, 45 }; /* embed; layer 2; the last layer or outputs */
	zp_model m;
	zp_err e;
	zp_req ref[SEQS], got[SEQS];
	CHECK(zp_model_load(&m, MODEL, ZP_W_F32, zp_device_layout(ZP_DEV_SIM), 2, NULL, &e) == 0,
	      "load: %s", e.msg);
	zp_engine_cfg c = { .executors = 1, .parallel = ZP_PAR_REPLICATE, .transport = "auto",
			    .threads_per_executor = 2, .batch_tokens_max = 4096,
			    .device = ZP_DEV_SIM };
	zp_engine *g = zp_engine_start(&m, &c, &e);
	CHECK(g, "sim start: %s", e.msg);
	if (!g)
		return;
	make_reqs(ref, SEQS, m.cfg.vocab, 5);
	CHECK(run(g, ref, &e) == 0, "clean run: %s", e.msg);
	for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
		make_reqs(got, SEQS, m.cfg.vocab, 5);
		zp_drt_sim_fail_after(at[i]);
		CHECK(run(g, got, &e) == -1, "fault at launch %ld: the batch fails", at[i]);
		CHECK(strstr(e.msg, "device fault: ") && strstr(e.msg, "injected fault"),
		      "fault at launch %ld: the error names it: %s", at[i], e.msg);
		printf("fault at launch %ld: batch failed: %s\n", at[i], e.msg);
		free_reqs(got, SEQS);
		make_reqs(got, SEQS, m.cfg.vocab, 5);
		CHECK(run(g, got, &e) == 0, "fault at launch %ld: the executor came back: %s", at[i],
		      e.msg);
		CHECK(same_reqs(ref, got, SEQS), "fault at launch %ld: the next batch has a clean run's bits",
		      at[i]);
		free_reqs(got, SEQS);
	}
	zp_engine_stop(g);
	free_reqs(ref, SEQS);
	zp_model_free(&m);
}

/* Batch SEQS requests on each of the group's two executors (they start
   together); the number that failed, the last error in e, which failed in
   bad[2] (NULL: not asked). */
static int run_group(zp_engine *g, zp_req *r, zp_err *e, bool *bad)
{
	int failed = 0;
	for (int x = 0; x < 2; x++) {
		zp_batch *b = zp_engine_batch(g);
		CHECK(b && b->exec == x, "executor %d is idle", x);
		if (!b)
			return 2;
		b->n = SEQS / 2;
		for (int s = 0; s < b->n; s++)
			b->req[s] = &r[x * (SEQS / 2) + s];
		zp_engine_submit(g, b);
	}
	zp_engine_flush(g);
	zp_batch *b;
	while ((b = zp_engine_wait(g))) {
		if (b->failed) {
			failed++;
			snprintf(e->msg, sizeof e->msg, "%s", b->err);
		}
		if (bad)
			bad[b->exec] = b->failed;
		zp_engine_release(g, b);
	}
	return failed;
}

static void check_group(enum zp_parallel par, const char *transport)
{
	zp_model m;
	zp_err e;
	zp_req ref[SEQS], got[SEQS];
	const char *name = zp_parallel_name(par);
	CHECK(zp_model_load(&m, MODEL, ZP_W_F32, zp_device_layout(ZP_DEV_SIM), 2, NULL, &e) == 0,
	      "load: %s", e.msg);
	zp_engine_cfg c = { .executors = 2, .parallel = par, .transport = transport,
			    .threads_per_executor = 1, .batch_tokens_max = 4096,
			    .device = ZP_DEV_SIM };
	zp_engine *g = zp_engine_start(&m, &c, &e);
	CHECK(g, "%s start: %s", name, e.msg);
	if (!g)
		return;
	make_reqs(ref, SEQS, m.cfg.vocab, 9);
	CHECK(run_group(g, ref, &e, NULL) == 0, "%s: clean run: %s", name, e.msg);
	make_reqs(got, SEQS, m.cfg.vocab, 9);
	zp_drt_sim_fail_after(30); /* mid-forward, in one of the two */
	bool bad[2] = { false, false };
	int failed = run_group(g, got, &e, bad);
	printf("%s %s: fault mid-forward: %d of 2 batches failed: %s\n", name, transport, failed,
	       e.msg);
	if (par == ZP_PAR_DPEP) /* its experts computed nothing for the other */
		CHECK(failed == 2, "dpep: a fault fails the whole round (%d of 2 failed)", failed);
	else /* the peer gathered from the faulted member's memory, which held */
		CHECK(failed >= 1, "asyncep: the faulted member's batch fails");
	for (int x = 0; x < 2; x++) /* a batch that came back whole is exact */
		CHECK(bad[x] || same_reqs(ref + x * (SEQS / 2), got + x * (SEQS / 2), SEQS / 2),
		      "%s: executor %d's batch came back, with a clean run's bits", name, x);
	free_reqs(got, SEQS);
	make_reqs(got, SEQS, m.cfg.vocab, 9);
	failed = run_group(g, got, &e, NULL);
	if (par == ZP_PAR_DPEP) { /* the member reset: the group is exact again */
		CHECK(failed == 0, "dpep: the group came back: %s", e.msg);
		CHECK(failed || same_reqs(ref, got, SEQS), "dpep: with a clean run's bits");
	} else { /* its shards stayed for its peers: down, and its group with it */
		CHECK(failed == 2 && strstr(e.msg, "down"), "%s: the group is down: %d failed, %s",
		      name, failed, e.msg);
		printf("%s %s: next round: %d of 2 refused: %s\n", name, transport, failed, e.msg);
	}
	free_reqs(got, SEQS);
	zp_engine_stop(g);
	free_reqs(ref, SEQS);
	zp_model_free(&m);
}

/* The sim's backend memory is host memory: the test reads it directly. */
static void check_backend(void)
{
	zp_model m;
	zp_err e = { "" };
	float x[ROWS * COLS], y[ROWS * COLS], back[ROWS * COLS];
	CHECK(zp_model_load(&m, MODEL, ZP_W_F32, zp_device_layout(ZP_DEV_SIM), 2, NULL, &e) == 0,
	      "load: %s", e.msg);
	zp_device_opts o = { .threads = 2, .cfg = &m.cfg, .batch_tokens_max = 64 };
	zp_backend *b = zp_device_backend_new(ZP_DEV_SIM, &o, &e);
	CHECK(b, "sim backend: %s", e.msg);
	if (!b)
		return;
	const struct zp_backend_ops *op = b->ops;
	for (int i = 0; i < ROWS * COLS; i++) {
		x[i] = check_frand(-1, 1);
		y[i] = check_frand(-1, 1);
	}
	size_t bytes = sizeof x;
	float *dx = op->alloc(b, bytes), *dy = op->alloc(b, bytes), *dg = op->alloc(b, bytes);
	uint16_t *d16 = op->alloc(b, bytes);
	op->upload(b, dx, x, bytes);
	op->upload(b, dy, y, bytes);
	memset(dg, 0x5a, bytes); /* the guard */
	memset(d16, 0x5a, bytes);
	CHECK(op->status(b, NULL) == 0 && op->sync(b, NULL) == 0, "a fresh backend has no fault");

	zp_drt_sim_fail_after(1);
	op->residual(b, ROWS, COLS, (zp_view){ dx, COLS }, (zp_view){ dy, COLS }, NULL);
	CHECK(op->sync(b, &e) == -1 && strstr(e.msg, "device fault: kernel launch: injected fault"),
	      "sync after the failed launch: %s", e.msg);
	e.msg[0] = 0;
	CHECK(op->status(b, &e) == -1 && strstr(e.msg, "device fault: "), "status: %s", e.msg);
	CHECK(!memcmp(dx, x, bytes), "the failed launch wrote nothing");

	/* every op after it is a no-op */
	op->copy(b, dg, dx, bytes);
	op->residual(b, ROWS, COLS, (zp_view){ dg, COLS }, (zp_view){ dy, COLS }, NULL);
	op->to_bf16(b, ROWS, COLS, (zp_view){ dx, COLS }, (zp_view){ d16, COLS });
	op->upload(b, dg, y, bytes);
	op->rmsnorm(b, ROWS, COLS, (zp_view){ dx, COLS }, NULL, dy, 1e-6f, (zp_view){ dg, COLS },
		    (zp_view){ NULL, 0 });
	CHECK(op->sync(b, NULL) == -1 && op->status(b, NULL) == -1, "the fault is sticky");
	bool guard = true;
	for (size_t i = 0; i < bytes; i++)
		guard = guard && ((unsigned char *)dg)[i] == 0x5a && ((unsigned char *)d16)[i] == 0x5a;
	CHECK(guard, "ops after the fault leave their outputs' guard bytes");
	memset(back, 0x5a, bytes);
	op->download(b, back, dx, bytes);
	bool zero = true;
	for (int i = 0; i < ROWS * COLS; i++)
		zero = zero && back[i] == 0.0f;
	CHECK(zero, "download after the fault zero-fills");
	void *bufs[] = { dx, dy, dg, d16 };
	for (int i = 0; i < 4; i++) /* a faulted backend still gives its memory back */
		op->mfree(b, bufs[i]);
	op->free(b); /* frees a faulted backend (no panic, nothing leaked under asan) */

	b = zp_device_backend_new(ZP_DEV_SIM, &o, &e);
	CHECK(b, "a new instance after the fault: %s", e.msg);
	op = b->ops;
	dx = op->alloc(b, bytes);
	dy = op->alloc(b, bytes);
	op->upload(b, dx, x, bytes);
	op->upload(b, dy, y, bytes);
	op->residual(b, ROWS, COLS, (zp_view){ dx, COLS }, (zp_view){ dy, COLS }, NULL);
	op->download(b, back, dx, bytes);
	CHECK(op->sync(b, NULL) == 0, "the new instance has no fault");
	bool sum = true;
	for (int i = 0; i < ROWS * COLS; i++)
		sum = sum && back[i] == x[i] + y[i];
	CHECK(sum, "the new instance computes");
	op->mfree(b, dx);
	op->mfree(b, dy);
	op->free(b);
	zp_model_free(&m);
}

int main(void)
{
	check_backend();
	check_engine();
	check_group(ZP_PAR_DPEP, "auto");
	check_group(ZP_PAR_ASYNCEP, "nccl");
	return check_exit("test_device_fault");
}
