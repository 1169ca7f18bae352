/* conn.h -- client connections: the state machine, framing (head, body,
   pipelining, 100-continue), the per-phase timeouts and the input limits.
   Owns every connection's buffers; asks the server (callbacks) to answer a
   whole request and to drop the job of a client that left. Reactor thread
   only.

   Buffers, all allocated at start-up (nothing is allocated per request):
   each connection has a fixed input buffer (a whole head plus one receive)
   and a fixed response buffer (ZP_CONN_OUT_BYTES). A request or a response
   that does not fit takes a large buffer from one of two bounded pools (the
   input pool: a whole request at the head and body limits; the response
   pool: the largest body the endpoints answer, zp_conns_init's resp_max) and
   gives it back once it is consumed or sent. max_connections x body_bytes_max
   would be too much memory to hold per connection; the pools hold at most
   ZP_CONN_POOL_BYTES each (at least ZP_CONN_POOL_MIN buffers), their pages
   touched only when used. A request that finds its pool empty is a 503 (and
   the connection closes when its input could not be kept).

   States (one request at a time per connection; pipelined requests wait in
   the input buffer and are answered in order):
     FREE    -> HEAD     accepted
     HEAD    -> BODY     a whole request head arrived
     HEAD    -> SEND     the head is bad (4xx, then close)
     BODY    -> ENGINE   the request was admitted as a job (the server)
     BODY    -> SEND     answered without a forward pass, or refused
     ENGINE  -> SEND     its job finished
     SEND    -> HEAD     response written, keep-alive
     SEND    -> LINGER   response written, the connection closes after it (an
                         error, Connection: close): the write side is shut
     FREE    -> LINGER   a refusal slot: a refused connection's answer (403,
                         503) was written at accept
     LINGER  -> CLOSING  the peer's EOF, or ZP_CONN_LINGER_MS
     any     -> CLOSING  peer gone, error, timeout, shutdown
     CLOSING -> FREE     no io_uring operation of it is left in flight

   Lingering close (nginx's): a socket closed with unread input is reset by
   the kernel, and a client still sending its request (a refused connection
   whose request follows its connect, a body past the limit) gets EPIPE or
   ECONNRESET instead of the answer. So after such an answer the write side
   is shut (the client reads the answer, then EOF) and what the client still
   sends is read and dropped until its EOF, for ZP_CONN_LINGER_MS at most.
   A refused connection lingers in one of ZP_CONN_REFUSED_MAX refusal slots
   (no buffers: its answer is written at accept, its input dropped); with
   none free it closes at once, as before. */
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

#define ZP_CONN_OUT_BYTES 65536		/* each connection's own response buffer */
#define ZP_CONN_HEAD_OUT_BYTES 1024	/* room for a response head (zp_http_respond) */
#define ZP_CONN_POOL_BYTES (1ul << 30)	/* memory each pool of large buffers may map */
#define ZP_CONN_POOL_MIN 2		/* large buffers of each kind, whatever their size */
#define ZP_CONN_LINGER_MS 5000		/* a lingering close's bound (nginx: lingering_timeout) */
#define ZP_CONN_REFUSED_MAX 64		/* refused connections lingering at once */

/* A bounded pool of large buffers of one size. */
typedef struct {
	char *mem;		/* [n][bytes], mapped at start-up, touched when used */
	size_t bytes;
	int *free_idx;		/* [n]: nfree of them are free */
	int n, nfree;
} zp_conn_pool;

enum zp_conn_state { ZP_CONN_FREE, ZP_CONN_HEAD, ZP_CONN_BODY, ZP_CONN_ENGINE, ZP_CONN_SEND,
		     ZP_CONN_LINGER, ZP_CONN_CLOSING };

typedef struct zp_conn {
	enum zp_conn_state state;
	int fd;
	uint32_t gen;
	int ops;		/* io_uring operations in flight */
	bool sending, close_after;
	char *in;		/* received, not yet consumed: in_own, or a pooled buffer */
	size_t in_len, in_cap;
	char *in_own;		/* [zp_conns.in_bytes] this connection's own */
	int in_big;		/* the input pool buffer in use, or -1 */
	zp_buf out;		/* response bytes (fixed); out_off of them sent */
	size_t out_off;
	char *out_own;		/* [ZP_CONN_OUT_BYTES] this connection's own */
	int out_big;		/* the response pool buffer in use, or -1 */
	zp_http_req req;	/* the current request's head */
	enum zp_route ep;
	zp_api_job *job;	/* ENGINE */
	double t_phase;		/* start of the phase a timeout applies to */
	double t_req;		/* current request's arrival */
	bool partial;		/* HEAD: part of a next request has arrived */
	bool served;		/* a response was written: HEAD with nothing is keep-alive idle */
	bool metrics_only;	/* accepted on the metrics listener: GET /metrics only */
	uid_t uid;		/* Unix socket (SO_PEERCRED); -1 on TCP */
	pid_t pid;		/* Unix socket; 0 on TCP */
	unsigned port;		/* TCP: the peer's port, what names it in the logs; 0: Unix */
} zp_conn;

/* Every connection, and what they need of the server. */
typedef struct {
	zp_conn *slot;			/* [n + ZP_CONN_REFUSED_MAX]: connections, then
					   the refusal slots (no buffers) */
	int n;				/* connections (max_connections) */
	char *own;			/* every connection's own buffers, one allocation */
	size_t in_bytes;		/* each connection's own input buffer */
	zp_conn_pool in_pool;		/* whole requests that do not fit in_bytes */
	zp_conn_pool out_pool;		/* responses that do not fit ZP_CONN_OUT_BYTES */
	zp_reactor *rx;
	const zp_serve_cfg *cfg;	/* limits, timeouts, allow_uids */
	zp_metrics *met;
	zp_buf *body;			/* the server's scratch for error bodies */
	const double *now;		/* the server's clock */
	const bool *stopping;		/* the server is stopping: no keep-alive, no accept */
	void *srv;
	/* A whole request (head and body) is in c->in: answer it (zp_conn_respond)
	   or admit its job (state ENGINE). */
	void (*on_request)(void *srv, zp_conn *c);
	/* c is closing while c->job is admitted: the server takes the job back. */
	void (*on_gone)(void *srv, zp_conn *c);
	/* tests: the environment variable ZP_FAULT_PEERCRED (any value) makes
	   every SO_PEERCRED answer short, as a kernel failing it would */
	bool fault_peercred;
	/* warnings one per connection or completion: a flood of them is
	   counted, one line per window (flushed by zp_conn_check_timeouts) */
	zp_log_limit log_busy, log_denied, log_accept, log_stale;
} zp_conns;

/* Start-up: cfg->max_connections connections, their buffers and the pools,
   sized from cfg's head and body limits and resp_max (the largest response
   body the server writes). */
void zp_conns_init(zp_conns *cs, const zp_serve_cfg *cfg, size_t resp_max);
void zp_conns_free(zp_conns *cs);
uint32_t zp_conn_slot(const zp_conns *cs, const zp_conn *c);

/* An accept completion on listener which (0: the Unix socket, 1: the
   metrics listener, 2: the TCP API listener): a new connection, or refused
   (403, 503, closed). */
void zp_conn_accept(zp_conns *cs, const zp_reactor_event *ev, int which);
/* A RECV or SEND completion of a connection (stale ones are dropped here). */
void zp_conn_event(zp_conns *cs, const zp_reactor_event *ev);
/* Queue a whole response; the connection is in SEND until it is written. A
   response over the connection's buffer takes one from the response pool;
   none free: a 503 goes out instead. */
void zp_conn_respond(zp_conns *cs, zp_conn *c, int status, const char *content_type,
		     const char *body, size_t len, int retry_after_s);
/* The JSON error body of an error kind (http.h), as a response. */
void zp_conn_error(zp_conns *cs, zp_conn *c, int status, int retry_after_s, const char *fmt,
		   const char *arg);
void zp_conn_close(zp_conns *cs, zp_conn *c, const char *why);
/* Close what has been idle, slow or unread past its phase's timeout. */
void zp_conn_check_timeouts(zp_conns *cs);
/* Stopping: close the connections with nothing admitted; the others close
   once their response is written. */
void zp_conns_stop(zp_conns *cs);
#endif
