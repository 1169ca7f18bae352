/* safetensors.c -- see safetensors.h. The JSON goes through cJSON after our own
   strict UTF-8 check; all size arithmetic is overflow-checked. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

static const struct { const char *name; size_t size; } dtypes[ZP_DT_COUNT] = {
	[ZP_DT_F32] = { "F32", 4 },	  [ZP_DT_F16] = { "F16", 2 },
	[ZP_DT_BF16] = { "BF16", 2 },	  [ZP_DT_F64] = { "F64", 8 },
	[ZP_DT_I64] = { "I64", 8 },	  [ZP_DT_I32] = { "I32", 4 },
	[ZP_DT_I16] = { "I16", 2 },	  [ZP_DT_I8] = { "I8", 1 },
	[ZP_DT_U8] = { "U8", 1 },	  [ZP_DT_BOOL] = { "BOOL", 1 },
	[ZP_DT_F8_E4M3] = { "F8_E4M3", 1 }, [ZP_DT_F8_E5M2] = { "F8_E5M2", 1 },
};

const char *zp_dtype_name(enum zp_dtype dt)
{
	ZP_ASSERT(dt >= 0 && dt < ZP_DT_COUNT);
	return dtypes[dt].name;
}

size_t zp_dtype_size(enum zp_dtype dt)
{
	ZP_ASSERT(dt >= 0 && dt < ZP_DT_COUNT);
	return dtypes[dt].size;
}

static int dtype_parse(const char *s, enum zp_dtype *out)
{
	for (int i = 0; i < ZP_DT_COUNT; i++)
		if (strcmp(s, dtypes[i].name) == 0) {
			*out = (enum zp_dtype)i;
			return 0;
		}
	return -1;
}

/* An exact non-negative integer held in a JSON number (cJSON keeps doubles). */
static int json_u64(const cJSON *v, uint64_t *out)
{
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
		return -1;
	*out = (uint64_t)d;
	return 0;
}

static int parse_tensor(const cJSON *it, uint64_t data_bytes, int file, zp_st_tensor *t,
			zp_err *e)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
	uint64_t numel = 1, begin, end, n;

	if (strlen(it->string) >= ZP_ST_NAME_MAX)
		return zp_errf(e, "tensor name longer than %d bytes", ZP_ST_NAME_MAX - 1);
	memset(t, 0, sizeof *t);
	strcpy(t->name, it->string);
	t->file = file;
	if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) ||
	    !cJSON_IsArray(off))
		return zp_errf(e, "tensor %s: header entry needs dtype, shape, data_offsets",
			       t->name);
	if (dtype_parse(dt->valuestring, &t->dtype))
		return zp_errf(e, "tensor %s: unknown dtype \"%.32s\"", t->name, dt->valuestring);
	t->ndim = cJSON_GetArraySize(sh);
	if (t->ndim > ZP_ST_NDIM_MAX)
		return zp_errf(e, "tensor %s: %d dimensions (max %d)", t->name, t->ndim,
			       ZP_ST_NDIM_MAX);
	for (int i = 0; i < t->ndim; i++) {
		if (json_u64(cJSON_GetArrayItem(sh, i), &n) || n > (1ull << 40))
			return zp_errf(e, "tensor %s: bad shape entry %d", t->name, i);
		t->shape[i] = (int64_t)n;
		if (n && numel > UINT64_MAX / n)
			return zp_errf(e, "tensor %s: shape overflows", t->name);
		numel *= n;
	}
	if (cJSON_GetArraySize(off) != 2 || json_u64(cJSON_GetArrayItem(off, 0), &begin) ||
	    json_u64(cJSON_GetArrayItem(off, 1), &end) || begin > end)
		return zp_errf(e, "tensor %s: bad data_offsets", t->name);
	if (end > data_bytes)
		return zp_errf(e, "tensor %s: data_offsets [%llu, %llu) past the end of the data "
			       "(%llu bytes): file truncated?", t->name, (unsigned long long)begin,
			       (unsigned long long)end, (unsigned long long)data_bytes);
	if (numel > UINT64_MAX / zp_dtype_size(t->dtype) ||
	    numel * zp_dtype_size(t->dtype) != end - begin)
		return zp_errf(e, "tensor %s: %llu bytes for a %s tensor of %llu elements",
			       t->name, (unsigned long long)(end - begin), zp_dtype_name(t->dtype),
			       (unsigned long long)numel);
	t->offset = begin;
	t->nbytes = end - begin;
	return 0;
}

int zp_st_parse_header(const char *json, size_t len, uint64_t data_bytes, int file,
		       zp_st_tensor **tensors, size_t *ntensors, zp_err *e)
{
	cJSON *root;
	const cJSON *it;
	size_t n0 = *ntensors;
	int rc = 0;

	if (len > ZP_ST_HEADER_MAX)
		return zp_errf(e, "header of %zu bytes (max %u)", len, ZP_ST_HEADER_MAX);
	if (zp_json_check_utf8(json, len))
		return zp_errf(e, "header is not valid UTF-8");
	root = zp_json_parse(json, len);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return zp_errf(e, "header is not a JSON object");
	}
	cJSON_ArrayForEach(it, root) {
		if (strcmp(it->string, "__metadata__") == 0)
			continue;
		*tensors = realloc(*tensors, (*ntensors + 1) * sizeof **tensors);
		ZP_ASSERT(*tensors);
		if (parse_tensor(it, data_bytes, file, &(*tensors)[*ntensors], e)) {
			rc = -1;
			break;
		}
		(*ntensors)++;
	}
	cJSON_Delete(root);
	if (rc)
		*ntensors = n0;
	return rc;
}

static int plain_filename(const char *f)
{
	return f[0] && f[0] != '.' && !strchr(f, '/') && strlen(f) < 1024;
}

int zp_st_parse_index(const char *json, size_t len,
		      int (*fn)(void *ctx, const char *name, const char *file, zp_err *e),
		      void *ctx, zp_err *e)
{
	cJSON *root;
	const cJSON *map, *it;
	int rc = 0;

	if (zp_json_check_utf8(json, len))
		return zp_errf(e, "index is not valid UTF-8");
	root = zp_json_parse(json, len);
	map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!cJSON_IsObject(map)) {
		cJSON_Delete(root);
		return zp_errf(e, "index has no \"weight_map\" object");
	}
	cJSON_ArrayForEach(it, map) {
		if (!cJSON_IsString(it) || !plain_filename(it->valuestring)) {
			rc = zp_errf(e, "index: tensor %.100s maps to a bad file name", it->string);
			break;
		}
		if ((rc = fn(ctx, it->string, it->valuestring, e)))
			break;
	}
	cJSON_Delete(root);
	return rc;
}

static int read_file(const char *path, char **buf, size_t *len, size_t max, zp_err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0)
		return zp_errf(e, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) || (size_t)sb.st_size > max) {
		close(fd);
		return zp_errf(e, "%s: unreadable or larger than %zu bytes", path, max);
	}
	*len = (size_t)sb.st_size;
	*buf = zp_xmalloc(*len + 1);
	size_t got = 0;
	while (got < *len) {
		ssize_t r = read(fd, *buf + got, *len - got);
		if (r <= 0) {
			free(*buf);
			close(fd);
			return zp_errf(e, "%s: read failed", path);
		}
		got += (size_t)r;
	}
	(*buf)[*len] = 0;
	close(fd);
	return 0;
}

/* The header is read with pread, not through the mapping: parsing allocates,
   and a fault there could not be unwound (zp_st_guard). */
static int read_header(int fd, const char *path, size_t size, char **json, uint64_t *hlen,
		       zp_err *e)
{
	if (pread(fd, hlen, 8, 0) != 8) /* little-endian on every host we build for */
		return zp_errf(e, "%s: cannot read the header length", path);
	if (*hlen > size - 8)
		return zp_errf(e, "%s: header length %llu past the end of the file (%zu bytes)",
			       path, (unsigned long long)*hlen, size);
	if (*hlen > ZP_ST_HEADER_MAX)
		return zp_errf(e, "%s: header of %llu bytes (max %u)", path,
			       (unsigned long long)*hlen, ZP_ST_HEADER_MAX);
	*json = zp_xmalloc(*hlen + 1);
	for (size_t got = 0; got < *hlen;) {
		ssize_t r = pread(fd, *json + got, *hlen - got, (off_t)(8 + got));
		if (r <= 0) {
			free(*json);
			return zp_errf(e, "%s: header read failed (file truncated?)", path);
		}
		got += (size_t)r;
	}
	return 0;
}

static int map_file(zp_st *st, const char *dir, const char *name, zp_err *e)
{
	char path[4096], *json = NULL;
	struct stat sb;
	uint64_t hlen;
	zp_st_file *f;
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return zp_errf(e, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) || sb.st_size < 8) {
		close(fd);
		return zp_errf(e, "%s: too short for a safetensors file", path);
	}
	if (read_header(fd, path, (size_t)sb.st_size, &json, &hlen, e)) {
		close(fd);
		return -1;
	}
	st->files = realloc(st->files, (size_t)(st->nfiles + 1) * sizeof *st->files);
	ZP_ASSERT(st->files);
	f = &st->files[st->nfiles];
	f->size = (size_t)sb.st_size;
	f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->map == MAP_FAILED) {
		free(json);
		return zp_errf(e, "%s: mmap: %s", path, strerror(errno));
	}
	f->path = strdup(path);
	st->nfiles++;
	size_t n0 = st->ntensors;
	int rc = zp_st_parse_header(json, hlen, f->size - 8 - hlen, st->nfiles - 1, &st->tensors,
				    &st->ntensors, e);
	free(json);
	if (rc) {
		char msg[ZP_ERR_LEN];
		snprintf(msg, sizeof msg, "%s", e->msg);
		return zp_errf(e, "%s: %s", path, msg);
	}
	for (size_t i = n0; i < st->ntensors; i++)
		st->tensors[i].data = (const char *)f->map + 8 + hlen + st->tensors[i].offset;
	return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const zp_st_tensor *)a)->name, ((const zp_st_tensor *)b)->name);
}

/* Index handling: collect the distinct shard names, remember every mapping to
   check afterwards that each named tensor is in the shard the index says. */
struct index_ctx {
	char **files;
	int nfiles;
	char **names, **names_file;
	size_t nnames;
};

static int index_add(void *vctx, const char *name, const char *file, zp_err *e)
{
	struct index_ctx *c = vctx;
	int i;
	for (i = 0; i < c->nfiles; i++)
		if (strcmp(c->files[i], file) == 0)
			break;
	if (i == c->nfiles) {
		if (c->nfiles >= ZP_ST_FILES_MAX)
			return zp_errf(e, "index names more than %d files", ZP_ST_FILES_MAX);
		c->files = realloc(c->files, (size_t)(c->nfiles + 1) * sizeof *c->files);
		ZP_ASSERT(c->files);
		c->files[c->nfiles++] = strdup(file);
	}
	c->names = realloc(c->names, (c->nnames + 1) * sizeof *c->names);
	c->names_file = realloc(c->names_file, (c->nnames + 1) * sizeof *c->names_file);
	ZP_ASSERT(c->names && c->names_file);
	c->names[c->nnames] = strdup(name);
	c->names_file[c->nnames++] = c->files[i];
	return 0;
}

static void index_free(struct index_ctx *c)
{
	for (int i = 0; i < c->nfiles; i++)
		free(c->files[i]);
	for (size_t i = 0; i < c->nnames; i++)
		free(c->names[i]);
	free(c->files);
	free(c->names);
	free(c->names_file);
}

static int open_index(zp_st *st, const char *dir, const char *ipath, zp_err *e)
{
	struct index_ctx c = { 0 };
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (read_file(ipath, &buf, &len, 64u << 20, e))
		return -1;
	rc = zp_st_parse_index(buf, len, index_add, &c, e);
	free(buf);
	if (rc) {
		char msg[ZP_ERR_LEN];
		snprintf(msg, sizeof msg, "%s", e->msg);
		zp_errf(e, "%s: %s", ipath, msg);
	}
	for (int i = 0; !rc && i < c.nfiles; i++)
		rc = map_file(st, dir, c.files[i], e);
	if (!rc) {
		qsort(st->tensors, st->ntensors, sizeof *st->tensors, cmp_tensor);
		for (size_t i = 0; i < c.nnames; i++) {
			const zp_st_tensor *t = zp_st_find(st, c.names[i]);
			if (!t) {
				rc = zp_errf(e, "tensor %.100s: listed in the index for %.100s but "
					     "absent from it", c.names[i], c.names_file[i]);
				break;
			}
			if (strcmp(strrchr(st->files[t->file].path, '/') + 1, c.names_file[i])) {
				rc = zp_errf(e, "tensor %.100s: the index says %.60s, found in %.60s",
					     c.names[i], c.names_file[i], st->files[t->file].path);
				break;
			}
		}
	}
	index_free(&c);
	return rc;
}

int zp_st_open_dir(zp_st *st, const char *dir, zp_err *e)
{
	char path[4096];
	int rc;

	memset(st, 0, sizeof *st);
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	if (access(path, F_OK) == 0)
		rc = open_index(st, dir, path, e);
	else {
		snprintf(path, sizeof path, "%s/model.safetensors", dir);
		if (access(path, F_OK) != 0)
			return zp_errf(e, "%s: neither model.safetensors nor "
				       "model.safetensors.index.json", dir);
		rc = map_file(st, dir, "model.safetensors", e);
		if (!rc)
			qsort(st->tensors, st->ntensors, sizeof *st->tensors, cmp_tensor);
	}
	for (size_t i = 1; !rc && i < st->ntensors; i++)
		if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
			rc = zp_errf(e, "tensor %.100s appears twice (%.60s and %.60s)",
				     st->tensors[i].name, st->files[st->tensors[i - 1].file].path,
				     st->files[st->tensors[i].file].path);
	if (rc)
		zp_st_free(st);
	return rc;
}

void zp_st_free(zp_st *st)
{
	for (int i = 0; i < st->nfiles; i++) {
		munmap(st->files[i].map, st->files[i].size);
		free(st->files[i].path);
	}
	free(st->files);
	free(st->tensors);
	memset(st, 0, sizeof *st);
}

const zp_st_tensor *zp_st_find(const zp_st *st, const char *name)
{
	size_t lo = 0, hi = st->ntensors;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(st->tensors[mid].name, name);
		if (c == 0)
			return &st->tensors[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const char *zp_st_file_of(const zp_st *st, const zp_st_tensor *t)
{
	return st->files[t->file].path;
}

static int get_as(const zp_st *st, const char *name, int ndim, const int64_t *shape,
		  bool fp8, const zp_st_tensor **out, zp_err *e)
{
	const zp_st_tensor *t = zp_st_find(st, name);
	char want[128] = "", got[128] = "";
	int n = 0, m = 0;

	if (!t)
		return zp_errf(e, "tensor %s: missing from the checkpoint (%s%s)", name,
			       st->nfiles ? st->files[0].path : "?", st->nfiles > 1 ? ", ..." : "");
	for (int i = 0; i < ndim; i++)
		n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", i ? "," : "",
			      (long long)shape[i]);
	for (int i = 0; i < t->ndim && m < 100; i++)
		m += snprintf(got + m, sizeof got - (size_t)m, "%s%lld", i ? "," : "",
			      (long long)t->shape[i]);
	if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape))
		return zp_errf(e, "tensor %s in %s: shape [%s], expected [%s]", name,
			       zp_st_file_of(st, t), got, want);
	if (t->dtype != ZP_DT_F32 && t->dtype != ZP_DT_F16 && t->dtype != ZP_DT_BF16 &&
	    !(fp8 && t->dtype == ZP_DT_F8_E4M3))
		return zp_errf(e, "tensor %s in %s: dtype %s (supported: F32, F16, BF16%s)", name,
			       zp_st_file_of(st, t), zp_dtype_name(t->dtype),
			       fp8 ? ", F8_E4M3" : "");
	*out = t;
	return 0;
}

int zp_st_get(const zp_st *st, const char *name, int ndim, const int64_t *shape,
	      const zp_st_tensor **out, zp_err *e)
{
	return get_as(st, name, ndim, shape, false, out, e);
}

int zp_st_get_linear(const zp_st *st, const char *name, int ndim, const int64_t *shape,
		     const zp_st_tensor **out, zp_err *e)
{
	return get_as(st, name, ndim, shape, true, out, e);
}

/* ---- guarded reads. One SIGBUS handler for the process, installed by the
   first guard and kept (it hands any fault it does not own to the handler
   before it); a thread's innermost guard is its thread-local guard_tl. The
   handler runs with SA_NODEFER and an empty mask, so leaving it by siglongjmp
   leaves the thread's signal mask as it was, and sigsetjmp need not save the
   mask (savemask 0: no system call per guard; rows are copied under one
   each). The sig* pair, not _setjmp/_longjmp: the same jump, and the one tsan
   follows out of a handler (it took every later call for one made inside). */
struct st_guard {
	sigjmp_buf jb;
	const zp_st *st;
	struct st_guard *outer;
};
static _Thread_local struct st_guard *guard_tl;
static _Thread_local const void *guard_addr;	/* the last caught fault's address */
static struct sigaction sigbus_prev;
static pthread_once_t sigbus_once = PTHREAD_ONCE_INIT;

static int file_at(const zp_st *st, const void *addr)
{
	for (int i = 0; i < st->nfiles; i++) {
		const char *m = st->files[i].map;
		if ((const char *)addr >= m && (const char *)addr < m + st->files[i].size)
			return i;
	}
	return -1;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct st_guard *g = guard_tl;
	if (g && file_at(g->st, si->si_addr) >= 0) {
		guard_addr = si->si_addr;
		siglongjmp(g->jb, 1);
	}
	if ((sigbus_prev.sa_flags & SA_SIGINFO) && sigbus_prev.sa_sigaction)
		sigbus_prev.sa_sigaction(sig, si, uc);
	else if (sigbus_prev.sa_handler != SIG_DFL && sigbus_prev.sa_handler != SIG_IGN)
		sigbus_prev.sa_handler(sig);
	else
		signal(SIGBUS, SIG_DFL); /* returning runs the access again: the default action */
}

static void sigbus_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	ZP_ASSERT(sigaction(SIGBUS, &sa, &sigbus_prev) == 0);
}

static int fault_err(const zp_st *st, const void *addr, zp_err *e)
{
	int fi = file_at(st, addr);
	ZP_ASSERT(fi >= 0);
	const zp_st_file *f = &st->files[fi];
	const char *tname = "(header)";
	for (size_t i = 0; i < st->ntensors; i++) {
		const char *d = st->tensors[i].data;
		if (st->tensors[i].file == fi && (const char *)addr >= d &&
		    (const char *)addr < d + st->tensors[i].nbytes)
			tname = st->tensors[i].name;
	}
	struct stat sb;
	long long now = stat(f->path, &sb) == 0 ? (long long)sb.st_size : -1;
	return zp_errf(e, "%s: the file changed while it was read: tensor %.100s lies past its "
		       "end (now %lld bytes, %zu when opened)", f->path, tname, now, f->size);
}

int zp_st_guard(const zp_st *st, int (*fn)(void *ctx), void *ctx, zp_err *e)
{
	struct st_guard g = { .st = st, .outer = guard_tl };
	pthread_once(&sigbus_once, sigbus_install);
	if (sigsetjmp(g.jb, 0)) {
		guard_tl = g.outer;
		return fault_err(st, guard_addr, e);
	}
	guard_tl = &g;
	int rc = fn(ctx);
	guard_tl = g.outer;
	return rc;
}

struct copy_args {
	void *dst;
	const void *src;
	size_t n;
};

static int copy_fn(void *v)
{
	struct copy_args *a = v;
	memcpy(a->dst, a->src, a->n);
	return 0;
}

int zp_st_copy(const zp_st *st, void *dst, const void *src, size_t n, zp_err *e)
{
	struct copy_args a = { dst, src, n };
	return zp_st_guard(st, copy_fn, &a, e);
}

void zp_st_fault_truncate(const zp_st *st, const zp_st_tensor *t)
{
	const char *name = getenv("ZP_FAULT_LOAD_TRUNCATE");
	if (!name || strcmp(name, t->name) != 0)
		return;
	const zp_st_file *f = &st->files[t->file];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t at = (size_t)((const char *)t->data - (const char *)f->map);
	at = ZP_MIN(ZP_ALIGN_UP(at, page), at + t->nbytes); /* a read of t past it faults */
	if (truncate(f->path, (off_t)at) != 0)
		zp_log(ZP_LOG_ERROR, "msg=\"ZP_FAULT_LOAD_TRUNCATE failed\" file=%s err=\"%s\"",
		       f->path, strerror(errno));
	else
		zp_log(ZP_LOG_WARN, "msg=\"ZP_FAULT_LOAD_TRUNCATE: file truncated\" file=%s "
		       "tensor=%s bytes=%zu", f->path, t->name, at);
}

float zp_st_elem_f32(const zp_st_tensor *t, size_t i)
{
	switch (t->dtype) {
	case ZP_DT_F32: {
		float f;
		memcpy(&f, (const char *)t->data + 4 * i, 4);
		return f;
	}
	case ZP_DT_BF16: {
		uint16_t h;
		memcpy(&h, (const char *)t->data + 2 * i, 2);
		return zp_bf16_to_f32(h);
	}
	case ZP_DT_F16: {
		uint16_t h;
		memcpy(&h, (const char *)t->data + 2 * i, 2);
		return zp_f16_to_f32(h);
	}
	default:
		zp_panic(__FILE__, __LINE__, "tensor dtype checked by zp_st_get");
	}
}
