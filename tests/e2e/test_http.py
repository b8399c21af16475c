"""HTTP with real servers on 127.0.0.1: the backup streamed to nginx (WebDAV PUT), retried on
5xx; webhooks on failure and success; --wait-http for a service that starts late."""
import fcntl
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import termios
import time

import pytest

from conftest import PASSWORD, PROMPT, clean_env, run, start, wait_for_event, wait_until
from httpd import Nginx, Recorder, free_port

PG_BIN = "/usr/lib/postgresql/15/bin"


@pytest.fixture
def nginx():
    n = Nginx()
    yield n
    n.stop()


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def migrations(tmp_path, failing=False):
    files = {"1_a.sql": "CREATE TABLE a (x int); INSERT INTO a SELECT generate_series(1, 50000);\n"}
    if failing:
        files["2_bad.sql"] = "CREATE TABLE b (y int);\nINSERT INTO missing VALUES (1);\n"
    return write(tmp_path / "m", files)


def backup_env(pg, db, **extra):
    return clean_env(DATABASE_URL=pg.url(db), MTR_BACKUP="required", **extra)


def test_backup_streams_to_nginx_and_equals_the_local_file(pg, db, tmp_path, nginx):
    pg.psql(db, "CREATE TABLE keep AS SELECT g AS x, md5(g::text) AS h FROM generate_series(1, 20000) g")
    bdir = tmp_path / "backups"
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir),
             "--backup-upload-url", nginx.url("dumps/"), "--baseline", "0", "--migrate-only"],
            env=backup_env(pg, db))
    assert r.code == 0, r
    [local] = list(bdir.glob("*.dump"))
    remote = nginx.root / "dumps" / local.name
    assert remote.read_bytes() == local.read_bytes()
    done = r.named("backup.done")[0]
    assert done["streamed"] is True and done["upload_attempts"] == 1
    assert done["uploaded_to"] == nginx.url("dumps/" + local.name)
    # The uploaded dump restores the database as it was before the migration.
    pg.psql("postgres", f"CREATE DATABASE {db}_r")
    subprocess.run([f"{PG_BIN}/pg_restore", "--no-owner", "-d", pg.url(f"{db}_r"), str(remote)],
                   check=True, capture_output=True)
    assert pg.psql(f"{db}_r", "SELECT count(*) FROM keep") == "20000"
    assert pg.psql(f"{db}_r", "SELECT to_regclass('a') IS NULL") == "t"


def test_upload_retried_after_two_500s_then_201(pg, db, tmp_path):
    srv = Recorder(statuses=(500, 500, 201))
    try:
        bdir = tmp_path / "backups"
        r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir),
                 "--backup-upload-url", srv.url("b/x.dump?token=s3cr3t-query-value"), "--migrate-only"],
                env=backup_env(pg, db))
        assert r.code == 0, r
        puts = [q for q in srv.requests if q["method"] == "PUT"]
        assert len(puts) == 3
        [local] = list(bdir.glob("*.dump"))
        assert puts[-1]["body"] == local.read_bytes()
        assert puts[-1]["path"] == "/b/x.dump?token=s3cr3t-query-value"
        assert len(r.named("backup.upload.retry")) == 2
        assert r.named("backup.done")[0]["upload_attempts"] == 3
        # the query string is a credential: never in the logs
        assert "s3cr3t-query-value" not in r.stderr
        assert "x.dump?***" in r.stderr
        assert pg.psql(db, "SELECT count(*) FROM a") == "50000"
    finally:
        srv.stop()


def test_upload_refused_means_no_migration_and_keeps_the_local_backup(pg, db, tmp_path):
    srv = Recorder(statuses=(403,))
    try:
        bdir = tmp_path / "backups"
        r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir),
                 "--backup-upload-url", srv.url("x.dump"), "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 73, r
        assert len([q for q in srv.requests if q["method"] == "PUT"]) == 1  # a 403 is not retried
        err = r.named("backup.failed")[0]["error"]
        assert "HTTP 403" in err and "local backup is kept" in err
        assert len(list(bdir.glob("*.dump"))) == 1
        assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"
        # optional: warn and migrate
        r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir), "--backup=optional",
                 "--backup-upload-url", srv.url("x.dump"), "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 0, r
        assert r.named("backup.failed")[0]["required"] is False
    finally:
        srv.stop()


def test_upload_only_with_backup_dir_none(pg, db, tmp_path, nginx):
    pg.psql(db, "CREATE TABLE keep (x int)")
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", "none", "--baseline", "0",
             "--backup-upload-url", nginx.url("only.dump"), "--migrate-only"],
            env=backup_env(pg, db), cwd=str(tmp_path))
    assert r.code == 0, r
    remote = nginx.root / "only.dump"
    listing = subprocess.run([f"{PG_BIN}/pg_restore", "--list", str(remote)], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE public keep" in listing.stdout
    # and it reads back in full (--list alone reads only the table of contents)
    subprocess.run([f"{PG_BIN}/pg_restore", "--file=/dev/null", str(remote)], check=True)
    assert r.named("backup.done")[0]["bytes"] == remote.stat().st_size
    assert not (tmp_path / "backups").exists()


def test_upload_only_a_refused_upload_ends_pg_dump_at_once(pg, db, tmp_path):
    """With nothing kept locally, a failed upload ends pg_dump (SIGPIPE) instead of letting it dump
    the whole database for nobody, on every try (the verification reads the same stream)."""
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 300000) g")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: connection refused
    fake, statuses = tmp_path / "bin", tmp_path / "statuses"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec " + PG_BIN + "/pg_dump --version\n"
        + PG_BIN + f"/pg_dump \"$@\"; echo $? >> {statuses}\n")
    (fake / "pg_dump").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", "none", "--baseline", "0",
             "--backup-upload-url", f"http://127.0.0.1:{port}/x.dump", "--migrate-only"], env=env, timeout=120)
    assert r.code == 73 and "the upload failed after" in r.named("backup.failed")[0]["error"], r.stderr
    codes = statuses.read_text().split()
    assert codes and "0" not in codes, codes  # each try's pg_dump was ended, none ran to the end
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def test_failed_dump_never_completes_the_upload(pg, db, tmp_path, nginx):
    # pg_dump fails (a permission error part-way would do too): the server must not get a
    # complete, plausible-looking object.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec " + PG_BIN + "/pg_dump --version\n"
        + PG_BIN + "/pg_dump \"$@\" | head -c 2000; exit 1\n")
    (fake / "pg_dump").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(tmp_path / "b"),
             "--backup-upload-url", nginx.url("cut.dump"), "--migrate-only"], env=env)
    assert r.code == 73, r
    assert not (nginx.root / "cut.dump").exists()
    assert not list((tmp_path / "b").iterdir())


@pytest.mark.parametrize("local", [True, False], ids=["local-copy", "upload-only"])
def test_a_damaged_dump_never_completes_the_upload(pg, db, tmp_path, nginx, local):
    # pg_dump exits 0 but 64 bytes in the middle of its data are damaged: the verification that
    # reads the stream beside the upload fails it, so the server never gets the request's end
    # (with --backup-dir none too: nothing else would have read that dump).
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec " + PG_BIN + "/pg_dump --version\n"
        + PG_BIN + "/pg_dump \"$@\" > \"$TMPDIR/full\" || exit 1\n"
        "half=$(( $(stat -c %s \"$TMPDIR/full\") / 2 ))\n"
        "head -c $half \"$TMPDIR/full\"; head -c 64 /dev/zero | tr '\\0' '\\377'\n"
        "tail -c +$(( half + 65 )) \"$TMPDIR/full\"\n")
    (fake / "pg_dump").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}", TMPDIR=str(tmp_path))
    bdir = tmp_path / "b"
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir) if local else "none",
             "--baseline", "0", "--backup-upload-url", nginx.url("bad.dump"), "--migrate-only"],
            env=env, cwd=str(tmp_path))
    assert r.code == 73, r
    assert "does not read back" in r.named("backup.failed")[0]["error"]
    assert not (nginx.root / "bad.dump").exists()
    assert not bdir.exists() or not list(bdir.iterdir())
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def children(pid):
    kids = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def queued(fd):
    """Bytes waiting to be read on fd (a pipe or a socket)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def blocked_on_a_full_pipe(pid):
    """Whether the pg_dump child of pid has filled the pipe to its reader: it can write no more."""
    for kid in children(pid):
        try:
            if pathlib.Path(f"/proc/{kid}/comm").read_text().strip() != "pg_dump" or \
                    not os.readlink(f"/proc/{kid}/fd/1").startswith("pipe:"):
                continue
            fd = os.open(f"/proc/{kid}/fd/1", os.O_RDONLY | os.O_NONBLOCK)  # the same pipe
        except OSError:
            continue
        try:
            return queued(fd) >= fcntl.fcntl(fd, 1032) - 4096  # F_GETPIPE_SZ, less a page
        finally:
            os.close(fd)
    return False


def test_sigterm_while_the_server_stops_reading_mid_body(pg, db, tmp_path):
    # A server that accepts and then never reads: the pipe and the socket fill, pg_dump blocks.
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h, md5((g * 7)::text) AS i "
                "FROM generate_series(1, 300000) g")
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(30)
    conn = None
    try:
        bdir = tmp_path / "backups"
        p = start(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir),
                   "--baseline", "0", "--backup-upload-url",
                   f"http://127.0.0.1:{lsock.getsockname()[1]}/x.dump", "--migrate-only"],
                  env=backup_env(pg, db), stdout=None)
        conn, _ = lsock.accept()
        # The request has reached the server unread, and pg_dump is stuck behind it.
        wait_until("the upload's first bytes, unread", lambda: queued(conn.fileno()) > 0)
        wait_until("pg_dump blocked on a full pipe", lambda: blocked_on_a_full_pipe(p.pid))
        assert p.poll() is None
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        r = p.finish(timeout=30)
        assert r.code == 143, r
        assert time.monotonic() - t0 < PROMPT  # "SIGTERM abandons the upload within a second"
        assert [e["phase"] for e in r.named("stop.signal")] == ["backup"]
        assert not r.named("backup.done")
        assert not list(bdir.iterdir()), list(bdir.iterdir())  # no partial file
        assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"
    finally:
        if conn:
            conn.close()
        lsock.close()


def test_sigterm_while_pg_restore_reads_nothing_of_an_upload_only_stream(pg, db, tmp_path, nginx):
    # With --backup-dir none the stream feeds pg_restore itself. One that never reads fills its
    # pipe, the stream blocks on it and pg_dump on the stream: SIGTERM still ends it all at once.
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h, md5((g * 7)::text) AS i "
                "FROM generate_series(1, 300000) g")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "pg_restore").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    p = start(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", "none", "--baseline", "0",
               "--backup-upload-url", nginx.url("x.dump"), "--migrate-only"], env=env, cwd=str(tmp_path))
    wait_until("pg_dump blocked on a full pipe", lambda: blocked_on_a_full_pipe(p.pid))
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = p.finish(timeout=30)
    assert r.code == 143, r
    assert time.monotonic() - t0 < PROMPT
    assert [e["phase"] for e in r.named("stop.signal")] == ["backup"]
    assert not (nginx.root / "x.dump").exists()


def never_reading_pg_restore(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "pg_restore").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "pg_restore").chmod(0o755)
    return fake


def test_an_upload_only_stream_held_up_by_pg_restore_fails_the_backup_not_the_server(pg, db, tmp_path, nginx):
    """Upload only: the stream feeds pg_restore, which reads nothing, so pg_dump's output waits
    in the stream's pipe. After --backup-stall-timeout pg_dump is ended, and that is a failed
    backup (73, the stream named), not a silent server retried from the wait."""
    pg.psql(db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h, md5((g * 7)::text) AS i "
                "FROM generate_series(1, 300000) g")
    fake = never_reading_pg_restore(tmp_path)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    t0 = time.monotonic()
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", "none", "--baseline", "0",
             "--backup-stall-timeout", "2s", "--backup-upload-url", nginx.url("x.dump"), "--migrate-only"],
            env=env, cwd=str(tmp_path), timeout=60)
    assert r.code == 73, r
    err = r.named("backup.failed")[0]["error"]
    assert "output was not taken for 2000ms" in err and "the upload or the verification" in err, err
    assert not r.named("migrate.retry"), r
    assert time.monotonic() - t0 < 30
    assert not (nginx.root / "x.dump").exists()
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def test_an_upload_only_stream_stuck_after_pg_dump_ended_is_given_up(pg, db, tmp_path, nginx):
    """pg_dump (here one that writes a little over a MiB and exits 0) has ended, but the stream
    still holds part of the dump for a pg_restore that reads nothing: the drain is given up after
    --backup-stall-timeout, and the backup fails."""
    fake = never_reading_pg_restore(tmp_path)
    (fake / "pg_dump").write_text(
        f"#!/bin/sh\n[ \"$1\" = --version ] && exec {PG_BIN}/pg_dump --version\n"
        "printf PGDMP; head -c 1100000 /dev/zero\n")
    (fake / "pg_dump").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    t0 = time.monotonic()
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", "none",
             "--backup-stall-timeout", "2s", "--backup-upload-url", nginx.url("x.dump"), "--migrate-only"],
            env=env, cwd=str(tmp_path), timeout=60)
    assert r.code == 73, r
    err = r.named("backup.failed")[0]["error"]
    assert "not taken for 2000ms after pg_dump ended" in err, err
    assert time.monotonic() - t0 < 30
    assert not (nginx.root / "x.dump").exists()
    assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"


def presigned(srv):
    """An S3-style presigned URL on srv: the key id sits, encoded, in X-Amz-Credential."""
    return srv.url("k.dump?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLEKEY123%2F20261121"
                   "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=abcdef0123456789")


def test_length_first_upload_for_presigned_urls_and_411(pg, db, tmp_path):
    # A presigned S3 URL is never streamed: one PUT with a Content-Length, after the dump.
    srv = Recorder(statuses=(200,))
    try:
        bdir = tmp_path / "b1"
        r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir), "--backup-upload-url", presigned(srv),
                 "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 0, r
        [put] = srv.requests
        [local] = list(bdir.glob("*.dump"))
        assert int(put["headers"]["Content-Length"]) == local.stat().st_size and put["body"] == local.read_bytes()
        assert "Transfer-Encoding" not in put["headers"] and "Content-Type" not in put["headers"]
        assert r.named("backup.done")[0]["streamed"] is False
        assert "AKIAEXAMPLEKEY123" not in r.stderr and "abcdef0123456789" not in r.stderr
    finally:
        srv.stop()
    # S3 quotes the access key id back when it refuses a signature: not in the logs either.
    srv = Recorder(statuses=(403,), reply=b"<Error><Code>SignatureDoesNotMatch</Code>"
                                          b"<AWSAccessKeyId>AKIAEXAMPLEKEY123</AWSAccessKeyId></Error>")
    try:
        write(tmp_path / "m", {"2_b.sql": "CREATE TABLE b (y int);\n"})
        r = run(["--sql-dir", str(tmp_path / "m"), "--backup-dir", str(tmp_path / "b3"), "--backup-upload-url",
                 presigned(srv), "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 73, r
        err = r.named("backup.failed")[0]["error"]
        assert "HTTP 403" in err and "SignatureDoesNotMatch" in err, err
        assert "AKIAEXAMPLEKEY123" not in r.stderr
    finally:
        srv.stop()
    # A server that answers the chunked stream with 411 gets the file with its length.
    srv = Recorder(statuses=(411, 201))
    try:
        bdir = tmp_path / "b2"
        r = run(["--sql-dir", str(tmp_path / "m"), "--backup-dir", str(bdir), "--backup-upload-url",
                 srv.url("x.dump"), "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 0, r
        first, second = srv.requests
        assert first["headers"].get("Transfer-Encoding") == "chunked"
        [local] = list(bdir.glob("*.dump"))
        assert int(second["headers"]["Content-Length"]) == local.stat().st_size
        assert second["body"] == local.read_bytes()
    finally:
        srv.stop()


@pytest.mark.parametrize("policy", ["exit", "hold"])
def test_sigterm_while_notifying_a_failure_ends_at_once(pg, db, tmp_path, policy):
    hang = Recorder(hang=True)
    try:
        p = start(["--sql-dir", str(migrations(tmp_path, failing=True)), "--notify-url",
                   hang.url("h"), "--notify-timeout", "30s", "--on-failure", policy,
                   "--failure-backoff", "60s", "--", "/bin/true"],
                  env=clean_env(DATABASE_URL=pg.url(db)), stdout=None)
        hang.wait_for_requests(1)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        r = p.finish(timeout=30)
        assert time.monotonic() - t0 < PROMPT  # no failure pause, no holding
        assert r.code == 70, r  # the failure's code, as a stop while holding gives
        assert [e["phase"] for e in r.named("stop.signal")] == ["notify"]
        assert not r.named("failure.hold") and not r.named("failure.pause")
    finally:
        hang.stop()


def test_sigterm_while_notifying_a_success_does_not_start_the_app(pg, db, tmp_path):
    hang = Recorder(hang=True)
    try:
        marker = tmp_path / "app-ran"
        p = start(["--sql-dir", str(migrations(tmp_path)), "--notify-url", hang.url("h"),
                   "--notify-on", "success,failure", "--notify-timeout", "30s",
                   "--", "/bin/sh", "-c", f"touch {marker}"],
                  env=clean_env(DATABASE_URL=pg.url(db)), stdout=None)
        hang.wait_for_requests(1)
        p.send_signal(signal.SIGTERM)
        r = p.finish(timeout=30)
        assert r.code == 143, r
        assert not marker.exists()
        assert not r.named("run.exec")
        assert [e["phase"] for e in r.named("stop.signal")] == ["notify"]
    finally:
        hang.stop()


def test_sigterm_while_the_server_never_answers(pg, db, tmp_path):
    srv = Recorder(hang=True)
    try:
        bdir = tmp_path / "backups"
        p = start(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(bdir),
                   "--backup-upload-url", srv.url("x.dump"), "--migrate-only"],
                  env=backup_env(pg, db), stdout=None)
        [put] = srv.wait_for_requests(1)  # the whole body was sent; the answer never comes
        assert put["method"] == "PUT" and put["body"]
        p.send_signal(signal.SIGTERM)
        r = p.finish(timeout=30)
        assert r.code == 143, r
        assert [e["phase"] for e in r.named("stop.signal")] == ["backup"]
        assert not list(bdir.iterdir()) if bdir.exists() else True
        assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"
    finally:
        srv.stop()


def test_webhook_reports_a_failed_migration(pg, db, tmp_path):
    hook = Recorder(statuses=(200,))
    try:
        url = hook.url("hooks/T0KEN-abcdef123456")
        r = run(["--sql-dir", str(migrations(tmp_path, failing=True)), "--backup-dir", str(tmp_path / "b"),
                 "--notify-url", url, "--migrate-only"], env=backup_env(pg, db))
        assert r.code == 70, r
        [req] = hook.requests
        assert req["method"] == "POST" and req["headers"]["Content-Type"] == "application/json"
        body = json.loads(req["body"])
        assert body["event"] == "failure" and body["phase"] == "migrate" and body["exit_code"] == 70
        assert body["error"]["sqlstate"] == "42P01"
        assert body["error"]["file"] == "2_bad.sql:2:13"
        assert body["error"]["revision"] == "2"
        assert "missing" in body["error"]["message"]
        assert body["from"] is None  # a new database
        assert body["to"] == "2"
        assert body["backup_path"].endswith(".dump") and os.path.exists(body["backup_path"])
        assert body["database"] == db and body["host"] == socket.gethostname()
        assert set(body["durations_ms"]) == {"wait", "backup", "migrate", "total"}
        assert PASSWORD.encode() not in req["body"]
        sent = r.named("notify.sent")[0]
        assert sent["status"] == 200 and "T0KEN" not in r.stderr
    finally:
        hook.stop()


def test_webhook_on_success_only_when_asked(pg, db, tmp_path):
    hook = Recorder(statuses=(204,))
    try:
        mig = migrations(tmp_path)
        r = run(["--sql-dir", str(mig), "--notify-url", hook.url("h"), "--migrate-only"],
                env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 0 and not hook.requests
        write(mig, {"2_b.sql": "CREATE TABLE b (y int);\n"})
        r = run(["--sql-dir", str(mig), "--notify-url", hook.url("h"), "--notify-on", "success,failure",
                 "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 0, r
        [req] = hook.requests
        body = json.loads(req["body"])
        assert body["event"] == "success" and body["exit_code"] == 0 and body["from"] == "1" and body["to"] == "2"
        assert "error" not in body
    finally:
        hook.stop()


def test_hanging_receiver_delays_the_app_by_at_most_the_notify_timeout(pg, db, tmp_path):
    hang = Recorder(hang=True)
    good = Recorder(statuses=(200,))
    try:
        mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
        marker = tmp_path / "started"
        p = start(["--sql-dir", str(mig), "--notify-url", hang.url("h"), "--notify-url", good.url("g"),
                   "--notify-on", "success,failure", "--notify-timeout", "2s",
                   "--", "/bin/sh", "-c", f"touch {marker}"], env=clean_env(DATABASE_URL=pg.url(db)))
        hang.wait_for_requests(1)  # from here on, the app waits for the report at most 2 s
        t0 = time.monotonic()
        wait_for_event(p, "run.exec")
        assert time.monotonic() - t0 < 2 + PROMPT
        r = p.finish()
        assert r.code == 0, r
        assert marker.exists()
        assert len(good.requests) == 1  # the hanging one did not hold the other back
        failed = r.named("notify.failed")
        # a webhook URL's path is often its token: hidden
        assert len(failed) == 1 and failed[0]["url"] == hang.url("***")
    finally:
        hang.stop()
        good.stop()


def test_webhook_retries_and_never_changes_the_exit_code(pg, db, tmp_path):
    hook = Recorder(statuses=(503, 503, 503, 503, 503))
    try:
        r = run(["--sql-dir", str(migrations(tmp_path, failing=True)), "--notify-url", hook.url("h"),
                 "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 70, r
        assert len(hook.requests) == 4  # the first try and 3 retries
        assert r.named("notify.failed")
        # nothing listens at all
        r = run(["--sql-dir", str(migrations(tmp_path, failing=True)), "--notify-url",
                 f"http://127.0.0.1:{free_port()}/h", "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 70, r
    finally:
        hook.stop()


def test_wait_http_waits_for_a_server_that_starts_late(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    port = free_port()
    p = start(["--sql-dir", str(mig), "--wait-http", f"http://127.0.0.1:{port}/healthz",
               "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    srv = None
    try:
        wait_for_event(p, "wait.http.waiting")  # refused: nothing listens yet
        srv = Recorder(statuses=(503, 200), port=port)
        r = p.finish()
        assert r.code == 0, r
        ready = r.named("wait.http.ready")[0]
        assert ready["status"] == 200 and ready["attempts"] >= 3  # refused, 503, then 200
        assert [q["path"] for q in srv.requests] == ["/healthz", "/healthz"]
        names = [e["event"] for e in r.events]
        assert names.index("wait.http.waiting") < names.index("wait.http.ready") < names.index("migrate.step")
        assert pg.psql(db, "SELECT count(*) FROM a") == "0"
    finally:
        if srv:
            srv.stop()


def test_wait_http_deadline_is_69_and_nothing_migrates(pg, db, tmp_path):
    mig = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    srv = Recorder(statuses=(503,))
    try:
        r = run(["--sql-dir", str(mig), "--wait-http", srv.url("ready"), "--wait-timeout", "1s",
                 "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 69, r
        failed = r.named("wait.failed")[0]
        assert failed["reason"] == "http_timeout" and "HTTP 503" in failed["error"]
        assert pg.psql(db, "SELECT to_regclass('a') IS NULL") == "t"
    finally:
        srv.stop()


@pytest.mark.parametrize("args, message", [
    (["--wait-http", "ftp://example.com/x"], "--wait-http: expected an http:// or https:// URL"),
    (["--notify-url", "not a url"], "--notify-url"),
    (["--backup-upload-url", "https://h/x", "--backup", "off"], "--backup-upload-url: expected backups on"),
    (["--backup-dir", "none", "--backup", "required"], "--backup-dir none: expected --backup-upload-url"),
    (["--backup-dir", "none", "--backup", "required", "--backup-upload-url",
      "https://b.s3.amazonaws.com/k?X-Amz-Signature=ab"],
     "--backup-dir none: a presigned S3/GCS URL needs the dump's length"),
])
def test_bad_http_options_are_usage_errors(args, message, tmp_path):
    r = run(["--sql-dir", str(tmp_path), *args, "--migrate-only"])
    assert r.code == 64, r
    assert message in r.stderr


def test_children_inherit_no_upload_socket(pg, db, tmp_path, nginx):
    # pg_restore (the read-back) runs while the upload's connection is open in another thread:
    # it must not inherit that socket (an orphan would hold the upload open).
    fake = tmp_path / "bin"
    fake.mkdir()
    seen = tmp_path / "fds"
    (fake / "pg_restore").write_text(
        f"#!/bin/sh\nls -l /proc/$$/fd > {seen}\nexec {PG_BIN}/pg_restore \"$@\"\n")
    (fake / "pg_restore").chmod(0o755)
    env = backup_env(pg, db, PATH=f"{fake}:{PG_BIN}:{os.environ['PATH']}")
    r = run(["--sql-dir", str(migrations(tmp_path)), "--backup-dir", str(tmp_path / "b"),
             "--backup-upload-url", nginx.url("s/"), "--migrate-only"], env=env)
    assert r.code == 0, r
    assert r.named("backup.done")[0]["streamed"] is True
    listing = seen.read_text()
    assert "/proc/" in listing or "->" in listing, listing
    assert "socket:" not in listing, listing
