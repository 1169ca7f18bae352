/* test_devrt_contract.c -- the GEMM library contract (src/cuda/blas_contract.h)
   and the sim device enforcing it: the calls devrt_cuda.c makes pass, what
   cuBLAS / cuBLASLt refuse is refused, with the old bf16 grouped expert call
   (cublasGemmGroupedBatchedEx, 16BF x 16BF -> 32F) first among them; a refused
   call on the sim is the runtime's sticky error (zp_drt_fail, devrt.h) with
   the reason, and nothing runs after it. No GPU needed. */
#include <math.h>
#include <string.h>

#include "blas_contract.h"
#include "check.h"

#define N 24
#define KP 40
#define M 5

static uint16_t w16[3][N * KP], a16[3 * M * KP];
static float w32[3][N * KP], a32[3 * M * KP], out[3 * M * N];

static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void fill(void)
{
	for (int e = 0; e < 3; e++)
		for (int i = 0; i < N * KP; i++) {
			w32[e][i] = check_frand(-1, 1);
			w16[e][i] = to_bf16(w32[e][i]);
		}
	for (int i = 0; i < 3 * M * KP; i++) {
		a32[i] = check_frand(-1, 1);
		a16[i] = to_bf16(a32[i]);
	}
}

/* expert e: rows [e M, e M + M) of a times w[e]^T into the same rows of out */
static void ops(zp_dgemm *g, bool bf16, size_t lda)
{
	for (int e = 0; e < 3; e++)
		g[e] = (zp_dgemm){ .bf16 = bf16, .a = bf16 ? (const void *)(a16 + e * M * KP)
							  : (const void *)(a32 + e * M * KP),
				   .lda = lda, .m = M, .w = bf16 ? (const void *)w16[e] : (const void *)w32[e],
				   .n = N, .kp = KP, .c = out + e * M * N, .ldc = N };
}

static void check_contract(void)
{
	char why[256];
	zp_dgemm g[3];
	ops(g, true, KP);
	zp_blas_call old = zp_blas_plan(&g[0], ZP_BLAS_GROUPED);
	const char *r = zp_blas_refusal(&old, why, sizeof why);
	CHECK(r && strstr(r, "16BF x 16BF -> 32F"), "the old bf16 grouped call passes: %s",
	      r ? r : "(accepted)");
	zp_blas_call lt = zp_blas_plan(&g[0], ZP_BLAS_LT_MATMUL);
	CHECK(!zp_blas_refusal(&lt, why, sizeof why), "bf16 cublasLtMatmul refused: %s", why);
	ops(g, false, KP);
	zp_blas_call lt32 = zp_blas_plan(&g[0], ZP_BLAS_LT_MATMUL);
	CHECK(lt32.ct == ZP_BC_32F_PEDANTIC && !zp_blas_refusal(&lt32, why, sizeof why),
	      "f32 cublasLtMatmul: %s", why);
	zp_blas_call gr32 = zp_blas_plan(&g[0], ZP_BLAS_GROUPED);
	CHECK(!zp_blas_refusal(&gr32, why, sizeof why), "f32 grouped refused: %s", why);
	zp_blas_call bad = lt32;
	bad.ct = ZP_BC_32F_FAST_TF32;
	CHECK(zp_blas_refusal(&bad, why, sizeof why), "cublasLtMatmul with TF32 is not ours");
	bad = lt32;
	bad.ldb = KP - 1;
	CHECK(zp_blas_refusal(&bad, why, sizeof why) && strstr(why, "ldb"), "ldb < k passes");
	bad = lt32;
	bad.ldc = N - 2;
	CHECK(zp_blas_refusal(&bad, why, sizeof why), "ldc < m passes");
	bad = lt32;
	bad.b = (const char *)bad.b + 2;
	CHECK(zp_blas_refusal(&bad, why, sizeof why) && strstr(why, "aligned"),
	      "an f32 operand at 2 bytes passes");
	bad = lt32;
	bad.n = 0;
	CHECK(zp_blas_refusal(&bad, why, sizeof why), "n = 0 passes");
	bad = gr32;
	bad.lda = (int64_t)INT_MAX + 1;
	CHECK(zp_blas_refusal(&bad, why, sizeof why), "grouped lda past int passes");
}

/* run the sim's grouped GEMM on the three ops; returns max |err| vs double */
static double sim_run(bool bf16, size_t lda)
{
	zp_drt *r = zp_drt_sim_new(2);
	zp_dstream *s = r->ops->stream_new(r);
	zp_dgemm g[3];
	ops(g, bf16, lda);
	memset(out, 0, sizeof out);
	r->ops->gemm_grouped(r, s, g, 3);
	r->ops->stream_sync(r, s);
	double worst = 0;
	for (int e = 0; e < 3; e++)
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++) {
				double ref = 0;
				for (int k = 0; k < KP; k++) {
					int ai = (e * M + i) * KP + k;
					ref += bf16 ? (double)from_bf16(a16[ai]) * from_bf16(w16[e][j * KP + k])
						    : (double)a32[ai] * w32[e][j * KP + k];
				}
				double d = fabs(ref - out[(e * M + i) * N + j]);
				worst = d > worst ? d : worst;
			}
	r->ops->stream_free(r, s);
	r->ops->close(r);
	return worst;
}

/* with ZP_GROUPED_GEMM=mode: the sim refuses the call as the library would
   (devrt.h's sticky error): the error says why (want), nothing ran (the
   output's guard bytes stay), and the runtime does nothing more (a good call
   after it does not run either) */
static void expect_refused(const char *mode, bool bf16, size_t lda, const char *want)
{
	zp_err e = { "" };
	zp_dgemm g[3];
	unsigned char guard[sizeof out];
	setenv("ZP_GROUPED_GEMM", mode, 1);
	zp_drt *r = zp_drt_sim_new(2);
	zp_dstream *s = r->ops->stream_new(r);
	ops(g, bf16, lda);
	memset(out, 0x5a, sizeof out);
	memcpy(guard, out, sizeof out);
	CHECK(zp_drt_error(r, NULL) == 0 && !zp_drt_failed(r), "a fresh runtime has no error");
	r->ops->gemm_grouped(r, s, g, 3);
	r->ops->stream_sync(r, s);
	CHECK(zp_drt_failed(r) && zp_drt_error(r, &e) == -1, "sim ran a refused call (%s, bf16=%d, "
	      "lda=%zu)", mode, bf16, lda);
	CHECK(strstr(e.msg, "device fault: ") && strstr(e.msg, want),
	      "sim's refusal lacks \"%s\": %s", want, e.msg);
	ops(g, bf16, KP); /* a call the contract takes: the runtime is failed */
	r->ops->gemm(r, s, &g[0]);
	r->ops->stream_sync(r, s);
	CHECK(!memcmp(out, guard, sizeof out), "nothing ran after the refusal (%s)", mode);
	r->ops->stream_free(r, s);
	r->ops->close(r);
	unsetenv("ZP_GROUPED_GEMM");
}

int main(void)
{
	fill();
	check_contract();
	unsetenv("ZP_GROUPED_GEMM");
	double e = sim_run(true, KP);
	CHECK(e < 1e-3, "bf16 experts on the sim (per-expert cuBLASLt plan): err %g", e);
	setenv("ZP_GROUPED_GEMM", "cublas", 1);
	e = sim_run(false, KP);
	CHECK(e < 1e-3, "f32 experts on the sim (grouped plan): err %g", e);
	unsetenv("ZP_GROUPED_GEMM");
	expect_refused("cublas", true, KP, "16BF x 16BF -> 32F is not in its table");
	expect_refused("lt", false, KP - 2, "ldb=");
	return check_exit("test_devrt_contract");
}
