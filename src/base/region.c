/* region.c -- see region.h. The cJSON hooks are global (cJSON_InitHooks); they
   route to a thread-local current region, so threads that never enter one
   (start-up, the CLI, executors) keep plain malloc/free. */
#include "region.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define REGION_MAGIC 0x7a70726eu /* "zprn" */

static __thread zp_region *cur;	/* this thread's entered region, or NULL */

static void *hook_malloc(size_t n)
{
	return cur ? zp_region_alloc(cur, n) : malloc(n);
}

static void hook_free(void *p)
{
	if (cur && zp_region_owns(cur, p))
		return; /* dropped at the region's reset */
	free(p);
}

static void install_hooks(void)
{
	cJSON_Hooks h = { hook_malloc, hook_free };
	cJSON_InitHooks(&h);
}

void zp_region_init(zp_region *r, void *mem, size_t cap)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	ZP_ASSERT(cap > 0);
	pthread_once(&once, install_hooks);
	memset(r, 0, sizeof *r);
	r->owned = !mem;
	r->base = mem ? mem : zp_xalloc_aligned(cap);
	ZP_ASSERT((uintptr_t)r->base % ZP_REGION_ALIGN == 0);
	r->cap = cap;
	r->magic = REGION_MAGIC;
}

void zp_region_free(zp_region *r)
{
	if (!r->base)
		return;
	ZP_ASSERT(r->magic == REGION_MAGIC && r->entered == 0);
	if (r->owned)
		zp_free_aligned(r->base);
	memset(r, 0, sizeof *r);
}

void *zp_region_alloc(zp_region *r, size_t n)
{
	ZP_ASSERT(r->magic == REGION_MAGIC);
	size_t need = ZP_ALIGN_UP(n ? n : 1, ZP_REGION_ALIGN);
	if (need < n || need > r->cap - r->used) {
		r->fails++;
		return NULL;
	}
	void *p = r->base + r->used;
	r->last = r->used;
	r->peak_before_last = r->peak;
	r->used += need;
	if (r->used > r->peak)
		r->peak = r->used;
	return p;
}

void zp_region_trim(zp_region *r, void *p, size_t n)
{
	size_t keep = ZP_ALIGN_UP(n ? n : 1, ZP_REGION_ALIGN);
	ZP_ASSERT(r->magic == REGION_MAGIC && (char *)p == r->base + r->last &&
		  r->last + keep <= r->used);
	r->used = r->last + keep;
	r->peak = ZP_MAX(r->peak_before_last, r->used); /* what was given back was never used */
}

size_t zp_region_avail(const zp_region *r)
{
	return r->cap - r->used;
}

void zp_region_reset(zp_region *r)
{
	ZP_ASSERT(r->magic == REGION_MAGIC && r->entered == 0);
	r->used = r->last = 0;
	r->fails = 0;
}

bool zp_region_owns(const zp_region *r, const void *p)
{
	return (const char *)p >= r->base && (const char *)p < r->base + r->cap;
}

zp_region *zp_region_enter(zp_region *r)
{
	zp_region *prev = cur;
	ZP_ASSERT(!r || r->magic == REGION_MAGIC);
	if (r)
		r->entered++;
	cur = r;
	return prev;
}

void zp_region_leave(zp_region *prev)
{
	ZP_ASSERT(!prev || prev->magic == REGION_MAGIC);
	if (cur) {
		ZP_ASSERT(cur->entered > 0);
		cur->entered--;
	}
	cur = prev;
}

zp_region *zp_region_current(void)
{
	return cur;
}
