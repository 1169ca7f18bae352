/* executor.c -- see executor.h. */
#include "executor.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "util.h"

/* The executor's side of a record: the batch it names, generation checked. */
static zp_batch *resolve(zp_exec *x, zp_rec r)
{
	zp_batch *b = zp_slab_at(&x->batches, r);
	ZP_ASSERT(b->rec.slot == r.slot && b->rec.gen == r.gen && b->exec == x->id);
	return b;
}

/* tests: the fault hooks (executor.h), read once at start. K:N[:R] of
   executor id: *at = N (0 when the hook names another executor or is
   absent), *rest = R (-1 when absent). */
static void hook_parse(const char *name, int id, int *at, int *rest)
{
	const char *v = getenv(name);
	int k, n, r, got = v ? sscanf(v, "%d:%d:%d", &k, &n, &r) : 0;
	*at = got >= 2 && k == id && n > 0 ? n : 0;
	*rest = got == 3 ? r : -1;
}

static void hooks_init(zp_exec *x)
{
	int r;
	hook_parse("ZP_FAULT_EXEC_DIE", x->id, &x->die_at, &x->die_rebuilds);
	x->stall_at = -1;
	if (getenv("ZP_FAULT_EXEC_STALL")) {
		hook_parse("ZP_FAULT_EXEC_STALL", x->id, &x->stall_at, &r);
		if (!strchr(getenv("ZP_FAULT_EXEC_STALL"), ':'))
			x->stall_at = 0; /* any other value: every executor, first batch */
		else if (!x->stall_at)
			x->stall_at = -1; /* another executor's */
	}
}

/* ZP_FAULT_EXEC_STALL wedges the executor, as a deadlock would (the
   watchdog's and /health's tests); it never comes back. */
static void stall_if_asked(const zp_exec *x, const zp_batch *b)
{
	if (x->stall_at < 0 || (x->stall_at > 0 && (b->n == 0 || x->runs + 1 != x->stall_at)))
		return;
	for (;;)
		pause();
}

/* The executor's forward on a new backend instance (made on this thread,
   the one the device is used from), set up as every forward of x. NULL with
   e set when the device does not start or does not take the model. */
static zp_fwd *fwd_build(zp_exec *x, zp_err *e)
{
	zp_fwd_opts fo = { .device = (enum zp_device)x->device, .ordinal = x->id,
			   .threads = x->threads, .batch_tokens_max = x->batch_tokens_max,
			   .experts_elsewhere = x->src != NULL };
	zp_fwd *f = zp_fwd_new(x->m, &fo, e);
	if (!f)
		return NULL;
	if (zp_fwd_set_experts(f, x->src, e)) {
		zp_fwd_free(f);
		return NULL;
	}
	zp_fwd_set_beat(f, &x->beats);
	int later = zp_fwd_set_prefix_later(f, x->kv_cache_bytes, x->kv_share, true, e);
	if (later < 0) {
		zp_fwd_free(f);
		return NULL;
	}
	x->kv_later = later == 1; /* the first build only: then it is sized */
	if (!x->kv_why[0] && !x->kv_later) { /* sized once (a rebuilt forward keeps it); the
						engine reads it */
		const char *why;
		x->kv_cache_bytes = zp_fwd_kv_bytes(f, &why);
		snprintf(x->kv_why, sizeof x->kv_why, "%s", why);
	}
	if (x->grp)
		zp_fwd_set_dpep(f, x->grp, x->id);
	return f;
}

/* a lockstep group cannot run a round without every member: all of it
   goes down */
static void mark_group(zp_exec *x)
{
	if (x->group_down)
		atomic_store(x->group_down, true);
}

static void go_down(zp_exec *x, const zp_err *why)
{
	x->down = true;
	x->down_why = *why;
	atomic_store_explicit(&x->health, ZP_EXEC_DOWN, memory_order_release);
	zp_log(ZP_LOG_ERROR, "msg=\"executor down\" executor=%d reason=\"%s\"", x->id, why->msg);
}

/* A new forward on a fresh backend (on cuda, freeing the faulted one resets
   the device); its prefix cache goes with the old one. 0, or -1 with e set
   (the executor has no forward). */
static int rebuild(zp_exec *x, zp_err *e)
{
	zp_fwd_free(x->fwd);
	x->fwd = NULL;
	if (x->dead && x->die_rebuilds != 0) {
		if (x->die_rebuilds > 0)
			x->die_rebuilds--;
		return zp_errf(e, "device fault: its device did not come back (ZP_FAULT_EXEC_DIE)");
	}
	return (x->fwd = fwd_build(x, e)) ? 0 : -1;
}

/* The forward's device faulted (its backend is unusable: CUDA's sticky
   errors poison the context). Under AsyncEP the executor goes down as it is:
   its peers may be gathering from its shards, and the owner re-places them
   with every executor idle, then asks for the rebuild. Otherwise it
   rebuilds now; when that fails it is down. */
static void reset(zp_exec *x, const char *why)
{
	zp_err e;
	if (x->src) {
		mark_group(x);
		zp_errf(&e, "its device faulted (%s); its experts are re-placed on its peers", why);
		return go_down(x, &e);
	}
	zp_log(ZP_LOG_WARN, "msg=\"executor reset\" executor=%d reason=\"%s\"", x->id, why);
	if (rebuild(x, &e)) {
		zp_err d;
		zp_errf(&d, "its device did not come back after a fault: %s", e.msg);
		go_down(x, &d);
	}
}

/* The owner asked for a new forward (b is empty): after a new expert
   placement, or to see whether a down executor's device is back. */
static void run_rebuild(zp_exec *x, zp_batch *b)
{
	zp_err e;
	ZP_ASSERT(b->n == 0);
	b->fwd_s = 0;
	b->stats = (zp_fwd_stats){ .min_route_gap = INFINITY };
	b->kv_evicted_n = 0;
	b->kv_evicted_overflow = true; /* the cache goes with the forward */
	if (rebuild(x, &e)) {
		if (!x->down || strcmp(e.msg, x->down_why.msg))
			go_down(x, &e);
		b->failed = ZP_BATCH_LOST;
		snprintf(b->err, sizeof b->err, "executor %d: rebuild: %.160s", x->id, e.msg);
		return;
	}
	if (x->down)
		zp_log(ZP_LOG_WARN, "msg=\"executor back\" executor=%d", x->id);
	x->down = false;
	atomic_store_explicit(&x->health, ZP_EXEC_UP, memory_order_release);
}

/* A down executor's answer: the batch is lost, nothing ran (the owner
   sends none once it knows; a lockstep group's members all refuse). */
static void refuse(zp_exec *x, zp_batch *b)
{
	b->failed = ZP_BATCH_LOST;
	if (x->down)
		snprintf(b->err, sizeof b->err, "executor %d is down: %.160s", x->id,
			 x->down_why.msg);
	else
		snprintf(b->err, sizeof b->err, "executor %d's group is down: a member's device "
			 "faulted (see the log)", x->id);
	b->fwd_s = 0;
	b->stats = (zp_fwd_stats){ .min_route_gap = INFINITY };
	memset(b->kv_hit_tokens, 0, (size_t)b->n * sizeof *b->kv_hit_tokens);
	b->kv_evicted_n = 0;
	b->kv_evicted_overflow = true;
}

/* ZP_FAULT_EXEC_DIE: this batch is the one whose device faults fatally. */
static bool dies_now(zp_exec *x, const zp_batch *b)
{
	if (b->n == 0 || ++x->runs != x->die_at)
		return false;
	x->dead = true;
	zp_log(ZP_LOG_WARN, "msg=\"fault injection: the device dies\" executor=%d batch=%ld",
	       x->id, x->runs);
	return true;
}

static void run(zp_exec *x, zp_batch *b)
{
	zp_err e;
	stall_if_asked(x, b);
	ZP_ASSERT(b->n >= 0); /* 0: a dpep member with no tokens, or a rebuild */
	if (atomic_exchange_explicit(&x->rebuild, false, memory_order_acquire))
		return run_rebuild(x, b);
	if (x->down || (x->group_down && atomic_load(x->group_down)))
		return refuse(x, b);
	double t0 = zp_now_s();
	b->failed = zp_fwd_run(x->fwd, b->req, b->n, &e) != 0;
	if (b->failed)
		snprintf(b->err, sizeof b->err, "%s", e.msg);
	b->fwd_s = zp_now_s() - t0;
	b->stats = zp_fwd_last_stats(x->fwd);
	b->kv_evicted_n = zp_fwd_kv_report(x->fwd, b->kv_hit_tokens, b->kv_evicted,
					   ZP_KV_EVICT_REPORT, &b->kv_evicted_overflow);
	bool die = dies_now(x, b);
	if (die)
		snprintf(b->err, sizeof b->err, "device fault: injected (ZP_FAULT_EXEC_DIE)");
	/* a failed gather (the transport's) leaves the backend as it was; a
	   device fault does not. A dpep round a peer's fault spoiled is lost
	   too: nothing of it was this batch's doing. */
	if (die || (b->failed && zp_fwd_status(x->fwd, NULL))) {
		b->failed = ZP_BATCH_LOST;
		reset(x, b->err);
		b->kv_evicted_overflow = true; /* the cache went with the backend */
	} else if (b->failed && x->grp && zp_dpep_round_failed(x->grp, x->id)) {
		b->failed = ZP_BATCH_LOST;
	}
}

/* The pool fwd_build left for later, when the owner says (zp_exec_size_kv:
   every executor has its weights and workspaces, those before x on its
   device their pools); the owner waits on ready. false: stopped first. */
static bool size_kv(zp_exec *x)
{
	while (!atomic_load_explicit(&x->kv_go, memory_order_acquire)) {
		if (atomic_load_explicit(&x->stop, memory_order_acquire))
			return false;
		zp_bell_wait(&x->bell);
	}
	const char *why;
	zp_fwd_size_kv(x->fwd, x->id, x->kv_share);
	x->kv_cache_bytes = zp_fwd_kv_bytes(x->fwd, &why);
	snprintf(x->kv_why, sizeof x->kv_why, "%s", why);
	x->kv_later = false;
	zp_bell_ring(&x->ready);
	return true;
}

static void *exec_main(void *arg)
{
	zp_exec *x = arg;
	if (zp_arena_bind_thread(x->node)) /* memory then follows (first touch) */
		zp_log(ZP_LOG_WARN, "msg=\"executor thread not placed\" executor=%d node=%d error=\"%s\"",
		       x->id, x->node, strerror(errno));
	if (!(x->fwd = fwd_build(x, &x->start_err))) {
		x->start_failed = true;
		zp_bell_ring(&x->ready);
		return NULL;
	}
	zp_bell_ring(&x->ready);
	if (x->kv_later && !size_kv(x))
		return NULL;
	for (;;) {
		zp_rec r;
		if (!zp_ring_pop(&x->in, &r)) {
			if (atomic_load_explicit(&x->stop, memory_order_acquire))
				break;
			zp_bell_wait(&x->bell);
			continue;
		}
		run(x, resolve(x, r));
		ZP_ASSERT(zp_ring_push(&x->out, r)); /* holds every slot's record */
		zp_bell_ring(x->done);
	}
	return NULL;
}

/* The slab and the rings, carved from one arena on the executor's node. */
static int carve(zp_exec *x, zp_err *e)
{
	size_t slab = zp_slab_bytes(sizeof(zp_batch), ZP_EXEC_BATCHES);
	size_t ring = zp_ring_bytes(ZP_EXEC_BATCHES);
	char what[512];
	if (zp_arena_init(&x->arena, slab + 2 * ring + 3 * ZP_IPC_LINE, x->node))
		return zp_errf(e, "executor %d: arena: %s", x->id, strerror(errno));
	void *s = zp_arena_carve(&x->arena, "batches", slab, ZP_IPC_LINE);
	zp_rec *in = zp_arena_carve(&x->arena, "ring_in", ring, ZP_IPC_LINE);
	zp_rec *out = zp_arena_carve(&x->arena, "ring_out", ring, ZP_IPC_LINE);
	ZP_ASSERT(s && in && out); /* sized for exactly these */
	zp_slab_init(&x->batches, s, sizeof(zp_batch), ZP_EXEC_BATCHES);
	zp_ring_init(&x->in, in, ZP_EXEC_BATCHES);
	zp_ring_init(&x->out, out, ZP_EXEC_BATCHES);
	zp_arena_describe(&x->arena, what, sizeof what);
	/* one node: the engine says once that nothing is placed */
	zp_log(ZP_LOG_INFO, "msg=\"executor memory\" executor=%d %s", x->id, what);
	return 0;
}

int zp_exec_start(zp_exec *x, int id, int node, const zp_model *m, const zp_expert_src *src,
		  zp_dpep *grp, int threads, int batch_tokens_max, int device,
		  size_t kv_cache_bytes, int kv_share, zp_bell *done, zp_err *e)
{
	memset(x, 0, sizeof *x);
	x->id = id;
	x->node = node;
	x->m = m;
	x->src = src;
	x->grp = grp;
	x->threads = threads;
	x->batch_tokens_max = batch_tokens_max;
	x->device = device;
	x->kv_cache_bytes = kv_cache_bytes;
	x->kv_share = kv_share;
	x->done = done;
	x->bell.fd = x->ready.fd = -1;
	hooks_init(x);
	if (carve(x, e))
		return -1;
	if (zp_bell_init(&x->bell) || zp_bell_init(&x->ready)) {
		zp_errf(e, "executor %d: eventfd: %s", id, strerror(errno));
		goto bad;
	}
	int rc = pthread_create(&x->th, NULL, exec_main, x);
	if (rc) {
		zp_errf(e, "executor %d: thread: %s", id, strerror(rc));
		goto bad;
	}
	zp_bell_wait(&x->ready);
	if (!x->kv_later || x->start_failed)
		zp_bell_free(&x->ready);
	if (x->start_failed) {
		pthread_join(x->th, NULL);
		*e = x->start_err;
		zp_bell_free(&x->bell);
		zp_arena_free(&x->arena);
		return -1;
	}
	return 0;
bad:
	zp_bell_free(&x->bell);
	zp_bell_free(&x->ready);
	zp_arena_free(&x->arena);
	return -1;
}

zp_batch *zp_exec_batch(zp_exec *x)
{
	zp_rec r;
	zp_batch *b;
	if (x->state != ZP_EXEC_IDLE || !(b = zp_slab_take(&x->batches, &r)))
		return NULL;
	b->n = b->tokens = 0;
	b->rec = r;
	b->exec = x->id;
	b->filler = false;
	b->failed = 0;
	b->err[0] = 0;
	b->fwd_s = 0;
	x->state = ZP_EXEC_FILLING;
	x->filling = r;
	return b;
}

void zp_exec_submit(zp_exec *x, zp_batch *b)
{
	ZP_ASSERT(x->state == ZP_EXEC_FILLING || x->state == ZP_EXEC_STAGED);
	ZP_ASSERT(zp_slab_at(&x->batches, b->rec) == b && b->exec == x->id && b->n >= 0);
	x->state = ZP_EXEC_OUT;
	ZP_ASSERT(zp_ring_push(&x->in, b->rec));
	zp_bell_ring(&x->bell);
}

zp_batch *zp_exec_reap(zp_exec *x)
{
	zp_rec r;
	if (!zp_ring_pop(&x->out, &r))
		return NULL;
	ZP_ASSERT(x->state == ZP_EXEC_OUT);
	x->state = ZP_EXEC_IDLE;
	return resolve(x, r);
}

void zp_exec_release(zp_exec *x, zp_batch *b)
{
	ZP_ASSERT(b->exec == x->id);
	if (x->state == ZP_EXEC_FILLING && x->filling.slot == b->rec.slot &&
	    x->filling.gen == b->rec.gen) /* taken, never sent */
		x->state = ZP_EXEC_IDLE;
	zp_slab_put(&x->batches, b->rec);
}

void zp_exec_size_kv(zp_exec *x)
{
	ZP_ASSERT(x->kv_later && !x->start_failed);
	atomic_store_explicit(&x->kv_go, true, memory_order_release);
	zp_bell_ring(&x->bell);
	zp_bell_wait(&x->ready);
	zp_bell_free(&x->ready);
	ZP_ASSERT(!x->kv_later);
}

void zp_exec_join(zp_exec *x)
{
	if (x->joined)
		return;
	atomic_store_explicit(&x->stop, true, memory_order_release);
	zp_bell_ring(&x->bell);
	int rc = pthread_join(x->th, NULL);
	ZP_ASSERT(rc == 0);
	x->joined = true;
}

void zp_exec_stop(zp_exec *x)
{
	zp_exec_join(x);
	zp_rec r;
	while (zp_ring_pop(&x->out, &r)) /* a dpep filler nobody waited for */
		ZP_ASSERT(resolve(x, r)->filler);
	ZP_ASSERT(x->state == ZP_EXEC_IDLE || x->state == ZP_EXEC_OUT);
	zp_fwd_free(x->fwd);
	zp_bell_free(&x->bell);
	zp_arena_free(&x->arena);
}
