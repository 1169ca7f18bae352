/* device.h -- the device registry: the one place that names backends. A
   device ("cpu", "cuda", "sim") maps to its backend constructor and its
   transports; everything above the seam (engine/, serve/, cli/) asks here and
   includes no backend's header (tests/test_rooms.sh checks it). The backends
   (src/cpu/, src/cuda/) are siblings: neither includes the other.
   Threads: any; a backend is then used by the thread that made it. */
#ifndef ZP_DEVICE_H
#define ZP_DEVICE_H

#include "backend.h"
#include "config.h"
#include "transport.h"
#include "util.h"

enum zp_device { ZP_DEV_CPU, ZP_DEV_CUDA, ZP_DEV_SIM };

/* "cpu", "cuda", "sim" -> the device; -1 for anything else */
int zp_device_parse(const char *s);
const char *zp_device_name(enum zp_device d);

/* What a backend instance is sized for. */
typedef struct {
	int ordinal;		/* cuda: the GPU; ignored elsewhere */
	int threads;		/* cpu: its pool; sim: twin threads */
	const zp_config *cfg;	/* the model it will run */
	int batch_tokens_max;	/* tokens of its biggest forward */
} zp_device_opts;

/* A backend instance of device d. NULL with e set: the device is not here
   (no GPU, CUDA not built) or failed to start. */
zp_backend *zp_device_backend_new(enum zp_device d, const zp_device_opts *o, zp_err *e);

/* Device d's memory is the host's (cpu, and the sim device): what it holds
   counts against this machine's memory. */
bool zp_device_host_memory(enum zp_device d);

/* The weight layout of device d's backend: a model that runs on d is loaded
   through it (zp_model_load). */
const zp_wlayout *zp_device_layout(enum zp_device d);

/* What computes on device d, for a log line: the cpu's kernels ("amx-bf16+
   avx512", "avx512bf16", "avx512f", "ref"), or the device's name. */
const char *zp_device_kernels(enum zp_device d);

/* The best transport device d's executors have: cpu for cpu, p2p for the
   devices. */
const char *zp_device_transport_default(enum zp_device d);

/* The transport named name ("auto": the default above; "cpu", "p2p",
   "nccl") for executors on device d.
   NULL with e set when d's executors cannot use it, saying why. For the
   end-to-end fault tests, the environment variable ZP_FAULT_GATHER_AFTER=n
   arms the returned transport's fail_after (logged as a warning). */
zp_transport *zp_device_transport_new(enum zp_device d, const char *name, zp_err *e);

#endif
