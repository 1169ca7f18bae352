/* v1.h -- the contract between the CUDA backend (src/cuda/backend_cuda.c, which
   calls these when its switch expert_gemm / attention is v1) and the v1 kernels
   (the kernels/ files named v1_*.cu: the mma.sync expert GEMM and the FlashAttention-2-style
   attention). Plain C: the backend's host code includes it; the .cu files
   implement it with extern "C" linkage. Every pointer is device memory unless
   its comment says host; every call only enqueues on `stream` (no host sync, no
   allocation: what scratch a kernel needs it takes from its arguments).

   Return contract: 0 when the launch was enqueued, else the cudaError_t of the
   failed launch (the backend reports it and aborts). Shapes outside what a
   kernel supports are a bug of the caller: the kernel may assert. */
#ifndef ZP_KV1_H
#define ZP_KV1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct CUstream_st;	/* cudaStream_t is struct CUstream_st * */

/* ---- experts ---- */

enum zp_kv1_epi {
	ZP_KV1_EPI_STORE = 0,	/* c[r][n] = acc, n < N */
	ZP_KV1_EPI_SWIGLU = 1,	/* c[r][j] = silu(acc[j]) * acc[F + j], j < F = N / 2,
				   silu(g) = g / (1 + expf(-g)), in f32 */
};

/* Grouped over experts [e0, e1): for every expert e, rows [offs[e - e0],
   offs[e - e0 + 1]) of a times w_e^T into the same rows of c, f32
   accumulation, epilogue epi. Rows of one expert are contiguous (the backend's
   dispatch gathered them); their count is only known on the device.
     w      bf16, the layer's experts [e0, e1) as one contiguous row-major array
            [e1 - e0][N][K]: expert e's matrix at w + (size_t)(e - e0) * N * K.
            gate_up: N = 2F, rows [0, F) = gate_proj, [F, 2F) = up_proj (HF
            order, not interleaved); down: N = H, K = F.
     offs   int [e1 - e0 + 1], device-side sizes: the exclusive scan of the
            per-expert row counts (offs[0] = 0), written by the dispatch kernel.
     rows_max  host: an upper bound of offs[e1 - e0] (n tokens x top-K), for the
            grid size; rows past offs[e1 - e0] are neither read nor written.
     a      bf16 [rows][lda] (elements), K valid columns.
     c      f32 [rows][ldc] (elements), N (STORE) or N / 2 (SWIGLU) columns.
   K % 8 == 0, N % 16 == 0, lda % 8 == 0 (16-byte rows). Results must not
   depend on rows_max or on other experts' rows (batch invariance): one fixed
   reduction order over k per output element. */
int zp_kv1_expert_gemm(struct CUstream_st *stream, const uint16_t *w, int e0, int e1,
		       const int *offs, int rows_max, const uint16_t *a, size_t lda, float *c,
		       size_t ldc, enum zp_kv1_epi epi, int N, int K);

/* ---- attention ---- */

/* One sequence's cached prefix: same layout as zp_kv_src of backend.h (the
   backend copies its array to the device as is): rows [0, len) of k and v
   hold kv_heads x d floats of position p, after k-norm and RoPE. */
typedef struct {
	const float *k, *v;
	size_t ld;	/* floats between rows */
	int len;
} zp_kv1_src;

/* Causal GQA attention over packed sequences, the semantics of backend.h's
   zp_attn_args: sequence s owns rows [seq_start[s], seq_start[s + 1]) of qkv
   and out; its row i is position prefix[s].len + i and attends to the
   prefix's positions then its own rows 0..i. Query head h reads kv head
   h / (heads / kv_heads). Scale 1 / sqrt(d). Each query row's keys are
   visited in one fixed order whatever the batch holds (batch invariance).
     qkv        f32 [rows][ld_qkv]: q heads, then k heads, then v heads
                ((heads + 2 kv_heads) d columns), after q/k norm and RoPE.
     out        f32 [rows][ld_out], heads d columns.
     seq_start  int [nseq + 1] (device copy), seq_start[0] = 0.
     prefix     zp_kv1_src [nseq] (device copy), or NULL: no prefix.
     rows       host: seq_start[nseq]; max_seq_rows host: the longest
                sequence's rows (both for the grid size).
     bf16       the model computes in bf16: the kernel may round q, k, v to
                bf16 for the tensor cores (v0 stays f32: the bound is v1's).
   d in {64, 128}. */
int zp_kv1_attention(struct CUstream_st *stream, int heads, int kv_heads, int d, int nseq,
		     const int *seq_start, int rows, int max_seq_rows, const float *qkv,
		     size_t ld_qkv, float *out, size_t ld_out, const zp_kv1_src *prefix,
		     bool bf16);

#endif
