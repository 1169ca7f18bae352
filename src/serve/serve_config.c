/* serve_config.c -- zprefill's settings: ONE key table (below, read by the
   engine in opts.c) gives each setting of `serve`, `prefill` and `bench` its
   ini [section] name, its --flag, the commands that take it, its type,
   bounds, default, field and help. A setting shared by the commands is one
   row, so it has one default, one bound and one help line everywhere.
   conf/zprefill.ini documents every key with its default. Start-up only, one
   thread. */
#define _GNU_SOURCE
#include "serve.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "engine.h"
#include "kvcache.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define RR_PREFIX                                                                          \
	"<|im_start|>system\\nJudge whether the Document meets the requirements based on the " \
	"Query and the Instruct provided. Note that the answer can only be \"yes\" or "       \
	"\"no\".<|im_end|>\\n<|im_start|>user\\n"
#define RR_SUFFIX "<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n"
#define RR_INSTRUCTION "Given a web search query, retrieve relevant passages that answer the query"

/* ZP_OPT_ENUM spellings: the names are written once, here or in asyncep.c. */
static int dtype_parse(const char *v, int *out)
{
	if (!strcmp(v, "fp8"))
		*out = ZP_DTYPE_FP8;
	else if (!strcmp(v, "bf16") || !strcmp(v, "fp32"))
		*out = strcmp(v, "bf16") ? ZP_DTYPE_FP32 : ZP_DTYPE_BF16;
	else
		return -1;
	return 0;
}

static const char *dtype_spell(int v)
{
	return v == ZP_DTYPE_BF16 ? "bf16" : v == ZP_DTYPE_FP32 ? "fp32" : v == ZP_DTYPE_FP8 ? "fp8"
												 : NULL;
}

static int fp8_compute_parse(const char *v, int *out)
{
	if (strcmp(v, "auto") && strcmp(v, "w8a16") && strcmp(v, "w8a8"))
		return -1;
	*out = !strcmp(v, "auto") ? ZP_FP8_AUTO : !strcmp(v, "w8a8") ? ZP_FP8_W8A8 : ZP_FP8_W8A16;
	return 0;
}

static const char *fp8_compute_spell(int v)
{
	return v == ZP_FP8_AUTO ? "auto" : v == ZP_FP8_W8A16 ? "w8a16" : v == ZP_FP8_W8A8 ? "w8a8" : NULL;
}

static int parallel_parse(const char *v, int *out)
{
	enum zp_parallel p;
	zp_err e;
	if (zp_parallel_parse(v, &p, &e))
		return -1;
	*out = (int)p;
	return 0;
}

static const char *parallel_spell(int v)
{
	return zp_parallel_name((enum zp_parallel)v);
}

static int device_parse(const char *v, int *out)
{
	return (*out = zp_device_parse(v)) < 0 ? -1 : 0;
}

static const char *device_spell(int v)
{
	return zp_device_name((enum zp_device)v);
}

static int schedule_parse(const char *v, int *out)
{
	enum zp_sched_policy p;
	if (zp_sched_policy_parse(v, &p))
		return -1;
	*out = (int)p;
	return 0;
}

static const char *schedule_spell(int v)
{
	return zp_sched_policy_name((enum zp_sched_policy)v);
}

static const char *const log_names[] = { "debug", "info", "warn", "error" };

static int log_parse(const char *v, int *out)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(v, log_names[i])) {
			*out = i;
			return 0;
		}
	return -1;
}

static const char *log_spell(int v)
{
	return v >= ZP_LOG_DEBUG && v <= ZP_LOG_ERROR ? log_names[v] : NULL;
}

static int set_uids(void *cfg, const char *v, zp_err *e)
{
	zp_serve_cfg *c = cfg;
	char buf[1024], *save = NULL;
	if (strlen(v) >= sizeof buf)
		return zp_errf(e, "allow_uids is too long");
	strcpy(buf, v);
	c->n_allow_uids = 0;
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		long u;
		if (c->n_allow_uids == ZP_ALLOW_UIDS_MAX || zp_opt_long(t, 0, UINT_MAX - 1, &u))
			return zp_errf(e, "allow_uids: \"%s\" is not a uid (at most %d)", t,
				       ZP_ALLOW_UIDS_MAX);
		c->allow_uids[c->n_allow_uids++] = (uid_t)u;
	}
	return 0;
}

/* listen_tcp = HOST:PORT, HOST a loopback address (127.0.0.0/8, [::1] or
   localhost): TCP carries no peer credentials, so the API stays on this
   machine. Empty: no listener. */
static int set_tcp(void *cfg, const char *v, zp_err *e)
{
	zp_serve_cfg *c = cfg;
	char host[64];
	const char *colon = strrchr(v, ':');
	long port;
	c->tcp_len = 0;
	c->listen_tcp[0] = 0;
	if (!v[0])
		return 0;
	if (!colon || colon == v || (size_t)(colon - v) >= sizeof host ||
	    zp_opt_long(colon + 1, 1, 65535, &port))
		return zp_errf(e, "listen_tcp must be HOST:PORT (a port in [1, 65535]), e.g. "
			       "127.0.0.1:8000; got \"%.64s\"", v);
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)&c->tcp_addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&c->tcp_addr;
	memset(&c->tcp_addr, 0, sizeof c->tcp_addr);
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1 &&
	    (ntohl(a4->sin_addr.s_addr) >> 24) == 127) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		c->tcp_len = sizeof *a4;
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1 &&
		   IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		c->tcp_len = sizeof *a6;
	} else {
		return zp_errf(e, "listen_tcp: \"%.64s\" is not a loopback address (127.0.0.0/8, "
			       "[::1] or localhost): over TCP the API has no peer credentials, so "
			       "it listens on this machine only", host);
	}
	snprintf(c->listen_tcp, sizeof c->listen_tcp, "%s", v);
	return 0;
}

_Static_assert(sizeof(enum zp_parallel) == sizeof(int) && sizeof(enum zp_wtype) == sizeof(int),
	       "ZP_OPT_ENUM fields are int-sized");

#define S ZP_CMD_SERVE
#define ALL (ZP_CMD_SERVE | ZP_CMD_PREFILL | ZP_CMD_BENCH)
#define F(field) .off = offsetof(zp_serve_cfg, field)
#define TEXT(type_, def_) .type = ZP_OPT_##type_, .def_text = def_
#define NUM(type_, lo_, hi_, def_) .type = ZP_OPT_##type_, .lo = lo_, .hi = hi_, .def = def_
#define ENUM(what, def_, choices_) .type = ZP_OPT_ENUM, .parse = what##_parse, \
	.spell = what##_spell, .def = def_, .choices = choices_
/* One name per setting: the ini key and flag are what users write; the field
   (and the same setting wherever the code carries it: zp_req_limits,
   zp_engine_cfg) says the unit last. They differ in these rows only:
     max_tokens (--max-tokens)             -> seq_tokens_max   (per sequence)
     max_batch_tokens (--max-batch-tokens) -> batch_tokens_max (per forward)
     threads_per_executor (--threads)      -> threads_per_executor
   and [bench] tokens -> bench.seq_tokens. */
static const zp_opt keys[] = {
	{ "server", "socket", "socket", S, 0, TEXT(STR, NULL), F(socket), .help = "Unix socket path (default: $XDG_RUNTIME_DIR/zprefill.sock, else /run/zprefill/zprefill.sock)" },
	{ "server", "socket_mode", NULL, 0, 0, NUM(OCTAL, 0, 0777, 0660), F(socket_mode), .help = "mode of the socket file" },
	{ "server", "socket_group", NULL, 0, 0, TEXT(STR, NULL), F(socket_group), .help = "group to own the socket" },
	{ "server", "allow_uids", NULL, 0, 0, .type = ZP_OPT_LIST, .set = set_uids, .help = "uids that may connect" },
	{ "server", "max_connections", "max-connections", S, 0, NUM(INT, 1, 65536, 256), F(max_connections), .help = "connections held at once" },
	{ "server", "stall_timeout_ms", NULL, 0, 0, NUM(INT, 0, 86400000, 5000), F(stall_timeout_ms), .help = "a busy executor this long without progress is stalled: /health reports it, no new work goes to it (0: no test)" },
	{ "server", "shutdown_timeout_ms", NULL, 0, 0, NUM(INT, 0, 86400000, 30000), F(shutdown_timeout_ms), .help = "after SIGTERM, requests still unanswered this long get 503 and the process exits 1 (0: no deadline)" },
	{ "server", "header_bytes_max", NULL, 0, 0, NUM(SIZE, 256, 1 << 20, 16384), F(header_bytes_max), .help = "request head limit (431)" },
	{ "server", "body_bytes_max", NULL, 0, 0, NUM(SIZE, 1024, 1L << 30, 8 << 20), F(body_bytes_max), .help = "request body limit (413)" },
	{ "server", "header_timeout_ms", NULL, 0, 0, NUM(INT, 10, 3600000, 10000), F(header_timeout_ms), .help = "head timeout (408); also a new connection's first bytes" },
	{ "server", "body_timeout_ms", NULL, 0, 0, NUM(INT, 10, 3600000, 30000), F(body_timeout_ms), .help = "body timeout (408)" },
	{ "server", "idle_timeout_ms", NULL, 0, 0, NUM(INT, 10, 86400000, 60000), F(idle_timeout_ms), .help = "keep-alive idle timeout (the header timeout when slots are scarce)" },
	{ "server", "listen_tcp", "listen-tcp", S, 0, .type = ZP_OPT_LIST, .set = set_tcp, .help = "loopback HOST:PORT serving the whole API over TCP" },
	{ "server", "metrics_port", "metrics-port", S, 0, NUM(INT, 0, 65535, 0), F(metrics_port), .help = "loopback TCP port for GET /metrics (0: none)" },
	{ "engine", "model", "model", ALL, ZP_CMD_PREFILL | ZP_CMD_BENCH, TEXT(STR, NULL), F(model), .help = "model directory" },
	{ "engine", "model_name", "model-name", S, 0, TEXT(STR, NULL), F(model_name), .help = "name /v1/models reports, which a request's model must match (none: the directory's name)" },
	{ "engine", "dtype", "dtype", ALL, 0, ENUM(dtype, ZP_DTYPE_BF16, "bf16, fp32 or fp8"), F(dtype), .help = "compute: bf16 or fp32 (an fp8 checkpoint's FP8 weights stay FP8); fp8: bf16 over FP8 weights, a bf16 checkpoint quantised at load (128x128 blocks)" },
	{ "engine", "fp8_compute", "fp8-compute", ALL, 0, ENUM(fp8_compute, ZP_FP8_AUTO, "auto, w8a16 or w8a8"), F(fp8_compute), .help = "FP8 weights: w8a16 (widened; activations as --dtype) or w8a8 (activations quantised per token per 128 columns: cuda and sim only); auto: w8a8 on cuda and sim, w8a16 on the cpu" },
	{ "engine", "random_weights", "random-weights", ALL, 0, NUM(LONG, -1, LONG_MAX, -1), F(random_weights), .help = "make every weight from this seed, for benchmarks on a config-only model directory (-1: read the checkpoint)" },
	{ "engine", "executors", "executors", ALL, 0, NUM(INT, 1, ZP_EXECUTORS_MAX, 1), F(executors), .help = "executor threads (devices)" },
	{ "engine", "threads_per_executor", "threads", ALL, 0, NUM(INT, 0, ZP_THREADS_MAX, 0), F(threads_per_executor), .help = "cores per executor (0: the cores shared)" },
	{ "engine", "parallel", "parallel", ALL, 0, ENUM(parallel, ZP_PARALLEL_DEFAULT, "asyncep, dpep or replicate"), F(parallel), .help = "expert placement: asyncep, dpep or replicate" },
	{ "engine", "transport", "transport", ALL, 0, TEXT(STR, "auto"), F(transport), .help = "what moves asyncep shards: auto (cpu on cpu, p2p on devices), cpu, p2p or nccl" },
	{ "engine", "device", "device", ALL, 0, ENUM(device, ZP_DEV_CPU, "cpu, cuda or sim"), F(device), .help = "where forwards run: cpu, cuda (executor i on GPU i mod the GPU count) or sim (a test device: the CUDA backend's host path, kernels by their CPU twins)" },
	{ "engine", "offload_window", "offload", ALL, 0, NUM(INT, 0, ZP_PLACE_WINDOW_MAX, 0), F(offload_window), .help = "asyncep offload slots (0: off; 2 at least)" },
	{ "engine", "keep_host_experts", NULL, 0, 0, NUM(INT, 0, 1, 1), F(keep_host_experts), .help = "asyncep: keep the experts in host memory too, so a lost executor's are re-placed on the others without a restart (1), or free them once placed (0)" },
	{ "engine", "max_tokens", "max-tokens", ALL, 0, NUM(INT, 0, ZP_BATCH_TOKENS_LIMIT, 0), F(seq_tokens_max), .help = "longest sequence (0: the model's, at most " STR(ZP_SEQ_TOKENS_DEFAULT) ")" },
	{ "engine", "max_batch_tokens", "max-batch-tokens", ALL, 0, NUM(INT, 1, ZP_BATCH_TOKENS_LIMIT, ZP_BATCH_TOKENS_DEFAULT), F(batch_tokens_max), .help = "tokens per forward pass" },
	{ "engine", "kv_cache_bytes", "kv-cache-bytes", S | ZP_CMD_PREFILL, 0, NUM(SIZE, -1, 1L << 42, -1), F(kv_cache_bytes), .help = "each executor's prefix KV cache (-1: sized at start from the memory left after weights and workspaces; 0: none, the KV-cache-free mode)" },
	{ "engine", "batch_wait_ms", "batch-wait-ms", S, 0, NUM(INT, 0, 10000, 2), F(batch_wait_ms), .help = "wait for batch company" },
	{ "engine", "batch_wait_us", "batch-wait-us", S | ZP_CMD_PREFILL, 0, NUM(INT, -1, 10000000, -1), F(batch_wait_us), .help = "wait for batch company, microseconds (-1: batch_wait_ms; prefill: none)" },
	{ "engine", "schedule", "schedule", S | ZP_CMD_PREFILL, 0, ENUM(schedule, ZP_SCHED_POLICY_DEFAULT, "prefix_flops, fifo, least_tokens or vllm"), F(schedule), .help = "batching and routing policy" },
	{ "engine", "schedule_aging_ms", "schedule-aging-ms", S | ZP_CMD_PREFILL, 0, NUM(INT, 0, 3600000, 50), F(schedule_aging_ms), .help = "prefix_flops: longest a job is passed over for prefix matches" },
	{ "engine", "schedule_min_tokens", "schedule-min-tokens", S | ZP_CMD_PREFILL, 0, NUM(INT, 0, ZP_BATCH_TOKENS_LIMIT, 512), F(schedule_min_tokens), .help = "prefix_flops: the threshold's floor, in tokens" },
	{ "engine", "queue_requests_max", "queue-requests", S, 0, NUM(INT, 1, 1 << 20, 256), F(queue_requests_max), .help = "requests admitted at once" },
	{ "engine", "queue_tokens_max", "queue-tokens", S, 0, NUM(LONG, 16, 1L << 40, 1 << 20), F(queue_tokens_max), .help = "tokens admitted at once" },
	{ "bench", "tokens", "tokens", ZP_CMD_BENCH, ZP_CMD_BENCH, NUM(INT, 1, ZP_BATCH_TOKENS_LIMIT, 0), F(bench.seq_tokens), .help = "tokens of each sequence" },
	{ "bench", "seqs", "seqs", ZP_CMD_BENCH, ZP_CMD_BENCH, NUM(INT, 1, ZP_FWD_SEQS_MAX, 0), F(bench.seqs), .help = "sequences in each forward" },
	{ "bench", "iters", "iters", ZP_CMD_BENCH, 0, NUM(INT, 1, INT_MAX, 3), F(bench.iters), .help = "timed forwards after the warm-up" },
	{ "bench", "profile", "profile", ZP_CMD_BENCH, 0, TEXT(STR, NULL), F(bench.profile), .help = "write per-op times of forwards from 16 tokens up to --tokens x --seqs, at sequence lengths 64, 512 and --tokens, to this file (build/simulate reads it) instead of the plain bench" },
	{ "rerank", "prefix", NULL, 0, 0, TEXT(TEMPLATE, RR_PREFIX), F(rerank.prefix), .help = "reranker prompt start" },
	{ "rerank", "suffix", NULL, 0, 0, TEXT(TEMPLATE, RR_SUFFIX), F(rerank.suffix), .help = "reranker prompt end" },
	{ "rerank", "instruction", NULL, 0, 0, TEXT(TEMPLATE, RR_INSTRUCTION), F(rerank.instruction), .help = "default instruction" },
	{ "rerank", "yes_token", NULL, 0, 0, TEXT(TEXT, "yes"), F(rerank.yes_token), .help = "the yes label token" },
	{ "rerank", "no_token", NULL, 0, 0, TEXT(TEXT, "no"), F(rerank.no_token), .help = "the no label token" },
	{ "log", "level", "log-level", ALL, 0, ENUM(log, ZP_LOG_INFO, "debug, info, warn or error"), F(log_level), .help = "log level" },
};
#undef S
#undef ALL
#undef F
#undef TEXT
#undef NUM
#undef ENUM

static const zp_opt_table table = { keys, sizeof keys / sizeof *keys };

const zp_opt_table *zp_serve_cfg_table(void)
{
	return &table;
}

unsigned zp_cmd_of(const char *name)
{
	return !strcmp(name, "serve") ? ZP_CMD_SERVE : !strcmp(name, "prefill") ? ZP_CMD_PREFILL
	       : !strcmp(name, "bench") ? ZP_CMD_BENCH : 0;
}

int zp_serve_cfg_load(zp_serve_cfg *c, const char *path, zp_err *e)
{
	memset(c, 0, sizeof *c);
	zp_opt_defaults(&table, c);
	return path ? zp_opt_load(&table, c, path, e) : 0;
}

int zp_serve_cfg_args(zp_serve_cfg *c, int argc, char **argv, zp_err *e)
{
	unsigned cmd = argc >= 2 ? zp_cmd_of(argv[1]) : 0;
	ZP_ASSERT(cmd);
	memset(c, 0, sizeof *c);
	return zp_opt_args(&table, cmd, c, argc, argv, 2, e);
}

void zp_serve_cfg_usage(unsigned cmd, FILE *f)
{
	if (cmd == ZP_CMD_SERVE)
		fprintf(f, "usage: zprefill serve --model DIR [--config FILE] [--FLAG VALUE]...\n"
			   "  answers HTTP/1.1 + JSON on a Unix socket until SIGTERM/SIGINT\n");
	else if (cmd == ZP_CMD_PREFILL)
		fprintf(f, "usage: zprefill prefill --model DIR [--FLAG VALUE]... < requests.jsonl\n"
			   "  reads one JSON request per line on stdin, writes one result per line\n"
			   "  (\"prompt\" text and \"candidates\" strings need DIR/tokenizer.json)\n");
	else
		fprintf(f, "usage: zprefill bench --model DIR --tokens L --seqs B [--FLAG VALUE]...\n"
			   "  times forwards of B random sequences of L tokens on every executor\n");
	zp_opt_usage(&table, cmd, f);
	fprintf(f, "  every key of the file can be set there; flags override it\n");
}

void zp_serve_cfg_free(zp_serve_cfg *c)
{
	zp_opt_free(&table, c);
	memset(c, 0, sizeof *c);
}

const char *zp_socket_default(char *buf, size_t n)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (xdg && xdg[0] == '/')
		snprintf(buf, n, "%s/zprefill.sock", xdg);
	else
		snprintf(buf, n, "/run/zprefill/zprefill.sock");
	return buf;
}

int zp_serve_cfg_threads(const zp_serve_cfg *c)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (c->threads_per_executor)
		return c->threads_per_executor;
	return (int)ZP_MAX(1, ncpu / c->executors);
}

const char *zp_serve_cfg_parallel_said(const zp_serve_cfg *c, int ran, char *buf, size_t n)
{
	const char *run = zp_parallel_name((enum zp_parallel)ran);
	if (ran == (int)c->parallel)
		snprintf(buf, n, "parallel=%s", run);
	else
		snprintf(buf, n, "parallel=%s configured=%s why=\"%s\"", run,
			 zp_parallel_name(c->parallel), c->executors == 1 ?
			 "one executor reads every expert in place: nothing to place or send" :
			 "no MoE layer: every executor holds the whole model");
	return buf;
}

int zp_serve_cfg_check_kv(const zp_serve_cfg *c, zp_err *e)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	double host = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
	if (c->kv_cache_bytes == ZP_KV_AUTO)
		return 0; /* sized from what is left: kvcache.h */
	double want = (double)c->kv_cache_bytes * c->executors;
	if (zp_device_host_memory((enum zp_device)c->device) && host > 0 && want > host)
		return zp_errf(e, "kv_cache_bytes %zu x %d executors is more than this machine's "
			       "%.1f GiB of memory", c->kv_cache_bytes, c->executors,
			       host / (1 << 30));
	return 0;
}

int zp_serve_cfg_check_fp8(const zp_serve_cfg *c, zp_err *e)
{
	if (c->fp8_compute == ZP_FP8_W8A8 && c->device == ZP_DEV_CPU)
		return zp_errf(e, "fp8_compute w8a8: the cpu device multiplies FP8 weights w8a16 "
			       "only (its bf16 or f32 activations are not quantised)");
	return 0;
}

int zp_serve_cfg_seq_tokens(zp_serve_cfg *c, int max_positions, zp_err *e)
{
	if (!c->seq_tokens_max)
		c->seq_tokens_max = ZP_MIN(max_positions, ZP_SEQ_TOKENS_DEFAULT);
	if (c->seq_tokens_max > max_positions)
		return zp_errf(e, "max_tokens %d is over the model's max_position_embeddings %d",
			       c->seq_tokens_max, max_positions);
	return 0;
}
