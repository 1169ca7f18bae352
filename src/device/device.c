/* device.c -- see device.h. The registry table; the only file above the
   backends that includes their headers. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "backend_cuda.h"
#include "gemm.h"
#include "transport_cpu.h"
#include "transport_cuda.h"

static const char *const names[] = { [ZP_DEV_CPU] = "cpu", [ZP_DEV_CUDA] = "cuda",
				     [ZP_DEV_SIM] = "sim" };

int zp_device_parse(const char *s)
{
	for (int d = 0; d < (int)(sizeof names / sizeof *names); d++)
		if (!strcmp(s, names[d]))
			return d;
	return -1;
}

const char *zp_device_name(enum zp_device d)
{
	ZP_ASSERT((unsigned)d < sizeof names / sizeof *names);
	return names[d];
}

zp_backend *zp_device_backend_new(enum zp_device d, const zp_device_opts *o, zp_err *e)
{
	if (d == ZP_DEV_CPU)
		return zp_backend_cpu_new(o->threads);
	return zp_backend_device_new(d, o->ordinal, o->threads, o->cfg, o->batch_tokens_max, e);
}

bool zp_device_host_memory(enum zp_device d)
{
	return d != ZP_DEV_CUDA;
}

const zp_wlayout *zp_device_layout(enum zp_device d)
{
	return d == ZP_DEV_CPU ? &zp_cpu_wlayout : &zp_cuda_wlayout;
}

const char *zp_device_kernels(enum zp_device d)
{
	return d == ZP_DEV_CPU ? zp_gemm_isa() : zp_device_name(d);
}

static void arm_from_env(zp_transport *t)
{
	const char *f = getenv("ZP_FAULT_GATHER_AFTER"); /* tests: see device.h */
	if (!f || atoi(f) <= 0)
		return;
	zp_transport_fail_after(t, atoi(f));
	zp_log(ZP_LOG_WARN, "msg=\"fault injection armed\" transport=%s fail_after=%d", t->name,
	       atoi(f));
}

const char *zp_device_transport_default(enum zp_device d)
{
	return d == ZP_DEV_CPU ? "cpu" : "p2p";
}

zp_transport *zp_device_transport_new(enum zp_device d, const char *name, zp_err *e)
{
	zp_transport *t;
	if (!strcmp(name, "auto"))
		name = zp_device_transport_default(d);
	if (strcmp(name, "cpu") && strcmp(name, "nccl") && strcmp(name, "p2p")) {
		zp_errf(e, "transport must be auto, cpu, nccl or p2p");
		return NULL;
	}
	if (d == ZP_DEV_CPU && strcmp(name, "cpu")) {
		zp_errf(e, "transport %s copies between devices' memories on their copy queues; "
			"executors on --device cpu share host memory (use cpu)", name);
		return NULL;
	}
	if (d != ZP_DEV_CPU && !strcmp(name, "cpu")) {
		zp_errf(e, "transport cpu copies on the comm thread, outside the devices' copy queues; "
			"executors on --device %s use p2p or nccl", zp_device_name(d));
		return NULL;
	}
	if (d == ZP_DEV_CUDA && !strcmp(name, "nccl")) {
		if (!(t = zp_transport_nccl_new())) {
			zp_errf(e, "transport nccl: this build has no NCCL (nccl.h was not found); "
				"use p2p");
			return NULL;
		}
	} else {
		t = d == ZP_DEV_CPU ? zp_transport_cpu_new()
				    : zp_transport_queue_new(!strcmp(name, "nccl"));
	}
	arm_from_env(t);
	return t;
}
