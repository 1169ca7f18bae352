/* engine.h -- the one object `zprefill serve`, `prefill` and `bench` run work
   through: the model's experts placed for N executors (asyncep.h) and the N
   executor threads, hidden behind submit/poll. Batches go in cut by the
   scheduler (zp_engine_dispatch) or filled by hand (zp_engine_batch, then
   zp_engine_submit), and come back through zp_engine_poll / zp_engine_wait,
   each to be given back with zp_engine_release. Under dpep the executors'
   forwards start together: submitted batches wait until every executor has
   one or zp_engine_flush starts the rest empty (fillers that never come back
   to the caller).
   Threads: one owner thread (the server's loader starts it, then the reactor
   drives it; or the offline driver) calls everything here. */
#ifndef ZP_ENGINE_H
#define ZP_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "asyncep.h"
#include "doorbell.h"
#include "scheduler.h"

/* Tokens of one prompt when not configured (capped by the model's
   max_position_embeddings): prefill's --max-tokens, serve's max_tokens. */
#define ZP_SEQ_TOKENS_DEFAULT 8192
/* Tokens of one forward when not configured: --max-batch-tokens, serve's
   max_batch_tokens. */
#define ZP_BATCH_TOKENS_DEFAULT 8192
/* The most tokens one forward may be configured for. */
#define ZP_BATCH_TOKENS_LIMIT (1 << 20)

typedef struct zp_engine zp_engine;

typedef struct {
	int executors;			/* 1 .. ZP_EXECUTORS_MAX */
	enum zp_parallel parallel;
	const char *transport;		/* "cpu", ... */
	int threads_per_executor;		/* worker threads per executor */
	int batch_tokens_max;		/* tokens in one forward (ini: max_batch_tokens) */
	zp_bell *done;			/* rung when a batch comes back; NULL: the engine's own */
	int offload_window;		/* asyncep offload mode: slots per executor (0: off) */
	int device;			/* enum zp_device (backend_cuda.h): 0 = cpu; cuda:
					   executor i on GPU i; sim: the test device */
	size_t kv_cache_bytes;		/* each executor's prefix KV cache (0: none) */
} zp_engine_cfg;

/* Place m's experts and start the executors (each on a NUMA node, memory
   there); logs each executor's range, resident bytes and memory. The engine,
   or NULL with e set (nothing left running). */
zp_engine *zp_engine_start(zp_model *m, const zp_engine_cfg *c, zp_err *e);
/* Stop the executors (after the batches handed over), then the comm thread;
   frees the placement. Every batch must have been given back. */
void zp_engine_stop(zp_engine *g);

int zp_engine_executors(const zp_engine *g);
/* Executors with a batch out (or staged). */
int zp_engine_busy(const zp_engine *g);
/* Executor x's finished layers so far (all forwards) and whether it has a
   batch running: a wedged executor is busy with a count that stands still. */
uint64_t zp_engine_beats(const zp_engine *g, int x, bool *running);
/* The placement: resident bytes, per-layer stats, calibration (asyncep.h). */
zp_place *zp_engine_place(zp_engine *g);

/* Cut the scheduler's due batches (force: whatever is queued) for each idle
   executor in turn and hand them over; under dpep only when every executor is idle,
   and then all start together. The next time a batch falls due (0: none). */
double zp_engine_dispatch(zp_engine *g, zp_sched *s, double now, bool force);

/* b came back (polled, before its sequences' zp_sched_seq_done): tell s,
   with what its executor measured (asyncep.h's per-layer stats since its
   last batch: the exposed gather wait, and one gather's time when waits
   paced the layers: the previous MoE layer's compute plus the wait). */
void zp_engine_done(zp_engine *g, zp_sched *s, const zp_batch *b);

/* An empty batch for the lowest idle executor, or NULL when none is idle.
   The caller fills req[], n and tokens, then submits (or releases) it. */
zp_batch *zp_engine_batch(zp_engine *g);
void zp_engine_submit(zp_engine *g, zp_batch *b);
/* dpep: start the staged batches now, idle executors with an empty one.
   Nothing to do otherwise. */
void zp_engine_flush(zp_engine *g);

/* A batch that came back (its executor is idle again; its per-layer stats
   are quiet until the next submit), or NULL. */
zp_batch *zp_engine_poll(zp_engine *g);
/* Block until a batch comes back; NULL when none is out. Offline drivers only
   (the engine's own doorbell: cfg.done NULL). */
zp_batch *zp_engine_wait(zp_engine *g);
/* b (polled, or taken and not submitted) is free again. */
void zp_engine_release(zp_engine *g, zp_batch *b);

#endif
