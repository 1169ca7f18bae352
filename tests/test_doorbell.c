/* test_doorbell.c -- the doorbell (ipc/doorbell.h): a wait returns once rung
   and says how many rings it coalesced; drain never blocks; a waiter on
   another thread wakes for each round of a ping-pong (100000 rounds, so a
   lost wake-up hangs the test into its timeout); several ringers' rings all
   add up. */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "doorbell.h"

#define ROUNDS 100000
#define RINGERS 4
#define RINGS_EACH 20000

static zp_bell ping, pong;
static _Atomic int work;

static void *echo(void *arg)
{
	for (int i = 0; i < ROUNDS; i++) {
		zp_bell_wait(&ping);
		atomic_fetch_add(&work, 1);
		zp_bell_ring(&pong);
	}
	return arg;
}

static void *ringer(void *arg)
{
	for (int i = 0; i < RINGS_EACH; i++)
		zp_bell_ring(&ping);
	return arg;
}

int main(void)
{
	CHECK(zp_bell_init(&ping) == 0 && zp_bell_init(&pong) == 0, "init");
	CHECK(zp_bell_drain(&ping) == 0, "a fresh bell drains nothing");
	zp_bell_ring(&ping);
	zp_bell_ring(&ping);
	zp_bell_ring(&ping);
	CHECK(zp_bell_wait(&ping) == 3, "three rings coalesce into one wake");
	CHECK(zp_bell_drain(&ping) == 0, "and are cleared");
	zp_bell_ring(&ping);
	CHECK(zp_bell_drain(&ping) == 1 && zp_bell_drain(&ping) == 0, "drain takes one ring");

	pthread_t t;
	pthread_create(&t, NULL, echo, NULL);
	for (int i = 0; i < ROUNDS; i++) {
		zp_bell_ring(&ping);
		zp_bell_wait(&pong);
		CHECK(atomic_load(&work) == i + 1, "round %d: the waiter ran before answering", i);
		if (check_failures)
			break;
	}
	pthread_join(t, NULL);

	pthread_t r[RINGERS];
	for (int i = 0; i < RINGERS; i++)
		pthread_create(&r[i], NULL, ringer, NULL);
	uint64_t total = 0;
	while (total < (uint64_t)RINGERS * RINGS_EACH)
		total += zp_bell_wait(&ping);
	for (int i = 0; i < RINGERS; i++)
		pthread_join(r[i], NULL);
	total += zp_bell_drain(&ping);
	CHECK(total == (uint64_t)RINGERS * RINGS_EACH, "every ring counted once: %lu",
	      (unsigned long)total);
	zp_bell_free(&ping);
	zp_bell_free(&pong);
	CHECK(ping.fd == -1, "freed");
	return check_exit("test_doorbell");
}
