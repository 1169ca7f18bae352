/* tokenizer.h -- Hugging Face tokenizer.json byte-level BPE as used by Qwen2 and
   Qwen3: added tokens matched first on the raw text, NFC, the Split regex
   pre-tokenizer (the Qwen2 or the GPT-2 pattern, matched by hand), byte-level
   mapping, merges by rank; and decode. It must give exactly what the
   `tokenizers` library gives, so its Unicode data is of that library's
   versions (unicode_tables.h: regex classes 16.0, NFC 9.0).
   A zp_tok is loaded once and then read-only (any thread); each thread that
   encodes owns one zp_tok_state (its scratch and its piece cache), sized at
   start-up: encode and decode allocate nothing. */
#ifndef ZP_TOKENIZER_H
#define ZP_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "util.h"

typedef struct zp_tok zp_tok;
typedef struct zp_tok_state zp_tok_state;

/* Load a tokenizer.json. NULL with e set when the file is missing, is not the
   byte-level BPE family above, or uses a feature we do not implement (each
   refused with its name, never silently ignored; so is a Split regex other
   than the two patterns). */
zp_tok *zp_tok_load(const char *path, zp_err *e);
void zp_tok_free(zp_tok *t);

/* One past the largest id (vocabulary plus added tokens). */
int zp_tok_vocab_size(const zp_tok *t);
/* The id of an exact token (added token content, or a vocabulary entry written
   as raw bytes, e.g. "yes" or " yes"), or -1. */
int zp_tok_find(const zp_tok *t, const char *s, size_t len);

#define ZP_TOK_TEXT_DEFAULT (1u << 20)	/* bytes of text zp_tok_state_new takes */
#define ZP_TOK_TEXT_LIMIT (1u << 30)	/* the most a state may be sized for */

/* A state for texts of at most text_max bytes (their NFC form too). Its
   buffers take about 60 bytes per byte of text_max, calloc'd: only what the
   longest text so far touched is resident. */
zp_tok_state *zp_tok_state_new_sized(const zp_tok *t, size_t text_max);
zp_tok_state *zp_tok_state_new(const zp_tok *t); /* text_max ZP_TOK_TEXT_DEFAULT */
void zp_tok_state_free(zp_tok_state *s);
size_t zp_tok_state_text_max(const zp_tok_state *s);

/* Encode text[0..len) (valid UTF-8, the caller checks; NUL bytes are text, as
   in tokenizers: never read as a C string). Writes at most
   max ids and returns how many the text has (more than max: only max were
   written, as snprintf); -1 when the text or its NFC form is longer than the
   state's text_max (nothing useful written). */
int zp_tok_encode(zp_tok_state *s, const char *text, size_t len, int32_t *ids, int max);

/* Append the text of ids to out (invalid UTF-8 from partial tokens becomes
   U+FFFD, as tokenizers' decode does). 0, or -1 when an id is out of range. */
int zp_tok_decode(const zp_tok *t, const int32_t *ids, int n, zp_buf *out);

/* The same without the added tokens tokenizer.json marks "special": true
   (tokenizers' decode with skip_special_tokens). */
int zp_tok_decode_skip_special(const zp_tok *t, const int32_t *ids, int n, zp_buf *out);
/* id is an added token marked "special": true. */
bool zp_tok_is_special(const zp_tok *t, int32_t id);

/* The raw bytes id decodes to (*len of them, possibly part of a UTF-8
   character: byte-level tokens split characters), or NULL when id has no text.
   What a tokenized text's ids give back byte for byte (its NFC form). */
const char *zp_tok_piece(const zp_tok *t, int32_t id, size_t *len);

#endif
