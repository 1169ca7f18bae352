/* test_sched.c -- the scheduler (src/engine/scheduler.h) on its own, with
   jobs built by hand: admission bounded in requests and in tokens (and
   released by finish); FIFO order across jobs; a batch cut by the token
   budget, by the sequence cap of one forward, and by the wait (not before
   it: the wake-up time is reported); force; a job whose sequences span
   batches; cancel of a queued job and of one partly out. Then the cost
   model against a hand count on a tiny config, and the routing policies
   (scheduler.h): prefix_flops's order (its own matches, then no match, then
   another executor's, which an idle executor takes rather than idle) and
   its load; with no match anywhere, fifo's batches at fifo's moments on a
   virtual clock (fifo_twin); the aging bound against a stream of cache
   hits; least_tokens and vllm choosing differently on one constructed
   state; the shadow from completion records (pending, committed, a failed
   batch, evictions, overflow, more than the cache holds); cancel of routed
   sequences. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "scheduler.h"

#define JOBS 80
#define SEQS 4

static zp_job job[JOBS];
static zp_req seq[JOBS][SEQS];
static zp_batch batch;

/* Job i with n sequences of ntok tokens each, ids unique to (i, k). */
static zp_job *mk(int i, int n, int ntok)
{
	static int32_t uniq[JOBS][SEQS][256];
	memset(&job[i], 0, sizeof job[i]);
	ZP_ASSERT(ntok <= 256);
	for (int k = 0; k < n; k++) {
		memset(&seq[i][k], 0, sizeof seq[i][k]);
		for (int t = 0; t < ntok; t++)
			uniq[i][k][t] = 1000000 + 10000 * i + 1000 * k + t;
		seq[i][k].tokens = uniq[i][k];
		seq[i][k].ntok = ntok;
		seq[i][k].plp_start = -1;
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

/* ---- cost model ---- */

/* 2 MoE layers, H 8, Nq 2, Nkv 1, d 4, E 4, k 2, expert width 6, vocab 10.
   Per token and layer: projections 2*8*(2*4 + 2*1*4) + 2*2*4*8 = 384, router
   2*8*4 = 64, experts 2*2*3*8*6 = 576: 1024. A pair: 4*2*4 = 32. A head row:
   2*8*10 = 160 (80 per layer over 2 layers). */
static zp_config tiny_cfg(void)
{
	zp_config c = { .moe = true, .hidden = 8, .layers = 2, .heads = 2, .kv_heads = 1,
			.head_dim = 4, .ffn = 10, .moe_ffn = 6, .experts = 4, .topk = 2, .vocab = 10 };
	c.sparse[0] = c.sparse[1] = true;
	return c;
}

static void cost_model(void)
{
	zp_config c = tiny_cfg();
	zp_cost k;
	zp_cost_init(&k, &c);
	CHECK(k.lin_tok == 2048 && k.pair == 64 && k.head_row == 160 && k.mlp_tok == 2 * 640,
	      "sums over layers (lin %g pair %g row %g mlp %g)", k.lin_tok, k.pair, k.head_row,
	      k.mlp_tok);
	/* 20 tokens, nothing cached, one row: 1024*20 + 32*210 + 80 */
	CHECK(zp_cost_seq(&k, 20, 0, 1) == 27280, "20 tokens: %g", zp_cost_seq(&k, 20, 0, 1));
	/* 16 cached: S 4, self 10 pairs, cross 4*16: 1024*4 + 32*74 + 80 */
	CHECK(zp_cost_seq(&k, 20, 16, 1) == 6544, "16 of 20 cached: %g", zp_cost_seq(&k, 20, 16, 1));
	/* P 10 (M 4) + S 3: pfx 1024*6 + 32*(55-10), ffn 3072, self 32*6, cross 32*30 */
	CHECK(zp_cost_delta(&k, 10, 4, 3, 0) == 11808, "P 10 M 4 S 3: %g",
	      zp_cost_delta(&k, 10, 4, 3, 0));
	CHECK(zp_cost_delta(&k, 10, 10, 3, 0) == zp_cost_seq(&k, 13, 10, 0),
	      "a fully cached prefix is the sequence with M = P");
	/* a dense second layer (width 10): 384 + 2*3*8*10 = 864 */
	c.sparse[1] = false;
	zp_cost_init(&k, &c);
	CHECK(k.lin_tok == 1024 + 864 && zp_cost_seq(&k, 1, 0, 0) == (1888 + 64) / 2.0,
	      "dense layers by their MLP (lin %g)", k.lin_tok);
	zp_req r = { .ntok = 9, .plp_start = -1 };
	CHECK(zp_cost_rows(&r) == 0, "pooling: no head rows");
	r.want_cands = true;
	CHECK(zp_cost_rows(&r) == 1, "candidates: the last row");
	r.plp_start = 3;
	CHECK(zp_cost_rows(&r) == 7, "prompt log-probs from 3: 6 rows + the last");
	r.plp_start = 0;
	CHECK(zp_cost_rows(&r) == 9, "from 0: positions 0..7 + the last");
}

/* ---- routing policies ---- */

static zp_config cfg;
static int32_t ids[JOBS][SEQS][256];

/* Job i: n sequences of ntok ids, the first shared ids equal to prefix
   family fam's, the rest unique to (i, k). */
static zp_job *mk_ids(int i, int n, int ntok, int fam, int shared)
{
	mk(i, n, ntok);
	for (int k = 0; k < n; k++) {
		for (int t = 0; t < ntok; t++)
			ids[i][k][t] = t < shared ? 1000 * (fam + 1) + t : 100000 + 1000 * i + 100 * k + t;
		seq[i][k].tokens = ids[i][k];
	}
	return &job[i];
}

/* A scheduler of x executors under policy p, T = t (FLOPs per layer; 0:
   none), a shadow of 64 blocks each (0: none). */
static void setup(zp_sched *s, enum zp_sched_policy p, int x, double t, long shadow, double aging)
{
	zp_sched_init(s, JOBS, 1 << 20, 1 << 16, 0.010);
	zp_sched_cfg c = { .policy = p, .executors = x, .model = &cfg, .gather_s = t > 0 ? 1 : 0,
			   .flops_per_s = t, .gamma = 1, .aging_s = aging, .shadow_blocks = shadow,
			   .shadow_pending = 256 };
	zp_sched_setup(s, &c);
}

static zp_batch bx[2];

/* Cut for executor x at now (force or not); the sequences. */
static int cut(zp_sched *s, int x, double now, bool force)
{
	double wake;
	bx[x].exec = x;
	return zp_sched_next_batch(s, now, force, &bx[x], &wake);
}

/* Executor x's batch came back well; its sequences done and finished. */
static void back(zp_sched *s, int x)
{
	memset(bx[x].kv_hit_tokens, 0, sizeof bx[x].kv_hit_tokens);
	bx[x].kv_evicted_n = 0;
	bx[x].kv_evicted_overflow = false;
	zp_sched_batch_done(s, &bx[x], NULL);
	for (int k = 0; k < bx[x].n; k++)
		if (zp_sched_seq_done(s, bx[x].job[k]))
			zp_sched_finish(s, bx[x].job[k]);
}

/* Which executor's ring holds job j's first sequence (-1: none). */
static int where(const zp_sched *s, const zp_job *j)
{
	for (int x = 0; x < s->nexec; x++)
		for (int i = 0; i < s->ex[x].q_n; i++)
			if (s->ex[x].q[(s->ex[x].q_head + i) % ZP_SCHED_LOCAL_MAX].job == j)
				return x;
	return -1;
}

/* An executor's batch prefers what it holds: its own matches, then what
   matches nowhere; what another executor holds more of fills it to the
   knee, the rest waits for that one; its load counts the matched blocks. */
static void prefix_match(void)
{
	zp_sched s;
	zp_sched_init(&s, JOBS, 1 << 20, 200, 0.010);
	zp_sched_cfg c = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 2, .model = &cfg,
			   .gamma = 1, .aging_s = 1, .shadow_blocks = 64, .shadow_pending = 256 };
	zp_sched_setup(&s, &c);
	zp_sched_admit(&s, mk_ids(0, 1, 80, 0, 64), 0);
	CHECK(cut(&s, 0, 0, true) == 1, "family 0 out on executor 0");
	back(&s, 0);
	zp_sched_admit(&s, mk_ids(1, 1, 80, 1, 64), 0);
	CHECK(cut(&s, 1, 0, true) == 1, "family 1 out on executor 1");
	back(&s, 1);
	CHECK(zp_sched_match(&s, 1, &seq[1][0]) == 4 && zp_sched_match(&s, 0, &seq[1][0]) == 0,
	      "executor 1 committed job 1's blocks (4 before the last token's): %d",
	      zp_sched_match(&s, 1, &seq[1][0]));
	zp_sched_admit(&s, mk_ids(2, 1, 100, 1, 64), 0.001); /* executor 1's */
	zp_sched_admit(&s, mk_ids(3, 1, 60, 2, 0), 0.001);   /* nobody's */
	zp_sched_admit(&s, mk_ids(4, 1, 100, 0, 64), 0.001); /* executor 0's */
	zp_sched_admit(&s, mk_ids(5, 1, 40, 3, 0), 0.001);
	CHECK(cut(&s, 0, 0.001, false) == 3 && bx[0].job[0] == &job[4] && bx[0].job[1] == &job[3] &&
	      bx[0].job[2] == &job[5], "executor 0: its own match first, then the others in arrival "
	      "order; executor 1's job does not fit (100 + 60 + 40 of 200) and waits for it (%d)",
	      bx[0].n);
	CHECK(zp_sched_load(&s, 0) == zp_cost_seq(&s.cost, 100, 64, 0) + zp_cost_seq(&s.cost, 60, 0, 0) +
	      zp_cost_seq(&s.cost, 40, 0, 0), "executor 0's load counts job 4's M = 64 (%g)",
	      zp_sched_load(&s, 0));
	CHECK(zp_sched_match(&s, 0, &seq[3][0]) == 3, "job 3's blocks pending on executor 0");
	CHECK(cut(&s, 1, 0.011, false) == 1 && bx[1].job[0] == &job[2], "executor 1 takes its own "
	      "after the wait");
	back(&s, 0);
	back(&s, 1);
	/* what another (busy) executor holds more of fills an idle one's forward
	   to the knee (unmeasured: to the budget), no further */
	zp_sched_admit(&s, mk_ids(6, 1, 80, 3, 48), 0.02);
	CHECK(cut(&s, 1, 0.02, true) == 1, "job 6 out on executor 1");
	zp_sched_admit(&s, mk_ids(7, 1, 80, 1, 64), 0.02);
	zp_sched_admit(&s, mk_ids(8, 1, 80, 3, 48), 0.02);
	CHECK(cut(&s, 0, 0.03, false) == 2 && bx[0].job[0] == &job[7] && bx[0].job[1] == &job[8],
	      "executor 0, idle, no knee measured: it takes executor 1's jobs (committed and "
	      "pending there) at fifo's moment, in arrival order (%d)", bx[0].n);
	back(&s, 0);
	back(&s, 1);
	s.knee_tokens = 100;
	zp_sched_admit(&s, mk_ids(9, 1, 80, 5, 48), 0.04);
	zp_sched_admit(&s, mk_ids(13, 1, 80, 6, 48), 0.04);
	CHECK(cut(&s, 1, 0.04, true) == 2, "jobs 9 and 13 (families 5 and 6) out on executor 1");
	zp_sched_admit(&s, mk_ids(10, 1, 80, 5, 48), 0.04);
	zp_sched_admit(&s, mk_ids(11, 1, 40, 7, 0), 0.04);
	zp_sched_admit(&s, mk_ids(12, 1, 80, 6, 48), 0.04);
	CHECK(cut(&s, 0, 0.05, false) == 2 && bx[0].job[0] == &job[11] && bx[0].job[1] == &job[10] &&
	      s.head == &job[12], "a knee of 100 tokens: executor 0 takes the miss (40), then one "
	      "of executor 1's to reach it; the other waits for executor 1 (%d)", bx[0].n);
	back(&s, 0);
	back(&s, 1);
	zp_sched_free(&s);
}

/* The job stream both policies see in fifo_twin: job i arrives at arr[i]. */
#define TWIN_JOBS 80
static double twin_arr[TWIN_JOBS];
typedef struct {
	int n;
	double at;
	int exec;
	const zp_req *req[64];
} twin_cut;
static twin_cut twin_log[2][TWIN_JOBS * SEQS];

/* The engine's loop on a virtual clock: arrivals admitted, forwards back
   (1 ms + 20 us a token, whole), then every idle executor in turn asks
   for a batch (zp_engine_pump), and the clock moves to the next arrival,
   return or wake-up. The batches in order into log; the count. */
static int twin_run(enum zp_sched_policy p, double aging, twin_cut *log)
{
	zp_sched s;
	double fin[2] = { 0, 0 }, now = 0;
	bool busy[2] = { false, false };
	int a = 0, finished = 0, nlog = 0;
	zp_sched_init(&s, JOBS, 1 << 20, 300, 0.002);
	zp_sched_cfg c = { .policy = p, .executors = 2, .model = &cfg, .gamma = 1, .aging_s = aging,
			   .shadow_blocks = 64, .shadow_pending = 256 };
	zp_sched_setup(&s, &c);
	uint32_t rnd = 12345;
	for (int i = 0; i < TWIN_JOBS; i++) { /* sizes 1..4 sequences of 1..200 tokens, no sharing */
		rnd = rnd * 1103515245u + 12345u;
		int n = 1 + (int)(rnd >> 16) % 4;
		rnd = rnd * 1103515245u + 12345u;
		mk(i, n, 1 + (int)(rnd >> 16) % 200);
	}
	while (finished < TWIN_JOBS) {
		double next = HUGE_VAL, w;
		while (a < TWIN_JOBS && twin_arr[a] <= now)
			CHECK(zp_sched_admit(&s, &job[a++], now) == 0, "admit");
		for (int x = 0; x < 2; x++) {
			if (!busy[x] || fin[x] > now)
				continue;
			busy[x] = false;
			back(&s, x);
			for (int k = 0; k < bx[x].n; k++)
				finished += bx[x].job[k]->done == bx[x].job[k]->nseq;
		}
		for (int x = 0; x < 2; x++) {
			if (busy[x])
				continue;
			bx[x].exec = x;
			if (zp_sched_next_batch(&s, now, false, &bx[x], &w)) {
				twin_cut *l = &log[nlog++];
				ZP_ASSERT(bx[x].n <= 64);
				*l = (twin_cut){ .n = bx[x].n, .at = now, .exec = x };
				memcpy(l->req, bx[x].req, (size_t)bx[x].n * sizeof *l->req);
				busy[x] = true;
				fin[x] = now + 0.001 + 2e-5 * bx[x].tokens;
			} else if (w > 0) {
				next = ZP_MIN(next, w);
			}
		}
		for (int x = 0; x < 2; x++)
			if (busy[x])
				next = ZP_MIN(next, fin[x]);
		if (a < TWIN_JOBS)
			next = ZP_MIN(next, twin_arr[a]);
		ZP_ASSERT(next > now && next < HUGE_VAL);
		now = next;
	}
	zp_sched_free(&s);
	return nlog;
}

/* With no prefix match anywhere, prefix_flops cuts fifo's batches at fifo's
   moments on the same executors: it cannot lose to fifo there. Bursts
   (saturated: forwards full, the queue long) and lulls (the wait for
   company), jobs of several sequences spanning batches, aging on or off. */
static void fifo_twin(void)
{
	uint32_t rnd = 777;
	double t = 0;
	for (int i = 0; i < TWIN_JOBS; i++) {
		rnd = rnd * 1103515245u + 12345u;
		t += (i / 20) % 2 ? 0.004 * ((rnd >> 16) % 100) / 100 : 0.0004 * ((rnd >> 16) % 100) / 100;
		twin_arr[i] = t;
	}
	static const double aging[] = { 1.0, 0.003 };
	for (int g = 0; g < 2; g++) {
		int nf = twin_run(ZP_SCHED_FIFO, aging[g], twin_log[0]);
		int np = twin_run(ZP_SCHED_PREFIX_FLOPS, aging[g], twin_log[1]);
		int first = -1;
		for (int i = 0; first < 0 && i < ZP_MIN(nf, np); i++) {
			const twin_cut *f = &twin_log[0][i], *q = &twin_log[1][i];
			if (f->n != q->n || f->at != q->at || f->exec != q->exec ||
			    memcmp(f->req, q->req, (size_t)f->n * sizeof *f->req))
				first = i;
		}
		CHECK(nf == np && first < 0, "aging %g: fifo cut %d batches, prefix_flops %d; the "
		      "first that differs: %d", aging[g], nf, np, first);
		int both = 0;
		for (int i = 0; i < nf; i++)
			both += twin_log[0][i].exec == 1;
		CHECK(nf > TWIN_JOBS / 8 && both > 0, "the stream used both executors (%d batches, %d on "
		      "executor 1)", nf, both);
	}
}

/* A job without a match waits behind a stream of hits at most aging_s (plus
   a batch or two): the rule in scheduler.h. One executor whose next forward
   holds two hits (32 computed tokens); two hits arrive a step. */
static void aging(void)
{
	zp_sched s;
	zp_sched_init(&s, JOBS, 1 << 20, 32, 0.010);
	zp_sched_cfg c = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 1, .model = &cfg,
			   .gamma = 1, .aging_s = 0.1, .shadow_blocks = 64, .shadow_pending = 256 };
	zp_sched_setup(&s, &c);
	zp_sched_admit(&s, mk_ids(0, 1, 64, 0, 64), 0);
	cut(&s, 0, 0, true);
	back(&s, 0); /* family 0 committed */
	zp_sched_admit(&s, mk_ids(1, 1, 64, 5, 0), 0); /* the miss */
	int slot = 2, routed_at = -1;
	for (int step = 0; step < 30 && routed_at < 0; step++) {
		double now = step * 0.01;
		for (int k = 0; k < 2; k++) { /* the next hits arrive */
			zp_sched_admit(&s, mk_ids(slot, 1, 64, 0, 48), now);
			slot++;
		}
		CHECK(cut(&s, 0, now, true) >= 1, "step %d: a batch", step);
		for (int k = 0; k < bx[0].n; k++)
			if (bx[0].job[k] == &job[1])
				routed_at = step;
		back(&s, 0);
	}
	CHECK(routed_at >= 10 && routed_at <= 12,
	      "the miss went out once it had waited 0.1 s: at step 10 to 12 (%d)", routed_at);
	CHECK(s.aged >= 1, "an aged pick (%ld)", s.aged);
	zp_sched_free(&s);
}

/* Aging counts from when a job is first passed over (left while a younger
   one went), not from its arrival: at saturation every job waits longer
   than aging_s, and prefix_flops's order still holds. A job left for the
   executor that holds its prefix is not passed over: that one takes it
   first when back. */
static void aging_passed(void)
{
	zp_sched s;
	zp_sched_init(&s, JOBS, 1 << 20, 100, 0.001);
	zp_sched_cfg c = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 2, .model = &cfg,
			   .gamma = 1, .aging_s = 0.005, .shadow_blocks = 64, .shadow_pending = 256 };
	zp_sched_setup(&s, &c);
	zp_sched_admit(&s, mk_ids(0, 1, 64, 0, 64), 0);
	cut(&s, 1, 0, true);
	back(&s, 1); /* family 0 on executor 1 */
	zp_sched_admit(&s, mk_ids(1, 1, 64, 1, 64), 0);
	cut(&s, 0, 0, true);
	back(&s, 0); /* family 1 on executor 0 */
	s.knee_tokens = 16; /* executor 1's jobs fill a forward to 16 tokens only */
	zp_sched_admit(&s, mk_ids(2, 1, 60, 5, 0), 0);   /* nobody's */
	zp_sched_admit(&s, mk_ids(3, 1, 60, 1, 48), 0);  /* executor 0's */
	zp_sched_admit(&s, mk_ids(4, 1, 60, 6, 0), 0);   /* nobody's */
	zp_sched_admit(&s, mk_ids(5, 1, 60, 0, 48), 0);  /* executor 1's */
	CHECK(cut(&s, 0, 0.5, false) == 1 && bx[0].job[0] == &job[3],
	      "0.5 s after arrival, never passed over: executor 0 takes its own first (%d)", bx[0].n);
	CHECK(job[2].t_passed == 0.5 && job[4].t_passed < 0 && job[5].t_passed < 0,
	      "the older miss is passed over at 0.5 (%g); the younger and executor 1's job are not",
	      job[2].t_passed);
	back(&s, 0);
	zp_sched_admit(&s, mk_ids(6, 1, 60, 1, 48), 0.502); /* executor 0's */
	CHECK(cut(&s, 0, 0.503, false) == 1 && bx[0].job[0] == &job[6],
	      "3 ms after: executor 0's own still first (%d)", bx[0].n);
	back(&s, 0);
	CHECK(cut(&s, 0, 0.505, true) == 1 && bx[0].job[0] == &job[2] && s.aged == 1,
	      "passed over 5 ms ago: the miss goes first (%d, aged %ld)", bx[0].n, s.aged);
	back(&s, 0);
	CHECK(cut(&s, 1, 0.506, false) == 1 && bx[1].job[0] == &job[5] && job[5].t_passed < 0,
	      "executor 1 takes its own, which waited for it (%d)", bx[1].n);
	back(&s, 1);
	zp_sched_free(&s);
}

/* One state, three choices. Executor 0: one 10-token sequence waiting.
   Executor 1: three 20-token sequences out. (prefix_flops routes nothing
   ahead of a cut: prefix_match.) */
static void policies(void)
{
	static const enum zp_sched_policy pol[] = { ZP_SCHED_LEAST_TOKENS, ZP_SCHED_VLLM,
						    ZP_SCHED_FIFO };
	static const int want[] = { 0, 1, -1 };
	for (int p = 0; p < 3; p++) {
		zp_sched s;
		setup(&s, pol[p], 2, 1e30, 64, 1);
		if (pol[p] != ZP_SCHED_FIFO) {
			zp_sched_admit(&s, mk_ids(0, 3, 20, 0, 16), 0);
			s.ex[0].q_n = ZP_SCHED_LOCAL_MAX; /* 0 full (closed) while they route */
			cut(&s, 1, 0, true);
			s.ex[0].q_n = 0;
			CHECK(bx[1].n == 3, "%s: three out on 1", zp_sched_policy_name(pol[p]));
			zp_sched_admit(&s, mk_ids(1, 1, 10, 7, 0), 0);
			cut(&s, 0, 0, false);
			CHECK(where(&s, &job[1]) == 0, "%s: the 10 tokens wait on 0",
			      zp_sched_policy_name(pol[p]));
			zp_sched_admit(&s, mk_ids(2, 1, 24, 0, 16), 0);
			cut(&s, 0, 0, false);
			CHECK(where(&s, &job[2]) == want[p], "%s: the next to %d (went to %d)",
			      zp_sched_policy_name(pol[p]), want[p], where(&s, &job[2]));
		} else {
			zp_sched_admit(&s, mk_ids(1, 1, 10, 7, 0), 0);
			zp_sched_admit(&s, mk_ids(2, 1, 24, 0, 16), 0);
			CHECK(cut(&s, 1, 0, true) == 2 && bx[1].job[0] == &job[1],
			      "fifo: whoever asks takes the front");
		}
		zp_sched_free(&s);
	}
}

/* The shadow follows the completion records. */
static void shadow(void)
{
	zp_sched s;
	setup(&s, ZP_SCHED_PREFIX_FLOPS, 1, 1e30, 8, 1);
	zp_sched_admit(&s, mk_ids(0, 1, 80, 0, 80), 0);
	cut(&s, 0, 0, true);
	CHECK(zp_sched_match(&s, 0, &seq[0][0]) == 4 && s.ex[0].committed == 0,
	      "out: pending, nothing committed");
	back(&s, 0);
	CHECK(zp_sched_match(&s, 0, &seq[0][0]) == 4 && s.ex[0].committed == 5,
	      "back: 5 blocks committed (%ld)", s.ex[0].committed);
	/* evictions: block 1's key reported: the match stops before it */
	zp_blk_key keys[5];
	zp_blk_keys(seq[0][0].tokens, 80, keys);
	zp_sched_admit(&s, mk_ids(1, 1, 20, 9, 0), 1);
	cut(&s, 0, 1, true);
	bx[0].kv_evicted[0] = keys[1];
	bx[0].kv_evicted_n = 1;
	bx[0].kv_evicted_overflow = false;
	zp_sched_batch_done(&s, &bx[0], NULL);
	zp_sched_seq_done(&s, &job[1]);
	zp_sched_finish(&s, &job[1]);
	CHECK(zp_sched_match(&s, 0, &seq[0][0]) == 1 && s.ex[0].committed == 5,
	      "block 1 evicted (job 1's one block came in): match 1 (%d), %ld committed",
	      zp_sched_match(&s, 0, &seq[0][0]), s.ex[0].committed);
	/* overflow: the executor's shadow is forgotten */
	zp_sched_admit(&s, mk_ids(2, 1, 20, 9, 0), 2);
	cut(&s, 0, 2, true);
	bx[0].kv_evicted_n = 0;
	bx[0].kv_evicted_overflow = true;
	zp_sched_batch_done(&s, &bx[0], NULL);
	zp_sched_seq_done(&s, &job[2]);
	zp_sched_finish(&s, &job[2]);
	CHECK(zp_sched_match(&s, 0, &seq[0][0]) == 0 && s.ex[0].committed == 0 && s.ex[0].used == 0,
	      "overflow: nothing left (%ld used)", s.ex[0].used);
	/* a failed batch commits nothing and drops its pending blocks */
	zp_sched_admit(&s, mk_ids(3, 1, 80, 0, 80), 3);
	cut(&s, 0, 3, true);
	memset(bx[0].kv_hit_tokens, 0, sizeof bx[0].kv_hit_tokens);
	bx[0].kv_evicted_overflow = false;
	bx[0].failed = 1;
	zp_sched_batch_done(&s, &bx[0], NULL);
	bx[0].failed = 0;
	zp_sched_seq_done(&s, &job[3]);
	zp_sched_finish(&s, &job[3]);
	CHECK(zp_sched_match(&s, 0, &seq[3][0]) == 0 && s.ex[0].used == 0, "failed: no trace");
	/* more than the cache holds (8 blocks): forgotten rather than wrong */
	zp_sched_admit(&s, mk_ids(4, 1, 160, 1, 160), 4);
	cut(&s, 0, 4, true);
	back(&s, 0);
	CHECK(s.ex[0].committed <= 8 && zp_sched_match(&s, 0, &seq[4][0]) == 0,
	      "10 blocks into a cache of 8: the shadow starts over (%ld committed)",
	      s.ex[0].committed);
	/* a full cache that reports what it evicts keeps its shadow: 8 blocks
	   resident, then 2 new ones evicting blocks 6 and 7 */
	zp_sched_admit(&s, mk_ids(5, 1, 128, 2, 128), 5);
	cut(&s, 0, 5, true);
	back(&s, 0);
	zp_blk_key k5[8];
	zp_blk_keys(seq[5][0].tokens, 128, k5);
	zp_sched_admit(&s, mk_ids(6, 1, 32, 3, 32), 6);
	cut(&s, 0, 6, true);
	memset(bx[0].kv_hit_tokens, 0, sizeof bx[0].kv_hit_tokens);
	bx[0].kv_evicted[0] = k5[6];
	bx[0].kv_evicted[1] = k5[7];
	bx[0].kv_evicted_n = 2;
	bx[0].kv_evicted_overflow = false;
	zp_sched_batch_done(&s, &bx[0], NULL);
	zp_sched_seq_done(&s, &job[6]);
	zp_sched_finish(&s, &job[6]);
	CHECK(s.ex[0].committed == 8 && s.ex[0].used >= 8 && zp_sched_match(&s, 0, &seq[5][0]) == 6,
	      "full cache, evictions reported: 8 committed (%ld), match 6 (%d)", s.ex[0].committed,
	      zp_sched_match(&s, 0, &seq[5][0]));
	zp_sched_free(&s);
}

/* Cancel drops routed sequences from the rings: load and pending blocks go. */
static void cancel_routed(void)
{
	zp_sched s;
	setup(&s, ZP_SCHED_LEAST_TOKENS, 2, 0, 16, 1);
	zp_sched_admit(&s, mk_ids(0, 4, 32, 0, 32), 0);
	CHECK(cut(&s, 0, 0, false) == 0, "routed, not yet due");
	CHECK(s.ex[0].q_n == 2 && s.ex[1].q_n == 2, "spread 2 + 2 by tokens");
	CHECK(cut(&s, 1, 0, true) == 2, "two out on 1");
	CHECK(!zp_sched_cancel(&s, &job[0]), "two out: the batch frees it");
	CHECK(s.ex[0].q_n == 0 && zp_sched_load(&s, 0) == 0 && s.queued_seqs == 0 &&
	      s.queued_tokens == 0, "executor 0's ring emptied");
	CHECK(zp_sched_match(&s, 0, &seq[0][0]) == 0, "its pending blocks gone");
	zp_sched_batch_done(&s, &bx[1], NULL);
	CHECK(!zp_sched_seq_done(&s, &job[0]) && zp_sched_seq_done(&s, &job[0]),
	      "complete when the two out come back");
	zp_sched_finish(&s, &job[0]);
	CHECK(s.requests == 0 && zp_sched_load(&s, 1) == 0, "all released");
	zp_sched_free(&s);
}

/* T follows the measurements: the medians of a window, within its floor and
   a full forward; an outlier moves neither, a real move is logged. */
static void threshold(void)
{
	zp_sched s;
	setup(&s, ZP_SCHED_FIFO, 1, 1000, 0, 1);
	CHECK(s.threshold == 1000, "from the calibration: 1 s x 1000 FLOP/s x 1");
	zp_sched_admit(&s, mk(0, 1, 10), 0);
	cut(&s, 0, 0, true);
	memset(bx[0].kv_hit_tokens, 0, sizeof bx[0].kv_hit_tokens);
	bx[0].kv_hit_tokens[0] = 4; /* 6 tokens computed */
	bx[0].stats.mlp_s = 3.0;
	zp_sched_obs o = { .gather_s = 2.0, .wait_s = 1.0 };
	zp_sched_batch_done(&s, &bx[0], &o);
	double g = (1 + 2) / 2.0, f = (1000 + s.cost.mlp_tok * 6 / 2.0) / 2;
	CHECK(fabs(s.gather_s - g) < 1e-12 && fabs(s.flops_per_s - f) < 1e-9 * f &&
	      fabs(s.threshold - g * f) < 1e-9 * g * f,
	      "medians of two: gather %g (want %g), rate %g (want %g: MLP FLOPs of the computed "
	      "tokens over mlp_s less the wait)", s.gather_s, g, s.flops_per_s, f);
	/* a steady stream, then outliers 10x either way: T stays put */
	for (int i = 0; i < 40; i++) {
		o.gather_s = 1.0;
		bx[0].stats.mlp_s = 1.0 + s.cost.mlp_tok * 6 / 1000.0;
		zp_sched_batch_done(&s, &bx[0], &o);
	}
	double steady = s.threshold;
	long moves = s.threshold_moves;
	for (int i = 0; i < 6; i++) {
		o.gather_s = i % 2 ? 10.0 : 0.1;
		zp_sched_batch_done(&s, &bx[0], &o);
	}
	CHECK(fabs(s.threshold - steady) < 1e-9 * steady && s.threshold_moves == moves,
	      "6 outliers in a window of %d: T %g (was %g), moves %ld (was %ld)", ZP_SCHED_WINDOW,
	      s.threshold, steady, s.threshold_moves, moves);
	for (int i = 0; i < ZP_SCHED_WINDOW; i++) {
		o.gather_s = 4.0; /* the gather really slowed down */
		zp_sched_batch_done(&s, &bx[0], &o);
	}
	CHECK(fabs(s.threshold - 4 * steady) < 1e-6 * steady && s.threshold_moves > moves,
	      "a lasting change moves T (%g, want %g) and is logged (moves %ld)", s.threshold,
	      4 * steady, s.threshold_moves);
	for (int i = 0; i < ZP_SCHED_WINDOW; i++) {
		o.gather_s = 1e9;
		zp_sched_batch_done(&s, &bx[0], &o);
	}
	CHECK(s.threshold == s.threshold_max && s.threshold_max == s.cost.lin_tok * 65536 /
	      s.cost.layers, "T is capped at a full forward's linear FLOPs (%g)", s.threshold);
	bx[0].stats.mlp_s = 0;
	zp_sched_free(&s);
	setup(&s, ZP_SCHED_PREFIX_FLOPS, 1, 0, 0, 1);
	CHECK(s.threshold == s.threshold_min, "no gather: nothing to hide, T is its floor (%g)",
	      s.threshold);
	zp_sched_free(&s);
	/* the floor: 100 tokens' linear FLOPs per layer (1024 each) over a T of 1000 */
	zp_sched_init(&s, JOBS, 1 << 20, 1 << 16, 0.010);
	zp_sched_cfg c = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 1, .model = &cfg,
			   .gather_s = 1, .flops_per_s = 1000, .gamma = 1, .min_tokens = 100 };
	zp_sched_setup(&s, &c);
	CHECK(s.threshold == 102400, "T = max(1000, 100 x 1024): %g", s.threshold);
	zp_sched_free(&s);
}

/* Sequences sharing a prefix that arrive together meet in one forward
   (siblings), up to a forward's budget in computed tokens; the rest go to
   the other executor rather than leave it idle. */
static void siblings(void)
{
	zp_sched s;
	zp_sched_init(&s, JOBS, 1 << 20, 512, 0.010);
	zp_sched_cfg pc = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 2, .model = &cfg,
			    .gamma = 1, .aging_s = 1, .shadow_blocks = 64, .shadow_pending = 256 };
	zp_sched_setup(&s, &pc);
	for (int i = 0; i < 5; i++)
		zp_sched_admit(&s, mk_ids(i, 1, 200, 0, 160), 0);
	int n0 = cut(&s, 0, 1.0, false), n1 = cut(&s, 1, 1.0, false);
	CHECK(n0 == 5 && n1 == 0, "5 sharing jobs in one forward on executor 0 (200 + 4 x 40 "
	      "computed tokens): executor 0 %d, executor 1 %d", n0, n1);
	back(&s, 0);
	zp_sched_free(&s);
	zp_sched_init(&s, JOBS, 1 << 20, 512, 0.010);
	zp_sched_setup(&s, &pc);
	for (int i = 0; i < 20; i++)
		zp_sched_admit(&s, mk_ids(i, 1, 200, 0, 160), 0);
	n0 = cut(&s, 0, 0, false);
	n1 = cut(&s, 1, 0, false);
	CHECK(n0 == 8 && n1 == 8 && s.queued_seqs == 4,
	      "20 sharing jobs: executor 0's forward holds 8 (200 + 7 x 40 <= 512); executor 1 "
	      "takes 8 more rather than idle (no knee measured) (%d, %d)", n0, n1);
	CHECK(bx[0].tokens == 1600, "the budget counts computed tokens: 8 x 200 prompt tokens in "
	      "a forward of 512 (%d)", bx[0].tokens);
	back(&s, 0);
	back(&s, 1);
	zp_sched_free(&s);
	/* fifo counts a sibling's computed tokens too */
	zp_sched_init(&s, JOBS, 1 << 20, 100, 0.010);
	for (int i = 0; i < 4; i++)
		zp_sched_admit(&s, mk_ids(i, 1, 80, 0, 64), 0);
	CHECK(cut(&s, 0, 1, false) == 2 && bx[0].tokens == 160,
	      "fifo, budget 100: 80 + 16 computed tokens (a sibling's 64 reused): two of 80 (%d)",
	      bx[0].n);
	zp_sched_free(&s);
}

/* The knee: where measured tokens/s levels off (reported; it does not
   move a cut: fifo_twin). */
static void knee(void)
{
	zp_sched s;
	setup(&s, ZP_SCHED_PREFIX_FLOPS, 1, 1e-30, 0, 1);
	CHECK(s.knee_tokens == 0, "unmeasured: none, T alone decides (%d)", s.knee_tokens);
	static const int size[] = { 16, 64, 256, 1024, 4096 };
	static const double rate[] = { 1000, 4000, 9500, 10000, 9800 };
	for (int rep = 0; rep < 3; rep++)
		for (int i = 0; i < 5; i++) {
			zp_req r = { .ntok = size[i] };
			zp_batch b = { .n = 1, .req = { &r }, .exec = 0 };
			b.fwd_s = size[i] / rate[i];
			s.ex[0].out = true;
			zp_sched_batch_done(&s, &b, NULL);
		}
	CHECK(s.knee_tokens == 512, "tokens/s within 90%% of the best from 256 tokens: the knee "
	      "is that size's bucket, [256, 512) (%d)", s.knee_tokens);
	zp_sched_free(&s);
}

/* A pick hashes the head job's blocks and ZP_SCHED_PICK_BLOCKS more, however
   long the queue's prompts. */
static void pick_bound(void)
{
	static int32_t big[80][4096];
	static zp_job bj[80];
	static zp_req br[80];
	zp_sched s;
	zp_sched_init(&s, 128, 1 << 20, 1 << 16, 0.010);
	zp_sched_cfg c = { .policy = ZP_SCHED_PREFIX_FLOPS, .executors = 2, .model = &cfg,
			   .gamma = 1, .aging_s = 1, .shadow_blocks = 4096, .shadow_pending = 8192 };
	zp_sched_setup(&s, &c);
	for (int i = 0; i < 80; i++) {
		for (int t = 0; t < 4096; t++)
			big[i][t] = 7 + t; /* one long shared prompt: every walk goes deep */
		big[i][4095] = 100 + i;
		br[i] = (zp_req){ .tokens = big[i], .ntok = 4096, .plp_start = -1 };
		bj[i] = (zp_job){ .seq = &br[i], .nseq = 1, .tokens = 4096 };
	}
	zp_sched_admit(&s, &bj[0], 0);
	cut(&s, 0, 0, true);
	back(&s, 0); /* the prompt committed on executor 0: every walk matches to its end */
	for (int i = 1; i < 80; i++)
		zp_sched_admit(&s, &bj[i], 0);
	cut(&s, 1, 0, false);
	CHECK(s.pick_hashed_max <= 255 + ZP_SCHED_PICK_BLOCKS + 79 &&
	      s.pick_hashed_max > ZP_SCHED_PICK_BLOCKS - 255, "79 jobs of 255 matched blocks: the "
	      "most one cut hashed: %ld (the head's 255 + %d + a first block per job)",
	      s.pick_hashed_max, ZP_SCHED_PICK_BLOCKS);
	zp_sched_free(&s);
}

int main(void)
{
	admission();
	fifo_and_budget();
	seq_cap();
	cancel();
	cfg = tiny_cfg();
	cost_model();
	prefix_match();
	fifo_twin();
	aging();
	aging_passed();
	policies();
	shadow();
	cancel_routed();
	threshold();
	siblings();
	knee();
	pick_bound();
	return check_exit("test_sched");
}
