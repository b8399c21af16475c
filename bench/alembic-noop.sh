#!/usr/bin/env bash
# Benchmark: migrate-then-run --alembic-ini on an up-to-date 50-revision Alembic project
# (connect, find nothing pending, exec) versus a no-op `python3 -m alembic upgrade head`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
PYTHON=/usr/bin/python3
INI="$ROOT/tests/fixtures/alembic/long50/alembic.ini"
RUNS="${RUNS:-10}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
[ -f "$INI" ] || { echo "bench: $INI is missing" >&2; exit 1; }
"$PYTHON" -c 'import alembic, sqlalchemy, psycopg2' 2>/dev/null || {
    echo "bench: $PYTHON cannot import alembic, sqlalchemy and psycopg2; apt-get install python3-alembic python3-psycopg2" >&2
    exit 1
}
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

# A fresh database for this run, so that a database named by BENCH_DATABASE_URL is left untouched.
db="mtr_bench_alembic_$$_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
db_url="$("$PYTHON" - "$url" "$db" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
print(urlunsplit(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2])))
EOF
)"
"$PSQL" "$url" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
drop_db() { "$PSQL" "$url" -qX -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; }
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    trap drop_db EXIT
fi  # else cluster.bash's EXIT trap removes the whole throwaway cluster, database included

# Bring the database to head once; every timed run below is then a no-op.
echo "bench: applying the 50 revisions of tests/fixtures/alembic/long50" >&2
if ! out="$(env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 DATABASE_URL="$db_url" \
        "$PYTHON" -m alembic -c "$INI" upgrade head 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    echo "bench: the initial alembic upgrade head failed" >&2
    exit 1
fi

# Timing harness: 2 warm-up runs of each, then RUNS interleaved runs; wall clock via perf_counter_ns.
PYTHONPATH="$ROOT/bench" "$PYTHON" - "$BIN" "$PYTHON" "$INI" "$db_url" "$RUNS" <<'EOF'
import os, statistics, subprocess, sys, time
from report import record

bin_, python, ini, url, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_") and k != "PYTHONPATH"}
env.update(DATABASE_URL=url, MTR_LOG_LEVEL="warn", PYTHONDONTWRITEBYTECODE="1")
cmds = {
    "ours": [bin_, "--alembic-ini", ini, "--python", python, "--", "/bin/true"],
    "alembic": [python, "-m", "alembic", "-c", ini, "upgrade", "head"],
}

def timed(name):
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmds[name], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter_ns() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        sys.exit(f"bench: {name} run failed with exit status {r.returncode}: {' '.join(cmds[name][:5])} ...")
    return elapsed

for _ in range(2):
    timed("ours"); timed("alembic")
samples = {"ours": [], "alembic": []}
for _ in range(runs):
    for name in ("ours", "alembic"):
        samples[name].append(timed(name))

ours = statistics.median(samples["ours"]) / 1e6
ref = statistics.median(samples["alembic"]) / 1e6
what = "median wall time, 50 revisions, nothing pending"
print(f"{'what':<48} {'ours ms':>8} {'alembic ms':>10} {'ratio':>7} {'runs':>5}")
print(f"{what:<48} {ours:>8.2f} {ref:>10.2f} {ours / ref:>6.3f}x {runs:>5}")
print("  ours: migrate-then-run --alembic-ini tests/fixtures/alembic/long50/alembic.ini --python /usr/bin/python3 -- /bin/true")
print("  alembic: /usr/bin/python3 -m alembic -c tests/fixtures/alembic/long50/alembic.ini upgrade head")
print("target: <= 0.05")
record("no-op start: 50 Alembic revisions at head", ours, "python3 -m alembic upgrade head", ref, "ms", runs, 0.05)
EOF
