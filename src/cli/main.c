/* main.c -- the zprefill command line: `prefill` (offline JSONL scoring),
   `bench` and `tokenize` here; `serve` (serve.h) and the socket clients
   `score|classify|embed|health` (client.h). For prefill and bench the driver
   thread owns the model and one forward workspace (with its worker pool). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
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
#define BATCH_SEQS_MAX ZP_FWD_SEQS_MAX
#define BATCH_TOKENS_MAX (1 << 20) /* tokens in one forward */

struct opts {
	const char *model;
	enum zp_wtype wtype;
	int threads;
	int max_tokens;		/* per prompt */
	int batch_tokens;	/* per forward */
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
			    .batch_tokens = 8192, .iters = 3, .executors = 1,
			    .parallel = ZP_PAR_REPLICATE, .transport = "cpu" };
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
		case 'b': bad |= parse_int(optarg, 1, BATCH_TOKENS_MAX, &o->batch_tokens); break;
		case 'L': bad |= parse_int(optarg, 1, 1 << 24, &o->tokens); break;
		case 'B': bad |= parse_int(optarg, 1, ZP_FWD_SEQS_MAX, &o->seqs); break;
		case 'i': bad |= parse_int(optarg, 1, 1 << 20, &o->iters); break;
		case 'N': bad |= parse_int(optarg, 1, ZP_EP_EXECUTORS_MAX, &o->executors); break;
		case 'P':
			if (zp_parallel_parse(optarg, &o->parallel, &e))
				bad = fprintf(stderr, "zprefill: %s\n", e.msg);
			break;
		case 'T': o->transport = optarg; break;
		case 'O': bad |= parse_int(optarg, 2, 16, &o->offload); break;
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

struct slot {
	zp_req req;
	bool failed;
	zp_req_error err;
};

/* Batches in submission order, one per executor at most: batch j runs on
   executor j % N, so waiting for the oldest frees the executor the next one
   needs, and results are written in input order. */
struct batch {
	struct slot *slots;	/* [BATCH_SEQS_MAX] */
	int n, tokens;
	bool out;		/* submitted, not yet written */
};

struct driver {
	zp_engine g;
	struct batch *b;	/* [N] */
	int next, oldest;	/* batch numbers: next to fill, oldest submitted */
	int served;
	zp_buf out;
	bool group;		/* dpep: executors start their forwards together */
	int staged;		/* dpep: batches prepared, not yet started */
};

/* dpep: start the staged batches and an empty forward on every other
   executor (it still serves its experts), then wait for those empty ones. */
static void launch_group(struct driver *d)
{
	int first = d->next - d->staged, n = d->g.n;
	bool has[ZP_EP_EXECUTORS_MAX] = { false };
	if (!d->staged)
		return;
	for (int j = first; j < d->next; j++)
		has[j % n] = true;
	for (int x = 0; x < n; x++) {
		if (!has[x])
			d->g.exec[x].batch.n = d->g.exec[x].batch.tokens = 0;
		zp_exec_submit(&d->g.exec[x]);
	}
	for (int x = 0; x < n; x++)
		if (!has[x])
			zp_engine_wait(&d->g, x);
	d->staged = 0;
}

/* Wait for batch number j, write every slot's line in order, empty it. */
static void finish(struct driver *d, int j)
{
	struct batch *b = &d->b[j % d->g.n];
	zp_batch *zb = zp_engine_wait(&d->g, j % d->g.n);
	for (int i = 0; i < b->n; i++) {
		struct slot *s = &b->slots[i];
		d->out.len = 0;
		if (!s->failed && zb->failed) { /* the forward failed: every line of it says so */
			s->failed = true;
			s->err = (zp_req_error){ .type = "internal_error", .code = 500 };
			snprintf(s->err.message, sizeof s->err.message, "forward failed: %.200s", zb->err);
		}
		if (s->failed)
			zp_req_write_error(s->req.id_json, &s->err, &d->out);
		else
			zp_req_write_result(&s->req, &d->out);
		zp_buf_puts(&d->out, "\n");
		fwrite(d->out.p, 1, d->out.len, stdout);
		zp_req_free(&s->req);
	}
	fflush(stdout);
	d->served += b->n;
	b->n = b->tokens = 0;
	b->out = false;
	d->oldest = j + 1;
}

/* Hand the filling batch to its executor (its good requests). */
static void submit(struct driver *d)
{
	struct batch *b = &d->b[d->next % d->g.n];
	zp_exec *x = &d->g.exec[d->next % d->g.n];
	if (!b->n)
		return;
	x->batch.n = x->batch.tokens = 0;
	for (int i = 0; i < b->n; i++)
		if (!b->slots[i].failed) {
			x->batch.req[x->batch.n++] = &b->slots[i].req;
			x->batch.tokens += b->slots[i].req.ntok;
		}
	b->out = true;
	x->batch.failed = 0;
	if (d->group) /* started with the others (launch_group) */
		d->staged++;
	else /* even with only bad lines (n = 0): it comes back in its turn */
		zp_exec_submit(x);
	d->next++;
	if (d->group && d->staged == d->g.n)
		launch_group(d);
	if (d->b[d->next % d->g.n].out) /* the executor it needs holds the oldest batch */
		finish(d, d->oldest);
}

static void drain(struct driver *d)
{
	launch_group(d);
	while (d->oldest < d->next)
		finish(d, d->oldest);
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
	struct driver d = { .group = o->parallel == ZP_PAR_DPEP };
	zp_engine_cfg ec = { o->executors, o->parallel, o->transport,
			     ZP_MAX(1, o->threads / o->executors),
			     ZP_MAX(o->batch_tokens, o->max_tokens), -1, o->offload };
	if (zp_engine_start(&d.g, m, &ec, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		zp_tok_free(tok);
		return 1;
	}
	zp_req_limits lim = { .vocab = m->cfg.vocab, .max_tokens = o->max_tokens,
			      .hidden = m->cfg.hidden, .tok = tok ? zp_tok_state_new(tok) : NULL };
	struct reader rd = { .buf = zp_xmalloc(1 << 16), .cap = 1 << 16 };
	d.b = zp_xcalloc((size_t)d.g.n, sizeof *d.b);
	for (int i = 0; i < d.g.n; i++)
		d.b[i].slots = zp_xcalloc(BATCH_SEQS_MAX, sizeof *d.b[i].slots);
	char *line;
	size_t len;
	bool too_long;

	zp_buf_init(&d.out, 1 << 16);
	while (read_line(&rd, &line, &len, &too_long)) {
		struct slot s = { 0 };
		struct batch *b = &d.b[d.next % d.g.n];
		if (too_long) {
			s.req.id_json = strdup("null");
			s.failed = true;
			s.err = (zp_req_error){ .type = "invalid_request_error", .code = 413 };
			snprintf(s.err.message, sizeof s.err.message, "request line over %u bytes",
				 LINE_MAX_BYTES);
		} else if (len == 0 || (len == 1 && line[0] == '\r')) {
			continue;
		} else {
			s.failed = zp_req_parse(&s.req, line, len, &lim, &s.err) != 0;
		}
		int ntok = s.failed ? 0 : s.req.ntok;
		if (b->n == BATCH_SEQS_MAX || b->tokens + ntok > o->batch_tokens) {
			submit(&d);
			b = &d.b[d.next % d.g.n];
		}
		b->slots[b->n++] = s;
		b->tokens += ntok;
		if (!more_input_now(&rd)) { /* nothing waiting: answer what we have now */
			submit(&d);
			drain(&d);
		}
	}
	submit(&d);
	drain(&d);
	zp_log(ZP_LOG_INFO, "msg=\"prefill done\" requests=%d executors=%d parallel=%s", d.served,
	       d.g.n, zp_parallel_name(o->parallel));
	zp_engine_stop(&d.g);
	zp_tok_state_free(lim.tok);
	zp_tok_free(tok);
	zp_buf_free(&d.out);
	for (int i = 0; i < o->executors; i++)
		free(d.b[i].slots);
	free(d.b);
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
	double t0 = zp_now_s();
	for (int x = 0; x < g->n; x++) {
		zp_batch *b = &g->exec[x].batch;
		b->n = B;
		for (int s = 0; s < B; s++)
			b->req[s] = &reqs[(size_t)x * B + s];
		zp_exec_submit(&g->exec[x]);
	}
	for (int x = 0; x < g->n; x++) {
		zp_batch *b = zp_engine_wait(g, x);
		if (b->failed)
			zp_log(ZP_LOG_ERROR, "msg=\"forward failed\" executor=%d error=\"%s\"", x, b->err);
	}
	*st0 = zp_fwd_last_stats(g->exec[0].fwd);
	return zp_now_s() - t0;
}

/* Exposed gather wait per MoE layer, summed over executors and iterations. */
static void bench_overlap(zp_engine *g, const zp_model *m)
{
	int nl = m->cfg.layers;
	zp_ep_layer_stats *st = zp_xcalloc((size_t)nl, sizeof *st), *sum = zp_xcalloc((size_t)nl, sizeof *sum);
	double lay = 0, wait = 0;
	for (int x = 0; x < g->n; x++) {
		zp_ep_stats(g->ep, x, st);
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
	zp_engine g;
	zp_err e;
	zp_engine_cfg ec = { N, o->parallel, o->transport, each, B * L, -1, o->offload };

	if (zp_engine_start(&g, m, &ec, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start executors\" error=\"%s\"", e.msg);
		free(reqs);
		return 1;
	}
	size_t resident = 0;
	for (int x = 0; x < N; x++)
		resident += zp_ep_resident_bytes(g.ep, x);
	if (zp_ep_source(g.ep, 0)) { /* asyncep in effect */
		zp_ep_calib cal;
		if (zp_ep_calibrate(g.ep, each, &cal, &e) == 0)
			printf("calibration: expert_gflop_s=%.1f gather_ms=%.3f gamma=%.1f "
			       "threshold_gflop=%.3f threshold_tokens=%.0f\n", cal.flops_per_s * 1e-9,
			       cal.gather_s * 1e3, cal.gamma, cal.threshold_flops * 1e-9,
			       cal.threshold_tokens);
	}
	for (int x = 0; x < N; x++) /* each executor its own copy of the same batch */
		bench_reqs(reqs + (size_t)x * B, B, L, m->cfg.vocab);
	bench_round(&g, reqs, B, &st); /* warm-up */
	for (int it = 0; it < o->iters; it++) {
		double dt = bench_round(&g, reqs, B, &st);
		total += dt;
		best = dt < best ? dt : best;
		printf("iter=%d seconds=%.4f attn_s=%.4f mlp_s=%.4f out_s=%.4f sync_s=%.4f "
		       "tok_s=%.1f gflop_s=%.1f min_router_gap=%.3g\n", it, dt, st.attn_s, st.mlp_s,
		       st.out_s, st.sync_s, (double)N * B * L / dt, N * st.flops / dt * 1e-9,
		       (double)st.min_route_gap);
	}
	if (zp_ep_source(g.ep, 0))
		bench_overlap(&g, m);
	double mean = total / o->iters;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("tokens=%d seqs=%d executors=%d parallel=%s threads=%d dtype=%s isa=%s "
	       "resident_mb=%.0f peak_rss_mb=%.0f mean_s=%.4f best_s=%.4f gflop_s=%.1f "
	       "prefill_tok_s=%.1f\n", L, B, N, zp_parallel_name(o->parallel), o->threads,
	       m->wtype == ZP_W_F32 ? "fp32" : "bf16", zp_gemm_isa(), (double)resident / (1 << 20),
	       (double)ru.ru_maxrss / 1024, mean, best, N * st.flops / mean * 1e-9,
	       (double)N * B * L / mean);
	zp_engine_stop(&g);
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
	if (strcmp(argv[1], "bench") == 0 && (long)o.tokens * o.seqs > BATCH_TOKENS_MAX) {
		fprintf(stderr, "zprefill bench: --tokens x --seqs over %d\n", BATCH_TOKENS_MAX);
		return 2;
	}
	if (zp_model_load(&m, o.model, o.wtype, o.threads, NULL, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot load model\" error=\"%s\"", e.msg);
		return 1;
	}
	if (!o.max_tokens)
		o.max_tokens = ZP_MIN(m.cfg.max_positions, 8192);
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
