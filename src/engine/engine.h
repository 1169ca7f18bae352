/* engine.h -- the one face `zprefill serve`, `prefill` and `bench` run work
   through. The engine owns the model's experts placed for N executors
   (asyncep.h), the N executor threads, the threshold's calibration and the
   scheduler (scheduler.h): jobs go in (zp_engine_submit_job), the engine cuts
   them into batches for idle executors (zp_engine_pump), and finished jobs
   come back (zp_engine_poll_job, zp_engine_wait_job) with every batch's
   bookkeeping done: per-layer stats, the scheduler's loads and threshold,
   failures marked on the jobs, admissions released. Under dpep the
   executors' forwards start together (empty fillers for the idle members,
   never seen by the caller).
   Below that, the bench's path (and tests'): one hand-filled batch per
   executor, no scheduler (zp_engine_batch ... zp_engine_release).
   An executor whose device faults loses its batch, not its requests: the
   batch's sequences go to the queue's front again and run elsewhere (the
   same bits: backend.h's batch invariance); a lost executor leaves routing,
   the experts are re-placed over the others (asyncep from the host copy,
   dpep's group re-formed) and it is retried every ZP_ENGINE_RETRY_S: a
   device that came back rejoins. While no executor can run a batch (every
   one down, or the experts cannot be re-placed: zp_engine_halted) the
   queued jobs fail at once, saying so. An executor that makes no progress for
   stall_s leaves routing until it does (the batch it holds stays its own).
   Threads: one owner thread calls everything here (the server's loader
   starts it, then the reactor drives it; or the offline driver). */
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
/* A down executor's rebuild is tried this often (it rejoins when it works). */
#define ZP_ENGINE_RETRY_S 1.0
/* A job whose sequences were lost this many times each (on average) fails
   with the last loss's error: a fault that follows the work, not a device. */
#define ZP_ENGINE_LOST_MAX 3
/* Seconds without progress after which a busy executor counts as stalled
   (serve's stall_timeout when not configured). */
#define ZP_ENGINE_STALL_S_DEFAULT 5.0
/* The most tokens one forward may be configured for. */
#define ZP_BATCH_TOKENS_LIMIT (1 << 20)

typedef struct zp_engine zp_engine;

/* The scheduler's queue and policy (scheduler.h): admission bounds, when a
   batch is cut, the policy's knobs. */
typedef struct {
	enum zp_sched_policy policy;
	int requests_max;		/* jobs admitted and not yet polled back */
	long tokens_max;		/* their tokens */
	int batch_tokens_max;		/* a batch is cut at this many tokens (0: the
					   engine's batch_tokens_max, one forward's size) */
	double batch_wait_s;		/* longest a queued sequence waits for company */
	double aging_s;			/* prefix_flops: longest a job is passed over */
	int min_tokens;			/* prefix_flops: T's floor, in tokens */
} zp_engine_queue_cfg;

typedef struct {
	int executors;			/* 1 .. ZP_EXECUTORS_MAX */
	enum zp_parallel parallel;
	const char *transport;		/* "cpu", ... */
	int threads_per_executor;		/* worker threads per executor */
	int batch_tokens_max;		/* tokens in one forward (ini: max_batch_tokens) */
	zp_bell *done;			/* rung when a batch comes back; NULL: the engine's own */
	int offload_window;		/* asyncep offload mode: slots per executor (0: off) */
	int device;			/* enum zp_device (device.h): 0 = cpu; cuda:
					   executor i on GPU i mod the GPU count; sim: the test device */
	size_t kv_cache_bytes;		/* each executor's prefix KV cache (0: none;
					   ZP_KV_AUTO, kvcache.h: sized at start) */
	zp_engine_queue_cfg queue;	/* the scheduler */
	/* Each batch that comes back, before its jobs are polled (the server's
	   metrics): called inside zp_engine_poll_job / zp_engine_wait_job on the
	   owner thread. NULL: none. */
	void (*on_batch)(void *arg, const zp_batch *b);
	void *on_batch_arg;
	/* An executor left (up false: lost, or stalled: why) or came back:
	   called on the owner thread from zp_engine_poll_job, _wait_job and
	   zp_engine_watch. NULL: none. */
	void (*on_health)(void *arg, int x, bool up, const char *why);
	void *on_health_arg;
	double stall_s;			/* zp_engine_watch's bound (0: no stall test) */
	bool drop_host_experts;		/* asyncep: drop the model's expert blocks once
					   placed (memory) and so lose the copy a lost
					   executor's experts are re-placed from */
} zp_engine_cfg;

/* An executor as the progress test sees it. */
enum zp_engine_exec {
	ZP_ENGINE_EXEC_OK,		/* idle, or its layer count moved within the bound */
	ZP_ENGINE_EXEC_STALLED,		/* busy, and its count stood still longer */
	ZP_ENGINE_EXEC_DOWN,		/* its device faulted and did not come back */
};

/* What the engine did about lost executors, since the start. */
typedef struct {
	int up;				/* executors up now */
	long lost, rejoined;		/* executors that went down / came back */
	long stalls;			/* times one was found stalled */
	long lost_batches, requeued;	/* batches lost with them; sequences run again */
	long replacements;		/* times the experts were re-placed */
} zp_engine_counts;

/* Place m's experts and start the executors (each on a NUMA node, memory
   there), logging each executor's range, resident bytes and memory; then,
   where asyncep is in effect, calibrate the threshold (logs msg=calibration,
   or a warning when it fails: T then comes from what forwards measure); then
   set the scheduler up with c->queue. The engine, or NULL with e set
   (nothing left running). */
zp_engine *zp_engine_start(zp_model *m, const zp_engine_cfg *c, zp_err *e);
/* Stop the executors (after the batches handed over), then the comm thread;
   frees the placement and the scheduler. Every batch must have been given
   back; jobs still admitted stay the caller's. */
void zp_engine_stop(zp_engine *g);

/* ---- jobs ---- */

/* Admit j (built: seq, nseq, tokens; the rest zero) at now. 0, or -1 when
   the queue is full in requests or tokens (the caller still owns j: it
   answers 503, or pumps and polls, and tries again). */
int zp_engine_submit_job(zp_engine *g, zp_job *j, double now);
/* j's client has gone: its sequences not yet out are dropped. true: nothing
   of it is out and it has left the engine (free it now); false: it comes
   back from zp_engine_poll_job (cancelled) once its last batch does. */
bool zp_engine_cancel(zp_engine *g, zp_job *j);
/* Cut the batches due at now (force: whatever is queued) for each idle
   executor in turn and hand them over; under dpep only when every executor
   is idle, and then all start together. The next time a batch falls due (0:
   none before something comes back or arrives). */
double zp_engine_pump(zp_engine *g, double now, bool force);
/* A finished job: every sequence of it came back (j->failed says whether a
   forward holding part of it failed, j->err why), or it was cancelled and
   its last batch came back. It has left the engine (its admission released):
   the caller answers or frees it. NULL when none is finished yet. Never
   blocks. */
zp_job *zp_engine_poll_job(zp_engine *g);
/* As zp_engine_poll_job, but blocks while batches are out; NULL when no
   job can finish before the next pump (none is out). Offline drivers only
   (the engine's own doorbell: cfg.done NULL). */
zp_job *zp_engine_wait_job(zp_engine *g);

/* ---- what the engine reports (owner thread) ---- */

int zp_engine_executors(const zp_engine *g);
/* Executors with a batch out (or staged). */
int zp_engine_busy(const zp_engine *g);
/* Executor x's finished layers so far (all forwards) and whether it has a
   batch running: a wedged executor is busy with a count that stands still. */
uint64_t zp_engine_beats(const zp_engine *g, int x, bool *running);
/* The progress test (the watchdog's and /health's): executor x at now is
   down (*why its reason), stalled (busy, its layer count unchanged for more
   than stall_s; *still_s how long), or fine. Owner thread (it keeps each
   count's last change). */
enum zp_engine_exec zp_engine_exec_report(zp_engine *g, int x, double now, double stall_s,
					  double *still_s, const char **why);
/* Run the progress test with the configured stall_s (cfg.stall_s): an
   executor found stalled leaves routing (logged, on_health), and comes back
   once it progresses. Call it now and then (the server: each scan). */
void zp_engine_watch(zp_engine *g, double now);
/* Why no batch can run (the experts could not be re-placed over the
   executors left), or NULL. */
const char *zp_engine_halted(const zp_engine *g);
zp_engine_counts zp_engine_get_counts(const zp_engine *g);
/* The scheduler, read-only: its queue gauges, policy, threshold and loads
   (the server's metrics and logs). */
const zp_sched *zp_engine_sched(const zp_engine *g);
/* [executors][layers]: each executor's per-layer stats (asyncep.h) as of its
   last batch's return (zeros before it). */
const zp_place_layer_stats *zp_engine_layer_stats(const zp_engine *g);
/* The start-up calibration, or NULL when none ran (asyncep not in effect) or
   it failed. */
const zp_place_calib *zp_engine_calib(const zp_engine *g);
/* The placement in effect (one executor reads its experts in place:
   replicate), and the bytes every executor holds, summed. */
enum zp_parallel zp_engine_parallel(const zp_engine *g);
size_t zp_engine_resident_bytes(const zp_engine *g);
/* Each executor's prefix cache as sized (kv_cache_bytes ZP_KV_AUTO: from
   the memory left), and in *why how it was chosen. */
size_t zp_engine_kv_cache_bytes(const zp_engine *g, const char **why);
/* Tests: the placement itself (ranges, fault injection). */
zp_place *zp_engine_place(zp_engine *g);

/* ---- the bench's path: batches by hand, no scheduler ----
   `zprefill bench` (and tests) give every executor the same hand-filled
   batch each round. Never mixed with jobs on one engine. */

/* An empty batch for the lowest idle executor, or NULL when none is idle.
   The caller fills req[], n and tokens, then submits (or releases) it. */
zp_batch *zp_engine_batch(zp_engine *g);
void zp_engine_submit(zp_engine *g, zp_batch *b);
/* dpep: start the staged batches now, idle executors with an empty one.
   Nothing to do otherwise. */
void zp_engine_flush(zp_engine *g);
/* A batch that came back (its executor is idle again; its per-layer stats
   were taken, zp_engine_layer_stats), or NULL. */
zp_batch *zp_engine_poll(zp_engine *g);
/* Block until a batch comes back; NULL when none is out. Offline drivers only
   (the engine's own doorbell: cfg.done NULL). */
zp_batch *zp_engine_wait(zp_engine *g);
/* b (polled, or taken and not submitted) is free again. */
void zp_engine_release(zp_engine *g, zp_batch *b);

#endif
