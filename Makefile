# zprefill -- hand-written Makefile. `make` builds ./zprefill (CPU path); `make test`
# builds and runs every test; `make run` runs the main job on the embedded default.
# Sanitizers: `make asan`, `make tsan`; fuzzing: `make fuzz`.

CC      ?= cc
# src/ has one folder (room) per part of the system; each is on the include path
ROOMS   := base model device cpu cuda engine serve cli
BUILD   ?= build
OPT     ?= -O3
CFLAGS  := -std=gnu11 $(OPT) -g -march=x86-64-v3 -ffp-contract=off -pthread $(ROOMS:%=-Isrc/%) -Iipc -Ikernels \
           -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter $(EXTRA_CFLAGS)
LDLIBS  := -lcjson -luring -linih -lnuma -lm -lpthread
LDFLAGS += $(EXTRA_LDFLAGS)

NVCC    := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
NCCL_H  := $(firstword $(wildcard /usr/local/cuda/include/nccl.h /usr/include/nccl.h))
CU_SRC  := $(wildcard kernels/*.cu)



# The CUDA backend (src/cuda/backend_cuda.c over devrt_cuda.c, kernels/*.cu):
# built where nvcc and cuBLAS are; the sim device (devrt_sim.c, the kernels'
# host twins) is in every build. NOCUDA=1 builds without it.
CUBLASLT := $(if $(NVCC),$(wildcard $(patsubst %/bin/nvcc,%,$(NVCC))/lib64/libcublasLt.so))
ifneq ($(and $(CUBLASLT),$(if $(NOCUDA),,1)),)
CUDA_ROOT    := $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS       += -DZP_CUDA_BACKEND -I$(CUDA_ROOT)/include
NVCCFLAGS    := -O3 -std=c++17 -fmad=false -Ikernels -gencode arch=compute_90a,code=sm_90a \
                -gencode arch=compute_80,code=sm_80 -Werror all-warnings -Xcompiler -Wall,-Werror -Xptxas -v
KERNEL_OBJ   := $(CU_SRC:kernels/%.cu=$(BUILD)/kernels/%.o)
LDLIBS       += -L$(CUDA_ROOT)/lib64 -Wl,-rpath,$(CUDA_ROOT)/lib64 -lcublasLt -lcublas -lcudart -ldl -lstdc++
# the nccl transport on cuda executors (src/cuda/transport_cuda.c) where NCCL is
ifneq ($(NCCL_H),)
CFLAGS       += -DZP_HAVE_NCCL
LDLIBS       += -lnccl
endif
endif

ifeq ($(MAKELEVEL),0)
$(info build: CPU and the sim test device; CUDA backend $(if $(KERNEL_OBJ),built too ($(words $(CU_SRC)) kernels; it runs where a GPU is),not built ($(if $(NVCC),NOCUDA=1,no nvcc here): nothing else needs it)))
endif

LIB_SRC := $(filter-out src/cli/main.c,$(wildcard $(ROOMS:%=src/%/*.c)))
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard ipc/*.c)) $(KERNEL_OBJ)
HDRS    := $(wildcard src/*/*.h ipc/*.h kernels/*.h)
TESTS_C := $(wildcard tests/test_*.c)
TESTS   := $(TESTS_C:tests/%.c=$(BUILD)/%)

# ---- v1 kernels and `make gpu` (cuda-fast). The v1 host twins
# (kernels/*_v1_host.c) are part of libzp everywhere. GPU_STATIC=1 (set by
# `make gpu`, into build/gpu/) adds every kernels/*.cu object and links what a
# GPU box without -dev packages lacks statically: cudart, liburing, libinih,
# libnuma; libcjson (no .a in Debian) is copied beside the
# binary; cuBLAS/cuBLASLt/NCCL are found at run time through the RUNPATH below
# (the CUDA install, PyTorch's nvidia/*/lib wheels) or LD_LIBRARY_PATH.
CFLAGS  += -Ikernels
KV1_HOST := $(wildcard kernels/*_v1_host.c)
LIB_OBJ += $(KV1_HOST:kernels/%.c=$(BUILD)/kernels/%.o)
HDRS    += $(wildcard kernels/*.h)
ifneq ($(GPU_STATIC),)
GPU_CUDA  := $(patsubst %/bin/nvcc,%,$(NVCC))
GPU_PY    := /opt/torch/.venv/lib/python3.12/site-packages /usr/local/lib/python3.12/dist-packages /usr/lib/python3/dist-packages
GPU_NOSP  :=
GPU_RPATH := $(subst $(GPU_NOSP) ,,$$ORIGIN:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib$(foreach p,$(GPU_PY),$(foreach l,cublas nccl cu13 cuda_runtime,:$(p)/nvidia/$(l)/lib)))
LIB_OBJ   := $(sort $(LIB_OBJ) $(CU_SRC:kernels/%.cu=$(BUILD)/kernels/%.o))
CFLAGS    += -DZP_HAVE_CUDA -I$(GPU_CUDA)/include
LDLIBS    := -Wl,-Bstatic -luring -linih -lnuma -Wl,-Bdynamic -lcjson -lm \
             $(GPU_CUDA)/lib64/libcudart_static.a -lpthread -ldl -lrt \
             -Wl,--as-needed -L$(GPU_CUDA)/lib64 -lcublasLt -lcublas -lnccl -lstdc++ -Wl,--no-as-needed \
             -Wl,--enable-new-dtags,-rpath,'$(GPU_RPATH)'
endif

$(BUILD)/kernels/%.o: kernels/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

DEPS_OK := $(BUILD)/.deps-ok
BIN     ?= zprefill

.PHONY: all deps test run asan tsan fuzz fuzz-build clean bench install uninstall

all: $(BIN) $(BUILD)/zprefill.1

$(DEPS_OK): tools/deps.sh
	@mkdir -p $(BUILD)
	@tools/deps.sh
	@touch $@

deps: $(DEPS_OK)

$(BUILD)/%.o: src/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# ptxas's register and spill lines kept in $@.ptxas; spills printed
$(BUILD)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@ 2> $@.ptxas || { cat $@.ptxas; exit 1; }
	@grep -h "spill" $@.ptxas | grep -v " 0 bytes spill stores, 0 bytes spill loads" | sed 's|^|$<: |' || true

$(BUILD)/ipc/%.o: ipc/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# rebuilt whole: `ar r` never drops a member whose source is gone
$(BUILD)/libzp.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/cli/main.o $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_%: tests/test_%.c tests/check.h tests/serve_proc.h tests/reqs.h tests/ckpt_edit.h tests/gemm_check.h $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

# the man page: flags, ini keys and endpoints from the binary's own tables
$(BUILD)/gen_man: tools/gen_man.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/zprefill.1: $(BUILD)/gen_man
	$(BUILD)/gen_man > $@

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the binary, the man page, the
# systemd units (paths filled in) and the example ini (to SYSCONFDIR only when
# none is there: an edited one is never overwritten).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/zprefill
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
UNIT_SED   := -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

install: $(BIN) $(BUILD)/zprefill.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/zprefill
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/zprefill
	install -m 0644 $(BUILD)/zprefill.1 $(DESTDIR)$(MANDIR)/man1/zprefill.1
	install -m 0644 conf/zprefill.ini $(DESTDIR)$(DOCDIR)/zprefill.ini
	test -e $(DESTDIR)$(SYSCONFDIR)/zprefill/zprefill.ini || \
		install -m 0644 conf/zprefill.ini $(DESTDIR)$(SYSCONFDIR)/zprefill/zprefill.ini
	sed $(UNIT_SED) conf/zprefill.service > $(DESTDIR)$(UNITDIR)/zprefill.service
	sed $(UNIT_SED) conf/zprefill.socket > $(DESTDIR)$(UNITDIR)/zprefill.socket
	chmod 0644 $(DESTDIR)$(UNITDIR)/zprefill.service $(DESTDIR)$(UNITDIR)/zprefill.socket

# removes what install put there, except an ini that was edited since
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/zprefill $(DESTDIR)$(MANDIR)/man1/zprefill.1 \
		$(DESTDIR)$(UNITDIR)/zprefill.service $(DESTDIR)$(UNITDIR)/zprefill.socket \
		$(DESTDIR)$(DOCDIR)/zprefill.ini
	-cmp -s conf/zprefill.ini $(DESTDIR)$(SYSCONFDIR)/zprefill/zprefill.ini && \
		rm -f $(DESTDIR)$(SYSCONFDIR)/zprefill/zprefill.ini
	-rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/zprefill 2>/dev/null

test: $(BIN) $(BUILD)/zprefill.1 $(TESTS) $(BUILD)/loadgen $(BUILD)/simulate
	@BUILD=$(BUILD) ZPREFILL=./$(BIN) tests/run.sh $(TESTS) $(wildcard tests/test_*.sh)

# The embedded default: `zprefill serve` on models/default (a small Qwen3-MoE
# trained on WordNet by tools/train_default.py, committed: no torch needed),
# answering requests a person can judge through its Unix socket (tools/demo.sh),
# then stopping on SIGTERM.
run: $(BIN)
	@ZPREFILL=./$(BIN) tools/demo.sh

$(BUILD)/bench_gemm: tools/bench_gemm.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a -ldnnl $(LDLIBS)

$(BUILD)/bench_fp8: tools/bench_fp8.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/loadgen: tools/loadgen.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/bench_siblings: tools/bench_siblings.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

$(BUILD)/simulate: tools/simulate.c tools/sim/costmodel.c tools/sim/costmodel.h $(BUILD)/libzp.a
	$(CC) $(CFLAGS) -Itools/sim -o $@ tools/simulate.c tools/sim/costmodel.c $(BUILD)/libzp.a $(LDLIBS)

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
	$(MAKE) BUILD=build-tsan BIN=build-tsan/zprefill OPT=-O1 EXTRA_CFLAGS="-fsanitize=thread -DZP_KV_AUTO_HOST_CAP=268435456ul" EXTRA_LDFLAGS="-fsanitize=thread" test

# Fuzzing: one libFuzzer target per parser a client or a file reaches
# (tests/fuzz_NAME.c, seeds in tests/fuzz-corpus/NAME/): the HTTP head, every
# request family's JSON, the safetensors header and shard index, config.json,
# tokenizer.json (the loader) and the tokenizer (encode/decode), the ini file.
# The library is built once more with clang, instrumented (build/fuzz/libzp.a);
# `make fuzz` runs each target FUZZ_SECONDS (tools/fuzz_run.sh: a longer run
# per target, its executions, coverage and findings as a table).
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_TARGETS := http request safetensors config tokenizer_json tokenizer ini
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -march=x86-64-v3 -fsanitize=fuzzer-no-link,address,undefined \
                $(ROOMS:%=-Isrc/%) -Iipc -Ikernels
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC) $(wildcard ipc/*.c) $(KV1_HOST))

$(FUZZ_BUILD)/obj/%.o: %.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libzp.a: $(FUZZ_LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz_%.c $(FUZZ_BUILD)/libzp.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libzp.a \
		-lcjson -luring -linih -lnuma -lm -lpthread

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) tools/fuzz_run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-asan build-tsan zprefill

# ---- `make gpu` (cuda-fast): build/gpu/zprefill, the GPU tests and tools beside
# it, for a GPU box without -dev packages (tools/gpu_check.sh runs them there).
.PHONY: gpu
GPU_TESTS := $(filter $(TESTS_C:tests/%.c=%),test_kernels_v1 test_backend_ops test_golden test_asyncep)
gpu:
	@test -n "$(NVCC)" || { echo "make gpu: nvcc not found"; exit 1; }
	$(MAKE) GPU_STATIC=1 BUILD=build/gpu BIN=build/gpu/zprefill build/gpu/zprefill \
		$(GPU_TESTS:%=build/gpu/%) build/gpu/bench_cublas build/gpu/libcjson.so.1
	@ldd build/gpu/zprefill | sed 's/^/ldd zprefill: /'

build/gpu/libcjson.so.1:
	@mkdir -p $(dir $@)
	cp -L $$(ldconfig -p | awk '/libcjson.so.1 .*x86-64/ {print $$NF; exit}') $@

$(BUILD)/bench_cublas: tools/bench_cublas.c $(BUILD)/libzp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libzp.a $(LDLIBS)

# The kernels where no other block of this Makefile builds them: ptxas's
# register and spill lines kept in $@.ptxas; a spill in a v1 kernel fails.
ifeq ($(NVCCFLAGS),)
NVCCFLAGS := -O3 -std=c++17 -fmad=false -Ikernels -gencode arch=compute_90a,code=sm_90a \
             -gencode arch=compute_80,code=sm_80 -Werror all-warnings -Xcompiler -Wall,-Werror -Xptxas -v
$(BUILD)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@ 2> $@.ptxas || { cat $@.ptxas; exit 1; }
	@s=$$(grep -h "spill" $@.ptxas | grep -v " 0 bytes spill stores, 0 bytes spill loads"); \
	if [ -n "$$s" ]; then echo "$$s" | sed 's|^|$<: |' >&2; \
		case $< in *_v1.cu) rm -f $@; echo "$<: a v1 kernel spills" >&2; exit 1;; esac; fi
endif
