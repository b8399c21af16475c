#!/usr/bin/env bash
# Benchmark: memory of the supervising process (RSS, PSS) and signal-forwarding latency,
# migrate-then-run (after a completed no-op migration, backups off) beside tini and dumb-init.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${MTR_BIN:-$ROOT/build/migrate-then-run}"
RUNS="${RUNS:-5}"
SIGNALS="${SIGNALS:-100}"

[ -x "$BIN" ] || { echo "bench: $BIN is missing; build it first with: make" >&2; exit 1; }
for tool in tini dumb-init; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing; apt-get install $tool" >&2; exit 1; }
done
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: RUNS must be a positive integer" >&2; exit 1 ;; esac
case "$SIGNALS" in ''|*[!0-9]*|0) echo "bench: SIGNALS must be a positive integer" >&2; exit 1 ;; esac

# shellcheck source=bench/cluster.bash
. "$ROOT/bench/cluster.bash"
bench_database_url

# The static build, when there is one, is measured too: it is what images ship. ldd says
# whether MTR_BIN is itself a static binary (then it is the only one measured).
STATIC="$ROOT/build/static/migrate-then-run.stripped"
[ -x "$STATIC" ] || STATIC=""
BIN_BUILD=dynamic
if ! ldd "$BIN" >/dev/null 2>&1; then
    BIN_BUILD=static
    STATIC=""
fi

PYTHONPATH="$ROOT/bench" /usr/bin/python3 - "$BIN" "$url" "$RUNS" "$SIGNALS" "$STATIC" "$BIN_BUILD" <<'PY'
import os, pathlib, shutil, signal, statistics, subprocess, sys, time
from report import record

bin_, url, static, bin_build = sys.argv[1], sys.argv[2], sys.argv[5], sys.argv[6]
runs, nsig = int(sys.argv[3]), int(sys.argv[4])
env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
env.update(DATABASE_URL=url, MTR_LOG_LEVEL="warn")
# Each supervisor runs as PID 1 of a new PID namespace when we may (root), as in a container.
ns = ["unshare", "--pid", "--fork", "--mount-proc"] if os.geteuid() == 0 else []
sups = {
    "migrate-then-run": [bin_, "--init", "--backup=off", "--migrate-cmd", "true", "--"],
    **({"migrate-then-run (static)": [static, "--init", "--backup=off", "--migrate-cmd", "true", "--"]}
       if static else {}),
    "tini": [shutil.which("tini"), *([] if ns else ["-s"]), "--"],
    "dumb-init": [shutil.which("dumb-init"), "--"],
}
# The app: prints one line per SIGUSR1, so that the bench can time delivery.
APP = [sys.executable, "-u", "-c",
       "import signal, sys, time\n"
       "signal.signal(signal.SIGUSR1, lambda *a: print('u', flush=True))\n"
       "print('ready', flush=True)\n"
       "while True: time.sleep(3600)\n"]

def start(name):
    p = subprocess.Popen([*ns, *sups[name], *APP], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert p.stdout.readline() == "ready\n", f"{name}: the app did not start"
    pid = p.pid
    if ns:  # the supervisor is unshare's child
        pid = int(pathlib.Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
    return p, pid

def memory(pid):
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        fields[k] = int(v.split()[0])
    return fields["Rss"], fields["Pss"]

def stop(p, pid):
    os.kill(pid, signal.SIGTERM)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()

rss, pss, lat = {n: [] for n in sups}, {n: [] for n in sups}, {n: [] for n in sups}
for _ in range(runs):
    for name in sups:
        p, pid = start(name)
        time.sleep(0.3)
        r, s = memory(pid)
        rss[name].append(r)
        pss[name].append(s)
        for _ in range(max(1, nsig // runs)):
            t0 = time.perf_counter_ns()
            os.kill(pid, signal.SIGUSR1)
            assert p.stdout.readline() == "u\n"
            lat[name].append((time.perf_counter_ns() - t0) / 1000)
        stop(p, pid)

med = {n: (statistics.median(rss[n]), statistics.median(pss[n]), statistics.median(lat[n])) for n in sups}
ref = med["tini"]
print(f"{'supervisor (app: python, sleeping)':<36} {'RSS kB':>8} {'PSS kB':>8} {'SIGUSR1 us':>11} {'RSS/tini':>9} {'lat/tini':>9}")
for n, (r, s, l) in med.items():
    print(f"{n:<36} {r:>8.0f} {s:>8.0f} {l:>11.1f} {r / ref[0]:>8.2f}x {l / ref[2]:>8.2f}x")
print(f"medians of {runs} starts (memory) and {len(lat['tini'])} signals (latency)"
      f"{', each supervisor at PID 1 of a new PID namespace' if ns else ''}")
print("targets: RSS <= tini's; forwarding latency <= 1.2x tini's")
for n in sups:
    if not n.startswith("migrate-then-run"):
        continue
    build = "static" if n.endswith("(static)") else bin_build
    for peer, target in (("tini", 1), ("dumb-init", None)):
        record(f"supervisor RSS, {build} binary, app sleeping", med[n][0], peer, med[peer][0], "kB", runs, target)
    for peer, target in (("tini", 1.2), ("dumb-init", None)):
        record(f"SIGUSR1 forwarding latency, {build} binary", med[n][2], peer, med[peer][2], "us", len(lat[n]),
               target)
PY
