/* kvcache.c -- see kvcache.h. Host metadata per block (key, ids, parent,
   generation, pins, state) beside one backend allocation of the rows; a
   chained hash table on the key; unpinned valid blocks on an LRU list (head:
   least recent), free blocks on a free list. */
#include "kvcache.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

enum blk_state { BLK_FREE, BLK_WRITING, BLK_VALID };

struct blk {
	zp_blk_key key;
	int32_t ids[ZP_KV_BLOCK];
	zp_kv_ref parent;
	uint32_t gen;		/* bumped whenever the slot is freed: stale refs miss */
	int refs;
	enum blk_state state;
	int prev, next;		/* LRU list (unpinned valid) or free list (next only) */
	int hnext;		/* hash chain */
};

struct zp_kv {
	zp_backend *be;
	int layers, kv_dim, n;
	size_t layer_floats;	/* ZP_KV_BLOCK * 2 kv_dim */
	float *rows;		/* backend [n][layers][ZP_KV_BLOCK][2 kv_dim] */
	struct blk *b;		/* host [n] */
	int *bucket;		/* host [nbucket]: first slot, -1 */
	uint64_t bmask;
	int lru_head, lru_tail, free_head;
	int resident;
	uint64_t key_mask;	/* all ones but in tests */
	uint64_t evictions;
	int ev_n;		/* since the last take */
	zp_blk_key ev[ZP_KV_EVICT_REPORT];
};

/* The host's available memory (MemAvailable; else the free pages). */
static size_t host_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	if (kb)
		return (size_t)kb * 1024;
	long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

#define GIB(x) ((double)(x) / (1 << 30))

int zp_kv_size(zp_backend *b, size_t bytes, int share, size_t *out, char *why, size_t n,
	       zp_err *e)
{
	zp_mem_info mi;
	b->ops->mem_info(b, &mi);
	share = ZP_MAX(share, 1);
	if (bytes != ZP_KV_AUTO) {
		*out = bytes;
		snprintf(why, n, "configured");
		if (bytes && !mi.host && bytes > mi.free_bytes)
			return zp_errf(e, "kv_cache_bytes %zu (%.2f GiB) does not fit: %.2f GiB of the "
				       "device's %.2f GiB free after weights and workspaces", bytes,
				       GIB(bytes), GIB(mi.free_bytes), GIB(mi.total_bytes));
		return 0;
	}
	if (mi.host) {
		size_t avail = host_available();
		*out = ZP_MIN((size_t)(ZP_KV_AUTO_HOST_SHARE * (double)avail / share),
			      ZP_KV_AUTO_HOST_CAP);
		snprintf(why, n, "%.0f%% of %.2f GiB host memory available after weights and "
			 "workspaces, over %d executors, at most %.0f GiB each",
			 ZP_KV_AUTO_HOST_SHARE * 100, GIB(avail), share, GIB(ZP_KV_AUTO_HOST_CAP));
		return 0;
	}
	int per = (share + ZP_MAX(mi.devices, 1) - 1) / ZP_MAX(mi.devices, 1);
	double keep = (1 - ZP_KV_AUTO_DEVICE_UTIL) * (double)mi.total_bytes;
	double left = (double)mi.free_bytes - keep;
	*out = left > 0 ? (size_t)(left / per) : 0;
	snprintf(why, n, "device memory free after weights and workspaces (%.2f GiB) beyond %.0f%% "
		 "of its %.2f GiB, over %d executors on it", GIB(mi.free_bytes),
		 ZP_KV_AUTO_DEVICE_UTIL * 100, GIB(mi.total_bytes), per);
	return 0;
}

void zp_kv_size_device(zp_backend *b, int id, int share, size_t *out, char *why, size_t n)
{
	zp_mem_info mi;
	b->ops->mem_info(b, &mi);
	ZP_ASSERT(!mi.host && id >= 0 && id < share);
	int d = ZP_MAX(mi.devices, 1), on = 0, rest = 0;
	for (int j = 0; j < share; j++) {
		on += j % d == id % d;
		rest += j >= id && j % d == id % d;
	}
	double keep = (1 - ZP_KV_AUTO_DEVICE_UTIL) * (double)mi.total_bytes;
	double left = (double)mi.free_bytes - keep;
	*out = left > 0 ? (size_t)(left / rest) : 0;
	snprintf(why, n, "device memory free after the weights and workspaces of its %d executors "
		 "(%.2f GiB, %d pools to go) beyond %.0f%% of its %.2f GiB, an equal share each", on,
		 GIB(mi.free_bytes), rest, ZP_KV_AUTO_DEVICE_UTIL * 100, GIB(mi.total_bytes));
}

size_t zp_kv_block_bytes(int layers, int kv_dim)
{
	return (size_t)layers * ZP_KV_BLOCK * 2 * (size_t)kv_dim * sizeof(float);
}

zp_kv *zp_kv_new(zp_backend *be, int layers, int kv_dim, size_t bytes)
{
	size_t bb = zp_kv_block_bytes(layers, kv_dim);
	ZP_ASSERT(layers >= 1 && kv_dim >= 1);
	if (bytes / bb < 1)
		return NULL;
	zp_kv *c = zp_xcalloc(1, sizeof *c);
	c->be = be;
	c->layers = layers;
	c->kv_dim = kv_dim;
	c->n = (int)ZP_MIN(bytes / bb, (size_t)1 << 30);
	c->layer_floats = (size_t)ZP_KV_BLOCK * 2 * kv_dim;
	c->rows = be->ops->alloc(be, (size_t)c->n * bb);
	c->b = zp_xcalloc((size_t)c->n, sizeof *c->b);
	size_t nb = 1;
	while (nb < (size_t)c->n * 2)
		nb *= 2;
	c->bucket = zp_xmalloc(nb * sizeof *c->bucket);
	memset(c->bucket, 0xff, nb * sizeof *c->bucket);
	c->bmask = nb - 1;
	c->key_mask = ~0ull;
	c->lru_head = c->lru_tail = c->free_head = -1;
	for (int i = c->n - 1; i >= 0; i--) {
		c->b[i].next = c->free_head;
		c->free_head = i;
	}
	return c;
}

void zp_kv_free(zp_kv *c)
{
	if (!c)
		return;
	c->be->ops->mfree(c->be, c->rows);
	free(c->b);
	free(c->bucket);
	free(c);
}

int zp_kv_blocks_max(const zp_kv *c)
{
	return c->n;
}

int zp_kv_blocks(const zp_kv *c)
{
	return c->resident;
}

void zp_kv_test_key_bits(zp_kv *c, int bits)
{
	ZP_ASSERT(bits >= 0 && bits <= 64 && c->resident == 0);
	c->key_mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
}

static zp_blk_key masked(const zp_kv *c, zp_blk_key k)
{
	if (c->key_mask != ~0ull) {
		k.lo &= c->key_mask;
		k.hi = 0;
	}
	return k;
}

static int *bucket_of(zp_kv *c, zp_blk_key k)
{
	return &c->bucket[k.lo & c->bmask];
}

static bool ref_eq(zp_kv_ref a, zp_kv_ref b)
{
	return a.slot == b.slot && a.gen == b.gen;
}

static void lru_unlink(zp_kv *c, int i)
{
	struct blk *x = &c->b[i];
	if (x->prev >= 0)
		c->b[x->prev].next = x->next;
	else
		c->lru_head = x->next;
	if (x->next >= 0)
		c->b[x->next].prev = x->prev;
	else
		c->lru_tail = x->prev;
	x->prev = x->next = -1;
}

static void lru_push(zp_kv *c, int i)
{
	struct blk *x = &c->b[i];
	x->prev = c->lru_tail;
	x->next = -1;
	if (c->lru_tail >= 0)
		c->b[c->lru_tail].next = i;
	else
		c->lru_head = i;
	c->lru_tail = i;
}

static void pin(zp_kv *c, int i)
{
	struct blk *x = &c->b[i];
	if (x->refs++ == 0 && x->state == BLK_VALID)
		lru_unlink(c, i);
}

/* The resident block after parent holding ids (valid, or also being written). */
static int lookup(zp_kv *c, zp_kv_ref parent, zp_blk_key key, const int32_t *ids,
		  bool writing_too)
{
	for (int i = *bucket_of(c, key); i >= 0; i = c->b[i].hnext) {
		const struct blk *x = &c->b[i];
		if (zp_blk_key_eq(x->key, key) && ref_eq(x->parent, parent) &&
		    (x->state == BLK_VALID || (writing_too && x->state == BLK_WRITING)) &&
		    !memcmp(x->ids, ids, sizeof x->ids))
			return i;
	}
	return -1;
}

zp_kv_ref zp_kv_find(zp_kv *c, zp_kv_ref parent, zp_blk_key key, const int32_t *ids)
{
	int i = lookup(c, parent, masked(c, key), ids, false);
	if (i < 0)
		return ZP_KV_ROOT;
	pin(c, i);
	return (zp_kv_ref){ i, c->b[i].gen };
}

static void unhash(zp_kv *c, int i)
{
	int *p = bucket_of(c, c->b[i].key);
	while (*p != i) {
		ZP_ASSERT(*p >= 0);
		p = &c->b[*p].hnext;
	}
	*p = c->b[i].hnext;
}

/* Slot i leaves the pool's content: unhashed, a new generation, on the free list. */
static void release(zp_kv *c, int i)
{
	struct blk *x = &c->b[i];
	unhash(c, i);
	x->gen++;
	x->state = BLK_FREE;
	x->refs = 0;
	x->next = c->free_head;
	c->free_head = i;
	c->resident--;
}

/* A free slot: from the free list, else the least recently used valid block
   (evicted and reported). -1 when every block is pinned. */
static int take(zp_kv *c)
{
	int i = c->free_head;
	if (i < 0 && (i = c->lru_head) >= 0) {
		if (c->ev_n < ZP_KV_EVICT_REPORT)
			c->ev[c->ev_n] = c->b[i].key;
		c->ev_n++;
		c->evictions++;
		lru_unlink(c, i);
		release(c, i);
	}
	if (i >= 0)
		c->free_head = c->b[i].next;
	return i;
}

zp_kv_ref zp_kv_insert(zp_kv *c, zp_kv_ref parent, zp_blk_key key, const int32_t *ids,
		       bool *fresh)
{
	key = masked(c, key);
	int i = lookup(c, parent, key, ids, true);
	*fresh = i < 0;
	if (i >= 0) {
		pin(c, i);
		return (zp_kv_ref){ i, c->b[i].gen };
	}
	if ((i = take(c)) < 0) {
		*fresh = false;
		return ZP_KV_ROOT;
	}
	struct blk *x = &c->b[i];
	x->key = key;
	memcpy(x->ids, ids, sizeof x->ids);
	x->parent = parent;
	x->state = BLK_WRITING;
	x->refs = 1;
	x->prev = x->next = -1;
	int *h = bucket_of(c, key);
	x->hnext = *h;
	*h = i;
	c->resident++;
	return (zp_kv_ref){ i, x->gen };
}

float *zp_kv_rows(const zp_kv *c, int slot, int layer)
{
	ZP_ASSERT(slot >= 0 && slot < c->n && layer >= 0 && layer < c->layers);
	ZP_ASSERT(c->b[slot].refs > 0);
	return c->rows + ((size_t)slot * c->layers + layer) * c->layer_floats;
}

zp_kv_ref zp_kv_parent(const zp_kv *c, int slot)
{
	ZP_ASSERT(slot >= 0 && slot < c->n && c->b[slot].refs > 0);
	return c->b[slot].parent;
}

void zp_kv_commit(zp_kv *c, int slot)
{
	ZP_ASSERT(c->b[slot].state == BLK_WRITING && c->b[slot].refs > 0);
	c->b[slot].state = BLK_VALID;
}

void zp_kv_drop(zp_kv *c, int slot)
{
	ZP_ASSERT(c->b[slot].state == BLK_WRITING && c->b[slot].refs == 1);
	release(c, slot);
}

void zp_kv_unpin(zp_kv *c, int slot)
{
	struct blk *x = &c->b[slot];
	ZP_ASSERT(x->refs > 0 && x->state != BLK_FREE);
	if (--x->refs == 0) {
		ZP_ASSERT(x->state == BLK_VALID); /* committed or dropped before the last unpin */
		lru_push(c, slot);
	}
}

bool zp_kv_resident(zp_kv *c, zp_blk_key key)
{
	key = masked(c, key);
	for (int i = *bucket_of(c, key); i >= 0; i = c->b[i].hnext)
		if (zp_blk_key_eq(c->b[i].key, key))
			return true;
	return false;
}

int zp_kv_take_evicted(zp_kv *c, zp_blk_key *keys, int cap)
{
	int n = c->ev_n;
	memcpy(keys, c->ev, (size_t)ZP_MIN(ZP_MIN(n, cap), ZP_KV_EVICT_REPORT) * sizeof *keys);
	c->ev_n = 0;
	return n;
}

uint64_t zp_kv_evictions(const zp_kv *c)
{
	return c->evictions;
}
