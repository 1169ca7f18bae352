/* test_kv_size.c -- the prefix cache's size at start (kvcache.h's zp_kv_size,
   through the engine): ZP_KV_AUTO on the host (cpu) takes a capped share of
   the memory available; on a device (the sim with ZP_SIM_MEMORY_BYTES: a
   device of that size) what is free beyond 1 - ZP_KV_AUTO_DEVICE_UTIL of
   it, shared by its executors; an explicit pool the device cannot hold is a
   start error with a reason, not an abort on the executor thread; several
   executors on one device get equal pools sized after all of them loaded;
   0 stays the KV-cache-free mode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "device.h"
#include "engine.h"
#include "kvcache.h"

#define MODEL "tests/models/tiny-tok"
#define SIM_BYTES ((size_t)256 << 20)

static zp_engine *start(zp_model *m, int device, int n, size_t kv, zp_err *e)
{
	zp_engine_cfg c = { .executors = n, .parallel = ZP_PAR_REPLICATE, .transport = "auto",
			    .threads_per_executor = 1, .batch_tokens_max = 256, .device = device,
			    .kv_cache_bytes = kv };
	return zp_engine_start(m, &c, e);
}

static void host(zp_model *m)
{
	zp_err e;
	const char *why;
	zp_engine *g = start(m, ZP_DEV_CPU, 2, ZP_KV_AUTO, &e);
	CHECK(g != NULL, "cpu, auto: %s", g ? "" : e.msg);
	if (!g)
		return;
	size_t kv = zp_engine_kv_cache_bytes(g, &why);
	printf("cpu auto: %zu bytes: %s\n", kv, why);
	CHECK(kv > 0 && kv <= ZP_KV_AUTO_HOST_CAP, "cpu, auto: %zu bytes, at most the cap", kv);
	CHECK(strstr(why, "host memory available") && strstr(why, "over 2 executors"),
	      "cpu, auto: why says host memory over 2 executors: %s", why);
	zp_engine_stop(g);
	g = start(m, ZP_DEV_CPU, 1, 0, &e);
	CHECK(g && zp_engine_kv_cache_bytes(g, NULL) == 0, "kv_cache_bytes 0: no cache");
	if (g)
		zp_engine_stop(g);
}

static void device(zp_model *m)
{
	zp_err e;
	const char *why;
	setenv("ZP_SIM_MEMORY_BYTES", "268435456", 1); /* SIM_BYTES */
	zp_engine *g = start(m, ZP_DEV_SIM, 2, ZP_KV_AUTO, &e);
	CHECK(g != NULL, "sim, auto: %s", g ? "" : e.msg);
	if (g) {
		size_t kv = zp_engine_kv_cache_bytes(g, &why);
		printf("sim auto: %zu bytes: %s\n", kv, why);
		/* the weights and workspaces took some; 10% of it stays free */
		CHECK(kv > 0 && kv < (size_t)(ZP_KV_AUTO_DEVICE_UTIL * SIM_BYTES) / 2 &&
		      kv > SIM_BYTES / 8, "sim, auto: %zu bytes: under 90%% of 256 MiB over 2", kv);
		CHECK(strstr(why, "device memory free") != NULL, "sim, auto: why: %s", why);
		zp_engine_stop(g);
	}
	g = start(m, ZP_DEV_SIM, 1, (size_t)1 << 30, &e);
	CHECK(g == NULL && strstr(e.msg, "does not fit"),
	      "sim, 1 GiB on a 256 MiB device: a start error (%s)", g ? "started" : e.msg);
	if (g)
		zp_engine_stop(g);
	else
		printf("start error: %s\n", e.msg);
	g = start(m, ZP_DEV_SIM, 1, (size_t)64 << 20, &e);
	CHECK(g && zp_engine_kv_cache_bytes(g, NULL) == (size_t)64 << 20,
	      "sim, 64 MiB on a 256 MiB device: as configured (%s)", g ? "" : e.msg);
	if (g)
		zp_engine_stop(g);
	unsetenv("ZP_SIM_MEMORY_BYTES");
}

/* Several executors on one device (ZP_SIM_DEVICES: the sim's runtimes share
   its memory): the pools are sized once every executor has its weights and
   workspaces, an equal share each. Sized by executor 0 alone, before the
   others loaded, a device where the weights are over a tenth of the memory
   left the second executor too little: a start error. */
static void shared_device(zp_model *m)
{
	zp_err e;
	const char *why;
	char v[32];
	setenv("ZP_SIM_DEVICES", "1", 1);
	setenv("ZP_SIM_MEMORY_BYTES", "268435456", 1);
	zp_engine *g = start(m, ZP_DEV_SIM, 1, ZP_KV_AUTO, &e);
	CHECK(g != NULL, "one executor: %s", g ? "" : e.msg);
	if (!g)
		return;
	/* one executor's weights and workspaces: what its pool did not get */
	double w = ZP_KV_AUTO_DEVICE_UTIL * SIM_BYTES - (double)zp_engine_kv_cache_bytes(g, NULL);
	zp_engine_stop(g);
	CHECK(w > 0, "weights and workspaces: %.0f bytes", w);
	double mem = 5 * w; /* weights are a fifth of the device */
	snprintf(v, sizeof v, "%.0f", mem);
	setenv("ZP_SIM_MEMORY_BYTES", v, 1);
	static const int nx[] = { 2, 4 }, devs[] = { 1, 2 };
	for (int k = 0; k < 2; k++) {
		snprintf(v, sizeof v, "%d", devs[k]);
		setenv("ZP_SIM_DEVICES", v, 1);
		g = start(m, ZP_DEV_SIM, nx[k], ZP_KV_AUTO, &e);
		CHECK(g != NULL, "%d executors on %d devices of %.0f bytes, weights %.0f each: %s",
		      nx[k], devs[k], mem, w, g ? "started" : e.msg);
		if (!g)
			continue;
		size_t kv = zp_engine_kv_cache_bytes(g, &why);
		double want = (ZP_KV_AUTO_DEVICE_UTIL * mem - 2 * w) / 2;
		printf("%d executors on %d devices: %zu bytes each (want %.0f): %s\n", nx[k], devs[k],
		       kv, want, why);
		CHECK(fabs((double)kv - want) < 0.01 * want && strstr(why, "its 2 executors"),
		      "an equal share of what both executors' weights left: %zu, want %.0f", kv, want);
		zp_engine_stop(g);
	}
	unsetenv("ZP_SIM_DEVICES");
	unsetenv("ZP_SIM_MEMORY_BYTES");
}

int main(void)
{
	zp_model cpu, sim;
	zp_err e;
	if (zp_model_load(&cpu, MODEL, ZP_W_BF16, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) ||
	    zp_model_load(&sim, MODEL, ZP_W_BF16, zp_device_layout(ZP_DEV_SIM), 2, NULL, &e)) {
		printf("model: %s\n", e.msg);
		return 1;
	}
	host(&cpu);
	device(&sim);
	shared_device(&sim);
	zp_model_free(&cpu);
	zp_model_free(&sim);
	return check_exit("test_kv_size");
}
