/* main.c -- the zprefill command line: `prefill` (offline JSONL scoring),
   `bench` and `tokenize` here; `serve` (serve.h) and the socket clients
   `score|classify|embed|health` (client.h). For prefill and bench the driver
   thread owns the model and one forward workspace (with its worker pool). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "client.h"
#include "engine.h"
#include "forward.h"
#include "json.h"
#include "model.h"
#include "req_json.h"
#include "request.h"
#include "serve.h"
#include "tokenizer.h"
#include "util.h"

#define LINE_MAX_BYTES (64u << 20)

struct opts {
	const char *model;
	enum zp_wtype wtype;
	int threads;
	int max_tokens;		/* per prompt */
	int batch_tokens_max;	/* per forward (--max-batch-tokens) */
	int tokens, seqs, iters; /* bench */
	int executors;
	enum zp_parallel parallel;
	const char *transport;
	int offload;		/* asyncep offload window (0: off) */
};

static void usage(void)
{
	fprintf(stderr,
		"usage: zprefill prefill --model DIR [--dtype fp32|bf16] [--threads N]\n"
		"                        [--max-tokens N] [--max-batch-tokens N]\n"
		"                        [--executors N --parallel asyncep|dpep|replicate]\n"
		"                        [--transport cpu] [--offload K (asyncep, 2..16)]\n"
		"         reads one JSON request per line on stdin, writes one result per line\n"
		"         (\"prompt\" text and \"candidates\" strings need DIR/tokenizer.json)\n"
		"       zprefill bench --model DIR --tokens L --seqs B (<= 1024) [--threads N]\n"
		"                      [--dtype fp32|bf16] [--iters N] [--executors N]\n"
		"                      [--parallel asyncep|dpep|replicate] [--transport cpu]\n"
		"                      [--offload K]\n"
		"       zprefill tokenize --tokenizer FILE   JSONL {\"text\"} in, {\"ids\"} out;\n"
		"                      encode MB/s on stderr\n"
		"       zprefill serve --model DIR --socket PATH [--config FILE] (see --help)\n"
		"       zprefill score|classify|embed|health --socket PATH ... (a client)\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "model", required_argument, 0, 'm' },	 { "dtype", required_argument, 0, 'd' },
		{ "threads", required_argument, 0, 't' }, { "max-tokens", required_argument, 0, 'x' },
		{ "max-batch-tokens", required_argument, 0, 'b' },
		{ "tokens", required_argument, 0, 'L' }, { "seqs", required_argument, 0, 'B' },
		{ "iters", required_argument, 0, 'i' },	 { "help", no_argument, 0, 'h' },
		{ "executors", required_argument, 0, 'N' }, { "parallel", required_argument, 0, 'P' },
		{ "transport", required_argument, 0, 'T' }, { "offload", required_argument, 0, 'O' },
		{ 0, 0, 0, 0 }
	};
	zp_err e;
	int c, bad = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	*o = (struct opts){ .wtype = ZP_W_BF16, .threads = ncpu > 0 ? (int)ncpu : 1,
			    .batch_tokens_max = ZP_BATCH_TOKENS_DEFAULT, .iters = 3, .executors = 1,
			    .parallel = ZP_PARALLEL_DEFAULT, .transport = "cpu" };
	optind = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'd':
			if (strcmp(optarg, "fp32") == 0)
				o->wtype = ZP_W_F32;
			else if (strcmp(optarg, "bf16") == 0)
				o->wtype = ZP_W_BF16;
			else
				bad = fprintf(stderr, "zprefill: --dtype must be fp32 or bf16\n");
			break;
		case 't': bad |= parse_int(optarg, 1, 1024, &o->threads); break;
		case 'x': bad |= parse_int(optarg, 1, 1 << 24, &o->max_tokens); break;
		case 'b': bad |= parse_int(optarg, 1, ZP_BATCH_TOKENS_LIMIT, &o->batch_tokens_max); break;
		case 'L': bad |= parse_int(optarg, 1, 1 << 24, &o->tokens); break;
		case 'B': bad |= parse_int(optarg, 1, ZP_FWD_SEQS_MAX, &o->seqs); break;
		case 'i': bad |= parse_int(optarg, 1, 1 << 20, &o->iters); break;
		case 'N': bad |= parse_int(optarg, 1, ZP_EXECUTORS_MAX, &o->executors); break;
		case 'P':
			if (zp_parallel_parse(optarg, &o->parallel, &e))
				bad = fprintf(stderr, "zprefill: %s\n", e.msg);
			break;
		case 'T': o->transport = optarg; break;
		case 'O': bad |= parse_int(optarg, 2, ZP_PLACE_WINDOW_MAX, &o->offload); break;
		default: bad = 1;
		}
	}
	if (bad || optind != argc || !o->model) {
		usage();
		return -1;
	}
	return 0;
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

/* ---- prefill ------------------------------------------------------------------ */

/* The driver runs lines through the same scheduler and engine as the server:
   each good line is a job of one sequence, admitted to the scheduler; the
   engine cuts batches from it for idle executors. Results are written in
   input order: a line is written once every line before it was. A batch is
   cut when the token budget is reached, or when the input pauses (then
   everything queued is answered before more is read): there is no timed
   wait. */

/* One input line, from its reading until its result line is written. */
struct line {
	zp_job job;		/* its one sequence (job.seq = &req); first: a job is its line */
	zp_req req;
	bool bad;		/* refused at parse: err says why */
	zp_req_error err;
	bool done;		/* good: its sequence came back */
};

struct driver {
	zp_engine *g;
	zp_sched sched;
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

/* A batch came back: its lines are done (failed with it, if it failed). */
static void complete(struct driver *d, zp_batch *b)
{
	for (int k = 0; k < b->n; k++) {
		zp_job *j = b->job[k];
		if (b->failed && !j->failed) {
			j->failed = true;
			snprintf(j->err, sizeof j->err, "%s", b->err);
		}
		if (zp_sched_seq_done(&d->sched, j)) {
			zp_sched_finish(&d->sched, j);
			((struct line *)j)->done = true;
		}
	}
	zp_engine_release(d->g, b);
}

/* Cut what is due (force: everything queued), take what came back; with
   block, wait for one batch at least (one must be out or queued). */
static void pump(struct driver *d, bool force, bool block)
{
	zp_batch *b;
	zp_engine_dispatch(d->g, &d->sched, zp_now_s(), force);
	if (block) {
		b = zp_engine_wait(d->g);
		ZP_ASSERT(b);
		complete(d, b);
	}
	while ((b = zp_engine_poll(d->g)))
		complete(d, b);
	write_ready(d);
}

/* Answer every line read so far. */
static void drain(struct driver *d)
{
	write_ready(d);
	while (d->head != d->tail)
		pump(d, true, true); /* the head line is good and not done: it is queued or out */
}

/* Line L (parsed) joins the order ring, and the scheduler when it is good. */
static void add_line(struct driver *d, struct line *L)
{
	if (!L->bad) {
		L->job.seq = &L->req;
		L->job.nseq = 1;
		L->job.tokens = L->req.ntok;
		while (zp_sched_admit(&d->sched, &L->job, zp_now_s()))
			pump(d, true, true); /* full: answer some first */
	}
	d->tail++;
}

static int cmd_prefill(const struct opts *o, zp_model *m)
{
	char tokpath[4096];
	zp_tok *tok = NULL;
	zp_err e;
	snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", o->model);
	if (access(tokpath, F_OK) == 0 && !(tok = zp_tok_load(tokpath, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load tokenizer\" error=\"%s\"", e.msg);
		return 1;
	}
	/* a prompt longer than the batch budget runs alone, in a forward sized for it */
	int fwd_tokens = ZP_MAX(o->batch_tokens_max, o->max_tokens);
	struct driver d = { .cap = lines_cap(o->executors) };
	zp_engine_cfg ec = { o->executors, o->parallel, o->transport,
			     ZP_MAX(1, o->threads / o->executors), fwd_tokens, NULL, o->offload };
	if (!(d.g = zp_engine_start(m, &ec, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		zp_tok_free(tok);
		return 1;
	}
	zp_sched_init(&d.sched, (int)d.cap / 2, (long)d.cap / 2 * fwd_tokens, o->batch_tokens_max,
		      HUGE_VAL);
	zp_req_limits lim = { .vocab = m->cfg.vocab, .max_tokens = o->max_tokens,
			      .hidden = m->cfg.hidden, .tok = tok ? zp_tok_state_new(tok) : NULL };
	struct reader rd = { .buf = zp_xmalloc(1 << 16), .cap = 1 << 16 };
	d.lines = zp_xcalloc(d.cap, sizeof *d.lines);
	char *line;
	size_t len;
	bool too_long;

	zp_buf_init(&d.out, 1 << 16);
	while (read_line(&rd, &line, &len, &too_long)) {
		if (!too_long && (len == 0 || (len == 1 && line[0] == '\r')))
			continue;
		while (d.tail - d.head == d.cap) /* bad lines wait behind a good one */
			pump(&d, true, true);
		struct line *L = &d.lines[d.tail & (d.cap - 1)];
		memset(L, 0, sizeof *L);
		if (too_long) {
			L->req.id_json = strdup("null");
			L->bad = true;
			L->err = (zp_req_error){ .type = "invalid_request_error", .code = 413 };
			snprintf(L->err.message, sizeof L->err.message, "request line over %u bytes",
				 LINE_MAX_BYTES);
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
	zp_log(ZP_LOG_INFO, "msg=\"prefill done\" requests=%d executors=%d parallel=%s", d.served,
	       zp_engine_executors(d.g), zp_parallel_name(o->parallel));
	zp_engine_stop(d.g);
	zp_tok_state_free(lim.tok);
	zp_tok_free(tok);
	zp_buf_free(&d.out);
	free(d.lines);
	free(rd.buf);
	return 0;
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
	zp_place_layer_stats *st = zp_xcalloc((size_t)nl, sizeof *st), *sum = zp_xcalloc((size_t)nl, sizeof *sum);
	double lay = 0, wait = 0;
	for (int x = 0; x < zp_engine_executors(g); x++) {
		zp_place_stats(zp_engine_place(g), x, st);
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
	free(st);
	free(sum);
}

static int cmd_bench(const struct opts *o, zp_model *m)
{
	int B = o->seqs, L = o->tokens, N = o->executors, each = ZP_MAX(1, o->threads / N);
	zp_req *reqs = zp_xcalloc((size_t)B * N, sizeof *reqs);
	double best = 1e30, total = 0;
	zp_fwd_stats st;
	zp_engine *g;
	zp_err e;
	zp_engine_cfg ec = { N, o->parallel, o->transport, each, B * L, NULL, o->offload };

	if (!(g = zp_engine_start(m, &ec, &e))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		free(reqs);
		return 1;
	}
	size_t resident = 0;
	for (int x = 0; x < N; x++)
		resident += zp_place_resident_bytes(zp_engine_place(g), x);
	if (zp_place_source(zp_engine_place(g), 0)) { /* asyncep in effect */
		zp_place_calib cal;
		if (zp_place_calibrate(zp_engine_place(g), each, &cal, &e) == 0)
			printf("calibration: expert_gflop_s=%.1f gather_ms=%.3f gamma=%.1f "
			       "threshold_gflop=%.3f threshold_tokens=%.0f\n", cal.flops_per_s * 1e-9,
			       cal.gather_s * 1e3, cal.gamma, cal.threshold_flops * 1e-9,
			       cal.threshold_tokens);
	}
	for (int x = 0; x < N; x++) /* each executor its own copy of the same batch */
		bench_reqs(reqs + (size_t)x * B, B, L, m->cfg.vocab);
	bench_round(g, reqs, B, &st); /* warm-up */
	for (int it = 0; it < o->iters; it++) {
		double dt = bench_round(g, reqs, B, &st);
		total += dt;
		best = dt < best ? dt : best;
		printf("iter=%d seconds=%.4f attn_s=%.4f mlp_s=%.4f out_s=%.4f sync_s=%.4f "
		       "tok_s=%.1f gflop_s=%.1f min_router_gap=%.3g\n", it, dt, st.attn_s, st.mlp_s,
		       st.out_s, st.sync_s, (double)N * B * L / dt, N * st.flops / dt * 1e-9,
		       (double)st.min_route_gap);
	}
	if (zp_place_source(zp_engine_place(g), 0))
		bench_overlap(g, m);
	double mean = total / o->iters;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("tokens=%d seqs=%d executors=%d parallel=%s threads=%d dtype=%s isa=%s "
	       "resident_mb=%.0f peak_rss_mb=%.0f mean_s=%.4f best_s=%.4f gflop_s=%.1f "
	       "prefill_tok_s=%.1f\n", L, B, N, zp_parallel_name(o->parallel), o->threads,
	       m->wtype == ZP_W_F32 ? "fp32" : "bf16", zp_gemm_isa(), (double)resident / (1 << 20),
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
		usage();
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
	while (read_line(&rd, &line, &len, &too_long)) {
		cJSON *o = too_long ? NULL : zp_json_parse(line, len);
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
		out.len = 0;
		if (!cJSON_IsString(text)) {
			zp_buf_puts(&out, "{\"error\":\"each line must be {\\\"text\\\": string}\"}\n");
			bad++;
		} else {
			size_t n = strlen(text->valuestring);
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
	fflush(stdout);
	fprintf(stderr, "tokenize: bytes=%.0f encode_s=%.4f encode_mb_s=%.2f bad_lines=%d\n", bytes,
		enc_s, bytes / 1e6 / ZP_MAX(enc_s, 1e-9), bad);
	zp_buf_free(&out);
	free(ids);
	free(rd.buf);
	zp_tok_state_free(s);
	zp_tok_free(t);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	zp_model m;
	zp_err e;
	int rc;

	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return zp_serve_main(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc, argv);
	if (argc >= 2 && (!strcmp(argv[1], "score") || !strcmp(argv[1], "classify") ||
			  !strcmp(argv[1], "embed") || !strcmp(argv[1], "health")))
		return zp_client_main(argc, argv);
	if (argc < 2 || (strcmp(argv[1], "prefill") && strcmp(argv[1], "bench"))) {
		usage();
		return 2;
	}
	if (parse_opts(argc, argv, &o))
		return 2;
	if (strcmp(argv[1], "bench") == 0 && (!o.tokens || !o.seqs)) {
		fprintf(stderr, "zprefill bench: --tokens and --seqs are required\n");
		return 2;
	}
	if (strcmp(argv[1], "bench") == 0 && (long)o.tokens * o.seqs > ZP_BATCH_TOKENS_LIMIT) {
		fprintf(stderr, "zprefill bench: --tokens x --seqs over %d\n", ZP_BATCH_TOKENS_LIMIT);
		return 2;
	}
	if (zp_model_load(&m, o.model, o.wtype, o.threads, NULL, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load model\" error=\"%s\"", e.msg);
		return 1;
	}
	if (!o.max_tokens)
		o.max_tokens = ZP_MIN(m.cfg.max_positions, ZP_SEQ_TOKENS_DEFAULT);
	if (o.max_tokens > m.cfg.max_positions || o.tokens > m.cfg.max_positions) {
		fprintf(stderr, "zprefill: a prompt of %d tokens is over the model's "
			"max_position_embeddings (%d)\n", ZP_MAX(o.max_tokens, o.tokens),
			m.cfg.max_positions);
		zp_model_free(&m);
		return 2;
	}
	rc = strcmp(argv[1], "prefill") == 0 ? cmd_prefill(&o, &m) : cmd_bench(&o, &m);
	zp_model_free(&m);
	return rc;
}
