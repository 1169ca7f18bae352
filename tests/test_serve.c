/* test_serve.c -- the real server end to end through a C client on a temporary
   Unix socket (tests/data/serve-test.ini: small limits): a table of bad inputs,
   each with the status it must get, after which the server still answers
   correctly; pipelining in order; Expect: 100-continue; timeouts; a client that
   leaves mid-request; the connection limit; an overload burst (503 +
   Retry-After for the excess, 200 for the rest, nothing lost); SIGTERM under
   load (every admitted request answered, exit 0); the uid allow-list, a
   connection whose credentials cannot be read (refused, not let in), and
   text over the tokenizer's limit (413). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "client.h"

static char sock[300], dir[256];
static const char *bin;

/* Start-up polls: a liveness bound (30 s at 20 ms), not a speed: under make
   tsan on a loaded machine a server takes seconds to come up. */
#define READY_TRIES 1500

static rlim_t nofile; /* when set: the server's RLIMIT_NOFILE */

static pid_t start(const char *extra_cfg)
{
	char cfg[300];
	snprintf(cfg, sizeof cfg, "%s/extra.ini", dir);
	FILE *f = fopen(cfg, "w");
	FILE *base = fopen("tests/data/serve-test.ini", "r");
	char line[512];
	while (fgets(line, sizeof line, base))
		fputs(line, f);
	fclose(base);
	fputs(extra_cfg, f);
	fclose(f);
	pid_t pid = fork();
	if (pid == 0) {
		if (nofile) {
			struct rlimit rl = { nofile, nofile };
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
		      "--config", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < READY_TRIES; i++) { /* until /health says ready */
		zp_err e;
		zp_buf out;
		int fd = zp_client_connect(sock, &e);
		if (fd >= 0) {
			zp_buf_init(&out, 256);
			int st = zp_client_call(fd, "GET", "/health", NULL, 0, &out, &e);
			close(fd);
			zp_buf_free(&out);
			if (st == 200)
				return pid;
		}
		sleep_ms(20);
	}
	CHECK(0, "server did not become ready");
	return pid;
}

static int first_status(const zp_buf *b)
{
	int st;
	return b->len && sscanf(b->p, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

/* Send raw bytes (then maybe pause and send more), read for ms; first status. */
static int raw(const char *a, size_t na, int pause_ms, const char *b, int ms, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e);
	if (fd < 0)
		return -2;
	send_all(fd, a, na);
	if (pause_ms)
		sleep_ms(pause_ms);
	if (b)
		send_all(fd, b, strlen(b));
	read_for(fd, out, ms);
	close(fd);
	return first_status(out);
}

static int post(const char *path, const char *body, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e), st;
	struct timeval tv = { 10, 0 }; /* a wedged server fails the test, not hangs it */
	if (fd < 0)
		return -2;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	st = zp_client_call(fd, "POST", path, body, strlen(body), out, &e);
	close(fd);
	return st;
}

static char *http_post(const char *path, const char *body, const char *extra_head)
{
	char *s;
	CHECK(asprintf(&s, "POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s", path,
		       extra_head, strlen(body), body) > 0, "asprintf");
	return s;
}

struct bad { const char *name, *path, *body; int want; };

static const struct bad bodies[] = {
	{ "malformed JSON", "/v1/prefill", "{\"prompt_token_ids\":[1,2", 400 },
	{ "invalid UTF-8", "/v1/prefill", "{\"prompt\":\"\xc3\x28\"}", 400 },
	{ "overlong UTF-8", "/v1/score", "{\"query\":\"\xc0\xaf\"}", 400 },
	{ "JSON not an object", "/v1/prefill", "[1,2,3]", 400 },
	{ "\\u0000 in a string read as C text", "/v1/embeddings", "{\"input\":\"a\",\"user\":\"a\\u0000b\"}", 400 },
	{ "wrong type: ids as string", "/v1/prefill", "{\"prompt_token_ids\":\"1 2 3\"}", 400 },
	{ "token id -1", "/v1/prefill", "{\"prompt_token_ids\":[1,-1]}", 400 },
	{ "token id = vocab", "/v1/prefill", "{\"prompt_token_ids\":[1,640]}", 400 },
	{ "token id 2.5", "/v1/prefill", "{\"prompt_token_ids\":[1,2.5]}", 400 },
	{ "empty prompt ids", "/v1/prefill", "{\"prompt_token_ids\":[]}", 400 },
	{ "empty prompt text", "/v1/prefill", "{\"prompt\":\"\"}", 400 },
	{ "prompt and ids both", "/v1/prefill", "{\"prompt\":\"a\",\"prompt_token_ids\":[1]}", 400 },
	{ "unknown field", "/v1/prefill", "{\"prompt\":\"a\",\"temperature\":0}", 400 },
	{ "top_logprobs too big", "/v1/prefill", "{\"prompt\":\"a\",\"top_logprobs\":100000}", 400 },
	{ "multi-token candidate", "/v1/prefill", "{\"prompt\":\"a\",\"candidates\":[\"xyzzy q\"]}", 400 },
	{ "score: mixed item types", "/v1/score",
	  "{\"query\":\"q\",\"items\":[\"a\",[1,2]],\"label_token_ids\":[1]}", 400 },
	{ "score: no labels", "/v1/score", "{\"query\":\"q\",\"items\":[\"a\"]}", 400 },
	{ "classify: no labels", "/classify", "{\"input\":\"great\"}", 400 },
	{ "classify: label not string", "/classify", "{\"input\":\"a\",\"labels\":[1]}", 400 },
	{ "rerank: document not string", "/v1/rerank", "{\"query\":\"q\",\"documents\":[3]}", 400 },
	{ "rerank: top_n -1", "/rerank", "{\"query\":\"q\",\"documents\":[\"d\"],\"top_n\":-1}", 400 },
	{ "embeddings: bad format", "/v1/embeddings", "{\"input\":\"a\",\"encoding_format\":\"hex\"}", 400 },
	{ "embeddings: empty list", "/v1/embeddings", "{\"input\":[]}", 400 },
	{ "detokenize: id out of range", "/detokenize", "{\"tokens\":[1,99999]}", 400 },
	{ "tokenize: prompt not string", "/tokenize", "{\"prompt\":5}", 400 },
	{ "tokenize: \\u0000 outside prompt", "/tokenize", "{\"prompt\":\"a\",\"model\":\"m\\u0000\"}", 400 },
	{ "tokenize: \\u0000 in a key", "/tokenize", "{\"prompt\":\"a\",\"x\\u0000\":1}", 400 },
	{ "prefill: \\u0000 outside prompt", "/v1/prefill", "{\"prompt\":\"a\",\"pooling\":\"last\\u0000\"}", 400 },
	{ "wrong model name", "/v1/embeddings", "{\"input\":\"a\",\"model\":\"gpt-4\"}", 404 },
	{ "unknown path", "/v2/everything", "{}", 404 },
};

struct rawcase { const char *name, *bytes; int want; };

static const struct rawcase raws[] = {
	{ "wrong method (GET /v1/prefill)", "GET /v1/prefill HTTP/1.1\r\n\r\n", 405 },
	{ "unknown method", "BREW /health HTTP/1.1\r\n\r\n", 405 },
	{ "bad request line", "GET\r\n\r\n", 400 },
	{ "HTTP/2.0", "GET /health HTTP/2.0\r\n\r\n", 505 },
	{ "chunked body", "POST /v1/prefill HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411 },
	{ "two Content-Lengths", "POST /tokenize HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", 400 },
	{ "Content-Length not a number", "POST /tokenize HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400 },
	{ "body over the limit (413)", "POST /v1/prefill HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n", 413 },
	{ "bare LF line ends", "GET /health HTTP/1.1\nHost: x\n\n", 400 },
	{ "obs-fold header", "GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400 },
	{ "Expect: other", "POST /tokenize HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", 400 },
	{ "control byte in path", "GET /he\x01lth HTTP/1.1\r\n\r\n", 400 },
	{ "binary garbage (a TLS hello)", "\x16\x03\x01\x02\xfc\x03\x03", 400 },
};

static void table_row(const char *name, int got, int want)
{
	printf("| %-34s | %4d | %4d | %s |\n", name, want, got, got == want ? "ok" : "FAIL");
	CHECK(got == want, "%s: status %d, want %d", name, got, want);
}

static void check_good(const char *when)
{
	zp_buf out;
	zp_buf_init(&out, 1024);
	int st = post("/v1/prefill", "{\"id\":7,\"prompt\":\"The quick brown fox\","
		      "\"candidates\":[\" yes\",\" no\"]}", &out);
	CHECK(st == 200 && strstr(out.p, "\"candidate_logprobs\":[") && strstr(out.p, "\"id\":7"),
	      "good request %s: %d %s", when, st, out.p ? out.p : "");
	zp_buf_free(&out);
}

static void test_bad_inputs(void)
{
	zp_buf out;
	zp_buf_init(&out, 4096);
	printf("| case | want | got | |\n|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
		int st = post(bodies[i].path, bodies[i].body, &out);
		table_row(bodies[i].name, st, bodies[i].want);
		CHECK(strstr(out.p, "\"error\":{\"message\":") && strstr(out.p, "\"type\":") &&
		      strstr(out.p, "\"code\":"), "%s: error body %s", bodies[i].name, out.p);
	}
	for (size_t i = 0; i < sizeof raws / sizeof *raws; i++)
		table_row(raws[i].name, raw(raws[i].bytes, strlen(raws[i].bytes), 0, NULL, 500, &out),
			  raws[i].want);
	/* a prompt over max_tokens (256) */
	char *big = zp_xmalloc(8192);
	strcpy(big, "{\"prompt_token_ids\":[1");
	for (int i = 0; i < 300; i++)
		strcat(big, ",5");
	strcat(big, "]}");
	table_row("prompt over max_tokens", post("/v1/prefill", big, &out), 400);
	/* a body holding a NUL byte */
	static const char nul[] = "POST /v1/prefill HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\0}";
	table_row("NUL byte in body", raw(nul, sizeof nul - 1, 0, NULL, 500, &out), 400);
	/* headers over header_bytes_max (2048) */
	char *hdr = zp_xmalloc(8192);
	strcpy(hdr, "GET /health HTTP/1.1\r\nX-Big: ");
	memset(hdr + strlen(hdr), 'a', 4000);
	hdr[29 + 4000] = 0;
	strcat(hdr, "\r\n\r\n");
	table_row("headers over the limit (431)", raw(hdr, strlen(hdr), 0, NULL, 500, &out), 431);
	/* path over 256 bytes */
	strcpy(hdr, "GET /");
	memset(hdr + 5, 'p', 300);
	strcpy(hdr + 305, " HTTP/1.1\r\n\r\n");
	table_row("path too long (414)", raw(hdr, strlen(hdr), 0, NULL, 500, &out), 414);
	/* slow sender: half a head, then silence past header_timeout (300 ms) */
	table_row("slow sender: head (408)", raw("GET /health HTTP/1.1\r\nHo", 24, 0, NULL, 1500, &out),
		  408);
	char *half = http_post("/v1/prefill", "{\"prompt\":\"abc\"}", "");
	half[strlen(half) - 5] = 0;
	table_row("slow sender: body (408)", raw(half, strlen(half), 0, NULL, 1500, &out), 408);
	/* disconnect mid-request: no answer is possible; the server must not care */
	zp_err e;
	int fd = zp_client_connect(sock, &e);
	send_all(fd, half, strlen(half));
	close(fd);
	free(half);
	/* pipelined garbage after a good request: 200, then 400 and close */
	char *good = http_post("/tokenize", "{\"prompt\":\"hi\"}", "");
	char *pipe = NULL;
	CHECK(asprintf(&pipe, "%sNOT HTTP AT ALL\r\n\r\n", good) > 0, "asprintf");
	raw(pipe, strlen(pipe), 0, NULL, 500, &out);
	char *second = strstr(out.p + 1, "HTTP/1.1 ");
	table_row("pipelined garbage: 1st", first_status(&out), 200);
	table_row("pipelined garbage: 2nd", second ? atoi(second + 9) : -1, 400);
	free(pipe);
	free(good);
	free(big);
	free(hdr);
	/* \u0000 in a prompt is text, as HF encodes it (ids of tests/golden/tok-small.jsonl) */
	int st = post("/tokenize", "{\"prompt\":\"a\\u0000b\"}", &out);
	CHECK(st == 200 && strstr(out.p, "\"tokens\":[67,191,68]"), "/tokenize a\\u0000b: %d %s", st, out.p);
	st = post("/v1/prefill", "{\"prompt\":\"a\\u0000b\"}", &out);
	CHECK(st == 200, "/v1/prefill a\\u0000b: %d %s", st, out.p);
	zp_buf_free(&out);
	check_good("after the bad inputs");
}

/* 300 connections of seeded random bytes (some starting like a request),
   sent whole or cut short, then closed: none may crash or wedge the server. */
static void test_garbage_storm(void)
{
	static const char *starts[] = { "", "POST /v1/prefill HTTP/1.1\r\n", "GET / HTTP/1.1\r\nA: ",
					"POST /tokenize HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"" };
	unsigned seed = 12345;
	zp_err e;
	char buf[3000];
	for (int i = 0; i < 300; i++) {
		int fd = zp_client_connect(sock, &e);
		if (fd < 0)
			continue;
		size_t n = strlen(starts[i % 4]), len = n + (size_t)(rand_r(&seed) % 2000);
		memcpy(buf, starts[i % 4], n);
		for (size_t k = n; k < len; k++)
			buf[k] = (char)(rand_r(&seed) & 0xff);
		send_all(fd, buf, len);
		close(fd);
	}
	sleep_ms(200);
	check_good("after 300 connections of garbage");
}

/* Three requests in one write come back in order. */
static void test_pipelining(void)
{
	zp_buf out;
	zp_buf_init(&out, 4096);
	char *a = http_post("/v1/prefill", "{\"id\":\"first\",\"prompt\":\"one two three four five\"}", "");
	char *b = http_post("/tokenize", "{\"prompt\":\"x\"}", "");
	char *c = http_post("/v1/prefill", "{\"id\":\"third\",\"prompt_token_ids\":[5]}",
			    "Connection: close\r\n");
	char *all = NULL;
	CHECK(asprintf(&all, "%s%s%s", a, b, c) > 0, "asprintf");
	raw(all, strlen(all), 0, NULL, 2000, &out);
	char *p1 = strstr(out.p, "\"first\""), *p2 = strstr(out.p, "\"count\":"),
	     *p3 = strstr(out.p, "\"third\"");
	CHECK(p1 && p2 && p3 && p1 < p2 && p2 < p3, "pipelined responses in order: %s", out.p);
	free(a);
	free(b);
	free(c);
	free(all);
	zp_buf_free(&out);
}

static void test_expect_continue(void)
{
	static const char body[] = "{\"prompt\":\"hello\"}";
	char *head;
	zp_buf out;
	zp_err e;
	zp_buf_init(&out, 1024);
	CHECK(asprintf(&head, "POST /tokenize HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: "
		       "%zu\r\n\r\n", sizeof body - 1) > 0, "asprintf");
	int fd = zp_client_connect(sock, &e);
	send_all(fd, head, strlen(head));
	read_for(fd, &out, 300);
	CHECK(strncmp(out.p ? out.p : "", "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0,
	      "100 Continue first: %s", out.p);
	send_all(fd, body, sizeof body - 1);
	read_for(fd, &out, 300);
	CHECK(first_status(&out) == 200 && strstr(out.p, "\"tokens\""), "then 200: %s", out.p);
	close(fd);
	free(head);
	zp_buf_free(&out);
}

/* max_connections (64) open: the next one is refused with 503 at once. */
static void test_connection_limit(void)
{
	int fds[64];
	zp_err e;
	zp_buf out;
	zp_buf_init(&out, 256);
	for (int i = 0; i < 64; i++)
		fds[i] = zp_client_connect(sock, &e);
	sleep_ms(100);
	int st = raw("GET /health HTTP/1.1\r\n\r\n", 24, 0, NULL, 500, &out);
	CHECK(st == 503 && strstr(out.p, "Retry-After:"), "connection over the limit: %d", st);
	for (int i = 0; i < 64; i++)
		close(fds[i]);
	sleep_ms(100);
	zp_buf_free(&out);
	check_good("after the connection limit");
}

/* n clients each send one ~200-token request at once; count the statuses. */
static void burst(int n, int *ok, int *busy, int *other, int *retry_after)
{
	int fds[64];
	zp_err e;
	char *req = http_post("/v1/prefill", "{\"prompt\":\"The quick brown fox jumps over the "
			      "lazy dog. The quick brown fox jumps over the lazy dog. The quick brown "
			      "fox jumps over the lazy dog.\",\"top_logprobs\":5}", "");
	*ok = *busy = *other = *retry_after = 0;
	for (int i = 0; i < n; i++)
		fds[i] = zp_client_connect(sock, &e);
	for (int i = 0; i < n; i++)
		send_all(fds[i], req, strlen(req));
	for (int i = 0; i < n; i++) {
		zp_buf out;
		zp_buf_init(&out, 1024);
		read_for(fds[i], &out, 3000);
		int st = first_status(&out);
		*ok += st == 200;
		*busy += st == 503;
		*retry_after += st == 503 && strstr(out.p, "Retry-After: 1") != NULL;
		*other += st != 200 && st != 503;
		close(fds[i]);
		zp_buf_free(&out);
	}
	free(req);
}

static void test_overload(void)
{
	int ok, busy, other, ra;
	burst(40, &ok, &busy, &other, &ra);
	printf("overload: 40 requests at once, queue 8 requests / 1024 tokens: %d x 200, %d x 503 "
	       "(%d with Retry-After), %d other\n", ok, busy, ra, other);
	CHECK(ok + busy == 40 && other == 0, "every request answered 200 or 503");
	CHECK(ok >= 4 && busy >= 1 && ra == busy, "some admitted, the excess refused with Retry-After");
	check_good("after the overload");
}

/* Clients that send a request and leave at once: their jobs are dropped from
   the queue (or their results discarded), counted, and nothing is left queued. */
static void test_clients_gone(void)
{
	zp_err e;
	zp_buf out;
	char *big = zp_xmalloc(4096), *req;
	strcpy(big, "{\"prompt_token_ids\":[1");
	for (int i = 0; i < 250; i++)
		strcat(big, ",9");
	strcat(big, "]}");
	req = http_post("/v1/prefill", big, "");
	for (int round = 0; round < 5; round++) {
		int fds[8];
		for (int i = 0; i < 8; i++) {
			fds[i] = zp_client_connect(sock, &e);
			send_all(fds[i], req, strlen(req));
		}
		for (int i = 0; i < 8; i++)
			close(fds[i]);
	}
	/* until the forwards already out come back (a bound, not a speed) */
	zp_buf_init(&out, 4096);
	int st = -1;
	const char *d = NULL, *q = NULL;
	for (int i = 0; i < READY_TRIES; i++) {
		sleep_ms(20);
		int fd = zp_client_connect(sock, &e);
		st = zp_client_call(fd, "GET", "/metrics", NULL, 0, &out, &e);
		close(fd);
		d = strstr(out.p, "\nzprefill_dropped_total ");
		q = strstr(out.p, "\nzprefill_queue_requests ");
		if (st == 200 && q && atol(q + 25) == 0)
			break;
	}
	printf("clients gone: %.30s\n", d ? d + 1 : "no counter");
	CHECK(st == 200 && d && atol(d + 24) >= 1, "requests of departed clients are dropped");
	CHECK(q && atol(q + 25) == 0, "nothing left queued: %.40s", q ? q + 1 : "?");
	zp_buf_free(&out);
	free(req);
	free(big);
	check_good("after clients left mid-queue");
}

static void test_sigterm_under_load(pid_t pid)
{
	int fds[6], ok = 0;
	zp_err e;
	char *req = http_post("/v1/prefill", "{\"prompt\":\"a b c d e f g h i j k l m n o p\"}", "");
	for (int i = 0; i < 6; i++) {
		fds[i] = zp_client_connect(sock, &e);
		send_all(fds[i], req, strlen(req));
	}
	sleep_ms(30); /* received and admitted; most still queued */
	kill(pid, SIGTERM);
	for (int i = 0; i < 6; i++) {
		zp_buf out;
		zp_buf_init(&out, 1024);
		read_for(fds[i], &out, 5000);
		ok += first_status(&out) == 200;
		close(fds[i]);
		zp_buf_free(&out);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("SIGTERM with 6 requests admitted: %d answered 200, exit %d\n", ok,
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CHECK(ok == 6, "every admitted request answered (%d of 6)", ok);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit 0 after SIGTERM");
	CHECK(access(sock, F_OK) != 0, "socket file removed");
	free(req);
}

/* Out of file descriptors: accepts fail (EMFILE) while 60 clients hold
   connections; once they leave, the server listens again and answers. */
static void test_fd_exhaustion(void)
{
	int fds[60];
	zp_err e;
	nofile = 40;
	pid_t pid = start("");
	nofile = 0;
	for (int i = 0; i < 60; i++)
		fds[i] = zp_client_connect(sock, &e); /* the rest wait in the backlog */
	sleep_ms(300);
	for (int i = 0; i < 60; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	sleep_ms(300);
	check_good("after running out of file descriptors");
	int code = stop(pid);
	CHECK(code == 0, "clean stop after EMFILE: exit %d", code);
}

/* A server on ini (the whole config, not serve-test.ini's) written to dir/name,
   with fault (an environment variable name set to 1) when not NULL. */
static pid_t spawn(const char *name, const char *ini, const char *fault)
{
	char cfg[300];
	snprintf(cfg, sizeof cfg, "%s/%s", dir, name);
	FILE *f = fopen(cfg, "w");
	fputs(ini, f);
	fclose(f);
	pid_t pid = fork();
	if (pid == 0) {
		if (fault)
			setenv(fault, "1", 1);
		execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
		      "--config", cfg, "--log-level", "error", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void test_allow_list(void)
{
	char ini[100];
	snprintf(ini, sizeof ini, "[server]\nallow_uids = %u\n", (unsigned)getuid() + 12345);
	pid_t pid = spawn("deny.ini", ini, NULL);
	zp_buf out;
	zp_buf_init(&out, 256);
	int st = -1;
	for (int i = 0; i < READY_TRIES && st < 0; i++) {
		sleep_ms(20);
		st = raw("GET /health HTTP/1.1\r\n\r\n", 24, 0, NULL, 300, &out);
	}
	CHECK(st == 403, "uid outside allow_uids: %d", st);
	int code = stop(pid);
	CHECK(code == 0, "clean stop: exit %d", code);
	zp_buf_free(&out);
}

/* {head"aaa...a"tail}: a body with one string of n bytes (free it). */
static char *long_text_body(const char *head, size_t n, const char *tail)
{
	size_t h = strlen(head), t = strlen(tail);
	char *body = malloc(h + n + t + 1);
	CHECK(body, "malloc");
	memcpy(body, head, h);
	memset(body + h, 'a', n);
	memcpy(body + h + n, tail, t + 1);
	return body;
}

/* A body limit over the tokenizer's text limit (ZP_TOK_TEXT_DEFAULT, 1 MiB):
   text past it is a 413 naming the limit (the encoder's "too long"), not a
   200 with a count of -1 (/tokenize) nor a candidate of "-1 tokens". */
static void test_over_text_limit(void)
{
	size_t n = (3u << 20) / 2;
	char *tok = long_text_body("{\"prompt\":\"", n, "\"}");
	char *cand = long_text_body("{\"prompt_token_ids\":[1,2],\"candidates\":[\"", n, "\"]}");
	pid_t pid = start("[server]\nbody_bytes_max = 2097152\n");
	zp_buf out;
	zp_buf_init(&out, 256);
	int st = post("/tokenize", tok, &out);
	CHECK(st == 413 && out.len && strstr(out.p, "bytes of text"),
	      "/tokenize over the tokenizer's text limit: %d %.200s", st, out.len ? out.p : "");
	st = post("/v1/prefill", cand, &out);
	CHECK(st == 413 && out.len && strstr(out.p, "bytes of text"),
	      "a candidate over the tokenizer's text limit: %d %.200s", st, out.len ? out.p : "");
	check_good("after text over the tokenizer's limit");
	int code = stop(pid);
	CHECK(code == 0, "clean stop: exit %d", code);
	zp_buf_free(&out);
	free(tok);
	free(cand);
}

/* GET /metrics over the loopback listener at port: the status, body in out. */
static int tcp_metrics(int port, zp_buf *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static const char req[] = "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
		if (fd >= 0)
			close(fd);
		return -2;
	}
	send_all(fd, req, sizeof req - 1);
	read_for(fd, out, 1000);
	close(fd);
	return first_status(out);
}

/* SO_PEERCRED failing at accept (ZP_FAULT_PEERCRED): the uid is unknown, so
   even an allow-list holding our own uid must not let the connection in; it
   is closed unanswered and counted as refused. */
static void test_peercred_failure(void)
{
	char ini[100];
	int port = 20000 + (int)(getpid() % 20000);
	snprintf(ini, sizeof ini, "[server]\nallow_uids = %u\nmetrics_port = %d\n",
		 (unsigned)getuid(), port);
	pid_t pid = spawn("cred.ini", ini, "ZP_FAULT_PEERCRED");
	zp_buf out;
	zp_buf_init(&out, 4096);
	int st = -2;
	for (int i = 0; i < READY_TRIES && st != 200; i++) {
		sleep_ms(20);
		st = tcp_metrics(port, &out);
	}
	CHECK(st == 200, "metrics listener up: %d", st);
	st = raw("GET /health HTTP/1.1\r\n\r\n", 24, 0, NULL, 300, &out);
	CHECK(st == -1 && out.len == 0, "no credentials: closed unanswered, got %d", st);
	st = tcp_metrics(port, &out);
	static const char key[] = "\nzprefill_connections_refused_total ";
	const char *r = out.p ? strstr(out.p, key) : NULL;
	CHECK(st == 200 && r && atol(r + sizeof key - 1) >= 1, "counted as refused: %.60s",
	      r ? r + 1 : "?");
	int code = stop(pid);
	CHECK(code == 0, "clean stop: exit %d", code);
	zp_buf_free(&out);
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-serve-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/s", dir);
	pid_t pid = start("");
	check_good("at start");
	test_bad_inputs();
	test_garbage_storm();
	test_pipelining();
	test_expect_continue();
	test_connection_limit();
	test_overload();
	test_clients_gone();
	test_sigterm_under_load(pid);
	test_fd_exhaustion();
	test_allow_list();
	test_peercred_failure();
	test_over_text_limit();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return check_exit("test_serve");
}
