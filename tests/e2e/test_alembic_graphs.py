"""The revision graphs of Alembic's own tests/test_version_traversal.py as projects, in the plain and
the annotated template: our --check says what real Alembic (ScriptDirectory) says about heads and
bases, and from every state `alembic upgrade R` leaves, our plan is what `alembic upgrade heads`
then applies, in its order."""
import json

import pytest

from alembic_graphs import GRAPHS, ORDER_OPEN, PROBLEMS, RealAlembic, write_project
from conftest import clean_env, run


@pytest.fixture(scope="module")
def real():
    r = RealAlembic()
    yield r
    r.close()


@pytest.fixture(scope="module")
def empty_db(pg):
    """One database without a version table, for the checks that only read the files."""
    pg.psql("postgres", "CREATE DATABASE alembic_graphs_empty")
    return "alembic_graphs_empty"


def check(pg, db, ini, cwd=None, *extra):
    r = run(["--alembic-ini", str(ini), "--check", "--log-format", "json", *extra],
            env=clean_env(DATABASE_URL=pg.url(db)), cwd=cwd)
    assert r.stdout, r
    return r, json.loads(r.stdout)


@pytest.mark.parametrize("template", ["plain", "annotated"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_traversal_graph_as_alembic_sees_it(pg, empty_db, tmp_path, real, name, template):
    ini = write_project(tmp_path / "p", GRAPHS[name], template)
    want = real.ask("graph", ini)
    assert "error" not in want, want
    r, rep = check(pg, empty_db, ini)
    assert rep["revisions"] == len(GRAPHS[name]) == want["revisions"]
    assert rep["heads"] == want["heads"]
    assert rep["roots"] == want["bases"]
    kinds = sorted({e["problem"] for e in r.named("check.failed")})
    assert kinds == PROBLEMS.get(name, []), r
    assert r.code == (65 if kinds else 0)
    # From an empty database: what Alembic's plan (ScriptDirectory) says `upgrade heads` runs; a
    # refusal of policy still says what would run.
    plan = real.ask("plan", ini, rows=[])
    assert "error" not in plan, plan
    if name in ORDER_OPEN:
        assert sorted(rep["pending"]) == sorted(plan["plan"])
    else:
        assert rep["pending"] == plan["plan"]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_after_each_real_upgrade_we_plan_what_alembic_then_applies(pg, db, tmp_path, real, name):
    # One template per graph here (both are read alike: the test above); the other half of the
    # graphs in the other one.
    template = "plain" if sorted(GRAPHS).index(name) % 2 else "annotated"
    ini = write_project(tmp_path / "p", GRAPHS[name], template)
    url = pg.url(db)
    for target in ["base"] + [rev for rev, *_ in GRAPHS[name]]:
        up = real.ask("upgrade", ini, url=url, target=target, reset=True)
        assert "error" not in up, (target, up)
        _, rep = check(pg, db, ini)
        assert sorted(rep["database"]) == up["rows"], target
        then = real.ask("upgrade", ini, url=url, target="heads")
        assert "error" not in then, (target, then)
        if name in ORDER_OPEN:
            assert sorted(rep["pending"]) == sorted(then["applied"]), target
        else:
            assert rep["pending"] == then["applied"], (target, rep["pending"], then["applied"])
