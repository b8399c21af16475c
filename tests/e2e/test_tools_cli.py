"""The presets with the real CLIs that install here (Django, sqitch and yoyo from Debian; knex,
node-pg-migrate, typeorm and sequelize-cli from npm through make tools-deps): the first start
applies through the tool, the next does not start it, and a new migration file or a history
row deleted by hand starts it again."""
import pytest

from conftest import PYTHON
from tooling import NODE_BIN, Recorder, have, tool_run


def knex(proj, n):
    (proj / "knexfile.js").write_text(
        "module.exports = { client: 'pg', connection: process.env.DATABASE_URL,\n"
        "  migrations: { directory: './migrations' } };\n")
    (proj / "migrations").mkdir(exist_ok=True)
    (proj / "migrations" / f"2024010100000{n}_t{n}.js").write_text(
        f"exports.up = knex => knex.schema.createTable('t{n}', t => t.integer('id'));\n"
        f"exports.down = knex => knex.schema.dropTable('t{n}');\n")


def node_pg_migrate(proj, n):
    (proj / "migrations").mkdir(exist_ok=True)
    (proj / "migrations" / f"170000000000{n}_t{n}.js").write_text(
        f"exports.up = pgm => {{ pgm.createTable('t{n}', {{ id: 'int' }}); }};\n"
        f"exports.down = pgm => {{ pgm.dropTable('t{n}'); }};\n")


def typeorm(proj, n):
    (proj / "data-source.js").write_text(
        "const { DataSource } = require('typeorm');\n"
        "module.exports = new DataSource({ type: 'postgres', url: process.env.DATABASE_URL,\n"
        "  migrations: [__dirname + '/migrations/*.js'] });\n")
    (proj / "migrations").mkdir(exist_ok=True)
    (proj / "migrations" / f"170000000000{n}-T{n}.js").write_text(
        f"module.exports = class T{n}170000000000{n} {{\n"
        f"  async up(q) {{ await q.query('CREATE TABLE t{n} (id int)'); }}\n"
        f"  async down(q) {{ await q.query('DROP TABLE t{n}'); }}\n}};\n")


def sequelize(proj, n):
    (proj / "config").mkdir(exist_ok=True)
    (proj / "config" / "config.json").write_text(
        '{"development": {"use_env_variable": "DATABASE_URL", "dialect": "postgres", "logging": false}}\n')
    (proj / "migrations").mkdir(exist_ok=True)
    (proj / "migrations" / f"2024010100000{n}-t{n}.js").write_text(
        "module.exports = {\n"
        f"  up: qi => qi.sequelize.query('CREATE TABLE t{n} (id int)'),\n"
        f"  down: qi => qi.sequelize.query('DROP TABLE t{n}') }};\n")


def django(proj, n):
    (proj / "proj").mkdir(exist_ok=True)
    (proj / "proj" / "__init__.py").write_text("")
    (proj / "proj" / "settings.py").write_text(
        "import os\nfrom urllib.parse import urlsplit, unquote\n"
        "u = urlsplit(os.environ['DATABASE_URL'])\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': u.path[1:],\n"
        "    'USER': unquote(u.username), 'PASSWORD': unquote(u.password or ''),\n"
        "    'HOST': u.hostname, 'PORT': u.port}}\n"
        "INSTALLED_APPS = ['app']\nSECRET_KEY = 'test'\nUSE_TZ = True\n")
    (proj / "manage.py").write_text(
        "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n")
    mig = proj / "app" / "migrations"
    mig.mkdir(parents=True, exist_ok=True)
    (proj / "app" / "__init__.py").write_text("")
    (mig / "__init__.py").write_text("")
    deps = f"[('app', '000{n - 1}_t{n - 1}')]" if n > 1 else "[]"
    (mig / f"000{n}_t{n}.py").write_text(
        "from django.db import migrations\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = {deps}\n"
        f"    operations = [migrations.RunSQL('CREATE TABLE t{n} (id int)', 'DROP TABLE t{n}')]\n")


def sqitch(proj, n):
    (proj / "sqitch.conf").write_text("[core]\n\tengine = pg\n[user]\n\tname = Tester\n"
                                      "\temail = tester@example.com\n")
    plan = proj / "sqitch.plan"
    if not plan.exists():
        plan.write_text("%syntax-version=1.0.0\n%project=t\n\n")
    with plan.open("a") as f:
        f.write(f"t{n} 2024-01-0{n}T00:00:00Z Tester <tester@example.com> # t{n}\n")
    for d, sql in (("deploy", f"CREATE TABLE t{n} (id int);"), ("revert", f"DROP TABLE t{n};")):
        (proj / d).mkdir(exist_ok=True)
        (proj / d / f"t{n}.sql").write_text(f"BEGIN;\n{sql}\nCOMMIT;\n")


def yoyo(proj, n):
    (proj / "migrations").mkdir(exist_ok=True)
    (proj / "migrations" / f"000{n}_t{n}.sql").write_text(f"CREATE TABLE t{n} (id int)\n")
    (proj / "migrations" / f"000{n}_t{n}.rollback.sql").write_text(f"DROP TABLE t{n}\n")


# tool, program on PATH, project builder, the history row of migration 2 (DELETE ... WHERE)
TOOLS = [
    ("knex", "knex", knex, "knex_migrations WHERE name LIKE '%t2.js'"),
    ("node-pg-migrate", "node-pg-migrate", node_pg_migrate, "pgmigrations WHERE name LIKE '%t2'"),
    ("typeorm", "typeorm", typeorm, "migrations WHERE name LIKE 'T2%'"),
    ("sequelize", "sequelize-cli", sequelize, "\"SequelizeMeta\" WHERE name LIKE '%t2.js'"),
    ("django", PYTHON, django, "django_migrations WHERE name = '0002_t2'"),
    ("sqitch", "sqitch", sqitch, "sqitch.changes WHERE change = 't2'"),
    ("yoyo", "yoyo", yoyo, "_yoyo_migration WHERE migration_id = '0002_t2'"),
]


@pytest.mark.parametrize("tool, program, build, row", TOOLS, ids=[t[0] for t in TOOLS])
def test_real_cli_fast_path(pg, db, tmp_path, tool, program, build, row):
    real = have(program)
    if not real:
        pytest.skip(f"{program} is not installed (scripts/deps.sh, make tools-deps)")
    proj = tmp_path / "proj"
    proj.mkdir()
    build(proj, 1)
    name = "python3" if tool == "django" else program
    rec = Recorder(tmp_path, name, real)
    args = ["--tool", tool] + (["--python", str(rec.dir / "python3")] if tool == "django" else [])
    env = {"NODE_PATH": str(NODE_BIN.parent)}  # the tools' own modules (pg, typeorm, sequelize)

    def start():
        r = tool_run(pg.url(db), proj, *args, path=rec.path(), env=env)
        assert r.code == 0, r
        return r

    def why(r, reason):
        """The fast path's reason, or (Django: a native reader) what the plan found pending."""
        if tool == "django":
            return r.named("plan.ready")[0]["pending"] > 0 if reason else bool(r.named("migrate.skip"))
        return r.named("fastpath.run")[0]["reason"] == reason if reason else bool(r.named("fastpath.skip"))

    r = start()
    assert why(r, "first") and len(rec.calls()) == 1
    assert pg.psql(db, "SELECT to_regclass('t1') IS NOT NULL") == "t"
    r = start()
    assert why(r, None) and len(rec.calls()) == 1

    build(proj, 2)
    r = start()
    assert why(r, "files") and len(rec.calls()) == 2
    assert pg.psql(db, "SELECT to_regclass('t2') IS NOT NULL") == "t"

    pg.psql(db, f"DELETE FROM {row}; DROP TABLE t2")
    r = start()
    assert why(r, "history") and len(rec.calls()) == 3
    assert pg.psql(db, "SELECT to_regclass('t2') IS NOT NULL") == "t"
    r = start()
    assert why(r, None) and len(rec.calls()) == 3


def test_django_reader_refuses_a_row_without_its_file(pg, db, tmp_path):
    """Only the project's apps are checked: django.contrib's rows are Django's own."""
    proj = tmp_path / "proj"
    proj.mkdir()
    django(proj, 1)
    django(proj, 2)
    rec = Recorder(tmp_path, "python3", PYTHON)
    args = ["--tool", "django", "--python", str(rec.dir / "python3")]
    assert tool_run(pg.url(db), proj, *args, path=rec.path()).code == 0
    pg.psql(db, "INSERT INTO django_migrations (app, name, applied) VALUES ('auth', '0001_initial', now())")
    r = tool_run(pg.url(db), proj, *args, path=rec.path())
    assert r.code == 0 and r.named("migrate.skip") and len(rec.calls()) == 1
    (proj / "app" / "migrations" / "0002_t2.py").unlink()
    r = tool_run(pg.url(db), proj, *args, path=rec.path())
    assert r.code == 65, r
    (e,) = r.named("check.failed")
    assert e["problem"] == "missing" and "applied migration app.0002_t2 is not found locally" in e["msg"]
    assert len(rec.calls()) == 1
    r = tool_run(pg.url(db), proj, *args, "--apply", "native", path=rec.path())
    assert r.code == 64 and "django is read natively but applied by its own CLI" in r.stderr


def test_django_reader_counts_the_packages_it_is_given(pg, db, tmp_path):
    """A package's migrations (here a stand-in for django/contrib) count when their root is
    given: one not applied yet starts the CLI."""
    proj = tmp_path / "proj"
    proj.mkdir()
    django(proj, 1)
    pkg = tmp_path / "site" / "contribapp" / "migrations"
    pkg.mkdir(parents=True)
    (pkg / "0001_initial.py").write_text("# a package's migration\n")
    rec = Recorder(tmp_path, "python3", PYTHON)
    args = ["--tool", "django", "--python", str(rec.dir / "python3")]
    assert tool_run(pg.url(db), proj, *args, path=rec.path()).code == 0
    r = tool_run(pg.url(db), proj, *args, "--migrate-files", ".", "--migrate-files", str(tmp_path / "site"),
                 path=rec.path())
    assert r.named("plan.ready")[0]["pending"] == 1, r
    pg.psql(db, "INSERT INTO django_migrations (app, name, applied) VALUES ('contribapp', '0001_initial', now())")
    r = tool_run(pg.url(db), proj, *args, "--migrate-files", ".", "--migrate-files", str(tmp_path / "site"),
                 path=rec.path())
    assert r.code == 0 and r.named("migrate.skip")
