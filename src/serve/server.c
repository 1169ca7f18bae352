/* server.c -- `zprefill serve`: start-up and teardown, the loader thread,
   the engine glue (jobs in, finished jobs out, results back to their
   connection) and shutdown. The reactor thread runs loop(): each turn it
   waits on the reactor (reactor.c, bounded by the next deadline), hands
   connection completions to conn.c, pumps the engine (batches for idle
   executors) and checks timeouts. It never blocks and never runs a forward pass; tokenizing a
   small request is its bounded work, and a body of ZP_OFFLOAD_BODY_MIN bytes
   or more is built on the offload worker (offload.h). The loader thread loads the
   weights and starts the executors while the reactor already answers
   /health (503 with progress) and /tokenize.

   Memory: everything a request uses is allocated in setup(), sized from the
   limits: each job slot's region (zp_api_job_bytes), the api's parse region,
   the response body buffer (zp_api_response_bytes; over it: a 500 saying
   so) and the connections' buffers and pools (conn.h). The request path
   allocates nothing (tests/test_alloc_serve counts it). */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "api.h"
#include "api_info.h"
#include "conn.h"
#include "device.h"
#include "doorbell.h"
#include "engine.h"
#include "http.h"
#include "metrics.h"
#include "model.h"
#include "offload.h"
#include "reactor.h"
#include "router.h"
#include "sd.h"
#include "serve.h"
#include "tokenizer.h"
#include "util.h"

#define SCAN_S 0.05			/* timeout scan period */
#define DEADLINE_FLUSH_S 1.0		/* after the shutdown deadline: time for the 503s to go */
#define LISTEN_BACKLOG 1024		/* the Unix socket */
#define METRICS_BACKLOG 64		/* the loopback metrics listener */

enum load_state { LOAD_RUNNING, LOAD_DONE, LOAD_FAILED };

typedef struct {
	zp_serve_cfg cfg;
	zp_reactor rx;
	int lfd, sfd;
	zp_bell done;			/* rung by the executors and by the loader when it ends */
	int mfd;			/* loopback TCP listener for /metrics, or -1 */
	int tfd;			/* loopback TCP listener for the whole API, or -1 */
	uint64_t efd_val;
	struct signalfd_siginfo sig;
	zp_conns cx;			/* the connections: a job's owner names one (owner_pack) */
	zp_api_job *jobs;		/* [queue_requests_max] */
	zp_region *job_rg;		/* [queue_requests_max]: jobs[i]'s memory */
	zp_job *job_free;		/* unused slots' engine jobs, linked by next */
	zp_metrics met;
	zp_api api;
	zp_offload *off;		/* builds large bodies off this thread (NULL: none fit) */
	zp_tok *tok;
	zp_chat chat;			/* tokenizer_config.json's chat template (api_chat.c) */
	zp_config mcfg;
	zp_model model;
	zp_engine *eng;			/* written by the loader thread until ready: the
					   scheduler, placement and executors */
	int live;			/* executors the reactor uses, once loaded */
	pthread_t loader;
	zp_load_progress progress;
	_Atomic int load_state;
	zp_err load_err;
	bool ready, loader_joined, stopping;
	bool accept_armed[3];		/* [0] the Unix socket, [1] the metrics listener, [2] the
					   TCP API listener (conn.h's listener numbers) */
	bool accept_rearm[3];		/* ended on an error: armed again at the next scan */
	int exit_code;
	bool sock_owned;		/* we created the socket file (not systemd): ours to
					   unlink at stop, or when the start fails */
	/* systemd (sd.h): load progress as STATUS, watchdog pings while executors
	   make progress */
	int status_layers;		/* layers_done last reported */
	double wd_s, wd_next;		/* watchdog period (0: none), next ping */
	bool wd_withheld;		/* the last ping was withheld (logged once per stall) */
	/* shutdown: when it began; whether shutdown_timeout_ms passed with
	   requests unanswered (they got 503; the engine is left as it is) */
	double stop_at;
	bool deadline_passed;
	zp_buf body;			/* response bodies (fixed: zp_api_response_bytes) */
	double now, next_scan;
} server;

/* ---- jobs ---- */

/* A job's owner cookie (job.h): the connection's slot in cx and its
   generation, so a reused slot is told apart. */
static uint64_t owner_pack(uint32_t slot, uint32_t gen)
{
	return (uint64_t)slot << 32 | gen;
}

/* The connection that owns j (it is still waiting for the answer). */
static zp_conn *owner_conn(server *s, const zp_api_job *j)
{
	uint32_t slot = (uint32_t)(j->eng.owner >> 32), gen = (uint32_t)j->eng.owner;
	ZP_ASSERT(slot < (uint32_t)s->cx.n);
	zp_conn *c = &s->cx.slot[slot];
	ZP_ASSERT(c->gen == gen && c->state == ZP_CONN_ENGINE && c->job == j);
	return c;
}

/* A job slot back on the free list (never admitted, or finished). */
static void job_put_back(server *s, zp_api_job *j)
{
	zp_api_job_free(j);
	memset(j, 0, sizeof *j);
	j->eng.next = s->job_free;
	s->job_free = &j->eng;
}

/* Jobs admitted and not yet answered (none before the engine is up). */
static int admitted(const server *s)
{
	return s->ready ? zp_engine_sched(s->eng)->requests : 0;
}

static void listen_on(server *s, int which)
{
	zp_reactor_accept(&s->rx, which == 0 ? s->lfd : which == 1 ? s->mfd : s->tfd, (uint32_t)which);
	s->accept_armed[which] = true;
}

static void respond(server *s, zp_conn *c, int status, const char *ctype, const char *body,
		    size_t len, int retry_after)
{
	zp_conn_respond(&s->cx, c, status, ctype, body, len, retry_after);
}

static void respond_json(server *s, zp_conn *c, int status, int retry_after)
{
	respond(s, c, status, "application/json", s->body.p, s->body.len, retry_after);
}

/* A body that did not fit the response buffer is a 500 saying so. */
static int body_fits(server *s, int status)
{
	if (!s->body.overflow)
		return status;
	return zp_api_error(&s->body, ZP_HTTP_ERR_INTERNAL, NULL, "the response is over the "
			    "%zu-byte response buffer (sized from the limits)", s->body.cap);
}

static void respond_error(server *s, zp_conn *c, int status, int retry_after, const char *fmt,
			  const char *arg)
{
	zp_conn_error(&s->cx, c, status, retry_after, fmt, arg);
}

/* What /health and /metrics report, as of now. */
static void fill_view(server *s, zp_api_view *v)
{
	int busy = s->ready ? zp_engine_busy(s->eng) : 0;
	*v = (zp_api_view){ .ready = s->ready, .layers_done = atomic_load(&s->progress.layers_done),
			    .layers = atomic_load(&s->progress.layers), .model_layers = s->mcfg.layers,
			    .met = &s->met, .sched = s->ready ? zp_engine_sched(s->eng) : NULL,
			    .executors = s->live, .executors_busy = busy,
			    .lstats = s->ready ? zp_engine_layer_stats(s->eng) : NULL, .now = s->now,
			    .dtype_name = s->cfg.dtype == ZP_DTYPE_FP32 ? "float32" : "bfloat16",
			    .queue_requests_max = s->cfg.queue_requests_max,
			    .batch_tokens_max = s->cfg.batch_tokens_max };
	if (!s->ready)
		return;
	for (int x = 0; x < s->live; x++)
		v->exec_state[x] = zp_engine_exec_report(s->eng, x, s->now,
							 s->cfg.stall_timeout_ms / 1e3,
							 &v->exec_still_s[x], &v->exec_why[x]);
	v->halted = zp_engine_halted(s->eng);
	v->counts = zp_engine_get_counts(s->eng);
}

/* An answer that runs no forward pass: build it and send it. */
static void answer_now(server *s, zp_conn *c, const char *body, size_t len)
{
	zp_api_view v;
	zp_api_job scratch = { 0 };
	zp_api_reply r = { .body = &s->body };
	fill_view(s, &v);
	int status = zp_api_build(&s->api, c->ep, &v, body, len, &scratch, &r);
	ZP_ASSERT(status > 0);
	if (s->body.overflow)
		return respond_json(s, c, body_fits(s, status), 0);
	respond(s, c, status, r.content_type, s->body.p, s->body.len, r.retry_after_s);
}

static zp_api_job *job_take(server *s)
{
	if (!s->job_free)
		return NULL;
	zp_api_job *j = zp_api_job_of(s->job_free);
	ZP_ASSERT(j >= s->jobs && j < s->jobs + s->cfg.queue_requests_max);
	s->job_free = j->eng.next;
	memset(j, 0, sizeof *j);
	j->rg = &s->job_rg[j - s->jobs];
	return j;
}

/* The job slot for a request that runs the model, or NULL with the 503
   sent (stopping, loading, every slot in use). */
static zp_api_job *model_job(server *s, zp_conn *c)
{
	if (s->stopping) {
		respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s", "server is shutting down");
		return NULL;
	}
	if (!s->ready) {
		respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s",
			      "model is loading; see GET /health");
		return NULL;
	}
	zp_api_job *j = job_take(s);
	if (!j) {
		s->met.overloaded++;
		respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s",
			      "queue is full (requests); retry later");
	}
	return j;
}

/* A built job into the engine; the connection waits for its answer. */
static void admit(server *s, zp_conn *c, zp_api_job *j)
{
	if (zp_engine_submit_job(s->eng, &j->eng, s->now)) {
		job_put_back(s, j);
		s->met.overloaded++;
		return respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s",
				     "queue is full (tokens); retry later");
	}
	j->eng.owner = owner_pack(zp_conn_slot(&s->cx, c), c->gen);
	c->job = j;
	c->state = ZP_CONN_ENGINE;
}

/* A large body is built on the offload worker: the connection waits in
   ENGINE without a job until the build comes back (offload_reap). */
static void offload(server *s, zp_conn *c, zp_api_job *j, const char *body, size_t len)
{
	if (zp_offload_submit(s->off, owner_pack(zp_conn_slot(&s->cx, c), c->gen), c->ep, body,
			      len, j)) {
		if (j)
			job_put_back(s, j);
		s->met.overloaded++;
		return respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s", "every slot for "
				     "large request bodies is in use; retry later");
	}
	c->state = ZP_CONN_ENGINE;
}

/* A whole request (head and body) is in c->in (conn.c's on_request). */
static void handle_request(void *arg, zp_conn *c)
{
	server *s = arg;
	int status = 0;
	const char *body = c->in + c->req.head_bytes;
	size_t len = c->req.content_length;

	const zp_route_entry *r = zp_route_find(c->req.method, c->req.path, &status);
	c->ep = r ? r->id : ZP_ROUTE_OTHER;
	if (!r)
		return respond_error(s, c, status, 0, status == ZP_HTTP_ERR_NOT_FOUND ?
				     "no endpoint %s" : "method not allowed on %s", c->req.path);
	if (c->metrics_only && !(r->flags & ZP_ROUTE_SCRAPE))
		return respond_error(s, c, ZP_HTTP_ERR_NOT_FOUND, 0, "%s",
				     "this listener serves GET /metrics only");
	/* parsing and tokenizing a large body would hold every other connection */
	bool big = s->off && len >= ZP_OFFLOAD_BODY_MIN && (r->flags & ZP_ROUTE_JSON);
	if (!(r->flags & ZP_ROUTE_NEEDS_MODEL) && !big)
		return answer_now(s, c, body, len);
	zp_api_job *j = NULL;
	if ((r->flags & ZP_ROUTE_NEEDS_MODEL) && !(j = model_job(s, c)))
		return;
	if (big)
		return offload(s, c, j, body, len);
	zp_api_reply reply = { .body = &s->body };
	status = zp_api_build(&s->api, c->ep, NULL, body, len, j, &reply);
	if (status > 0) {
		job_put_back(s, j);
		return respond_json(s, c, body_fits(s, status), 0);
	}
	admit(s, c, j);
}

/* Builds the offload worker finished: answered, or admitted. A connection
   that went away meanwhile (its slot closed, or reused) is not answered. */
static void offload_reap(server *s)
{
	zp_offload_done d;
	while (s->off && zp_offload_poll(s->off, &d)) {
		uint32_t slot = (uint32_t)(d.owner >> 32), gen = (uint32_t)d.owner;
		ZP_ASSERT(slot < (uint32_t)s->cx.n);
		zp_conn *c = &s->cx.slot[slot];
		bool waiting = c->gen == gen && c->state == ZP_CONN_ENGINE && !c->job;
		if (d.job && (!waiting || d.status > 0))
			job_put_back(s, d.job);
		if (!waiting) {
			s->met.dropped_gone++;
		} else if (d.status > 0 && d.reply->body->overflow) {
			zp_api_error(&s->body, ZP_HTTP_ERR_INTERNAL, NULL, "the response is over the "
				     "%zu-byte response buffer (sized from the limits)",
				     d.reply->body->cap);
			respond_json(s, c, ZP_HTTP_ERR_INTERNAL, 0);
		} else if (d.status > 0) {
			respond(s, c, d.status, d.reply->content_type, d.reply->body->p,
				d.reply->body->len, d.reply->retry_after_s);
		} else {
			ZP_ASSERT(d.job); /* only routes that run the model build a job */
			admit(s, c, d.job);
		}
		zp_offload_release(s->off, d.slot);
	}
}

/* The client of an admitted job has gone (conn.c's on_gone): drop the job. */
static void drop_job(void *arg, zp_conn *c)
{
	server *s = arg;
	zp_api_job *j = c->job;
	c->job = NULL;
	s->met.dropped_gone++;
	if (zp_engine_cancel(s->eng, &j->eng))
		job_put_back(s, j);
	/* else the engine hands it back once its last batch is back (reap) */
}

/* ---- jobs and executors ---- */

/* j left the engine: answer its connection (unless it has gone). */
static void job_complete(server *s, zp_api_job *j)
{
	if (j->eng.cancelled) {
		job_put_back(s, j);
		return;
	}
	zp_conn *c = owner_conn(s, j);
	zp_metrics_hist(&s->met.lat_queue_s, j->eng.t_dispatch - j->eng.t_arrive);
	if (j->eng.failed) { /* the executor recovered; this request cannot be answered */
		zp_api_error(&s->body, 500, NULL, "forward pass failed: %s", j->eng.err);
		c->job = NULL;
		job_put_back(s, j);
		return respond_json(s, c, 500, 0);
	}
	int status = zp_api_finish(&s->api, j, &s->body);
	c->job = NULL;
	job_put_back(s, j);
	respond_json(s, c, status, 0);
}

/* Each batch that comes back, for /metrics (the engine's on_batch). */
static void batch_seen(void *arg, const zp_batch *b)
{
	server *s = arg;
	if (b->n)
		zp_metrics_batch(&s->met, b, s->now);
}

/* An executor left service or came back (the engine's on_health): one log
   line came from the engine; systemd's STATUS says it. */
static void health_seen(void *arg, int x, bool up, const char *why)
{
	server *s = arg;
	zp_engine_counts c = zp_engine_get_counts(s->eng);
	if (up)
		zp_sd_notify("STATUS=serving: executor %d back; %d of %d executors up", x, c.up,
			     s->live);
	else
		zp_sd_notify("STATUS=degraded: executor %d out (%s); %d of %d executors up", x, why,
			     c.up, s->live);
}

static void reap(server *s)
{
	zp_job *j;
	while (s->ready && !s->deadline_passed && (j = zp_engine_poll_job(s->eng)))
		job_complete(s, zp_api_job_of(j));
}

/* Idle executors get the batches that are due; returns the next wake-up (0:
   none). When every executor is idle nothing is gained by waiting for company
   (continuous batching: requests gather while a batch runs), so the bounded
   batch wait only applies while some executor is busy. */
static double dispatch(server *s)
{
	if (!s->ready || s->deadline_passed)
		return 0;
	return zp_engine_pump(s->eng, s->now, s->stopping || zp_engine_busy(s->eng) == 0);
}

/* ---- loading, signals, timeouts ---- */

static void *loader_main(void *arg)
{
	server *s = arg;
	zp_serve_cfg *c = &s->cfg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const zp_wlayout *lay = zp_device_layout((enum zp_device)c->device);
	zp_engine_cfg ec = {
		.executors = c->executors, .parallel = c->parallel, .transport = c->transport,
		.threads_per_executor = zp_serve_cfg_threads(c), .batch_tokens_max = c->batch_tokens_max,
		.done = &s->done, .offload_window = c->offload_window, .device = c->device,
		.on_health = health_seen, .on_health_arg = s, .stall_s = c->stall_timeout_ms / 1e3,
		.drop_host_experts = !c->keep_host_experts,
		.kv_cache_bytes = c->kv_cache_bytes,
		.queue = { .policy = (enum zp_sched_policy)c->schedule,
			   .requests_max = c->queue_requests_max, .tokens_max = c->queue_tokens_max,
			   .batch_wait_s = c->batch_wait_us >= 0 ? c->batch_wait_us / 1e6
								 : c->batch_wait_ms / 1e3,
			   .aging_s = c->schedule_aging_ms / 1e3, .min_tokens = c->schedule_min_tokens },
		.on_batch = batch_seen, .on_batch_arg = s };
	zp_load_opts lo = zp_load_opts_of(c->dtype, c->random_weights);
	lo.fp8_compute = (enum zp_fp8_compute)c->fp8_compute;
	int rc = zp_model_load_opts(&s->model, c->model, &lo, lay, (int)ZP_MAX(ncpu, 1),
				    &s->progress, &s->load_err);
	if (!rc && !(s->eng = zp_engine_start(&s->model, &ec, &s->load_err))) {
		rc = -1;
		zp_model_free(&s->model);
	}
	atomic_store(&s->load_state, rc ? LOAD_FAILED : LOAD_DONE);
	zp_bell_ring(&s->done);
	return NULL;
}

static void begin_stop(server *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_at = s->now;
	zp_log(ZP_LOG_INFO, "msg=\"stopping: no new connections; finishing admitted requests\" "
	       "why=%s admitted=%d", why, admitted(s));
	atomic_store(&s->progress.cancel, true);
	for (int w = 0; w < 3; w++)
		if (s->accept_armed[w])
			zp_reactor_cancel_accept(&s->rx, (uint32_t)w);
	zp_sd_notify("STOPPING=1\nSTATUS=stopping (%s): finishing %d admitted requests", why,
		     admitted(s));
	/* the next start clears a stale one; systemd's socket stays for the next
	   instance (connections made meanwhile wait in its backlog) */
	if (s->sock_owned && unlink(s->cfg.socket) && errno != ENOENT)
		zp_log(ZP_LOG_WARN, "msg=\"cannot remove the socket\" path=%s error=\"%s\"",
		       s->cfg.socket, strerror(errno));
	zp_conns_stop(&s->cx);
}

static void on_event(server *s)
{
	if (!s->loader_joined && atomic_load(&s->load_state) != LOAD_RUNNING) {
		int rc = pthread_join(s->loader, NULL);
		ZP_ASSERT(rc == 0);
		s->loader_joined = true;
		if (atomic_load(&s->load_state) == LOAD_DONE) {
			s->ready = true;
			s->live = zp_engine_executors(s->eng);
			size_t resident = zp_engine_resident_bytes(s->eng);
			enum zp_parallel par = zp_engine_parallel(s->eng);
			const zp_sched *sc = zp_engine_sched(s->eng);
			char said[160];
			zp_serve_cfg_parallel_said(&s->cfg, (int)par, said, sizeof said);
			const char *kv_why;
			size_t kv = zp_engine_kv_cache_bytes(s->eng, &kv_why);
			zp_log(ZP_LOG_INFO, "msg=ready executors=%d %s resident_mb=%.1f schedule=%s "
			       "threshold_gflop=%.3f kv_cache_mb=%.1f kv_cache_why=\"%s\"", s->live,
			       said, (double)resident / (1 << 20), zp_sched_policy_name(sc->policy),
			       sc->threshold * 1e-9, (double)kv / (1 << 20),
			       kv || strcmp(kv_why, "configured") ? kv_why :
			       "none: the KV-cache-free mode (kv_cache_bytes 0)");
			zp_sd_notify("READY=1\nSTATUS=serving: %d executors, %s, %.0f MB resident",
				     s->live, zp_parallel_name(par),
				     (double)resident / (1 << 20));
		} else {
			zp_log(ZP_LOG_ERROR, "msg=\"model load failed\" error=\"%s\"", s->load_err.msg);
			zp_sd_notify("STATUS=model load failed: %s", s->load_err.msg);
			s->exit_code = s->stopping ? 0 : 1;
			begin_stop(s, "load-failed");
		}
	}
	reap(s);
	offload_reap(s);
}

static void on_accept(server *s, const zp_reactor_event *ev, int which)
{
	if (!ev->more) {
		s->accept_armed[which] = false;
		/* ended on an error (EMFILE, ...): listen again a scan later, not in a
		   tight loop */
		s->accept_rearm[which] = !s->stopping && ev->res != -ECANCELED;
	}
	zp_conn_accept(&s->cx, ev, which);
}

static void on_completion(void *arg, const zp_reactor_event *ev)
{
	server *s = arg;
	switch (ev->op) {
	case ZP_REACTOR_ACCEPT: return on_accept(s, ev, (int)ev->slot);
	case ZP_REACTOR_CANCEL: return;
	case ZP_REACTOR_EVENT:
		ZP_ASSERT(ev->res == sizeof s->efd_val);
		on_event(s);
		return zp_reactor_read(&s->rx, zp_bell_fd(&s->done), &s->efd_val, sizeof s->efd_val,
				       ZP_REACTOR_EVENT);
	case ZP_REACTOR_SIGNAL: /* a signalfd read is one whole record, or interrupted */
		ZP_ASSERT(ev->res == sizeof s->sig || ev->res == -EINTR);
		if (ev->res == sizeof s->sig)
			begin_stop(s, s->sig.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
		return zp_reactor_read(&s->rx, s->sfd, &s->sig, sizeof s->sig, ZP_REACTOR_SIGNAL);
	case ZP_REACTOR_RECV:
	case ZP_REACTOR_SEND: return zp_conn_event(&s->cx, ev);
	}
	ZP_ASSERT(!"unknown completion op");
}

static bool finished(server *s)
{
	if (s->deadline_passed) /* the 503s sent (or their time up): the engine stays as it is */
		return s->met.conns_open == 0 || s->now > s->stop_at + s->cfg.shutdown_timeout_ms / 1e3 +
								   DEADLINE_FLUSH_S;
	return s->stopping && s->loader_joined && admitted(s) == 0 && s->met.conns_open == 0 &&
	       !s->accept_armed[0] && !s->accept_armed[1] && !s->accept_armed[2] &&
	       zp_offload_inflight(s->off) == 0;
}

/* systemd: loading progress as STATUS lines (once per layer). */
static void report_status(server *s)
{
	if (s->ready || s->stopping || !zp_sd_notifying())
		return;
	int done = atomic_load(&s->progress.layers_done), all = atomic_load(&s->progress.layers);
	if (done == s->status_layers)
		return;
	s->status_layers = done;
	zp_sd_notify("STATUS=loading %s: layer %d of %d", s->cfg.model, done, all);
}

/* Whether the executors make progress (the engine's progress test, as
   /health's, with half the watchdog period): none stalled, idle or its layer
   count moved within it, and not every one down. A wedged one (a deadlock, a
   device that stopped answering) stands still while busy. Before the model
   is ready the loader is bounded by the unit's TimeoutStartSec instead. */
static bool executors_progress(server *s)
{
	bool ok = true;
	int down = 0;
	for (int i = 0; s->ready && i < s->live; i++) {
		double still;
		const char *why;
		enum zp_engine_exec st = zp_engine_exec_report(s->eng, i, s->now, s->wd_s / 2, &still,
							       &why);
		down += st == ZP_ENGINE_EXEC_DOWN;
		if (st != ZP_ENGINE_EXEC_STALLED)
			continue;
		if (!s->wd_withheld)
			zp_log(ZP_LOG_ERROR, "msg=\"executor made no progress: withholding the "
			       "watchdog ping\" executor=%d stalled_s=%.1f", i, still);
		ok = false;
	}
	if (s->ready && down == s->live) {
		if (!s->wd_withheld)
			zp_log(ZP_LOG_ERROR, "msg=\"every executor is down: withholding the watchdog "
			       "ping\"");
		ok = false;
	}
	s->wd_withheld = !ok;
	return ok;
}

/* systemd's watchdog: a ping each half period while executors progress. */
static void watchdog(server *s)
{
	if (s->wd_s <= 0 || s->now < s->wd_next)
		return;
	s->wd_next = s->now + s->wd_s / 2;
	if (executors_progress(s))
		zp_sd_notify("WATCHDOG=1");
}

/* shutdown_timeout_ms after SIGTERM with requests still unanswered (an
   executor wedged): each gets 503, the engine is left as it is (its
   executors cannot be joined), and the process exits 1 saying why. */
static void shutdown_deadline(server *s)
{
	double limit = s->cfg.shutdown_timeout_ms / 1e3;
	if (!s->stopping || s->deadline_passed || limit <= 0 || s->now < s->stop_at + limit ||
	    finished(s))
		return;
	s->deadline_passed = true;
	int waiting = 0;
	for (int i = 0; i < s->cx.n; i++) {
		zp_conn *c = &s->cx.slot[i];
		if (c->state != ZP_CONN_ENGINE)
			continue;
		c->job = NULL; /* left in the engine, which is not stopped */
		waiting++;
		respond_error(s, c, ZP_HTTP_ERR_UNAVAILABLE, 0, "%s", "server is shutting down: the "
			      "shutdown deadline passed before this request was answered");
	}
	zp_log(ZP_LOG_ERROR, "msg=\"shutdown deadline passed: answering the admitted requests 503 "
	       "and exiting\" shutdown_timeout_ms=%d admitted=%d answered_503=%d executors_busy=%d",
	       s->cfg.shutdown_timeout_ms, admitted(s), waiting, s->ready ? zp_engine_busy(s->eng) : 0);
	zp_sd_notify("STATUS=shutdown deadline passed after %d ms: %d requests answered 503; exiting 1",
		     s->cfg.shutdown_timeout_ms, waiting);
	s->exit_code = 1;
}

static void loop(server *s)
{
	while (!finished(s)) {
		s->now = zp_now_s();
		double wake = dispatch(s), until = s->next_scan;
		if (wake > 0 && wake < until)
			until = wake;
		zp_reactor_wait(&s->rx, until - s->now);
		s->now = zp_now_s();
		zp_reactor_drain(&s->rx, on_completion, s);
		if (s->now >= s->next_scan) {
			for (int w = 0; w < 3; w++)
				if (s->accept_rearm[w] && !s->stopping) {
					s->accept_rearm[w] = false;
					listen_on(s, w);
				}
			zp_conn_check_timeouts(&s->cx);
			report_status(s);
			watchdog(s);
			if (s->ready && !s->deadline_passed)
				zp_engine_watch(s->eng, s->now);
			shutdown_deadline(s);
			s->next_scan = s->now + SCAN_S;
		}
	}
}

/* ---- start-up ---- */

/* The socket's directory (issue 17, F-5): the default's is created when
   missing (0755: only this service writes it); one anybody may write is a
   start warning (another local user can bind the path first, and clients
   would talk to their process). */
static int socket_dir(const char *path, bool by_default, zp_err *e)
{
	char dir[PATH_MAX];
	struct stat st;
	zp_path_dir(path, dir, sizeof dir);
	if (by_default && stat(dir, &st) != 0 && errno == ENOENT && mkdir(dir, 0755) != 0)
		return zp_errf(e, "cannot create %s for the default socket %s: %s (set socket = "
			       "PATH, in a directory only this service may write, or XDG_RUNTIME_DIR)",
			       dir, path, strerror(errno));
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWOTH))
		zp_log(ZP_LOG_WARN, "msg=\"the socket's directory is world-writable: another local "
		       "user can bind the socket path first, and clients would talk to them\" dir=%s "
		       "socket=%s hint=\"a directory only this service may write ($XDG_RUNTIME_DIR "
		       "or /run/zprefill: the default)\"", dir, path);
	return 0;
}

static int open_socket(server *s, zp_err *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	char passed[sizeof a.sun_path], def[sizeof a.sun_path + 64];
	if (zp_sd_listen_fd(&s->lfd, passed, sizeof passed, e))
		return -1;
	if (s->lfd >= 0) { /* socket activation: systemd owns the file and its mode */
		zp_log(ZP_LOG_INFO, "msg=\"serving on the socket systemd passed\" fd=%d path=%s",
		       s->lfd, passed[0] ? passed : "(unnamed)");
		return 0;
	}
	bool by_default = !s->cfg.socket;
	if (by_default && !(s->cfg.socket = strdup(zp_socket_default(def, sizeof def))))
		return zp_errf(e, "out of memory");
	const char *path = s->cfg.socket;
	if (strlen(path) >= sizeof a.sun_path)
		return zp_errf(e, "socket path over %zu bytes", sizeof a.sun_path - 1);
	if (socket_dir(path, by_default, e))
		return -1;
	strcpy(a.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return zp_errf(e, "%s exists and is not a socket", path);
		int t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = t >= 0 && connect(t, (struct sockaddr *)&a, sizeof a) == 0;
		if (t >= 0)
			close(t);
		if (live)
			return zp_errf(e, "%s: another server is listening there", path);
		if (unlink(path) && errno != ENOENT) /* stale, from a process that died */
			return zp_errf(e, "cannot remove the stale socket %s: %s", path,
				       strerror(errno));
	}
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a))
		return zp_errf(e, "%s: %s", path, strerror(errno));
	s->sock_owned = true;
	/* mode and group before listen: nobody connects through a wider mode
	   in between */
	if (chmod(path, (mode_t)s->cfg.socket_mode))
		return zp_errf(e, "chmod %s: %s", path, strerror(errno));
	if (s->cfg.socket_group) {
		struct group *g = getgrnam(s->cfg.socket_group);
		if (!g || chown(path, (uid_t)-1, g->gr_gid))
			return zp_errf(e, "socket group %s: %s", s->cfg.socket_group,
				       g ? strerror(errno) : "no such group");
	}
	if (listen(s->lfd, LISTEN_BACKLOG))
		return zp_errf(e, "%s: %s", path, strerror(errno));
	return 0;
}

/* Loopback TCP for Prometheus scrapers that cannot speak to a Unix socket. */
static int open_metrics(server *s, zp_err *e)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg.metrics_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	s->mfd = -1;
	if (!s->cfg.metrics_port)
		return 0;
	s->mfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->mfd < 0 || setsockopt(s->mfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(s->mfd, (struct sockaddr *)&a, sizeof a) || listen(s->mfd, METRICS_BACKLOG))
		return zp_errf(e, "metrics listener 127.0.0.1:%d: %s", s->cfg.metrics_port,
			       strerror(errno));
	return 0;
}

/* listen_tcp: the whole API on a loopback address, for clients that cannot
   speak to a Unix socket; the same connections, limits and router. */
static int open_tcp(server *s, zp_err *e)
{
	int one = 1;
	s->tfd = -1;
	if (!s->cfg.tcp_len)
		return 0;
	if (s->cfg.n_allow_uids) /* TCP gives no SO_PEERCRED: the list could not be kept */
		return zp_errf(e, "allow_uids cannot be checked on listen_tcp %s (TCP carries no "
			       "peer credentials): drop one of them", s->cfg.listen_tcp);
	s->tfd = socket(s->cfg.tcp_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->tfd < 0 || setsockopt(s->tfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(s->tfd, (struct sockaddr *)&s->cfg.tcp_addr, s->cfg.tcp_len) ||
	    listen(s->tfd, LISTEN_BACKLOG))
		return zp_errf(e, "listen_tcp %s: %s", s->cfg.listen_tcp, strerror(errno));
	return 0;
}

/* Config, tokenizer and API first (fast), so /health and /tokenize answer
   while the weights load. */
static int setup(server *s, zp_err *e)
{
	char tokpath[PATH_MAX];
	zp_serve_cfg *c = &s->cfg;
	if (!c->model)
		return zp_errf(e, "no model: give --model DIR or [engine] model");
	if (zp_config_load(&s->mcfg, c->model, e))
		return -1;
	if (zp_serve_cfg_seq_tokens(c, s->mcfg.max_positions, e) || zp_serve_cfg_check_kv(c, e) ||
	    zp_serve_cfg_check_fp8(c, e))
		return -1;
	if (c->batch_tokens_max < c->seq_tokens_max)
		return zp_errf(e, "max_batch_tokens (%d) must hold one sequence of max_tokens (%d)",
			       c->batch_tokens_max, c->seq_tokens_max);
	if (c->queue_tokens_max < c->seq_tokens_max)
		return zp_errf(e, "queue_tokens_max must be at least max_tokens");
	if (snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", c->model) >= (int)sizeof tokpath)
		return zp_errf(e, "model path over %zu bytes", sizeof tokpath - 20);
	if (access(tokpath, F_OK) == 0) {
		if (!(s->tok = zp_tok_load(tokpath, e)))
			return -1;
	} else {
		zp_log(ZP_LOG_WARN, "msg=\"no tokenizer.json: text requests will get a 400\" dir=%s",
		       c->model);
	}
	if (!c->model_name) {
		const char *b = strrchr(c->model, '/');
		if (!(c->model_name = strdup(b && b[1] ? b + 1 : c->model)))
			return zp_errf(e, "out of memory");
	}
	zp_req_limits lim = { .vocab = s->mcfg.vocab, .seq_tokens_max = c->seq_tokens_max,
			      .hidden = s->mcfg.hidden };
	if (zp_chat_load(&s->chat, c->model, e))
		return -1;
	if (s->chat.kind != ZP_CHAT_QWEN3)
		zp_log(s->chat.kind == ZP_CHAT_OTHER ? ZP_LOG_WARN : ZP_LOG_INFO, "msg=\"no chat "
		       "template rendered: /v1/chat/completions answers 400\" why=\"%s\"", s->chat.why);
	zp_api_init(&s->api, s->tok, &lim, c->body_bytes_max, c->model_name, &c->rerank, &s->chat);
	if (zp_api_check(&s->api, e))
		return -1;
	size_t resp = zp_api_response_bytes(&s->api);
	zp_conns_init(&s->cx, c, resp);
	s->cx.rx = &s->rx;
	s->cx.met = &s->met;
	s->cx.body = &s->body;
	s->cx.now = &s->now;
	s->cx.stopping = &s->stopping;
	s->cx.srv = s;
	s->cx.on_request = handle_request;
	s->cx.on_gone = drop_job;
	s->jobs = zp_xcalloc((size_t)c->queue_requests_max, sizeof *s->jobs);
	s->job_rg = zp_xcalloc((size_t)c->queue_requests_max, sizeof *s->job_rg);
	/* a job can hold no more tokens than the queue admits at once */
	size_t job_bytes = zp_api_job_bytes(&s->api, c->queue_tokens_max);
	for (int i = c->queue_requests_max - 1; i >= 0; i--) {
		zp_region_init(&s->job_rg[i], NULL, job_bytes); /* pages touched when used */
		s->jobs[i].eng.next = s->job_free;
		s->job_free = &s->jobs[i].eng;
	}
	zp_buf_init_fixed(&s->body, NULL, resp + 1);
	if (c->body_bytes_max >= ZP_OFFLOAD_BODY_MIN) /* rung only after a submit: bell set below */
		s->off = zp_offload_new(s->tok, &lim, c->body_bytes_max, c->model_name, &c->rerank,
					&s->chat, resp, &s->done);
	zp_log(ZP_LOG_INFO, "msg=\"request memory\" job_region_kb=%zu jobs=%d parse_region_kb=%zu "
	       "response_kb=%zu", job_bytes >> 10, c->queue_requests_max, s->api.parse.cap >> 10,
	       resp >> 10);
	if (open_socket(s, e) || open_metrics(s, e) || open_tcp(s, e) || zp_reactor_init(&s->rx, e))
		return -1;
	int bell = zp_bell_init(&s->done);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	s->sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (bell || s->sfd < 0)
		return zp_errf(e, "eventfd/signalfd: %s", strerror(errno));
	return 0;
}

static void teardown(server *s)
{
	if (s->deadline_passed) /* executors wedged: nothing of the engine is joined or freed
				   (their jobs' memory neither); the process exits */
		return;
	if (s->ready) {
		zp_engine_stop(s->eng);
		zp_model_free(&s->model);
	}
	zp_conns_free(&s->cx);
	zp_offload_free(s->off); /* before the tokenizer its worker reads */
	for (int i = 0; s->job_rg && i < s->cfg.queue_requests_max; i++)
		zp_region_free(&s->job_rg[i]);
	free(s->job_rg);
	free(s->jobs);
	zp_buf_free(&s->body);
	zp_api_free(&s->api);
	zp_tok_free(s->tok);
	zp_reactor_free(&s->rx);
	/* a start that failed after binding: begin_stop did not run to remove it */
	if (s->sock_owned && !s->stopping && unlink(s->cfg.socket) && errno != ENOENT)
		zp_log(ZP_LOG_WARN, "msg=\"cannot remove the socket\" path=%s error=\"%s\"",
		       s->cfg.socket, strerror(errno));
	if (s->lfd > 0)
		close(s->lfd);
	if (s->mfd > 0)
		close(s->mfd);
	if (s->tfd > 0)
		close(s->tfd);
}

int zp_serve_main(int argc, char **argv)
{
	static server srv; /* big; one per process */
	server *s = &srv;
	zp_err e;
	sigset_t set;

	/* Every thread started from here on inherits this mask: SIGTERM/SIGINT
	   arrive only through the reactor's signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
	ZP_ASSERT(rc == 0); /* valid arguments: cannot fail */
	void (*was)(int) = signal(SIGPIPE, SIG_IGN);
	ZP_ASSERT(was != SIG_ERR);
	if (zp_serve_cfg_args(&s->cfg, argc, argv, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"%s\"", e.msg);
		zp_serve_cfg_free(&s->cfg);
		return 2;
	}
	zp_log_min = (enum zp_log_level)s->cfg.log_level;
	if (zp_sd_init(&e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"%s\"", e.msg);
		zp_serve_cfg_free(&s->cfg);
		return 2;
	}
	if (setup(s, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"%s\"", e.msg);
		teardown(s);
		zp_serve_cfg_free(&s->cfg);
		return 1;
	}
	zp_metrics_init(&s->met, zp_now_s());
	zp_log(ZP_LOG_INFO, "msg=listening socket=%s mode=%04o model=%s tokenizer=%s executors=%d "
	       "max_tokens=%d max_batch_tokens=%d queue_requests_max=%d",
	       s->sock_owned ? s->cfg.socket : "systemd", s->cfg.socket_mode, s->cfg.model,
	       s->tok ? "yes" : "no", s->cfg.executors, s->cfg.seq_tokens_max, s->cfg.batch_tokens_max, s->cfg.queue_requests_max);
	atomic_store(&s->progress.layers, s->mcfg.layers);
	if ((rc = pthread_create(&s->loader, NULL, loader_main, s))) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"loader thread: %s\"", strerror(rc));
		teardown(s);
		zp_serve_cfg_free(&s->cfg);
		return 1;
	}
	listen_on(s, 0);
	if (s->mfd >= 0)
		listen_on(s, 1);
	if (s->tfd >= 0) {
		listen_on(s, 2);
		zp_log(ZP_LOG_INFO, "msg=\"listening on TCP too\" listen_tcp=%s", s->cfg.listen_tcp);
	}
	zp_reactor_read(&s->rx, zp_bell_fd(&s->done), &s->efd_val, sizeof s->efd_val, ZP_REACTOR_EVENT);
	zp_reactor_read(&s->rx, s->sfd, &s->sig, sizeof s->sig, ZP_REACTOR_SIGNAL);
	s->next_scan = zp_now_s() + SCAN_S;
	s->wd_s = zp_sd_watchdog_s();
	s->wd_next = zp_now_s();
	zp_sd_notify("STATUS=loading %s", s->cfg.model);
	if (s->wd_s > 0)
		zp_log(ZP_LOG_INFO, "msg=\"systemd watchdog\" period_s=%.3f ping_every_s=%.3f",
		       s->wd_s, s->wd_s / 2);
	loop(s);
	zp_log(ZP_LOG_INFO, "msg=stopped requests_tokens=%llu batches=%llu exit=%d",
	       (unsigned long long)s->met.tokens_total, (unsigned long long)s->met.batches_total,
	       s->exit_code);
	int code = s->exit_code;
	teardown(s);
	zp_serve_cfg_free(&s->cfg);
	return code;
}
