#!/bin/sh
# test_peers.sh -- the peers' own HTTP tests against zprefill, changing only
# the server fixture (tests/peers/shim/tests/utils.py starts zprefill where
# they start vLLM): vLLM's tests/entrypoints/pooling/score/test_online_rerank.py
# and test_online_score.py, and TEI's OpenAPI document
# (tests/peers/test_tei_openapi.py validates zprefill's answers against it).
# Their files are their code, not committed: tools/fetch_peer_tests.sh puts
# them in build/peers (or ZP_PEER_TESTS). Each test's outcome must be the one
# tests/peers/expected.txt gives, with its reason (a reference model that is
# not here; a feature not offered). Skips (77) without the files or pytest.
set -u
cd "$(dirname "$0")/.."
DIR=${ZP_PEER_TESTS:-build/peers}
[ -d "$DIR/vllm" ] || { echo "the peers' test files are not here ($DIR): tools/fetch_peer_tests.sh downloads them (needs github); they are the peers' code and are not committed"; exit 77; }
python3 -c 'import pytest, pytest_asyncio, pydantic, requests, jsonschema' 2>/dev/null ||
	{ echo "pytest, pytest-asyncio, pydantic, requests or jsonschema is missing (pip install them)"; exit 77; }
P=$PWD/tests/peers/shim:$PWD/tests/peers
# vLLM's protocol models and torch where they are not installed: the shims
# hold the response fields vLLM declares and the few torch calls the tests make
python3 -c 'import vllm' 2>/dev/null || P=$P:$PWD/tests/peers/shim_vllm
python3 -c 'import torch' 2>/dev/null || P=$P:$PWD/tests/peers/shim_torch
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
cp "$DIR"/vllm/test_*.py tests/peers/test_tei_openapi.py "$R/"
ZP_PEER_TESTS=$(cd "$DIR" && pwd) ZPREFILL=$(cd "$(dirname "${ZPREFILL:-./zprefill}")" && pwd)/$(basename "${ZPREFILL:-./zprefill}") \
PYTHONPATH=$P python3 -m pytest -v -rfE -p no:cacheprovider -p zp_peer_fixtures --rootdir "$R" \
	-o asyncio_mode=strict "$R" > "$R/out" 2>&1
# "test_x.py::test_y[p] PASSED [ 5%]" -> "PASSED test_x.py::test_y[p]"
sed -nE 's|^(.*/)?(test_[^ ]*::[^ ]*) (PASSED\|FAILED\|SKIPPED\|ERROR).*|\3 \2|p' "$R/out" | sort > "$R/got"
fail=0
while read -r want id reason; do
	case $want in ''|'#'*) continue;; esac
	got=$(grep -F " $id" "$R/got" | head -1 | cut -d' ' -f1)
	if [ "$got" = "$want" ]; then
		echo "ok   $want $id${reason:+ ($reason)}"
	else
		echo "FAIL $id: ${got:-not run}, want $want${reason:+ ($reason)}"; fail=1
	fi
done < tests/peers/expected.txt
n=$(wc -l < "$R/got"); p=$(grep -c '^PASSED' "$R/got")
echo "peers' tests: $p of $n passed ($(grep -c '^FAILED' "$R/got") failed, $(grep -c '^SKIPPED' "$R/got") skipped, $(grep -c '^ERROR' "$R/got") errors)"
[ $fail -eq 0 ] || { tail -n 80 "$R/out"; }
exit $fail
