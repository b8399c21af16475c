"""Never hang, never half-apply: a silent server, a name server that never answers, a
black-holed host in a multi-host URL, settings that can only be configuration errors, and
migration files that are not what they are named like."""
import json
import os
import random
import signal
import socket
import subprocess
import time

import pytest

from conftest import PASSWORD, PROMPT, Tool, binary, clean_env, run, start, wait_until
from netfault import BlackHole, Proxy, SilentDNS

HIST = "public.mtr_schema_history"


def write(d, files):
    d.mkdir(exist_ok=True)
    for name, sql in files.items():
        (d / name).write_text(sql)
    return d


def stop_and_time(tool):
    """SIGTERM now; returns (seconds from the signal to the exit, the finished tool)."""
    t0 = time.monotonic()
    tool.send_signal(signal.SIGTERM)
    tool.finish(timeout=30)
    return time.monotonic() - t0, tool


# ---- a server that goes silent mid-conversation -------------------------------------------

@pytest.mark.parametrize("phase,trigger", [("wait", b"pg_is_in_recovery"), ("check", b"relkind"),
                                           ("migrate", b"never_applied")])
def test_sigterm_while_the_server_is_silent(pg, db, tmp_path, phase, trigger):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE never_applied (x int);\n"})
    proxy = Proxy(pg.port, silent_on=trigger)
    try:
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/{db}"
        p = start(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=url))
        assert proxy.silenced.wait(30), p.finish()  # the query is out, and never answered
        took, r = stop_and_time(p)
    finally:
        proxy.close()
    assert r.code == 128 + signal.SIGTERM, r
    stop = r.named("stop.signal")
    assert stop and stop[0]["phase"] == phase, r
    assert took < PROMPT, f"{took:.2f}s from SIGTERM to exit"  # 1 s is the promise
    assert not r.named("plan.failed") and not r.named("migrate.failed"), r  # a stop, not a failure
    assert pg.psql(db, "SELECT to_regclass('never_applied') IS NULL") == "t"


# ---- a black-holed host first in a multi-host URL -----------------------------------------

def test_multi_host_url_with_a_black_holed_first_host_reaches_the_second(pg, db):
    hole = BlackHole()
    try:
        url = (f"postgresql://postgres:{PASSWORD}@127.0.0.1:{hole.port},127.0.0.1:{pg.port}/{db}"
               "?connect_timeout=2")
        r = run(["--wait-timeout", "10s", "--migrate-only", "--migrate-cmd", "true"],
                env=clean_env(DATABASE_URL=url))
    finally:
        hole.close()
    assert r.code == 0, r.stderr
    assert r.named("wait.ready"), r


# ---- a name server that never answers -----------------------------------------------------

def dns_namespace(tmp_path):
    """A silent name server on a loopback address of its own, and the argv prefix that runs a
    command with it as the only name server (a private mount namespace; /etc/resolv.conf
    bind-mounted)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -m and port 53")
    addr = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
    try:
        dns = SilentDNS(addr)
    except OSError as e:
        pytest.skip(f"cannot bind {addr}:53: {e}")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {addr}\n")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf',
                            str(resolv)], capture_output=True)
    if probe.returncode != 0:
        dns.close()
        pytest.skip(f"unshare -m not available: {probe.stderr!r}")
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
              str(resolv)]
    return dns, prefix


def test_dns_that_never_answers_honours_the_wait_timeout_and_sigterm(tmp_path):
    dns, prefix = dns_namespace(tmp_path)
    try:
        env = clean_env(DATABASE_URL=f"postgresql://app:{PASSWORD}@db.mtr-e2e.invalid:5432/app")
        t0 = time.monotonic()
        r = subprocess.run([*prefix, binary(), "--wait-timeout", "2s", "--migrate-only",
                            "--migrate-cmd", "true"], env=env, capture_output=True, text=True,
                           timeout=60)
        took = time.monotonic() - t0
        assert r.returncode == 69, r.stderr
        failed = [json.loads(line) for line in r.stderr.splitlines() if '"wait.failed"' in line][0]
        assert "db.mtr-e2e.invalid" in failed["msg"] and "name server" in failed["msg"], failed
        assert took < 2 + PROMPT, f"{took:.2f}s for --wait-timeout 2s"

        dns.queried.clear()
        p = Tool([*prefix, binary(), "--wait-timeout", "60s", "--migrate-only", "--migrate-cmd",
                  "true"], env=env)
        assert dns.queried.wait(30), p.finish()  # the lookup is under way, and never answered
        took, r = stop_and_time(p)
        assert r.code == 128 + signal.SIGTERM, r
        assert r.named("stop.signal")[0]["phase"] == "wait", r
        assert took < PROMPT, f"{took:.2f}s from SIGTERM to exit"
        assert PASSWORD not in r.stderr
    finally:
        dns.close()


# ---- settings that can only be configuration errors -----------------------------------------

def config_case(case, pg, tmp_path):
    base = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg.port}/postgres"
    if case == "client_key_readable":
        cert, key = tmp_path / "client.crt", tmp_path / "client.key"
        cert.write_text("not checked before the key\n")
        key.write_text("a key\n")
        key.chmod(0o644)
        return f"{base}?sslcert={cert}&sslkey={key}", [str(key), "chmod 0600"], [PASSWORD]
    if case == "sslcert_missing":
        return f"{base}?sslcert={tmp_path}/nope.crt", [f"{tmp_path}/nope.crt"], [PASSWORD]
    if case == "target_session_attrs":
        return f"{base}?target_session_attrs=writable", ["target_session_attrs"], [PASSWORD]
    if case == "connect_timeout":
        return f"{base}?connect_timeout=abc", ["connect_timeout", "abc"], [PASSWORD]
    if case == "password_at":
        return (f"postgresql://postgres:Xq7@Zr4w9@127.0.0.1:{pg.port}/postgres",
                ["unencoded '@'"], ["Xq7@Zr4w9", "Zr4w9", "Xq7"])
    return (f"postgresql://postgres:7731/Kw8zq@127.0.0.1:{pg.port}/postgres",
            ["unencoded '/'"], ["7731/Kw8zq", "Kw8zq", "7731"])


@pytest.mark.parametrize("case", ["client_key_readable", "sslcert_missing", "target_session_attrs",
                                  "connect_timeout", "password_at", "password_slash"])
def test_configuration_errors_exit_64_at_once_without_the_password(pg, tmp_path, case):
    url, want, secrets = config_case(case, pg, tmp_path)
    r = run(["--wait-timeout", "3s", "--migrate-only", "--migrate-cmd", "true"],
            env=clean_env(DATABASE_URL=url))
    assert r.code == 64, r
    bad = r.named("config.invalid")
    assert bad and r.events[-1]["event"] == "config.invalid", r
    for w in want:
        assert w in bad[0]["msg"], bad[0]["msg"]
    for s in secrets:
        assert s not in r.stderr and s not in r.stdout, s
    assert not r.named("wait.attempt") or case.startswith("password")


# ---- migration files that are not what they are named like ----------------------------------

def make_odd(d, kind):
    d.mkdir()
    (d / "1_ok.sql").write_text("CREATE TABLE ok_first (x int);\n")
    path = d / "2_odd.sql"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "loop":
        path.symlink_to(path)
    else:
        path.symlink_to(d / "gone.sql")
    return {"fifo": "FIFO", "device": "device", "socket": "socket", "loop": "loops",
            "dangling": "to nothing"}[kind]


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "loop", "dangling"])
def test_a_migration_name_that_is_not_a_regular_file_is_refused(pg, db, tmp_path, kind):
    want = make_odd(tmp_path / "m", kind)
    r = run(["--sql-dir", str(tmp_path / "m"), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)),
            timeout=30)
    assert r.code == 65, r
    failed = r.named("check.failed")
    assert len(failed) == 1, r  # logged once
    assert "2_odd.sql" in failed[0]["msg"] and want in failed[0]["msg"], failed[0]["msg"]
    assert pg.psql(db, "SELECT to_regclass('ok_first') IS NULL") == "t"  # nothing applied


def test_transaction_control_inside_a_file_is_refused_before_anything_runs(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "1_fine.sql": ("CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n"
                       "DO $$ BEGIN PERFORM 1; END $$;\n"
                       "CREATE TABLE notes (t text DEFAULT 'COMMIT; -- not a statement');\n"
                       "SAVEPOINT s; ROLLBACK TO SAVEPOINT s; /* COMMIT */ SELECT CASE WHEN true THEN 1 END;\n"),
        "2_commits.sql": "CREATE TABLE half (x int);\n\ncommit;\nSELECT 1/0;\n"})
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 65, r
    msg = r.named("check.failed")[0]["msg"]
    assert "2_commits.sql:3: COMMIT" in msg, msg
    assert pg.psql(db, f"SELECT to_regclass('half') IS NULL AND to_regclass('{HIST}') IS NULL") == "t"
    (d / "2_commits.sql").write_text("CREATE TABLE half (x int);\n")
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r.stderr
    assert pg.psql(db, "SELECT one()") == "1"


def test_no_transaction_files_get_the_timeouts_too(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "1_check.sql": ("-- migrate-then-run: no-transaction\n"
                        "DO $$ BEGIN IF current_setting('lock_timeout') <> '1234ms' OR "
                        "current_setting('statement_timeout') <> '5678ms' THEN RAISE EXCEPTION "
                        "'timeouts % %', current_setting('lock_timeout'), "
                        "current_setting('statement_timeout'); END IF; END $$;\n")})
    r = run(["--sql-dir", str(d), "--migrate-only", "--migration-lock-timeout", "1234ms",
             "--statement-timeout", "5678ms"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r.stderr


def test_a_file_name_in_another_encoding_is_recorded_escaped(pg, db, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with open(os.path.join(os.fsencode(d), b"1_caf\xe9.sql"), "w") as f:
        f.write("CREATE TABLE cafe (x int);\n")
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r.stderr
    assert pg.psql(db, f"SELECT name FROM {HIST}") == "caf\\xe9"


@pytest.mark.parametrize("cmd", ["echo head;", "echo a&&b", "echo x>f"])
def test_shell_operators_glued_to_a_word_are_refused(pg, db, cmd):
    r = run(["--migrate-only", "--migrate-cmd", cmd], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 64, r
    assert "shell operator" in r.named("config.invalid")[0]["msg"]


def test_server_restart_during_pg_dump_is_retried(cluster_factory, tmp_path):
    import psycopg2
    c = cluster_factory()
    c.start()
    c.psql("postgres", "CREATE SCHEMA other; CREATE TABLE other.busy (x int)")
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE after_dump (x int);\n"})
    holder = psycopg2.connect(c.url())  # pg_dump waits for this lock: the restart comes mid-dump
    holder.cursor().execute("LOCK TABLE other.busy IN ACCESS EXCLUSIVE MODE")
    p = start(["--sql-dir", str(d), "--backup-dir", str(tmp_path / "b"), "--migrate-only"],
              env=clean_env(DATABASE_URL=c.url(), MTR_BACKUP=None))
    wait_until("pg_dump waiting for the lock", lambda: c.psql("postgres", (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate-then-run/backup' "
        "AND wait_event_type = 'Lock'")) == "1")
    pg_ctl = ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(c.dir / "data"), "-l",
              str(c.dir / "server.log"), "restart", "-m", "immediate", "-w"]
    if os.geteuid() == 0:
        pg_ctl = ["runuser", "-u", "postgres", "--", *pg_ctl]
    subprocess.run(pg_ctl, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd="/")
    r = p.finish(timeout=90)
    try:
        holder.close()
    except psycopg2.Error:
        pass
    assert r.code == 0, r.stderr
    assert r.named("migrate.retry") and r.named("backup.done"), r
    assert not r.named("backup.failed"), r
    assert c.psql("postgres", "SELECT to_regclass('after_dump') IS NOT NULL") == "t"


def test_connections_get_keepalives_unless_the_url_sets_them(pg, db):
    env = clean_env(PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres",
                    PGPASSWORD=PASSWORD, PGDATABASE=db)
    r = run(["--migrate-only", "--migrate-cmd", "printenv DATABASE_URL"], env=env)
    assert r.code == 0, r.stderr
    url = r.named("migrate.output")[0]["line"]  # the URL built from our connection
    for kv in ("keepalives=1", "keepalives_idle=5", "keepalives_interval=2", "keepalives_count=3",
               "tcp_user_timeout=15000"):
        assert kv in url, url
    conninfo = (f"host=127.0.0.1 port={pg.port} user=postgres password={PASSWORD} dbname={db} "
                "keepalives_idle=60 tcp_user_timeout=0")
    r = run(["--migrate-only", "--migrate-cmd", "printenv DATABASE_URL"],
            env=clean_env(DATABASE_URL=conninfo))
    assert r.code == 0, r.stderr
    url = r.named("migrate.output")[0]["line"]
    assert "keepalives_idle=60" in url and "keepalives=1" in url and "tcp_user_timeout=15000" not in url, url


def test_permission_denied_reading_the_history_is_permanent_and_logged_once(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (x int);\n"})
    assert run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=pg.url(db))).code == 0
    role = f"reader_{db}"
    pg.psql(db, f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    write(d, {"2_b.sql": "CREATE TABLE b (x int);\n"})
    url = f"postgresql://{role}:{PASSWORD}@127.0.0.1:{pg.port}/{db}"
    r = run(["--sql-dir", str(d), "--migrate-only"], env=clean_env(DATABASE_URL=url))
    assert r.code == 65, r  # permanent: not 75, not retried
    failed = r.named("plan.failed")
    assert len(failed) == 1 and failed[0]["sqlstate"] == "42501" and failed[0]["transient"] is False, r
    assert "permission denied" in failed[0]["msg"] and "grant" in failed[0]["msg"], failed[0]["msg"]
