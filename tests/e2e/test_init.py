"""PID 1 for real: the binary at PID 1 of a new PID namespace, beside tini run the same way."""
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import time

import psycopg2
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


@pytest.mark.parametrize("appname,prefix", [(None, "migrate-then-run"), ("myservice", "myservice"),
                                            ("café", "caf__")])
def test_sigterm_during_a_migration_rolls_it_back(pg, db, tmp_path, appname, prefix):
    """With a PGAPPNAME of the user's, which the app of every replica shares, the command's
    sessions get a name of their own that begins with it (bytes PostgreSQL would rewrite made
    '_', so that the name stored is the name searched for): they are ended, the app's are not."""
    url = pg.url(db)
    app = psycopg2.connect(url, application_name=appname) if appname else None
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
             clean_env(DATABASE_URL=url, PGAPPNAME=appname))
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
    wait_until("the migration sleeps in the server", lambda: pg.psql(db, sleeping) == "1", timeout=15)
    name = pg.psql(db, "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
    assert name.startswith(f"{prefix}/migrate/"), name
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
    if app:
        app.cursor().execute("SELECT 1")  # the app's own session, of the same name, lives on
        app.close()


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


# --- the one stop budget, leftovers without /proc, true counts -----------------------------

def ts_ms(event):
    """The tool's own timestamp of an event, in ms since the epoch."""
    import datetime
    t = datetime.datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000


def test_one_stop_budget_covers_the_app_and_its_leftovers(url, tmp_path):
    """The app exits 0 two seconds after SIGTERM and leaves a child that ignores SIGTERM: the
    child is killed when --stop-timeout has passed since the SIGTERM, not a fresh grace
    later, and the app's own 0 is the exit code."""
    ready = tmp_path / "ready"
    app = ["sh", "-c", "sh -c 'trap \"\" TERM; while :; do sleep 0.1; done' & "
           f"trap 'sleep 2; exit 0' TERM; touch {ready}; while :; do sleep 0.1; done"]
    p = Pid1(supervisor("ours", url, extra=["--stop-timeout", "3s"]) + app, clean_env(DATABASE_URL=url))
    wait_for_file(ready)
    p.kill(signal.SIGTERM)
    code, _, err = p.wait()
    assert code == 0, err
    ev = events(err)
    term = next(e for e in ev if e["event"] == "run.signal" and e["signal"] == "SIGTERM")
    exit_ = next(e for e in ev if e["event"] == "run.exit")
    left = next(e for e in ev if e["event"] == "run.kill" and e["signal"] == "SIGTERM")
    kill = next(e for e in ev if e["event"] == "run.kill" and e["signal"] == "SIGKILL")
    assert exit_["status"] == 0 and exit_["killed"] is False
    # What was left of the budget when the app exited, not the whole of it again.
    assert left["grace_ms"] < 3000 - 1000, left
    assert left["processes"] >= 1 and kill["app"] is False
    # SIGKILL ends the budget that SIGTERM started (a second grace would add 2 s or more).
    assert 2900 <= ts_ms(kill) - ts_ms(term) < 4500, (term, kill)


def wait_for_file(path, timeout=15):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# A daemon in a session of its own that ignores SIGTERM: only kill(-1) reaches it as PID 1
# without a /proc of ours.
DAEMON = ("setsid sh -c 'trap \"\" TERM; touch {ready}; while :; do sleep 0.1; done' & "
          "while [ ! -e {ready} ]; do sleep 0.02; done; exit 5")


def test_pid1_with_a_foreign_proc_stops_leftovers_with_kill_minus_one(url, tmp_path):
    """/proc of the outer namespace (unshare without --mount-proc): its pids are not ours.
    As PID 1 the leftovers are reached with kill(-1), counted as unknown, then killed."""
    ready = tmp_path / "ready"
    argv = ["unshare", "--pid", "--fork", binary(), "--migrate-cmd", "true", "--stop-timeout", "1s",
            "--", "sh", "-c", DAEMON.format(ready=ready)]
    r = subprocess.run(argv, env=clean_env(DATABASE_URL=url), capture_output=True, text=True, timeout=30)
    assert r.returncode == 5, r.stderr
    kills = [e for e in events(r.stderr) if e["event"] == "run.kill"]
    assert [k["signal"] for k in kills] == ["SIGTERM", "SIGKILL"], kills
    assert all(k["processes"] is None for k in kills), kills  # no /proc of ours to count with
    assert not [e for e in events(r.stderr) if e["event"] == "run.abandon"]


def test_init_outside_pid1_with_a_foreign_proc_is_bounded(url, tmp_path):
    """Not PID 1 and /proc not ours: no pid read from it is signalled; the daemon out of the
    app's group cannot be reached, and the wait for it ends with the budget."""
    ready = tmp_path / "ready"
    inner = f"{shlex.quote(binary())} --init --migrate-cmd true --stop-timeout 1s -- sh -c {shlex.quote(DAEMON.format(ready=ready))}"
    argv = ["unshare", "--pid", "--fork", "sh", "-c", inner + "; echo exit=$?"]
    r = subprocess.run(argv, env=clean_env(DATABASE_URL=url), capture_output=True, text=True, timeout=30)
    assert "exit=5" in r.stdout, r.stderr
    ev = events(r.stderr)
    assert [e["signal"] for e in ev if e["event"] == "run.kill"] == ["SIGTERM", "SIGKILL"]
    assert [e for e in ev if e["event"] == "run.abandon"]


# A leftover with a zombie child it never reaps, and the app, both ignoring SIGTERM.
ZOMBIE_PARENT = ("import os, signal, time\n"
                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                 "if os.fork() == 0:\n"
                 "    os._exit(0)\n"
                 "open({ready!r}, 'w').close()\n"
                 "while True:\n"
                 "    time.sleep(0.1)\n")


@pytest.mark.parametrize("mode", ["pid1", "init"])
def test_kill_counts_leave_out_the_app_and_zombies(mode, url, tmp_path):
    ready = tmp_path / "ready"
    script = tmp_path / "leftover.py"
    script.write_text(ZOMBIE_PARENT.format(ready=str(ready)))
    app = ["sh", "-c", f"trap '' TERM; {PYTHON} {script} & while :; do sleep 0.1; done"]
    argv = [binary(), "--migrate-cmd", "true", "--stop-timeout", "1s", "--", *app]
    if mode == "pid1":
        p = Pid1(argv, clean_env(DATABASE_URL=url))
    else:
        argv.insert(1, "--init")
        p = subprocess.Popen(argv, env=clean_env(DATABASE_URL=url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for_file(ready)
    (p.kill if mode == "pid1" else p.send_signal)(signal.SIGTERM)
    if mode == "pid1":
        code, _, err = p.wait()
    else:
        _, err = p.communicate(timeout=30)
        code = p.returncode
    assert code == 128 + signal.SIGKILL, err
    (kill,) = [e for e in events(err) if e["event"] == "run.kill"]
    # The app is not a leftover; the python process is, with its `sleep`-free loop; its zombie
    # child is not; the app's own `sleep 0.1` may or may not be running at that moment.
    assert kill["signal"] == "SIGKILL" and kill["app"] is True, kill
    assert kill["processes"] in (1, 2), kill


# --- job control outside PID 1 --------------------------------------------------------------

JOB_APP = r"""
import os, signal, sys
signal.signal(signal.SIGCONT, lambda *a: print("app-continued", flush=True))
open(sys.argv[1], "w").write(str(os.getpid()))
print("app-ready", flush=True)
for line in sys.stdin:
    print("app-read:" + line.strip(), flush=True)
    if line.strip() == "quit":
        sys.exit(7)
"""


class Terminal:
    """An interactive bash on a pseudo-terminal: what a person at a shell prompt has."""

    def __init__(self, env):
        import pty
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], {**env, "PS1": "$ ", "TERM": "dumb"})
        self.buf = b""
        self.expect(r"\$ ")

    def send(self, text):
        os.write(self.fd, text.encode())

    def expect(self, pattern, timeout=20):
        import re
        import select
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern.encode(), self.buf)
            if m:
                seen, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return seen.decode(errors="replace")
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.buf += os.read(self.fd, 65536)
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} never appeared on the terminal: {self.buf[-2000:]!r}")

    def foreground(self):
        return os.tcgetpgrp(self.fd)

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal(url):
    t = Terminal(clean_env(DATABASE_URL=url))
    yield t
    t.close()


def state_of(pid):
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_ctrl_z_stops_app_and_supervisor_and_fg_resumes_both(terminal, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(JOB_APP)
    pidfile = tmp_path / "pid"
    terminal.send(f"{binary()} --init --migrate-cmd true -- {PYTHON} {app} {pidfile}\n")
    terminal.expect("app-ready")
    app_pid = int(pidfile.read_text())
    assert terminal.foreground() == app_pid  # the app reads the terminal
    terminal.send("\x1a")  # Ctrl-Z
    terminal.expect(r"Stopped.*migrate-then-run[^\n]*\n[^$]*\$ ")  # the shell has its prompt back
    assert state_of(app_pid) == "T"
    assert terminal.foreground() == terminal.pid
    terminal.send("fg\n")
    terminal.expect("app-continued")
    terminal.send("hello\n")  # the app has the terminal again
    terminal.expect("app-read:hello")
    terminal.send("quit\n")
    terminal.send("echo status=$?\n")
    terminal.expect("status=7")


def test_init_started_in_the_background_leaves_the_terminal_alone(terminal, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(JOB_APP)
    pidfile = tmp_path / "pid"
    terminal.send(f"{binary()} --init --migrate-cmd true -- {PYTHON} {app} {pidfile} &\n")
    terminal.expect("app-ready")
    app_pid = int(pidfile.read_text())
    assert terminal.foreground() == terminal.pid  # still the shell's
    terminal.send("echo shell-$((40 + 2))\n")
    terminal.expect("shell-42")
    # Reading the terminal from the background stops the app, and the job with it.
    supervisor_pid = int(pathlib.Path(f"/proc/{app_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    deadline = time.monotonic() + 15
    while state_of(app_pid) != "T" or state_of(supervisor_pid) != "T":  # what bash reports as Stopped
        assert time.monotonic() < deadline, "the job never stopped for the app's terminal read"
        time.sleep(0.02)
    terminal.send("fg\n")
    terminal.expect("app-continued")
    assert terminal.foreground() != terminal.pid
    terminal.send("quit\n")
    terminal.send("echo status=$?\n")
    terminal.expect("status=7")
    assert not pathlib.Path(f"/proc/{app_pid}").exists() or state_of(app_pid) == "Z"


def test_supervisor_shows_as_migrate_then_run(url):
    """After the re-exec through /proc/self/exe, ps, pgrep and podman top see the name any
    start of the binary has (the kernel keeps its first 15 bytes), not "exe"."""
    show = [PYTHON, "-c", "import os; p = os.getppid(); print(open(f'/proc/{p}/comm').read().strip()); "
            "print(os.path.basename(os.readlink(f'/proc/{p}/exe')))"]
    r = subprocess.run([binary(), "--init", "--migrate-cmd", "true", "--", *show],
                       env=clean_env(DATABASE_URL=url), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    comm, exe = r.stdout.split()
    assert comm == "migrate-then-run"[:15], comm
    assert exe == pathlib.Path(binary()).name
    ps = subprocess.run(["ps", "-o", "comm=", "-p", str(os.getpid())], capture_output=True, text=True)
    assert ps.returncode == 0  # ps reads the same comm field


# --- --user ---------------------------------------------------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the tool to start as root")

# The app reports who it is; the migration command records who it ran as.
WHO = [PYTHON, "-c", "import os; print(os.getuid(), os.getgid(), sorted(os.getgroups()), os.environ.get('HOME'))"]


def groups_of(name):
    import grp
    import pwd
    pw = pwd.getpwnam(name)
    return pw, sorted({pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem})


@as_root
@pytest.mark.parametrize("mode", ["--init", "--no-init"])
def test_user_runs_the_app_as_that_user_and_the_migration_as_root(mode, url, tmp_path):
    pw, groups = groups_of("postgres")  # Debian's postgres user is also in ssl-cert
    assert len(groups) >= 2, groups
    who_migrated = tmp_path / "migration-uid"
    r = subprocess.run([binary(), mode, "--user", "postgres",
                        "--migrate-cmd", f"sh -c 'id -u > {who_migrated}'", "--", *WHO],
                       env=clean_env(DATABASE_URL=url, HOME="/root"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(" ", 2)[:2] == [str(pw.pw_uid), str(pw.pw_gid)], r.stdout
    assert r.stdout.strip() == f"{pw.pw_uid} {pw.pw_gid} {groups} {pw.pw_dir}"
    assert who_migrated.read_text().strip() == "0"


@as_root
@pytest.mark.parametrize("spec,want", [
    ("12345:23456", "12345 23456 [23456] /"),   # ids without entries: exactly that group
    ("12345", "12345 0 [0] /"),                 # no entry, no group: group 0, as Docker
    ("nobody:postgres", None),                  # names; the group replaces nobody's own
])
def test_user_with_ids_and_groups(spec, want, url):
    if want is None:
        import grp
        import pwd
        want = f"{pwd.getpwnam('nobody').pw_uid} {grp.getgrnam('postgres').gr_gid} " \
               f"[{grp.getgrnam('postgres').gr_gid}] {pwd.getpwnam('nobody').pw_dir}"
    r = subprocess.run([binary(), "--user", spec, "--migrate-cmd", "true", "--", *WHO],
                       env=clean_env(DATABASE_URL=url), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want


@as_root
@pytest.mark.parametrize("args,words", [
    (["--user", "no-such-user-here"], "no user 'no-such-user-here'"),
    (["--user", "nobody:no-such-group"], "no group 'no-such-group'"),
    (["--user", ":0"], "expected USER or USER:GROUP"),
    (["--user", "nobody", "--migrate-only"], "--user: applies to the app"),
])
def test_user_mistakes_exit_64(args, words):
    r = subprocess.run([binary(), *args, "--migrate-cmd", "true", *([] if "--migrate-only" in args else ["--", "true"])],
                       env=clean_env(DATABASE_URL="postgresql://u@127.0.0.1:1/d"), capture_output=True, text=True)
    assert r.returncode == 64, r.stderr
    assert words in events(r.stderr)[-1]["msg"], r.stderr


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@as_root
def test_user_is_refused_unless_root():
    r = subprocess.run([binary(), "--user", "postgres", "--migrate-cmd", "true", "--", "true"],
                       env=clean_env(DATABASE_URL="postgresql://u@127.0.0.1:1/d"), capture_output=True,
                       text=True, preexec_fn=as_nobody, cwd="/")
    assert r.returncode == 64, r.stderr
    assert "needs the tool to start as root" in events(r.stderr)[-1]["msg"]


# --- --termination-log ------------------------------------------------------------------------

def test_termination_log_holds_the_failure_and_its_fix(pg, db, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "1_ok.sql").write_text("CREATE TABLE t (x int);\n")
    (sql / "2_bad.sql").write_text("-- a comment\nSELECT no_such_column FROM t;\n")
    log = tmp_path / "termination-log"
    r = subprocess.run([binary(), "--sql-dir", str(sql), "--termination-log", str(log), "--migrate-only"],
                       env=clean_env(DATABASE_URL=pg.url(db)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 70, r.stderr
    text = log.read_text()
    assert len(text.encode()) <= 4096
    assert text.startswith("migrate-then-run exited 70: a migration failed\n"), text
    failed = next(e for e in events(r.stderr) if e["event"] == "migrate.failed")
    assert f"migrate.failed: {failed['msg']}" in text, text  # the diagnosis, with its fix
    assert "2_bad.sql" in text and "sqlstate=42703" in text and "line=2" in text, text
    assert 'hint=""' not in text and "exit_code=" not in text  # nothing empty, the code once
    assert pg.password not in text


def test_termination_log_for_a_configuration_error_and_none_for_success(pg, db, tmp_path):
    log = tmp_path / "termination-log"
    r = subprocess.run([binary(), "--wait-timeout", "soon", "--migrate-cmd", "true", "--", "true"],
                       env=clean_env(DATABASE_URL=pg.url(db), MTR_TERMINATION_LOG=str(log)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 64
    assert log.read_text().startswith("migrate-then-run exited 64: usage or configuration error\n"
                                      "config.invalid: --wait-timeout: expected a duration")
    log.unlink()
    # Success, and the app's own failure, are not ours to report: no file.
    for app, code in (["true"], 0), (["sh", "-c", "exit 3"], 3):
        r = subprocess.run([binary(), "--termination-log", str(log), "--migrate-cmd", "true", "--", *app],
                           env=clean_env(DATABASE_URL=pg.url(db)), capture_output=True, text=True, timeout=60)
        assert r.returncode == code, r.stderr
        assert not log.exists()
    # Not a regular file: refused, and said so, without blocking on it.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = subprocess.run([binary(), "--termination-log", str(fifo), "--wait-timeout", "soon", "--", "true"],
                       env=clean_env(DATABASE_URL=pg.url(db)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 64 and events(r.stderr)[-1]["event"] == "termination.unwritable", r.stderr
