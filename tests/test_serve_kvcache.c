/* test_serve_kvcache.c -- prefix reuse through the real server: the same
   requests (a /v1/score of items over one long query: siblings; a native
   request with candidates, top-k and prompt log-probs from inside its
   prefix; LAST and MEAN pooling) sent twice to a server with a prefix cache
   (--kv-cache-bytes) and once to one without: every answer's JSON is the same
   bytes; /metrics counts the reuse (cache hits, sibling tokens, computed
   fewer than prompt tokens). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "client.h"

#define READY_TRIES 1500 /* 30 s at 20 ms: a liveness bound */
#define NBODY 4

static char sock[300], dir[256];
static const char *bin;

static int call(const char *method, const char *path, const char *body, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e), st;
	struct timeval tv = { 30, 0 };
	if (fd < 0)
		return -2;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	out->len = 0;
	st = zp_client_call(fd, method, path, body, body ? strlen(body) : 0, out, &e);
	close(fd);
	return st;
}

static pid_t start(const char *kv_bytes)
{
	pid_t pid = fork();
	if (pid == 0) {
		execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
		      "--config", "tests/data/serve-test.ini", "--kv-cache-bytes", kv_bytes,
		      "--max-batch-tokens", "1024", "--queue-tokens", "4096", (char *)NULL);
		_exit(127);
	}
	zp_buf out;
	zp_buf_init(&out, 256);
	for (int i = 0; i < READY_TRIES; i++) {
		if (call("GET", "/health", NULL, &out) == 200)
			break;
		sleep_ms(20);
	}
	zp_buf_free(&out);
	return pid;
}

static double metric(const zp_buf *m, const char *name)
{
	char key[128];
	snprintf(key, sizeof key, "\n%s ", name);
	const char *p = m->p ? strstr(m->p, key) : NULL;
	return p ? atof(p + strlen(key)) : -1;
}

/* "[a, a+1, ...]" n ids from seed into s */
static void ids(char *s, size_t cap, int n, int seed)
{
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "[",
					(seed * 7 + i * 13) % 600 + 3);
	snprintf(s + len, cap - len, "]");
}

static char *bodies[NBODY];
static const char *paths[NBODY] = { "/v1/score", "/v1/prefill", "/v1/prefill", "/v1/prefill" };

static void make_bodies(void)
{
	char q[2048], items[2048], p[2048];
	size_t len = 0;
	ids(q, sizeof q, 90, 1);
	len += (size_t)snprintf(items + len, sizeof items - len, "[");
	for (int i = 0; i < 8; i++) {
		char it[128];
		ids(it, sizeof it, 5, 100 + i);
		len += (size_t)snprintf(items + len, sizeof items - len, "%s%s", i ? "," : "", it);
	}
	snprintf(items + len, sizeof items - len, "]");
	CHECK(asprintf(&bodies[0], "{\"query\":%s,\"items\":%s,\"label_token_ids\":[3,9]}", q,
		       items) > 0, "asprintf");
	ids(p, sizeof p, 70, 1); /* shares the query's first 4 blocks */
	CHECK(asprintf(&bodies[1], "{\"prompt_token_ids\":%s,\"candidate_token_ids\":[1,2,5],"
		       "\"top_logprobs\":4,\"prompt_logprobs\":{\"start\":40}}", p) > 0, "asprintf");
	CHECK(asprintf(&bodies[2], "{\"prompt_token_ids\":%s,\"pooling\":\"last\"}", p) > 0,
	      "asprintf");
	CHECK(asprintf(&bodies[3], "{\"prompt_token_ids\":%s,\"pooling\":\"mean\","
		       "\"normalize\":true}", p) > 0, "asprintf");
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-kvserve-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/s", dir);
	make_bodies();
	zp_buf want[NBODY], got, met;
	zp_buf_init(&got, 4096);
	zp_buf_init(&met, 8192);
	pid_t pid = start("0");
	for (int i = 0; i < NBODY; i++) {
		zp_buf_init(&want[i], 4096);
		CHECK(call("POST", paths[i], bodies[i], &want[i]) == 200, "no cache: %s %.200s",
		      paths[i], want[i].p);
	}
	CHECK(call("GET", "/metrics", NULL, &met) == 200, "metrics");
	CHECK(metric(&met, "zprefill_prefix_cache_hit_tokens_total") == 0 &&
	      metric(&met, "zprefill_prefix_cache_blocks") == 0 &&
	      metric(&met, "zprefill_sibling_shared_tokens_total") > 0,
	      "no cache: no hits, siblings shared (%g)",
	      metric(&met, "zprefill_sibling_shared_tokens_total"));
	CHECK(stop(pid) == 0, "clean stop");

	pid = start("1048576");
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < NBODY; i++) {
			CHECK(call("POST", paths[i], bodies[i], &got) == 200, "cache: %s %.200s",
			      paths[i], got.p);
			CHECK(got.len == want[i].len && !memcmp(got.p, want[i].p, got.len),
			      "round %d %s: the answer differs with a cache:\n%.300s\nwant\n%.300s",
			      round, paths[i], got.p, want[i].p);
		}
	CHECK(call("GET", "/metrics", NULL, &met) == 200, "metrics");
	double prompt = metric(&met, "zprefill_prompt_tokens_total"),
	       computed = metric(&met, "zprefill_computed_tokens_total"),
	       hit = metric(&met, "zprefill_prefix_cache_hit_tokens_total"),
	       sib = metric(&met, "zprefill_sibling_shared_tokens_total");
	CHECK(hit > 0 && sib > 0 && computed > 0 && computed + hit + sib == prompt,
	      "counted: prompt %g = computed %g + cache %g + siblings %g", prompt, computed, hit, sib);
	CHECK(metric(&met, "zprefill_prefix_cache_blocks") > 0 &&
	      metric(&met, "zprefill_prefix_cache_evictions_total") == 0, "blocks resident");
	CHECK(stop(pid) == 0, "clean stop");
	for (int i = 0; i < NBODY; i++) {
		zp_buf_free(&want[i]);
		free(bodies[i]);
	}
	zp_buf_free(&got);
	zp_buf_free(&met);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return check_exit("test_serve_kvcache");
}
