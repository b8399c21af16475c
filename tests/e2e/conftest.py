"""End-to-end harness: a real PostgreSQL 15 cluster per test session, and the built binary."""
import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile

import pytest

import secret_audit

ROOT = pathlib.Path(__file__).resolve().parents[2]
PGTMP = ROOT / "scripts" / "pgtmp.sh"
EXAMPLE_INI = ROOT / "docker" / "example" / "alembic.ini"
FAILING_INI = ROOT / "tests" / "fixtures" / "alembic_failing" / "alembic.ini"
PYTHON = "/usr/bin/python3"
PSQL = "/usr/lib/postgresql/15/bin/psql"
# Recognisable, so that a test can search every byte of output for it.
PASSWORD = "Pw-e2e-7f3b9c-secret"


def binary():
    return os.environ.get("MTR_BIN", str(ROOT / "build" / "migrate-then-run"))


# `make test SANITIZE=…` sets this: the directory where every sanitizer report lands.
SANITIZER_REPORTS = os.environ.get("MTR_SANITIZER_REPORTS")
# For a test whose figures an instrumented binary cannot meet (memory footprint, tight timing).
skip_if_sanitized = pytest.mark.skipif(bool(SANITIZER_REPORTS),
                                       reason="sanitizer build: figures do not apply")


# `make test-secrets` (MTR_SECRET_AUDIT=1): every byte the tool writes is searched for the
# password; see secret_audit.py for what is searched and what is not counted.
AUDIT = None


def audit(label, data):
    """Submits bytes the tool sent somewhere the harness cannot see by itself (a webhook
    payload, an upload) to the secret audit; does nothing outside `make test-secrets`."""
    if AUDIT:
        AUDIT.scan("submitted", label, data)


def pytest_configure(config):
    global AUDIT
    config.addinivalue_line("markers", "secret_audit_exempt(stream, reason): the secret audit "
                            "does not count the password in this stream (only stdout: the app's)")
    if secret_audit.ENABLED and AUDIT is None:
        AUDIT = secret_audit.install(PASSWORD, binary)


def pytest_sessionfinish(session):
    if AUDIT:
        AUDIT.stop_sampling()
        if AUDIT.hits:
            session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if AUDIT:
        for line in AUDIT.summary():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _secret_audit(request):
    if not AUDIT:
        yield
        return
    AUDIT.test = request.node.nodeid
    yield
    exempt = request.node.get_closest_marker("secret_audit_exempt")
    if exempt:
        assert exempt.args[0] == "stdout", "only the app's stdout can be exempt"
    AUDIT.finish_test(exempt_stdout=exempt.kwargs["reason"] if exempt else None)


@pytest.fixture(autouse=True)
def _sanitizer_reports():
    """Fails the test during which any process wrote a sanitizer report (the Makefile checks the
    directory again at the end, for reports written between tests)."""
    if not SANITIZER_REPORTS:
        yield
        return
    d = pathlib.Path(SANITIZER_REPORTS)

    def reports():  # by name, size and time: a process at PID 1 of a namespace reuses "asan.1"
        return {(f, f.stat().st_size, f.stat().st_mtime_ns) for f in d.iterdir()} if d.is_dir() else set()

    before = reports()
    yield
    new = sorted({f for f, _, _ in reports() - before})
    if new:
        pytest.fail("sanitizer reports:\n" + "\n".join(
            f"=== {f}\n{f.read_text(errors='replace')[:4000]}" for f in new), pytrace=False)


def scratch_dir(prefix):
    """A temp dir the postgres OS user can traverse (the cluster runs as postgres when root)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return pathlib.Path(d)


class Cluster:
    """A throwaway cluster managed by scripts/pgtmp.sh."""

    def __init__(self, password=PASSWORD):
        self.base = scratch_dir("mtr-e2e-")
        self.dir = self.base / "pg"
        self.password = password
        subprocess.run([str(PGTMP), "init", str(self.dir), password], check=True,
                       stdout=subprocess.DEVNULL)
        self.port = int((self.dir / "port").read_text().strip())

    def start(self):
        subprocess.run([str(PGTMP), "start", str(self.dir)], check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run([str(PGTMP), "stop", str(self.dir)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def destroy(self):
        if AUDIT:
            AUDIT.scan_cluster(self)
        subprocess.run([str(PGTMP), "down", str(self.dir)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, db="postgres", password=None):
        pw = self.password if password is None else password
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.port}/{db}"

    def psql(self, db, sql):
        out = subprocess.run([PSQL, "-XAtq", self.url(db), "-c", sql], check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()


@pytest.fixture(scope="session")
def pg():
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.destroy()


_db_counter = itertools.count(1)


@pytest.fixture
def db(pg):
    """A fresh database on the session cluster; returns its name."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    pg.psql("postgres", f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def cluster_factory():
    made = []

    def make():
        c = Cluster()
        made.append(c)
        return c

    yield make
    for c in made:
        c.destroy()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """Our environment without any database or MTR_ settings, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MTR_") or k.startswith("PG") or k.startswith("DATABASE_URL"))}
    env["MTR_LOG_FORMAT"] = "json"
    # Most tests want the exit code of one run; the policy tests set their own.
    env["MTR_ON_FAILURE"] = "exit"
    env["MTR_FAILURE_BACKOFF"] = "100ms"
    env["MTR_BACKUP"] = "off"  # the backup tests turn it on
    env.update({k: v for k, v in extra.items() if v is not None})
    for k in [k for k, v in extra.items() if v is None]:  # None: leave the variable unset
        env.pop(k, None)
    return env


class Result:
    def __init__(self, proc, elapsed, json_logs=True):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.events = []
        for line in proc.stderr.splitlines() if json_logs else []:
            self.events.append(json.loads(line))  # every line must be JSON

    def named(self, event):
        return [e for e in self.events if e["event"] == event]

    def __repr__(self):
        return f"<exit {self.code}>\nstdout: {self.stdout}\nstderr:\n{self.stderr}"


def run(args, env=None, timeout=60, **popen):
    import time
    t0 = time.monotonic()
    proc = subprocess.run([binary(), *args], env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout, **popen)
    return Result(proc, time.monotonic() - t0, json_logs="text" not in args)
