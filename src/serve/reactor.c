/* reactor.c -- see reactor.h. Every submission goes through sqe_get, which
   flushes a full submission queue instead of failing. */
#include "reactor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* user_data: op (8 bits) | slot (24 bits) | generation (32 bits) */
#define UD(op, slot, gen) ((uint64_t)(gen) << 32 | (uint64_t)(slot) << 8 | (uint64_t)(op))
#define UD_OP(u) ((int)((u) & 0xff))
#define UD_SLOT(u) ((uint32_t)(((u) >> 8) & 0xffffff))
#define UD_GEN(u) ((uint32_t)((u) >> 32))

/* A submission queue the kernel refuses to take (no memory for requests,
   completions it cannot post) leaves the reactor unable to act on any
   connection: the server stops with the kernel's reason, not on a bare NULL. */
static struct io_uring_sqe *sqe_get(zp_reactor *r)
{
	struct io_uring_sqe *q = io_uring_get_sqe(&r->ring);
	if (!q) { /* the SQ is full: flush it and take one */
		int rc;
		while ((rc = io_uring_submit(&r->ring)) == -EINTR)
			;
		if (rc < 0)
			zp_log(ZP_LOG_ERROR, "msg=\"io_uring submit failed with a full queue\" "
			       "error=\"%s\"", strerror(-rc));
		q = io_uring_get_sqe(&r->ring);
	}
	ZP_ASSERT(q);
	return q;
}

int zp_reactor_init(zp_reactor *r, zp_err *e)
{
	memset(r, 0, sizeof *r);
	int rc = io_uring_queue_init(ZP_REACTOR_ENTRIES, &r->ring, 0);
	if (rc)
		return zp_errf(e, "io_uring: %s", strerror(-rc));
	r->ring_up = true;
	/* the kernel maps the buffer ring: page-aligned */
	if (posix_memalign((void **)&r->br, (size_t)sysconf(_SC_PAGESIZE),
			   ZP_REACTOR_BUFS * sizeof(struct io_uring_buf)))
		return zp_errf(e, "out of memory");
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)r->br,
					.ring_entries = ZP_REACTOR_BUFS, .bgid = 0 };
	if ((rc = io_uring_register_buf_ring(&r->ring, &reg, 0)))
		return zp_errf(e, "io_uring provided buffers: %s", strerror(-rc));
	r->bufs = zp_xmalloc((size_t)ZP_REACTOR_BUFS * ZP_REACTOR_BUF_BYTES);
	io_uring_buf_ring_init(r->br);
	for (int i = 0; i < ZP_REACTOR_BUFS; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * ZP_REACTOR_BUF_BYTES,
				      ZP_REACTOR_BUF_BYTES, (unsigned short)i,
				      io_uring_buf_ring_mask(ZP_REACTOR_BUFS), i);
	io_uring_buf_ring_advance(r->br, ZP_REACTOR_BUFS);
	return 0;
}

void zp_reactor_free(zp_reactor *r)
{
	if (r->ring_up)
		io_uring_queue_exit(&r->ring);
	free(r->br);
	free(r->bufs);
	memset(r, 0, sizeof *r);
}

void zp_reactor_accept(zp_reactor *r, int listen_fd, uint32_t slot)
{
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_multishot_accept(q, listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(q, UD(ZP_REACTOR_ACCEPT, slot, 0));
}

void zp_reactor_cancel_accept(zp_reactor *r, uint32_t slot)
{
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_cancel64(q, UD(ZP_REACTOR_ACCEPT, slot, 0), 0);
	io_uring_sqe_set_data64(q, UD(ZP_REACTOR_CANCEL, 0, 0));
}

void zp_reactor_recv(zp_reactor *r, int fd, uint32_t slot, uint32_t gen)
{
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_recv_multishot(q, fd, NULL, 0, 0);
	q->flags |= IOSQE_BUFFER_SELECT;
	q->buf_group = 0;
	io_uring_sqe_set_data64(q, UD(ZP_REACTOR_RECV, slot, gen));
}

void zp_reactor_send(zp_reactor *r, int fd, const void *p, size_t n, uint32_t slot, uint32_t gen)
{
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_send(q, fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(q, UD(ZP_REACTOR_SEND, slot, gen));
}

void zp_reactor_cancel_fd(zp_reactor *r, int fd)
{
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_cancel_fd(q, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(q, UD(ZP_REACTOR_CANCEL, 0, 0));
}

void zp_reactor_read(zp_reactor *r, int fd, void *buf, unsigned n, enum zp_reactor_op op)
{
	ZP_ASSERT(op == ZP_REACTOR_EVENT || op == ZP_REACTOR_SIGNAL);
	struct io_uring_sqe *q = sqe_get(r);
	io_uring_prep_read(q, fd, buf, n, 0);
	io_uring_sqe_set_data64(q, UD(op, 0, 0));
}

void zp_reactor_wait(zp_reactor *r, double timeout_s)
{
	struct io_uring_cqe *cqe;
	double dt = ZP_MAX(timeout_s, 0.0);
	struct __kernel_timespec ts = { .tv_sec = (long long)dt,
					.tv_nsec = (long long)((dt - (long long)dt) * 1e9) };
	int rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
	ZP_ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
}

/* A provided buffer back in the ring once its bytes have been taken. */
static void buf_put(zp_reactor *r, int bid)
{
	io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * ZP_REACTOR_BUF_BYTES,
			      ZP_REACTOR_BUF_BYTES, (unsigned short)bid,
			      io_uring_buf_ring_mask(ZP_REACTOR_BUFS), 0);
	io_uring_buf_ring_advance(r->br, 1);
}

unsigned zp_reactor_drain(zp_reactor *r, void (*fn)(void *arg, const zp_reactor_event *ev),
			  void *arg)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		zp_reactor_event ev = { .op = (enum zp_reactor_op)UD_OP(ud), .slot = UD_SLOT(ud),
					.gen = UD_GEN(ud), .res = cqe->res,
					.more = cqe->flags & IORING_CQE_F_MORE };
		int bid = -1;
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			ZP_ASSERT(ev.op == ZP_REACTOR_RECV && bid < ZP_REACTOR_BUFS);
			ev.data = r->bufs + (size_t)bid * ZP_REACTOR_BUF_BYTES;
		}
		fn(arg, &ev);
		if (bid >= 0)
			buf_put(r, bid);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	return n;
}
