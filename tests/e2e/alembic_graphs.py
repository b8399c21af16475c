"""Revision graphs and the projects made of them, for the tests that compare us with real Alembic.

GRAPHS are the histories of Alembic's own tests/test_version_traversal.py (sqlalchemy/alembic),
one per test class there: each revision as (id, down_revision, branch_labels, depends_on), in
the order the test generates them. Ids that the test draws at random are named after their
letters. PROBLEMS says what we refuse in each on purpose (several unlabelled heads that never
merge, independent unlabelled histories); the others are healthy.
"""
import json
import pathlib
import subprocess

from conftest import PYTHON, ROOT

EXAMPLE_MIGRATIONS = ROOT / "docker" / "example" / "migrations"


def R(rev, down=(), labels=(), deps=()):
    return (rev, tuple([down] if isinstance(down, str) else down), tuple(labels), tuple([deps] if isinstance(deps, str) else deps))


GRAPHS = {
    "RevisionPathTest": [R("e6239818bb3a"), R("548bbb905360", "e6239818bb3a"), R("b7ea43dc85e4", "548bbb905360"),
                         R("1bbe33445780", "b7ea43dc85e4"), R("3975fb1a0125", "1bbe33445780")],
    "BranchedPathTest": [R("a"), R("b", "a"), R("c1", "b", ["c1branch"]), R("d1", "c1"), R("c2", "b", ["c2branch"]),
                         R("d2", "c2")],
    "BranchFromMergepointTest": [R("a1"), R("b1", "a1"), R("c1", "b1"), R("a2"), R("b2", "a2"), R("c2", "b2"),
                                 R("d1", ("c1", "c2")), R("d2", "c2")],
    "BranchFrom3WayMergepointTest": [R("a1"), R("b1", "a1"), R("c1", "b1"), R("a2"), R("b2", "a2"), R("c2", "b2"),
                                     R("a3"), R("b3", "a3"), R("c3", "b3"), R("d1", ("c1", "c2", "c3")),
                                     R("d2", "c2"), R("d3", "c3")],
    "TwinMergeTest": [R("a"), R("b1", "a"), R("b2", "a"), R("b3", "a"), R("c1", ("b1", "b2", "b3")),
                      R("c2", ("b1", "b2", "b3")), R("d1", "c1"), R("d2", "c2")],
    "NotQuiteTwinMergeTest": [R("a"), R("b1", "a"), R("b2", "a"), R("b3", "a"), R("c1", ("b1", "b2")),
                              R("c2", ("b2", "b3")), R("d1", "c1"), R("d2", "c2")],
    "DependsOnBranchTestOne": [R("a1", (), ["lib1"]), R("b1", "a1"), R("c1", "b1"), R("a2"), R("b2", "a2"),
                               R("c2", "b2", (), "c1"), R("d1", "c1"), R("e1", "d1"), R("f1", "e1")],
    "DependsOnBranchTestTwo": [R("a1"), R("a2"), R("a3"), R("amerge", ("a1", "a2", "a3")), R("b1"), R("b2"),
                               R("bmerge", ("b1", "b2")), R("c1"), R("c2"), R("c3"), R("cmerge", ("c1", "c2", "c3")),
                               R("d1", (), (), ("a3", "b2", "c1"))],
    "DependsOnBranchTestThree": [R("a1"), R("a2", "a1"), R("b1"), R("b2", "b1", (), "a2"), R("b3", "b2"),
                                 R("a3", "a2", (), "b1")],
    "DependsOnOwnDownrevTest": [R("a1"), R("a2", "a1", (), "a1")],
    "DependsOnBranchTestFour": [R("a1"), R("a2", "a1"), R("a3", "a2"), R("b1"), R("b2", "b1", (), "a3"),
                                R("b3", "b2"), R("b4", "b3", (), "a3")],
    "DependsOnBranchTestFive": [R("a1"), R("b1", (), (), "a1"), R("bmerge", ("a1", "b1"))],
    "DependsOnBranchLabelTest": [R("a1", (), ["lib1"]), R("b1", "a1"), R("c1", "b1", ["c1lib"]), R("a2"),
                                 R("b2", "a2"), R("c2", "b2", (), ["c1lib"]), R("d1", "c1"), R("e1", "d1"),
                                 R("f1", "e1")],
    "ForestTest": [R("a1"), R("b1", "a1"), R("a2"), R("b2", "a2")],
    "MergedPathTest": [R("a"), R("b", "a"), R("c1", "b"), R("d1", "c1"), R("c2", "b", ["c2branch"]), R("d2", "c2"),
                       R("e", ("d1", "d2")), R("f", "e")],
    "BranchedPathTestCrossDependencies": [R("a"), R("b", "a"), R("c1", "b", ["c1branch"]), R("d1", "c1"),
                                          R("c2", "b", ["c2branch"]), R("d2", "c2", (), ("c1",))],
}

# What we refuse by design in each (kinds of problem); absent: healthy.
PROBLEMS = {
    "BranchFromMergepointTest": ["heads"],
    "BranchFrom3WayMergepointTest": ["heads"],
    "TwinMergeTest": ["heads"],
    "NotQuiteTwinMergeTest": ["heads"],
    "DependsOnBranchTestTwo": ["roots"],
    "DependsOnBranchTestThree": ["roots"],
    "DependsOnBranchTestFour": ["roots"],
    "ForestTest": ["roots"],
}

# Alembic's own order is not fixed where a revision has several depends_on that matter: it
# takes them from a Python set (hash order differs from run to run); there only the set counts.
ORDER_OPEN = {"DependsOnBranchTestTwo"}


def literal(values, one=True):
    if not values:
        return "None"
    if one and len(values) == 1:
        return repr(values[0])
    return repr(tuple(values))


PLAIN = '''"""{message}

Revision ID: {rev}
Revises: {revises}
Create Date: 2024-05-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = {rev!r}
down_revision = {down}
branch_labels = {labels}
depends_on = {deps}


def upgrade():
    pass


def downgrade():
    pass
'''

ANNOTATED = '''"""{message}

Revision ID: {rev}
Revises: {revises}
Create Date: 2024-05-01 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down}
branch_labels: Union[str, Sequence[str], None] = {labels}
depends_on: Union[str, Sequence[str], None] = {deps}


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''

TEMPLATES = {"plain": PLAIN, "annotated": ANNOTATED}


def revision_text(template, rev, down, labels, deps):
    return TEMPLATES[template].format(message=f"step {rev}", rev=rev, revises=", ".join(down), down=literal(down),
                                      labels=literal(labels, one=False), deps=literal(deps))


def write_ini(path, locations=None, extra=""):
    """An alembic.ini beside path's versions/ (or with the given version_locations lines)."""
    loc = locations if locations is not None else "version_locations = %(here)s/versions\n"
    path.write_text(f"[alembic]\nscript_location = {EXAMPLE_MIGRATIONS}\n{loc}{extra}\n"
                    "[loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n"
                    "[logger_root]\nlevel = WARN\nhandlers = console\n"
                    "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\n"
                    "formatter = generic\n[formatter_generic]\nformat = %%(levelname)s %%(message)s\n")


def write_project(root, revs, template="plain"):
    """A project of these revisions (root/alembic.ini, root/versions/<id>_step.py); returns the ini."""
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for rev, down, labels, deps in revs:
        (versions / f"{rev}_step.py").write_text(revision_text(template, rev, down, labels, deps))
    ini = root / "alembic.ini"
    write_ini(ini)
    return ini


class RealAlembic:
    """tests/e2e/alembic_script.py, started once: real Alembic's answers."""

    def __init__(self):
        self.proc = subprocess.Popen([PYTHON, str(pathlib.Path(__file__).with_name("alembic_script.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, op, ini, cwd=None, **args):
        self.proc.stdin.write(json.dumps(dict(op=op, ini=str(ini), cwd=str(cwd) if cwd else None, **args)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the Alembic helper died (see its stderr above)"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
