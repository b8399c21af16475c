#!/usr/bin/python3
"""podman stop of the three stop cases of tests/containers (a cooperative app, one that ignores
SIGTERM, one that exits 0 six seconds after SIGTERM leaving a child that ignores it), for each
given static binary as the container's PID 1 and for tini; prints the median stop time and the
exit codes. Not run by make bench (it needs podman and takes about a minute per binary):

    bench/containers.py build/static/migrate-then-run.stripped [OLD=path/to/other/binary ...]

RUNS (default 3) runs per case. Uses the harness of tests/containers/podman.py: a private
CONTAINERS_CONF and storage, images built here, nothing left behind; a throwaway PostgreSQL
cluster (scripts/pgtmp.sh) for the tool's wait."""
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "containers"))
import podman as podman_mod  # noqa: E402

CASES = ["cooperative", "ignores-sigterm", "leaves-a-child"]


def stop_once(p, image, init, case, url):
    name = f"mtr-bench-{init}-{case}"
    if init == "tini":
        args = ["--entrypoint", "/usr/bin/tini", image, "--", "sh", f"/app/{case}.sh"]
    else:
        args = ["--entrypoint", f"/bench/{init}", "-e", f"DATABASE_URL={url}", "-e", "MTR_BACKUP=off",
                image, "--migrate-cmd", "true", "--", "sh", f"/app/{case}.sh"]
    p.run("run", "--detach", "--name", name, "--pull=never", "--network=host", "-v", f"{p.bench_dir}:/bench:ro", *args)
    p.wait_for_log(name, "app-ready")
    t0 = time.monotonic()
    r = p.run("stop", "--time", "10", name)
    elapsed = time.monotonic() - t0
    code = int(p.inspect(name, "{{.State.ExitCode}}"))
    p.run("rm", name)
    return elapsed, code, "resorting to SIGKILL" in r.stderr


def main():
    binaries = {}
    for arg in sys.argv[1:] or [str(ROOT / "build" / "static" / "migrate-then-run.stripped")]:
        label, _, path = arg.rpartition("=")
        binaries[label or "ours"] = pathlib.Path(path).resolve()
    runs = int(os.environ.get("RUNS", "3"))
    pgdir = pathlib.Path(tempfile.mkdtemp(prefix="mtr-bench-pg-", dir="/tmp"))
    os.chmod(pgdir, 0o755)
    p = podman_mod.Podman()
    try:
        subprocess.run([str(ROOT / "scripts" / "pgtmp.sh"), "up", str(pgdir / "pg"), "bench"], check=True,
                       stdout=subprocess.DEVNULL)
        url = subprocess.run([str(ROOT / "scripts" / "pgtmp.sh"), "url", str(pgdir / "pg"), "postgres"],
                             check=True, capture_output=True, text=True).stdout.strip()
        first = next(iter(binaries.values()))
        image = p.build_app(first, shutil.which("tini-static") or "/usr/bin/tini-static")
        p.bench_dir = p.base / "bench"
        p.bench_dir.mkdir()
        for label, path in binaries.items():
            shutil.copy(path, p.bench_dir / label)
        print(f"podman stop --time 10, median of {runs} runs; exit codes of every run")
        print("| case | " + " | ".join([*binaries, "tini"]) + " |")
        print("|---|" + "---|" * (len(binaries) + 1))
        for case in CASES:
            cells = []
            for init in [*binaries, "tini"]:
                got = [stop_once(p, image, init, case, url) for _ in range(runs)]
                codes = sorted({c for _, c, _ in got})
                killed = sum(k for _, _, k in got)
                cell = f"{statistics.median(t for t, _, _ in got):.2f} s, exit {'/'.join(map(str, codes))}"
                if killed:
                    cell += f" (podman's SIGKILL {killed}/{runs})"
                cells.append(cell)
            print(f"| {case} | " + " | ".join(cells) + " |")
    finally:
        p.cleanup()
        subprocess.run([str(ROOT / "scripts" / "pgtmp.sh"), "down", str(pgdir / "pg")], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(pgdir, ignore_errors=True)
        left = p.leftovers()
        if left:
            print(f"left behind: {left}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
