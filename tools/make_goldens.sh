#!/bin/sh
# make_goldens.sh -- regenerate the committed test checkpoints (tests/models/) and
# their transformers goldens (tests/golden/). Needs numpy, torch, transformers.
set -eu
cd "$(dirname "$0")/.."
for p in odd mlp-only sparse-step no-norm-topk tied-sharded dense; do
	rm -rf "tests/models/$p"
	python3 tools/gen_model.py --preset "$p" --out "tests/models/$p"
	python3 tools/golden.py --model "tests/models/$p" --out "tests/golden/$p.jsonl"
done
