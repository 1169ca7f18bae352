/* backend.h -- the ops a forward pass runs on: one table of function pointers
   per backend (as ggml's ggml-backend-impl.h), with explicit buffers. forward.c
   holds the Qwen3-MoE schedule once and calls only these; the registry
   (device.h) makes the instances: cpu (src/cpu/backend_cpu.c, the
   AMX/AVX512/plain-C kernels), cuda and sim (src/cuda/backend_cuda.c).

   Memory. `alloc` returns backend memory (on cpu: host memory, 64-byte
   aligned, zero-filled); every pointer an op reads or writes is backend memory
   unless its comment says "host". Matrices are passed as zp_view (pointer +
   row stride); weights as zp_wmat (weights.h), in the backend's own layout
   (the model was packed through it), whose data is backend memory. Small
   schedule metadata (sequence starts, lm row lists) is host memory: a
   device backend copies what it needs.

   Batch invariance (the contract of every op): each output row is computed
   from its own input rows (and, for attention, its own sequence's keys and
   values) and reduced in one fixed order whatever the batch holds, the row's
   place in it, the thread count or the task split. The same rows alone or
   inside a bigger batch give the same bits.

   Threads. One owner thread (an executor, or the offline driver) calls every
   op of a backend instance; an op may run on the backend's own workers (cpu:
   its thread pool) and, on a device backend, may return before it completed:
   what another thread or the host reads must wait on an event or `download`.
   The cpu backend runs each op to completion before it returns. Events are
   the exception: event_record and event_wait may be called from any thread;
   and the copy queue's calls (queue_copy, queue_record, queue_after) are
   made by the one other thread that drives it.

   Return contract. Ops report failure, but a device runs them
   asynchronously, so most cannot return it: a device fault (a failed CUDA or
   cuBLAS call, a kernel fault, a library contract the sim enforces) is the
   instance's sticky error. From then on every op does nothing (download
   zero-fills its host destination: offsets read back are zeros, never
   garbage indices) until the instance is freed; `status` (non-blocking) and
   `sync` (after the queued work) report it, -1 with e "device fault: <call>:
   <why>". A caller checks status as it goes and sync before it trusts
   results (forward.c: after each layer and at the end), fails that batch,
   and builds a new instance (on cuda, freeing the faulted one resets the
   device). The cpu backend's ops cannot fail: its status and sync return 0.
   attention also fails (-1, e set) on what a caller can ask for and the
   backend cannot serve (prefix rows beyond its workspace). A broken shape is
   a bug: ZP_ASSERT, on every backend. */
#ifndef ZP_BACKEND_H
#define ZP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pooling.h"
#include "util.h"

enum zp_epi {
	ZP_EPI_STORE,	/* C[m][n] = acc */
	ZP_EPI_ADD,	/* C[m][n] += acc */
	ZP_EPI_SWIGLU,	/* w of the SWIGLU kind (weights.h): C[m][j] = silu(gate_j) *
			   up_j, for j < ncols */
};

typedef struct {
	const void *a;	/* [M, lda]: f32 for an f32 W, bf16 (uint16) for a bf16 W */
	size_t lda;	/* elements */
	int m;
	const zp_wmat *w;
	float *c;
	size_t ldc;
	enum zp_epi epi;
	int ncols;	/* SWIGLU: valid output columns */
} zp_gemm_op;

typedef struct zp_backend zp_backend;
typedef struct zp_event zp_event;
typedef struct zp_bqueue zp_bqueue;
typedef struct zp_attn_work zp_attn_work;

/* Rows of a matrix in backend memory: row r starts at data + r * ld elements
   (f32, or bf16 stored as uint16_t, as the op says). data NULL: absent (the
   bf16 copy of an activation in fp32 mode). */
typedef struct {
	void *data;
	size_t ld;
} zp_view;

/* Keys and values of one sequence's earlier positions [0, len), held outside
   the batch (a prefix cache): row p holds kv_heads x d keys (k) or values (v)
   of position p, f32, after k-norm and RoPE. */
typedef struct {
	const float *k, *v;
	size_t ld;	/* floats between rows of k and of v */
	int len;
} zp_kv_src;

/* Causal GQA attention over the batch's packed sequences: sequence s owns
   rows [seq_start[s], seq_start[s + 1]) of qkv and out; its row i is position
   plen + i, where plen is prefix[s].len (0 without a prefix), and attends to
   the prefix's positions and its own rows up to itself. */
typedef struct {
	int heads, kv_heads, d;
	int nseq;
	const int *seq_start;	/* host [nseq + 1] */
	zp_view qkv;		/* f32 [T, (heads + 2 kv_heads) d]: q, k, v heads after
				   q/k norm and RoPE */
	zp_view out;		/* f32 [T, heads d] */
	const zp_kv_src *prefix;	/* host [nseq], or NULL: no prefix */
	bool bf16;		/* the model computes in bf16: the backend may run
				   attention in bf16 (cpu: on AMX where d % 32 == 0) */
	zp_attn_work *work;	/* from attn_work_new, owned by the caller */
} zp_attn_args;

/* One row of log-prob outputs, all host memory: the row's logits give
   plp[0] = log p(next) when plp is set, cand_lp[c] = log p(cands[c]), and the
   top_k most likely tokens (ties to the lower id) with their log-probs, and
   *rank = 1 + the tokens whose logit is above next's when rank is set. */
typedef struct {
	float *plp;
	int next;
	int ncand;
	const int32_t *cands;
	float *cand_lp;
	int top_k;
	int32_t *top_ids;
	float *top_lp;
	int32_t *rank;
} zp_lp_row;


/* The memory an instance allocates from (mem_info). */
typedef struct {
	bool host;			/* the host's (cpu, sim): the sizes below are not set */
	size_t free_bytes, total_bytes;	/* the device's, now */
	int devices;			/* such devices on the machine */
} zp_mem_info;

struct zp_backend_ops {
	const char *name;
	void (*free)(zp_backend *b);
	/* m as this backend computes it: m itself (cpu: host memory is its
	   memory), or a mirror in the backend's memory that b owns and frees.
	   experts false: without the MoE layers' experts (an expert source gives
	   them). NULL with e set: out of memory. Start-time. */
	const zp_model *(*model)(zp_backend *b, const zp_model *m, bool experts, zp_err *e);

	/* ---- memory ---- */
	void *(*alloc)(zp_backend *b, size_t bytes);	/* aborts when out of memory:
							   called at start only */
	void (*mfree)(zp_backend *b, void *p);
	/* What alloc draws on (the prefix cache's size and check). Start-time. */
	void (*mem_info)(zp_backend *b, zp_mem_info *mi);
	void (*upload)(zp_backend *b, void *dst, const void *host, size_t bytes);
	void (*download)(zp_backend *b, void *host, const void *src, size_t bytes);
	/* backend to backend (another instance's memory too, on cpu) */
	void (*copy)(zp_backend *b, void *dst, const void *src, size_t bytes);
	/* rows strided copies in one call (cudaMemcpy2DAsync): row i's width
	   bytes from src + i spitch to dst + i dpitch; backend memory both
	   (the prefix cache's blocks from a forward's qkv rows, and back) */
	void (*copy2d)(zp_backend *b, void *dst, size_t dpitch, const void *src, size_t spitch,
		       size_t width, int rows);
	/* Host memory the caller allocated (offload's host store), pinned for
	   the device's copies (on: before the first; off: before it is freed;
	   cpu and sim: nothing to do). Start-time and stop-time. */
	void (*host_pin)(zp_backend *b, void *p, size_t bytes, bool on);
	/* Returns once every op queued so far has completed (or the device
	   failed): 0, or -1 with e set (e may be NULL) when the instance has a
	   device fault (the sticky error: -1 from then on). */
	int (*sync)(zp_backend *b, zp_err *e);

	/* ---- events: a count of records. event_record returns the count after
	   this record, reached once all work queued before it is done;
	   event_wait(ev, n) returns once the count is >= n. Any thread. ---- */
	zp_event *(*event_new)(zp_backend *b);
	void (*event_free)(zp_backend *b, zp_event *ev);
	uint64_t (*event_record)(zp_backend *b, zp_event *ev);
	void (*event_wait)(zp_backend *b, zp_event *ev, uint64_t n);
	/* The owner's later ops run after ev's n-th record (a device waits on
	   the device, the host goes on; cpu: the host waits). Owner thread. */
	void (*event_after)(zp_backend *b, zp_event *ev, uint64_t n);

	/* ---- a copy queue beside the owner's ops (AsyncEP's gathers), driven
	   by one other thread (the comm thread), whose calls below may run
	   while the owner calls ops: a second stream on a device (copy
	   engines), plain memcpy at once on cpu. Its copies run in order. ---- */
	zp_bqueue *(*queue_new)(zp_backend *b);	/* owner thread, start-time */
	void (*queue_free)(zp_backend *b, zp_bqueue *q);	/* owner; q idle */
	/* dst (this backend's memory) = src: this backend's memory, another
	   instance's of the same device kind (a peer copy), or host memory */
	void (*queue_copy)(zp_backend *b, zp_bqueue *q, void *dst, const void *src, size_t bytes);
	/* record ev after q's copies so far; the count after it */
	uint64_t (*queue_record)(zp_backend *b, zp_bqueue *q, zp_event *ev);
	/* q's later copies run after ev's n-th record (the owner's: a buffer
	   is rewritten only once compute is done reading it) */
	void (*queue_after)(zp_backend *b, zp_bqueue *q, zp_event *ev, uint64_t n);

	/* ---- rows (n rows; each row independent) ---- */
	/* x[i] = embedding row of host ids[i], f32 [n, H] */
	void (*embed)(zp_backend *b, const zp_model *m, const int32_t *ids, int n, zp_view x);
	/* out[i] = w * rmsnorm(x[rows ? rows[i] : i]) (f32, transformers'
	   Qwen3MoeRMSNorm: sum of squares in double, 8 lanes in a fixed order);
	   out16, when set, the same rounded to bf16. rows: host, or NULL. */
	void (*rmsnorm)(zp_backend *b, int n, int cols, zp_view x, const int *rows,
			const float *w, float eps, zp_view out, zp_view out16);
	/* y[i][0..cols) += bias */
	void (*add_bias)(zp_backend *b, int n, int cols, zp_view y, const float *bias);
	/* In place on qkv rows: rmsnorm of each q head (q_norm) and k head
	   (k_norm), then RoPE (rotate_half) at position pos[i] (host) from the
	   tables cos, sin [positions, d / 2]. */
	void (*qk_norm_rope)(zp_backend *b, int n, zp_view qkv, int heads, int kv_heads, int d,
			     const float *q_norm, const float *k_norm, float eps, const int *pos,
			     const float *cos, const float *sin);
	/* x[i] += y[i] (+ bias when set), cols columns */
	void (*residual)(zp_backend *b, int n, int cols, zp_view x, zp_view y, const float *bias);
	/* dst (bf16) = src (f32), cols columns, round to nearest even */
	void (*to_bf16)(zp_backend *b, int n, int cols, zp_view src, zp_view dst);

	/* ---- matrix products ---- */
	/* Dense: op->c = op->a . op->w^T with op's epilogue (store, add, SwiGLU).
	   a is f32 for an f32 w, bf16 for a bf16 w. */
	void (*gemm)(zp_backend *b, const zp_gemm_op *op);
	/* Grouped over experts [e0, e1): expert e's rows are a's rows
	   [offs[e - e0], offs[e - e0 + 1]) (host offs), times w[e] into the same
	   rows of c, with epilogue epi (ZP_EPI_SWIGLU: ncols valid columns; a
	   gate_up matrix of the SWIGLU kind). One parallel loop over all experts. */
	void (*expert_gemm)(zp_backend *b, const zp_wmat *w, int e0, int e1, const int *offs,
			    zp_view a, zp_view c, enum zp_epi epi, int ncols);

	/* ---- attention ---- */
	/* Workspace for up to rows_max rows (prefix positions included) in up to
	   seqs_max sequences of this shape; bf16 as zp_attn_args. Start-time. */
	zp_attn_work *(*attn_work_new)(zp_backend *b, int heads, int kv_heads, int d, int rows_max,
				       int seqs_max, bool bf16);
	void (*attn_work_free)(zp_backend *b, zp_attn_work *w);
	/* 0, or -1 with e set: the batch with its prefixes needs more rows than
	   the workspace holds. */
	int (*attention)(zp_backend *b, const zp_attn_args *a, zp_err *e);

	/* ---- MoE ---- */
	/* Per row: softmax over the E router logits (f32; logits are
	   overwritten by the probabilities), top-K (ties to the lower expert id),
	   weights renormalised when norm_topk; sel/selw [n, K] ordered by expert
	   id; gap[i] = log p(K-th chosen) - log p(best left out) (inf when K == E). */
	void (*route)(zp_backend *b, int n, int E, int K, bool norm_topk, zp_view logits,
		      int *sel, float *selw, float *gap);
	/* Histogram of sel [n, K] over E experts, exclusive scan into offs [E + 1],
	   and a stable permutation: slot_row[i] = offs[sel[i]] + (slots of that
	   expert before i). Rows keep their token order within each expert. */
	void (*dispatch)(zp_backend *b, int n, int K, int E, const int *sel, int *offs,
			 int *slot_row);
	/* row slot_row[i K + k] of dst = row i of src, for every k: rows of
	   row_bytes bytes, packed (any dtype) */
	void (*gather)(zp_backend *b, int n, int K, const int *slot_row, const void *src, void *dst,
		       size_t row_bytes);
	/* out[i] = sum over k ascending (experts ascending) of selw[i K + k] *
	   y[slot_row[i K + k]], cols columns, from zero */
	void (*combine)(zp_backend *b, int n, int K, int cols, const int *slot_row,
			const float *selw, zp_view y, zp_view out);

	/* ---- outputs ---- */
	/* For each of n rows of logits [n, V]: log-sum-exp over the vocabulary
	   (f32, 16 lanes in a fixed order), then row i's outputs (host rows[i]). */
	void (*logprobs)(zp_backend *b, int n, int V, zp_view logits, const zp_lp_row *rows);
	/* out (host [cols]) = final-normed row n - 1 of x (LAST) or the mean of
	   the n final-normed rows (MEAN, summed in double in row order); then
	   scaled to unit L2 norm when normalize. work: cols * 12 bytes. */
	void (*pool)(zp_backend *b, int n, int cols, zp_view x, const float *w, float eps,
		     enum zp_pooling mode, bool normalize, float *out, void *work);

	/* ---- failure (new ops go below: keep this table's merges clean) ---- */
	/* Non-blocking: 0, or -1 with e set (e may be NULL) when the instance
	   has a device fault, as far as the device has told it so far (a fault
	   in work still queued may show only at the next status or sync). */
	int (*status)(zp_backend *b, zp_err *e);
};

struct zp_backend {
	const struct zp_backend_ops *ops;
	void *ctx;
};

#endif
