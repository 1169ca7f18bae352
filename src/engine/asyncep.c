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
   Memory: an executor's first layer, shards, buffers and slots are its
   backend's memory (device memory on cuda), allocated and uploaded on the
   executor's thread when its forward attaches the source; a gather copies
   peers' shards straight from their memory (p2p) on the executor's copy
   queue (backend.h), which the comm thread drives.
   Signals per request of a unit: `issued` (a host event: the comm thread has
   queued the copies and written the outcome; quick), and `done` (a backend
   event recorded on the copy queue after them). The executor's host waits
   only for `issued`; its compute waits for `done` on the device. Before a
   buffer is rewritten, the queue waits (on the device) for the unit's `used`
   event, which the executor records after the layer's expert GEMMs.
   An executor's units are its two full-layer buffers and, offloading, its K
   slots. Unit states (executor thread only; the comm thread only reports):
     FREE -> BUSY    kick: a gather (buffer) or prefetch (slot) of layer l is
                     pushed to the comm thread
     BUSY -> USED    acquire: the request was issued without error
     USED -> FREE    release: `used` recorded after the layer's reads
     BUSY -> FREE    end of a forward (after its request was issued) */
#include "asyncep.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hevent.h"
#include "device.h"
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
	uint64_t seq;			/* the unit's n-th request: its events' n-th records */
	uint64_t after;			/* the copies wait for the unit's `used` record after
					   (0: none yet) */
} greq;

typedef struct xview {
	zp_place *ep;
	int id, lo, hi;			/* experts [lo, hi) */
	zp_backend *be;			/* the executor's (attach): its memory holds the
					   blocks below */
	zp_bqueue *q;			/* its copy queue, driven by the comm thread */
	char *blk[4];			/* first layer, shards, buffers, slots (be memory) */
	size_t blk_bytes[4];
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
	uint64_t nreq[UNITS_MAX];	/* requests per unit */
	int next_gather, next_fetch;	/* next MoE layer to gather / prefetch (-1: none) */
	zp_hevent *issued[UNITS_MAX];	/* host: recorded by the comm thread once each
					   request of the unit is queued */
	zp_event *done[UNITS_MAX];	/* be's: recorded on the queue after its copies */
	zp_event *used[UNITS_MAX];	/* be's: recorded by compute after the layer's reads */
	uint64_t used_n[UNITS_MAX];	/* used's last record (0: none) */
	zp_event *calib;		/* be's: the calibration's gather */
	int failed[UNITS_MAX];		/* outcome of the unit's last request: written
					   before its issued record, read after the wait */
	char err[UNITS_MAX][ZP_ERR_LEN];
	zp_ring ring;			/* requests {unit, seq}, executor -> comm thread */
	zp_rec ring_rec[REQ_RING];
	zp_expert_src src;
	zp_place_layer_stats *st;		/* [layers] */
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
	bool pinned;			/* the host store is pinned (pin_store) */
	zp_copy_seg (*round_segs)[ZP_EXECUTORS_MAX]; /* [n]: a collective round's
					   segments (comm thread; NULL without rounds) */
};

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
	v->req[u] = (greq){ v, u, layer, ++v->nreq[u], v->used_n[u] };
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

/* Wait until unit u's request was issued; its error (or 0). The copies may
   still run: compute waits for them on the device (hook_acquire). */
static int wait_unit(xview *v, int u, zp_err *e)
{
	zp_hevent_wait(v->issued[u], v->req[u].seq);
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
	ZP_ASSERT(be == v->be); /* the forward it was attached to */
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
	be->ops->event_after(be, v->done[b], v->req[b].seq);
	if (s >= 0) {
		v->ust[s] = U_USED;
		be->ops->event_after(be, v->done[s], v->req[s].seq);
	}
	*gu = v->vgu[b];
	*dn = v->vdn[b];
	return 0;
}

static void hook_release(void *ctx, int l)
{
	xview *v = ctx;
	if (l == v->ep->first_moe)
		return;
	/* a device may still be reading the layer's units: the next request of
	   each waits (on the device) for this record */
	for (int u = 0; u < v->nunits; u++)
		if (v->ust[u] == U_USED && v->ulayer[u] == l) {
			v->used_n[u] = v->be->ops->event_record(v->be, v->used[u]);
			v->ust[u] = U_FREE;
		}
	kick_ahead(v); /* the next transfers need not wait for the next layer */
}

static void hook_end(void *ctx)
{
	xview *v = ctx;
	close_layer(v, zp_now_s());
	for (int u = 0; u < v->nunits; u++) {
		if (v->ust[u] == U_BUSY) { /* a failed forward may leave some out: */
			wait_unit(v, u, NULL); /* issued, */
			v->be->ops->event_wait(v->be, v->done[u], v->req[u].seq); /* and landed */
		}
		v->ust[u] = U_FREE;
	}
	v->next_gather = v->next_fetch = -1;
}

/* ---- the comm thread ---- */

static zp_copy_seg seg(void *dst, const void *src, size_t bytes, int src_exec)
{
	return (zp_copy_seg){ .dst = dst, .src = src, .bytes = bytes, .src_exec = src_exec };
}

/* Peer p's part of layer into the same offsets of the full-layer buffer buf:
   from its shard (its memory: a peer copy), or offloading from the host store. */
static zp_copy_seg peer_seg(const zp_place *ep, char *buf, int p, int layer)
{
	const xview *peer = &ep->x[p];
	return seg(buf + (size_t)peer->lo * ep->ebytes,
		   ep->window ? host_part(ep, layer, peer->lo) : peer->shard[layer],
		   (size_t)(peer->hi - peer->lo) * ep->ebytes, ep->window ? -1 : p);
}

/* Unit r->unit's copies into segs (their count): a buffer gets every peer's
   part of the layer (from their shards, or offloading from the host store); a
   slot gets v's own part from the host store. Its queue first waits until the
   unit's last layer is read no more. */
static int prepare(zp_place *ep, greq *r, zp_copy_seg *segs)
{
	xview *v = r->v;
	int n = 0;
	if (r->after)
		v->be->ops->queue_after(v->be, v->q, v->used[r->unit], r->after);
	if (r->unit >= ZP_PLACE_BUFFERS) {
		segs[n++] = seg(v->unit[r->unit], host_part(ep, r->layer, v->lo),
				(size_t)(v->hi - v->lo) * ep->ebytes, -1);
		return n;
	}
	for (int p = 0; p < ep->n; p++) {
		xview *peer = &ep->x[p];
		if (p != v->id && peer->hi > peer->lo)
			segs[n++] = peer_seg(ep, v->unit[r->unit], p, r->layer);
	}
	return n;
}

/* Queue unit r->unit's copies on executor v's queue. 0, or -1 with e set. */
static int issue(zp_place *ep, greq *r, zp_err *e)
{
	zp_copy_seg segs[ZP_EXECUTORS_MAX];
	zp_port port = { r->v->be, r->v->q };
	int n = prepare(ep, r, segs);
	return n ? zp_transport_copy(ep->t, &port, segs, n, e) : 0;
}

/* The request's outcome to its executor: done on the queue after its copies
   (every request records it once, failed or not: the n-th record is the n-th
   request's), then issued. */
static void publish(greq *r, int rc, const zp_err *e)
{
	xview *v = r->v;
	uint64_t seq = r->seq;
	int u = r->unit;
	v->failed[u] = rc != 0;
	if (rc)
		snprintf(v->err[u], ZP_ERR_LEN, "%s", e->msg);
	uint64_t d = v->be->ops->queue_record(v->be, v->q, v->done[u]);
	ZP_ASSERT(d == seq);
	/* the executor may read the outcome, and may kick the unit again at
	   once, rewriting *r: everything of it was read above */
	uint64_t i = zp_hevent_record(v->issued[u]);
	ZP_ASSERT(i == seq);
}

static void transfer(zp_place *ep, greq *r)
{
	zp_err e = { { 0 } };
	int rc = issue(ep, r, &e);
	publish(r, rc, &e);
}

/* A collective transport's round: every executor's gather of one layer, in
   executor order, as one all-gather. Lockstep forwards ask for the same
   layers in the same order; a failure fails the round for every rank, as a
   collective fails, so no executor waits for another that gave up. */
static void transfer_round(zp_place *ep, greq **held)
{
	zp_copy_seg (*segs)[ZP_EXECUTORS_MAX] = ep->round_segs;
	const zp_copy_seg *sp[ZP_EXECUTORS_MAX];
	zp_port ports[ZP_EXECUTORS_MAX];
	int nseg[ZP_EXECUTORS_MAX];
	zp_err e = { { 0 } };
	for (int x = 0; x < ep->n; x++) {
		ZP_ASSERT(held[x]->layer == held[0]->layer && held[x]->v == &ep->x[x]); /* lockstep */
		nseg[x] = prepare(ep, held[x], segs[x]);
		sp[x] = segs[x];
		ports[x] = (zp_port){ ep->x[x].be, ep->x[x].q };
	}
	int rc = zp_transport_round(ep->t, ports, sp, nseg, ep->n, &e);
	for (int x = 0; x < ep->n; x++)
		publish(held[x], rc, &e);
}

static void *comm_main(void *arg)
{
	zp_place *ep = arg;
	bool coll = ep->t->round != NULL;
	greq *held[ZP_EXECUTORS_MAX] = { NULL };
	int nheld = 0;
	for (;;) {
		bool any = false;
		for (int x = 0; x < ep->n; x++) { /* one request per executor per round: a
						     nearer layer of one never waits behind a
						     farther one of another */
			zp_rec rec;
			if (held[x] || !zp_ring_pop(&ep->x[x].ring, &rec))
				continue;
			/* the executor does not touch a BUSY unit's request */
			ZP_ASSERT(rec.slot < UNITS_MAX && (uint32_t)ep->x[x].req[rec.slot].seq == rec.gen);
			greq *r = &ep->x[x].req[rec.slot];
			any = true;
			if (coll && r->unit < ZP_PLACE_BUFFERS) { /* a gather: waits for its round */
				held[x] = r;
				nheld++;
				continue;
			}
			transfer(ep, r);
		}
		if (coll && nheld == ep->n) {
			transfer_round(ep, held);
			memset(held, 0, sizeof held);
			nheld = 0;
			continue;
		}
		if (any)
			continue;
		if (atomic_load_explicit(&ep->stop, memory_order_acquire))
			break; /* every request pushed before stop has been served */
		zp_bell_wait(&ep->doorbell);
	}
	ZP_ASSERT(nheld == 0); /* lockstep forwards left no round half asked */
	return NULL;
}

/* ---- set-up ---- */

#define PLACE_ALIGN 64 /* every shard, buffer and slot: the GEMMs' row alignment */

enum { BLK_FIRST, BLK_SHARDS, BLK_BUFS, BLK_SLOTS };
static const char *const blk_name[] = { "first_layer", "shards", "buffers", "slots" };

/* Executor v's blocks in its backend's memory (the executor's thread: a
   device's memory, or host memory first touched on the executor's node):
   the first MoE layer whole; its part of every other MoE layer unless
   offloading; the full-layer buffers; the slots. Uploaded from the model's
   blocks (in the device's layout: the model was loaded through it). */
static void attach_mem(zp_place *ep, xview *v)
{
	const zp_config *c = &ep->m->cfg;
	zp_backend *be = v->be;
	size_t part = (size_t)(v->hi - v->lo) * ep->ebytes;
	size_t stride = ZP_ALIGN_UP(part, PLACE_ALIGN), lay = ZP_ALIGN_UP(ep->lbytes, PLACE_ALIGN);
	size_t slot = ZP_ALIGN_UP(ZP_MAX(part, 64), PLACE_ALIGN);
	size_t others = 0; /* MoE layers held as shards */
	for (int l = 0; l < c->layers; l++)
		others += moe(ep, l) && l != ep->first_moe && !ep->window;
	v->blk_bytes[BLK_FIRST] = lay;
	v->blk_bytes[BLK_SHARDS] = others * stride;
	v->blk_bytes[BLK_BUFS] = ZP_PLACE_BUFFERS * lay;
	v->blk_bytes[BLK_SLOTS] = (size_t)ep->window * slot;
	for (int k = 0; k < 4; k++)
		v->blk[k] = v->blk_bytes[k] ? be->ops->alloc(be, v->blk_bytes[k]) : NULL;
	for (int l = 0, k = 0; l < c->layers; l++) {
		const char *src = ep->m->layers[l].experts;
		if (l == ep->first_moe) { /* whole, and resident in both modes */
			v->shard[l] = v->blk[BLK_FIRST];
			be->ops->upload(be, v->shard[l], src, ep->lbytes);
		} else if (moe(ep, l) && !ep->window && part) {
			v->shard[l] = v->blk[BLK_SHARDS] + (size_t)k++ * stride;
			be->ops->upload(be, v->shard[l], src + (size_t)v->lo * ep->ebytes, part);
		}
	}
	for (int u = 0; u < v->nunits; u++)
		v->unit[u] = u < ZP_PLACE_BUFFERS ? v->blk[BLK_BUFS] + (size_t)u * lay
						  : v->blk[BLK_SLOTS] + (size_t)(u - ZP_PLACE_BUFFERS) * slot;
	set_view(ep, v->fgu, v->fdn, v->shard[ep->first_moe], v->shard[ep->first_moe], 0, 0);
	char what[256];
	int at = 0;
	for (int k = 0; k < 4; k++)
		at += snprintf(what + at, sizeof what - (size_t)at, " %s_mb=%.1f", blk_name[k],
			       (double)v->blk_bytes[k] / (1 << 20));
	zp_log(ZP_LOG_INFO, "msg=\"placement memory\" executor=%d device=%s%s", v->id,
	       be->ops->name, what);
}

/* The executor's forward hands over its backend (its thread). */
static int hook_attach(void *ctx, zp_backend *be, zp_err *e)
{
	xview *v = ctx;
	ZP_ASSERT(!v->be);
	v->be = be;
	attach_mem(v->ep, v);
	v->q = be->ops->queue_new(be);
	for (int u = 0; u < v->nunits; u++) {
		v->done[u] = be->ops->event_new(be);
		v->used[u] = be->ops->event_new(be);
	}
	v->calib = be->ops->event_new(be);
	return 0;
}

/* Offloading on a device: the host store is pinned (once, for every
   device), so each prefetch is a DMA on the copy queue; executor 0's backend
   pins and unpins it. */
static void pin_store(zp_place *ep, bool on)
{
	zp_backend *be = ep->x[0].be;
	if (!ep->window || !be || ep->pinned == on)
		return;
	for (int l = 0; l < ep->m->cfg.layers; l++)
		if (moe(ep, l) && ep->m->layers[l].experts)
			be->ops->host_pin(be, ep->m->layers[l].experts, ep->lbytes, on);
	ep->pinned = on;
}

/* The forward is freed (its backend with it): the comm thread has stopped
   (zp_place_quiesce) or holds nothing of this executor's. */
static void hook_detach(void *ctx)
{
	xview *v = ctx;
	zp_backend *be = v->be;
	if (!be)
		return;
	if (v->id == 0) /* before the backend that pinned it goes */
		pin_store(v->ep, false);
	/* compute's records of `used` (and the queue's of `done`) are done
	   before the events go; a faulted device still drains */
	be->ops->sync(be, NULL);
	be->ops->queue_free(be, v->q);
	for (int u = 0; u < v->nunits; u++) {
		be->ops->event_free(be, v->done[u]);
		be->ops->event_free(be, v->used[u]);
	}
	be->ops->event_free(be, v->calib);
	for (int k = 0; k < 4; k++)
		if (v->blk[k])
			be->ops->mfree(be, v->blk[k]);
	memset(v->blk, 0, sizeof v->blk);
	memset(v->shard, 0, (size_t)v->ep->m->cfg.layers * sizeof *v->shard);
	/* the request counts are the events' record counts: a later attach
	   starts both afresh */
	for (int u = 0; u < v->nunits; u++) {
		ZP_ASSERT(v->ust[u] == U_FREE); /* the forward ended: hook_end */
		zp_hevent_free(v->issued[u]);
		v->issued[u] = zp_hevent_new();
		v->nreq[u] = v->used_n[u] = 0;
	}
	v->be = NULL;
}

/* Executor id's view: sizes and host state; its memory comes at attach. */
static void view_init(zp_place *ep, int id)
{
	const zp_config *c = &ep->m->cfg;
	xview *v = &ep->x[id];
	v->id = id;
	zp_place_part(ep->n, c->experts, id, &v->lo, &v->hi);
	v->shard = zp_xcalloc((size_t)c->layers, sizeof *v->shard);
	v->ep = ep; /* from here on zp_place_free frees the view */
	v->cur = v->next_gather = v->next_fetch = -1;
	v->nunits = ZP_PLACE_BUFFERS + ep->window;
	v->st = zp_xcalloc((size_t)c->layers, sizeof *v->st);
	v->fgu = zp_xcalloc((size_t)c->experts, sizeof *v->fgu);
	v->fdn = zp_xcalloc((size_t)c->experts, sizeof *v->fdn);
	for (int b = 0; b < ZP_PLACE_BUFFERS; b++) {
		v->vgu[b] = zp_xcalloc((size_t)c->experts, sizeof *v->vgu[b]);
		v->vdn[b] = zp_xcalloc((size_t)c->experts, sizeof *v->vdn[b]);
	}
	for (int u = 0; u < v->nunits; u++)
		v->issued[u] = zp_hevent_new();
	zp_ring_init(&v->ring, v->ring_rec, REQ_RING);
	v->src = (zp_expert_src){ .ctx = v, .attach = hook_attach, .detach = hook_detach,
				  .layer_begin = hook_layer_begin, .acquire = hook_acquire,
				  .release = hook_release, .end = hook_end,
				  .lockstep = ep->t->round != NULL };
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
		view_init(ep, x);
	if (t->round)
		ep->round_segs = zp_xcalloc((size_t)nexec, sizeof *ep->round_segs);
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

void zp_place_quiesce(zp_place *ep)
{
	if (!ep || !ep->comm_started)
		return;
	atomic_store_explicit(&ep->stop, true, memory_order_release);
	zp_bell_ring(&ep->doorbell);
	int rc = pthread_join(ep->comm, NULL);
	ZP_ASSERT(rc == 0);
	ep->comm_started = false;
}

int zp_place_ready(zp_place *ep, zp_err *e)
{
	zp_port ports[ZP_EXECUTORS_MAX];
	if (ep->par != ZP_PAR_ASYNCEP)
		return 0;
	pin_store(ep, true);
	if (!ep->t->setup)
		return 0;
	for (int x = 0; x < ep->n; x++) {
		ZP_ASSERT(ep->x[x].be); /* attached */
		ports[x] = (zp_port){ ep->x[x].be, ep->x[x].q };
	}
	return ep->t->setup(ep->t, ports, ep->n, e);
}

void zp_place_commit(zp_place *ep, bool keep_host)
{
	if (ep->par == ZP_PAR_ASYNCEP && !ep->window && !keep_host) /* every byte now lives in
								       the shards */
		zp_model_drop_experts(ep->m);
}

/* The partition over the executors alive: the one expert partition (place.h)
   over them in executor order; a down one holds nothing. */
static void assign_ranges(zp_place *ep, const bool *alive, int *lo, int *hi)
{
	int n = 0, k = 0;
	for (int x = 0; x < ep->n; x++)
		n += alive[x];
	for (int x = 0; x < ep->n; x++) {
		lo[x] = hi[x] = 0;
		if (alive[x])
			zp_place_part(n, ep->m->cfg.experts, k++, &lo[x], &hi[x]);
	}
}

int zp_place_assign(zp_place *ep, const bool *alive, zp_err *e)
{
	int lo[ZP_EXECUTORS_MAX], hi[ZP_EXECUTORS_MAX], n = 0;
	for (int x = 0; x < ep->n; x++)
		n += alive[x];
	if (!n)
		return zp_errf(e, "no executor is up");
	if (ep->par == ZP_PAR_DPEP)
		return zp_dpep_set_members(ep->grp, alive), 0;
	if (ep->par != ZP_PAR_ASYNCEP)
		return 0;
	if (ep->t->round)
		return zp_errf(e, "a collective transport (%s) is not re-made without a restart",
			       ep->t->name);
	if (!ep->m->layers[ep->first_moe].experts)
		return zp_errf(e, "the model's expert blocks were dropped after the start "
			       "(keep_host_experts = false): the lost executor's experts have no "
			       "other copy; restart");
	assign_ranges(ep, alive, lo, hi);
	for (int x = 0; x < ep->n; x++) { /* every forward detached or idle: read at attach */
		ep->x[x].lo = lo[x];
		ep->x[x].hi = hi[x];
	}
	return 0;
}

void zp_place_free(zp_place *ep)
{
	if (!ep)
		return;
	zp_place_quiesce(ep);
	for (int x = 0; x < ep->n && ep->par == ZP_PAR_ASYNCEP; x++) {
		xview *v = &ep->x[x];
		if (!v->ep)
			continue;
		ZP_ASSERT(!v->be); /* detached: its forward was freed first */
		for (int b = 0; b < ZP_PLACE_BUFFERS; b++) {
			free(v->vgu[b]);
			free(v->vdn[b]);
		}
		free(v->shard);
		free(v->fgu);
		free(v->fdn);
		free(v->st);
		for (int u = 0; u < v->nunits; u++)
			zp_hevent_free(v->issued[u]);
	}
	zp_bell_free(&ep->doorbell);
	zp_dpep_free(ep->grp);
	zp_transport_free(ep->t);
	free(ep->off_gu);
	free(ep->off_dn);
	free(ep->round_segs);
	free(ep);
}

const zp_expert_src *zp_place_source(zp_place *ep, int x)
{
	ZP_ASSERT(x >= 0 && x < ep->n);
	return ep->par == ZP_PAR_ASYNCEP ? &ep->x[x].src : NULL;
}

bool zp_place_lockstep(const zp_place *ep)
{
	return ep->par == ZP_PAR_ASYNCEP && ep->t->round;
}

zp_dpep *zp_place_group(zp_place *ep)
{
	return ep->grp;
}

enum zp_parallel zp_place_parallel(const zp_place *ep)
{
	return ep->par;
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
	ZP_ASSERT(ep->m->layers[ep->first_moe].experts); /* before zp_place_commit */
	op->upload(be, layer, ep->m->layers[ep->first_moe].experts, ep->lbytes);
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

/* The calibration's gather into executor 0: one copy, or on a collective
   transport a round in which only executor 0 receives. */
static int calib_copy(zp_place *ep, const zp_port *port, const zp_copy_seg *segs, int n, zp_err *e)
{
	zp_port ports[ZP_EXECUTORS_MAX];
	const zp_copy_seg *sp[ZP_EXECUTORS_MAX];
	int nseg[ZP_EXECUTORS_MAX] = { 0 };
	if (!ep->t->round)
		return zp_transport_copy(ep->t, port, segs, n, e);
	for (int x = 0; x < ep->n; x++) {
		ports[x] = (zp_port){ ep->x[x].be, ep->x[x].q };
		sp[x] = segs;
	}
	nseg[0] = n;
	return zp_transport_round(ep->t, ports, sp, nseg, ep->n, e);
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
		zp_port port = { v->be, v->q };
		int n = 0;
		ZP_ASSERT(v->be); /* the executors run (attached) */
		for (int p = 1; p < ep->n; p++)
			segs[n++] = peer_seg(ep, v->unit[0], p, l);
		double best = 1e30;
		for (int it = 0; it < 3; it++) {
			double t0 = zp_now_s();
			if (calib_copy(ep, &port, segs, n, e))
				return -1;
			/* until the copies are in place: the queue's record, waited on */
			v->be->ops->event_wait(v->be, v->calib, v->be->ops->queue_record(v->be, v->q, v->calib));
			best = ZP_MIN(best, zp_now_s() - t0);
		}
		out->gather_s = best;
	}
	out->threshold_flops = out->gather_s * out->flops_per_s * out->gamma;
	/* per token of a MoE layer, by DESIGN.md section 4's count (attention pairs aside) */
	out->threshold_tokens = out->threshold_flops / zp_config_layer_flops(&ep->m->cfg, ep->first_moe);
	return 0;
}
