/* engine.h -- the model's experts placed for N executors (asyncep.h) and the
   N executor threads, as `zprefill serve`, `prefill` and `bench` build them.
   Owned by one thread (the server's loader then reactor, or the offline
   driver): it starts, submits to and waits for the executors, and stops all. */
#ifndef ZP_ENGINE_H
#define ZP_ENGINE_H

#include "asyncep.h"
#include "executor.h"

typedef struct {
	zp_model *m;
	zp_ep *ep;
	zp_exec exec[ZP_EP_EXECUTORS_MAX];
	int n;				/* executors running */
	int efd;			/* done eventfd the executors ring */
	bool own_efd;
} zp_engine;

typedef struct {
	int executors;
	enum zp_parallel parallel;
	const char *transport;		/* "cpu", ... */
	int threads_each;		/* worker threads per executor */
	int max_tokens;			/* per forward */
	int done_efd;			/* -1: the engine makes its own */
	int offload_window;		/* asyncep offload mode: slots per executor (0: off) */
} zp_engine_cfg;

/* Place m's experts and start the executors; logs each executor's resident
   bytes. 0, or -1 with e set (nothing left running). */
int zp_engine_start(zp_engine *g, zp_model *m, const zp_engine_cfg *c, zp_err *e);
/* Block until executor x's batch comes back; returns it. */
zp_batch *zp_engine_wait(zp_engine *g, int x);
/* Stop the executors, then the comm thread; frees the placement. */
void zp_engine_stop(zp_engine *g);

#endif
