/* conn.c -- see conn.h. Input is copied out of the reactor's provided
   buffers into each connection's fixed buffer, or into a pooled one for a
   request that does not fit (bounded by the head and body limits);
   responses are written from each connection's fixed out buffer, or a pooled
   one. */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"

#define ZP_CONN_LOG_WINDOW_S 10.0	/* a repeated warning: one line, then a count */

static zp_log_limit log_limit(const char *what)
{
	return (zp_log_limit){ .what = what, .lvl = ZP_LOG_WARN, .window_s = ZP_CONN_LOG_WINDOW_S };
}

static void pool_init(zp_conn_pool *p, size_t bytes, int conns)
{
	p->bytes = ZP_ALIGN_UP(bytes, 64);
	p->n = (int)ZP_MIN((size_t)conns, ZP_MAX(ZP_CONN_POOL_MIN, ZP_CONN_POOL_BYTES / p->bytes));
	p->mem = zp_xalloc_aligned((size_t)p->n * p->bytes); /* fresh pages: untouched until used */
	p->free_idx = zp_xcalloc((size_t)p->n, sizeof *p->free_idx);
	for (int i = 0; i < p->n; i++)
		p->free_idx[i] = p->n - 1 - i;
	p->nfree = p->n;
}

/* A pooled buffer's index, or -1 when none is free. */
static int pool_take(zp_conn_pool *p)
{
	if (p->nfree == 0)
		return -1;
	return p->free_idx[--p->nfree];
}

static void pool_put(zp_conn_pool *p, int i)
{
	ZP_ASSERT(i >= 0 && i < p->n && p->nfree < p->n);
	p->free_idx[p->nfree++] = i;
}

static char *pool_mem(const zp_conn_pool *p, int i)
{
	return p->mem + (size_t)i * p->bytes;
}

static void pool_free(zp_conn_pool *p)
{
	zp_free_aligned(p->mem);
	free(p->free_idx);
	memset(p, 0, sizeof *p);
}

void zp_conns_init(zp_conns *cs, const zp_serve_cfg *cfg, size_t resp_max)
{
	int n = cfg->max_connections;
	cs->cfg = cfg;
	cs->slot = zp_xcalloc((size_t)n + ZP_CONN_REFUSED_MAX, sizeof *cs->slot);
	cs->n = n;
	cs->fault_peercred = getenv("ZP_FAULT_PEERCRED") != NULL;
	cs->log_busy = log_limit("connections refused (503)");
	cs->log_denied = log_limit("connections refused (403)");
	cs->log_accept = log_limit("accepts failed");
	cs->log_stale = log_limit("stale completions dropped");
	/* a whole head, and one receive after it (the parser sees the head whole) */
	cs->in_bytes = ZP_ALIGN_UP(cfg->header_bytes_max + ZP_REACTOR_BUF_BYTES, 64);
	cs->own = zp_xalloc_aligned((size_t)n * (cs->in_bytes + ZP_CONN_OUT_BYTES) +
				    ZP_CONN_REFUSED_MAX * 64);
	pool_init(&cs->in_pool, cfg->header_bytes_max + cfg->body_bytes_max + ZP_REACTOR_BUF_BYTES, n);
	pool_init(&cs->out_pool, resp_max + ZP_CONN_HEAD_OUT_BYTES, n);
	for (int i = 0; i < n; i++) {
		zp_conn *c = &cs->slot[i];
		c->in_own = cs->own + (size_t)i * (cs->in_bytes + ZP_CONN_OUT_BYTES);
		c->out_own = c->in_own + cs->in_bytes;
		c->in = c->in_own;
		c->in_cap = cs->in_bytes;
		c->in_big = c->out_big = -1;
		zp_buf_init_fixed(&c->out, c->out_own, ZP_CONN_OUT_BYTES);
	}
	char *refused_out = cs->own + (size_t)n * (cs->in_bytes + ZP_CONN_OUT_BYTES);
	for (int i = n; i < n + ZP_CONN_REFUSED_MAX; i++) { /* no input kept, nothing queued */
		zp_conn *c = &cs->slot[i];
		c->in_big = c->out_big = -1;
		c->out_own = refused_out + (size_t)(i - n) * 64;
		zp_buf_init_fixed(&c->out, c->out_own, 64);
	}
	zp_log(ZP_LOG_INFO, "msg=\"connection buffers\" connections=%d own_kb=%zu "
	       "request_pool=%dx%zukb response_pool=%dx%zukb", n,
	       (cs->in_bytes + ZP_CONN_OUT_BYTES) >> 10, cs->in_pool.n, cs->in_pool.bytes >> 10,
	       cs->out_pool.n, cs->out_pool.bytes >> 10);
}

static void flush_logs(zp_conns *cs, bool all)
{
	zp_log_limit *logs[] = { &cs->log_busy, &cs->log_denied, &cs->log_accept, &cs->log_stale };
	for (int i = 0; i < 4; i++)
		zp_log_limit_flush(logs[i], *cs->now, all);
}

void zp_conns_free(zp_conns *cs)
{
	if (!cs->slot)
		return;
	if (cs->now) /* the counts of the last window */
		flush_logs(cs, true);
	pool_free(&cs->in_pool);
	pool_free(&cs->out_pool);
	zp_free_aligned(cs->own);
	free(cs->slot);
	cs->slot = NULL;
	cs->own = NULL;
	cs->n = 0;
}

/* Back to the connection's own input buffer once what is left fits it. */
static void in_shrink(zp_conns *cs, zp_conn *c)
{
	if (c->in_big < 0 || c->in_len > cs->in_bytes)
		return;
	memcpy(c->in_own, c->in, c->in_len);
	pool_put(&cs->in_pool, c->in_big);
	c->in_big = -1;
	c->in = c->in_own;
	c->in_cap = cs->in_bytes;
}

/* Back to the connection's own response buffer (nothing left to send). */
static void out_shrink(zp_conns *cs, zp_conn *c)
{
	if (c->out_big >= 0) {
		pool_put(&cs->out_pool, c->out_big);
		c->out_big = -1;
		zp_buf_init_fixed(&c->out, c->out_own, ZP_CONN_OUT_BYTES);
	}
	zp_buf_reset(&c->out);
	c->out_off = 0;
}

static int nslots(const zp_conns *cs)
{
	return cs->n + ZP_CONN_REFUSED_MAX;
}

uint32_t zp_conn_slot(const zp_conns *cs, const zp_conn *c)
{
	ZP_ASSERT(c >= cs->slot && c < cs->slot + nslots(cs));
	return (uint32_t)(c - cs->slot);
}

static void arm_recv(zp_conns *cs, zp_conn *c)
{
	zp_reactor_recv(cs->rx, c->fd, zp_conn_slot(cs, c), c->gen);
	c->ops++;
}

static void send_more(zp_conns *cs, zp_conn *c)
{
	if (c->sending || c->out_off == c->out.len || c->state == ZP_CONN_CLOSING)
		return;
	zp_reactor_send(cs->rx, c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
			zp_conn_slot(cs, c), c->gen);
	c->sending = true;
	c->ops++;
}

/* A socket's fd is released whatever close says (Linux, EINTR included);
   EBADF would mean it was closed twice: another connection's fd may be gone. */
static void close_socket(int fd)
{
	int rc = close(fd);
	ZP_ASSERT(rc == 0 || errno != EBADF);
}

static void free_slot(zp_conns *cs, zp_conn *c)
{
	ZP_ASSERT(c->state == ZP_CONN_CLOSING && c->ops == 0 && !c->job);
	close_socket(c->fd);
	c->in_len = 0;
	in_shrink(cs, c);
	out_shrink(cs, c);
	c->state = ZP_CONN_FREE;
	c->gen++;
	cs->met->conns_open--;
}

void zp_conn_close(zp_conns *cs, zp_conn *c, const char *why)
{
	if (c->state == ZP_CONN_CLOSING || c->state == ZP_CONN_FREE)
		return;
	zp_log(ZP_LOG_DEBUG, "msg=\"close\" conn=%u uid=%d why=%s", zp_conn_slot(cs, c), (int)c->uid,
	       why);
	if (c->job) /* its client has gone: the server drops the job */
		cs->on_gone(cs->srv, c);
	ZP_ASSERT(!c->job);
	c->state = ZP_CONN_CLOSING;
	/* wakes the operations still armed on it; a peer already gone is ENOTCONN */
	int rc = shutdown(c->fd, SHUT_RDWR);
	ZP_ASSERT(rc == 0 || errno == ENOTCONN);
	if (c->ops > 0)
		zp_reactor_cancel_fd(cs->rx, c->fd);
	else
		free_slot(cs, c);
}

/* c's answer is written and it closes after it: shut the write side and
   drop its input until its EOF or ZP_CONN_LINGER_MS (conn.h). Stopping: at
   once (the process is going; its answers were to admitted requests). */
static void linger(zp_conns *cs, zp_conn *c, const char *why)
{
	if (*cs->stopping || shutdown(c->fd, SHUT_WR) != 0)
		return zp_conn_close(cs, c, why);
	zp_log(ZP_LOG_DEBUG, "msg=linger conn=%u uid=%d why=%s", zp_conn_slot(cs, c), (int)c->uid,
	       why);
	c->state = ZP_CONN_LINGER;
	c->close_after = true; /* input is dropped from now on */
	c->t_phase = *cs->now;
	c->in_len = 0;
	in_shrink(cs, c);
}

void zp_conn_respond(zp_conns *cs, zp_conn *c, int status, const char *ctype, const char *body,
		     size_t len, int retry_after)
{
	double now = *cs->now;
	bool keep = c->req.keep_alive && !c->close_after && !*cs->stopping &&
		    status != ZP_HTTP_ERR_TIMEOUT && c->state != ZP_CONN_HEAD;
	if (!keep)
		c->close_after = true;
	if (c->out.len + len + ZP_CONN_HEAD_OUT_BYTES > c->out.cap) {
		int big = c->out_big < 0 ? pool_take(&cs->out_pool) : -1;
		if (big < 0) { /* a 503 fits the connection's own buffer: no loop */
			cs->met->overloaded++;
			zp_api_error(cs->body, ZP_HTTP_ERR_UNAVAILABLE, NULL, "no response buffer "
				     "is free for a %zu-byte answer (%d in use); retry later", len,
				     cs->out_pool.n);
			return zp_conn_respond(cs, c, ZP_HTTP_ERR_UNAVAILABLE, "application/json",
					       cs->body->p, cs->body->len, 1);
		}
		zp_buf pooled; /* what is queued (a 100 Continue) moves with it */
		zp_buf_init_fixed(&pooled, pool_mem(&cs->out_pool, big), cs->out_pool.bytes);
		zp_buf_put(&pooled, c->out.p, c->out.len);
		c->out = pooled;
		c->out_big = big;
	}
	zp_http_respond(&c->out, status, ctype, body, len, keep, retry_after,
			status == ZP_HTTP_ERR_METHOD ? zp_route_allow(c->req.path) : NULL);
	if (c->state != ZP_CONN_HEAD && c->req.method == ZP_HTTP_HEAD)
		c->out.len -= len; /* the head says the GET's length; no body follows a HEAD */
	zp_metrics_status(cs->met, c->ep, status);
	if (c->t_req > 0 && status == 200 && zp_route_needs_model(c->ep))
		zp_metrics_hist(&cs->met->lat_total_s, now - c->t_req);
	zp_log(ZP_LOG_DEBUG, "msg=request conn=%u uid=%d pid=%d tcp_port=%u endpoint=%s status=%d "
	       "ms=%.2f", zp_conn_slot(cs, c), (int)c->uid, (int)c->pid, c->port, zp_route_name(c->ep), status,
	       c->t_req > 0 ? (now - c->t_req) * 1e3 : 0.0);
	c->state = ZP_CONN_SEND;
	c->t_phase = now;
	send_more(cs, c);
}

void zp_conn_error(zp_conns *cs, zp_conn *c, int status, int retry_after, const char *fmt,
		   const char *arg)
{
	zp_api_error(cs->body, status, NULL, fmt, arg);
	zp_conn_respond(cs, c, status, "application/json", cs->body->p, cs->body->len,
			retry_after);
}

static void consume(zp_conn *c, size_t n)
{
	ZP_ASSERT(n <= c->in_len);
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Parse what has arrived: at most one request is handled per call; the next
   pipelined one waits until this one's response is written. */
static void process(zp_conns *cs, zp_conn *c)
{
	double now = *cs->now;
	if (c->state == ZP_CONN_HEAD && c->in_len > 0) {
		long n = zp_http_parse(c->in, c->in_len, cs->cfg->header_bytes_max,
				       cs->cfg->body_bytes_max, &c->req);
		if (n == 0) {
			if (!c->partial) {
				c->partial = true;
				c->t_phase = now;
			}
			return;
		}
		c->ep = ZP_ROUTE_OTHER;
		c->t_req = 0;
		if (n < 0) {
			c->close_after = true;
			c->in_len = 0;
			in_shrink(cs, c);
			return zp_conn_error(cs, c, (int)-n, 0, "%s", zp_http_parse_why((int)-n));
		}
		c->state = ZP_CONN_BODY;
		c->t_phase = c->t_req = now;
		if (c->req.expect_continue && c->in_len < c->req.head_bytes + c->req.content_length) {
			zp_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
			send_more(cs, c);
		}
	}
	if (c->state == ZP_CONN_BODY && c->in_len >= c->req.head_bytes + c->req.content_length) {
		size_t n = c->req.head_bytes + c->req.content_length;
		cs->on_request(cs->srv, c);
		consume(c, n);
		in_shrink(cs, c);
	}
}

/* The peer's uid and pid, from the Unix socket (SO_PEERCRED). -1 when the
   kernel does not give them whole: the connection must not pass an
   allow-list then (cr would still say uid 0). */
static int peer_cred(const zp_conns *cs, int fd, struct ucred *cr)
{
	/* tests: ZP_FAULT_PEERCRED asks for a short answer, which is refused */
	socklen_t want = cs->fault_peercred ? sizeof *cr - 1 : sizeof *cr, cl = want;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &cl))
		return -1;
	if (cl != sizeof *cr) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* The peer's TCP port (what names a TCP client in the logs: TCP has no
   SO_PEERCRED), or 0 when the kernel does not say. */
static unsigned peer_port(int fd)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof a;
	if (getpeername(fd, (struct sockaddr *)&a, &len))
		return 0;
	if (a.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a)->sin_port);
	return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port) : 0;
}

/* A free refusal slot, or NULL. */
static zp_conn *refusal_slot(zp_conns *cs)
{
	for (int i = cs->n; i < nslots(cs); i++)
		if (cs->slot[i].state == ZP_CONN_FREE)
			return &cs->slot[i];
	return NULL;
}

/* Refused at once: a short answer the kernel can take without waiting
   (a fresh socket's buffer is empty); then the socket lingers in a refusal
   slot (conn.h), or closes at once when none is free. */
static void refuse(zp_conns *cs, int fd, int status, const struct ucred *cr, const char *why)
{
	char body[320], resp[640];
	zp_buf b, m;
	bool denied = status == ZP_HTTP_ERR_FORBIDDEN;
	zp_buf_init_fixed(&b, body, sizeof body);
	zp_buf_init_fixed(&m, resp, sizeof resp);
	if (denied)
		zp_api_error(&b, status, NULL, "uid %d is not in this server's allow_uids",
			     (int)cr->uid);
	else
		zp_api_error(&b, status, NULL, "%s; retry later", *cs->stopping ?
			     "server is shutting down" : "too many connections (max_connections)");
	zp_http_respond(&m, status, "application/json", b.p, b.len, false, denied ? 0 : 1, NULL);
	ZP_ASSERT(!b.overflow && !m.overflow);
	/* best effort: the peer may already be gone, and the socket closes anyway */
	ssize_t w = send(fd, m.p, m.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	zp_conn *c = w == (ssize_t)m.len ? refusal_slot(cs) : NULL;
	if (c && shutdown(fd, SHUT_WR) == 0) {
		ZP_ASSERT(c->ops == 0 && c->in_len == 0 && c->out.len == 0 && !c->job);
		c->state = ZP_CONN_LINGER;
		c->fd = fd;
		c->uid = cr->uid;
		c->pid = cr->pid;
		c->port = 0;
		c->t_phase = *cs->now;
		c->t_req = 0;
		c->close_after = true;
		c->partial = c->sending = c->metrics_only = false;
		cs->met->conns_open++;
		arm_recv(cs, c);
	} else {
		close_socket(fd);
	}
	cs->met->conns_refused++;
	zp_log_limited(denied ? &cs->log_denied : &cs->log_busy, *cs->now,
		       "msg=\"connection refused\" uid=%d pid=%d why=%s", (int)cr->uid,
		       (int)cr->pid, why);
}

void zp_conn_accept(zp_conns *cs, const zp_reactor_event *ev, int which)
{
	if (ev->res < 0) {
		if (ev->res != -ECANCELED)
			zp_log_limited(&cs->log_accept, *cs->now, "msg=\"accept failed\" error=\"%s\"",
				       strerror(-ev->res));
		return;
	}
	int fd = ev->res;
	/* the TCP listeners are loopback (metrics: read-only; the API: refused at
	   start with allow_uids): no credentials there, the peer's port instead */
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	if (which == 0 && peer_cred(cs, fd, &cr)) {
		zp_log_limited(&cs->log_accept, *cs->now, "msg=\"SO_PEERCRED failed: closing\" "
			       "error=\"%s\"", strerror(errno));
		close_socket(fd);
		cs->met->conns_refused++;
		return;
	}
	bool allowed = cs->cfg->n_allow_uids == 0 || which;
	for (int i = 0; i < cs->cfg->n_allow_uids; i++)
		allowed |= cs->cfg->allow_uids[i] == cr.uid;
	zp_conn *c = NULL;
	for (int i = 0; i < cs->n && !c; i++)
		if (cs->slot[i].state == ZP_CONN_FREE)
			c = &cs->slot[i];
	if (!allowed)
		return refuse(cs, fd, ZP_HTTP_ERR_FORBIDDEN, &cr, "uid-not-allowed");
	if (!c || *cs->stopping)
		return refuse(cs, fd, ZP_HTTP_ERR_UNAVAILABLE, &cr,
			      *cs->stopping ? "stopping" : "max-connections");
	c->state = ZP_CONN_HEAD;
	c->fd = fd;
	c->uid = cr.uid;
	c->pid = cr.pid;
	c->t_phase = *cs->now;
	c->partial = c->close_after = c->sending = c->served = false;
	c->metrics_only = which == 1;
	c->port = which ? peer_port(fd) : 0;
	ZP_ASSERT(c->in_big < 0 && c->out_big < 0 && c->in_len == 0 && c->out.len == 0);
	c->out_off = 0;
	c->job = NULL;
	cs->met->conns_open++;
	cs->met->conns_accepted++;
	zp_log(ZP_LOG_DEBUG, "msg=accept conn=%u uid=%d pid=%d tcp_port=%u", zp_conn_slot(cs, c),
	       (int)cr.uid, (int)cr.pid, c->port);
	arm_recv(cs, c);
}

/* Input bytes appended: 0; ZP_HTTP_ERR_UNAVAILABLE when they need a pooled
   buffer and none is free; -1 when they would pass every limit at once. */
static int take_bytes(zp_conns *cs, zp_conn *c, const char *p, size_t n)
{
	if (c->in_len + n > c->in_cap) {
		if (c->in_big >= 0)
			return -1; /* pipelined past every limit */
		int big = pool_take(&cs->in_pool);
		if (big < 0)
			return ZP_HTTP_ERR_UNAVAILABLE;
		memcpy(pool_mem(&cs->in_pool, big), c->in, c->in_len);
		c->in_big = big;
		c->in = pool_mem(&cs->in_pool, big);
		c->in_cap = cs->in_pool.bytes;
		if (c->in_len + n > c->in_cap)
			return -1;
	}
	memcpy(c->in + c->in_len, p, n);
	c->in_len += n;
	return 0;
}

/* The input pool is empty: these bytes cannot be kept, so nothing after
   them can be framed. A request still arriving gets a 503; a response in
   progress still goes out; then the connection closes (input after this is
   dropped). */
static void refuse_input(zp_conns *cs, zp_conn *c)
{
	cs->met->overloaded++;
	c->close_after = true;
	c->in_len = 0;
	if (c->state == ZP_CONN_HEAD || c->state == ZP_CONN_BODY) {
		c->state = ZP_CONN_HEAD; /* so respond does not keep it alive */
		c->ep = ZP_ROUTE_OTHER;
		c->t_req = 0;
		zp_conn_error(cs, c, ZP_HTTP_ERR_UNAVAILABLE, 1, "%s",
			      "no buffer is free for a request this large; retry later");
	}
}

static void on_recv(zp_conns *cs, zp_conn *c, const zp_reactor_event *ev)
{
	int took = ev->data && ev->res > 0 && c->state != ZP_CONN_CLOSING && !c->close_after ?
		   take_bytes(cs, c, ev->data, (size_t)ev->res) : 0;
	if (took < 0)
		zp_conn_close(cs, c, "input-over-limits");
	else if (took)
		refuse_input(cs, c);
	if (!ev->more)
		c->ops--;
	if (c->state == ZP_CONN_CLOSING) {
		if (c->ops == 0)
			free_slot(cs, c);
		return;
	}
	if (ev->res == 0 || (ev->res < 0 && ev->res != -ENOBUFS))
		return zp_conn_close(cs, c, ev->res == 0 ? "peer-closed" : "recv-error");
	if (!ev->more)
		arm_recv(cs, c); /* multishot ended (e.g. no buffer was free): rearm */
	if (ev->res > 0) {
		if (c->state == ZP_CONN_HEAD && !c->partial)
			c->t_phase = *cs->now;
		process(cs, c);
	}
}

static void on_send(zp_conns *cs, zp_conn *c, const zp_reactor_event *ev)
{
	double now = *cs->now;
	c->sending = false;
	c->ops--;
	if (c->state == ZP_CONN_CLOSING) {
		if (c->ops == 0)
			free_slot(cs, c);
		return;
	}
	if (ev->res < 0)
		return zp_conn_close(cs, c, "send-error");
	c->out_off += (size_t)ev->res;
	c->t_phase = now;
	if (c->out_off < c->out.len)
		return send_more(cs, c);
	out_shrink(cs, c);
	if (c->state != ZP_CONN_SEND)
		return; /* a 100 Continue went out; the body is still coming */
	if (c->close_after)
		return linger(cs, c, "response-sent");
	c->state = ZP_CONN_HEAD;
	c->partial = false;
	c->served = true;
	c->t_phase = now;
	process(cs, c); /* a pipelined request may be waiting */
}

void zp_conn_event(zp_conns *cs, const zp_reactor_event *ev)
{
	ZP_ASSERT(ev->slot < (uint32_t)nslots(cs));
	zp_conn *c = &cs->slot[ev->slot];
	if (c->gen != ev->gen || c->state == ZP_CONN_FREE) {
		zp_log_limited(&cs->log_stale, *cs->now, "msg=\"stale completion dropped\" op=%d "
			       "conn=%u", (int)ev->op, ev->slot);
		return;
	}
	if (ev->op == ZP_REACTOR_RECV)
		on_recv(cs, c, ev);
	else if (ev->op == ZP_REACTOR_SEND)
		on_send(cs, c, ev);
	else
		ZP_ASSERT(!"a connection completion that is neither recv nor send");
}

/* How long a connection may wait in HEAD with nothing received: one that
   never sent a whole head has the header timeout (a client that connects and
   sends nothing must not hold a slot for the idle budget); a keep-alive one
   between requests the idle timeout, cut to the header timeout when 3/4 of
   the slots are taken, so idle clients cannot starve new ones. */
static double quiet_limit_ms(const zp_serve_cfg *cfg, const zp_conn *c, bool scarce)
{
	if (!c->served || scarce)
		return ZP_MIN(cfg->header_timeout_ms, cfg->idle_timeout_ms);
	return cfg->idle_timeout_ms;
}

void zp_conn_check_timeouts(zp_conns *cs)
{
	const zp_serve_cfg *cfg = cs->cfg;
	int used = 0;
	flush_logs(cs, false);
	for (int i = 0; i < cs->n; i++)
		used += cs->slot[i].state != ZP_CONN_FREE;
	for (int i = 0; i < nslots(cs); i++) {
		zp_conn *c = &cs->slot[i];
		double age_ms = (*cs->now - c->t_phase) * 1e3;
		bool scarce = 4 * used >= 3 * cs->n; /* idle ones close until it is not */
		if (c->state == ZP_CONN_HEAD && !c->partial && !c->sending &&
		    age_ms > quiet_limit_ms(cfg, c, scarce)) {
			if (!c->served)
				cs->met->timeouts++;
			zp_conn_close(cs, c, c->served ? "idle-timeout" : "header-timeout");
			used--;
		} else if ((c->state == ZP_CONN_HEAD && c->partial && age_ms > cfg->header_timeout_ms) ||
			   (c->state == ZP_CONN_BODY && age_ms > cfg->body_timeout_ms)) {
			cs->met->timeouts++;
			c->close_after = true;
			c->in_len = 0;
			in_shrink(cs, c);
			c->state = ZP_CONN_HEAD; /* so respond does not keep it alive */
			zp_conn_error(cs, c, ZP_HTTP_ERR_TIMEOUT, 0, "%s",
				      c->partial ? "request head not received in time"
						 : "request body not received in time");
		} else if (c->state == ZP_CONN_SEND && age_ms > cfg->idle_timeout_ms) {
			cs->met->timeouts++;
			zp_conn_close(cs, c, "send-timeout"); /* the client stopped reading */
		} else if (c->state == ZP_CONN_LINGER && age_ms > ZP_CONN_LINGER_MS) {
			zp_conn_close(cs, c, "linger-done");
		}
	}
}

void zp_conns_stop(zp_conns *cs)
{
	for (int i = 0; i < nslots(cs); i++) {
		zp_conn *c = &cs->slot[i];
		if (c->state == ZP_CONN_HEAD || c->state == ZP_CONN_BODY || c->state == ZP_CONN_LINGER)
			zp_conn_close(cs, c, "shutdown"); /* nothing admitted on it */
		else if (c->state == ZP_CONN_ENGINE || c->state == ZP_CONN_SEND)
			c->close_after = true;
	}
}
