/* asyncep.c -- see asyncep.h. A MoE layer's block holds its experts one after
   another (gate_up then down each, ebytes apiece), so executor x's shard of
   a layer is the byte range [lo_x ebytes, hi_x ebytes) and a gather is one
   copy per peer into the same offsets of a full-layer buffer. The executor's
   view of a layer ([E] packed matrices) points into its own part for its
   experts and into the buffer for the others, so its own part is never
   copied into the buffer.
   Offload mode keeps every expert in the host store (the model's blocks):
   each executor prefetches its own part of the next layers into a window of
   K slots, and its gathers read peers' parts from the host store.
   An executor's units are its two full-layer buffers and, offloading, its K
   slots. Unit states (executor thread only; the comm thread only reports a
   request's completion: it writes the outcome, then records the unit's
   event, which the executor waits on through its backend):
     FREE -> BUSY    kick: a gather (buffer) or prefetch (slot) of layer l is
                     pushed to the comm thread
     BUSY -> USED    acquire: the request completed without error
     USED -> FREE    release: the layer's experts are no longer read
     BUSY -> FREE    end of a forward (after waiting for the request) */
#include "asyncep.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hevent.h"
#include "device.h"
#include "arena.h"
#include "doorbell.h"
#include "ring.h"

enum ustate { U_FREE, U_BUSY, U_USED };

#define UNITS_MAX (ZP_PLACE_BUFFERS + ZP_PLACE_WINDOW_MAX)
#define REQ_RING 32 /* requests in flight per executor: one per unit at most */
_Static_assert(REQ_RING >= UNITS_MAX, "a request ring holds every unit's request");

struct xview;

typedef struct {
	struct xview *v;
	int unit, layer;
	uint64_t seq;			/* the unit's n-th request: its event's n-th record */
} greq;

typedef struct xview {
	zp_place *ep;
	int id, lo, hi;			/* experts [lo, hi) */
	zp_arena mem;			/* on the executor's node: shards, buffers, slots */
	char **shard;			/* [layers]: experts [lo, hi) of MoE layer l (NULL
					   offloading); the first MoE layer's is the whole layer */
	char *unit[UNITS_MAX];		/* [0, BUFFERS): full-layer buffers; then own-part slots */
	int nunits;
	zp_wmat *vgu[ZP_PLACE_BUFFERS], *vdn[ZP_PLACE_BUFFERS]; /* [E] views of the layer each
							   buffer holds */
	zp_wmat *fgu, *fdn;		/* [E] views of the first MoE layer */
	int ulayer[UNITS_MAX];
	enum ustate ust[UNITS_MAX];
	greq req[UNITS_MAX];
	uint64_t issued[UNITS_MAX];	/* requests per unit */
	int next_gather, next_fetch;	/* next MoE layer to gather / prefetch (-1: none) */
	zp_hevent *ready[UNITS_MAX];	/* recorded by the comm thread as each request of
					   the unit completes ("layer gathered") */
	int failed[UNITS_MAX];		/* outcome of the unit's last request: written
					   before its record, read after the wait */
	char err[UNITS_MAX][ZP_ERR_LEN];
	zp_ring ring;			/* requests {unit, seq}, executor -> comm thread */
	zp_rec ring_rec[REQ_RING];
	zp_expert_src src;
	zp_place_layer_stats *st;		/* [layers] */
	zp_backend *be;			/* the executor's, from its first acquire */
	int cur;			/* layer in progress (-1: none) */
	double t_begin, wait_cur;
} xview;

struct zp_place {
	zp_model *m;
	enum zp_device dev;		/* the executors' (calibration runs there) */
	int n;
	enum zp_parallel par;
	zp_transport *t;
	int first_moe;			/* -1: no MoE layer */
	size_t ebytes, lbytes;		/* one expert; one full layer */
	size_t *off_gu, *off_dn;	/* [E] offsets of each expert's matrices in a layer */
	zp_wmat proto_gu, proto_dn;	/* shapes (data unset) */
	xview x[ZP_EXECUTORS_MAX];
	pthread_t comm;
	bool comm_started;
	zp_bell doorbell;		/* the comm thread sleeps on it */
	_Atomic bool stop;
	zp_dpep *grp;			/* dpep */
	int window;			/* offload: own-part slots per executor (0: resident shards) */
};

int zp_parallel_parse(const char *s, enum zp_parallel *p, zp_err *e)
{
	if (!strcmp(s, "asyncep"))
		*p = ZP_PAR_ASYNCEP;
	else if (!strcmp(s, "replicate"))
		*p = ZP_PAR_REPLICATE;
	else if (!strcmp(s, "dpep"))
		*p = ZP_PAR_DPEP;
	else
		return zp_errf(e, "parallel must be asyncep, dpep or replicate");
	return 0;
}

const char *zp_parallel_name(enum zp_parallel p)
{
	return p == ZP_PAR_ASYNCEP ? "asyncep" : p == ZP_PAR_DPEP ? "dpep" : "replicate";
}

/* ---- placement ---- */

static bool moe(const zp_place *ep, int l)
{
	return ep->m->layers[l].sparse;
}

static int next_moe(const zp_place *ep, int l)
{
	for (int j = l + 1; j < ep->m->cfg.layers; j++)
		if (moe(ep, j) && j != ep->first_moe)
			return j;
	return -1;
}

/* Point view[E] at a layer laid out in base (full layout), except experts
   [lo, hi) which come from own (the executor's shard of that layer). */
static void set_view(const zp_place *ep, zp_wmat *gu, zp_wmat *dn, char *base, const char *own,
		     int lo, int hi)
{
	for (int e = 0; e < ep->m->cfg.experts; e++) {
		const char *b = e >= lo && e < hi ? own - (size_t)lo * ep->ebytes : base;
		gu[e] = ep->proto_gu;
		dn[e] = ep->proto_dn;
		gu[e].data = (void *)(b + ep->off_gu[e]);
		dn[e].data = (void *)(b + ep->off_dn[e]);
	}
}

static int layout(zp_place *ep, zp_err *e)
{
	const zp_config *c = &ep->m->cfg;
	ep->first_moe = -1;
	ep->off_gu = zp_xcalloc((size_t)c->experts + 1, sizeof *ep->off_gu);
	ep->off_dn = zp_xcalloc((size_t)c->experts + 1, sizeof *ep->off_dn);
	for (int l = 0; l < c->layers; l++) {
		const zp_layer *L = &ep->m->layers[l];
		if (!L->sparse)
			continue;
		if (!L->experts)
			return zp_errf(e, "layer %d's experts were already dropped", l);
		if (ep->first_moe < 0) {
			ep->first_moe = l;
			ep->ebytes = L->expert_bytes;
			ep->lbytes = L->experts_bytes;
			ep->proto_gu = L->exp_gate_up[0];
			ep->proto_dn = L->exp_down[0];
		}
		for (int x = 0; x < c->experts; x++) { /* every MoE layer has the same layout */
			size_t gu = (size_t)((char *)L->exp_gate_up[x].data - (char *)L->experts);
			size_t dn = (size_t)((char *)L->exp_down[x].data - (char *)L->experts);
			if (l == ep->first_moe) {
				ep->off_gu[x] = gu;
				ep->off_dn[x] = dn;
			}
			ZP_ASSERT(gu == ep->off_gu[x] && dn == ep->off_dn[x]);
			ZP_ASSERT(gu >= (size_t)x * ep->ebytes && dn < (size_t)(x + 1) * ep->ebytes);
		}
	}
	return 0;
}

/* ---- the executor's hooks ---- */

static const char *host_part(const zp_place *ep, int layer, int lo)
{
	return (const char *)ep->m->layers[layer].experts + (size_t)lo * ep->ebytes;
}

/* Where executor v reads its own experts of layer from: its resident shard,
   or (offloading) the slot its prefetch filled; NULL if none holds it. */
static const char *own_part(const xview *v, int layer)
{
	if (!v->ep->window)
		return v->shard[layer];
	for (int u = ZP_PLACE_BUFFERS; u < v->nunits; u++)
		if (v->ust[u] != U_FREE && v->ulayer[u] == layer)
			return v->unit[u];
	return NULL;
}

static int free_unit(const xview *v, int u0, int u1)
{
	for (int u = u0; u < u1; u++)
		if (v->ust[u] == U_FREE)
			return u;
	return -1;
}

static int find_unit(const xview *v, int u0, int u1, int layer)
{
	for (int u = u0; u < u1; u++)
		if (v->ust[u] != U_FREE && v->ulayer[u] == layer)
			return u;
	return -1;
}

static void kick(xview *v, int u, int layer)
{
	zp_place *ep = v->ep;
	ZP_ASSERT(v->ust[u] == U_FREE);
	v->ust[u] = U_BUSY;
	v->ulayer[u] = layer;
	if (u < ZP_PLACE_BUFFERS) /* own part: resident, or a slot whose prefetch was kicked before */
		set_view(ep, v->vgu[u], v->vdn[u], v->unit[u], own_part(v, layer), v->lo, v->hi);
	v->req[u] = (greq){ v, u, layer, ++v->issued[u] };
	/* one entry per unit at most */
	ZP_ASSERT(zp_ring_push(&v->ring, (zp_rec){ (uint32_t)u, (uint32_t)v->req[u].seq }));
	zp_bell_ring(&ep->doorbell);
}

/* Prefetches run ahead as far as the slots allow; a gather starts when a
   buffer is free and its layer's own part has been asked for. */
static void kick_ahead(xview *v)
{
	int u;
	while (v->ep->window && v->next_fetch >= 0 && (u = free_unit(v, ZP_PLACE_BUFFERS, v->nunits)) >= 0) {
		kick(v, u, v->next_fetch);
		v->next_fetch = next_moe(v->ep, v->next_fetch);
	}
	while (v->next_gather >= 0 && own_part(v, v->next_gather) &&
	       (u = free_unit(v, 0, ZP_PLACE_BUFFERS)) >= 0) {
		kick(v, u, v->next_gather);
		v->next_gather = next_moe(v->ep, v->next_gather);
	}
}

static void close_layer(xview *v, double now)
{
	if (v->cur < 0)
		return;
	v->st[v->cur].layer_s += now - v->t_begin;
	v->st[v->cur].wait_s += v->wait_cur;
	v->st[v->cur].forwards++;
	v->cur = -1;
}

static void hook_layer_begin(void *ctx, int l)
{
	xview *v = ctx;
	double now = zp_now_s();
	close_layer(v, now);
	if (l == 0) /* a forward starts: nothing of the last one is out (end drained it) */
		v->next_gather = v->next_fetch = next_moe(v->ep, v->ep->first_moe);
	v->cur = l;
	v->t_begin = now;
	v->wait_cur = 0;
	kick_ahead(v);
}

/* Wait for unit u's request; its error (or 0). The comm thread's copies are
   host work (the transports here copy host memory): the host waits, then the
   layer's ops are queued. */
static int wait_unit(xview *v, int u, zp_err *e)
{
	zp_hevent_wait(v->ready[u], v->req[u].seq);
	if (v->failed[u] && e)
		zp_errf(e, "executor %d: %s of layer %d: %s", v->id, u < ZP_PLACE_BUFFERS ? "gather" : "prefetch",
			v->ulayer[u], v->err[u]);
	return v->failed[u] ? -1 : 0;
}

/* The layer's experts as views of the executor's memory (its shard and a
   gathered buffer), once the buffer's event says the layer is gathered. */
static int hook_acquire(void *ctx, int l, zp_backend *be, const zp_wmat **gu, const zp_wmat **dn,
			zp_err *e)
{
	xview *v = ctx;
	v->be = be;
	if (l == v->ep->first_moe) {
		*gu = v->fgu;
		*dn = v->fdn;
		return 0;
	}
	int b = find_unit(v, 0, ZP_PLACE_BUFFERS, l),
	    s = v->ep->window ? find_unit(v, ZP_PLACE_BUFFERS, v->nunits, l) : -1;
	ZP_ASSERT(b >= 0 && (!v->ep->window || s >= 0)); /* kick_ahead started both */
	double t0 = zp_now_s();
	int rc = wait_unit(v, b, e) || (s >= 0 && wait_unit(v, s, e));
	v->wait_cur += zp_now_s() - t0;
	if (rc)
		return -1;
	v->ust[b] = U_USED;
	if (s >= 0)
		v->ust[s] = U_USED;
	*gu = v->vgu[b];
	*dn = v->vdn[b];
	return 0;
}

static void hook_release(void *ctx, int l)
{
	xview *v = ctx;
	if (l == v->ep->first_moe)
		return;
	/* a device backend may still be reading the layer's buffer: its queued
	   work is done before a gather reuses it (a fault there is the forward's
	   to report: it checks the backend after the layer) */
	if (v->be)
		v->be->ops->sync(v->be, NULL);
	for (int u = 0; u < v->nunits; u++)
		if (v->ust[u] == U_USED && v->ulayer[u] == l)
			v->ust[u] = U_FREE;
	kick_ahead(v); /* the next transfers need not wait for the next layer */
}

static void hook_end(void *ctx)
{
	xview *v = ctx;
	close_layer(v, zp_now_s());
	for (int u = 0; u < v->nunits; u++) {
		if (v->ust[u] == U_BUSY)
			wait_unit(v, u, NULL); /* a failed forward may leave some out */
		v->ust[u] = U_FREE;
	}
	v->next_gather = v->next_fetch = -1;
}

/* ---- the comm thread ---- */

/* CPU executors: every end of a copy is host memory. */
static zp_copy_seg host_seg(void *dst, const void *src, size_t bytes)
{
	return (zp_copy_seg){ .dst = dst, .src = src, .bytes = bytes, .dst_dev = ZP_DEV_HOST,
			      .src_dev = ZP_DEV_HOST };
}

/* Peer p's part of layer into the same offsets of the full-layer buffer buf:
   from its shard, or offloading from the host store. */
static zp_copy_seg peer_seg(const zp_place *ep, char *buf, int p, int layer)
{
	const xview *peer = &ep->x[p];
	return host_seg(buf + (size_t)peer->lo * ep->ebytes,
			ep->window ? host_part(ep, layer, peer->lo) : peer->shard[layer],
			(size_t)(peer->hi - peer->lo) * ep->ebytes);
}

/* Unit r->unit of executor v: a buffer gets every peer's part of the layer
   (from their shards, or offloading from the host store); a slot gets v's own
   part from the host store. */
static void transfer(zp_place *ep, greq *r)
{
	xview *v = r->v;
	zp_copy_seg segs[ZP_EXECUTORS_MAX];
	int n = 0, rc = 0;
	zp_err e = { { 0 } };
	if (r->unit >= ZP_PLACE_BUFFERS) {
		segs[n++] = host_seg(v->unit[r->unit], host_part(ep, r->layer, v->lo),
				     (size_t)(v->hi - v->lo) * ep->ebytes);
	} else {
		for (int p = 0; p < ep->n; p++) {
			xview *peer = &ep->x[p];
			if (p == v->id || peer->hi == peer->lo)
				continue;
			segs[n++] = peer_seg(ep, v->unit[r->unit], p, r->layer);
		}
	}
	if (n)
		rc = zp_transport_copy(ep->t, segs, n, &e);
	v->failed[r->unit] = rc != 0;
	if (rc)
		snprintf(v->err[r->unit], ZP_ERR_LEN, "%s", e.msg);
	/* layer gathered: the unit's executor may read it (and the outcome), and
	   may kick the unit again at once, rewriting *r: read it before the record */
	uint64_t seq = r->seq;
	zp_hevent *ready = v->ready[r->unit];
	uint64_t count = zp_hevent_record(ready);
	ZP_ASSERT(count == seq);
}

static void *comm_main(void *arg)
{
	zp_place *ep = arg;
	for (;;) {
		bool any = false;
		for (int x = 0; x < ep->n; x++) { /* one request per executor per round: a
						     nearer layer of one never waits behind a
						     farther one of another */
			zp_rec rec;
			if (zp_ring_pop(&ep->x[x].ring, &rec)) {
				/* the executor does not touch a BUSY unit's request */
				ZP_ASSERT(rec.slot < UNITS_MAX && (uint32_t)ep->x[x].req[rec.slot].seq == rec.gen);
				transfer(ep, &ep->x[x].req[rec.slot]);
				any = true;
			}
		}
		if (any)
			continue;
		if (atomic_load_explicit(&ep->stop, memory_order_acquire))
			break; /* every request pushed before stop has been served */
		zp_bell_wait(&ep->doorbell);
	}
	return NULL;
}

/* ---- set-up ---- */

#define PLACE_ALIGN 64 /* every shard, buffer and slot: the GEMMs' row alignment */

/* Executor id's shards, buffers and slots: one arena on its NUMA node, sized
   once here (the first MoE layer whole; its part of every other MoE layer
   unless offloading; the full-layer buffers; the slots), first touched on
   that node by the arena. 0, or -1 with e set (the kernel refused it). */
static int view_mem(zp_place *ep, xview *v, size_t part, zp_err *e)
{
	const zp_config *c = &ep->m->cfg;
	size_t stride = ZP_ALIGN_UP(part, PLACE_ALIGN), lay = ZP_ALIGN_UP(ep->lbytes, PLACE_ALIGN);
	size_t slot = ZP_ALIGN_UP(ZP_MAX(part, 64), PLACE_ALIGN);
	size_t others = 0; /* MoE layers held as shards */
	for (int l = 0; l < c->layers; l++)
		others += moe(ep, l) && l != ep->first_moe && !ep->window;
	size_t bytes = lay + others * stride + ZP_PLACE_BUFFERS * lay + (size_t)ep->window * slot;
	if (zp_arena_init(&v->mem, bytes + PLACE_ALIGN, zp_arena_node_for(v->id)))
		return zp_errf(e, "executor %d: placement memory (%.1f MiB): %s", v->id,
			       (double)bytes / (1 << 20), strerror(errno));
	char *first = zp_arena_carve(&v->mem, "first_layer", lay, PLACE_ALIGN);
	char *shards = zp_arena_carve(&v->mem, "shards", others * stride, PLACE_ALIGN);
	char *bufs = zp_arena_carve(&v->mem, "buffers", ZP_PLACE_BUFFERS * lay, PLACE_ALIGN);
	char *slots = zp_arena_carve(&v->mem, "slots", (size_t)ep->window * slot, PLACE_ALIGN);
	ZP_ASSERT(first && shards && bufs && slots); /* sized for exactly these */
	for (int l = 0, k = 0; l < c->layers; l++) {
		if (l == ep->first_moe)
			v->shard[l] = first;
		else if (moe(ep, l) && !ep->window && part)
			v->shard[l] = shards + (size_t)k++ * stride;
	}
	v->nunits = ZP_PLACE_BUFFERS + ep->window;
	for (int u = 0; u < v->nunits; u++)
		v->unit[u] = u < ZP_PLACE_BUFFERS ? bufs + (size_t)u * lay
						  : slots + (size_t)(u - ZP_PLACE_BUFFERS) * slot;
	char what[512];
	zp_arena_describe(&v->mem, what, sizeof what);
	zp_log(ZP_LOG_INFO, "msg=\"placement memory\" executor=%d %s", v->id, what);
	return 0;
}

static int view_init(zp_place *ep, int id, zp_err *e)
{
	const zp_config *c = &ep->m->cfg;
	xview *v = &ep->x[id];
	size_t part;
	v->id = id;
	zp_place_part(ep->n, c->experts, id, &v->lo, &v->hi);
	part = (size_t)(v->hi - v->lo) * ep->ebytes;
	v->shard = zp_xcalloc((size_t)c->layers, sizeof *v->shard);
	if (view_mem(ep, v, part, e)) {
		free(v->shard);
		return -1;
	}
	v->ep = ep; /* from here on zp_place_free frees the view */
	v->cur = v->next_gather = v->next_fetch = -1;
	v->st = zp_xcalloc((size_t)c->layers, sizeof *v->st);
	for (int l = 0; l < c->layers; l++) {
		const char *src = ep->m->layers[l].experts;
		if (l == ep->first_moe) /* whole, and resident in both modes */
			memcpy(v->shard[l], src, ep->lbytes);
		else if (v->shard[l])
			memcpy(v->shard[l], src + (size_t)v->lo * ep->ebytes, part);
	}
	v->fgu = zp_xcalloc((size_t)c->experts, sizeof *v->fgu);
	v->fdn = zp_xcalloc((size_t)c->experts, sizeof *v->fdn);
	set_view(ep, v->fgu, v->fdn, v->shard[ep->first_moe], v->shard[ep->first_moe], 0, 0);
	for (int b = 0; b < ZP_PLACE_BUFFERS; b++) {
		v->vgu[b] = zp_xcalloc((size_t)c->experts, sizeof *v->vgu[b]);
		v->vdn[b] = zp_xcalloc((size_t)c->experts, sizeof *v->vdn[b]);
	}
	for (int u = 0; u < v->nunits; u++)
		v->ready[u] = zp_hevent_new();
	zp_ring_init(&v->ring, v->ring_rec, REQ_RING);
	v->src = (zp_expert_src){ v, hook_layer_begin, hook_acquire, hook_release, hook_end };
	return 0;
}

zp_place *zp_place_new(zp_model *m, enum zp_device dev, int nexec, enum zp_parallel par,
		       int offload_window, zp_transport *t, zp_err *e)
{
	zp_place *ep = zp_xcalloc(1, sizeof *ep);
	ep->m = m;
	ep->dev = dev;
	ep->n = nexec;
	ep->par = par;
	ep->t = t;
	ep->doorbell.fd = -1;
	ep->window = offload_window;
	if (nexec < 1 || nexec > ZP_EXECUTORS_MAX) {
		zp_errf(e, "executors must be 1 to %d", ZP_EXECUTORS_MAX);
		goto bad;
	}
	if (offload_window && (par != ZP_PAR_ASYNCEP || offload_window < 2 ||
			       offload_window > ZP_PLACE_WINDOW_MAX)) {
		zp_errf(e, "offload needs parallel = asyncep and a window of 2 to %d layers",
			ZP_PLACE_WINDOW_MAX);
		goto bad;
	}
	if (par != ZP_PAR_REPLICATE && nexec == 1 && !offload_window) {
		/* one executor with resident experts: nothing to gather or send */
		zp_log(ZP_LOG_INFO, "msg=\"one executor: %s places nothing; it reads every expert in "
		       "place\"", zp_parallel_name(par));
		ep->par = par = ZP_PAR_REPLICATE;
	}
	if (par == ZP_PAR_REPLICATE)
		return ep;
	if (layout(ep, e))
		goto bad;
	if (ep->first_moe < 0) { /* nothing to place: each executor holds the whole model */
		zp_log(ZP_LOG_INFO, "msg=\"no MoE layer: asyncep places nothing; every executor "
		       "holds the whole model\"");
		ep->par = ZP_PAR_REPLICATE;
		return ep;
	}
	if (nexec > m->cfg.experts) {
		zp_errf(e, "%s: %d executors for %d experts", zp_parallel_name(par), nexec,
			m->cfg.experts);
		goto bad;
	}
	if (par == ZP_PAR_DPEP) {
		ep->grp = zp_dpep_new(nexec, m->cfg.experts);
		return ep;
	}
	if (zp_bell_init(&ep->doorbell)) {
		zp_errf(e, "eventfd: %s", strerror(errno));
		goto bad;
	}
	for (int x = 0; x < nexec; x++)
		if (view_init(ep, x, e))
			goto bad;
	if (!ep->window) /* every byte of them now lives in the shards */
		zp_model_drop_experts(m);
	if (pthread_create(&ep->comm, NULL, comm_main, ep)) {
		zp_errf(e, "comm thread: cannot start");
		goto bad;
	}
	ep->comm_started = true;
	return ep;
bad:
	zp_place_free(ep);
	return NULL;
}

void zp_place_free(zp_place *ep)
{
	if (!ep)
		return;
	if (ep->comm_started) {
		atomic_store_explicit(&ep->stop, true, memory_order_release);
		zp_bell_ring(&ep->doorbell);
		int rc = pthread_join(ep->comm, NULL);
		ZP_ASSERT(rc == 0);
	}
	for (int x = 0; x < ep->n && ep->par == ZP_PAR_ASYNCEP; x++) {
		xview *v = &ep->x[x];
		if (!v->ep)
			continue;
		zp_arena_free(&v->mem); /* shards, buffers and slots */
		for (int b = 0; b < ZP_PLACE_BUFFERS; b++) {
			free(v->vgu[b]);
			free(v->vdn[b]);
		}
		free(v->shard);
		free(v->fgu);
		free(v->fdn);
		free(v->st);
		for (int u = 0; u < v->nunits; u++)
			zp_hevent_free(v->ready[u]);
	}
	zp_bell_free(&ep->doorbell);
	zp_dpep_free(ep->grp);
	zp_transport_free(ep->t);
	free(ep->off_gu);
	free(ep->off_dn);
	free(ep);
}

const zp_expert_src *zp_place_source(zp_place *ep, int x)
{
	ZP_ASSERT(x >= 0 && x < ep->n);
	return ep->par == ZP_PAR_ASYNCEP ? &ep->x[x].src : NULL;
}

zp_dpep *zp_place_group(zp_place *ep)
{
	return ep->grp;
}

enum zp_parallel zp_place_parallel(const zp_place *ep)
{
	return ep->par;
}

void zp_place_part(int n, int experts, int x, int *lo, int *hi)
{
	ZP_ASSERT(n >= 1 && x >= 0 && x < n);
	*lo = (int)((long)experts * x / n);
	*hi = (int)((long)experts * (x + 1) / n);
}

void zp_place_range(const zp_place *ep, int x, int *lo, int *hi)
{
	*lo = 0;
	*hi = ep->m->cfg.experts;
	if (ep->par == ZP_PAR_ASYNCEP) {
		*lo = ep->x[x].lo;
		*hi = ep->x[x].hi;
	} else if (ep->par == ZP_PAR_DPEP) {
		zp_dpep_range(ep->grp, x, lo, hi);
	}
}

size_t zp_place_resident_bytes(const zp_place *ep, int x)
{
	const zp_model *m = ep->m;
	if (ep->par == ZP_PAR_REPLICATE)
		return m->arena_bytes + m->expert_bytes_total;
	if (ep->par == ZP_PAR_DPEP) {
		int lo, hi, moes = 0;
		zp_place_range(ep, x, &lo, &hi);
		for (int l = 0; l < m->cfg.layers; l++)
			moes += moe(ep, l);
		return m->arena_bytes + (size_t)moes * (size_t)(hi - lo) * ep->ebytes;
	}
	const xview *v = &ep->x[x];
	size_t part = (size_t)(v->hi - v->lo) * ep->ebytes, n = m->arena_bytes + ZP_PLACE_BUFFERS * ep->lbytes;
	if (ep->window) /* the host store holds the rest */
		return n + ep->lbytes + (size_t)ep->window * part;
	for (int l = 0; l < m->cfg.layers; l++)
		if (moe(ep, l))
			n += l == ep->first_moe ? ep->lbytes : part;
	return n;
}

void zp_place_stats(zp_place *ep, int x, zp_place_layer_stats *out)
{
	int L = ep->m->cfg.layers;
	if (ep->par == ZP_PAR_ASYNCEP)
		memcpy(out, ep->x[x].st, (size_t)L * sizeof *out);
	else
		memset(out, 0, (size_t)L * sizeof *out);
}

void zp_place_inject_fault(zp_place *ep, int n)
{
	zp_transport_fail_after(ep->t, n);
}

/* ---- calibration ---- */

/* Expert GEMMs as a forward runs them, on a backend of the executors'
   device: `tokens` rows routed evenly over the first MoE layer's experts
   (uploaded to its memory), gate_up (SwiGLU) then down. FLOP/s, best of 3;
   0 with e set when the device does not start. */
static double expert_rate(zp_place *ep, int threads, int tokens, zp_err *e)
{
	const zp_config *c = &ep->m->cfg;
	int E = c->experts, rows = tokens * c->topk, H = c->hidden, F = c->moe_ffn;
	int hp = ZP_ALIGN_UP(H, 2), fp = ZP_ALIGN_UP(F, 16);
	size_t es = ep->proto_gu.type == ZP_W_BF16 ? 2 : 4, abytes = (size_t)rows * hp * es;
	zp_device_opts o = { .threads = threads, .cfg = c, .batch_tokens_max = tokens };
	zp_backend *be = zp_device_backend_new(ep->dev, &o, e);
	if (!be)
		return 0;
	const struct zp_backend_ops *op = be->ops;
	char *layer = op->alloc(be, ep->lbytes), *a = op->alloc(be, abytes);
	char *act = op->alloc(be, (size_t)rows * fp * es);
	float *g = op->alloc(be, (size_t)rows * fp * 4), *y = op->alloc(be, (size_t)rows * H * 4);
	zp_wmat *gu = zp_xcalloc((size_t)E, sizeof *gu), *dn = zp_xcalloc((size_t)E, sizeof *dn);
	int *offs = zp_xcalloc((size_t)E + 1, sizeof *offs);
	char *host = zp_xmalloc(abytes);
	for (size_t i = 0; i < abytes; i++)
		host[i] = (char)(i * 7 % 61); /* small finite bf16/f32 bit patterns */
	op->upload(be, a, host, abytes);
	op->upload(be, layer, ep->x[0].shard[ep->first_moe], ep->lbytes);
	set_view(ep, gu, dn, layer, layer, 0, 0);
	for (int x = 0; x < E; x++)
		offs[x + 1] = offs[x] + rows / E + (x < rows % E);
	double best = 1e30;
	for (int it = 0; it < 3; it++) {
		double t0 = zp_now_s();
		op->expert_gemm(be, gu, 0, E, offs, (zp_view){ a, (size_t)hp }, (zp_view){ g, (size_t)fp },
				ZP_EPI_SWIGLU, F);
		op->expert_gemm(be, dn, 0, E, offs, (zp_view){ act, (size_t)fp }, (zp_view){ y, (size_t)H },
				ZP_EPI_STORE, 0);
		op->sync(be, NULL);
		best = ZP_MIN(best, zp_now_s() - t0);
	}
	void *bufs[] = { layer, a, act, g, y };
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		op->mfree(be, bufs[i]);
	op->free(be);
	free(gu), free(dn), free(offs), free(host);
	return 2.0 * rows * H * 3.0 * F / best;
}

int zp_place_calibrate(zp_place *ep, int threads, zp_place_calib *out, zp_err *e)
{
	memset(out, 0, sizeof *out);
	out->gamma = 1.2;
	if (ep->par != ZP_PAR_ASYNCEP)
		return zp_errf(e, "calibration is for parallel = asyncep");
	if ((out->flops_per_s = expert_rate(ep, threads, 2048, e)) <= 0)
		return -1;
	/* one gather into executor 0's buffer 0, on this transport (executor 0 idle) */
	int l = next_moe(ep, ep->first_moe);
	xview *v = &ep->x[0];
	if (l >= 0 && ep->n > 1) {
		zp_copy_seg segs[ZP_EXECUTORS_MAX];
		int n = 0;
		for (int p = 1; p < ep->n; p++)
			segs[n++] = peer_seg(ep, v->unit[0], p, l);
		double best = 1e30;
		for (int it = 0; it < 3; it++) {
			double t0 = zp_now_s();
			if (zp_transport_copy(ep->t, segs, n, e))
				return -1;
			best = ZP_MIN(best, zp_now_s() - t0);
		}
		out->gather_s = best;
	}
	out->threshold_flops = out->gather_s * out->flops_per_s * out->gamma;
	/* per token of a MoE layer, by DESIGN.md section 4's count (attention pairs aside) */
	out->threshold_tokens = out->threshold_flops / zp_config_layer_flops(&ep->m->cfg, ep->first_moe);
	return 0;
}
