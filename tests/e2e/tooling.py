"""Helpers for the tests of other migration tools: where the installed CLIs are, and a wrapper
on PATH that records every start of one before it runs the real program."""
import os
import pathlib
import shutil

from conftest import ROOT, clean_env, run

# scripts/tools-deps.sh installs the npm tools here (make tools-deps; make test runs it).
NODE_BIN = pathlib.Path(os.environ.get("MTR_TOOLS_DIR", ROOT / "build" / "tools")) / "node_modules" / ".bin"
# dbmate's npm package ships the binary itself; its .bin entry is a Node launcher.
DBMATE = NODE_BIN.parent / "@dbmate" / "linux-x64" / "bin" / "dbmate"


def have(program):
    """The path of a CLI the tests may run for real, or None."""
    if program == "dbmate":
        return str(DBMATE) if DBMATE.exists() else None
    p = NODE_BIN / program
    if p.exists():
        return str(p)
    return shutil.which(program, path="/usr/bin:/bin")


class Recorder:
    """A directory for the front of PATH where `name` is a script that appends one line per
    start to calls.log (its arguments) and then execs the real program."""

    def __init__(self, base, name, real):
        self.dir = base / "recorder"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "calls.log"
        script = self.dir / name
        script.write_text(f'#!/bin/sh\necho "$*" >> "{self.log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def path(self):
        return f"{self.dir}:{NODE_BIN}:/usr/local/bin:/usr/bin:/bin"


def tool_run(url, cwd, *args, path=None, env=None, timeout=120):
    e = clean_env(DATABASE_URL=url, PATH=path or os.environ["PATH"])
    e.update(env or {})
    return run([*args, "--migrate-cwd", str(cwd), "--migrate-only"], env=e, timeout=timeout)
