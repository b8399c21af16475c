#!/usr/bin/env bash
# Benchmark: startup overhead of migrate-then-run (connect, no-op migration, exec) versus one psql query.
# Backups are off: with --migrate-cmd every start counts as pending (bench/backup.sh measures them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
RUNS="${RUNS:-15}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

# Timing harness: 2 warm-up runs of each, then RUNS interleaved runs; wall clock via perf_counter_ns.
PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$BIN" "$PSQL" "$url" "$RUNS" <<'EOF'
import os, statistics, subprocess, sys, time
from report import record

bin_, psql, url, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
env.update(DATABASE_URL=url, MTR_LOG_LEVEL="warn")
cmds = {
    "ours": [bin_, "--backup=off", "--migrate-cmd", "true", "--", "/bin/true"],
    "psql": [psql, url, "-c", "select 1"],
}

def timed(name):
    t0 = time.perf_counter_ns()
    rc = subprocess.run(cmds[name], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
    elapsed = time.perf_counter_ns() - t0
    if rc != 0:
        sys.exit(f"bench: {name} run failed with exit status {rc}: {' '.join(cmds[name][:4])} ...")
    return elapsed

for _ in range(2):
    timed("ours"); timed("psql")
samples = {"ours": [], "psql": []}
for _ in range(runs):
    for name in ("ours", "psql"):
        samples[name].append(timed(name))

ours = statistics.median(samples["ours"]) / 1e6
ref = statistics.median(samples["psql"]) / 1e6
print(f"{'what':<52} {'ours ms':>8} {'psql ms':>8} {'ratio':>7} {'runs':>5}")
print(f"{'median wall time (connect, no-op migration, exec)':<52} {ours:>8.2f} {ref:>8.2f} {ours / ref:>6.2f}x {runs:>5}")
print("  ours: migrate-then-run --backup=off --migrate-cmd true -- /bin/true   psql: psql URL -c 'select 1'")
print("target: <= 1.5x")
record("no-op start: connect, migrate-cmd true, exec", ours, "psql -c 'select 1'", ref, "ms", runs, 1.5)
EOF
