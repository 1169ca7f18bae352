/* prefix.h -- the key of a prefix block, shared by the prefix KV cache (each
   executor's resident blocks) and the scheduler (its shadow of what each
   executor holds). A prompt is cut into blocks of ZP_KV_BLOCK tokens; block
   b's key is a hash chain over the ids of blocks 0..b, so equal keys mean
   (with overwhelming likelihood) equal leading tokens. A key is a hint, never
   proof: whoever reuses keys/values compares the block's ids on a hit
   (a forced collision must give the right answer). Header only; pure. */
#ifndef ZP_PREFIX_H
#define ZP_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZP_KV_BLOCK 16
/* Evicted keys an executor reports with one batch (scheduler.h's zp_batch);
   more: it reports an overflow instead. */
#define ZP_KV_EVICT_REPORT 1024	/* a default forward's blocks (8192 / 16), twice */

typedef struct {
	uint64_t lo, hi;
} zp_blk_key;

static inline uint64_t zp_blk_mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* The key of the block holding ids[ZP_KV_BLOCK] after the block whose key is
   prev (the first block: prev = zp_blk_key_root()). Two independent 64-bit
   chains: lo and hi differ in seed and in how each id enters. */
static inline zp_blk_key zp_blk_key_root(void)
{
	zp_blk_key k = { 0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull };
	return k;
}

static inline zp_blk_key zp_blk_key_next(zp_blk_key prev, const int32_t *ids)
{
	uint64_t lo = prev.lo, hi = prev.hi;
	for (int i = 0; i < ZP_KV_BLOCK; i++) {
		uint64_t v = (uint32_t)ids[i];
		lo = zp_blk_mix(lo ^ (v + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)));
		hi = zp_blk_mix(hi + (v << 32 | (uint64_t)(i + 1)) * 0xd1b54a32d192ed03ull);
	}
	zp_blk_key k = { lo, hi };
	return k;
}

static inline bool zp_blk_key_eq(zp_blk_key a, zp_blk_key b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

/* Keys of the leading full blocks of ids[n] into out[n / ZP_KV_BLOCK];
   returns how many (a partial last block has no key). */
static inline int zp_blk_keys(const int32_t *ids, int n, zp_blk_key *out)
{
	int nb = n / ZP_KV_BLOCK;
	zp_blk_key k = zp_blk_key_root();
	for (int b = 0; b < nb; b++) {
		k = zp_blk_key_next(k, ids + (size_t)b * ZP_KV_BLOCK);
		out[b] = k;
	}
	return nb;
}

#endif
