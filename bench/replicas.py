#!/usr/bin/python3
"""32 replicas started at once on an empty database, directly (no pooler): how long after a
single run alone the last one has started its app. SQL (20 files) and Alembic (the example
project, three revisions). Each figure is the median of RUNS fresh databases (default 5); the
target is the single run alone plus 0.3 s, from the same run. The physical floor beside it: 32
of bench/floor.c (one connection and one query each) at once, against one alone: on a machine
with few cores, 32 connections at once (SCRAM on both sides) cost that much before any work.

    /usr/bin/python3 bench/replicas.py [BINARY]     (default: build/migrate-then-run)
"""
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import conftest  # noqa: E402  (the test harness: throwaway cluster, clean environment)
from report import record  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MTR_BIN", str(ROOT / "build" / "migrate-then-run"))
REPLICAS = 32
RUNS = int(os.environ.get("RUNS", "5"))
MARGIN_S = 0.3
FLOOR = str(ROOT / "build" / "bench" / "floor")


def source_args(kind, work):
    if kind == "sql":
        d = work / "m"
        d.mkdir()
        for i in range(1, 21):
            (d / f"{i:02d}_t{i}.sql").write_text(f"CREATE TABLE t{i} (id int PRIMARY KEY, v text);\n")
        return ["--sql-dir", str(d)]
    return ["--alembic-ini", str(conftest.EXAMPLE_INI), "--python", "/usr/bin/python3"]


def at_once(argv, env, n):
    """Seconds from launching n copies of argv at once (posix_spawn, output to /dev/null) until
    the last has ended; every exit status must be 0."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    acts = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    t0 = time.perf_counter()
    pids = [os.posix_spawn(argv[0], argv, env, file_actions=acts) for _ in range(n)]
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    elapsed = time.perf_counter() - t0
    os.close(devnull)
    if any(codes):
        sys.exit(f"bench: {argv[0]} exited with {sorted(set(codes))}")
    return elapsed


def started(cluster, db, args, n):
    """n replicas at once on db, each exec'ing /bin/true as its app."""
    env = conftest.clean_env(DATABASE_URL=cluster.url(db), MTR_BACKUP="off")
    return at_once([BIN, *args, "--", "/bin/true"], env, n)


def floor(cluster, n):
    env = dict(conftest.clean_env(), PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER="postgres",
               PGPASSWORD=cluster.password, PGDATABASE="postgres")
    return at_once([FLOOR], env, n)


def main():
    subprocess.run(["make", "-s", "-C", str(ROOT), "build/bench/floor"], check=True, stdout=sys.stderr)
    cluster = conftest.Cluster()
    cluster.start()
    serial = iter(range(1, 1000))
    print(f"binary: {BIN}; {REPLICAS} replicas at once on an empty database, directly; {RUNS} runs each")
    print(f"{'source':<8} {'alone s':>8} {'32 at once s':>13} {'after alone s':>14} {'target s':>9}")
    try:
        f1 = statistics.median(floor(cluster, 1) for _ in range(RUNS))
        f32 = statistics.median(floor(cluster, REPLICAS) for _ in range(RUNS))
        print(f"{'floor':<8} {f1:>8.3f} {f32:>13.3f} {f32 - f1:>14.3f} {'':>9}   (bench/floor.c: connect + 1 query)")
        for kind in ("sql", "alembic"):
            work = pathlib.Path(tempfile.mkdtemp(prefix="mtr-bench-"))
            args = source_args(kind, work)
            alone, many = [], []
            for _ in range(RUNS):
                for n, out in ((1, alone), (REPLICAS, many)):
                    db = f"r{next(serial)}"
                    cluster.psql("postgres", f"CREATE DATABASE {db}")
                    out.append(started(cluster, db, args, n))
            a, m = statistics.median(alone), statistics.median(many)
            print(f"{kind:<8} {a:>8.3f} {m:>13.3f} {m - a:>14.3f} {MARGIN_S:>9.3f}")
            record(f"{REPLICAS} replicas at once, {kind}: last app start", m, "one run alone", a, "s", RUNS,
                   round((a + MARGIN_S) / a, 3))
            record(f"{REPLICAS} replicas at once, {kind}: beyond one alone", m - a,
                   f"{REPLICAS} floor programs at once, beyond one", f32 - f1, "s", RUNS)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
