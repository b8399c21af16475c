"""Secret audit (`make test-secrets`, MTR_SECRET_AUDIT=1): the whole end-to-end suite runs once
while every byte the tool writes is searched for the passwords it was given.

Searched:
- stdout and stderr of every process the tests start that involves the binary (directly, under
  `unshare` or `chroot`), also where a test sends them to /dev/null or does not capture them;
- the files the tool was told to write: --status-file, --state-dir, --backup-dir (and their
  MTR_* variables), after each test;
- the tool's tables (mtr_*) in every database of every test cluster, and the server logs
  (statements the tool sent that the server logged), before each cluster is removed;
- the argv of every process, read from /proc/PID/cmdline by a sampler thread every few ms and
  at once when the kernel reports an exec (netlink process events, where available);
- whatever a test hands to audit(label, data) (webhook payloads, uploads).

What is not a finding, and why:
- processes that are not descendants of a tool run: the harness's own psql, pgtmp.sh and
  pg_restore, which take the password on their command line by the test's choice;
- an argument of a process under a tool run that the test itself gave the tool, verbatim or as
  a part (the tool's own argv, the app's argv after `--`, the words of --migrate-cmd): that is
  the user's command line, passed on, not something the tool added;
- the stdout of a run whose test is marked secret_audit_exempt("stdout", reason): there the app
  (which inherits stdout) prints its own environment on purpose.
Nothing else is exempt. Each search is for the session password and, per run, for the password
the run was configured with (a deliberately wrong one included), when it is long enough to be
unambiguous."""
import os
import pathlib
import re
import socket
import struct
import subprocess
import tempfile
import threading
from urllib.parse import unquote, urlsplit

ENABLED = os.environ.get("MTR_SECRET_AUDIT") == "1"
TOOL_NAME = "migrate-then-run"
MIN_SECRET = 8  # shorter configured passwords ("p", "wrong") would match ordinary text
OUTPUT_OPTIONS = {"--status-file": "MTR_STATUS_FILE", "--state-dir": "MTR_STATE_DIR",
                  "--backup-dir": "MTR_BACKUP_DIR"}


def _starttime(pid):
    """(start time, parent pid) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[19]), int(fields[1])


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _masked(text, secrets):
    for s in secrets:
        text = text.replace(s, "<SECRET>")
    return text


def url_password(value):
    """The password in a postgresql:// URL or a conninfo string, else None."""
    if not value:
        return None
    if "://" in value:
        try:
            pw = urlsplit(value).password
        except ValueError:
            return None
        return unquote(pw) if pw else None
    m = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", value)
    return m.group(1).strip("'") if m else None


class ToolRun:
    """One process a test started that involves the binary."""

    def __init__(self, argv, env, test):
        self.argv = argv
        self.test = test
        self.pid = None
        self.start = None
        self.files = {}      # stream -> temp file standing in for DEVNULL or an inherited fd
        self.captured = {}   # stream -> bytes returned by communicate()
        self.secrets = set()
        env = env if env is not None else os.environ
        urls = [env.get("MTR_DATABASE_URL"), env.get("DATABASE_URL")]
        passwords = [env.get("PGPASSWORD")]
        for var, into in (("MTR_DATABASE_URL_FILE", urls), ("DATABASE_URL_FILE", urls),
                          ("PGPASSWORD_FILE", passwords)):
            try:
                into.append(pathlib.Path(env[var]).read_text().rstrip("\n"))
            except (KeyError, OSError, UnicodeDecodeError):
                pass
        self.outputs = set()
        for i, a in enumerate(argv):
            name, eq, value = a.partition("=")
            if not eq and i + 1 < len(argv):
                value = argv[i + 1]
            if name == "--database-url":
                urls.append(value)
            if name in OUTPUT_OPTIONS:
                self.outputs.add(value)
        for var in OUTPUT_OPTIONS.values():
            if env.get(var):
                self.outputs.add(env[var])
        for pw in passwords + [url_password(u) for u in urls]:
            if pw and len(pw) >= MIN_SECRET:
                self.secrets.add(pw)

    def output(self):
        """(stream, bytes) of everything the run wrote to stdout and stderr."""
        for stream, f in self.files.items():
            f.seek(0)
            yield stream, f.read()
            f.close()
        for stream, data in self.captured.items():
            yield stream, data
        self.files, self.captured = {}, {}


class Audit:
    def __init__(self, password):
        self.secrets = {password}
        self.hits = []          # (where, test, excerpt)
        self.excused = {}       # reason -> sightings not counted
        self.scanned = {}       # kind -> bytes searched
        self.test = "(session)"
        self.runs = []          # ToolRun of the current test
        self.roots = {}         # (pid, start) -> ToolRun, for the whole session
        self.lock = threading.RLock()  # the sampler and the exec listener share procs
        self.procs = {}         # pid -> [start, ppid, last cmdline]
        self.seen_cmdlines = 0
        self.exec_events = 0
        self.exec_missed = 0
        self.exec_missed_ours = {}  # of those, in a tool run's tree: parent's name -> count
        self.parents = {}       # pid -> parent pid, from fork events
        self.netlink = False
        self.stop = threading.Event()
        self.threads = []

    # --- searching ---------------------------------------------------------------------

    def scan(self, kind, label, data, secrets=(), exempt=None):
        """Searches data for the session password and the given secrets; records hits."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.scanned[kind] = self.scanned.get(kind, 0) + len(data)
        for s in self.secrets | set(secrets):
            i = data.find(s.encode())
            if i < 0:
                continue
            if exempt:
                self.excused[exempt] = self.excused.get(exempt, 0) + 1
                continue
            excerpt = data[max(0, i - 80):i + len(s) + 80].decode("utf-8", "replace")
            self._hit(label, self.test, _masked(excerpt, self.secrets | set(secrets)))

    def _hit(self, where, test, excerpt):
        if (where, test, excerpt) not in self.hits:  # the same argv seen twice, the same file
            self.hits.append((where, test, excerpt))

    def scan_path(self, kind, path, secrets=()):
        p = pathlib.Path(path)
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        for f in files:
            try:
                self.scan(kind, f"{kind} {f}", f.read_bytes(), secrets)
            except OSError:
                pass

    # --- tool runs -----------------------------------------------------------------------

    def involves_tool(self, argv, tool):
        return any(a == tool or os.path.basename(a) == TOOL_NAME for a in argv)

    def started(self, run):
        st = _starttime(run.pid)
        run.start = st[0] if st else None
        with self.lock:
            self.runs.append(run)
            if run.start is not None:
                self.roots[(run.pid, run.start)] = run

    def finish_test(self, exempt_stdout=None):
        """Searches what the current test's runs wrote: output, status, state and backups."""
        runs, self.runs = self.runs, []
        outputs = {}
        for run in runs:
            for stream, data in run.output():
                exempt = exempt_stdout if stream == "stdout" else None
                self.scan(stream, f"{stream} of {' '.join(run.argv)[:160]}", data, run.secrets,
                          exempt=f"app stdout: {exempt}" if exempt else None)
            for path in run.outputs:
                outputs.setdefault(path, set()).update(run.secrets)
        for path, secrets in sorted(outputs.items()):  # once each: several runs share a status file
            self.scan_path("files", path, secrets)

    # --- databases and server logs -------------------------------------------------------

    def scan_cluster(self, cluster):
        log = cluster.dir / "server.log"
        if log.exists():
            self.scan("server log", f"server log {log}", log.read_bytes())
        try:
            dbs = cluster.psql("postgres", "SELECT datname FROM pg_database WHERE datallowconn").split()
        except subprocess.CalledProcessError:
            return  # the server is not running: nothing to read
        for db in dbs:
            tables = cluster.psql(db, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                      "WHERE tablename LIKE 'mtr\\_%'").split()
            for t in tables:
                rows = cluster.psql(db, f"SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM {t} x")
                self.scan("database", f"database {db} table {t}", rows)

    # --- process argv ----------------------------------------------------------------------

    def _under_tool(self, pid, memo):
        """The tool run pid descends from (or is), else None."""
        chain = []
        run = None
        while pid > 1 and pid not in memo:
            e = self.procs.get(pid)
            if e is None:  # not sampled yet: a process that has just started
                st = _starttime(pid)
                if st is None:
                    break
                e = self.procs[pid] = [st[0], st[1], None]
            chain.append(pid)
            run = self.roots.get((pid, e[0]))
            if run:
                break
            pid = e[1]
        else:
            run = memo.get(pid)
        for p in chain:
            memo[p] = run
        return run

    def _check(self, pid, cmd, memo):
        with self.lock:
            args = [a.decode("utf-8", "replace") for a in cmd.split(b"\0")]
            run = self._under_tool(pid, memo)
            for s in self.secrets | (run.secrets if run else set()):
                bad = [a for a in args if s in a]
                if not bad:
                    continue
                if run is None:
                    self.excused["harness process argv"] = self.excused.get("harness process argv", 0) + 1
                elif all(any(a in given for given in run.argv) for a in bad):
                    self.excused["argv the test gave the tool"] = self.excused.get("argv the test gave the tool", 0) + 1
                else:
                    self._hit(f"argv of pid {pid} under {' '.join(run.argv)[:120]}", run.test,
                              _masked(" ".join(args), self.secrets | run.secrets))

    def _see(self, pid, memo):
        """Reads pid's argv if it is new, changed, or under a tool run; checks it."""
        e = self.procs.get(pid)
        if e is not None and self._under_tool(pid, memo) is None:
            return  # an old process outside any tool run: its argv was checked when first seen
        st = _starttime(pid)
        if st is None:
            return
        cmd = _cmdline(pid)
        if cmd is None:
            return
        if e is None or e[0] != st[0]:
            e = self.procs[pid] = [st[0], st[1], None]
        if cmd != e[2]:
            e[2] = cmd
            self.seen_cmdlines += 1
            self._check(pid, cmd, memo)

    def _sampler(self, interval):
        while not self.stop.is_set():
            memo = {}
            try:
                pids = [int(d.name) for d in os.scandir("/proc") if d.name.isdigit()]
            except OSError:
                pids = []
            live = set(pids)
            with self.lock:
                for pid in pids:
                    self._see(pid, memo)
                for pid in [p for p in self.procs if p not in live]:
                    del self.procs[pid]
            self.stop.wait(interval)

    def _exec_listener(self, sock):
        """Netlink process events: an exec is read at once, before a short process is gone."""
        while not self.stop.is_set():
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 16 + 20 + 24:
                continue
            what, = struct.unpack_from("=I", data, 36)
            if what == 1:  # PROC_EVENT_FORK: parent_pid, parent_tgid, child_pid, child_tgid
                _, parent, child, child_tgid = struct.unpack_from("=IIII", data, 36 + 16)
                if child == child_tgid:
                    with self.lock:
                        self.parents[child] = parent
                continue
            if what != 2:  # PROC_EVENT_EXEC
                continue
            pid, = struct.unpack_from("=I", data, 36 + 16)
            st, cmd = _starttime(pid), _cmdline(pid)
            with self.lock:
                self.exec_events += 1
                parent = self.parents.pop(pid, None)
                if st is None or not cmd:
                    self.exec_missed += 1
                    if parent and self._under_tool(parent, {}):
                        cmd = (self.procs.get(parent) or [0, 0, None])[2] or _cmdline(parent) or b"?"
                        name = os.path.basename(cmd.split(b"\0")[0]).decode("utf-8", "replace")
                        self.exec_missed_ours[name] = self.exec_missed_ours.get(name, 0) + 1
                    continue
                self.procs[pid] = [st[0], st[1], cmd]
                self.seen_cmdlines += 1
                self._check(pid, cmd, {})

    def _netlink(self):
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)  # NETLINK_CONNECTOR
            sock.bind((0, 1))  # CN_IDX_PROC
            listen = struct.pack("=I", 1)  # PROC_CN_MCAST_LISTEN
            cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(listen), 0) + listen
            sock.send(struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn)
            sock.settimeout(0.2)
            return sock
        except OSError:
            return None

    def start_sampling(self):
        sock = self._netlink()
        self.netlink = sock is not None
        self.threads = [threading.Thread(target=self._sampler, args=(0.005 if sock else 0.002,), daemon=True)]
        if sock:
            self.threads.append(threading.Thread(target=self._exec_listener, args=(sock,), daemon=True))
        for t in self.threads:
            t.start()

    def stop_sampling(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)

    # --- the report ------------------------------------------------------------------------

    def summary(self):
        ours = ", ".join(f"{k} {v}" for k, v in sorted(self.exec_missed_ours.items()))
        lines = ["secret audit: searched " + (", ".join(f"{k} {v} bytes" for k, v in sorted(self.scanned.items()))
                                            or "no output"),
                 f"secret audit: {len(self.roots)} tool runs; {self.seen_cmdlines} process argv read"
                 + (f", {self.exec_events} execs on this machine reported by the kernel ({self.exec_missed}"
                   f" ended before their argv could be read, {sum(self.exec_missed_ours.values())} of them"
                   f" under a tool run{', started by: ' + ours if ours else ''})"
                   if self.netlink else " (no netlink process events: sampling only)")]
        for reason, n in sorted(self.excused.items()):
            lines.append(f"secret audit: not counted ({reason}): {n} sightings")
        lines.append(f"secret audit: {len(self.hits)} hit(s)")
        for where, test, excerpt in self.hits:
            lines.append(f"  HIT in {where}\n      test: {test}\n      {excerpt!r}")
        return lines


def output_read(popen, stream, data):
    """Output a test read from a pipe itself rather than through communicate() (conftest.Tool):
    searched as the rest; does nothing outside the audit."""
    run = getattr(popen, "_audit_run", None)
    if run is not None and data:
        run.captured[stream] = run.captured.get(stream, b"") + data


def install(password, tool):
    """Starts the audit: Popen records every run of the tool; returns the Audit."""
    audit = Audit(password)
    real = subprocess.Popen

    class AuditedPopen(real):
        def __init__(self, args, *a, **kw):
            argv = [os.fsdecode(x) for x in args] if isinstance(args, (list, tuple)) else [os.fsdecode(args)]
            run = None
            if audit.involves_tool(argv, tool()):
                run = ToolRun(argv, kw.get("env"), audit.test)
                for stream in ("stdout", "stderr"):
                    # Nobody reads these: a file in their place sees the same bytes.
                    if kw.get(stream) in (None, subprocess.DEVNULL):
                        run.files[stream] = kw[stream] = tempfile.TemporaryFile()
            self._audit_run = run
            super().__init__(args, *a, **kw)
            if run:
                run.pid = self.pid
                audit.started(run)

        def communicate(self, *a, **kw):
            out, err = super().communicate(*a, **kw)
            run = self._audit_run
            if run:
                for stream, data in (("stdout", out), ("stderr", err)):
                    if data:
                        data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
                        run.captured[stream] = run.captured.get(stream, b"") + data
            return out, err

    subprocess.Popen = AuditedPopen
    audit.start_sampling()
    return audit
