#!/usr/bin/env bash
# Benchmark: the backup phase (`--backup=always`: pg_dump -Fc into a private file, fsync, then
# verified with pg_restore --list) on a database of about SIZE_MB megabytes (default 500, made
# with generate_series), versus a bare `pg_dump -Fc -f FILE` to the same directory; the
# verification time is reported apart. Our figures come from the tool's own backup.done event
# (duration_ms, verify_ms); the peer's is its wall time. BENCH_BACKUP_DIR picks the disk
# (default: a temporary directory). SIZE_MB=50 makes a quick run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
PYTHON=/usr/bin/python3
RUNS="${RUNS:-3}"
SIZE_MB="${SIZE_MB:-500}"

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
# The same pg_dump for both: the one on PATH, which is the one the tool runs.
PG_DUMP="$(command -v pg_dump || true)"
[ -n "$PG_DUMP" ] || { echo "bench: pg_dump is not on PATH; apt-get install postgresql-client-15" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac
case "$SIZE_MB" in ''|*[!0-9]*|0) echo "bench: SIZE_MB must be a positive integer" >&2; exit 1 ;; esac

# The database, and at most two dumps of it at a time (about half its size each, compressed).
parent="${BENCH_BACKUP_DIR:-${TMPDIR:-/tmp}}"
[ -d "$parent" ] || { echo "bench: $parent is not a directory" >&2; exit 1; }
need_mb=$((SIZE_MB * 2 + 100))
free_mb="$(df -Pm "$parent" | awk 'NR == 2 { print $4 }')"
if [ "$free_mb" -lt "$need_mb" ]; then
    echo "bench: $free_mb MB free in $parent, $need_mb MB needed; set SIZE_MB lower or BENCH_BACKUP_DIR" >&2
    exit 1
fi

bench_database_url

# A fresh database for this run, so that a database named by BENCH_DATABASE_URL is left untouched.
db="mtr_bench_backup_$$_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
db_url="$("$PYTHON" - "$url" "$db" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
print(urlunsplit(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2])))
EOF
)"
out_dir=""
cleanup() {
    [ -z "$out_dir" ] || rm -rf "$out_dir"
    if [ -n "${BENCH_DATABASE_URL:-}" ]; then
        "$PSQL" "$url" -qX -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    else
        "$ROOT/scripts/pgtmp.sh" down "$bench_tmp" || true
    fi
}
trap cleanup EXIT  # replaces cluster.bash's, and removes the cluster too
out_dir="$(mktemp -d "$parent/mtr-bench-backup.XXXXXX")"
"$PSQL" "$url" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null

# About SIZE_MB of rows that look like an application's: numbers, timestamps, short and long
# text (hex digests compress about as well as ordinary text does), with a primary key. Batches
# of about a fifth of the size, until pg_database_size reaches it.
echo "bench: generating a database of about $SIZE_MB MB" >&2
"$PSQL" "$db_url" -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE events (
    id         bigint PRIMARY KEY,
    account_id integer NOT NULL,
    created_at timestamptz NOT NULL,
    kind       text NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    payload    text NOT NULL
);
SQL
batch=$((SIZE_MB * 1000))
[ "$batch" -le 500000 ] || batch=500000
next=1
while :; do
    size_mb="$("$PSQL" "$db_url" -qXAt -c "SELECT pg_database_size(current_database()) / 1048576")"
    [ "$size_mb" -lt "$SIZE_MB" ] || break
    "$PSQL" "$db_url" -qX -v ON_ERROR_STOP=1 -v lo="$next" -v hi="$((next + batch - 1))" >/dev/null <<'SQL'
INSERT INTO events
SELECT g, ((g * 7919) % 100003)::int, timestamptz '2026-01-01' + g * interval '17 seconds',
       (ARRAY['view', 'click', 'purchase', 'signup', 'refund'])[1 + g % 5],
       ((g * 104729) % 10000000) / 100.0,
       md5(g::text) || ' ' || md5((g * 31)::text) || ' ' || repeat(chr(97 + (g % 26)::int), 8 + (g % 40)::int)
FROM generate_series(:lo::bigint, :hi::bigint) AS g;
SQL
    next=$((next + batch))
done
"$PSQL" "$db_url" -qX -c "VACUUM ANALYZE events" >/dev/null
echo "bench: $size_mb MB in $((next - 1)) rows" >&2

# ---- local: the backup phase versus pg_dump -Fc -f, interleaved, RUNS times each ----
PYTHONPATH="$ROOT/bench" "$PYTHON" - "$BIN" "$PG_DUMP" "$db_url" "$out_dir" "$RUNS" "$size_mb" <<'PY'
import glob, json, os, statistics, subprocess, sys, time
from report import record

bin_, pg_dump, url, out_dir, runs, size_mb = sys.argv[1:5] + [int(sys.argv[5]), int(sys.argv[6])]
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_") and not k.startswith("PG")}
env.update(DATABASE_URL=url)
ours_dir = os.path.join(out_dir, "ours")
peer_file = os.path.join(out_dir, "peer.dump")

def clean():
    for f in glob.glob(os.path.join(ours_dir, "*")) + glob.glob(os.path.join(ours_dir, ".*")) + [peer_file]:
        if os.path.exists(f):
            os.unlink(f)

def ours():
    cmd = [bin_, "--backup=always", "--backup-dir", ours_dir, "--backup-keep", "1", "--migrate-cmd", "true",
           "--migrate-only", "--log-format", "json", "--log-level", "info"]
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = (time.perf_counter_ns() - t0) / 1e9
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-3000:])
        sys.exit(f"bench: migrate-then-run --backup=always failed with exit status {r.returncode}")
    done = None
    for line in r.stderr.decode(errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "backup.done":
            done = ev
    if not done:
        sys.exit("bench: migrate-then-run logged no backup.done event")
    return {"wall": wall, "backup": done["duration_ms"] / 1000, "verify": done["verify_ms"] / 1000,
            "bytes": done["bytes"]}

def peer():
    cmd = [pg_dump, "--format=custom", "--no-password", "--file", peer_file, "--dbname", url]
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = (time.perf_counter_ns() - t0) / 1e9
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-3000:])
        sys.exit(f"bench: pg_dump failed with exit status {r.returncode}")
    return {"wall": wall, "bytes": os.path.getsize(peer_file)}

os.makedirs(ours_dir, mode=0o700)
samples = {"ours": [], "peer": []}
for i in range(runs):
    # Alternate which goes first, so that neither always finds the other's pages in the cache.
    for name in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
        samples[name].append(ours() if name == "ours" else peer())
        clean()

med = lambda name, key: statistics.median(s[key] for s in samples[name])
backup, verify, wall = med("ours", "backup"), med("ours", "verify"), med("ours", "wall")
dump = statistics.median(s["backup"] - s["verify"] for s in samples["ours"])
ref = med("peer", "wall")
mib = lambda b: b / 1048576
print(f"database: {size_mb} MB; dump: ours {mib(med('ours', 'bytes')):.1f} MiB, "
      f"pg_dump {mib(med('peer', 'bytes')):.1f} MiB; runs: {runs}")
print(f"{'what':<52} {'ours s':>8} {'pg_dump s':>9} {'ratio':>7} {'MB/s':>7}")
rows = [("backup phase without verification (dump, fsync)", dump),
        ("backup phase with verification (backup.done)", backup),
        ("whole run: wait, lock, backup, migrate-cmd true", wall)]
for what, v in rows:
    print(f"{what:<52} {v:>8.2f} {ref:>9.2f} {v / ref:>6.2f}x {size_mb / v:>7.1f}")
print(f"{'verification: pg_restore --list of the dump':<52} {verify:>8.2f}   (reads its table of contents)")
print(f"  ours: migrate-then-run --backup=always --backup-dir DIR --migrate-cmd true --migrate-only")
print(f"  pg_dump: {pg_dump} --format=custom --file DIR/peer.dump (same directory; it fsyncs too)")
record(f"backup of a {size_mb} MB database, without verification", dump, "pg_dump -Fc -f FILE", ref, "s", runs)
record(f"backup of a {size_mb} MB database, verified (pg_restore --list)", backup, "pg_dump -Fc -f FILE", ref,
       "s", runs)
record("verification alone: pg_restore --list of that backup", verify, None, None, "s", runs)
PY

# ---- upload: --backup-upload-url versus `pg_dump -Fc | curl -T - URL` ----
# Waits for the tool's --backup-upload-url. Then: start Debian's nginx on 127.0.0.1 with a
# WebDAV location that takes PUT (dav_methods PUT; client_max_body_size 0) into a directory on
# the same disk, time `migrate-then-run --backup=always --backup-upload-url URL` (backup.done, or
# the upload's own event) against `pg_dump -Fc | curl -sfT - URL/peer.dump`, RUNS times each,
# and record them with bench_result (or record() in Python), e.g.
#   bench_result "backup + upload of a $size_mb MB database" OURS "pg_dump -Fc | curl -T -" PEER s "$RUNS"
# and add nginx and curl to the bench group in scripts/deps.sh.
if "$BIN" --help 2>/dev/null | grep -q -- '--backup-upload-url'; then
    echo "bench: the upload comparison is not written yet (bench/backup.sh, section upload)" >&2
else
    echo "bench: no upload comparison: $(basename "$BIN") has no --backup-upload-url yet" >&2
fi
