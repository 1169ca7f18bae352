#!/bin/sh
# test_chat_openai.sh -- /v1/chat/completions and /v1/completions with
# max_tokens 1 through the openai client library's own calls, against the
# real server on models/default: tests/test_chat_openai.py. Skips (77) when
# the Python packages are missing: tools/deps.sh installs them with pip.
set -u
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is not installed"; exit 77; }
if ! python3 -c 'import openai, requests' 2>/dev/null; then
	echo "the openai and requests Python packages are missing (tools/deps.sh installs them with pip)"
	exit 77
fi
exec python3 tests/test_chat_openai.py "${ZPREFILL:-./zprefill}"
