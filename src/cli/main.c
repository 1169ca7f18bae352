/* main.c -- the zprefill command line: `prefill` (offline JSONL scoring),
   `bench` and `tokenize` here; `serve` (serve.h) and the socket clients
   `score|classify|embed|health` (client.h). For prefill and bench the driver
   thread owns the model and one forward workspace (with its worker pool). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "client.h"
#include "device.h"
#include "engine.h"
#include "forward.h"
#include "job.h"
#include "json.h"
#include "model.h"
#include "req_json.h"
#include "request.h"
#include "serve.h"
#include "tokenizer.h"
#include "util.h"

#define LINE_MAX_BYTES (64u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zprefill prefill --model DIR [--FLAG VALUE]...   JSONL requests in, results out\n"
		"       zprefill bench --model DIR --tokens L --seqs B [--FLAG VALUE]...\n"
		"       zprefill serve --model DIR [--config FILE] [--FLAG VALUE]...\n"
		"         (zprefill prefill|bench|serve --help lists the flags)\n"
		"       zprefill tokenize --tokenizer FILE   JSONL {\"text\"} in, {\"ids\"} out;\n"
		"                      encode MB/s on stderr\n"
		"       zprefill score|classify|embed|health --socket PATH ... (a client)\n");
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

/* ---- stdin reader: knows whether a whole line is already buffered ------------- */

struct reader {
	char *buf;
	size_t r, w, cap;
	bool eof;
};

/* Next line (without '\n') into *line, *len. 1: a line; 0: end of input. A line
   over LINE_MAX_BYTES is consumed to its end, not kept, and reported with
   *too_long (and *line NULL). */
static int read_line(struct reader *rd, char **line, size_t *len, bool *too_long)
{
	bool skipping = false;
	for (;;) {
		char *nl = memchr(rd->buf + rd->r, '\n', rd->w - rd->r);
		if (nl || (rd->eof && (rd->w > rd->r || skipping))) {
			size_t n = nl ? (size_t)(nl - (rd->buf + rd->r)) : rd->w - rd->r;
			*line = skipping ? NULL : rd->buf + rd->r;
			*len = skipping ? 0 : n;
			*too_long = skipping;
			rd->r += n + (nl ? 1 : 0);
			return 1;
		}
		if (rd->eof)
			return 0;
		memmove(rd->buf, rd->buf + rd->r, rd->w - rd->r);
		rd->w -= rd->r;
		rd->r = 0;
		if (rd->w == rd->cap) {
			if (rd->cap < LINE_MAX_BYTES) {
				rd->cap *= 2;
				rd->buf = realloc(rd->buf, rd->cap);
				ZP_ASSERT(rd->buf);
			} else { /* drop what we hold of the long line; keep reading */
				skipping = true;
				rd->w = 0;
			}
		}
		ssize_t got = read(0, rd->buf + rd->w, rd->cap - rd->w);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			rd->eof = true;
		else
			rd->w += (size_t)got;
	}
}

static bool more_input_now(const struct reader *rd)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	if (rd->eof || memchr(rd->buf + rd->r, '\n', rd->w - rd->r))
		return !rd->eof || rd->w > rd->r;
	return poll(&p, 1, 0) > 0;
}

/* A write to stdout (fwrite, fflush) failed at any point so far, or the last
   flush fails: logged, for cmd. */
static bool output_failed(const char *cmd)
{
	bool earlier = ferror(stdout);
	if (fflush(stdout) == 0 && !earlier)
		return false;
	zp_log(ZP_LOG_ERROR, "msg=\"cannot write results\" command=%s error=\"%s\"", cmd,
	       earlier ? "a write failed" : strerror(errno));
	return true;
}

/* ---- prefill ------------------------------------------------------------------ */

/* The driver runs lines through the same engine as the server: each good
   line is a job of one sequence, submitted to the engine, which cuts batches
   for idle executors and hands the jobs back done. Results are written in
   input order: a line is written once every line before it was. A batch is
   cut when the token budget is reached (or, under prefix_flops, an
   executor's load reached the threshold), or when the input pauses (then
   everything queued is answered before more is read): no timed wait unless
   --batch-wait-us says one. */

/* One input line, from its reading until its result line is written. */
struct line {
	zp_job job;		/* its one sequence (job.seq = &req); first: see line_of */
	zp_req req;
	bool bad;		/* refused at parse: err says why */
	zp_req_error err;
	bool done;		/* good: its sequence came back */
};

_Static_assert(offsetof(struct line, job) == 0, "a line starts with its job");

/* The line whose job j is (every job the driver admits is one). */
static struct line *line_of(zp_job *j)
{
	ZP_ASSERT(j);
	return (struct line *)((char *)j - offsetof(struct line, job));
}

struct driver {
	zp_engine *g;
	struct line *lines;	/* [cap]: a ring in input order, head..tail */
	uint32_t cap, head, tail;
	int served;
	zp_buf out;
};

/* Lines admitted at once: enough to fill every executor's next forward too. */
static uint32_t lines_cap(int executors)
{
	uint32_t n = 2;
	while (n < (uint32_t)executors * ZP_FWD_SEQS_MAX * 2)
		n *= 2;
	return n;
}

/* Write every line from the head whose result is known, in order. */
static void write_ready(struct driver *d)
{
	bool wrote = false;
	while (d->head != d->tail) {
		struct line *L = &d->lines[d->head & (d->cap - 1)];
		if (!L->bad && !L->done)
			break;
		d->out.len = 0;
		if (!L->bad && L->job.failed) { /* the forward failed: every line of it says so */
			L->bad = true;
			L->err = (zp_req_error){ .type = "internal_error", .code = 500 };
			snprintf(L->err.message, sizeof L->err.message, "forward failed: %.200s",
				 L->job.err);
		}
		if (L->bad)
			zp_req_write_error(L->req.id_json, &L->err, &d->out);
		else
			zp_req_write_result(&L->req, &d->out);
		zp_buf_puts(&d->out, "\n");
		fwrite(d->out.p, 1, d->out.len, stdout);
		zp_req_free(&L->req);
		d->served++;
		d->head++;
		wrote = true;
	}
	if (wrote)
		fflush(stdout);
}

/* Cut what is due (force: everything queued), take the lines that came
   back; with block, wait for one at least (one must be out or queued). */
static void pump(struct driver *d, bool force, bool block)
{
	zp_job *j;
	zp_engine_pump(d->g, zp_now_s(), force);
	if (block) {
		j = zp_engine_wait_job(d->g);
		ZP_ASSERT(j); /* one sequence a line: a batch back finishes a line */
		line_of(j)->done = true;
	}
	while ((j = zp_engine_poll_job(d->g)))
		line_of(j)->done = true;
	write_ready(d);
}

/* Answer every line read so far. */
static void drain(struct driver *d)
{
	write_ready(d);
	while (d->head != d->tail)
		pump(d, true, true); /* the head line is good and not done: it is queued or out */
}

/* Line L (parsed) joins the order ring, and the engine when it is good. */
static void add_line(struct driver *d, struct line *L)
{
	if (!L->bad) {
		L->job.seq = &L->req;
		L->job.nseq = 1;
		L->job.tokens = L->req.ntok;
		while (zp_engine_submit_job(d->g, &L->job, zp_now_s()))
			pump(d, true, true); /* full: answer some first */
	}
	d->tail++;
}

static int cmd_prefill(const zp_serve_cfg *o, zp_model *m)
{
	char tokpath[4096];
	zp_tok *tok = NULL;
	zp_err e;
	if (snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", o->model) >= (int)sizeof tokpath) {
		zp_log(ZP_LOG_ERROR, "msg=\"model path over %zu bytes\"", sizeof tokpath - 20);
		return 1;
	}
	if (access(tokpath, F_OK) == 0 && !(tok = zp_tok_load(tokpath, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load tokenizer\" error=\"%s\"", e.msg);
		return 1;
	}
	/* a prompt longer than the batch budget runs alone, in a forward sized for it */
	int fwd_tokens = ZP_MAX(o->batch_tokens_max, o->seq_tokens_max);
	struct driver d = { .cap = lines_cap(o->executors) };
	zp_engine_cfg ec = {
		.executors = o->executors, .parallel = o->parallel, .transport = o->transport,
		.threads_per_executor = zp_serve_cfg_threads(o), .batch_tokens_max = fwd_tokens,
		.offload_window = o->offload_window, .device = o->device,
		.kv_cache_bytes = o->kv_cache_bytes,
		.queue = { .policy = (enum zp_sched_policy)o->schedule,
			   .requests_max = (int)d.cap / 2, .tokens_max = (long)d.cap / 2 * fwd_tokens,
			   .batch_tokens_max = o->batch_tokens_max,
			   .batch_wait_s = o->batch_wait_us >= 0 ? o->batch_wait_us / 1e6 : HUGE_VAL,
			   .aging_s = o->schedule_aging_ms / 1e3, .min_tokens = o->schedule_min_tokens } };
	if (!(d.g = zp_engine_start(m, &ec, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		zp_tok_free(tok);
		return 1;
	}
	zp_req_limits lim = { .vocab = m->cfg.vocab, .seq_tokens_max = o->seq_tokens_max,
			      .hidden = m->cfg.hidden, .tok = tok ? zp_tok_state_new(tok) : NULL };
	struct reader rd = { .buf = zp_xmalloc(1 << 16), .cap = 1 << 16 };
	d.lines = zp_xcalloc(d.cap, sizeof *d.lines);
	char *line;
	size_t len;
	bool too_long;

	zp_buf_init(&d.out, 1 << 16);
	while (!ferror(stdout) && read_line(&rd, &line, &len, &too_long)) {
		bool blank = !too_long && (len == 0 || (len == 1 && line[0] == '\r'));
		while (d.tail - d.head == d.cap) /* bad lines wait behind a good one */
			pump(&d, true, true);
		struct line *L = &d.lines[d.tail & (d.cap - 1)];
		memset(L, 0, sizeof *L);
		if (too_long || blank) { /* line n of the output answers line n of the input */
			zp_req_init(&L->req, NULL); /* id "null" */
			L->bad = true;
			L->err = (zp_req_error){ .type = "invalid_request_error",
						 .code = too_long ? 413 : 400 };
			if (too_long)
				snprintf(L->err.message, sizeof L->err.message,
					 "request line over %u bytes", LINE_MAX_BYTES);
			else
				snprintf(L->err.message, sizeof L->err.message,
					 "blank line: one JSON request per line");
		} else {
			L->bad = zp_req_parse(&L->req, line, len, &lim, &L->err) != 0;
		}
		add_line(&d, L);
		if (more_input_now(&rd)) {
			pump(&d, false, false);
		} else { /* nothing waiting: answer what we have now */
			drain(&d);
		}
	}
	drain(&d);
	/* results that did not reach stdout (disk full, ...) fail the run: the
	   rest of the input is left unread */
	int rc = output_failed("prefill") ? 1 : 0;
	char said[160];
	zp_log(ZP_LOG_INFO, "msg=\"prefill done\" requests=%d executors=%d %s schedule=%s", d.served,
	       zp_engine_executors(d.g), zp_serve_cfg_parallel_said(o,
	       (int)zp_engine_parallel(d.g), said, sizeof said),
	       zp_sched_policy_name(zp_engine_sched(d.g)->policy));
	zp_engine_stop(d.g);
	zp_tok_state_free(lim.tok);
	zp_tok_free(tok);
	zp_buf_free(&d.out);
	free(d.lines);
	free(rd.buf);
	return rc;
}

/* ---- bench -------------------------------------------------------------------- */

static void bench_reqs(zp_req *reqs, int B, int L, int vocab)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (int s = 0; s < B; s++) {
		reqs[s].ntok = L;
		reqs[s].tokens = zp_xmalloc((size_t)L * sizeof(int32_t));
		reqs[s].cand_lp = zp_xmalloc(sizeof(float));
		reqs[s].cands = zp_xmalloc(sizeof(int32_t));
		reqs[s].cands[0] = 0;
		reqs[s].ncand = 1;
		reqs[s].want_cands = true;
		reqs[s].plp_start = -1;
		for (int i = 0; i < L; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			reqs[s].tokens[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
		}
	}
}

/* One forward of the same batch on every executor at once; seconds. */
static double bench_round(zp_engine *g, zp_req *reqs, int B, zp_fwd_stats *st0)
{
	int N = zp_engine_executors(g);
	double t0 = zp_now_s();
	for (int x = 0; x < N; x++) {
		zp_batch *b = zp_engine_batch(g); /* every executor is idle: one each */
		ZP_ASSERT(b);
		b->n = B;
		for (int s = 0; s < B; s++)
			b->req[s] = &reqs[(size_t)b->exec * B + s];
		zp_engine_submit(g, b);
	}
	zp_engine_flush(g);
	for (int x = 0; x < N; x++) {
		zp_batch *b = zp_engine_wait(g);
		ZP_ASSERT(b);
		if (b->failed)
			zp_log(ZP_LOG_ERROR, "msg=\"forward failed\" executor=%d error=\"%s\"", b->exec,
			       b->err);
		if (b->exec == 0)
			*st0 = b->stats;
		zp_engine_release(g, b);
	}
	return zp_now_s() - t0;
}

/* Exposed gather wait per MoE layer, summed over executors and iterations. */
static void bench_overlap(zp_engine *g, const zp_model *m)
{
	int nl = m->cfg.layers;
	zp_place_layer_stats *sum = zp_xcalloc((size_t)nl, sizeof *sum);
	double lay = 0, wait = 0;
	for (int x = 0; x < zp_engine_executors(g); x++) {
		const zp_place_layer_stats *st = zp_engine_layer_stats(g) + (size_t)x * nl;
		for (int l = 0; l < nl; l++) {
			sum[l].layer_s += st[l].layer_s;
			sum[l].wait_s += st[l].wait_s;
			sum[l].forwards += st[l].forwards;
		}
	}
	for (int l = 0; l < nl; l++) {
		if (!sum[l].forwards)
			continue;
		lay += sum[l].layer_s;
		wait += sum[l].wait_s;
		printf("layer=%d layer_ms=%.3f wait_ms=%.3f exposed_wait_frac=%.4f\n", l,
		       sum[l].layer_s / sum[l].forwards * 1e3, sum[l].wait_s / sum[l].forwards * 1e3,
		       sum[l].wait_s / ZP_MAX(sum[l].layer_s, 1e-12));
	}
	printf("overall exposed_wait_frac=%.4f\n", wait / ZP_MAX(lay, 1e-12));
	free(sum);
}

/* ---- bench --profile ---------------------------------------------------------- */

#define PROFILE_ITERS_MAX 64

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

/* The process's CPU seconds so far (every thread). */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* One line of the profile: n sequences of L tokens, the forward's median
   seconds unprofiled (wall, and the process's CPU seconds: the work, whatever
   else the machine runs), then each op class's median seconds profiled. */
static int profile_point(FILE *out, zp_fwd *f, zp_req *reqs, int n, int L, int iters, zp_err *e)
{
	zp_req *p[ZP_FWD_SEQS_MAX];
	double fwd[PROFILE_ITERS_MAX], cpu[PROFILE_ITERS_MAX], op[ZP_FOP_N][PROFILE_ITERS_MAX];
	double run[ZP_FOP_N];
	for (int s = 0; s < n; s++)
		p[s] = &reqs[s];
	zp_fwd_set_profile(f, NULL);
	if (zp_fwd_run(f, p, n, e)) /* warm-up */
		return -1;
	for (int it = 0; it < iters; it++) {
		double t0 = zp_now_s(), c0 = cpu_s();
		if (zp_fwd_run(f, p, n, e))
			return -1;
		fwd[it] = zp_now_s() - t0;
		cpu[it] = cpu_s() - c0;
	}
	zp_fwd_set_profile(f, run);
	for (int it = 0; it < iters; it++) {
		memset(run, 0, sizeof run);
		if (zp_fwd_run(f, p, n, e))
			return -1;
		for (int k = 0; k < ZP_FOP_N; k++)
			op[k][it] = run[k];
	}
	zp_fwd_set_profile(f, NULL);
	fprintf(out, "fwd %d %d %d %.0f %.6g %.6g", n * L, n, L, n * ((double)L * (L + 1) / 2),
		median(fwd, iters), median(cpu, iters));
	for (int k = 0; k < ZP_FOP_N; k++)
		fprintf(out, " %.6g", median(op[k], iters));
	fputc('\n', out);
	fflush(out);
	return 0;
}

/* Under asyncep: the engine's calibrated gather of one MoE layer (the
   executor's missing (N-1)/N of the experts over the transport in use). */
static void profile_gather(FILE *out, const zp_serve_cfg *o, zp_model *m)
{
	zp_engine_cfg ec = { .executors = o->executors, .parallel = o->parallel,
			     .transport = o->transport,
			     .threads_per_executor = zp_serve_cfg_threads(o),
			     .batch_tokens_max = o->bench.seqs * o->bench.seq_tokens,
			     .device = o->device };
	zp_err e;
	zp_engine *g = zp_engine_start(m, &ec, &e);
	if (!g) {
		fprintf(stderr, "zprefill bench: no gather measured: %s\n", e.msg);
		return;
	}
	const zp_place_calib *cal = zp_engine_calib(g);
	const zp_config *c = &m->cfg;
	double w = m->fp8 ? 1 : m->wtype == ZP_W_F32 ? 4 : 2; /* the checkpoint's bytes a weight */
	double bytes = (double)c->experts * 3 * c->hidden * c->moe_ffn * w *
		       (o->executors - 1) / o->executors;
	if (cal && zp_engine_parallel(g) == ZP_PAR_ASYNCEP)
		fprintf(out, "gather %d %.0f %.6g\n", o->executors, bytes, cal->gather_s);
	zp_engine_stop(g);
}

/* zprefill bench --profile FILE: per-op times on the backend in use, for
   build/simulate. Forwards of 16 tokens up to --tokens x --seqs, of
   sequences of 64, 512 and --tokens tokens, each timed --iters times off
   (the forward as it serves) and --iters times with each op synced and
   timed (forward.h's zp_fwd_set_profile). */
static int bench_profile(const zp_serve_cfg *o, zp_model *m)
{
	static const int sizes[] = { 16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768 };
	int B = o->bench.seqs, L = o->bench.seq_tokens, iters = ZP_MIN(o->bench.iters,
									 PROFILE_ITERS_MAX);
	int lens[3] = { ZP_MIN(64, L), ZP_MIN(512, L), L }, rc = 0;
	zp_err e;
	FILE *out = fopen(o->bench.profile, "w");
	if (!out) {
		fprintf(stderr, "zprefill bench: cannot write %s\n", o->bench.profile);
		return 1;
	}
	zp_fwd *f = zp_fwd_new(m, &(zp_fwd_opts){ .device = (enum zp_device)o->device,
						  .threads = zp_serve_cfg_threads(o),
						  .batch_tokens_max = B * L }, &e);
	if (!f) {
		fprintf(stderr, "zprefill bench: %s\n", e.msg);
		fclose(out);
		return 1;
	}
	fprintf(out, "# zprefill profile v2\n# device=%s kernels=%s dtype=%s threads=%d "
		"executors=%d parallel=%s model=%s\n# fwd tokens seqs seq_tokens pairs forward_s forward_cpu_s",
		zp_device_name((enum zp_device)o->device),
		zp_device_kernels((enum zp_device)o->device), zp_model_dtype_name(m),
		zp_serve_cfg_threads(o), o->executors, zp_parallel_name(o->parallel), o->model);
	for (int k = 0; k < ZP_FOP_N; k++)
		fprintf(out, " %s_s", zp_fwd_op_name(k));
	fputc('\n', out);
	zp_req *reqs = zp_xcalloc((size_t)B * L, sizeof *reqs);
	for (int li = 0; li < 3 && !rc; li++) {
		if (li && lens[li] == lens[li - 1])
			continue;
		for (size_t si = 0; si < sizeof sizes / sizeof *sizes && !rc; si++) {
			int l = ZP_MIN(lens[li], sizes[si]), n = sizes[si] / l;
			if (li && l < lens[li]) /* the shorter lengths' rows again */
				continue;
			if ((long)n * l > (long)B * L || n > ZP_FWD_SEQS_MAX)
				break;
			bench_reqs(reqs, n, l, m->cfg.vocab);
			rc = profile_point(out, f, reqs, n, l, iters, &e);
			for (int s = 0; s < n; s++)
				zp_req_free(&reqs[s]);
		}
	}
	if (rc)
		fprintf(stderr, "zprefill bench: forward failed: %s\n", e.msg);
	free(reqs);
	zp_fwd_free(f);
	if (!rc && o->parallel == ZP_PAR_ASYNCEP && o->executors > 1)
		profile_gather(out, o, m);
	fclose(out);
	if (!rc)
		printf("profile: %s\n", o->bench.profile);
	return rc ? 1 : 0;
}

static int cmd_bench(const zp_serve_cfg *o, zp_model *m)
{
	if (o->bench.profile)
		return bench_profile(o, m);
	int B = o->bench.seqs, L = o->bench.seq_tokens, N = o->executors;
	int each = zp_serve_cfg_threads(o);
	zp_req *reqs = zp_xcalloc((size_t)B * N, sizeof *reqs);
	double best = 1e30, total = 0;
	zp_fwd_stats st;
	zp_engine *g;
	zp_err e;
	zp_engine_cfg ec = { .executors = N, .parallel = o->parallel, .transport = o->transport,
			     .threads_per_executor = each, .batch_tokens_max = B * L,
			     .offload_window = o->offload_window, .device = o->device };

	if (!(g = zp_engine_start(m, &ec, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		free(reqs);
		return 1;
	}
	size_t resident = zp_engine_resident_bytes(g);
	const zp_place_calib *cal = zp_engine_calib(g); /* asyncep in effect */
	if (cal)
		printf("calibration: expert_gflop_s=%.1f gather_ms=%.3f gamma=%.1f "
		       "threshold_gflop=%.3f threshold_tokens=%.0f\n", cal->flops_per_s * 1e-9,
		       cal->gather_s * 1e3, cal->gamma, cal->threshold_flops * 1e-9,
		       cal->threshold_tokens);
	for (int x = 0; x < N; x++) /* each executor its own copy of the same batch */
		bench_reqs(reqs + (size_t)x * B, B, L, m->cfg.vocab);
	bench_round(g, reqs, B, &st); /* warm-up */
	for (int it = 0; it < o->bench.iters; it++) {
		double dt = bench_round(g, reqs, B, &st);
		total += dt;
		best = dt < best ? dt : best;
		printf("iter=%d seconds=%.4f attn_s=%.4f mlp_s=%.4f out_s=%.4f sync_s=%.4f "
		       "tok_s=%.1f gflop_s=%.1f min_router_gap=%.3g\n", it, dt, st.attn_s, st.mlp_s,
		       st.out_s, st.sync_s, (double)N * B * L / dt, N * st.flops / dt * 1e-9,
		       (double)st.min_route_gap);
	}
	if (zp_engine_parallel(g) == ZP_PAR_ASYNCEP)
		bench_overlap(g, m);
	double mean = total / o->bench.iters;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("tokens=%d seqs=%d executors=%d parallel=%s threads=%d dtype=%s isa=%s "
	       "resident_mb=%.0f peak_rss_mb=%.0f mean_s=%.4f best_s=%.4f gflop_s=%.1f "
	       "prefill_tok_s=%.1f\n", L, B, N,
	       zp_parallel_name(zp_engine_parallel(g)), each * N,
	       zp_model_dtype_name(m), zp_device_kernels((enum zp_device)o->device),
	       (double)resident / (1 << 20),
	       (double)ru.ru_maxrss / 1024, mean, best, N * st.flops / mean * 1e-9,
	       (double)N * B * L / mean);
	zp_engine_stop(g);
	for (size_t s = 0; s < (size_t)B * N; s++)
		zp_req_free(&reqs[s]);
	free(reqs);
	return 0;
}

/* ---- tokenize ----------------------------------------------------------------- */

static int cmd_tokenize(int argc, char **argv)
{
	zp_err e;
	if (argc != 4 || strcmp(argv[2], "--tokenizer")) {
		usage(stderr);
		return 2;
	}
	zp_tok *t = zp_tok_load(argv[3], &e);
	if (!t) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load tokenizer\" error=\"%s\"", e.msg);
		return 1;
	}
	zp_tok_state *s = zp_tok_state_new(t);
	struct reader rd = { .buf = zp_xmalloc(1 << 16), .cap = 1 << 16 };
	int cap = 1 << 16, bad = 0;
	int32_t *ids = zp_xmalloc((size_t)cap * sizeof *ids);
	double enc_s = 0, bytes = 0;
	char *line;
	size_t len;
	bool too_long;
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	while (!ferror(stdout) && read_line(&rd, &line, &len, &too_long)) {
		zp_json_err je = { .msg = "the line is too long" };
		cJSON *o = too_long ? NULL : zp_json_parse_err(line, len, true, &je);
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
		out.len = 0;
		if (!o) { /* why, as the server would say it */
			zp_buf_puts(&out, "{\"error\":");
			zp_buf_json_str(&out, je.msg);
			zp_buf_puts(&out, "}\n");
			bad++;
		} else if (!cJSON_IsString(text)) {
			zp_buf_puts(&out, "{\"error\":\"each line must be {\\\"text\\\": string}\"}\n");
			bad++;
		} else {
			size_t n = zp_json_strlen(text); /* NUL bytes (\u0000) included */
			double t0 = zp_now_s();
			int k = zp_tok_encode(s, text->valuestring, n, ids, cap);
			if (k > cap) {
				cap = k;
				ids = realloc(ids, (size_t)cap * sizeof *ids);
				ZP_ASSERT(ids);
				k = zp_tok_encode(s, text->valuestring, n, ids, cap);
			}
			enc_s += zp_now_s() - t0;
			bytes += (double)n;
			if (k < 0) {
				zp_buf_printf(&out, "{\"error\":\"text over %zu bytes\"}\n",
					      zp_tok_state_text_max(s));
				bad++;
				fwrite(out.p, 1, out.len, stdout);
				cJSON_Delete(o);
				continue;
			}
			zp_buf_puts(&out, "{\"ids\":[");
			for (int i = 0; i < k; i++)
				zp_buf_printf(&out, "%s%d", i ? "," : "", ids[i]);
			zp_buf_puts(&out, "]}\n");
		}
		fwrite(out.p, 1, out.len, stdout);
		cJSON_Delete(o);
	}
	bool failed = output_failed("tokenize");
	fprintf(stderr, "tokenize: bytes=%.0f encode_s=%.4f encode_mb_s=%.2f bad_lines=%d\n", bytes,
		enc_s, bytes / 1e6 / ZP_MAX(enc_s, 1e-9), bad);
	zp_buf_free(&out);
	free(ids);
	free(rd.buf);
	zp_tok_state_free(s);
	zp_tok_free(t);
	return bad || failed ? 1 : 0;
}

/* prefill or bench: the flags (the key table in serve_config.c), the model,
   the command. The exit code: 2 for a usage error. */
static int run(int argc, char **argv)
{
	unsigned cmd = zp_cmd_of(argv[1]);
	zp_serve_cfg c;
	zp_model m;
	zp_err e;
	int rc = 2;

	if (zp_serve_cfg_args(&c, argc, argv, &e)) {
		fprintf(stderr, "zprefill %s: %s (zprefill %s --help lists the flags)\n", argv[1],
			e.msg, argv[1]);
		goto out;
	}
	zp_log_min = (enum zp_log_level)c.log_level;
	if (cmd == ZP_CMD_BENCH && (long)c.bench.seq_tokens * c.bench.seqs > ZP_BATCH_TOKENS_LIMIT) {
		fprintf(stderr, "zprefill bench: --tokens x --seqs over %d\n", ZP_BATCH_TOKENS_LIMIT);
		goto out;
	}
	if (zp_serve_cfg_check_fp8(&c, &e)) {
		fprintf(stderr, "zprefill %s: %s\n", argv[1], e.msg);
		goto out;
	}
	int lthreads = zp_serve_cfg_threads(&c) * c.executors;
	const zp_wlayout *lay = zp_device_layout((enum zp_device)c.device);
	zp_load_opts lo = zp_load_opts_of(c.dtype, c.random_weights);
	lo.fp8_compute = (enum zp_fp8_compute)c.fp8_compute;
	if (zp_model_load_opts(&m, c.model, &lo, lay, lthreads, NULL, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load model\" error=\"%s\"", e.msg);
		rc = 1;
		goto out;
	}
	int bad = zp_serve_cfg_seq_tokens(&c, m.cfg.max_positions, &e) ||
		  zp_serve_cfg_check_kv(&c, &e);
	if (!bad && c.bench.seq_tokens > m.cfg.max_positions)
		bad = zp_errf(&e, "--tokens %d is over the model's max_position_embeddings %d",
			      c.bench.seq_tokens, m.cfg.max_positions);
	if (bad) {
		fprintf(stderr, "zprefill %s: %s\n", argv[1], e.msg);
		zp_model_free(&m);
		goto out;
	}
	rc = cmd == ZP_CMD_PREFILL ? cmd_prefill(&c, &m) : cmd_bench(&c, &m);
	zp_model_free(&m);
out:
	zp_serve_cfg_free(&c);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned cmd = argc >= 2 ? zp_cmd_of(argv[1]) : 0;

	if (cmd && wants_help(argc, argv)) {
		zp_serve_cfg_usage(cmd, stdout);
		return 0;
	}
	/* asked for: the usage on stdout, exit 0 (a usage error is stderr, 2) */
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
			  !strcmp(argv[1], "help"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "tokenize") && wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	if (cmd == ZP_CMD_SERVE)
		return zp_serve_main(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc, argv);
	if (argc >= 2 && (!strcmp(argv[1], "score") || !strcmp(argv[1], "classify") ||
			  !strcmp(argv[1], "embed") || !strcmp(argv[1], "health")))
		return zp_client_main(argc, argv);
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	return run(argc, argv);
}
