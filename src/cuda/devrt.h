/* devrt.h -- the device runtime the CUDA backend (backend_cuda.c) is written
   over: memory, streams, events, kernel launches (kernels/zk_ops.h's
   zk_launch), GEMMs (bf16, f32, block-scaled FP8) and file reads into
   device memory (GPUDirect Storage). Two implementations: devrt_cuda.c (the CUDA runtime,
   cuBLASLt and cuBLAS; built only where nvcc and the toolkit are) and
   devrt_sim.c (always built: host memory, a stream = an in-order queue run by
   its own thread, events = counters, each kernel run by its host twin over
   (block, lane) on a thread pool). The sim is a test device: it runs the
   backend's whole host path in CI, which has no GPU.

   Threads: the backend's owner thread drives streams; event_sync may be
   called from any thread. Every copy/launch/gemm is asynchronous on its
   stream; memory a call reads must stay valid until the stream passed it.

   Failure: a sticky error, as CUDA's own asynchronous errors. The first
   failed call (zp_drt_fail) is recorded on its zp_drt and logged once; from
   then on every call does nothing more (alloc returns NULL, a queued copy,
   launch or GEMM does not run; the free calls still release) until the
   runtime is closed. zp_drt_error reports it; a poisoned device is reset
   (the reset op) before a new runtime starts on it. */
#ifndef ZP_DEVRT_H
#define ZP_DEVRT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "zk_ops.h"

typedef struct zp_drt zp_drt;
typedef struct zp_dstream zp_dstream;
typedef struct zp_devent zp_devent;
typedef struct zp_dfile zp_dfile;

/* GPUDirect Storage reads (file_read): file offset, size and the device
   address are multiples of this, O_DIRECT's rule (the logical block size of
   the file systems GDS serves); cuFile then DMAs without its own bounce. */
#define ZP_DFILE_ALIGN 4096

/* c[m][0..n) (=, or += when add) a[m][0..kp) . w[n][kp]^T; w in the device
   layout (row-major, K padded to even with zeros), a bf16 when bf16 else f32,
   f32 accumulation.
   fp8 (W8A8, the block-scaled matmul of blas_contract.h): a and w are e4m3
   codes (lda, kp in codes, multiples of 16; both zero past the real K, so
   the 128-column groups are those of K), sa the activations' scales
   MN-major [ceil(kp/128)][m] (VEC128), sw the weight's BLK128x128 scales
   [ceil(kp/128)][ceil(n/128)]; c f32. */
typedef struct {
	bool bf16, add;
	bool fp8;
	const float *sa, *sw;
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
	/* pin (on) or unpin host memory the caller allocated, for every device
	   (cudaHostRegisterPortable): copies from it are DMA, asynchronous */
	void (*host_register)(zp_drt *r, void *p, size_t bytes, bool on);
	zp_dstream *(*stream_new)(zp_drt *r);
	void (*stream_free)(zp_drt *r, zp_dstream *s);
	/* any direction (host memory here is pinned or the caller syncs before
	   reusing it) */
	void (*copy)(zp_drt *r, zp_dstream *s, void *dst, const void *src, size_t bytes);
	/* rows copies of width bytes, src and dst rows spitch and dpitch apart
	   (cudaMemcpy2DAsync): one call, one DMA descriptor list */
	void (*copy2d)(zp_drt *r, zp_dstream *s, void *dst, size_t dpitch, const void *src,
		       size_t spitch, size_t width, size_t rows);
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
	/* GPUDirect Storage. file_open: a checkpoint file for reads straight
	   into device memory (cuda: cuFile, libcufile loaded at run time; the
	   sim: pread); NULL with why set where that is not available (no
	   libcufile, the driver or the file system refused). Not a device fault:
	   the caller stages instead. */
	zp_dfile *(*file_open)(zp_drt *r, const char *path, char *why, size_t len);
	/* bytes at off of f into device memory dst, synchronous on the calling
	   thread (bound to the device), several threads at once; off, bytes and
	   dst multiples of ZP_DFILE_ALIGN. The bytes read (fewer only where the
	   file ends), or -1 with why set (an unaligned argument, an I/O error):
	   not a device fault. */
	int64_t (*file_read)(zp_drt *r, zp_dfile *f, void *dst, uint64_t off, size_t bytes,
			     char *why, size_t len);
	void (*file_close)(zp_drt *r, zp_dfile *f);
	/* a device buffer file_read targets again and again (cuda:
	   cuFileBufRegister / Deregister; sim: nothing) */
	void (*file_buf)(zp_drt *r, void *p, size_t bytes, bool on);
	/* the device's name and memory, for the log */
	void (*describe)(zp_drt *r, char *buf, size_t len);
	/* the device's memory free and in all, and the devices of its kind; host
	   true where its memory is the host's (sim, unless ZP_SIM_MEMORY_BYTES
	   gives it a size: then what it allocated since start is taken from
	   that, frees not counted). 0, or -1 (a failed device) */
	int (*mem_info)(zp_drt *r, size_t *free_bytes, size_t *total_bytes, int *devices,
			bool *host);
	/* non-blocking: an asynchronous error the device holds becomes the
	   sticky error (cuda: cudaGetLastError; the sim records its own at once) */
	void (*check)(zp_drt *r);
	/* close, for a runtime with a sticky error: r's handles go, then its
	   device is reset so a new runtime gets a clean context (cuda:
	   cudaDeviceReset: every other runtime on that GPU loses its memory
	   with it; the sim: close, nothing to reset) */
	void (*reset)(zp_drt *r);
};

/* The sticky error: state 0 none, 1 being recorded, 2 recorded (call, why,
   at readable). Written once by whichever thread failed first. */
typedef struct {
	_Atomic int state;
	char call[64], why[256], at[128];
} zp_drt_fault;

struct zp_drt {
	const struct zp_drt_ops *ops;
	void *ctx;
	bool sim;
	bool fp8_blk;	/* the block-scaled FP8 matmul runs here (cuBLASLt: sm_90 only;
			   the sim plays an sm_90) */
	zp_drt_fault fault;
};

/* Every failed device call of either implementation ends here: a CUDA/cuBLAS
   status that is not success, or a GEMM the libraries' contract refuses
   (blas_contract.h). call: the library function; why: its error string or
   the contract's reason. Records r's sticky error (the first one only; it is
   logged) and returns: the caller returns without doing more. Any thread. */
void zp_drt_fail(zp_drt *r, const char *call, const char *why, const char *file, int line);
/* r has a sticky error: its calls do nothing (cheap; any thread) */
bool zp_drt_failed(zp_drt *r);
/* 0, or -1 with e set to "device fault: <call>: <why>" (e may be NULL) */
int zp_drt_error(zp_drt *r, zp_err *e);
/* NULL when a file_read of these arguments keeps O_DIRECT's rule
   (ZP_DFILE_ALIGN), else which one breaks it: both runtimes refuse it */
const char *zp_dfile_misaligned(const void *dst, uint64_t off, size_t bytes);

zp_drt *zp_drt_sim_new(int threads);
/* The same for executor ordinal (with ZP_SIM_DEVICES: on sim device ordinal
   mod n, sharing its memory; devrt_sim.c). */
zp_drt *zp_drt_sim_new_on(int threads, int ordinal);
/* s (of sim runtime r) is a backend's copy queue: with the environment
   ZP_SIM_COPY_DELAY_US=n each of its copies lands n us late, as a slow copy
   engine would, so a read not ordered after it (a missing device-side wait)
   reads stale bytes (tests). */
void zp_drt_sim_copy_queue(zp_drt *r, zp_dstream *s);
/* Tests: the n-th sim kernel launch or GEMM from now, of any sim runtime of
   the process, fails as a device error would (once); 0 disarms. The
   environment's ZP_FAULT_DEVICE_AFTER=n arms it when the first sim runtime
   starts (logged as a warning). Any thread. */
void zp_drt_sim_fail_after(long n);
/* NULL with e set: CUDA not built in, no GPU, or the device failed to start */
zp_drt *zp_drt_cuda_new(int device, int m_max, zp_err *e);
/* CUDA devices visible to this process: 0 when none or CUDA is not built in */
int zp_drt_cuda_count(void);

#endif
