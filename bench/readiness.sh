#!/usr/bin/env bash
# Benchmark: how soon after PostgreSQL starts accepting connections the tool notices, with the
# default wait settings. The server's own log line "ready to accept connections" (with
# millisecond timestamps) is the floor; our wait.ready event's timestamp is compared with it.
# The tool is started first and the server 0.5-3 s later, so every phase of the retry
# schedule is sampled. Target: median within 100 ms.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
RUNS="${RUNS:-10}"
PGTMP="$ROOT/scripts/pgtmp.sh"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
dir="$(mktemp -d -t mtr-ready.XXXXXX)"
trap '"$PGTMP" down "$dir" >/dev/null 2>&1 || true' EXIT
"$PGTMP" init "$dir" "ready-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" >/dev/null
echo "log_line_prefix = '%m '" >>"$dir/data/postgresql.conf"
url="$("$PGTMP" url "$dir")"

PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$BIN" "$PGTMP" "$dir" "$url" "$RUNS" <<'PY'
import datetime, json, os, statistics, subprocess, sys, time
from report import record

bin_, pgtmp, dir_, url, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
env.update(DATABASE_URL=url, MTR_LOG_FORMAT="json")
log = os.path.join(dir_, "server.log")

def server_ready_ms(offset):
    """The timestamp of the first 'ready to accept connections' line after offset."""
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        for line in f:
            if "ready to accept connections" in line:
                stamp = " ".join(line.split()[:2])  # 2026-12-01 22:10:00.123
                t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
                return t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
    sys.exit("bench: the server log has no 'ready to accept connections' line")

def ours_ready_ms(stderr):
    for line in stderr.splitlines():
        e = json.loads(line)
        if e.get("event") == "wait.ready":
            t = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            return t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
    sys.exit("bench: no wait.ready event:\n" + stderr)

lags = []
for i in range(runs):
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    tool = subprocess.Popen([bin_, "--backup=off", "--migrate-cmd", "true", "--migrate-only"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5 + 2.5 * i / max(runs - 1, 1))
    subprocess.run([pgtmp, "start", dir_], check=True, stdout=subprocess.DEVNULL)
    _, err = tool.communicate(timeout=120)
    if tool.returncode != 0:
        sys.exit(f"bench: the tool exited {tool.returncode}:\n{err}")
    lags.append(ours_ready_ms(err) - server_ready_ms(offset))
    subprocess.run([pgtmp, "stop", dir_], check=True, stdout=subprocess.DEVNULL)

lags.sort()
median = statistics.median(lags)
p90 = lags[min(len(lags) - 1, int(round(0.9 * (len(lags) - 1))))]
print(f"{'what':<60} {'ms':>8} {'runs':>5}")
print(f"{'median: server accepting connections -> our wait.ready':<60} {median:>8.1f} {runs:>5}")
print(f"{'90th percentile':<60} {p90:>8.1f} {runs:>5}")
print("target: median within 100 ms")
record("readiness: median from accepting connections to wait.ready (target 100 ms)", median, "", None, "ms", runs)
record("readiness: 90th percentile from accepting connections to wait.ready", p90, "", None, "ms", runs)
PY
