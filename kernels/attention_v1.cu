/* attention_v1.cu -- v1 attention (v1.h: zp_kv1_attention), FlashAttention-2
   style: a block is 64 query rows of one sequence and one q head, 4 warps of
   16 rows; Q stays in registers as mma A fragments; each key tile (64
   positions: the cached prefix, then the sequence's own rows) is read as f32,
   rounded to bf16 into shared memory, S = Q K^T and O += P V run on mma.sync
   m16n8k16 (ldmatrix, .trans for V), with the online softmax between them in
   f32. Every block walks its own sequence's keys from position 0 in the same
   order whatever the batch holds (batch invariant). Its math and host twin:
   attention_v1.h, attention_v1_host.c. Launched on the caller's stream only. */
#include <cuda_runtime.h>

#include "attention_v1.h"

#define AV1_THREADS ZP_AV1_THREADS

struct av1_args {
	int heads, kv_heads;
	const int *seq_start;
	const float *qkv;
	size_t ld_qkv, ld_out;
	float *out;
	const zp_kv1_src *prefix;
};

static __device__ __forceinline__ void av1_ldm4(uint32_t addr, uint32_t *r)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr));
}

static __device__ __forceinline__ void av1_ldm4t(uint32_t addr, uint32_t *r)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr));
}

static __device__ __forceinline__ void av1_mma(float *d, const uint32_t *a, uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Key tile j (keys and values of head kvh) into ks, vs as bf16 [BKV][D + 8]. */
template <int D>
static __device__ void av1_load_tile(const av1_args &p, int r0, int len, const zp_kv1_src *pre,
				     int kvh, int j, uint16_t *ks, uint16_t *vs)
{
	for (int idx = threadIdx.x; idx < ZP_AV1_BKV * D / 4; idx += AV1_THREADS) {
		int c = zp_av1_ld_key(idx, D), x = zp_av1_ld_col(idx, D);
		int kp = j * ZP_AV1_BKV + c;
		const float *kr = zp_av1_kv_row(p.qkv, p.ld_qkv, p.heads, p.kv_heads, D, r0, len, pre,
						kvh, kp, 0);
		const float *vr = zp_av1_kv_row(p.qkv, p.ld_qkv, p.heads, p.kv_heads, D, r0, len, pre,
						kvh, kp, 1);
		float4 k4 = kr ? *(const float4 *)(kr + x) : make_float4(0, 0, 0, 0);
		float4 v4 = vr ? *(const float4 *)(vr + x) : make_float4(0, 0, 0, 0);
		*(uint2 *)(ks + zp_av1_soff(c, x, D)) =
			make_uint2(zp_av1_pack(k4.x, k4.y), zp_av1_pack(k4.z, k4.w));
		*(uint2 *)(vs + zp_av1_soff(c, x, D)) =
			make_uint2(zp_av1_pack(v4.x, v4.y), zp_av1_pack(v4.z, v4.w));
	}
}

template <int D>
__global__ void __launch_bounds__(AV1_THREADS) av1_kernel(av1_args p)
{
	__shared__ __align__(128) uint16_t ks[ZP_AV1_BKV * ZP_AV1_LDS(D)];
	__shared__ __align__(128) uint16_t vs[ZP_AV1_BKV * ZP_AV1_LDS(D)];
	/* the last query tiles walk the most keys: launched first, they do not
	   trail the grid */
	int qt = gridDim.x - 1 - blockIdx.x, s = blockIdx.y, h = blockIdx.z;
	int r0 = p.seq_start[s], len = p.seq_start[s + 1] - r0;
	int i0 = qt * ZP_AV1_BQ;
	if (i0 >= len)
		return;
	const zp_kv1_src *pre = p.prefix ? &p.prefix[s] : NULL;
	int plen = pre ? pre->len : 0;
	int kvh = h / (p.heads / p.kv_heads);
	int iend = min(len, i0 + ZP_AV1_BQ);
	int tiles = zp_av1_key_tiles(plen, iend);
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

	/* Q as A fragments (attention_v1.h: zp_av1_q_row, zp_av1_q_col) */
	uint32_t qf[D / 16][4];
#pragma unroll
	for (int kc = 0; kc < D / 16; kc++)
#pragma unroll
		for (int q = 0; q < 4; q++) {
			int row = i0 + zp_av1_q_row(warp, lane, q), col = zp_av1_q_col(kc, lane, q);
			float2 v = make_float2(0, 0);
			if (row < len)
				v = *(const float2 *)(p.qkv + (size_t)(r0 + row) * p.ld_qkv +
						      (size_t)h * D + col);
			qf[kc][q] = zp_av1_pack(v.x, v.y);
		}

	float o[D / 8][4];
#pragma unroll
	for (int dt = 0; dt < D / 8; dt++)
		o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
	float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
	float sl2 = zp_av1_scale_log2(D);
	uint32_t kbase = (uint32_t)__cvta_generic_to_shared(ks + zp_av1_k_lane(lane, D));
	uint32_t vbase = (uint32_t)__cvta_generic_to_shared(vs + zp_av1_v_lane(lane, D));

	for (int j = 0; j < tiles; j++) {
		av1_load_tile<D>(p, r0, len, pre, kvh, j, ks, vs);
		__syncthreads();
		float sc[ZP_AV1_BKV / 8][4];
#pragma unroll
		for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++)
			sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
		for (int kc = 0; kc < D / 16; kc++)
#pragma unroll
			for (int pr = 0; pr < ZP_AV1_BKV / 16; pr++) {
				uint32_t b[4];
				av1_ldm4(kbase + zp_av1_k_step(pr, kc, D) * 2, b);
				av1_mma(sc[2 * pr], qf[kc], b[0], b[1]);
				av1_mma(sc[2 * pr + 1], qf[kc], b[2], b[3]);
			}
		/* scale and mask; element q of tile nt is row zp_av1_c_row(.., q >> 1),
		   key zp_av1_c_col(nt, lane) + (q & 1) */
		float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
		for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++)
#pragma unroll
			for (int q = 0; q < 4; q++) {
				int kp = j * ZP_AV1_BKV + zp_av1_c_col(nt, lane) + (q & 1);
				int qpos = plen + i0 + zp_av1_c_row(warp, lane, q >> 1);
				sc[nt][q] = kp <= qpos ? sc[nt][q] * sl2 : -INFINITY;
				mx[q >> 1] = fmaxf(mx[q >> 1], sc[nt][q]);
			}
		float corr[2], rs[2] = { 0.0f, 0.0f };
#pragma unroll
		for (int r = 0; r < 2; r++) {
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			float mn = zp_av1_max_ref(m[r], mx[r]);
			corr[r] = exp2f(m[r] - mn);
			m[r] = mn;
		}
#pragma unroll
		for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++) {
#pragma unroll
			for (int q = 0; q < 4; q++)
				sc[nt][q] = zp_av1_round_bf16(exp2f(sc[nt][q] - m[q >> 1]));
			rs[0] += sc[nt][0] + sc[nt][1];
			rs[1] += sc[nt][2] + sc[nt][3];
		}
#pragma unroll
		for (int r = 0; r < 2; r++)
			l[r] = l[r] * corr[r] + rs[r];
#pragma unroll
		for (int dt = 0; dt < D / 8; dt++) {
			o[dt][0] *= corr[0];
			o[dt][1] *= corr[0];
			o[dt][2] *= corr[1];
			o[dt][3] *= corr[1];
		}
		/* P (C fragments of S) as A fragments of P V, 16 keys at a time */
#pragma unroll
		for (int kc = 0; kc < ZP_AV1_BKV / 16; kc++) {
			uint32_t pa[4];
			zp_av1_p_frag(sc[2 * kc], sc[2 * kc + 1], pa);
#pragma unroll
			for (int dq = 0; dq < D / 16; dq++) {
				uint32_t b[4];
				av1_ldm4t(vbase + zp_av1_v_step(kc, dq, D) * 2, b);
				av1_mma(o[2 * dq], pa, b[0], b[1]);
				av1_mma(o[2 * dq + 1], pa, b[2], b[3]);
			}
		}
		__syncthreads();	/* ks, vs are refilled by the next tile */
	}

#pragma unroll
	for (int r = 0; r < 2; r++) {
		float lb = l[r] + __shfl_xor_sync(0xffffffffu, l[r], 1);
		l[r] = lb + __shfl_xor_sync(0xffffffffu, lb, 2);	/* (l0 + l1) + (l2 + l3) */
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		int row = i0 + zp_av1_c_row(warp, lane, r);
		if (row >= len)
			continue;
		/* zp_av1_c_col(dt, lane) = zp_av1_c_col(0, lane) + 8 dt: one address */
		float *orow = p.out + (size_t)(r0 + row) * p.ld_out + (size_t)h * D +
			      zp_av1_c_col(0, lane);
#pragma unroll
		for (int dt = 0; dt < D / 8; dt++)
			*(float2 *)(orow + (zp_av1_c_col(dt, lane) - zp_av1_c_col(0, lane))) =
				make_float2(o[dt][2 * r] / l[r], o[dt][2 * r + 1] / l[r]);
	}
}

extern "C" int zp_kv1_attention(struct CUstream_st *stream, int heads, int kv_heads, int d, int nseq,
				const int *seq_start, int rows, int max_seq_rows, const float *qkv,
				size_t ld_qkv, float *out, size_t ld_out, const zp_kv1_src *prefix,
				bool bf16)
{
	/* v1 rounds q, k, v to bf16: an f32 model stays on v0 (the caller's switch) */
	if (!bf16 || kv_heads < 1 || heads % kv_heads || ld_qkv % 4 || ld_out % 2 || nseq < 0 ||
	    nseq > 65535 || heads > 65535)
		return (int)cudaErrorInvalidValue;
	if (nseq == 0 || rows == 0)
		return 0;
	av1_args p = { heads, kv_heads, seq_start, qkv, ld_qkv, ld_out, out, prefix };
	dim3 grid((unsigned)((max_seq_rows + ZP_AV1_BQ - 1) / ZP_AV1_BQ), (unsigned)nseq,
		  (unsigned)heads);
	if (d == 128)
		av1_kernel<128><<<grid, AV1_THREADS, 0, stream>>>(p);
	else if (d == 64)
		av1_kernel<64><<<grid, AV1_THREADS, 0, stream>>>(p);
	else
		return (int)cudaErrorInvalidValue;
	return (int)cudaGetLastError();
}
