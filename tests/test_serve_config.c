/* test_serve_config.c -- conf/zprefill.ini documents the defaults: loading it
   must give exactly the built-in defaults (every field, the long rerank
   template included). Bad files are refused naming the line. */
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "serve.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

int main(void)
{
	zp_serve_cfg d, f;
	zp_err e;
	CHECK(zp_serve_cfg_load(&d, NULL, &e) == 0, "defaults");
	CHECK(zp_serve_cfg_load(&f, "conf/zprefill.ini", &e) == 0, "conf/zprefill.ini: %s", e.msg);
	CHECK(!strcmp(d.socket, f.socket) && d.socket_mode == f.socket_mode && !f.socket_group &&
	      f.n_allow_uids == 0, "[server] socket keys");
	CHECK(d.max_connections == f.max_connections && d.header_bytes_max == f.header_bytes_max &&
	      d.body_bytes_max == f.body_bytes_max && d.header_timeout_ms == f.header_timeout_ms &&
	      d.body_timeout_ms == f.body_timeout_ms && d.idle_timeout_ms == f.idle_timeout_ms &&
	      d.metrics_port == f.metrics_port,
	      "[server] limits");
	CHECK(d.parallel == f.parallel && !strcmp(d.transport, f.transport) &&
	      d.offload_window == f.offload_window, "parallel, transport, offload_window");
	CHECK(d.wtype == f.wtype && d.executors == f.executors &&
	      d.threads_per_executor == f.threads_per_executor && d.max_tokens == f.max_tokens &&
	      d.max_batch_tokens == f.max_batch_tokens && d.batch_wait_ms == f.batch_wait_ms &&
	      d.queue_requests_max == f.queue_requests_max &&
	      d.queue_tokens_max == f.queue_tokens_max && d.log_level == f.log_level, "[engine]");
	CHECK(!strcmp(d.rerank.prefix, f.rerank.prefix), "rerank prefix:\n%s\nvs\n%s", d.rerank.prefix,
	      f.rerank.prefix);
	CHECK(!strcmp(d.rerank.suffix, f.rerank.suffix) &&
	      !strcmp(d.rerank.instruction, f.rerank.instruction) &&
	      !strcmp(d.rerank.yes_token, f.rerank.yes_token) &&
	      !strcmp(d.rerank.no_token, f.rerank.no_token), "rerank keys");
	zp_serve_cfg_free(&d);
	zp_serve_cfg_free(&f);

	static const struct { const char *text, *msg; } bad[] = {
		{ "[server]\nmax_connections = 0\n", "line 2: [server] max_connections must be" },
		{ "[server]\nnope = 1\n", "line 2: unknown key [server] nope" },
		{ "[engine]\ndtype = fp16\n", "line 2: dtype must be bf16 or fp32" },
		{ "[server]\nsocket_mode = 660\n", "socket_mode must be octal" },
		{ "[server]\nallow_uids = 1,x\n", "allow_uids" },
		{ "[engine]\nexecutors = 2\nexecutors = 3\n", "line 3: [engine] executors is given twice" },
		{ "[log]\nlevel = loud\n", "log level must be" },
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
	return check_exit("test_serve_config");
}
