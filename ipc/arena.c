/* arena.c -- see arena.h. */
#define _GNU_SOURCE
#include "arena.h"

#include <errno.h>
#include <stdbool.h>
#include <numa.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc.h"

#define HUGE_BYTES ((size_t)2 << 20) /* the x86-64 huge page */

int zp_arena_nodes(void)
{
	return numa_available() < 0 ? 1 : numa_num_configured_nodes();
}

int zp_arena_node_for(int i)
{
	int nodes = zp_arena_nodes();
	ZP_IPC_ASSERT(i >= 0);
	return nodes > 1 ? i % nodes : -1;
}

static bool thp_possible(void)
{
	char buf[128] = { 0 };
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	return !strstr(buf, "[never]");
}

/* Huge pages when the arena spans one at least; the kind in a->pages. */
static int map(zp_arena *a, size_t bytes)
{
	const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
	a->pages = ZP_ARENA_SMALL;
	if (bytes < HUGE_BYTES) {
		a->pages_why = "smaller than one huge page";
		a->bytes = bytes;
		a->base = mmap(NULL, bytes, prot, flags, -1, 0);
		return a->base == MAP_FAILED ? -1 : 0;
	}
	a->bytes = (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	a->base = mmap(NULL, a->bytes, prot, flags | MAP_HUGETLB, -1, 0);
	if (a->base != MAP_FAILED) {
		a->pages = ZP_ARENA_HUGETLB;
		return 0;
	}
	a->base = mmap(NULL, a->bytes, prot, flags, -1, 0);
	if (a->base == MAP_FAILED)
		return -1;
	if (thp_possible() && madvise(a->base, a->bytes, MADV_HUGEPAGE) == 0) {
		a->pages = ZP_ARENA_THP;
		a->pages_why = "no explicit huge pages reserved";
	} else {
		a->pages_why = "no explicit huge pages reserved, transparent huge pages off";
	}
	return 0;
}

int zp_arena_init(zp_arena *a, size_t bytes, int node)
{
	memset(a, 0, sizeof *a);
	a->node = -1;
	a->nodes = zp_arena_nodes();
	if (map(a, bytes ? bytes : 1)) {
		int err = errno;
		memset(a, 0, sizeof *a);
		errno = err;
		return -1;
	}
	if (node >= 0 && a->nodes > 1) { /* before the first touch places the pages */
		numa_tonode_memory(a->base, a->bytes, node % a->nodes);
		a->node = node % a->nodes;
	}
	memset(a->base, 0, a->bytes); /* fault every page in now, not on a request */
	return 0;
}

void zp_arena_free(zp_arena *a)
{
	if (a->base)
		munmap(a->base, a->bytes);
	memset(a, 0, sizeof *a);
}

void *zp_arena_carve(zp_arena *a, const char *name, size_t bytes, size_t align)
{
	ZP_IPC_ASSERT(a->base && align && (align & (align - 1)) == 0);
	size_t off = (a->used + align - 1) & ~(align - 1);
	if (off > a->bytes || bytes > a->bytes - off || a->nregions == ZP_ARENA_REGIONS_MAX)
		return NULL;
	zp_arena_region *r = &a->region[a->nregions++];
	snprintf(r->name, sizeof r->name, "%s", name);
	r->off = off;
	r->bytes = bytes;
	a->used = off + bytes;
	return a->base + off;
}

int zp_arena_describe(const zp_arena *a, char *buf, size_t n)
{
	static const char *kind[] = { "hugetlb", "thp", "small" };
	char node[16] = "any";
	if (a->node >= 0)
		snprintf(node, sizeof node, "%d", a->node);
	int k = snprintf(buf, n, "pages=%s%s%s%s numa_nodes=%d node=%s bytes=%zu used=%zu regions=",
			 kind[a->pages], a->pages_why ? " pages_why=\"" : "",
			 a->pages_why ? a->pages_why : "", a->pages_why ? "\"" : "", a->nodes, node,
			 a->bytes, a->used);
	for (int i = 0; i < a->nregions && k >= 0 && (size_t)k < n; i++)
		k += snprintf(buf + k, n - (size_t)k, "%s%s:%zu", i ? "," : "", a->region[i].name,
			      a->region[i].bytes);
	return k;
}

int zp_arena_bind_thread(int node)
{
	int nodes = zp_arena_nodes();
	if (node < 0 || nodes <= 1)
		return 0;
	if (numa_run_on_node(node % nodes))
		return -1;
	numa_set_preferred(node % nodes);
	return 0;
}
