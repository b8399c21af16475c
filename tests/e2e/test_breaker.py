"""No restart storms: failure memory across restarts, exit and hold policies, status file."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (FAILING_INI, PROMPT, PYTHON, binary, clean_env, run, start, wait_for_event,
                      wait_until)

BAD_SQL = {"1_ok.sql": "CREATE TABLE ok (x int);\n", "2_bad.sql": "CREATE TABLE bad (x int;\n"}


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def events(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def restart_loop(argv, env, starts):
    """Restarts argv the moment it exits, like `restart: always` with no delay, until it has
    started `starts` times; returns how long each run took and everything they wrote on stderr."""
    took, err = [], []
    for _ in range(starts):
        t0 = time.monotonic()
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=120)
        took.append(time.monotonic() - t0)
        err.append(p.stderr)
    return took, "".join(err)


@pytest.fixture
def logged_cluster(cluster_factory):
    """A cluster that logs every connection, to count what a restart loop costs the server."""
    c = cluster_factory()
    with open(c.dir / "data" / "postgresql.conf", "a") as conf:
        conf.write("\nlog_connections = on\n")
    c.start()
    c.psql("postgres", "CREATE DATABASE loop")
    return c


def connections(c):
    log = (c.dir / "server.log").read_text()
    return sum(1 for l in log.splitlines() if "connection authorized" in l and "database=loop" in l)


def test_restart_loop_is_spaced_out_and_a_shell_entrypoint_is_not(logged_cluster, tmp_path):
    """The same number of immediate restarts: the shell line this tool replaces connects as fast
    as it can start; ours pauses 2, 4, then 8 s before each exit (1 s base, doubled for each time
    in a row), by its events and by the clock (a lower bound: a slow machine only adds to it)."""
    c = logged_cluster
    url = c.url("loop")
    starts = 3
    shell = ["sh", "-c", f"{PYTHON} -m alembic -c {FAILING_INI} upgrade head && exec true"]
    base_took, _ = restart_loop(shell, clean_env(DATABASE_URL=url), starts)
    base_conns = connections(c)

    state = tmp_path / "state"
    ours = [binary(), "--migrate-only", "--alembic-ini", str(FAILING_INI), "--python", PYTHON,
            "--state-dir", str(state), "--failure-backoff", "1s"]
    took, err = restart_loop(ours, clean_env(DATABASE_URL=url, MTR_FAILURE_BACKOFF="1s"), starts)
    conns = connections(c) - base_conns
    ev = events(err)
    attempts = len([e for e in ev if e["event"] == "migrate.start"])
    pauses = [e for e in ev if e["event"] in ("failure.pause", "failure.repeat")]
    print(f"\nrestart loop, {starts} immediate restarts: shell entrypoint {sum(base_took):.1f} s, "
          f"{base_conns} connections; migrate-then-run (exit, 1 s base) {sum(took):.1f} s, "
          f"{conns} connections")
    assert base_conns >= starts  # every start of the shell line hits the database at once
    assert attempts == starts and conns <= 4 * starts, (attempts, conns)
    assert [e["event"] for e in pauses] == ["failure.pause"] + ["failure.repeat"] * (starts - 1)
    assert [(e["count"], e["pause_ms"]) for e in pauses] == [(n, 1000 << n) for n in range(1, starts + 1)]
    assert all(t >= e["pause_ms"] / 1000 for t, e in zip(took, pauses)), took
    assert json.loads((state / "migrate-then-run.state.json").read_text())["count"] == starts


def test_hold_keeps_one_attempt_then_sighup_after_the_fix(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    marker = tmp_path / "app-started"
    status = tmp_path / "status.json"
    p = start(["--sql-dir", str(d), "--on-failure", "hold", "--hold-interval", "1h",
               "--hold-reminder", "500ms", "--status-file", str(status), "--",
               "sh", "-c", f"touch {marker}; exec sleep 30"],
              env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None))
    try:
        wait_for_event(p, "failure.hold")
        for _ in range(3):  # three reminders in a row, and no second attempt in between
            wait_for_event(p, "failure.holding")
        assert p.poll() is None, "it must hold, not exit"
        assert not marker.exists()
        st = json.loads(status.read_text())
        assert st["state"] == "failed-holding" and st["phase"] == "migrate"
        assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 1
        # The operator fixes the migration and asks for a retry.
        (d / "2_bad.sql").write_text("CREATE TABLE bad (x int);\n")
        p.send_signal(signal.SIGHUP)
        wait_for_event(p, "failure.retry", signal="SIGHUP")
        wait_for_event(p, "run.exec")
        wait_until("the app started after SIGHUP", marker.exists)
        assert json.loads(status.read_text())["state"] == "running"
        assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 0
    finally:
        p.send_signal(signal.SIGTERM)
        p.finish(timeout=15)
    names = [e["event"] for e in p.events]
    assert names.count("migrate.failed") == 1  # exactly one attempt while holding
    assert names.count("failure.hold") == 1 and names.count("failure.holding") >= 3
    assert names.index("failure.hold") < names.index("failure.retry") < names.index("run.exec")


def test_sigterm_while_holding_exits_with_the_failure_code(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    p = start(["--sql-dir", str(d), "--on-failure", "hold", "--", "true"],
              env=clean_env(DATABASE_URL=pg.url(db)))
    hold = wait_for_event(p, "failure.hold")
    assert hold["retry_in_ms"] == 60000  # no retry on its own for a minute
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = p.finish(timeout=30)
    took = time.monotonic() - t0
    assert r.code == 70, r
    assert took < PROMPT, took
    assert [e["phase"] for e in r.named("stop.signal")] == ["hold"]
    assert len(r.named("migrate.failed")) == 1 and not r.named("failure.retry")


def test_default_policy_holds_with_an_app_and_exits_without(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None))
    assert r.code == 70 and r.named("pipeline.start")[0]["on_failure"] == "exit"
    p = start(["--sql-dir", str(d), "--", "true"], env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None))
    assert wait_for_event(p, "pipeline.start")["on_failure"] == "hold"
    wait_for_event(p, "failure.hold")
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    r = p.finish(timeout=10)
    assert r.code == 70 and r.named("stop.signal")[0]["phase"] == "hold", r


def test_transient_lock_wait_is_retried_and_not_a_failure(pg, db, tmp_path):
    import psycopg2
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    state = tmp_path / "state"
    # Hold the very advisory lock the tool uses for public.mtr_schema_history until it waits.
    key = int.from_bytes(bytes.fromhex(fnv1a(b"public.mtr_schema_history")), "big", signed=True)
    holder = psycopg2.connect(pg.url(db))
    holder.autocommit = True
    cur = holder.cursor()
    cur.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (key,))
    holder_pid = cur.fetchone()[1]
    p = start(["--sql-dir", str(d), "--migrate-only", "--state-dir", str(state)], env=clean_env(DATABASE_URL=pg.url(db)))

    def looking():  # directly connected, the tool looks at the lock on its own connection
        return pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                           "'SELECT pg_catalog.pg_try_advisory_xact_lock_shared(%'") == "1"

    try:
        assert wait_for_event(p, "lock.wait")["holder_pid"] == holder_pid
        wait_until("the tool looking at the lock", looking)
    finally:
        holder.close()
    r = p.finish()
    assert r.code == 0, r
    names = [e["event"] for e in r.events]
    assert names.index("lock.wait") < names.index("lock.acquired") < names.index("migrate.step")
    assert r.named("lock.acquired")[0]["waited_ms"] > 0
    assert not r.named("migrate.failed") and not r.named("migrate.retry")
    assert not (state / "migrate-then-run.state.json").exists()


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_state_survives_restarts_is_cleared_by_success_and_survives_corruption(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    state = tmp_path / "state"
    args = ["--sql-dir", str(d), "--migrate-only", "--state-dir", str(state), "--failure-backoff", "200ms"]
    env = clean_env(DATABASE_URL=pg.url(db))
    assert run(args, env=env).code == 70
    rec = json.loads((state / "migrate-then-run.state.json").read_text())
    assert rec["count"] == 1 and "70:migrate:42601" in rec["signature"]
    r = run(args, env=env)
    assert r.code == 70 and r.named("failure.repeat")[0]["count"] == 2
    (state / "migrate-then-run.state.json").write_text("{not json")
    r = run(args, env=env)
    assert r.code == 70 and r.named("state.corrupt")
    assert json.loads((state / "migrate-then-run.state.json").read_text())["count"] == 1
    (d / "2_bad.sql").write_text("CREATE TABLE bad (x int);\n")
    r = run(args, env=env)
    assert r.code == 0 and r.named("state.cleared")
    assert not (state / "migrate-then-run.state.json").exists()


def test_without_state_dir_the_database_remembers(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    env = clean_env(DATABASE_URL=pg.url(db))
    args = ["--sql-dir", str(d), "--migrate-only", "--failure-backoff", "200ms"]
    assert run(args, env=env).code == 70
    r = run(args, env=env)
    assert r.named("failure.repeat")[0]["count"] == 2
    assert pg.psql(db, "SELECT count FROM migrate_then_run.failure_state") == "2"
    (d / "2_bad.sql").write_text("CREATE TABLE bad (x int);\n")
    assert run(args, env=env).code == 0
    assert pg.psql(db, "SELECT count(*) FROM migrate_then_run.failure_state") == "0"


def test_status_file_through_a_run(pg, db, tmp_path):
    import psycopg2
    # The migration waits for a lock the test holds, and the app for its stdin to close: each
    # state lasts until the test has seen it.
    blocker = psycopg2.connect(pg.url(db))
    blocker.cursor().execute("SELECT pg_advisory_lock(4242)")
    d = write(tmp_path / "m", {"1_slow.sql": "SELECT pg_advisory_xact_lock(4242);\n"})
    status = tmp_path / "status.json"
    p = start(["--sql-dir", str(d), "--status-file", str(status), "--", "sh", "-c", "cat >/dev/null"],
              env=clean_env(DATABASE_URL=pg.url(db)), stdin=subprocess.PIPE)
    seen = []

    def state():
        try:
            s = json.loads(status.read_text())["state"]
        except (OSError, ValueError):
            return None
        if not seen or seen[-1] != s:
            seen.append(s)
        return s

    try:
        wait_until("the status file says migrating", lambda: state() == "migrating")
        wait_until("the migration waits for the test's lock", lambda: pg.psql(
            db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())") == "1")
        assert state() == "migrating"
    finally:
        blocker.close()
    wait_for_event(p, "run.exec")
    assert state() == "running"
    assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 0
    p.proc.stdin.close()  # the app ends
    r = p.finish(timeout=30)
    assert r.code == 0, r
    assert seen[-2:] == ["migrating", "running"] and seen[0] in ("waiting", "migrating"), seen
    # The app is gone: the file still says running, but the pid is dead.
    assert json.loads(status.read_text())["state"] == "running"
    assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 1
    assert subprocess.run([binary(), "--health"], capture_output=True).returncode == 64
