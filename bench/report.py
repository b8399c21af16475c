#!/usr/bin/python3
"""Runs the benchmarks and writes bench/RESULTS.md and the chart bench/results.png.

    bench/report.py                     run every bench/*.sh, then write the report
    bench/report.py bench/startup.sh …  run only these, then write the report
    bench/report.py --from FILE         write the report again from the results of an earlier run

Every script runs with BENCH_RESULTS naming one results file (build/bench/results.tsv); its
human output goes to the terminal unchanged. RUNS and MTR_BIN are passed through. A script that
fails does not stop the others; `report.py` then exits 1, after writing the report.

The protocol. A bench script prints its human table on stdout, and when BENCH_RESULTS names a
file it also appends one line per comparison to that file, fields separated by one tab:

    result  BENCH  WHAT  OURS  PEER_NAME  PEER  UNIT  N  TARGET
    skip    BENCH  REASON

BENCH is the script's file name (startup.sh). WHAT says what was measured, short enough for a
chart label. OURS and PEER are plain numbers in UNIT (ms, s, us, kB, MiB …), and every figure is
one where lower is better (a time, a memory size, a file size), so that the ratio OURS / PEER
below 1 means ours is better. PEER_NAME is the peer's command as a reader would type it
(psql -c 'select 1'); PEER_NAME and PEER are empty for a figure that has no peer (listed, not
charted). N is how many samples the medians are taken over (1 for a single measurement, such as
a file size). TARGET is the ratio aimed for, or empty. No field holds a tab or a newline.
A script that cannot run because an optional prerequisite is missing (the static build) writes
a skip line saying what to do, and exits 77.

Python bench code writes the lines with record() and skip() from this file (the scripts run
their Python with PYTHONPATH=bench); shell code uses bench_result and bench_skip from
bench/cluster.bash. The runner adds its own `meta KEY VALUE` and `ran BENCH STATUS SECONDS`
lines, so that --from can write the same report again.
"""
import datetime
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
SKIP_STATUS = 77
# The order of the report (and of the runs): quick start-up figures first, the long backup last;
# scripts not named here follow in name order.
ORDER = ["startup.sh", "noop.sh", "alembic-noop.sh", "sql-throughput.sh", "sql-memory.sh", "footprint.sh",
         "static.sh", "backup.sh"]


def order_key(name):
    name = os.path.basename(name)
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _field(value):
    text = str(value)
    if "\t" in text or "\n" in text:
        raise ValueError(f"bench result field holds a tab or newline: {text!r}")
    return text


def _number(value):
    if not math.isfinite(value):
        raise ValueError(f"bench result is not a finite number: {value!r}")
    return f"{value:.6g}"


def _bench_name():
    return os.environ.get("BENCH_NAME") or "unknown"


def _append(fields):
    path = os.environ.get("BENCH_RESULTS")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("\t".join(_field(x) for x in fields) + "\n")


def record(what, ours, peer_name, peer, unit, n, target=None):
    """Appends one result line to $BENCH_RESULTS (nothing when it is unset). peer_name and peer
    may be None for a figure without a peer. The bench's name comes from $BENCH_NAME, which
    bench/cluster.bash sets."""
    _append(["result", _bench_name(), what, _number(ours), peer_name or "",
             "" if peer is None else _number(peer), unit, int(n),
             "" if target is None else _number(target)])


def skip(reason):
    """Appends a skip line; the caller then exits with status 77."""
    _append(["skip", _bench_name(), reason])


# ---- the runner ----

def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    debian = "unknown"
    try:
        with open("/etc/debian_version", encoding="utf-8") as f:
            debian = f.read().strip()
    except OSError:
        pass
    pg = "unknown"
    try:
        out = subprocess.run(["/usr/lib/postgresql/15/bin/postgres", "--version"], capture_output=True,
                             text=True, check=False).stdout
        m = re.search(r"\) (\d[\w.]*)", out)
        pg = m.group(1) if m else pg
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count() or 0),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "debian": debian,
        "postgresql": pg,
    }


def loadavg():
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def run_benches(scripts, results):
    """Runs each script with BENCH_RESULTS=results; returns True if none failed."""
    ok = True
    with open(results, "w", encoding="utf-8") as f:
        meta = machine()
        meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        meta["runs"] = os.environ.get("RUNS", "")
        meta["load_start"] = loadavg()
        for k, v in meta.items():
            f.write(f"meta\t{k}\t{_field(v)}\n")
    env = dict(os.environ, BENCH_RESULTS=results)
    started = time.monotonic()
    for script in scripts:
        name = os.path.basename(script)
        print(f"== {os.path.relpath(script, ROOT)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([script], env=env, check=False).returncode
        seconds = time.monotonic() - t0
        status = "ok" if rc == 0 else "skipped" if rc == SKIP_STATUS else f"failed (exit status {rc})"
        if rc not in (0, SKIP_STATUS):
            ok = False
            print(f"bench: {name} failed with exit status {rc}", file=sys.stderr, flush=True)
        with open(results, "a", encoding="utf-8") as f:
            f.write(f"ran\t{name}\t{status}\t{seconds:.1f}\n")
    with open(results, "a", encoding="utf-8") as f:
        f.write(f"meta\tload_end\t{loadavg()}\n")
        f.write(f"meta\ttotal_seconds\t{time.monotonic() - started:.0f}\n")
    return ok


def parse(results):
    meta, rows, skips, ran = {}, [], [], []
    with open(results, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            p = line.rstrip("\n").split("\t")
            kind = p[0]
            try:
                if kind == "meta" and len(p) == 3:
                    meta[p[1]] = p[2]
                elif kind == "result" and len(p) == 9:
                    rows.append({
                        "bench": p[1], "what": p[2], "ours": float(p[3]), "peer_name": p[4],
                        "peer": float(p[5]) if p[5] else None, "unit": p[6], "n": int(p[7]),
                        "target": float(p[8]) if p[8] else None,
                    })
                elif kind == "skip" and len(p) == 3:
                    skips.append((p[1], p[2]))
                elif kind == "ran" and len(p) == 4:
                    ran.append((p[1], p[2], float(p[3])))
                else:
                    raise ValueError("unknown line")
            except ValueError as e:
                sys.exit(f"report: {results}:{lineno}: not a line of the protocol ({e}): {line.rstrip()!r}")
    return meta, rows, skips, ran


def fmt(value):
    a = abs(value)
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ratio(r):
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


UNITS = {"us": "µs"}


def value(v, unit):
    return f"{fmt(v)} {UNITS.get(unit, unit)}"


def md_escape(text):
    return text.replace("|", "\\|")


def code(text):
    return f"`{text}`" if text else ""


def write_markdown(path, meta, rows, skips, ran, chart):
    out = []
    w = out.append
    w("# Benchmark results")
    w("")
    w("Written by `make bench` (`bench/report.py`), which runs every `bench/*.sh` with its peers in the same run. "
      "Do not edit by hand; run `make bench` again.")
    w("")
    runs = meta.get("runs") or "each script's default"
    w("| | |")
    w("|---|---|")
    w(f"| date | {meta.get('date', 'unknown')} |")
    w(f"| machine | {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, {meta.get('arch', '?')} |")
    w(f"| system | Debian {meta.get('debian', '?')}, Linux {meta.get('kernel', '?')} |")
    w(f"| database | PostgreSQL {meta.get('postgresql', '?')}, a throwaway cluster on 127.0.0.1 (SCRAM), unless `BENCH_DATABASE_URL` named one |")
    w(f"| RUNS | {md_escape(runs)} |")
    w(f"| load average at start, at end | {meta.get('load_start', '?')}; {meta.get('load_end', '?')} |")
    w("")
    w("**ratio = ours / peer.** Every figure is a time, a memory size or a file size: a ratio below "
      "1 means ours is faster or smaller, above 1 that the peer is. *median of N* is the number of "
      "samples behind each median (1: a single measurement). *target* is the ratio aimed for.")
    w("")
    if chart:
        w(f"![ratio ours / peer per benchmark, log scale; left of 1 ours is better]({chart})")
        w("")
    w("| bench | what | ours | peer | ratio | median of N | target |")
    w("|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        if r["peer"] is not None:
            peer = f"{code(md_escape(r['peer_name']))} {value(r['peer'], r['unit'])}"
            ratio = fmt_ratio(r["ours"] / r["peer"]) if r["peer"] > 0 else "–"
        else:
            peer, ratio = "–", "–"
        target = f"≤ {r['target']:g}×" if r["target"] is not None else ""
        w(f"| `{r['bench']}` | {md_escape(r['what'])} | {value(r['ours'], r['unit'])} | {peer} | {ratio} | "
          f"{r['n']} | {target} |")
    if not rows:
        w("| | no results | | | | | |")
    w("")
    problems = [(b, s) for b, s, _ in ran if s != "ok"]
    if skips or problems:
        for b, reason in skips:
            w(f"- `{b}` skipped: {md_escape(reason)}")
        skipped = {b for b, _ in skips}
        for b, status in problems:
            if b not in skipped:
                w(f"- `{b}`: {status}")
        w("")
    if ran:
        total = meta.get("total_seconds")
        times = ", ".join(f"`{b}` {s:.0f} s" for b, _, s in ran)
        w(f"Time taken: {times}" + (f"; {total} s in all." if total else "."))
        w("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


def gp_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_chart(path, meta, rows, workdir):
    """Horizontal bars of the ratios on a log axis, from 1 to the ratio, with a line at 1.
    Returns False when gnuplot is missing (the report then goes without the chart)."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("report: gnuplot is missing (apt-get install gnuplot-nox): no chart", file=sys.stderr)
        return False
    bars = [r for r in rows if r["peer"] and r["peer"] > 0 and r["ours"] > 0]
    if not bars:
        return False
    data = os.path.join(workdir, "ratios.dat")
    with open(data, "w", encoding="utf-8") as f:
        for i, r in enumerate(reversed(bars)):  # gnuplot's y grows upwards: first row on top
            ratio = r["ours"] / r["peer"]
            label = f"{r['what']} vs {r['peer_name']}"
            if len(label) > 72:
                label = label[:71] + "…"
            color = "0x2E8B57" if ratio <= 1 else "0xC0392B"
            f.write(f"{i} {ratio:.6g} {color} {gp_string(label)} {gp_string(fmt_ratio(ratio))}\n")
    ratios = [r["ours"] / r["peer"] for r in bars]
    lo = min(min(ratios), 1) / 2.5
    hi = max(max(ratios), 1) * 2.5
    height = max(320, 90 + 30 * len(bars))
    # The ratio beside each bar's end: left of bars below 1, right of the others. (A labels plot
    # whose every point is undefined crashes gnuplot 5.4, so each is there only when needed.)
    plots = [f"{gp_string(data)} using (1):1:(($2 < 1) ? $2 : 1):(($2 < 1) ? 1 : $2):($1 - 0.35):($1 + 0.35):3:"
             "ytic(4) with boxxyerror lc rgb variable"]
    if any(r < 1 for r in ratios):
        plots.append("'' using (($2 < 1) ? $2 / 1.06 : 1/0):1:5 with labels font \",9\" right")
    if any(r >= 1 for r in ratios):
        plots.append("'' using (($2 >= 1) ? $2 * 1.06 : 1/0):1:5 with labels font \",9\" left")
    plot_cmd = ", ".join(plots)
    title = (f"migrate-then-run vs its peers: ratio ours / peer (log scale)\n"
             f"{meta.get('date', '')}, {meta.get('cpu', '')}, {meta.get('cores', '?')} cores, "
             f"RUNS={meta.get('runs') or 'default'}")
    script = f"""
set terminal pngcairo size 1400,{height} font "DejaVu Sans,10" noenhanced
set output {gp_string(path)}
set datafile separator whitespace
set logscale x 10
set xrange [{lo:.6g}:{hi:.6g}]
set yrange [-0.7:{len(bars) - 0.3}]
set format x "%g×"
set xtics nomirror
set xtics add ("0.5×" 0.5, "2×" 2)
set ytics nomirror scale 0
set grid xtics lc rgb "#dddddd"
set border 3
set key off
set title {gp_string(title)}
set xlabel "left of 1 (green): ours faster or smaller; right of 1 (red): the peer is"
set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 lc rgb "#333333"
set style fill solid 0.85 noborder
plot {plot_cmd}
"""
    gp = os.path.join(workdir, "chart.gp")
    with open(gp, "w", encoding="utf-8") as f:
        f.write(script)
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        print("report: gnuplot failed: no chart", file=sys.stderr)
        return False
    return True


def main(argv):
    work = os.path.join(ROOT, "build", "bench")
    os.makedirs(work, exist_ok=True)
    ok = True
    if argv[:1] == ["--from"]:
        if len(argv) != 2:
            sys.exit("usage: bench/report.py --from RESULTS_FILE")
        results = argv[1]
    else:
        scripts = [os.path.abspath(a) for a in argv] or sorted(
            (os.path.join(BENCH_DIR, n) for n in os.listdir(BENCH_DIR) if n.endswith(".sh")), key=order_key)
        for s in scripts:
            if not os.access(s, os.X_OK):
                sys.exit(f"report: {s} is not an executable file")
        results = os.path.join(work, "results.tsv")
        ok = run_benches(scripts, results)
    meta, rows, skips, ran = parse(results)
    rows.sort(key=lambda r: order_key(r["bench"]))  # stable: a script's own order is kept
    png = os.path.join(BENCH_DIR, "results.png")
    chart = "results.png" if write_chart(png, meta, rows, work) else None
    md = os.path.join(BENCH_DIR, "RESULTS.md")
    write_markdown(md, meta, rows, skips, ran, chart)
    print(f"report: wrote {os.path.relpath(md, ROOT)}" + (f" and {os.path.relpath(png, ROOT)}" if chart else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
