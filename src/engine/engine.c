/* engine.c -- see engine.h. Executor x runs on NUMA node x mod nodes (CPU
   executors: the device is a share of the machine; a GPU executor will take
   its device's node). */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "executor.h"
#include "util.h"

struct zp_engine {
	zp_model *m;
	zp_place *place;
	zp_exec exec[ZP_EXECUTORS_MAX];
	int n;				/* executors running */
	bool group;			/* dpep: forwards start together */
	int next_poll;			/* executor poll starts at: no executor starves */
	zp_bell own;			/* the done doorbell when the caller gives none */
	zp_bell *done;
	zp_place_layer_stats *seen;	/* [n][layers]: each executor's stats at its last reap */
};

zp_engine *zp_engine_start(zp_model *m, const zp_engine_cfg *c, zp_err *e)
{
	zp_engine *g = zp_xcalloc(1, sizeof *g);
	int nodes = zp_arena_nodes();
	g->m = m;
	g->own.fd = -1;
	g->done = c->done;
	if (!g->done) {
		if (zp_bell_init(&g->own)) {
			zp_errf(e, "eventfd: %s", strerror(errno));
			goto bad;
		}
		g->done = &g->own;
	}
	/* sharded experts (asyncep gathers, dpep): on the sim device AsyncEP's
	   shards hold the device layout (the model was loaded through it) and
	   are read in place; neither runs on cuda yet */
	if (c->device != ZP_DEV_CPU && c->parallel != ZP_PAR_REPLICATE &&
	    (c->executors > 1 || c->offload_window)) {
		if (c->device == ZP_DEV_CUDA || c->parallel == ZP_PAR_DPEP) {
			zp_errf(e, "parallel=%s over %d executors on --device %s is not supported "
				"(replicate, or one executor)", zp_parallel_name(c->parallel),
				c->executors, zp_device_name(c->device));
			goto bad;
		}
	}
	zp_transport *t = zp_device_transport_new(c->device, c->transport, e);
	if (!t || !(g->place = zp_place_new(m, (enum zp_device)c->device, c->executors, c->parallel,
						     c->offload_window, t, e)))
		goto bad;
	g->group = zp_place_group(g->place) != NULL;
	g->seen = zp_xcalloc((size_t)c->executors * m->cfg.layers, sizeof *g->seen);
	zp_log(ZP_LOG_INFO, "msg=\"executor placement\" numa_nodes=%d%s", nodes,
	       nodes <= 1 ? " note=\"one node: threads and memory are not placed\"" : "");
	for (int i = 0; i < c->executors; i++) {
		int node = zp_arena_node_for(i); /* where zp_place_new put its memory */
		if (zp_exec_start(&g->exec[i], i, node, m, zp_place_source(g->place, i),
				  zp_place_group(g->place), c->threads_per_executor,
				  c->batch_tokens_max, c->device, c->kv_cache_bytes, g->done, e))
			goto bad;
		g->n = i + 1;
		int lo, hi;
		zp_place_range(g->place, i, &lo, &hi);
		zp_log(ZP_LOG_INFO, "msg=executor id=%d parallel=%s transport=%s experts=[%d,%d) "
		       "resident_mb=%.1f threads=%d node=%d device=%s", i,
		       zp_parallel_name(zp_place_parallel(g->place)), c->transport, lo, hi,
		       (double)zp_place_resident_bytes(g->place, i) / (1 << 20),
		       c->threads_per_executor, node, zp_device_name(c->device));
	}
	return g;
bad:
	zp_engine_stop(g);
	return NULL;
}

void zp_engine_stop(zp_engine *g)
{
	for (int i = 0; i < g->n; i++)
		zp_exec_stop(&g->exec[i]);
	zp_place_free(g->place); /* after the executors: no gather is requested any more */
	zp_bell_free(&g->own);
	free(g->seen);
	free(g);
}

int zp_engine_executors(const zp_engine *g)
{
	return g->n;
}

int zp_engine_busy(const zp_engine *g)
{
	int busy = 0;
	for (int i = 0; i < g->n; i++)
		busy += g->exec[i].state != ZP_EXEC_IDLE;
	return busy;
}

uint64_t zp_engine_beats(const zp_engine *g, int x, bool *running)
{
	ZP_ASSERT(x >= 0 && x < g->n);
	*running = g->exec[x].state == ZP_EXEC_OUT;
	return atomic_load_explicit(&g->exec[x].beats, memory_order_relaxed);
}

zp_place *zp_engine_place(zp_engine *g)
{
	return g->place;
}

zp_batch *zp_engine_batch(zp_engine *g)
{
	zp_batch *b;
	for (int i = 0; i < g->n; i++)
		if ((b = zp_exec_batch(&g->exec[i])))
			return b;
	return NULL;
}

void zp_engine_submit(zp_engine *g, zp_batch *b)
{
	zp_exec *x = &g->exec[b->exec];
	ZP_ASSERT(b->exec >= 0 && b->exec < g->n && x->state == ZP_EXEC_FILLING);
	if (!g->group)
		return zp_exec_submit(x, b);
	x->state = ZP_EXEC_STAGED;
	for (int i = 0; i < g->n; i++)
		if (g->exec[i].state != ZP_EXEC_STAGED)
			return;
	zp_engine_flush(g); /* every member has its batch */
}

/* The staged members' batches; an empty one for every idle member. */
void zp_engine_flush(zp_engine *g)
{
	zp_batch *staged[ZP_EXECUTORS_MAX] = { NULL };
	int n = 0;
	if (!g->group)
		return;
	for (int i = 0; i < g->n; i++)
		n += g->exec[i].state == ZP_EXEC_STAGED;
	if (!n)
		return;
	for (int i = 0; i < g->n; i++) {
		zp_exec *x = &g->exec[i];
		ZP_ASSERT(x->state == ZP_EXEC_STAGED || x->state == ZP_EXEC_IDLE);
		if (x->state == ZP_EXEC_STAGED) {
			staged[i] = zp_slab_at(&x->batches, x->filling);
		} else {
			staged[i] = zp_exec_batch(x);
			ZP_ASSERT(staged[i]); /* a slot is free: the caller holds one at most */
			staged[i]->filler = true;
		}
	}
	for (int i = 0; i < g->n; i++)
		zp_exec_submit(&g->exec[i], staged[i]);
}

double zp_engine_dispatch(zp_engine *g, zp_sched *s, double now, bool force)
{
	double wake = 0, w;
	if (g->group && zp_engine_busy(g))
		return 0; /* the group starts together: after every member came back */
	/* every idle executor in turn: under a routing policy each cuts from its own queue */
	for (int i = 0; i < g->n; i++) {
		zp_batch *b = zp_exec_batch(&g->exec[i]);
		if (!b)
			continue;
		if (!zp_sched_next_batch(s, now, force, b, &w)) {
			zp_engine_release(g, b);
			if (w > 0 && (wake == 0 || w < wake))
				wake = w;
			continue;
		}
		if (g->group)
			force = true; /* the first batch starts the group: the rest go with it */
		zp_engine_submit(g, b);
	}
	zp_engine_flush(g);
	return wake;
}

void zp_engine_done(zp_engine *g, zp_sched *s, const zp_batch *b)
{
	int L = g->m->cfg.layers, prev = -1, n = 0;
	zp_place_layer_stats *was = g->seen + (size_t)b->exec * L, now[ZP_LAYERS_MAX];
	zp_sched_obs o = { 0 };
	double sum = 0, compute_prev = 0;
	zp_place_stats(g->place, b->exec, now);
	for (int l = 0; l < L; l++) {
		long fw = now[l].forwards - was[l].forwards;
		if (fw <= 0)
			continue;
		double dl = (now[l].layer_s - was[l].layer_s) / fw, dw = (now[l].wait_s - was[l].wait_s) / fw;
		o.wait_s += dw * fw;
		if (!g->m->cfg.sparse[l])
			continue;
		/* layer l's gather started as MoE layer prev began (its buffer then
		   free) and ended when l's wait did: prev's compute + l's wait. Only
		   a wait that matters (10% of that compute) says the gather paced
		   the layers; a hidden gather tells nothing of its length. */
		if (prev >= 0 && dw > 0.1 * compute_prev) {
			sum += compute_prev + dw;
			n++;
		}
		prev = l;
		compute_prev = dl - dw;
	}
	if (n)
		o.gather_s = sum / n;
	memcpy(was, now, (size_t)L * sizeof *now);
	zp_sched_batch_done(s, b, &o);
}

zp_batch *zp_engine_poll(zp_engine *g)
{
	for (int k = 0; k < g->n; k++) {
		int i = (g->next_poll + k) % g->n;
		zp_batch *b = zp_exec_reap(&g->exec[i]);
		if (!b)
			continue;
		g->next_poll = (i + 1) % g->n;
		if (!b->filler)
			return b;
		ZP_ASSERT(b->n == 0);
		zp_exec_release(&g->exec[i], b);
		k = -1; /* look again from the start: the filler told nothing */
	}
	return NULL;
}

zp_batch *zp_engine_wait(zp_engine *g)
{
	ZP_ASSERT(g->done == &g->own);
	for (;;) {
		zp_batch *b = zp_engine_poll(g);
		if (b)
			return b;
		bool out = false;
		for (int i = 0; i < g->n; i++) {
			ZP_ASSERT(g->exec[i].state != ZP_EXEC_STAGED); /* flush first */
			out |= g->exec[i].state == ZP_EXEC_OUT;
		}
		if (!out)
			return NULL;
		zp_bell_wait(g->done);
	}
}

void zp_engine_release(zp_engine *g, zp_batch *b)
{
	ZP_ASSERT(b->exec >= 0 && b->exec < g->n);
	zp_exec_release(&g->exec[b->exec], b);
}
