/* executor.h -- one executor: a thread that owns a forward workspace (and its
   worker pool) on one device (for now a CPU share). The reactor hands it a
   batch through an SPSC ring and rings its doorbell (an eventfd it sleeps on);
   it hands the batch back through a second ring and the reactor's eventfd.
   Ownership of a batch moves with the ring. The model is shared read-only. */
#ifndef ZP_EXECUTOR_H
#define ZP_EXECUTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "forward.h"
#include "ring.h"
#include "scheduler.h"

#define ZP_EXEC_RING 4 /* batches in flight per executor (the reactor sends one) */

typedef struct {
	int id, threads;
	zp_fwd *fwd;
	pthread_t th;
	zp_ring in, out;			/* reactor -> executor, executor -> reactor */
	void *in_slot[ZP_EXEC_RING], *out_slot[ZP_EXEC_RING];
	int doorbell;				/* eventfd the executor sleeps on */
	int done_efd;				/* the reactor's eventfd, shared */
	_Atomic bool stop;
	/* reactor side */
	zp_batch batch;				/* the batch it may hold */
	bool busy;
} zp_exec;

/* Start executor id on m: threads workers, batches of at most max_tokens,
   experts from src (NULL: the model's own), as member id of dpep group grp
   (or NULL). 0, or -1 with e set. */
int zp_exec_start(zp_exec *x, int id, const zp_model *m, const zp_expert_src *src,
		  zp_dpep *grp, int threads, int max_tokens, int done_efd, zp_err *e);
/* Reactor: hand over x->batch (x must be idle). */
void zp_exec_submit(zp_exec *x);
/* Reactor: the finished batch, or NULL. */
zp_batch *zp_exec_reap(zp_exec *x);
/* Stop after the batches already handed over; joins the thread. */
void zp_exec_stop(zp_exec *x);

#endif
