"""The fully static build (make static) in an otherwise empty root: no libc, no shared libraries,
no shell, not even /dev/null; only the binary, /etc/hosts and a static `true`. Runs when MTR_BIN is a
statically linked executable and we are root (chroot needs it); skipped otherwise."""
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import Result, binary, clean_env

MUSL_GCC = shutil.which("musl-gcc")
OPENSSL = shutil.which("openssl")


def _is_static(path):
    if not shutil.which("file") or not os.path.isfile(path):
        return False
    out = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout
    return "statically linked" in out


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root"),
    pytest.mark.skipif(not _is_static(binary()), reason="MTR_BIN is not a statically linked binary"),
]


@pytest.fixture(scope="module")
def static_true(tmp_path_factory):
    """A statically linked program that exits 0: the only other executable in the root."""
    if not MUSL_GCC:
        pytest.skip("musl-gcc is not installed (package musl-tools)")
    d = tmp_path_factory.mktemp("static-true")
    (d / "true.c").write_text("int main(void) { return 0; }\n")
    subprocess.run([MUSL_GCC, "-static", "-O2", "-o", str(d / "true"), str(d / "true.c")], check=True)
    return d / "true"


@pytest.fixture
def root(tmp_path, static_true):
    """An empty root with just what a scratch container image would hold."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    shutil.copy2(binary(), r / "migrate-then-run")
    shutil.copy2(static_true, r / "true")
    shutil.copy2("/etc/hosts", r / "etc" / "hosts")
    return r


def in_root(root, args, env=None, timeout=60):
    proc = subprocess.run(["chroot", str(root), "/migrate-then-run", *args],
                          env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc)


def test_version_needs_nothing_from_the_root(root):
    proc = subprocess.run(["chroot", str(root), "/migrate-then-run", "--version"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("migrate-then-run ")


def test_no_interpreter_and_no_shared_libraries():
    data = pathlib.Path(binary()).read_bytes()
    assert b"ld-linux" not in data and b"ld-musl" not in data
    out = subprocess.run(["ldd", binary()], capture_output=True, text=True)
    assert "not a dynamic executable" in out.stdout + out.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_waits_migrates_and_execs_over_tcp(root, pg, db, host):
    url = pg.url(db).replace("@127.0.0.1:", f"@{host}:")
    # The app is the binary itself: its version on stdout shows that the exec happened.
    r = in_root(root, ["--migrate-cmd", "/true", "--", "/migrate-then-run", "--version"],
                env=clean_env(DATABASE_URL=url))
    assert r.code == 0, r
    assert [e["event"] for e in r.events if e["event"] in ("wait.ready", "migrate.done", "run.exec")] \
        == ["wait.ready", "migrate.done", "run.exec"], r
    assert r.stdout.startswith("migrate-then-run "), r
    assert pg.password not in r.stderr


def test_sql_directory_migrates_in_an_empty_root(root, pg, db):
    (root / "migrations").mkdir()
    (root / "migrations" / "1_users.sql").write_text("CREATE TABLE users (id int);\n")
    (root / "migrations" / "2_orders.sql").write_text("CREATE TABLE orders (id int);\n")
    r = in_root(root, ["--sql-dir", "/migrations", "--", "/true"], env=clean_env(DATABASE_URL=pg.url(db)))
    assert r.code == 0, r
    assert [e["file"] for e in r.named("migrate.step")] == ["1_users.sql", "2_orders.sql"]
    assert pg.psql(db, "SELECT count(*) FROM mtr_schema_history WHERE success") == "2"


def test_wrong_password_exits_77(root, pg, db):
    r = in_root(root, ["--migrate-cmd", "/true", "--", "/true"],
                env=clean_env(DATABASE_URL=pg.url(db, password="not-the-password")))
    assert r.code == 77, r


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A cluster with ssl = on and a self-signed certificate for CN=localhost."""
    if not OPENSSL:
        pytest.skip("the openssl command is not installed")
    from conftest import Cluster
    c = Cluster()
    try:
        data = c.dir / "data"
        crt, key = data / "server.crt", data / "server.key"
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        st = data.stat()
        for f in (crt, key):
            os.chown(f, st.st_uid, st.st_gid)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        c.start()
        c.ca = crt
        yield c
    finally:
        c.destroy()


def test_sslmode_require(root, tls_cluster):
    url = tls_cluster.url("postgres") + "?sslmode=require"
    r = in_root(root, ["--migrate-cmd", "/true", "--", "/true"], env=clean_env(DATABASE_URL=url))
    assert r.code == 0, r


def test_sslmode_verify_full_checks_the_certificate(root, tls_cluster):
    shutil.copy2(tls_cluster.ca, root / "ca.crt")
    good = tls_cluster.url("postgres").replace("@127.0.0.1:", "@localhost:") \
        + "?sslmode=verify-full&sslrootcert=/ca.crt"
    r = in_root(root, ["--migrate-cmd", "/true", "--", "/true"], env=clean_env(DATABASE_URL=good))
    assert r.code == 0, r

    # The certificate names localhost, not 127.0.0.1: OpenSSL's check must refuse it.
    bad = tls_cluster.url("postgres") + "?sslmode=verify-full&sslrootcert=/ca.crt"
    r = in_root(root, ["--log-level", "debug", "--migrate-cmd", "/true", "--", "/true"],
                env=clean_env(DATABASE_URL=bad))
    assert r.code == 64, r  # a configuration problem: refused at once, not waited out
    assert len(r.named("wait.attempt")) == 1 and not r.named("wait.waiting"), r
    assert not r.named("run.exec"), r
    assert "does not match host name" in r.stderr, r


def test_webhook_and_wait_http_from_an_empty_root(root, pg, db):
    from httpd import Recorder
    import json
    hook, dep = Recorder(statuses=(200,)), Recorder(statuses=(503, 200))
    try:
        (root / "m").mkdir()
        (root / "m" / "1_bad.sql").write_text("SELECT * FROM missing;\n")
        r = in_root(root, ["--sql-dir", "/m", "--wait-http", dep.url("ready"), "--notify-url", hook.url("hook"),
                           "--", "/true"], env=clean_env(DATABASE_URL=pg.url(db)))
        assert r.code == 70, r
        assert r.named("wait.http.ready") and len(dep.requests) == 2
        [req] = hook.requests
        body = json.loads(req["body"])
        assert body["event"] == "failure" and body["error"]["sqlstate"] == "42P01"
        assert body["error"]["file"] == "1_bad.sql:1:15"
    finally:
        hook.stop()
        dep.stop()


@pytest.fixture(scope="module")
def https_cert(tmp_path_factory):
    if not OPENSSL:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("https")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_webhook_needs_a_ca_file_in_an_empty_root(root, pg, db, https_cert):
    from httpd import Recorder
    hook = Recorder(statuses=(200,), tls=https_cert)
    try:
        (root / "m").mkdir()
        (root / "m" / "1_a.sql").write_text("CREATE TABLE a (x int);\n")
        args = ["--sql-dir", "/m", "--notify-url", hook.url("h", host="localhost"), "--notify-on",
                "success,failure", "--notify-timeout", "3s", "--", "/true"]
        # No CA bundle in the root: verification fails, the app still starts.
        env = clean_env(DATABASE_URL=pg.url(db), CURL_CA_BUNDLE=None, SSL_CERT_FILE=None)
        r = in_root(root, args, env=env)
        assert r.code == 0, r
        assert r.named("notify.failed") and not hook.requests
        # With the certificate given by --ca-file (or SSL_CERT_FILE): delivered.
        shutil.copy2(https_cert[0], root / "ca.crt")
        (root / "m" / "2_b.sql").write_text("CREATE TABLE b (x int);\n")
        r = in_root(root, ["--ca-file", "/ca.crt", *args], env=env)
        assert r.code == 0, r
        assert r.named("notify.sent") and len(hook.requests) == 1
        (root / "m" / "3_c.sql").write_text("CREATE TABLE c (x int);\n")
        r = in_root(root, args, env={**env, "SSL_CERT_FILE": "/ca.crt"})
        assert r.code == 0 and len(hook.requests) == 2, r.stderr
    finally:
        hook.stop()
