#!/usr/bin/env bash
# Benchmark: a no-op start against its physical floor. The floor is bench/floor.c (one libpq
# connection and one query), built against the same libpq as the tool, dynamic and static. Ours:
# a 20-file SQL directory at head, --migrate-only (an initContainer's start), the same PG*
# variables. Paired, interleaved runs; medians. Without the static build the static pair is skipped.
# MTR_BIN and MTR_STATIC_BIN name other binaries to measure (an older build, say).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
RUNS="${RUNS:-31}"
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"

DYN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
STATIC="${MTR_STATIC_BIN:-$ROOT/build/static/migrate-then-run.stripped}"
[ -n "${MTR_BIN:-}" ] || make -s -C "$ROOT" build/migrate-then-run >&2
make -s -C "$ROOT" build/bench/floor >&2
pairs=("dynamic" "$DYN" "$ROOT/build/bench/floor" "1.10")
if [ -x "$STATIC" ]; then
    make -s -C "$ROOT" build/static/floor >&2
    pairs+=("static" "$STATIC" "$ROOT/build/static/floor" "1.05")
else
    echo "bench: no static build (make static): the static pair is skipped" >&2
fi

bench_database_url
work="$(mktemp -d -t mtr-noop.XXXXXX)"
trap '"$ROOT/scripts/pgtmp.sh" down "${bench_tmp:-/nonexistent}" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for i in $(seq -w 1 20); do printf 'CREATE TABLE noop_%s (id int);\n' "$i" >"$work/${i}_noop_$i.sql"; done

PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$url" "$work" "$RUNS" "${pairs[@]}" <<'PY'
import os, statistics, subprocess, sys, time, urllib.parse
from report import record

url, work, runs, rest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
u = urllib.parse.urlsplit(url)
env = {k: v for k, v in os.environ.items() if not k.startswith(("MTR_", "PG")) and k != "DATABASE_URL"}
env.update(PGHOST=u.hostname, PGPORT=str(u.port), PGUSER=urllib.parse.unquote(u.username),
           PGPASSWORD=urllib.parse.unquote(u.password), PGDATABASE=u.path.lstrip("/") or "postgres",
           MTR_LOG_LEVEL="warn")

HISTORY = "SELECT h.version::text, h.name, h.checksum, h.success FROM public.mtr_schema_history h"

def timed(cmd):
    t0 = time.perf_counter_ns()
    rc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
    if rc != 0:
        sys.exit(f"bench: {cmd[0]} failed with exit status {rc}")
    return (time.perf_counter_ns() - t0) / 1e6

print(f"{'build':<8} {'ours ms':>8} {'floor ms':>9} {'ratio':>7} {'target':>7} {'runs':>5}")
for i in range(0, len(rest), 4):
    kind, ours, floor, target = rest[i], rest[i + 1], rest[i + 2], float(rest[i + 3])
    cmd = [ours, "--sql-dir", work, "--backup=off", "--migrate-only"]
    timed(cmd)  # applies the 20 files: every later run is at head
    for _ in range(2):
        timed(cmd), timed([floor])
    a, b, c = [], [], []
    for _ in range(runs):
        a.append(timed(cmd))
        b.append(timed([floor]))
        c.append(timed([floor, HISTORY]))
    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
    print(f"{kind:<8} {ma:>8.2f} {mb:>9.2f} {ma / mb:>6.2f}x {target:>6.2f}x {runs:>5}"
          f"   reading the history: {mc:.2f} ms, ours {ma / mc:.2f}x")
    record(f"no-op start at head, {kind} binary (20 SQL files)", ma, f"floor: libpq connect + 1 query ({kind})",
           mb, "ms", runs, target)
    record(f"no-op start at head, {kind} binary, against a floor that reads the history", ma,
           f"floor: connect + the history's read ({kind})", mc, "ms", runs)
print("ours: --sql-dir DIR (20 files at head) --backup=off --migrate-only; floor: bench/floor.c, same libpq, same PG* variables")
print("reading the history: the floor program with the history read a start at head must make (the server's cost of")
print("  a table on a fresh session), in place of select pg_is_in_recovery()")
PY
