/* serve.h -- zprefill's settings and `zprefill serve`. serve_config.c holds
   the one key table (opts.h) of every setting of `serve`, `prefill` and
   `bench`: its ini key, flag, commands, bounds, default and help; the ini
   file, the flags and each command's --help come from it. server.c runs the
   server until SIGTERM/SIGINT. Start-up, one thread. */
#ifndef ZP_SERVE_H
#define ZP_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "api.h"
#include "asyncep.h"
#include "weights.h"	/* enum zp_wtype */
#include "opts.h"
#include "util.h"

#define ZP_ALLOW_UIDS_MAX 64
#define ZP_THREADS_MAX 1024	/* threads_per_executor bound */

/* The commands a key belongs to (zp_opt.cmds, .required). */
enum zp_cmd { ZP_CMD_SERVE = 1, ZP_CMD_PREFILL = 2, ZP_CMD_BENCH = 4 };

/* Every setting, by ini section; the table says which command reads which
   (prefill and bench: [engine], [bench], [log]). */
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
	int stall_timeout_ms;		/* a busy executor this long without progress is
					   stalled: /health says so, no new work goes to it
					   (0: no such test) */
	int shutdown_timeout_ms;	/* after SIGTERM, admitted requests still not
					   answered this long get 503 and the process exits 1
					   (0: wait for them however long) */
	int metrics_port;		/* loopback TCP port for GET /metrics (0: none) */
	/* listen_tcp: a loopback address for the whole API (tcp_len 0: none) */
	struct sockaddr_storage tcp_addr;
	socklen_t tcp_len;
	char listen_tcp[64];		/* as given, for logs */
	/* [engine] */
	char *model;			/* model directory */
	char *model_name;		/* as /v1/models reports it */
	int dtype;			/* --dtype: enum zp_dtype_arg (model.h) */
	int fp8_compute;		/* enum zp_fp8_compute (weights.h) */
	long random_weights;		/* seed: every weight made (random_fill.h) from
					   model's config.json alone; -1: the checkpoint */
	int executors;
	int threads_per_executor;	/* 0: the online cores shared (zp_serve_cfg_threads) */
	enum zp_parallel parallel;	/* how experts are placed across executors */
	char *transport;		/* asyncep gathers: cpu (nccl, p2p: CUDA builds) */
	int offload_window;		/* asyncep offload mode: slots per executor (0: off) */
	int keep_host_experts;		/* asyncep: keep the model's experts in host memory,
					   the copy a lost executor's are re-placed from */
	int device;			/* enum zp_device: cpu, cuda, sim (a test device) */
	int seq_tokens_max;		/* tokens of one sequence; 0: zp_serve_cfg_seq_tokens */
	int batch_tokens_max;		/* tokens of one forward pass */
	size_t kv_cache_bytes;		/* each executor's prefix KV cache (0: none;
					   ZP_KV_AUTO, the default: sized at start) */
	int batch_wait_ms;
	int batch_wait_us;		/* -1: batch_wait_ms */
	int schedule;			/* enum zp_sched_policy */
	int schedule_aging_ms;		/* prefix_flops: a job waits this long at most for matches */
	int schedule_min_tokens;	/* prefix_flops: T's floor, in tokens */
	int queue_requests_max;
	long queue_tokens_max;
	/* [rerank] */
	zp_rerank_cfg rerank;
	/* [bench] (bench only) */
	struct {
		int seq_tokens, seqs, iters;	/* each forward: seqs sequences of seq_tokens */
		char *profile;			/* per-op times to this file (NULL: a plain bench) */
	} bench;
	/* [log] */
	int log_level;			/* enum zp_log_level */
} zp_serve_cfg;

/* The key table (serve_config.c). */
const zp_opt_table *zp_serve_cfg_table(void);
/* "serve", "prefill" or "bench": its ZP_CMD_ bit; 0 for another name. */
unsigned zp_cmd_of(const char *name);

/* Defaults, then the file (when path is not NULL), strictly: an unknown
   section or key, or a bad value, is an error naming its line. 0 or -1. */
int zp_serve_cfg_load(zp_serve_cfg *c, const char *path, zp_err *e);
/* `zprefill CMD` arguments, CMD = argv[1] (serve, prefill or bench): the
   defaults, the --config file, then every flag of CMD over it; the keys CMD
   requires must be given. 0, or -1 with e naming the flag or key (the
   caller reports it). */
int zp_serve_cfg_args(zp_serve_cfg *c, int argc, char **argv, zp_err *e);
/* CMD's usage line, then its flags, each with help, default and ini key. */
void zp_serve_cfg_usage(unsigned cmd, FILE *f);
void zp_serve_cfg_free(zp_serve_cfg *c);

/* The socket path when none is set, in a directory only its owner may write
   (a socket in a world-writable one such as /tmp can be bound first by
   another local user, and clients would talk to that user's process):
   $XDG_RUNTIME_DIR/zprefill.sock where XDG_RUNTIME_DIR is an absolute path
   (a user's own), else /run/zprefill/zprefill.sock (a service's). Into buf;
   `serve` and the client commands share it. */
const char *zp_socket_default(char *buf, size_t n);

/* Worker threads per executor: threads_per_executor, or (0) the online cores
   shared among the executors, at least 1. */
int zp_serve_cfg_threads(const zp_serve_cfg *c);
/* Resolves seq_tokens_max for a model of max_positions: 0 becomes
   min(max_positions, ZP_SEQ_TOKENS_DEFAULT). 0, or -1 (over max_positions)
   with e set. */
int zp_serve_cfg_seq_tokens(zp_serve_cfg *c, int max_positions, zp_err *e);
/* kv_cache_bytes for every executor fits the host's memory where the cache
   lives there (cpu, sim; a GPU's is checked when its pool is made): a start
   error rather than an abort on the executor thread. 0, or -1 with e set. */
int zp_serve_cfg_check_kv(const zp_serve_cfg *c, zp_err *e);
/* --fp8-compute against the device: w8a16 everywhere; w8a8 nowhere yet (the
   cpu computes FP8 weights w8a16 only; the cuda backend's FP8 is to come).
   0, or -1 with e saying so. */
int zp_serve_cfg_check_fp8(const zp_serve_cfg *c, zp_err *e);

/* What runs, said once: "parallel=replicate configured=asyncep why=\"...\""
   when the engine ran another placement than the one configured (one
   executor, or no MoE layer: nothing to place), else "parallel=X", into
   buf[n]; returns buf. */
const char *zp_serve_cfg_parallel_said(const zp_serve_cfg *c, int ran, char *buf, size_t n);

/* `zprefill serve ...`: the process exit code. */
int zp_serve_main(int argc, char **argv);

#endif
