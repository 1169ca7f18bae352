/* ring.h -- single-producer single-consumer ring of fixed-size records in
   shared memory. A record names a slot of a table both sides know (slab.h)
   and the generation the slot had when it was sent, never a pointer: the
   consumer resolves it against the table, which asserts the generation, so a
   stale or forged record is caught where it is used (STYLE 6).
   Producer and consumer are fixed threads (the engine's owner and one
   executor, or the reverse for results; an executor and the comm thread).
   Power-of-two capacity, storage given at init (carved at start), acquire /
   release atomics, no locks. Head and tail are free-running 32-bit counters
   (wraparound is part of the contract). Each side asserts its own
   invariants: a push never overwrites an unread slot, a pop never reads past
   the producer. */
#ifndef ZP_RING_H
#define ZP_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ipc.h"

/* One record: slot index and generation. */
typedef struct {
	uint32_t slot, gen;
} zp_rec;

_Static_assert(sizeof(zp_rec) == 8, "a record is two 32-bit words");

typedef struct {
	_Alignas(ZP_IPC_LINE) _Atomic uint32_t head;	/* next to read: written by the consumer */
	_Alignas(ZP_IPC_LINE) _Atomic uint32_t tail;	/* next to write: written by the producer */
	_Alignas(ZP_IPC_LINE) uint32_t mask;		/* capacity - 1 */
	zp_rec *rec;					/* [capacity] */
} zp_ring;

_Static_assert(sizeof(zp_ring) == 3 * ZP_IPC_LINE, "head, tail and the constants sit on their own lines");

/* Bytes of storage a ring of capacity records needs. */
static inline size_t zp_ring_bytes(uint32_t capacity)
{
	return (size_t)capacity * sizeof(zp_rec);
}

static inline void zp_ring_init(zp_ring *r, zp_rec *storage, uint32_t capacity)
{
	ZP_IPC_ASSERT(storage && capacity >= 2 && (capacity & (capacity - 1)) == 0);
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	r->mask = capacity - 1;
	r->rec = storage;
}

/* Producer only. false when full (the caller counts and handles it). */
static inline bool zp_ring_push(zp_ring *r, zp_rec v)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	ZP_IPC_ASSERT(t - h <= r->mask + 1);
	if (t - h == r->mask + 1)
		return false;
	r->rec[t & r->mask] = v;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* Consumer only. false when empty; else the oldest record in *out. */
static inline bool zp_ring_pop(zp_ring *r, zp_rec *out)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	ZP_IPC_ASSERT(t - h <= r->mask + 1);
	if (h == t)
		return false;
	*out = r->rec[h & r->mask];
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return true;
}

/* Records waiting (a snapshot; exact for the consumer's lower bound). */
static inline uint32_t zp_ring_count(zp_ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_acquire) -
	       atomic_load_explicit(&r->head, memory_order_acquire);
}

#endif
