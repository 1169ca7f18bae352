/* test_serve_faults.c -- the server faults a new user met (issue 9, section 3),
   each through the real `zprefill serve` on a temporary Unix socket:
     1  /classify with a flat list of token ids is one input (usage once)
     2  one id sequence longer than 1024 ids is one input up to max_tokens
     3  a bad [rerank] setting is a start error naming the key
     4  --config naming a directory is a start error
     5  a start that fails after binding leaves no socket file
     6  a flood of refused connections is a few log lines with a count
     7  a model whose activations overflow answers 500, never a 200 with null
     9  errors point the right way (505 type, 411, 415, the 503's JSON body,
        a long rerank instruction named, no "per line" over HTTP)
    10  a long /tokenize does not hold /health back
    11  a device fault (the sim's, ZP_FAULT_DEVICE_AFTER) costs its request
        nothing: the batch is lost with its executor, which resets, and runs
        again (a 200 with the answer of a clean server); the process lives on
   Every wait is a liveness bound, never a speed. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "client.h"

static char dir[256], sock[300], log_path[300];
static const char *bin;

#define TRIES SERVE_TRIES

static int health(void)
{
	zp_buf out;
	zp_buf_init(&out, 256);
	int st = serve_get(sock, "/health", &out);
	zp_buf_free(&out);
	return st;
}

/* zprefill serve on model with config text cfg (NULL: none; a path when
   cfg_path), stderr into log_path. */
static pid_t spawn(const char *model, const char *cfg, const char *cfg_path)
{
	char path[300];
	if (cfg) {
		snprintf(path, sizeof path, "%s/c.ini", dir);
		serve_write_file(path, cfg);
		cfg_path = path;
	}
	return serve_spawn(bin, model, sock, cfg_path, log_path, NULL);
}

/* A server up and ready (its pid), or -1 when it exited first or never got
   ready (a failed check). */
static pid_t start(const char *model, const char *cfg)
{
	pid_t pid = serve_wait_ready(spawn(model, cfg, NULL), sock);
	CHECK(pid > 0, "the server starts and gets ready");
	return pid;
}

/* A start that must fail: its exit code (a bound: stopped after 30 s). */
static int start_fails(const char *model, const char *cfg, const char *cfg_path)
{
	pid_t pid = spawn(model, cfg, cfg_path);
	int rc = serve_wait_exit(pid, TRIES);
	return rc >= 0 ? rc : stop(pid) == 0 ? 0 : -1;
}

static int raw(const char *req, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e), st;
	if (fd < 0)
		return -2;
	send_all(fd, req, strlen(req));
	read_for(fd, out, 2000);
	close(fd);
	return out->len && sscanf(out->p, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

static int post(const char *path, const char *body, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e), st;
	if (fd < 0)
		return -2;
	st = zp_client_call(fd, "POST", path, body, strlen(body), out, &e);
	close(fd);
	return st;
}

/* {"<key>":[1,2,...,n]...} */
static char *ids_body(const char *head, int n, const char *tail)
{
	zp_buf b;
	zp_buf_init(&b, 1024);
	zp_buf_puts(&b, head);
	for (int i = 0; i < n; i++)
		zp_buf_printf(&b, "%s%d", i ? "," : "", 1 + i % 600);
	zp_buf_puts(&b, tail);
	return b.p;
}

/* small limits: the regions sized from them start fast under sanitizers */
#define SMALL "[engine]\nqueue_requests_max = 8\n[server]\nbody_bytes_max = 1048576\n"

static const char cfg_main[] =
	"[server]\nmax_connections = 4\nbody_bytes_max = 16777216\n"
	"[engine]\ndtype = fp32\nmax_tokens = 2048\nmax_batch_tokens = 4096\n"
	"queue_requests_max = 8\nqueue_tokens_max = 16384\n[log]\nlevel = warn\n";

/* 1 and 2 */
static void test_id_lists(void)
{
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	int st = post("/classify", "{\"input\":[5,600,7],\"labels\":[\"a\",\"b\"]}", &out);
	cJSON *r = st == 200 ? cJSON_Parse(out.p) : NULL;
	cJSON *u = cJSON_GetObjectItem(r, "usage");
	int n = cJSON_GetArraySize(cJSON_GetObjectItem(r, "data"));
	int pt = u ? cJSON_GetObjectItem(u, "prompt_tokens")->valueint : -1;
	printf("fault 1: /classify [5,600,7]: %d, %d entries, prompt_tokens %d\n", st, n, pt);
	CHECK(st == 200 && n == 1 && pt == 3, "a flat id list is one input: %d %.200s", st, out.p);
	cJSON_Delete(r);

	static const char *const paths[] = { "/v1/embeddings", "/pooling" };
	char *body = ids_body("{\"input\":[", 1500, "]}");
	for (int i = 0; i < 2; i++) {
		st = post(paths[i], body, &out);
		r = st == 200 ? cJSON_Parse(out.p) : NULL;
		u = cJSON_GetObjectItem(r, "usage");
		n = cJSON_GetArraySize(cJSON_GetObjectItem(r, "data"));
		pt = u ? cJSON_GetObjectItem(u, "prompt_tokens")->valueint : -1;
		printf("fault 2: %s with 1500 ids (max_tokens 2048): %d, %d entries, "
		       "prompt_tokens %d\n", paths[i], st, n, pt);
		CHECK(st == 200 && n == 1 && pt == 1500, "%s: 1500 ids are one input: %d %.200s",
		      paths[i], st, out.p);
		cJSON_Delete(r);
	}
	free(body);
	body = ids_body("{\"input\":[", 2049, "]}");
	st = post("/v1/embeddings", body, &out);
	CHECK(st == 400 && strstr(out.p, "2048"), "2049 ids: over max_tokens, %d %.200s", st,
	      out.p);
	free(body);
	zp_buf_free(&out);
}

/* 9 */
static void test_error_direction(void)
{
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	int st = raw("GET /health HTTP/1.2\r\n\r\n", &out);
	CHECK(st == 505 && strstr(out.p, "\"type\":\"invalid_request_error\""),
	      "HTTP/1.2: %d %.300s", st, out.p);
	st = raw("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n\r\n{\"input\":\"a\"}", &out);
	CHECK(st == 411 && strstr(out.p, "Content-Length"), "POST without Content-Length: %d %.300s",
	      st, out.p);
	st = raw("POST /v1/embeddings HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 13\r\n"
		 "\r\n{\"input\":\"a\"}", &out);
	CHECK(st == 415 && strstr(out.p, "Content-Encoding"), "gzip body: %d %.300s", st, out.p);
	st = post("/v1/prefill", "{\"prompt_token_ids\":[1,2", &out);
	CHECK(st == 400 && !strstr(out.p, "per line") && !strstr(out.p, "NUL"),
	      "bad JSON over HTTP: %d %.300s", st, out.p);
	char *ins = malloc(40000);
	strcpy(ins, "{\"query\":\"q\",\"documents\":[\"d\"],\"instruction\":\"");
	for (int i = 0; i < 3000; i++)
		strcat(ins, "go ");
	strcat(ins, "\"}");
	st = post("/rerank", ins, &out);
	CHECK(st == 400 && strstr(out.p, "\"param\":\"instruction\""),
	      "a long instruction: %d %.300s", st, out.p);
	free(ins);
	printf("fault 9: 505 invalid_request_error, 411, 415, bad JSON, long instruction: "
	       "checked\n");
	zp_buf_free(&out);
}

/* 6 (and the 503's JSON body of 9): max_connections (4) held, 300 more. */
static void test_refused_flood(pid_t pid)
{
	int fds[4], busy = 0, json = 0;
	zp_err e;
	zp_buf out;
	zp_buf_init(&out, 4096);
	for (int i = 0; i < 4; i++)
		fds[i] = zp_client_connect(sock, &e);
	sleep_ms(100);
	for (int i = 0; i < 300; i++) {
		int st = raw("GET /health HTTP/1.1\r\n\r\n", &out);
		busy += st == 503;
		json += st == 503 && strstr(out.p, "\"type\":\"service_unavailable\"") &&
			strstr(out.p, "max_connections");
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	CHECK(busy == 300 && json == 300, "refused: %d x 503, %d with the JSON error", busy, json);
	CHECK(stop(pid) == 0, "clean stop");
	char *log = serve_read_file(log_path);
	int written = 0;
	long repeated = 0;
	for (char *p = log; (p = strstr(p, "msg=\"connection refused\"")); p++)
		written++;
	for (char *p = log; (p = strstr(p, "msg=\"connections refused (503)\" repeated=")); p++)
		repeated += atol(strstr(p, "repeated=") + strlen("repeated="));
	printf("fault 6: 300 refused connections: %d log lines written, %ld counted in "
	       "summaries\n", written, repeated);
	CHECK(written >= 1 && written <= 5 && written + repeated == 300,
	      "300 refusals: %d lines + %ld counted\n%.2000s", written, repeated, log);
	free(log);
	zp_buf_free(&out);
}

/* 10: /health on one connection while a 1 MB /tokenize is in flight on
   another. ZP_FAULT_OFFLOAD_HOLD holds the build until the file goes, so
   "in flight" is a fact, not a race: /health must come back while the
   /tokenize has no answer, and the /tokenize must come back once released.
   (A reactor that tokenizes in place answers the /tokenize first: the pause
   before /health only gives it the time to.) */
static void test_tokenize_not_blocking(void)
{
	char hold[300];
	snprintf(hold, sizeof hold, "%s/hold", dir);
	serve_write_file(hold, "");
	setenv("ZP_FAULT_OFFLOAD_HOLD", hold, 1);
	pid_t pid = start("tests/models/tiny-tok", cfg_main);
	unsetenv("ZP_FAULT_OFFLOAD_HOLD");
	size_t n = 1u << 20;
	zp_buf body, out, hb;
	zp_buf_init(&body, n + 64);
	zp_buf_init(&out, 1 << 16);
	zp_buf_init(&hb, 4096);
	zp_buf_puts(&body, "{\"prompt\":\"");
	for (size_t i = 0; i < n / 8 - 2; i++)
		zp_buf_puts(&body, "ab, cd. ");
	zp_buf_puts(&body, "\"}");
	char head[200];
	snprintf(head, sizeof head, "POST /tokenize HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
		 body.len);
	zp_err e;
	int big = zp_client_connect(sock, &e), small = zp_client_connect(sock, &e);
	send_all(big, head, strlen(head));
	send_all(big, body.p, body.len);
	sleep_ms(500);
	double t0 = zp_now_s();
	send_all(small, "GET /health HTTP/1.1\r\n\r\n", 24);
	struct pollfd p = { .fd = small, .events = POLLIN };
	CHECK(poll(&p, 1, 30000) == 1, "/health unanswered for 30 s");
	double health_ms = (zp_now_s() - t0) * 1e3;
	read_for(small, &hb, 200);
	struct pollfd q = { .fd = big, .events = POLLIN };
	bool big_answered = poll(&q, 1, 0) == 1;
	unlink(hold);
	read_for(big, &out, 30000);
	printf("fault 10: /health answered (%.1f ms) while the 1 MB /tokenize was %s\n", health_ms,
	       big_answered ? "already answered: tokenized on the reactor" : "still in flight");
	CHECK(strstr(hb.p, "HTTP/1.1 200"), "health: %.100s", hb.p);
	CHECK(!big_answered, "the /tokenize was answered before /health: it held the loop");
	/* 400: more ids than max_tokens, counted by tokenizing all of it */
	CHECK(strstr(out.p, "HTTP/1.1 400") && strstr(out.p, "tokens (max 2048)"),
	      "tokenize once released: %.300s", out.p);
	close(big);
	close(small);
	CHECK(stop(pid) == 0, "clean stop");
	zp_buf_free(&body);
	zp_buf_free(&out);
	zp_buf_free(&hb);
}

/* tiny-tok with model.norm.weight at bf16's largest finite value: it loads
   (every value is finite) but the final states overflow to Inf and NaN. */
static void overflow_model(char *out, size_t cap)
{
	char cmd[1200], p[600];
	snprintf(out, cap, "%s/overflow", dir);
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/models/tiny-tok %s", out, out);
	ZP_ASSERT(system(cmd) == 0);
	snprintf(p, sizeof p, "%s/model.safetensors", out);
	FILE *f = fopen(p, "r+b");
	uint64_t hl;
	ZP_ASSERT(f && fread(&hl, 8, 1, f) == 1);
	char *h = calloc(1, hl + 1);
	ZP_ASSERT(fread(h, 1, hl, f) == hl);
	cJSON *j = cJSON_Parse(h), *t = cJSON_GetObjectItem(j, "model.norm.weight");
	ZP_ASSERT(t && !strcmp(cJSON_GetObjectItem(t, "dtype")->valuestring, "BF16"));
	cJSON *o = cJSON_GetObjectItem(t, "data_offsets");
	long lo = (long)cJSON_GetArrayItem(o, 0)->valuedouble;
	long hi = (long)cJSON_GetArrayItem(o, 1)->valuedouble;
	uint16_t big = 0x7f7f; /* 3.39e38 */
	fseek(f, 8 + (long)hl + lo, SEEK_SET);
	for (long i = lo; i < hi; i += 2)
		fwrite(&big, 2, 1, f);
	fclose(f);
	cJSON_Delete(j);
	free(h);
}

/* 7: no endpoint answers 200 with a non-finite number. */
static void test_nonfinite(void)
{
	char model[400];
	overflow_model(model, sizeof model);
	pid_t pid = start(model, SMALL "[engine]\ndtype = fp32\n[log]\nlevel = warn\n");
	static const char *const reqs[][2] = {
		{ "/v1/embeddings", "{\"input\":\"hello world\"}" },
		{ "/pooling", "{\"input\":\"hello world\"}" },
		{ "/classify", "{\"input\":\"hello world\",\"labels\":[\"a\",\"b\"]}" },
		{ "/v1/score", "{\"query\":\"q\",\"items\":[\"a\"],\"label_token_ids\":[1,2]}" },
		{ "/rerank", "{\"query\":\"q\",\"documents\":[\"a\",\"b\"]}" },
		{ "/v1/prefill", "{\"prompt\":\"hello world\",\"top_logprobs\":3,"
				 "\"prompt_logprobs\":true}" },
	};
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	for (size_t i = 0; pid > 0 && i < sizeof reqs / sizeof *reqs; i++) {
		int st = post(reqs[i][0], reqs[i][1], &out);
		printf("fault 7: %-15s on overflowing activations: %d %.120s\n", reqs[i][0], st,
		       out.p);
		CHECK(st == 500 && strstr(out.p, "non-finite"), "%s: %d %.300s", reqs[i][0], st,
		      out.p);
	}
	CHECK(pid > 0, "the overflow model (finite weights) loads");
	if (pid > 0)
		CHECK(stop(pid) == 0, "clean stop");
	zp_buf_free(&out);
}

/* 11: --device sim with its 3rd launch failing: the first request's batch
   is lost, the executor resets and runs it again: a 200 with the bits of the
   next (clean) request, which is a 200 too. */
static void test_device_fault(void)
{
	static const char body[] = "{\"prompt\":\"hello world\",\"top_logprobs\":3}";
	zp_buf out, again;
	zp_buf_init(&out, 1 << 16);
	zp_buf_init(&again, 1 << 16);
	setenv("ZP_FAULT_DEVICE_AFTER", "3", 1); /* the child inherits it */
	pid_t pid = start("tests/models/tiny-tok", SMALL "[engine]\ndtype = fp32\ndevice = sim\n"
			  "[log]\nlevel = warn\n");
	unsetenv("ZP_FAULT_DEVICE_AFTER");
	CHECK(pid > 0, "fault 11: the sim server starts");
	if (pid <= 0) {
		zp_buf_free(&again);
		return zp_buf_free(&out);
	}
	int st = post("/v1/prefill", body, &out);
	printf("fault 11: a device fault: %d %.160s\n", st, out.p);
	CHECK(st == 200 && strstr(out.p, "logprobs"), "fault 11: the faulted batch's request is "
	      "answered: %d %.300s", st, out.p);
	int st2 = post("/v1/prefill", body, &again);
	printf("fault 11: the next request: %d\n", st2);
	CHECK(st2 == 200 && st == 200 && out.len == again.len && !memcmp(out.p, again.p, out.len),
	      "fault 11: the same answer as a clean forward's: %.300s / %.300s", out.p, again.p);
	CHECK(health() == 200 && waitpid(pid, NULL, WNOHANG) == 0, "fault 11: the server lives");
	char *log = serve_read_file(log_path);
	CHECK(strstr(log, "fault injection armed") && strstr(log, "msg=\"executor reset\"") &&
	      strstr(log, "msg=\"batch lost with its executor"),
	      "fault 11: the log says armed, reset and lost: %.600s", log);
	free(log);
	CHECK(stop(pid) == 0, "fault 11: clean stop");
	zp_buf_free(&out);
	zp_buf_free(&again);
}

/* 3, 4 and 5: starts that must fail, saying why, leaving nothing behind. */
static void test_start_errors(void)
{
	int rc = start_fails("tests/models/tiny-tok", SMALL "[rerank]\nyes_token = hello world\n", NULL);
	char *log = serve_read_file(log_path);
	CHECK(rc == 1 && strstr(log, "yes_token") && strstr(log, "hello world"),
	      "fault 3: bad yes_token: exit %d, %.300s", rc, log);
	printf("fault 3: yes_token = hello world: exit %d\n", rc);
	free(log);
	CHECK(access(sock, F_OK) != 0, "fault 3: no socket left");

	rc = start_fails("tests/models/tiny-tok", NULL, dir);
	log = serve_read_file(log_path);
	CHECK(rc != 0 && strstr(log, "directory"), "fault 4: --config DIR: exit %d, %.300s", rc, log);
	printf("fault 4: --config %s: exit %d\n", dir, rc);
	free(log);

	rc = start_fails("tests/models/tiny-tok", SMALL "socket_group = zp-no-such-group\n", NULL);
	log = serve_read_file(log_path);
	CHECK(rc == 1 && strstr(log, "zp-no-such-group"), "fault 5: unknown group: exit %d %.300s",
	      rc, log);
	CHECK(access(sock, F_OK) != 0, "fault 5: the socket file is left after a failed start "
	      "(socket_group)");
	free(log);

	int busy = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	ZP_ASSERT(busy >= 0 && bind(busy, (struct sockaddr *)&a, sizeof a) == 0 && listen(busy, 1) == 0 &&
		  getsockname(busy, (struct sockaddr *)&a, &al) == 0);
	char cfg[100];
	snprintf(cfg, sizeof cfg, SMALL "metrics_port = %d\n", ntohs(a.sin_port));
	rc = start_fails("tests/models/tiny-tok", cfg, NULL);
	close(busy);
	CHECK(rc == 1, "fault 5: busy metrics port: exit %d", rc);
	CHECK(access(sock, F_OK) != 0, "fault 5: the socket file is left after a failed start "
	      "(metrics_port busy)");
	printf("fault 5: unknown socket_group, busy metrics_port: exit %d, socket file %s\n", rc,
	       access(sock, F_OK) ? "removed" : "left behind");
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-faults-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/s", dir);
	snprintf(log_path, sizeof log_path, "%s/log", dir);
	signal(SIGPIPE, SIG_IGN);
	test_start_errors();
	pid_t pid = start("tests/models/tiny-tok", cfg_main);
	CHECK(pid > 0, "server up");
	if (pid > 0) {
		test_id_lists();
		test_error_direction();
		test_refused_flood(pid);
	}
	test_nonfinite();
	test_tokenize_not_blocking();
	test_device_fault();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return check_exit("test_serve_faults");
}
