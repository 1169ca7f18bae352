/* test_log_limit.c -- zp_log_limited (util.h), on a clock the test sets: the
   first line of a window is written, the rest of the window is one summary
   line with their count (at the next line after the window, at a flush once
   the window has passed, or at a final flush), and nothing is lost or
   written twice; with a burst, the first few lines of a window. stderr goes
   to a file the test reads back. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "util.h"

static int count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

int main(void)
{
	char path[] = "/tmp/zp-loglimit-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	ZP_ASSERT(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	zp_log_limit l = { .what = "things refused", .lvl = ZP_LOG_WARN, .window_s = 10 };
	zp_log_limited(&l, 1.0, "msg=\"thing refused\" n=%d", 0);	/* written */
	for (int i = 1; i <= 100; i++)				/* counted */
		zp_log_limited(&l, 2.0 + i * 0.01, "msg=\"thing refused\" n=%d", i);
	zp_log_limit_flush(&l, 6.0, false);			/* window open: nothing */
	zp_log_limited(&l, 12.0, "msg=\"thing refused\" n=%d", 101); /* summary, then written */
	zp_log_limit_flush(&l, 30.0, false);			/* passed, none counted */
	zp_log_limited(&l, 31.0, "msg=\"thing refused\" n=%d", 102); /* written */
	zp_log_limited(&l, 31.5, "msg=\"thing refused\" n=%d", 103); /* counted */
	zp_log_limit_flush(&l, 45.0, false);			/* summary of 1 */
	zp_log_limited(&l, 46.0, "msg=\"thing refused\" n=%d", 104); /* written */
	zp_log_limited(&l, 47.0, "msg=\"thing refused\" n=%d", 105); /* counted */
	zp_log_limited(&l, 47.5, "msg=\"thing refused\" n=%d", 106); /* counted */
	zp_log_limit_flush(&l, 48.0, true);			/* the end: summary of 2 */
	zp_log_limit_flush(&l, 99.0, true);			/* nothing left */
	/* a burst of 3 a window (the ignored-request-field warnings' kind) */
	zp_log_limit b3 = { .what = "fields ignored", .lvl = ZP_LOG_WARN, .window_s = 10, .burst = 3 };
	for (int i = 0; i < 10; i++)				/* 3 written, 7 counted */
		zp_log_limited(&b3, 100.0 + i * 0.1, "msg=\"field ignored\" k=%d", i);
	zp_log_limited(&b3, 111.0, "msg=\"field ignored\" k=%d", 10); /* summary, then written */
	zp_log_limit_flush(&b3, 112.0, true);
	zp_log_limit quiet = { .what = "debug things", .lvl = ZP_LOG_DEBUG, .window_s = 1 };
	zp_log_limited(&quiet, 1.0, "msg=\"debug thing\"");	/* under zp_log_min */
	fflush(stderr);
	dup2(saved, 2);
	char buf[8192] = { 0 };
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	ZP_ASSERT(n > 0);
	close(fd);
	unlink(path);
	printf("%s", buf);
	CHECK(count(buf, "msg=\"thing refused\"") == 4, "4 lines written whole");
	CHECK(strstr(buf, "n=0\n") && strstr(buf, "n=101\n") && strstr(buf, "n=102\n") &&
	      strstr(buf, "n=104\n"), "the first line of each window");
	CHECK(count(buf, "msg=\"things refused\" repeated=") == 3, "3 summaries");
	CHECK(strstr(buf, "repeated=100 seconds=11.0") && strstr(buf, "repeated=1 seconds=14.0") &&
	      strstr(buf, "repeated=2 seconds=2.0"), "the counts and their windows");
	CHECK(strstr(strstr(buf, "repeated=100"), "n=101") != NULL, "the summary before the next line");
	CHECK(!strstr(buf, "debug thing"), "a level under zp_log_min writes nothing");
	CHECK(count(buf, "msg=\"field ignored\"") == 4 && strstr(buf, "k=2\n") && !strstr(buf, "k=3\n") &&
	      strstr(buf, "k=10\n"), "burst 3: the first 3 lines of a window written whole");
	CHECK(strstr(buf, "msg=\"fields ignored\" repeated=7 seconds=11.0") != NULL,
	      "burst 3: the other 7 in one summary");
	return check_exit("test_log_limit");
}
