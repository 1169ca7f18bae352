/* kvcache.h -- the prefix KV cache of one executor (DESIGN.md section 4): a
   pool of blocks of ZP_KV_BLOCK tokens, each holding the keys and values of
   every layer for its 16 positions (f32 after k-norm and RoPE, the rows
   attention's zp_kv_src reads), allocated from the backend at start and
   bounded by kv_cache_bytes. A block is found by its key (prefix.h) and
   proven by its 16 token ids and its parent (the block before it, by slot and
   generation): a hit is exact whatever the hash does. Blocks in use by a
   forward are pinned (reference counts); the rest are evicted least recently
   used first, and a parent is always used more recently than its children.
   Threads: the executor thread that owns it, only (its forward). */
#ifndef ZP_KVCACHE_H
#define ZP_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "prefix.h"
#include "util.h"

/* ZP_KV_EVICT_REPORT (prefix.h): evicted keys a batch reports to the
   scheduler (zp_batch.kv_evicted). */

typedef struct zp_kv zp_kv;

/* kv_cache_bytes ZP_KV_AUTO (the default): sized at start from the memory
   left once the executor's weights and workspaces are in place.
   Host memory (cpu, sim): ZP_KV_AUTO_HOST_SHARE of what the kernel says is
   available (MemAvailable), shared by the executors, at most
   ZP_KV_AUTO_HOST_CAP each: the host runs other things, and a page cache.
   A device (cuda): what is free beyond (1 - ZP_KV_AUTO_DEVICE_UTIL) of its
   memory (vLLM's gpu_memory_utilization), shared by the executors on it. */
#define ZP_KV_AUTO SIZE_MAX
#define ZP_KV_AUTO_HOST_SHARE 0.25
#ifndef ZP_KV_AUTO_HOST_CAP /* `make tsan` lowers it: tsan maps shadow for every
				byte of a pool, which took a 4 GiB one 30 s to start */
#define ZP_KV_AUTO_HOST_CAP ((size_t)4 << 30)
#endif
#define ZP_KV_AUTO_DEVICE_UTIL 0.90

/* The bytes of a pool on b: explicit bytes (checked: on a device they must
   be free), or ZP_KV_AUTO sized as above for one of share executors drawing
   on the same memory (host: all of them; a device: those on each). why[n]
   says how it was chosen. 0, or -1 with e set (an explicit pool that does
   not fit: a start error, not an abort in alloc). */
int zp_kv_size(zp_backend *b, size_t bytes, int share, size_t *out, char *why, size_t n,
	       zp_err *e);
/* ZP_KV_AUTO on a device for executor id of share, once every executor on
   it has its weights and workspaces and those before id there their pools
   (executor i is on device i mod the devices): an equal share, among id and
   those after it on the device, of what is free beyond 1 -
   ZP_KV_AUTO_DEVICE_UTIL of it. Sized so, a later executor never finds its
   device full. why[n] says how. */
void zp_kv_size_device(zp_backend *b, int id, int share, size_t *out, char *why, size_t n);

/* A block's parent: ZP_KV_ROOT for the first block of a prompt. */
typedef struct {
	int slot;
	uint32_t gen;
} zp_kv_ref;

#define ZP_KV_ROOT ((zp_kv_ref){ -1, 0 })

/* A pool of as many blocks of layers x 16 rows x (2 kv_dim) floats as fit in
   bytes, from b's memory; NULL when not one block fits (0 bytes: no cache). */
zp_kv *zp_kv_new(zp_backend *b, int layers, int kv_dim, size_t bytes);
void zp_kv_free(zp_kv *c);

int zp_kv_blocks_max(const zp_kv *c);
/* Blocks resident (valid, or being written by the running forward). */
int zp_kv_blocks(const zp_kv *c);
/* Bytes of one block. */
size_t zp_kv_block_bytes(int layers, int kv_dim);

/* Test hook: keys keep only their low `bits` bits (0: every key equal), so
   tests force collisions; the ids and parent checks must still give exact
   hits. */
void zp_kv_test_key_bits(zp_kv *c, int bits);

/* The block after parent holding ids[ZP_KV_BLOCK] (key: prefix.h's key of
   that block), when resident and valid: pinned, its ref; else slot -1. */
zp_kv_ref zp_kv_find(zp_kv *c, zp_kv_ref parent, zp_blk_key key, const int32_t *ids);

/* Insert the block after parent holding ids: when an equal block is resident
   (or being written) it is pinned and returned with *fresh false; else a free
   or least recently used unpinned block is taken (its key reported as
   evicted), pinned, marked being written, and returned with *fresh true: the
   caller writes every layer (zp_kv_rows) and then zp_kv_commit or
   zp_kv_drop. slot -1 when every block is pinned. */
zp_kv_ref zp_kv_insert(zp_kv *c, zp_kv_ref parent, zp_blk_key key, const int32_t *ids,
		       bool *fresh);

/* Layer l's rows of block slot: [ZP_KV_BLOCK, 2 kv_dim] floats, each row the
   position's kv_dim keys then kv_dim values (backend memory). */
float *zp_kv_rows(const zp_kv *c, int slot, int layer);
/* The parent of a pinned block. */
zp_kv_ref zp_kv_parent(const zp_kv *c, int slot);

/* A fresh block was written: valid from now on. */
void zp_kv_commit(zp_kv *c, int slot);
/* A fresh block could not be written (the forward failed): free again. */
void zp_kv_drop(zp_kv *c, int slot);
/* Release one pin; a block with none left becomes the most recently used. */
void zp_kv_unpin(zp_kv *c, int slot);

/* Some block with this key is resident (valid or being written). */
bool zp_kv_resident(zp_kv *c, zp_blk_key key);

/* Evictions since the last call (a forward's): returns the count; the first
   min(count, cap) keys into keys. */
int zp_kv_take_evicted(zp_kv *c, zp_blk_key *keys, int cap);
/* Evictions since start. */
uint64_t zp_kv_evictions(const zp_kv *c);

#endif
