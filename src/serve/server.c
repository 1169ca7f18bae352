/* server.c -- `zprefill serve`: the reactor (DESIGN.md section 2), the loader
   thread and the executors. The reactor is one thread around one io_uring:
   multishot accept on the Unix socket, multishot recv into provided buffers,
   send, and reads of the executors' eventfd and of a signalfd. Each turn it
   waits (bounded by the next deadline), drains completions, cuts batches for
   idle executors and checks timeouts. It never blocks and never runs a
   forward pass; tokenizing a request is its bounded work (the body limit).
   The loader thread loads the weights and starts the executors while the
   reactor already answers /health (503 with progress) and /tokenize.

   Connection states (one request at a time per connection; pipelined
   requests wait in the input buffer and are answered in order):
     FREE    -> HEAD     accepted
     HEAD    -> BODY     a whole request head arrived
     HEAD    -> SEND     the head is bad (4xx, then close)
     BODY    -> ENGINE   the request was admitted as a job
     BODY    -> SEND     answered without a forward pass, or refused
     ENGINE  -> SEND     its job finished
     SEND    -> HEAD     response written, keep-alive
     any     -> CLOSING  peer gone, error, timeout, shutdown, Connection: close
     CLOSING -> FREE     no io_uring operation of it is left in flight */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <liburing.h>
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
#include "engine.h"
#include "http.h"
#include "metrics.h"
#include "model.h"
#include "router.h"
#include "scheduler.h"
#include "serve.h"
#include "tokenizer.h"
#include "util.h"

#define RING_ENTRIES 1024
#define RECV_BUFS 512		/* provided buffers (power of two) */
#define RECV_BUF_BYTES 16384
#define SCAN_S 0.05		/* timeout scan period */

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_EVENT, OP_SIGNAL, OP_CANCEL };

/* user_data: op (8 bits) | slot (24 bits) | generation (32 bits); a completion
   whose generation is not the slot's is stale and dropped. */
#define UD(op, slot, gen) ((uint64_t)(gen) << 32 | (uint64_t)(slot) << 8 | (uint64_t)(op))
#define UD_OP(u) ((int)((u) & 0xff))
#define UD_SLOT(u) ((uint32_t)(((u) >> 8) & 0xffffff))
#define UD_GEN(u) ((uint32_t)((u) >> 32))

enum conn_state { CONN_FREE, CONN_HEAD, CONN_BODY, CONN_ENGINE, CONN_SEND, CONN_CLOSING };

typedef struct {
	enum conn_state state;
	int fd;
	uint32_t gen;
	int ops;		/* io_uring operations in flight */
	bool sending, close_after;
	char *in;		/* received, not yet consumed */
	size_t in_len, in_cap;
	zp_buf out;		/* response bytes; out_off of them sent */
	size_t out_off;
	zp_http_req req;	/* the current request's head */
	enum zp_route ep;
	zp_job *job;		/* ENGINE */
	double t_phase;		/* start of the phase a timeout applies to */
	double t_req;		/* current request's arrival */
	bool partial;		/* HEAD: part of a next request has arrived */
	bool metrics_only;	/* accepted on the metrics listener: GET /metrics only */
	uid_t uid;
	pid_t pid;
} conn;

enum load_state { LOAD_RUNNING, LOAD_DONE, LOAD_FAILED };

typedef struct {
	zp_serve_cfg cfg;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *bufs;			/* [RECV_BUFS][RECV_BUF_BYTES] */
	int lfd, efd, sfd;
	int mfd;			/* loopback TCP listener for /metrics, or -1 */
	uint64_t efd_val;
	struct signalfd_siginfo sig;
	conn *conns;			/* [max_connections] */
	zp_job *jobs;			/* [queue_requests_max] */
	zp_job *job_free;
	zp_sched sched;
	zp_metrics met;
	zp_api api;
	zp_tok *tok;
	zp_config mcfg;
	zp_model model;
	zp_engine eng;			/* written by the loader thread until ready */
	int live;			/* executors the reactor uses: eng.n once loaded */
	zp_ep_layer_stats *lstats;	/* [live][layers]: snapshots taken at each reap */
	pthread_t loader;
	zp_load_progress progress;
	_Atomic int load_state;
	zp_err load_err;
	bool ready, loader_joined, stopping;
	bool accept_armed[2];		/* [0] the Unix socket, [1] the metrics listener */
	bool accept_rearm[2];		/* ended on an error: armed again at the next scan */
	int exit_code;
	zp_buf body;			/* scratch for response bodies */
	double now, next_scan;
} server;

/* ---- io_uring helpers ---- */

static struct io_uring_sqe *sqe_get(server *s)
{
	struct io_uring_sqe *q = io_uring_get_sqe(&s->ring);
	if (!q) { /* the SQ is full: flush it and take one */
		io_uring_submit(&s->ring);
		q = io_uring_get_sqe(&s->ring);
	}
	ZP_ASSERT(q);
	return q;
}

static uint32_t slot_of(server *s, conn *c)
{
	return (uint32_t)(c - s->conns);
}

static void arm_accept(server *s, int which)
{
	struct io_uring_sqe *q = sqe_get(s);
	io_uring_prep_multishot_accept(q, which ? s->mfd : s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(q, UD(OP_ACCEPT, which, 0));
	s->accept_armed[which] = true;
}

static void arm_recv(server *s, conn *c)
{
	struct io_uring_sqe *q = sqe_get(s);
	io_uring_prep_recv_multishot(q, c->fd, NULL, 0, 0);
	q->flags |= IOSQE_BUFFER_SELECT;
	q->buf_group = 0;
	io_uring_sqe_set_data64(q, UD(OP_RECV, slot_of(s, c), c->gen));
	c->ops++;
}

static void arm_read(server *s, int fd, void *buf, unsigned n, int op)
{
	struct io_uring_sqe *q = sqe_get(s);
	io_uring_prep_read(q, fd, buf, n, 0);
	io_uring_sqe_set_data64(q, UD(op, 0, 0));
}

static void send_more(server *s, conn *c)
{
	if (c->sending || c->out_off == c->out.len || c->state == CONN_CLOSING)
		return;
	struct io_uring_sqe *q = sqe_get(s);
	io_uring_prep_send(q, c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(q, UD(OP_SEND, slot_of(s, c), c->gen));
	c->sending = true;
	c->ops++;
}

/* ---- connections ---- */

/* A job slot back on the free list (never admitted, or finished). */
static void job_put_back(server *s, zp_job *j)
{
	zp_api_job_free(j);
	memset(j, 0, sizeof *j);
	j->next = s->job_free;
	s->job_free = j;
}

/* An admitted job leaves: its admission is released with its slot. */
static void job_release(server *s, zp_job *j)
{
	zp_sched_finish(&s->sched, j);
	job_put_back(s, j);
}

static void conn_free_slot(server *s, conn *c)
{
	ZP_ASSERT(c->state == CONN_CLOSING && c->ops == 0 && !c->job);
	close(c->fd);
	if (c->in_cap > 65536) { /* keep small buffers for the next client */
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	c->in_len = 0;
	c->out.len = 0;
	c->state = CONN_FREE;
	c->gen++;
	s->met.conns_open--;
}

static void conn_close(server *s, conn *c, const char *why)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FREE)
		return;
	zp_log(ZP_LOG_DEBUG, "msg=\"close\" conn=%u uid=%d why=%s", slot_of(s, c), (int)c->uid, why);
	if (c->job) { /* its client has gone: drop the job */
		zp_job *j = c->job;
		c->job = NULL;
		s->met.dropped_gone++;
		if (zp_sched_cancel(&s->sched, j))
			job_release(s, j);
		/* else the last batch holding part of it releases it */
	}
	c->state = CONN_CLOSING;
	shutdown(c->fd, SHUT_RDWR);
	if (c->ops > 0) {
		struct io_uring_sqe *q = sqe_get(s);
		io_uring_prep_cancel_fd(q, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(q, UD(OP_CANCEL, 0, 0));
	} else {
		conn_free_slot(s, c);
	}
}

/* Queue a whole response; the connection is in SEND until it is written. */
static void respond(server *s, conn *c, int status, const char *ctype, const char *body,
		    size_t len, int retry_after)
{
	bool keep = c->req.keep_alive && !c->close_after && !s->stopping && status != 408 &&
		    c->state != CONN_HEAD;
	if (!keep)
		c->close_after = true;
	zp_http_respond(&c->out, status, ctype, body, len, keep, retry_after,
			status == ZP_HTTP_ERR_METHOD ? zp_route_allow(c->req.path) : NULL);
	zp_metrics_status(&s->met, c->ep, status);
	if (c->t_req > 0 && status == 200 && zp_route_needs_model(c->ep))
		zp_metrics_hist(&s->met.lat_total_s, s->now - c->t_req);
	zp_log(ZP_LOG_DEBUG, "msg=request conn=%u uid=%d pid=%d endpoint=%s status=%d ms=%.2f",
	       slot_of(s, c), (int)c->uid, (int)c->pid, zp_route_name(c->ep), status,
	       c->t_req > 0 ? (s->now - c->t_req) * 1e3 : 0.0);
	c->state = CONN_SEND;
	c->t_phase = s->now;
	send_more(s, c);
}

static void respond_json(server *s, conn *c, int status, int retry_after)
{
	respond(s, c, status, "application/json", s->body.p, s->body.len, retry_after);
}

static void respond_error(server *s, conn *c, int status, int retry_after, const char *fmt,
			  const char *arg)
{
	zp_api_error(&s->body, status, NULL, fmt, arg);
	respond_json(s, c, status, retry_after);
}

/* What /health and /metrics report, as of now. */
static void fill_view(server *s, zp_api_view *v)
{
	int busy = 0;
	for (int i = 0; i < s->live; i++)
		busy += s->eng.exec[i].busy;
	*v = (zp_api_view){ .ready = s->ready, .layers_done = atomic_load(&s->progress.layers_done),
			    .layers = atomic_load(&s->progress.layers), .model_layers = s->mcfg.layers,
			    .met = &s->met, .sched = &s->sched, .executors = s->live,
			    .executors_busy = busy, .lstats = s->lstats, .now = s->now };
}

/* An answer that runs no forward pass: build it and send it. */
static void answer_now(server *s, conn *c, const char *body, size_t len)
{
	zp_api_view v;
	zp_job scratch = { 0 };
	zp_api_reply r = { .body = &s->body };
	fill_view(s, &v);
	int status = zp_api_build(&s->api, c->ep, &v, body, len, &scratch, &r);
	ZP_ASSERT(status > 0);
	respond(s, c, status, r.content_type, s->body.p, s->body.len, r.retry_after_s);
}

static zp_job *job_take(server *s)
{
	zp_job *j = s->job_free;
	if (j) {
		s->job_free = j->next;
		memset(j, 0, sizeof *j);
	}
	return j;
}

/* A whole request (head and body) is in c->in. */
static void handle_request(server *s, conn *c)
{
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
	if (!(r->flags & ZP_ROUTE_NEEDS_MODEL))
		return answer_now(s, c, body, len);
	if (s->stopping)
		return respond_error(s, c, 503, 1, "%s", "server is shutting down");
	if (!s->ready)
		return respond_error(s, c, 503, 1, "%s", "model is loading; see GET /health");
	zp_job *j = job_take(s);
	if (!j) {
		s->met.overloaded++;
		return respond_error(s, c, 503, 1, "%s", "queue is full (requests); retry later");
	}
	zp_api_reply reply = { .body = &s->body };
	status = zp_api_build(&s->api, c->ep, NULL, body, len, j, &reply);
	if (status > 0) {
		job_put_back(s, j);
		return respond_json(s, c, status, 0);
	}
	if (zp_sched_admit(&s->sched, j, s->now)) {
		job_put_back(s, j);
		s->met.overloaded++;
		return respond_error(s, c, 503, 1, "%s", "queue is full (tokens); retry later");
	}
	j->conn = slot_of(s, c);
	j->conn_gen = c->gen;
	c->job = j;
	c->state = CONN_ENGINE;
}

static void consume(conn *c, size_t n)
{
	ZP_ASSERT(n <= c->in_len);
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Parse what has arrived: at most one request is handled per call; the next
   pipelined one waits until this one's response is written. */
static void conn_process(server *s, conn *c)
{
	if (c->state == CONN_HEAD && c->in_len > 0) {
		long n = zp_http_parse(c->in, c->in_len, s->cfg.header_bytes_max, s->cfg.body_bytes_max,
				       &c->req);
		if (n == 0) {
			if (!c->partial) {
				c->partial = true;
				c->t_phase = s->now;
			}
			return;
		}
		c->ep = ZP_ROUTE_OTHER;
		c->t_req = 0;
		if (n < 0) {
			c->close_after = true;
			c->in_len = 0;
			return respond_error(s, c, (int)-n, 0, "%s", zp_http_reason((int)-n));
		}
		c->state = CONN_BODY;
		c->t_phase = c->t_req = s->now;
		if (c->req.expect_continue && c->in_len < c->req.head_bytes + c->req.content_length) {
			zp_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
			send_more(s, c);
		}
	}
	if (c->state == CONN_BODY && c->in_len >= c->req.head_bytes + c->req.content_length) {
		size_t n = c->req.head_bytes + c->req.content_length;
		handle_request(s, c);
		consume(c, n);
	}
}

static void on_accept(server *s, struct io_uring_cqe *cqe, int which)
{
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		s->accept_armed[which] = false;
		/* ended on an error (EMFILE, ...): listen again a scan later, not in a
		   tight loop */
		s->accept_rearm[which] = !s->stopping && cqe->res != -ECANCELED;
	}
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED)
			zp_log(ZP_LOG_WARN, "msg=\"accept failed\" error=\"%s\"", strerror(-cqe->res));
		return;
	}
	int fd = cqe->res;
	struct ucred cr = { 0 };
	socklen_t cl = sizeof cr;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl); /* TCP: none, uid 0 */
	bool allowed = s->cfg.n_allow_uids == 0 || which; /* metrics: loopback, read-only */
	for (int i = 0; i < s->cfg.n_allow_uids; i++)
		allowed |= s->cfg.allow_uids[i] == cr.uid;
	conn *c = NULL;
	for (int i = 0; i < s->cfg.max_connections && !c; i++)
		if (s->conns[i].state == CONN_FREE)
			c = &s->conns[i];
	if (!c || !allowed || s->stopping) {
		/* A short answer the kernel can take at once; the socket is closed either way. */
		static const char full[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
					   "Retry-After: 1\r\nConnection: close\r\n\r\n";
		static const char denied[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
					     "Connection: close\r\n\r\n";
		const char *m = allowed ? full : denied;
		ssize_t w = send(fd, m, strlen(m), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
		close(fd);
		s->met.conns_refused++;
		zp_log(ZP_LOG_WARN, "msg=\"connection refused\" uid=%d pid=%d why=%s", (int)cr.uid,
		       (int)cr.pid, !allowed ? "uid-not-allowed" : s->stopping ? "stopping" :
		       "max-connections");
		return;
	}
	c->state = CONN_HEAD;
	c->fd = fd;
	c->uid = cr.uid;
	c->pid = cr.pid;
	c->t_phase = s->now;
	c->partial = c->close_after = c->sending = false;
	c->metrics_only = which;
	c->in_len = c->out.len = c->out_off = 0;
	c->job = NULL;
	s->met.conns_open++;
	s->met.conns_accepted++;
	zp_log(ZP_LOG_DEBUG, "msg=accept conn=%u uid=%d pid=%d", slot_of(s, c), (int)cr.uid,
	       (int)cr.pid);
	arm_recv(s, c);
}

static void give_buffer_back(server *s, int bid)
{
	io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * RECV_BUF_BYTES, RECV_BUF_BYTES,
			      (unsigned short)bid, io_uring_buf_ring_mask(RECV_BUFS), 0);
	io_uring_buf_ring_advance(s->br, 1);
}

static bool take_bytes(server *s, conn *c, const char *p, size_t n)
{
	size_t max = s->cfg.header_bytes_max + s->cfg.body_bytes_max + RECV_BUF_BYTES;
	if (c->in_len + n > max)
		return false; /* pipelined past every limit */
	if (c->in_len + n > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : 16384;
		while (cap < c->in_len + n)
			cap *= 2;
		c->in = realloc(c->in, ZP_MIN(cap, max));
		ZP_ASSERT(c->in);
		c->in_cap = ZP_MIN(cap, max);
	}
	memcpy(c->in + c->in_len, p, n);
	c->in_len += n;
	return true;
}

static void on_recv(server *s, conn *c, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		bool ok = cqe->res <= 0 || c->state == CONN_CLOSING ||
			  take_bytes(s, c, s->bufs + (size_t)bid * RECV_BUF_BYTES, (size_t)cqe->res);
		give_buffer_back(s, bid);
		if (!ok)
			conn_close(s, c, "input-over-limits");
	}
	if (!more)
		c->ops--;
	if (c->state == CONN_CLOSING) {
		if (c->ops == 0)
			conn_free_slot(s, c);
		return;
	}
	if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS)) {
		return conn_close(s, c, cqe->res == 0 ? "peer-closed" : "recv-error");
	}
	if (!more)
		arm_recv(s, c); /* multishot ended (e.g. no buffer was free): rearm */
	if (cqe->res > 0) {
		if (c->state == CONN_HEAD && !c->partial)
			c->t_phase = s->now;
		conn_process(s, c);
	}
}

static void on_send(server *s, conn *c, struct io_uring_cqe *cqe)
{
	c->sending = false;
	c->ops--;
	if (c->state == CONN_CLOSING) {
		if (c->ops == 0)
			conn_free_slot(s, c);
		return;
	}
	if (cqe->res < 0)
		return conn_close(s, c, "send-error");
	c->out_off += (size_t)cqe->res;
	c->t_phase = s->now;
	if (c->out_off < c->out.len)
		return send_more(s, c);
	c->out.len = c->out_off = 0;
	if (c->state != CONN_SEND)
		return; /* a 100 Continue went out; the body is still coming */
	if (c->close_after)
		return conn_close(s, c, "response-sent");
	c->state = CONN_HEAD;
	c->partial = false;
	c->t_phase = s->now;
	conn_process(s, c); /* a pipelined request may be waiting */
}

/* ---- jobs and executors ---- */

static void job_complete(server *s, zp_job *j)
{
	if (j->cancelled) {
		job_release(s, j);
		return;
	}
	conn *c = &s->conns[j->conn];
	ZP_ASSERT(c->gen == j->conn_gen && c->state == CONN_ENGINE && c->job == j);
	zp_metrics_hist(&s->met.lat_queue_s, j->t_dispatch - j->t_arrive);
	if (j->failed) { /* the executor recovered; this request cannot be answered */
		zp_api_error(&s->body, 500, NULL, "forward pass failed: %s", j->err);
		c->job = NULL;
		job_release(s, j);
		return respond_json(s, c, 500, 0);
	}
	int status = zp_api_finish(&s->api, j, &s->body);
	c->job = NULL;
	job_release(s, j);
	respond_json(s, c, status, 0);
}

static void reap(server *s)
{
	for (int i = 0; i < s->live; i++) {
		zp_batch *b = zp_exec_reap(&s->eng.exec[i]);
		if (!b)
			continue;
		/* the executor is idle until the next submit: its stats are quiet */
		zp_ep_stats(s->eng.ep, i, s->lstats + (size_t)i * s->mcfg.layers);
		if (b->n)
			zp_metrics_batch(&s->met, b, s->now);
		if (b->failed)
			zp_log(ZP_LOG_ERROR, "msg=\"forward failed\" executor=%d seqs=%d error=\"%s\"",
			       i, b->n, b->err);
		for (int k = 0; k < b->n; k++) {
			zp_job *j = b->job[k];
			if (b->failed && !j->failed) {
				j->failed = true;
				snprintf(j->err, sizeof j->err, "%s", b->err);
			}
			if (zp_sched_seq_done(&s->sched, j))
				job_complete(s, j);
		}
	}
}

/* Idle executors get the batches that are due; returns the next wake-up (0:
   none). When every executor is idle nothing is gained by waiting for company
   (continuous batching: requests gather while a batch runs), so the bounded
   batch wait only applies while some executor is busy. */
static double dispatch(server *s)
{
	double wake = 0;
	bool all_idle = true;
	for (int i = 0; i < s->live; i++)
		all_idle &= !s->eng.exec[i].busy;
	if (s->cfg.parallel == ZP_PAR_DPEP && s->live > 1) {
		/* synchronous DP+EP: every executor starts its forward together, those
		   without a batch too (they still serve their experts) */
		if (!all_idle || !zp_sched_next_batch(&s->sched, s->now, true, &s->eng.exec[0].batch,
						      &wake))
			return wake;
		for (int i = 1; i < s->live; i++)
			if (!zp_sched_next_batch(&s->sched, s->now, true, &s->eng.exec[i].batch, &wake))
				s->eng.exec[i].batch.n = s->eng.exec[i].batch.tokens = 0;
		for (int i = 0; i < s->live; i++)
			zp_exec_submit(&s->eng.exec[i]);
		return 0;
	}
	for (int i = 0; i < s->live; i++) {
		zp_exec *x = &s->eng.exec[i];
		if (x->busy)
			continue;
		if (!zp_sched_next_batch(&s->sched, s->now, s->stopping || all_idle, &x->batch, &wake))
			break;
		zp_exec_submit(x);
		all_idle = false;
	}
	return wake;
}

/* ---- loading, signals, timeouts ---- */

static void *loader_main(void *arg)
{
	server *s = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int per = s->cfg.threads_per_executor;
	if (per == 0)
		per = (int)ZP_MAX(1, ncpu / s->cfg.executors);
	zp_engine_cfg ec = { s->cfg.executors, s->cfg.parallel, s->cfg.transport, per,
			     s->cfg.max_batch_tokens, s->efd, s->cfg.offload_window };
	int rc = zp_model_load(&s->model, s->cfg.model, s->cfg.wtype, (int)ZP_MAX(ncpu, 1),
			       &s->progress, &s->load_err);
	if (!rc && (rc = zp_engine_start(&s->eng, &s->model, &ec, &s->load_err)))
		zp_model_free(&s->model);
	if (!rc && zp_ep_source(s->eng.ep, 0)) { /* asyncep in effect (not one executor in place) */
		zp_ep_calib cal;
		zp_err ce;
		if (zp_ep_calibrate(s->eng.ep, per, &cal, &ce) == 0)
			zp_log(ZP_LOG_INFO, "msg=calibration expert_gflop_s=%.1f gather_ms=%.3f gamma=%.1f "
			       "threshold_gflop=%.3f threshold_tokens=%.0f", cal.flops_per_s * 1e-9,
			       cal.gather_s * 1e3, cal.gamma, cal.threshold_flops * 1e-9,
			       cal.threshold_tokens);
		else
			zp_log(ZP_LOG_WARN, "msg=\"calibration failed\" error=\"%s\"", ce.msg);
	}
	atomic_store(&s->load_state, rc ? LOAD_FAILED : LOAD_DONE);
	uint64_t one = 1;
	ssize_t w = write(s->efd, &one, sizeof one);
	ZP_ASSERT(w == sizeof one);
	return NULL;
}

static void begin_stop(server *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	zp_log(ZP_LOG_INFO, "msg=\"stopping: no new connections; finishing admitted requests\" "
	       "why=%s admitted=%d", why, s->sched.requests);
	atomic_store(&s->progress.cancel, true);
	for (int w = 0; w < 2; w++)
		if (s->accept_armed[w]) {
			struct io_uring_sqe *q = sqe_get(s);
			io_uring_prep_cancel64(q, UD(OP_ACCEPT, w, 0), 0);
			io_uring_sqe_set_data64(q, UD(OP_CANCEL, 0, 0));
		}
	unlink(s->cfg.socket);
	for (int i = 0; i < s->cfg.max_connections; i++) {
		conn *c = &s->conns[i];
		if (c->state == CONN_HEAD || c->state == CONN_BODY)
			conn_close(s, c, "shutdown"); /* nothing admitted on it */
		else if (c->state == CONN_ENGINE || c->state == CONN_SEND)
			c->close_after = true;
	}
}

static void on_event(server *s)
{
	if (!s->loader_joined && atomic_load(&s->load_state) != LOAD_RUNNING) {
		pthread_join(s->loader, NULL);
		s->loader_joined = true;
		if (atomic_load(&s->load_state) == LOAD_DONE) {
			s->ready = true;
			s->live = s->eng.n;
			s->lstats = zp_xcalloc((size_t)s->live * s->mcfg.layers, sizeof *s->lstats);
			size_t resident = 0;
			for (int i = 0; i < s->live; i++)
				resident += zp_ep_resident_bytes(s->eng.ep, i);
			zp_log(ZP_LOG_INFO, "msg=ready executors=%d parallel=%s resident_mb=%.1f", s->live,
			       zp_parallel_name(zp_ep_parallel(s->eng.ep)), (double)resident / (1 << 20));
		} else {
			zp_log(ZP_LOG_ERROR, "msg=\"model load failed\" error=\"%s\"", s->load_err.msg);
			s->exit_code = s->stopping ? 0 : 1;
			begin_stop(s, "load-failed");
		}
	}
	reap(s);
}

static void check_timeouts(server *s)
{
	for (int i = 0; i < s->cfg.max_connections; i++) {
		conn *c = &s->conns[i];
		double age = s->now - c->t_phase;
		if (c->state == CONN_HEAD && !c->partial && !c->sending &&
		    age * 1e3 > s->cfg.idle_timeout_ms) {
			conn_close(s, c, "idle-timeout");
		} else if ((c->state == CONN_HEAD && c->partial &&
			    age * 1e3 > s->cfg.header_timeout_ms) ||
			   (c->state == CONN_BODY && age * 1e3 > s->cfg.body_timeout_ms)) {
			s->met.timeouts++;
			c->close_after = true;
			c->in_len = 0;
			c->state = CONN_HEAD; /* so respond() does not keep it alive */
			respond_error(s, c, 408, 0, "%s", c->partial ? "request head not received in time"
				      : "request body not received in time");
		} else if (c->state == CONN_SEND && age * 1e3 > s->cfg.idle_timeout_ms) {
			s->met.timeouts++;
			conn_close(s, c, "send-timeout"); /* the client stopped reading */
		}
	}
}

static void on_cqe(server *s, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int op = UD_OP(ud);
	if (op == OP_ACCEPT)
		return on_accept(s, cqe, (int)UD_SLOT(ud));
	if (op == OP_CANCEL)
		return;
	if (op == OP_EVENT) {
		ZP_ASSERT(cqe->res == sizeof s->efd_val);
		on_event(s);
		return arm_read(s, s->efd, &s->efd_val, sizeof s->efd_val, OP_EVENT);
	}
	if (op == OP_SIGNAL) {
		if (cqe->res == sizeof s->sig)
			begin_stop(s, s->sig.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
		return arm_read(s, s->sfd, &s->sig, sizeof s->sig, OP_SIGNAL);
	}
	uint32_t slot = UD_SLOT(ud);
	ZP_ASSERT(slot < (uint32_t)s->cfg.max_connections);
	conn *c = &s->conns[slot];
	if (c->gen != UD_GEN(ud) || c->state == CONN_FREE) {
		zp_log(ZP_LOG_WARN, "msg=\"stale completion dropped\" op=%d conn=%u", op, slot);
		return;
	}
	if (op == OP_RECV)
		on_recv(s, c, cqe);
	else if (op == OP_SEND)
		on_send(s, c, cqe);
	else
		ZP_ASSERT(!"unknown completion op");
}

static bool finished(server *s)
{
	return s->stopping && s->loader_joined && s->sched.requests == 0 && s->met.conns_open == 0 &&
	       !s->accept_armed[0] && !s->accept_armed[1];
}

static void loop(server *s)
{
	while (!finished(s)) {
		struct io_uring_cqe *cqe;
		s->now = zp_now_s();
		double wake = dispatch(s), until = s->next_scan;
		if (wake > 0 && wake < until)
			until = wake;
		double dt = ZP_MAX(until - s->now, 0.0);
		struct __kernel_timespec ts = { .tv_sec = (long long)dt,
						.tv_nsec = (long long)((dt - (long long)dt) * 1e9) };
		int rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
		ZP_ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
		s->now = zp_now_s();
		unsigned head, n = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			on_cqe(s, cqe);
			n++;
		}
		io_uring_cq_advance(&s->ring, n);
		if (s->now >= s->next_scan) {
			for (int w = 0; w < 2; w++)
				if (s->accept_rearm[w] && !s->stopping) {
					s->accept_rearm[w] = false;
					arm_accept(s, w);
				}
			check_timeouts(s);
			s->next_scan = s->now + SCAN_S;
		}
	}
}

/* ---- start-up ---- */

static int open_socket(server *s, zp_err *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	const char *path = s->cfg.socket;
	struct stat st;
	if (strlen(path) >= sizeof a.sun_path)
		return zp_errf(e, "socket path over %zu bytes", sizeof a.sun_path - 1);
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
		unlink(path); /* stale, from a process that died */
	}
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) ||
	    listen(s->lfd, 1024))
		return zp_errf(e, "%s: %s", path, strerror(errno));
	if (chmod(path, (mode_t)s->cfg.socket_mode))
		return zp_errf(e, "chmod %s: %s", path, strerror(errno));
	if (s->cfg.socket_group) {
		struct group *g = getgrnam(s->cfg.socket_group);
		if (!g || chown(path, (uid_t)-1, g->gr_gid))
			return zp_errf(e, "socket group %s: %s", s->cfg.socket_group,
				       g ? strerror(errno) : "no such group");
	}
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
	    bind(s->mfd, (struct sockaddr *)&a, sizeof a) || listen(s->mfd, 64))
		return zp_errf(e, "metrics listener 127.0.0.1:%d: %s", s->cfg.metrics_port,
			       strerror(errno));
	return 0;
}

static int setup_ring(server *s, zp_err *e)
{
	int rc = io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
	if (rc)
		return zp_errf(e, "io_uring: %s", strerror(-rc));
	if (posix_memalign((void **)&s->br, 4096, RECV_BUFS * sizeof(struct io_uring_buf)))
		return zp_errf(e, "out of memory");
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)s->br,
					.ring_entries = RECV_BUFS, .bgid = 0 };
	if ((rc = io_uring_register_buf_ring(&s->ring, &reg, 0)))
		return zp_errf(e, "io_uring provided buffers: %s", strerror(-rc));
	s->bufs = zp_xmalloc((size_t)RECV_BUFS * RECV_BUF_BYTES);
	io_uring_buf_ring_init(s->br);
	for (int i = 0; i < RECV_BUFS; i++)
		io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * RECV_BUF_BYTES, RECV_BUF_BYTES,
				      (unsigned short)i, io_uring_buf_ring_mask(RECV_BUFS), i);
	io_uring_buf_ring_advance(s->br, RECV_BUFS);
	return 0;
}

/* Config, tokenizer and API first (fast), so /health and /tokenize answer
   while the weights load. */
static int setup(server *s, zp_err *e)
{
	char tokpath[4096];
	zp_serve_cfg *c = &s->cfg;
	if (!c->model)
		return zp_errf(e, "no model: give --model DIR or [engine] model");
	if (zp_config_load(&s->mcfg, c->model, e))
		return -1;
	if (!c->max_tokens)
		c->max_tokens = ZP_MIN(s->mcfg.max_positions, 8192);
	if (c->max_tokens > s->mcfg.max_positions)
		return zp_errf(e, "max_tokens %d is over the model's max_position_embeddings %d",
			       c->max_tokens, s->mcfg.max_positions);
	if (c->max_batch_tokens < c->max_tokens)
		return zp_errf(e, "max_batch_tokens (%d) must hold one sequence of max_tokens (%d)",
			       c->max_batch_tokens, c->max_tokens);
	if (c->queue_tokens_max < c->max_tokens)
		return zp_errf(e, "queue_tokens_max must be at least max_tokens");
	snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", c->model);
	if (access(tokpath, F_OK) == 0) {
		if (!(s->tok = zp_tok_load(tokpath, e)))
			return -1;
	} else {
		zp_log(ZP_LOG_WARN, "msg=\"no tokenizer.json: text requests will get a 400\" dir=%s",
		       c->model);
	}
	if (!c->model_name) {
		const char *b = strrchr(c->model, '/');
		c->model_name = strdup(b && b[1] ? b + 1 : c->model);
	}
	zp_req_limits lim = { .vocab = s->mcfg.vocab, .max_tokens = c->max_tokens,
			      .hidden = s->mcfg.hidden };
	zp_api_init(&s->api, s->tok, &lim, c->model_name, &c->rerank);
	zp_sched_init(&s->sched, c->queue_requests_max, c->queue_tokens_max, c->max_batch_tokens,
		      c->batch_wait_ms / 1e3);
	s->conns = zp_xcalloc((size_t)c->max_connections, sizeof *s->conns);
	for (int i = 0; i < c->max_connections; i++)
		zp_buf_init(&s->conns[i].out, 4096);
	s->jobs = zp_xcalloc((size_t)c->queue_requests_max, sizeof *s->jobs);
	for (int i = c->queue_requests_max - 1; i >= 0; i--) {
		s->jobs[i].next = s->job_free;
		s->job_free = &s->jobs[i];
	}
	zp_buf_init(&s->body, 1 << 16);
	if (open_socket(s, e) || open_metrics(s, e) || setup_ring(s, e))
		return -1;
	s->efd = eventfd(0, EFD_CLOEXEC);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	s->sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (s->efd < 0 || s->sfd < 0)
		return zp_errf(e, "eventfd/signalfd: %s", strerror(errno));
	return 0;
}

static void teardown(server *s)
{
	if (s->ready) {
		zp_engine_stop(&s->eng);
		zp_model_free(&s->model);
	}
	free(s->lstats);
	for (int i = 0; s->conns && i < s->cfg.max_connections; i++) {
		free(s->conns[i].in);
		zp_buf_free(&s->conns[i].out);
	}
	free(s->conns);
	free(s->jobs);
	zp_buf_free(&s->body);
	zp_api_free(&s->api);
	zp_tok_free(s->tok);
	if (s->br)
		io_uring_queue_exit(&s->ring);
	free(s->br);
	free(s->bufs);
	if (s->lfd > 0)
		close(s->lfd);
	if (s->mfd > 0)
		close(s->mfd);
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
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (zp_serve_cfg_args(&s->cfg, argc, argv, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"%s\"", e.msg);
		zp_serve_cfg_free(&s->cfg);
		return 2;
	}
	zp_log_min = (enum zp_log_level)s->cfg.log_level;
	if (setup(s, &e)) {
		zp_log(ZP_LOG_ERROR, "msg=\"cannot start\" error=\"%s\"", e.msg);
		teardown(s);
		zp_serve_cfg_free(&s->cfg);
		return 1;
	}
	zp_metrics_init(&s->met, zp_now_s());
	zp_log(ZP_LOG_INFO, "msg=listening socket=%s mode=%04o model=%s tokenizer=%s executors=%d "
	       "max_tokens=%d max_batch_tokens=%d queue_requests_max=%d", s->cfg.socket,
	       s->cfg.socket_mode, s->cfg.model, s->tok ? "yes" : "no", s->cfg.executors,
	       s->cfg.max_tokens, s->cfg.max_batch_tokens, s->cfg.queue_requests_max);
	atomic_store(&s->progress.layers, s->mcfg.layers);
	int rc = pthread_create(&s->loader, NULL, loader_main, s);
	ZP_ASSERT(rc == 0);
	arm_accept(s, 0);
	if (s->mfd >= 0)
		arm_accept(s, 1);
	arm_read(s, s->efd, &s->efd_val, sizeof s->efd_val, OP_EVENT);
	arm_read(s, s->sfd, &s->sig, sizeof s->sig, OP_SIGNAL);
	s->next_scan = zp_now_s() + SCAN_S;
	loop(s);
	zp_log(ZP_LOG_INFO, "msg=stopped requests_tokens=%llu batches=%llu exit=%d",
	       (unsigned long long)s->met.tokens_total, (unsigned long long)s->met.batches_total,
	       s->exit_code);
	int code = s->exit_code;
	teardown(s);
	zp_serve_cfg_free(&s->cfg);
	return code;
}
