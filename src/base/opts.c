/* opts.c -- the key-table engine (opts.h): defaults, the ini file through
   inih, the flags through getopt_long, and usage text, all from the caller's
   table and through one setter. Start-up only, one thread. */
#define _GNU_SOURCE
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LABEL_BYTES 96

static bool is_text(enum zp_opt_type t)
{
	return t == ZP_OPT_STR || t == ZP_OPT_TEXT || t == ZP_OPT_TEMPLATE;
}

/* How messages name k: its flag when it came as one, else its ini key. */
static void label(const zp_opt *k, bool as_flag, char out[LABEL_BYTES])
{
	if (as_flag)
		snprintf(out, LABEL_BYTES, "--%s", k->flag);
	else
		snprintf(out, LABEL_BYTES, "[%s] %s", k->section, k->name);
}

int zp_opt_long(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 0);
	if (errno || end == v || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

/* "\n", "\t" and "\\" escapes, so templates fit on one ini line. */
static char *unescape(const char *v)
{
	char *s = zp_xmalloc(strlen(v) + 1), *o = s;
	for (; *v; v++) {
		if (*v == '\\' && (v[1] == 'n' || v[1] == 't' || v[1] == '\\')) {
			v++;
			*o++ = *v == 'n' ? '\n' : *v == 't' ? '\t' : '\\';
		} else {
			*o++ = *v;
		}
	}
	*o = 0;
	return s;
}

static void store_num(const zp_opt *k, char *p, long x)
{
	if (k->type == ZP_OPT_LONG)
		*(long *)p = x;
	else if (k->type == ZP_OPT_SIZE)
		*(size_t *)p = (size_t)x;
	else
		*(int *)p = (int)x;
}

/* The one setter: every value, from the file or a flag, comes through here. */
static int set_key(const zp_opt *k, void *cfg, const char *v, bool as_flag, zp_err *e)
{
	char *p = (char *)cfg + k->off, at[LABEL_BYTES];
	long x;
	int en;
	label(k, as_flag, at);
	switch (k->type) {
	case ZP_OPT_STR:
	case ZP_OPT_TEXT:
	case ZP_OPT_TEMPLATE:
		free(*(char **)p);
		*(char **)p = k->type == ZP_OPT_STR ? strdup(v) : unescape(v);
		ZP_ASSERT(*(char **)p);
		return 0;
	case ZP_OPT_LIST:
		return k->set(cfg, v, e);
	case ZP_OPT_ENUM:
		if (k->parse(v, &en))
			return zp_errf(e, "%s must be %s (not \"%s\")", at, k->choices, v);
		*(int *)p = en;
		return 0;
	case ZP_OPT_OCTAL:
		if (zp_opt_long(v, k->lo, k->hi, &x) || v[0] != '0')
			return zp_errf(e, "%s must be octal, e.g. 0660 (not \"%s\")", at, v);
		store_num(k, p, x);
		return 0;
	case ZP_OPT_INT:
	case ZP_OPT_LONG:
	case ZP_OPT_SIZE:
		if (zp_opt_long(v, k->lo, k->hi, &x))
			return zp_errf(e, "%s must be an integer in [%ld, %ld] (not \"%s\")", at, k->lo,
				       k->hi, v);
		store_num(k, p, x);
		return 0;
	}
	ZP_ASSERT(!"a key type without a setter");
	return -1;
}

void zp_opt_defaults(const zp_opt_table *t, void *cfg)
{
	for (size_t i = 0; i < t->n; i++) {
		const zp_opt *k = &t->keys[i];
		char *p = (char *)cfg + k->off;
		if (is_text(k->type)) {
			*(char **)p = NULL;
			if (k->def_text && set_key(k, cfg, k->def_text, false, NULL))
				ZP_ASSERT(!"a built-in default its own key refuses");
		} else if (k->type == ZP_OPT_ENUM) {
			ZP_ASSERT(k->spell((int)k->def)); /* a value the key can spell */
			*(int *)p = (int)k->def;
		} else if (k->type != ZP_OPT_LIST) {
			/* a required key's default means "not given" and may be out of bounds */
			ZP_ASSERT(k->required || (k->def >= k->lo && k->def <= k->hi));
			store_num(k, p, k->def);
		}
	}
}

static const zp_opt *find_key(const zp_opt_table *t, const char *sec, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(sec, t->keys[i].section) && !strcmp(name, t->keys[i].name))
			return &t->keys[i];
	return NULL;
}

static int set_by_name(const zp_opt_table *t, void *cfg, const char *sec, const char *name,
		       const char *value, zp_err *e)
{
	const zp_opt *k = find_key(t, sec, name);
	if (!k)
		return zp_errf(e, "unknown key [%s] %s", sec, name);
	return set_key(k, cfg, value, false, e);
}

struct ini_ctx {
	const zp_opt_table *t;
	void *cfg;
	bool *given;		/* [t->n], or NULL */
	zp_err *e;
	char last[128];		/* section.key of the previous line */
};

/* inih passes an indented continuation line as the same key again: templates
   are long, so their continuation lines are joined with one space (inih trims
   each line, and the lines break between words). */
static int on_key(void *user, const char *sec, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	const zp_opt *k = find_key(x->t, sec, name);
	char key[128];
	snprintf(key, sizeof key, "%s.%s", sec, name);
	if (!strcmp(key, x->last) && k && k->type == ZP_OPT_TEMPLATE) {
		char **dst = (char **)((char *)x->cfg + k->off), *more = unescape(value), *all;
		if (asprintf(&all, "%s %s", *dst, more) < 0)
			all = NULL;
		ZP_ASSERT(all);
		free(more);
		free(*dst);
		*dst = all;
		return 1;
	}
	if (!strcmp(key, x->last)) {
		zp_errf(x->e, "[%s] %s is given twice", sec, name);
		return 0;
	}
	snprintf(x->last, sizeof x->last, "%s", key);
	if (k && x->given)
		x->given[k - x->t->keys] = true;
	return set_by_name(x->t, x->cfg, sec, name, value, x->e) == 0;
}

static int load(const zp_opt_table *t, void *cfg, const char *path, bool *given, zp_err *e)
{
	zp_err ke = { { 0 } };
	struct ini_ctx x = { t, cfg, given, &ke, "" };
	struct stat st;
	/* a directory opens and reads as empty: it would start on the defaults */
	FILE *f = fopen(path, "r");
	if (!f)
		return zp_errf(e, "config %s: cannot read it: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) || S_ISDIR(st.st_mode)) {
		fclose(f);
		return zp_errf(e, "config %s: is a directory (an ini file is wanted)", path);
	}
	int rc = ini_parse_file(f, on_key, &x);
	bool unread = ferror(f);
	int err = errno;
	fclose(f);
	if (rc < 0 || unread)
		return zp_errf(e, "config %s: cannot read it: %s", path, strerror(err));
	if (rc > 0)
		return zp_errf(e, "config %s line %d: %s", path, rc, ke.msg[0] ? ke.msg : "syntax error");
	return 0;
}

int zp_opt_load(const zp_opt_table *t, void *cfg, const char *path, zp_err *e)
{
	return load(t, cfg, path, NULL, e);
}

const zp_opt *zp_opt_by_flag(const zp_opt_table *t, unsigned cmd, const char *flag)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->keys[i].flag && (t->keys[i].cmds & cmd) && !strcmp(t->keys[i].flag, flag))
			return &t->keys[i];
	return NULL;
}

/* The file first, so flags override it. */
static int config_first(const zp_opt_table *t, void *cfg, int argc, char **argv, int first,
			bool *given, zp_err *e)
{
	const char *path = NULL;
	for (int i = first; i < argc; i++)
		if (!strcmp(argv[i], "--config")) {
			if (i + 1 == argc)
				return zp_errf(e, "--config needs a value");
			path = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			path = argv[i] + 9;
		}
	return path ? load(t, cfg, path, given, e) : 0;
}

static int flags(const zp_opt_table *t, unsigned cmd, void *cfg, int argc, char **argv,
		 int first, bool *given, zp_err *e)
{
	struct option *lo = zp_xcalloc(t->n + 2, sizeof *lo);
	const zp_opt **of = zp_xcalloc(t->n + 2, sizeof *of);
	int n = 0, idx, ch, rc = 0;
	lo[n++] = (struct option){ "config", required_argument, NULL, 0 }; /* read before */
	for (size_t i = 0; i < t->n; i++)
		if (t->keys[i].flag && (t->keys[i].cmds & cmd)) {
			lo[n] = (struct option){ t->keys[i].flag, required_argument, NULL, 0 };
			of[n++] = &t->keys[i];
		}
	opterr = 0; /* our messages, not getopt's */
	optind = first;
	while (!rc && (ch = getopt_long(argc, argv, ":", lo, &idx)) != -1) {
		if (ch == ':')
			rc = zp_errf(e, "%s needs a value", argv[optind - 1]);
		else if (ch != 0)
			rc = zp_errf(e, "unknown flag %s", argv[optind - 1]);
		else if (of[idx] && !(rc = set_key(of[idx], cfg, optarg, true, e)))
			given[of[idx] - t->keys] = true;
	}
	if (!rc && optind != argc)
		rc = zp_errf(e, "unexpected argument %s", argv[optind]);
	free(lo);
	free(of);
	return rc;
}

int zp_opt_args(const zp_opt_table *t, unsigned cmd, void *cfg, int argc, char **argv,
		int first, zp_err *e)
{
	bool *given = zp_xcalloc(t->n, sizeof *given);
	int rc;
	zp_opt_defaults(t, cfg);
	rc = config_first(t, cfg, argc, argv, first, given, e);
	if (!rc)
		rc = flags(t, cmd, cfg, argc, argv, first, given, e);
	for (size_t i = 0; !rc && i < t->n; i++) {
		const zp_opt *k = &t->keys[i];
		if ((k->required & cmd) && !given[i])
			rc = k->flag ? zp_errf(e, "--%s is required", k->flag)
				     : zp_errf(e, "[%s] %s is required", k->section, k->name);
	}
	free(given);
	return rc;
}

void zp_opt_spell_default(const zp_opt *k, char *out, size_t cap)
{
	if (is_text(k->type))
		snprintf(out, cap, "%s", k->def_text ? k->def_text : "none");
	else if (k->type == ZP_OPT_ENUM)
		snprintf(out, cap, "%s", k->spell((int)k->def));
	else if (k->type == ZP_OPT_OCTAL)
		snprintf(out, cap, "0%lo", k->def);
	else if (k->type == ZP_OPT_LIST)
		snprintf(out, cap, "none");
	else
		snprintf(out, cap, "%ld", k->def);
}

void zp_opt_usage(const zp_opt_table *t, unsigned cmd, FILE *f)
{
	char def[64];
	fprintf(f, "  --%-20s %s\n", "config FILE", "an ini file (conf/zprefill.ini lists every key)");
	for (size_t i = 0; i < t->n; i++) {
		const zp_opt *k = &t->keys[i];
		if (!k->flag || !(k->cmds & cmd))
			continue;
		zp_opt_spell_default(k, def, sizeof def);
		fprintf(f, "  --%-20s %s (%s%s; [%s] %s)\n", k->flag, k->help,
			k->required & cmd ? "required" : "default ",
			k->required & cmd ? "" : def, k->section, k->name);
	}
}

void zp_opt_free(const zp_opt_table *t, void *cfg)
{
	for (size_t i = 0; i < t->n; i++)
		if (is_text(t->keys[i].type)) {
			char **p = (char **)((char *)cfg + t->keys[i].off);
			free(*p);
			*p = NULL;
		}
}
