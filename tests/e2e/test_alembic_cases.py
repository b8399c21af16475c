"""Every case of reading real Alembic projects as Alembic reads them (tests/fixtures/alembic_cases/,
one directory each, its case.json the expected result): merged roots, depends_on through labels,
labels that are not literals, missing and repeated locations, separators, paths from the command's
directory, the Python forms, ConfigParser's rules and sections, Flask-Migrate, package resources,
sourceless projects, and a --check that reports everything. Where case.json says so, real Alembic
is asked too (its ScriptDirectory; its upgrade, whose order we must have planned)."""
import json
import re

import pytest

from alembic_graphs import RealAlembic
from conftest import PYTHON, ROOT, clean_env, run

CASES = ROOT / "tests" / "fixtures" / "alembic_cases"


@pytest.fixture(scope="module")
def real():
    r = RealAlembic()
    yield r
    r.close()


def ini_of(case):
    for rel in ("alembic.ini", "ini/alembic.ini", "migrations/alembic.ini"):
        if (case / rel).exists():
            return case / rel
    raise AssertionError(f"{case}: no alembic.ini")


def args_of(case, c):
    args = ["--alembic-ini", str(ini_of(case)), *c.get("args", [])]
    if "migrate_cwd" in c:
        args += ["--migrate-cwd", str(case / c["migrate_cwd"])]
    return args


def said(r, words):
    return any(words in e.get("msg", "") for e in r.events)


@pytest.mark.parametrize("name", sorted(p.name for p in CASES.iterdir()))
def test_case(pg, db, real, name):
    case = CASES / name
    c = json.loads((case / "case.json").read_text())
    env = clean_env(DATABASE_URL=pg.url(db))
    r = run(args_of(case, c) + ["--check", "--log-format", "json"], env=env)
    assert r.code == c["exit"], r
    for words in c.get("words", []):
        assert said(r, words), (words, r)
    if r.named("config.invalid"):
        assert c["exit"] == 64
        return
    rep = json.loads(r.stdout)  # the report, refused or not
    assert sorted(e["problem"] for e in r.named("check.failed")) == sorted(c["problems"]), r
    for key in ("heads", "roots", "pending"):
        if key in c:
            assert rep[key] == c[key], (key, rep)
    assert sorted(e["kind"] for e in r.named("plan.note")) == sorted(c.get("notes", [])), r
    assert not said(r, "up to date") and not said(r, "--migrate-only")  # a check is no migration
    if c.get("alembic"):
        want = real.ask("graph", ini_of(case), cwd=case / c.get("migrate_cwd", "."), section=c.get("section"))
        assert "error" not in want, want
        assert rep["heads"] == want["heads"] and rep["roots"] == want["bases"], want
        if rep["pending"] is not None:  # from an empty database: what `alembic upgrade heads` runs
            plan = real.ask("plan", ini_of(case), cwd=case / c.get("migrate_cwd", "."), rows=[])
            assert rep["pending"] == plan["plan"], plan
    if c.get("migrate"):
        migrate_for_real(pg, db, case, c, rep["pending"])


def migrate_for_real(pg, db, case, c, planned):
    """Real Alembic runs what we planned, in our order; then a start at head runs no Python."""
    env = clean_env(DATABASE_URL=pg.url(db))
    r = run(args_of(case, c) + ["--python", PYTHON, "--migrate-only"], env=env, timeout=120)
    assert r.code == 0, r
    ran = [m.group(1) for e in r.named("migrate.output")
           for m in [re.search(r"Running upgrade .*-> (\w+)", e.get("line", ""))] if m]
    assert ran == planned, (ran, planned)
    assert r.named("migrate.revisions")[0]["applied"] == ", ".join(planned)
    for table in c.get("tables", []):
        assert pg.psql(db, f"SELECT to_regclass('{table}') IS NOT NULL") == "t", table
    again = run(args_of(case, c) + ["--python", PYTHON, "--migrate-only"], env=env)
    assert again.code == 0 and again.named("migrate.skip"), again
