#!/usr/bin/env bash
# Benchmark: the SQL source's peak memory against the physical floor, the size of the file.
# A directory holds one small migration and one of SIZE_MB megabytes (default 200; one
# statement and lines of comment, which the server gets through in a moment: the client's
# memory does not depend on what the text says). Figures are peak resident sets (ru_maxrss of
# the tool, forked from a small launcher of its own): applying the big file, beyond the tool's
# footprint (a no-op start with the small file alone), against the file's size; and the no-op
# start once the big file is applied, against that footprint. The floor: bench/query-floor.c,
# which holds the file's text once and sends it with PQexec (libpq keeps the query twice while
# it sends it), measured the same way beyond its own footprint.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
RUNS="${RUNS:-3}"
SIZE_MB="${SIZE_MB:-200}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
floor_dir="$(mktemp -d -t mtr-bench-floor.XXXXXX)"
FLOOR="$floor_dir/query-floor"
cc -O2 -I"$(pg_config --includedir)" -o "$FLOOR" "$ROOT/bench/query-floor.c" -lpq ||
    { echo "bench: cannot build bench/query-floor.c (it needs cc and libpq-dev)" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac
case "$SIZE_MB" in ''|*[!0-9]*|0) echo "bench: SIZE_MB must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

status=0
PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$BIN" "$PSQL" "$url" "$RUNS" "$SIZE_MB" "$FLOOR" <<'PY' || status=$?
import os, shutil, statistics, subprocess, sys, tempfile
from report import record

bin_, psql, url, runs, size_mb, floor = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
base = url.rsplit("/", 1)[0]
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_") and not k.startswith("PG")}
env.update(MTR_LOG_LEVEL="warn", MTR_BACKUP="off")
MIB = 1 << 20
work = tempfile.mkdtemp(prefix="mtr-bench-mem-")
small, both = os.path.join(work, "small"), os.path.join(work, "both")
for d in (small, both):
    os.mkdir(d)
    with open(os.path.join(d, "1_small.sql"), "w") as f:
        f.write("CREATE TABLE small (x int);\n")
big = os.path.join(both, "2_big.sql")
line = "-- " + "x" * 1020 + "\n"
with open(big, "w") as f:
    f.write("CREATE TABLE big (x int);\nINSERT INTO big VALUES (1);\n")
    for _ in range(size_mb * MIB // len(line)):
        f.write(line)
size = os.path.getsize(big) / MIB

# The tool's ru_maxrss from a launcher that is small: a child's ru_maxrss also counts the
# process it was forked from, until its exec.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""

def peak(d, db_url, cmd=None):
    cmd = cmd or [bin_, "--sql-dir", d, "--migrate-only"]
    r = subprocess.run(["/usr/bin/python3", "-c", LAUNCHER, *cmd],
                       env=dict(env, DATABASE_URL=db_url), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    code, kib = r.stdout.split() if r.returncode == 0 else ("launcher", "0")
    if code != "0":
        sys.exit(f"bench: {os.path.basename(cmd[0])} failed ({code}): {r.stderr[-2000:]}")
    return int(kib) / 1024

def floor_peak(path, db_url):
    return peak(None, db_url, [floor, db_url, path])

def fresh(name):
    subprocess.run([psql, "-qX", url, "-c", "SET client_min_messages = warning", "-c", f"DROP DATABASE IF EXISTS {name}",
                    "-c", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
    return f"{base}/{name}"

samples = {"footprint": [], "applying": [], "head": [], "floor_footprint": [], "floor": []}
try:
    for _ in range(runs):
        db = fresh("bench_mem")
        peak(small, db)                                 # the small file applied
        samples["footprint"].append(peak(small, db))    # a no-op start
        samples["applying"].append(peak(both, db))      # the big file applied
        samples["head"].append(peak(both, db))          # a no-op start with both
        db = fresh("bench_mem_floor")
        samples["floor_footprint"].append(floor_peak(os.path.join(small, "1_small.sql"), db))
        samples["floor"].append(floor_peak(big, db))
finally:
    shutil.rmtree(work, ignore_errors=True)
med = {k: statistics.median(v) for k, v in samples.items()}
extra = med["applying"] - med["footprint"]
floor_extra = med["floor"] - med["floor_footprint"]
print(f"one file of {size:.1f} MiB; runs: {runs}; peak resident set (ru_maxrss), MiB")
print(f"{'what':<58} {'MiB':>8} {'ratio':>8}")
print(f"{'no-op start, small file only (the footprint F)':<58} {med['footprint']:>8.1f}")
print(f"{'applying the big file (A)':<58} {med['applying']:>8.1f}")
print(f"{'  A - F, against the file size S':<58} {extra:>8.1f} {extra / size:>7.2f}S")
print(f"{'no-op start with the big file applied (H)':<58} {med['head']:>8.1f} {med['head'] / med['footprint']:>7.2f}F")
print(f"{'floor: the text held once and PQexec, beyond its footprint':<58} {floor_extra:>8.1f} {floor_extra / size:>7.2f}S")
record(f"peak memory applying one {size:.0f} MiB file, beyond the footprint", extra,
       "the file's size", size, "MiB", runs, 2.2)
record("the same, against libpq's floor (the text held once, PQexec)", extra,
       "bench/query-floor.c", floor_extra, "MiB", runs, 1.05)
record("peak memory of a no-op start with that file applied", med["head"],
       "the same start without it", med["footprint"], "MiB", runs, 1.1)
PY
rm -rf "$floor_dir"
exit "$status"
