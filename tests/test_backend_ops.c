/* test_backend_ops.c -- every op of every backend present (backends[] below:
   cpu today; a cuda or sim backend is one more entry) against a plain-C
   reference in double, on odd shapes (1, 17, 4097 where cheap), fresh random
   inputs, guard bytes around every output (they must come back untouched),
   NaN/Inf in an output failing, a relative tolerance where the math differs,
   and the same rows computed alone vs inside a bigger batch compared bitwise.
   Runs twice: the CPU's fastest kernels, then the GEMM's plain-C twin
   (zp_gemm_force_ref); where AMX is in use it runs itself again with
   ZP_NO_AMX=1 so the AVX512 paths are covered too. Memory moves through the
   backend's upload/download only, so a device backend runs the same test.
   Then the CUDA backend on the sim device (its kernels' host twins) and, with
   a GPU, on cuda: every output where the kernel follows the CPU's order is
   compared bit for bit with the cpu plain-C pass's (the ledger below).
   `test_backend_ops cuda`: the cuda backend alone, exit 77 without a GPU. */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "backend_cuda.h"
#include "check.h"
#include "cpu.h"
#include "gemm.h"

#define GUARD 64
#define GUARD_BYTE 0xA5

static zp_err dev_err;

static zp_backend *dev_new(enum zp_device d, int threads)
{
	/* model shapes covering the FP8 GEMMs' matrices (its FP8 scratch);
	   ZP_FP8_COMPUTE as zp_backend_device_new reads it */
	const char *f8 = getenv("ZP_FP8_COMPUTE");
	zp_cuda_opts o = { .dev = d, .threads = threads, .rows_max = 4096, .tmp_floats = 1 << 20,
			   .fp8c = f8 && !strcmp(f8, "w8a16") ? ZP_FP8_W8A16 : ZP_FP8_W8A8,
			   .hidden = 272, .qkv_rows = 272, .qd = 272, .ffn = 128, .moe_ffn = 128,
			   .experts = 3 };
	return zp_backend_cuda_new(&o, &dev_err);
}

static zp_backend *sim_new(int threads)
{
	return dev_new(ZP_DEV_SIM, threads);
}

static zp_backend *cuda_new(int threads)
{
	return dev_new(ZP_DEV_CUDA, threads);
}

static const struct {
	const char *name;
	zp_backend *(*make)(int threads);
	bool device;
	enum zp_device d;	/* its weight layout: zp_device_layout(d) */
} backends[] = {
	{ "cpu", zp_backend_cpu_new, false, ZP_DEV_CPU },
	{ "sim", sim_new, true, ZP_DEV_SIM },
	{ "cuda", cuda_new, true, ZP_DEV_CUDA },
};

static zp_backend *B;
static bool dev;	/* B is a device backend */
static const zp_wlayout *lay;	/* B's weight layout */
static const char *where; /* backend and path, for messages */

/* ---- the ledger: hashes of every checked output of the cpu plain-C pass,
   in call order; a device pass compares its outputs of the same calls (the
   inputs repeat: the RNG restarts with each suite) ---- */

enum { LEDGER_MAX = 4096 };
static struct { const char *what; uint64_t h; } ledger[LEDGER_MAX];
static int ledger_n, ledger_at;
static enum { L_OFF, L_RECORD, L_SIM, L_CUDA } ledger_mode;

static uint64_t fnv(const void *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
	return h;
}

/* the ops whose kernel follows the CPU's order operation for operation
   (kernels/zk_ops.h); on cuda only those without expf/logf (the device's
   differ by ulps) and without a GEMM (cuBLAS's order is its own) */
static bool bitwise_op(const char *what)
{
	static const char *both[] = { "rmsnorm", "residual", "add_bias", "qk_norm_rope", "gather",
				      "combine", "pool last", "pool mean" };
	static const char *sim_only[] = { "route weight", "route gap", "gemm", "gemm add" };
	for (size_t i = 0; i < sizeof both / sizeof *both; i++)
		if (!strcmp(what, both[i]))
			return true;
	if (ledger_mode != L_SIM)
		return false;
	for (size_t i = 0; i < sizeof sim_only / sizeof *sim_only; i++)
		if (!strcmp(what, sim_only[i]))
			return true;
	/* the cpu's SwiGLU is a vector expression where AVX512 is */
	return !strcmp(what, "gemm swiglu") && !zp_cpu_avx512();
}

static void ledger_note(const char *what, const void *got, size_t bytes)
{
	if (ledger_mode == L_OFF)
		return;
	uint64_t h = fnv(got, bytes);
	if (ledger_mode == L_RECORD) {
		ZP_ASSERT(ledger_n < LEDGER_MAX);
		ledger[ledger_n].what = what;
		ledger[ledger_n++].h = h;
		return;
	}
	int i = ledger_at++;
	CHECK(i < ledger_n && !strcmp(ledger[i].what, what), "%s ledger out of step at %s", where,
	      what);
	if (i < ledger_n && bitwise_op(what))
		CHECK(ledger[i].h == h, "%s %s: not bitwise equal to the cpu's", where, what);
}

/* ---- guarded backend buffers ---- */

typedef struct {
	char *base, *p;
	size_t bytes;
} gbuf;

static gbuf gnew(size_t bytes)
{
	gbuf g = { B->ops->alloc(B, bytes + 2 * GUARD), NULL, bytes };
	char *fill = malloc(bytes + 2 * GUARD);
	memset(fill, GUARD_BYTE, bytes + 2 * GUARD);
	B->ops->upload(B, g.base, fill, bytes + 2 * GUARD);
	free(fill);
	g.p = g.base + GUARD;
	return g;
}

static void gput(gbuf g, const void *host, size_t bytes)
{
	ZP_ASSERT(bytes <= g.bytes);
	B->ops->upload(B, g.p, host, bytes);
}

/* Download the data; checks the guards and frees the buffer. */
static void gtake(gbuf g, void *host, const char *what)
{
	unsigned char *all = malloc(g.bytes + 2 * GUARD);
	B->ops->download(B, all, g.base, g.bytes + 2 * GUARD);
	for (size_t i = 0; i < GUARD; i++) {
		CHECK(all[i] == GUARD_BYTE, "%s %s: wrote before its output (byte %zu)", where, what, i);
		CHECK(all[GUARD + g.bytes + i] == GUARD_BYTE, "%s %s: wrote past its output (byte %zu)",
		      where, what, i);
	}
	if (host)
		memcpy(host, all + GUARD, g.bytes);
	free(all);
	B->ops->mfree(B, g.base);
}

static gbuf gfrom(const void *host, size_t bytes)
{
	gbuf g = gnew(bytes);
	gput(g, host, bytes);
	return g;
}

static float *frand_n(size_t n, float lo, float hi)
{
	float *v = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = check_frand(lo, hi);
	return v;
}

/* got vs want within rel (0: bitwise), finite */
static void close_to(const char *what, const float *got, const double *want, size_t n, double rel)
{
	int bad = 0;
	ledger_note(what, got, n * sizeof *got);
	for (size_t i = 0; i < n && bad < 5; i++) {
		bool ok = isfinite(got[i]) &&
			  (rel == 0 ? got[i] == (float)want[i]
				    : fabs(got[i] - want[i]) <= rel * (1 + fabs(want[i])));
		if (!ok)
			bad++;
		CHECK(ok, "%s %s [%zu]: %.9g, want %.9g", where, what, i, got[i], want[i]);
	}
}

static void same_bits(const char *what, const void *a, const void *b, size_t bytes)
{
	CHECK(!memcmp(a, b, bytes), "%s %s: alone and in a batch differ", where, what);
}

static double ref_rms(const float *x, int n, double eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	return 1.0 / sqrt(ss / n + eps);
}

/* ---- rows ---- */

static void t_rmsnorm(int n, int cols)
{
	float *x = frand_n((size_t)n * cols, -3, 3), *w = frand_n((size_t)cols, 0.5f, 1.5f);
	int *rows = malloc((size_t)n * sizeof *rows);
	for (int i = 0; i < n; i++)
		rows[i] = n - 1 - i; /* reversed: the row list is honoured */
	gbuf gx = gfrom(x, (size_t)n * cols * 4), go = gnew((size_t)n * cols * 4);
	gbuf go16 = gnew((size_t)n * cols * 2), gw = gfrom(w, (size_t)cols * 4);
	B->ops->rmsnorm(B, n, cols, (zp_view){ gx.p, (size_t)cols }, rows, (float *)gw.p, 1e-6f,
			(zp_view){ go.p, (size_t)cols }, (zp_view){ go16.p, (size_t)cols });
	float *got = malloc((size_t)n * cols * 4);
	uint16_t *got16 = malloc((size_t)n * cols * 2);
	double *want = calloc((size_t)n * cols, sizeof *want);
	gtake(go, got, "rmsnorm");
	gtake(go16, got16, "rmsnorm bf16");
	for (int i = 0; i < n; i++) {
		const float *xr = x + (size_t)rows[i] * cols;
		double r = ref_rms(xr, cols, 1e-6);
		for (int c = 0; c < cols; c++)
			want[(size_t)i * cols + c] = w[c] * (xr[c] * r);
	}
	close_to("rmsnorm", got, want, (size_t)n * cols, 1e-5);
	for (size_t i = 0; i < (size_t)n * cols; i++)
		if (got16[i] != zp_f32_to_bf16(got[i])) {
			CHECK(0, "%s rmsnorm bf16 copy [%zu]", where, i);
			break;
		}
	/* the last row alone */
	gbuf g1 = gnew((size_t)cols * 4);
	B->ops->rmsnorm(B, 1, cols, (zp_view){ gx.p, (size_t)cols }, &rows[n - 1], (float *)gw.p, 1e-6f,
			(zp_view){ g1.p, (size_t)cols }, (zp_view){ NULL, 0 });
	float *one = malloc((size_t)cols * 4);
	gtake(g1, one, "rmsnorm alone");
	same_bits("rmsnorm", one, got + (size_t)(n - 1) * cols, (size_t)cols * 4);
	gtake(gx, NULL, "rmsnorm input");
	gtake(gw, NULL, "rmsnorm weight");
	free(x), free(w), free(rows), free(got), free(got16), free(want), free(one);
}

/* add_bias, residual, to_bf16: exact in f32 */
static void t_elementwise(int n, int cols)
{
	size_t N = (size_t)n * cols;
	float *x = frand_n(N, -2, 2), *y = frand_n(N, -2, 2), *bias = frand_n((size_t)cols, -1, 1);
	float *got = malloc(N * 4);
	uint16_t *g16 = malloc(N * 2);
	double *want = calloc(N, sizeof *want);
	gbuf gx = gfrom(x, N * 4), gy = gfrom(y, N * 4), g6 = gnew(N * 2);
	gbuf gb = gfrom(bias, (size_t)cols * 4);
	zp_view vx = { gx.p, (size_t)cols }, vy = { gy.p, (size_t)cols };
	B->ops->residual(B, n, cols, vx, vy, (float *)gb.p);
	B->ops->add_bias(B, n, cols, vy, (float *)gb.p);
	B->ops->to_bf16(B, n, cols, vx, (zp_view){ g6.p, (size_t)cols });
	gtake(gx, got, "residual");
	for (size_t i = 0; i < N; i++)
		want[i] = x[i] + (y[i] + bias[i % cols]);
	close_to("residual", got, want, N, 0);
	gtake(g6, g16, "to_bf16");
	for (size_t i = 0; i < N; i++)
		CHECK(g16[i] == zp_f32_to_bf16(got[i]), "%s to_bf16 [%zu]", where, i);
	gtake(gy, got, "add_bias");
	for (size_t i = 0; i < N; i++)
		want[i] = y[i] + bias[i % cols];
	close_to("add_bias", got, want, N, 0);
	gtake(gb, NULL, "bias");
	free(x), free(y), free(bias), free(got), free(g16), free(want);
}

static void t_rope(int n, int heads, int kvh, int d)
{
	int ld = (heads + 2 * kvh) * d, h2 = d / 2, P = 40;
	size_t N = (size_t)n * ld;
	float *q = frand_n(N, -2, 2), *qn = frand_n((size_t)d, 0.5f, 1.5f), *kn = frand_n((size_t)d, 0.5f, 1.5f);
	float *cs = malloc((size_t)P * h2 * 4), *sn = malloc((size_t)P * h2 * 4), *got = malloc(N * 4);
	double *want = calloc(N, sizeof *want);
	int *pos = malloc((size_t)n * sizeof *pos);
	for (int i = 0; i < P * h2; i++) {
		cs[i] = cosf(0.1f * (float)i);
		sn[i] = sinf(0.1f * (float)i);
	}
	for (int i = 0; i < n; i++)
		pos[i] = (i * 7) % P;
	gbuf gq = gfrom(q, N * 4), gc = gfrom(cs, (size_t)P * h2 * 4), gs = gfrom(sn, (size_t)P * h2 * 4);
	gbuf gqn = gfrom(qn, (size_t)d * 4), gkn = gfrom(kn, (size_t)d * 4);
	B->ops->qk_norm_rope(B, n, (zp_view){ gq.p, (size_t)ld }, heads, kvh, d, (float *)gqn.p,
			     (float *)gkn.p, 1e-6f, pos,
			     (float *)gc.p, (float *)gs.p);
	gtake(gq, got, "qk_norm_rope");
	for (int t = 0; t < n; t++)
		for (int h = 0; h < heads + kvh; h++) {
			const float *v = q + (size_t)t * ld + (size_t)h * d, *w = h < heads ? qn : kn;
			double r = ref_rms(v, d, 1e-6), *o = want + (size_t)t * ld + (size_t)h * d;
			const float *c = cs + (size_t)pos[t] * h2, *s = sn + (size_t)pos[t] * h2;
			for (int i = 0; i < h2; i++) {
				double a = w[i] * v[i] * r, bb = w[i + h2] * v[i + h2] * r;
				o[i] = a * c[i] - bb * s[i];
				o[i + h2] = bb * c[i] + a * s[i];
			}
		}
	for (int t = 0; t < n; t++) /* v heads untouched */
		for (int i = (heads + kvh) * d; i < ld; i++)
			want[(size_t)t * ld + i] = q[(size_t)t * ld + i];
	close_to("qk_norm_rope", got, want, N, 1e-5);
	gtake(gc, NULL, "cos");
	gtake(gs, NULL, "sin");
	gtake(gqn, NULL, "q_norm");
	gtake(gkn, NULL, "k_norm");
	free(q), free(qn), free(kn), free(cs), free(sn), free(got), free(want), free(pos);
}

/* ---- GEMM ---- */

struct wsrc {
	const float *w;
	int k;
};

static const void *wrow(void *ctx, int n)
{
	struct wsrc *s = ctx;
	return s->w + (size_t)n * s->k;
}

/* w [n, k] in backend memory, packed through B's layout as a model load
   would (swiglu: gate rows [0, n/2), then up rows) */
static zp_wmat wnew(const float *w, int n, int k, enum zp_wtype t, bool swiglu)
{
	zp_wmat m;
	enum zp_wkind kind = swiglu ? ZP_WK_SWIGLU : ZP_WK_PLAIN;
	size_t bytes = lay->bytes(t, ZP_WS_PLAIN, n, k, kind);
	void *host = zp_xalloc_aligned(bytes);
	struct wsrc s = { w, k };
	zp_wsrc src = { ZP_DT_F32, wrow, NULL, &s };
	lay->pack(&m, host, t, ZP_WS_PLAIN, n, k, kind, &src);
	m.data = B->ops->alloc(B, bytes);
	B->ops->upload(B, m.data, host, bytes);
	zp_free_aligned(host);
	return m;
}

static double in_val(const float *a, enum zp_wtype t, size_t i)
{
	return t == ZP_W_BF16 ? zp_bf16_to_f32(zp_f32_to_bf16(a[i])) : a[i];
}

/* A in backend memory, as the op wants it (f32 or bf16), [m, lda] */
static gbuf anew(const float *a, int m, int k, size_t lda, enum zp_wtype t)
{
	size_t es = t == ZP_W_BF16 ? 2 : 4;
	char *h = calloc((size_t)m * lda, es);
	for (int r = 0; r < m; r++)
		for (int i = 0; i < k; i++) {
			size_t at = (size_t)r * lda + i;
			if (t == ZP_W_BF16)
				((uint16_t *)h)[at] = zp_f32_to_bf16(a[(size_t)r * k + i]);
			else
				((float *)h)[at] = a[(size_t)r * k + i];
		}
	gbuf g = gfrom(h, (size_t)m * lda * es);
	free(h);
	return g;
}

static double ref_dot(const float *a, const float *w, int k, enum zp_wtype t)
{
	double s = 0;
	for (int i = 0; i < k; i++)
		s += in_val(a, t, (size_t)i) * in_val(w, t, (size_t)i);
	return s;
}

static void t_gemm(int m, int n, int k, enum zp_wtype t, enum zp_epi epi)
{
	size_t lda = (size_t)ZP_ALIGN_UP(k, 2), ldc = (size_t)n + 3;
	int cols = epi == ZP_EPI_SWIGLU ? n / 2 - 3 : n; /* a SwiGLU tail of a panel */
	float *a = frand_n((size_t)m * k, -1, 1), *w = frand_n((size_t)n * k, -1, 1);
	float *c0 = frand_n((size_t)m * ldc, -1, 1), *got = malloc((size_t)m * ldc * 4);
	double *want = calloc((size_t)m * ldc, sizeof *want);
	double rel = t == ZP_W_BF16 ? 1e-3 : 1e-4;
	zp_wmat wm = wnew(w, n, k, t, epi == ZP_EPI_SWIGLU);
	gbuf ga = anew(a, m, k, lda, t), gc = gfrom(c0, (size_t)m * ldc * 4);
	zp_gemm_op op = { ga.p, lda, m, &wm, (float *)gc.p, ldc, epi, cols };
	B->ops->gemm(B, &op);
	gtake(gc, got, "gemm");
	for (int r = 0; r < m; r++)
		for (size_t j = 0; j < ldc; j++) {
			double *o = &want[(size_t)r * ldc + j];
			*o = c0[(size_t)r * ldc + j]; /* untouched unless written */
			if (epi == ZP_EPI_SWIGLU) {
				if ((int)j >= cols)
					continue;
				/* gate row j, up row n / 2 + j */
				double gv = ref_dot(a + (size_t)r * k, w + j * k, k, t);
				double uv = ref_dot(a + (size_t)r * k, w + (j + (size_t)n / 2) * k, k, t);
				*o = gv / (1 + exp(-gv)) * uv;
			} else if ((int)j < n) {
				double v = ref_dot(a + (size_t)r * k, w + j * k, k, t);
				*o = epi == ZP_EPI_ADD ? *o + v : v;
			}
		}
	close_to(epi == ZP_EPI_SWIGLU ? "gemm swiglu" : epi == ZP_EPI_ADD ? "gemm add" : "gemm",
		 got, want, (size_t)m * ldc, rel);
	/* the last row alone */
	if (epi != ZP_EPI_ADD) {
		gbuf g1 = gfrom(c0 + (size_t)(m - 1) * ldc, ldc * 4);
		float *one = malloc(ldc * 4);
		size_t es = t == ZP_W_BF16 ? 2 : 4;
		zp_gemm_op o1 = { ga.p + (size_t)(m - 1) * lda * es, lda, 1, &wm, (float *)g1.p, ldc,
				  epi, cols };
		B->ops->gemm(B, &o1);
		gtake(g1, one, "gemm alone");
		same_bits("gemm", one, got + (size_t)(m - 1) * ldc, ldc * 4);
		free(one);
	}
	gtake(ga, NULL, "gemm input");
	B->ops->mfree(B, wm.data);
	free(a), free(w), free(c0), free(got), free(want);
}

/* ---- FP8 weights (weights.h ZP_WS_FP8) ---- */

struct fp8src {
	const uint8_t *codes;	/* [n][k] */
	const float *scale;	/* [n][nkb]: each row's block scales */
	int k, nkb;
};

static const void *f8row(void *ctx, int j)
{
	struct fp8src *s = ctx;
	return s->codes + (size_t)j * s->k;
}

static const void *f8scale(void *ctx, int j)
{
	struct fp8src *s = ctx;
	return s->scale + (size_t)j * s->nkb;
}

/* w [n, k] quantised as a checkpoint is (zp_fp8_quantize, 128 x 128 blocks;
   a SwiGLU matrix's gate and up halves each from its own row 0, as their
   tensors), packed through B's layout; deq: the dequantised values */
static zp_wmat wnew_fp8(const float *w, int n, int k, enum zp_wtype t, bool swiglu, float *deq)
{
	int nkb = (k + 127) / 128, half = swiglu ? n / 2 : n;
	uint8_t *codes = malloc((size_t)n * k);
	float *scale = malloc((size_t)n * nkb * sizeof *scale), bs[64];
	const void *rows[128];
	ZP_ASSERT(nkb <= 64);
	for (int seg = 0; seg < (swiglu ? 2 : 1); seg++) { /* gate rows, then up rows */
		int s0 = seg * half, s1 = seg ? n : half;
		for (int r0 = s0; r0 < s1; r0 += 128) {
			int nr = ZP_MIN(128, s1 - r0);
			for (int i = 0; i < nr; i++)
				rows[i] = w + (size_t)(r0 + i) * k;
			zp_fp8_quantize(rows, nr, k, ZP_DT_F32, codes + (size_t)r0 * k, bs);
			for (int i = 0; i < nr; i++)
				memcpy(scale + (size_t)(r0 + i) * nkb, bs, (size_t)nkb * sizeof *bs);
		}
	}
	for (int j = 0; j < n; j++)
		for (int c = 0; c < k; c++)
			deq[(size_t)j * k + c] = zp_fp8_to_f32(codes[(size_t)j * k + c]) *
						 scale[(size_t)j * nkb + c / 128];
	zp_wmat m;
	enum zp_wkind kind = swiglu ? ZP_WK_SWIGLU : ZP_WK_PLAIN;
	size_t bytes = lay->bytes(t, ZP_WS_FP8, n, k, kind);
	void *host = zp_xalloc_aligned(bytes);
	struct fp8src s = { codes, scale, k, nkb };
	zp_wsrc src = { ZP_DT_F8_E4M3, f8row, f8scale, &s };
	lay->pack(&m, host, t, ZP_WS_FP8, n, k, kind, &src);
	m.data = B->ops->alloc(B, bytes);
	B->ops->upload(B, m.data, host, bytes);
	zp_free_aligned(host);
	free(codes), free(scale);
	return m;
}

/* a's rows as W8A8 sees them: per 128 columns, scale = amax / 448 (1 when
   all zero), each value e4m3(x / scale) * scale */
static void quant_rows(float *aq, const float *a, int m, int k, enum zp_wtype t)
{
	for (int r = 0; r < m; r++)
		for (int g = 0; g < k; g += 128) {
			float amax = 0, s;
			for (int c = g; c < ZP_MIN(k, g + 128); c++)
				amax = fmaxf(amax, fabsf((float)in_val(a, t, (size_t)r * k + c)));
			s = amax > 0 ? amax / 448.0f : 1.0f;
			for (int c = g; c < ZP_MIN(k, g + 128); c++)
				aq[(size_t)r * k + c] =
					zp_fp8_to_f32(zp_f32_to_fp8((float)in_val(a, t, (size_t)r * k + c) / s)) * s;
		}
}

/* an FP8 GEMM: cpu and a device's W8A16 against the dequantised matrix
   widened to the compute type (bf16: each e4m3 x scale rounded) with a's
   values (the compute type's); W8A8 (a device's default
   where the matrix's 128-row blocks are one source each and the output's
   rows are 16-byte multiples, cuBLASLt's FP8 rules) against a quantised per
   token per 128 columns and the exact dequantised matrix */
static void t_gemm_fp8(int m, int n, int k, enum zp_wtype t, enum zp_epi epi)
{
	size_t lda = (size_t)ZP_ALIGN_UP(k, 2), ldc = (size_t)n + 3;
	bool sw = epi == ZP_EPI_SWIGLU;
	int cols = sw ? n / 2 - 3 : n, held_half = ZP_ALIGN_UP(n / 2, 16);
	const char *mode = getenv("ZP_FP8_COMPUTE");
	bool w8a8 = dev && !(mode && !strcmp(mode, "w8a16")) && !(sw && held_half % 128) &&
		    (sw || ldc % 4 == 0);
	float *a = frand_n((size_t)m * k, -1, 1), *w = frand_n((size_t)n * k, -1, 1);
	float *deq = malloc((size_t)n * k * 4), *aq = malloc((size_t)m * k * 4);
	float *c0 = frand_n((size_t)m * ldc, -1, 1), *got = malloc((size_t)m * ldc * 4);
	double *want = calloc((size_t)m * ldc, sizeof *want);
	double rel = ledger_mode == L_CUDA ? 2e-3 : t == ZP_W_BF16 || w8a8 ? 1e-3 : 1e-4;
	zp_wmat wm = wnew_fp8(w, n, k, t, sw, deq);
	if (!w8a8 && t == ZP_W_BF16) /* bf16 rows of e4m3 x scale: a device's fp8_widen, the
					cpu's folded widening (gemm.c) */
		for (size_t i = 0; i < (size_t)n * k; i++)
			deq[i] = zp_bf16_to_f32(zp_f32_to_bf16(deq[i]));
	if (w8a8)
		quant_rows(aq, a, m, k, t);
	else
		for (size_t i = 0; i < (size_t)m * k; i++)
			aq[i] = (float)in_val(a, t, i);
	gbuf ga = anew(a, m, k, lda, t), gc = gfrom(c0, (size_t)m * ldc * 4);
	zp_gemm_op op = { ga.p, lda, m, &wm, (float *)gc.p, ldc, epi, cols };
	B->ops->gemm(B, &op);
	gtake(gc, got, "gemm fp8");
	for (int r = 0; r < m; r++)
		for (size_t j = 0; j < ldc; j++) {
			double *o = &want[(size_t)r * ldc + j];
			*o = c0[(size_t)r * ldc + j];
			if (sw && (int)j < cols) {
				double gv = ref_dot(aq + (size_t)r * k, deq + j * k, k, ZP_W_F32);
				double uv = ref_dot(aq + (size_t)r * k, deq + (j + (size_t)n / 2) * k, k, ZP_W_F32);
				*o = gv / (1 + exp(-gv)) * uv;
			} else if (!sw && (int)j < n) {
				double v = ref_dot(aq + (size_t)r * k, deq + j * k, k, ZP_W_F32);
				*o = epi == ZP_EPI_ADD ? *o + v : v;
			}
		}
	char what[64];
	snprintf(what, sizeof what, "gemm fp8%s%s %dx%dx%d", sw ? " swiglu" : epi == ZP_EPI_ADD ? " add" : "",
		 w8a8 ? " w8a8" : "", m, n, k);
	close_to(what, got, want, (size_t)m * ldc, rel);
	gtake(ga, NULL, "gemm fp8 input");
	B->ops->mfree(B, wm.data);
	free(a), free(w), free(deq), free(aq), free(c0), free(got), free(want);
}

/* grouped: 3 experts (one without rows) == each expert's dense GEMM, bitwise */
static void t_expert_gemm(enum zp_wtype t, enum zp_epi epi)
{
	int E = 3, k = 33, n = 64, offs[4] = { 0, 5, 5, 17 }, R = 17;
	int cols = epi == ZP_EPI_SWIGLU ? 29 : n;
	size_t lda = 34, ldc = (size_t)n, es = t == ZP_W_BF16 ? 2 : 4;
	float *a = frand_n((size_t)R * k, -1, 1), *got = malloc((size_t)R * ldc * 4);
	float *dense = malloc((size_t)R * ldc * 4);
	zp_wmat w[3];
	for (int e = 0; e < E; e++) {
		float *we = frand_n((size_t)n * k, -1, 1);
		w[e] = wnew(we, n, k, t, epi == ZP_EPI_SWIGLU);
		free(we);
	}
	float *c0 = frand_n((size_t)R * ldc, -1, 1);
	gbuf ga = anew(a, R, k, lda, t), gc = gfrom(c0, (size_t)R * ldc * 4);
	B->ops->expert_gemm(B, w, 0, E, offs, (zp_view){ ga.p, lda }, (zp_view){ gc.p, ldc }, epi, cols);
	gtake(gc, got, "expert_gemm");
	for (int e = 0; e < E; e++) {
		int m = offs[e + 1] - offs[e];
		if (!m)
			continue;
		gbuf g1 = gfrom(c0 + (size_t)offs[e] * ldc, (size_t)m * ldc * 4);
		zp_gemm_op op = { ga.p + (size_t)offs[e] * lda * es, lda, m, &w[e], (float *)g1.p, ldc,
				  epi, cols };
		B->ops->gemm(B, &op);
		gtake(g1, dense + (size_t)offs[e] * ldc, "expert dense");
	}
	/* cuda: cuBLAS's grouped and cuBLASLt's dense kernels each have their order */
	double rel = ledger_mode == L_CUDA ? (t == ZP_W_BF16 ? 1e-3 : 1e-5) : 0;
	for (size_t i = 0; i < (size_t)R * ldc; i++)
		if (!isfinite(got[i]) || fabs(got[i] - dense[i]) > rel * (1 + fabs(dense[i]))) {
			CHECK(0, "%s expert_gemm [%zu]: %g vs dense %g", where, i, got[i], dense[i]);
			break;
		}
	gtake(ga, NULL, "expert input");
	for (int e = 0; e < E; e++)
		B->ops->mfree(B, w[e].data);
	free(a), free(got), free(dense), free(c0);
}

/* ---- attention ---- */

/* reference: each query of sequence rows [s0, s0 + len), positions from 0 */
static void ref_attn(const float *qkv, int ld, int heads, int kvh, int d, int s0, int len,
		     double *out, int ldo)
{
	double scale = 1 / sqrt(d), *p = malloc((size_t)len * sizeof *p);
	for (int h = 0; h < heads; h++) {
		int g = h / (heads / kvh);
		for (int q = 0; q < len; q++) {
			const float *qv = qkv + (size_t)(s0 + q) * ld + (size_t)h * d;
			double mx = -INFINITY, sum = 0;
			for (int j = 0; j <= q; j++) {
				const float *kv = qkv + (size_t)(s0 + j) * ld + (size_t)(heads + g) * d;
				double s = 0;
				for (int i = 0; i < d; i++)
					s += (double)qv[i] * kv[i];
				p[j] = s * scale;
				mx = fmax(mx, p[j]);
			}
			for (int j = 0; j <= q; j++)
				sum += p[j] = exp(p[j] - mx);
			for (int i = 0; i < d; i++) {
				double acc = 0;
				for (int j = 0; j <= q; j++)
					acc += p[j] / sum *
					       qkv[(size_t)(s0 + j) * ld + (size_t)(heads + kvh + g) * d + i];
				out[(size_t)(s0 + q) * ldo + (size_t)h * d + i] = acc;
			}
		}
	}
	free(p);
}

static void run_attn(zp_attn_work *w, int heads, int kvh, int d, bool bf16, int nseq,
		     const int *start, const zp_kv_src *prefix, gbuf qkv, gbuf out, int rc_want,
		     zp_err *e)
{
	int ld = (heads + 2 * kvh) * d;
	zp_attn_args a = { heads, kvh, d, nseq, start, { qkv.p, (size_t)ld },
			   { out.p, (size_t)heads * d }, prefix, bf16, w };
	CHECK(B->ops->attention(B, &a, e) == rc_want, "%s attention rc", where);
}

static void t_attention(int heads, int kvh, int d, bool bf16)
{
	enum { NS = 3 };
	int lens[NS] = { 1, 17, 70 }, start[NS + 1] = { 0 }, ld = (heads + 2 * kvh) * d;
	int ldo = heads * d;
	for (int s = 0; s < NS; s++)
		start[s + 1] = start[s] + lens[s];
	int T = start[NS];
	zp_err e;
	float *qkv = frand_n((size_t)T * ld, -1.5f, 1.5f), *got = malloc((size_t)T * ldo * 4);
	double *want = calloc((size_t)T * ldo, sizeof *want);
	zp_attn_work *w = B->ops->attn_work_new(B, heads, kvh, d, T, 8, bf16);
	gbuf gq = gfrom(qkv, (size_t)T * ld * 4), go = gnew((size_t)T * ldo * 4);
	run_attn(w, heads, kvh, d, bf16, NS, start, NULL, gq, go, 0, &e);
	gtake(go, got, "attention");
	for (int s = 0; s < NS; s++)
		ref_attn(qkv, ld, heads, kvh, d, start[s], lens[s], want, ldo);
	close_to(bf16 ? "attention (bf16 allowed)" : "attention", got, want, (size_t)T * ldo,
		 bf16 ? 2e-2 : 2e-5);

	/* the last sequence alone, at row 0 */
	int one[2] = { 0, lens[NS - 1] };
	size_t ofs = (size_t)start[NS - 1];
	gbuf g1 = gfrom(qkv + ofs * ld, (size_t)lens[NS - 1] * ld * 4);
	gbuf go1 = gnew((size_t)lens[NS - 1] * ldo * 4);
	float *alone = malloc((size_t)lens[NS - 1] * ldo * 4);
	run_attn(w, heads, kvh, d, bf16, 1, one, NULL, g1, go1, 0, &e);
	gtake(go1, alone, "attention alone");
	same_bits("attention", alone, got + ofs * ldo, (size_t)lens[NS - 1] * ldo * 4);

	/* prefix: the last sequence's first 23 positions given as K/V held
	   elsewhere, its last 47 rows in the batch after a sequence of one */
	int plen = 23, suf = lens[NS - 1] - plen, st2[3] = { 0, 1, 1 + suf };
	float *k = malloc((size_t)plen * kvh * d * 4), *v = malloc((size_t)plen * kvh * d * 4);
	for (int p = 0; p < plen; p++) {
		const float *row = qkv + (ofs + p) * ld;
		memcpy(k + (size_t)p * kvh * d, row + (size_t)heads * d, (size_t)kvh * d * 4);
		memcpy(v + (size_t)p * kvh * d, row + (size_t)(heads + kvh) * d, (size_t)kvh * d * 4);
	}
	gbuf gk = gfrom(k, (size_t)plen * kvh * d * 4), gv = gfrom(v, (size_t)plen * kvh * d * 4);
	zp_kv_src pre[2] = { { NULL, NULL, 0, 0 },
			     { (float *)gk.p, (float *)gv.p, (size_t)kvh * d, plen } };
	float *q2 = malloc((size_t)(1 + suf) * ld * 4), *got2 = malloc((size_t)(1 + suf) * ldo * 4);
	memcpy(q2, qkv, (size_t)ld * 4); /* sequence 0: the batch's first */
	memcpy(q2 + ld, qkv + (ofs + plen) * ld, (size_t)suf * ld * 4);
	gbuf gq2 = gfrom(q2, (size_t)(1 + suf) * ld * 4), go2 = gnew((size_t)(1 + suf) * ldo * 4);
	run_attn(w, heads, kvh, d, bf16, 2, st2, pre, gq2, go2, 0, &e);
	gtake(go2, got2, "attention with prefix");
	same_bits("attention prefix (vs the whole sequence)", got2 + ldo,
		  got + (ofs + plen) * ldo, (size_t)suf * ldo * 4);
	same_bits("attention prefix (the other sequence)", got2, got, (size_t)ldo * 4);
	/* a prefix the workspace cannot hold is refused with a message */
	pre[1].len = T;
	gbuf go3 = gnew((size_t)(1 + suf) * ldo * 4);
	run_attn(w, heads, kvh, d, bf16, 2, st2, pre, gq2, go3, -1, &e);
	CHECK(strstr(e.msg, "workspace"), "%s attention refusal says why: %s", where, e.msg);
	gtake(go3, NULL, "attention refused");
	gtake(gk, NULL, "k");
	gtake(gv, NULL, "v");
	gtake(gq2, NULL, "q2");
	gtake(g1, NULL, "q1");
	gtake(gq, NULL, "qkv");
	B->ops->attn_work_free(B, w);
	free(qkv), free(got), free(want), free(alone), free(k), free(v), free(q2), free(got2);
}

/* ---- MoE ---- */

static void t_route_dispatch(int n, int E, int K)
{
	float *lg = frand_n((size_t)n * E, -3, 3);
	lg[E - 1] = lg[0]; /* a tie: the lower id wins */
	gbuf gl = gfrom(lg, (size_t)n * E * 4), gs = gnew((size_t)n * K * 4), gw = gnew((size_t)n * K * 4);
	gbuf gg = gnew((size_t)n * 4), go = gnew((size_t)(E + 1) * 4), gr = gnew((size_t)n * K * 4);
	B->ops->route(B, n, E, K, true, (zp_view){ gl.p, (size_t)E }, (int *)gs.p, (float *)gw.p,
		      (float *)gg.p);
	B->ops->dispatch(B, n, K, E, (int *)gs.p, (int *)go.p, (int *)gr.p);
	int *sel = malloc((size_t)n * K * 4), *offs = malloc((size_t)(E + 1) * 4);
	int *slot = malloc((size_t)n * K * 4);
	float *w = malloc((size_t)n * K * 4), *gap = malloc((size_t)n * 4);
	gtake(gl, NULL, "route logits");
	gtake(gs, sel, "route sel");
	gtake(gw, w, "route weights");
	gtake(gg, gap, "route gap");
	gtake(go, offs, "dispatch offs");
	gtake(gr, slot, "dispatch slots");
	for (int t = 0; t < n; t++) {
		const float *l = lg + (size_t)t * E;
		double mx = -INFINITY, sum = 0, p[64], wsum = 0;
		bool taken[64] = { 0 };
		int want[64];
		for (int e = 0; e < E; e++)
			mx = fmax(mx, l[e]);
		for (int e = 0; e < E; e++)
			sum += p[e] = exp(l[e] - mx);
		for (int k = 0; k < K; k++) {
			int best = -1;
			for (int e = 0; e < E; e++)
				if (!taken[e] && (best < 0 || l[e] > l[best]))
					best = e;
			taken[best] = true;
			want[k] = best;
			wsum += p[best];
		}
		double next = -INFINITY;
		for (int e = 0; e < E; e++)
			if (!taken[e])
				next = fmax(next, l[e]);
		double wg = l[want[K - 1]] - next;
		if (K < E)
			close_to("route gap", &gap[t], &wg, 1, 1e-5);
		else
			CHECK(isinf(gap[t]) && gap[t] > 0, "%s route gap with K == E: %g", where, gap[t]);
		for (int k = 0, j = 0; k < E; k++) /* ascending expert ids */
			if (taken[k]) {
				double ww = p[k] / wsum;
				CHECK(sel[(size_t)t * K + j] == k, "%s route row %d slot %d: %d, want %d",
				      where, t, j, sel[(size_t)t * K + j], k);
				close_to("route weight", &w[(size_t)t * K + j], &ww, 1, 1e-5);
				j++;
			}
	}
	/* dispatch: counts, starts, token order within each expert */
	int *cur = calloc((size_t)E + 1, sizeof *cur);
	for (int i = 0; i < n * K; i++)
		cur[sel[i] + 1]++;
	for (int e = 0; e < E; e++)
		cur[e + 1] += cur[e];
	for (int e = 0; e <= E; e++)
		CHECK(offs[e] == cur[e], "%s dispatch offs[%d] %d, want %d", where, e, offs[e], cur[e]);
	for (int i = 0; i < n * K; i++)
		CHECK(slot[i] == cur[sel[i]]++, "%s dispatch slot %d", where, i);
	free(lg), free(sel), free(offs), free(slot), free(w), free(gap), free(cur);
}

static void t_gather_combine(int n, int K, int cols)
{
	int R = n * K, *slot = malloc((size_t)R * 4);
	for (int i = 0; i < R; i++) /* a permutation of the slots */
		slot[i] = (int)(((long)i * 7 + 3) % R);
	if (R % 7 == 0)
		for (int i = 0; i < R; i++)
			slot[i] = R - 1 - i;
	float *x = frand_n((size_t)n * cols, -1, 1), *y = frand_n((size_t)R * cols, -1, 1);
	float *sw = frand_n((size_t)R, 0, 1), *got = malloc((size_t)R * cols * 4);
	double *want = calloc((size_t)R * cols, sizeof *want);
	gbuf gx = gfrom(x, (size_t)n * cols * 4), gd = gnew((size_t)R * cols * 4);
	gbuf gsl = gfrom(slot, (size_t)R * 4), gsw = gfrom(sw, (size_t)R * 4);
	B->ops->gather(B, n, K, (int *)gsl.p, gx.p, gd.p, (size_t)cols * 4);
	gtake(gd, got, "gather");
	for (int t = 0; t < n; t++)
		for (int k = 0; k < K; k++)
			for (int c = 0; c < cols; c++)
				want[(size_t)slot[t * K + k] * cols + c] = x[(size_t)t * cols + c];
	close_to("gather", got, want, (size_t)R * cols, 0);
	gbuf gy = gfrom(y, (size_t)R * cols * 4), go = gnew((size_t)n * cols * 4);
	B->ops->combine(B, n, K, cols, (int *)gsl.p, (float *)gsw.p, (zp_view){ gy.p, (size_t)cols },
			(zp_view){ go.p, (size_t)cols });
	gtake(go, got, "combine");
	for (int t = 0; t < n; t++)
		for (int c = 0; c < cols; c++) {
			float acc = 0; /* in f32, experts in slot order: the contract's order */
			for (int k = 0; k < K; k++)
				acc += y[(size_t)slot[t * K + k] * cols + c] * sw[t * K + k];
			want[(size_t)t * cols + c] = acc;
		}
	close_to("combine", got, want, (size_t)n * cols, 0);
	gtake(gx, NULL, "gather input");
	gtake(gy, NULL, "combine input");
	gtake(gsl, NULL, "slots");
	gtake(gsw, NULL, "slot weights");
	free(slot), free(x), free(y), free(sw), free(got), free(want);
}

/* ---- outputs ---- */

static void t_logprobs(int n, int V)
{
	float *lg = frand_n((size_t)n * V, -8, 8), plp[8], cand[8][3], top[8][40];
	int32_t cands[3] = { 0, V / 2, V - 1 }, ids[8][40], rank[8];
	static const int topk[4] = { 5, 0, 40, 0 }; /* 40: past the lanes' split (zk_ops.h) */
	zp_lp_row rows[8];
	ZP_ASSERT(n <= 8);
	lg[V - 2] = lg[V - 1]; /* a tie in row 0 */
	for (int i = 0; i < n; i++) { /* ties at the top, in different lanes' shares */
		lg[(size_t)i * V + V - 3] = lg[(size_t)i * V + 7] = lg[(size_t)i * V + 70] = 8.5f;
		lg[(size_t)i * V + 33] = lg[(size_t)i * V + 40] = 8.25f;
	}
	for (int i = 0; i < n; i++)
		rows[i] = (zp_lp_row){ i % 2 ? &plp[i] : NULL, (i * 31) % V, 3, cands, cand[i],
				       topk[i % 4], ids[i], top[i], i % 2 ? &rank[i] : NULL };
	gbuf gl = gfrom(lg, (size_t)n * V * 4);
	B->ops->logprobs(B, n, V, (zp_view){ gl.p, (size_t)V }, rows);
	gtake(gl, NULL, "logprobs logits");
	for (int i = 0; i < n; i++) {
		const float *l = lg + (size_t)i * V;
		double mx = -INFINITY, s = 0;
		for (int x = 0; x < V; x++)
			mx = fmax(mx, l[x]);
		for (int x = 0; x < V; x++)
			s += exp(l[x] - mx);
		double lse = mx + log(s), w;
		if (rows[i].plp) {
			w = l[rows[i].next] - lse;
			close_to("prompt logprob", &plp[i], &w, 1, 1e-5);
			int above = 0; /* the rank: 1 + the tokens more likely than next */
			for (int x = 0; x < V; x++)
				above += l[x] > l[rows[i].next];
			CHECK(rank[i] == above + 1, "%s rank of row %d: %d, want %d", where, i, rank[i],
			      above + 1);
		}
		for (int c = 0; c < 3; c++) {
			w = l[cands[c]] - lse;
			close_to("candidate logprob", &cand[i][c], &w, 1, 1e-5);
		}
		for (int k = 0; k < rows[i].top_k; k++) {
			int best = -1; /* k-th largest, ties to the lower id */
			for (int x = 0; x < V; x++) {
				bool before = false;
				for (int j = 0; j < k; j++)
					before |= ids[i][j] == x;
				if (!before && (best < 0 || l[x] > l[best]))
					best = x;
			}
			CHECK(ids[i][k] == best, "%s top-%d of row %d: id %d, want %d", where, k, i,
			      ids[i][k], best);
			w = l[best] - lse;
			close_to("top logprob", &top[i][k], &w, 1, 1e-5);
		}
	}
	free(lg);
}

static void t_pool(int n, int cols)
{
	float *x = frand_n((size_t)n * cols, -2, 2), *w = frand_n((size_t)cols, 0.5f, 1.5f);
	float *got = malloc((size_t)cols * 4);
	double *want = calloc((size_t)cols, sizeof *want);
	gbuf gx = gfrom(x, (size_t)n * cols * 4), work = gnew((size_t)cols * 12);
	gbuf gw = gfrom(w, (size_t)cols * 4);
	for (int mode = 0; mode < 2; mode++)
		for (int norm = 0; norm < 2; norm++) {
			B->ops->pool(B, n, cols, (zp_view){ gx.p, (size_t)cols }, (float *)gw.p, 1e-6f,
				     mode ? ZP_POOLING_MEAN : ZP_POOLING_LAST, norm, got, work.p);
			for (int c = 0; c < cols; c++)
				want[c] = 0;
			for (int r = mode ? 0 : n - 1; r < n; r++) {
				double rr = ref_rms(x + (size_t)r * cols, cols, 1e-6);
				for (int c = 0; c < cols; c++)
					want[c] += w[c] * x[(size_t)r * cols + c] * rr / (mode ? n : 1);
			}
			double ss = 0;
			for (int c = 0; c < cols && norm; c++)
				ss += want[c] * want[c];
			for (int c = 0; c < cols && norm; c++)
				want[c] /= sqrt(ss);
			close_to(mode ? "pool mean" : "pool last", got, want, (size_t)cols, 1e-5);
		}
	gtake(gx, NULL, "pool input");
	gtake(work, NULL, "pool work");
	gtake(gw, NULL, "pool weight");
	free(x), free(w), free(got), free(want);
}

/* ---- memory and events ---- */

static void t_memory(void)
{
	size_t n = 4097;
	float *h = frand_n(n, -1, 1), *back = malloc(n * 4);
	gbuf a = gfrom(h, n * 4), b = gnew(n * 4);
	B->ops->copy(B, b.p, a.p, n * 4);
	gtake(b, back, "copy");
	CHECK(!memcmp(h, back, n * 4), "%s upload/copy/download round trip", where);
	gtake(a, NULL, "upload");
	free(h), free(back);
}

/* rows strided rows: each row's width bytes land at its pitch, the gaps
   between them (and the guards) stay as they were */
static void t_copy2d(int rows, size_t width, size_t spitch, size_t dpitch)
{
	size_t sn = (size_t)rows * spitch, dn = (size_t)rows * dpitch;
	float *h = frand_n(sn / 4, -1, 1);
	unsigned char *back = malloc(dn);
	gbuf a = gfrom(h, sn), b = gnew(dn);
	B->ops->copy2d(B, b.p, dpitch, a.p, spitch, width, rows);
	gtake(b, back, "copy2d");
	for (int i = 0; i < rows; i++) {
		CHECK(!memcmp(back + (size_t)i * dpitch, (char *)h + (size_t)i * spitch, width),
		      "%s copy2d rows=%d width=%zu: row %d", where, rows, width, i);
		for (size_t g = width; g < dpitch; g++)
			CHECK(back[(size_t)i * dpitch + g] == GUARD_BYTE,
			      "%s copy2d rows=%d: wrote the gap after row %d (byte %zu)", where, rows, i, g);
	}
	gtake(a, NULL, "copy2d source");
	free(h), free(back);
}

struct ev_arg {
	zp_event *ev;
	int *flag;
};

static void *recorder(void *v)
{
	struct ev_arg *a = v;
	usleep(20000);
	*a->flag = 1; /* written before the record: the waiter must see it */
	B->ops->event_record(B, a->ev);
	return NULL;
}

static void t_events(void)
{
	zp_event *ev = B->ops->event_new(B);
	int flag = 0;
	CHECK(B->ops->event_record(B, ev) == 1, "%s first record counts 1", where);
	B->ops->event_wait(B, ev, 1); /* reached: returns at once */
	struct ev_arg a = { ev, &flag };
	pthread_t th;
	ZP_ASSERT(pthread_create(&th, NULL, recorder, &a) == 0);
	B->ops->event_wait(B, ev, 2); /* recorded by another thread */
	CHECK(flag == 1, "%s event_wait returned before the record", where);
	pthread_join(th, NULL);
	B->ops->event_free(B, ev);
}

static void suite(void)
{
	check_rng = 88172645463325252ull; /* the same inputs for every pass */
	ledger_at = 0;
	t_memory();
	t_copy2d(1, 12, 20, 16);
	t_copy2d(16, 128, 640, 128); /* a prefix-cache block: 16 k,v rows out of qkv rows */
	t_copy2d(17, 36, 44, 100);
	t_events();
	for (int n = 1; n <= 17; n += 16) {
		t_rmsnorm(n, 17);
		t_rmsnorm(n, 4097);
		t_elementwise(n, 4097);
		t_rope(n, 3, 1, 16);
		t_route_dispatch(n, 10, 3);
		t_gather_combine(n, 3, 17);
		t_gather_combine(n, 3, 32); /* rows of 16-byte multiples: the wide gather */
		t_logprobs(n == 1 ? 1 : 5, 4097);
		t_pool(n, 17);
	}
	t_route_dispatch(70, 8, 8); /* K == E: every expert, gap inf */
	t_route_dispatch(700, 10, 3); /* 2100 selections: three dispatch slices */
	t_elementwise(33, 17);
	for (int t = 0; t < 2; t++) {
		enum zp_wtype wt = t ? ZP_W_BF16 : ZP_W_F32;
		t_gemm(1, 17, 17, wt, ZP_EPI_STORE);
		t_gemm(17, 33, 4097, wt, ZP_EPI_STORE);
		t_gemm(70, 64, 64, wt, ZP_EPI_STORE); /* AMX shape: K a multiple of 32 */
		t_gemm(17, 33, 17, wt, ZP_EPI_ADD);
		t_gemm(17, 64, 33, wt, ZP_EPI_SWIGLU);
		t_gemm(70, 64, 96, wt, ZP_EPI_SWIGLU);
		t_expert_gemm(wt, ZP_EPI_SWIGLU);
		t_expert_gemm(wt, ZP_EPI_STORE);
		t_gemm_fp8(17, 33, 200, wt, ZP_EPI_STORE); /* partial blocks both ways */
		t_gemm_fp8(5, 160, 272, wt, ZP_EPI_ADD);
		t_gemm_fp8(17, 64, 96, wt, ZP_EPI_SWIGLU); /* gate/up seam inside a block */
		t_gemm_fp8(9, 256, 144, wt, ZP_EPI_SWIGLU); /* halves of 128 rows: W8A8 */
	}
	t_attention(4, 2, 16, false);
	t_attention(3, 3, 40, false);
	t_attention(4, 1, 32, true); /* AMX where present, else the f32 kernels */
}

int main(int argc, char **argv)
{
	static char buf[160];
	bool cuda_only = argc > 1 && !strcmp(argv[1], "cuda");
	for (size_t i = 0; i < sizeof backends / sizeof *backends; i++) {
		bool is_cuda = !strcmp(backends[i].name, "cuda");
		if (cuda_only != is_cuda)
			continue;
		B = backends[i].make(3);
		if (!B) { /* cuda without a GPU (or without CUDA built in) */
			printf("[%s] skipped: %s\n", backends[i].name, dev_err.msg);
			if (cuda_only)
				return 77;
			continue;
		}
		dev = backends[i].device;
		lay = zp_device_layout(backends[i].d);
		/* a device backend runs once (it has no CPU paths to switch) */
		for (int ref = 0; ref < (dev ? 1 : 2); ref++) {
			zp_gemm_force_ref(ref);
			if (!dev)
				ledger_mode = ref && !cuda_only ? L_RECORD : L_OFF;
			else
				ledger_mode = is_cuda ? L_CUDA : L_SIM;
			if (ledger_mode == L_RECORD)
				ledger_n = 0;
			snprintf(buf, sizeof buf, "[%s %s%s]", backends[i].name, dev ? "kernels" : zp_gemm_isa(),
				 getenv("ZP_NO_AMX") ? " ZP_NO_AMX" : "");
			where = buf;
			printf("%s\n", where);
			suite();
		}
		zp_gemm_force_ref(0);
		B->ops->free(B);
	}
	int rc = check_exit("test_backend_ops");
	if (!cuda_only && zp_cpu_amx() && !getenv("ZP_NO_AMX")) { /* the AVX512 paths too */
		fflush(stdout);
		pid_t p = fork();
		if (p == 0) {
			setenv("ZP_NO_AMX", "1", 1);
			execv("/proc/self/exe", argv);
			_exit(1);
		}
		int st;
		waitpid(p, &st, 0);
		rc |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	return rc;
}
