/* executor.c -- see executor.h. */
#include "executor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

static void ring_bell(int fd)
{
	uint64_t one = 1;
	ssize_t n;
	while ((n = write(fd, &one, sizeof one)) < 0 && errno == EINTR)
		;
	ZP_ASSERT(n == sizeof one);
}

static void *exec_main(void *arg)
{
	zp_exec *x = arg;
	for (;;) {
		zp_batch *b = zp_ring_pop(&x->in);
		if (!b) {
			uint64_t v;
			if (atomic_load_explicit(&x->stop, memory_order_acquire))
				break;
			if (read(x->doorbell, &v, sizeof v) < 0)
				ZP_ASSERT(errno == EINTR);
			continue;
		}
		ZP_ASSERT(b == &x->batch && b->n >= 0); /* 0: a dpep member with no tokens */
		double t0 = zp_now_s();
		zp_err e;
		b->failed = zp_fwd_run(x->fwd, b->req, b->n, &e) != 0;
		if (b->failed)
			snprintf(b->err, sizeof b->err, "%s", e.msg);
		b->fwd_s = zp_now_s() - t0;
		ZP_ASSERT(zp_ring_push(&x->out, b)); /* holds ZP_EXEC_RING, one is out */
		ring_bell(x->done_efd);
	}
	return NULL;
}

int zp_exec_start(zp_exec *x, int id, const zp_model *m, const zp_expert_src *src,
		  zp_dpep *grp, int threads, int max_tokens, int done_efd, zp_err *e)
{
	memset(x, 0, sizeof *x);
	x->id = id;
	x->threads = threads;
	x->done_efd = done_efd;
	zp_ring_init(&x->in, x->in_slot, ZP_EXEC_RING);
	zp_ring_init(&x->out, x->out_slot, ZP_EXEC_RING);
	x->doorbell = eventfd(0, EFD_CLOEXEC);
	if (x->doorbell < 0)
		return zp_errf(e, "executor %d: eventfd: %s", id, strerror(errno));
	x->fwd = zp_fwd_new(m, threads, max_tokens);
	zp_fwd_set_experts(x->fwd, src);
	if (grp)
		zp_fwd_set_dpep(x->fwd, grp, id);
	int rc = pthread_create(&x->th, NULL, exec_main, x);
	if (rc) {
		zp_fwd_free(x->fwd);
		close(x->doorbell);
		return zp_errf(e, "executor %d: thread: %s", id, strerror(rc));
	}
	return 0;
}

void zp_exec_submit(zp_exec *x)
{
	ZP_ASSERT(!x->busy && x->batch.n >= 0);
	x->busy = true;
	ZP_ASSERT(zp_ring_push(&x->in, &x->batch));
	ring_bell(x->doorbell);
}

zp_batch *zp_exec_reap(zp_exec *x)
{
	zp_batch *b = zp_ring_pop(&x->out);
	if (b) {
		ZP_ASSERT(x->busy && b == &x->batch);
		x->busy = false;
	}
	return b;
}

void zp_exec_stop(zp_exec *x)
{
	atomic_store_explicit(&x->stop, true, memory_order_release);
	ring_bell(x->doorbell);
	pthread_join(x->th, NULL);
	zp_fwd_free(x->fwd);
	close(x->doorbell);
}
