"""The container tests' harness: podman (tests/containers/podman.py), the images, and the
session's PostgreSQL cluster from the end-to-end suite's conftest."""
import importlib.util
import json
import os
import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import podman as podman_mod  # noqa: E402

_spec = importlib.util.spec_from_file_location("mtr_e2e_conftest", ROOT / "tests" / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)
pg = e2e.pg  # the session's cluster, as in the end-to-end suite
db = e2e.db

FIGURES = ROOT / "build" / "containers" / "figures.json"
_figures = {}


def record(section, key, value):
    """A figure for the closing summary (and build/containers/figures.json)."""
    _figures.setdefault(section, {})[key] = value


def static_binary():
    return pathlib.Path(os.environ.get("MTR_STATIC_BIN", ROOT / "build" / "static" / "migrate-then-run.stripped"))


@pytest.fixture(scope="session")
def podman():
    if os.geteuid() != 0:
        pytest.skip("the container tests run podman as root")
    if not shutil.which("podman") or not shutil.which("mmdebstrap"):
        pytest.skip("podman or mmdebstrap is not installed (scripts/deps.sh containers)")
    binary = static_binary()
    assert binary.exists(), f"{binary}: run make static first"
    p = podman_mod.Podman()
    try:
        scratch = p.import_scratch(binary)
        r = p.run("run", "--rm", "--pull=never", "--network=host", scratch, "--version", check=False)
        if r.returncode != 0:
            pytest.skip(f"podman cannot run a container here: {r.stderr.strip() or r.stdout.strip()}")
        p.scratch = scratch
        p.app = p.build_app(binary, shutil.which("tini-static") or "/usr/bin/tini-static")
        yield p
    finally:
        p.cleanup()
        left = p.leftovers()
        assert not left, f"left behind: {left}"


@pytest.fixture
def name(request):
    """A container name for this test (removed afterwards)."""
    names = []

    def make(suffix=""):
        n = "mtr-" + request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40] + suffix
        names.append(n)
        return n

    yield make
    p = request.getfixturevalue("podman")
    for n in names:
        p.run("rm", "--force", "--time", "0", n, check=False)


def pytest_terminal_summary(terminalreporter):
    if not _figures:
        return
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(_figures, indent=2, sort_keys=True) + "\n")
    terminalreporter.write_line(f"figures ({FIGURES.relative_to(ROOT)}):")
    for section, values in sorted(_figures.items()):
        for key, value in sorted(values.items()):
            terminalreporter.write_line(f"  {section}: {key}: {value}")
