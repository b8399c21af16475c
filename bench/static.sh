#!/usr/bin/env bash
# Benchmark: start-up of the static and the dynamic binary (--version, and a no-op run against a
# ready database, backups off) beside `tini-static --version` and one `psql -c 'select 1'`; stripped
# sizes. Without the static build (make static) it is skipped, with exit status 77.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DYN="$ROOT/build/migrate-then-run"
STATIC="$ROOT/build/static/migrate-then-run.stripped"
PSQL=/usr/lib/postgresql/15/bin/psql
TINI_STATIC="$(command -v tini-static || true)"
RUNS="${RUNS:-15}"

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"

[ -x "$DYN" ] || { echo "bench: $DYN is missing; build it first with: make" >&2; exit 1; }
[ -x "$STATIC" ] || bench_skip "no static build (build/static/migrate-then-run.stripped); build it with: make static"
[ -n "$TINI_STATIC" ] || { echo "bench: tini-static is missing; apt-get install tini" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

bench_database_url

PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$DYN" "$STATIC" "$TINI_STATIC" "$PSQL" "$url" "$RUNS" <<'PY'
import os, statistics, subprocess, sys, time
from report import record

dyn, static, tini, psql, url, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
env.update(DATABASE_URL=url, MTR_LOG_LEVEL="warn")
cmds = {
    "static --version": [static, "--version"],
    "dynamic --version": [dyn, "--version"],
    "tini-static --version": [tini, "--version"],
    "static no-op run": [static, "--backup=off", "--migrate-cmd", "true", "--", "/bin/true"],
    "dynamic no-op run": [dyn, "--backup=off", "--migrate-cmd", "true", "--", "/bin/true"],
    "psql -c 'select 1'": [psql, url, "-c", "select 1"],
}

def timed(cmd):
    t0 = time.perf_counter_ns()
    rc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
    if rc != 0:
        sys.exit(f"bench: {cmd[0]} failed with exit status {rc}")
    return (time.perf_counter_ns() - t0) / 1e6

for _ in range(2):
    for c in cmds.values():
        timed(c)
samples = {k: [] for k in cmds}
for _ in range(runs):
    for k, c in cmds.items():
        samples[k].append(timed(c))
med = {k: statistics.median(v) for k, v in samples.items()}
print(f"{'what':<26} {'median ms':>10} {'vs':<22} {'ratio':>7}")
labels = {"static --version": "--version, static binary", "dynamic --version": "--version, dynamic binary",
          "static no-op run": "no-op start, static binary", "dynamic no-op run": "no-op start, dynamic binary"}
for k, ref in [("static --version", "tini-static --version"), ("dynamic --version", "tini-static --version"),
               ("static no-op run", "psql -c 'select 1'"), ("dynamic no-op run", "psql -c 'select 1'")]:
    print(f"{k:<26} {med[k]:>10.2f} {ref:<22} {med[k] / med[ref]:>6.2f}x")
    record(labels[k], med[k], ref, med[ref], "ms", runs, 1.5 if "no-op" in k else None)
for k in ("tini-static --version", "psql -c 'select 1'"):
    print(f"{k:<26} {med[k]:>10.2f}")
size = lambda p: os.path.getsize(p)
print(f"stripped size: static {size(static) / 1048576:.2f} MiB; tini-static {size(tini) / 1048576:.2f} MiB; "
      f"dynamic {size(dyn) / 1048576:.2f} MiB (unstripped, plus shared libraries); runs: {runs}")
record("file size, static binary (stripped)", size(static) / 1048576, "tini-static", size(tini) / 1048576, "MiB", 1)
PY
