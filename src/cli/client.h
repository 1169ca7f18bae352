/* client.h -- a small blocking HTTP/1.1 client over the server's Unix socket:
   for the `zprefill score|classify|embed` commands, the end-to-end tests and
   the load generator. One connection per caller; keep-alive. No threads of
   its own. */
#ifndef ZP_CLIENT_H
#define ZP_CLIENT_H

#include <stddef.h>

#include "json.h"
#include "util.h"

/* A connected socket whose server runs as a uid this client trusts, or -1
   with e set. The server's uid (SO_PEERCRED) must be server_uid when that is
   >= 0; else this process's own uid, root, or the owner of the socket's
   directory when nobody else may write that directory (a service's own, as
   /run/zprefill). Another user's process that bound the path first (a socket
   in /tmp) is refused, naming its uid. */
int zp_client_connect_uid(const char *path, long server_uid, zp_err *e);
/* zp_client_connect_uid(path, -1, e) */
int zp_client_connect(const char *path, zp_err *e);

/* Send one request (body may be NULL for GET) and read its response: the
   status, with the body in out. -1 with e set on an I/O or protocol error
   (the connection is then unusable). */
int zp_client_call(int fd, const char *method, const char *path, const char *body, size_t len,
		   zp_buf *out, zp_err *e);

/* `zprefill score|classify|embed|health ...`: the exit code. */
int zp_client_main(int argc, char **argv);

#endif
