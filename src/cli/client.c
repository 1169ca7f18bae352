/* client.c -- see client.h. */
#define _GNU_SOURCE
#include "client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "serve.h"	/* zp_socket_default */
#include "util.h"

#define RESP_MAX (256u << 20)

/* The owner of path's directory when only that owner may write it, else -1. */
static long dir_owner(const char *path)
{
	char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
	struct stat st;
	zp_path_dir(path, dir, sizeof dir);
	if (stat(dir, &st) != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return -1;
	return (long)st.st_uid;
}

/* The server on fd runs as a trusted uid (client.h): 0, or -1 with e set. */
static int check_server(int fd, const char *path, long server_uid, zp_err *e)
{
	struct ucred cr;
	socklen_t cl = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) || cl != sizeof cr)
		return zp_errf(e, "%s: cannot read the server's credentials (SO_PEERCRED): %s", path,
			       strerror(errno));
	long uid = (long)cr.uid;
	if (server_uid >= 0 ? uid == server_uid
			    : uid == (long)getuid() || uid == 0 || uid == dir_owner(path))
		return 0;
	char want[64];
	if (server_uid >= 0)
		snprintf(want, sizeof want, "uid %ld (--server-uid)", server_uid);
	else
		snprintf(want, sizeof want, "this user, root or the dir's owner");
	return zp_errf(e, "%s: served by uid %ld (pid %d), not %s: refused (another user may "
		       "have bound it first; --server-uid UID trusts UID)", path, uid, (int)cr.pid,
		       want);
}

int zp_client_connect(const char *path, zp_err *e)
{
	return zp_client_connect_uid(path, -1, e);
}

int zp_client_connect_uid(const char *path, long server_uid, zp_err *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path) {
		zp_errf(e, "socket path too long");
		return -1;
	}
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
		zp_errf(e, "connect %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (check_server(fd, path, server_uid, e)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read until buf holds a head ending in CRLFCRLF; returns its length or -1. */
static long read_head(int fd, zp_buf *buf, zp_err *e)
{
	for (;;) {
		char *end = buf->len >= 4 ? memmem(buf->p, buf->len, "\r\n\r\n", 4) : NULL;
		if (end)
			return end + 4 - buf->p;
		if (buf->len > 65536)
			return zp_errf(e, "response head too long");
		char tmp[16384];
		ssize_t r = recv(fd, tmp, sizeof tmp, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return zp_errf(e, "connection closed before a response (%s)",
				       r ? strerror(errno) : "EOF");
		zp_buf_put(buf, tmp, (size_t)r);
	}
}

int zp_client_call(int fd, const char *method, const char *path, const char *body, size_t len,
		   zp_buf *out, zp_err *e)
{
	char head[512];
	int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: zprefill\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 method, path, body ? len : 0);
	if (write_all(fd, head, (size_t)n) || (body && len && write_all(fd, body, len)))
		return zp_errf(e, "send: %s", strerror(errno));
	zp_buf in;
	zp_buf_init(&in, 4096);
	int status;
	long hl;
	for (;;) { /* skip 1xx interim responses */
		if ((hl = read_head(fd, &in, e)) < 0) {
			zp_buf_free(&in);
			return -1;
		}
		if (sscanf(in.p, "HTTP/1.%*d %d", &status) != 1) {
			zp_buf_free(&in);
			return zp_errf(e, "bad status line");
		}
		if (status >= 200)
			break;
		memmove(in.p, in.p + hl, in.len - (size_t)hl);
		in.len -= (size_t)hl;
	}
	size_t clen = 0;
	const char *cl = strcasestr(in.p, "\r\ncontent-length:");
	if (!cl || (clen = strtoul(cl + 17, NULL, 10)) > RESP_MAX) {
		zp_buf_free(&in);
		return zp_errf(e, "response without a usable Content-Length");
	}
	while (in.len < (size_t)hl + clen) {
		char tmp[65536];
		ssize_t r = recv(fd, tmp, sizeof tmp, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			zp_buf_free(&in);
			return zp_errf(e, "connection closed mid-body");
		}
		zp_buf_put(&in, tmp, (size_t)r);
	}
	out->len = 0;
	zp_buf_put(out, in.p + hl, clen);
	zp_buf_free(&in);
	return status;
}

/* ---- the command-line client ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zprefill classify [OPTS] --labels A,B[,...] TEXT...\n"
		"       zprefill score [OPTS] --query TEXT --label-ids ID[,ID...] [--softmax] ITEM...\n"
		"       zprefill embed [OPTS] TEXT...\n"
		"       zprefill health [OPTS]\n"
		"OPTS:  --socket PATH     the server's socket (default: $XDG_RUNTIME_DIR/zprefill.sock,\n"
		"                         else /run/zprefill/zprefill.sock)\n"
		"       --server-uid UID  the uid the server must run as (default: this user, root,\n"
		"                         or the owner of the socket's directory when only it may\n"
		"                         write there); any other is refused\n");
}

/* A comma-separated flag value as a JSON array: every field non-empty and,
   with ints, a decimal token id (digits only: "x", "5abc", "0x10", "-1" and
   "1,,2" are refused, not read as 0 or skipped). NULL with *bad the field. */
static cJSON *split_csv(const char *s, bool ints, const char **bad, size_t *bad_len)
{
	cJSON *a = cJSON_CreateArray();
	for (const char *t = s;; t++) {
		const char *end = strchr(t, ',');
		size_t n = end ? (size_t)(end - t) : strlen(t);
		bool ok = n > 0;
		long long v = 0;
		for (size_t i = 0; ints && ok && i < n; i++) {
			ok = t[i] >= '0' && t[i] <= '9' && v <= INT32_MAX;
			v = v * 10 + (t[i] - '0');
		}
		if (!ok || v > INT32_MAX) {
			*bad = t;
			*bad_len = n;
			cJSON_Delete(a);
			return NULL;
		}
		char *f = strndup(t, n);
		ZP_ASSERT(f);
		cJSON_AddItemToArray(a, ints ? cJSON_CreateNumber((double)v) : cJSON_CreateString(f));
		free(f);
		if (!end)
			return a;
		t = end;
	}
}

/* Columns a UTF-8 string takes on a terminal: East Asian wide and fullwidth
   characters (CJK, Hangul, fullwidth forms, most emoji) take two. */
static int columns(const char *s)
{
	int w = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		unsigned cp = *p, n = *p < 0x80 ? 0 : *p < 0xe0 ? 1 : *p < 0xf0 ? 2 : 3;
		cp &= n ? 0x3fu >> n : 0x7f;
		for (unsigned k = 0; k < n && p[k + 1]; k++)
			cp = cp << 6 | (p[k + 1] & 0x3f);
		p += n + 1;
		bool wide = (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
			    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
			    (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
			    (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
			    (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd);
		w += wide ? 2 : 1;
	}
	return w;
}

static void print_classify(const cJSON *r, const cJSON *labels)
{
	const cJSON *d;
	cJSON_ArrayForEach(d, cJSON_GetObjectItem(r, "data")) {
		printf("input %d: %s\n", cJSON_GetObjectItem(d, "index")->valueint,
		       cJSON_GetObjectItem(d, "label")->valuestring);
		for (int k = 0; k < cJSON_GetArraySize(labels); k++) {
			const char *l = cJSON_GetArrayItem(labels, k)->valuestring;
			int pad = 20 - columns(l); /* %-20s counts bytes: CJK would not line up */
			printf("  %s%*s %.4f\n", l, pad > 0 ? pad : 0, "",
			       cJSON_GetArrayItem(cJSON_GetObjectItem(d, "probs"), k)->valuedouble);
		}
	}
}

static void print_score(const cJSON *r)
{
	const cJSON *row;
	int i = 0;
	cJSON_ArrayForEach(row, cJSON_GetObjectItem(r, "scores")) {
		const cJSON *v;
		printf("item %d:", i++);
		cJSON_ArrayForEach(v, row)
			printf(" %.6f", v->valuedouble);
		printf("\n");
	}
}

static void print_embed(const cJSON *r)
{
	const cJSON *d;
	cJSON_ArrayForEach(d, cJSON_GetObjectItem(r, "data")) {
		const cJSON *emb = cJSON_GetObjectItem(d, "embedding"), *v;
		double n2 = 0;
		int k = 0;
		printf("input %d: dim %d [", cJSON_GetObjectItem(d, "index")->valueint,
		       cJSON_GetArraySize(emb));
		cJSON_ArrayForEach(v, emb) {
			n2 += v->valuedouble * v->valuedouble;
			if (k++ < 4)
				printf("%s%.4f", k > 1 ? ", " : "", v->valuedouble);
		}
		printf(", ...] norm %.4f\n", sqrt(n2));
	}
}

int zp_client_main(int argc, char **argv)
{
	static const struct option lo[] = { { "socket", 1, 0, 's' }, { "labels", 1, 0, 'l' },
					    { "query", 1, 0, 'q' },  { "label-ids", 1, 0, 'i' },
					    { "softmax", 0, 0, 'x' }, { "help", 0, 0, 'h' },
					    { "server-uid", 1, 0, 'u' }, { 0, 0, 0, 0 } };
	const char *cmd = argv[1], *sock = NULL, *labels = NULL, *query = NULL, *ids = NULL;
	char def[200], *end;
	long server_uid = -1;
	bool softmax = false;
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'l': labels = optarg; break;
		case 'q': query = optarg; break;
		case 'i': ids = optarg; break;
		case 'x': softmax = true; break;
		case 'u':
			server_uid = strtol(optarg, &end, 10);
			if (*optarg == 0 || *end || server_uid < 0 || server_uid > (long)UINT32_MAX - 1) {
				fprintf(stderr, "zprefill %s: --server-uid %s: not a uid\n", cmd, optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	bool health = !strcmp(cmd, "health");
	if (!sock)
		sock = zp_socket_default(def, sizeof def);
	if ((!health && optind == argc) || (!strcmp(cmd, "classify") && !labels) ||
	    (!strcmp(cmd, "score") && (!query || !ids))) {
		usage(stderr);
		return 2;
	}
	const char *bad = NULL;
	size_t bad_len = 0;
	bool csv_labels = !strcmp(cmd, "classify");
	cJSON *csv = !strcmp(cmd, "classify") ? split_csv(labels, false, &bad, &bad_len) :
		     !strcmp(cmd, "score") ? split_csv(ids, true, &bad, &bad_len) : NULL;
	if (bad) {
		fprintf(stderr, "zprefill %s: %s has the field \"%.*s\": %s\n", cmd,
			csv_labels ? "--labels" : "--label-ids", (int)bad_len, bad,
			csv_labels ? "each label must be non-empty text" :
			"each must be a token id (decimal digits, 0 to 2147483647)");
		usage(stderr);
		return 2;
	}
	cJSON *req = cJSON_CreateObject(), *texts = cJSON_CreateArray();
	for (int i = optind; i < argc; i++)
		cJSON_AddItemToArray(texts, cJSON_CreateString(argv[i]));
	const char *path = "/health";
	if (!strcmp(cmd, "classify")) {
		path = "/classify";
		cJSON_AddItemToObject(req, "input", texts);
		cJSON_AddItemToObject(req, "labels", csv);
	} else if (!strcmp(cmd, "score")) {
		path = "/v1/score";
		cJSON_AddStringToObject(req, "query", query);
		cJSON_AddItemToObject(req, "items", texts);
		cJSON_AddItemToObject(req, "label_token_ids", csv);
		cJSON_AddBoolToObject(req, "apply_softmax", softmax);
	} else if (!strcmp(cmd, "embed")) {
		path = "/v1/embeddings";
		cJSON_AddItemToObject(req, "input", texts);
	} else {
		cJSON_Delete(texts);
	}
	char *body = cJSON_PrintUnformatted(req);
	zp_err e;
	zp_buf out;
	zp_buf_init(&out, 4096);
	int fd = zp_client_connect_uid(sock, server_uid, &e), status = -1;
	if (fd >= 0)
		status = zp_client_call(fd, health ? "GET" : "POST", path, health ? NULL : body,
					strlen(body), &out, &e);
	int rc = 0;
	if (status < 0) {
		fprintf(stderr, "zprefill %s: %s\n", cmd, e.msg);
		rc = 1;
	} else if (status != 200 || health) {
		printf("%d %s\n", status, out.p);
		rc = status == 200 ? 0 : 1;
	} else {
		cJSON *r = cJSON_Parse(out.p);
		if (!strcmp(cmd, "classify"))
			print_classify(r, cJSON_GetObjectItem(req, "labels"));
		else if (!strcmp(cmd, "score"))
			print_score(r);
		else
			print_embed(r);
		cJSON_Delete(r);
	}
	if (fd >= 0)
		close(fd);
	free(body);
	cJSON_Delete(req);
	zp_buf_free(&out);
	return rc;
}
