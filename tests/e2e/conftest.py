"""End-to-end harness: a real PostgreSQL 15 cluster per test session, and the built binary."""
import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone

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
# How long "at once" may take on a loaded machine: the bound of promises such as "exits at once
# on SIGTERM", measured from the moment the test saw the tool in the state (or sent the signal).
# Well below every delay a broken promise shows instead: a connection attempt's 10 s, a pause or
# a hold of a minute, a statement's pg_sleep(60).
PROMPT = 5.0


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
    _end_tools()  # what they wrote is all read before it is searched
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
    def __init__(self, proc, json_logs=True):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.events = []
        for line in proc.stderr.splitlines() if json_logs else []:
            self.events.append(json.loads(line))  # every line must be JSON

    def named(self, event):
        return [e for e in self.events if e["event"] == event]

    def __repr__(self):
        return f"<exit {self.code}>\nstdout: {self.stdout}\nstderr:\n{self.stderr}"


def run(args, env=None, timeout=60, **popen):
    """Runs the binary to its end. A test that must act while it runs uses start() instead."""
    proc = subprocess.run([binary(), *args], env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout, **popen)
    return Result(proc, json_logs="text" not in args)


def wait_until(what, predicate, timeout=30):
    """Polls predicate until it returns something true, and returns that. The timeout is a
    deadline for failure (naming `what`), never something a passing test waits for."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.02)


def ts_ms(event):
    """An event's own timestamp ("2026-11-21T10:00:00.123Z"), in ms since the epoch."""
    t = datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return round(t.timestamp() * 1000)


_tools = []


class Tool:
    """A process (the binary, or a command around it: unshare, valgrind) started with its stderr
    on a pipe that a thread reads line by line as it comes, so that a test can wait for the
    event that shows the state it needs (wait_for_event) before it signals or changes
    something. Everything read is kept: .lines, .events; after finish(), also .code, .stdout
    and .stderr, as run() gives them."""

    def __init__(self, argv, env=None, stdout=subprocess.PIPE, **popen):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(self.argv, env=env if env is not None else clean_env(),
                                     stdout=stdout, stderr=subprocess.PIPE, **popen)
        self.pid = self.proc.pid
        self.lines, self.events = [], []
        self.code = None
        self._raw = {"stderr": bytearray(), "stdout": bytearray()}
        self._cond = threading.Condition()
        self._eof = False
        self._next = 0  # wait_for_event looks at the events from here on
        streams = [("stderr", self.proc.stderr)] + ([("stdout", self.proc.stdout)] if self.proc.stdout else [])
        self._readers = [threading.Thread(target=self._read, args=s, daemon=True) for s in streams]
        for t in self._readers:
            t.start()
        _tools.append(self)

    def _read(self, stream, f):
        pending = b""
        while True:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                break
            self._raw[stream] += chunk
            if stream == "stderr":
                *complete, pending = (pending + chunk).split(b"\n")
                self._add(complete)
        if stream == "stderr":
            self._add([pending] if pending else [], eof=True)
        secret_audit.output_read(self.proc, stream, bytes(self._raw[stream]))

    def _add(self, raw_lines, eof=False):
        with self._cond:
            for raw in raw_lines:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if line.startswith("{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        pass  # a line of something else: kept in .lines only
            self._eof = self._eof or eof
            self._cond.notify_all()

    def _next_event(self, event, timeout, fields):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self._next, len(self.events)):
                    e = self.events[i]
                    if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                        self._next = i + 1
                        return e
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
            seen = "\n".join(self.lines)
        why = f"before its stderr closed (exit {self.proc.poll()})" if self._eof else f"within {timeout:g}s"
        want = event + "".join(f" {k}={v!r}" for k, v in fields.items())
        raise AssertionError(f"no {want} {why}; {' '.join(self.argv)[:200]}\nstderr so far:\n{seen}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def poll(self):
        return self.proc.poll()

    def finish(self, timeout=60):
        """Waits for the exit and the end of the output; returns self."""
        try:
            self.code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._end()
            raise AssertionError(f"still running after {timeout:g}s: {self!r}") from None
        self._join()
        return self

    def _join(self):
        for t in self._readers:
            t.join(timeout=30)
            assert not t.is_alive(), "the output stays open after the exit: a leftover process holds it"
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def _end(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.code = self.proc.wait()
        self._join()

    @property
    def stdout(self):
        return self._raw["stdout"].decode("utf-8", "replace")

    @property
    def stderr(self):
        return self._raw["stderr"].decode("utf-8", "replace")

    def named(self, event):
        return [e for e in self.events if e["event"] == event]

    def __repr__(self):
        return f"<exit {self.proc.poll()}>\nstdout: {self.stdout}\nstderr:\n{self.stderr}"


def start(args, env=None, **popen):
    """The binary with args, started as a Tool (run() waits for the end instead)."""
    return Tool([binary(), *args], env=env, **popen)


def wait_for_event(tool, event, timeout=30, **fields):
    """The next event named `event` (with these field values) that tool writes after the one the
    previous call returned, as soon as it is read; fails with the lines seen so far when the
    deadline passes or the tool's stderr closes (it exited) first. So consecutive calls also
    check the order of the events."""
    return tool._next_event(event, timeout, fields)


def _end_tools():
    while _tools:
        t = _tools.pop()
        try:
            t._end()
        except AssertionError:
            pass


@pytest.fixture(autouse=True)
def _tools_ended():
    """A test that fails half-way must not leave a Tool running (nor its reader threads)."""
    yield
    _end_tools()
