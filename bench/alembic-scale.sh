#!/usr/bin/env bash
# Benchmark: Alembic planning at scale. Two generated projects of 5,000 revisions, both at head:
# a linear chain, and a graph with merges, a second root merged in, labelled long-lived branches
# and depends_on (on ids and on branch labels). Each no-op start is compared with the no-op start
# of the 50-revision fixture in the same run (target: within 1.3x), and --check on the graph with
# `python3 -m alembic heads` on it (target: at least 5x faster). The floor under the difference:
# bench/read-floor.c listing and reading the chain's files on as many threads as ours.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
PSQL=/usr/lib/postgresql/15/bin/psql
PYTHON=/usr/bin/python3
INI50="$ROOT/tests/fixtures/alembic/long50/alembic.ini"
RUNS="${RUNS:-15}"
HEADS_RUNS="${HEADS_RUNS:-3}"
SIZE="${SIZE:-5000}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
[ -x "$PSQL" ] || { echo "bench: $PSQL is missing; apt-get install postgresql-client-15" >&2; exit 1; }
"$PYTHON" -c 'import alembic, sqlalchemy, psycopg2' 2>/dev/null || {
    echo "bench: $PYTHON cannot import alembic, sqlalchemy and psycopg2; apt-get install python3-alembic python3-psycopg2" >&2
    exit 1
}
for n in "$RUNS" "$HEADS_RUNS" "$SIZE"; do
    case "$n" in ''|*[!0-9]*|0) echo "bench: RUNS, HEADS_RUNS and SIZE must be positive integers" >&2; exit 1 ;; esac
done

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

work="$(mktemp -d -t mtr-bench-alembic-scale.XXXXXX)"
suffix="$$_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
dbs=("mtr_bench_a50_$suffix" "mtr_bench_chain_$suffix" "mtr_bench_graph_$suffix")
cleanup() {
    for d in "${dbs[@]}"; do "$PSQL" "$url" -qX -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    trap cleanup EXIT
else  # cluster.bash's EXIT trap removes the cluster; the generated projects go with it
    trap 'rm -rf "$work"; "$ROOT/scripts/pgtmp.sh" down "$bench_tmp" || true' EXIT
fi
for d in "${dbs[@]}"; do "$PSQL" "$url" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $d" >/dev/null; done

# The projects: the example's env.py, generated revision files in the default template, and the
# rows the version table holds at head (the heads nothing depends on), stamped directly.
"$PYTHON" - "$ROOT" "$work" "$SIZE" <<'EOF'
import os, sys
root, work, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
TEMPLATE = '''"""{msg}

Revision ID: {rev}
Revises: {revises}
Create Date: 2024-05-01 00:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = {rev!r}
down_revision = {down}
branch_labels = {labels}
depends_on = {deps}


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''

def rid(n):
    return "%012x" % ((n * 2654435761 + 0x5bd1e995) % (1 << 48))

def write(name, revs):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "versions"))
    with open(os.path.join(d, "alembic.ini"), "w") as f:
        f.write("[alembic]\nscript_location = %s/docker/example/migrations\n"
                "version_locations = %%(here)s/versions\npath_separator = os\n" % root)
    children, depended = {}, set()
    for i, (rev, down, labels, deps) in enumerate(revs):
        for p in down:
            children.setdefault(p, []).append(rev)
        depended.update(deps)
        fmt = lambda v: "None" if not v else repr(v[0]) if len(v) == 1 else repr(tuple(v))
        with open(os.path.join(d, "versions", "%s_step_%05d.py" % (rev, i)), "w") as f:
            f.write(TEMPLATE.format(msg="step %d" % i, rev=rev, revises=", ".join(down),
                                    down=fmt(down), labels=fmt(labels), deps=fmt(deps)))
    heads = [r for r, _, _, _ in revs if r not in children and r not in depended]
    with open(os.path.join(d, "heads"), "w") as f:
        f.write("\n".join(heads) + "\n")
    with open(os.path.join(d, "count"), "w") as f:
        f.write("%d\n" % len(revs))

# A linear chain.
write("chain", [(rid(i), [rid(i - 1)] if i else [], [], []) for i in range(size)])

# A graph: a main line with a short branch merged back every 25 revisions, a second root merged
# in, two labelled branches that stay open, depends_on on ids and on a branch label.
revs, n = [], [0]
def new(down, labels=(), deps=()):
    r = rid(10**6 + n[0]); n[0] += 1
    revs.append((r, list(down), list(labels), list(deps)))
    return r
main = [new([])]
side = [new([])]
for _ in range(19):
    side.append(new([side[-1]]))
branches = {}
while len(revs) < size - 5:
    k = len(main)
    if k == 30:
        main.append(new([main[-1], side[-1]]))  # the second root joins here
    elif k in (60, 160):
        label = "reporting" if k == 60 else "audit"
        branches[label] = [new([main[-1]], labels=[label])]
        main.append(new([main[-1]]))
    elif k % 25 == 0:
        b = [new([main[-1]])]
        b.append(new([b[-1]]))
        b.append(new([b[-1]]))
        main.append(new([main[-1]]))
        main.append(new([main[-1], b[-1]]))  # the branch merged back
    elif k % 40 == 0:
        main.append(new([main[-1]], deps=[main[-10]]))
    elif k % 200 == 0 and "reporting" in branches:
        main.append(new([main[-1]], deps=["reporting"]))
    else:
        main.append(new([main[-1]]))
    for label, line in branches.items():
        if len(revs) < size - 5 and k % 7 == (1 if label == "audit" else 3):
            line.append(new([line[-1]], deps=[main[-5]] if k % 70 == 3 else []))
while len(revs) < size:
    main.append(new([main[-1]]))
write("graph", revs)
EOF

stamp() {  # stamp DB with the heads listed in FILE
    local db="$1" file="$2" values
    values="$(sed "s/.*/('&')/" "$file" | paste -sd, -)"
    "$PSQL" "${url%/*}/$db" -qX -v ON_ERROR_STOP=1 -c \
        "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY); INSERT INTO alembic_version VALUES $values" >/dev/null
}
db_url() { printf '%s/%s' "${url%/*}" "$1"; }
echo "bench: applying the 50 revisions of tests/fixtures/alembic/long50; stamping the ${SIZE}-revision projects" >&2
if ! out="$(env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 DATABASE_URL="$(db_url "${dbs[0]}")" \
        "$PYTHON" -m alembic -c "$INI50" upgrade head 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    echo "bench: the initial alembic upgrade head failed" >&2
    exit 1
fi
stamp "${dbs[1]}" "$work/chain/heads"
stamp "${dbs[2]}" "$work/graph/heads"
floor=""
if "${CC:-cc}" -O2 -pthread -o "$work/read-floor" "$ROOT/bench/read-floor.c" 2>/dev/null; then
    floor="$work/read-floor"
else
    echo "bench: no C compiler (${CC:-cc}): the floor of reading the files is left out" >&2
fi

PYTHONPATH="$ROOT/bench" "$PYTHON" - "$BIN" "$PYTHON" "$INI50" "$work" "$(db_url "${dbs[0]}")" \
    "$(db_url "${dbs[1]}")" "$(db_url "${dbs[2]}")" "$RUNS" "$HEADS_RUNS" "$SIZE" "$floor" <<'EOF'
import json, os, statistics, subprocess, sys, time
from report import record

bin_, python, ini50, work, url50, url_chain, url_graph = sys.argv[1:8]
runs, heads_runs, size, floor = int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10]), sys.argv[11]
base = {k: v for k, v in os.environ.items() if not k.startswith("MTR_") and k != "PYTHONPATH"}
base.update(MTR_LOG_LEVEL="warn", MTR_BACKUP="off", PYTHONDONTWRITEBYTECODE="1")
chain_ini, graph_ini = f"{work}/chain/alembic.ini", f"{work}/graph/alembic.ini"
cmds = {
    "noop50": ([bin_, "--alembic-ini", ini50, "--python", python, "--", "/bin/true"], url50),
    "chain": ([bin_, "--alembic-ini", chain_ini, "--python", python, "--", "/bin/true"], url_chain),
    "graph": ([bin_, "--alembic-ini", graph_ini, "--python", python, "--", "/bin/true"], url_graph),
    "check": ([bin_, "--alembic-ini", graph_ini, "--check", "--log-format", "json"], url_graph),
    "heads": ([python, "-m", "alembic", "-c", graph_ini, "heads"], url_graph),
}

def timed(name, out=subprocess.DEVNULL):
    argv, url = cmds[name]
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, env=dict(base, DATABASE_URL=url), stdin=subprocess.DEVNULL,
                       stdout=out, stderr=subprocess.PIPE)
    elapsed = time.perf_counter_ns() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        sys.exit(f"bench: {name} failed with exit status {r.returncode}: {' '.join(argv[:5])} ...")
    return elapsed, r

# The projects are what they claim: consistent, at head, every revision read.
for name in ("chain", "graph"):
    argv = [bin_, "--alembic-ini", f"{work}/{name}/alembic.ini", "--check", "--log-format", "json"]
    r = subprocess.run(argv, env=dict(base, DATABASE_URL=url_chain if name == "chain" else url_graph),
                       capture_output=True, text=True)
    rep = json.loads(r.stdout) if r.stdout.strip() else {}
    count = int(open(f"{work}/{name}/count").read())
    if r.returncode != 0 or rep.get("revisions") != count or rep.get("pending") != []:
        sys.exit(f"bench: the {name} project is not consistent at head: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

for _ in range(2):
    for name in ("noop50", "chain", "graph", "check"):
        timed(name)
def floor_ms():  # the read-floor program's own figure: its process start is no part of it
    out = subprocess.run([floor, f"{work}/chain/versions"], capture_output=True, text=True, check=True)
    return float(out.stdout)

samples = {name: [] for name in cmds}
samples["floor"] = []
for _ in range(runs):
    for name in ("noop50", "chain", "graph", "check"):
        samples[name].append(timed(name)[0] / 1e6)
    if floor:
        samples["floor"].append(floor_ms())
for _ in range(heads_runs):
    samples["heads"].append(timed("heads")[0] / 1e6)
med = {name: statistics.median(v) for name, v in samples.items() if v}

rows = [
    (f"no-op start: {size}-revision chain at head", "chain", "noop50", "50-revision no-op start", 1.3),
    (f"no-op start: {size}-revision graph at head", "graph", "noop50", "50-revision no-op start", 1.3),
    (f"--check: {size}-revision graph", "check", "heads", "python3 -m alembic heads", 0.2),
]
print(f"{'what':<46} {'ours ms':>9} {'peer ms':>9} {'ratio':>7} {'target':>7}")
for what, ours, peer, peer_name, target in rows:
    print(f"{what:<46} {med[ours]:>9.2f} {med[peer]:>9.2f} {med[ours] / med[peer]:>6.3f}x {target:>6.2f}x")
    record(what, med[ours], peer_name, med[peer], "ms", len(samples[ours]), target)
if floor:  # what the files cost us beyond the no-op, against only listing and reading them
    for name in ("chain", "graph"):
        what, extra = f"{size}-revision {name}: time over the no-op", med[name] - med["noop50"]
        print(f"{what:<46} {extra:>9.2f} {med['floor']:>9.2f} {extra / med['floor']:>6.3f}x {'-':>7}")
        record(what, extra, f"reading its {size} files (bench/read-floor.c)", med["floor"], "ms", runs)
    bound = (med["noop50"] + med["floor"]) / med["noop50"]
    print(f"  floor: listing and reading the {size} files takes {med['floor']:.2f} ms; a start that only "
          f"added that to the no-op would be at {bound:.3f}x")
print(f"  runs: {runs} each ({heads_runs} of alembic heads), interleaved, after 2 warm-up rounds")
print(f"  ours: migrate-then-run --alembic-ini PROJECT -- /bin/true (at head); --check --log-format json")
EOF
