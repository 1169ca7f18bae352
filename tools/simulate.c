/* simulate.c -- the frontend and the parallel modes on a virtual clock (issue
   20, item 4). The engine's own scheduler (src/engine/scheduler.c, unchanged:
   admission, the four policies, the shadow, T, the knee) drives simulated
   executors through a workload file of tools/gen_workload.py as
   tools/loadgen replays it (open loop, at most --conns requests outstanding).
   What is modelled:
     - each executor's prefix cache: an LRU of 16-token block keys of the
       configured size (pins not modelled), its hits and evictions reported
       to the scheduler as an executor's completion record does;
     - siblings: the forward's plan (prefix_plan.c's rules), cache hits
       first, then the longest run shared with an earlier root of the batch;
     - a forward's time from tools/sim/costmodel.c: measured (--profile, from
       `zprefill bench --profile`: the whole forward fitted to a + b tokens +
       c pairs, split over layers by the per-op fits) or a device roofline
       (--device a100|h100|h200, --fp8) with its link; the modes: asyncep
       (per-layer gathers overlapped, exposed wait), dpep (lockstep rounds,
       AllToAll per MoE layer), replicate (whole model per device, memory
       checked), tp (one group, two AllReduces per layer);
     - executors sharing --cores CPU cores (profile only): a forward is the
       profile's CPU seconds, and k busy executors each run at
       min(1, cores / k) of a core (what --probe-cores measures is free);
       the slicing is counted here once (costmodel.h: a profile taken N
       copies at once is read for its CPU seconds, never its wall times).
   NOT modelled: the reactor, HTTP and tokenizer; other processes beyond
   --cores; the gather's HBM traffic competing with compute.
   Usage:
     build/simulate MODEL_DIR WORKLOAD (--profile FILE [--cores C] |
                    --device a100|h100|h200 [--link nvlink3|nvlink4|pcie5] [--fp8])
                    [--mode asyncep|dpep|replicate|tp] [--executors N]
                    [--kv-bytes B|auto] [--policies "fifo prefix_flops ..."]
                    [--conns 64] [--batch-tokens 8192] [--wait-ms 2] [--batches FILE]
     build/simulate MODEL_DIR WORKLOAD --measure [--threads 1] [--executors N]
                    [--kv-bytes B] [--policies ...] [--conns] [--batch-tokens]
                    [--wait-ms] [--batches FILE]
         the same workload through the real engine (CPU executors, the
         default parallel mode), in process, on the real clock: what the
         simulation is validated against
     build/simulate --hw    the hardware table and efficiencies, with sources
     build/simulate --probe-cores SECONDS
         the CPU cores a process at this priority gets now: two spinning
         threads' CPU seconds over the wall seconds
   One line per policy: req_s tok_s p50_ms p99_ms computed_ratio hit_rate
   wait_frac (exposed gather wait / busy time) comm_frac ok rejected T_flops
   knee_tokens busy (the executors' busy share of the run) fwd_tokens
   (computed tokens per forward). --batches FILE: one line per forward
   (prompt and computed tokens, attention pairs, sequences, seconds start to results,
   and simulated, the cost model's seconds at full speed).
   Single-threaded (--measure: the engine's threads besides). */
#define _GNU_SOURCE /* sched_getaffinity */
#include <cjson/cJSON.h>
#include <math.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel.h"
#include "device.h"
#include "doorbell.h"
#include "engine.h"
#include "forward.h"
#include "kvcache.h"
#include "model.h"
#include "place.h"
#include "scheduler.h"
#include "util.h"

static double pairs_of(long pre, long n)
{
	return (double)(n * (n + 1) - pre * (pre + 1)) / 2; /* keys 1..n for positions pre..n-1 */
}

/* ---- an executor's cache: an LRU of block keys ---- */

typedef struct {
	zp_blk_key key;
	int prev, next, hnext;
} lru_node;

typedef struct {
	lru_node *n;
	int *bucket, cap, used, head, tail, free_head; /* head: least recent */
	unsigned mask;
} lru;

static void lru_init(lru *c, long blocks)
{
	memset(c, 0, sizeof *c);
	c->cap = (int)blocks;
	c->head = c->tail = c->free_head = -1;
	if (!blocks)
		return;
	c->n = zp_xcalloc((size_t)blocks, sizeof *c->n);
	unsigned nb = 16;
	while (nb < 2 * (unsigned)blocks)
		nb *= 2;
	c->mask = nb - 1;
	c->bucket = zp_xmalloc(nb * sizeof *c->bucket);
	memset(c->bucket, 0xff, nb * sizeof *c->bucket);
	for (int i = (int)blocks - 1; i >= 0; i--) {
		c->n[i].next = c->free_head;
		c->free_head = i;
	}
}

static int lru_find(const lru *c, zp_blk_key k)
{
	if (!c->cap)
		return -1;
	for (int i = c->bucket[k.lo & c->mask]; i >= 0; i = c->n[i].hnext)
		if (zp_blk_key_eq(c->n[i].key, k))
			return i;
	return -1;
}

static void lru_unlink(lru *c, int i)
{
	lru_node *x = &c->n[i];
	if (x->prev >= 0)
		c->n[x->prev].next = x->next;
	else
		c->head = x->next;
	if (x->next >= 0)
		c->n[x->next].prev = x->prev;
	else
		c->tail = x->prev;
}

static void lru_push_tail(lru *c, int i)
{
	c->n[i].prev = c->tail;
	c->n[i].next = -1;
	if (c->tail >= 0)
		c->n[c->tail].next = i;
	else
		c->head = i;
	c->tail = i;
}

/* k becomes the most recent; a new key may evict the least recent (its key
   into *ev, returns 1). */
static int lru_touch(lru *c, zp_blk_key k, zp_blk_key *ev)
{
	int i = lru_find(c, k), out = 0;
	if (!c->cap)
		return 0;
	if (i >= 0) {
		lru_unlink(c, i);
		lru_push_tail(c, i);
		return 0;
	}
	if (c->free_head < 0) { /* evict the least recent */
		i = c->head;
		lru_unlink(c, i);
		int *p = &c->bucket[c->n[i].key.lo & c->mask];
		while (*p != i)
			p = &c->n[*p].hnext;
		*p = c->n[i].hnext;
		*ev = c->n[i].key;
		out = 1;
	} else {
		i = c->free_head;
		c->free_head = c->n[i].next;
	}
	c->n[i].key = k;
	c->n[i].hnext = c->bucket[k.lo & c->mask];
	c->bucket[k.lo & c->mask] = i;
	lru_push_tail(c, i);
	return out;
}

/* ---- the workload ---- */

typedef struct {
	double at;		/* scheduled arrival */
	double sent_at;		/* sent (a connection free) */
	zp_job job;
	bool rejected;
} request;

static int32_t *ids_of(const cJSON *a, int *n)
{
	*n = cJSON_GetArraySize(a);
	int32_t *v = zp_xmalloc((size_t)ZP_MAX(*n, 1) * sizeof *v), i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, a) /* a walk: GetArrayItem(i) is a walk each */
		v[i++] = (int32_t)x->valuedouble;
	return v;
}

/* A sequence of ids asking for the cands' log-probs (checked against the
   model's vocabulary: 0, or -1). */
static int seq_init(zp_req *r, const int32_t *ids, int n, const int32_t *cands, int nc,
		    int vocab)
{
	zp_req_error err;
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= vocab)
			return -1;
	for (int i = 0; i < nc; i++)
		if (cands[i] < 0 || cands[i] >= vocab)
			return -1;
	zp_req_init(r, NULL);
	r->plp_start = -1;
	return zp_req_set_tokens(r, ids, n, &err) || zp_req_set_cands(r, cands, nc, &err) ? -1 : 0;
}

static int load_line(request *r, cJSON *b, int vocab)
{
	const cJSON *pr = cJSON_GetObjectItem(b, "prompt_token_ids");
	const cJSON *items = cJSON_GetObjectItem(b, "items");
	const cJSON *ca = cJSON_GetObjectItem(b, "candidate_token_ids");
	if (!ca)
		ca = cJSON_GetObjectItem(b, "label_token_ids");
	int nc = 0, nq, ni, bad = 0;
	int32_t *cv = ca ? ids_of(ca, &nc) : zp_xcalloc(1, sizeof *cv);
	if (!nc)
		cv[nc++] = 0;
	if (pr) {
		int32_t *v = ids_of(pr, &nq);
		r->job.nseq = 1;
		r->job.seq = zp_xcalloc(1, sizeof *r->job.seq);
		bad = !nq || seq_init(&r->job.seq[0], v, nq, cv, nc, vocab);
		free(v);
	} else if (items && cJSON_GetObjectItem(b, "query")) { /* score: query + each item */
		int32_t *qv = ids_of(cJSON_GetObjectItem(b, "query"), &nq);
		r->job.nseq = cJSON_GetArraySize(items);
		r->job.seq = zp_xcalloc((size_t)ZP_MAX(r->job.nseq, 1), sizeof *r->job.seq);
		for (int k = 0; k < r->job.nseq && !bad; k++) {
			int32_t *iv = ids_of(cJSON_GetArrayItem(items, k), &ni);
			int32_t *all = zp_xmalloc((size_t)(nq + ni + 1) * sizeof *all);
			memcpy(all, qv, (size_t)nq * sizeof *all);
			memcpy(all + nq, iv, (size_t)ni * sizeof *all);
			bad = !(nq + ni) || seq_init(&r->job.seq[k], all, nq + ni, cv, nc, vocab);
			free(iv);
			free(all);
		}
		free(qv);
	} else {
		bad = 1;
	}
	free(cv);
	for (int k = 0; k < r->job.nseq; k++)
		r->job.tokens += r->job.seq[k].ntok;
	return bad ? -1 : 0;
}

static request *load_workload(const char *path, int vocab, int *count)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return fprintf(stderr, "cannot read %s\n", path), NULL;
	int cap = 1024, n = 0, lineno = 0;
	request *q = zp_xcalloc((size_t)cap, sizeof *q);
	size_t sz = 0;
	char *line = NULL;
	while (getline(&line, &sz, f) > 0) {
		char p[64];
		int off = 0;
		double at;
		lineno++;
		if (sscanf(line, "@%lf %63s %n", &at, p, &off) < 2 || !off)
			continue;
		cJSON *b = cJSON_Parse(line + off);
		if (n == cap) {
			q = realloc(q, (size_t)(cap *= 2) * sizeof *q);
			ZP_ASSERT(q);
		}
		memset(&q[n], 0, sizeof q[n]);
		q[n].at = at;
		if (!b || load_line(&q[n], b, vocab)) {
			fprintf(stderr, "%s:%d: not a request this model takes (token ids under %d)\n",
				path, lineno, vocab);
			cJSON_Delete(b);
			free(line);
			fclose(f);
			return NULL;
		}
		cJSON_Delete(b);
		n++;
	}
	free(line);
	fclose(f);
	*count = n;
	return q;
}

static void workload_reset(request *rq, int n)
{
	for (int i = 0; i < n; i++) {
		rq[i].rejected = false;
		rq[i].sent_at = 0;
		zp_job *j = &rq[i].job;
		j->dispatched = j->done = j->lost = 0;
		j->cancelled = j->failed = false;
		j->prev = j->next = NULL;
		j->t_arrive = j->t_dispatch = 0;
	}
}

/* ---- what a run reports ---- */

typedef struct {
	double span_s, *lat;
	int answered, rejected;
	long ok_tokens, prompt, computed, hits, forwards;
	double busy_s, wait_s, comm_s;
	int nexec;			/* executors (a tp group: one) */
} run_result;

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void result_print(const char *what, enum zp_sched_policy pol, run_result *r,
			 const zp_sched *s)
{
	qsort(r->lat, (size_t)r->answered, sizeof *r->lat, cmp_d);
	double span = r->span_s > 0 ? r->span_s : 1;
	printf("%-9s %-12s req_s=%.1f tok_s=%.1f p50_ms=%.2f p99_ms=%.2f computed_ratio=%.3f "
	       "hit_rate=%.3f wait_frac=%.4f comm_frac=%.4f ok=%d rejected=%d T_flops=%.4g "
	       "knee_tokens=%d busy=%.3f fwd_tokens=%.0f\n", what, zp_sched_policy_name(pol), r->answered / span,
	       r->ok_tokens / span, r->answered ? 1e3 * r->lat[r->answered / 2] : 0,
	       r->answered ? 1e3 * r->lat[(int)(0.99 * (r->answered - 1))] : 0,
	       r->prompt ? (double)r->computed / r->prompt : 0,
	       r->prompt ? (double)r->hits / r->prompt : 0, r->busy_s > 0 ? r->wait_s / r->busy_s : 0,
	       r->busy_s > 0 ? r->comm_s / r->busy_s : 0, r->answered, r->rejected,
	       s ? s->threshold : 0, s ? s->knee_tokens : 0, r->busy_s / (span * r->nexec),
	       r->forwards ? (double)r->computed / r->forwards : 0);
	fflush(stdout);
}

/* ---- the simulated executors ---- */

typedef struct {
	const zp_config *cfg;
	int executors, conns, batch_tokens;
	size_t kv_bytes;
	double wait_s, cores;		/* cores 0: each executor its own device */
	sim_model cm;
	FILE *batches;			/* --batches: one line per forward, or NULL */
} sim_opts;

/* One forward to --batches: its prompt and computed tokens, attention pairs,
   sequences, seconds from start to results and (simulated) the cost model's
   seconds at full speed. */
static void batch_line(FILE *f, long prompt, long tokens, double pairs, int seqs, double s,
		       double model_s)
{
	if (f)
		fprintf(f, "fwd prompt=%ld tokens=%ld pairs=%.0f seqs=%d s=%.6g model_s=%.6g\n",
			prompt, tokens, pairs, seqs, s, model_s);
}

typedef struct {
	zp_batch b;
	bool busy;
	double left_s;			/* of its forward, at full speed */
	double started;			/* when it began */
	sim_cost cost;
	sim_work work;
	lru cache;
} sim_exec;

/* The forward's reuse plan for b on x's cache (prefix_plan.c's rules, pins
   aside), the inserts and evictions; its work into x->work. */
static void plan_forward(sim_exec *x, run_result *res)
{
	zp_batch *b = &x->b;
	int pre[ZP_FWD_SEQS_MAX], sharer[ZP_FWD_SEQS_MAX];
	double pairs = 0;
	long computed = 0;
	b->kv_evicted_n = 0;
	b->kv_evicted_overflow = false;
	for (int s = 0; s < b->n; s++) {
		const zp_req *r = b->req[s];
		int lim = zp_fwd_reuse_blocks_max(r), h = 0, m, t = -1;
		zp_blk_key k = zp_blk_key_root();
		for (; h < lim; h++) {
			k = zp_blk_key_next(k, r->tokens + (size_t)h * ZP_KV_BLOCK);
			if (lru_find(&x->cache, k) < 0)
				break;
		}
		m = h;
		for (int u = 0; u < s; u++) {
			if (sharer[u] >= 0 || pre[u] > h * ZP_KV_BLOCK)
				continue;
			const zp_req *q = b->req[u];
			int c = 0;
			while (c < lim && (c + 1) * ZP_KV_BLOCK <= q->ntok &&
			       !memcmp(q->tokens + c * ZP_KV_BLOCK, r->tokens + c * ZP_KV_BLOCK,
				       ZP_KV_BLOCK * sizeof(int32_t)))
				c++;
			if (c > m) {
				m = c;
				t = u;
			}
		}
		pre[s] = m * ZP_KV_BLOCK;
		sharer[s] = t;
		b->kv_hit_tokens[s] = pre[s];
		computed += r->ntok - pre[s];
		pairs += pairs_of(pre[s], r->ntok);
		res->prompt += r->ntok;
		res->hits += (long)h * ZP_KV_BLOCK;
	}
	res->computed += computed;
	res->forwards++;
	for (int s = 0; s < b->n; s++) { /* every full block is inserted, most recent last */
		const zp_req *r = b->req[s];
		zp_blk_key k = zp_blk_key_root(), ev;
		for (int j = 0; j < r->ntok / ZP_KV_BLOCK; j++) {
			k = zp_blk_key_next(k, r->tokens + (size_t)j * ZP_KV_BLOCK);
			if (lru_touch(&x->cache, k, &ev)) {
				if (b->kv_evicted_n < ZP_KV_EVICT_REPORT)
					b->kv_evicted[b->kv_evicted_n++] = ev;
				else
					b->kv_evicted_overflow = true;
			}
		}
	}
	x->work = (sim_work){ (double)computed, pairs, b->n };
}

/* Start the forwards cut at now (dpep: one lockstep round of all). */
static void start_forwards(const sim_opts *o, sim_exec *x, const bool *cut)
{
	int n = o->executors;
	if (o->cm.mode == SIM_DPEP) {
		sim_work w[ZP_EXECUTORS_MAX];
		for (int i = 0; i < n; i++)
			w[i] = cut[i] ? x[i].work : (sim_work){ 0 };
		sim_cost c = sim_round_dpep(&o->cm, w, n);
		for (int i = 0; i < n; i++) {
			x[i].busy = true; /* a filler walks the layers with the others */
			x[i].cost = c;
			x[i].left_s = c.total_s;
		}
		return;
	}
	for (int i = 0; i < n; i++) {
		if (!cut[i])
			continue;
		x[i].cost = sim_forward(&o->cm, &x[i].work);
		x[i].left_s = x[i].cost.total_s;
		x[i].busy = true;
	}
}

/* The speed of a busy executor: cores shared by the busy ones. */
static double speed(const sim_opts *o, const sim_exec *x)
{
	int busy = 0;
	for (int i = 0; i < o->executors; i++)
		busy += x[i].busy;
	return o->cores > 0 && busy > o->cores ? o->cores / busy : 1;
}

static void sched_setup(zp_sched *s, const sim_opts *o, enum zp_sched_policy pol, int nexec,
			double gather_s, double rate)
{
	long block = (long)zp_kv_block_bytes(o->cfg->layers, o->cfg->kv_heads * o->cfg->head_dim);
	long tokens_max = 1L << 22;
	zp_sched_init(s, 256, tokens_max, o->batch_tokens, o->wait_s);
	zp_sched_cfg c = { .policy = pol, .executors = nexec, .model = o->cfg, .gamma = 1.2,
			   .gather_s = gather_s, .flops_per_s = rate,
			   .aging_s = 0.05, .min_tokens = 512,
			   .shadow_blocks = (long)o->kv_bytes / block,
			   .shadow_pending = tokens_max / ZP_KV_BLOCK };
	zp_sched_setup(s, &c);
}

/* A batch of x came back at now: the scheduler's bookkeeping, the answers. */
static void finish_batch(const sim_opts *o, zp_sched *s, sim_exec *x, double now, run_result *r,
			 int *outstanding)
{
	zp_sched_obs obs = { .gather_s = x->cost.gather_s, .wait_s = x->cost.wait_s };
	x->busy = false;
	if (x->b.filler)
		return;
	x->b.fwd_s = x->cost.total_s;
	x->b.stats.mlp_s = x->cost.mlp_s;
	x->b.failed = 0;
	r->busy_s += now - x->started;
	batch_line(o->batches, x->b.tokens, (long)x->work.tokens, x->work.pairs, x->work.seqs,
		   now - x->started, x->cost.total_s);
	r->wait_s += x->cost.wait_s;
	r->comm_s += x->cost.comm_s;
	zp_sched_batch_done(s, &x->b, &obs);
	for (int k = 0; k < x->b.n; k++) {
		zp_job *j = x->b.job[k];
		if (!zp_sched_seq_done(s, j))
			continue;
		request *rq = (request *)((char *)j - offsetof(request, job));
		zp_sched_finish(s, j);
		r->lat[r->answered++] = now - rq->sent_at;
		r->ok_tokens += j->tokens;
		(*outstanding)--;
	}
}

static void simulate(const sim_opts *o, enum zp_sched_policy pol, request *rq, int nrq)
{
	zp_sched s;
	int N = o->executors, nexec = o->cm.mode == SIM_TP ? 1 : N;
	sim_exec *x = zp_xcalloc((size_t)N, sizeof *x);
	run_result res = { .lat = zp_xcalloc((size_t)ZP_MAX(nrq, 1), sizeof(double)),
			   .nexec = nexec };
	long block = (long)zp_kv_block_bytes(o->cfg->layers, o->cfg->kv_heads * o->cfg->head_dim);
	sched_setup(&s, o, pol, nexec, sim_gather_s(&o->cm),
		    sim_expert_rate(&o->cm, o->batch_tokens));
	for (int i = 0; i < nexec; i++)
		lru_init(&x[i].cache, (long)o->kv_bytes / block);
	workload_reset(rq, nrq);
	double now = 0;
	int next = 0, outstanding = 0;
	for (;;) {
		/* the client sends what is due while it has a free connection */
		while (next < nrq && rq[next].at <= now && outstanding < o->conns) {
			request *r = &rq[next++];
			r->sent_at = now;
			if (zp_sched_admit(&s, &r->job, now)) {
				r->rejected = true; /* a 503 at once */
				res.rejected++;
				continue;
			}
			outstanding++;
		}
		/* idle executors cut; as the server pumps the engine, every idle
		   one is forced to cut when none was busy; under dpep only when all
		   are idle, and then all start */
		double wake = HUGE_VAL;
		bool any_busy = false, cut[ZP_EXECUTORS_MAX] = { 0 }, any_cut = false;
		for (int i = 0; i < nexec; i++)
			any_busy |= x[i].busy;
		for (int i = 0; i < nexec && !(o->cm.mode == SIM_DPEP && any_busy); i++) {
			double w;
			if (x[i].busy)
				continue;
			memset(&x[i].b, 0, sizeof x[i].b);
			x[i].b.exec = i;
			if (zp_sched_next_batch(&s, now, !any_busy, &x[i].b, &w)) {
				cut[i] = any_cut = true;
				plan_forward(&x[i], &res);
			} else if (w > now) {
				wake = ZP_MIN(wake, w);
			}
		}
		if (any_cut) {
			for (int i = 0; i < nexec && o->cm.mode == SIM_DPEP; i++)
				x[i].b.filler = !cut[i];
			start_forwards(o, x, cut);
			for (int i = 0; i < nexec; i++)
				if (cut[i] || o->cm.mode == SIM_DPEP)
					x[i].started = now;
		}
		/* the next event */
		double t = wake, v = speed(o, x);
		if (next < nrq && outstanding < o->conns)
			t = ZP_MIN(t, ZP_MAX(rq[next].at, now));
		for (int i = 0; i < nexec; i++)
			if (x[i].busy)
				t = ZP_MIN(t, now + x[i].left_s / v);
		if (t == HUGE_VAL)
			break;
		t = ZP_MAX(now, t);
		for (int i = 0; i < nexec; i++)
			if (x[i].busy)
				x[i].left_s -= (t - now) * v;
		now = t;
		for (int i = 0; i < nexec; i++)
			if (x[i].busy && x[i].left_s <= 1e-12)
				finish_batch(o, &s, &x[i], now, &res, &outstanding);
	}
	res.span_s = now;
	result_print("predicted", pol, &res, &s);
	for (int i = 0; i < nexec; i++) {
		free(x[i].cache.n);
		free(x[i].cache.bucket);
	}
	free(res.lat);
	free(x);
	zp_sched_free(&s);
}

/* ---- the machine's free cores ---- */

static double cpu_now_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void *spin(void *arg)
{
	double until = *(const double *)arg;
	volatile unsigned long x = 0;
	while (zp_now_s() < until)
		for (int i = 0; i < 100000; i++)
			x += (unsigned long)i;
	return NULL;
}

static int probe_cores(double secs)
{
	pthread_t t[2];
	double until = zp_now_s() + secs, w0 = zp_now_s(), c0 = cpu_now_s();
	for (int i = 0; i < 2; i++)
		ZP_ASSERT(!pthread_create(&t[i], NULL, spin, &until));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("cores=%.3f\n", (cpu_now_s() - c0) / (zp_now_s() - w0));
	return 0;
}

/* What every process took of the CPUs this one may run on, so far (seconds:
   /proc/stat's user, nice, system, irq, softirq and steal of each), and how
   many they are. -1 when /proc/stat cannot be read. */
static double cpus_used_s(int *ncpu)
{
	cpu_set_t set;
	char line[512];
	double used = 0, tick = (double)sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	*ncpu = 0;
	if (!f || sched_getaffinity(0, sizeof set, &set)) {
		if (f)
			fclose(f);
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		unsigned long long v[8] = { 0 };
		int cpu;
		if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9' || /* not the total */
		    sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
			   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 9 || cpu < 0 ||
		    cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))
			continue;
		used += (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick; /* idle, iowait out */
		(*ncpu)++;
	}
	fclose(f);
	return used;
}

/* ---- the real engine, for validation ---- */

typedef struct {
	run_result *r;
	FILE *batches;
} measured;

static void on_batch(void *arg, const zp_batch *b)
{
	measured *mr = arg;
	run_result *r = mr->r;
	if (b->filler)
		return;
	if (mr->batches) {
		double pairs = 0;
		for (int s = 0; s < b->n; s++)
			pairs += pairs_of(b->kv_hit_tokens[s], b->req[s]->ntok);
		batch_line(mr->batches, b->stats.prompt_tokens, b->stats.computed_tokens, pairs, b->n,
			   b->fwd_s, 0);
	}
	r->prompt += b->stats.prompt_tokens;
	r->computed += b->stats.computed_tokens;
	r->hits += b->stats.cache_hit_tokens;
	r->busy_s += b->fwd_s;
	r->forwards++;
}

static int measure(const sim_opts *o, zp_model *m, int threads, enum zp_sched_policy pol,
		   request *rq, int nrq)
{
	zp_bell bell;
	zp_err e;
	run_result res = { .lat = zp_xcalloc((size_t)ZP_MAX(nrq, 1), sizeof(double)),
			   .nexec = o->executors };
	measured mr = { &res, o->batches };
	ZP_ASSERT(!zp_bell_init(&bell));
	zp_engine_cfg ec = { .executors = o->executors, .parallel = ZP_PARALLEL_DEFAULT,
			     .transport = "cpu", .threads_per_executor = threads,
			     .batch_tokens_max = o->batch_tokens, .done = &bell,
			     .kv_cache_bytes = o->kv_bytes, .on_batch = on_batch, .on_batch_arg = &mr,
			     .queue = { .policy = pol, .requests_max = 256, .tokens_max = 1L << 22,
					.batch_tokens_max = o->batch_tokens,
					.batch_wait_s = o->wait_s, .aging_s = 0.05,
					.min_tokens = 512 } };
	zp_engine *g = zp_engine_start(m, &ec, &e);
	if (!g)
		return fprintf(stderr, "cannot start the engine: %s\n", e.msg), -1;
	workload_reset(rq, nrq);
	int next = 0, outstanding = 0;
	int ncpu;
	double t0 = zp_now_s(), now = 0, c0 = cpu_now_s(), u0 = cpus_used_s(&ncpu);
	while (next < nrq || outstanding) {
		now = zp_now_s() - t0;
		while (next < nrq && rq[next].at <= now && outstanding < o->conns) {
			request *r = &rq[next++];
			r->sent_at = now;
			if (zp_engine_submit_job(g, &r->job, t0 + now)) {
				r->rejected = true;
				res.rejected++;
				continue;
			}
			outstanding++;
		}
		/* as the server pumps it (server.c): forced when no executor is busy */
		double wake = zp_engine_pump(g, zp_now_s(), zp_engine_busy(g) == 0);
		zp_job *j;
		while ((j = zp_engine_poll_job(g))) {
			request *r = (request *)((char *)j - offsetof(request, job));
			res.lat[res.answered++] = zp_now_s() - t0 - r->sent_at;
			if (!j->failed)
				res.ok_tokens += j->tokens;
			outstanding--;
		}
		/* sleep until a batch comes back, a batch falls due or a request does */
		double until = wake > 0 ? wake - t0 : now + 0.05;
		if (next < nrq && outstanding < o->conns)
			until = ZP_MIN(until, rq[next].at);
		int ms = (int)ceil(ZP_MAX(0, until - (zp_now_s() - t0)) * 1e3);
		struct pollfd p = { .fd = zp_bell_fd(&bell), .events = POLLIN };
		if (ms > 0 && poll(&p, 1, ZP_MIN(ms, 50)) > 0)
			zp_bell_drain(&bell);
	}
	res.span_s = zp_now_s() - t0;
	/* the run's condition: its CPUs less what others took of them meanwhile */
	double own = cpu_now_s() - c0, u1 = cpus_used_s(&ncpu), others = u1 - u0 - own;
	printf("# cpu_share=%.3f (the process's CPU seconds over the run's)", own / res.span_s);
	if (u0 >= 0 && u1 >= 0)
		printf(" free_cores=%.3f (its %d CPUs less what other processes and the hypervisor "
		       "took of them meanwhile)", ncpu - ZP_MAX(others, 0) / res.span_s, ncpu);
	printf("\n");
	result_print("measured", pol, &res, NULL);
	zp_engine_stop(g);
	zp_bell_free(&bell);
	free(res.lat);
	return 0;
}

/* ---- the command line ---- */

static int usage(const char *me)
{
	fprintf(stderr, "usage: %s MODEL_DIR WORKLOAD (--profile FILE [--cores C] | --device "
		"a100|h100|h200 [--link NAME] [--fp8]) [--mode asyncep|dpep|replicate|tp] "
		"[--executors N] [--kv-bytes B|auto] [--policies LIST] [--conns N] "
		"[--batch-tokens N] [--wait-ms MS] [--batches FILE]\n"
		"       %s MODEL_DIR WORKLOAD --measure [--threads T] [--executors N] [--kv-bytes B] "
		"[--policies LIST] [--conns N] [--batch-tokens N] [--wait-ms MS] [--batches FILE]\n"
		"       %s --hw | --probe-cores SECONDS\n", me, me, me);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--hw"))
		return sim_hw_print(stdout), 0;
	if (argc == 3 && !strcmp(argv[1], "--probe-cores"))
		return probe_cores(atof(argv[2]));
	if (argc < 3)
		return usage(argv[0]);
	zp_config cfg;
	zp_err e;
	sim_opts o = { .executors = 2, .conns = 64, .batch_tokens = 8192, .kv_bytes = 1 << 20,
		       .wait_s = 0.002, .cfg = &cfg, .cm = { .mode = SIM_ASYNCEP } };
	const char *pols = "fifo prefix_flops least_tokens vllm", *prof = NULL, *dev = NULL;
	const char *link = NULL;
	bool meas = false, kv_auto = false;
	int threads = 1;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--measure")) {
			meas = true;
			continue;
		}
		if (!strcmp(a, "--fp8")) {
			o.cm.fp8 = true;
			continue;
		}
		if (!v)
			return usage(argv[0]);
		i++;
		if (!strcmp(a, "--executors"))
			o.executors = atoi(v);
		else if (!strcmp(a, "--kv-bytes") && !strcmp(v, "auto"))
			kv_auto = true;
		else if (!strcmp(a, "--kv-bytes"))
			o.kv_bytes = (size_t)atoll(v);
		else if (!strcmp(a, "--policies"))
			pols = v;
		else if (!strcmp(a, "--conns"))
			o.conns = atoi(v);
		else if (!strcmp(a, "--batch-tokens"))
			o.batch_tokens = atoi(v);
		else if (!strcmp(a, "--wait-ms"))
			o.wait_s = atof(v) / 1e3;
		else if (!strcmp(a, "--profile"))
			prof = v;
		else if (!strcmp(a, "--cores"))
			o.cores = atof(v), o.cm.use_cpu = true;
		else if (!strcmp(a, "--device"))
			dev = v;
		else if (!strcmp(a, "--link"))
			link = v;
		else if (!strcmp(a, "--batches")) {
			if (!(o.batches = fopen(v, "w")))
				return fprintf(stderr, "cannot write %s\n", v), 1;
		} else if (!strcmp(a, "--threads"))
			threads = atoi(v);
		else if (!strcmp(a, "--mode")) {
			if (sim_mode_parse(v, &o.cm.mode))
				return fprintf(stderr, "unknown mode %s\n", v), 2;
		} else
			return fprintf(stderr, "unknown option %s\n", a), usage(argv[0]);
	}
	if (o.executors < 1 || o.executors > ZP_EXECUTORS_MAX || o.conns < 1 ||
	    o.batch_tokens < 16 || threads < 1 || o.cores < 0)
		return fprintf(stderr, "bad --executors, --conns, --batch-tokens, --threads or "
			       "--cores\n"), 2;
	if (!meas && !!prof == !!dev)
		return fprintf(stderr, "give one of --profile FILE, --device NAME, --measure\n"), 2;
	zp_log_min = ZP_LOG_WARN;
	if (zp_config_load(&cfg, argv[1], &e))
		return fprintf(stderr, "%s\n", e.msg), 1;
	o.cm.cfg = &cfg;
	o.cm.gpus = o.executors;
	if (prof && sim_model_profile(&o.cm, prof))
		return 1;
	if (prof && o.cm.prof_concurrency > 1 && !o.cm.use_cpu)
		return fprintf(stderr, "%s was taken %d copies at once: its wall times hold their "
			       "share of the cores; give --cores (the cores the executors share)\n",
			       prof, o.cm.prof_concurrency), 2;
	if (prof && (o.cm.mode == SIM_DPEP || o.cm.mode == SIM_TP))
		return fprintf(stderr, "--mode %s needs a device's roofline (--device): the profile "
			       "has no collectives\n", sim_mode_name(o.cm.mode)), 2;
	if (dev) {
		if (!(o.cm.dev = sim_device_find(dev)))
			return fprintf(stderr, "unknown device %s (simulate --hw lists them)\n", dev), 2;
		if (!(o.cm.link = sim_link_find(link ? link : o.cm.dev->link)))
			return fprintf(stderr, "unknown link %s (simulate --hw lists them)\n", link), 2;
		double wbytes, free_bytes;
		char why[200];
		if (sim_fits(&o.cm, o.batch_tokens, &wbytes, &free_bytes, why, sizeof why)) {
			printf("model=%s device=%s x%d mode=%s dtype=%s: %s\n", argv[1], dev,
			       o.executors, sim_mode_name(o.cm.mode), o.cm.fp8 ? "fp8" : "bf16", why);
			return 0;
		}
		if (kv_auto) /* the memory left, per executor (a tp group: on each device) */
			o.kv_bytes = (size_t)(free_bytes * (o.cm.mode == SIM_TP ?
				ZP_MIN(o.executors, cfg.kv_heads) : 1));
		printf("# device=%s x%d link=%s mode=%s dtype=%s weights_gb=%.1f kv_gb=%.1f "
		       "gather_ms=%.3f expert_tflop_s=%.1f\n", dev, o.executors, o.cm.link->name,
		       sim_mode_name(o.cm.mode), o.cm.fp8 ? "fp8" : "bf16", wbytes * 1e-9,
		       o.kv_bytes * 1e-9, sim_gather_s(&o.cm) * 1e3,
		       sim_expert_rate(&o.cm, o.batch_tokens) * 1e-12);
	} else if (kv_auto) {
		return fprintf(stderr, "--kv-bytes auto needs --device\n"), 2;
	}
	zp_model m;
	if (meas && zp_model_load(&m, argv[1], ZP_W_BF16, zp_device_layout(ZP_DEV_CPU),
				  threads * o.executors, NULL, &e))
		return fprintf(stderr, "%s\n", e.msg), 1;
	int n;
	request *rq = load_workload(argv[2], cfg.vocab, &n);
	if (!rq)
		return 1;
	const sim_fit *f = o.cm.use_cpu ? &o.cm.fwd_cpu : &o.cm.fwd;
	if (prof)
		printf("# profile: %s concurrency=%d; forward %.3g s + %.3g s/token + %.3g s/pair "
		       "(%s); gather_ms=%.4f cores=%g\n", o.cm.prof_desc, o.cm.prof_concurrency,
		       f->a, f->b, f->c, o.cm.use_cpu ? "CPU seconds" : "wall",
		       sim_gather_s(&o.cm) * 1e3, o.cores);
	printf("# model=%s executors=%d mode=%s kv_bytes=%zu requests=%d conns=%d batch_tokens=%d "
	       "wait_ms=%g\n", argv[1], o.executors, meas ? "engine" : sim_mode_name(o.cm.mode),
	       o.kv_bytes, n, o.conns, o.batch_tokens, o.wait_s * 1e3);
	char *list = strdup(pols), *sv = NULL;
	int rc = 0;
	for (char *p = strtok_r(list, " ,", &sv); p && !rc; p = strtok_r(NULL, " ,", &sv)) {
		enum zp_sched_policy pol;
		if (zp_sched_policy_parse(p, &pol)) {
			fprintf(stderr, "unknown policy %s\n", p);
			rc = 2;
		} else if (meas) {
			rc = measure(&o, &m, threads, pol, rq, n) ? 1 : 0;
		} else {
			simulate(&o, pol, rq, n);
		}
	}
	free(list);
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < rq[i].job.nseq; k++)
			zp_req_free(&rq[i].job.seq[k]);
		free(rq[i].job.seq);
	}
	free(rq);
	if (meas)
		zp_model_free(&m);
	if (o.batches)
		fclose(o.batches);
	return rc;
}
