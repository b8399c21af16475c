"""The SQL source's memory does not grow with the migration files: a file is hashed in fixed
chunks when planning, and only the file being applied is in memory when applying. And the file
applied is the file checked: one changed in between is refused."""
import os
import subprocess

from conftest import PSQL, PYTHON, binary, clean_env, skip_if_sanitized

PG_BIN = "/usr/lib/postgresql/15/bin"
MIB = 1 << 20


def big_migration(path, size):
    """A migration of about size bytes that the server applies in a moment: one statement and
    lines of comment (the client's memory does not depend on what the text says)."""
    line = "-- " + "x" * 1020 + "\n"
    with open(path, "w") as f:
        f.write("CREATE TABLE big (x int);\nINSERT INTO big VALUES (1);\n")
        f.write(line * (size // len(line)))
    return os.path.getsize(path)


# Forks the tool from a small process of its own and reports its exit code and ru_maxrss. Not
# wait4 from here: a child's ru_maxrss counts the memory of the process it was forked from
# until its exec (Linux keeps the larger of the two), and this one holds the big file's text.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss(args, env):
    """Runs the tool to its end: its exit code, its peak resident set in bytes, its stderr."""
    r = subprocess.run([PYTHON, "-c", LAUNCHER, binary(), *args], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    code, kib = r.stdout.split()
    return int(code), int(kib) * 1024, r.stderr


@skip_if_sanitized
def test_memory_at_head_is_independent_of_file_sizes_and_applying_holds_one_file(pg, db, tmp_path):
    mig = tmp_path / "m"
    mig.mkdir()
    (mig / "1_small.sql").write_text("CREATE TABLE small (x int);\n")
    env = clean_env(DATABASE_URL=pg.url(db))
    args = ["--sql-dir", str(mig), "--migrate-only"]
    code, base, err = peak_rss(args, env)  # applies the small file: the tool's own footprint
    assert code == 0, err
    size = big_migration(mig / "2_big.sql", 64 * MIB)

    code, applying, err = peak_rss(args, env)
    assert code == 0, err
    assert pg.psql(db, "SELECT count(*) FROM big") == "1"
    # libpq copies a query twice (its send buffer, and the text it keeps for error reports:
    # PQsendQueryInternal's strdup); the one buffer that holds prefix, file and record is the
    # third copy, and nothing else holds it. Reading every file whole made it four, plus the
    # other files.
    assert applying - base <= 3.1 * size, (applying - base) / size

    code, at_head, err = peak_rss(args, env)
    assert code == 0 and '"pending":0' in err, err
    # Nothing pending: every file is hashed, none is held.
    assert at_head - base <= 4 * MIB, (base, at_head)


def test_a_file_changed_between_plan_and_apply_is_refused(pg, db, tmp_path):
    # The backup runs between the plan and the apply: a pg_dump that edits the migration
    # first stands in for anything that changes the files while the tool runs.
    mig = tmp_path / "m"
    mig.mkdir()
    (mig / "1_a.sql").write_text("CREATE TABLE a (x int);\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        f"#!/bin/sh\n[ \"$1\" = --version ] && exec {PG_BIN}/pg_dump --version\n"
        f"echo 'CREATE TABLE b (y int);' >> {mig}/1_a.sql\n"
        f"exec {PG_BIN}/pg_dump \"$@\"\n")
    (fake / "pg_dump").chmod(0o755)
    env = clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP="required",
                    PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    r = subprocess.run([binary(), "--sql-dir", str(mig), "--backup-dir", str(tmp_path / "b"),
                        "--migrate-only"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 70, r.stderr
    assert "1_a.sql: it changed after it was checked" in r.stderr, r.stderr
    assert "nothing of it was applied" in r.stderr
    out = subprocess.run([PSQL, "-XAtq", pg.url(db), "-c",
                          "SELECT to_regclass('a') IS NULL AND to_regclass('b') IS NULL"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "t"
    # Run again, it applies the file as it is now.
    r = subprocess.run([binary(), "--sql-dir", str(mig), "--backup=off", "--migrate-only"],
                       env=clean_env(DATABASE_URL=pg.url(db)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert pg.psql(db, "SELECT to_regclass('b') IS NOT NULL") == "t"
