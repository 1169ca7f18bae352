/* scheduler.c -- see scheduler.h. Jobs queue in arrival order. Under fifo a
   batch takes whole sequences from the front until the next would pass the
   token budget, so a job's sequences may span several batches (and
   executors); prefix_flops takes them so too, jobs in its own order. Under
   least_tokens and vllm a job's sequences are routed in order
   (j->dispatched counts those routed) into the executors' rings, from whose
   front batches are cut. */
#include "scheduler.h"

#include <limits.h>
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

/* The median of the last min(n, ZP_SCHED_WINDOW) values of ring w. */
static double win_median(const double *w, int n)
{
	double v[ZP_SCHED_WINDOW];
	int k = ZP_MIN(n, ZP_SCHED_WINDOW);
	memcpy(v, w, (size_t)k * sizeof *v);
	for (int i = 1; i < k; i++) /* insertion sort: 32 at most */
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void win_push(double *w, int *n, double x)
{
	w[*n % ZP_SCHED_WINDOW] = x;
	(*n)++;
}

/* T from the windows' medians, within [threshold_min, threshold_max]; with
   no gather measured (replicas, one executor, no AsyncEP) there is nothing
   to hide: the floor. A move of 25% is logged. */
static void update_threshold(zp_sched *s)
{
	if (s->win_gather_n)
		s->gather_s = win_median(s->win_gather, s->win_gather_n);
	if (s->win_rate_n)
		s->flops_per_s = win_median(s->win_rate, s->win_rate_n);
	double t = s->gather_s > 0 && s->flops_per_s > 0 ?
		s->gather_s * s->flops_per_s * s->gamma : s->threshold_min;
	s->threshold = ZP_MIN(ZP_MAX(t, s->threshold_min), ZP_MAX(s->threshold_max, s->threshold_min));
	double was = s->threshold_logged;
	if (was > 0 && fabs(s->threshold - was) < 0.25 * was)
		return;
	if (was > 0) {
		s->threshold_moves++;
		zp_log(ZP_LOG_INFO, "msg=\"threshold moved\" threshold_gflop=%.4g was_gflop=%.4g "
		       "gather_ms=%.4g flop_rate_gflop_s=%.4g window=%d", s->threshold * 1e-9,
		       was * 1e-9, s->gather_s * 1e3, s->flops_per_s * 1e-9,
		       ZP_MIN(ZP_MAX(s->win_gather_n, s->win_rate_n), ZP_SCHED_WINDOW));
	}
	s->threshold_logged = s->threshold;
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
	s->threshold_max = s->cost.lin_tok * (double)s->batch_tokens_max / s->cost.layers;
	s->knee_tokens = 0; /* until forwards say where tokens/s levels off: T alone */
	if (c->gather_s > 0)
		win_push(s->win_gather, &s->win_gather_n, c->gather_s);
	if (c->flops_per_s > 0)
		win_push(s->win_rate, &s->win_rate_n, c->flops_per_s);
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
   are committed. Returns the leading blocks the shadow held before. */
static int shadow_seq(zp_sched *s, zp_sched_exec *X, const zp_req *r, int d, bool commit)
{
	zp_blk_key k = zp_blk_key_root();
	int held = 0;
	for (int b = 0; b < r->ntok / ZP_KV_BLOCK; b++) {
		k = zp_blk_key_next(k, r->tokens + (size_t)b * ZP_KV_BLOCK);
		zp_sched_blk *e = blk_find(X, k);
		held += held == b && e;
		if (!e && (d > 0 || commit))
			e = blk_add(X, k);
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
	return held;
}

/* Matched leading blocks of r on every executor into m[nexec]; the walk stops
   when no executor matches, or after max blocks (a bound on the hashing: the
   matches are then at least what was walked). A fully cached prompt still
   computes its last token: the match stops before the block holding it.
   Returns the blocks hashed. */
static int match_all(const zp_sched *s, const zp_req *r, int *m, long max)
{
	int alive = 0, nb = (r->ntok - 1) / ZP_KV_BLOCK, b;
	for (int x = 0; x < s->nexec; x++) {
		m[x] = 0;
		alive += s->ex[x].tab != NULL;
	}
	zp_blk_key k = zp_blk_key_root();
	for (b = 0; b < nb && alive && b < max; b++) {
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
	return b;
}

int zp_sched_match(const zp_sched *s, int x, const zp_req *r)
{
	int m[ZP_EXECUTORS_MAX];
	ZP_ASSERT(x >= 0 && x < s->nexec && s->ex);
	match_all(s, r, m, LONG_MAX);
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
	j->t_passed = -1;
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

/* least_tokens, vllm: x may receive: up, and room in its ring. */
static bool open_for(const zp_sched *s, int x)
{
	return s->ex[x].q_n < ZP_SCHED_LOCAL_MAX && !(s->down >> x & 1);
}

static bool any_open(const zp_sched *s)
{
	for (int x = 0; x < s->nexec; x++)
		if (open_for(s, x))
			return true;
	return false;
}

/* least_tokens, vllm: the open executor the policy gives the next sequence
   to; one must be open. */
static int choose(const zp_sched *s)
{
	int best = -1;
	double bk = 0, bl = 0;
	for (int x = 0; x < s->nexec; x++) {
		const zp_sched_exec *X = &s->ex[x];
		if (!open_for(s, x))
			continue;
		double load = zp_sched_load(s, x);
		double key = s->policy == ZP_SCHED_LEAST_TOKENS ? (double)(X->q_tokens + X->out_tokens)
								: 4.0 * X->q_n + X->out_seqs;
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
	int ctok = r->ntok - m * ZP_KV_BLOCK;
	double cost = zp_cost_seq(&s->cost, r->ntok, (long)m * ZP_KV_BLOCK, zp_cost_rows(r));
	ZP_ASSERT(X->q_n < ZP_SCHED_LOCAL_MAX && ctok >= 1);
	X->q[(X->q_head + X->q_n++) % ZP_SCHED_LOCAL_MAX] = (zp_sched_ent){ j, k, ctok, cost };
	X->q_tokens += r->ntok;
	X->q_ctok += ctok;
	X->q_cost += cost;
	if (X->tab)
		shadow_seq(s, X, r, +1, false);
	if (j->dispatched == j->nseq)
		unlink_job(s, j);
}

/* least_tokens, vllm: the queue's front, at once, where the policy says. */
static void balance_round(zp_sched *s)
{
	while (s->head && any_open(s))
		route(s, s->head, choose(s), 0);
}

/* ---- batches ------------------------------------------------------------------ */

/* Tokens r computes in batch b after its earlier members: a sequence of
   b sharing r's first full block is a root of the forward's sibling plan
   (no earlier one shares a block with it; forward.h), so the forward reuses
   at least the blocks r shares with the first such one. Cache hits are
   not counted: the forward may not find them. */
static int batch_ctok(const zp_batch *b, const zp_req *r)
{
	int lim = zp_fwd_reuse_blocks_max(r);
	for (int u = 0; lim > 0 && u < b->n; u++) {
		const zp_req *q = b->req[u];
		if (q->ntok < ZP_KV_BLOCK || memcmp(q->tokens, r->tokens, ZP_KV_BLOCK * sizeof(int32_t)))
			continue;
		int n = 1; /* as prefix_plan.c's common_blocks: full blocks of q */
		while (n < lim && (n + 1) * ZP_KV_BLOCK <= q->ntok &&
		       !memcmp(q->tokens + n * ZP_KV_BLOCK, r->tokens + n * ZP_KV_BLOCK,
			       ZP_KV_BLOCK * sizeof(int32_t)))
			n++;
		return r->ntok - n * ZP_KV_BLOCK;
	}
	return r->ntok;
}

/* r of j joins b when the budget (tokens computed) has room; *ctok: b's so
   far. A sequence over the budget goes alone. */
static bool batch_take(const zp_sched *s, zp_batch *b, long *ctok, zp_req *r, zp_job *j)
{
	int c = batch_ctok(b, r);
	if (b->n >= ZP_FWD_SEQS_MAX || (b->n && *ctok + c > s->batch_tokens_max))
		return false;
	b->req[b->n] = r;
	b->job[b->n++] = j;
	b->tokens += r->ntok;
	*ctok += c;
	return true;
}

/* fifo's moment (prefix_flops' too): a batch is due when the queue holds a
   forward's budget or sequences, or its oldest has waited batch_wait_s, or
   force; else *wake_at says when. */
static bool queue_due(const zp_sched *s, double now, bool force, double *wake_at)
{
	if (!s->head)
		return false;
	double due = s->head->t_arrive + s->batch_wait_s;
	if (!force && now < due && s->queued_tokens < s->batch_tokens_max &&
	    s->queued_seqs < ZP_FWD_SEQS_MAX) {
		*wake_at = due;
		return false;
	}
	return true;
}

/* j's sequences from its next one join b while it has room (whole sequences,
   in order); j leaves the queue with its last. false: b is full. */
static bool take_job(zp_sched *s, zp_batch *b, long *ctok, zp_job *j, double now)
{
	while (j->dispatched < j->nseq) {
		zp_req *r = &j->seq[j->dispatched];
		if (!batch_take(s, b, ctok, r, j))
			return false;
		s->queued_tokens -= r->ntok;
		s->queued_seqs--;
		if (j->dispatched++ == 0)
			j->t_dispatch = now;
	}
	unlink_job(s, j);
	return true;
}

/* fifo: whole sequences from the queue's front. */
static int cut_fifo(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	long ctok = 0;
	if (!queue_due(s, now, force, wake_at))
		return 0;
	for (zp_job *j = s->head, *next; j; j = next) {
		next = j->next;
		if (!take_job(s, b, &ctok, j, now))
			break;
	}
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	return b->n;
}

/* prefix_flops: the classes of queued jobs, in the order a batch takes them. */
enum flops_class {
	FLOPS_AGED,		/* passed over aging_s ago: first, wherever they match */
	FLOPS_MINE,		/* their longest match is on this executor */
	FLOPS_FREE,		/* no match anywhere (then the jobs past the scan) */
	FLOPS_THEIRS,		/* another executor up holds more of them: last */
	FLOPS_CLASSES
};

static enum flops_class flops_class(const zp_sched *s, int x, const zp_job *j, const int *m,
				    double now)
{
	int other = 0;
	if (j->t_passed >= 0 && now - j->t_passed >= s->aging_s)
		return FLOPS_AGED;
	for (int y = 0; y < s->nexec; y++)
		if (y != x && !(s->down >> y & 1))
			other = ZP_MAX(other, m[y]);
	if (other > m[x])
		return FLOPS_THEIRS;
	return m[x] > 0 ? FLOPS_MINE : FLOPS_FREE;
}

/* prefix_flops: b goes out on X: its sequences' blocks are pending there
   (an earlier sibling's count for a later one), their Delta is X's load. */
static void flops_out(zp_sched *s, zp_sched_exec *X, const zp_batch *b)
{
	double cost = 0;
	for (int k = 0; k < b->n; k++) {
		const zp_req *r = b->req[k];
		int held = X->tab ? shadow_seq(s, X, r, +1, false) : 0;
		held = ZP_MIN(held, (r->ntok - 1) / ZP_KV_BLOCK);
		cost += zp_cost_seq(&s->cost, r->ntok, (long)held * ZP_KV_BLOCK, zp_cost_rows(r));
	}
	X->out = true;
	X->out_cost = cost;
	X->out_tokens = b->tokens;
	X->out_seqs = b->n;
}

/* One prefix_flops cut's view of the first ZP_SCHED_SCAN queued jobs. */
typedef struct {
	zp_job *job[ZP_SCHED_SCAN];
	int was[ZP_SCHED_SCAN];		/* its dispatched count before the cut */
	enum flops_class cls[ZP_SCHED_SCAN];
	zp_blk_key first[ZP_SCHED_SCAN]; /* its next sequence's first block's key */
	bool full[ZP_SCHED_SCAN];	/* that sequence has a full first block */
	bool done[ZP_SCHED_SCAN];	/* this cut took from it */
	int n;
	int young;			/* the latest position taken from (n: past the scan) */
} flops_scan;

/* Scanned job i joins b (its sequences, in order, while b has room); then
   every other scanned job whose next sequence shares its first block
   (siblings: they meet in this forward), but those another executor holds
   more of. false: b is full. */
static bool flops_take(zp_sched *s, zp_batch *b, long *ctok, flops_scan *v, int i, double now)
{
	int k = b->n;
	bool room = take_job(s, b, ctok, v->job[i], now);
	v->done[i] = true;
	v->young = b->n > k ? ZP_MAX(v->young, i) : v->young;
	s->aged += v->cls[i] == FLOPS_AGED ? b->n - k : 0;
	for (int u = 0; u < v->n && room && v->full[i]; u++) {
		if (v->done[u] || !v->full[u] || v->cls[u] == FLOPS_THEIRS ||
		    !zp_blk_key_eq(v->first[u], v->first[i]))
			continue;
		k = b->n;
		room = take_job(s, b, ctok, v->job[u], now);
		v->done[u] = true;
		v->young = b->n > k ? ZP_MAX(v->young, u) : v->young;
		s->aged += v->cls[u] == FLOPS_AGED ? b->n - k : 0;
	}
	return room;
}

/* prefix_flops: x's batch goes out when fifo's would (queue_due) and is cut
   as fifo cuts, from the same queue, but in another order: the first
   ZP_SCHED_SCAN jobs (hashing the head's blocks, ZP_SCHED_PICK_BLOCKS more
   and one first block per job) by flops_class, each class in arrival
   order, each job with its scanned siblings (flops_take), then the jobs
   past the scan, then (to the knee) those another executor holds more of.
   With no match anywhere and no sharing that is arrival order: fifo's
   batch. x never idles while a batch is due; a job left while a younger
   one went is passed over, and after aging_s goes first (one left for the
   executor holding its prefix is not: that one takes it first). Its
   sequences' blocks go pending on x (the shadow), their cost to its load. */
static int cut_flops(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	flops_scan v;
	int x = b->exec, m[ZP_EXECUTORS_MAX];
	long ctok = 0, left = ZP_SCHED_PICK_BLOCKS, hashed = 0;
	zp_sched_exec *X = &s->ex[x];
	zp_job *j = s->head;
	bool room = true;
	ZP_ASSERT(x >= 0 && x < s->nexec && !X->out);
	if (!queue_due(s, now, force, wake_at))
		return 0;
	v.young = -1;
	for (v.n = 0; j && v.n < ZP_SCHED_SCAN && (v.n == 0 || left > 0); j = j->next, v.n++) {
		const zp_req *r = &j->seq[j->dispatched];
		int h = match_all(s, r, m, v.n ? left : LONG_MAX), i = v.n;
		hashed += h;
		left -= i ? h : 0;
		v.job[i] = j;
		v.was[i] = j->dispatched;
		v.cls[i] = flops_class(s, x, j, m, now);
		v.full[i] = r->ntok >= ZP_KV_BLOCK;
		v.first[i] = v.full[i] ? zp_blk_key_next(zp_blk_key_root(), r->tokens) : (zp_blk_key){ 0 };
		v.done[i] = false;
	}
	s->pick_hashed_max = ZP_MAX(s->pick_hashed_max, hashed + v.n);
	zp_job *past = j; /* the first job past the scan (its links stay: not taken yet) */
	for (int c = FLOPS_AGED; c <= FLOPS_FREE && room; c++)
		for (int i = 0; i < v.n && room; i++)
			if ((int)v.cls[i] == c && !v.done[i])
				room = flops_take(s, b, &ctok, &v, i, now);
	for (zp_job *next; (j = past) && room; past = next) {
		next = j->next;
		int k = b->n;
		room = take_job(s, b, &ctok, j, now);
		v.young = b->n > k ? v.n : v.young;
	}
	/* another executor's jobs fill this forward to the knee (below it the
	   forward runs inefficiently, and an idle executor gains nothing by
	   waiting); the rest wait for theirs */
	long fill = s->knee_tokens > 0 ? s->knee_tokens : s->batch_tokens_max;
	for (int i = 0; i < v.n && room && ctok < fill; i++) {
		if (v.cls[i] != FLOPS_THEIRS)
			continue;
		int k = b->n;
		room = take_job(s, b, &ctok, v.job[i], now);
		v.young = b->n > k ? ZP_MAX(v.young, i) : v.young;
	}
	/* left while a younger job went: passed over (not one left for the
	   executor holding its prefix: that one takes it first when back) */
	for (int i = 0; i < v.young; i++)
		if (v.job[i]->dispatched == v.was[i] && v.cls[i] != FLOPS_THEIRS &&
		    v.job[i]->t_passed < 0)
			v.job[i]->t_passed = now;
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	flops_out(s, X, b);
	return b->n;
}

/* A routed executor's queue is due: a forward's budget or sequences. */
static bool routed_full(const zp_sched *s, const zp_sched_exec *X)
{
	return X->q_ctok >= s->batch_tokens_max || X->q_n >= ZP_FWD_SEQS_MAX;
}

/* A routing policy: the front of b->exec's ring. */
static int cut_routed(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	ZP_ASSERT(b->exec >= 0 && b->exec < s->nexec);
	zp_sched_exec *X = &s->ex[b->exec];
	long ctok = 0;
	ZP_ASSERT(!X->out);
	if (!X->q_n)
		return 0;
	double oldest = HUGE_VAL;
	for (int i = 0; i < X->q_n; i++)
		oldest = ZP_MIN(oldest, X->q[(X->q_head + i) % ZP_SCHED_LOCAL_MAX].job->t_arrive);
	double due = oldest + s->batch_wait_s;
	if (!force && now < due && !routed_full(s, X)) {
		*wake_at = due;
		return 0;
	}
	while (X->q_n) {
		zp_sched_ent *e = &X->q[X->q_head];
		zp_req *r = &e->job->seq[e->seq];
		if (!batch_take(s, b, &ctok, r, e->job))
			break;
		if (e->job->t_dispatch < e->job->t_arrive)
			e->job->t_dispatch = now;
		X->q_tokens -= r->ntok;
		X->q_ctok -= e->ctok;
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
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0 && X->q_ctok >= 0);
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
	if (s->policy == ZP_SCHED_PREFIX_FLOPS)
		return cut_flops(s, now, force, b, wake_at);
	balance_round(s);
	return cut_routed(s, now, force, b, wake_at);
}

/* The knee: the smallest forward size whose median tokens/s is within
   ZP_SCHED_KNEE_LEVEL of the best size's (sizes with 3 measurements); 0
   (none) while no size has. */
static void update_knee(zp_sched *s, long computed, double fwd_s)
{
	int k = 0;
	while (k + 1 < ZP_SCHED_KNEE_BUCKETS && (long)ZP_KV_BLOCK << (k + 1) <= computed)
		k++;
	s->knee_rate[k][s->knee_n[k]++ % ZP_SCHED_KNEE_WINDOW] = (double)computed / fwd_s;
	double med[ZP_SCHED_KNEE_BUCKETS], best = 0;
	for (int i = 0; i < ZP_SCHED_KNEE_BUCKETS; i++) {
		med[i] = s->knee_n[i] >= 3 ? win_median(s->knee_rate[i],
							 ZP_MIN(s->knee_n[i], ZP_SCHED_KNEE_WINDOW)) : 0;
		best = ZP_MAX(best, med[i]);
	}
	s->knee_tokens = 0;
	for (int i = 0; best > 0 && i < ZP_SCHED_KNEE_BUCKETS; i++)
		if (med[i] >= ZP_SCHED_KNEE_LEVEL * best) {
			s->knee_tokens = (int)ZP_MIN((long)ZP_KV_BLOCK << (i + 1), s->batch_tokens_max);
			break;
		}
}

void zp_sched_batch_done(zp_sched *s, const zp_batch *b, const zp_sched_obs *o)
{
	if (o && o->gather_s > 0)
		win_push(s->win_gather, &s->win_gather_n, o->gather_s);
	long computed = 0;
	for (int k = 0; k < b->n; k++)
		computed += b->req[k]->ntok - b->kv_hit_tokens[k];
	double mlp_s = b->stats.mlp_s - (o ? o->wait_s : 0);
	if (!b->failed && computed > 0 && mlp_s > 0)
		win_push(s->win_rate, &s->win_rate_n, s->cost.mlp_tok * (double)computed / mlp_s);
	if (!b->failed && computed > 0 && b->fwd_s > 0)
		update_knee(s, computed, b->fwd_s);
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
			X->q_ctok -= e.ctok;
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
	/* sized for every batch out */
	ZP_ASSERT(retry_push(s, (zp_sched_ent){ j, seq, j->seq[seq].ntok, 0 }));
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
		X->q_ctok -= e.ctok;
		X->q_cost -= e.cost;
		if (X->tab)
			shadow_seq(s, X, r, -1, false);
		retry_push(s, e);
		X->q_head = (X->q_head + 1) % ZP_SCHED_LOCAL_MAX;
		X->q_n--;
	}
	if (!X->q_n) {
		X->q_cost = 0;
		X->q_ctok = 0;
	}
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
