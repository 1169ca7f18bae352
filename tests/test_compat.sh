#!/bin/sh
# test_compat.sh -- the clients of the engines users already run (vLLM, TEI,
# OpenAI) against the real server, over the loopback TCP listener and the
# Unix socket: tests/test_compat.py, with the openai client library and the
# request shapes of the vLLM and TEI docs. Skips (77) when the Python
# packages are missing: tools/deps.sh installs them with pip.
set -u
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is not installed"; exit 77; }
if ! python3 -c 'import openai, requests' 2>/dev/null; then
	echo "the openai and requests Python packages are missing (tools/deps.sh installs them with pip)"
	exit 77
fi
exec python3 tests/test_compat.py "${ZPREFILL:-./zprefill}"
