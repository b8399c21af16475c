"""Alembic projects: the revision graph and the database are checked before Python starts."""
import json
import os
import pathlib

import pytest

from conftest import PYTHON, ROOT, clean_env, run

FIX = ROOT / "tests" / "fixtures" / "alembic"


def ini(name):
    return str(FIX / name / "alembic.ini")


def go(pg, db, name, *extra, check=False, marker=None):
    """Runs the tool on a fixture; with marker, Alembic runs through a wrapper that records it."""
    args = ["--alembic-ini", ini(name), "--python", PYTHON, *extra]
    if marker:
        args += ["--migrate-cmd", f"sh -c 'echo ran >> {marker}; exec {PYTHON} -m alembic -c {ini(name)} upgrade heads'"]
    args += ["--check"] if check else ["--migrate-only"]
    return run(args, env=clean_env(DATABASE_URL=pg.url(db)), timeout=120)


def make_project(tmp_path, files):
    """A project of our own revision files, with the example's env.py and logging setup."""
    proj = tmp_path / "proj"
    (proj / "versions").mkdir(parents=True)
    text = (ROOT / "docker" / "example" / "alembic.ini").read_text().replace(
        "script_location = %(here)s/migrations",
        f"script_location = {ROOT}/docker/example/migrations\nversion_locations = %(here)s/versions")
    (proj / "alembic.ini").write_text(text)
    for name, body in files.items():
        (proj / "versions" / name).write_text(body)
    return str(proj / "alembic.ini")


def versions(pg, db):
    out = pg.psql(db, "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version")
    return out


def problems(r):
    return [e for e in r.named("check.failed")]


@pytest.mark.parametrize("name,head", [("linear", "c47d09e3f8b1"), ("annotated", "1a6f4c98b7e2"),
                                       ("merge", "m3"), ("merge_list", "m3"), ("branches", "x2")])
def test_healthy_projects_migrate_then_skip_python(pg, db, tmp_path, name, head):
    marker = tmp_path / "alembic-ran"
    r = go(pg, db, name, marker=marker)
    assert r.code == 0, r
    assert versions(pg, db) == head
    assert marker.read_text() == "ran\n"
    # At head: nothing pending, so no Python at all.
    r = go(pg, db, name, marker=marker)
    assert r.code == 0, r
    assert r.named("migrate.skip")
    assert marker.read_text() == "ran\n"


def test_two_independent_chains_are_refused_with_the_exact_fix(pg, db):
    r = go(pg, db, "two_chains")
    assert r.code == 65, r
    [p] = problems(r)
    assert p["problem"] == "roots"
    assert "0001 -> 0002 -> 0003" in p["msg"] and "0004 -> 0005 -> 0006" in p["msg"]
    assert "set down_revision = '0003' in versions/0004_asyncpg_compatibility_fixes.py" in p["msg"]
    assert pg.psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


@pytest.mark.parametrize("name,kind,words", [
    ("dangling", "dangling", ["versions/0003_add_size.py:", "'0002_add_color' is the file name of versions/0002_add_color.py",
                              "set down_revision = '0002'"]),
    ("duplicate", "duplicate", ["'0002' is declared twice", "versions/0002_add_color.py", "versions/0002_add_colour.py"]),
    ("cycle", "cycle", ["cycle", "c2", "c3", "c4"]),
])
def test_broken_graphs(pg, db, name, kind, words):
    r = go(pg, db, name)
    assert r.code == 65, r
    found = problems(r)
    assert [p["problem"] for p in found] == [kind]
    for w in words:
        assert w in found[0]["msg"]
    assert pg.psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


def test_unknown_revision_in_the_database(pg, db):
    assert go(pg, db, "linear").code == 0
    pg.psql(db, "UPDATE alembic_version SET version_num = 'ffffffffffff'")
    r = go(pg, db, "linear")
    assert r.code == 65, r
    msg = problems(r)[0]["msg"]
    assert "'ffffffffffff'" in msg and "older than the database" in msg


def test_stale_ancestor_row_is_named_and_repaired_only_on_request(pg, db):
    assert go(pg, db, "linear").code == 0
    pg.psql(db, "INSERT INTO alembic_version VALUES ('8e15b6d0c2a9')")
    r = go(pg, db, "linear")
    assert r.code == 65, r
    msg = problems(r)[0]["msg"]
    assert "'8e15b6d0c2a9'" in msg and "stale" in msg and "--repair-version-table" in msg
    assert versions(pg, db) == "8e15b6d0c2a9,c47d09e3f8b1"
    r = go(pg, db, "linear", "--repair-version-table")
    assert r.code == 0, r
    assert r.named("migrate.repair")[0]["removed"] == "8e15b6d0c2a9"
    assert versions(pg, db) == "c47d09e3f8b1"


def test_non_empty_database_without_version_table(pg, db):
    pg.psql(db, "CREATE TABLE widgets (id int)")
    r = go(pg, db, "linear")
    assert r.code == 65, r
    assert "--alembic-baseline REV" in problems(r)[0]["msg"]
    r = go(pg, db, "linear", "--alembic-baseline", "3f9c2a7b1d04")
    assert r.code == 0, r
    assert versions(pg, db) == "c47d09e3f8b1"


def test_schema_drift_is_explained(pg, db):
    # The column the last revision adds is already there: the incident's DuplicateColumn.
    assert run(["--alembic-ini", ini("linear"), "--python", PYTHON, "--migrate-only"],
               env=clean_env(DATABASE_URL=pg.url(db))).code == 0
    pg.psql(db, "UPDATE alembic_version SET version_num = '8e15b6d0c2a9'")
    r = go(pg, db, "linear")
    assert r.code == 70, r
    d = r.named("migrate.diagnosis")[0]
    assert d["kind"] == "schema_drift" and d["sqlstate"] == "42701" and d["revision"] == "c47d09e3f8b1"
    assert "alembic stamp c47d09e3f8b1" in d["msg"]


def test_check_reports_graph_and_database(pg, db):
    r = go(pg, db, "linear", check=True)
    assert r.code == 0, r
    rep = json.loads(r.stdout)
    assert rep["roots"] == ["3f9c2a7b1d04"] and rep["heads"] == ["c47d09e3f8b1"]
    assert rep["pending"] == ["3f9c2a7b1d04", "8e15b6d0c2a9", "c47d09e3f8b1"]
    assert rep["consistent"] is True
    assert pg.psql(db, "SELECT to_regclass('alembic_version') IS NULL") == "t"
    r = go(pg, db, "two_chains", check=True)
    assert r.code == 65
    assert json.loads(r.stdout)["consistent"] is False


def test_revision_that_is_not_a_literal(pg, db, tmp_path):
    path = make_project(tmp_path, {"0001_a.py": '"""a\n\nrevision = \'docstring\'\n"""\nimport ids\n'
                                                'revision = ids.REV\ndown_revision = None\n'})
    r = run(["--alembic-ini", path, "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65, r
    assert "versions/0001_a.py:6: revision is not a literal" in problems(r)[0]["msg"]


def test_package_resource_script_location_is_unsupported(tmp_path):
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = myapp:migrations\n")
    r = run(["--alembic-ini", str(tmp_path / "alembic.ini"), "--migrate-only"],
            env=clean_env(DATABASE_URL="postgresql://u@127.0.0.1:1/d"))
    assert r.code == 64, r
    assert "package resource" in r.events[-1]["msg"]


def test_first_revision_using_a_missing_table_suggests_lost_history(pg, db, tmp_path):
    # The incident's image: only 0004 onwards, the first of them with down_revision = None.
    path = make_project(tmp_path, {"0004_asyncpg_compatibility_fixes.py":
        "from alembic import op\n\nrevision = '0004'\ndown_revision = None\n\n\n"
        "def upgrade():\n    op.execute('ALTER TABLE embeddings ADD COLUMN vec text')\n"})
    r = run(["--alembic-ini", path, "--python", PYTHON, "--migrate-only"],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 70, r
    d = r.named("migrate.diagnosis")[0]
    assert d["kind"] == "missing_history" and d["revision"] == "0004"
    assert "missing its earlier migrations" in d["msg"]


def test_database_behind_the_head_is_brought_up(pg, db, tmp_path):
    assert go(pg, db, "linear").code == 0
    pg.psql(db, "ALTER TABLE widgets DROP COLUMN color; UPDATE alembic_version SET version_num = '8e15b6d0c2a9'")
    r = go(pg, db, "linear")
    assert r.code == 0, r
    ready = r.named("plan.ready")[-1]
    assert ready["from"] == "8e15b6d0c2a9" and ready["pending"] == 1
    assert r.named("migrate.revisions")[0]["applied"] == "c47d09e3f8b1"
    assert versions(pg, db) == "c47d09e3f8b1"


REV2 = "revision = '0002'\ndown_revision = '0001'\n"


@pytest.mark.parametrize("kind,reason", [
    ("dangling", "No such file or directory"),
    ("loop", "a loop of symbolic links"),
    ("fifo", "not a regular file"),
    ("device", "not a regular file"),
])
def test_revision_file_that_cannot_be_read_is_refused_with_the_reason(pg, db, tmp_path, kind, reason):
    path = make_project(tmp_path, {"0001_a.py": "revision = '0001'\ndown_revision = None\n"})
    entry = pathlib.Path(path).parent / "versions" / "0002_b.py"
    if kind == "dangling":
        entry.symlink_to("gone.py")
    elif kind == "loop":
        entry.symlink_to(entry.name)
    elif kind == "fifo":
        os.mkfifo(entry)  # read as a file, this would wait for a writer forever
    else:
        entry.symlink_to("/dev/zero")
    r = run(["--alembic-ini", path, "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)), timeout=30)
    assert r.code == 65, r
    p = problems(r)[-1]
    assert p["problem"] == "files"
    assert p["msg"].startswith("versions/0002_b.py: cannot read: " + reason), p


def test_alembic_ini_that_is_not_a_regular_file_or_too_large_is_refused(tmp_path):
    fifo = tmp_path / "alembic.ini"
    os.mkfifo(fifo)
    env = clean_env(DATABASE_URL="postgresql://u@127.0.0.1:1/d")
    r = run(["--alembic-ini", str(fifo), "--migrate-only"], env=env, timeout=30)
    assert r.code == 64, r
    assert "cannot read '%s': not a regular file" % fifo in r.events[-1]["msg"]
    big = tmp_path / "big.ini"
    big.write_text("[alembic]\nscript_location = m\n" + "#" * (1 << 20))
    r = run(["--alembic-ini", str(big), "--migrate-only"], env=env, timeout=30)
    assert r.code == 64, r
    assert "(more than 1 MiB)" in r.events[-1]["msg"]


def test_recursive_version_locations_walk_a_symlink_loop_once(pg, db, tmp_path):
    path = make_project(tmp_path, {"0001_a.py": "revision = '0001'\ndown_revision = None\n"})
    ini_file = pathlib.Path(path)
    (ini_file.parent / "versions" / "sub").mkdir()
    (ini_file.parent / "versions" / "sub" / "0002_b.py").write_text(REV2)
    ini_file.write_text(ini_file.read_text().replace(
        "version_locations = %(here)s/versions", "version_locations = %(here)s/versions\nrecursive_version_locations = true"))
    versions_dir = ini_file.parent / "versions"
    (versions_dir / "sub" / "up").symlink_to("..")  # versions/sub/up/sub/up/... for ever
    r = run(["--alembic-ini", path, "--python", PYTHON, "--check"], env=clean_env(DATABASE_URL=pg.url(db)),
            timeout=30)
    assert r.code == 0, r
    rep = json.loads(r.stdout)
    assert rep["revisions"] == 2 and rep["pending"] == ["0001", "0002"] and rep["consistent"] is True


def test_link_to_a_file_beside_it_is_read_once(pg, db, tmp_path):
    # Alembic reads each real path once: the link is skipped with a note, not a second 0002.
    path = make_project(tmp_path, {"0001_a.py": "revision = '0001'\ndown_revision = None\n", "0002_b.py": REV2})
    (pathlib.Path(path).parent / "versions" / "0003_c.py").symlink_to("0002_b.py")
    r = run(["--alembic-ini", path, "--python", PYTHON, "--check"], env=clean_env(DATABASE_URL=pg.url(db)),
            timeout=30)
    assert r.code == 0, r
    assert json.loads(r.stdout)["revisions"] == 2, r
    notes = [e for e in r.named("plan.note") if e.get("kind") == "read_twice"]
    assert notes and notes[0]["file"] == "versions/0003_c.py" and notes[0]["count"] == 1, r


def test_version_table_option_is_an_identifier_never_sql(pg, db):
    # Pasted into a statement, this value would run a second one (and --check must change
    # nothing): as an identifier it names a table that does not exist.
    evil = "alembic_version; DROP TABLE widgets; --"
    pg.psql(db, "CREATE TABLE widgets (id int); CREATE TABLE alembic_version "
                "(version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('c47d09e3f8b1')")
    r = go(pg, db, "linear", "--alembic-version-table", evil, check=True)
    assert r.code == 65, r  # a non-empty database without that version table
    assert pg.psql(db, "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'widgets'") == "1"
    # Schema-qualified: each part is quoted on its own, as SQLAlchemy quotes a mixed-case name.
    pg.psql(db, 'CREATE SCHEMA "Ops"; CREATE TABLE "Ops".alembic_version (version_num varchar(32) PRIMARY KEY); '
                "INSERT INTO \"Ops\".alembic_version VALUES ('c47d09e3f8b1')")
    r = go(pg, db, "linear", "--alembic-version-table", "Ops.alembic_version", check=True)
    assert r.code == 0, r
    assert json.loads(r.stdout)["pending"] == [], r  # the rows of "Ops" were read, not "ops"


def test_check_in_text_says_when_pending_was_not_computed(pg, db):
    # Item 11: problems that stop the computation are never reported as "pending: none".
    case = ROOT / "tests" / "fixtures" / "alembic_cases" / "11_every_file_problem"
    r = run(["--alembic-ini", str(case / "alembic.ini"), "--check", "--log-format", "text"],
            env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65, r
    assert "pending: not computed" in r.stdout and "pending: none" not in r.stdout, r.stdout
    assert r.stdout.count("problem: ") == 2 and "INCONSISTENT: 2 problems" in r.stdout, r.stdout
