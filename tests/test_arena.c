/* test_arena.c -- the start-time arena (ipc/arena.h): carving (alignment,
   named regions, never overlapping, exhaustion and the region cap answer
   NULL and leave the arena as it was), describe()'s line, the page-size
   fallback order and NUMA placement.
   Page sizes: an arena below one huge page takes plain pages (forced here by
   its size). A larger one must report exactly what this machine offers: explicit
   huge pages when /proc/meminfo has enough free (vm.nr_hugepages), else
   transparent huge pages unless they are off, else plain pages. The test does
   not reserve explicit huge pages itself (a system-wide, root-only setting
   shared with every other process), so the hugetlb branch is checked only
   on a machine that has them reserved; elsewhere the fallback is. */
#include <errno.h>
#include <numa.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "check.h"

#define SMALL_BYTES ((size_t)64 << 10)
#define HUGE_BYTES ((size_t)2 << 20)

static int aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* No two regions share a byte, and each lies inside the arena. */
static void check_disjoint(const zp_arena *a)
{
	for (int i = 0; i < a->nregions; i++) {
		const zp_arena_region *r = &a->region[i];
		CHECK(r->off + r->bytes <= a->used && a->used <= a->bytes, "region %s inside", r->name);
		for (int j = i + 1; j < a->nregions; j++) {
			const zp_arena_region *q = &a->region[j];
			CHECK(r->off + r->bytes <= q->off || q->off + q->bytes <= r->off,
			      "regions %s and %s overlap", r->name, q->name);
		}
	}
}

static void check_carve(void)
{
	zp_arena a;
	char line[1024];
	CHECK(zp_arena_init(&a, SMALL_BYTES, -1) == 0, "init: %s", strerror(errno));
	CHECK(a.base && aligned(a.base, 4096) && a.bytes == SMALL_BYTES && a.used == 0, "mapped");
	/* resident before anything here reads it (reading would fault it in) */
	size_t pages = a.bytes / 4096;
	unsigned char *in = calloc(pages, 1);
	CHECK(mincore(a.base, a.bytes, in) == 0, "mincore: %s", strerror(errno));
	size_t resident = 0, zero = 0;
	for (size_t i = 0; i < pages; i++)
		resident += in[i] & 1;
	free(in);
	CHECK(resident == pages, "pre-faulted: %zu of %zu pages resident", resident, pages);
	for (size_t i = 0; i < a.bytes; i++)
		zero += a.base[i] == 0;
	CHECK(zero == a.bytes, "zeroed");
	char *p1 = zp_arena_carve(&a, "ring_in", 100, 64);
	char *p2 = zp_arena_carve(&a, "slab", 1, 4096);
	char *p3 = zp_arena_carve(&a, "a_name_longer_than_twenty_three", 3, 8);
	CHECK(p1 == a.base && aligned(p2, 4096) && p2 >= p1 + 100 && aligned(p3, 8) && p3 > p2,
	      "aligned, in order: %p %p %p", (void *)p1, (void *)p2, (void *)p3);
	CHECK(a.nregions == 3 && !strcmp(a.region[0].name, "ring_in") &&
	      !strcmp(a.region[1].name, "slab") && a.region[1].off == (size_t)(p2 - a.base) &&
	      strlen(a.region[2].name) == ZP_ARENA_NAME_LEN - 1 &&
	      !strncmp(a.region[2].name, "a_name_longer_than_twenty_three", ZP_ARENA_NAME_LEN - 1),
	      "named regions");
	memset(p1, 0x11, 100);
	memset(p2, 0x22, 1);
	memset(p3, 0x33, 3);
	CHECK(p1[99] == 0x11 && p2[0] == 0x22 && p3[0] == 0x33 && p3[2] == 0x33, "each keeps its bytes");

	zp_arena_describe(&a, line, sizeof line);
	CHECK(strstr(line, "pages=small pages_why=\"smaller than one huge page\"") &&
	      strstr(line, "node=any") && strstr(line, "bytes=65536") &&
	      strstr(line, "regions=ring_in:100,slab:1,a_name_longer_than_twen:3"),
	      "describe: %s", line);
	char nodes[32];
	snprintf(nodes, sizeof nodes, "numa_nodes=%d ", zp_arena_nodes());
	CHECK(strstr(line, nodes), "describe names the nodes: %s", line);
	char small[40];
	memset(small, 0x7f, sizeof small);
	int k = zp_arena_describe(&a, small, 16);
	CHECK(k > 16 && strlen(small) == 15 && small[16] == 0x7f && small[39] == 0x7f,
	      "describe into a short buffer: truncated, nothing past it (%d)", k);

	/* fill with random sizes and alignments: NULL exactly when it does not fit */
	unsigned long long rng = 42;
	int refused = 0;
	while (a.nregions < ZP_ARENA_REGIONS_MAX - 1 && !refused) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		size_t bytes = (size_t)(rng >> 33) % (SMALL_BYTES / 8), align = (size_t)1 << (rng >> 60);
		size_t off = (a.used + align - 1) & ~(align - 1), used = a.used;
		int n = a.nregions;
		char *p = zp_arena_carve(&a, "r", bytes, align);
		if (off + bytes > a.bytes) {
			CHECK(!p && a.used == used && a.nregions == n, "full: NULL, arena unchanged");
			refused = 1;
		} else {
			CHECK(p == a.base + off && a.used == off + bytes && aligned(p, align),
			      "fits: carved at %zu", off);
		}
	}
	CHECK(refused, "the arena filled up before the region cap");
	CHECK(zp_arena_carve(&a, "one", 1, 1), "a byte still fits");
	check_disjoint(&a);
	while (a.nregions < ZP_ARENA_REGIONS_MAX)
		CHECK(zp_arena_carve(&a, "zero", 0, 1), "empty regions up to the cap");
	CHECK(!zp_arena_carve(&a, "over", 0, 1), "past the region cap: NULL");
	check_disjoint(&a);
	zp_arena_free(&a);
	CHECK(!a.base && !a.bytes && !a.nregions, "freed");
}

/* What the kernel should give an arena of bytes (>= one huge page). */
static enum zp_arena_pages expected_pages(size_t bytes)
{
	char line[256];
	long free_pages = 0, page_kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof line, f)) {
		sscanf(line, "HugePages_Free: %ld", &free_pages);
		sscanf(line, "Hugepagesize: %ld kB", &page_kb);
	}
	if (f)
		fclose(f);
	if (page_kb == 2048 && (size_t)free_pages * HUGE_BYTES >= bytes)
		return ZP_ARENA_HUGETLB;
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	int thp = f && fgets(line, sizeof line, f) && !strstr(line, "[never]");
	if (f)
		fclose(f);
	return thp ? ZP_ARENA_THP : ZP_ARENA_SMALL;
}

static void check_pages(void)
{
	static const char *kind[] = { "hugetlb", "thp", "small" };
	zp_arena a;
	char line[512];
	size_t ask = 3 * (HUGE_BYTES / 2) + 1; /* rounds up to two huge pages */
	enum zp_arena_pages want = expected_pages(2 * HUGE_BYTES);
	CHECK(zp_arena_init(&a, ask, -1) == 0, "init large: %s", strerror(errno));
	zp_arena_describe(&a, line, sizeof line);
	printf("large arena: %s (expected %s)\n", line, kind[want]);
	CHECK(a.pages == want, "pages %s, this machine offers %s", kind[a.pages], kind[want]);
	CHECK(a.bytes == 2 * HUGE_BYTES && aligned(a.base, 4096), "rounded to huge pages: %zu", a.bytes);
	CHECK((a.pages == ZP_ARENA_HUGETLB) == (a.pages_why == NULL), "why not huge: %s",
	      a.pages_why ? a.pages_why : "(none)");
	char *p = zp_arena_carve(&a, "all", a.bytes, HUGE_BYTES);
	CHECK(p == a.base, "one region of everything");
	memset(p, 0x5a, a.bytes);
	CHECK(p[0] == 0x5a && p[a.bytes - 1] == 0x5a, "writable throughout");
	CHECK(!zp_arena_carve(&a, "more", 1, 1), "then full");
	zp_arena_free(&a);

	errno = 0;
	CHECK(zp_arena_init(&a, (size_t)1 << 62, -1) == -1 && errno && !a.base,
	      "refused by the kernel: -1, errno set, nothing held");
}

static void check_numa(void)
{
	int nodes = zp_arena_nodes();
	zp_arena a;
	CHECK(nodes >= 1, "nodes: %d", nodes);
	CHECK(zp_arena_bind_thread(-1) == 0 && zp_arena_bind_thread(0) == 0, "bind thread");
	for (int i = 0; i < 5; i++)
		CHECK(zp_arena_node_for(i) == (nodes > 1 ? i % nodes : -1), "node for %d", i);
	int node = nodes > 1 ? 1 : 0;
	CHECK(zp_arena_init(&a, SMALL_BYTES, node) == 0, "init on node %d", node);
	if (nodes == 1) {
		CHECK(a.node == -1, "one node: nothing bound (%d)", a.node);
	} else { /* the pages are on the node asked for */
		void *page = a.base;
		int status = -1;
		CHECK(a.node == node && numa_move_pages(0, 1, &page, NULL, &status, 0) == 0 &&
		      status == node, "page on node %d (it is on %d)", node, status);
	}
	printf("numa: %d node(s); an arena for node %d is bound to %d\n", nodes, node, a.node);
	zp_arena_free(&a);
}

int main(void)
{
	check_carve();
	check_pages();
	check_numa();
	return check_exit("test_arena");
}
