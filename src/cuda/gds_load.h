/* gds_load.h -- GPUDirect loading of the CUDA backend's model mirror
   (backend_cuda.c): the device matrices whose bytes are checkpoint tensors'
   bytes exactly as the file holds them are read from the file straight into
   device memory (devrt.h's file_read: cuFile on a GPU, pread on the sim),
   several tensors in flight; everything else goes through the pinned staging
   buffers. The cuda layout keeps a matrix row-major [n][kp] with zero padding
   rows, so a bf16 checkpoint tensor [rows, k] with k even, in a bf16 model, is
   its bytes at one row of the matrix: q, k, v at their rows of wqkv; gate at
   row 0 and up at row h (the padded half) of a SwiGLU matrix; the rest whole.
   An FP8 checkpoint's F8_E4M3 tensor with k % 16 == 0 is likewise its codes'
   rows (the per-row scales that follow them are the layout's own: staged).
   Not served: an f32 model, f16/f32 checkpoint tensors, odd k, the router
   (always f32), the embedding (f32 rows), random weights (no file), weights
   quantised at load (--dtype fp8: not the file's bytes).
   Owned by the loading thread; its workers (a pool) run the reads. */
#ifndef ZP_GDS_LOAD_H
#define ZP_GDS_LOAD_H

#include <stdbool.h>

#include "devrt.h"
#include "model.h"

typedef struct zp_gds zp_gds;

/* A reader for m's checkpoint files on runtime r with `workers` reads in
   flight; NULL with why set when none can be had (ZP_GDS=off, random
   weights, an f32 model, the runtime's file_open refused a file). */
zp_gds *zp_gds_new(zp_drt *r, const zp_model *m, int workers, char *why, size_t len);

/* Device matrix w (already allocated, in the cuda layout, zeroed) gets its
   rows from the named tensors, tensor i at row rows[i]; host is the same
   matrix's host copy (the fallback). true: queued (read by zp_gds_run);
   false: a source does not qualify, the caller stages it. */
bool zp_gds_add(zp_gds *g, const zp_wmat *w, const void *host, const char *const *names,
		const int *rows, int nsrc);

/* Read every queued matrix. 0; or -1 with why set when a read failed: every
   queued matrix is then copied by stage(ctx, dst, host, bytes) instead, so
   the mirror is whole either way. Logs the path, bytes and GB/s. */
typedef void (*zp_gds_stage_fn)(void *ctx, void *dst, const void *host, size_t bytes);
int zp_gds_run(zp_gds *g, zp_gds_stage_fn stage, void *ctx, char *why, size_t len);

/* Bytes queued so far (0: nothing to read) */
size_t zp_gds_bytes(const zp_gds *g);

void zp_gds_free(zp_gds *g);

#endif
