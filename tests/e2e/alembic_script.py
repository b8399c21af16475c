"""Real Alembic for the differential tests: Debian's python3-alembic, its ScriptDirectory API
and its upgrade command, in one long-lived /usr/bin/python3 process that the tests talk to
(JSON lines on stdin/stdout), so that Python starts once per test session.

Alembic 1.10 and later read each directory in name order; 1.8 (Debian's) took the file
system's order. The order decides Alembic's plan where it has a choice, so this process lists
directories in name order, as the Alembic versions users run do (and as we read them). And
1.16's path_separator is read before version_path_separator (NewerConfig).

Requests (each answered with one JSON object; "error" when Alembic refused):
    {"op": "graph", "ini": PATH, "cwd": DIR, "section": NAME}
        -> {"heads": [...], "bases": [...], "real_heads": [...], "revisions": N}
    {"op": "plan", "ini", "cwd", "rows": [...]}      what `upgrade heads` would run from rows
        -> {"plan": [...]}
    {"op": "rows", "ini", "cwd", "target": R}         the version table after `upgrade R`
        -> {"rows": [...]}
    {"op": "set_rows", "url", "rows": [...]}          a version table holding exactly these
    {"op": "upgrade", "ini", "cwd", "url", "target": R, "reset": bool}
        `alembic upgrade R` for real (reset first drops the version table)
        -> {"applied": [...], "rows": [...]}
"""
import contextlib
import json
import os
import sys
from unittest import mock

_listdir = os.listdir
os.listdir = lambda path=".": sorted(_listdir(path))  # noqa: E731 (Alembic >= 1.10's order)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime import migration  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402


@contextlib.contextmanager
def in_dir(cwd):
    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        yield
    finally:
        os.chdir(old)


class NewerConfig(Config):
    """Alembic 1.16's path_separator on Debian's 1.8: it names the separator first, then
    version_path_separator does (the values both versions know mean the same)."""

    def get_main_option(self, name, default=None):
        if name == "version_path_separator":
            first = super().get_main_option("path_separator")
            if first is not None:
                return first
        return super().get_main_option(name, default)


def script(req):
    cfg = NewerConfig(req["ini"], ini_section=req.get("section") or "alembic")
    return cfg, ScriptDirectory.from_config(cfg)


def heads_after(s, steps, rows=()):
    hm = migration.HeadMaintainer(mock.Mock(), set(rows))
    for step in steps:
        hm.update_to_step(step)
    return sorted(hm.heads)


def graph(req):
    _, s = script(req)
    m = s.revision_map
    return {"heads": list(s.get_heads()), "bases": list(s.get_bases()), "real_heads": list(m._real_heads),
            "revisions": len({r.revision for r in s.walk_revisions()})}


def plan(req):
    _, s = script(req)
    return {"plan": [step.revision.revision for step in s._upgrade_revs("heads", tuple(req["rows"]))]}


def rows(req):
    _, s = script(req)
    return {"rows": heads_after(s, s._upgrade_revs(req["target"], ()))}


ENGINES = {}


def engine_for(url):
    """One pooled engine per database for our own queries (env.py makes its own)."""
    if url not in ENGINES:
        ENGINES[url] = create_engine(url, pool_size=1)
    return ENGINES[url]


def upgrade(req):
    cfg, _ = script(req)
    if req.get("reset"):
        with engine_for(req["url"]).begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    applied = []
    real = migration.HeadMaintainer.update_to_step

    def record(self, step):
        applied.append(step.revision.revision)
        return real(self, step)

    os.environ["DATABASE_URL"] = req["url"]
    with mock.patch.object(migration.HeadMaintainer, "update_to_step", record):
        command.upgrade(cfg, req["target"])
    with engine_for(req["url"]).connect() as conn:
        now = sorted(r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version")))
    return {"applied": applied, "rows": now}


def set_rows(req):
    """The version table holding exactly these rows (a state a test wants to start from)."""
    with engine_for(req["url"]).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)"))
        for row in req["rows"]:
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": row})
    return {"rows": sorted(req["rows"])}


OPS = {"graph": graph, "plan": plan, "rows": rows, "upgrade": upgrade, "set_rows": set_rows}


def main():
    for line in sys.stdin:
        req = json.loads(line)
        try:
            with in_dir(req.get("cwd")), contextlib.redirect_stdout(sys.stderr):
                out = OPS[req["op"]](req)
        except Exception as e:  # Alembic's refusal is an answer too
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
