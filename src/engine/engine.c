/* engine.c -- see engine.h. Executor x runs on NUMA node x mod nodes (CPU
   executors: the device is a share of the machine; a GPU executor will take
   its device's node). A job's life here: submitted to the scheduler, cut
   into batches by pump, its batches reaped by poll_job, then on the done
   list (linked through its queue links, free once it is fully dispatched)
   until polled. */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "executor.h"
#include "kvcache.h"
#include "util.h"

/* What the owner has asked an executor for besides batches. */
enum ask { ASK_NONE, ASK_PLACE, ASK_PROBE };

struct zp_engine {
	zp_model *m;
	zp_place *place;
	zp_exec exec[ZP_EXECUTORS_MAX];
	int n;				/* executors running */
	bool group;			/* dpep or lockstep asyncep: forwards start together */
	_Atomic bool group_down;	/* lockstep: a member went down, all refuse */
	/* executors lost and back (engine.h's zp_engine_exec_report) */
	bool down[ZP_EXECUTORS_MAX];	/* out of routing: its device faulted */
	bool stalled[ZP_EXECUTORS_MAX];	/* out of routing: no progress for stall_s */
	int ndown;
	bool placing;			/* asyncep or dpep: the experts follow the executors up */
	bool replace;			/* the executors up changed: re-place once each is idle */
	int asks_out;			/* ASK_PLACE rebuilds out: no forward starts meanwhile */
	enum ask ask[ZP_EXECUTORS_MAX];
	double retry_at[ZP_EXECUTORS_MAX]; /* a down executor's next rebuild */
	double stall_s;
	uint64_t beats[ZP_EXECUTORS_MAX]; /* the progress test: each count at its last change */
	double beat_at[ZP_EXECUTORS_MAX];
	zp_engine_counts counts;
	char halted[ZP_ERR_LEN];	/* the experts cannot be re-placed: why ("" none) */
	void (*on_health)(void *arg, int x, bool up, const char *why);
	void *on_health_arg;
	int next_poll;			/* executor poll starts at: no executor starves */
	zp_bell own;			/* the done doorbell when the caller gives none */
	zp_bell *done;
	zp_place_layer_stats *seen;	/* [n][layers]: each executor's stats at its last reap */
	zp_sched_obs obs[ZP_EXECUTORS_MAX]; /* what each one's last batch measured */
	zp_sched sched;
	size_t kv_cache_bytes;		/* each executor's prefix cache, as sized */
	zp_place_calib cal;
	bool calibrated;
	zp_job *done_head, *done_tail;	/* finished jobs not yet polled, in order */
	void (*on_batch)(void *arg, const zp_batch *b);
	void *on_batch_arg;
};

/* After the executors: the threshold's calibration (asyncep in effect),
   then the scheduler. */
static void start_queue(zp_engine *g, const zp_engine_cfg *c)
{
	const zp_config *mc = &g->m->cfg;
	const zp_engine_queue_cfg *q = &c->queue;
	zp_err e;
	if (zp_place_source(g->place, 0)) { /* asyncep in effect (not one executor in place) */
		zp_place_calib *cal = &g->cal;
		g->calibrated = zp_place_calibrate(g->place, c->threads_per_executor, cal, &e) == 0;
		if (g->calibrated)
			zp_log(ZP_LOG_INFO, "msg=calibration expert_gflop_s=%.1f gather_ms=%.3f gamma=%.1f "
			       "threshold_gflop=%.3f threshold_tokens=%.0f", cal->flops_per_s * 1e-9,
			       cal->gather_s * 1e3, cal->gamma, cal->threshold_flops * 1e-9,
			       cal->threshold_tokens);
		else
			zp_log(ZP_LOG_WARN, "msg=\"calibration failed\" error=\"%s\"", e.msg);
	}
	if (!g->calibrated)
		g->cal = (zp_place_calib){ 0 }; /* T comes from what forwards measure */
	int cut = q->batch_tokens_max ? q->batch_tokens_max : c->batch_tokens_max;
	/* T is capped at one forward (scheduler.c): a forward that cannot reach
	   it leaves part of every gather exposed (on GPUs T is often above the
	   default 8192 tokens) */
	double reach = ceil(g->cal.threshold_tokens); /* tokens a forward needs */
	if (g->calibrated && reach > cut)
		zp_log(ZP_LOG_WARN, "msg=\"a forward cannot hide the expert gather\" "
		       "threshold_tokens=%.0f max_batch_tokens=%d hint=\"raise --max-batch-tokens "
		       "to at least %.0f (the workspaces grow with it) or expect the gather's "
		       "rest exposed in each layer\"", reach, cut, reach);
	zp_sched_init(&g->sched, q->requests_max, q->tokens_max, cut, q->batch_wait_s);
	zp_sched_cfg sc = { .policy = q->policy, .executors = g->n, .model = mc,
			    .gather_s = g->cal.gather_s, .flops_per_s = g->cal.flops_per_s,
			    .gamma = g->cal.gamma, .aging_s = q->aging_s, .min_tokens = q->min_tokens,
			    .shadow_blocks = (long)(g->kv_cache_bytes /
				    zp_kv_block_bytes(mc->layers, mc->kv_heads * mc->head_dim)),
			    .shadow_pending = q->tokens_max / ZP_KV_BLOCK };
	zp_sched_setup(&g->sched, &sc);
	g->on_batch = c->on_batch;
	g->on_batch_arg = c->on_batch_arg;
	g->on_health = c->on_health;
	g->on_health_arg = c->on_health_arg;
	g->stall_s = c->stall_s;
	g->placing = zp_place_parallel(g->place) != ZP_PAR_REPLICATE;
}

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
	if (m->layout != zp_device_layout((enum zp_device)c->device)) {
		zp_errf(e, "--device %s: the model was loaded through the %s layout, not the "
			"device's %s", zp_device_name(c->device), m->layout->name,
			zp_device_layout((enum zp_device)c->device)->name);
		goto bad;
	}
	zp_transport *t = zp_device_transport_new(c->device, c->transport, e);
	if (!t || !(g->place = zp_place_new(m, (enum zp_device)c->device, c->executors, c->parallel,
						     c->offload_window, t, e)))
		goto bad;
	g->group = zp_place_group(g->place) != NULL || zp_place_lockstep(g->place);
	g->seen = zp_xcalloc((size_t)c->executors * m->cfg.layers, sizeof *g->seen);
	zp_log(ZP_LOG_INFO, "msg=\"executor placement\" numa_nodes=%d%s", nodes,
	       nodes <= 1 ? " note=\"one node: threads and memory are not placed\"" : "");
	g->kv_cache_bytes = c->kv_cache_bytes;
	for (int i = 0; i < c->executors; i++) {
		int node = zp_arena_node_for(i); /* the executor's memory follows its thread */
		if (zp_exec_start(&g->exec[i], i, node, m, zp_place_source(g->place, i),
				  zp_place_group(g->place), c->threads_per_executor,
				  c->batch_tokens_max, c->device, g->kv_cache_bytes, c->executors,
				  g->done, e))
			goto bad;
		if (i == 0 && !g->exec[0].kv_later) /* ZP_KV_AUTO on the host: executor 0
							      sized it once; every executor takes it */
			g->kv_cache_bytes = g->exec[0].kv_cache_bytes;
		g->n = i + 1;
		/* before any batch: the rings' hand-off publishes it to the thread */
		g->exec[i].group_down = zp_place_lockstep(g->place) ? &g->group_down : NULL;
		int lo, hi;
		zp_place_range(g->place, i, &lo, &hi);
		zp_log(ZP_LOG_INFO, "msg=executor id=%d parallel=%s transport=%s experts=[%d,%d) "
		       "resident_mb=%.1f threads=%d node=%d device=%s", i,
		       zp_parallel_name(zp_place_parallel(g->place)), t->name, lo, hi,
		       (double)zp_place_resident_bytes(g->place, i) / (1 << 20),
		       c->threads_per_executor, node, zp_device_name(c->device));
	}
	/* ZP_KV_AUTO on a device: the pools once every executor has its weights
	   and workspaces, in order (each takes an equal share of what is left
	   on its device): sized by executor 0 alone, a later executor on the
	   same device found it full */
	for (int i = 0; i < g->n; i++)
		if (g->exec[i].kv_later)
			zp_exec_size_kv(&g->exec[i]);
	if (g->exec[0].kv_cache_bytes != ZP_KV_AUTO)
		g->kv_cache_bytes = g->exec[0].kv_cache_bytes;
	if (zp_place_ready(g->place, e))
		goto bad;
	start_queue(g, c);
	zp_place_commit(g->place, !c->drop_host_experts); /* after calibration, which reads
							     the model's experts */
	return g;
bad:
	zp_engine_stop(g);
	return NULL;
}

void zp_engine_stop(zp_engine *g)
{
	/* no forward runs and no gather is requested any more; then the comm
	   thread stops; then each forward gives back what its backend holds of
	   the placement (a gather reads its peers' memory until the comm thread
	   is done) */
	for (int i = 0; i < g->n; i++)
		zp_exec_join(&g->exec[i]);
	zp_place_quiesce(g->place);
	for (int i = 0; i < g->n; i++)
		zp_exec_stop(&g->exec[i]);
	zp_place_free(g->place);
	zp_bell_free(&g->own);
	zp_sched_free(&g->sched);
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

enum zp_engine_exec zp_engine_exec_report(zp_engine *g, int x, double now, double stall_s,
					  double *still_s, const char **why)
{
	ZP_ASSERT(x >= 0 && x < g->n);
	bool running;
	uint64_t n = zp_engine_beats(g, x, &running);
	*still_s = 0;
	*why = "";
	if (g->down[x]) {
		*why = g->exec[x].down_why.msg; /* written before the batch that told it */
		return ZP_ENGINE_EXEC_DOWN;
	}
	if (!running || n != g->beats[x]) {
		g->beats[x] = n;
		g->beat_at[x] = now;
	}
	*still_s = now - g->beat_at[x];
	return stall_s > 0 && *still_s > stall_s ? ZP_ENGINE_EXEC_STALLED : ZP_ENGINE_EXEC_OK;
}

void zp_engine_watch(zp_engine *g, double now)
{
	for (int x = 0; x < g->n && g->stall_s > 0; x++) {
		double still;
		const char *why;
		bool st = zp_engine_exec_report(g, x, now, g->stall_s, &still, &why) ==
			  ZP_ENGINE_EXEC_STALLED;
		if (st == g->stalled[x])
			continue;
		g->stalled[x] = st;
		/* its routed sequences go to the others; the batch it holds stays
		   its own (its forward may still write their results) */
		zp_sched_set_down(&g->sched, x, st || g->down[x]);
		if (st)
			g->counts.stalls++;
		zp_log(st ? ZP_LOG_ERROR : ZP_LOG_WARN, st ?
		       "msg=\"executor stalled: no progress; no new work goes to it\" executor=%d "
		       "stalled_s=%.1f" : "msg=\"executor progresses again\" executor=%d stalled_s=%.1f",
		       x, still);
		if (g->on_health)
			g->on_health(g->on_health_arg, x, !st, st ? "no progress" : "");
	}
}

const char *zp_engine_halted(const zp_engine *g)
{
	return g->halted[0] ? g->halted : NULL;
}

zp_engine_counts zp_engine_get_counts(const zp_engine *g)
{
	zp_engine_counts c = g->counts;
	c.up = g->n - g->ndown;
	return c;
}

uint64_t zp_engine_beats(const zp_engine *g, int x, bool *running)
{
	ZP_ASSERT(x >= 0 && x < g->n);
	*running = g->exec[x].state == ZP_EXEC_OUT;
	return atomic_load_explicit(&g->exec[x].beats, memory_order_relaxed);
}

const zp_sched *zp_engine_sched(const zp_engine *g)
{
	return &g->sched;
}

const zp_place_layer_stats *zp_engine_layer_stats(const zp_engine *g)
{
	return g->seen;
}

const zp_place_calib *zp_engine_calib(const zp_engine *g)
{
	return g->calibrated ? &g->cal : NULL;
}

enum zp_parallel zp_engine_parallel(const zp_engine *g)
{
	return zp_place_parallel(g->place);
}

size_t zp_engine_kv_cache_bytes(const zp_engine *g, const char **why)
{
	if (why)
		*why = g->n ? g->exec[0].kv_why : "";
	return g->kv_cache_bytes;
}

size_t zp_engine_resident_bytes(const zp_engine *g)
{
	size_t sum = 0;
	for (int i = 0; i < g->n; i++)
		sum += zp_place_resident_bytes(g->place, i);
	return sum;
}

zp_place *zp_engine_place(zp_engine *g)
{
	return g->place;
}

zp_batch *zp_engine_batch(zp_engine *g)
{
	zp_batch *b;
	for (int i = 0; i < g->n; i++)
		if ((b = zp_exec_batch(&g->exec[i]))) /* a down one refuses it (lost) */
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
			return; /* (a down member's absence: the pump's flush) */
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
		if (g->down[i]) { /* out of the group (dpep.h's members): no filler; a batch
				     the bench's path gave it goes, and is refused */
			if (x->state == ZP_EXEC_STAGED)
				staged[i] = zp_slab_at(&x->batches, x->filling);
			continue;
		}
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
		if (staged[i])
			zp_exec_submit(&g->exec[i], staged[i]);
}

/* Executors up with a batch out (or staged). */
static int busy_up(const zp_engine *g)
{
	int busy = 0;
	for (int i = 0; i < g->n; i++)
		busy += !g->down[i] && g->exec[i].state != ZP_EXEC_IDLE;
	return busy;
}

/* Ask executor x for a rebuild (an empty batch; it must be idle). */
static void ask_rebuild(zp_engine *g, int x, enum ask why)
{
	zp_batch *b = zp_exec_batch(&g->exec[x]);
	ZP_ASSERT(b && g->ask[x] == ASK_NONE);
	b->filler = true;
	g->ask[x] = why;
	g->asks_out += why == ASK_PLACE;
	atomic_store_explicit(&g->exec[x].rebuild, true, memory_order_relaxed); /* the ring
										   publishes it */
	zp_exec_submit(&g->exec[x], b);
}

/* The executors up changed: once every one of them is idle, the experts go
   over them (asyncep.h's zp_place_assign) and, under asyncep, each rebuilds
   its forward (its attach uploads its new shards from the host copy). No
   forward starts until they are all back. true while that goes on. */
static bool replacing(zp_engine *g)
{
	bool up[ZP_EXECUTORS_MAX];
	zp_err e;
	if (g->asks_out)
		return true;
	if (!g->replace)
		return false;
	if (busy_up(g))
		return true; /* their batches finish first; nothing new starts */
	g->replace = false;
	for (int i = 0; i < g->n; i++)
		up[i] = !g->down[i];
	if (zp_place_assign(g->place, up, &e)) {
		snprintf(g->halted, sizeof g->halted, "the experts cannot be re-placed: %.200s", e.msg);
		zp_log(ZP_LOG_ERROR, "msg=\"experts not re-placed: no batch can run\" error=\"%s\"",
		       e.msg);
		return false;
	}
	g->halted[0] = 0;
	g->counts.replacements++;
	for (int i = 0; i < g->n; i++) {
		int lo, hi;
		zp_place_range(g->place, i, &lo, &hi);
		if (up[i])
			zp_log(ZP_LOG_INFO, "msg=\"experts re-placed\" executor=%d experts=[%d,%d) "
			       "executors_up=%d", i, lo, hi, g->n - g->ndown);
		if (up[i] && zp_engine_parallel(g) == ZP_PAR_ASYNCEP)
			ask_rebuild(g, i, ASK_PLACE);
	}
	return g->asks_out > 0;
}

/* Down executors, idle and due, try a rebuild: a device that came back
   rejoins (zp_engine_poll sees it up). Never while experts are being
   re-placed: a down AsyncEP executor's old shards are read until then. */
static void probe_down(zp_engine *g, double now)
{
	for (int i = 0; i < g->n; i++) {
		if (!g->down[i] || g->exec[i].state != ZP_EXEC_IDLE || now < g->retry_at[i])
			continue;
		g->retry_at[i] = now + ZP_ENGINE_RETRY_S;
		ask_rebuild(g, i, ASK_PROBE);
	}
}

/* No executor can run a batch (every one down, or the experts cannot be
   re-placed): the queued jobs fail now, with why, rather than wait for a
   device that may not come back (the probes go on: one that does serves
   what comes after). Nothing is out then but probes. */
static void job_finished(zp_engine *g, zp_job *j);

static void fail_queued(zp_engine *g, const char *why)
{
	zp_job *j;
	while ((j = zp_sched_first_queued(&g->sched))) {
		bool idle = zp_sched_cancel(&g->sched, j); /* its queued sequences dropped */
		ZP_ASSERT(idle); /* no batch of it is out: no executor runs one */
		j->cancelled = false;
		zp_job_fail(j, why);
		job_finished(g, j);
	}
}

double zp_engine_pump(zp_engine *g, double now, bool force)
{
	double wake = 0, w;
	if (replacing(g))
		return 0; /* the rebuilds' return pumps again */
	probe_down(g, now);
	if (g->ndown == g->n || g->halted[0]) {
		fail_queued(g, g->halted[0] ? g->halted : "every executor is down (see /health)");
		return now + ZP_ENGINE_RETRY_S; /* the next probe */
	}
	if (g->group && busy_up(g))
		return 0; /* the group starts together: after every member came back */
	/* every idle executor in turn: under a routing policy each cuts from its own queue */
	for (int i = 0; i < g->n; i++) {
		if (g->down[i] || g->stalled[i])
			continue;
		zp_batch *b = zp_exec_batch(&g->exec[i]);
		if (!b)
			continue;
		if (!zp_sched_next_batch(&g->sched, now, force, b, &w)) {
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
	if (g->ndown && (wake == 0 || now + ZP_ENGINE_RETRY_S < wake))
		wake = now + ZP_ENGINE_RETRY_S; /* the next probe */
	return wake;
}

/* b came back: take its executor's per-layer stats (quiet until the next
   submit) and what they say for the scheduler: the exposed gather wait, and
   one gather's time when waits paced the layers (the previous MoE layer's
   compute plus the wait). */
static void take_stats(zp_engine *g, const zp_batch *b)
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
	g->obs[b->exec] = o;
}

/* Executor x's health as its last batch left it: a lost executor leaves
   routing (its routed sequences go to the others) and the experts are
   re-placed over the rest; one back joins again. */
static void observe(zp_engine *g, int x)
{
	zp_exec *X = &g->exec[x];
	bool up = atomic_load_explicit(&X->health, memory_order_acquire) == ZP_EXEC_UP;
	if (up == !g->down[x])
		return;
	g->down[x] = !up;
	g->ndown += up ? -1 : 1;
	g->replace |= g->placing;
	zp_sched_set_down(&g->sched, x, g->down[x] || g->stalled[x]);
	if (!up) {
		g->counts.lost++;
		g->retry_at[x] = zp_now_s() + ZP_ENGINE_RETRY_S;
		zp_log(ZP_LOG_ERROR, "msg=\"executor lost: its work goes to the others\" executor=%d "
		       "executors_up=%d reason=\"%s\"", x, g->n - g->ndown, X->down_why.msg);
	} else {
		g->counts.rejoined++;
		zp_log(ZP_LOG_WARN, "msg=\"executor rejoined\" executor=%d executors_up=%d", x,
		       g->n - g->ndown);
	}
	if (g->on_health)
		g->on_health(g->on_health_arg, x, up, up ? "" : X->down_why.msg);
}

zp_batch *zp_engine_poll(zp_engine *g)
{
	for (int k = 0; k < g->n; k++) {
		int i = (g->next_poll + k) % g->n;
		zp_batch *b = zp_exec_reap(&g->exec[i]);
		if (!b)
			continue;
		g->next_poll = (i + 1) % g->n;
		observe(g, i);
		if (!b->filler) {
			take_stats(g, b);
			return b;
		}
		ZP_ASSERT(b->n == 0);
		if (g->ask[i] == ASK_PLACE)
			g->asks_out--;
		g->ask[i] = ASK_NONE;
		zp_exec_release(&g->exec[i], b);
		k = -1; /* look again from the start: the filler told nothing */
	}
	return NULL;
}

/* ---- jobs ---- */

int zp_engine_submit_job(zp_engine *g, zp_job *j, double now)
{
	return zp_sched_admit(&g->sched, j, now);
}

/* j is finished: it leaves the scheduler and waits on the done list (its
   queue links are free: nothing of it is queued any more). */
static void job_finished(zp_engine *g, zp_job *j)
{
	ZP_ASSERT(j->dispatched == j->done && !j->prev && !j->next);
	zp_sched_finish(&g->sched, j);
	if (g->done_tail)
		g->done_tail->next = j;
	else
		g->done_head = j;
	j->prev = g->done_tail;
	g->done_tail = j;
}

bool zp_engine_cancel(zp_engine *g, zp_job *j)
{
	if (!zp_sched_cancel(&g->sched, j))
		return false; /* its last batch finishes it */
	zp_sched_finish(&g->sched, j);
	return true;
}

/* A sequence of b (its k-th) was lost with its executor: it goes to the
   queue's front again, unless its job was cancelled or lost too often
   (ZP_ENGINE_LOST_MAX times its sequences: a fault that follows it). */
static void seq_lost(zp_engine *g, zp_batch *b, int k)
{
	zp_job *j = b->job[k];
	if (!j->cancelled && j->lost < ZP_ENGINE_LOST_MAX * j->nseq) {
		j->lost++;
		g->counts.requeued++;
		zp_sched_requeue(&g->sched, j, (int)(b->req[k] - j->seq));
		return;
	}
	if (!j->cancelled)
		zp_job_fail(j, b->err);
	if (zp_sched_seq_done(&g->sched, j))
		job_finished(g, j);
}

/* b came back: the scheduler learns it, its sequences are done (failed with
   it, if it failed; lost with its executor, queued again), the jobs it
   finished go on the done list; b is free. */
static void batch_back(zp_engine *g, zp_batch *b)
{
	if (g->on_batch)
		g->on_batch(g->on_batch_arg, b);
	zp_sched_batch_done(&g->sched, b, &g->obs[b->exec]);
	if (b->failed == ZP_BATCH_LOST) {
		zp_log(ZP_LOG_WARN, "msg=\"batch lost with its executor: its sequences go again\" "
		       "executor=%d seqs=%d error=\"%s\"", b->exec, b->n, b->err);
		g->counts.lost_batches++;
	} else if (b->failed) {
		zp_log(ZP_LOG_ERROR, "msg=\"forward failed\" executor=%d seqs=%d error=\"%s\"",
		       b->exec, b->n, b->err);
	}
	for (int k = 0; k < b->n; k++) {
		zp_job *j = b->job[k];
		if (b->failed == ZP_BATCH_LOST) {
			seq_lost(g, b, k);
			continue;
		}
		if (b->failed)
			zp_job_fail(j, b->err);
		if (zp_sched_seq_done(&g->sched, j))
			job_finished(g, j);
	}
	zp_engine_release(g, b);
}

static zp_job *done_pop(zp_engine *g)
{
	zp_job *j = g->done_head;
	if (!j)
		return NULL;
	g->done_head = j->next;
	if (g->done_head)
		g->done_head->prev = NULL;
	else
		g->done_tail = NULL;
	j->prev = j->next = NULL;
	return j;
}

zp_job *zp_engine_poll_job(zp_engine *g)
{
	zp_batch *b;
	while (!g->done_head && (b = zp_engine_poll(g)))
		batch_back(g, b);
	return done_pop(g);
}

zp_job *zp_engine_wait_job(zp_engine *g)
{
	zp_batch *b;
	while (!g->done_head && (b = zp_engine_wait(g)))
		batch_back(g, b);
	return done_pop(g);
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
