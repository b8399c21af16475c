"""PID 1 for real: the binary at PID 1 of a new PID namespace, beside tini run the same way."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PROMPT, PYTHON, Tool, binary, clean_env, free_port, ts_ms, wait_for_event, wait_until

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
TINI = shutil.which("tini")

# Records every signal it gets, one name per line; SIGTERM ends it with status 0.
RECORDER = r"""
import os, signal, sys
log = open(sys.argv[1], "a", buffering=1)
def on(sig, frame):
    log.write(signal.Signals(sig).name + "\n")
    if sig == signal.SIGTERM:
        sys.exit(0)
for s in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT",
          "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGTERM"):
    signal.signal(getattr(signal, s), on)
log.write("ready\n")
while True:
    signal.pause()
"""

FORWARDED = ["SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT", "SIGTSTP",
             "SIGTTIN", "SIGTTOU"]


def supervisor(kind, pg_url, group=False, extra=()):
    """argv prefix that runs an app under our binary or under tini."""
    if kind == "tini":
        if not TINI:
            pytest.skip("tini is not installed")
        return [TINI, *(["-g"] if group else []), "--"]
    return [binary(), "--migrate-cmd", "true", *(["--signal-group"] if group else []), *extra, "--"]


_started = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A test that fails half-way must not leave its namespace running: SIGKILL to its PID 1
    ends every process in it."""
    yield
    while _started:
        p = _started.pop()
        if p.proc.poll() is None:
            try:
                os.kill(p.pid or p.find(), signal.SIGKILL)
            except (OSError, AssertionError):
                pass
            p.proc.kill()
            p.proc.wait()


class Pid1:
    """The supervisor at PID 1 of a new PID namespace; .pid is its pid as seen from here. Its
    stderr is read as it comes (.tool: wait_for_event)."""

    def __init__(self, argv, env):
        self.tool = Tool([*UNSHARE, *argv], env=env)
        self.proc = self.tool.proc
        self.pid = None
        _started.append(self)

    def find(self):
        def child():
            try:
                kids = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except FileNotFoundError:
                kids = []
            return int(kids[0]) if kids else None

        self.pid = self.pid or wait_until("the supervisor started", child, timeout=10)
        return self.pid

    def kill(self, sig):
        os.kill(self.pid or self.find(), sig)

    def wait(self, timeout=30):
        r = self.tool.finish(timeout=timeout)
        return r.code, r.stdout, r.stderr


def wait_for_line(path, line, timeout=15):
    wait_until(f"{line!r} in {path}", lambda: path.exists() and line in path.read_text().split("\n"), timeout)


def events(stderr):
    return [json.loads(l) for l in stderr.splitlines() if l.startswith("{")]


@pytest.fixture
def url(pg, db):
    return pg.url(db)


@pytest.mark.parametrize("kind", ["ours", "tini"])
def test_each_forwarded_signal_reaches_the_app(kind, url, tmp_path):
    log = tmp_path / "signals"
    app = [PYTHON, "-c", RECORDER, str(log)]
    p = Pid1([*supervisor(kind, url), *app], clean_env(DATABASE_URL=url))
    # tini sets SIGTTIN and SIGTTOU to SIG_IGN for itself (they would stop it when it takes the
    # terminal); we forward them like every other signal, since the kernel never sends them to
    # a process that is not doing terminal I/O.
    sent = FORWARDED if kind == "ours" else [s for s in FORWARDED if s not in ("SIGTTIN", "SIGTTOU")]
    wait_for_line(log, "ready")
    for name in sent:
        p.kill(getattr(signal, name))
        wait_for_line(log, name)
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert code == 0, err
    got = log.read_text().split()
    assert got == ["ready", *sent, "SIGTERM"]
    if kind == "ours":
        forwarded = [e["signal"] for e in events(err) if e["event"] == "run.signal"]
        assert forwarded == [*sent, "SIGTERM"]


@pytest.mark.parametrize("kind", ["ours", "tini"])
def test_signal_group_reaches_a_grandchild(kind, url, tmp_path):
    log = tmp_path / "signals"
    # The app (a shell that ignores SIGUSR1 and SIGTERM) starts the recorder as its own child,
    # and ends only when the recorder has recorded SIGTERM and exited: otherwise a supervisor
    # that ends with the shell (tini) races the recorder's last line.
    app = ["sh", "-c", f'trap "" USR1 TERM; {PYTHON} -c \'{RECORDER}\' {log} & wait']
    p = Pid1([*supervisor(kind, url, group=True), *app], clean_env(DATABASE_URL=url))
    wait_for_line(log, "ready")
    p.kill(signal.SIGUSR1)
    wait_for_line(log, "SIGUSR1")
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert "SIGTERM" in log.read_text().split(), err


# 100 orphans: each says once it has been handed to its new parent (who must be ours: the init,
# or the subreaper), and exits. Prints how many were not adopted by our parent, and how many
# of them it had not reaped within 20 s (a deadline for failure only).
ORPHANS = r"""
import os, time
ours = os.getppid()
r, w = os.pipe()
for _ in range(100):
    if os.fork() == 0:          # the intermediate child exits at once ...
        os.close(r)
        mid = os.getpid()
        if os.fork() == 0:      # ... so the grandchild is orphaned
            while os.getppid() == mid:
                time.sleep(0.001)
            os.write(w, b"%d %d\n" % (os.getpid(), os.getppid()))
            os._exit(0)
        os._exit(0)
os.close(w)
report = b""
while chunk := os.read(r, 65536):  # to the end: every orphan has written, and is exiting
    report += chunk
for _ in range(100):
    os.wait()                   # reap the intermediates: they are ours
orphans = [tuple(map(int, l.split())) for l in report.decode().splitlines()]
assert len(orphans) == 100, orphans

def unreaped(pid):  # still there as a child of ours (running, or a zombie)
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == ours

left = [pid for pid, _ in orphans]
deadline = time.monotonic() + 20
while left and time.monotonic() < deadline:
    left = [pid for pid in left if unreaped(pid)]
    time.sleep(0.01)
print(sum(1 for _, ppid in orphans if ppid != ours), len(left))
"""


@pytest.mark.parametrize("kind", ["ours", "tini"])
def test_orphans_are_reaped(kind, url):
    p = Pid1([*supervisor(kind, url), PYTHON, "-c", ORPHANS], clean_env(DATABASE_URL=url))
    code, out, err = p.wait(timeout=60)
    assert code == 0, err
    assert out.split() == ["0", "0"], f"orphans not adopted, zombies left: {out}"


@pytest.mark.parametrize("kind", ["ours", "tini"])
@pytest.mark.parametrize("script,want", [
    ("exit 0", 0), ("exit 1", 1), ("exit 2", 2), ("exit 127", 127), ("exit 255", 255),
    ("kill -TERM $$", 128 + signal.SIGTERM), ("kill -KILL $$", 128 + signal.SIGKILL),
])
def test_exit_status_passes_through(kind, url, script, want):
    p = Pid1([*supervisor(kind, url), "sh", "-c", script], clean_env(DATABASE_URL=url))
    code, _, err = p.wait()
    assert code == want, err


def test_app_ignoring_sigterm_is_killed_after_the_grace_period(url, tmp_path):
    ready = tmp_path / "ready"
    app = ["sh", "-c", f'trap "" TERM; touch {ready}; while :; do sleep 0.1; done']
    p = Pid1(supervisor("ours", url, extra=["--stop-timeout", "1s"]) + app,
             clean_env(DATABASE_URL=url))
    wait_until("the app ignores SIGTERM", ready.exists, timeout=10)
    t0 = time.monotonic()
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    elapsed = time.monotonic() - t0
    assert code == 128 + signal.SIGKILL, err
    assert 1 + PROMPT > elapsed >= 0.9, elapsed
    ev = events(err)
    term = [e for e in ev if e["event"] == "run.signal" and e["signal"] == "SIGTERM"]
    kill = [e for e in ev if e["event"] == "run.kill" and e["signal"] == "SIGKILL"]
    assert term and kill and kill[0]["grace_ms"] == 1000
    assert ts_ms(kill[0]) - ts_ms(term[0]) >= 1000 - 1, (term, kill)  # the grace, by its own clock
    assert [e for e in ev if e["event"] == "run.exit"][0]["killed"] is True


def test_leftover_grandchild_is_stopped_and_waited_for(url, tmp_path):
    done = tmp_path / "cleaned-up"
    started = tmp_path / "started"
    # The grandchild needs 0.5 s to shut down after SIGTERM; the app itself exits 3 at once.
    grandchild = (f'trap "sleep 0.5; touch {done}; exit 0" TERM; touch {started}; '
                  f'while :; do sleep 0.05; done')
    app = ["sh", "-c", f"sh -c '{grandchild}' & while [ ! -e {started} ]; do sleep 0.02; done; exit 3"]
    p = Pid1(supervisor("ours", url, extra=["--stop-timeout", "5s"]) + app, clean_env(DATABASE_URL=url))
    code, _, err = p.wait()
    assert code == 3, err
    assert done.exists(), "the supervisor exited before the grandchild had shut down"
    kills = [e for e in events(err) if e["event"] == "run.kill"]
    assert kills and kills[0]["signal"] == "SIGTERM" and kills[0]["processes"] >= 1
    assert not [e for e in kills if e["signal"] == "SIGKILL"]


def test_sigterm_while_the_app_runs(url, tmp_path):
    log = tmp_path / "signals"
    p = Pid1(supervisor("ours", url) + [PYTHON, "-c", RECORDER, str(log)], clean_env(DATABASE_URL=url))
    wait_for_line(log, "ready")
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert code == 0  # the recorder exits 0 on SIGTERM: its own status passes through
    assert "SIGTERM" in log.read_text()


def test_sigterm_during_a_migration_rolls_it_back(pg, db, tmp_path):
    url = pg.url(db)
    marker = tmp_path / "app-started"
    script = tmp_path / "slow_migration.py"
    script.write_text(
        "import os, psycopg2\n"
        "c = psycopg2.connect(os.environ['DATABASE_URL'])\n"
        "cur = c.cursor()\n"
        "cur.execute('CREATE TABLE half_applied (x int)')\n"
        "print('table created, now sleeping', flush=True)\n"
        "cur.execute('SELECT pg_sleep(60)')\n"
        "c.commit()\n")
    p = Pid1([binary(), "--migrate-cmd", f"{PYTHON} {script}", "--", "touch", str(marker)],
             clean_env(DATABASE_URL=url))
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
    wait_until("the migration sleeps in the server", lambda: pg.psql(db, sleeping) == "1", timeout=15)
    t0 = time.monotonic()
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert code == 128 + signal.SIGTERM, err
    assert time.monotonic() - t0 < PROMPT
    assert not marker.exists()
    ev = events(err)
    stop = [e for e in ev if e["event"] == "stop.signal"][0]
    assert stop["phase"] == "migrate"
    # Rolled back now, not in 60 s: the tool ended the sleeping session, which is gone a moment
    # later (the deadline is for failure only), and the table never existed.
    assert [e["sessions"] for e in ev if e["event"] == "migrate.rollback"] == [1], err
    wait_until("the migration's session gone", lambda: pg.psql(db, sleeping) == "0", timeout=20)
    assert pg.psql(db, "SELECT to_regclass('public.half_applied') IS NULL") == "t"


# grep reports its own masks, inherited unchanged (Python would set SIGPIPE and SIGXFSZ to ignored).
MASKS = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]


def _odd_signal_state():
    """Before exec: SIGUSR2 ignored and SIGUSR1 blocked, as a parent process might leave them."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


@pytest.mark.parametrize("mode", ["--init", "--no-init"])
def test_signal_mask_and_ignored_signals_are_restored(url, mode):
    # The app must start with exactly what the tool itself was started with.
    direct = subprocess.run(MASKS, capture_output=True, text=True, preexec_fn=_odd_signal_state).stdout
    r = subprocess.run([binary(), mode, "--migrate-cmd", "true", "--", *MASKS],
                       env=clean_env(DATABASE_URL=url), capture_output=True, text=True,
                       preexec_fn=_odd_signal_state)
    assert r.returncode == 0, r.stderr
    assert r.stdout == direct
    blk, ign = (int(v, 16) for v in r.stdout.split()[1::2])
    assert blk & (1 << (signal.SIGUSR1 - 1)) and ign & (1 << (signal.SIGUSR2 - 1))
    assert not blk & (1 << (signal.SIGTERM - 1))  # ours, blocked for the wait loop, not passed on


def test_not_pid1_defaults_to_exec_and_init_makes_a_subreaper(url):
    r = subprocess.run([binary(), "--migrate-cmd", "true", "--", PYTHON, "-c", "import os; print(os.getppid())"],
                       env=clean_env(DATABASE_URL=url), capture_output=True, text=True)
    assert r.returncode == 0
    assert not [e for e in events(r.stderr) if e["event"] == "run.start"]  # exec'd: no supervisor
    r = subprocess.run([binary(), "--init", "--migrate-cmd", "true", "--", PYTHON, "-c", ORPHANS],
                       env=clean_env(DATABASE_URL=url), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0"], f"orphans not adopted, zombies left: {r.stdout}"
    start = [e for e in events(r.stderr) if e["event"] == "run.start"][0]
    assert start["pid1"] is False


@pytest.mark.secret_audit_exempt("stdout", reason="the app prints its environment, DATABASE_URL "
                                                   "included, to compare it")
def test_supervisor_is_a_fresh_image_and_the_app_environment_is_untouched(url):
    # After migrating, the supervisor re-executes itself lean; the app sees exactly our env.
    show = [PYTHON, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    env = clean_env(DATABASE_URL=url, APP_SETTING="x")
    direct = json.loads(subprocess.run(show, env=env, capture_output=True, text=True).stdout)
    r = subprocess.run([binary(), "--init", "--migrate-cmd", "true", "--", *show], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == direct
    ev = events(r.stderr)
    start = next(e for e in ev if e["event"] == "run.start")
    assert start["command"] == PYTHON
    assert [e["event"] for e in ev].count("pipeline.start") == 1
    # The supervisor's own command line is that of the fresh image, not the original one.
    parent = [PYTHON, "-c", "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().split(chr(0))[:3])"]
    r = subprocess.run([binary(), "--init", "--migrate-cmd", "true", "--", *parent], env=env,
                       capture_output=True, text=True)
    assert r.stdout.strip() == str(["migrate-then-run", "--", PYTHON]), r.stderr


@pytest.mark.parametrize("phase", ["wait", "run"])
def test_sigterm_as_pid1_exits_143(phase, pg, db, tmp_path):
    url = pg.url(db) if phase == "run" else f"postgresql://u:p@127.0.0.1:{free_port()}/d"
    marker = tmp_path / "app-started"
    app = ["sh", "-c", f"touch {marker}; exec sleep 30"]
    p = Pid1([binary(), "--migrate-cmd", "true", "--", *app], clean_env(DATABASE_URL=url))
    if phase == "run":
        wait_for_event(p.tool, "run.start")
        wait_until("the app started", marker.exists, timeout=10)
    else:
        wait_for_event(p.tool, "wait.waiting")
    t0 = time.monotonic()
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert code == 128 + signal.SIGTERM, err
    assert time.monotonic() - t0 < PROMPT  # the app's sleep lasts 30 s, the wait 60 s
    assert marker.exists() == (phase == "run")
    if phase == "wait":
        assert [e for e in events(err) if e["event"] == "stop.signal"][0]["phase"] == "wait"
