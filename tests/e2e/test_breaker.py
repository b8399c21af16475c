"""No restart storms: failure memory across restarts, exit and hold policies, status file."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import FAILING_INI, PYTHON, binary, clean_env, run

BAD_SQL = {"1_ok.sql": "CREATE TABLE ok (x int);\n", "2_bad.sql": "CREATE TABLE bad (x int;\n"}


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def events(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def restart_loop(argv, env, seconds):
    """Restarts argv the moment it exits, like `restart: always` with no delay; returns the
    number of starts and everything they printed on stderr."""
    starts, err = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        starts += 1
        try:
            _, e = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            _, e = p.communicate(timeout=10)
        err.append(e)
    return starts, "".join(err)


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
    c = logged_cluster
    url = c.url("loop")
    # The shell line this tool replaces, under the same immediate-restart driver.
    shell = ["sh", "-c", f"{PYTHON} -m alembic -c {FAILING_INI} upgrade head && exec true"]
    base_starts, _ = restart_loop(shell, clean_env(DATABASE_URL=url), 20)
    base_conns = connections(c)

    state = tmp_path / "state"
    ours = [binary(), "--migrate-only", "--alembic-ini", str(FAILING_INI), "--python", PYTHON,
            "--state-dir", str(state), "--failure-backoff", "1s"]
    starts, err = restart_loop(ours, clean_env(DATABASE_URL=url, MTR_FAILURE_BACKOFF="1s"), 20)
    conns = connections(c) - base_conns
    ev = events(err)
    attempts = len([e for e in ev if e["event"] == "migrate.start"])
    repeats = [e for e in ev if e["event"] == "failure.repeat"]
    print(f"\nrestart loop, 20 s: shell entrypoint {base_starts} attempts, {base_conns} connections; "
          f"migrate-then-run (exit, 1 s base) {attempts} attempts, {conns} connections")
    assert attempts <= 4, attempts
    assert base_starts >= 4 * attempts
    assert repeats and repeats[-1]["count"] == attempts and repeats[-1]["pause_ms"] >= 2000
    assert json.loads((state / "migrate-then-run.state.json").read_text())["count"] == attempts


def test_hold_keeps_one_attempt_then_sighup_after_the_fix(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    marker = tmp_path / "app-started"
    status = tmp_path / "status.json"
    p = subprocess.Popen([binary(), "--sql-dir", str(d), "--on-failure", "hold", "--hold-interval", "1h",
                          "--hold-reminder", "2s", "--status-file", str(status), "--",
                          "sh", "-c", f"touch {marker}; exec sleep 30"],
                         env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(10)
        assert p.poll() is None, "it must hold, not exit"
        assert not marker.exists()
        st = json.loads(status.read_text())
        assert st["state"] == "failed-holding" and st["phase"] == "migrate"
        assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 1
        # The operator fixes the migration and asks for a retry.
        (d / "2_bad.sql").write_text("CREATE TABLE bad (x int);\n")
        p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the app did not start after SIGHUP"
        assert json.loads(status.read_text())["state"] == "running"
        assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 0
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    ev = events(err)
    names = [e["event"] for e in ev]
    assert names.count("migrate.failed") == 1  # exactly one attempt while holding
    assert names.count("failure.hold") == 1 and names.count("failure.holding") >= 3
    assert "failure.retry" in names and "run.exec" in names


def test_sigterm_while_holding_exits_with_the_failure_code(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    p = subprocess.Popen([binary(), "--sql-dir", str(d), "--on-failure", "hold", "--", "true"],
                         env=clean_env(DATABASE_URL=pg.url(db)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    err = ""
    while time.monotonic() < deadline:
        if pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate-then-run'") == "0" \
                and p.poll() is None:
            time.sleep(0.5)
            break
        time.sleep(0.05)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 70, err
    assert time.monotonic() - t0 < 2
    assert any(e["event"] == "stop.signal" and e["phase"] == "hold" for e in events(err))


def test_default_policy_holds_with_an_app_and_exits_without(pg, db, tmp_path):
    d = write(tmp_path / "m", BAD_SQL)
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None))
    assert r.code == 70 and r.named("pipeline.start")[0]["on_failure"] == "exit"
    p = subprocess.Popen([binary(), "--sql-dir", str(d), "--", "true"],
                         env=clean_env(DATABASE_URL=pg.url(db), MTR_ON_FAILURE=None),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert '"on_failure":"hold"' in err


def test_transient_lock_wait_is_retried_and_not_a_failure(pg, db, tmp_path):
    import psycopg2
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    state = tmp_path / "state"
    # Hold the very advisory lock the tool uses for public.mtr_schema_history for 3 s.
    key = int.from_bytes(bytes.fromhex(fnv1a(b"public.mtr_schema_history")), "big", signed=True)
    holder = psycopg2.connect(pg.url(db))
    holder.autocommit = True
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (key,))
    threading.Timer(3.0, holder.close).start()
    r = run(["--sql-dir", str(d), "--migrate-only", "--state-dir", str(state)], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    assert r.named("lock.wait") and r.named("lock.acquired")[0]["waited_ms"] >= 2500
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
    d = write(tmp_path / "m", {"1_slow.sql": "SELECT pg_sleep(1.5);\n"})
    status = tmp_path / "status.json"
    p = subprocess.Popen([binary(), "--sql-dir", str(d), "--status-file", str(status), "--", "sleep", "3"],
                         env=clean_env(DATABASE_URL=pg.url(db)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 20
    while p.poll() is None and time.monotonic() < deadline:
        try:
            state = json.loads(status.read_text())["state"]
        except (OSError, ValueError):
            state = None
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state == "running":
            assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 0
            break
        time.sleep(0.01)
    p.wait(timeout=10)
    assert seen[-2:] == ["migrating", "running"] and seen[0] in ("waiting", "migrating"), seen
    # The app is gone: the file still says running, but the pid is dead.
    assert subprocess.run([binary(), "--health", "--status-file", str(status)]).returncode == 1
    assert subprocess.run([binary(), "--health"], capture_output=True).returncode == 64
