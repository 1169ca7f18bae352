/* test_ring.c -- the SPSC ring: order and full/empty edges on one thread, then a
   producer and a consumer thread passing 2 million tagged pointers through a
   small ring (run under ThreadSanitizer by make tsan). */
#include <pthread.h>
#include <sched.h>

#include "check.h"
#include "ring.h"

#define N (2u << 20)

static zp_ring ring;
static void *storage[8];
static uintptr_t got_sum, got_n, order_bad;

static void *producer(void *arg)
{
	for (uintptr_t i = 1; i <= N; i++)
		while (!zp_ring_push(&ring, (void *)i))
			sched_yield();
	return arg;
}

static void *consumer(void *arg)
{
	uintptr_t want = 1;
	while (got_n < N) {
		void *p = zp_ring_pop(&ring);
		if (!p) {
			sched_yield();
			continue;
		}
		order_bad += (uintptr_t)p != want++;
		got_sum += (uintptr_t)p;
		got_n++;
	}
	return arg;
}

int main(void)
{
	zp_ring_init(&ring, storage, 8);
	CHECK(zp_ring_pop(&ring) == NULL, "empty ring pops NULL");
	for (uintptr_t i = 1; i <= 8; i++)
		CHECK(zp_ring_push(&ring, (void *)i), "push %lu", (unsigned long)i);
	CHECK(!zp_ring_push(&ring, (void *)9), "full ring refuses");
	CHECK(zp_ring_count(&ring) == 8, "count 8");
	for (uintptr_t i = 1; i <= 8; i++)
		CHECK(zp_ring_pop(&ring) == (void *)i, "fifo order at %lu", (unsigned long)i);
	CHECK(zp_ring_pop(&ring) == NULL, "drained");

	pthread_t a, b;
	pthread_create(&a, NULL, producer, NULL);
	pthread_create(&b, NULL, consumer, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(got_n == N && order_bad == 0, "threads: %lu received, %lu out of order",
	      (unsigned long)got_n, (unsigned long)order_bad);
	CHECK(got_sum == (uintptr_t)N * (N + 1) / 2, "threads: sum");
	return check_exit("test_ring");
}
