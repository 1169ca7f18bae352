/* pool.h -- a fixed set of worker threads that run one parallel loop at a time.
   Owns its threads. zp_pool_run is called by one thread (the owner: an executor
   or the offline driver), which also takes tasks; workers spin briefly, then sleep. */
#ifndef ZP_POOL_H
#define ZP_POOL_H

typedef void (*zp_task_fn)(void *ctx, int task, int thread);
typedef struct zp_pool zp_pool;

/* threads counts the caller: threads == 1 runs everything on the caller. */
zp_pool *zp_pool_new(int threads);
void zp_pool_free(zp_pool *p);
/* Run fn(ctx, t, thread) for t in [0, ntasks); returns when all are done. */
void zp_pool_run(zp_pool *p, int ntasks, zp_task_fn fn, void *ctx);

#endif
