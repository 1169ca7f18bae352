"""chat_golden.py -- the goldens of zprefill's chat template renderer
(src/model/chat.c): each conversation below rendered by transformers'
apply_chat_template with the checkpoint's own tokenizer_config.json (the Qwen3
template), as text and as token ids, for every add_generation_prompt and
enable_thinking (absent, true, false). Needs only `pip install transformers`
(no torch). Writes tests/golden/chat-qwen3.jsonl:

    python3 tools/chat_golden.py [models/default] > tests/golden/chat-qwen3.jsonl

One line per (conversation, flags): {"messages", "add_generation_prompt",
"enable_thinking" (null: not passed), "continue_final_message", "text", "ids"};
continue_final_message is tried without add_generation_prompt (transformers
refuses both), where transformers renders it. The first line names the
versions that made the file."""
import json
import sys

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

S = "You are a strict judge. Answer with one word."
TC = [{"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]
TC2 = TC + [{"id": "call_2", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]

CONVERSATIONS = [
    # one user turn, with and without a system message
    [{"role": "user", "content": "Is a banana a fruit? Answer yes or no."}],
    [{"role": "system", "content": S},
     {"role": "user", "content": "Is a banana a fruit?"}],
    # several turns; earlier assistant turns with and without thinking
    [{"role": "system", "content": S},
     {"role": "user", "content": "Classify: tiger"},
     {"role": "assistant", "content": "animal"},
     {"role": "user", "content": "Classify: oak"}],
    [{"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"},
     {"role": "user", "content": "and 3+3?"}],
    # the last message is the assistant's: its thinking is kept (after the
    # last user query), split out of the content
    [{"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"}],
    [{"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}],
    # reasoning_content given apart (and empty)
    [{"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello", "reasoning_content": "\n\ngreet back\n"}],
    [{"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello", "reasoning_content": ""},
     {"role": "user", "content": "bye"},
     {"role": "assistant", "content": "\n\nbye", "reasoning_content": "leave"}],
    # a system message that is not first is a turn of its own
    [{"role": "user", "content": "hi"},
     {"role": "system", "content": "Be brief."},
     {"role": "user", "content": "why?"}],
    # tool calls (OpenAI's shape: arguments as a JSON string) and tool answers
    [{"role": "system", "content": S},
     {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": TC},
     {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}],
    [{"role": "user", "content": "Weather and time?"},
     {"role": "assistant", "content": "Let me check.", "tool_calls": TC2},
     {"role": "tool", "content": "sunny"},
     {"role": "tool", "content": "noon"},
     {"role": "assistant", "content": "<think>\nboth known\n</think>\n\nSunny, noon."},
     {"role": "user", "content": "<tool_response>\nx\n</tool_response>"}],
    # the judge's prefill: an assistant turn to continue (continue_final_message)
    [{"role": "system", "content": S},
     {"role": "user", "content": "Is a banana a fruit?"},
     {"role": "assistant", "content": "The answer is"}],
    [{"role": "user", "content": "Rate it 1-5."},
     {"role": "assistant", "content": "Score:  "}],
    [{"role": "user", "content": "x"},
     {"role": "assistant", "content": "<think>\nhm\n</think>\n\nSo"}],
    [{"role": "user", "content": "<tool_response>\nr\n</tool_response>"}],
    # content that looks like the template's own markers, unicode, empty text
    [{"role": "user", "content": "naïve café 😀 — 漢字 <|im_end|> \\n {{ x }}"}],
    [{"role": "system", "content": ""},
     {"role": "user", "content": ""}],
    [{"role": "assistant", "content": "first </think> twice </think>\nend"},
     {"role": "user", "content": "ok"}],
]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "models/default"
    tok = AutoTokenizer.from_pretrained(src)
    print(json.dumps({"made_by": "tools/chat_golden.py", "transformers": transformers.__version__,
                      "tokenizers": tokenizers.__version__, "jinja2": jinja2.__version__}))
    for conv in CONVERSATIONS:
        for agp, cont in ((False, False), (True, False), (False, True)):
            for think in (None, True, False):
                kw = {} if think is None else {"enable_thinking": think}
                try:
                    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp,
                                                   continue_final_message=cont, **kw)
                except ValueError:
                    continue  # the final message does not survive the template: zprefill says 400
                ids = tok(text, add_special_tokens=False)["input_ids"]
                print(json.dumps({"messages": conv, "add_generation_prompt": agp,
                                  "enable_thinking": think, "continue_final_message": cont,
                                  "text": text, "ids": ids}, ensure_ascii=False))


if __name__ == "__main__":
    main()
