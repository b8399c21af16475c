"""A start with nothing to do asks the server as little as it can: the readiness check carries
the catalog questions the quiet plan needs (is the history there, the failure memory), so that
at head there are two statements: that one and the read of the history. Counted in the server's
own statement log (log_statement = all for the test's database)."""
import re

import pytest

from conftest import EXAMPLE_INI, PYTHON, clean_env, run


def write(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)")


def statements_during(pg, db, fn):
    """The statements the server logged for db while fn ran (only the tool connects meanwhile)."""
    pg.psql("postgres", f"ALTER DATABASE {db} SET log_statement = 'all'")
    log = pg.dir / "server.log"
    start = log.stat().st_size
    fn()
    with open(log, errors="replace") as f:
        f.seek(start)
        return [m.group(1) for m in map(STATEMENT.search, f.read().splitlines()) if m]


@pytest.mark.parametrize("source", ["sql", "alembic"])
def test_a_start_at_head_makes_two_round_trips(pg, db, tmp_path, source):
    if source == "sql":
        d = write(tmp_path / "m", {f"{i}_t{i}.sql": f"CREATE TABLE t{i} (x int);\n" for i in range(1, 21)})
        args, history = ["--sql-dir", str(d), "--migrate-only"], "mtr_schema_history"
    else:
        args, history = ["--alembic-ini", str(EXAMPLE_INI), "--migrate-only"], "alembic_version"
    env = clean_env(DATABASE_URL=pg.url(db), MTR_PYTHON=PYTHON)
    assert run(args, env=env).code == 0

    def at_head():
        r = run(args, env=env)
        assert r.code == 0 and r.named("migrate.skip"), r

    sent = statements_during(pg, db, at_head)
    assert len(sent) == 2, sent
    # the history table and the failure memory, by name (parameters)
    assert "pg_is_in_recovery" in sent[0] and sent[0].count("to_regclass(") == 2, sent
    assert history in sent[1], sent


def test_the_locked_plan_asks_again(pg, db, tmp_path):
    """The first look's answers are from before the lock: with work pending, the plan under the
    lock reads the catalog itself (what the look said may have changed while it waited)."""
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    args = ["--sql-dir", str(d), "--migrate-only"]
    assert run(args, env=env).code == 0
    write(d, {"2_b.sql": "CREATE TABLE b (x int);\n"})  # the look will say "there", and 1 pending
    sent = statements_during(pg, db, lambda: run(args, env=env))
    locked = next(i for i, s in enumerate(sent) if "pg_try_advisory_xact_lock(" in s)
    assert [s for s in sent[:locked] if "to_regclass" in s and "pg_is_in_recovery" not in s] == [], sent
    assert [s for s in sent[locked:] if "to_regclass" in s], sent
    assert pg.psql(db, "SELECT count(*) FROM public.mtr_schema_history") == "2"


def test_a_role_that_may_not_look_into_a_schema_still_starts(pg, db, tmp_path):
    """to_regclass raises an error for a schema the role may not use: the first look must not
    turn that into "the database is not ready" (and an ERROR on every attempt)."""
    role = f"{db}_app"
    pg.psql(db, f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'; GRANT CREATE ON SCHEMA public TO {role}; "
                "CREATE SCHEMA migrate_then_run; "
                "CREATE SCHEMA private")
    try:
        d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
        env = clean_env(DATABASE_URL=f"postgresql://{role}:{role}-pw@127.0.0.1:{pg.port}/{db}")
        for args in (["--sql-dir", str(d)], ["--sql-dir", str(d)],  # migrates, then at head
                     ["--sql-dir", str(d), "--history-table", "private.history"]):
            r = run([*args, "--migrate-only"], env=env)
            if "private.history" in args:  # the schema is not ours to use: the plan says so
                assert r.code == 65 and r.named("plan.failed") and not r.named("wait.failed"), r
            else:
                assert r.code == 0 and not r.named("wait.waiting"), r.stderr
    finally:
        pg.psql(db, f"DROP OWNED BY {role}; DROP SCHEMA migrate_then_run, private CASCADE")
        pg.psql("postgres", f"DROP ROLE {role}")
