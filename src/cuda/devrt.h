/* devrt.h -- the device runtime the CUDA backend (backend_cuda.c) is written
   over: memory, streams, events, kernel launches (kernels/zk_ops.h's
   zk_launch) and GEMMs. Two implementations: devrt_cuda.c (the CUDA runtime,
   cuBLASLt and cuBLAS; built only where nvcc and the toolkit are) and
   devrt_sim.c (always built: host memory, a stream = an in-order queue run by
   its own thread, events = counters, each kernel run by its host twin over
   (block, lane) on a thread pool). The sim is a test device: it runs the
   backend's whole host path in CI, which has no GPU.

   Threads: the backend's owner thread drives streams; event_sync may be
   called from any thread. Every copy/launch/gemm is asynchronous on its
   stream; memory a call reads must stay valid until the stream passed it. */
#ifndef ZP_DEVRT_H
#define ZP_DEVRT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"
#include "zk_ops.h"

typedef struct zp_drt zp_drt;
typedef struct zp_dstream zp_dstream;
typedef struct zp_devent zp_devent;

/* c[m][0..n) (=, or += when add) a[m][0..kp) . w[n][kp]^T; w in the device
   layout (row-major, K padded to even with zeros), a bf16 when bf16 else f32,
   f32 accumulation. */
typedef struct {
	bool bf16, add;
	const void *a;
	size_t lda;
	int m;
	const void *w;
	int n, kp;
	float *c;
	size_t ldc;
} zp_dgemm;

struct zp_drt_ops {
	const char *name;
	void (*close)(zp_drt *r);
	void *(*alloc)(zp_drt *r, size_t bytes);	/* device memory, zeroed; NULL when out */
	void (*free)(zp_drt *r, void *p);
	void *(*host_alloc)(zp_drt *r, size_t bytes);	/* pinned host memory */
	void (*host_free)(zp_drt *r, void *p);
	zp_dstream *(*stream_new)(zp_drt *r);
	void (*stream_free)(zp_drt *r, zp_dstream *s);
	/* any direction (host memory here is pinned or the caller syncs before
	   reusing it) */
	void (*copy)(zp_drt *r, zp_dstream *s, void *dst, const void *src, size_t bytes);
	void (*stream_sync)(zp_drt *r, zp_dstream *s);
	zp_devent *(*event_new)(zp_drt *r);
	void (*event_free)(zp_drt *r, zp_devent *ev);
	void (*event_record)(zp_drt *r, zp_devent *ev, zp_dstream *s);
	/* the host waits for the event's last record (any thread) */
	void (*event_sync)(zp_drt *r, zp_devent *ev);
	/* s waits (on the device) for the event's last record */
	void (*stream_wait)(zp_drt *r, zp_dstream *s, zp_devent *ev);
	void (*launch)(zp_drt *r, zp_dstream *s, const zk_launch *l);
	/* dense: one fixed algorithm per (n, kp, dtype) class, chosen at its first
	   use for a batch of m_max rows: no split-K, no atomics */
	void (*gemm)(zp_drt *r, zp_dstream *s, const zp_dgemm *g);
	/* n independent GEMMs with host-side shapes, as one grouped call */
	void (*gemm_grouped)(zp_drt *r, zp_dstream *s, const zp_dgemm *g, int n);
	/* the cudaStream_t behind s (NULL on the sim): for kernels/v1.h */
	void *(*native_stream)(zp_drt *r, zp_dstream *s);
	/* the calling thread uses this device from here on (a thread other than
	   the owner, before its first call: cudaSetDevice; sim: nothing) */
	void (*bind)(zp_drt *r);
	/* the device's name and memory, for the log */
	void (*describe)(zp_drt *r, char *buf, size_t len);
};

struct zp_drt {
	const struct zp_drt_ops *ops;
	void *ctx;
	bool sim;
};

/* Every failed device call of either implementation ends here: a CUDA/cuBLAS
   status that is not success, or a GEMM the libraries' contract refuses
   (blas_contract.h). dev: "cuda" or "sim"; call: the library function; why:
   its error string or the contract's reason. Today it logs and panics; a
   sticky per-device error (the op reports it, the batch fails) is a change
   here only: callers do not rely on it not returning. */
void zp_drt_fail(const char *dev, const char *call, const char *why, const char *file, int line);

zp_drt *zp_drt_sim_new(int threads);
/* s (of sim runtime r) is a backend's copy queue: with the environment
   ZP_SIM_COPY_DELAY_US=n each of its copies lands n us late, as a slow copy
   engine would, so a read not ordered after it (a missing device-side wait)
   reads stale bytes (tests). */
void zp_drt_sim_copy_queue(zp_drt *r, zp_dstream *s);
/* NULL with e set: CUDA not built in, no GPU, or the device failed to start */
zp_drt *zp_drt_cuda_new(int device, int m_max, zp_err *e);
/* CUDA devices visible to this process: 0 when none or CUDA is not built in */
int zp_drt_cuda_count(void);

#endif
