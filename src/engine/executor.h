/* executor.h -- one executor: a thread on its NUMA node that owns a forward
   on a backend of its device (made on this thread through the registry: a
   CPU share, a GPU, or a sim device), first touched on that node. Its batches live in a slab carved from its own arena on that
   node (ipc/): the owner takes a slot, fills it, sends its record {slot,
   generation} through the in ring and rings the executor's doorbell; the
   executor resolves the record (asserting the generation), runs the forward,
   sends the record back through the out ring and rings the owner's doorbell.
   Ownership of a batch moves with its record. The model is shared read-only.
   Threads: the owner (the engine's thread) calls everything here; the
   executor thread runs the forwards. Engine-internal: only engine.c uses it.
   A batch whose forward hit a device fault (or whose dpep round another
   member's fault spoiled) comes back lost (ZP_BATCH_LOST: not the request's
   doing; the engine runs its sequences again elsewhere). The executor then
   frees its forward and builds a new one on a fresh backend (logged
   "executor reset"); if that fails it is down (health ZP_EXEC_DOWN, which
   the owner reads after the batch comes back) until a rebuild the owner asks
   for (rebuild, with an empty batch) succeeds. An AsyncEP executor goes down
   at once instead: its peers gather from its shards, so only the owner,
   with every executor idle, may re-place them (engine.c).
   Tests: ZP_FAULT_EXEC_DIE=K:N[:R] makes executor K's N-th batch with
   tokens fail as a device fault, and its next R rebuilds fail (R absent:
   every one) as a device that does not come back; ZP_FAULT_EXEC_STALL wedges
   executors (any value: every one at its first batch; K:N: executor K at
   its N-th batch with tokens). */
#ifndef ZP_EXECUTOR_H
#define ZP_EXECUTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "arena.h"
#include "doorbell.h"
#include "forward.h"
#include "ring.h"
#include "scheduler.h"
#include "slab.h"

/* Batch slots per executor: one out, one the owner still reads after it came
   back. Also the rings' capacity (a record is in at most one ring). */
#define ZP_EXEC_BATCHES 2

/* zp_batch.failed: the batch's executor lost it (its device faulted, or its
   dpep round did); nothing of it is the requests' doing. */
#define ZP_BATCH_LOST 2

/* What the owner knows of an executor's device (written by the executor
   thread before the batch that tells it goes back). */
enum zp_exec_health { ZP_EXEC_UP, ZP_EXEC_DOWN };

/* Owner side: where the executor's one batch in flight is. */
enum zp_exec_state {
	ZP_EXEC_IDLE,			/* no batch out */
	ZP_EXEC_FILLING,		/* a slot was taken for it, not yet sent */
	ZP_EXEC_STAGED,			/* dpep: filled, waiting for the group to start */
	ZP_EXEC_OUT,			/* sent; its record has not come back */
};

typedef struct {
	int id, node;			/* node: -1 when unplaced */
	zp_fwd *fwd;			/* built and used on the executor thread */
	pthread_t th;
	zp_arena arena;			/* on node: the slab and the rings' storage */
	zp_slab batches;		/* [ZP_EXEC_BATCHES] zp_batch */
	zp_ring in, out;		/* owner -> executor, executor -> owner */
	zp_bell bell;			/* the executor sleeps on it */
	zp_bell *done;			/* the owner's, shared by every executor */
	_Atomic bool stop;
	bool joined;			/* owner: the thread has been joined */
	_Atomic uint64_t beats;		/* layers finished, all forwards: the executor
					   bumps it, the owner reads it (a watchdog) */
	/* set-up, read by the thread before its first batch */
	const zp_model *m;
	const zp_expert_src *src;
	zp_dpep *grp;
	int threads, batch_tokens_max;
	int device;			/* enum zp_device */
	size_t kv_cache_bytes;		/* ZP_KV_AUTO until the first forward sizes it */
	int kv_share;			/* executors drawing on the same memory */
	char kv_why[200];		/* how the size was chosen (set with the forward) */
	bool kv_later;			/* ZP_KV_AUTO on a device: the pool waits for
					   zp_exec_size_kv (the thread clears it) */
	_Atomic bool kv_go;		/* owner: size it now */
	zp_bell ready;			/* rung once the thread's forward exists (and
					   again once its pool does, when later) */
	bool start_failed;		/* the device backend did not start: start_err */
	zp_err start_err;
	/* executor thread only: after a device fault the forward is rebuilt;
	   when that fails (or under AsyncEP) the executor is down (down_why;
	   the owner reads it once health says so) and refuses every batch
	   (lost) until a rebuild succeeds. */
	bool down;
	zp_err down_why;
	_Atomic int health;		/* enum zp_exec_health: the executor writes, the
					   owner reads after a reap */
	_Atomic bool rebuild;		/* owner: rebuild the forward at the next batch
					   (an empty one): a new expert placement, or a
					   down executor's retry */
	long runs;			/* batches with tokens run (the fault hooks) */
	int die_at, die_rebuilds;	/* ZP_FAULT_EXEC_DIE: 0, or the batch that faults
					   and the rebuilds that fail after it */
	int stall_at;			/* ZP_FAULT_EXEC_STALL: -1 none, 0 the first batch
					   of any kind, n: the n-th with tokens */
	bool dead;			/* the die hook fired */
	/* lockstep asyncep (a collective transport): the engine's flag, set
	   by the member that goes down; every member then refuses (a round
	   without one member would wait for it forever; the collective is not
	   re-made without a restart). NULL otherwise. Set by the owner before
	   the first batch. */
	_Atomic bool *group_down;
	/* owner side */
	enum zp_exec_state state;
	zp_rec filling;			/* FILLING: the batch's record */
} zp_exec;

/* Start executor id on m, its thread and memory on NUMA node (-1: anywhere):
   threads workers, forwards of at most batch_tokens_max tokens, experts from
   src (NULL: the model's own), as member id of dpep group grp (or NULL), on
   device (enum zp_device: cpu; cuda: GPU id; sim), with a prefix cache of
   kv_cache_bytes (0: none; ZP_KV_AUTO: sized from the memory left, as one
   of kv_share executors on it; on a device later, kv_later: see
   zp_exec_size_kv; siblings always share); finished batches ring done. A
   pool that does not fit is a start error. Returns once the forward
   workspace exists. 0, or -1 with e set (nothing left running). */
int zp_exec_start(zp_exec *x, int id, int node, const zp_model *m, const zp_expert_src *src,
		  zp_dpep *grp, int threads, int batch_tokens_max, int device,
		  size_t kv_cache_bytes, int kv_share, zp_bell *done, zp_err *e);
/* Owner, x->kv_later: x sizes its pool now (kvcache.h's zp_kv_size_device)
   and allocates it; returns once it has. Call it for the executors on a
   device in id order, after every executor has started. */
void zp_exec_size_kv(zp_exec *x);
/* Owner: an empty batch in a free slot when x is idle (state FILLING), else
   NULL. */
zp_batch *zp_exec_batch(zp_exec *x);
/* Owner: hand b (from zp_exec_batch) over. */
void zp_exec_submit(zp_exec *x, zp_batch *b);
/* Owner: the batch that came back (x is idle again), or NULL. */
zp_batch *zp_exec_reap(zp_exec *x);
/* Owner: b's slot is free again (b came back, or was never sent). */
void zp_exec_release(zp_exec *x, zp_batch *b);
/* Stop after the batches already handed over: joins the thread (the owner
   now owns the forward and its backend). Idempotent. */
void zp_exec_join(zp_exec *x);
/* Joins, then frees the forward (its backend and what was attached to it)
   and the executor's memory. A batch still out must be a dpep filler (the
   owner reaps every real one first). */
void zp_exec_stop(zp_exec *x);

#endif
