/* backend_cuda.h -- the CUDA backend: backend.h's ops for one device, its host
   code written once over devrt.h, so it runs on a GPU (devrt_cuda.c) or on the
   sim device (devrt_sim.c: every kernel by its host twin; a test device, in
   every build). Its weight layout (zp_cuda_wlayout) is row-major: zp_wmat.data
   = [n][kp], K padded to even with zeros; a SwiGLU gate_up matrix has its gate
   rows [0, n/2) then its up rows, each half padded to 16 rows; an FP8 matrix
   (weights.h ZP_WS_FP8) holds e4m3 codes [n][kp] (kp: K up to 16), its
   per-row block scales and cuBLASLt's BLK128x128 tensor (backend_cuda.c),
   computed W8A8 or W8A16 (zp_fp8_compute). A model loaded
   through that layout (its host copy) is uploaded byte for byte by
   zp_backend_cuda_model (matrices that are a checkpoint's file bytes read
   from the file by GPUDirect Storage where it is: gds_load.h); in the mirror a MoE layer's experts are one
   contiguous array per matrix kind [E][n][kp] (the v1 kernels' contract,
   kernels/v1.h). One owner thread per instance (backend.h); the event ops from
   any thread. */
#ifndef ZP_BACKEND_CUDA_H
#define ZP_BACKEND_CUDA_H

#include "backend.h"
#include "device.h"	/* enum zp_device */

typedef struct {
	enum zp_device dev;	/* ZP_DEV_CUDA or ZP_DEV_SIM */
	/* how FP8 weights compute (weights.h): W8A8 as vLLM and SGLang run FP8
	   checkpoints (activations quantised per token per 128 columns on the
	   device, cuBLASLt's block-scaled FP8 matmul), or W8A16 (the weights
	   widened to the compute type: the exactness check) */
	enum zp_fp8_compute fp8c;
	int ordinal;		/* CUDA device number */
	int threads;		/* sim: twin threads */
	int rows_max;		/* rows of the biggest GEMM (tokens x top-K) */
	size_t tmp_floats;	/* the SwiGLU scratch: rows x 2F of the widest */
	bool expert_v1, attn_v1;	/* the v1 kernels (kernels/v1.h) */
	/* the model's shapes, for the FP8 scratch (allocated at the first FP8
	   matrix: the mirror's, or an expert GEMM's): cfg's hidden, heads,
	   kv_heads, head_dim, ffn, moe_ffn, experts */
	int hidden, qkv_rows, qd, ffn, moe_ffn, experts;
} zp_cuda_opts;

/* NULL with e set: no GPU, CUDA not built, or a v1 kernel asked for and not
   built. */
zp_backend *zp_backend_cuda_new(const zp_cuda_opts *o, zp_err *e);

/* The GPU b runs on (its CUDA ordinal), and the CUDA stream of b's copy
   queue q (NULL on the sim): for the nccl transport. */
int zp_backend_cuda_ordinal(const zp_backend *b);
void *zp_backend_cuda_queue_stream(zp_backend *b, zp_bqueue *q);

/* The device's weight layout (weights.h), the same on the sim. */
extern const zp_wlayout zp_cuda_wlayout;

/* The device mirror of m (its config, its weights in b's memory, uploaded
   through pinned staging buffers on the copy stream, progress in the log);
   owned by b, freed with it. experts false (or m's absent): the mirror has
   none (an AsyncEP source gives them). NULL with e set when m was packed
   through another layout, or out of device memory. */
const zp_model *zp_backend_cuda_model(zp_backend *b, const zp_model *m, bool experts, zp_err *e);

/* The backend of a device other than cpu sized for forwards of c's model of
   up to batch_tokens_max tokens; environment ZP_EXPERT_GEMM=v1 and
   ZP_ATTENTION=v1 switch to the v1 kernels (default v0) where their contract
   (kernels/v1.h: bf16, head_dim 64 or 128, K % 8, N % 16) holds; elsewhere v0
   runs, said once in the log. ZP_GROUPED_GEMM=cublas: the experts through
   cublasGemmGroupedBatchedEx (f32 only; see devrt_cuda.c). ZP_FP8_COMPUTE=
   w8a8 (default) | w8a16: how an FP8 model's GEMMs run (anything else: NULL
   with e set). */
zp_backend *zp_backend_device_new(enum zp_device dev, int ordinal, int threads,
				  const zp_config *c, int batch_tokens_max, zp_err *e);

#endif
