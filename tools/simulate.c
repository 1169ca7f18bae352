/* simulate.c -- the frontend on a virtual clock (issue 20, item 4; partial):
   the engine's own scheduler (src/engine/scheduler.c, unchanged: admission,
   the four policies, the shadow, T, the knee) drives N simulated executors
   through a workload file of tools/gen_workload.py, as tools/loadgen replays
   it (open loop, at most --conns requests outstanding). What is modelled and
   what is not:
     - each executor's prefix cache: an LRU of 16-token block keys of the
       configured size (pins not modelled), its hits and evictions reported
       to the scheduler as an executor's completion record does;
     - siblings: the forward's plan (prefix_plan.c), cache hits first, then
       the longest run shared with an earlier root of the batch;
     - a forward's time: a + b x computed tokens + c x attention (query, key)
       pairs, fitted by least squares to forwards measured on this machine's
       CPU backend (--profile-out writes them: per-forward times at several
       batch sizes and two sequence lengths; not per op);
     - NOT modelled: gathers, links, devices (the CPU gather is a memcpy and
       hidden), the reactor's own time, other processes on the machine. There
       is no GPU projection: that needs per-op device times (a lent GPU) and
       link models, which this tool does not have.
   Modes:
     build/simulate --profile-out FILE MODEL_DIR [THREADS=1]
     build/simulate MODEL_DIR WORKLOAD PROFILE [--executors N] [--kv-bytes B]
                    [--policies "fifo prefix_flops ..."] [--conns 64]
                    [--batch-tokens 8192] [--wait-ms 2]
   One line per policy, as tools/bench_frontend.sh prints: req_s tok_s p50_ms
   p99_ms computed_ratio hit_rate. Single-threaded; not part of make test. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kvcache.h"
#include "place.h"
#include "scheduler.h"
#include "util.h"

#define PROFILE_MAGIC "# zprefill simulate profile v1"

/* ---- the profile: measured forwards, and the fitted model ---- */

typedef struct {
	double a, b, c;		/* seconds: per forward, per computed token, per pair */
} fwd_model;

static double pairs_of(long pre, long n)
{
	return (double)(n * (n + 1) - pre * (pre + 1)) / 2; /* keys 1..n for positions pre..n-1 */
}

static int profile_out(const char *path, const char *dir, int threads)
{
	zp_model m;
	zp_err e;
	zp_log_min = ZP_LOG_WARN;
	if (zp_model_load(&m, dir, ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), threads, NULL, &e))
		return fprintf(stderr, "%s\n", e.msg), 1;
	FILE *f = fopen(path, "w");
	if (!f)
		return fprintf(stderr, "cannot write %s\n", path), 1;
	fprintf(f, "%s model=%s threads=%d\n# tokens pairs seconds (median of 5)\n", PROFILE_MAGIC,
		dir, threads);
	static const int sizes[] = { 16, 64, 256, 1024, 2048, 4096, 8192 };
	static const int lens[] = { 64, 1024 };
	int32_t cands[2] = { 3, 4 };
	zp_fwd *fw = zp_fwd_new_cpu(&m, threads, 8192);
	zp_fwd_set_prefix(fw, 0, true);
	srand(1);
	for (int li = 0; li < 2; li++)
		for (int si = 0; si < 7; si++) {
			int T = sizes[si], L = ZP_MIN(lens[li], T), n = T / L;
			if (n > ZP_FWD_SEQS_MAX)
				continue;
			zp_req *r = zp_xcalloc((size_t)n, sizeof *r), *p[ZP_FWD_SEQS_MAX];
			int32_t *ids = zp_xmalloc((size_t)L * sizeof *ids);
			double pairs = 0, t[5];
			for (int s = 0; s < n; s++) {
				zp_req_error err;
				for (int i = 0; i < L; i++)
					ids[i] = 3 + rand() % (m.cfg.vocab - 3);
				zp_req_init(&r[s], NULL);
				r[s].plp_start = -1;
				ZP_ASSERT(!zp_req_set_tokens(&r[s], ids, L, &err) &&
					  !zp_req_set_cands(&r[s], cands, 2, &err));
				p[s] = &r[s];
				pairs += pairs_of(0, L);
			}
			for (int k = 0; k < 5; k++) {
				double t0 = zp_now_s();
				ZP_ASSERT(zp_fwd_run(fw, p, n, NULL) == 0);
				t[k] = zp_now_s() - t0;
			}
			for (int i = 1; i < 5; i++) /* median of 5 */
				for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
					double x = t[j];
					t[j] = t[j - 1];
					t[j - 1] = x;
				}
			fprintf(f, "%d %.0f %.6g\n", n * L, pairs, t[2]);
			for (int s = 0; s < n; s++)
				zp_req_free(&r[s]);
			free(r);
			free(ids);
		}
	zp_fwd_free(fw);
	zp_model_free(&m);
	fclose(f);
	return 0;
}

/* Least squares t = a + b tokens + c pairs over the profile's lines. */
static int profile_fit(const char *path, fwd_model *fm)
{
	FILE *f = fopen(path, "r");
	char line[256];
	double A[3][4] = { { 0 } };
	int n = 0;
	if (!f || !fgets(line, sizeof line, f) || strncmp(line, PROFILE_MAGIC, strlen(PROFILE_MAGIC)))
		return fprintf(stderr, "%s: not a profile (%s)\n", path, PROFILE_MAGIC), -1;
	while (fgets(line, sizeof line, f)) {
		double x[3] = { 1, 0, 0 }, y;
		if (line[0] == '#' || sscanf(line, "%lf %lf %lf", &x[1], &x[2], &y) != 3)
			continue;
		for (int i = 0; i < 3; i++) {
			for (int j = 0; j < 3; j++)
				A[i][j] += x[i] * x[j];
			A[i][3] += x[i] * y;
		}
		n++;
	}
	fclose(f);
	if (n < 3)
		return fprintf(stderr, "%s: fewer than 3 measurements\n", path), -1;
	for (int i = 0; i < 3; i++) /* Gauss-Jordan, partial pivoting */
		for (int k = i + 1; k < 3; k++)
			if (fabs(A[k][i]) > fabs(A[i][i]))
				for (int j = 0; j < 4; j++) {
					double t = A[i][j];
					A[i][j] = A[k][j];
					A[k][j] = t;
				}
	for (int i = 0; i < 3; i++) {
		double p = A[i][i];
		if (fabs(p) < 1e-300)
			return fprintf(stderr, "%s: singular fit\n", path), -1;
		for (int j = 0; j < 4; j++)
			A[i][j] /= p;
		for (int k = 0; k < 3; k++)
			if (k != i) {
				double q = A[k][i];
				for (int j = 0; j < 4; j++)
					A[k][j] -= q * A[i][j];
			}
	}
	*fm = (fwd_model){ ZP_MAX(A[0][3], 0), ZP_MAX(A[1][3], 0), ZP_MAX(A[2][3], 0) };
	return 0;
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
	zp_job job;
	double done_at;
	bool sent, rejected;
} request;

static int32_t *ids_of(const cJSON *a, int *n)
{
	*n = cJSON_GetArraySize(a);
	int32_t *v = zp_xmalloc((size_t)ZP_MAX(*n, 1) * sizeof *v);
	for (int i = 0; i < *n; i++)
		v[i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
	return v;
}

static void seq_init(zp_req *r, const int32_t *ids, int n)
{
	memset(r, 0, sizeof *r);
	r->tokens = zp_xmalloc((size_t)n * sizeof *r->tokens);
	memcpy(r->tokens, ids, (size_t)n * sizeof *ids);
	r->ntok = n;
	r->ncand = 2;
	r->want_cands = true;
	r->plp_start = -1;
}

static request *load_workload(const char *path, int *count)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	int cap = 1024, n = 0;
	request *q = zp_xcalloc((size_t)cap, sizeof *q);
	size_t sz = 0;
	char *line = NULL;
	while (getline(&line, &sz, f) > 0) {
		char p[64];
		int off = 0;
		double at;
		if (sscanf(line, "@%lf %63s %n", &at, p, &off) < 2 || !off)
			continue;
		cJSON *b = cJSON_Parse(line + off);
		if (!b)
			continue;
		if (n == cap) {
			q = realloc(q, (size_t)(cap *= 2) * sizeof *q);
			ZP_ASSERT(q);
		}
		request *r = &q[n++];
		memset(r, 0, sizeof *r);
		r->at = at;
		const cJSON *pr = cJSON_GetObjectItem(b, "prompt_token_ids");
		const cJSON *items = cJSON_GetObjectItem(b, "items");
		int nq, ni;
		if (pr) {
			int32_t *v = ids_of(pr, &nq);
			r->job.nseq = 1;
			r->job.seq = zp_xcalloc(1, sizeof *r->job.seq);
			seq_init(&r->job.seq[0], v, nq);
			free(v);
		} else { /* score: query + each item */
			int32_t *qv = ids_of(cJSON_GetObjectItem(b, "query"), &nq);
			r->job.nseq = cJSON_GetArraySize(items);
			r->job.seq = zp_xcalloc((size_t)r->job.nseq, sizeof *r->job.seq);
			for (int k = 0; k < r->job.nseq; k++) {
				int32_t *iv = ids_of(cJSON_GetArrayItem(items, k), &ni);
				int32_t *all = zp_xmalloc((size_t)(nq + ni) * sizeof *all);
				memcpy(all, qv, (size_t)nq * sizeof *all);
				memcpy(all + nq, iv, (size_t)ni * sizeof *all);
				seq_init(&r->job.seq[k], all, nq + ni);
				free(iv);
				free(all);
			}
			free(qv);
		}
		for (int k = 0; k < r->job.nseq; k++)
			r->job.tokens += r->job.seq[k].ntok;
		cJSON_Delete(b);
	}
	free(line);
	fclose(f);
	*count = n;
	return q;
}

/* ---- one simulated forward ---- */

typedef struct {
	zp_batch b;
	bool busy;
	double done_at;
	lru cache;
	long prompt, computed, hits;
} sim_exec;

/* The forward's reuse plan for b on x's cache (prefix_plan.c's rules, pins
   aside), the inserts and evictions, and its time. */
static double run_forward(sim_exec *x, const fwd_model *fm)
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
		x->prompt += r->ntok;
		x->hits += (long)h * ZP_KV_BLOCK;
	}
	x->computed += computed;
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
	double t = fm->a + fm->b * (double)computed + fm->c * pairs;
	b->fwd_s = t;
	b->stats.mlp_s = fm->b * (double)computed; /* the linear part: T's rate input */
	b->failed = 0;
	return t;
}

/* ---- the virtual clock ---- */

typedef struct {
	const zp_config *cfg;
	int executors, conns, batch_tokens;
	size_t kv_bytes;
	double wait_s;
	fwd_model fm;
} sim_opts;

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void simulate(const sim_opts *o, enum zp_sched_policy pol, request *rq, int nrq)
{
	zp_sched s;
	long block = (long)zp_kv_block_bytes(o->cfg->layers, o->cfg->kv_heads * o->cfg->head_dim);
	long tokens_max = 1L << 22;
	zp_sched_init(&s, 256, tokens_max, o->batch_tokens, o->wait_s);
	zp_sched_cfg c = { .policy = pol, .executors = o->executors, .model = o->cfg, .gamma = 1.2,
			   .aging_s = 0.05, .min_tokens = 512,
			   .shadow_blocks = (long)o->kv_bytes / block,
			   .shadow_pending = tokens_max / ZP_KV_BLOCK };
	zp_sched_setup(&s, &c);
	sim_exec *x = zp_xcalloc((size_t)o->executors, sizeof *x);
	for (int i = 0; i < o->executors; i++)
		lru_init(&x[i].cache, (long)o->kv_bytes / block);
	for (int i = 0; i < nrq; i++) {
		rq[i].sent = rq[i].rejected = false;
		rq[i].job.dispatched = rq[i].job.done = 0;
		rq[i].job.cancelled = rq[i].job.failed = false;
		rq[i].job.prev = rq[i].job.next = NULL;
	}
	double now = 0, *lat = zp_xcalloc((size_t)ZP_MAX(nrq, 1), sizeof *lat);
	int next = 0, outstanding = 0, answered = 0, rejected = 0;
	long ok_tokens = 0;
	for (;;) {
		/* the client sends what is due while it has a free connection */
		while (next < nrq && rq[next].at <= now && outstanding < o->conns) {
			request *r = &rq[next++];
			r->sent = true;
			if (zp_sched_admit(&s, &r->job, now)) {
				r->rejected = true; /* a 503 at once */
				rejected++;
				continue;
			}
			outstanding++;
		}
		/* idle executors cut; the engine forces a cut when none is busy */
		double wake = HUGE_VAL;
		bool any_busy = false;
		for (int i = 0; i < o->executors; i++)
			any_busy |= x[i].busy;
		for (int i = 0; i < o->executors; i++) {
			double w;
			if (x[i].busy)
				continue;
			memset(&x[i].b, 0, sizeof x[i].b);
			x[i].b.exec = i;
			if (zp_sched_next_batch(&s, now, !any_busy, &x[i].b, &w)) {
				x[i].busy = any_busy = true;
				x[i].done_at = now + run_forward(&x[i], &o->fm);
			} else if (w > now) {
				wake = ZP_MIN(wake, w);
			}
		}
		/* the next event */
		double t = wake;
		if (next < nrq && outstanding < o->conns)
			t = ZP_MIN(t, ZP_MAX(rq[next].at, now));
		for (int i = 0; i < o->executors; i++)
			if (x[i].busy)
				t = ZP_MIN(t, x[i].done_at);
		if (t == HUGE_VAL)
			break;
		now = ZP_MAX(now, t);
		for (int i = 0; i < o->executors; i++) {
			if (!x[i].busy || x[i].done_at > now)
				continue;
			x[i].busy = false;
			zp_sched_batch_done(&s, &x[i].b, NULL);
			for (int k = 0; k < x[i].b.n; k++) {
				zp_job *j = x[i].b.job[k];
				if (!zp_sched_seq_done(&s, j))
					continue;
				request *r = (request *)((char *)j - offsetof(request, job));
				zp_sched_finish(&s, j);
				lat[answered++] = now - r->at;
				ok_tokens += j->tokens;
				outstanding--;
			}
		}
	}
	long prompt = 0, computed = 0, hits = 0;
	for (int i = 0; i < o->executors; i++) {
		prompt += x[i].prompt;
		computed += x[i].computed;
		hits += x[i].hits;
		free(x[i].cache.n);
		free(x[i].cache.bucket);
	}
	qsort(lat, (size_t)answered, sizeof *lat, cmp_d);
	double span = now > 0 ? now : 1;
	printf("%-12s req_s=%.1f tok_s=%.1f p50_ms=%.2f p99_ms=%.2f computed_ratio=%.3f "
	       "hit_rate=%.3f ok=%d other=%d T_flops=%.6g knee_tokens=%d\n",
	       zp_sched_policy_name(pol), answered / span, ok_tokens / span,
	       answered ? 1e3 * lat[answered / 2] : 0,
	       answered ? 1e3 * lat[(int)(0.99 * (answered - 1))] : 0,
	       prompt ? (double)computed / prompt : 0, prompt ? (double)hits / prompt : 0, answered,
	       rejected, s.threshold, s.knee_tokens);
	free(lat);
	free(x);
	zp_sched_free(&s);
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "--profile-out"))
		return profile_out(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 1);
	if (argc < 4) {
		fprintf(stderr, "usage: %s --profile-out FILE MODEL_DIR [THREADS]\n"
			"       %s MODEL_DIR WORKLOAD PROFILE [--executors N] [--kv-bytes B] "
			"[--policies LIST] [--conns N] [--batch-tokens N] [--wait-ms MS]\n",
			argv[0], argv[0]);
		return 2;
	}
	zp_config cfg;
	zp_err e;
	sim_opts o = { .executors = 2, .conns = 64, .batch_tokens = 8192, .kv_bytes = 1 << 20,
		       .wait_s = 0.002, .cfg = &cfg };
	const char *pols = "fifo prefix_flops least_tokens vllm";
	for (int i = 4; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--executors"))
			o.executors = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--kv-bytes"))
			o.kv_bytes = (size_t)atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--policies"))
			pols = argv[i + 1];
		else if (!strcmp(argv[i], "--conns"))
			o.conns = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch-tokens"))
			o.batch_tokens = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--wait-ms"))
			o.wait_s = atof(argv[i + 1]) / 1e3;
		else
			return fprintf(stderr, "unknown option %s\n", argv[i]), 2;
	}
	if (o.executors < 1 || o.executors > ZP_EXECUTORS_MAX || o.conns < 1 || o.batch_tokens < 16)
		return fprintf(stderr, "bad --executors, --conns or --batch-tokens\n"), 2;
	zp_log_min = ZP_LOG_WARN;
	if (zp_config_load(&cfg, argv[1], &e))
		return fprintf(stderr, "%s\n", e.msg), 1;
	if (profile_fit(argv[3], &o.fm))
		return 1;
	int n;
	request *rq = load_workload(argv[2], &n);
	if (!rq)
		return fprintf(stderr, "cannot read %s\n", argv[2]), 1;
	printf("model=%s executors=%d kv_bytes=%zu requests=%d forward: %.3g s + %.3g s/token + "
	       "%.3g s/pair\n", argv[1], o.executors, o.kv_bytes, n, o.fm.a, o.fm.b, o.fm.c);
	char *list = strdup(pols), *sv = NULL;
	for (char *p = strtok_r(list, " ,", &sv); p; p = strtok_r(NULL, " ,", &sv)) {
		enum zp_sched_policy pol;
		if (zp_sched_policy_parse(p, &pol))
			return fprintf(stderr, "unknown policy %s\n", p), 2;
		simulate(&o, pol, rq, n);
	}
	free(list);
	return 0;
}
