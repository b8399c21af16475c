"""The dynamic build loads libcurl only when HTTP is used: a start that speaks no HTTP (the
common one) does not pay for libcurl and the libraries it needs, and a machine without libcurl
runs it; an HTTP option there is refused with what to install."""
import os
import shutil
import subprocess

import pytest

from conftest import binary, clean_env


def dynamic():
    out = subprocess.run(["ldd", binary()], capture_output=True, text=True)
    return out.returncode == 0 and "libpq" in out.stdout


pytestmark = pytest.mark.skipif(not dynamic(), reason="the static binary links libcurl")


def libcurl_path():
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libcurl.so.4 " in line and "x86-64" in line:
            return os.path.realpath(line.split("=>")[1].strip())
    pytest.skip("libcurl.so.4 is not installed")


def loaded_libraries(args, env):
    """The shared objects the dynamic loader initialised during the run (LD_DEBUG=libs)."""
    r = subprocess.run([binary(), *args], env=dict(env, LD_DEBUG="libs"), capture_output=True, text=True,
                       timeout=60)
    return r, [l for l in r.stderr.splitlines() if "calling init:" in l]


def test_libcurl_is_not_linked_and_loaded_only_for_http(pg, db, tmp_path):
    assert "libcurl" not in subprocess.run(["ldd", binary()], capture_output=True, text=True).stdout
    env = clean_env(DATABASE_URL=pg.url(db))
    r, libs = loaded_libraries(["--migrate-cmd", "true", "--migrate-only"], env)
    assert r.returncode == 0, r.stderr
    assert libs and not [l for l in libs if "libcurl" in l], libs
    r, libs = loaded_libraries(["--migrate-cmd", "true", "--migrate-only",
                                "--notify-url", "http://127.0.0.1:9/hook", "--notify-timeout", "1s"], env)
    assert [l for l in libs if "libcurl" in l], libs


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_without_libcurl_http_options_are_refused_and_the_rest_runs(pg, db):
    lib = libcurl_path()
    env = clean_env(DATABASE_URL=pg.url(db))

    def hidden(args):
        """The tool in a mount namespace where libcurl's file is empty (as if not installed)."""
        script = 'mount --bind /dev/null "$0" && exec "$@"'
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, lib,
                               binary(), *args], env=env, capture_output=True, text=True, timeout=60)

    r = hidden(["--migrate-cmd", "true", "--migrate-only", "--notify-url", "http://127.0.0.1:9/hook"])
    assert r.returncode == 64, r.stderr
    assert "libcurl could not be loaded" in r.stderr and "apt-get install libcurl4" in r.stderr, r.stderr
    assert "--notify-url" in r.stderr, r.stderr
    r = hidden(["--migrate-cmd", "true", "--migrate-only"])
    assert r.returncode == 0, r.stderr
