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
#include "forward.h"
#include "json.h"
#include "model.h"
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
};

static void usage(void)
{
	fprintf(stderr,
		"usage: zprefill prefill --model DIR [--dtype fp32|bf16] [--threads N]\n"
		"                        [--max-tokens N] [--max-batch-tokens N]\n"
		"         reads one JSON request per line on stdin, writes one result per line\n"
		"         (\"prompt\" text and \"candidates\" strings need DIR/tokenizer.json)\n"
		"       zprefill bench --model DIR --tokens L --seqs B (<= 1024) [--threads N]\n"
		"                      [--dtype fp32|bf16] [--iters N]\n"
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
		{ 0, 0, 0, 0 }
	};
	int c, bad = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	*o = (struct opts){ .wtype = ZP_W_BF16, .threads = ncpu > 0 ? (int)ncpu : 1,
			    .batch_tokens = 8192, .iters = 3 };
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

/* Run the batch's good requests in one forward, write every slot's line in
   order, and empty the batch. */
struct batch {
	struct slot *slots;	/* [BATCH_SEQS_MAX] */
	int n, tokens, served;
};

static void flush(zp_fwd *f, struct batch *b, zp_buf *out)
{
	zp_req *run[BATCH_SEQS_MAX];
	struct slot *slots = b->slots;
	int nrun = 0, n = b->n;
	for (int i = 0; i < n; i++)
		if (!slots[i].failed)
			run[nrun++] = &slots[i].req;
	if (nrun)
		zp_fwd_run(f, run, nrun);
	for (int i = 0; i < n; i++) {
		out->len = 0;
		if (slots[i].failed)
			zp_req_write_error(slots[i].req.id_json, &slots[i].err, out);
		else
			zp_req_write_result(&slots[i].req, out);
		zp_buf_puts(out, "\n");
		fwrite(out->p, 1, out->len, stdout);
		zp_req_free(&slots[i].req);
	}
	fflush(stdout);
	b->served += n;
	b->n = b->tokens = 0;
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
	zp_req_limits lim = { .vocab = m->cfg.vocab, .max_tokens = o->max_tokens,
			      .hidden = m->cfg.hidden, .tok = tok ? zp_tok_state_new(tok) : NULL };
	struct reader rd = { .buf = zp_xmalloc(1 << 16), .cap = 1 << 16 };
	struct batch b = { .slots = zp_xcalloc(BATCH_SEQS_MAX, sizeof *b.slots) };
	zp_fwd *f = zp_fwd_new(m, o->threads, ZP_MAX(o->batch_tokens, o->max_tokens));
	zp_buf out;
	char *line;
	size_t len;
	bool too_long;

	zp_buf_init(&out, 1 << 16);
	while (read_line(&rd, &line, &len, &too_long)) {
		struct slot s = { 0 };
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
		if (b.n == BATCH_SEQS_MAX || b.tokens + ntok > o->batch_tokens)
			flush(f, &b, &out);
		b.slots[b.n++] = s;
		b.tokens += ntok;
		if (!more_input_now(&rd)) /* nothing waiting: answer what we have now */
			flush(f, &b, &out);
	}
	flush(f, &b, &out);
	zp_log(ZP_LOG_INFO, "msg=\"prefill done\" requests=%d", b.served);
	zp_tok_state_free(lim.tok);
	zp_tok_free(tok);
	zp_buf_free(&out);
	zp_fwd_free(f);
	free(b.slots);
	free(rd.buf);
	return 0;
}

/* ---- bench -------------------------------------------------------------------- */

static int cmd_bench(const struct opts *o, zp_model *m)
{
	int B = o->seqs, L = o->tokens;
	zp_req *reqs = zp_xcalloc((size_t)B, sizeof *reqs), **run = zp_xcalloc((size_t)B, sizeof *run);
	zp_fwd *f = zp_fwd_new(m, o->threads, B * L);
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	double best = 1e30, total = 0, flops = 0;

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
			reqs[s].tokens[i] = (int32_t)((seed >> 33) % (uint64_t)m->cfg.vocab);
		}
		run[s] = &reqs[s];
	}
	zp_fwd_run(f, run, B); /* warm-up */
	for (int it = 0; it < o->iters; it++) {
		double t0 = zp_now_s();
		zp_fwd_run(f, run, B);
		double dt = zp_now_s() - t0;
		zp_fwd_stats st = zp_fwd_last_stats(f);
		flops = st.flops;
		total += dt;
		best = dt < best ? dt : best;
		printf("iter=%d seconds=%.4f attn_s=%.4f mlp_s=%.4f out_s=%.4f tok_s=%.1f "
		       "gflop_s=%.1f min_router_gap=%.3g\n", it, dt, st.attn_s, st.mlp_s, st.out_s,
		       B * L / dt, st.flops / dt * 1e-9, (double)st.min_route_gap);
	}
	double mean = total / o->iters;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("tokens=%d seqs=%d threads=%d dtype=%s isa=%s weights_mb=%.0f peak_rss_mb=%.0f "
	       "mean_s=%.4f best_s=%.4f gflop_s=%.1f prefill_tok_s=%.1f\n", L, B, o->threads,
	       m->wtype == ZP_W_F32 ? "fp32" : "bf16", zp_gemm_isa(),
	       (double)(m->arena_bytes + m->expert_bytes_total) / (1 << 20),
	       (double)ru.ru_maxrss / 1024, mean, best, flops / mean * 1e-9, B * L / mean);
	for (int s = 0; s < B; s++)
		zp_req_free(&reqs[s]);
	free(reqs);
	free(run);
	zp_fwd_free(f);
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
