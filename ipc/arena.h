/* arena.h -- memory allocated once at start and carved into named regions
   (slabs, rings, tables) that live until the arena is freed: nothing on a
   request path allocates. The arena asks for huge pages (MAP_HUGETLB, then
   transparent huge pages through madvise, then plain pages) and, on a machine
   with several NUMA nodes, binds its pages to one node through libnuma (a
   no-op with one node). What it got is in the struct and in zp_arena_describe,
   for the owner to log (ipc/ has no logger).
   Threads: init, carve and free on the owner thread; the regions are then
   shared as their own headers say. Return contract: init fails only when the
   kernel refuses the memory; carve returns NULL when the arena is full. */
#ifndef ZP_ARENA_H
#define ZP_ARENA_H

#include <stddef.h>

#define ZP_ARENA_REGIONS_MAX 32
#define ZP_ARENA_NAME_LEN 24

enum zp_arena_pages {
	ZP_ARENA_HUGETLB,		/* explicit huge pages (MAP_HUGETLB) */
	ZP_ARENA_THP,			/* transparent huge pages (madvise) */
	ZP_ARENA_SMALL,			/* plain pages */
};

typedef struct {
	char name[ZP_ARENA_NAME_LEN];
	size_t off, bytes;
} zp_arena_region;

typedef struct {
	char *base;
	size_t bytes, used;		/* mapped; carved */
	enum zp_arena_pages pages;
	const char *pages_why;		/* why not huge pages (NULL when huge) */
	int node;			/* node the pages are bound to; -1: not bound */
	int nodes;			/* NUMA nodes libnuma sees (1 without libnuma) */
	zp_arena_region region[ZP_ARENA_REGIONS_MAX];
	int nregions;
} zp_arena;

/* Map at least bytes, pre-faulted, bound to node when the machine has more
   than one (node < 0: anywhere). 0, or -1 with errno set. */
int zp_arena_init(zp_arena *a, size_t bytes, int node);
void zp_arena_free(zp_arena *a);

/* A region of bytes aligned to align (a power of two), recorded under name
   (truncated to ZP_ARENA_NAME_LEN - 1). NULL when it does not fit. */
void *zp_arena_carve(zp_arena *a, const char *name, size_t bytes, size_t align);

/* One line: pages, node, nodes, bytes, regions. Returns snprintf's count. */
int zp_arena_describe(const zp_arena *a, char *buf, size_t n);

/* NUMA nodes on this machine (1 when libnuma is unavailable). */
int zp_arena_nodes(void);
/* The node worker i (an executor) and its memory go to: i mod nodes, so
   workers spread evenly; -1 on a machine with one node (nothing to place). */
int zp_arena_node_for(int i);
/* Run the calling thread on node's CPUs and prefer its memory (first touch).
   0 (also when there is one node: nothing to do), or -1 with errno set. */
int zp_arena_bind_thread(int node);

#endif
