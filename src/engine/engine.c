/* engine.c -- see engine.h. */
#include "engine.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int zp_engine_start(zp_engine *g, zp_model *m, const zp_engine_cfg *c, zp_err *e)
{
	memset(g, 0, sizeof *g);
	g->m = m;
	g->efd = c->done_efd;
	if (g->efd < 0) {
		if ((g->efd = eventfd(0, EFD_CLOEXEC)) < 0)
			return zp_errf(e, "eventfd: %s", strerror(errno));
		g->own_efd = true;
	}
	zp_transport *t = zp_transport_new(c->transport, e);
	if (!t || !(g->ep = zp_ep_new(m, c->executors, c->parallel, c->offload_window, t, e))) {
		zp_engine_stop(g);
		return -1;
	}
	for (int i = 0; i < c->executors; i++) {
		if (zp_exec_start(&g->exec[i], i, m, zp_ep_source(g->ep, i), zp_ep_group(g->ep),
				  c->threads_each, c->max_tokens, g->efd, e)) {
			zp_engine_stop(g);
			return -1;
		}
		g->n = i + 1;
		int lo, hi;
		zp_ep_range(g->ep, i, &lo, &hi);
		zp_log(ZP_LOG_INFO, "msg=executor id=%d parallel=%s transport=%s experts=[%d,%d) "
		       "resident_mb=%.1f threads=%d", i, zp_parallel_name(zp_ep_parallel(g->ep)),
		       c->transport,
		       lo, hi, (double)zp_ep_resident_bytes(g->ep, i) / (1 << 20), c->threads_each);
	}
	return 0;
}

zp_batch *zp_engine_wait(zp_engine *g, int x)
{
	zp_batch *b;
	while (!(b = zp_exec_reap(&g->exec[x]))) {
		uint64_t v;
		if (read(g->efd, &v, sizeof v) < 0)
			ZP_ASSERT(errno == EINTR);
	}
	return b;
}

void zp_engine_stop(zp_engine *g)
{
	for (int i = 0; i < g->n; i++)
		zp_exec_stop(&g->exec[i]);
	g->n = 0;
	zp_ep_free(g->ep); /* after the executors: no gather is requested any more */
	g->ep = NULL;
	if (g->own_efd)
		close(g->efd);
	g->own_efd = false;
}
