/* transport_cpu.c -- see transport_cpu.h. Threads: see transport.h. */
#include "transport_cpu.h"

#include <stdlib.h>
#include <string.h>

/* every end is host memory (the registry gives this transport to cpu
   executors only): done when it returns */
static int cpu_copy(zp_transport *t, const zp_port *dst, const zp_copy_seg *segs, int n, zp_err *e)
{
	for (int i = 0; i < n; i++)
		memcpy(segs[i].dst, segs[i].src, segs[i].bytes);
	return 0;
}

static void cpu_free(zp_transport *t)
{
	free(t);
}

zp_transport *zp_transport_cpu_new(void)
{
	zp_transport *t = zp_xcalloc(1, sizeof *t);
	t->name = "cpu";
	t->copy = cpu_copy;
	t->free = cpu_free;
	return t;
}
