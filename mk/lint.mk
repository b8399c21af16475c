# Static analysis: `make lint` runs cppcheck and clang-tidy (checks and the reasons for those left
# out in .clang-tidy) over src/, cmd/ and the tests' C code; any finding fails. clang-tidy runs
# one file per process (its analyzer carries state across files), LINT_JOBS at a time, and
# remembers clean files in build/lint/. Included by the Makefile, whose CPPFLAGS, PKG_CONFIG and
# PKGS it uses.

CPPCHECK      ?= cppcheck
CLANG_TIDY    ?= clang-tidy
LINT_JOBS     ?= 2
LINT_DIR      := build/lint
LINT_SRCS     := $(wildcard src/*.c) cmd/migrate-then-run/main.c $(wildcard tests/unit/*.c) \
                 $(wildcard tests/fuzz/*.c)
LINT_HEADERS  := $(wildcard include/mtr/*.h tests/unit/*.h tests/fuzz/*.h)
LINT_MK       := $(lastword $(MAKEFILE_LIST))
LINT_CPPFLAGS  = $(CPPFLAGS) -Itests/unit -Itests/fuzz $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
# readdirCalled: cppcheck asks for readdir_r, which glibc deprecates; the tool has one thread.
CPPCHECK_FLAGS := --enable=warning,performance,portability --error-exitcode=1 --inline-suppr \
                  --std=c11 --library=posix --quiet --suppress=readdirCalled
LINT_TIDY      := $(LINT_SRCS:%.c=$(LINT_DIR)/%.tidy)

# Every round trip goes through src/pg.c's pg_run/pg_command/pg_query_value (a deadline and the
# stop descriptor) and every connection through pg_connect: libpq's blocking calls anywhere else
# fail the lint (PQexec*, PQgetResult, PQsendQuery*, PQcancel, PQconnectdb*, PQping*, …).
LINT_LIBPQ_BLOCKING := PQexec|PQgetResult|PQsendQuery|PQsendPrepare|PQprepare|PQdescribePrepared|PQdescribePortal|PQcancel|PQrequestCancel|PQconnectdb|PQsetdbLogin|PQping|PQreset|PQfn|PQsetClientEncoding
LINT_LIBPQ_SRCS     := $(filter-out src/pg.c,$(wildcard src/*.c)) cmd/migrate-then-run/main.c

.PHONY: lint lint-cppcheck lint-tidy lint-libpq

lint:
	@scripts/deps.sh lint
	@$(MAKE) --no-print-directory lint-libpq
	@$(MAKE) --no-print-directory lint-cppcheck
	@$(MAKE) --no-print-directory -j$(LINT_JOBS) lint-tidy
	@echo "lint: cppcheck and clang-tidy clean ($(words $(LINT_SRCS)) files)"

lint-cppcheck:
	@mkdir -p $(LINT_DIR)/cppcheck
	@echo "cppcheck src cmd tests/unit tests/fuzz"
	@$(CPPCHECK) $(CPPCHECK_FLAGS) --cppcheck-build-dir=$(LINT_DIR)/cppcheck $(LINT_CPPFLAGS) \
	  src cmd tests/unit tests/fuzz

lint-libpq:
	@hits="$$(grep -nE '\b($(LINT_LIBPQ_BLOCKING))[A-Za-z]*[[:space:]]*\(' $(LINT_LIBPQ_SRCS) || true)"; \
	 if [ -n "$$hits" ]; then \
	   echo "lint: blocking libpq calls outside src/pg.c (use pg_run, pg_command or pg_query_value):"; \
	   echo "$$hits"; exit 1; \
	 fi; echo "lint: no blocking libpq call outside src/pg.c"

lint-tidy: $(LINT_TIDY)

$(LINT_DIR)/%.tidy: %.c $(LINT_HEADERS) .clang-tidy $(LINT_MK)
	@mkdir -p $(dir $@)
	@echo "clang-tidy $<"
	@$(CLANG_TIDY) --quiet $< -- -std=c11 $(LINT_CPPFLAGS) >$@.log 2>&1 || \
	 { grep -v 'warnings\? generated\.$$' $@.log; exit 1; }
	@touch $@
