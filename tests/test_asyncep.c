/* test_asyncep.c -- AsyncEP against one executor:
   - placement: each executor's resident bytes equal the formula (dense +
     its shards + the whole first MoE layer + two full-layer buffers), the
     ranges cover every expert once, N need not divide E;
   - equivalence: asyncep with N = 2, 3, 4, dpep with N = 2, 3 (every
     executor starting each forward together, some without tokens) and
     replicate with N = 2 give
     bit-identical fp32 and bf16 results to N = 1 for the same batches, on
     models with dense layers between MoE ones (sparse-step, mlp-only) and
     expert counts N does not divide (odd: 10 experts);
   - every executor's gathers ran (per-layer stats);
   - faults: a transport error fails that forward with a clear error; the
     executor recovers and the next forward is exact again;
   - shutdown with gathers in flight (under make tsan). */
#include <math.h>
#include <string.h>

#include "backend_cuda.h"
#include "check.h"
#include "reqs.h"
#include "device.h"
#include "engine.h"

#define SEQS 16 /* four batches of 4: every executor runs one when N <= 4 */

/* Run the same SEQS requests split in batches of 4, batch j on executor j % N;
   dpep starts every executor each round (those without a batch empty). */
static int run(zp_engine *g, zp_req *r, zp_err *e)
{
	int failed = 0, n = zp_engine_executors(g);
	for (int j0 = 0; j0 < SEQS / 4; j0 += n) {
		for (int x = 0; x < n && j0 + x < SEQS / 4; x++) {
			zp_batch *b = zp_engine_batch(g);
			CHECK(b && b->exec == x, "executor %d is idle", x);
			b->n = 4;
			for (int s = 0; s < b->n; s++)
				b->req[s] = &r[(j0 + x) * 4 + s];
			zp_engine_submit(g, b);
		}
		zp_engine_flush(g);
		zp_batch *b;
		while ((b = zp_engine_wait(g))) {
			if (b->failed) {
				failed = 1;
				snprintf(e->msg, sizeof e->msg, "%s", b->err);
			}
			zp_engine_release(g, b);
		}
	}
	return failed;
}

static void check_model(const char *dir, enum zp_wtype wt)
{
	zp_model m;
	zp_err e;
	zp_req ref[SEQS], got[SEQS];
	CHECK(zp_model_load(&m, dir, wt, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) == 0, "load %s: %s", dir, e.msg);
	make_reqs(ref, SEQS, m.cfg.vocab, 7);
	zp_engine *g;
	zp_engine_cfg one = { .executors = 1, .parallel = ZP_PAR_REPLICATE, .transport = "cpu",
			      .threads_per_executor = 1, .batch_tokens_max = 4096 };
	CHECK((g = zp_engine_start(&m, &one, &e)), "start: %s", e.msg);
	CHECK(run(g, ref, &e) == 0, "reference run");
	zp_engine_stop(g);
	zp_model_free(&m);

	static const struct { int n; enum zp_parallel p; int window; } cases[] = {
		{ 2, ZP_PAR_REPLICATE, 0 }, { 1, ZP_PAR_ASYNCEP, 0 }, { 2, ZP_PAR_ASYNCEP, 0 },
		{ 3, ZP_PAR_ASYNCEP, 0 },   { 4, ZP_PAR_ASYNCEP, 0 }, { 2, ZP_PAR_DPEP, 0 },
		{ 3, ZP_PAR_DPEP, 0 },	    { 1, ZP_PAR_ASYNCEP, 2 }, { 2, ZP_PAR_ASYNCEP, 2 },
		{ 3, ZP_PAR_ASYNCEP, 3 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		CHECK(zp_model_load(&m, dir, wt, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) == 0, "reload");
		size_t dense = m.arena_bytes, all = m.expert_bytes_total;
		zp_engine_cfg c = { .executors = cases[i].n, .parallel = cases[i].p, .transport = "cpu",
				    .threads_per_executor = 1, .batch_tokens_max = 4096,
				    .offload_window = cases[i].window };
		CHECK((g = zp_engine_start(&m, &c, &e)), "start %s N=%d: %s",
		      zp_parallel_name(cases[i].p), cases[i].n, e.msg);
		/* placement and the resident-bytes formula */
		int moe = 0, first = -1, covered = 0;
		for (int l = 0; l < m.cfg.layers; l++)
			if (m.layers[l].sparse && (moe++, first < 0))
				first = l;
		size_t layer = all / (size_t)moe, ebytes = layer / (size_t)m.cfg.experts;
		for (int x = 0; x < zp_engine_executors(g); x++) {
			int lo, hi;
			zp_place_range(zp_engine_place(g), x, &lo, &hi);
			bool repl = cases[i].p == ZP_PAR_REPLICATE ||
				    (zp_engine_executors(g) == 1 && !cases[i].window); /* N = 1: in place */
			if (repl) {
				CHECK(lo == 0 && hi == m.cfg.experts, "replicate: every executor all experts");
				covered = hi;
			} else {
				CHECK(lo == covered && hi > lo, "asyncep: the ranges tile the experts");
				covered = hi;
			}
			size_t part = (size_t)(hi - lo) * ebytes;
			size_t want = repl ? dense + all :
				      cases[i].window ? dense + layer + (size_t)cases[i].window * part + 2 * layer :
				      cases[i].p == ZP_PAR_DPEP	     ? dense + (size_t)moe * (hi - lo) * ebytes :
					dense + layer + (size_t)(moe - 1) * (hi - lo) * ebytes + 2 * layer;
			CHECK(zp_place_resident_bytes(zp_engine_place(g), x) == want, "%s N=%d executor %d: resident %zu, "
			      "formula %zu", dir, zp_engine_executors(g), x, zp_place_resident_bytes(zp_engine_place(g), x), want);
		}
		CHECK(covered == m.cfg.experts, "every expert placed");
		make_reqs(got, SEQS, m.cfg.vocab, 7);
		CHECK(run(g, got, &e) == 0, "run: %s", e.msg);
		CHECK(same_reqs(ref, got, SEQS), "%s %s %s N=%d: results differ from one executor", dir,
		      wt == ZP_W_F32 ? "fp32" : "bf16", zp_parallel_name(cases[i].p), cases[i].n);
		if (cases[i].p == ZP_PAR_ASYNCEP && (zp_engine_executors(g) > 1 || cases[i].window)) { /* every
						executor ran and streamed its layers */
			zp_place_layer_stats st[64];
			for (int x = 0; x < zp_engine_executors(g); x++) {
				zp_place_stats(zp_engine_place(g), x, st);
				for (int l = 0; l < m.cfg.layers; l++)
					CHECK(st[l].forwards > 0 && st[l].layer_s > 0 &&
					      st[l].wait_s <= st[l].layer_s, "stats of executor %d layer %d", x, l);
			}
		}
		free_reqs(got, SEQS);
		zp_engine_stop(g);
		zp_model_free(&m);
	}
	free_reqs(ref, SEQS);
}

/* The sim device (the CUDA backend's host path, each executor its own sim
   device): AsyncEP over 2 to 4 sim executors, its shards and buffers in
   device memory and its gathers on the devices' copy queues (p2p, and nccl's
   collective twin in lockstep), resident and offloading; dpep (its
   all-to-all of peer copies on each member's stream); and replicate, give
   the bits of one executor. The same on a GPU where one is. */
static void check_dev(enum zp_device dev, const char *dir, enum zp_wtype wt)
{
	static const struct { int n; enum zp_parallel p; int window; const char *t; } cases[] = {
		{ 1, ZP_PAR_REPLICATE, 0, "p2p" }, { 2, ZP_PAR_ASYNCEP, 0, "p2p" },
		{ 3, ZP_PAR_ASYNCEP, 0, "p2p" },   { 4, ZP_PAR_ASYNCEP, 0, "p2p" },
		{ 2, ZP_PAR_ASYNCEP, 0, "nccl" },  { 3, ZP_PAR_ASYNCEP, 0, "nccl" },
		{ 4, ZP_PAR_ASYNCEP, 0, "nccl" },  { 2, ZP_PAR_ASYNCEP, 2, "p2p" },
		{ 3, ZP_PAR_ASYNCEP, 2, "nccl" },  { 2, ZP_PAR_REPLICATE, 0, "p2p" },
		{ 2, ZP_PAR_DPEP, 0, "p2p" },      { 3, ZP_PAR_DPEP, 0, "p2p" },
		{ 4, ZP_PAR_DPEP, 0, "p2p" },
	};
	zp_req ref[SEQS], got[SEQS];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		zp_model m;
		zp_engine *g;
		zp_err e;
		zp_req *r = i ? got : ref;
		CHECK(zp_model_load(&m, dir, wt, zp_device_layout(dev), 2, NULL, &e) == 0,
		      "load %s: %s", dir, e.msg);
		zp_engine_cfg c = { .executors = cases[i].n, .parallel = cases[i].p,
				    .transport = cases[i].t, .threads_per_executor = 1,
				    .batch_tokens_max = 4096, .offload_window = cases[i].window,
				    .device = dev };
		g = zp_engine_start(&m, &c, &e);
		if (!g && dev == ZP_DEV_CUDA && strstr(e.msg, "share GPU")) { /* nccl, one GPU */
			printf("cuda %s N=%d: skipped: %s\n", cases[i].t, cases[i].n, e.msg);
			zp_model_free(&m);
			continue;
		}
		CHECK(g, "%s start %s %s N=%d: %s", zp_device_name(dev), zp_parallel_name(cases[i].p),
		      cases[i].t, cases[i].n, e.msg);
		make_reqs(r, SEQS, m.cfg.vocab, 7);
		CHECK(run(g, r, &e) == 0, "sim run: %s", e.msg);
		if (i) {
			CHECK(same_reqs(ref, got, SEQS), "%s %s %s %s %s N=%d window %d: results differ from one "
			      "executor", dir, wt == ZP_W_F32 ? "fp32" : "bf16", zp_device_name(dev),
			      zp_parallel_name(cases[i].p), cases[i].t, cases[i].n, cases[i].window);
			free_reqs(got, SEQS);
		}
		zp_engine_stop(g);
		zp_model_free(&m);
	}
	free_reqs(ref, SEQS);
}

/* A gather that fails fails its forward, with the transport's error; the same
   executor then runs exactly again. */
static void check_fault(void)
{
	zp_model m;
	zp_err e;
	zp_req ref[SEQS], got[SEQS];
	zp_engine *g;
	CHECK(zp_model_load(&m, "tests/models/odd", ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) == 0, "load");
	make_reqs(ref, SEQS, m.cfg.vocab, 11);
	make_reqs(got, SEQS, m.cfg.vocab, 11);
	zp_engine_cfg c = { .executors = 2, .parallel = ZP_PAR_ASYNCEP, .transport = "cpu",
			    .threads_per_executor = 1, .batch_tokens_max = 4096 };
	CHECK((g = zp_engine_start(&m, &c, &e)), "start");
	CHECK(run(g, ref, &e) == 0, "clean run");
	/* the start's calibration: a real rate, a real gather time, and T from
	   them (no speed threshold: sanitizers and a loaded machine are slow, and
	   that is no fault); the scheduler starts from it */
	static const zp_place_calib none;
	const zp_place_calib *cal = zp_engine_calib(g);
	CHECK(cal, "asyncep in effect: the engine calibrated at start");
	cal = cal ? cal : &none;
	CHECK(cal->flops_per_s > 0 && isfinite(cal->flops_per_s) && cal->gather_s > 0 && cal->gamma == 1.2 &&
	      cal->threshold_flops == cal->gather_s * cal->flops_per_s * cal->gamma &&
	      cal->threshold_tokens > 0, "calibration: F %g, t_gather %g, T %g (%g tokens)",
	      cal->flops_per_s, cal->gather_s, cal->threshold_flops, cal->threshold_tokens);
	CHECK(zp_engine_sched(g)->gather_s == cal->gather_s &&
	      zp_engine_sched(g)->flops_per_s == cal->flops_per_s, "the scheduler's T from it");
	zp_place_inject_fault(zp_engine_place(g), 1);
	e.msg[0] = 0;
	CHECK(run(g, got, &e) == 1, "a failed gather fails the forward");
	CHECK(strstr(e.msg, "gather of layer") && strstr(e.msg, "injected fault"),
	      "the error says what failed: %s", e.msg);
	free_reqs(got, SEQS);
	make_reqs(got, SEQS, m.cfg.vocab, 11);
	CHECK(run(g, got, &e) == 0, "the executor recovers");
	CHECK(same_reqs(ref, got, SEQS), "and is exact again");
	zp_engine_stop(g);
	free_reqs(ref, SEQS);
	free_reqs(got, SEQS);
	zp_model_free(&m);
}

/* Stop with gathers queued and running: the comm thread finishes them and
   exits, then each source detaches; nothing is touched after free (ASAN,
   TSan). On cpu, and on sim devices (their copy queues still running). */
static void check_shutdown_in_flight(enum zp_device d)
{
	zp_model m;
	zp_err e;
	zp_backend *be[3];
	CHECK(zp_model_load(&m, "tests/models/sparse-step", ZP_W_F32, zp_device_layout(d), 2, NULL,
			    &e) == 0, "load");
	zp_transport *t = zp_device_transport_new(d, "auto", &e);
	zp_place *ep = zp_place_new(&m, d, 3, ZP_PAR_ASYNCEP, 0, t, &e);
	CHECK(ep, "ep: %s", e.msg);
	zp_device_opts o = { .threads = 1, .cfg = &m.cfg, .batch_tokens_max = 64 };
	for (int x = 0; x < 3; x++) { /* every executor's memory, as the engine's start */
		const zp_expert_src *s = zp_place_source(ep, x);
		be[x] = zp_device_backend_new(d, &o, &e);
		CHECK(be[x] && s->attach(s->ctx, be[x], &e) == 0, "attach: %s", e.msg);
	}
	for (int x = 0; x < 3; x++) { /* each executor starts a forward: gathers go out */
		const zp_expert_src *s = zp_place_source(ep, x);
		s->layer_begin(s->ctx, 0);
	}
	zp_place_quiesce(ep);
	for (int x = 0; x < 3; x++) { /* each forward ends: its copies have landed */
		const zp_expert_src *s = zp_place_source(ep, x);
		s->end(s->ctx);
	}
	for (int x = 0; x < 3; x++) {
		const zp_expert_src *s = zp_place_source(ep, x);
		s->detach(s->ctx);
		be[x]->ops->free(be[x]);
	}
	zp_place_free(ep);
	zp_model_free(&m);
}

int main(void)
{
	zp_err e;
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "nccl", &e) && strstr(e.msg, "use cpu"),
	      "nccl refused for cpu executors: %s", e.msg);
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "p2p", &e) && strstr(e.msg, "use cpu"),
	      "p2p refused for cpu executors: %s", e.msg);
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "tcp", &e) && strstr(e.msg, "auto, cpu, nccl or p2p"),
	      "an unknown transport refused: %s", e.msg);
	CHECK(!zp_device_transport_new(ZP_DEV_SIM, "cpu", &e) && strstr(e.msg, "p2p or nccl"),
	      "cpu refused for sim executors: %s", e.msg);
	enum zp_parallel p;
	CHECK(zp_parallel_parse("dpep", &p, &e) == 0 && p == ZP_PAR_DPEP, "dpep");
	CHECK(zp_parallel_parse("tp", &p, &e) == -1 && strstr(e.msg, "asyncep, dpep or replicate"),
	      "unknown parallel refused: %s", e.msg);
	check_model("tests/models/odd", ZP_W_F32);
	/* the sim's copies land late (the first model's cases: enough to show
	   it, and the test stays short): a read not ordered after its gather (a
	   missing device-side wait) reads a stale buffer and differs */
	setenv("ZP_SIM_COPY_DELAY_US", "20000", 1);
	check_dev(ZP_DEV_SIM, "tests/models/odd", ZP_W_F32);
	unsetenv("ZP_SIM_COPY_DELAY_US");
	check_dev(ZP_DEV_SIM, "tests/models/odd", ZP_W_BF16);
	check_dev(ZP_DEV_SIM, "tests/models/sparse-step", ZP_W_BF16);
	check_model("tests/models/odd", ZP_W_BF16);
	check_model("tests/models/sparse-step", ZP_W_F32);
	check_model("tests/models/mlp-only", ZP_W_F32);
	check_model("tests/models/tiny-tok", ZP_W_BF16);
	check_fault();
	check_shutdown_in_flight(ZP_DEV_CPU);
	check_shutdown_in_flight(ZP_DEV_SIM);
	/* the same on a GPU, where one is (tools/gpu_check.sh runs this there) */
	zp_device_opts o = { .threads = 1, .cfg = NULL, .batch_tokens_max = 64 };
	zp_config cfg = { .hidden = 64, .ffn = 64, .moe_ffn = 32, .experts = 4, .topk = 2, .moe = true };
	o.cfg = &cfg;
	zp_backend *gpu = zp_device_backend_new(ZP_DEV_CUDA, &o, &e);
	if (!gpu) {
		printf("cuda: skipped: %s\n", e.msg);
	} else {
		gpu->ops->free(gpu);
		check_dev(ZP_DEV_CUDA, "tests/models/odd", ZP_W_F32);
		check_dev(ZP_DEV_CUDA, "tests/models/sparse-step", ZP_W_BF16);
	}
	return check_exit("test_asyncep");
}
