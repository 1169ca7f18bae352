/* test_fp8_kernels.c -- the CUDA backend's FP8 kernels (kernels/zk_fp8.h)
   through the sim device's launches and GEMM, against references written
   here: the e4m3 encoder (the twin of cvt.rn.satfinite.e4m3x2.f32) against
   the nearest of the 253 finite codes with ties to even, on the midpoints
   between every pair of neighbours, either side of them, saturation, NaN
   and random values, and against model/'s zp_f32_to_fp8; the decoder on all
   256 codes; act_quant (per token per 128 columns) on odd shapes with guard
   bytes around its outputs; fp8_widen; the block-scaled FP8 GEMM twin
   against double sums; blas_contract.h's FP8 rules refusing what cuBLASLt
   refuses (a refused call is the sim's sticky error). No GPU needed; on a
   GPU, tools/gpu_check.sh runs the W8A8 golden on the device instead. */
#include <math.h>
#include <string.h>

#include "blas_contract.h"
#include "check.h"
#include "devrt.h"
#include "weights.h"
#include "zk_fp8.h"

#define GUARD 64
#define GUARD_BYTE 0xa5

/* the finite e4m3fn values, codes 0..0x7e */
static float val[127];

/* nearest finite code to |x| <= 448, ties to the even code */
static uint8_t ref_enc(float x)
{
	if (isnan(x))
		return (uint8_t)(signbit(x) ? 0xff : 0x7f);
	uint8_t sign = signbit(x) ? 0x80 : 0;
	double a = fmin(fabs((double)x), 448.0);
	int best = 0;
	for (int c = 1; c < 127; c++) {
		double d = fabs(a - val[c]), db = fabs(a - val[best]);
		if (d < db || (d == db && !(c & 1)))
			best = c;
	}
	return (uint8_t)(sign | best);
}

static void check_codec(void)
{
	for (int c = 0; c < 256; c++) {
		float d = zk_e4m3_dec((uint8_t)c), r = zp_fp8_to_f32((uint8_t)c);
		CHECK((isnan(d) && isnan(r)) || (d == r && signbit(d) == signbit(r)),
		      "decode 0x%02x: %g, model/ says %g", c, d, r);
		if (c < 127)
			val[c] = d;
	}
	int bad = 0, n = 0;
	for (int c = 0; c + 1 < 127; c++) { /* the midpoint, and one f32 ulp either side */
		float mid = (val[c] + val[c + 1]) / 2; /* exact: 5 bits of significand */
		float xs[3] = { nextafterf(mid, 0), mid, nextafterf(mid, 1000) };
		for (int i = 0; i < 3; i++)
			for (int sg = 0; sg < 2; sg++, n++) {
				float x = sg ? -xs[i] : xs[i];
				uint8_t got = zk_e4m3_enc(x), want = ref_enc(x);
				if (got != want && bad++ < 8)
					CHECK(0, "encode %a: 0x%02x, want 0x%02x", x, got, want);
			}
	}
	static const float sat[] = { 448.0f, 449.0f, 463.99f, 464.0f, 480.0f, 1e9f, INFINITY };
	for (size_t i = 0; i < sizeof sat / sizeof *sat; i++, n += 2)
		CHECK(zk_e4m3_enc(sat[i]) == 0x7e && zk_e4m3_enc(-sat[i]) == 0xfe,
		      "%g: not saturated to +-448 (0x%02x)", sat[i], zk_e4m3_enc(sat[i]));
	CHECK(zk_e4m3_enc(NAN) == 0x7f && (zk_e4m3_enc(-NAN) & 0x7f) == 0x7f, "NaN not NaN");
	CHECK(zk_e4m3_enc(1e-30f) == 0 && zk_e4m3_enc(-1e-30f) == 0x80, "tiny values: not +-0");
	for (int i = 0; i < 200000; i++, n++) { /* random magnitudes over e4m3's range */
		float x = ldexpf(check_frand(0.5f, 1.0f), (int)check_frand(-14, 10)) *
			  (check_frand(-1, 1) < 0 ? -1.0f : 1.0f);
		uint8_t got = zk_e4m3_enc(x), want = ref_enc(x);
		if (got != want && bad++ < 8)
			CHECK(0, "encode %a: 0x%02x, want 0x%02x", x, got, want);
		if (fabsf(x) <= 448.0f && zp_f32_to_fp8(x) != got && bad++ < 8)
			CHECK(0, "encode %a: 0x%02x, model/'s zp_f32_to_fp8 0x%02x", x, got,
			      zp_f32_to_fp8(x));
	}
	CHECK(zk_e4m3x2(1.0f, -2.0f) == (uint16_t)(0x38 << 8 | 0xc0), "e4m3x2 packs a high, b low");
	printf("e4m3 codec: %d values, %d wrong\n", n, bad);
}

static void *dalloc_guarded(zp_drt *r, size_t bytes)
{
	char *p = r->ops->alloc(r, bytes + 2 * GUARD);
	memset(p, GUARD_BYTE, bytes + 2 * GUARD);
	return p + GUARD;
}

static bool guards_ok(const void *p, size_t bytes)
{
	const unsigned char *b = (const unsigned char *)p - GUARD;
	for (size_t i = 0; i < GUARD; i++)
		if (b[i] != GUARD_BYTE || b[GUARD + bytes + i] != GUARD_BYTE)
			return false;
	return true;
}

static void run(zp_drt *r, zp_dstream *s, zk_launch *l)
{
	r->ops->launch(r, s, l);
	r->ops->stream_sync(r, s);
	CHECK(!zp_drt_failed(r), "launch kind %d failed", l->kind);
}

/* rows [m][k] of f32 or bf16 at lda (a little past k), their codes and scales */
static void check_act_quant(zp_drt *r, zp_dstream *s, int m, int k, bool bf16)
{
	int kq = ZP_ALIGN_UP(k, ZK_FP8_KALIGN), g = zk_actq_groups(k), lda = k + 3;
	size_t es = bf16 ? 2 : 4;
	char *a = r->ops->alloc(r, (size_t)m * lda * es);
	float *x = zp_xmalloc((size_t)m * k * sizeof *x);
	for (int i = 0; i < m; i++)
		for (int c = 0; c < k; c++) {
			/* magnitudes spread over 2^-12 .. 2^6 within a row */
			float v = ldexpf(check_frand(-1, 1), (int)check_frand(-12, 6));
			if (bf16) {
				uint16_t h = zk_f32_to_bf16(v);
				((uint16_t *)a)[(size_t)i * lda + c] = h;
				v = zk_bf16_to_f32(h);
			} else {
				((float *)a)[(size_t)i * lda + c] = v;
			}
			x[(size_t)i * k + c] = v;
		}
	if (m > 1 && k > 130) /* an all-zero group: scale 1, codes 0 */
		for (int c = 128; c < ZP_MIN(k, 256); c++)
			x[c] = 0, bf16 ? (void)(((uint16_t *)a)[c] = 0) : (void)(((float *)a)[c] = 0);
	uint8_t *q = dalloc_guarded(r, (size_t)m * kq);
	float *sc = dalloc_guarded(r, (size_t)g * m * 4);
	zk_launch l = { .kind = ZK_ACT_QUANT, .blocks = m * g };
	l.u.actq = (zk_actq){ m, k, kq, a, (size_t)lda, bf16, q, sc };
	run(r, s, &l);
	int bad = 0;
	double worst = 0;
	for (int i = 0; i < m; i++)
		for (int gi = 0; gi < g; gi++) {
			float amax = 0;
			for (int c = gi * 128; c < ZP_MIN(k, gi * 128 + 128); c++)
				amax = fmaxf(amax, fabsf(x[(size_t)i * k + c]));
			float want_s = amax > 0 ? amax / 448.0f : 1.0f, got_s = sc[(size_t)gi * m + i];
			if (got_s != want_s && bad++ < 5)
				CHECK(0, "m=%d k=%d row %d group %d: scale %g, want %g", m, k, i, gi, got_s,
				      want_s);
			for (int c = gi * 128; c < ZP_MIN(kq, gi * 128 + 128); c++) {
				float v = c < k ? x[(size_t)i * k + c] : 0;
				uint8_t want = c < k ? zp_f32_to_fp8(v / want_s) : 0, got = q[(size_t)i * kq + c];
				if (got != want && bad++ < 5)
					CHECK(0, "m=%d k=%d [%d][%d]: code 0x%02x, want 0x%02x (x=%g)", m, k, i,
					      c, got, want, v);
				/* half an e4m3 step of the group's largest: the bound W8A8's
				   tolerance (test_golden) is built on */
				double err = fabs(zk_e4m3_dec(got) * (double)got_s - v);
				worst = fmax(worst, amax > 0 ? err / amax : err);
			}
		}
	CHECK(worst <= 1.0 / 16 + 1e-6, "m=%d k=%d: dequantised error %.3g of the amax > 2^-4", m, k,
	      worst);
	CHECK(guards_ok(q, (size_t)m * kq) && guards_ok(sc, (size_t)g * m * 4),
	      "m=%d k=%d: act_quant wrote past its outputs", m, k);
	r->ops->free(r, a);
	r->ops->free(r, (char *)q - GUARD);
	r->ops->free(r, (char *)sc - GUARD);
	free(x);
}

static void check_widen(zp_drt *r, zp_dstream *s, int rows, int k, bool bf16)
{
	int kq = ZP_ALIGN_UP(k, ZK_FP8_KALIGN), kp = ZP_ALIGN_UP(k, 2), nkb = (k + 127) / 128;
	uint8_t *w = r->ops->alloc(r, (size_t)rows * kq);
	float *sc = r->ops->alloc(r, (size_t)rows * nkb * 4);
	for (int i = 0; i < rows * kq; i++) {
		uint8_t c = (uint8_t)(check_frand(0, 256));
		w[i] = (c & 0x7f) == 0x7f ? 0 : c;
	}
	for (int i = 0; i < rows * nkb; i++)
		sc[i] = ldexpf(check_frand(0.5f, 1), (int)check_frand(-10, 3));
	size_t es = bf16 ? 2 : 4;
	char *dst = dalloc_guarded(r, (size_t)rows * kp * es);
	zk_launch l = { .kind = ZK_FP8_WIDEN, .blocks = rows };
	l.u.fp8w = (zk_fp8w){ rows, k, kq, kp, w, sc, dst, bf16 };
	run(r, s, &l);
	int bad = 0;
	for (int i = 0; i < rows; i++)
		for (int c = 0; c < kp; c++) {
			float v = c < k ? zp_fp8_to_f32(w[(size_t)i * kq + c]) * sc[(size_t)i * nkb + c / 128]
				       : 0.0f;
			float got = bf16 ? zk_bf16_to_f32(((uint16_t *)dst)[(size_t)i * kp + c])
					 : ((float *)dst)[(size_t)i * kp + c];
			float want = bf16 ? zk_bf16_to_f32(zk_f32_to_bf16(v)) : v;
			if (got != want && bad++ < 5)
				CHECK(0, "widen %dx%d [%d][%d]: %g, want %g", rows, k, i, c, got, want);
		}
	CHECK(guards_ok(dst, (size_t)rows * kp * es), "widen wrote past its output");
	r->ops->free(r, w);
	r->ops->free(r, sc);
	r->ops->free(r, (char *)dst - GUARD);
}

/* the block-scaled GEMM (sim twin) against double sums of the dequantised
   operands: each block's sum is of exact products, so the twin is within
   f32 rounding of the sum of |terms| */
static void check_gemm(zp_drt *r, zp_dstream *s, int m, int n, int k)
{
	int kq = ZP_ALIGN_UP(k, 16), nkb = (kq + 127) / 128, nrb = (n + 127) / 128;
	uint8_t *a = r->ops->alloc(r, (size_t)m * kq), *w = r->ops->alloc(r, (size_t)n * kq);
	float *sa = r->ops->alloc(r, (size_t)nkb * m * 4), *sw = r->ops->alloc(r, (size_t)nkb * nrb * 4);
	float *c = r->ops->alloc(r, (size_t)m * n * 4);
	for (int i = 0; i < m * kq; i++)
		a[i] = i % kq < k ? zp_f32_to_fp8(check_frand(-448, 448)) : 0;
	for (int i = 0; i < n * kq; i++)
		w[i] = i % kq < k ? zp_f32_to_fp8(check_frand(-448, 448)) : 0;
	for (int i = 0; i < nkb * m; i++)
		sa[i] = check_frand(0.001f, 0.01f);
	for (int i = 0; i < nkb * nrb; i++)
		sw[i] = check_frand(0.0001f, 0.001f);
	zp_dgemm g = { .fp8 = true, .a = a, .lda = (size_t)kq, .m = m, .w = w, .n = n, .kp = kq,
		       .c = c, .ldc = (size_t)n, .sa = sa, .sw = sw };
	r->ops->gemm(r, s, &g);
	r->ops->stream_sync(r, s);
	CHECK(!zp_drt_failed(r), "fp8 gemm %dx%dx%d refused", m, n, k);
	int bad = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double sum = 0, mag = 0;
			for (int x = 0; x < k; x++) {
				double t = (double)zp_fp8_to_f32(a[(size_t)i * kq + x]) *
					   zp_fp8_to_f32(w[(size_t)j * kq + x]) * sa[(size_t)(x / 128) * m + i] *
					   sw[(size_t)(x / 128) * nrb + j / 128];
				sum += t;
				mag += fabs(t);
			}
			double d = fabs(c[(size_t)i * n + j] - sum);
			if ((d > 4e-7 * mag + 1e-30 || isnan(d)) && bad++ < 5)
				CHECK(0, "fp8 gemm %dx%dx%d [%d][%d]: %g, want %g", m, n, k, i, j,
				      c[(size_t)i * n + j], sum);
		}
	r->ops->free(r, a);
	r->ops->free(r, w);
	r->ops->free(r, sa);
	r->ops->free(r, sw);
	r->ops->free(r, c);
}

/* what cuBLASLt refuses for FP8, the contract refuses, with its reason */
static void check_contract(void)
{
	static _Alignas(64) uint8_t a[64 * 32], w[64 * 32];
	static _Alignas(64) float sa[64], sw[64], c[64 * 64];
	char why[256];
	zp_dgemm g = { .fp8 = true, .a = a, .lda = 32, .m = 8, .w = w, .n = 16, .kp = 32, .c = c,
		       .ldc = 16, .sa = sa, .sw = sw };
	zp_blas_call ok = zp_blas_plan(&g, ZP_BLAS_LT_MATMUL), bad;
	CHECK(!zp_blas_refusal(&ok, why, sizeof why), "a good FP8 call refused: %s", why);
	CHECK(ok.ta == ZP_BT_8F_E4M3 && ok.tc == ZP_BT_32F && ok.trans_a && !ok.trans_b &&
		      ok.sa_mode == ZP_BS_BLK128x128_32F && ok.sb_mode == ZP_BS_VEC128_32F &&
		      ok.sa == sw && ok.sb == sa, "the FP8 plan is not TN, weight BLK x activation VEC");
	struct {
		const char *what, *reason;
		void (*f)(zp_blas_call *);
	} cases[] = {
		{ "NN", "TN", NULL }, { "k % 16", "16-byte", NULL }, { "no scale", "scale", NULL },
		{ "grouped", "Grouped", NULL }, { "bf16 C", "32F", NULL }, { "ldc % 4", "C rows", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		bad = ok;
		switch (i) {
		case 0: bad.trans_a = false; break;
		case 1: bad.k = 40, bad.lda = 40; break;
		case 2: bad.sa = NULL; break;
		case 3: bad.lib = ZP_BLAS_GROUPED; break;
		case 4: bad.tc = ZP_BT_16BF; break;
		case 5: bad.ldc = 18; break;
		}
		const char *rs = zp_blas_refusal(&bad, why, sizeof why);
		CHECK(rs && strstr(rs, cases[i].reason), "FP8 %s: %s", cases[i].what,
		      rs ? rs : "accepted");
	}
	zp_dgemm plain = { .bf16 = true, .a = a, .lda = 32, .m = 8, .w = w, .n = 16, .kp = 32, .c = c,
			   .ldc = 16 };
	bad = zp_blas_plan(&plain, ZP_BLAS_LT_MATMUL);
	bad.sa_mode = ZP_BS_VEC128_32F;
	CHECK(zp_blas_refusal(&bad, why, sizeof why) && strstr(why, "FP8"),
	      "block scales on bf16 inputs accepted");
	/* the sim refuses the same call: its sticky error, nothing runs */
	zp_drt *r = zp_drt_sim_new(1);
	zp_dstream *s = r->ops->stream_new(r);
	g.kp = 40;
	g.lda = 40;
	c[0] = 123;
	r->ops->gemm(r, s, &g);
	r->ops->stream_sync(r, s);
	zp_err e;
	CHECK(zp_drt_error(r, &e) && strstr(e.msg, "cublasLtMatmul") && strstr(e.msg, "16-byte") &&
		      c[0] == 123, "the sim ran an FP8 GEMM cuBLASLt refuses");
	r->ops->stream_free(r, s);
	r->ops->close(r);
}

int main(void)
{
	static const int ms[] = { 1, 17 }, ks[] = { 1, 17, 128, 200, 4097 };
	zp_drt *r = zp_drt_sim_new(2);
	zp_dstream *s = r->ops->stream_new(r);
	check_codec();
	for (int bf = 0; bf < 2; bf++)
		for (size_t i = 0; i < 2; i++)
			for (size_t j = 0; j < 5; j++)
				check_act_quant(r, s, ms[i], ks[j], bf);
	check_widen(r, s, 17, 200, false);
	check_widen(r, s, 33, 4097, true);
	check_gemm(r, s, 1, 16, 16);
	check_gemm(r, s, 17, 144, 272);
	check_gemm(r, s, 5, 300, 4096);
	r->ops->stream_free(r, s);
	r->ops->close(r);
	check_contract();
	return check_exit("test_fp8_kernels");
}
