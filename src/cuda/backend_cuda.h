/* backend_cuda.h -- the CUDA backend: backend.h's ops for one device, its host
   code written once over devrt.h, so it runs on a GPU (devrt_cuda.c) or on the
   sim device (devrt_sim.c: every kernel by its host twin; a test device, in
   every build). Weights live on the device in row-major layout (zp_wmat.data
   = [n][kp], K padded to even with zeros; a SwiGLU gate_up matrix has its gate
   rows [0, n/2) then its up rows, not gemm.h's interleave by 16); a MoE
   layer's experts are one contiguous array [E][n][kp] (the v1 kernels'
   contract, kernels/v1.h). zp_backend_cuda_model builds that mirror of a
   loaded model. One owner thread per instance (backend.h); the event ops from
   any thread. */
#ifndef ZP_BACKEND_CUDA_H
#define ZP_BACKEND_CUDA_H

#include "backend.h"

enum zp_device { ZP_DEV_CPU, ZP_DEV_CUDA, ZP_DEV_SIM };

/* "cpu", "cuda", "sim" -> the device; -1 for anything else */
int zp_device_parse(const char *s);
const char *zp_device_name(enum zp_device d);

typedef struct {
	enum zp_device dev;	/* ZP_DEV_CUDA or ZP_DEV_SIM */
	int ordinal;		/* CUDA device number */
	int threads;		/* sim: twin threads */
	int rows_max;		/* rows of the biggest GEMM (tokens x top-K) */
	size_t tmp_floats;	/* the SwiGLU scratch: rows x 2F of the widest */
	bool expert_v1, attn_v1;	/* the v1 kernels (kernels/v1.h) */
} zp_cuda_opts;

/* NULL with e set: no GPU, CUDA not built, or a v1 kernel asked for and not
   built. */
zp_backend *zp_backend_cuda_new(const zp_cuda_opts *o, zp_err *e);

/* A packed host matrix (gemm.h) into b's weight layout; swiglu: its rows are
   interleaved by 16 (ZP_EPI_SWIGLU). dst->data: b's memory (mfree it). */
void zp_backend_cuda_wmat(zp_backend *b, zp_wmat *dst, const zp_wmat *host, bool swiglu);

/* The device mirror of m (its config, its weights in b's memory, uploaded
   through pinned staging buffers on the copy stream, progress in the log);
   owned by b, freed with it. experts false (or m's absent): the mirror has
   none (an AsyncEP source gives them). NULL with e set when out of device
   memory. */
const zp_model *zp_backend_cuda_model(zp_backend *b, const zp_model *m, bool experts, zp_err *e);

/* In place, on the host: every MoE layer's experts of m from gemm.h's packed
   layout to the device layout, rows padded to the packed panels so each
   matrix keeps its bytes and offsets (AsyncEP's shards and gathers copy them
   as they are; sim executors read them in place). m then serves sim
   executors only. */
void zp_backend_cuda_relayout_experts(zp_model *m);

/* The backend of a device other than cpu sized for forwards of c's model of
   up to batch_tokens_max tokens; environment ZP_EXPERT_GEMM=v1 and
   ZP_ATTENTION=v1 switch to the v1 kernels (default v0) where their contract
   (kernels/v1.h: bf16, head_dim 64 or 128, K % 8, N % 16) holds; elsewhere v0
   runs, said once in the log. ZP_GROUPED_GEMM=cublas: the experts through
   cublasGemmGroupedBatchedEx (f32 only; see devrt_cuda.c). */
zp_backend *zp_backend_device_new(enum zp_device dev, int ordinal, int threads,
				  const zp_config *c, int batch_tokens_max, zp_err *e);

#endif
