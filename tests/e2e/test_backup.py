"""Backups with the real pg_dump and pg_restore before migrating: one per pending run, private,
verified, rotated, and no migration without one."""
import os
import resource
import shutil
import signal
import stat
import subprocess
import time

import psycopg2
import pytest

from conftest import PASSWORD, PROMPT, clean_env, run, scratch_dir, start, wait_for_event, wait_until
from netfault import Proxy

PG_BIN = "/usr/lib/postgresql/15/bin"


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def backups(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".dump")) if d.exists() else []


def go(pg, db, mig, bdir, *extra, env_extra=None, **kw):
    env = clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP=None, **(env_extra or {}))
    return run(["--sql-dir", str(mig), "--backup-dir", str(bdir), *extra, "--migrate-only"], env=env, **kw)


def test_one_private_verified_backup_that_restores_the_old_state(pg, db, tmp_path):
    pg.psql(db, "CREATE TABLE keep (x int); INSERT INTO keep SELECT generate_series(1, 100)")
    mig = write(tmp_path / "m", {"1_add.sql": "ALTER TABLE keep ADD COLUMN y int; CREATE TABLE new (z int);\n"})
    bdir = tmp_path / "backups"
    r = go(pg, db, mig, bdir, "--baseline", "0")
    assert r.code == 0, r
    names = backups(bdir)
    # the database holds a table but no version yet: "current", not "empty"
    assert len(names) == 1 and names[0].startswith(f"mtr-{db}-") and names[0].endswith("-current-to-1.dump"), names
    assert stat.S_IMODE(bdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((bdir / names[0]).stat().st_mode) == 0o600
    done = r.named("backup.done")[0]
    assert done["path"].endswith(names[0]) and done["bytes"] == (bdir / names[0]).stat().st_size
    assert PASSWORD not in r.stderr
    # Restored into a scratch database, it is the database as it was before the migration.
    pg.psql("postgres", f"CREATE DATABASE {db}_restored")
    subprocess.run([f"{PG_BIN}/pg_restore", "--no-owner", "-d", pg.url(f"{db}_restored"), str(bdir / names[0])],
                   check=True, capture_output=True)
    cols = "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY 1) FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('keep', 'new')"
    assert pg.psql(f"{db}_restored", cols) == "keep.x"
    assert pg.psql(f"{db}_restored", "SELECT sum(x) FROM keep") == "5050"
    # Nothing pending now: no second backup.
    r = go(pg, db, mig, bdir)
    assert r.code == 0 and not r.named("backup.done")
    assert backups(bdir) == names


def test_no_backup_no_migration_and_nothing_partial(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the backup directory should be\n")
    r = go(pg, db, mig, blocker)
    assert r.code == 73, r
    assert "backup failed, so nothing was migrated" in r.named("backup.failed")[0]["msg"]
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"

    # A file size limit stands in for a full disk: pg_dump is cut off half-way.
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 20000) g")
    bdir = tmp_path / "backups"
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    r = go(pg, db, mig, bdir, "--baseline", "0", preexec_fn=limit)
    assert r.code == 73, r
    assert list(bdir.iterdir()) == [], "a partial backup was left behind"
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"
    # Optional: the same failure is a warning, and the migration goes on.
    r = go(pg, db, mig, bdir, "--baseline", "0", "--backup", "optional", preexec_fn=limit)
    assert r.code == 0, r
    assert r.named("backup.failed")[0]["required"] is False
    assert pg.psql(db, "SELECT to_regclass('a') IS NOT NULL") == "t"


def test_a_dump_cut_off_in_its_data_is_caught(pg, db, tmp_path):
    # pg_dump "succeeds" but its output stops half-way through the table data: the table of
    # contents (all that pg_restore --list reads) is intact, the data is not.
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec " + PG_BIN + "/pg_dump --version\n"
        + PG_BIN + "/pg_dump \"$@\" > \"$TMPDIR/full\" || exit 1\n"
        "head -c $(( $(stat -c %s \"$TMPDIR/full\") / 2 )) \"$TMPDIR/full\"\n")
    (fake / "pg_dump").chmod(0o755)
    mig = write(tmp_path / "m", {"1_a.sql": "DROP TABLE big;\n"})
    bdir = tmp_path / "backups"
    r = go(pg, db, mig, bdir, "--baseline", "0",
           env_extra={"PATH": f"{fake}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)})
    assert r.code == 73, r
    assert "does not read back" in r.named("backup.failed")[0]["error"]
    assert backups(bdir) == [] and not [p for p in bdir.iterdir() if ".partial." in p.name]
    assert pg.psql(db, "SELECT count(*) FROM big") == "200000"


def damaging_pg_dump(tmp_path):
    """A pg_dump that writes the real dump with 64 bytes in the middle of its data overwritten,
    and exits 0: the archive looks whole (same length, intact table of contents)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec " + PG_BIN + "/pg_dump --version\n"
        + PG_BIN + "/pg_dump \"$@\" > \"$TMPDIR/full\" || exit 1\n"
        "half=$(( $(stat -c %s \"$TMPDIR/full\") / 2 ))\n"
        "head -c $half \"$TMPDIR/full\"; head -c 64 /dev/zero | tr '\\0' '\\377'\n"
        "tail -c +$(( half + 65 )) \"$TMPDIR/full\"\n")
    (fake / "pg_dump").chmod(0o755)
    return fake


def test_a_damaged_dump_that_pg_dump_calls_a_success_is_caught(pg, db, tmp_path):
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
    fake = damaging_pg_dump(tmp_path)
    mig = write(tmp_path / "m", {"1_a.sql": "DROP TABLE big;\n"})
    bdir = tmp_path / "backups"
    r = go(pg, db, mig, bdir, "--baseline", "0",
           env_extra={"PATH": f"{fake}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)})
    assert r.code == 73, r
    assert "does not read back" in r.named("backup.failed")[0]["error"]
    assert list(bdir.iterdir()) == []  # nothing published, nothing partial
    assert pg.psql(db, "SELECT count(*) FROM big") == "200000"


def test_verification_reads_the_dump_while_pg_dump_writes_it(pg, db, tmp_path):
    # pg_dump here writes nothing until a pg_restore is running: a verification that read the
    # file back after the dump would never start (and the dump would fail after 20 s).
    fake = tmp_path / "bin"
    fake.mkdir()
    started = tmp_path / "pg_restore-started"
    (fake / "pg_restore").write_text(f"#!/bin/sh\ntouch {started}\nexec {PG_BIN}/pg_restore \"$@\"\n")
    (fake / "pg_dump").write_text(
        f"#!/bin/sh\n[ \"$1\" = --version ] && exec {PG_BIN}/pg_dump --version\n"
        f"i=0; while [ ! -e {started} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done\n"
        f"[ -e {started} ] || exit 3\nexec {PG_BIN}/pg_dump \"$@\"\n")
    for f in ("pg_dump", "pg_restore"):
        (fake / f).chmod(0o755)
    pg.psql(db, "CREATE TABLE keep AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
    ref = tmp_path / "ref.dump"  # the database as the backup finds it
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", str(ref), pg.url(db)], check=True)
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    bdir = tmp_path / "backups"
    r = go(pg, db, mig, bdir, "--baseline", "0", env_extra={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.code == 0, r
    [done] = r.named("backup.done")
    assert len(backups(bdir)) == 1 and done["path"].endswith(backups(bdir)[0])
    # The local file is pg_dump's own, as `pg_dump -Fc -f FILE` writes it: with the data offsets
    # (pg_dump rewrites the table of contents at the end) that pg_restore -j uses, which a dump
    # written to a pipe lacks. Only the creation time in the header differs.
    ours, theirs = open(done["path"], "rb").read(), ref.read_bytes()
    assert len(ours) == len(theirs)
    assert [i for i in range(len(ours)) if ours[i] != theirs[i] and i >= 64] == []


def test_backup_always_even_with_nothing_pending(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    bdir = tmp_path / "backups"
    assert go(pg, db, mig, bdir, "--backup=off").code == 0
    r = go(pg, db, mig, bdir, "--backup=always")
    assert r.code == 0, r
    assert r.named("backup.done") and len(backups(bdir)) == 1 and r.named("migrate.skip")


def test_retention_keeps_n_of_ours_and_nothing_else_is_touched(pg, db, tmp_path):
    bdir = tmp_path / "backups"
    bdir.mkdir(mode=0o700)
    (bdir / "notes.txt").write_text("mine\n")
    (bdir / "mtr-otherdb-20200101T000000Z-1-to-2.dump").write_text("another database's\n")
    mig = tmp_path / "m"
    for v in range(1, 5):
        write(mig, {f"{v}_t.sql": f"CREATE TABLE t{v} (x int);\n"})
        r = go(pg, db, mig, bdir, "--backup-keep", "2")
        assert r.code == 0, r  # back to back: names carry the millisecond, and never repeat
    ours = [n for n in backups(bdir) if n.startswith(f"mtr-{db}-")]
    assert len(ours) == 2 and ours[-1].endswith("-3-to-4.dump"), ours
    assert (bdir / "notes.txt").exists() and (bdir / "mtr-otherdb-20200101T000000Z-1-to-2.dump").exists()


def test_missing_and_old_pg_dump(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    bdir = tmp_path / "backups"
    r = go(pg, db, mig, bdir, "--backup", "required", env_extra={"PATH": "/nonexistent"})
    assert r.code == 73, r
    assert "postgresql-client-15" in r.named("backup.failed")[0]["msg"]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.4'\n")
    (fake / "pg_dump").chmod(0o755)
    r = go(pg, db, mig, bdir, "--backup", "required", env_extra={"PATH": f"{fake}:/usr/bin:/bin"})
    assert r.code == 73, r
    msg = r.named("backup.failed")[0]["msg"]
    assert "version 13" in msg and "version 15" in msg
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def test_sigterm_during_pg_dump_removes_the_partial_file(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        f"#!/bin/sh\n[ \"$1\" = --version ] && exec {PG_BIN}/pg_dump --version\n"
        "printf 'PGDMP'; exec sleep 30\n")
    (fake / "pg_dump").chmod(0o755)
    bdir = tmp_path / "backups"
    env = clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP=None, PATH=f"{fake}:/usr/bin:/bin")
    p = start(["--sql-dir", str(mig), "--backup-dir", str(bdir), "--migrate-only"], env=env)
    # pg_dump's first bytes are in the partial file: the dump is under way.
    wait_until("pg_dump's output in the partial file", lambda: bdir.exists() and any(
        f.read_bytes().startswith(b"PGDMP") for f in bdir.iterdir()))
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = p.finish(timeout=30)
    assert r.code == 143, r
    assert time.monotonic() - t0 < PROMPT  # pg_dump, asleep for 30 s, was stopped
    assert [e["phase"] for e in r.named("stop.signal")] == ["backup"]
    assert list(bdir.iterdir()) == []
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def _as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start as another user")
def test_non_root_without_a_writable_backup_dir_says_to_mount_one(pg, db, tmp_path):
    """As an image's non-root user in a directory it cannot write (an app directory owned by
    root, or a read-only root filesystem): 73, with the volume and MTR_BACKUP_DIR named."""
    tmp_path = scratch_dir("mtr-nonroot-")  # pytest's own is private to root
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP=None)
    r = run(["--sql-dir", str(mig), "--migrate-only"], env=env, cwd=str(tmp_path), preexec_fn=_as_nobody)
    assert r.code == 73, r
    msg = r.named("backup.failed")[0]["msg"]
    assert "./backups as uid 65534: Permission denied" in msg, msg
    assert "mount a volume and set MTR_BACKUP_DIR" in msg, msg
    assert pg.psql(db, "SELECT to_regclass('public.a') IS NULL") == "t"  # nothing migrated
    # The same with MTR_BACKUP_DIR on a writable directory (the volume).
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, 65534, 65534)
    r = run(["--sql-dir", str(mig), "--migrate-only"], env={**env, "MTR_BACKUP_DIR": str(volume / "backups")},
            cwd=str(tmp_path), preexec_fn=_as_nobody)
    assert r.code == 0, r
    assert len(backups(volume / "backups")) == 1
    shutil.rmtree(tmp_path)


# ---- a pg_dump or a pg_restore that stops getting on ------------------------------------------

def partial_files(bdir):
    return [p.name for p in bdir.iterdir() if ".partial." in p.name] if bdir.exists() else []


def test_a_server_silent_under_pg_dump_ends_it_and_nothing_is_migrated(pg, db, tmp_path):
    """The server stops answering pg_dump in the middle of its data (a partition, a frozen
    server: every connection stays open, nothing moves). pg_dump would wait for ever; the dump
    stops growing, so after --backup-stall-timeout it is ended and the run goes back to the wait
    (here with no retries left: 75), naming the stall."""
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE never_applied (x int);\n"})
    bdir = tmp_path / "backups"
    proxy = Proxy(pg.port, silent_on=b"COPY public.big")
    try:
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/{db}"
        env = clean_env(DATABASE_URL=url, MTR_BACKUP=None)
        p = start(["--sql-dir", str(mig), "--backup-dir", str(bdir), "--backup-stall-timeout", "2s",
                   "--retries", "0", "--baseline", "0", "--migrate-only"], env=env)
        assert proxy.silenced.wait(30), p.finish()  # pg_dump asked for the data: no answer comes
        r = p.finish(timeout=60)
    finally:
        proxy.close()
    assert r.code == 75, r
    failed = r.named("migrate.failed")
    assert failed and "did not grow for 2000ms" in failed[-1]["msg"], r
    assert not r.named("backup.done") and not r.named("backup.failed"), r
    assert backups(bdir) == [] and partial_files(bdir) == [], list(bdir.iterdir())
    assert pg.psql(db, "SELECT to_regclass('never_applied') IS NULL") == "t"
    assert pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                       "'migrate-then-run/backup' AND state <> 'idle'") in ("0", "1")


def test_a_table_lock_that_pg_dump_cannot_get_fails_it_naming_the_table(pg, db, tmp_path):
    """Another session holds an ACCESS EXCLUSIVE lock: pg_dump gives up after half the stall
    timeout (--lock-wait-timeout) with its own words, and nothing is migrated."""
    pg.psql(db, "CREATE TABLE held (x int)")
    blocker = psycopg2.connect(pg.url(db))
    try:
        blocker.cursor().execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE never_applied (x int);\n"})
        bdir = tmp_path / "backups"
        t0 = time.monotonic()
        r = go(pg, db, mig, bdir, "--backup-stall-timeout", "4s", "--baseline", "0")
        took = time.monotonic() - t0
    finally:
        blocker.close()
    assert r.code == 73, r
    err = r.named("backup.failed")[0]["error"]
    assert "pg_dump failed" in err and "held" in err, err
    assert took < 30, took
    assert backups(bdir) == [] and partial_files(bdir) == []
    assert pg.psql(db, "SELECT to_regclass('never_applied') IS NULL") == "t"


def test_a_pg_restore_that_stops_reading_is_given_up_after_the_stall_timeout(pg, db, tmp_path):
    """pg_restore, verifying the dump, reads nothing and never ends: once pg_dump is done, its
    verdict is awaited for --backup-stall-timeout, then it is ended and the backup fails."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "pg_restore").chmod(0o755)
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE never_applied (x int);\n"})
    bdir = tmp_path / "backups"
    t0 = time.monotonic()
    r = go(pg, db, mig, bdir, "--backup-stall-timeout", "2s",
           env_extra={"PATH": f"{fake}:{os.environ['PATH']}"})
    took = time.monotonic() - t0
    assert r.code == 73, r
    err = r.named("backup.failed")[0]["error"]
    assert "had not read the dump to its end 2000ms after pg_dump ended" in err, err
    assert took < 30, took
    assert backups(bdir) == [] and partial_files(bdir) == []
    assert pg.psql(db, "SELECT to_regclass('never_applied') IS NULL") == "t"
