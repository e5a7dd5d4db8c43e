# SLM-Copilot: one non-recursive GNU Makefile (STYLE.md 13).
#
#   make              build build/rel/slm (hardened release)
#   make SAN=asan     build under AddressSanitizer + UndefinedBehaviorSanitizer
#   make SAN=tsan     build under ThreadSanitizer
#   make run          install missing packages, build, make the demo model, serve it
#   make test         install missing packages, then every test optimised and under ASan+UBSan
#   make check        unit + integration tests of one variant (SAN=...)
#   make fuzz         build the libFuzzer targets (clang)
#   make fuzz-smoke   run each fuzzer FUZZ_SECONDS on its corpus
#   make lint         clang-format check + tools/lint.sh
#   make bench        side-by-side benchmark with llama.cpp (see bench/RESULTS.md)

CC      ?= cc
SAN     ?=
OPT     ?= 2
BUILD   := build/$(if $(SAN),$(SAN),rel)
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
           -Wvla -Wimplicit-fallthrough -Wnull-dereference -Werror
HARDEN  := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection \
           -fcf-protection -fPIE
CFLAGS  := -std=c17 -D_GNU_SOURCE -g -O$(OPT) $(WARN) -Isrc -Itests -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := -pie -Wl,-z,relro,-z,now,-z,noexecstack
LDLIBS  := -lm -lpthread

SECCOMP_LIBS := $(shell pkg-config --libs libseccomp 2>/dev/null || echo -lseccomp)
SSL_LIBS     := $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto)
LDLIBS  += $(SECCOMP_LIBS) $(SSL_LIBS)

ifeq ($(SAN),asan)
  CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -fPIE
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SAN),tsan)
  CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer -fPIE
  LDFLAGS += -fsanitize=thread
else ifeq ($(SAN),fuzz)
  CC      := clang
  CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fPIE \
             -DSLM_FUZZING=1
  LDFLAGS += -fsanitize=fuzzer,address,undefined
else
  CFLAGS  += $(HARDEN)
endif

# Kernels: each instruction set in its own file with its own flags, chosen at
# run time by src/engine/cpu.c; never -march=native for the whole tree.
KFLAGS_AVX2   := -O3 -mavx2 -mfma -mf16c -mbmi2
KFLAGS_AVX512 := -O3 -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                 -mavx512vnni -mavx512bf16 -mavx512vbmi
KFLAGS        := -O3

LIB_SRC   := $(sort $(wildcard src/core/*.c src/engine/*.c src/chat/*.c src/sandbox/*.c \
                               src/http/*.c src/api/*.c src/gateway/*.c))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
UNIT_SRC  := $(sort $(wildcard tests/unit/*/*.c)) tests/harness/t.c
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ  := $(UNIT_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libslm.a
BIN       := $(BUILD)/slm
UNIT_BIN  := $(BUILD)/unit_tests
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all run test check check-unit check-integ fuzz fuzz-smoke lint deps clean bench demo-model \
        check-deployment

all: $(BIN)

$(BUILD)/src/engine/kernels_avx2.o: CFLAGS += $(KFLAGS_AVX2)
$(BUILD)/src/engine/kernels_avx512.o: CFLAGS += $(KFLAGS_AVX512)
$(BUILD)/src/engine/kernels_avx512_float.o: CFLAGS += $(KFLAGS_AVX512)
$(BUILD)/src/engine/kernels_scalar.o: CFLAGS += $(KFLAGS)
$(BUILD)/tests/unit/engine/test_kernels.o: CFLAGS += -O2

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(UNIT_BIN): $(UNIT_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(LIB) $(LDLIBS)

# ---- the README's two commands ----

MODEL ?=
DEMO_MODEL := build/models/demo-q8_0.gguf
# Extra flags for `make run`, e.g. SERVE_ARGS="--host 0.0.0.0 --port 8443".
SERVE_ARGS ?=

deps:
	@tools/deps.sh

demo-model: $(BIN)
	@tools/demo-model.sh $(BIN) $(DEMO_MODEL)

run: deps
	@$(MAKE) --no-print-directory all
	@if [ -z "$(MODEL)" ]; then $(MAKE) --no-print-directory demo-model; fi
	@m="$(if $(MODEL),$(MODEL),$(DEMO_MODEL))"; \
	  echo "slm: serving $$m (make run MODEL=path/to/model.gguf for another; Ctrl-C stops)" >&2; \
	  exec $(BIN) serve -m "$$m" $(SERVE_ARGS)

# Every stage runs even if an earlier one failed; tools/total.sh counts a
# stage that left no summary (e.g. its build failed) as a failure.
#
# Timeline (made for 2 cores; TEST_JOBS tests at a time, see tests/run.sh):
#   foreground                      background
#   lint, release build             fuzz build (nice), then ASan build (nice)
#   release unit + integration      (builds use the CPU the tests leave idle)
#   wait for the ASan build         fuzz smoke (1 core; starts after the
#   ASan unit + integration          release tests), ASan build
# Background output goes to build/log-*.txt, shown when the stage failed (the
# fuzz smoke's always).
# The sanitizer builds of `make test` compile the kernels at SAN_KOPT instead
# of -O3: under ASan+UBSan kernels_avx512.c takes ~100 s of CPU at -O3 and
# ~35 s at -O1 (the release build still tests the -O3 kernels).
SUMMARIES := build/summary-lint.txt \
             $(foreach v,rel asan,build/summary-$(v)-unit.txt build/summary-$(v)-integ.txt) \
             build/summary-fuzz.txt
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
export TEST_JOBS
SAN_KOPT  ?= -O1
SAN_KFLAGS = KFLAGS_AVX2='$(subst -O3,$(SAN_KOPT),$(KFLAGS_AVX2))' \
             KFLAGS_AVX512='$(subst -O3,$(SAN_KOPT),$(KFLAGS_AVX512))' \
             KFLAGS='$(subst -O3,$(SAN_KOPT),$(KFLAGS))'
# wait_file FILE: waits (at most 2 hours) until FILE is not empty.
wait_file = t0=$$(date +%s); \
	while [ ! -s $(1) ] && [ $$(( $$(date +%s) - t0 )) -lt 7200 ]; do sleep 1; done
# wait_for NAME[,1]: waits for build/rc-NAME.txt; prints build/log-NAME.txt if
# that stage failed (always with 1).
wait_for = $(call wait_file,build/rc-$(1).txt); \
	echo "\# $(1): waited $$(( $$(date +%s) - t0 )) s"; \
	[ "$(2)" != 1 ] && [ "$$(cat build/rc-$(1).txt)" = 0 ] || cat build/log-$(1).txt
test: deps
	@mkdir -p build && rm -f build/summary-*.txt build/log-*.txt build/rc-*.txt
	@t0=$$(date +%s); \
	( tools/lint.sh >build/log-lint.txt 2>&1; echo $$? >build/rc-lint.txt ) & \
	( if command -v clang >/dev/null 2>&1; then \
	    nice -n 10 $(MAKE) --no-print-directory -j$(TEST_JOBS) SAN=fuzz $(SAN_KFLAGS) \
	      $(FUZZ_BIN) >build/log-fuzz-build.txt 2>&1; \
	  fi; echo $$? >build/rc-fuzz-build.txt; \
	  ( $(call wait_file,build/rc-rel.txt); \
	    $(MAKE) --no-print-directory fuzz-smoke $(SAN_KFLAGS) >build/log-fuzz-smoke.txt 2>&1; \
	    echo $$? >build/rc-fuzz-smoke.txt ) & \
	  nice -n 10 $(MAKE) --no-print-directory -j$(TEST_JOBS) SAN=asan $(SAN_KFLAGS) \
	    build/asan/slm build/asan/unit_tests >build/log-asan-build.txt 2>&1; \
	  echo $$? >build/rc-asan-build.txt ) & \
	$(MAKE) --no-print-directory -j$(TEST_JOBS) SAN= build/rel/slm build/rel/unit_tests; \
	echo "# release build: $$(( $$(date +%s) - t0 )) s"
	@$(call wait_for,lint,1); \
	if [ "$$(cat build/rc-lint.txt)" = 0 ]; then echo "1 passed, 0 failed" >build/summary-lint.txt; \
	else echo "0 passed, 1 failed" >build/summary-lint.txt; fi
	-@$(MAKE) --no-print-directory check SAN=
	@echo done >build/rc-rel.txt
	@$(call wait_for,fuzz-build); $(call wait_for,asan-build)
	-@$(MAKE) --no-print-directory check SAN=asan $(SAN_KFLAGS)
	@echo "== fuzz smoke"; $(call wait_for,fuzz-smoke,1)
	@tools/total.sh $(SUMMARIES)

# ---- tests ----

# CHECK_PART=unit or integ runs only that half.
CHECK_PART ?=
check: $(BIN) $(UNIT_BIN)
	@tests/run.sh $(BUILD) $(if $(SAN),$(SAN),rel) $(CHECK_PART)

check-unit: $(UNIT_BIN)
	@$(UNIT_BIN)

check-integ: $(BIN)
	@SLM=$(BIN) tests/integration/run.sh

fuzz:
	@$(MAKE) --no-print-directory SAN=fuzz $(FUZZ_BIN)

build/fuzz/%: tests/fuzz/%.c build/fuzz/libslm.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< build/fuzz/libslm.a $(LDLIBS)

FUZZ_SECONDS ?= 20
fuzz-smoke:
	@if command -v clang >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory fuzz && tools/fuzz-smoke.sh $(FUZZ_SECONDS); \
	else echo "fuzz-smoke: clang not installed, skipped" >&2; fi

lint:
	@tools/lint.sh

# Post-deployment checks against any running instance:
#   make check-deployment ENDPOINT=https://host:8443 KEY=@/path/to/keyfile
check-deployment:
	@tests/deploy-check.sh "$(ENDPOINT)" "$(KEY)"

bench: $(BIN)
	@bench/run.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
