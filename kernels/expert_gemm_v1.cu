/* expert_gemm_v1.cu -- v1 grouped expert GEMM (v1.h: zp_kv1_expert_gemm): bf16
   tensor cores through mma.sync m16n8k16 (inline PTX), ldmatrix, cp.async into
   two shared-memory stages. Each block first builds the tile list from the
   device-side offsets (a warp scan of per-expert tile counts into shared
   memory: no host round trip), then computes one 128-row tile of one expert
   (never two experts' rows) by one column tile. SwiGLU is fused in the gate_up
   epilogue (expert_gemm_v1.h pairs gate and up rows in each warp). No split-K,
   no atomics: each output element sums its k steps in ascending order. The
   host twin is expert_gemm_v1_host.c. Launched on the caller's stream only. */
#include <cuda_runtime.h>

#include "expert_gemm_v1.h"

#define EV1_THREADS ZP_EV1_THREADS
#define EV1_LDS ZP_EV1_LDS

static __device__ __forceinline__ uint32_t ev1_smem(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared; bytes = 0 fills zeros (rows past the expert, k past K) */
static __device__ __forceinline__ void ev1_cp16(uint32_t dst, const void *src, int bytes)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

static __device__ __forceinline__ void ev1_ldm4(uint32_t addr, uint32_t &r0, uint32_t &r1,
						uint32_t &r2, uint32_t &r3)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}

static __device__ __forceinline__ void ev1_mma(float *d, const uint32_t *a, uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* tp[i] = tiles of experts before i, by warp 0 (32 experts per step). */
static __device__ void ev1_build_tiles(const int *offs, int ne, int *tp)
{
	if (threadIdx.x >= 32)
		return;
	int lane = threadIdx.x, carry = 0;
	if (lane == 0)
		tp[0] = 0;
	for (int base = 0; base < ne; base += 32) {
		int i = base + lane;
		int v = i < ne ? zp_ev1_mtiles(offs[i + 1] - offs[i]) : 0;
		for (int o = 1; o < 32; o <<= 1) {
			int u = __shfl_up_sync(0xffffffffu, v, o);
			if (lane >= o)
				v += u;
		}
		if (i < ne)
			tp[i + 1] = carry + v;
		carry += __shfl_sync(0xffffffffu, v, 31);
	}
}

struct ev1_args {
	const uint16_t *w, *a;
	const int *offs;
	size_t lda, ldc;
	float *c;
	int ne, N, K, epi;
};

__global__ void __launch_bounds__(EV1_THREADS, 2) ev1_kernel(ev1_args p)
{
	__shared__ __align__(128) uint16_t sa[2][ZP_EV1_BM * EV1_LDS];
	__shared__ __align__(128) uint16_t sb[2][ZP_EV1_BN * EV1_LDS];
	__shared__ int tp[ZP_EV1_EXPERTS_MAX + 1];

	ev1_build_tiles(p.offs, p.ne, tp);
	__syncthreads();
	int ti = blockIdx.y, nt = blockIdx.x;
	if (ti >= tp[p.ne])
		return;	/* past the tile list (the grid is sized from rows_max) */
	int e = zp_ev1_tile_expert(tp, p.ne, ti);
	int m0 = p.offs[e] + (ti - tp[e]) * ZP_EV1_BM;
	int mend = p.offs[e + 1];
	const uint16_t *we = p.w + (size_t)e * p.N * p.K;

	/* This thread's two 16-byte chunks of each stage's A and B tiles. */
	int tid = threadIdx.x;
	const uint16_t *asrc[ZP_EV1_CP], *bsrc[ZP_EV1_CP];
	bool aok[ZP_EV1_CP], bok[ZP_EV1_CP];
	uint32_t adst[ZP_EV1_CP], bdst[ZP_EV1_CP];
	for (int i = 0; i < ZP_EV1_CP; i++) {
		int r = zp_ev1_cp_row(tid, i), ck = zp_ev1_cp_k(tid, i);
		int ar = zp_ev1_a_row(m0, mend, r);
		aok[i] = ar >= 0;
		asrc[i] = p.a + (size_t)(aok[i] ? ar : m0) * p.lda + ck;
		int wr = zp_ev1_wrow(p.epi, nt, r, p.N);
		bok[i] = wr >= 0;
		bsrc[i] = we + (size_t)(bok[i] ? wr : 0) * p.K + ck;
		adst[i] = ev1_smem(&sa[0][zp_ev1_cp_smem(tid, i)]);
		bdst[i] = ev1_smem(&sb[0][zp_ev1_cp_smem(tid, i)]);
	}
	const uint32_t astage = sizeof(sa[0]), bstage = sizeof(sb[0]);
	int nk = (p.K + ZP_EV1_BK - 1) / ZP_EV1_BK;

	auto load = [&](int kt, int s) {
		int k0 = kt * ZP_EV1_BK;
		for (int i = 0; i < ZP_EV1_CP; i++) {
			int kk = k0 + zp_ev1_cp_k(tid, i);
			bool kin = kk < p.K;
			ev1_cp16(adst[i] + s * astage, asrc[i] + (kin ? k0 : 0), aok[i] && kin ? 16 : 0);
			ev1_cp16(bdst[i] + s * bstage, bsrc[i] + (kin ? k0 : 0), bok[i] && kin ? 16 : 0);
		}
		asm volatile("cp.async.commit_group;\n" ::);
	};

	int warp = tid / 32, lane = tid % 32;
	int wm = warp % 2, wn = warp / 2;	/* warp tile: rows wm*64 + [0,64), cols wn*32 + [0,32) */
	float acc[4][4][4];
	for (int mi = 0; mi < 4; mi++)
		for (int ni = 0; ni < 4; ni++)
			for (int q = 0; q < 4; q++)
				acc[mi][ni][q] = 0.0f;

	uint32_t aoff = ev1_smem(&sa[0][zp_ev1_a_lane(wm, lane)]);
	uint32_t boff = ev1_smem(&sb[0][zp_ev1_b_lane(wn, lane)]);

	load(0, 0);
	for (int kt = 0; kt < nk; kt++) {
		int s = kt & 1;
		if (kt + 1 < nk) {
			load(kt + 1, s ^ 1);
			asm volatile("cp.async.wait_group %0;\n" ::"n"(ZP_EV1_WAIT_AHEAD));
		} else {
			asm volatile("cp.async.wait_group 0;\n" ::);
		}
		__syncthreads();
#pragma unroll
		for (int ks = 0; ks < ZP_EV1_BK; ks += 16) {
			uint32_t af[4][4], bf[4][2];
#pragma unroll
			for (int mi = 0; mi < 4; mi++)
				ev1_ldm4(aoff + s * astage + zp_ev1_a_step(mi, ks) * 2, af[mi][0], af[mi][1],
					 af[mi][2], af[mi][3]);
#pragma unroll
			for (int pr = 0; pr < 2; pr++)
				ev1_ldm4(boff + s * bstage + zp_ev1_b_step(pr, ks) * 2, bf[2 * pr][0],
					 bf[2 * pr][1], bf[2 * pr + 1][0], bf[2 * pr + 1][1]);
#pragma unroll
			for (int mi = 0; mi < 4; mi++)
#pragma unroll
				for (int ni = 0; ni < 4; ni++)
					ev1_mma(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
		}
		__syncthreads();	/* stage s is refilled by the next iteration's load */
	}

	/* Epilogue: acc[mi][ni][2 h + q] is tile row zp_ev1_c_row(wm, mi, lane, h),
	   column wn*32 + zp_ev1_c_col(ni, lane) + q. */
#pragma unroll
	for (int mi = 0; mi < 4; mi++)
#pragma unroll
		for (int h = 0; h < 2; h++) {
			int row = m0 + zp_ev1_c_row(wm, mi, lane, h);
			if (row >= mend)
				continue;
			float *cr = p.c + (size_t)row * p.ldc;
			if (p.epi == ZP_KV1_EPI_SWIGLU) {
#pragma unroll
				for (int ni = 0; ni < 2; ni++) {
					int col = zp_ev1_swiglu_col(nt, wn, zp_ev1_c_col(ni, lane));
					if (col < p.N / 2)
						*(float2 *)(cr + col) = make_float2(
							zp_ev1_silu_mul(acc[mi][ni][2 * h], acc[mi][ni + 2][2 * h]),
							zp_ev1_silu_mul(acc[mi][ni][2 * h + 1],
									acc[mi][ni + 2][2 * h + 1]));
				}
			} else {
#pragma unroll
				for (int ni = 0; ni < 4; ni++) {
					int col = nt * ZP_EV1_BN + wn * 32 + zp_ev1_c_col(ni, lane);
					if (col < p.N)
						*(float2 *)(cr + col) =
							make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
				}
			}
		}
}

extern "C" int zp_kv1_expert_gemm(struct CUstream_st *stream, const uint16_t *w, int e0, int e1,
				  const int *offs, int rows_max, const uint16_t *a, size_t lda,
				  float *c, size_t ldc, enum zp_kv1_epi epi, int N, int K)
{
	int ne = e1 - e0;
	if (ne <= 0 || ne > ZP_EV1_EXPERTS_MAX || N % 16 || K % 8 || lda % 8 || rows_max < 0 ||
	    (ldc % 2))
		return (int)cudaErrorInvalidValue;	/* v1.h: outside the contract */
	if (rows_max == 0)
		return 0;
	/* every expert may end in a partial tile */
	long mt = (long)(rows_max + ZP_EV1_BM - 1) / ZP_EV1_BM + ne;
	if (mt > 65535)
		return (int)cudaErrorInvalidValue;
	ev1_args p = { w, a, offs, lda, ldc, c, ne, N, K, (int)epi };
	dim3 grid((unsigned)zp_ev1_ntiles((int)epi, N), (unsigned)mt);
	ev1_kernel<<<grid, EV1_THREADS, 0, stream>>>(p);
	return (int)cudaGetLastError();
}
