/* asyncep.h -- experts placed across N executors (DESIGN.md section 3).
   parallel = asyncep: each executor holds 1/N of every MoE layer's experts
   (by expert index) plus the whole first MoE layer, and two full-layer
   buffers; a comm thread gathers the next MoE layer's peers' shards into a
   free buffer while the executor computes, and the executor waits on one
   signal at the layer's entry (the exposed wait, measured per layer).
   parallel = replicate: every executor reads the full expert set (the
   baseline; on CPU executors the copies are one shared set in memory).
   parallel = dpep: synchronous DP+EP (forward.h's zp_dpep): each executor
   owns 1/N of the experts and every MoE layer exchanges routed rows between
   all executors, which therefore run each forward together (the baseline
   AsyncEP is built to beat; it reads the model's expert blocks in place).
   The comm thread copies through a transport (transport.h) on each
   executor's copy queue. Each executor's shards, buffers and slots are its
   backend's memory (device memory, or host memory first touched on its
   NUMA node).
   Threads: built and freed by the owner thread; each executor calls its own
   source's hooks (through its forward pass); the comm thread runs copies. */
#ifndef ZP_ASYNCEP_H
#define ZP_ASYNCEP_H

#include <stdatomic.h>
#include <stddef.h>

#include "device.h"
#include "forward.h"
#include "model.h"
#include "place.h"
#include "transport.h"
#include "util.h"

#define ZP_PLACE_BUFFERS 2	/* asyncep: full-layer buffers per executor (one computes,
				   one fills) */
#define ZP_PLACE_WINDOW_MAX 16	/* offload: the most own-part slots per executor */

typedef struct zp_place zp_place;

/* Place m's experts for nexec executors on device dev. Under asyncep each
   executor's forward attaches its source (forward.h), which allocates its
   shards and buffers in the executor's backend memory and uploads them from
   the model's blocks; zp_place_commit then drops those blocks.
   offload_window > 0 (asyncep only, 2..16): offload mode instead: the
   model's blocks stay as the host store, each executor keeps
   only the first MoE layer and prefetches its own part of the next layers
   into that many slots; one executor streams whole layers. NULL with e set.
   Takes ownership of t. */
zp_place *zp_place_new(zp_model *m, enum zp_device dev, int nexec, enum zp_parallel par,
		       int offload_window, zp_transport *t, zp_err *e);
/* Every executor's forward has attached: the transport sets up over their
   ports (nccl: its communicators; executors sharing a GPU are refused
   there). 0, or -1 with e set. */
int zp_place_ready(zp_place *ep, zp_err *e);
/* Every executor's forward has attached (its blocks are in its memory, and
   calibration has read the model's): asyncep then drops the model's own
   expert blocks (zp_model_drop_experts) unless offloading (the host store)
   or keep_host (the host copy a lost executor's experts are re-placed
   from: zp_place_assign). */
void zp_place_commit(zp_place *ep, bool keep_host);
/* Re-place the experts over the executors alive[x] (the owner thread, while
   no forward runs and the comm thread holds no request): asyncep's ranges
   (each alive executor's forward must then be rebuilt: its attach uploads
   its new shards from the host copy), dpep's members and ranges (dpep.h).
   0, or -1 with e set when the experts cannot be re-placed (no executor
   alive; asyncep without the host copy, or over a collective transport):
   the placement is as it was. */
int zp_place_assign(zp_place *ep, const bool *alive, zp_err *e);
/* Stops the comm thread (requests already pushed are served first). Before
   the executors' forwards are freed: they detach their memory. */
void zp_place_quiesce(zp_place *ep);
/* Quiesces, then frees all (every forward detached). */
void zp_place_free(zp_place *ep);

/* The expert source executor x's forward must use; NULL for replicate and dpep. */
const zp_expert_src *zp_place_source(zp_place *ep, int x);
/* The executors' forwards run in lockstep (asyncep over a collective
   transport): they start together, idle ones with empty forwards. */
bool zp_place_lockstep(const zp_place *ep);
/* The dpep group every executor's forward joins; NULL unless dpep. */
zp_dpep *zp_place_group(zp_place *ep);
/* The mode in effect (one executor, or a model without MoE layers, reads its
   experts in place: replicate). */
enum zp_parallel zp_place_parallel(const zp_place *ep);

/* Bytes executor x holds: dense weights (replicated) + its expert shards + the
   first MoE layer whole + two full-layer buffers (asyncep; offloading, the
   window's slots of its own part instead of shards of every layer), dense +
   its shards (dpep), or dense + all experts (replicate). */
size_t zp_place_resident_bytes(const zp_place *ep, int x);
/* Executor x's range of expert indices [lo, hi). */
void zp_place_range(const zp_place *ep, int x, int *lo, int *hi);

/* Per executor and layer, summed over forwards: layer time (from one layer's
   start to the next's) and the part spent waiting for its gather. */
typedef struct {
	double layer_s, wait_s;
	long forwards;
} zp_place_layer_stats;
/* Copy executor x's [layers] stats (call when x is idle). */
void zp_place_stats(zp_place *ep, int x, zp_place_layer_stats *out);

/* Tests: the n-th copy from now on this placement's transport fails. */
void zp_place_inject_fault(zp_place *ep, int n);

/* Calibration (DESIGN.md section 4): the achieved FLOP rate of the expert
   matrix products on a backend of the executors' device (`threads` threads,
   the backend's own expert GEMM), the time of one layer's gather on this
   transport, and the saturation threshold T = t_gather x F x gamma (FLOPs per
   layer), also in tokens per layer. Once the executors are attached and
   before zp_place_commit (it uploads the model's first MoE layer to time it);
   the executors idle. 0, or -1 with e set. */
typedef struct {
	double flops_per_s, gather_s, gamma, threshold_flops, threshold_tokens;
} zp_place_calib;
int zp_place_calibrate(zp_place *ep, int threads, zp_place_calib *out, zp_err *e);

#endif
