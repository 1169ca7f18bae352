/* serve.h -- `zprefill serve`: its configuration (serve_config.c: one key
   table for the ini file, read through inih, and the command-line flags) and
   the entry point that runs the server until SIGTERM/SIGINT (server.c).
   Start-up, one thread. */
#ifndef ZP_SERVE_H
#define ZP_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "api.h"
#include "asyncep.h"
#include "gemm.h"
#include "util.h"

#define ZP_ALLOW_UIDS_MAX 64
#define ZP_SERVE_MAX_TOKENS_DEFAULT 8192	/* max_tokens 0: min(the model's, this) */

typedef struct {
	/* [server] */
	char *socket;			/* path of the Unix socket */
	int socket_mode;		/* e.g. 0660 */
	char *socket_group;		/* group name, or NULL */
	uid_t allow_uids[ZP_ALLOW_UIDS_MAX];
	int n_allow_uids;		/* 0: any uid may connect */
	int max_connections;
	size_t header_bytes_max, body_bytes_max;
	int header_timeout_ms, body_timeout_ms, idle_timeout_ms;
	int metrics_port;		/* loopback TCP port for GET /metrics (0: none) */
	/* [engine] */
	char *model;			/* model directory */
	char *model_name;		/* as /v1/models reports it */
	enum zp_wtype wtype;
	int executors, threads_per_executor;
	enum zp_parallel parallel;	/* how experts are placed across executors */
	char *transport;		/* asyncep gathers: cpu (nccl, p2p: CUDA builds) */
	int offload_window;		/* asyncep offload mode: slots per executor (0: off) */
	int max_tokens;			/* per sequence; 0: see ZP_SERVE_MAX_TOKENS_DEFAULT */
	int max_batch_tokens;
	int batch_wait_ms;
	int queue_requests_max;
	long queue_tokens_max;
	/* [rerank] */
	zp_rerank_cfg rerank;
	/* [log] */
	int log_level;
} zp_serve_cfg;

/* Defaults, then the file (when path is not NULL), strictly: an unknown
   section or key, or a bad value, is an error naming its line. 0 or -1. */
int zp_serve_cfg_load(zp_serve_cfg *c, const char *path, zp_err *e);
/* One key=value by section, as the file would give it (flags use this too). */
int zp_serve_cfg_set(zp_serve_cfg *c, const char *section, const char *key, const char *value,
		     zp_err *e);
/* `zprefill serve` arguments (argv[2] on): the --config file first, then
   every flag over it. 0, or -1 with the usage on stderr. */
int zp_serve_cfg_args(zp_serve_cfg *c, int argc, char **argv, zp_err *e);
/* The flags, each with its key, help and default (from the key table). */
void zp_serve_cfg_usage(FILE *f);
void zp_serve_cfg_free(zp_serve_cfg *c);

/* `zprefill serve ...`: the process exit code. */
int zp_serve_main(int argc, char **argv);

#endif
