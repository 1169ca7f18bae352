/* conn.h -- client connections: the state machine, framing (head, body,
   pipelining, 100-continue), the per-phase timeouts and the input limits.
   Owns every connection's buffers; asks the server (callbacks) to answer a
   whole request and to drop the job of a client that left. Reactor thread
   only.

   States (one request at a time per connection; pipelined requests wait in
   the input buffer and are answered in order):
     FREE    -> HEAD     accepted
     HEAD    -> BODY     a whole request head arrived
     HEAD    -> SEND     the head is bad (4xx, then close)
     BODY    -> ENGINE   the request was admitted as a job (the server)
     BODY    -> SEND     answered without a forward pass, or refused
     ENGINE  -> SEND     its job finished
     SEND    -> HEAD     response written, keep-alive
     any     -> CLOSING  peer gone, error, timeout, shutdown, Connection: close
     CLOSING -> FREE     no io_uring operation of it is left in flight */
#ifndef ZP_CONN_H
#define ZP_CONN_H

#include <stdbool.h>
#include <sys/types.h>

#include "http.h"
#include "json.h"
#include "metrics.h"
#include "reactor.h"
#include "router.h"
#include "serve.h"

#define ZP_CONN_IN_BYTES 16384		/* input buffer a connection starts with */
#define ZP_CONN_OUT_BYTES 4096		/* response buffer each connection starts with */
#define ZP_CONN_IN_KEEP_BYTES 65536	/* input buffers up to this are kept for the next client */

/* The server's engine glue names these (CONN_ENGINE, conn) as they are. */
enum conn_state { CONN_FREE, CONN_HEAD, CONN_BODY, CONN_ENGINE, CONN_SEND, CONN_CLOSING };

typedef struct zp_conn {
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

/* Every connection, and what they need of the server. */
typedef struct {
	conn *slot;			/* [n] */
	int n;
	zp_reactor *rx;
	const zp_serve_cfg *cfg;	/* limits, timeouts, allow_uids */
	zp_metrics *met;
	zp_buf *body;			/* the server's scratch for error bodies */
	const double *now;		/* the server's clock */
	const bool *stopping;		/* the server is stopping: no keep-alive, no accept */
	void *srv;
	/* A whole request (head and body) is in c->in: answer it (zp_conn_respond)
	   or admit its job (state ENGINE). */
	void (*on_request)(void *srv, conn *c);
	/* c is closing while c->job is admitted: the server takes the job back. */
	void (*on_gone)(void *srv, conn *c);
	/* tests: the environment variable ZP_FAULT_PEERCRED (any value) makes
	   every SO_PEERCRED answer short, as a kernel failing it would */
	bool fault_peercred;
} zp_conns;

void zp_conns_init(zp_conns *cs, int n);
void zp_conns_free(zp_conns *cs);
uint32_t zp_conn_slot(const zp_conns *cs, const conn *c);

/* An accept completion on listener which (0: the Unix socket, 1: the
   metrics listener): a new connection, or refused (403, 503, closed). */
void zp_conn_accept(zp_conns *cs, const zp_reactor_event *ev, int which);
/* A RECV or SEND completion of a connection (stale ones are dropped here). */
void zp_conn_event(zp_conns *cs, const zp_reactor_event *ev);
/* Queue a whole response; the connection is in SEND until it is written. */
void zp_conn_respond(zp_conns *cs, conn *c, int status, const char *content_type,
		     const char *body, size_t len, int retry_after_s);
/* The JSON error body of an error kind (http.h), as a response. */
void zp_conn_error(zp_conns *cs, conn *c, int status, int retry_after_s, const char *fmt,
		   const char *arg);
void zp_conn_close(zp_conns *cs, conn *c, const char *why);
/* Close what has been idle, slow or unread past its phase's timeout. */
void zp_conn_check_timeouts(zp_conns *cs);
/* Stopping: close the connections with nothing admitted; the others close
   once their response is written. */
void zp_conns_stop(zp_conns *cs);
#endif
