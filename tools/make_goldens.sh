#!/bin/sh
# make_goldens.sh -- regenerate the committed test checkpoints (tests/models/) and
# their transformers goldens (tests/golden/). Needs numpy, torch, transformers.
set -eu
cd "$(dirname "$0")/.."
for p in odd mlp-only sparse-step no-norm-topk tied-sharded dense hd64; do
	rm -rf "tests/models/$p"
	python3 tools/gen_model.py --preset "$p" --out "tests/models/$p"
	python3 tools/golden.py --model "tests/models/$p" --out "tests/golden/$p.jsonl"
done
# the other checkpoint dtypes: f16 and f32 tensors
for spec in "odd-f16 odd f16" "dense-f32 dense f32"; do
	set -- $spec
	rm -rf "tests/models/$1"
	python3 tools/gen_model.py --preset "$2" --dtype "$3" --seed 5 --out "tests/models/$1"
	python3 tools/golden.py --model "tests/models/$1" --out "tests/golden/$1.jsonl"
done
# FP8 checkpoints (e4m3 + 128x128 block scales) and their goldens, computed by
# transformers on each one's exact dequantised f32 twin (not committed). dense-fp8
# is dense quantised as --dtype fp8 does it (test_golden checks that bit for bit);
# fp8-odd has partial edge blocks, a dense layer, three shards and BF16 scales.
for spec in "dense-fp8 dense f32" "fp8-odd fp8-odd bf16"; do
	set -- $spec
	rm -rf "tests/models/$1" /tmp/zp-twin-$1
	python3 tools/gen_model.py --preset "$2" --fp8 --fp8-scale-dtype "$3" --twin /tmp/zp-twin-$1 --out "tests/models/$1"
	python3 tools/golden.py --model /tmp/zp-twin-$1 --twin-of "tests/models/$1" --out "tests/golden/$1.jsonl"
	rm -rf /tmp/zp-twin-$1
done
# the server's model (tests, make run): tiny, with the small trained tokenizer
rm -rf tests/models/tiny-tok
python3 tools/gen_model.py --preset tiny --tokenizer tests/data/small-tokenizer.json --out tests/models/tiny-tok
# tokenizer goldens (needs the tokenizers package; the Qwen3 one where present)
python3 tools/tok_golden.py --tokenizer tests/data/small-tokenizer.json --out tests/golden/tok-small.jsonl
python3 tools/tok_golden.py --tokenizer tests/data/small-tokenizer.json --gpt2 --out tests/golden/tok-small-gpt2.jsonl
q=../shared/data/qwen3-tokenizer/tokenizer.json
[ -f "$q" ] && python3 tools/tok_golden.py --tokenizer "$q" --out tests/golden/tok-qwen3.jsonl
exit 0
