# Hygiene beyond `make test`: sanitizer reports of `make test SANITIZE=address,undefined`,
# Valgrind (`make test-valgrind`) and the secret audit (`make test-secrets`). Included by the
# Makefile, whose BUILD, BIN, PYTEST and SANITIZE it uses.

# With SANITIZE, every process of the run (the tool, its forked children before their exec, the
# supervisor it re-execs into, the unit tests) writes its reports to SAN_REPORTS/<kind>.<pid>
# instead of stderr, where a test may not look; the directory must stay empty. Leak checking is
# on, and the first report ends the process.
ifneq ($(SANITIZE),)
SAN_REPORTS := $(abspath $(BUILD))/reports
SAN_ENV     := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1:log_path=$(SAN_REPORTS)/asan \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(SAN_REPORTS)/ubsan \
               LSAN_OPTIONS=log_path=$(SAN_REPORTS)/lsan \
               MTR_SANITIZER_REPORTS=$(SAN_REPORTS)
SAN_START   := @rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
# After a failing step: show the reports that explain it.
SAN_REPORT  := || { scripts/sanitizer-reports.sh $(SAN_REPORTS); exit 1; }
SAN_CHECK   := @scripts/sanitizer-reports.sh $(SAN_REPORTS)
endif

.PHONY: test-valgrind test-secrets

# Memcheck on the pipeline (wait → SQL migrate → backup → exec, and bad SQL) and on the
# supervisor through 1,000 signals, then the supervisor's memory over 2 × 1,000 signals, of
# this build and of build/static/ once made (tests/e2e/test_valgrind.py); installs valgrind
# when missing. Prints the figures.
test-valgrind:
	$(if $(SANITIZE),$(error test-valgrind checks the plain build: run it without SANITIZE))
	@scripts/deps.sh valgrind
	$(MAKE) --no-print-directory all
	MTR_VALGRIND=1 MTR_BIN=$(abspath $(BIN)) PYTHONDONTWRITEBYTECODE=1 \
	    $(PYTEST) -q -s -p no:cacheprovider tests/e2e/test_valgrind.py

# The whole end-to-end suite once more, with every byte the tool writes searched for the
# password (tests/e2e/secret_audit.py); fails on any hit and says where it was.
test-secrets: deps tools-deps
	$(MAKE) --no-print-directory all
	MTR_SECRET_AUDIT=1 MTR_BIN=$(abspath $(BIN)) PYTHONDONTWRITEBYTECODE=1 \
	    $(PYTEST) -q -p no:cacheprovider tests/e2e
