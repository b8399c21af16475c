"""Observable while it works, gate-able in CI, honest in every message: --log-schema read as each
log shipper documents it, --check --pending-exit-code, migrate.progress naming a real blocker and
a CREATE INDEX phase, a Python traceback as one event, and the messages that used to be untrue."""
import datetime
import glob
import json
import pathlib
import re
import subprocess
import time

import psycopg2
import pytest

from conftest import EXAMPLE_INI, FAILING_INI, PASSWORD, PYTHON, ROOT, binary, clean_env, run, start, wait_for_event

README = ROOT / "README.md"


def write(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


# --- --log-schema: each line read the way its shipper documents ---------------------------------

def parse_time(value):
    """An RFC 3339 / ISO 8601 UTC time, as all three shippers accept it."""
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def expand(line):
    """Dotted keys as Elasticsearch indexes them (`log.level` is the field `level` of the object
    `log`): a key that is a plain value in one place and an object in another cannot be indexed,
    which is why ECS's object names must not be plain strings here."""
    out = {}
    for key, value in line.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            assert isinstance(node, dict), f"{key}: {p} is a value and an object at once in {line}"
        assert not isinstance(node.get(parts[-1]), dict), f"{key} is an object and a value in {line}"
        node[parts[-1]] = value
    return out


def read_ecs(line):
    """Elastic Common Schema (ECS field reference: base fields `@timestamp`, required, and
    `message`; log fields `log.level`, "original log level of the log event"; `ecs.version`,
    "a required field and must exist in all events"; event fields `event.action`)."""
    doc = expand(line)
    assert doc["ecs"]["version"], line
    for obj in ("event", "error", "file", "url", "source", "group", "log"):  # ECS objects
        assert obj not in doc or isinstance(doc[obj], dict), (obj, line)
    return parse_time(doc["@timestamp"]), doc["log"]["level"], doc["message"], doc["event"]["action"]


GCP_SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}


def read_gcp(line):
    """Google Cloud Logging, structured logging: the special JSON fields `severity` (one of the
    LogSeverity names of the LogEntry reference; anything else is DEFAULT), `message` (the
    entry's text) and `time` (RFC 3339) are taken out of jsonPayload into the LogEntry."""
    severity = line.get("severity")
    assert severity in GCP_SEVERITIES, line
    return parse_time(line["time"]), severity, line["message"], line["event"]


DATADOG_DATE_ATTRIBUTES = ["timestamp", "date", "_timestamp", "Timestamp", "eventTime", "published_date"]


def datadog_status(value):
    """Datadog's Log Status Remapper: strings beginning with emerg or f map to emerg, a to
    alert, c to critical, err to error, w to warning, n to notice, i to info, d/t/v to debug,
    o or s (OK, Success) to ok; all others to info."""
    v = value.lower()
    for prefix, status in (("emerg", "emerg"), ("f", "emerg"), ("a", "alert"), ("c", "critical"),
                           ("err", "error"), ("w", "warning"), ("n", "notice"), ("i", "info"),
                           ("d", "debug"), ("t", "debug"), ("v", "debug"), ("o", "ok"), ("s", "ok")):
        if v.startswith(prefix):
            return status
    return "info"


def read_datadog(line):
    """Datadog: the date from the first of the Log Date Remapper's default attributes
    (timestamp, date, _timestamp, Timestamp, eventTime, published_date); the reserved attributes
    `status` (through the status remapper, as the HTTP intake's emerg … debug values) and
    `message`."""
    date = next((line[a] for a in DATADOG_DATE_ATTRIBUTES if a in line), None)
    assert date is not None, f"Datadog would stamp this with its receipt time: {line}"
    assert line["status"] in ("emerg", "alert", "critical", "error", "warning", "notice", "info", "debug")
    return parse_time(date), datadog_status(line["status"]), line["message"], line["event"]


SHIPPERS = {
    "ecs": (read_ecs, {"info": "info", "warn": "warn", "error": "error"}),
    "gcp": (read_gcp, {"info": "INFO", "warn": "WARNING", "error": "ERROR"}),
    "datadog": (read_datadog, {"info": "info", "warn": "warning", "error": "error"}),
}


@pytest.mark.parametrize("schema", sorted(SHIPPERS))
def test_log_schema_is_read_as_the_shipper_documents(schema, pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n", "notes.txt": "not a migration\n"})
    args = ["--sql-dir", str(d), "--check"]
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    ours = run(args, env=clean_env(DATABASE_URL=pg.url(db)))
    theirs = subprocess.run([binary(), *args, "--log-schema", schema], capture_output=True, text=True,
                            env=clean_env(DATABASE_URL=pg.url(db)))
    bad = subprocess.run([binary(), "--wait-timeout", "soon", "--migrate-only"], capture_output=True,
                         text=True, env=clean_env(MTR_LOG_SCHEMA=schema))
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    assert ours.code == theirs.returncode == 0 and bad.returncode == 64, (ours, theirs.stderr)
    read, levels = SHIPPERS[schema]
    lines = [json.loads(l) for l in theirs.stderr.splitlines()]
    assert [e["event"] for e in ours.events] == [read(l)[3] for l in lines]
    seen = set()
    for mine, line in zip(ours.events, lines):
        when, level, message, _ = read(line)
        assert before <= when <= after and level == levels[mine["level"]] and message == mine["msg"], line
        seen.add(mine["level"])
    (error,) = [json.loads(l) for l in bad.stderr.splitlines()]
    assert read(error)[1] == levels["error"] and "--wait-timeout" in read(error)[2], error
    assert {"info", "warn"} <= seen  # plan.skipped is a warning


def test_readme_shows_a_line_of_each_schema():
    text = README.read_text()
    shown = {}
    for line in re.findall(r"^    (\{.*\})$", text, re.M):
        doc = json.loads(line)
        for schema, (read, _) in SHIPPERS.items():
            try:
                read(doc)
                shown[schema] = doc
            except (AssertionError, KeyError, TypeError):
                pass
    assert set(shown) == set(SHIPPERS), shown.keys()


# --- --check --pending-exit-code -----------------------------------------------------------------

def test_check_says_what_is_pending_and_can_gate_ci(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n", "2_b.sql": "CREATE TABLE b (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    r = run(["--sql-dir", str(d), "--check"], env=env)
    assert r.code == 0, r
    assert r.named("pipeline.done")[-1]["msg"] == "2 pending, check mode, nothing changed"
    r = run(["--sql-dir", str(d), "--check", "--pending-exit-code", "3"], env=env)
    assert r.code == 3 and r.named("pipeline.done")[-1]["pending"] == 2, r
    assert pg.psql(db, "SELECT to_regclass('public.mtr_schema_history') IS NULL") == "t"  # nothing changed
    assert run(["--sql-dir", str(d), "--migrate-only"], env=env).code == 0
    r = run(["--sql-dir", str(d), "--check"], env=clean_env(DATABASE_URL=pg.url(db), MTR_PENDING_EXIT_CODE="3"))
    assert r.code == 0 and r.named("pipeline.done")[-1]["msg"] == "0 pending, check mode, nothing changed", r
    (d / "1_a.sql").write_text("-- edited\n")
    assert run(["--sql-dir", str(d), "--check", "--pending-exit-code", "3"], env=env).code == 65
    r = run(["--sql-dir", str(d), "--migrate-only", "--pending-exit-code", "3"], env=env)
    assert r.code == 64 and "--check" in r.named("config.invalid")[0]["msg"], r


def test_alembic_check_with_pending_revisions(pg, db):
    r = run(["--alembic-ini", str(EXAMPLE_INI), "--check", "--pending-exit-code", "10"],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 10, r
    assert r.named("pipeline.done")[-1]["msg"] == "3 pending, check mode, nothing changed (--pending-exit-code)"


# --- migrate.progress ----------------------------------------------------------------------------

def holder(pg, db, name):
    conn = psycopg2.connect(pg.url(db), application_name=name)
    return conn, conn.cursor()


def test_progress_names_the_session_that_blocks_a_sql_migration(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_orders.sql": "CREATE TABLE orders (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    assert run(["--sql-dir", str(d), "--migrate-only"], env=env).code == 0
    write(d, {"2_add.sql": "ALTER TABLE orders ADD COLUMN y int;\n"})
    conn, cur = holder(pg, db, "report")
    cur.execute(f"SELECT count(*), '{PASSWORD}' FROM orders")  # left idle in its transaction
    pid = conn.info.backend_pid
    w = start(["--sql-dir", str(d), "--migrate-only", "--progress-interval", "200ms",
               "--migration-lock-timeout", "0"], env)
    try:
        e = wait_for_event(w, "migrate.progress", blocker_pid=pid)
    finally:
        conn.rollback()
        conn.close()
    assert w.finish().code == 0, w
    assert e["blocker_pid"] == pid and e["blocker_application"] == "report", e
    assert e["blocker_state"] == "idle in transaction" and e["step"] == "2_add.sql", e
    assert e["wait_event_type"] == "Lock" and e["wait_event"] == "relation", e
    assert e["blocker_query"] == "SELECT count(*), '***' FROM orders", e  # redacted
    assert f"blocked by pid {pid} (report, idle in transaction since " in e["msg"]
    parse_time(e["blocker_since"].replace("Z", ".0Z"))
    steps = [x for x in w.events if x["event"] in ("migrate.progress", "migrate.step", "migrate.done")]
    assert steps[-1]["event"] == "migrate.done"  # no progress line after the end


def test_progress_reports_the_phase_of_a_create_index(pg, db, tmp_path):
    # gate() waits for a lock the test holds when the scan reaches the middle of the table: the
    # CREATE INDEX is held in its "scanning table" phase, half done, for as long as needed.
    d = write(tmp_path / "m", {
        "1_big.sql": "CREATE TABLE big (x int); INSERT INTO big SELECT generate_series(1, 20000);\n"
                     "CREATE FUNCTION gate(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$\n"
                     "BEGIN IF i = 10000 THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;\n"
                     "RETURN i; END $$;\n",
        "2_index.sql": "CREATE INDEX big_gate ON big (gate(x));\n"})
    conn, cur = holder(pg, db, "gatekeeper")
    cur.execute("SELECT pg_advisory_lock(4242)")
    conn.commit()
    pid = conn.info.backend_pid
    w = start(["--sql-dir", str(d), "--migrate-only", "--progress-interval", "200ms"],
              clean_env(DATABASE_URL=pg.url(db)))
    try:
        e = wait_for_event(w, "migrate.progress", phase="building index: scanning table")
    finally:
        conn.close()
    assert w.finish().code == 0, w
    assert e["operation"] == "CREATE INDEX", e
    assert 0 < e["percent"] < 100 and e["step"] == "2_index.sql", e
    assert e["blocker_pid"] == pid and e["wait_event"] == "advisory", e
    assert f"CREATE INDEX: building index: scanning table, {e['percent']}%" in e["msg"]


def alembic_project(root, revisions):
    """An Alembic project with the example's env.py (DATABASE_URL) and these revisions."""
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    ini = EXAMPLE_INI.read_text().replace("script_location = %(here)s/migrations",
                                          f"script_location = {EXAMPLE_INI.parent}/migrations\n"
                                          "version_locations = %(here)s/versions")
    (root / "alembic.ini").write_text(ini)
    for rev, (down, sql) in revisions.items():
        (versions / f"{rev}.py").write_text(
            f'revision = "{rev}"\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n'
            f"from alembic import op\n\ndef upgrade():\n    op.execute({sql!r})\n")
    return root / "alembic.ini"


def test_progress_finds_alembic_by_its_application_name(pg, db, tmp_path):
    ini = alembic_project(tmp_path / "a", {"0001": (None, "CREATE TABLE orders (x int)")})
    env = clean_env(DATABASE_URL=pg.url(db), MTR_PYTHON=PYTHON)
    assert run(["--alembic-ini", str(ini), "--migrate-only"], env=env).code == 0
    alembic_project(tmp_path / "a", {"0002": ("0001", "ALTER TABLE orders ADD COLUMN y int")})
    conn, cur = holder(pg, db, "nightly-report")
    cur.execute("SELECT count(*) FROM orders")
    pid = conn.info.backend_pid
    w = start(["--alembic-ini", str(ini), "--migrate-only", "--progress-interval", "200ms"], env)
    try:
        e = wait_for_event(w, "migrate.progress", blocker_pid=pid)
    finally:
        conn.rollback()
        conn.close()
    assert w.finish().code == 0, w
    assert e["blocker_pid"] == pid and e["blocker_application"] == "nightly-report", e
    assert e["step"] == "upgrade 0001 -> 0002" and e["wait_event_type"] == "Lock", e
    done = [x for x in w.events if x["event"] == "migrate.done"]
    assert done[0]["msg"] == "the migration command finished; its output reports applying 0002", done
    assert done[0]["applied_revisions"] == ["0002"]


def test_no_progress_when_turned_off_or_quick(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "SELECT pg_sleep(0.5);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    r = run(["--sql-dir", str(d), "--migrate-only", "--progress-interval", "0"], env=env)
    assert r.code == 0 and not r.named("migrate.progress"), r
    write(d, {"2_b.sql": "SELECT 1;\n"})
    r = run(["--sql-dir", str(d), "--migrate-only"], env=env)  # well within the default 10 s
    assert r.code == 0 and not r.named("migrate.progress") and r.named("migrate.step"), r


# --- a Python traceback is one event ---------------------------------------------------------------

def test_a_traceback_is_one_error_event_with_its_lines(pg, db, tmp_path):
    script = tmp_path / "migrate.py"
    script.write_text("import sys\n"
                      "print('WARNING: an old driver', file=sys.stderr)\n"
                      "def apply():\n"
                      f"    raise RuntimeError('cannot apply 0002 with password {PASSWORD}')\n"
                      "apply()\n")
    r = run(["--migrate-only", "--migrate-cmd", f"{PYTHON} {script}"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70, r
    out = r.named("migrate.output")
    assert [e["level"] for e in out] == ["warn", "error"], out
    tb = out[1]
    assert tb["lines"][0] == "Traceback (most recent call last):" and len(tb["lines"]) >= 5, tb
    assert tb["msg"] == tb["line"] == tb["lines"][-1] == "RuntimeError: cannot apply 0002 with password ***"
    assert PASSWORD not in r.stderr


def test_a_failing_alembic_revision_is_one_traceback(pg, db):
    r = run(["--alembic-ini", str(FAILING_INI), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db), MTR_PYTHON=PYTHON))
    assert r.code == 70, r
    out = r.named("migrate.output")
    tracebacks = [e for e in out if "lines" in e]
    assert tracebacks and all(e["level"] == "error" for e in tracebacks), out
    assert any("UndefinedTable" in e["msg"] for e in tracebacks), tracebacks
    # no frame of a traceback is an event of its own
    assert not [e for e in out if "lines" not in e and e["line"].startswith("  File ")], out
    assert len(out) < sum(len(e.get("lines", [1])) for e in out)


# --- messages that say what happened ---------------------------------------------------------------

def test_a_command_run_says_it_finished_not_what_it_cannot_know(pg, db, tmp_path):
    env = clean_env(DATABASE_URL=pg.url(db))
    r = run(["--migrate-only", "--migrate-cmd", "true"], env=env)
    assert r.code == 0, r
    assert r.named("migrate.done")[0]["msg"] == "the migration command finished; its output does not say what it applied"
    assert r.named("pipeline.done")[0]["msg"] == "migrations are up to date; exiting (--migrate-only)"
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho 'INFO  [alembic.runtime.migration] Running upgrade 0001 -> 0002, add x' >&2\n"
                      "echo 'INFO  [alembic.runtime.migration] Running upgrade 0002 -> 0003, add y' >&2\n")
    script.chmod(0o755)
    r = run(["--migrate-only", "--migrate-cmd", str(script)], env=env)
    assert r.named("migrate.done")[0]["msg"] == "the migration command finished; its output reports applying 0002, 0003"


def backups(d):
    return sorted(p.name for p in d.iterdir())


def test_backup_names_are_unique_and_name_the_real_from(pg, db, tmp_path):
    bdir = tmp_path / "b"
    env = clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP="required", MTR_BACKUP_DIR=str(bdir), MTR_BACKUP_KEEP="10")
    assert run(["--migrate-only", "--migrate-cmd", "true"], env=env).code == 0
    (first,) = backups(bdir)
    assert re.fullmatch(rf"mtr-{db}-\d{{8}}T\d{{6}}\.\d{{3}}Z-empty-to-command\.dump", first), first
    pg.psql(db, "CREATE TABLE app (x int)")
    # Back to back: several in the same second, each its own file.
    for _ in range(4):
        assert run(["--migrate-only", "--migrate-cmd", "true"], env=env).code == 0
    names = backups(bdir)
    assert len(names) == 5 and all(n.endswith("-current-to-command.dump") for n in names[1:]), names


def test_readme_failure_backoff_rows_match_the_pause(pg, db, tmp_path):
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(--failure-backoff[a-z-]*) [A-Z]+` \|[^|]*\|[^|]*\| (.*) \|$",
                                                        README.read_text(), re.M)}
    assert "twice this" in rows["--failure-backoff"] and "10 s by default" in rows["--failure-backoff"], rows
    assert "[default: 5s]" in run(["--help"]).stdout.split("--failure-backoff DURATION")[1].split("\n")[0]
    d = write(tmp_path / "m", {"1_bad.sql": "SELECT * FROM missing_table;\n"})
    r = run(["--sql-dir", str(d), "--migrate-only", "--failure-backoff", "100ms", "--state-dir", str(tmp_path / "s")],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70 and r.named("failure.pause")[0]["pause_ms"] == 200, r  # twice this, the first time


def test_at_head_no_lock_is_taken_as_readme_says(pg, db, tmp_path):
    assert "when that finds nothing\npending (the usual start), it takes no lock at all" in README.read_text()
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db), MTR_LOG_LEVEL="debug")
    assert run(["--sql-dir", str(d), "--migrate-only"], env=env).named("lock.acquired")
    r = run(["--sql-dir", str(d), "--migrate-only"], env=env)
    assert r.code == 0 and not r.named("lock.acquired") and r.named("migrate.skip"), r


def test_compose_backups_go_where_its_volume_is():
    import yaml
    text = (ROOT / "docker" / "compose.example.yml").read_text()
    assert "upcoming" not in text
    app = yaml.safe_load(text)["services"]["app"]
    mounted = [v.split(":", 1)[1] for v in app["volumes"] if v.startswith("backups:")]
    assert mounted == [app["environment"]["MTR_BACKUP_DIR"]], app
    assert f"install -d -o 10001 -g 10001 -m 0700 {mounted[0]}" in (ROOT / "Dockerfile.example").read_text()


def test_readme_gives_the_static_binary_size():
    stripped = ROOT / "build" / "static" / "migrate-then-run.stripped"
    if not stripped.exists():
        pytest.skip("make static has not run")
    m = re.search(r"about ([\d.]+) MiB stripped", README.read_text())
    assert m, "README gives no size for the stripped static binary"
    assert abs(float(m.group(1)) - stripped.stat().st_size / 1048576) < 0.1, (m.group(0), stripped.stat().st_size)


def server_errors_during(pg, fn):
    log = pg.dir / "server.log"
    start = log.stat().st_size
    fn()
    with open(log, errors="replace") as f:
        f.seek(start)
        return [l for l in f.read().splitlines() if "ERROR:" in l]


def test_no_server_errors_from_our_probes_on_a_fresh_database(pg, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    names = []

    def fresh():
        name = f"fresh_{len(names)}_{int(time.time() * 1000) % 100000}"
        pg.psql("postgres", f"CREATE DATABASE {name}")
        names.append(name)
        return clean_env(DATABASE_URL=pg.url(name), MTR_PYTHON=PYTHON, MTR_STATE_DIR=None)

    def runs():
        for args in (["--alembic-ini", str(EXAMPLE_INI)], ["--alembic-ini", str(EXAMPLE_INI), "--check"],
                     ["--sql-dir", str(d)], ["--sql-dir", str(d), "--check"], ["--migrate-cmd", "true"]):
            args = args if "--check" in args else [*args, "--migrate-only"]
            assert run(args, env=fresh()).code == 0, args
        assert run(["--migrate-cmd", "false", "--migrate-only"], env=fresh()).code == 70  # failure memory

    errors = server_errors_during(pg, runs)
    assert not errors, errors


# --- the events table is the contract ---------------------------------------------------------------

def log_event_calls(text):
    """Each log_event( … ) call of a C file, whole (strings may hold parentheses)."""
    for m in re.finditer(r"\blog_event\(", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            c = text[i]
            if c == '"':
                i += 1
                while text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        yield text[m.start():i + 1]


def test_readme_events_table_lists_every_field_of_every_event():
    fields = {}
    for path in glob.glob(str(ROOT / "src" / "*.c")):
        for call in log_event_calls(pathlib.Path(path).read_text()):
            names = set(re.findall(r'^log_event\([^"]*?"([a-z]+\.[a-z_.]+)"', call, re.S))
            for pair in re.findall(r'\? "([a-z]+\.[a-z_]+)"\s*:\s*"([a-z]+\.[a-z_]+)"', call):
                names |= set(pair)
            keys = set(re.findall(r'LF_[SIBL]\("([a-z_0-9]+)"', call))
            if "migrate.progress" in names:  # its fields are built up in src/progress.c
                keys |= set(re.findall(r'LF_[SIBL]\("([a-z_0-9]+)"', pathlib.Path(path).read_text()))
            for n in names:
                fields.setdefault(n, set()).update(keys - {"exit_code"})
    assert {"migrate.progress", "migrate.output", "pipeline.done"} <= set(fields)
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            for n in re.findall(r"`([a-z]+\.[a-z_.]+)`", cells[0]):
                rows[n] = cells[-1]
    missing = {e: sorted(k for k in keys if f"`{k}`" not in rows.get(e, "")) for e, keys in fields.items()}
    missing = {e: k for e, k in missing.items() if k or e not in rows}
    assert not missing, f"README's events table lacks these fields: {missing}"


def test_the_supervisor_keeps_the_schema(pg, db):
    # --init re-executes a lean supervisor image: its run.* lines are in the same schema.
    r = subprocess.run([binary(), "--init", "--log-schema", "gcp", "--migrate-cmd", "true", "--", "true"],
                       capture_output=True, text=True, env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.returncode == 0, r.stderr
    events = [read_gcp(json.loads(l))[3] for l in r.stderr.splitlines()]
    assert "run.start" in events and "run.exit" in events, events
