#!/usr/bin/python3
"""Before/after figures for the never-hang scenarios: exit code and time of each, for one or
more binaries (each run capped at CAP seconds, then killed: "hung").

    bench/never-hang.py BINARY [BINARY …]

Uses the end-to-end helpers (tests/e2e: a throwaway cluster, the silent proxy, the black
hole, the silent name server). Not part of `make bench`: it measures behaviour, not speed."""
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from conftest import PASSWORD, Cluster, clean_env  # noqa: E402
from netfault import BlackHole, Proxy, SilentDNS  # noqa: E402

CAP = 40


def finish(p, t0):
    try:
        _, err = p.communicate(timeout=CAP)
        return p.returncode, time.monotonic() - t0, err
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return "hung", time.monotonic() - t0, ""


def launch(argv, env, prefix=()):
    return subprocess.Popen([*prefix, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def silent(binary, pg, trigger):
    db = f"b{random.randint(0, 1 << 30)}"
    pg.psql("postgres", f"CREATE DATABASE {db}")
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "1_a.sql").write_text("CREATE TABLE never_applied (x int);\n")
    proxy = Proxy(pg.port, silent_on=trigger)
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/{db}"
    p = launch([binary, "--sql-dir", str(d), "--migrate-only"], clean_env(DATABASE_URL=url))
    proxy.silenced.wait(30)
    time.sleep(0.2)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    code, took, _ = finish(p, t0)
    proxy.close()
    return code, took, "from SIGTERM"


def dns(binary, tmp, with_signal):
    addr = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
    server = SilentDNS(addr)
    resolv = tmp / "resolv.conf"
    resolv.write_text(f"nameserver {addr}\n")
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]
    env = clean_env(DATABASE_URL=f"postgresql://app:{PASSWORD}@db.mtr-e2e.invalid:5432/app")
    wait = "60s" if with_signal else "2s"
    t0 = time.monotonic()
    p = launch([binary, "--wait-timeout", wait, "--migrate-only", "--migrate-cmd", "true"], env, prefix)
    if with_signal:
        server.queried.wait(30)
        time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
    code, took, _ = finish(p, t0)
    server.close()
    return code, took, "from SIGTERM" if with_signal else "--wait-timeout 2s"


def plain(binary, argv, url, tmp=None):
    t0 = time.monotonic()
    p = launch([binary, *argv], clean_env(DATABASE_URL=url))
    code, took, _ = finish(p, t0)
    return code, took, ""


def scenarios(pg, tmp):
    base = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg.port}/postgres"
    cert, key = tmp / "client.crt", tmp / "client.key"
    cert.write_text("x\n")
    key.write_text("x\n")
    key.chmod(0o644)
    cfg = ["--wait-timeout", "3s", "--migrate-only", "--migrate-cmd", "true"]
    hole = BlackHole()
    multi = (f"postgresql://postgres:{PASSWORD}@127.0.0.1:{hole.port},127.0.0.1:{pg.port}/postgres"
             "?connect_timeout=2")
    odd = {}
    for kind in ("fifo", "devzero", "commit"):
        d = tmp / f"odd-{kind}"
        d.mkdir()
        if kind == "fifo":
            os.mkfifo(d / "1_a.sql")
        elif kind == "devzero":
            (d / "1_a.sql").symlink_to("/dev/zero")
        else:
            (d / "1_a.sql").write_text("CREATE TABLE half_applied (x int);\nCOMMIT;\nSELECT 1/0;\n")
        odd[kind] = d
    return [
        ("server silent during the plan, SIGTERM", lambda b: silent(b, pg, b"relkind")),
        ("server silent during a migration, SIGTERM", lambda b: silent(b, pg, b"never_applied")),
        ("name server silent, --wait-timeout 2s", lambda b: dns(b, tmp, False)),
        ("name server silent, SIGTERM", lambda b: dns(b, tmp, True)),
        ("multi-host, first host black-holed (connect_timeout=2, --wait-timeout 10s)",
         lambda b: plain(b, ["--wait-timeout", "10s", "--migrate-only", "--migrate-cmd", "true"], multi)),
        ("client key mode 0644", lambda b: plain(b, cfg, f"{base}?sslcert={cert}&sslkey={key}")),
        ("sslcert missing", lambda b: plain(b, cfg, f"{base}?sslcert={tmp}/nope.crt")),
        ("target_session_attrs=writable", lambda b: plain(b, cfg, f"{base}?target_session_attrs=writable")),
        ("connect_timeout=abc", lambda b: plain(b, cfg, f"{base}?connect_timeout=abc")),
        ("password with an unencoded @", lambda b: plain(
            b, cfg, f"postgresql://postgres:Xq7@Zr4w9@127.0.0.1:{pg.port}/postgres")),
        ("password with an unencoded /", lambda b: plain(
            b, cfg, f"postgresql://postgres:7731/Kw8zq@127.0.0.1:{pg.port}/postgres")),
        ("FIFO named like a migration", lambda b: plain(b, ["--sql-dir", str(odd["fifo"]), "--migrate-only"], base)),
        ("/dev/zero named like a migration", lambda b: plain(
            b, ["--sql-dir", str(odd["devzero"]), "--migrate-only"], base)),
        ("COMMIT inside a file", lambda b: commit_case(b, pg, odd["commit"])),
        ("--migrate-cmd 'echo a&&b'", lambda b: plain(b, ["--migrate-only", "--migrate-cmd", "echo a&&b"], base)),
    ], hole


def commit_case(binary, pg, d):
    db = f"b{random.randint(0, 1 << 30)}"
    pg.psql("postgres", f"CREATE DATABASE {db}")
    code, took, _ = plain(binary, ["--sql-dir", str(d), "--migrate-only"], pg.url(db))
    half = pg.psql(db, "SELECT to_regclass('half_applied') IS NOT NULL") == "t"
    return code, took, "half applied" if half else "nothing applied"


def main():
    binaries = sys.argv[1:]
    pg = Cluster()
    pg.start()
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        cases, hole = scenarios(pg, tmp)
        print("| scenario | " + " | ".join(binaries) + " |")
        print("|---|" + "---|" * len(binaries))
        for name, fn in cases:
            cells = []
            for b in binaries:
                code, took, note = fn(b)
                cells.append(f"{code}, {took:.2f}s" + (f" ({note})" if note else ""))
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        hole.close()
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
