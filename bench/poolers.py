#!/usr/bin/python3
"""Eight replicas at once, directly and through Debian's PgBouncer in both pool modes: exit
codes, time until the last app started, rows applied, advisory locks left behind, and whether a
replica started afterwards (directly) gets the lock. Run with a binary to compare two builds:

    /usr/bin/python3 bench/poolers.py [BINARY]     (default: build/migrate-then-run)
"""
import collections
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import conftest  # noqa: E402  (the test harness: throwaway cluster, clean environment)
import pgbouncer  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "build" / "migrate-then-run")
REPLICAS, POOL = 8, 5
PY = "/usr/bin/python3"

AUDIT = {"1_audit.sql": "CREATE TABLE audit (version int);\n",
         "2_step.sql": "INSERT INTO audit VALUES (2);\nSELECT pg_sleep(0.2);\n",
         "3_step.sql": "INSERT INTO audit VALUES (3);\nSELECT pg_sleep(0.2);\n"}
NO_TX = dict(AUDIT, **{"4_seed.sql": "-- migrate-then-run: no-transaction\nINSERT INTO audit VALUES (4);\n"})
CMD = """import os, time, psycopg2
c = psycopg2.connect(os.environ["DATABASE_URL"]); c.autocommit = True; cur = c.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS audit (version int)")
cur.execute("SELECT count(*) FROM audit")
if cur.fetchone()[0] == 0:
    time.sleep(0.3); cur.execute("INSERT INTO audit VALUES (1)")
"""
REV1 = ("from alembic import op\nrevision = 'r1'\ndown_revision = None\nbranch_labels = None\n"
        "depends_on = None\ndef upgrade():\n    op.execute('CREATE TABLE audit (version int)')\n")
REV2 = ("from alembic import op\nrevision = 'r2'\ndown_revision = 'r1'\nbranch_labels = None\n"
        "depends_on = None\ndef upgrade():\n    op.execute('INSERT INTO audit VALUES (2)')\n"
        "    op.execute('SELECT pg_sleep(0.3)')\n")


def source_args(kind, work):
    if kind in ("sql", "sql-notx"):
        d = work / "m"
        d.mkdir()
        for name, text in (NO_TX if kind == "sql-notx" else AUDIT).items():
            (d / name).write_text(text)
        return ["--sql-dir", str(d)]
    if kind == "command":
        (work / "cmd.py").write_text(CMD)
        return ["--migrate-cmd", f"{PY} {work / 'cmd.py'}"]
    proj = work / "proj"
    (proj / "versions").mkdir(parents=True)
    (proj / "alembic.ini").write_text((ROOT / "docker" / "example" / "alembic.ini").read_text().replace(
        "script_location = %(here)s/migrations",
        f"script_location = {ROOT}/docker/example/migrations\nversion_locations = %(here)s/versions"))
    (proj / "versions" / "r1.py").write_text(REV1)
    (proj / "versions" / "r2.py").write_text(REV2)
    return ["--alembic-ini", str(proj / "alembic.ini"), "--python", PY]


def scenario(cluster, bouncers, name, kind, path, backup=False):
    db = "b_" + name.replace("-", "_")
    cluster.psql("postgres", f"CREATE DATABASE {db}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="mtr-bench-"))
    url = cluster.url(db) if path == "direct" else bouncers[path].url(db)
    starts = work / "app-starts"
    env = conftest.clean_env(DATABASE_URL=url, MTR_BACKUP="required" if backup else "off",
                             MTR_BACKUP_DIR=str(work / "backups"), STARTS=str(starts))
    app = ["--", "sh", "-c", 'date +%s.%N >> "$STARTS"']
    args = source_args(kind, work)
    t0 = time.time()
    procs = [subprocess.Popen([BIN, *args, *app], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(REPLICAS)]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=180))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append("hung")
    t_starts = [float(x) for x in starts.read_text().split()] if starts.exists() else []
    last = f"{max(t_starts) - t0:.2f} s" if t_starts else "-"
    rows = cluster.psql(db, "SELECT count(*) FROM audit") if cluster.psql(
        db, "SELECT to_regclass('audit') IS NOT NULL") == "t" else "0"
    locks = cluster.psql(db, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                             f"WHERE locktype = 'advisory' AND d.datname = '{db}'")
    # A replica started afterwards, directly: does it find the lock free?
    t1 = time.time()
    after = subprocess.run([BIN, *args, "--migrate-only", "--lock-timeout", "10s"],
                           env=conftest.clean_env(DATABASE_URL=cluster.url(db), MTR_BACKUP="off"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    tally = ", ".join(f"{n}×{c}" for c, n in sorted(collections.Counter(map(str, codes)).items()))
    return (name, path, POOL if path != "direct" else "-", tally, last, len(t_starts), rows, locks,
            f"{after} ({time.time() - t1:.1f} s)")


def main():
    cluster = conftest.Cluster()
    cluster.start()
    bouncers = {m: pgbouncer.PgBouncer(cluster, m, POOL).start() for m in ("transaction", "session")}
    rows = []
    try:
        for name, kind, path, backup in [
                ("sql", "sql", "transaction", False), ("sql-notx", "sql-notx", "transaction", False),
                ("sql-notx-direct", "sql-notx", "direct", False), ("alembic", "alembic", "transaction", False),
                ("command", "command", "transaction", False), ("sql-backup", "sql", "session", True),
                ("alembic-session", "alembic", "session", True)]:
            rows.append(scenario(cluster, bouncers, name, kind, path, backup))
    finally:
        for b in bouncers.values():
            b.stop()
        cluster.destroy()
    print(f"binary: {BIN}; {REPLICAS} replicas at once")
    print("| scenario | path | pool size | exit codes | last app start | apps started | rows | locks left | next replica (direct) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
