/* loadgen.c -- load generator for `zprefill serve`: C connections (one thread
   each, keep-alive) over the Unix socket send a request mix for a duration, or
   replay a JSONL file of /v1/prefill bodies once; prints requests/s, prompt
   tokens/s (as the server counts them), p50/p90/p99 latency and statuses.

     build/loadgen --socket S --conns 16 --seconds 10 --mix prefill:4,score:1,classify:1,embed:1
                   [--words 64] [--ids]       (token-id prompts: no tokenizer work)
     build/loadgen --socket S --conns 16 --replay FILE.jsonl
   A replay line "@T PATH BODY" (tools/gen_workload.py writes them) is sent to
   PATH at T seconds after the start, open loop: its latency counts from T,
   so a late send (every connection busy) counts against the server. */
#define _GNU_SOURCE
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "json.h"
#include "util.h"

#define CONNS_MAX 1024
#define LAT_MAX (1 << 22)

enum kind { K_PREFILL, K_SCORE, K_CLASSIFY, K_EMBED, K_COUNT };
static const char *kind_name[K_COUNT] = { "prefill", "score", "classify", "embed" };
static const char *kind_path[K_COUNT] = { "/v1/prefill", "/v1/score", "/classify",
					  "/v1/embeddings" };

static const char *sock;
static int conns = 8, words = 64, mix[K_COUNT] = { 1, 0, 0, 0 }, mix_total = 1, use_ids;
static double seconds = 5, t_end, t_start;
static char **replay;
static int nreplay;
static _Atomic int replay_next;

static double *lat;			/* seconds, per request */
static _Atomic long nlat, tokens, status_ok, status_503, status_other, io_errors;

static const char *vocab[] = { "the", "model", "scores", "each", "request", "quickly", "and",
			       "reads", "one", "prefill", "pass", "yes", "no", "review", "movie",
			       "great", "is", "a", "of", "to" };

static void text(char *out, size_t cap, unsigned *seed, int n)
{
	size_t len = 0;
	for (int i = 0; i < n && len + 16 < cap; i++) {
		const char *w = vocab[rand_r(seed) % (sizeof vocab / sizeof *vocab)];
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", w);
	}
}

static void ids(char *out, size_t cap, unsigned *seed, int n)
{
	size_t len = 0;
	for (int i = 0; i < n && len + 16 < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "," : "", 3 + rand_r(seed) % 500);
}

static enum kind pick(unsigned *seed)
{
	int r = rand_r(seed) % mix_total;
	for (int k = 0; k < K_COUNT; k++)
		if ((r -= mix[k]) < 0)
			return k;
	return K_PREFILL;
}

static void body_for(enum kind k, char *b, size_t cap, unsigned *seed)
{
	char t[16384];
	if (use_ids) {
		ids(t, sizeof t, seed, words);
		if (k == K_PREFILL)
			snprintf(b, cap, "{\"prompt_token_ids\":[%s],\"candidate_token_ids\":[283,341]}", t);
		else if (k == K_SCORE)
			snprintf(b, cap, "{\"query\":[%s],\"items\":[[5,6],[7,8]],\"label_token_ids\":[283,341]}", t);
		else
			snprintf(b, cap, "{\"input\":[%s]}", t);
		if (k == K_CLASSIFY) /* labels are text: classify needs the tokenizer */
			snprintf(b, cap, "{\"input\":\"the movie\",\"labels\":[\"yes\",\"no\"]}");
		return;
	}
	text(t, sizeof t, seed, words);
	if (k == K_PREFILL)
		snprintf(b, cap, "{\"prompt\":\"%s\",\"candidates\":[\"yes\",\"no\"]}", t);
	else if (k == K_SCORE)
		snprintf(b, cap, "{\"query\":\"%s\",\"items\":[\" yes\",\" no\"],\"label_token_ids\":[283,341]}", t);
	else if (k == K_CLASSIFY)
		snprintf(b, cap, "{\"input\":\"%s\",\"labels\":[\"positive\",\"negative\"]}", t);
	else
		snprintf(b, cap, "{\"input\":\"%s\"}", t);
}

static long tokens_of(const char *resp)
{
	const char *p = strstr(resp, "\"prompt_tokens\":");
	if (p)
		return atol(p + 16);
	p = strstr(resp, "\"num_prompt_tokens\":");
	return p ? atol(p + 20) : 0;
}

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
	char *body = zp_xmalloc(1 << 20), pathbuf[256];
	zp_buf out;
	zp_err e;
	zp_buf_init(&out, 1 << 16);
	int fd = zp_client_connect(sock, &e);
	for (;;) {
		const char *path = "/v1/prefill", *b = body;
		double t_due = 0; /* open loop: when it was due */
		if (replay) {
			int i = atomic_fetch_add(&replay_next, 1);
			if (i >= nreplay)
				break;
			b = replay[i];
			if (b[0] == '@') { /* "@T PATH BODY" */
				char *end;
				t_due = t_start + strtod(b + 1, &end);
				const char *sp = strchr(end + 1, ' ');
				if (!sp || (size_t)(sp - end - 1) >= 256)
					break;
				snprintf(pathbuf, sizeof pathbuf, "%.*s", (int)(sp - end - 1), end + 1);
				path = pathbuf;
				b = sp + 1;
				double wait = t_due - zp_now_s();
				if (wait > 0)
					usleep((useconds_t)(wait * 1e6));
			}
		} else {
			if (zp_now_s() >= t_end)
				break;
			enum kind k = pick(&seed);
			body_for(k, body, 1 << 20, &seed);
			path = kind_path[k];
		}
		if (fd < 0 && (fd = zp_client_connect(sock, &e)) < 0) {
			atomic_fetch_add(&io_errors, 1);
			usleep(1000);
			continue;
		}
		double t0 = zp_now_s();
		int st = zp_client_call(fd, "POST", path, b, strlen(b), &out, &e);
		double dt = zp_now_s() - (t_due > 0 ? t_due : t0);
		if (st < 0) {
			atomic_fetch_add(&io_errors, 1);
			close(fd);
			fd = -1;
			continue;
		}
		long i = atomic_fetch_add(&nlat, 1);
		if (i < LAT_MAX)
			lat[i] = dt;
		if (st == 200) {
			atomic_fetch_add(&status_ok, 1);
			atomic_fetch_add(&tokens, tokens_of(out.p));
		} else if (st == 503) {
			atomic_fetch_add(&status_503, 1);
		} else {
			atomic_fetch_add(&status_other, 1);
		}
	}
	if (fd >= 0)
		close(fd);
	zp_buf_free(&out);
	free(body);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void parse_mix(const char *s)
{
	char *d = strdup(s), *save = NULL;
	memset(mix, 0, sizeof mix);
	mix_total = 0;
	for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *c = strchr(t, ':');
		int w = c ? atoi(c + 1) : 1;
		if (c)
			*c = 0;
		for (int k = 0; k < K_COUNT; k++)
			if (!strcmp(t, kind_name[k]))
				mix[k] += w, mix_total += w;
	}
	free(d);
	if (mix_total <= 0) {
		fprintf(stderr, "loadgen: --mix names none of prefill, score, classify, embed\n");
		exit(2);
	}
}

static void load_replay(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	if (!f) {
		perror(path);
		exit(2);
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = 0;
		replay = realloc(replay, (size_t)(nreplay + 1) * sizeof *replay);
		replay[nreplay++] = strdup(line);
	}
	free(line);
	fclose(f);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "socket", 1, 0, 's' }, { "conns", 1, 0, 'c' },
					    { "seconds", 1, 0, 't' }, { "mix", 1, 0, 'm' },
					    { "words", 1, 0, 'w' },   { "ids", 0, 0, 'i' },
					    { "replay", 1, 0, 'r' },  { 0, 0, 0, 0 } };
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'c': conns = atoi(optarg); break;
		case 't': seconds = atof(optarg); break;
		case 'm': parse_mix(optarg); break;
		case 'w': words = atoi(optarg); break;
		case 'i': use_ids = 1; break;
		case 'r': load_replay(optarg); break;
		default: fprintf(stderr, "see the top of tools/loadgen.c\n"); return 2;
		}
	}
	if (!sock || conns < 1 || conns > CONNS_MAX || words < 1 || words > 2000) {
		fprintf(stderr, "usage: loadgen --socket S [--conns N<=%d] [--seconds T] [--mix ...] "
			"[--words N] [--ids] [--replay FILE]\n", CONNS_MAX);
		return 2;
	}
	lat = zp_xmalloc(LAT_MAX * sizeof *lat);
	pthread_t th[CONNS_MAX];
	double t0 = zp_now_s();
	t_start = t0;
	t_end = t0 + seconds;
	for (int i = 0; i < conns; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < conns; i++)
		pthread_join(th[i], NULL);
	double wall = zp_now_s() - t0;
	long n = ZP_MIN(nlat, LAT_MAX);
	qsort(lat, (size_t)n, sizeof *lat, cmp);
#define PCT(p) (n ? lat[ZP_MIN(n - 1, (long)((p) * n))] * 1e3 : 0.0)
	printf("conns=%d requests=%ld wall_s=%.2f req_s=%.1f tokens=%ld tok_s=%.1f p50_ms=%.2f "
	       "p90_ms=%.2f p99_ms=%.2f ok=%ld s503=%ld other=%ld io_errors=%ld\n", conns, (long)nlat,
	       wall, nlat / wall, (long)tokens, tokens / wall, PCT(0.5), PCT(0.9), PCT(0.99),
	       (long)status_ok, (long)status_503, (long)status_other, (long)io_errors);
	free(lat);
	return status_other || io_errors ? 1 : 0;
}
