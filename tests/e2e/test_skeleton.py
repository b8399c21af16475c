"""Wait → migrate → exec against a real PostgreSQL, with real Alembic: the walking skeleton."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (EXAMPLE_INI, FAILING_INI, PASSWORD, PGTMP, PROMPT, PSQL, PYTHON, ROOT,
                      binary, clean_env, free_port, run, scratch_dir, start, wait_for_event)

# An app that reports exactly what it received, and exits with the status it is asked for.
APP = [PYTHON, "-c",
       "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], "
       "'env': {k: os.environ.get(k) for k in ('APP_SETTING', 'DATABASE_URL', 'MTR_LOG_FORMAT')}}));"
       "sys.exit(int(os.environ.get('APP_EXIT', '0')))"]
TRICKY_ARGS = ["plain", "two words", "--wait-timeout=abc", "$HOME", "", "'quoted'", "ünï"]
ALEMBIC = ["--alembic-ini", str(EXAMPLE_INI), "--python", PYTHON]


def alembic_revision(pg, db):
    return pg.psql(db, "SELECT version_num FROM alembic_version")


@pytest.mark.secret_audit_exempt("stdout", reason="the app prints its DATABASE_URL to show that "
                                                   "it arrived untouched")
def test_server_starts_late_then_migrate_and_exec(cluster_factory):
    late = cluster_factory()
    url = late.url()
    env = clean_env(DATABASE_URL=url, APP_SETTING="kept", APP_EXIT="7")
    p = start(["--wait-timeout", "30s", "--log-level", "debug", *ALEMBIC, "--", *APP, *TRICKY_ARGS],
              env=env)
    # The server is started only once the tool has failed to reach it three times.
    wait_for_event(p, "wait.waiting")
    refused = wait_for_event(p, "wait.attempt", attempt=3)
    assert refused["ready"] is False and "Connection refused" in refused["error"]
    late.start()
    r = p.finish()
    err = r.stderr
    events = r.events
    assert len(events) == len(r.lines)  # every line is JSON
    names = [e["event"] for e in events]
    assert r.code == 7, err
    app = json.loads(r.stdout)
    assert app["argv"] == TRICKY_ARGS
    assert app["env"] == {"APP_SETTING": "kept", "DATABASE_URL": url, "MTR_LOG_FORMAT": "json"}
    ready = next(e for e in events if e["event"] == "wait.ready")
    attempts = [e for e in events if e["event"] == "wait.attempt"]
    assert ready["attempts"] > 3 and len(attempts) == ready["attempts"], attempts
    assert [a["ready"] for a in attempts] == [False] * (len(attempts) - 1) + [True]
    assert ready["elapsed_ms"] >= attempts[-2]["elapsed_ms"]
    assert names.index("wait.waiting") < names.index("wait.ready") < names.index("migrate.start") \
        < names.index("run.exec")
    upgrades = [e["line"] for e in events if e["event"] == "migrate.output" and "Running upgrade" in e["line"]]
    assert len(upgrades) == 3, upgrades
    assert alembic_revision(late, "postgres") == "0003"


def test_server_never_starts():
    port = free_port()
    p = start(["--wait-timeout", "2s", "--wait-max-interval", "500ms", "--log-level", "debug",
               "--migrate-cmd", "true", "--", "true"],
              env=clean_env(DATABASE_URL=f"postgresql://u:p@127.0.0.1:{port}/d"))
    wait_for_event(p, "wait.waiting")
    seen = time.monotonic()
    r = p.finish()
    took = time.monotonic() - seen
    assert r.code == 69, r
    failed = r.named("wait.failed")
    assert failed and failed[0]["reason"] == "timeout" and failed[0]["attempts"] >= 3
    assert "Connection refused" in failed[0]["error"]
    assert not r.named("migrate.start")
    # Attempt after attempt up to the deadline by its own clock, and not past it by more than one
    # interval (plus slack); the exit follows (measured from the first failed attempt).
    attempts = r.named("wait.attempt")
    assert len(attempts) == failed[0]["attempts"] and attempts[-1]["attempt"] == len(attempts)
    assert 1900 <= failed[0]["elapsed_ms"] < 2000 + 500 + 1000, failed
    assert took < 2.0 + 0.5 + PROMPT, took


def test_wrong_password_fails_at_once_and_never_shows_it(pg, db):
    wrong = "Wr0ng-Pa55-visible-if-leaked"
    r = run(["--log-level", "debug", "--migrate-cmd", "true", "--", "true"],
            env=clean_env(DATABASE_URL=pg.url(db, password=wrong)))
    assert r.code == 77, r
    assert len(r.named("wait.attempt")) == 1 and not r.named("wait.waiting"), r  # not retried
    assert wrong not in r.stderr and wrong not in r.stdout
    assert "password authentication failed" in r.named("wait.failed")[0]["error"]


def test_database_does_not_exist_fails_at_once(pg):
    r = run(["--log-level", "debug", "--migrate-cmd", "true", "--", "true"],
            env=clean_env(DATABASE_URL=pg.url("no_such_db")))
    assert r.code == 69, r
    assert len(r.named("wait.attempt")) == 1 and not r.named("wait.waiting"), r  # not retried
    assert "createdb" in r.named("wait.failed")[0]["msg"]


def test_failing_migration_exits_70_and_never_starts_the_app(pg, db, tmp_path):
    marker = tmp_path / "app-started"
    r = run(["--alembic-ini", str(FAILING_INI), "--python", PYTHON, "--",
             PYTHON, "-c", f"open('{marker}', 'w').close()"],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70, r
    assert not marker.exists()
    assert not r.named("run.exec")
    output = " ".join(e["line"] for e in r.named("migrate.output"))
    assert 'relation "embeddings" does not exist' in output
    failed = r.named("migrate.failed")[0]
    assert failed["exit_code"] == 70 and failed["status"] != 0


def test_migrate_only(pg, db):
    r = run(["--migrate-only", *ALEMBIC], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    assert r.stdout == ""
    assert not r.named("run.exec") and r.named("pipeline.done")
    assert alembic_revision(pg, db) == "0003"
    # At head already: the command still succeeds and changes nothing.
    again = run(["--migrate-only", *ALEMBIC], env=clean_env(DATABASE_URL=pg.url(db)))
    assert again.code == 0, again
    assert alembic_revision(pg, db) == "0003"


def test_child_output_is_redacted_and_kept_off_stdout(pg, db):
    echo = (f"{PYTHON} -c 'import os; print(\"MIGRATE-STDOUT\", os.environ[\"DATABASE_URL\"]); "
            f"print(\"pw:\", os.environ[\"DATABASE_URL\"].split(\":\")[2].split(\"@\")[0])'")
    r = run(["--migrate-cmd", echo, "--", "echo", "app-ran"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    assert r.stdout == "app-ran\n"
    assert PASSWORD not in r.stderr
    lines = [e["line"] for e in r.named("migrate.output")]
    assert any(l.startswith("MIGRATE-STDOUT postgresql://postgres:***@127.0.0.1") for l in lines), lines
    assert "pw: ***" in lines
    assert all(e["stream"] == "stdout" for e in r.named("migrate.output"))


def test_secret_files_and_libpq_variables(pg, db, tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text(pg.url(db) + "\n")
    r = run(["--migrate-only", *ALEMBIC], env=clean_env(MTR_DATABASE_URL_FILE=str(url_file)))
    assert r.code == 0, r
    assert r.named("pipeline.start")[0]["database_from"] == "MTR_DATABASE_URL_FILE"
    assert alembic_revision(pg, db) == "0003"

    # No URL at all: libpq's own variables, the password from a file; Alembic still gets a URL.
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD)
    db2 = db + "_pg"
    pg.psql("postgres", f"CREATE DATABASE {db2}")
    env = clean_env(PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres", PGDATABASE=db2,
                    PGPASSWORD_FILE=str(pw_file))
    r = run(["--migrate-only", *ALEMBIC], env=env)
    assert r.code == 0, r
    assert PASSWORD not in r.stderr
    assert alembic_revision(pg, db2) == "0003"


def test_server_restart_during_migration_is_retried(cluster_factory, tmp_path):
    # The first run restarts the server under the tool's feet and fails with a bland message:
    # the tool must notice the restart by itself (the postmaster's start time changed).
    c = cluster_factory()
    c.start()
    marker = tmp_path / "first-run-done"
    script = tmp_path / "flaky.sh"
    script.write_text(f"""#!/bin/sh
if [ ! -e {marker} ]; then
    touch {marker}
    # In a session of its own: the tool kills the command's group when the restart takes
    # the migration lock with it, and the server must still come back.
    setsid sh -c "{PGTMP} stop {c.dir} >/dev/null 2>&1 && {PGTMP} start {c.dir} >/dev/null" &
    wait
    echo "migration step failed" >&2
    exit 1
fi
echo "second run fine"
""")
    script.chmod(0o755)
    r = run(["--migrate-only", "--migrate-cmd", str(script)], env=clean_env(DATABASE_URL=c.url()))
    assert r.code == 0, r
    retry = r.named("migrate.retry")
    assert len(retry) == 1 and retry[0]["attempt"] == 1
    assert len(r.named("wait.ready")) == 2

    marker.unlink()
    r = run(["--migrate-only", "--retries", "0", "--migrate-cmd", str(script)],
            env=clean_env(DATABASE_URL=c.url()))
    assert r.code == 75, r
    assert r.named("migrate.failed")[0]["transient"] is True


def test_ordinary_failure_is_not_retried_even_with_connection_words(pg, db):
    # A tool that fails to log in says "connection to server at ... failed": not an outage.
    cmd = f"{PSQL} postgresql://postgres:wrong@127.0.0.1:{pg.port}/{db} -c 'select 1'"
    r = run(["--migrate-only", "--migrate-cmd", cmd], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70, r
    assert not r.named("migrate.retry")


# A migration command that lasts until the tool's own session has sat idle for 2 s, four times
# the database's idle_session_timeout (or until that session is gone), and then fails.
OUTLAST_IDLE_TIMEOUT = r"""
import os, sys, time, psycopg2
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    c = psycopg2.connect(os.environ["DATABASE_URL"])
    cur = c.cursor()
    cur.execute("SELECT count(*), count(*) FILTER (WHERE state = 'idle' AND now() - state_change > "
                "interval '2 s') FROM pg_stat_activity WHERE application_name = 'migrate-then-run' "
                "AND datname = current_database()")
    sessions, idle = cur.fetchone()
    c.close()
    if sessions == 0 or idle == 1:
        print("tool sessions", sessions, "idle for 2 s", idle, flush=True)
        break
    time.sleep(0.05)
print("ERROR: bad migration", file=sys.stderr)
sys.exit(1)
"""


def test_idle_session_timeout_is_not_an_outage(pg, db, tmp_path):
    pg.psql("postgres", f"ALTER DATABASE {db} SET idle_session_timeout = '500ms'")
    script = tmp_path / "outlast.py"
    script.write_text(OUTLAST_IDLE_TIMEOUT)
    r = run(["--migrate-only", "--migrate-cmd", f"{PYTHON} {script}"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70, r
    # Two sessions: ours, idle, and the migration lock's, idle in its transaction.
    assert [e["line"] for e in r.named("migrate.output")][0] == "tool sessions 2 idle for 2 s 1", r


def test_url_given_as_conninfo_reaches_the_tool_complete(pg, db):
    conninfo = (f"host=127.0.0.1 port={pg.port} user=postgres password={PASSWORD} dbname={db} "
                f"sslmode=disable target_session_attrs=read-write")
    echo = f"{PYTHON} -c 'import os; print(os.environ[\"DATABASE_URL\"])'"
    r = run(["--migrate-only", "--migrate-cmd", echo], env=clean_env(DATABASE_URL=conninfo))
    assert r.code == 0, r
    line = r.named("migrate.output")[0]["line"]
    assert line.startswith(f"postgresql://postgres:***@127.0.0.1:{pg.port}/{db}?"), line
    assert "sslmode=disable" in line and "target_session_attrs=read-write" in line
    assert PASSWORD not in r.stderr


def test_malformed_url_does_not_show_the_password():
    for url in ("Xy7-Very-Secret-Pw", "postgresql://app:AbC/dEf+GhI=@db/app"):
        r = run(["--migrate-cmd", "true", "--", "true"], env=clean_env(DATABASE_URL=url))
        assert r.code == 64, r
        assert "Xy7" not in r.stderr and "AbC" not in r.stderr and "dEf" not in r.stderr, r.stderr
        assert "percent-encoded" in r.named("config.invalid")[0]["msg"]


def test_long_output_lines_never_split_a_password(pg, db, tmp_path):
    script = tmp_path / "long.sh"
    script.write_text("#!/bin/sh\n" + "".join(
        f"printf '%{n}s%s end\\n' '' \"$PGPASSWORD_ECHO\" | tr ' ' x\n" for n in range(65000, 65600, 37)))
    script.chmod(0o755)
    r = run(["--migrate-only", "--migrate-cmd", str(script)],
            env=clean_env(DATABASE_URL=pg.url(db), PGPASSWORD_ECHO=PASSWORD))
    assert r.code == 0, r
    lines = [e["line"] for e in r.named("migrate.output")]
    assert len(lines) == len(range(65000, 65600, 37))
    for fragment in (PASSWORD[:6], PASSWORD[-6:]):
        assert fragment not in r.stderr


def test_migrate_cwd_and_missing_command(pg, db, tmp_path):
    (tmp_path / "here.txt").write_text("x")
    r = run(["--migrate-only", "--migrate-cwd", str(tmp_path), "--migrate-cmd", "cat here.txt"],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    r = run(["--migrate-only", "--migrate-cmd", "no-such-migrator up"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 64, r
    assert "no-such-migrator" in r.named("migrate.failed")[0]["msg"]


@pytest.mark.parametrize("kind,code", [("missing-path", 127), ("missing-on-path", 127),
                                       ("not-executable", 126), ("no-shebang", 126)])
def test_app_not_found_or_not_executable(pg, db, tmp_path, kind, code):
    script = tmp_path / "app.sh"
    script.write_text("echo this would need a shell\n")
    script.chmod(0o755 if kind == "no-shebang" else 0o644)
    app = {"missing-path": "/no/such/app", "missing-on-path": "no-such-app-anywhere"}.get(kind, str(script))
    r = run(["--migrate-cmd", "true", "--", app], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == code, r
    assert r.stdout == ""  # in particular, no shell ran the script
    assert r.named("run.failed")[0]["exit_code"] == code


@pytest.mark.parametrize("between", ["sleeping", "connecting"])
def test_stop_signal_during_wait(between):
    """SIGTERM ends the wait at once: in the pause between two attempts (the 8th attempt is
    followed by one of 6.4 to 12.8 s here), and during an attempt that a server which accepts
    the connection but never answers would keep going for 10 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(30)
        port = silent.getsockname()[1] if between == "connecting" else free_port()
        p = start(["--wait-timeout", "60s", "--wait-max-interval", "60s", "--log-level", "debug",
                   "--migrate-cmd", "true", "--", "true"],
                  env=clean_env(DATABASE_URL=f"postgresql://u:p@127.0.0.1:{port}/d"))
        if between == "sleeping":
            assert wait_for_event(p, "wait.attempt", attempt=8)["ready"] is False
            held = None
        else:
            held, _ = silent.accept()  # the first attempt is under way, and never answered
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        r = p.finish(timeout=30)
        took = time.monotonic() - t0
        if held:
            held.close()
    assert r.code == 128 + signal.SIGTERM, r
    assert took < PROMPT, took
    stop = r.named("stop.signal")[0]
    assert stop["phase"] == "wait" and stop["signal"] == "SIGTERM"
    assert len(r.named("wait.attempt")) == (8 if between == "sleeping" else 0), r


@pytest.mark.parametrize("args,named", [
    (["--wait-timeout=abc", "--migrate-cmd", "true", "app"], "--wait-timeout"),
    (["--wait-timeout", "-5", "--migrate-cmd", "true", "app"], "--wait-timeout"),
    (["--retries=-1", "--migrate-cmd", "true", "app"], "--retries"),
    (["--no-such-option", "app"], "--no-such-option"),
    (["--migrate-cmd", "true"], "missing app command"),
    (["--log-format", "xml", "--migrate-cmd", "true", "app"], "--log-format"),
    (["--migrate-cmd", "alembic upgrade head && uvicorn app", "app"], "--migrate-cmd"),
    (["--database-url", "postgresql://h/d?bogus=1", "--migrate-cmd", "true", "app"], "--database-url"),
    (["--migrate-only", "app"], "--migrate-only"),
    (["--backup-keep", "0", "--migrate-cmd", "true", "app"], "--backup-keep"),
])
def test_bad_options_exit_64(args, named):
    r = run(args)
    assert r.code == 64, r
    assert r.stdout == ""
    assert len(r.events) == 1 and r.events[0]["event"] == "config.invalid"
    assert named in r.events[0]["msg"]


def test_bad_environment_value_names_the_variable():
    r = run(["--migrate-cmd", "true", "app"], env=clean_env(MTR_WAIT_TIMEOUT="soon"))
    assert r.code == 64 and "MTR_WAIT_TIMEOUT" in r.events[0]["msg"]


def test_version_and_help():
    v = run(["--version"])
    assert v.code == 0 and re.fullmatch(r"migrate-then-run \d+\.\d+\.\d+\n", v.stdout)
    assert v.stdout.split()[1] == (ROOT / "VERSION").read_text().strip()
    h = run(["--help"])
    assert h.code == 0 and h.stdout.startswith("Usage: migrate-then-run")


def test_readme_lists_every_option_and_exit_code():
    help_text = run(["--help"]).stdout
    options = set(re.findall(r"^  (--[a-z-]+)", help_text, re.M))
    assert len(options) >= 10
    readme = (ROOT / "README.md").read_text()
    missing = [o for o in sorted(options) if f"`{o}" not in readme]
    assert not missing, f"README does not document {missing}"
    envs = set(re.findall(r"env (MTR_[A-Z_]+)", help_text))
    assert not [e for e in envs if e not in readme]
    for code in ("64", "65", "69", "70", "73", "75", "77", "126", "127"):
        assert f"| {code}" in readme, code


def test_text_log_format(pg, db):
    r = subprocess.run([binary(), "--log-format", "text", "--migrate-cmd", "true", "--", "true"],
                       env=clean_env(DATABASE_URL=pg.url(db)), capture_output=True, text=True)
    assert r.returncode == 0
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z info  wait\.ready: database is ready attempts=1",
                     r.stderr, re.M), r.stderr


def test_readme_lists_every_event():
    import glob
    names = set()
    for path in glob.glob(str(ROOT / "src" / "*.c")):
        text = pathlib.Path(path).read_text()
        # log_event(LEVEL, "event", …) and log_event(LEVEL, cond ? "event.a" : "event.b", …)
        names |= set(re.findall(r'log_event\([^"]*?"([a-z]+\.[a-z_]+)"', text, re.S))
        for pair in re.findall(r'\? "([a-z]+\.[a-z_]+)"\s*:\s*"([a-z]+\.[a-z_]+)"', text):
            names |= set(pair)
    assert len(names) > 30
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"README's event table lacks {missing}"


def test_password_with_an_unencoded_at_sign_stays_hidden():
    # libpq splits the user-info at the first '@': the rest of the password becomes a host name.
    r = run(["--wait-timeout", "1s", "--migrate-cmd", "true", "--", "true"],
            env=clean_env(DATABASE_URL=f"postgresql://postgres:S@CRETPW@127.0.0.1:{free_port()}/d"))
    assert r.code in (64, 69), r
    assert "CRETPW" not in r.stderr
