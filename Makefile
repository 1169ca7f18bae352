# zprefill -- hand-written Makefile. `make` builds ./zprefill (CPU path); `make test`
# builds and runs every test; `make run` runs the main job on the embedded default.
# Sanitizers: `make asan`, `make tsan`; fuzzing: `make fuzz`.

CC      ?= cc
# src/ has one folder (room) per part of the system; each is on the include path
ROOMS   := base model cpu engine serve cuda cli
BUILD   ?= build
OPT     ?= -O3
CFLAGS  := -std=gnu11 $(OPT) -g -march=x86-64-v3 -ffp-contract=off -pthread $(ROOMS:%=-Isrc/%) -Iipc \
           -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter $(EXTRA_CFLAGS)
LDLIBS  := -lcjson -lpcre2-8 -lutf8proc -luring -linih -lnuma -lm -lpthread
LDFLAGS += $(EXTRA_LDFLAGS)

NVCC    := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
NCCL_H  := $(firstword $(wildcard /usr/local/cuda/include/nccl.h /usr/include/nccl.h))
CU_SRC  := $(wildcard kernels/*.cu)


# GPU transports (host code): built into their GPU test when CUDA and NCCL are here.
ifneq ($(and $(NVCC),$(NCCL_H)),)
CUDA_HOME   := $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_CFLAGS := -DZP_HAVE_CUDA -I$(CUDA_HOME)/include
CUDA_SRC    := src/cuda/transport_cuda.c
CUDA_LIBS   := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lnccl
endif

ifeq ($(MAKELEVEL),0)
$(info build: CPU path; nvcc: $(if $(NVCC),$(NVCC) ($(words $(CU_SRC)) CUDA kernels to build),not found); NCCL: $(if $(NCCL_H),$(NCCL_H),not found); GPU transports (src/cuda/transport_cuda.c, in build/test_transport_cuda): $(if $(CUDA_SRC),built,not built))
endif

LIB_SRC := $(filter-out src/cli/main.c src/cuda/%,$(wildcard $(ROOMS:%=src/%/*.c)))
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard ipc/*.c))
HDRS    := $(wildcard src/*/*.h ipc/*.h)
TESTS_C := $(wildcard tests/test_*.c)
TESTS   := $(TESTS_C:tests/%.c=$(BUILD)/%)

DEPS_OK := $(BUILD)/.deps-ok
BIN     ?= zprefill

.PHONY: all deps test run asan tsan fuzz clean bench

all: $(BIN)

$(DEPS_OK): tools/deps.sh
	@mkdir -p $(BUILD)
	@tools/deps.sh
	@touch $@

deps: $(DEPS_OK)

$(BUILD)/%.o: src/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/ipc/%.o: ipc/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# rebuilt whole: `ar r` never drops a member whose source is gone
$(BUILD)/libzp.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/cli/main.o $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_%: tests/test_%.c tests/check.h $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

# skips (77) where CUDA was not found at build time or no GPU is present
$(BUILD)/test_transport_cuda: tests/test_transport_cuda.c src/cuda/transport_cuda.c $(HDRS) $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(CUDA_CFLAGS) $(LDFLAGS) -o $@ $< $(CUDA_SRC) $(BUILD)/libzp.a $(LDLIBS) $(CUDA_LIBS)

test: $(BIN) $(TESTS) $(BUILD)/loadgen
	@BUILD=$(BUILD) ZPREFILL=./$(BIN) tests/run.sh $(TESTS) $(wildcard tests/test_*.sh)

# The embedded default: `zprefill serve` on a tiny random model with a small
# Qwen-style tokenizer (tests/models/tiny-tok), answering a few requests through
# its Unix socket (tools/demo.sh), then stopping on SIGTERM.
run: $(BIN)
	@ZPREFILL=./$(BIN) tools/demo.sh

$(BUILD)/bench_gemm: tools/bench_gemm.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a -ldnnl $(LDLIBS)

$(BUILD)/loadgen: tools/loadgen.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/bench_siblings: tools/bench_siblings.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/bench_peak: tools/bench_peak.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

bench: $(BIN) $(BUILD)/bench_gemm $(BUILD)/bench_peak
	$(BUILD)/bench_peak 2
	OMP_NUM_THREADS=2 $(BUILD)/bench_gemm 2
	@test -f $(BUILD)/models/small/config.json || python3 tools/gen_model.py --preset small --out $(BUILD)/models/small
	./$(BIN) bench --model $(BUILD)/models/small --tokens 512 --seqs 1 --threads 2

asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/zprefill OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" EXTRA_LDFLAGS="-fsanitize=address,undefined" test

tsan:
	$(MAKE) BUILD=build-tsan BIN=build-tsan/zprefill OPT=-O1 EXTRA_CFLAGS="-fsanitize=thread" EXTRA_LDFLAGS="-fsanitize=thread" test

FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined $(ROOMS:%=-Isrc/%) -Iipc -march=x86-64-v3
# Each target runs FUZZ_SECONDS on a corpus seeded from tests/fuzz-corpus/.
FUZZ_TARGETS := safetensors request http tokenizer
FUZZ_SRC_safetensors := src/model/safetensors.c src/base/json.c src/base/util.c
FUZZ_SRC_request := $(wildcard src/serve/api*.c) src/serve/req_json.c src/serve/router.c src/serve/http.c src/serve/metrics.c src/engine/request.c src/model/tokenizer.c src/base/region.c src/base/json.c src/base/util.c
FUZZ_SRC_http := src/serve/http.c src/base/json.c src/base/util.c
FUZZ_SRC_tokenizer := src/model/tokenizer.c src/base/json.c src/base/util.c
fuzz: | $(DEPS_OK)
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(BUILD)/fuzz/corpus-$$t; \
		cp -n tests/fuzz-corpus/$$t/* $(BUILD)/fuzz/corpus-$$t/ 2>/dev/null || true; \
		case $$t in safetensors) srcs="$(FUZZ_SRC_safetensors)";; request) srcs="$(FUZZ_SRC_request)";; \
			http) srcs="$(FUZZ_SRC_http)";; tokenizer) srcs="$(FUZZ_SRC_tokenizer)";; esac; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_$$t tests/fuzz_$$t.c $$srcs -lcjson -lpcre2-8 -lutf8proc -lm; \
		$(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			$(BUILD)/fuzz/corpus-$$t 2>&1 | tail -n 2; \
	done

clean:
	rm -rf build build-asan build-tsan zprefill
