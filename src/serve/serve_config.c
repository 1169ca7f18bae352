/* serve_config.c -- the serve configuration: ONE key table (below) gives each
   setting its section and name in the ini file, its command-line flag, its
   type and bounds, its default, its field and its help. The defaults, the
   file (inih), the flags (getopt_long built from the table) and the usage
   text all come from it, through one setter, so each key is checked in one
   place. conf/zprefill.ini documents every key with its default. Start-up
   only, one thread. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RR_PREFIX                                                                          \
	"<|im_start|>system\\nJudge whether the Document meets the requirements based on the " \
	"Query and the Instruct provided. Note that the answer can only be \"yes\" or "       \
	"\"no\".<|im_end|>\\n<|im_start|>user\\n"
#define RR_SUFFIX "<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n"
#define RR_INSTRUCTION "Given a web search query, retrieve relevant passages that answer the query"

enum key_type {
	KEY_STR,	/* char *, copied */
	KEY_TEXT,	/* const char *, with "\n" "\t" "\\" unescaped */
	KEY_TEMPLATE,	/* KEY_TEXT whose indented continuation lines are joined */
	KEY_INT,	/* int in [lo, hi] */
	KEY_LONG,	/* long in [lo, hi] */
	KEY_SIZE,	/* size_t in [lo, hi] */
	KEY_OCTAL,	/* int in [lo, hi], written with a leading 0 */
	KEY_UIDS,	/* allow_uids: a comma-separated list */
	KEY_DTYPE,	/* bf16 | fp32 */
	KEY_PARALLEL,	/* asyncep | dpep | replicate */
	KEY_LOG,	/* debug | info | warn | error */
};

struct key {
	const char *section, *name;
	const char *flag;	/* --flag, or NULL: the file only */
	enum key_type type;
	long lo, hi;
	size_t off;		/* into zp_serve_cfg */
	const char *def;	/* default, as the file would spell it; NULL: unset */
	const char *help;
};

#define F(field) offsetof(zp_serve_cfg, field)
static const struct key keys[] = {
	{ "server", "socket", "socket", KEY_STR, 0, 0, F(socket), "/tmp/zprefill.sock", "Unix socket path" },
	{ "server", "socket_mode", NULL, KEY_OCTAL, 0, 0777, F(socket_mode), "0660", "mode of the socket file" },
	{ "server", "socket_group", NULL, KEY_STR, 0, 0, F(socket_group), NULL, "group to own the socket" },
	{ "server", "allow_uids", NULL, KEY_UIDS, 0, 0, F(allow_uids), NULL, "uids that may connect" },
	{ "server", "max_connections", "max-connections", KEY_INT, 1, 65536, F(max_connections), "256", "connections held at once" },
	{ "server", "header_bytes_max", NULL, KEY_SIZE, 256, 1 << 20, F(header_bytes_max), "16384", "request head limit (431)" },
	{ "server", "body_bytes_max", NULL, KEY_SIZE, 1024, 1L << 30, F(body_bytes_max), "8388608", "request body limit (413)" },
	{ "server", "header_timeout_ms", NULL, KEY_INT, 10, 3600000, F(header_timeout_ms), "10000", "head timeout (408)" },
	{ "server", "body_timeout_ms", NULL, KEY_INT, 10, 3600000, F(body_timeout_ms), "30000", "body timeout (408)" },
	{ "server", "idle_timeout_ms", NULL, KEY_INT, 10, 86400000, F(idle_timeout_ms), "60000", "idle connection timeout" },
	{ "server", "metrics_port", "metrics-port", KEY_INT, 0, 65535, F(metrics_port), "0", "loopback TCP port for GET /metrics" },
	{ "engine", "model", "model", KEY_STR, 0, 0, F(model), NULL, "model directory" },
	{ "engine", "model_name", NULL, KEY_STR, 0, 0, F(model_name), NULL, "name /v1/models reports" },
	{ "engine", "dtype", "dtype", KEY_DTYPE, 0, 0, F(wtype), "bf16", "bf16 or fp32" },
	{ "engine", "executors", "executors", KEY_INT, 1, 64, F(executors), "1", "executor threads" },
	{ "engine", "threads_per_executor", "threads", KEY_INT, 0, 1024, F(threads_per_executor), "0", "cores per executor (0: share)" },
	{ "engine", "parallel", "parallel", KEY_PARALLEL, 0, 0, F(parallel), "asyncep", "asyncep, dpep or replicate" },
	{ "engine", "transport", "transport", KEY_STR, 0, 0, F(transport), "cpu", "what moves asyncep shards" },
	{ "engine", "offload_window", "offload", KEY_INT, 0, 16, F(offload_window), "0", "asyncep offload slots (0: off)" },
	{ "engine", "max_tokens", "max-tokens", KEY_INT, 0, 1 << 20, F(max_tokens), "0", "longest sequence (0: from the model)" },
	{ "engine", "max_batch_tokens", "max-batch-tokens", KEY_INT, 16, 1 << 20, F(max_batch_tokens), "8192", "tokens per forward pass" },
	{ "engine", "batch_wait_ms", "batch-wait-ms", KEY_INT, 0, 10000, F(batch_wait_ms), "2", "wait for batch company" },
	{ "engine", "queue_requests_max", "queue-requests", KEY_INT, 1, 1 << 20, F(queue_requests_max), "256", "requests admitted at once" },
	{ "engine", "queue_tokens_max", "queue-tokens", KEY_LONG, 16, 1L << 40, F(queue_tokens_max), "1048576", "tokens admitted at once" },
	{ "rerank", "prefix", NULL, KEY_TEMPLATE, 0, 0, F(rerank.prefix), RR_PREFIX, "reranker prompt start" },
	{ "rerank", "suffix", NULL, KEY_TEMPLATE, 0, 0, F(rerank.suffix), RR_SUFFIX, "reranker prompt end" },
	{ "rerank", "instruction", NULL, KEY_TEMPLATE, 0, 0, F(rerank.instruction), RR_INSTRUCTION, "default instruction" },
	{ "rerank", "yes_token", NULL, KEY_TEXT, 0, 0, F(rerank.yes_token), "yes", "the yes label token" },
	{ "rerank", "no_token", NULL, KEY_TEXT, 0, 0, F(rerank.no_token), "no", "the no label token" },
	{ "log", "level", "log-level", KEY_LOG, 0, 0, F(log_level), "info", "debug, info, warn or error" },
};
#undef F
#define NKEYS (sizeof keys / sizeof *keys)

static int num(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 0);
	if (errno || end == v || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

/* "\n", "\t" and "\\" escapes, so templates fit on one ini line. */
static char *unescape(const char *v)
{
	char *s = zp_xmalloc(strlen(v) + 1), *o = s;
	for (; *v; v++) {
		if (*v == '\\' && (v[1] == 'n' || v[1] == 't' || v[1] == '\\')) {
			v++;
			*o++ = *v == 'n' ? '\n' : *v == 't' ? '\t' : '\\';
		} else {
			*o++ = *v;
		}
	}
	*o = 0;
	return s;
}

static int set_uids(zp_serve_cfg *c, const char *v, zp_err *e)
{
	char buf[1024], *save = NULL;
	if (strlen(v) >= sizeof buf)
		return zp_errf(e, "allow_uids is too long");
	strcpy(buf, v);
	c->n_allow_uids = 0;
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		long u;
		if (c->n_allow_uids == ZP_ALLOW_UIDS_MAX || num(t, 0, UINT_MAX - 1, &u))
			return zp_errf(e, "allow_uids: \"%s\" is not a uid (at most %d)", t,
				       ZP_ALLOW_UIDS_MAX);
		c->allow_uids[c->n_allow_uids++] = (uid_t)u;
	}
	return 0;
}

static int set_log(int *level, const char *v, zp_err *e)
{
	static const char *lv[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++)
		if (!strcmp(v, lv[i])) {
			*level = i;
			return 0;
		}
	return zp_errf(e, "log level must be debug, info, warn or error");
}

static int set_key(zp_serve_cfg *c, const struct key *k, const char *v, zp_err *e)
{
	char *p = (char *)c + k->off;
	long x;
	switch (k->type) {
	case KEY_STR:
	case KEY_TEXT:
	case KEY_TEMPLATE:
		free(*(char **)p);
		*(char **)p = k->type == KEY_STR ? strdup(v) : unescape(v);
		return 0;
	case KEY_UIDS: return set_uids(c, v, e);
	case KEY_LOG: return set_log((int *)p, v, e);
	case KEY_PARALLEL: return zp_parallel_parse(v, (enum zp_parallel *)p, e);
	case KEY_DTYPE:
		if (strcmp(v, "bf16") && strcmp(v, "fp32"))
			return zp_errf(e, "dtype must be bf16 or fp32");
		*(enum zp_wtype *)p = strcmp(v, "bf16") ? ZP_W_F32 : ZP_W_BF16;
		return 0;
	case KEY_OCTAL:
		if (num(v, k->lo, k->hi, &x) || v[0] != '0')
			return zp_errf(e, "%s must be octal, e.g. 0660", k->name);
		*(int *)p = (int)x;
		return 0;
	case KEY_INT:
	case KEY_LONG:
	case KEY_SIZE:
		if (num(v, k->lo, k->hi, &x))
			return zp_errf(e, "[%s] %s must be an integer in [%ld, %ld]", k->section, k->name,
				       k->lo, k->hi);
		if (k->type == KEY_INT)
			*(int *)p = (int)x;
		else if (k->type == KEY_LONG)
			*(long *)p = x;
		else
			*(size_t *)p = (size_t)x;
		return 0;
	}
	ZP_ASSERT(!"a key type without a setter");
	return -1;
}

static const struct key *find_key(const char *sec, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(sec, keys[i].section) && !strcmp(name, keys[i].name))
			return &keys[i];
	return NULL;
}

int zp_serve_cfg_set(zp_serve_cfg *c, const char *sec, const char *name, const char *v,
		     zp_err *e)
{
	const struct key *k = find_key(sec, name);
	if (!k)
		return zp_errf(e, "unknown key [%s] %s", sec, name);
	return set_key(c, k, v, e);
}

struct ini_ctx {
	zp_serve_cfg *c;
	zp_err *e;
	char last[128];		/* section.key of the previous line */
};

/* inih passes an indented continuation line as the same key again: [rerank]
   templates are long, so their continuation lines are joined with one space
   (inih trims each line, and the lines break between words). */
static int on_key(void *user, const char *sec, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	const struct key *k = find_key(sec, name);
	char key[128];
	snprintf(key, sizeof key, "%s.%s", sec, name);
	if (!strcmp(key, x->last) && k && k->type == KEY_TEMPLATE) {
		char **dst = (char **)((char *)x->c + k->off), *more = unescape(value), *all;
		if (asprintf(&all, "%s %s", *dst, more) < 0)
			all = NULL;
		ZP_ASSERT(all);
		free(more);
		free(*dst);
		*dst = all;
		return 1;
	}
	if (!strcmp(key, x->last)) {
		zp_errf(x->e, "[%s] %s is given twice", sec, name);
		return 0;
	}
	snprintf(x->last, sizeof x->last, "%s", key);
	return zp_serve_cfg_set(x->c, sec, name, value, x->e) == 0;
}

int zp_serve_cfg_load(zp_serve_cfg *c, const char *path, zp_err *e)
{
	zp_err ke = { { 0 } };
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].def && set_key(c, &keys[i], keys[i].def, e))
			ZP_ASSERT(!"a built-in default its own key refuses");
	if (!path)
		return 0;
	struct ini_ctx x = { c, &ke, "" };
	int rc = ini_parse(path, on_key, &x);
	if (rc < 0)
		return zp_errf(e, "config %s: cannot read it", path);
	if (rc > 0)
		return zp_errf(e, "config %s line %d: %s", path, rc, ke.msg[0] ? ke.msg : "syntax error");
	return 0;
}

void zp_serve_cfg_usage(FILE *f)
{
	fprintf(f, "usage: zprefill serve --model DIR [--config FILE] [--FLAG VALUE]...\n"
		   "  --config FILE          an ini file (conf/zprefill.ini lists every key)\n");
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].flag)
			fprintf(f, "  --%-20s %s ([%s] %s%s%s)\n", keys[i].flag, keys[i].help,
				keys[i].section, keys[i].name, keys[i].def ? ", default " : "",
				keys[i].def ? keys[i].def : "");
	fprintf(f, "  every key of the file can be set there; flags override it\n");
}

int zp_serve_cfg_args(zp_serve_cfg *c, int argc, char **argv, zp_err *e)
{
	struct option lo[NKEYS + 2];
	const struct key *of[NKEYS + 1];
	const char *config = NULL;
	int n = 0, idx, ch;
	lo[n] = (struct option){ "config", required_argument, NULL, 0 };
	of[n++] = NULL;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].flag) {
			lo[n] = (struct option){ keys[i].flag, required_argument, NULL, 0 };
			of[n++] = &keys[i];
		}
	lo[n] = (struct option){ 0, 0, 0, 0 };
	for (int i = 2; i + 1 < argc; i++) /* the file first, so flags override it */
		if (!strcmp(argv[i], "--config"))
			config = argv[i + 1];
	if (zp_serve_cfg_load(c, config, e))
		return -1;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lo, &idx)) != -1) {
		if (ch != 0) {
			zp_serve_cfg_usage(stderr);
			return zp_errf(e, "bad arguments");
		}
		if (of[idx] && set_key(c, of[idx], optarg, e))
			return -1;
	}
	if (optind != argc) {
		zp_serve_cfg_usage(stderr);
		return zp_errf(e, "unexpected argument %s", argv[optind]);
	}
	return 0;
}

void zp_serve_cfg_free(zp_serve_cfg *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == KEY_STR || keys[i].type == KEY_TEXT || keys[i].type == KEY_TEMPLATE)
			free(*(char **)((char *)c + keys[i].off));
	memset(c, 0, sizeof *c);
}
