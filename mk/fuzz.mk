# Fuzzing with libFuzzer: `make fuzz FUZZ_SECONDS=N` builds every tests/fuzz/fuzz_*.c target with
# clang (-fsanitize=fuzzer,address,undefined) into build/fuzz/ and runs each for N seconds, FUZZ_JOBS
# at a time, on its seed corpus tests/fuzz/corpus/<target>/ (new entries go to build/fuzz/corpus/).
# Any crash, leak, UB report or timeout fails the target; the input is kept in build/fuzz/artifacts/.
# Included by the Makefile, whose WARN, CPPFLAGS, PKG_CONFIG and PKGS it uses.

FUZZ_CC        ?= clang
FUZZ_SECONDS   ?= 60
FUZZ_JOBS      ?= 2
# Seconds one input may take before it counts as a hang.
FUZZ_TIMEOUT   ?= 10
FUZZ_DIR       := build/fuzz
FUZZ_TARGETS   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS      := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_OBJS      := $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(wildcard src/*.c))
FUZZ_MK        := $(lastword $(MAKEFILE_LIST))
# Every report is fatal: no sanitizer keeps going after the first finding.
FUZZ_SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS    ?= -g -O1
FUZZ_ALL_CFLAGS = $(FUZZ_CFLAGS) -fno-omit-frame-pointer $(WARN) $(FUZZ_SAN) \
                  $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
FUZZ_LDLIBS     = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
FUZZ_SYMBOLIZER = $(firstword $(wildcard /usr/lib/llvm-14/bin/llvm-symbolizer) $(shell command -v llvm-symbolizer 2>/dev/null))
# The differential targets (fuzz_alembic_revision, fuzz_alembic_ini) ask Python too, offline,
# where it is present: tests/fuzz/alembic_oracle.py, started once per target.
FUZZ_PYTHON    ?= $(wildcard /usr/bin/python3)
FUZZ_ENV        = ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1 \
                  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                  $(if $(FUZZ_SYMBOLIZER),ASAN_SYMBOLIZER_PATH=$(FUZZ_SYMBOLIZER)) \
                  $(if $(FUZZ_PYTHON),MTR_FUZZ_PYTHON=$(FUZZ_PYTHON) MTR_FUZZ_ORACLE=tests/fuzz/alembic_oracle.py)

.PHONY: fuzz fuzz-build $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory fuzz-build
	@echo "fuzz: $(words $(FUZZ_TARGETS)) targets, $(FUZZ_SECONDS) s each, $(FUZZ_JOBS) at a time"
	@$(MAKE) --no-print-directory -k -j$(FUZZ_JOBS) $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-build: $(FUZZ_BINS)

# Pattern-built: keep the objects and binaries between runs.
.SECONDARY: $(FUZZ_OBJS) $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: src/%.c $(wildcard include/mtr/*.h) VERSION $(FUZZ_MK)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/oracle.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(CPPFLAGS) -Itests/fuzz $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(FUZZ_LDLIBS)

# One target: the seed corpus first (a regression run), then FUZZ_SECONDS of new inputs. The log
# is kept in build/fuzz/logs/; a failure prints its end.
$(FUZZ_TARGETS:%=fuzz-run-%): fuzz-run-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_DIR)/corpus/$* $(FUZZ_DIR)/artifacts $(FUZZ_DIR)/logs
	@log=$(FUZZ_DIR)/logs/$*.log; \
	 if $(FUZZ_ENV) $< -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	      -detect_leaks=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$*- \
	      $(if $(wildcard tests/fuzz/$*.dict),-dict=tests/fuzz/$*.dict) \
	      $(FUZZ_DIR)/corpus/$* tests/fuzz/corpus/$* >$$log 2>&1; then \
	   echo "fuzz $*: ok, $$(sed -n 's/^stat::number_of_executed_units: *//p' $$log) runs in $(FUZZ_SECONDS) s," \
	        "corpus $$(find $(FUZZ_DIR)/corpus/$* tests/fuzz/corpus/$* -type f | wc -l) inputs"; \
	 else \
	   tail -n 60 $$log; echo "fuzz $*: FAILED (log: $$log; input: $(FUZZ_DIR)/artifacts/$*-*)"; exit 1; \
	 fi
