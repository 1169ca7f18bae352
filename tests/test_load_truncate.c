/* test_load_truncate.c -- a checkpoint that changes under the loader (issue 17,
   F-1). ZP_FAULT_LOAD_TRUNCATE=NAME truncates the file at tensor NAME during
   the load, deterministically (safetensors.h); each case loads a copy of a
   committed model and must get an error naming the file and the tensor, never
   a SIGBUS:
     1  a dense tensor (read on the loading thread)
     2  an expert tensor (read on the packing pool's threads)
     3  a shard of a sharded checkpoint
     4  after a load, the checkpoint truncated to 0 bytes: the loaded model
        still answers (its embedding rows, read at serve time, are its own)
     5  `zprefill serve` with the fault: exit 1, the log names file and tensor,
        no socket file left */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "device.h"
#include "model.h"

static char tmp[256];

static void copy_model(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/models/%s %s", tmp, name, tmp);
	ZP_ASSERT(system(cmd) == 0);
}

static off_t file_size(const char *file)
{
	char p[512];
	struct stat sb;
	snprintf(p, sizeof p, "%s/%s", tmp, file);
	return stat(p, &sb) == 0 ? sb.st_size : -1;
}

/* Load the copy with the fault at tensor; the load must fail naming file and tensor.
   Runs in a child so that a SIGBUS (the fault before the fix) is a failed case, not
   the end of the test program. */
static void expect_truncated(const char *what, const char *model, const char *tensor,
			     const char *file)
{
	copy_model(model);
	off_t before = file_size(file);
	int pfd[2];
	ZP_ASSERT(pipe(pfd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		zp_model m;
		zp_err e = { "" };
		close(pfd[0]);
		setenv("ZP_FAULT_LOAD_TRUNCATE", tensor, 1);
		int rc = zp_model_load(&m, tmp, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 3, NULL, &e);
		if (rc == 0)
			zp_model_free(&m);
		ZP_ASSERT(write(pfd[1], e.msg, strlen(e.msg)) >= 0);
		_exit(rc == -1 ? 0 : 2);
	}
	close(pfd[1]);
	char msg[ZP_ERR_LEN + 1] = "";
	ssize_t n = read(pfd[0], msg, sizeof msg - 1);
	msg[n > 0 ? n : 0] = 0;
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	char path[512];
	snprintf(path, sizeof path, "%s/%s", tmp, file);
	CHECK(WIFEXITED(st), "%s: the load died of signal %d", what,
	      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	CHECK(!WIFEXITED(st) || WEXITSTATUS(st) == 0, "%s: the load succeeded", what);
	CHECK(file_size(file) < before, "%s: the hook did not truncate %s", what, file);
	CHECK(strstr(msg, path) && strstr(msg, tensor) && strstr(msg, "changed"),
	      "%s: error \"%s\" lacks the file %s or the tensor %s", what, msg, path, tensor);
	printf("%-34s -> %s\n", what, msg);
}

/* 4: the checkpoint is not read after the load. */
static void test_after_load(void)
{
	copy_model("odd");
	zp_model m;
	zp_err e = { "" };
	ZP_ASSERT(zp_model_load(&m, tmp, ZP_W_F32, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e) == 0);
	int H = m.cfg.hidden, V = m.cfg.vocab;
	float *want = zp_xmalloc((size_t)V * (size_t)H * sizeof *want), *got = zp_xmalloc((size_t)H * sizeof *got);
	for (int t = 0; t < V; t++)
		zp_model_embed(&m, t, want + (size_t)t * (size_t)H);
	char p[512];
	snprintf(p, sizeof p, "%s/model.safetensors", tmp);
	ZP_ASSERT(truncate(p, 0) == 0);
	pid_t pid = fork(); /* a SIGBUS (before the fix) fails the case, not the program */
	if (pid == 0) {
		int bad = 0;
		for (int t = 0; t < V; t++) {
			zp_model_embed(&m, t, got);
			bad += memcmp(got, want + (size_t)t * (size_t)H, (size_t)H * sizeof *got) != 0;
		}
		_exit(bad ? 1 : 0);
	}
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "4: embedding rows after the checkpoint was "
	      "truncated: %s %d", WIFSIGNALED(st) ? "signal" : "exit",
	      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	printf("%-34s -> %d rows as loaded\n", "4: truncated after the load", V);
	free(want);
	free(got);
	zp_model_free(&m);
}

/* 5: the server's load fails cleanly: exit 1, the log says why, no socket left. */
static void test_serve(void)
{
	const char *bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	const char *tensor = "model.layers.1.self_attn.o_proj.weight";
	char sock[300], logp[300];
	copy_model("tiny-tok");
	snprintf(sock, sizeof sock, "%s/s", tmp);
	snprintf(logp, sizeof logp, "%s/log", tmp);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		setenv("ZP_FAULT_LOAD_TRUNCATE", tensor, 1);
		execl(bin, bin, "serve", "--model", tmp, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	int st = 0, done = 0;
	for (int i = 0; i < 3000 && !done; i++) { /* 60 s: a liveness bound */
		done = waitpid(pid, &st, WNOHANG) == pid;
		if (!done)
			usleep(20000);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	char *log = check_slurp(logp, NULL);
	CHECK(done && WIFEXITED(st) && WEXITSTATUS(st) == 1, "5: serve: %s %d", WIFSIGNALED(st) ?
	      "killed by signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	CHECK(log && strstr(log, "model.safetensors") && strstr(log, tensor),
	      "5: the log does not name the file and tensor: %.800s", log ? log : "");
	CHECK(access(sock, F_OK) != 0, "5: the socket file was left behind");
	printf("%-34s -> exit %d, socket %s\n", "5: zprefill serve", WIFEXITED(st) ?
	       WEXITSTATUS(st) : 128 + WTERMSIG(st), access(sock, F_OK) ? "removed" : "left");
	free(log);
}

int main(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/zp-trunc-%d", (int)getpid());
	expect_truncated("1: dense tensor, loading thread", "odd",
			 "model.layers.1.self_attn.q_proj.weight", "model.safetensors");
#if defined(__SANITIZE_THREAD__)
	/* under tsan the pool thread's fault kills the child with SIGBUS (the
	   handler is not reached through tsan's signal layer there; the loading
	   thread's case above is): checked in the plain and asan builds */
	printf("%-34s -> not run under tsan\n", "2: expert tensor, pool thread");
#else
	expect_truncated("2: expert tensor, pool thread", "odd",
			 "model.layers.2.mlp.experts.7.down_proj.weight", "model.safetensors");
#endif
	expect_truncated("3: a shard", "tied-sharded", "model.layers.1.self_attn.o_proj.weight",
			 "model-00002-of-00003.safetensors");
	test_after_load();
	test_serve();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_load_truncate");
}
