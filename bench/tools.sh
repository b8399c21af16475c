#!/usr/bin/env bash
# Benchmark: a start with nothing to migrate, per migration tool that runs here: migrate-then-run
# --tool NAME (its native reader, or the fast path: the tool is not started) versus the tool's
# own no-op run (dbmate migrate, manage.py migrate, knex migrate:latest, node-pg-migrate up,
# typeorm migration:run, sequelize-cli db:migrate, sqitch deploy, yoyo apply).
# Needs make tools-deps (the npm tools) and scripts/deps.sh (Django, sqitch, yoyo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PYTHON=/usr/bin/python3
RUNS="${RUNS:-7}"
TOOLS_DIR="${MTR_TOOLS_DIR:-$ROOT/build/tools}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
[ -d "$TOOLS_DIR/node_modules" ] || bench_skip "the npm migration tools are not installed: run make tools-deps"
bench_database_url

PYTHONPATH="$ROOT/bench:$ROOT/tests/e2e" MTR_TOOLS_DIR="$TOOLS_DIR" PYTHONDONTWRITEBYTECODE=1 \
    "$PYTHON" - "$BIN" "$url" "$RUNS" <<'EOF'
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from report import record
import test_tools_cli as cli
from tooling import DBMATE, NODE_BIN, have

bin_, url, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
PSQL = "/usr/lib/postgresql/15/bin/psql"
PYTHON = "/usr/bin/python3"


def dbmate(proj, n):
    d = proj / "db" / "migrations"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"2024010100000{n}_t{n}.sql").write_text(f"-- migrate:up\nCREATE TABLE t{n} (id int);\n-- migrate:down\nDROP TABLE t{n};\n")


# tool, its program, project builder, its own no-op command, target ratio
TOOLS = [
    ("dbmate", str(DBMATE), dbmate, [str(DBMATE), "--no-dump-schema", "migrate"], 0.2),
    # the same, against dbmate as npm installs it: its Node launcher in front of the binary
    ("dbmate", str(DBMATE), dbmate, [str(NODE_BIN / "dbmate"), "--no-dump-schema", "migrate"], 0.2),
    ("django", PYTHON, cli.django, [PYTHON, "manage.py", "migrate", "--noinput"], 0.1),
    ("knex", "knex", cli.knex, [str(NODE_BIN / "knex"), "migrate:latest"], 0.1),
    ("node-pg-migrate", "node-pg-migrate", cli.node_pg_migrate, [str(NODE_BIN / "node-pg-migrate"), "up"], 0.1),
    ("typeorm", "typeorm", cli.typeorm, [str(NODE_BIN / "typeorm"), "migration:run", "-d", "data-source.js"], 0.1),
    ("sequelize", "sequelize-cli", cli.sequelize, [str(NODE_BIN / "sequelize-cli"), "db:migrate"], 0.1),
    ("sqitch", "sqitch", cli.sqitch, ["sqitch", "deploy"], None),
    ("yoyo", "yoyo", cli.yoyo, None, 0.1),
]


def db_url(name, sslmode):
    u = urlunsplit(urlsplit(url)._replace(path="/" + name))
    return u + ("?sslmode=disable" if sslmode else "")


def env_for(u):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("MTR_", "PG", "DATABASE_URL")) and k != "PYTHONPATH"}
    e.update(DATABASE_URL=u, MTR_LOG_LEVEL="warn", NODE_PATH=str(NODE_BIN.parent),
             PATH=f"{DBMATE.parent}:{NODE_BIN}:/usr/local/bin:/usr/bin:/bin")
    return e


def timed(cmd, cwd, env):
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    elapsed = time.perf_counter_ns() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        sys.exit(f"bench: failed with exit status {r.returncode}: {' '.join(cmd[:6])} ...")
    return elapsed


print(f"{'tool':<16} {'ours ms':>8} {'tool ms':>8} {'ratio':>7} {'target':>7} {'runs':>5}")
tmp = Path(tempfile.mkdtemp(prefix="mtr-bench-tools-"))
for i, (tool, program, build, noop, target) in enumerate(TOOLS):
    if not have(program if tool != "dbmate" else "dbmate"):
        print(f"{tool:<16} skipped: {program} is not installed")
        continue
    name = f"mtr_bench_tools_{os.getpid()}_{i}"
    subprocess.run([PSQL, "-qX", url, "-c", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
    u = db_url(name, tool == "dbmate")
    env = env_for(u)
    proj = tmp / f"{tool}-{i}"
    proj.mkdir()
    for n in (1, 2, 3):
        build(proj, n)
    # the tool's own run gets the connection the way the preset hands it over
    p = urlsplit(u)
    nopass = urlunsplit(p._replace(netloc=f"{p.username}@{p.hostname}:{p.port}"))
    if noop is None:  # yoyo takes the URL as an argument: without its password, as the preset runs it
        noop = ["yoyo", "apply", "--batch", "--no-config-file", "--database", nopass, "migrations"]
        env["PGPASSWORD"] = p.password or ""
    if tool == "sqitch":
        env.update(SQITCH_TARGET=f"db:pg://{p.username}@{p.hostname}:{p.port}{p.path}",
                   SQITCH_PASSWORD=p.password or "")
    ours = [bin_, "--tool", tool, "--migrate-cwd", str(proj), "--python", PYTHON, "--", "/bin/true"]
    timed(ours, proj, env)  # the first start applies the three migrations through the tool
    for _ in range(2):
        timed(ours, proj, env), timed(noop, proj, env)
    samples = {"ours": [], "tool": []}
    for _ in range(runs):
        samples["ours"].append(timed(ours, proj, env))
        samples["tool"].append(timed(noop, proj, env))
    o = statistics.median(samples["ours"]) / 1e6
    t = statistics.median(samples["tool"]) / 1e6
    peer = " ".join([Path(noop[0]).name, *noop[1:3]]) + (" (npm launcher)" if tool == "dbmate" and ".bin" in noop[0] else "")
    label = tool + (" (npm)" if "npm launcher" in peer else "")
    print(f"{label:<16} {o:>8.1f} {t:>8.1f} {o / t:>6.3f}x {target if target else '-':>7} {runs:>5}")
    record(f"no-op start, --tool {label}, 3 migrations at head", o, peer, t, "ms", runs, target)
    subprocess.run([PSQL, "-qX", url, "-c", f"DROP DATABASE {name}"], stdout=subprocess.DEVNULL)
print("  ours: migrate-then-run --tool NAME --migrate-cwd PROJECT -- /bin/true (nothing pending)")
EOF
