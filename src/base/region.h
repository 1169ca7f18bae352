/* region.h -- the per-request region: a bump allocator over memory given once
   at start-up (sized from the limits), reset between requests. It owns that
   memory; it does not own what callers build in it (they drop it at reset).
   One thread uses a region at a time (the one serving its request). cJSON
   allocates from the calling thread's entered region (zp_region_enter), and
   from the heap when none is entered (start-up, CLI). */
#ifndef ZP_REGION_H
#define ZP_REGION_H

#include <stdbool.h>
#include <stddef.h>

#define ZP_REGION_ALIGN 16	/* every allocation: enough for any scalar (max_align_t) */

typedef struct zp_region {
	char *base;		/* [cap] */
	size_t cap, used;
	size_t last;		/* offset of the latest allocation (for zp_region_trim) */
	size_t peak;		/* the most ever used: for sizing the limits */
	size_t peak_before_last; /* peak before the latest allocation (for trim) */
	unsigned fails;		/* allocations refused since the last reset */
	int entered;		/* zp_region_enter without its leave, on any thread */
	bool owned;		/* base came from zp_region_init (freed by zp_region_free) */
	unsigned magic;		/* set while initialised: catches use before init / after free */
} zp_region;

/* Start-up only. Over mem[0..cap) (e.g. carved from the arena; not freed here),
   or, mem NULL, over cap bytes allocated now (aborts when out of memory, as
   every start-up allocation). Installs the cJSON hooks the first time. */
void zp_region_init(zp_region *r, void *mem, size_t cap);
void zp_region_free(zp_region *r);

/* n bytes, ZP_REGION_ALIGN-aligned, uninitialised; NULL when the region is
   full (counted in fails): the caller fails that request with a 413/503. */
void *zp_region_alloc(zp_region *r, size_t n);
/* Give back the end of the latest allocation p, keeping its first n bytes
   (for text whose length is known only once written into the free space). */
void zp_region_trim(zp_region *r, void *p, size_t n);
/* Bytes the next allocation may take. */
size_t zp_region_avail(const zp_region *r);
/* Everything allocated since init or the last reset is gone. Asserts that the
   region is not entered (a cJSON tree could still be growing in it). */
void zp_region_reset(zp_region *r);
/* Whether p points into the region's memory. */
bool zp_region_owns(const zp_region *r, const void *p);

/* cJSON on this thread allocates from r until zp_region_leave (enter/leave
   pair like a stack; NULL leaves the heap in force). Freeing a region pointer
   through cJSON (cJSON_Delete, cJSON_free) is a no-op, so a tree parsed in r
   may be deleted while r is entered, or simply dropped at reset; it must not
   be deleted after the leave. Returns the region entered before, for the
   leave. A region is entered by one thread at a time. */
zp_region *zp_region_enter(zp_region *r);
void zp_region_leave(zp_region *prev);
/* The region cJSON uses on this thread now, or NULL (the heap). */
zp_region *zp_region_current(void);

#endif
