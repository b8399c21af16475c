"""Native SQL migrations against a real PostgreSQL: exactly once across replicas, refusals, retries."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import PROMPT, binary, clean_env, run, start, wait_for_event, wait_until

HIST = "public.mtr_schema_history"


def write(dirpath, files):
    dirpath.mkdir(exist_ok=True)
    for name, sql in files.items():
        (dirpath / name).write_text(sql)
    return dirpath


def sql_run(url, sql_dir, *extra, app=None, timeout=120):
    args = ["--sql-dir", str(sql_dir), *extra]
    args += ["--", *app] if app else ["--migrate-only"]
    return run(args, env=clean_env(DATABASE_URL=url), timeout=timeout)


def history(pg, db):
    out = pg.psql(db, f"SELECT version || ':' || success FROM {HIST} ORDER BY version")
    return out.split("\n") if out else []


def audit_migrations(n, sleep=0.05):
    files = {"0000_audit.sql": "CREATE TABLE audit (version int, at timestamptz DEFAULT clock_timestamp());\n"}
    for v in range(1, n + 1):
        files[f"{v:04d}_step.sql"] = (f"INSERT INTO audit (version) VALUES ({v});\n"
                                      f"SELECT pg_sleep({sleep});\n")
    return files


def test_sixteen_replicas_apply_each_migration_exactly_once(pg, db, tmp_path):
    d = write(tmp_path / "m", audit_migrations(20))
    url = pg.url(db)
    procs = [subprocess.Popen([binary(), "--sql-dir", str(d), "--", "sh", "-c", "echo app-$0", str(i)],
                              env=clean_env(DATABASE_URL=url), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(16)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    for i, (code, out, err) in enumerate(results):
        assert code == 0, err
        assert out == f"app-{i}\n"
    assert pg.psql(db, "SELECT count(*), count(DISTINCT version) FROM audit") == "20|20"
    assert len(history(pg, db)) == 21
    applied = sum(err.count('"event":"migrate.step"') for _, _, err in results)
    assert applied == 21  # one replica did the work; the others waited, re-planned, found nothing
    waited = [err for _, _, err in results if '"event":"lock.wait"' in err]
    assert waited and all('"event":"migrate.skip"' in err for err in waited)


def test_failing_migration_leaves_no_trace_and_names_file_and_line(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "1_users.sql": "CREATE TABLE users (id int);\n",
        "2_bad.sql": "CREATE TABLE half (id int);\n\nINSERT INTO users (id, nosuch)\n  VALUES (1, 2);\n",
        "3_later.sql": "CREATE TABLE later (id int);\n"})
    r = sql_run(pg.url(db), d)
    assert r.code == 70, r
    fail = r.named("migrate.failed")[0]
    assert fail["file"] == "2_bad.sql" and fail["sqlstate"] == "42703"
    assert (fail["line"], fail["column"]) == (3, 24)  # "nosuch"
    assert "2_bad.sql:3:24" in fail["msg"]
    assert history(pg, db) == ["1:true"]
    assert pg.psql(db, "SELECT to_regclass('half') IS NULL AND to_regclass('later') IS NULL") == "t"


def test_numeric_order_and_no_transaction_files(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "9_first.sql": "CREATE TABLE t (x int);\n",
        "10_second.sql": "INSERT INTO t VALUES (10);\n",
        "11_index.sql": "-- migrate-then-run: no-transaction\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n",
        "notes.txt": "not a migration\n"})
    r = sql_run(pg.url(db), d)
    assert r.code == 0, r
    assert [e["file"] for e in r.named("migrate.step")] == ["9_first.sql", "10_second.sql", "11_index.sql"]
    assert r.named("plan.skipped")[0]["file"] == "notes.txt"
    assert pg.psql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") == "t"
    assert history(pg, db) == ["9:true", "10:true", "11:true"]


@pytest.mark.parametrize("case", ["changed", "missing", "out_of_order"])
def test_database_state_refusals(pg, db, tmp_path, case):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n", "3_c.sql": "CREATE TABLE c (x int);\n"})
    assert sql_run(pg.url(db), d).code == 0
    if case == "changed":
        (d / "1_a.sql").write_text("CREATE TABLE a (x bigint);\n")
        want = ["1_a.sql", "was changed after it was applied"]
    elif case == "missing":
        (d / "3_c.sql").unlink()
        want = ["applied migration 3 (c) not found locally"]
    else:
        (d / "2_b.sql").write_text("CREATE TABLE b (x int);\n")
        want = ["2_b.sql", "out of order", "--allow-out-of-order"]
    before = history(pg, db)
    r = sql_run(pg.url(db), d)
    assert r.code == 65, r
    msg = r.named("check.failed")[0]["msg"]
    for w in want:
        assert w in msg
    assert history(pg, db) == before
    if case == "out_of_order":
        r = sql_run(pg.url(db), d, "--allow-out-of-order")
        assert r.code == 0, r
        assert history(pg, db) == ["1:true", "2:true", "3:true"]


@pytest.mark.parametrize("files,want", [
    ({"1_a.sql": "SELECT 1;\n", "01_b.sql": "SELECT 2;\n"}, "have the same version 1"),
    ({"1_a.sql": "  \n"}, "1_a.sql: the file is empty"),
    ({"99999999999999999999999_a.sql": "SELECT 1;\n"}, "does not fit in 64 bits"),
])
def test_bad_migration_files(pg, db, tmp_path, files, want):
    d = write(tmp_path / "m", files)
    r = sql_run(pg.url(db), d)
    assert r.code == 65, r
    assert want in r.named("check.failed")[0]["msg"]


def test_unreadable_file(pg, db, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    d = write(tmp_path / "m", {"1_a.sql": "SELECT 1;\n"})
    (d / "1_a.sql").chmod(0)
    r = sql_run(pg.url(db), d)
    assert r.code == 65 and "cannot read" in r.stderr


def test_baseline_on_a_database_set_up_by_hand(pg, db, tmp_path):
    pg.psql(db, "CREATE TABLE legacy (x int)")
    d = write(tmp_path / "m", {"1_legacy.sql": "CREATE TABLE legacy (x int);\n",
                               "2_more.sql": "CREATE TABLE more (x int);\n"})
    r = sql_run(pg.url(db), d)
    assert r.code == 65, r
    assert "--baseline VERSION" in r.named("check.failed")[0]["msg"]
    r = sql_run(pg.url(db), d, "--baseline", "1")
    assert r.code == 0, r
    assert [e["file"] for e in r.named("migrate.step")] == ["2_more.sql"]
    assert history(pg, db) == ["1:true", "2:true"]


def test_failed_no_transaction_migration_is_visible_and_repairable(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "1_t.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);\n",
        "2_idx.sql": "-- migrate-then-run: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_x ON t (x);\n"})
    r = sql_run(pg.url(db), d)
    assert r.code == 70, r
    assert history(pg, db) == ["1:true", "2:false"]
    r = sql_run(pg.url(db), d)
    assert r.code == 65, r
    assert "--repair-failed 2" in r.named("check.failed")[0]["msg"]
    # The operator repairs: removes the invalid index and the duplicate row, then retries.
    pg.psql(db, "DROP INDEX t_x; DELETE FROM t WHERE ctid <> (SELECT min(ctid) FROM t)")
    r = sql_run(pg.url(db), d, "--repair-failed", "2")
    assert r.code == 0, r
    assert history(pg, db) == ["1:true", "2:true"]


def test_check_reports_and_changes_nothing(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n", "2_b.sql": "CREATE TABLE b (x int);\n"})
    r = run(["--sql-dir", str(d), "--check"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    report = json.loads(r.stdout)
    assert [p["file"] for p in report["pending"]] == ["1_a.sql", "2_b.sql"]
    assert report["consistent"] is True and report["applied"] == []
    assert pg.psql(db, f"SELECT to_regclass('{HIST}') IS NULL") == "t"
    assert sql_run(pg.url(db), d).code == 0
    (d / "1_a.sql").write_text("-- edited\n")
    r = run(["--sql-dir", str(d), "--check", "--log-format", "text"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65
    assert "INCONSISTENT: 2 applied, 0 pending, 1 problem" in r.stdout


def test_a_table_locked_by_another_session_is_retried(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_busy.sql": "CREATE TABLE busy (x int);\n"})
    assert sql_run(pg.url(db), d).code == 0
    write(d, {"2_alter.sql": "ALTER TABLE busy ADD COLUMN y int;\n"})
    import psycopg2
    holder = psycopg2.connect(pg.url(db))
    cur = holder.cursor()
    cur.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
    p = start(["--sql-dir", str(d), "--migration-lock-timeout", "300ms", "--retries", "10", "--migrate-only"],
              env=clean_env(DATABASE_URL=pg.url(db)))
    try:
        wait_for_event(p, "migrate.retry")  # it ran into the lock, and is trying again
    finally:
        holder.commit()
        holder.close()
    r = p.finish(timeout=120)
    assert r.code == 0, r
    retries = r.named("migrate.retry")
    assert retries and all(e["sqlstate"] == "55P03" for e in retries)
    assert pg.psql(db, "SELECT count(*) FROM information_schema.columns "
                       "WHERE table_name = 'busy' AND column_name = 'y'") == "1"


def waits_for_lock(c, db, key):
    """Whether a session of the tool waits in db for the advisory lock key that the test holds."""
    return c.psql(db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                      f"WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = {key} "
                      "AND a.application_name = 'migrate-then-run' AND a.datname = current_database()") == "1"


def test_terminated_backend_and_server_restart_mid_run(cluster_factory, tmp_path):
    import psycopg2
    c = cluster_factory()
    c.start()
    d = write(tmp_path / "m", audit_migrations(10, sleep=0.3))
    url = c.url()

    p = start(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=url))
    wait_until("the tool's session, terminated while it migrates", lambda: c.psql(
        "postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE query LIKE '%INSERT INTO audit%' AND application_name = 'migrate-then-run'") == "1")
    r = p.finish(timeout=120)
    assert r.code == 0, r
    assert r.named("migrate.retry")

    # Now an immediate restart while a migration runs: the one that waits for a lock the test holds.
    files = {f"{v:04d}_more.sql": f"INSERT INTO audit (version) VALUES ({v});\nSELECT pg_sleep(0.3);\n"
             for v in range(11, 16)}
    files["0013_more.sql"] = "INSERT INTO audit (version) VALUES (13);\nSELECT pg_advisory_xact_lock(1313);\n"
    d2 = write(tmp_path / "m", files)
    blocker = psycopg2.connect(url)
    blocker.cursor().execute("SELECT pg_advisory_lock(1313)")
    p = start(["--sql-dir", str(d2), "--migrate-only"], env=clean_env(DATABASE_URL=url))
    wait_until("migration 13 waits for the test's lock", lambda: waits_for_lock(c, "postgres", 1313))
    # The restarted server must not inherit our pipes: its output goes to its log file.
    pg_ctl = ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(c.dir / "data"), "-l",
              str(c.dir / "server.log"), "restart", "-m", "immediate", "-w"]
    if os.geteuid() == 0:
        pg_ctl = ["runuser", "-u", "postgres", "--", *pg_ctl]
    subprocess.run(pg_ctl, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd="/")
    blocker.close()  # its session ended with the server, and the lock with it
    r = p.finish(timeout=120)
    assert r.code == 0, r
    assert r.named("migrate.retry")
    assert [e["file"] for e in r.named("migrate.step")][-3:] == ["0013_more.sql", "0014_more.sql", "0015_more.sql"]
    assert c.psql("postgres", "SELECT count(*), count(DISTINCT version) FROM audit") == "15|15"
    assert c.psql("postgres", f"SELECT count(*) FILTER (WHERE success) FROM {HIST}") == "16"


def test_killed_lock_holder_is_taken_over(pg, db, tmp_path):
    import psycopg2
    files = audit_migrations(3)
    # The first replica stops in migration 2, on a lock the test holds, and is killed there.
    files["0002_step.sql"] = "INSERT INTO audit (version) VALUES (2);\nSELECT pg_advisory_xact_lock(2222);\n"
    d = write(tmp_path / "m", files)
    url = pg.url(db)
    env = clean_env(DATABASE_URL=url)
    blocker = psycopg2.connect(url)
    blocker.cursor().execute("SELECT pg_advisory_lock(2222)")
    try:
        first = start(["--sql-dir", str(d), "--migrate-only"], env=env)
        wait_until("the first replica waits in migration 2", lambda: waits_for_lock(pg, db, 2222))
        second = start(["--sql-dir", str(d), "--migrate-only"], env=env)
        wait_for_event(second, "lock.wait", holder_pid=int(pg.psql(
            db, "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND NOT (classid = 0 AND objid = 2222)")))
        first.proc.kill()  # the holder dies mid-migration; its session ends with it
        first.finish()
    finally:
        blocker.close()  # now the dead replica's statement can end, and its session with it
    r = second.finish(timeout=60)
    assert r.code == 0, r
    assert r.named("lock.wait") and r.named("lock.acquired")
    # Migration 2 went to the server as one statement with its COMMIT: the dead replica's
    # session ran on to the fence before that COMMIT, found the lock gone with its holder, and
    # rolled back; the survivor applied migrations 2 and 3, once each.
    assert [e["file"] for e in r.named("migrate.step")] == ["0002_step.sql", "0003_step.sql"]
    assert pg.psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM audit") == "1,2,3"
    assert history(pg, db) == ["0:true", "1:true", "2:true", "3:true"]


def test_sigterm_during_a_sql_migration_cancels_and_rolls_back(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_slow.sql": "CREATE TABLE slow (x int);\nSELECT pg_sleep(60);\n"})
    marker = tmp_path / "app-started"
    p = start(["--sql-dir", str(d), "--", "touch", str(marker)], env=clean_env(DATABASE_URL=pg.url(db)))
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
    wait_until("the migration sleeps in the server", lambda: pg.psql(db, sleeping) == "1")
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = p.finish(timeout=30)
    took = time.monotonic() - t0
    assert r.code == 128 + signal.SIGTERM, r
    assert took < PROMPT, took
    assert not marker.exists()
    assert [e["phase"] for e in r.named("stop.signal")] == ["migrate"]
    assert pg.psql(db, "SELECT to_regclass('slow') IS NULL") == "t"
    assert history(pg, db) == []
    assert pg.psql(db, sleeping) == "0"


def test_trailing_comment_without_newline_and_notices(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "DO $$ BEGIN RAISE NOTICE 'hello from 1'; END $$;\nCREATE TABLE a (x int) -- no newline"})
    r = sql_run(pg.url(db), d)
    assert r.code == 0, r
    assert [e["msg"] for e in r.named("db.notice")] == ["hello from 1"]
    assert history(pg, db) == ["1:true"]
