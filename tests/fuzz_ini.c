/* fuzz_ini.c -- libFuzzer target for the ini file (`--config FILE`): inih,
   then the one key table of serve, prefill and bench (serve_config.c: every
   section, key and value parser: numbers with bounds, octal modes, sizes, uid
   lists, the TCP address, enums, [rerank] templates). Any bytes give an error
   or settings inside each key's bounds; the settings are freed whole either
   way (leaks are findings). The input is handed over as a file (a memfd). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	char path[64];
	if (fd < 0 && (fd = memfd_create("zprefill.ini", 0)) < 0)
		abort();
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	zp_serve_cfg c;
	zp_err e;
	if (zp_serve_cfg_load(&c, path, &e) == 0) {
		if (c.max_connections < 1 || c.executors < 1 || c.n_allow_uids < 0 ||
		    c.n_allow_uids > ZP_ALLOW_UIDS_MAX || c.socket_mode < 0 || c.socket_mode > 0777 ||
		    c.batch_tokens_max < 1 || c.queue_requests_max < 1)
			abort();
	}
	zp_serve_cfg_free(&c);
	return 0;
}
