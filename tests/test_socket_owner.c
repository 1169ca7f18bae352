/* test_socket_owner.c -- socket-path squatting (issue 17, F-5), through the
   real `zprefill serve` and the `zprefill health` client command:
     1  another user's process bound the socket path first (a directory
        anybody may write): the client refuses it, naming its uid (root
        only: the squatter is a child that drops to uid 65534; else skipped)
     2  with no socket set, serve and the client meet at
        $XDG_RUNTIME_DIR/zprefill.sock
     3  a socket in a world-writable directory is a start warning; the
        client still talks to a server of its own uid
     4  --server-uid: a server of any other uid is refused; its own passes
   Every wait is a liveness bound, never a speed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "util.h"

static char dir[256];
static const char *bin;

/* Run `zprefill health ARGS...` (env XDG_RUNTIME_DIR=xdg when given): its exit
   code, its stdout and stderr into out. */
static int health(const char *xdg, zp_buf *out, const char *a1, const char *a2, const char *a3,
		  const char *a4)
{
	int p[2];
	ZP_ASSERT(pipe(p) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		if (xdg)
			setenv("XDG_RUNTIME_DIR", xdg, 1);
		else
			unsetenv("XDG_RUNTIME_DIR");
		execl(bin, bin, "health", a1, a2, a3, a4, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	zp_buf_reset(out);
	char tmp[4096];
	ssize_t r;
	while ((r = read(p[0], tmp, sizeof tmp)) > 0)
		zp_buf_put(out, tmp, (size_t)r);
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* zprefill serve (socket: --socket sock, or the default with XDG_RUNTIME_DIR=xdg),
   stderr into log; its pid once path answers /health, else -1. */
static pid_t serve(const char *sock, const char *xdg, const char *path, const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		if (xdg)
			setenv("XDG_RUNTIME_DIR", xdg, 1);
		if (sock)
			execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
			      (char *)NULL);
		else
			execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", (char *)NULL);
		_exit(127);
	}
	zp_buf out;
	zp_buf_init(&out, 256);
	for (int i = 0; i < 1500; i++) { /* 30 s */
		if (access(path, F_OK) == 0 && health(NULL, &out, "--socket", path, NULL, NULL) == 0)
			break;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			pid = -1;
			break;
		}
		sleep_ms(20);
	}
	zp_buf_free(&out);
	return pid;
}

/* 1: a squatter of another uid answers every connection with a 200. */
static void test_squatter(zp_buf *out)
{
	if (geteuid() != 0) {
		printf("1: squatter of another uid      skipped (needs root to be another user)\n");
		return;
	}
	char wdir[300], path[320];
	snprintf(wdir, sizeof wdir, "%s/tmp", dir);
	ZP_ASSERT(mkdir(wdir, 0777) == 0 && chmod(wdir, 01777) == 0);
	snprintf(path, sizeof path, "%s/zprefill.sock", wdir);
	int ready[2];
	ZP_ASSERT(pipe(ready) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n"
					   "{\"status\":\"ok\"}";
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		ZP_ASSERT(strlen(path) < sizeof a.sun_path);
		memcpy(a.sun_path, path, strlen(path) + 1);
		if (setgid(65534) || setuid(65534))
			_exit(3);
		int l = socket(AF_UNIX, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8))
			_exit(4);
		ZP_ASSERT(write(ready[1], "r", 1) == 1);
		for (;;) {
			int c = accept(l, NULL, NULL);
			char buf[4096];
			if (c < 0)
				continue;
			if (recv(c, buf, sizeof buf, 0) > 0)
				send(c, resp, sizeof resp - 1, MSG_NOSIGNAL);
			close(c);
		}
	}
	char r;
	CHECK(read(ready[0], &r, 1) == 1, "1: the squatter did not start");
	close(ready[0]);
	close(ready[1]);
	int rc = health(NULL, out, "--socket", path, NULL, NULL);
	CHECK(rc != 0 && strstr(out->p, "uid 65534") && strstr(out->p, "refused"),
	      "1: the client talked to uid 65534's process: exit %d, %s", rc, out->p);
	printf("1: squatter of another uid      exit %d: %s", rc, out->p);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-owner-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	chmod(dir, 0755);
	signal(SIGPIPE, SIG_IGN);
	zp_buf out;
	zp_buf_init(&out, 4096);

	test_squatter(&out);

	/* 2: the default path under XDG_RUNTIME_DIR */
	char xdg[300], path[320], log[320];
	snprintf(xdg, sizeof xdg, "%s/run", dir);
	ZP_ASSERT(mkdir(xdg, 0700) == 0);
	snprintf(path, sizeof path, "%s/zprefill.sock", xdg);
	snprintf(log, sizeof log, "%s/log2", dir);
	pid_t pid = serve(NULL, xdg, path, log);
	CHECK(pid > 0, "2: no server answered at %s", path);
	if (pid > 0) {
		int rc = health(xdg, &out, NULL, NULL, NULL, NULL);
		CHECK(rc == 0 && strstr(out.p, "200"), "2: zprefill health with no --socket: exit %d "
		      "%s", rc, out.p);
		printf("2: default socket               %s, health exit %d\n", path, rc);
		/* 4: --server-uid */
		char uid[32], other[32];
		snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
		snprintf(other, sizeof other, "%u", (unsigned)getuid() + 1);
		rc = health(NULL, &out, "--socket", path, "--server-uid", other);
		CHECK(rc != 0 && strstr(out.p, "refused"), "4: --server-uid %s: exit %d %s", other,
		      rc, out.p);
		printf("4: --server-uid %-15s exit %d\n", other, rc);
		rc = health(NULL, &out, "--socket", path, "--server-uid", uid);
		CHECK(rc == 0, "4: --server-uid %s (its own): exit %d %s", uid, rc, out.p);
		printf("4: --server-uid %-15s exit %d\n", uid, rc);
		CHECK(stop(pid) == 0, "2: clean stop");
	}

	/* 3: a world-writable directory: a warning; its own uid still passes */
	char wdir[300];
	snprintf(wdir, sizeof wdir, "%s/open", dir);
	ZP_ASSERT(mkdir(wdir, 0777) == 0 && chmod(wdir, 01777) == 0);
	snprintf(path, sizeof path, "%s/s", wdir);
	snprintf(log, sizeof log, "%s/log3", dir);
	pid = serve(path, NULL, path, log);
	CHECK(pid > 0, "3: the server in a world-writable directory did not start");
	if (pid > 0) {
		CHECK(stop(pid) == 0, "3: clean stop");
		char *l = check_slurp(log, NULL);
		CHECK(l && strstr(l, "level=warn") && strstr(l, "world-writable"),
		      "3: no start warning: %.600s", l ? l : "");
		printf("3: world-writable directory     %s\n",
		       l && strstr(l, "world-writable") ? "warned" : "silent");
		free(l);
	}
	zp_buf_free(&out);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_socket_owner");
}
