/* slab.h -- a fixed table of equal slots, carved at start (arena.h), whose
   slots are named across threads by a record {slot, generation} (ring.h).
   The owner thread takes a slot, fills it and sends its record; whoever
   receives the record resolves it with zp_slab_at, which asserts that the
   slot is in the table and still has the generation it was sent with; the
   owner puts the slot back when its record has come home, which bumps the
   generation, so an old record can never reach the slot's next use.
   Take and put: the owner thread only. At: any thread holding a record that
   came through a ring (whose release/acquire orders the owner's writes). */
#ifndef ZP_SLAB_H
#define ZP_SLAB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"
#include "ring.h"

typedef struct {
	char *base;			/* [n][size] */
	size_t size;			/* bytes per slot, a multiple of ZP_IPC_LINE */
	uint32_t n;
	_Atomic uint32_t *gen;		/* [n]: odd while taken, even while free */
	uint32_t *free;			/* [n]: free slot indices; owner only */
	uint32_t nfree;
} zp_slab;

static inline size_t zp_slab_slot_bytes(size_t obj_bytes)
{
	return (obj_bytes + ZP_IPC_LINE - 1) / ZP_IPC_LINE * ZP_IPC_LINE;
}

/* Bytes of memory a table of n objects of obj_bytes needs (ZP_IPC_LINE aligned). */
static inline size_t zp_slab_bytes(size_t obj_bytes, uint32_t n)
{
	return (size_t)n * (zp_slab_slot_bytes(obj_bytes) + sizeof(uint32_t) * 2);
}

/* Lay the table out in mem (zp_slab_bytes of it, ZP_IPC_LINE aligned). Every
   slot starts free and zeroed. */
static inline void zp_slab_init(zp_slab *s, void *mem, size_t obj_bytes, uint32_t n)
{
	ZP_IPC_ASSERT(mem && n > 0 && ((uintptr_t)mem & (ZP_IPC_LINE - 1)) == 0);
	s->size = zp_slab_slot_bytes(obj_bytes);
	s->n = n;
	s->base = mem;
	s->gen = (_Atomic uint32_t *)(s->base + (size_t)n * s->size);
	s->free = (uint32_t *)(s->gen + n);
	for (uint32_t i = 0; i < n; i++) {
		atomic_init(&s->gen[i], 0);
		s->free[i] = n - 1 - i; /* slot 0 is taken first */
	}
	s->nfree = n;
	for (size_t i = 0; i < (size_t)n * s->size; i++)
		s->base[i] = 0;
}

/* Owner: a free slot, its record in *rec; NULL when every slot is taken. */
static inline void *zp_slab_take(zp_slab *s, zp_rec *rec)
{
	if (!s->nfree)
		return NULL;
	uint32_t i = s->free[--s->nfree];
	uint32_t g = atomic_load_explicit(&s->gen[i], memory_order_relaxed);
	ZP_IPC_ASSERT(i < s->n && (g & 1) == 0);
	atomic_store_explicit(&s->gen[i], g + 1, memory_order_relaxed);
	*rec = (zp_rec){ i, g + 1 };
	return s->base + (size_t)i * s->size;
}

/* Any thread: the slot rec names. Aborts when the record is not the slot's
   current use (out of range, stale generation, or a free slot). */
static inline void *zp_slab_at(const zp_slab *s, zp_rec rec)
{
	ZP_IPC_ASSERT(rec.slot < s->n);
	ZP_IPC_ASSERT(atomic_load_explicit(&s->gen[rec.slot], memory_order_relaxed) == rec.gen &&
		      (rec.gen & 1) == 1);
	return s->base + (size_t)rec.slot * s->size;
}

/* Owner: the slot rec names is free again (its record must be current). */
static inline void zp_slab_put(zp_slab *s, zp_rec rec)
{
	zp_slab_at(s, rec);
	ZP_IPC_ASSERT(s->nfree < s->n);
	atomic_store_explicit(&s->gen[rec.slot], rec.gen + 1, memory_order_relaxed);
	s->free[s->nfree++] = rec.slot;
}

#endif
