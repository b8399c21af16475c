# migrate-then-run — plain Makefile, strict flags, Debian's libpq/libcurl/cJSON via pkg-config.

VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
PREFIX    ?= /usr/local
DESTDIR   ?=
CC        ?= cc
PKG_CONFIG ?= pkg-config
PKGS      := libpq libcurl libcjson libcrypto
BUILD     ?= build
SANITIZE  ?=

WARN      := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
             -Wformat=2 -Wshadow -Wpointer-arith -Wvla -Werror
HARDEN    := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
CPPFLAGS  += -D_GNU_SOURCE -DMTR_VERSION='"$(VERSION)"' -Iinclude
CFLAGS    ?= -O2 -g
CFLAGS    += $(WARN) $(HARDEN) $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LDFLAGS   += -pie -Wl,-z,relro,-z,now
# libcurl is not linked: src/curl_api.c loads it when HTTP is first needed (curl_api.h says why).
CPPFLAGS  += -DMTR_CURL_DLOPEN
LDLIBS    += $(shell $(PKG_CONFIG) --libs $(filter-out libcurl,$(PKGS)) 2>/dev/null)

ifneq ($(SANITIZE),)
BUILD     := build/san
# -fno-sanitize-recover: an undefined-behaviour report ends the process, as an ASan report does.
CFLAGS    += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 \
             -U_FORTIFY_SOURCE -Wno-format-truncation
LDFLAGS   += -fsanitize=$(SANITIZE)
# GCC's shared libubsan beside libasan ignores UBSAN_OPTIONS=log_path: link the runtimes in.
ifeq ($(shell $(CC) -dM -E -x c /dev/null 2>/dev/null | grep -c __clang__),0)
LDFLAGS   += -static-libasan -static-libubsan
endif
endif

SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
BIN       := $(BUILD)/migrate-then-run
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_BIN  := $(BUILD)/unit-tests
PYTEST    := /usr/bin/python3 -m pytest

.PHONY: all deps tools-deps install uninstall clean test unit e2e demo bench
all: $(BIN)

# make static / make test-static: a fully static musl binary (see mk/static.mk).
-include mk/static.mk
# make fuzz: libFuzzer targets for every parser of outside input (see mk/fuzz.mk).
-include mk/fuzz.mk
# make lint: cppcheck and clang-tidy (see mk/lint.mk and .clang-tidy).
-include mk/lint.mk
# make test SANITIZE=…, make test-valgrind, make test-secrets (see mk/hygiene.mk).
-include mk/hygiene.mk
# make test-containers: the static binary under podman + runc (see mk/containers.mk).
-include mk/containers.mk

$(BUILD)/obj/%.o: src/%.c $(wildcard include/mtr/*.h) Makefile VERSION
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BIN): cmd/migrate-then-run/main.c $(OBJS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The floor of a no-op start (bench/noop.sh): libpq alone, built as the tool is.
$(BUILD)/bench/floor: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(shell $(PKG_CONFIG) --libs libpq)

$(UNIT_BIN): $(UNIT_SRCS) $(OBJS) tests/unit/unit.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $(UNIT_SRCS) $(OBJS) $(LDLIBS)

# Installs the build and test packages that are missing (only when root on Debian).
deps:
	@scripts/deps.sh

# The npm migration tools the end-to-end tests run (tests/tools/package.json), installed once
# into one directory shared by every test run, instrumented or not.
TOOLS_DIR ?= build/tools
tools-deps: deps
	@scripts/tools-deps.sh $(TOOLS_DIR)

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/migrate-then-run

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/migrate-then-run

unit: $(UNIT_BIN)
	$(UNIT_BIN)

e2e: $(BIN)
	MTR_BIN=$(abspath $(BIN)) $(PYTEST) -q tests/e2e

# Every test: unit tests, then end-to-end tests against a real PostgreSQL; ends with pytest's summary.
# With SANITIZE, every sanitizer report of any process (children and the re-exec'd supervisor
# too) lands in build/san/reports/, which must stay empty (mk/hygiene.mk).
test: deps tools-deps
	$(MAKE) --no-print-directory all $(UNIT_BIN)
	$(SAN_START)
	$(SAN_ENV) $(UNIT_BIN) $(SAN_REPORT)
	$(SAN_ENV) MTR_BIN=$(abspath $(BIN)) MTR_TOOLS_DIR=$(abspath $(TOOLS_DIR)) PYTHONDONTWRITEBYTECODE=1 $(PYTEST) -q -p no:cacheprovider tests/e2e $(SAN_REPORT)
	$(SAN_CHECK)

demo: deps
	$(MAKE) --no-print-directory all
	scripts/demo.sh

# Every bench/*.sh with its peers in the same run, then bench/RESULTS.md and bench/results.png
# (bench/report.py). RUNS=3 for a quick run. static.sh is skipped unless `make static` ran first.
bench:
	@scripts/deps.sh bench
	$(MAKE) --no-print-directory all
	/usr/bin/python3 bench/report.py

clean:
	rm -rf build
