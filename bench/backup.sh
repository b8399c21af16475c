#!/usr/bin/env bash
# Benchmark: the backup phase (`--backup=always`: pg_dump -Fc into a private file, verified as it
# is written by pg_restore reading it beside pg_dump, fsync) on a database of about SIZE_MB
# megabytes (default 500, made with generate_series), versus a bare `pg_dump -Fc -f FILE` to the
# same directory; how long the verdict took after pg_dump ended is reported apart. Our figures
# come from the tool's own backup.done event (duration_ms, verify_ms); the peer's is its wall time. BENCH_BACKUP_DIR picks the disk
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
rows = [("backup phase, verified as written (backup.done)", backup),
        ("  of which before pg_dump's end (dump, fsync)", dump),
        ("whole run: wait, lock, backup, migrate-cmd true", wall)]
for what, v in rows:
    print(f"{what:<52} {v:>8.2f} {ref:>9.2f} {v / ref:>6.2f}x {size_mb / v:>7.1f}")
print(f"{'the verdict, after pg_dump ended':<52} {verify:>8.2f}")
print(f"  ours: migrate-then-run --backup=always --backup-dir DIR --migrate-cmd true --migrate-only")
print(f"  pg_dump: {pg_dump} --format=custom --file DIR/peer.dump (same directory; it fsyncs too)")
record(f"backup of a {size_mb} MB database, verified", backup, "pg_dump -Fc -f FILE", ref, "s", runs, 1.05)
record("the verification's verdict after pg_dump ended", verify, None, None, "s", runs)
PY

# ---- upload: --backup-upload-url versus `pg_dump -Fc | curl -T - URL`, to Debian's nginx ----
# nginx on 127.0.0.1 takes PUTs (dav_methods PUT) into a directory on the same disk. Ours streams
# the dump to it while writing the local copy (and, apart, with --backup-dir none: upload only);
# the peer pipes pg_dump into curl. Both send it chunked; the uploaded bytes are checked.
if ! command -v curl >/dev/null || [ ! -x /usr/sbin/nginx ]; then
    echo "bench: no upload comparison: it needs curl and nginx (apt-get install curl nginx-light)" >&2
    exit 0
fi
PYTHONPATH="$ROOT/bench:$ROOT/tests/e2e" "$PYTHON" - "$BIN" "$PG_DUMP" "$db_url" "$out_dir" "$RUNS" "$size_mb" <<'PY'
import glob, json, os, shutil, statistics, subprocess, sys, time
from report import record
from httpd import Nginx

bin_, pg_dump, url, out_dir, runs, size_mb = sys.argv[1:5] + [int(sys.argv[5]), int(sys.argv[6])]
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_") and not k.startswith("PG")}
env.update(DATABASE_URL=url)
ours_dir = os.path.join(out_dir, "ours-up")
os.makedirs(ours_dir, mode=0o700, exist_ok=True)
nginx = Nginx()

def clean():
    shutil.rmtree(ours_dir, ignore_errors=True)
    os.makedirs(ours_dir, mode=0o700)
    for f in glob.glob(str(nginx.root / "*")):
        shutil.rmtree(f) if os.path.isdir(f) else os.unlink(f)

def ours(local):
    cmd = [bin_, "--backup=always", "--backup-dir", ours_dir if local else "none", "--backup-keep", "1",
           "--backup-upload-url", nginx.url("ours/"), "--migrate-cmd", "true", "--migrate-only",
           "--log-format", "json"]
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmd, env=env, cwd=out_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    wall = (time.perf_counter_ns() - t0) / 1e9
    done = [json.loads(l) for l in r.stderr.decode(errors="replace").splitlines()
            if '"backup.done"' in l]
    if r.returncode != 0 or not done:
        sys.stderr.write(r.stderr.decode(errors="replace")[-3000:])
        sys.exit(f"bench: migrate-then-run --backup-upload-url failed with exit status {r.returncode}")
    [up] = glob.glob(str(nginx.root / "ours" / "*.dump"))
    if local:
        [mine] = glob.glob(os.path.join(ours_dir, "*.dump"))
        if open(mine, "rb").read() != open(up, "rb").read():
            sys.exit("bench: the uploaded dump differs from the local one")
    d = done[0]
    return {"backup": d["duration_ms"] / 1000, "verify": d["verify_ms"] / 1000, "wall": wall}

def peer():
    t0 = time.perf_counter_ns()
    r = subprocess.run(f"'{pg_dump}' --format=custom --no-password --dbname \"$U\" | curl -sSf -T - '{nginx.url('peer.dump')}'",
                       shell=True, env={**env, "U": url}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = (time.perf_counter_ns() - t0) / 1e9
    if r.returncode != 0:
        sys.exit(f"bench: pg_dump | curl failed: {r.stderr.decode(errors='replace')[-2000:]}")
    return {"wall": wall}

samples = {"local": [], "none": [], "peer": []}
try:
    for i in range(runs):
        order = ("local", "none", "peer") if i % 2 == 0 else ("peer", "none", "local")
        for name in order:
            samples[name].append(peer() if name == "peer" else ours(name == "local"))
            clean()
finally:
    nginx.stop()
med = lambda name, f: statistics.median(f(s) for s in samples[name])
ref = med("peer", lambda s: s["wall"])
local_all = med("local", lambda s: s["backup"])
none = med("none", lambda s: s["backup"])
print(f"{'upload to nginx on 127.0.0.1, verified as written':<52} {'ours s':>8} {'peer s':>9} {'ratio':>7}")
for what, v in (("stream + local copy (backup.done)", local_all),
                ("--backup-dir none: upload only", none)):
    print(f"{what:<52} {v:>8.2f} {ref:>9.2f} {v / ref:>6.2f}x")
print("  peer: pg_dump -Fc | curl -T - URL (not verified)")
record(f"backup of a {size_mb} MB database streamed to nginx + local copy, verified", local_all,
       "pg_dump -Fc | curl -T -", ref, "s", runs, 1.05)
record(f"backup of a {size_mb} MB database streamed to nginx, no local copy, verified", none,
       "pg_dump -Fc | curl -T -", ref, "s", runs, 1.05)
PY
