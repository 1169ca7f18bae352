/* scheduler.c -- see scheduler.h. Jobs queue in arrival order. Under fifo a
   batch takes whole sequences from the front until the next would pass the
   token budget, so a job's sequences may span several batches (and
   executors). Under the routing policies a job's sequences are routed in
   order (j->dispatched counts those routed) into the executors' rings, from
   whose front batches are cut. */
#include "scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asyncep.h"
#include "util.h"

static const char *const policy_names[] = { "prefix_flops", "fifo", "least_tokens", "vllm" };

int zp_sched_policy_parse(const char *s, enum zp_sched_policy *p)
{
	for (int i = 0; i < (int)(sizeof policy_names / sizeof *policy_names); i++)
		if (!strcmp(s, policy_names[i])) {
			*p = (enum zp_sched_policy)i;
			return 0;
		}
	return -1;
}

const char *zp_sched_policy_name(enum zp_sched_policy p)
{
	return (unsigned)p < sizeof policy_names / sizeof *policy_names ? policy_names[p] : NULL;
}

void zp_sched_init(zp_sched *s, int requests_max, long tokens_max, int batch_tokens_max,
		   double batch_wait_s)
{
	memset(s, 0, sizeof *s);
	s->requests_max = requests_max;
	s->tokens_max = tokens_max;
	s->batch_tokens_max = batch_tokens_max;
	s->batch_wait_s = batch_wait_s;
	s->policy = ZP_SCHED_FIFO;
	s->threshold = HUGE_VAL;
}

static void update_threshold(zp_sched *s)
{
	/* No gather measured (replicas, one executor, no AsyncEP): nothing to
	   hide, but an executor holding a full forward's work is still busy
	   enough; without a bound every request sharing a prefix would queue on
	   the executor that holds it while the others idle. */
	double full = s->cost.layers > 0 ?
		s->cost.lin_tok * (double)s->batch_tokens_max / s->cost.layers : HUGE_VAL;
	s->threshold = s->gather_s > 0 && s->flops_per_s > 0 ?
		ZP_MAX(s->gather_s * s->flops_per_s * s->gamma, s->threshold_min) :
		ZP_MAX(full, s->threshold_min);
}

static void retry_setup(zp_sched *s);

void zp_sched_setup(zp_sched *s, const zp_sched_cfg *c)
{
	ZP_ASSERT(!s->ex && !s->head && c->executors >= 1 && c->executors <= ZP_EXECUTORS_MAX);
	s->policy = c->policy;
	s->nexec = c->executors;
	zp_cost_init(&s->cost, c->model);
	s->gather_s = c->gather_s;
	s->flops_per_s = c->flops_per_s;
	s->gamma = c->gamma > 0 ? c->gamma : 1.2;
	s->aging_s = c->aging_s;
	s->shadow_blocks = c->shadow_blocks;
	s->threshold_min = s->cost.lin_tok * ZP_MAX(c->min_tokens, 0) / s->cost.layers;
	update_threshold(s);
	retry_setup(s);
	if (s->policy == ZP_SCHED_FIFO)
		return;
	s->ex = zp_xcalloc((size_t)s->nexec, sizeof *s->ex);
	/* room for the cache's blocks and the pending ones at half load */
	long want = 2 * (c->shadow_blocks + ZP_MAX(c->shadow_pending, 0));
	unsigned slots = 16;
	while ((long)slots < want && slots < ZP_SCHED_SHADOW_MAX)
		slots *= 2;
	for (int x = 0; x < s->nexec; x++) {
		s->ex[x].q = zp_xcalloc(ZP_SCHED_LOCAL_MAX, sizeof *s->ex[x].q);
		if (c->shadow_blocks > 0) {
			s->ex[x].tab = zp_xcalloc(slots, sizeof *s->ex[x].tab);
			s->ex[x].mask = slots - 1;
		}
	}
}

void zp_sched_free(zp_sched *s)
{
	for (int x = 0; s->ex && x < s->nexec; x++) {
		free(s->ex[x].q);
		free(s->ex[x].tab);
	}
	free(s->ex);
	s->ex = NULL;
	free(s->retry);
	s->retry = NULL;
}

/* ---- the shadow ------------------------------------------------------------------ */

static unsigned slot_of(const zp_sched_exec *X, zp_blk_key k)
{
	return (unsigned)(k.lo ^ (k.hi >> 17)) & X->mask;
}

static zp_sched_blk *blk_find(const zp_sched_exec *X, zp_blk_key k)
{
	for (unsigned i = slot_of(X, k);; i = (i + 1) & X->mask) {
		zp_sched_blk *b = &X->tab[i];
		if (!b->used)
			return NULL;
		if (zp_blk_key_eq(b->key, k))
			return b;
	}
}

/* The slot for k, new if need be; NULL when the table is at 3/4. */
static zp_sched_blk *blk_add(zp_sched_exec *X, zp_blk_key k)
{
	zp_sched_blk *b = blk_find(X, k);
	if (b)
		return b;
	if ((unsigned long)X->used >= (X->mask + 1ul) / 4 * 3)
		return NULL;
	unsigned i = slot_of(X, k);
	while (X->tab[i].used)
		i = (i + 1) & X->mask;
	X->tab[i] = (zp_sched_blk){ .key = k, .used = true };
	X->used++;
	return &X->tab[i];
}

/* Empty slot i (linear probing: later members of its run shift back). */
static void blk_del(zp_sched_exec *X, unsigned i)
{
	X->tab[i].used = false;
	X->used--;
	for (unsigned j = (i + 1) & X->mask; X->tab[j].used; j = (j + 1) & X->mask) {
		unsigned h = slot_of(X, X->tab[j].key);
		/* j's entry may move to i when its home is not in (i, j] */
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			X->tab[i] = X->tab[j];
			X->tab[j].used = false;
			i = j;
		}
	}
}

static void blk_drop_if_idle(zp_sched_exec *X, zp_sched_blk *b)
{
	if (!b->committed && b->pending == 0)
		blk_del(X, (unsigned)(b - X->tab));
}

/* The executor's cache was forgotten (overflow, or the table is full). */
static void shadow_forget(zp_sched_exec *X)
{
	for (unsigned i = 0; i <= X->mask;) {
		zp_sched_blk *b = &X->tab[i];
		if (b->used && b->committed) {
			b->committed = false;
			X->committed--;
			if (b->pending == 0) {
				blk_del(X, i); /* something may have shifted into i: look again */
				continue;
			}
		}
		i++;
	}
	ZP_ASSERT(X->committed == 0);
}

/* r's full blocks: pending += d (d = +1 routed, -1 back); back and well, they
   are committed. */
static void shadow_seq(zp_sched *s, zp_sched_exec *X, const zp_req *r, int d, bool commit)
{
	zp_blk_key k = zp_blk_key_root();
	for (int b = 0; b < r->ntok / ZP_KV_BLOCK; b++) {
		k = zp_blk_key_next(k, r->tokens + (size_t)b * ZP_KV_BLOCK);
		zp_sched_blk *e = d > 0 || commit ? blk_add(X, k) : blk_find(X, k);
		if (!e && commit && X->committed > 0) { /* full of committed blocks: start over */
			shadow_forget(X);
			e = blk_add(X, k);
		}
		if (!e)
			continue; /* full of pending blocks: this one is not shadowed */
		if (d > 0)
			e->pending++;
		else if (e->pending > 0)
			e->pending--;
		if (commit && !e->committed) {
			e->committed = true;
			X->committed++; /* over the cache's size: zp_sched_batch_done, after
					   the batch's evictions are applied */
		}
		blk_drop_if_idle(X, e);
	}
}

/* Matched leading blocks of r on every executor into m[nexec]; the walk stops
   when no executor matches. A fully cached prompt still computes its last
   token: the match stops before the block holding it. */
static void match_all(const zp_sched *s, const zp_req *r, int *m)
{
	int alive = 0, nb = (r->ntok - 1) / ZP_KV_BLOCK;
	for (int x = 0; x < s->nexec; x++) {
		m[x] = 0;
		alive += s->ex[x].tab != NULL;
	}
	zp_blk_key k = zp_blk_key_root();
	for (int b = 0; b < nb && alive; b++) {
		k = zp_blk_key_next(k, r->tokens + (size_t)b * ZP_KV_BLOCK);
		for (int x = 0; x < s->nexec; x++) {
			if (!s->ex[x].tab || m[x] != b)
				continue;
			if (blk_find(&s->ex[x], k))
				m[x]++;
			else
				alive--;
		}
	}
}

int zp_sched_match(const zp_sched *s, int x, const zp_req *r)
{
	int m[ZP_EXECUTORS_MAX];
	ZP_ASSERT(x >= 0 && x < s->nexec && s->ex);
	match_all(s, r, m);
	return m[x];
}

/* ---- admission and routing ---------------------------------------------------- */

static void unlink_job(zp_sched *s, zp_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		s->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		s->tail = j->prev;
	j->prev = j->next = NULL;
}

int zp_sched_admit(zp_sched *s, zp_job *j, double now)
{
	ZP_ASSERT(j->nseq > 0 && j->dispatched == 0 && j->done == 0);
	for (int i = 0; i < j->nseq; i++)
		ZP_ASSERT(j->seq[i].ntok > 0);
	if (s->requests >= s->requests_max || s->tokens + j->tokens > s->tokens_max)
		return -1;
	s->requests++;
	s->tokens += j->tokens;
	s->queued_tokens += j->tokens;
	s->queued_seqs += j->nseq;
	j->t_arrive = now;
	j->t_dispatch = -1;
	j->prev = s->tail;
	j->next = NULL;
	if (s->tail)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	return 0;
}

double zp_sched_load(const zp_sched *s, int x)
{
	ZP_ASSERT(x >= 0 && (x < s->nexec || !s->ex));
	return s->ex ? s->ex[x].q_cost + s->ex[x].out_cost : 0;
}

/* x may receive: room in its ring, and (prefix_flops) below T. */
static bool open_for(const zp_sched *s, int x)
{
	const zp_sched_exec *X = &s->ex[x];
	return X->q_n < ZP_SCHED_LOCAL_MAX && !(s->down >> x & 1) &&
	       (s->policy != ZP_SCHED_PREFIX_FLOPS || zp_sched_load(s, x) < s->threshold);
}

/* The open executor the policy gives a sequence with matches m (NULL: none
   known) to; one must be open. */
static int choose(const zp_sched *s, const int *m)
{
	int best = -1;
	double bk = 0, bl = 0;
	for (int x = 0; x < s->nexec; x++) {
		const zp_sched_exec *X = &s->ex[x];
		if (!open_for(s, x))
			continue;
		double key, load = zp_sched_load(s, x);
		if (s->policy == ZP_SCHED_PREFIX_FLOPS)
			key = -(double)m[x]; /* longest match, then the lower load */
		else if (s->policy == ZP_SCHED_LEAST_TOKENS)
			key = (double)(X->q_tokens + X->out_tokens);
		else
			key = 4.0 * X->q_n + X->out_seqs;
		if (best < 0 || key < bk || (key == bk && load < bl)) {
			best = x;
			bk = key;
			bl = load;
		}
	}
	ZP_ASSERT(best >= 0);
	return best;
}

/* The next sequence of j goes to executor x, m of its blocks held there. */
static void route(zp_sched *s, zp_job *j, int x, int m)
{
	zp_sched_exec *X = &s->ex[x];
	int k = j->dispatched++;
	zp_req *r = &j->seq[k];
	double cost = zp_cost_seq(&s->cost, r->ntok, (long)m * ZP_KV_BLOCK, zp_cost_rows(r));
	ZP_ASSERT(X->q_n < ZP_SCHED_LOCAL_MAX);
	X->q[(X->q_head + X->q_n++) % ZP_SCHED_LOCAL_MAX] = (zp_sched_ent){ j, k, cost };
	X->q_tokens += r->ntok;
	X->q_cost += cost;
	if (X->tab)
		shadow_seq(s, X, r, +1, false);
	if (j->dispatched == j->nseq)
		unlink_job(s, j);
}

/* Route queued sequences until no executor is open or nothing is queued. */
static void admission_round(zp_sched *s, double now)
{
	int m[ZP_EXECUTORS_MAX], mb[ZP_EXECUTORS_MAX];
	while (s->head) {
		zp_job *pick = s->head;
		bool open = false;
		for (int x = 0; x < s->nexec && !open; x++)
			open = open_for(s, x);
		if (!open)
			return; /* every executor saturated: no match to compute */
		if (s->policy != ZP_SCHED_PREFIX_FLOPS) {
			route(s, pick, choose(s, NULL), 0);
			continue;
		}
		match_all(s, &pick->seq[pick->dispatched], mb);
		int x = choose(s, mb);
		if (now - pick->t_arrive < s->aging_s) { /* the longest match among the first few */
			int best = mb[x], scanned = 1;
			for (zp_job *j = pick->next; j && scanned < ZP_SCHED_SCAN; j = j->next, scanned++) {
				match_all(s, &j->seq[j->dispatched], m);
				int y = choose(s, m);
				if (m[y] > best) {
					best = m[y];
					pick = j;
					x = y;
					memcpy(mb, m, sizeof(int) * (size_t)s->nexec);
				}
			}
		} else {
			s->aged++; /* the head has waited aging_s: it goes first, whatever matches */
		}
		route(s, pick, x, mb[x]);
	}
}

/* ---- batches ------------------------------------------------------------------ */

/* fifo: whole sequences from the queue's front. */
static int cut_fifo(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	if (!s->head)
		return 0;
	double due = s->head->t_arrive + s->batch_wait_s;
	if (!force && now < due && s->queued_tokens < s->batch_tokens_max &&
	    s->queued_seqs < ZP_FWD_SEQS_MAX) {
		*wake_at = due;
		return 0;
	}
	for (zp_job *j = s->head, *next; j; j = next) {
		next = j->next;
		while (j->dispatched < j->nseq && b->n < ZP_FWD_SEQS_MAX) {
			zp_req *r = &j->seq[j->dispatched];
			if (b->n && b->tokens + r->ntok > s->batch_tokens_max)
				goto full; /* a sequence over the budget goes alone */
			b->req[b->n] = r;
			b->job[b->n++] = j;
			b->tokens += r->ntok;
			s->queued_tokens -= r->ntok;
			s->queued_seqs--;
			if (j->dispatched++ == 0)
				j->t_dispatch = now;
		}
		if (j->dispatched < j->nseq)
			break;
		unlink_job(s, j);
	}
full:
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	return b->n;
}

/* A routing policy: the front of b->exec's ring. */
static int cut_routed(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	ZP_ASSERT(b->exec >= 0 && b->exec < s->nexec);
	zp_sched_exec *X = &s->ex[b->exec];
	ZP_ASSERT(!X->out);
	if (!X->q_n)
		return 0;
	double oldest = HUGE_VAL;
	for (int i = 0; i < X->q_n; i++)
		oldest = ZP_MIN(oldest, X->q[(X->q_head + i) % ZP_SCHED_LOCAL_MAX].job->t_arrive);
	double due = oldest + s->batch_wait_s;
	bool saturated = s->policy == ZP_SCHED_PREFIX_FLOPS && X->q_cost >= s->threshold;
	if (!force && !saturated && now < due && X->q_tokens < s->batch_tokens_max &&
	    X->q_n < ZP_FWD_SEQS_MAX) {
		*wake_at = due;
		return 0;
	}
	while (X->q_n && b->n < ZP_FWD_SEQS_MAX) {
		zp_sched_ent *e = &X->q[X->q_head];
		zp_req *r = &e->job->seq[e->seq];
		if (b->n && b->tokens + r->ntok > s->batch_tokens_max)
			break; /* a sequence over the budget goes alone */
		b->req[b->n] = r;
		b->job[b->n++] = e->job;
		b->tokens += r->ntok;
		if (e->job->t_dispatch < e->job->t_arrive)
			e->job->t_dispatch = now;
		X->q_tokens -= r->ntok;
		X->q_cost -= e->cost;
		X->out_cost += e->cost;
		s->queued_tokens -= r->ntok;
		s->queued_seqs--;
		X->q_head = (X->q_head + 1) % ZP_SCHED_LOCAL_MAX;
		X->q_n--;
	}
	if (!X->q_n)
		X->q_cost = 0; /* no drift from the sums */
	X->out = true;
	X->out_tokens = b->tokens;
	X->out_seqs = b->n;
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	return b->n;
}

static int cut_retry(zp_sched *s, double now, zp_batch *b);

int zp_sched_next_batch(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	*wake_at = 0;
	b->n = b->tokens = 0;
	if (s->retry_n)
		return cut_retry(s, now, b);
	if (s->policy == ZP_SCHED_FIFO)
		return cut_fifo(s, now, force, b, wake_at);
	admission_round(s, now);
	return cut_routed(s, now, force, b, wake_at);
}

void zp_sched_batch_done(zp_sched *s, const zp_batch *b, const zp_sched_obs *o)
{
	if (o && o->gather_s > 0)
		s->gather_s = s->gather_s > 0 ?
			(1 - ZP_SCHED_EWMA) * s->gather_s + ZP_SCHED_EWMA * o->gather_s : o->gather_s;
	long computed = 0;
	for (int k = 0; k < b->n; k++)
		computed += b->req[k]->ntok - b->kv_hit_tokens[k];
	double mlp_s = b->stats.mlp_s - (o ? o->wait_s : 0);
	if (!b->failed && computed > 0 && mlp_s > 0) {
		double rate = s->cost.mlp_tok * (double)computed / mlp_s;
		s->flops_per_s = s->flops_per_s > 0 ?
			(1 - ZP_SCHED_EWMA) * s->flops_per_s + ZP_SCHED_EWMA * rate : rate;
	}
	update_threshold(s);
	if (s->policy == ZP_SCHED_FIFO)
		return;
	ZP_ASSERT(b->exec >= 0 && b->exec < s->nexec);
	zp_sched_exec *X = &s->ex[b->exec];
	ZP_ASSERT(X->out);
	X->out = false;
	X->out_cost = 0;
	X->out_tokens = 0;
	X->out_seqs = 0;
	if (!X->tab)
		return;
	for (int k = 0; k < b->n; k++)
		shadow_seq(s, X, b->req[k], -1, !b->failed);
	if (b->kv_evicted_overflow)
		return shadow_forget(X);
	ZP_ASSERT(b->kv_evicted_n >= 0 && b->kv_evicted_n <= ZP_KV_EVICT_REPORT);
	for (int i = 0; i < b->kv_evicted_n; i++) {
		zp_sched_blk *e = blk_find(X, b->kv_evicted[i]);
		if (e && e->committed) {
			e->committed = false;
			X->committed--;
			blk_drop_if_idle(X, e);
		}
	}
	if (X->committed > s->shadow_blocks) /* more than the cache holds: it evicted unreported */
		shadow_forget(X);
}

bool zp_sched_seq_done(zp_sched *s, zp_job *j)
{
	ZP_ASSERT(j->done < j->dispatched);
	j->done++;
	return j->done == j->dispatched && (j->done == j->nseq || j->cancelled);
}

/* Drop j's routed, uncut sequences from every ring. */
static void drop_routed(zp_sched *s, zp_job *j)
{
	for (int x = 0; x < s->nexec; x++) {
		zp_sched_exec *X = &s->ex[x];
		int kept = 0;
		for (int i = 0; i < X->q_n; i++) {
			zp_sched_ent e = X->q[(X->q_head + i) % ZP_SCHED_LOCAL_MAX];
			if (e.job != j) {
				X->q[(X->q_head + kept++) % ZP_SCHED_LOCAL_MAX] = e;
				continue;
			}
			zp_req *r = &j->seq[e.seq];
			X->q_tokens -= r->ntok;
			X->q_cost -= e.cost;
			s->queued_tokens -= r->ntok;
			s->queued_seqs--;
			j->dispatched--; /* never went out: nothing of it comes back */
			if (X->tab)
				shadow_seq(s, X, r, -1, false);
		}
		X->q_n = kept;
		if (!kept)
			X->q_cost = 0;
	}
}

static void drop_retry(zp_sched *s, zp_job *j);

bool zp_sched_cancel(zp_sched *s, zp_job *j)
{
	ZP_ASSERT(!j->cancelled);
	j->cancelled = true;
	if (j->dispatched < j->nseq) { /* still queued: drop what is left */
		for (int i = j->dispatched; i < j->nseq; i++)
			s->queued_tokens -= j->seq[i].ntok;
		s->queued_seqs -= j->nseq - j->dispatched;
		unlink_job(s, j);
	}
	if (s->ex)
		drop_routed(s, j);
	drop_retry(s, j);
	return j->done == j->dispatched;
}

void zp_sched_finish(zp_sched *s, zp_job *j)
{
	s->requests--;
	s->tokens -= j->tokens;
	ZP_ASSERT(s->requests >= 0 && s->tokens >= 0);
}

/* ---- lost executors: the sequences run again ----------------------------------- */

/* The retry ring holds what executors can hold at once: each one's routed
   ring and a batch out, twice (lost, then lost again after a rejoin). */
static void retry_setup(zp_sched *s)
{
	s->retry_cap = 2 * s->nexec * (ZP_SCHED_LOCAL_MAX + ZP_FWD_SEQS_MAX);
	s->retry = zp_xcalloc((size_t)s->retry_cap, sizeof *s->retry);
}

static bool retry_push(zp_sched *s, zp_sched_ent e)
{
	if (s->retry_n == s->retry_cap)
		return false;
	s->retry[(s->retry_head + s->retry_n++) % s->retry_cap] = e;
	return true;
}

void zp_sched_requeue(zp_sched *s, zp_job *j, int seq)
{
	ZP_ASSERT(seq >= 0 && seq < j->dispatched && j->done < j->dispatched && s->retry);
	ZP_ASSERT(retry_push(s, (zp_sched_ent){ j, seq, 0 })); /* sized for every batch out */
	s->queued_tokens += j->seq[seq].ntok;
	s->queued_seqs++;
}

void zp_sched_set_down(zp_sched *s, int x, bool down)
{
	ZP_ASSERT(x >= 0 && x < s->nexec && x < 64);
	s->down = down ? s->down | 1ull << x : s->down & ~(1ull << x);
	if (!down || !s->ex)
		return;
	zp_sched_exec *X = &s->ex[x];
	while (X->q_n && s->retry_n < s->retry_cap) { /* still queued: the counts stay */
		zp_sched_ent e = X->q[X->q_head];
		zp_req *r = &e.job->seq[e.seq];
		X->q_tokens -= r->ntok;
		X->q_cost -= e.cost;
		if (X->tab)
			shadow_seq(s, X, r, -1, false);
		retry_push(s, e);
		X->q_head = (X->q_head + 1) % ZP_SCHED_LOCAL_MAX;
		X->q_n--;
	}
	if (!X->q_n)
		X->q_cost = 0;
}

/* The batch for b->exec from the retry ring's front (due at once: they
   waited already). */
static int cut_retry(zp_sched *s, double now, zp_batch *b)
{
	zp_sched_exec *X = s->ex ? &s->ex[b->exec] : NULL;
	double cost = 0;
	ZP_ASSERT(!X || !X->out);
	while (s->retry_n && b->n < ZP_FWD_SEQS_MAX) {
		zp_sched_ent *e = &s->retry[s->retry_head];
		zp_req *r = &e->job->seq[e->seq];
		if (b->n && b->tokens + r->ntok > s->batch_tokens_max)
			break; /* a sequence over the budget goes alone */
		b->req[b->n] = r;
		b->job[b->n++] = e->job;
		b->tokens += r->ntok;
		if (e->job->t_dispatch < e->job->t_arrive)
			e->job->t_dispatch = now;
		s->queued_tokens -= r->ntok;
		s->queued_seqs--;
		if (X) {
			cost += zp_cost_seq(&s->cost, r->ntok, 0, zp_cost_rows(r));
			if (X->tab)
				shadow_seq(s, X, r, +1, false);
		}
		s->retry_head = (s->retry_head + 1) % s->retry_cap;
		s->retry_n--;
	}
	if (X) {
		X->out = true;
		X->out_cost = cost;
		X->out_tokens = b->tokens;
		X->out_seqs = b->n;
	}
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	return b->n;
}

/* j's client has gone: its sequences waiting to run again never will. */
static void drop_retry(zp_sched *s, zp_job *j)
{
	int kept = 0;
	for (int i = 0; i < s->retry_n; i++) {
		zp_sched_ent e = s->retry[(s->retry_head + i) % s->retry_cap];
		if (e.job != j) {
			s->retry[(s->retry_head + kept++) % s->retry_cap] = e;
			continue;
		}
		s->queued_tokens -= j->seq[e.seq].ntok;
		s->queued_seqs--;
		j->dispatched--; /* nothing of it comes back */
	}
	s->retry_n = kept;
}

/* A job with a sequence still queued anywhere (not yet routed, routed and
   not cut, or to run again), or NULL. */
zp_job *zp_sched_first_queued(const zp_sched *s)
{
	if (s->head)
		return s->head;
	if (s->retry_n)
		return s->retry[s->retry_head].job;
	for (int x = 0; s->ex && x < s->nexec; x++)
		if (s->ex[x].q_n)
			return s->ex[x].q[s->ex[x].q_head].job;
	return NULL;
}
