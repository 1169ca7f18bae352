/* serve_config.c -- the serve configuration: defaults, the ini file (inih)
   and flags, all through zp_serve_cfg_set so each key is checked in one
   place. conf/zprefill.ini documents every key with its default. Start-up
   only, one thread. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RR_PREFIX                                                                          \
	"<|im_start|>system\\nJudge whether the Document meets the requirements based on the " \
	"Query and the Instruct provided. Note that the answer can only be \"yes\" or "       \
	"\"no\".<|im_end|>\\n<|im_start|>user\\n"
#define RR_SUFFIX "<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n"
#define RR_INSTRUCTION "Given a web search query, retrieve relevant passages that answer the query"

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

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
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

struct key {
	const char *section, *name;
	long lo, hi;
	size_t off;		/* into zp_serve_cfg */
	char kind;		/* i: int, l: long, z: size_t, s: string */
};

#define K(sec, name, lo, hi, field, kind) { sec, name, lo, hi, offsetof(zp_serve_cfg, field), kind }
static const struct key keys[] = {
	K("server", "socket", 0, 0, socket, 's'),
	K("server", "socket_group", 0, 0, socket_group, 's'),
	K("server", "max_connections", 1, 65536, max_connections, 'i'),
	K("server", "header_bytes_max", 256, 1 << 20, header_bytes_max, 'z'),
	K("server", "body_bytes_max", 1024, 1L << 30, body_bytes_max, 'z'),
	K("server", "header_timeout_ms", 10, 3600000, header_timeout_ms, 'i'),
	K("server", "body_timeout_ms", 10, 3600000, body_timeout_ms, 'i'),
	K("server", "idle_timeout_ms", 10, 86400000, idle_timeout_ms, 'i'),
	K("server", "metrics_port", 0, 65535, metrics_port, 'i'),
	K("engine", "model", 0, 0, model, 's'),
	K("engine", "model_name", 0, 0, model_name, 's'),
	K("engine", "transport", 0, 0, transport, 's'),
	K("engine", "executors", 1, 64, executors, 'i'),
	K("engine", "threads_per_executor", 0, 1024, threads_per_executor, 'i'),
	K("engine", "max_tokens", 0, 1 << 20, max_tokens, 'i'),
	K("engine", "max_batch_tokens", 16, 1 << 20, max_batch_tokens, 'i'),
	K("engine", "batch_wait_ms", 0, 10000, batch_wait_ms, 'i'),
	K("engine", "queue_requests_max", 1, 1 << 20, queue_requests_max, 'i'),
	K("engine", "queue_tokens_max", 16, 1L << 40, queue_tokens_max, 'l'),
	K("engine", "offload_window", 0, 16, offload_window, 'i'),
};

int zp_serve_cfg_set(zp_serve_cfg *c, const char *sec, const char *name, const char *v,
		     zp_err *e)
{
	long x;
	if (!strcmp(sec, "server") && !strcmp(name, "socket_mode")) {
		if (num(v, 0, 0777, &x) || v[0] != '0')
			return zp_errf(e, "socket_mode must be octal, e.g. 0660");
		c->socket_mode = (int)x;
		return 0;
	}
	if (!strcmp(sec, "server") && !strcmp(name, "allow_uids"))
		return set_uids(c, v, e);
	if (!strcmp(sec, "engine") && !strcmp(name, "dtype")) {
		if (strcmp(v, "bf16") && strcmp(v, "fp32"))
			return zp_errf(e, "dtype must be bf16 or fp32");
		c->wtype = strcmp(v, "bf16") ? ZP_W_F32 : ZP_W_BF16;
		return 0;
	}
	if (!strcmp(sec, "engine") && !strcmp(name, "parallel"))
		return zp_parallel_parse(v, &c->parallel, e);
	if (!strcmp(sec, "log") && !strcmp(name, "level")) {
		static const char *lv[] = { "debug", "info", "warn", "error" };
		for (int i = 0; i < 4; i++)
			if (!strcmp(v, lv[i])) {
				c->log_level = i;
				return 0;
			}
		return zp_errf(e, "log level must be debug, info, warn or error");
	}
	if (!strcmp(sec, "rerank")) {
		const char **dst = !strcmp(name, "prefix")	 ? &c->rerank.prefix :
				   !strcmp(name, "suffix")	 ? &c->rerank.suffix :
				   !strcmp(name, "instruction") ? &c->rerank.instruction :
				   !strcmp(name, "yes_token")	 ? &c->rerank.yes_token :
				   !strcmp(name, "no_token")	 ? &c->rerank.no_token : NULL;
		if (!dst)
			return zp_errf(e, "unknown key [rerank] %s", name);
		free((char *)*dst);
		*dst = unescape(v);
		return 0;
	}
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		const struct key *k = &keys[i];
		if (strcmp(sec, k->section) || strcmp(name, k->name))
			continue;
		char *p = (char *)c + k->off;
		if (k->kind == 's') {
			set_str((char **)p, v);
			return 0;
		}
		if (num(v, k->lo, k->hi, &x))
			return zp_errf(e, "[%s] %s must be an integer in [%ld, %ld]", sec, name, k->lo,
				       k->hi);
		if (k->kind == 'i')
			*(int *)p = (int)x;
		else if (k->kind == 'l')
			*(long *)p = x;
		else
			*(size_t *)p = (size_t)x;
		return 0;
	}
	return zp_errf(e, "unknown key [%s] %s", sec, name);
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
	char key[128];
	snprintf(key, sizeof key, "%s.%s", sec, name);
	if (!strcmp(key, x->last) && !strcmp(sec, "rerank")) {
		const char **dst = !strcmp(name, "prefix")	 ? &x->c->rerank.prefix :
				   !strcmp(name, "suffix")	 ? &x->c->rerank.suffix :
				   !strcmp(name, "instruction") ? &x->c->rerank.instruction : NULL;
		if (dst) {
			char *more = unescape(value), *all;
			if (asprintf(&all, "%s %s", *dst, more) < 0)
				all = NULL;
			ZP_ASSERT(all);
			free(more);
			free((char *)*dst);
			*dst = all;
			return 1;
		}
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
	c->socket = strdup("/tmp/zprefill.sock");
	c->socket_mode = 0660;
	c->max_connections = 256;
	c->header_bytes_max = 16384;
	c->body_bytes_max = 8u << 20;
	c->header_timeout_ms = 10000;
	c->body_timeout_ms = 30000;
	c->idle_timeout_ms = 60000;
	c->wtype = ZP_W_BF16;
	c->executors = 1;
	c->parallel = ZP_PAR_ASYNCEP;
	c->transport = strdup("cpu");
	c->max_batch_tokens = 8192;
	c->batch_wait_ms = 2;
	c->queue_requests_max = 256;
	c->queue_tokens_max = 1 << 20;
	c->log_level = ZP_LOG_INFO;
	c->rerank.prefix = unescape(RR_PREFIX);
	c->rerank.suffix = unescape(RR_SUFFIX);
	c->rerank.instruction = strdup(RR_INSTRUCTION);
	c->rerank.yes_token = strdup("yes");
	c->rerank.no_token = strdup("no");
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

void zp_serve_cfg_free(zp_serve_cfg *c)
{
	free(c->socket);
	free(c->socket_group);
	free(c->model);
	free(c->model_name);
	free(c->transport);
	free((char *)c->rerank.prefix);
	free((char *)c->rerank.suffix);
	free((char *)c->rerank.instruction);
	free((char *)c->rerank.yes_token);
	free((char *)c->rerank.no_token);
	memset(c, 0, sizeof *c);
}
