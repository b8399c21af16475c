"""Presets of other migration tools (--tool NAME) and the fast path that skips them when nothing
changed, against a real PostgreSQL and, for the fast path, the real dbmate CLI."""
import pytest

from conftest import PASSWORD
from tooling import Recorder, have, tool_run

DBMATE_UP = "-- migrate:up\nCREATE TABLE {t} (id int);\n\n-- migrate:down\nDROP TABLE {t};\n"


def stand_in(tmp_path, name):
    """A program called `name` that writes its argv and environment to a file and exits 0:
    for the presets whose CLI cannot run here, what we hand it is what the test looks at."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    out = tmp_path / f"{name}.seen"
    (d / name).write_text(f'#!/bin/sh\n{{ echo "ARGV $*"; env; }} > "{out}"\n')
    (d / name).chmod(0o755)
    return d, out


# One pending migration in each reader's default place, so that the CLI has something to do.
PENDING = {"flyway": ("sql/V1__a.sql", "SELECT 1;\n"),
           "golang-migrate": ("migrations/1_a.up.sql", "SELECT 1;\n"),
           "goose": ("migrations/00001_a.sql", "-- +goose Up\nSELECT 1;\n"),
           "prisma": ("prisma/migrations/20240101000000_a/migration.sql", "SELECT 1;\n")}


def pending(tmp_path, tool):
    if tool in PENDING:
        name, text = PENDING[tool]
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)


def test_unknown_tool_names_the_presets(pg, db, tmp_path):
    r = tool_run(pg.url(db), tmp_path, "--tool", "rails")
    assert r.code == 64, r
    (e,) = r.named("config.invalid")
    assert "--tool: expected dbmate, golang-migrate, goose, flyway" in e["msg"]
    assert "or liquibase, got 'rails'" in e["msg"]


@pytest.mark.parametrize("tool, program, argv, env", [
    ("flyway", "flyway", "migrate",
     {"FLYWAY_URL": "jdbc:postgresql://127.0.0.1:{port}/{db}", "FLYWAY_USER": "postgres",
      "FLYWAY_PASSWORD": PASSWORD, "FLYWAY_LOCATIONS": "filesystem:sql"}),
    ("golang-migrate", "migrate", "-path migrations -database postgresql://postgres@127.0.0.1:{port}/{db} up",
     {"PGPASSWORD": PASSWORD}),
    ("goose", "goose", "up",
     {"GOOSE_DRIVER": "postgres", "GOOSE_MIGRATION_DIR": "migrations",
      "GOOSE_DBSTRING": "postgresql://postgres:{pw}@127.0.0.1:{port}/{db}"}),
    ("sqitch", "sqitch", "deploy",
     {"SQITCH_TARGET": "db:pg://postgres@127.0.0.1:{port}/{db}", "SQITCH_PASSWORD": PASSWORD}),
    ("liquibase", "liquibase", "update",
     {"LIQUIBASE_COMMAND_URL": "jdbc:postgresql://127.0.0.1:{port}/{db}",
      "LIQUIBASE_COMMAND_USERNAME": "postgres", "LIQUIBASE_COMMAND_PASSWORD": PASSWORD}),
    ("prisma", "prisma", "migrate deploy", {}),
])
def test_preset_command_and_environment(pg, db, tmp_path, tool, program, argv, env):
    """The CLI gets the connection the way it reads it; a password is never in its argv."""
    bindir, seen = stand_in(tmp_path, program)
    pending(tmp_path, tool)
    r = tool_run(pg.url(db), tmp_path, "--tool", tool, path=f"{bindir}:/usr/bin:/bin")
    assert r.code == 0, r
    lines = seen.read_text().splitlines()
    fill = {"port": pg.port, "db": db, "pw": PASSWORD}
    assert lines[0] == "ARGV " + argv.format(**fill)
    assert PASSWORD not in lines[0]
    got = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    for k, v in env.items():
        assert got.get(k) == v.format(**fill), (k, got.get(k))
    assert got["DATABASE_URL"] == pg.url(db)


def test_migrate_cmd_overrides_the_preset_command(pg, db, tmp_path):
    bindir, seen = stand_in(tmp_path, "flyway")
    pending(tmp_path, "flyway")
    r = tool_run(pg.url(db), tmp_path, "--tool", "flyway", "--migrate-cmd", "flyway -X migrate",
                 path=f"{bindir}:/usr/bin:/bin")
    assert r.code == 0, r
    text = seen.read_text()
    assert text.startswith("ARGV -X migrate\n")
    assert "FLYWAY_USER=postgres\n" in text  # the preset's environment still applies


@pytest.fixture
def dbmate(tmp_path):
    real = have("dbmate")
    if not real:
        pytest.skip("dbmate is not installed (make tools-deps)")
    return Recorder(tmp_path, "dbmate", real)


def dbmate_project(tmp_path, *versions):
    d = tmp_path / "db" / "migrations"
    d.mkdir(parents=True, exist_ok=True)
    for v in versions:
        (d / f"{v}_t{v}.sql").write_text(DBMATE_UP.format(t=f"t{v}"))
    return tmp_path


def go_url(pg, db):
    return pg.url(db) + "?sslmode=disable"  # lib/pq's default is sslmode=require


FAST = ["--migrate-cmd", "dbmate --no-dump-schema migrate", "--migrate-files", "db/migrations",
        "--migrate-history-table", "public.schema_migrations"]


def test_plain_command_fast_path(pg, db, tmp_path, dbmate):
    """First start applies through the command; the next does not start it and takes no backup;
    a new file, or a history row deleted by hand, starts it again."""
    proj = dbmate_project(tmp_path, "20240101000000")
    url, path = go_url(pg, db), dbmate.path()
    r = tool_run(url, proj, *FAST, path=path)
    assert r.code == 0, r
    assert r.named("fastpath.run")[0]["reason"] == "first"
    assert len(dbmate.calls()) == 1
    assert pg.psql(db, "SELECT version FROM schema_migrations") == "20240101000000"

    backups = tmp_path / "backups"
    r = tool_run(url, proj, *FAST, "--backup", "required", "--backup-dir", str(backups), path=path)
    assert r.code == 0, r
    assert r.named("fastpath.skip") and r.named("migrate.skip")
    assert not r.named("backup.done") and not backups.exists()
    assert len(dbmate.calls()) == 1

    dbmate_project(tmp_path, "20240102000000")
    r = tool_run(url, proj, *FAST, path=path)
    assert r.code == 0, r
    assert r.named("fastpath.run")[0]["reason"] == "files"
    assert len(dbmate.calls()) == 2
    assert pg.psql(db, "SELECT count(*) FROM schema_migrations") == "2"

    pg.psql(db, "DELETE FROM schema_migrations WHERE version = '20240102000000'; DROP TABLE t20240102000000")
    r = tool_run(url, proj, *FAST, path=path)
    assert r.code == 0, r
    assert r.named("fastpath.run")[0]["reason"] == "history"
    assert len(dbmate.calls()) == 3
    assert pg.psql(db, "SELECT count(*) FROM schema_migrations") == "2"
    r = tool_run(url, proj, *FAST, path=path)
    assert r.named("fastpath.skip") and len(dbmate.calls()) == 3
    # without the two options, a command always runs
    r = tool_run(url, proj, *FAST[:2], path=path)
    assert r.code == 0 and len(dbmate.calls()) == 4


def test_check_changes_nothing(pg, db, tmp_path, dbmate):
    proj = dbmate_project(tmp_path, "1")
    e = {"PATH": dbmate.path()}
    r = tool_run(go_url(pg, db), proj, *FAST, "--check", env=e)
    assert r.code == 0, r
    assert "dbmate: would run dbmate --no-dump-schema migrate: no fingerprint" in r.stdout
    assert pg.psql(db, "SELECT to_regnamespace('migrate_then_run') IS NULL") == "t"
    assert not dbmate.calls()
    assert tool_run(go_url(pg, db), proj, *FAST, path=dbmate.path()).code == 0
    before = pg.psql(db, "SELECT saved_at FROM migrate_then_run.tool_fingerprint")
    r = tool_run(go_url(pg, db), proj, *FAST, "--check", env=e)
    assert r.code == 0 and "dbmate: unchanged since the last successful run" in r.stdout
    assert pg.psql(db, "SELECT saved_at FROM migrate_then_run.tool_fingerprint") == before


def limited_role(pg, db, name):
    pg.psql(db, f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'; GRANT CREATE ON SCHEMA public TO {name}")
    return pg.url(db).replace("postgres:", f"{name}:", 1) + "?sslmode=disable"


def test_role_that_cannot_keep_the_fingerprint_still_migrates(pg, db, tmp_path, dbmate):
    url = limited_role(pg, db, f"{db}_nocreate")
    proj = dbmate_project(tmp_path, "1")
    for n in (1, 2):
        r = tool_run(url, proj, *FAST, path=dbmate.path())
        assert r.code == 0, r
        (w,) = r.named("fastpath.unavailable")
        assert w["sqlstate"] == "42501" and "CREATE SCHEMA migrate_then_run AUTHORIZATION" in w["msg"]
        assert len(dbmate.calls()) == n


def test_no_ddl_when_the_bookkeeping_exists(pg, db, tmp_path, dbmate):
    """A role without CREATE keeps the fingerprint in objects made for it: had we run
    CREATE ... IF NOT EXISTS, the privilege check would have refused it."""
    role = f"{db}_keeper"
    url = limited_role(pg, db, role)
    proj = dbmate_project(tmp_path, "1")
    assert tool_run(go_url(pg, db), proj, *FAST, path=dbmate.path()).code == 0
    pg.psql(db, f"GRANT USAGE ON SCHEMA migrate_then_run TO {role}; "
                f"GRANT SELECT, INSERT, UPDATE ON migrate_then_run.tool_fingerprint TO {role}; "
                f"ALTER TABLE schema_migrations OWNER TO {role}; DELETE FROM schema_migrations; DROP TABLE t1")
    r = tool_run(url, proj, *FAST, path=dbmate.path())
    assert r.code == 0, r
    assert not r.named("fastpath.unavailable")
    r = tool_run(url, proj, *FAST, path=dbmate.path())
    assert r.named("fastpath.skip") and len(dbmate.calls()) == 2


def test_no_matching_file_turns_the_fast_path_off(pg, db, tmp_path, dbmate):
    proj = dbmate_project(tmp_path, "1")
    args = [*FAST[:2], "--migrate-files", "db/migratoins", *FAST[4:]]
    for n in (1, 2):
        r = tool_run(go_url(pg, db), proj, *args, path=dbmate.path())
        assert r.code == 0, r
        (e,) = r.named("fastpath.run")
        assert e["reason"] == "unknown" and "no file matches the migration files given (db/migratoins)" in e["msg"]
        assert len(dbmate.calls()) == n


def test_fingerprint_lives_in_the_state_schema(pg, db, tmp_path, dbmate):
    proj = dbmate_project(tmp_path, "1")
    for _ in range(2):
        r = tool_run(go_url(pg, db), proj, *FAST, "--state-schema", "ops_bookkeeping", path=dbmate.path())
        assert r.code == 0, r
    assert r.named("fastpath.skip") and len(dbmate.calls()) == 1
    assert pg.psql(db, "SELECT count(*) FROM ops_bookkeeping.tool_fingerprint") == "1"
    assert pg.psql(db, "SELECT to_regnamespace('migrate_then_run') IS NULL") == "t"


def test_libpq_only_settings_stay_out_of_the_tools_urls(pg, db, tmp_path):
    """Given as libpq variables, the connection carries settings of ours only libpq reads
    (keepalives): the Go drivers would send them to the server, which refuses them."""
    bindir, seen = stand_in(tmp_path, "migrate")
    pending(tmp_path, "golang-migrate")
    from conftest import PASSWORD, clean_env, run
    env = clean_env(PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres", PGPASSWORD=PASSWORD,
                    PGDATABASE=db, PATH=f"{bindir}:/usr/bin:/bin")
    r = run(["--tool", "golang-migrate", "--migrate-cwd", str(tmp_path), "--migrate-only"], env=env)
    assert r.code == 0, r
    text = seen.read_text()
    assert "keepalives" not in text and "tcp_user_timeout" not in text, text
    assert f"-database postgresql://postgres@127.0.0.1:{pg.port}/{db}" in text
