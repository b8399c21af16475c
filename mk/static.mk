# Fully static musl build: `make static` links build/static/migrate-then-run against libpq, libcurl,
# OpenSSL and cJSON built from Debian's source packages (scripts/static-deps.sh); `make test-static`
# runs the end-to-end suite on it. Included by the Makefile, whose WARN, CPPFLAGS and VERSION it uses.

STATIC_CC          ?= musl-gcc
STATIC_STRIP       ?= strip
STATIC_DIR         := build/static
STATIC_OBJDIR      := $(STATIC_DIR)/obj
STATIC_BIN         := $(STATIC_DIR)/migrate-then-run
STATIC_STRIPPED    := $(STATIC_DIR)/migrate-then-run.stripped
# Holds the dependency prefix printed by scripts/static-deps.sh; rewritten only when it changes.
STATIC_PREFIX_FILE := $(STATIC_DIR)/deps-prefix
STATIC_PREFIX       = $(shell cat $(STATIC_PREFIX_FILE) 2>/dev/null)
STATIC_SRCS        := $(wildcard src/*.c)
STATIC_OBJS        := $(STATIC_SRCS:src/%.c=$(STATIC_OBJDIR)/%.o)
STATIC_MAIN_OBJ    := $(STATIC_OBJDIR)/main.o
STATIC_MK          := $(lastword $(MAKEFILE_LIST))
# Size the stripped binary should stay within (5 MiB); exceeding it is reported, not fatal.
STATIC_MAX_BYTES   ?= 5242880

# musl ignores _FORTIFY_SOURCE and Debian's musl-gcc cannot link -static-pie: plain -static,
# with the stack protector (musl provides __stack_chk_fail).
STATIC_CFLAGS      ?= -O2 -g
STATIC_ALL_CFLAGS   = $(STATIC_CFLAGS) $(WARN) -fstack-protector-strong -ffunction-sections -fdata-sections
# libcurl is linked here: no dlopen in a static binary (curl_api.h).
STATIC_ALL_CPPFLAGS = $(filter-out -DMTR_CURL_DLOPEN,$(CPPFLAGS)) -I$(STATIC_PREFIX)/include
STATIC_LDFLAGS     ?=
STATIC_ALL_LDFLAGS  = -static $(STATIC_LDFLAGS) -Wl,--gc-sections -Wl,-z,relro,-z,now -L$(STATIC_PREFIX)/lib
STATIC_LDLIBS       = -lpq -lpgcommon -lpgport -lcurl -lssl -lcrypto -lcjson -lpthread
STATIC_PYTEST      ?= /usr/bin/python3 -m pytest

.PHONY: static test-static static-deps-force

static: $(STATIC_STRIPPED)
	@echo "static: $(STATIC_BIN)"
	@echo "  file:  $$(file -b $(STATIC_BIN))"
	@echo "  ldd:   $$(ldd $(STATIC_BIN) 2>&1 | tr -s ' \t' ' ' | sed 's/^ //')"
	@size=$$(stat -c %s $(STATIC_STRIPPED)); \
	 echo "  stripped ($(STATIC_STRIPPED)): $$size bytes ($$(awk -v s=$$size 'BEGIN { printf "%.2f", s / 1048576 }') MiB)"; \
	 if [ $$size -gt $(STATIC_MAX_BYTES) ]; then echo "  warning: larger than $(STATIC_MAX_BYTES) bytes"; fi

# The suite's own packages (PostgreSQL server, pytest, Alembic …) come from scripts/deps.sh, as for `make test`.
test-static: static
	@scripts/deps.sh
	@scripts/tools-deps.sh $(TOOLS_DIR)
	MTR_BIN=$(abspath $(STATIC_BIN)) PYTHONDONTWRITEBYTECODE=1 $(STATIC_PYTEST) -q -p no:cacheprovider tests/e2e

$(STATIC_PREFIX_FILE): static-deps-force
	@mkdir -p $(dir $@)
	@prefix="$$(scripts/static-deps.sh)" || exit 1; \
	 [ -n "$$prefix" ] && [ -d "$$prefix/lib" ] || { echo "static: scripts/static-deps.sh printed no prefix" >&2; exit 1; }; \
	 [ "$$(cat $@ 2>/dev/null)" = "$$prefix" ] || echo "$$prefix" >$@

$(STATIC_OBJDIR)/%.o: src/%.c $(wildcard include/mtr/*.h) VERSION $(STATIC_MK) $(STATIC_PREFIX_FILE)
	@mkdir -p $(dir $@)
	$(STATIC_CC) $(STATIC_ALL_CPPFLAGS) $(STATIC_ALL_CFLAGS) -c -o $@ $<

$(STATIC_MAIN_OBJ): cmd/migrate-then-run/main.c $(wildcard include/mtr/*.h) VERSION $(STATIC_MK) $(STATIC_PREFIX_FILE)
	@mkdir -p $(dir $@)
	$(STATIC_CC) $(STATIC_ALL_CPPFLAGS) $(STATIC_ALL_CFLAGS) -c -o $@ $<

$(STATIC_BIN): $(STATIC_MAIN_OBJ) $(STATIC_OBJS) $(STATIC_PREFIX_FILE)
	$(STATIC_CC) $(STATIC_ALL_CFLAGS) $(STATIC_ALL_LDFLAGS) -o $@ $(STATIC_MAIN_OBJ) $(STATIC_OBJS) $(STATIC_LDLIBS)

$(STATIC_STRIPPED): $(STATIC_BIN)
	$(STATIC_STRIP) -o $@ $<

# The floor of a no-op start (bench/noop.sh), against the same static libpq, stripped as we are.
$(STATIC_DIR)/floor: bench/floor.c $(STATIC_PREFIX_FILE)
	$(STATIC_CC) $(STATIC_ALL_CPPFLAGS) $(STATIC_ALL_CFLAGS) $(STATIC_ALL_LDFLAGS) -o $@ $< \
		-lpq -lpgcommon -lpgport -lssl -lcrypto -lpthread
	$(STATIC_STRIP) $@
