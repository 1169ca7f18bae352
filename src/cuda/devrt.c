/* devrt.c -- what both device runtimes (devrt_cuda.c, devrt_sim.c) share:
   the one place a failed device call goes (devrt.h's zp_drt_fail), and the
   sticky error it leaves. Any thread. */
#include "devrt.h"

#include <sched.h>
#include <stdio.h>

void zp_drt_fail(zp_drt *r, const char *call, const char *why, const char *file, int line)
{
	int none = 0;
	if (!atomic_compare_exchange_strong(&r->fault.state, &none, 1))
		return; /* the first failure is the one the device reports */
	snprintf(r->fault.call, sizeof r->fault.call, "%s", call);
	snprintf(r->fault.why, sizeof r->fault.why, "%s", why);
	snprintf(r->fault.at, sizeof r->fault.at, "%s:%d", file, line);
	atomic_store_explicit(&r->fault.state, 2, memory_order_release);
	zp_log(ZP_LOG_ERROR, "msg=\"device call failed\" device=%s call=\"%s\" why=\"%s\" at=%s:%d",
	       r->ops->name, call, why, file, line);
}

bool zp_drt_failed(zp_drt *r)
{
	return atomic_load_explicit(&r->fault.state, memory_order_relaxed) != 0;
}

int zp_drt_error(zp_drt *r, zp_err *e)
{
	int st;
	if (!zp_drt_failed(r))
		return 0;
	while ((st = atomic_load_explicit(&r->fault.state, memory_order_acquire)) == 1)
		sched_yield(); /* its recorder is between two stores */
	if (e)
		zp_errf(e, "device fault: %s: %s", r->fault.call, r->fault.why);
	return -1;
}

const char *zp_dfile_misaligned(const void *dst, uint64_t off, size_t bytes)
{
	if ((uintptr_t)dst % ZP_DFILE_ALIGN)
		return "the device address is not a multiple of 4096 (O_DIRECT)";
	if (off % ZP_DFILE_ALIGN)
		return "the file offset is not a multiple of 4096 (O_DIRECT)";
	if (!bytes || bytes % ZP_DFILE_ALIGN)
		return "the size is not a positive multiple of 4096 (O_DIRECT)";
	return NULL;
}
