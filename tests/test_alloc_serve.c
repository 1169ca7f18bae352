/* test_alloc_serve.c -- the whole server allocates nothing after start-up:
   with malloc interposed (alloc_count.h: every thread of the process is
   counted: reactor, loader, executors, their pools), `zprefill serve` runs in
   this process (zp_serve_main on a thread) on tests/models/tiny-tok with
   tests/data/serve-test.ini's small limits; once /health answers 200 the
   count starts, and every endpoint of the router's table answers several
   rounds over the Unix socket (text and ids, candidates, top-k and prompt
   log-probs, pooling; label scoring, classify with single- and multi-token
   labels, rerank with documents, a request over its job's region, completions' one
   token (greedy and drawn), chat's 400, embeddings as floats and base64 and a
   response over a connection's own buffer, a request over a connection's own
   input buffer, tokenize, detokenize, models, health, metrics) with the
   error answers (400, 404, 405, 413 of the head and of a job's region, 431),
   each checked for its status. The
   client side allocates nothing either: raw socket I/O into static buffers.
   Zero allocations expected; the figure is printed. Under ASan/TSan (they own
   malloc) nothing is counted: the same traffic runs for its statuses and
   memory safety only. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alloc_count.h"
#include "check.h"
#include "serve_proc.h"
#include "conn.h"	/* ZP_CONN_OUT_BYTES */
#include "serve.h"

#define ROUNDS 4
#define REQS_MAX 48
#define REQ_BYTES (70u << 10)		/* the largest request below, with its head */
#define RESP_BYTES (4u << 20)

static char sock[96], dir[64];

struct req {
	const char *name;
	char *raw;			/* the whole request, head and body */
	size_t len;
	int want;			/* its status */
	int got[ROUNDS];
	char first_bad[400];		/* the start of the first unexpected response */
	size_t resp_len;		/* of the last round's response */
	size_t resp_min;		/* its length must be over this (0: any) */
};

static struct req reqs[REQS_MAX];
static int nreq;
static char resp[RESP_BYTES];

static void add_raw(const char *name, int want, const char *raw, size_t len)
{
	struct req *r = &reqs[nreq++];
	ZP_ASSERT(nreq <= REQS_MAX && len < REQ_BYTES);
	r->name = name;
	r->want = want;
	r->raw = malloc(len);
	memcpy(r->raw, raw, len);
	r->len = len;
}

/* A POST of body (or a GET when body is NULL) to path. */
static void add(const char *name, int want, const char *method, const char *path, const char *body)
{
	static char buf[REQ_BYTES];
	size_t bl = body ? strlen(body) : 0;
	int n = snprintf(buf, sizeof buf, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
			 "Content-Type: application/json\r\n\r\n", method, path, bl);
	ZP_ASSERT(n > 0 && (size_t)n + bl < sizeof buf);
	if (bl)
		memcpy(buf + n, body, bl);
	add_raw(name, want, buf, (size_t)n + bl);
}

static void build_requests(void)
{
	static char big[REQ_BYTES];
	add("prefill text + candidates + top-k", 200, "POST", "/v1/prefill",
	    "{\"id\":\"a\",\"prompt\":\"The fox\",\"candidates\":[\" yes\",\" no\"],\"top_logprobs\":5}");
	add("prefill ids + candidate ids + prompt logprobs", 200, "POST", "/v1/prefill",
	    "{\"id\":[1,{\"b\":null}],\"prompt_token_ids\":[5,6,7,8,9],\"candidate_token_ids\":[1,2,3],"
	    "\"prompt_logprobs\":{\"start\":1}}");
	add("prefill pooling mean", 200, "POST", "/v1/prefill",
	    "{\"prompt\":\"hello there\",\"pooling\":\"mean\",\"normalize\":true}");
	add("prefill pooling last, prompt logprobs", 200, "POST", "/v1/prefill",
	    "{\"prompt_token_ids\":[3,4,5],\"pooling\":\"last\",\"prompt_logprobs\":true}");
	add("prefill bad field (400)", 400, "POST", "/v1/prefill",
	    "{\"prompt_token_ids\":[1],\"nope\":1}");
	add("v1/score text", 200, "POST", "/v1/score",
	    "{\"query\":\"Is it good? \",\"items\":[\"yes\",\"no\"],\"label_token_ids\":[283,341],"
	    "\"apply_softmax\":true}");
	add("score ids, item first", 200, "POST", "/score",
	    "{\"query\":[1,2],\"items\":[[3],[4,5]],\"label_token_ids\":[7],\"item_first\":true}");
	add("classify", 200, "POST", "/classify",
	    "{\"input\":[\"great movie\",\"bad one\"],\"labels\":[\"positive\",\"negative\"]}");
	add("classify multi-token labels", 200, "POST", "/classify",
	    "{\"input\":\"the film\",\"labels\":[\"really good stuff\",\"bad\"]}");
	add("v1/rerank", 200, "POST", "/v1/rerank",
	    "{\"query\":\"capital of France\",\"documents\":[\"Paris is the capital\",\"bananas\","
	    "\"a\",\"b\",\"c\",\"d\"],\"top_n\":3}");
	add("rerank return documents", 200, "POST", "/rerank",
	    "{\"query\":\"q\",\"documents\":[\"a\",{\"text\":\"b c\"}],\"return_documents\":true,"
	    "\"instruction\":\"judge\"}");
	add("v1/embeddings float", 200, "POST", "/v1/embeddings", "{\"input\":\"hello\"}");
	add("v1/embeddings base64", 200, "POST", "/v1/embeddings",
	    "{\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\"}");
	add("pooling mean", 200, "POST", "/pooling", "{\"input\":[[1,2,3]],\"pooling\":\"mean\"}");
	add("tokenize", 200, "POST", "/tokenize", "{\"prompt\":\"yes no, maybe\"}");
	add("detokenize", 200, "POST", "/detokenize", "{\"tokens\":[283,341,5,6]}");
	add("completions one token, logprobs, echo", 200, "POST", "/v1/completions",
	    "{\"prompt\":\"The fox\",\"max_tokens\":1,\"logprobs\":3,\"echo\":true}");
	add("completions one token drawn, logit_bias, stop", 200, "POST", "/v1/completions",
	    "{\"prompt\":[5,6,7],\"max_tokens\":1,\"temperature\":1,\"seed\":3,"
	    "\"logit_bias\":{\"9\":2},\"stop\":[\"a\"],\"logprobs\":2}");
	add("chat on a model without a template (400)", 400, "POST", "/v1/chat/completions",
	    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1}");
	add("models", 200, "GET", "/v1/models", NULL);
	add("health", 200, "GET", "/health", NULL);
	add("metrics", 200, "GET", "/metrics", NULL);
	add("bad JSON (400)", 400, "POST", "/v1/score", "{\"query\":");
	add("not an object (400)", 400, "POST", "/classify", "[1,2]");
	add("unknown path (404)", 404, "GET", "/nope", NULL);
	add("other model (404)", 404, "POST", "/v1/embeddings",
	    "{\"input\":\"x\",\"model\":\"another\"}");
	add("wrong method (405)", 405, "POST", "/health", "{}");
	add_raw("body over the limit (413)", 413,
		"POST /v1/prefill HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n", 55);

	/* a head over header_bytes_max (2048) */
	int n = snprintf(big, sizeof big, "GET /health HTTP/1.1\r\nX-Pad: ");
	memset(big + n, 'p', 3000);
	n += 3000;
	n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
	add_raw("head over the limit (431)", 431, big, (size_t)n);

	/* a body over a connection's own input buffer (head max + one receive):
	   it takes a buffer of the input pool */
	n = snprintf(big, sizeof big, "{\"id\":\"");
	memset(big + n, 'i', 40000);
	n += 40000;
	snprintf(big + n, sizeof big - (size_t)n, "\",\"prompt_token_ids\":[1,2,3]}");
	add("40 KB body (input pool)", 200, "POST", "/v1/prefill", big);

	/* 512 inputs x 512 labels (one of several tokens): 262144 sequences, over
	   what a job's region holds at these limits: a 413 saying so */
	n = snprintf(big, sizeof big, "{\"input\":[");
	for (int i = 0; i < 512; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "%s\"a\"", i ? "," : "");
	n += snprintf(big + n, sizeof big - (size_t)n, "],\"labels\":[\"really good stuff\"");
	for (int i = 1; i < 512; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, ",\"b\"");
	snprintf(big + n, sizeof big - (size_t)n, "]}");
	add("classify over a job's memory (413)", 413, "POST", "/classify", big);

	/* a response over a connection's own buffer (64 KiB): 100 embeddings of
	   64 floats, from the response pool */
	n = snprintf(big, sizeof big, "{\"input\":[");
	for (int i = 0; i < 100; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "%s\"w%d\"", i ? "," : "", i);
	snprintf(big + n, sizeof big - (size_t)n, "]}");
	add("100 embeddings (response pool)", 200, "POST", "/v1/embeddings", big);
	reqs[nreq - 1].resp_min = ZP_CONN_OUT_BYTES; /* else it never reached the pool */
}

static int connect_sock(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* One request on its own connection; the response into resp. Its status, or
   -1. Nothing here allocates (strtol, memmem, raw socket calls). */
static int call(const char *raw, size_t len, size_t *resp_len)
{
	int fd = connect_sock();
	size_t got = 0, want = 0;
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		ssize_t w = send(fd, raw + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* a refused head may close before the body is sent */
		off += (size_t)w;
	}
	while (got < sizeof resp - 1) {
		ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		resp[got] = 0;
		const char *end = memmem(resp, got, "\r\n\r\n", 4);
		const char *cl = memmem(resp, got, "Content-Length: ", 16);
		if (end && cl && cl < end) {
			want = (size_t)(end + 4 - resp) + (size_t)strtol(cl + 16, NULL, 10);
			if (got >= want)
				break;
		}
	}
	close(fd);
	*resp_len = got;
	if (got < 12 || memcmp(resp, "HTTP/1.1 ", 9) || (want && got < want))
		return -1;
	return (int)strtol(resp + 9, NULL, 10);
}

static int serve_rc;

static void *serve_thread(void *arg)
{
	char *argv[] = { "zprefill", "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
			 "--config", "tests/data/serve-test.ini", NULL };
	(void)arg;
	serve_rc = zp_serve_main(8, argv);
	return NULL;
}

int main(void)
{
	bool counting = zp_alloc_count_available();
	printf("test_alloc_serve: %s\n", counting ? "counting allocations in the whole server" :
	       "malloc is the sanitizer's here: nothing counted, statuses checked only");
	/* SIGTERM reaches the server through its signalfd only: blocked in every
	   thread, this one included (zp_serve_main blocks it in its own) */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	snprintf(dir, sizeof dir, "/tmp/zp-alloc-serve-XXXXXX");
	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return check_exit("test_alloc_serve");
	}
	snprintf(sock, sizeof sock, "%s/s.sock", dir);
	build_requests();

	pthread_t th;
	int rc = pthread_create(&th, NULL, serve_thread, NULL);
	ZP_ASSERT(rc == 0);
	static const char health[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t rl;
	int st = -1;
	for (int i = 0; i < 500 && st != 200; i++) {
		st = call(health, sizeof health - 1, &rl);
		if (st != 200)
			sleep_ms(20);
	}
	CHECK(st == 200, "the server did not become ready (/health %d)", st);

	/* start-up done: from here on, nothing may allocate */
	zp_alloc_count_begin();
	for (int round = 0; st == 200 && round < ROUNDS; round++)
		for (int i = 0; i < nreq; i++)
			if ((reqs[i].got[round] = call(reqs[i].raw, reqs[i].len, &reqs[i].resp_len)) !=
			    reqs[i].want && !reqs[i].first_bad[0])
				memcpy(reqs[i].first_bad, resp, sizeof reqs[i].first_bad - 1);
	long n = zp_alloc_count_end();

	int answered = 0;
	for (int i = 0; i < nreq; i++)
		for (int round = 0; st == 200 && round < ROUNDS; round++) {
			CHECK(reqs[i].got[round] == reqs[i].want, "%s, round %d: status %d, %d expected "
			      "(first such answer: %s)", reqs[i].name, round, reqs[i].got[round],
			      reqs[i].want, reqs[i].first_bad);
			answered += reqs[i].got[round] == reqs[i].want;
		}
	for (int i = 0; i < nreq; i++)
		CHECK(reqs[i].resp_len > reqs[i].resp_min, "%s: a %zu-byte response, over %zu expected",
		      reqs[i].name, reqs[i].resp_len, reqs[i].resp_min);
	if (counting) {
		zp_alloc_count_report(stderr, "serve", n);
		CHECK(n == 0, "%ld allocations after start-up", n);
		printf("allocations counted after start-up: %ld (%d requests answered as expected, %d "
		       "endpoint cases x %d rounds)\n", n, answered, nreq, ROUNDS);
	} else {
		printf("%d requests answered as expected (%d cases x %d rounds)\n", answered, nreq,
		       ROUNDS);
	}

	kill(getpid(), SIGTERM);
	pthread_join(th, NULL);
	CHECK(serve_rc == 0, "the server exited %d after SIGTERM", serve_rc);
	for (int i = 0; i < nreq; i++)
		free(reqs[i].raw);
	rmdir(dir);
	return check_exit("test_alloc_serve");
}
