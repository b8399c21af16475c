#!/usr/bin/env bash
# Benchmark: applying 500 one-table SQL migrations versus the same SQL in one `psql -1 -f`, and
# the no-op run (all applied) versus one `psql -c 'select 1'`. Backups are off: psql takes none
# (bench/backup.sh measures them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
RUNS="${RUNS:-5}"
COUNT="${COUNT:-500}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac
case "$COUNT" in ''|*[!0-9]*|0) echo "bench: COUNT must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$BIN" "$PSQL" "$url" "$RUNS" "$COUNT" <<'PY'
import os, statistics, subprocess, sys, tempfile, time
from report import record

bin_, psql, url, runs, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
base = url.rsplit("/", 1)[0]
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
env["MTR_LOG_LEVEL"] = "warn"
work = tempfile.mkdtemp(prefix="mtr-bench-sql-")
mig = os.path.join(work, "migrations")
os.mkdir(mig)
for v in range(1, count + 1):
    with open(os.path.join(mig, f"{v:04d}_t{v}.sql"), "w") as f:
        f.write(f"CREATE TABLE t{v} (id bigint PRIMARY KEY, name text NOT NULL);\n")
whole = os.path.join(work, "all.sql")
with open(whole, "w") as out:
    for v in range(1, count + 1):
        out.write(f"CREATE TABLE t{v} (id bigint PRIMARY KEY, name text NOT NULL);\n")

def sh(cmd, **kw):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, **kw)

def fresh(name):
    sh([psql, "-q", url, "-c", "SET client_min_messages = warning", "-c", f"DROP DATABASE IF EXISTS {name}",
        "-c", f"CREATE DATABASE {name}"])
    return f"{base}/{name}"

def timed(cmd, db_url):
    e = dict(env, DATABASE_URL=db_url)
    t0 = time.perf_counter_ns()
    rc = subprocess.run(cmd, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
    ms = (time.perf_counter_ns() - t0) / 1e6
    if rc != 0:
        sys.exit(f"bench: {cmd[0]} failed with exit status {rc}")
    return ms

# One untimed round of each first: a cluster just started (checkpoints, cold caches) would
# otherwise weigh on whichever runs first.
timed([bin_, "--backup=off", "--sql-dir", mig, "--migrate-only"], fresh("bench_ours"))
warm = fresh("bench_psql")
timed([psql, "-q", "-1", "-v", "ON_ERROR_STOP=1", warm, "-f", whole], warm)
apply_ours, apply_psql, noop_ours, noop_psql = [], [], [], []
for i in range(runs):
    db = fresh("bench_ours")
    apply_ours.append(timed([bin_, "--backup=off", "--sql-dir", mig, "--migrate-only"], db))
    for _ in range(5):
        noop_ours.append(timed([bin_, "--backup=off", "--sql-dir", mig, "--migrate-only"], db))
        noop_psql.append(timed([psql, db, "-c", "select 1"], db))
    db = fresh("bench_psql")
    apply_psql.append(timed([psql, "-q", "-1", "-v", "ON_ERROR_STOP=1", db, "-f", whole], db))

rows = [(f"apply {count} migrations (psql: one -1 -f)", apply_ours, apply_psql,
         f"apply {count} one-table SQL migrations", "psql -1 -f all.sql"),
        (f"no-op run, all {count} applied (psql: select 1)", noop_ours, noop_psql,
         f"no-op start: {count} SQL migrations applied", "psql -c 'select 1'")]
print(f"{'what':<48} {'ours ms':>9} {'psql ms':>9} {'ratio':>7} {'runs':>5}")
for what, a, b, label, peer in rows:
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{what:<48} {ma:>9.1f} {mb:>9.1f} {ma / mb:>6.2f}x {len(a):>5}")
    record(label, ma, peer, mb, "ms", len(a), 1.5)
print("targets: apply <= 1.5x; no-op <= 1.5x")
subprocess.run(["rm", "-rf", work])
PY
