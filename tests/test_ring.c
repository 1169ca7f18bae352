/* test_ring.c -- the SPSC ring of records and the slab it names slots of:
   order and full/empty edges on one thread; head and tail running across
   2^32 (wraparound); a producer and a consumer thread passing 2 million
   records through a small ring (run under ThreadSanitizer by make tsan); a
   record whose generation is stale, out of range, or names a free slot makes
   the receiver abort (each in a forked child); a slab slot's generation moves
   on at every reuse. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ring.h"
#include "slab.h"

#define N (2u << 20)

static zp_ring ring;
static zp_rec storage[8];
static uint64_t got_sum, got_n, order_bad;

static void *producer(void *arg)
{
	for (uint32_t i = 1; i <= N; i++)
		while (!zp_ring_push(&ring, (zp_rec){ i, ~i }))
			sched_yield();
	return arg;
}

static void *consumer(void *arg)
{
	uint32_t want = 1;
	while (got_n < N) {
		zp_rec r;
		if (!zp_ring_pop(&ring, &r)) {
			sched_yield();
			continue;
		}
		order_bad += r.slot != want++ || r.gen != ~r.slot;
		got_sum += r.slot;
		got_n++;
	}
	return arg;
}

static void single_thread(void)
{
	zp_rec r;
	zp_ring_init(&ring, storage, 8);
	CHECK(!zp_ring_pop(&ring, &r), "empty ring pops nothing");
	for (uint32_t i = 1; i <= 8; i++)
		CHECK(zp_ring_push(&ring, (zp_rec){ i, 100 + i }), "push %u", i);
	CHECK(!zp_ring_push(&ring, (zp_rec){ 9, 109 }), "full ring refuses");
	CHECK(zp_ring_count(&ring) == 8, "count 8");
	for (uint32_t i = 1; i <= 8; i++)
		CHECK(zp_ring_pop(&ring, &r) && r.slot == i && r.gen == 100 + i, "fifo order at %u", i);
	CHECK(!zp_ring_pop(&ring, &r), "drained");
}

/* The counters are free-running: start them just below 2^32 and push/pop
   across the wrap, full and empty edges included. */
static void wraparound(void)
{
	zp_rec r;
	zp_ring_init(&ring, storage, 8);
	atomic_store(&ring.head, UINT32_MAX - 5);
	atomic_store(&ring.tail, UINT32_MAX - 5);
	uint32_t next_in = 0, next_out = 0;
	for (int round = 0; round < 6; round++) {
		while (zp_ring_push(&ring, (zp_rec){ next_in, next_in * 3 }))
			next_in++;
		CHECK(zp_ring_count(&ring) == 8, "full across the wrap (round %d)", round);
		for (int k = 0; k < 5; k++) {
			CHECK(zp_ring_pop(&ring, &r) && r.slot == next_out && r.gen == next_out * 3,
			      "order across the wrap at %u", next_out);
			next_out++;
		}
	}
	while (zp_ring_pop(&ring, &r)) {
		CHECK(r.slot == next_out && r.gen == next_out * 3, "drain order at %u", next_out);
		next_out++;
	}
	CHECK(next_out == next_in && atomic_load(&ring.head) < 64, "every record out, counters wrapped "
	      "(head %u)", atomic_load(&ring.head));
}

static void threads(void)
{
	pthread_t a, b;
	zp_ring_init(&ring, storage, 8);
	pthread_create(&a, NULL, producer, NULL);
	pthread_create(&b, NULL, consumer, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(got_n == N && order_bad == 0, "threads: %lu received, %lu out of order",
	      (unsigned long)got_n, (unsigned long)order_bad);
	CHECK(got_sum == (uint64_t)N * (N + 1) / 2, "threads: sum");
}

/* Run f(slab, rec) in a child: it must die of SIGABRT (the ipc assert). */
static void must_abort(const char *what, zp_slab *s, zp_rec r, void (*f)(zp_slab *, zp_rec))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stderr); /* the expected assertion message */
		f(s, r);
		_exit(0);
	}
	int st = 0;
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "%s: fork", what);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: the receiver aborts (status %d)",
	      what, st);
}

static void at(zp_slab *s, zp_rec r)
{
	zp_slab_at(s, r);
}

static void put(zp_slab *s, zp_rec r)
{
	zp_slab_put(s, r);
}

static void slab(void)
{
	static _Alignas(64) char mem[4096];
	zp_slab s;
	zp_rec a, b, c;
	CHECK(zp_slab_bytes(100, 4) <= sizeof mem, "slab fits");
	zp_slab_init(&s, mem, 100, 4);
	char *pa = zp_slab_take(&s, &a), *pb = zp_slab_take(&s, &b);
	CHECK(pa && pb && pa != pb && a.slot != b.slot, "two slots");
	CHECK(zp_slab_at(&s, a) == pa && zp_slab_at(&s, b) == pb, "records resolve");
	/* a record through a ring resolves on the other side */
	zp_ring_init(&ring, storage, 8);
	CHECK(zp_ring_push(&ring, a) && zp_ring_pop(&ring, &c) && zp_slab_at(&s, c) == pa,
	      "a record survives the ring");
	zp_slab_put(&s, a);
	must_abort("stale generation", &s, a, at);
	must_abort("stale put", &s, a, put);
	must_abort("out of range", &s, (zp_rec){ 4, 1 }, at);
	must_abort("forged generation", &s, (zp_rec){ b.slot, b.gen + 2 }, at);
	zp_rec a2;
	char *pa2 = zp_slab_take(&s, &a2);
	CHECK(pa2 == pa && a2.slot == a.slot && a2.gen != a.gen, "reuse: same slot, new generation");
	must_abort("old record of a reused slot", &s, a, at);
	CHECK(zp_slab_at(&s, a2) == pa, "the new record resolves");
	zp_rec more[2];
	CHECK(zp_slab_take(&s, &more[0]) && zp_slab_take(&s, &more[1]) && !zp_slab_take(&s, &c),
	      "four slots, then none");
}

int main(void)
{
	single_thread();
	wraparound();
	threads();
	slab();
	return check_exit("test_ring");
}
