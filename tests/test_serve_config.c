/* test_serve_config.c -- conf/zprefill.ini documents the defaults: loading it
   must give exactly the built-in defaults (every field, the long rerank
   template included). Bad files are refused naming the line. The one key
   table serves prefill, bench and serve alike: a shared flag is one key with
   one default, a bad flag value is refused naming the flag, and each
   command's --help lists every flag it takes. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "serve.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static const char *const cmd_names[] = { "serve", "prefill", "bench" };
#define NCMD 3

/* argv of `zprefill CMD` with what each command requires, then extra. */
static int args(zp_serve_cfg *c, const char *cmd, const char *const *extra, int nextra, zp_err *e)
{
	char *argv[32];
	int n = 0;
	argv[n++] = "zprefill";
	argv[n++] = (char *)cmd;
	if (strcmp(cmd, "serve")) {
		argv[n++] = "--model";
		argv[n++] = "tests/models/odd";
	}
	if (!strcmp(cmd, "bench")) {
		argv[n++] = "--tokens";
		argv[n++] = "7";
		argv[n++] = "--seqs";
		argv[n++] = "2";
	}
	for (int i = 0; i < nextra; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	return zp_serve_cfg_args(c, n, argv, e);
}

/* One default for --parallel and --max-batch-tokens across the commands:
   each is the same row of the table, and parsing gives the same value. */
static void commands(void)
{
	const zp_opt_table *t = zp_serve_cfg_table();
	const char *shared[] = { "parallel", "max-batch-tokens", "max-tokens", "threads", "executors",
				 "dtype", "model", "transport", "offload", "log-level" };
	for (size_t s = 0; s < sizeof shared / sizeof *shared; s++) {
		const zp_opt *k = zp_opt_by_flag(t, ZP_CMD_SERVE, shared[s]);
		CHECK(k && k == zp_opt_by_flag(t, ZP_CMD_PREFILL, shared[s]) &&
		      k == zp_opt_by_flag(t, ZP_CMD_BENCH, shared[s]), "--%s is one key", shared[s]);
	}
	for (int i = 0; i < NCMD; i++) {
		zp_serve_cfg c;
		zp_err e;
		CHECK(args(&c, cmd_names[i], NULL, 0, &e) == 0, "%s: %s", cmd_names[i], e.msg);
		CHECK(c.parallel == ZP_PARALLEL_DEFAULT, "%s: --parallel default", cmd_names[i]);
		CHECK(c.batch_tokens_max == ZP_BATCH_TOKENS_DEFAULT, "%s: --max-batch-tokens default %d",
		      cmd_names[i], c.batch_tokens_max);
		zp_serve_cfg_free(&c);
		static const char *const set[] = { "--parallel", "dpep", "--max-batch-tokens", "1",
						   "--threads", "3", "--max-tokens", "16" };
		CHECK(args(&c, cmd_names[i], set, 8, &e) == 0, "%s: %s", cmd_names[i], e.msg);
		CHECK(c.parallel == ZP_PAR_DPEP && c.batch_tokens_max == 1 &&
		      c.threads_per_executor == 3 && c.seq_tokens_max == 16 &&
		      zp_serve_cfg_threads(&c) == 3, "%s: flags set their fields", cmd_names[i]);
		zp_serve_cfg_free(&c);
	}
	/* the file under the flags, for prefill too */
	zp_serve_cfg c;
	zp_err e;
	static const char *const cfgflag[] = { "--config", "conf/zprefill.ini", "--executors", "2" };
	CHECK(args(&c, "prefill", cfgflag, 4, &e) == 0 && c.executors == 2 && c.bench.iters == 3,
	      "prefill --config: %s", e.msg);
	zp_serve_cfg_free(&c);
}

/* A bad value, a missing one, another command's flag or a missing required
   flag: refused, naming the flag. */
static void bad_flags(void)
{
	static const struct { const char *cmd, *flag, *value, *msg; } bad[] = {
		{ "prefill", "--max-batch-tokens", "0", "--max-batch-tokens must be an integer in [1, " },
		{ "bench", "--max-batch-tokens", "x", "--max-batch-tokens must be an integer" },
		{ "serve", "--max-batch-tokens", "2000000", "--max-batch-tokens must be an integer" },
		{ "prefill", "--parallel", "tp", "--parallel must be asyncep, dpep or replicate" },
		{ "serve", "--parallel", "", "--parallel must be" },
		{ "bench", "--dtype", "fp16", "--dtype must be bf16, fp32 or fp8" },
		{ "prefill", "--threads", "-1", "--threads must be an integer in [0, " },
		{ "bench", "--seqs", "1025", "--seqs must be an integer in [1, 1024]" },
		{ "prefill", "--executors", "65", "--executors must be an integer in [1, 64]" },
		{ "serve", "--log-level", "loud", "--log-level must be debug, info, warn or error" },
		{ "prefill", "--socket", "/tmp/x", "unknown flag --socket" },
		{ "prefill", "--tokens", "5", "unknown flag --tokens" },
		{ "serve", "--iters", "5", "unknown flag --iters" },
		{ "prefill", "--nope", "1", "unknown flag --nope" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		zp_serve_cfg c;
		zp_err e = { { 0 } };
		const char *extra[] = { bad[i].flag, bad[i].value };
		CHECK(args(&c, bad[i].cmd, extra, 2, &e) == -1 && strstr(e.msg, bad[i].msg),
		      "%s %s %s: \"%s\"", bad[i].cmd, bad[i].flag, bad[i].value, e.msg);
		zp_serve_cfg_free(&c);
	}
	zp_serve_cfg c;
	zp_err e = { { 0 } };
	char *noval[] = { "zprefill", "prefill", "--model", "m", "--max-tokens", NULL };
	CHECK(zp_serve_cfg_args(&c, 5, noval, &e) == -1 && strstr(e.msg, "--max-tokens needs a value"),
	      "flag without a value: %s", e.msg);
	zp_serve_cfg_free(&c);
	char *nomodel[] = { "zprefill", "prefill", NULL };
	CHECK(zp_serve_cfg_args(&c, 2, nomodel, &e) == -1 && strstr(e.msg, "--model is required"),
	      "prefill without --model: %s", e.msg);
	zp_serve_cfg_free(&c);
	char *noseqs[] = { "zprefill", "bench", "--model", "m", "--tokens", "3", NULL };
	CHECK(zp_serve_cfg_args(&c, 6, noseqs, &e) == -1 && strstr(e.msg, "--seqs is required"),
	      "bench without --seqs: %s", e.msg);
	zp_serve_cfg_free(&c);
}

/* Every key's flag is in its command's --help (and no other command's). */
static void help_lists_flags(void)
{
	const zp_opt_table *t = zp_serve_cfg_table();
	unsigned bits[NCMD] = { ZP_CMD_SERVE, ZP_CMD_PREFILL, ZP_CMD_BENCH };
	for (int i = 0; i < NCMD; i++) {
		char *text = NULL, want[64];
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		zp_serve_cfg_usage(bits[i], f);
		fclose(f);
		CHECK(strstr(text, cmd_names[i]) && strstr(text, "--config"), "%s usage line", cmd_names[i]);
		for (size_t k = 0; k < t->n; k++) {
			if (!t->keys[k].flag)
				continue;
			snprintf(want, sizeof want, "  --%s ", t->keys[k].flag);
			bool listed = strstr(text, want) != NULL;
			CHECK(listed == !!(t->keys[k].cmds & bits[i]), "%s --help %s %s", cmd_names[i],
			      listed ? "lists" : "misses", want);
		}
		free(text);
	}
}

/* conf/zprefill.ini lists every key of the table (set, or commented out when
   it has no default), so the file stays the reference it says it is. */
static void ini_lists_every_key(void)
{
	FILE *f = fopen("conf/zprefill.ini", "r");
	CHECK(f, "conf/zprefill.ini");
	if (!f)
		return;
	static char text[1 << 16];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = 0;
	const zp_opt_table *t = zp_serve_cfg_table();
	for (size_t i = 0; i < t->n; i++) {
		const char *k = t->keys[i].name;
		size_t kl = strlen(k);
		bool found = false;
		for (const char *l = text; l && *l && !found; l = strchr(l, '\n'), l = l ? l + 1 : l) {
			const char *p = l;
			if (p[0] == ';' && p[1] == ' ')
				p += 2;
			if (!strncmp(p, k, kl) && (p[kl] == ' ' || p[kl] == '='))
				found = true;
		}
		CHECK(found, "conf/zprefill.ini does not list [%s] %s", t->keys[i].section, k);
	}
}

int main(void)
{
	zp_serve_cfg d, f;
	ini_lists_every_key();
	zp_err e;
	CHECK(zp_serve_cfg_load(&d, NULL, &e) == 0, "defaults");
	CHECK(zp_serve_cfg_load(&f, "conf/zprefill.ini", &e) == 0, "conf/zprefill.ini: %s", e.msg);
	/* socket: unset in both (the default path is chosen at start: zp_socket_default) */
	CHECK(!d.socket && !f.socket && d.socket_mode == f.socket_mode && !f.socket_group &&
	      f.n_allow_uids == 0, "[server] socket keys");
	CHECK(d.max_connections == f.max_connections && d.header_bytes_max == f.header_bytes_max &&
	      d.body_bytes_max == f.body_bytes_max && d.header_timeout_ms == f.header_timeout_ms &&
	      d.body_timeout_ms == f.body_timeout_ms && d.idle_timeout_ms == f.idle_timeout_ms &&
	      d.metrics_port == f.metrics_port,
	      "[server] limits");
	CHECK(d.parallel == f.parallel && !strcmp(d.transport, f.transport) &&
	      d.offload_window == f.offload_window, "parallel, transport, offload_window");
	CHECK(d.dtype == f.dtype && d.executors == f.executors &&
	      d.threads_per_executor == f.threads_per_executor &&
	      d.seq_tokens_max == f.seq_tokens_max && d.batch_tokens_max == f.batch_tokens_max &&
	      d.batch_wait_ms == f.batch_wait_ms &&
	      d.queue_requests_max == f.queue_requests_max &&
	      d.queue_tokens_max == f.queue_tokens_max && d.log_level == f.log_level, "[engine]");
	CHECK(!strcmp(d.rerank.prefix, f.rerank.prefix), "rerank prefix:\n%s\nvs\n%s", d.rerank.prefix,
	      f.rerank.prefix);
	CHECK(!strcmp(d.rerank.suffix, f.rerank.suffix) &&
	      !strcmp(d.rerank.instruction, f.rerank.instruction) &&
	      !strcmp(d.rerank.yes_token, f.rerank.yes_token) &&
	      !strcmp(d.rerank.no_token, f.rerank.no_token), "rerank keys");
	CHECK(d.bench.seq_tokens == f.bench.seq_tokens && d.bench.seqs == f.bench.seqs &&
	      d.bench.iters == f.bench.iters, "[bench]");
	CHECK(d.parallel == ZP_PARALLEL_DEFAULT && d.batch_tokens_max == ZP_BATCH_TOKENS_DEFAULT &&
	      d.seq_tokens_max == 0, "defaults from the named constants");
	zp_serve_cfg_free(&d);
	zp_serve_cfg_free(&f);

	static const struct { const char *text, *msg; } bad[] = {
		{ "[server]\nmax_connections = 0\n", "line 2: [server] max_connections must be" },
		{ "[server]\nnope = 1\n", "line 2: unknown key [server] nope" },
		{ "[engine]\ndtype = fp16\n", "line 2: [engine] dtype must be bf16, fp32 or fp8" },
		{ "[server]\nsocket_mode = 660\n", "socket_mode must be octal" },
		{ "[server]\nallow_uids = 1,x\n", "allow_uids" },
		{ "[engine]\nexecutors = 2\nexecutors = 3\n", "line 3: [engine] executors is given twice" },
		{ "[log]\nlevel = loud\n", "[log] level must be debug, info, warn or error" },
		{ "[other]\nx = 1\n", "unknown key [other] x" },
	};
	char path[] = "/tmp/zp-cfg-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		write_file(path, bad[i].text);
		int rc = zp_serve_cfg_load(&f, path, &e);
		CHECK(rc == -1 && strstr(e.msg, bad[i].msg), "bad config %zu: %s", i, e.msg);
		zp_serve_cfg_free(&f);
	}
	unlink(path);
	CHECK(zp_serve_cfg_load(&f, "/nonexistent.ini", &e) == -1, "missing file");
	zp_serve_cfg_free(&f);
	commands();
	bad_flags();
	help_lists_flags();
	return check_exit("test_serve_config");
}
