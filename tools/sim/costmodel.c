/* costmodel.c -- see costmodel.h. The hardware table and the efficiencies
   are here and nowhere else. */
#include "costmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- the hardware table ---- */

/* Dense (not 2:4 sparse) tensor-core peaks, HBM bandwidth and memory of the
   SXM parts; NVLink's bandwidth is the total of the datasheet divided by two
   (per direction). */
static const sim_device devices[] = {
	{ "a100", 312e12, 0, 2.039e12, 80e9, "nvlink3",
	  "NVIDIA A100 datasheet (SXM4 80GB): BF16 312 TFLOPS dense, no FP8 (fp8 weights run "
	  "W8A16 at the BF16 peak), HBM2e 2039 GB/s, NVLink 600 GB/s" },
	{ "h100", 989e12, 1979e12, 3.35e12, 80e9, "nvlink4",
	  "NVIDIA H100 datasheet (SXM5): BF16 989 TFLOPS dense, FP8 1979 dense, HBM3 3.35 TB/s, "
	  "NVLink 900 GB/s" },
	{ "h200", 989e12, 1979e12, 4.8e12, 141e9, "nvlink4",
	  "NVIDIA H200 datasheet (SXM): H100's compute, HBM3e 4.8 TB/s, 141 GB, NVLink 900 GB/s" },
};

static const sim_link links[] = {
	{ "nvlink3", 300e9, 10e-6, "A100 NVLink 3: 600 GB/s total = 300 per direction" },
	{ "nvlink4", 450e9, 10e-6, "H100/H200 NVLink 4: 900 GB/s total = 450 per direction" },
	{ "pcie5", 55e9, 10e-6, "PCIe 5.0 x16: 64 GB/s raw per direction, ~55 effective" },
};

/* Efficiencies (achieved share of the peak), and why:
   - dense GEMM: cuBLAS reaches ~700 of H100's 989 BF16 TFLOPS on large
     shapes (0.70) and ~250-280 of A100's 312 (0.80); FP8 ~1300 of 1979
     (0.65) (NVIDIA's cuBLAS 12 performance notes; DeepGEMM's README reports
     up to ~1550 FP8 TFLOPS on H800 for its best shapes);
   - grouped expert GEMM: 0.8 of the dense figure (ragged per-expert row
     counts leave partial tiles; DeepGEMM's grouped numbers sit ~20% under
     its dense ones);
   - attention: FlashAttention-2 reaches 50-73% of A100's peak forward (its
     paper; 0.60 here for mixed lengths) and 35-40% of H100's (FlashAttention-
     3 paper, table of FA2 on H100; 0.40 here: this engine's kernel is
     FA2-class, FA3 would give ~0.75);
   - memory-bound ops (norms, RoPE, dispatch, combine, residuals, weight
     streaming of small GEMMs): 0.80 of HBM bandwidth (STREAM-like copies);
   - links: 0.80 of the per-direction bandwidth (nccl-tests all_gather bus
     bandwidth on 8x H100 NVSwitch: ~360 of 450 GB/s);
   - a kernel launch and its tail: 4 us each (2-5 us typical without CUDA
     graphs). */
#define EFF_GEMM_A100 0.80
#define EFF_GEMM_H 0.70
#define EFF_GEMM_FP8 0.65
#define EFF_GROUPED 0.80
#define EFF_ATTN_A100 0.60
#define EFF_ATTN_H 0.40
#define EFF_MEM 0.80
#define EFF_LINK 0.80
#define LAUNCH_S 4e-6
#define DEVICE_UTIL 0.90 /* kvcache.h's ZP_KV_AUTO_DEVICE_UTIL: the share of a device used */

const sim_device *sim_device_find(const char *name)
{
	for (size_t i = 0; i < sizeof devices / sizeof *devices; i++)
		if (!strcmp(devices[i].name, name))
			return &devices[i];
	return NULL;
}

const sim_link *sim_link_find(const char *name)
{
	for (size_t i = 0; i < sizeof links / sizeof *links; i++)
		if (!strcmp(links[i].name, name))
			return &links[i];
	return NULL;
}

void sim_hw_print(FILE *f)
{
	for (size_t i = 0; i < sizeof devices / sizeof *devices; i++)
		fprintf(f, "device %-5s bf16=%.0fT fp8=%.0fT hbm=%.2fTB/s mem=%.0fGB link=%s  [%s]\n",
			devices[i].name, devices[i].bf16_flops * 1e-12, devices[i].fp8_flops * 1e-12,
			devices[i].hbm_bytes_s * 1e-12, devices[i].mem_bytes * 1e-9, devices[i].link,
			devices[i].source);
	for (size_t i = 0; i < sizeof links / sizeof *links; i++)
		fprintf(f, "link %-7s %.0fGB/s per direction, %.0fus per transfer  [%s]\n",
			links[i].name, links[i].bytes_s * 1e-9, links[i].latency_s * 1e6,
			links[i].source);
	fprintf(f, "efficiency: gemm a100 %.2f h100/h200 %.2f fp8 %.2f; grouped experts x%.2f; "
		"attention a100 %.2f h100/h200 %.2f; memory-bound %.2f; link %.2f; launch %.0fus\n",
		EFF_GEMM_A100, EFF_GEMM_H, EFF_GEMM_FP8, EFF_GROUPED, EFF_ATTN_A100, EFF_ATTN_H,
		EFF_MEM, EFF_LINK, LAUNCH_S * 1e6);
}

const char *sim_mode_name(enum sim_mode m)
{
	static const char *const n[] = { "asyncep", "dpep", "replicate", "tp" };
	return n[m];
}

int sim_mode_parse(const char *s, enum sim_mode *m)
{
	for (int i = SIM_ASYNCEP; i <= SIM_TP; i++)
		if (!strcmp(s, sim_mode_name((enum sim_mode)i)))
			return *m = (enum sim_mode)i, 0;
	return -1;
}

/* ---- the profile ---- */

/* Least squares over rows x[k] (k params) -> y; 0, or -1 when singular. */
static int lsq(double (*x)[3], const double *y, int n, int k, double *out)
{
	double A[3][4] = { { 0 } };
	for (int r = 0; r < n; r++)
		for (int i = 0; i < k; i++) {
			for (int j = 0; j < k; j++)
				A[i][j] += x[r][i] * x[r][j];
			A[i][3] += x[r][i] * y[r];
		}
	for (int i = 0; i < k; i++) { /* Gauss-Jordan, partial pivoting */
		for (int r = i + 1; r < k; r++)
			if (fabs(A[r][i]) > fabs(A[i][i]))
				for (int j = 0; j < 4; j++) {
					double t = A[i][j];
					A[i][j] = A[r][j];
					A[r][j] = t;
				}
		double p = A[i][i];
		if (fabs(p) < 1e-300)
			return -1;
		for (int j = 0; j < 4; j++)
			A[i][j] /= p;
		for (int r = 0; r < k; r++)
			if (r != i) {
				double q = A[r][i];
				for (int j = 0; j < 4; j++)
					A[r][j] -= q * A[i][j];
			}
	}
	for (int i = 0; i < k; i++)
		out[i] = A[i][3];
	return 0;
}

/* Fit with pairs (k 3) or without (k 2); a negative coefficient (noise on a
   term that does not matter) is refitted without it. */
static int fit(double (*x)[3], const double *y, int n, int k, sim_fit *f)
{
	double c[3] = { 0 };
	if (lsq(x, y, n, k, c))
		return -1;
	if (k == 3 && c[2] < 0) {
		if (lsq(x, y, n, 2, c))
			return -1;
		c[2] = 0;
	}
	*f = (sim_fit){ ZP_MAX(c[0], 0), ZP_MAX(c[1], 0), ZP_MAX(c[2], 0) };
	return 0;
}

#define PROFILE_ROWS_MAX 256

int sim_model_profile(sim_model *m, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	static double x[PROFILE_ROWS_MAX][3], y[ZP_FOP_N + 2][PROFILE_ROWS_MAX];
	int n = 0;
	if (!f || !fgets(line, sizeof line, f) || strncmp(line, "# zprefill profile v2", 21)) {
		fprintf(stderr, "%s: not a `zprefill bench --profile` file (v2)\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	m->prof_gather_s = 0;
	m->prof_gather_n = 0;
	m->prof_concurrency = 1;
	while (fgets(line, sizeof line, f)) {
		char *p = line, *e;
		if (!strncmp(line, "# device=", 9)) {
			snprintf(m->prof_desc, sizeof m->prof_desc, "%.*s", (int)strcspn(line + 2, "\n"),
				 line + 2);
			char *t = strstr(line, "threads=");
			m->prof_threads = t ? atoi(t + 8) : 1;
		}
		if (!strncmp(line, "# concurrency=", 14))
			m->prof_concurrency = ZP_MAX(atoi(line + 14), 1);
		if (!strncmp(line, "gather ", 7)) {
			double bytes;
			if (sscanf(line + 7, "%d %lf %lf", &m->prof_gather_n, &bytes,
				   &m->prof_gather_s) != 3)
				m->prof_gather_n = 0;
			continue;
		}
		if (strncmp(line, "fwd ", 4) || n == PROFILE_ROWS_MAX)
			continue;
		double v[6 + ZP_FOP_N];
		int k = 0;
		for (p = line + 4; k < 6 + ZP_FOP_N; k++, p = e) {
			v[k] = strtod(p, &e);
			if (e == p)
				break;
		}
		if (k != 6 + ZP_FOP_N)
			continue;
		x[n][0] = 1;
		x[n][1] = v[0];
		x[n][2] = v[3];
		y[0][n] = v[4];
		y[ZP_FOP_N + 1][n] = v[5];
		for (int o = 0; o < ZP_FOP_N; o++)
			y[1 + o][n] = v[6 + o];
		n++;
	}
	fclose(f);
	if (n < 4) {
		fprintf(stderr, "%s: %d forwards; the fit needs 4 at least\n", path, n);
		return -1;
	}
	if (fit(x, y[0], n, 3, &m->fwd) || fit(x, y[ZP_FOP_N + 1], n, 3, &m->fwd_cpu))
		return fprintf(stderr, "%s: singular fit\n", path), -1;
	for (int o = 0; o < ZP_FOP_N; o++)
		if (fit(x, y[1 + o], n, o == ZP_FOP_ATTN ? 3 : 2, &m->op[o]))
			return fprintf(stderr, "%s: singular fit\n", path), -1;
	m->dev = NULL;
	return 0;
}

static double at(const sim_fit *f, double tokens, double pairs)
{
	return f->a + f->b * tokens + f->c * pairs;
}

/* ---- the roofline ---- */

static double gemm_eff(const sim_model *m)
{
	if (m->fp8 && m->dev->fp8_flops > 0)
		return EFF_GEMM_FP8;
	return m->dev->bf16_flops < 500e12 ? EFF_GEMM_A100 : EFF_GEMM_H;
}

static double gemm_peak(const sim_model *m)
{
	return m->fp8 && m->dev->fp8_flops > 0 ? m->dev->fp8_flops : m->dev->bf16_flops;
}

static double op_s(const sim_model *m, double flops, double peak, double eff, double bytes,
		   int kernels)
{
	double tc = flops > 0 ? flops / (peak * eff) : 0;
	double tm = bytes / (m->dev->hbm_bytes_s * EFF_MEM);
	return ZP_MAX(tc, tm) + kernels * LAUNCH_S;
}

static double wbytes(const sim_model *m)
{
	return m->fp8 ? 1 : 2;
}

static int tp_of(const sim_model *m)
{
	return m->mode == SIM_TP ? m->gpus : 1;
}

/* A transfer of bytes over the link (per direction). */
static double link_s(const sim_model *m, double bytes)
{
	return bytes / (m->link->bytes_s * EFF_LINK) + m->link->latency_s;
}

/* One layer's work before the experts are needed: norms, q/k/v, RoPE,
   attention, o, residual; for a MoE layer the router and dispatch too. */
static double pre_s(const sim_model *m, double T, double P, bool sparse)
{
	const zp_config *c = m->cfg;
	int tp = tp_of(m);
	double H = c->hidden, d = c->head_dim, q = (double)c->heads * d / tp;
	double kv = ZP_MAX(c->kv_heads / tp, 1) * d, wb = wbytes(m), gp = gemm_peak(m);
	double eg = gemm_eff(m);
	double ea = m->dev->bf16_flops < 500e12 ? EFF_ATTN_A100 : EFF_ATTN_H;
	double t = op_s(m, 2 * T * H * (q + 2 * kv), gp, eg, wb * H * (q + 2 * kv) +
			2 * T * (H + q + 2 * kv), 1);
	t += op_s(m, 4.0 * c->heads / tp * d * P, m->dev->bf16_flops, ea, 2 * T * (2 * q + 2 * kv), 1);
	t += op_s(m, 2 * T * q * H, gp, eg, wb * q * H + 2 * T * (q + H), 1);
	t += op_s(m, 0, 1, 1, 2 * T * (8 * H + 2 * (q + kv)), 6); /* norms, rope, residual */
	if (sparse) {
		double E = c->experts, k = c->topk;
		t += op_s(m, 2 * T * H * E, m->dev->bf16_flops, eg, 2 * H * E + 2 * T * H + 4 * T * E, 2);
		t += op_s(m, 0, 1, 1, 4 * T * k * H, 3); /* dispatch: the rows gathered */
	}
	return t;
}

/* Expert GEMMs over R routed rows on a device holding Eh of the E experts
   (each row's expert uniform over them), and the combine of T tokens. A
   dense layer's MLP over T tokens when not sparse. */
static double exp_s(const sim_model *m, double R, double Eh, double T, bool sparse)
{
	const zp_config *c = m->cfg;
	int tp = tp_of(m);
	double H = c->hidden, wb = wbytes(m), gp = gemm_peak(m), eg = gemm_eff(m);
	if (!sparse) {
		double F = (double)c->ffn / tp;
		return op_s(m, 2 * T * H * 3 * F, gp, eg, wb * 3 * H * F + 2 * T * (2 * H + 3 * F), 3);
	}
	double Fm = (double)c->moe_ffn / tp, k = c->topk;
	double active = R > 0 ? Eh * (1 - pow(1 - 1 / Eh, R)) : 0;
	double t = op_s(m, 2 * R * 3 * H * Fm, gp, eg * EFF_GROUPED,
			wb * 3 * H * Fm * active + 2 * R * (2 * H + 3 * Fm), 3);
	return t + op_s(m, 0, 1, 1, 2 * (T * k * H + 2 * T * H), 2);
}

/* Embedding and the outputs (one lm_head row per sequence). */
static double ends_s(const sim_model *m, double T, int seqs)
{
	const zp_config *c = m->cfg;
	double H = c->hidden, V = (double)c->vocab / tp_of(m);
	return op_s(m, 0, 1, 1, 4 * T * H, 1) +
	       op_s(m, 2.0 * seqs * H * V, m->dev->bf16_flops, gemm_eff(m), 2 * H * V, 3);
}

static double expert_layer_bytes(const sim_model *m)
{
	const zp_config *c = m->cfg;
	return wbytes(m) * c->experts * 3.0 * c->hidden * c->moe_ffn;
}

double sim_gather_s(const sim_model *m)
{
	if (m->mode != SIM_ASYNCEP || m->gpus < 2)
		return 0;
	if (!m->dev) { /* measured at prof_gather_n executors: scale by the share gathered */
		if (m->prof_gather_n < 2)
			return 0;
		double share = (m->gpus - 1.0) / m->gpus, was = (m->prof_gather_n - 1.0) / m->prof_gather_n;
		return m->prof_gather_s * share / was;
	}
	return link_s(m, expert_layer_bytes(m) * (m->gpus - 1) / m->gpus);
}

double sim_expert_rate(const sim_model *m, int tokens)
{
	const zp_config *c = m->cfg;
	double fl = 2.0 * tokens * c->topk * 3 * c->hidden * c->moe_ffn, t;
	if (!c->moe)
		return 0;
	if (!m->dev)
		t = at(&m->op[ZP_FOP_EXPERTS], tokens, 0) / ZP_MAX(1, c->layers);
	else
		t = exp_s(m, (double)tokens * c->topk, c->experts, tokens, true);
	return t > 0 ? fl / t : 0;
}

/* ---- a forward, layer by layer ---- */

/* The layers with pre[l] before the experts and ex[l] from them on, gathers
   of g each (asyncep: MoE layers after the first; one at a time on the link,
   layer l's starting as the MoE layer before it begins, its buffer then
   free): the total and the exposed wait. */
static double walk(const zp_config *c, const double *pre, const double *ex, double g,
		   double *wait, double *paced)
{
	double t = 0, link_free = 0, done = 0;
	int first = -1;
	*wait = 0;
	*paced = 0;
	for (int l = 0; l < c->layers; l++) {
		if (c->sparse[l] && first < 0)
			first = l;
		double start = t;
		t += pre[l];
		if (c->sparse[l] && l != first && g > 0) {
			/* l's gather began as the MoE layer before it began */
			if (t < done) {
				*wait += done - t;
				*paced = g;
				t = done;
			}
		}
		t += ex[l];
		if (c->sparse[l]) {
			int next = -1;
			for (int j = l + 1; j < c->layers && next < 0; j++)
				if (c->sparse[j])
					next = j;
			if (next >= 0 && g > 0) {
				double s0 = ZP_MAX(start, link_free);
				done = s0 + g;
				link_free = done;
			}
		}
	}
	return t;
}

sim_cost sim_forward(const sim_model *m, const sim_work *w)
{
	const zp_config *c = m->cfg;
	double pre[ZP_LAYERS_MAX], ex[ZP_LAYERS_MAX], g = sim_gather_s(m), mlp = 0, comm = 0;
	double T = w->tokens, P = w->pairs, ends;
	sim_cost out = { 0 };
	if (!m->dev) {
		/* measured: the whole forward's fit, split over the layers by the
		   per-op fits' shares */
		double all = 0, moe = 0;
		for (int o = 0; o < ZP_FOP_N; o++) {
			double v = at(&m->op[o], T, P);
			all += v;
			if (o == ZP_FOP_DENSE || o == ZP_FOP_ROUTER || o == ZP_FOP_DISPATCH ||
			    o == ZP_FOP_EXPERTS || o == ZP_FOP_COMBINE)
				moe += v;
		}
		double tot = at(m->use_cpu ? &m->fwd_cpu : &m->fwd, T, P), share = all > 0 ? moe / all : 0;
		ends = tot * (all > 0 ? (at(&m->op[ZP_FOP_EMBED], T, P) +
					 at(&m->op[ZP_FOP_OUT], T, P)) / all : 0);
		for (int l = 0; l < c->layers; l++) {
			double lay = (tot - ends) / c->layers;
			pre[l] = lay * (1 - share);
			ex[l] = lay * share;
		}
	} else {
		ends = ends_s(m, T, w->seqs);
		for (int l = 0; l < c->layers; l++) {
			pre[l] = pre_s(m, T, P, c->sparse[l]);
			ex[l] = exp_s(m, T * c->topk, c->experts, T, c->sparse[l]);
			if (m->mode == SIM_TP && m->gpus > 1) { /* AllReduce after attention and MLP */
				double ar = 2.0 * (m->gpus - 1) / m->gpus * 2 * T * c->hidden;
				double t = 2 * link_s(m, ar);
				comm += t;
				ex[l] += t;
			}
		}
	}
	for (int l = 0; l < c->layers; l++)
		mlp += ex[l];
	double wait, paced;
	out.total_s = walk(c, pre, ex, g, &wait, &paced) + ends;
	out.wait_s = wait;
	out.comm_s = comm;
	out.mlp_s = mlp + wait;
	out.gather_s = paced;
	return out;
}

sim_cost sim_round_dpep(const sim_model *m, const sim_work *w, int n)
{
	const zp_config *c = m->cfg;
	ZP_ASSERT(m->dev && m->mode == SIM_DPEP);
	double Tmax = 0, rows = 0, ends = 0, t = 0, comm = 0, mlp = 0;
	for (int i = 0; i < n; i++) {
		Tmax = ZP_MAX(Tmax, w[i].tokens);
		rows += w[i].tokens * c->topk;
		ends = ZP_MAX(ends, ends_s(m, w[i].tokens, w[i].seqs));
	}
	for (int l = 0; l < c->layers; l++) {
		double p = 0;
		for (int i = 0; i < n; i++)
			p = ZP_MAX(p, pre_s(m, w[i].tokens, w[i].pairs, c->sparse[l]));
		t += p;
		if (!c->sparse[l]) {
			double e = exp_s(m, 0, 1, Tmax, false);
			t += e;
			mlp += e;
			continue;
		}
		/* dispatch and combine: the busiest member's rows to and from its
		   peers ((N-1)/N of them remote), the expert GEMMs over this
		   member's share of every member's rows */
		double a2a = n > 1 ? link_s(m, Tmax * c->topk * c->hidden * 2.0 * (n - 1) / n) : 0;
		double e = exp_s(m, rows / n, (double)c->experts / n, Tmax, true);
		t += 2 * a2a + e;
		comm += 2 * a2a;
		mlp += 2 * a2a + e;
	}
	return (sim_cost){ .total_s = t + ends, .comm_s = comm, .mlp_s = mlp };
}

/* ---- memory ---- */

int sim_fits(const sim_model *m, int batch_tokens, double *weights_bytes, double *free_bytes,
	     char *why, size_t why_len)
{
	const zp_config *c = m->cfg;
	ZP_ASSERT(m->dev);
	double H = c->hidden, d = c->head_dim, wb = wbytes(m), N = m->gpus, moe = 0, nonexp = 0;
	for (int l = 0; l < c->layers; l++) {
		nonexp += wb * (H * (c->heads + 2.0 * c->kv_heads) * d + (double)c->heads * d * H);
		if (c->sparse[l]) {
			nonexp += 2 * H * c->experts;
			moe++;
		} else {
			nonexp += wb * 3 * H * c->ffn;
		}
	}
	nonexp += 2 * H * c->vocab * (c->tie_embeddings ? 1 : 2); /* bf16 embeddings */
	double el = expert_layer_bytes(m), w = 0;
	switch (m->mode) {
	case SIM_REPLICATE:
		w = nonexp + moe * el;
		break;
	case SIM_ASYNCEP: /* 1/N of each MoE layer, the first whole, two layer buffers */
		w = N < 2 ? nonexp + moe * el : nonexp + (moe - 1) * el / N + el + 2 * el;
		break;
	case SIM_DPEP:
		w = nonexp + moe * el / N;
		break;
	case SIM_TP:
		w = (nonexp + moe * el) / N;
		break;
	}
	double Tb = batch_tokens, k = c->topk;
	double ws = 4 * Tb * (k * (2 * H + 3.0 * c->moe_ffn) + 6 * H +
			      (c->heads + 2.0 * c->kv_heads) * d + c->experts) + 64e6;
	double fr = m->dev->mem_bytes * DEVICE_UTIL - w - ws;
	*weights_bytes = w;
	*free_bytes = fr;
	if (fr > 0)
		return 0;
	snprintf(why, why_len, "does not fit: %.1f GB of weights + %.1f GB workspace > %.0f%% of "
		 "%.0f GB", w * 1e-9, ws * 1e-9, DEVICE_UTIL * 100, m->dev->mem_bytes * 1e-9);
	return -1;
}
