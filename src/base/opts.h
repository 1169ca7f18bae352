/* opts.h -- a key table drives a program's settings: each key gives its ini
   [section] name, its --flag, the commands that take it, its type, bounds,
   default, field and help. From one table come the defaults, the ini file
   (inih), the flags (getopt_long) and each command's usage text, all through
   one setter, so a value is checked in one place whichever way it came in.
   The table and the struct it fills belong to the caller (serve.h holds
   zprefill's). Start-up only, one thread. */
#ifndef ZP_OPTS_H
#define ZP_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util.h"

enum zp_opt_type {
	ZP_OPT_STR,		/* char *, copied; default def_text (NULL: unset) */
	ZP_OPT_TEXT,		/* ZP_OPT_STR with "\n" "\t" "\\" unescaped */
	ZP_OPT_TEMPLATE,	/* ZP_OPT_TEXT whose indented ini continuation lines are joined */
	ZP_OPT_INT,		/* int in [lo, hi]; default def */
	ZP_OPT_LONG,		/* long in [lo, hi] */
	ZP_OPT_SIZE,		/* size_t in [lo, hi] */
	ZP_OPT_OCTAL,		/* int in [lo, hi], spelled with a leading 0 */
	ZP_OPT_ENUM,		/* an int-sized enum: parse/name spell it; default def */
	ZP_OPT_LIST,		/* anything else (several fields): set() parses it; no default */
};

typedef struct zp_opt {
	const char *section, *name;	/* the ini key */
	const char *flag;		/* --flag, or NULL: the file only */
	unsigned cmds;			/* the commands whose flags include it (caller's bits) */
	unsigned required;		/* the commands that need it given (file or flag) */
	enum zp_opt_type type;
	long lo, hi;			/* numbers: the bounds */
	size_t off;			/* the field, in the caller's struct */
	long def;			/* numbers and enums: the default */
	const char *def_text;		/* strings: the default (NULL: unset) */
	int (*parse)(const char *v, int *out);	/* ZP_OPT_ENUM: 0, or -1 for a bad name */
	const char *(*spell)(int v);		/* ZP_OPT_ENUM: the name of a value */
	const char *choices;		/* ZP_OPT_ENUM: for messages, e.g. "bf16 or fp32" */
	/* ZP_OPT_LIST: cfg's fields from v. 0, or -1 with e set (naming the key) */
	int (*set)(void *cfg, const char *v, zp_err *e);
	const char *help;
} zp_opt;

typedef struct {
	const zp_opt *keys;
	size_t n;
} zp_opt_table;

/* Every key's default into its field of cfg (other fields are left alone). */
void zp_opt_defaults(const zp_opt_table *t, void *cfg);
/* The ini file at path over what cfg holds, strictly: an unknown section or
   key, a key given twice or a bad value is an error naming its line. 0 or -1. */
int zp_opt_load(const zp_opt_table *t, void *cfg, const char *path, zp_err *e);
/* A command's arguments argv[first..argc): defaults, then the --config FILE
   (when given), then every flag of the command over it; then each key the
   command requires must have been given. 0, or -1 with e naming the flag
   (a flag of another command, or a bad value, is an error). --help is not
   handled here: see zp_opt_usage. */
int zp_opt_args(const zp_opt_table *t, unsigned cmd, void *cfg, int argc, char **argv,
		int first, zp_err *e);
/* The command's flags, one line each: help, default, ini key. */
void zp_opt_usage(const zp_opt_table *t, unsigned cmd, FILE *f);
/* k's default as the file would spell it ("none" when unset), cut to cap. */
void zp_opt_spell_default(const zp_opt *k, char *out, size_t cap);
/* Frees the strings cfg's fields hold (each set to NULL). */
void zp_opt_free(const zp_opt_table *t, void *cfg);
/* v as a whole number (decimal, 0x hex or 0 octal) in [lo, hi] -> *out. 0 or -1. */
int zp_opt_long(const char *v, long lo, long hi, long *out);
/* The key behind --flag for cmd, or NULL. */
const zp_opt *zp_opt_by_flag(const zp_opt_table *t, unsigned cmd, const char *flag);

#endif
