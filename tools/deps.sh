#!/bin/sh
# deps.sh -- install what zprefill needs on Debian, if missing. Run as root
# (make calls it; it prints each package it installs). --check only reports.
set -eu
# cjson: JSON; liburing: the reactor; libinih: the serve config (the tokenizer
# carries its own Unicode tables: src/model/unicode_tables.c); curl: the end-to-end test;
# clang + libclang-rt: libFuzzer (make fuzz); libdnnl: the oneDNN side of
# build/bench_gemm; libnuma: NUMA placement of the arena and executor threads.
PKGS="build-essential libcjson-dev liburing-dev libinih-dev curl
      libdnnl-dev clang libclang-rt-14-dev python3 python3-pip libnuma-dev"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "${1:-}" = "--check" ]; then
		echo "deps: missing:$missing"; exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing:$missing -- run 'sudo tools/deps.sh'" >&2; exit 1
	fi
	echo "deps: installing:$missing"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi
# tools/gen_model.py (make run, benchmarks) needs numpy; tests do not.
if ! python3 -c 'import numpy' 2>/dev/null; then
	[ "${1:-}" = "--check" ] && { echo "deps: missing: numpy"; exit 1; }
	echo "deps: installing: numpy (pip)"
	python3 -m pip install numpy 2>/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y python3-numpy
fi
# tests/test_compat.sh drives the server with the clients of other engines:
# the openai package and requests (pip; without them that test skips).
if ! python3 -c 'import openai, requests' 2>/dev/null; then
	[ "${1:-}" = "--check" ] && { echo "deps: missing: openai requests (pip)"; exit 1; }
	echo "deps: installing: openai requests (pip)"
	python3 -m pip install -q openai requests ||
		python3 -m pip install -q --break-system-packages openai requests ||
		echo "deps: pip could not install openai, requests: tests/test_compat.sh will skip" >&2
fi
exit 0
