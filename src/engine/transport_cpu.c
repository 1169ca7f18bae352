/* transport_cpu.c -- the cpu transport (CPU executors share host memory: a
   gather is memcpy from peers' shards, run by the comm thread) and
   zp_transport_new, which picks a transport by name for CPU executors.
   Threads: see transport.h. */
#include "transport.h"

#include <stdlib.h>
#include <string.h>

static int cpu_copy(zp_transport *t, const zp_copy_seg *segs, int n, zp_err *e)
{
	for (int i = 0; i < n; i++) {
		/* every end is host memory: a device pointer here is a bug of the caller */
		ZP_ASSERT(segs[i].dst_dev == ZP_DEV_HOST && segs[i].src_dev == ZP_DEV_HOST);
		memcpy(segs[i].dst, segs[i].src, segs[i].bytes);
	}
	return 0;
}

static void cpu_free(zp_transport *t)
{
	free(t);
}

static void arm_from_env(zp_transport *t)
{
	const char *f = getenv("ZP_FAULT_GATHER_AFTER"); /* tests: see transport.h */
	if (!f || atoi(f) <= 0)
		return;
	zp_transport_fail_after(t, atoi(f));
	zp_log(ZP_LOG_WARN, "msg=\"fault injection armed\" transport=%s fail_after=%d", t->name,
	       atoi(f));
}

zp_transport *zp_transport_new(const char *name, zp_err *e)
{
	if (!strcmp(name, "nccl") || !strcmp(name, "p2p")) {
		zp_errf(e, "transport %s copies between CUDA devices and needs CUDA executors; "
			"these executors are CPU (use cpu)", name);
		return NULL;
	}
	if (strcmp(name, "cpu")) {
		zp_errf(e, "transport must be cpu, nccl or p2p");
		return NULL;
	}
	zp_transport *t = zp_xcalloc(1, sizeof *t);
	t->name = "cpu";
	t->copy = cpu_copy;
	t->free = cpu_free;
	arm_from_env(t);
	return t;
}
