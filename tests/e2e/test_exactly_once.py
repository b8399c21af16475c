"""Exactly once on real infrastructure: eight replicas at once directly and through Debian's
PgBouncer in both pool modes, the lock lost mid-migration, least-privilege roles, and the
tool's own bookkeeping kept out of the app's schemas."""
import json
import os
import pathlib
import queue
import signal
import subprocess
import threading
import time

import pytest

import pgbouncer
from conftest import PYTHON, ROOT, binary, clean_env, run

pytestmark = pytest.mark.skipif(not pgbouncer.available(), reason="pgbouncer is not installed "
                                "(scripts/deps.sh installs it)")

REPLICAS = 8
POOL_SIZE = 5


@pytest.fixture(scope="module")
def bouncers(pg):
    """One PgBouncer per pool mode in front of the session cluster (a pool per database)."""
    made = {mode: pgbouncer.PgBouncer(pg, mode, POOL_SIZE).start() for mode in ("transaction", "session")}
    yield made
    for b in made.values():
        b.stop()


def url_for(pg, bouncers, db, path):
    return pg.url(db) if path == "direct" else bouncers[path].url(db)


class Replica:
    """One run of the tool whose JSON lines are read as they come, so that a test can wait for
    an event instead of sleeping."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([binary(), *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events, self.lines = queue.Queue(), []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.out = None

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self.events.put(json.loads(line))

    def wait_for(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self.events.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and not self.reader.is_alive() and self.events.empty():
                    break
                continue
            if e["event"] == name:
                return e
        raise AssertionError(f"no {name} event; stderr:\n{''.join(self.lines)}")

    def finish(self, timeout=120):
        self.out = self.proc.stdout.read()  # stderr is the reader thread's alone
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return self.proc.returncode

    def named(self, name):
        return [json.loads(line) for line in self.lines if json.loads(line)["event"] == name]

    @property
    def stderr(self):
        return "".join(self.lines)


def replicas(args, env, n=REPLICAS):
    """n replicas started at once; returns them finished."""
    rs = [Replica(args, env) for _ in range(n)]
    for r in rs:
        r.finish()
    return rs


def advisory_locks(pg, db):
    return pg.psql(db, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                       f"WHERE l.locktype = 'advisory' AND d.datname = '{db}'")


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


AUDIT = {
    "1_audit.sql": "CREATE TABLE audit (version int, at timestamptz DEFAULT clock_timestamp());\n",
    "2_step.sql": "INSERT INTO audit (version) VALUES (2);\nSELECT pg_sleep(0.2);\n",
    "3_step.sql": "INSERT INTO audit (version) VALUES (3);\nSELECT pg_sleep(0.2);\n",
}


@pytest.mark.parametrize("path", ["direct", "transaction", "session"])
def test_sql_dir_is_applied_once_by_eight_replicas(pg, bouncers, db, tmp_path, path):
    d = write(tmp_path / "m", AUDIT)
    env = clean_env(DATABASE_URL=url_for(pg, bouncers, db, path))
    rs = replicas(["--sql-dir", str(d), "--", "true"], env)
    assert [r.proc.returncode for r in rs] == [0] * REPLICAS, rs[0].stderr
    assert pg.psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM audit") == "2,3"
    assert sum(len(r.named("migrate.step")) for r in rs) == 3
    assert advisory_locks(pg, db) == "0"
    modes = {e["mode"] for r in rs for e in r.named("pooler.detected")}
    # A session pool never looks like a transaction pool; a busy transaction pool may look like
    # a session pool (another client took the session first), which is why no guarantee rests
    # on telling the two apart.
    expected = {"direct": [set()], "session": [{"session"}],
                "transaction": [{"transaction"}, {"session"}, {"transaction", "session"}]}[path]
    assert modes in expected, modes


NO_TX = dict(AUDIT, **{"4_index.sql": "-- migrate-then-run: no-transaction\n"
                                      "CREATE INDEX CONCURRENTLY audit_version ON audit (version);\n"})


@pytest.mark.parametrize("path", ["direct", "transaction", "session"])
def test_a_no_transaction_file_is_refused_through_a_pooler(pg, bouncers, db, tmp_path, path):
    d = write(tmp_path / "m", NO_TX)
    env = clean_env(DATABASE_URL=url_for(pg, bouncers, db, path))
    rs = replicas(["--sql-dir", str(d), "--migrate-only"], env)
    codes = [r.proc.returncode for r in rs]
    if path != "direct":
        assert codes == [64] * REPLICAS, rs[0].stderr
        refusal = rs[0].named("pooler.refused")[0]
        assert refusal["file"].endswith("4_index.sql")
        assert "MTR_DATABASE_URL" in refusal["msg"] and "nothing was changed" in refusal["msg"]
        # Refused before anything changed: no history, no table, no bookkeeping schema.
        assert pg.psql(db, "SELECT to_regclass('audit') IS NULL AND to_regclass('mtr_schema_history') IS NULL "
                           "AND to_regnamespace('migrate_then_run') IS NULL") == "t"
        # The fix the message names: the tool direct, the app pooled.
        env = clean_env(DATABASE_URL=bouncers[path].url(db), MTR_DATABASE_URL=pg.url(db))
        r = run(["--sql-dir", str(d), "--migrate-only"], env=env)
        assert r.code == 0, r
    else:
        assert codes == [0] * REPLICAS, rs[0].stderr
    assert pg.psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM audit") == "2,3"
    assert pg.psql(db, "SELECT count(*) FROM mtr_schema_history WHERE success") == "4"
    assert pg.psql(db, "SELECT to_regclass('audit_version') IS NOT NULL") == "t"
    assert advisory_locks(pg, db) == "0"


def alembic_project(tmp_path, body):
    """An Alembic project (the example's env.py) whose second revision runs body."""
    proj = tmp_path / "proj"
    (proj / "versions").mkdir(parents=True)
    text = (ROOT / "docker" / "example" / "alembic.ini").read_text().replace(
        "script_location = %(here)s/migrations",
        f"script_location = {ROOT}/docker/example/migrations\nversion_locations = %(here)s/versions")
    (proj / "alembic.ini").write_text(text)
    (proj / "versions" / "r1_runs.py").write_text(
        "from alembic import op\nrevision = 'r1'\ndown_revision = None\nbranch_labels = None\n"
        "depends_on = None\n\ndef upgrade():\n"
        "    op.execute('CREATE TABLE runs (rev text, pid int)')\n")
    (proj / "versions" / "r2_work.py").write_text(
        "import os, time\nfrom alembic import op\nrevision = 'r2'\ndown_revision = 'r1'\n"
        "branch_labels = None\ndepends_on = None\n\ndef upgrade():\n"
        "    op.execute(f\"INSERT INTO runs VALUES ('r2', {os.getpid()})\")\n" + body)
    return str(proj / "alembic.ini")


@pytest.mark.parametrize("path", ["direct", "transaction", "session"])
def test_alembic_is_run_once_by_eight_replicas(pg, bouncers, db, tmp_path, path):
    ini = alembic_project(tmp_path, "    op.execute('SELECT pg_sleep(0.3)')\n")
    env = clean_env(DATABASE_URL=url_for(pg, bouncers, db, path))
    rs = replicas(["--alembic-ini", ini, "--python", PYTHON, "--", "true"], env)
    assert [r.proc.returncode for r in rs] == [0] * REPLICAS, rs[0].stderr
    assert pg.psql(db, "SELECT count(*) FROM runs") == "1"
    assert pg.psql(db, "SELECT string_agg(version_num, ',') FROM alembic_version") == "r2"
    assert sum(len(r.named("migrate.start")) for r in rs) == 1
    assert advisory_locks(pg, db) == "0"


# A command that is not safe to run twice at once: it looks, waits, then writes (in separate
# transactions), as a tool that keeps its own history does. Run one at a time, it writes once.
CMD = """
import os, sys, time, psycopg2
c = psycopg2.connect(os.environ["DATABASE_URL"]); c.autocommit = True
cur = c.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS cmd_runs (pid int)")
cur.execute("SELECT count(*) FROM cmd_runs")
if cur.fetchone()[0] == 0:
    time.sleep(0.3)
    cur.execute("INSERT INTO cmd_runs VALUES (%s)", (os.getpid(),))
"""


@pytest.mark.parametrize("path", ["direct", "transaction"])
def test_a_command_runs_one_replica_at_a_time(pg, bouncers, db, tmp_path, path):
    script = tmp_path / "cmd.py"
    script.write_text(CMD)
    env = clean_env(DATABASE_URL=url_for(pg, bouncers, db, path))
    rs = replicas(["--migrate-cmd", f"{PYTHON} {script}", "--migrate-only"], env)
    assert [r.proc.returncode for r in rs] == [0] * REPLICAS, rs[0].stderr
    assert pg.psql(db, "SELECT count(*) FROM cmd_runs") == "1"
    assert advisory_locks(pg, db) == "0"


def test_session_pool_of_five_is_not_starved_by_waiting_replicas(pg, bouncers, db, tmp_path):
    """8 replicas, default_pool_size=5: the holder's migration connection and pg_dump get
    server connections; the waiters hold none between tries."""
    d = write(tmp_path / "m", AUDIT)
    env = clean_env(DATABASE_URL=bouncers["session"].url(db), MTR_BACKUP="required",
                    MTR_BACKUP_DIR=str(tmp_path / "backups"))
    rs = replicas(["--sql-dir", str(d), "--", "true"], env)
    assert [r.proc.returncode for r in rs] == [0] * REPLICAS, rs[0].stderr
    assert sum(len(r.named("backup.done")) for r in rs) == 1
    assert pg.psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM audit") == "2,3"
    assert advisory_locks(pg, db) == "0"


# ---- the lock is watched -----------------------------------------------------------------------

def terminate_lock_holder(pg, db):
    # The lock's session holds two advisory keys (the lock, and the fence's key for this run).
    return pg.psql(db, "SELECT count(pg_terminate_backend(pid)) FROM (SELECT DISTINCT l.pid "
                       "FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                       f"WHERE d.datname = '{db}' AND l.locktype = 'advisory' AND l.granted) h")


def pids_alive(files):
    alive = []
    for f in files:
        try:
            os.kill(int(f.read_text()), 0)
            alive.append(f.name)
        except ProcessLookupError:
            pass
    return alive


WAIT_FOR_GO = """    open(os.path.join(os.environ['MTR_TEST_DIR'], f'pid-{os.getpid()}'), 'w').write(str(os.getpid()))
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(os.environ['MTR_TEST_DIR'], 'go')) and time.time() < deadline:
        time.sleep(0.05)
"""

CMD_WAITS = """
import os, time, psycopg2
c = psycopg2.connect(os.environ["DATABASE_URL"]); c.autocommit = True
cur = c.cursor()
cur.execute("INSERT INTO cmd_log VALUES ('start', %s)", (os.getpid(),))
def upgrade():
""" + WAIT_FOR_GO + """
upgrade()
cur.execute("INSERT INTO cmd_log VALUES ('done', %s)", (os.getpid(),))
"""


@pytest.mark.parametrize("source", ["alembic", "command"])
def test_a_lost_lock_stops_the_migration_and_the_next_replica_does_it_once(pg, db, tmp_path, source):
    if source == "alembic":
        args = ["--alembic-ini", alembic_project(tmp_path, WAIT_FOR_GO), "--python", PYTHON]
    else:
        pg.psql(db, "CREATE TABLE cmd_log (what text, pid int)")
        (tmp_path / "cmd.py").write_text(CMD_WAITS)
        args = ["--migrate-cmd", f"{PYTHON} {tmp_path / 'cmd.py'}"]
    env = clean_env(DATABASE_URL=pg.url(db), MTR_TEST_DIR=str(tmp_path))
    first = Replica([*args, "--migrate-only"], env)
    first.wait_for("migrate.start")
    deadline = time.monotonic() + 30  # the work is under way, waiting for "go"
    while not list(tmp_path.glob("pid-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = Replica([*args, "--migrate-only"], env)
    second.wait_for("lock.wait")
    firsts = list(tmp_path.glob("pid-*"))  # the first replica's migration, under way
    assert terminate_lock_holder(pg, db) == "1"
    assert first.finish() == 75, first.stderr
    lost = first.named("lock.lost")
    assert lost and lost[0]["phase"] == "migrate" and lost[0]["exit_code"] == 75
    assert "terminating connection due to administrator command" in lost[0]["msg"]
    assert firsts and pids_alive(firsts) == []  # the first one's is gone, not waiting for "go"
    second.wait_for("migrate.start")
    (tmp_path / "go").write_text("")
    assert second.finish() == 0, second.stderr
    if source == "alembic":
        assert pg.psql(db, "SELECT count(*) FROM runs") == "1"
        assert pg.psql(db, "SELECT string_agg(version_num, ',') FROM alembic_version") == "r2"
    else:
        assert pg.psql(db, "SELECT count(*) FROM cmd_log WHERE what = 'done'") == "1"
    assert advisory_locks(pg, db) == "0"


def test_a_lost_lock_cancels_a_native_migration(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_slow.sql": "CREATE TABLE slow (x int);\nSELECT pg_sleep(30);\n"})
    r = Replica(["--sql-dir", str(d), "--migrate-only"], clean_env(DATABASE_URL=pg.url(db)))
    deadline = time.monotonic() + 20
    while pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                      "AND pid <> pg_backend_pid()") != "1" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert terminate_lock_holder(pg, db) == "1"
    assert r.finish(timeout=20) == 75, r.stderr
    assert r.named("lock.lost")[0]["phase"] == "migrate"
    assert pg.psql(db, "SELECT to_regclass('slow') IS NULL") == "t"
    assert pg.psql(db, "SELECT count(*) FROM mtr_schema_history") == "0"
    assert advisory_locks(pg, db) == "0"


def test_nothing_stays_locked_after_sigterm_through_a_transaction_pooler(pg, bouncers, db, tmp_path):
    env = clean_env(DATABASE_URL=bouncers["transaction"].url(db))
    r = Replica(["--migrate-cmd", "sleep 30", "--migrate-only"], env)
    r.wait_for("migrate.start")
    r.proc.send_signal(signal.SIGTERM)
    assert r.finish() == 128 + signal.SIGTERM
    assert advisory_locks(pg, db) == "0"
    # The next replica, direct, does not wait for a lock left behind.
    r2 = run(["--migrate-cmd", "true", "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r2.code == 0 and not r2.named("lock.wait"), r2


# ---- least privilege and the tool's own schema ---------------------------------------------------

def role_url(pg, db, role):
    return f"postgresql://{role}:{role}-pw@127.0.0.1:{pg.port}/{db}"


@pytest.fixture
def roles(pg, db):
    """app_schema: CREATE and USAGE on schema app only; nothing: may create nothing at all."""
    made = [f"{db}_schema", f"{db}_nothing"]
    pg.psql(db, f"""CREATE ROLE {made[0]} LOGIN PASSWORD '{made[0]}-pw';
        CREATE ROLE {made[1]} LOGIN PASSWORD '{made[1]}-pw';
        REVOKE CREATE, TEMPORARY ON DATABASE {db} FROM PUBLIC;
        CREATE SCHEMA app; GRANT USAGE, CREATE ON SCHEMA app TO {made[0]};
        GRANT USAGE ON SCHEMA app TO {made[1]};""")
    yield made
    pg.psql(db, f"DROP SCHEMA app CASCADE; DROP SCHEMA IF EXISTS migrate_then_run CASCADE; "
                f"DROP OWNED BY {made[0]}, {made[1]}")
    pg.psql("postgres", f"DROP ROLE {made[0]}; DROP ROLE {made[1]}")


def test_a_role_with_one_schema_applies_sql_migrations(pg, db, roles, tmp_path):
    d = write(tmp_path / "m", {"1_t.sql": "CREATE TABLE app.t (x int);\n", "2_t.sql": "INSERT INTO app.t VALUES (2);\n"})
    env = clean_env(DATABASE_URL=role_url(pg, db, roles[0]))
    args = ["--sql-dir", str(d), "--history-table", "app.mtr_schema_history", "--migrate-only"]
    r = run(args, env=env)
    assert r.code == 0, r
    assert pg.psql(db, "SELECT count(*) FROM app.mtr_schema_history WHERE success") == "2"
    # At head and with a new file: the schema and the table exist, so no DDL of ours runs.
    write(d, {"3_t.sql": "INSERT INTO app.t VALUES (3);\n"})
    assert run(args, env=env).code == 0
    assert pg.psql(db, "SELECT string_agg(x::text, ',' ORDER BY x) FROM app.t") == "2,3"


HISTORY_DDL = """CREATE TABLE app.mtr_schema_history (version numeric(20,0) PRIMARY KEY,
    name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL DEFAULT 0, applied_by text NOT NULL, success boolean NOT NULL);"""


def test_a_role_that_can_create_nothing_still_works(pg, db, roles, tmp_path):
    who = roles[1]
    pg.psql(db, f"""{HISTORY_DDL}
        GRANT SELECT, INSERT, UPDATE ON app.mtr_schema_history TO {who};
        CREATE TABLE app.items (x int); ALTER TABLE app.items OWNER TO {who};""")
    env = clean_env(DATABASE_URL=role_url(pg, db, who))
    d = write(tmp_path / "m", {"1_items.sql": "ALTER TABLE app.items ADD COLUMN y int;\n"})
    args = ["--sql-dir", str(d), "--history-table", "app.mtr_schema_history", "--migrate-only"]
    assert run(args, env=env).code == 0
    assert run(args, env=env).code == 0  # at head
    # A command that fails for good: the failure memory cannot be kept, said once, with the fix.
    r = run(["--migrate-cmd", "false", "--migrate-only"], env=env)
    assert r.code == 70, r
    [warn] = r.named("state.unavailable")
    assert warn["sqlstate"] == "42501" and "--state-dir" in warn["msg"] and "GRANT CREATE ON DATABASE" in warn["msg"]
    assert pg.psql(db, "SELECT to_regnamespace('migrate_then_run') IS NULL") == "t"
    # Alembic with this role: its version table and the table it alters were made for it.
    pg.psql(db, f"CREATE TABLE app.runs (rev text, pid int); ALTER TABLE app.runs OWNER TO {who}; "
                f"CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                f"INSERT INTO alembic_version VALUES ('r1'); GRANT ALL ON alembic_version TO {who}")
    ini = alembic_project(tmp_path, "")
    r = run(["--alembic-ini", ini, "--python", PYTHON, "--migrate-only"],
            env=clean_env(DATABASE_URL=role_url(pg, db, who) + "?options=-csearch_path%3Dapp,public"))
    assert r.code == 0, r
    assert pg.psql(db, "SELECT count(*) FROM app.runs") == "1"


def test_permission_denied_on_the_history_is_permanent_and_logged_once(pg, db, roles, tmp_path):
    pg.psql(db, HISTORY_DDL)
    d = write(tmp_path / "m", {"1_t.sql": "SELECT 1;\n"})
    r = run(["--sql-dir", str(d), "--history-table", "app.mtr_schema_history", "--migrate-only",
             "--state-dir", str(tmp_path / "state")], env=clean_env(DATABASE_URL=role_url(pg, db, roles[1])))
    assert r.code == 65, r
    [failed] = r.named("plan.failed")
    assert failed["sqlstate"] == "42501" and failed["transient"] is False
    assert "grant the role" in failed["msg"]
    assert r.named("failure.pause")  # remembered as permanent: restarts are spaced out


def test_check_and_refusals_write_nothing(pg, db, tmp_path):
    # --check on a database that the plan finds inconsistent: nothing created, not even ours.
    pg.psql(db, "CREATE TABLE users (id int)")
    d = write(tmp_path / "m", {"1_users.sql": "CREATE TABLE users (id int);\n"})
    r = run(["--sql-dir", str(d), "--check"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65, r
    assert pg.psql(db, "SELECT to_regnamespace('migrate_then_run') IS NULL AND "
                       "to_regclass('mtr_schema_history') IS NULL") == "t"
    # A refused Alembic chain: nothing in the app's schema; the failure is remembered in ours.
    r = run(["--alembic-ini", str(ROOT / "tests" / "fixtures" / "alembic" / "two_chains" / "alembic.ini"),
             "--python", PYTHON, "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65, r
    assert pg.psql(db, "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'") == "users"
    assert pg.psql(db, "SELECT count FROM migrate_then_run.failure_state") == "1"
