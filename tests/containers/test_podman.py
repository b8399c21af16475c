"""The static binary in a real OCI runtime (podman + runc from Debian): stops as podman stop
does them, beside tini; orphans; health checks; holding and SIGHUP; a restart policy against a
failing migration; read-only and non-root containers; --user; the termination log."""
import json
import os
import pathlib
import shutil
import stat
import time

import pytest

from conftest import record

STOP_CASES = {"cooperative": 0, "ignores-sigterm": 137, "leaves-a-child": 0}
STATUS = "/tmp/mtr.status"
HEALTH = json.dumps(["migrate-then-run", "--health", "--status-file", STATUS])


def env_args(env):
    return [a for k, v in env.items() for a in ("-e", f"{k}={v}")]


def start(podman, name, args, env, opts=(), image=None):
    """A detached container; backups off unless the test says otherwise (the command sources
    count as pending at every start, and the app image has pg_dump)."""
    env = {"MTR_BACKUP": "off", **env}
    env = {k: v for k, v in env.items() if v is not None}
    podman.run("run", "--detach", "--name", name, "--pull=never", "--network=host", *opts,
               *env_args(env), image or podman.app, *args)


def exit_code(podman, name):
    return int(podman.inspect(name, "{{.State.ExitCode}}"))


def wait_exited(podman, name, timeout=120):
    deadline = time.monotonic() + timeout
    while podman.inspect(name, "{{.State.Status}}") != "exited":
        assert time.monotonic() < deadline, f"{name} still runs:\n{podman.logs(name)}"
        time.sleep(0.1)
    return exit_code(podman, name)


def named(events, event, **fields):
    return [e for e in events if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


@pytest.mark.parametrize("case", STOP_CASES)
@pytest.mark.parametrize("init", ["ours", "tini"])
def test_podman_stop(podman, pg, db, name, init, case):
    """podman stop (SIGTERM, SIGKILL after 10 s): ours ends every case itself, with the app's
    own status, inside podman's 10 s; tini's figures beside it."""
    n = name()
    app = ["sh", f"/app/{case}.sh"]
    if init == "ours":
        start(podman, n, ["--migrate-cmd", "true", "--", *app], {"DATABASE_URL": pg.url(db)})
    else:
        start(podman, n, ["--", *app], {}, opts=["--entrypoint", "/usr/bin/tini"])
    podman.wait_for_log(n, "app-ready")
    t0 = time.monotonic()
    r = podman.run("stop", "--time", "10", n)
    elapsed = time.monotonic() - t0
    code = exit_code(podman, n)
    runtime_killed = "resorting to SIGKILL" in r.stderr
    record("stop", f"{case}, {init}", f"exit {code} after {elapsed:.2f} s" + (", killed by podman" if runtime_killed else ""))
    if init != "ours":
        return
    assert code == STOP_CASES[case], podman.logs(n)
    assert not runtime_killed, r.stderr  # our SIGKILL, our exit code, our last lines
    ev = podman.events(n)
    assert named(ev, "run.signal", signal="SIGTERM")
    if case == "ignores-sigterm":
        assert named(ev, "run.kill", signal="SIGKILL", app=True, grace_ms=8000), ev[-3:]
    if case == "leaves-a-child":
        assert named(ev, "run.exit", status=0, killed=False)
        (term,) = named(ev, "run.kill", signal="SIGTERM")
        assert term["grace_ms"] < 8000 - 5000, term  # the rest of the budget, not a new one
        assert named(ev, "run.kill", signal="SIGKILL", app=False)


def test_orphans_are_reaped_by_the_tool_as_pid_1(podman, pg, db, name):
    n = name()
    start(podman, n, ["--migrate-cmd", "true", "--", "sh", "/app/orphans.sh"], {"DATABASE_URL": pg.url(db)})
    assert wait_exited(podman, n) == 0, podman.logs(n)
    assert "zombies=0" in podman.logs(n)


def health(podman, name):
    r = podman.run("healthcheck", "run", name, check=False)
    return r.returncode


def test_healthcheck_while_waiting(podman, name):
    from conftest import e2e
    n = name()
    url = f"postgresql://app:pw@127.0.0.1:{e2e.free_port()}/app"  # nothing listens there
    start(podman, n, ["--migrate-cmd", "true", "--", "sleep", "1000"],
          {"DATABASE_URL": url, "MTR_STATUS_FILE": STATUS, "MTR_WAIT_TIMEOUT": "10m"},
          opts=["--health-cmd", HEALTH, "--health-interval", "0"])
    podman.wait_for_log(n, '"event":"wait.waiting"')
    assert health(podman, n) == 1
    assert json.loads(podman.run("exec", n, "cat", STATUS).stdout)["state"] == "waiting"


def test_healthcheck_holding_then_sighup_then_running(podman, pg, db, name, tmp_path):
    """A migration that fails until an operator fixes its cause: the container holds (alive,
    unhealthy, app not started); `podman kill -s HUP` retries at once, and then it runs."""
    n = name()
    os.chmod(tmp_path, 0o777)
    start(podman, n, ["--migrate-cmd", "sh -c 'test -e /work/fixed'", "--", "sh", "-c", "echo app-started; exec sleep 1000"],
          {"DATABASE_URL": pg.url(db), "MTR_STATUS_FILE": STATUS},
          opts=["--health-cmd", HEALTH, "--health-interval", "0", "-v", f"{tmp_path}:/work"])
    podman.wait_for_log(n, '"event":"failure.hold"')
    assert health(podman, n) == 1
    assert "app-started" not in podman.logs(n)
    (tmp_path / "fixed").touch()
    podman.run("kill", "--signal", "HUP", n)
    podman.wait_for_log(n, "app-started")
    assert named(podman.events(n), "failure.retry", signal="SIGHUP")
    assert health(podman, n) == 0
    assert podman.inspect(n, "{{.RestartCount}}") == "0"


def sessions(pg, dbname):
    return int(pg.psql("postgres", f"SELECT sessions FROM pg_stat_database WHERE datname = '{dbname}'") or 0)


def test_restart_always_with_a_migration_that_always_fails(podman, pg, name):
    """--restart=always for 60 s with a migration that can never succeed: the shell entrypoint
    restarts in a loop and connects each time; ours with --on-failure=exit pauses longer each
    time before exiting; with hold it never exits."""
    window = 60
    policies = {
        "shell": (["-c", 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f /app/failing-sql/1_broken.sql && exec sleep 1000'],
                  ["--entrypoint", "sh"]),
        "ours, exit": (["--sql-dir", "/app/failing-sql", "--on-failure=exit", "--", "sleep", "1000"], []),
        "ours, hold": (["--sql-dir", "/app/failing-sql", "--", "sleep", "1000"], []),
    }
    dbs = {}
    for policy, (args, opts) in policies.items():
        dbname = "restart_" + policy.replace(", ", "_")
        pg.psql("postgres", f"DROP DATABASE IF EXISTS {dbname}")
        pg.psql("postgres", f"CREATE DATABASE {dbname}")
        dbs[policy] = (dbname, name("-" + dbname.replace("_", "-")))
    before = {p: sessions(pg, d) for p, (d, _) in dbs.items()}
    for policy, (args, opts) in policies.items():
        dbname, n = dbs[policy]
        start(podman, n, args, {"DATABASE_URL": pg.url(dbname), "MTR_BACKUP": "off"},
              opts=["--restart=always", *opts])
    time.sleep(window)  # the measuring window itself
    counts = {}
    for policy, (dbname, n) in dbs.items():
        counts[policy] = int(podman.inspect(n, "{{.RestartCount}}"))
        podman.remove(n)
    time.sleep(2)  # the servers' session counters are flushed as the sessions end
    conns = {p: sessions(pg, d) - before[p] for p, (d, _) in dbs.items()}
    for policy in policies:
        record("restart=always, 60 s", policy, f"{counts[policy]} restarts, {conns[policy]} connections")
    assert counts["ours, hold"] == 0 and conns["ours, hold"] <= 8, (counts, conns)  # one run: no reconnecting
    assert counts["ours, exit"] <= 3, counts
    assert counts["shell"] > 5 * max(1, counts["ours, exit"]), counts
    assert conns["shell"] > 2 * conns["ours, exit"], conns


def test_read_only_non_root_backs_up_to_the_volume(podman, pg, db, name):
    vol = name("-backups")
    podman.run("volume", "create", vol)
    n = name()
    opts = ["--read-only", "--user", "10001:10001", "--tmpfs", "/tmp", "-v", f"{vol}:/var/backups/migrate-then-run"]
    start(podman, n, ["--sql-dir", "/app/sql", "--migrate-only"],
          {"DATABASE_URL": pg.url(db), "MTR_BACKUP_DIR": "/var/backups/migrate-then-run", "MTR_BACKUP": None},
          opts=opts)
    assert wait_exited(podman, n) == 0, podman.logs(n)
    (done,) = named(podman.events(n), "backup.done")
    mountpoint = pathlib.Path(podman.run("volume", "inspect", vol, "--format", "{{.Mountpoint}}").stdout.strip())
    dump = mountpoint / pathlib.PurePath(done["path"]).name
    st = dump.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (10001, 0o600)
    assert pg.psql(db, "SELECT to_regclass('public.containers_ok') IS NOT NULL") == "t"
    podman.run("rm", n)
    podman.run("volume", "rm", vol)


def test_read_only_non_root_without_a_volume_says_to_mount_one(podman, pg, db, name):
    n = name()
    start(podman, n, ["--sql-dir", "/app/sql", "--migrate-only"],
          {"DATABASE_URL": pg.url(db), "MTR_FAILURE_BACKOFF": "0", "MTR_BACKUP": None},
          opts=["--read-only", "--user", "10001:10001", "--tmpfs", "/tmp"])
    assert wait_exited(podman, n) == 73, podman.logs(n)
    (failed,) = named(podman.events(n), "backup.failed")
    assert "as uid 10001: Read-only file system" in failed["msg"], failed
    assert "mount a volume and set MTR_BACKUP_DIR" in failed["msg"], failed


def test_from_scratch_read_only_non_root(podman, pg, db, name, tmp_path):
    """The static binary alone in an image (FROM scratch), read-only, as a uid without a passwd."""
    sql = tmp_path / "sql"
    shutil.copytree(pathlib.Path(__file__).parent / "app" / "sql", sql)
    os.chmod(tmp_path, 0o755)
    n = name()
    start(podman, n, ["--sql-dir", "/sql", "--migrate-only"], {"DATABASE_URL": pg.url(db), "MTR_BACKUP": None},
          opts=["--read-only", "--user", "10001:10001", "-v", f"{sql}:/sql:ro"], image=podman.scratch)
    assert wait_exited(podman, n) == 0, podman.logs(n)
    assert named(podman.events(n), "backup.off")  # no pg_dump in that image: said, not failed
    assert pg.psql(db, "SELECT to_regclass('public.containers_ok') IS NOT NULL") == "t"


def test_user_migrates_as_root_runs_the_app_as_the_user_and_shows_in_podman_top(podman, pg, db, name, tmp_path):
    n = name()
    os.chmod(tmp_path, 0o777)
    start(podman, n, ["--user", "app", "--migrate-cmd", "sh -c 'id -u > /work/migration-uid'", "--",
                      "sh", "-c", "sh /app/who.sh; echo app-ready; exec sleep 1000"],
          {"DATABASE_URL": pg.url(db)}, opts=["--user", "0", "-v", f"{tmp_path}:/work"])
    out = podman.wait_for_log(n, "app-ready")
    assert "uid=10001 gid=10001 groups=10001,2000 home=/app" in out, out
    assert (tmp_path / "migration-uid").read_text().strip() == "0"
    top = podman.run("top", n, "pid", "user", "comm", "args").stdout.splitlines()
    rows = [line.split(None, 3) for line in top[1:]]
    (pid1,) = [r for r in rows if r[0] == "1"]
    assert pid1[1] == "root" and pid1[2] == "migrate-then-ru" and pid1[3].startswith("migrate-then-run -- sh"), top
    assert any(r[1] == "app" and r[2] == "sleep" for r in rows), top


def test_default_termination_log(podman, pg, db, name, tmp_path):
    """Kubernetes mounts a file at /dev/termination-log: a failure's summary lands there."""
    log = tmp_path / "termination-log"
    log.touch()
    n = name()
    start(podman, n, ["--migrate-cmd", "sh -c 'echo it broke >&2; exit 3'", "--migrate-only"],
          {"DATABASE_URL": pg.url(db), "MTR_FAILURE_BACKOFF": "0"}, opts=["-v", f"{log}:/dev/termination-log"])
    assert wait_exited(podman, n) == 70, podman.logs(n)
    text = log.read_text()
    assert text.startswith("migrate-then-run exited 70: a migration failed\nmigrate.failed: "), text
    assert len(text.encode()) <= 4096 and pg.password not in text
