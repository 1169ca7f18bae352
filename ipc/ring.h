/* ring.h -- single-producer single-consumer ring of pointers, and the doorbell
   a consumer sleeps on. Producer and consumer are fixed threads (the reactor and
   one executor, or the reverse for results). Power-of-two capacity, storage
   given at init (allocated at start), acquire/release atomics, no locks.
   Each side asserts its own invariants: a push never overwrites an unread
   slot, a pop never reads past the producer. */
#ifndef ZP_RING_H
#define ZP_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct {
	_Alignas(64) _Atomic uint32_t head;	/* next slot to read: written by the consumer */
	_Alignas(64) _Atomic uint32_t tail;	/* next slot to write: written by the producer */
	_Alignas(64) uint32_t mask;		/* capacity - 1 */
	void **slot;				/* [capacity] */
} zp_ring;

_Static_assert(sizeof(zp_ring) == 192, "head, tail and the constants sit on their own lines");

static inline void zp_ring_init(zp_ring *r, void **storage, uint32_t capacity)
{
	ZP_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	r->mask = capacity - 1;
	r->slot = storage;
}

/* Producer only. false when full (the caller counts and handles it). */
static inline bool zp_ring_push(zp_ring *r, void *p)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	ZP_ASSERT(p && t - h <= r->mask + 1);
	if (t - h == r->mask + 1)
		return false;
	r->slot[t & r->mask] = p;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* Consumer only. NULL when empty. */
static inline void *zp_ring_pop(zp_ring *r)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	ZP_ASSERT(t - h <= r->mask + 1);
	if (h == t)
		return NULL;
	void *p = r->slot[h & r->mask];
	ZP_ASSERT(p);
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return p;
}

/* Entries waiting (a snapshot; exact for the consumer's lower bound). */
static inline uint32_t zp_ring_count(zp_ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_acquire) -
	       atomic_load_explicit(&r->head, memory_order_acquire);
}

#endif
