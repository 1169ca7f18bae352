/* chat.h -- a checkpoint's chat template (tokenizer_config.json's
   chat_template) rendered exactly as transformers' apply_chat_template
   renders it, and the tokens that end an answer. Not a Jinja engine: the one
   template zprefill knows is Qwen3's (ChatML with thinking and tool calls),
   rendered by hand; any other template is refused at load, naming why, and
   the chat endpoint says so. Loaded once at start-up, read-only after (any
   thread); render writes into the caller's buffer and allocates nothing. */
#ifndef ZP_CHAT_H
#define ZP_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "util.h"

#define ZP_CHAT_SPECIAL_MAX 64	/* special added tokens kept (Qwen3 has 14) */
#define ZP_CHAT_EOS_MAX 8	/* ids that end an answer */
#define ZP_CHAT_WHY_LEN 256

enum zp_chat_kind {
	ZP_CHAT_NONE,		/* no template: why[] says what was found */
	ZP_CHAT_OTHER,		/* a template we do not render: refused, why[] says so */
	ZP_CHAT_QWEN3,		/* Qwen3's template, byte for byte */
};

typedef struct {
	enum zp_chat_kind kind;
	char why[ZP_CHAT_WHY_LEN];	/* not QWEN3: the reason, for the log and the 400 */
	/* tokenizer_config.json's added tokens marked special (skipped from
	   answers' text, as skip_special_tokens does) and the answer's end:
	   eos_token, and generation_config.json's eos_token_id where present */
	int32_t special[ZP_CHAT_SPECIAL_MAX];
	int nspecial;
	int32_t eos[ZP_CHAT_EOS_MAX];
	int neos;
} zp_chat;

enum zp_chat_role { ZP_CHAT_SYSTEM, ZP_CHAT_USER, ZP_CHAT_ASSISTANT, ZP_CHAT_TOOL };

/* One tool call of an assistant message: OpenAI's function name and its
   arguments, a JSON text written as it is (as the template writes a string). */
typedef struct {
	const char *name;
	const char *args;
} zp_chat_call;

typedef struct {
	enum zp_chat_role role;
	const char *content;		/* never NULL ("" for none) */
	const char *reasoning;		/* reasoning_content; NULL: not given */
	const zp_chat_call *calls;	/* [ncalls], assistant only */
	int ncalls;
} zp_chat_msg;

/* Read dir/tokenizer_config.json (and dir/generation_config.json's eos ids).
   Never fails the start: a missing file, a missing template or another
   template leaves kind ZP_CHAT_NONE or ZP_CHAT_OTHER with why[] set; only a file that exists
   and cannot be read or parsed is an error (-1, e set). */
int zp_chat_load(zp_chat *c, const char *dir, zp_err *e);

/* The conversation m[0..n) (n >= 1) as the template renders it, appended to
   out; add_gen: add_generation_prompt; thinking: enable_thinking (-1 not
   passed, 0 false, 1 true). 0, or -1 when out (fixed) overflowed. */
int zp_chat_render(const zp_chat *c, const zp_chat_msg *m, int n, bool add_gen, int thinking,
		   zp_buf *out);

/* continue_final_message, as transformers does it: render the conversation
   with ZP_CHAT_CONTINUE_TAG appended to the final message's content, then cut
   out[from..] where the tag is (and the template's trimming, if it trimmed
   the tag's space). final: that message's own content. 0, or -1 when the
   final message (stripped) or the tag did not survive the template
   (transformers refuses the conversation). */
#define ZP_CHAT_CONTINUE_TAG "CONTINUE_FINAL_MESSAGE_TAG "
int zp_chat_continue_cut(zp_buf *out, size_t from, const char *final);

bool zp_chat_is_special(const zp_chat *c, int32_t id);
bool zp_chat_is_eos(const zp_chat *c, int32_t id);

#endif
