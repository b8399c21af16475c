"""dbmate read and applied natively, checked against the real dbmate CLI in both directions: what
we apply, `dbmate status` sees as applied; what dbmate applied, we see at head; the history
rows and the table are identical."""
import subprocess

import pytest

from conftest import clean_env
from tooling import Recorder, have, tool_run

UP = "-- migrate:up\nCREATE TABLE {t} (id int);\n\n-- migrate:down\nDROP TABLE {t};\n"
UP_NO_TX = ("-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY {t}_id ON t1 (id);\n\n"
            "-- migrate:down\nDROP INDEX {t}_id;\n")
PLAIN_PATH = "/usr/bin:/bin"  # no dbmate: --apply auto applies natively


@pytest.fixture
def dbmate():
    real = have("dbmate")
    if not real:
        pytest.skip("dbmate is not installed (make tools-deps)")
    return real


def project(tmp_path, files):
    d = tmp_path / "db" / "migrations"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return tmp_path


def two(tmp_path):
    return project(tmp_path, {"20240101000000_t1.sql": UP.format(t="t1"),
                              "20240102000000_t2.sql": UP_NO_TX.format(t="t2")})


def go_url(pg, db):
    return pg.url(db) + "?sslmode=disable"


def dbmate_cli(real, url, proj, *args):
    return subprocess.run([real, "--no-dump-schema", *args], cwd=proj, capture_output=True, text=True,
                          env=clean_env(DATABASE_URL=url), timeout=60)


def history(pg, db):
    return (pg.psql(db, "SELECT version FROM schema_migrations ORDER BY version"),
            pg.psql(db, "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM "
                        "information_schema.columns WHERE table_name = 'schema_migrations' ORDER BY 1"),
            pg.psql(db, "SELECT indexdef FROM pg_indexes WHERE tablename = 'schema_migrations'"))


def test_what_we_apply_dbmate_sees_applied(pg, db, tmp_path, dbmate):
    proj = two(tmp_path)
    r = tool_run(go_url(pg, db), proj, "--tool", "dbmate", path=PLAIN_PATH)
    assert r.code == 0, r
    (p,) = r.named("plan.ready")
    assert p["pending"] == 2 and p["apply"] == "native"
    steps = r.named("migrate.step")
    assert [s["no_transaction"] for s in steps] == [False, True]
    status = dbmate_cli(dbmate, go_url(pg, db), proj, "status")
    assert "Applied: 2" in status.stdout and "Pending: 0" in status.stdout, status.stdout
    again = dbmate_cli(dbmate, go_url(pg, db), proj, "migrate")
    assert again.returncode == 0 and "Applying" not in again.stdout, again.stdout


def test_what_dbmate_applied_we_see_at_head_with_identical_rows(pg, db, tmp_path, dbmate):
    theirs, ours = db, db + "_ours"
    pg.psql("postgres", f"CREATE DATABASE {ours}")
    proj = two(tmp_path)
    assert dbmate_cli(dbmate, go_url(pg, theirs), proj, "migrate").returncode == 0
    r = tool_run(go_url(pg, theirs), proj, "--tool", "dbmate", "--apply", "native", path=PLAIN_PATH)
    assert r.code == 0, r
    assert r.named("plan.ready")[0]["pending"] == 0 and r.named("migrate.skip")
    assert tool_run(go_url(pg, ours), proj, "--tool", "dbmate", path=PLAIN_PATH).code == 0
    assert history(pg, ours) == history(pg, theirs)
    assert history(pg, ours)[0] == "20240101000000\n20240102000000"


def test_cli_on_path_applies_and_is_not_started_at_head(pg, db, tmp_path, dbmate):
    """--apply auto with dbmate on PATH: our reader plans, dbmate applies; at head, and after a
    new file or a row deleted by hand, only what is pending starts it."""
    rec = Recorder(tmp_path, "dbmate", dbmate)
    proj = project(tmp_path, {"20240101000000_t1.sql": UP.format(t="t1")})
    url = go_url(pg, db)
    r = tool_run(url, proj, "--tool", "dbmate", path=rec.path())
    assert r.code == 0, r
    assert r.named("plan.ready")[0]["apply"] == "cli" and len(rec.calls()) == 1
    r = tool_run(url, proj, "--tool", "dbmate", "--backup", "required", "--backup-dir",
                 str(tmp_path / "b"), path=rec.path())
    assert r.named("migrate.skip") and not r.named("backup.done") and len(rec.calls()) == 1
    project(tmp_path, {"20240102000000_t2.sql": UP.format(t="t2")})
    assert tool_run(url, proj, "--tool", "dbmate", path=rec.path()).code == 0
    assert len(rec.calls()) == 2
    pg.psql(db, "DELETE FROM schema_migrations WHERE version = '20240102000000'; DROP TABLE t2")
    r = tool_run(url, proj, "--tool", "dbmate", path=rec.path())
    assert r.code == 0 and r.named("plan.ready")[0]["pending"] == 1 and len(rec.calls()) == 3


@pytest.mark.parametrize("files, rows, problem, words", [
    ({"2_b.sql": UP.format(t="b")}, ["1"], "missing",
     "applied migration 1 is not found locally in db/migrations"),
    ({"1_a.sql": UP.format(t="a"), "3_c.sql": UP.format(t="c")}, ["3"], "out_of_order",
     "db/migrations/1_a.sql (1) is pending but sorts before 3, which is applied: apply it out of "
     "order with --allow-out-of-order"),
    ({"1_a.sql": "CREATE TABLE a (id int);\n-- migrate:up\nSELECT 1;\n-- migrate:down\n"}, [], "files",
     "db/migrations/1_a.sql: dbmate does not support statements preceding the '-- migrate:up' block"),
    ({"1_a.sql": "-- migrate:up\nSELECT 1;\n"}, [], "files",
     "dbmate requires each migration to define a down block with '-- migrate:down'"),
])
def test_refusals_change_nothing(pg, db, tmp_path, files, rows, problem, words):
    proj = project(tmp_path, files)
    if rows:
        pg.psql(db, "CREATE TABLE schema_migrations (version varchar PRIMARY KEY); " +
                "".join(f"INSERT INTO schema_migrations VALUES ('{v}');" for v in rows))
    # (the failure memory, public.mtr_failure_state, is the breaker's: not counted)
    objects = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname !~ '^mtr_'"
    before = pg.psql(db, objects)
    r = tool_run(go_url(pg, db), proj, "--tool", "dbmate", path=PLAIN_PATH)
    assert r.code == 65, r
    (e,) = [e for e in r.named("check.failed") if e["problem"] == problem]
    assert words in e["msg"]
    assert pg.psql(db, objects) == before
    r = tool_run(go_url(pg, db), proj, "--tool", "dbmate", "--check", path=PLAIN_PATH)
    assert r.code == 65 and "INCONSISTENT" in r.stdout


def test_failed_migration_rolls_back_its_record(pg, db, tmp_path):
    proj = project(tmp_path, {"1_a.sql": UP.format(t="a"),
                              "2_b.sql": "-- migrate:up\nCREATE TABLE b (id int);\nSELECT nosuch;\n-- migrate:down\n"})
    r = tool_run(go_url(pg, db), proj, "--tool", "dbmate", path=PLAIN_PATH)
    assert r.code == 70, r
    (f,) = r.named("migrate.failed")
    assert f["file"] == "2_b.sql" and f["line"] == 3 and f["sqlstate"] == "42703"
    assert pg.psql(db, "SELECT string_agg(version, ',') FROM schema_migrations") == "1"
    assert pg.psql(db, "SELECT to_regclass('b') IS NULL") == "t"


def test_apply_native_is_refused_for_a_reader_only_option_value(pg, db, tmp_path):
    r = tool_run(go_url(pg, db), tmp_path, "--tool", "dbmate", "--apply", "sometimes", path=PLAIN_PATH)
    assert r.code == 64 and "--apply: expected auto|native|cli" in r.stderr
