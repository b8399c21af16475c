"""The secret audit's own machinery (secret_audit.py), on a stand-in for the tool: a hit in output
or in a child's argv is found, and what the test itself passed on is not counted. Runs with the
audit (make test-secrets), which it vouches for."""
import subprocess

import pytest

from conftest import wait_until
from secret_audit import ENABLED, Audit, ToolRun

pytestmark = pytest.mark.skipif(not ENABLED, reason="run by make test-secrets (MTR_SECRET_AUDIT=1)")

SECRET = "Self-test-4d1e-secret"  # not the suite's password: the real audit must not see it


def start(audit, tmp_path, script, argv_extra=()):
    """A stand-in tool: a shell script registered as a tool run, as Popen does in audit mode. It
    reads a line before it goes on, and so does the child it starts: step() lets each go."""
    tool = tmp_path / "stand-in-tool"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    argv = [str(tool), *argv_extra]
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/d"}
    run = ToolRun(argv, env, "self-test")
    p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.pid = p.pid
    audit.started(run)
    step(p)  # registered: the stand-in may start its child
    return p, run


def read_argv(audit, part):
    """Whether the audit has read and checked the argv of a process with part in it."""
    with audit.lock:  # held through each pass of the sampler
        return any(e[2] and part in e[2] for e in audit.procs.values())


def step(p):
    p.stdin.write(b"\n")
    p.stdin.flush()


def test_output_hits_are_found_with_the_secret_masked():
    a = Audit("Other-password-1234")
    run = ToolRun(["migrate-then-run"], {"DATABASE_URL": f"postgresql://u:{SECRET}@h/d"}, "t")
    run.captured["stderr"] = f'{{"msg":"connecting to postgresql://u:{SECRET}@h/d"}}\n'.encode()
    a.runs.append(run)
    a.finish_test()
    assert len(a.hits) == 1
    where, test, excerpt = a.hits[0]
    assert where.startswith("stderr of migrate-then-run") and test == "(session)"
    assert SECRET not in excerpt and "<SECRET>" in excerpt


def test_a_child_with_the_secret_in_its_argv_is_a_hit_unless_the_test_gave_it(tmp_path):
    a = Audit("Other-password-1234")
    a.start_sampling()
    excused = "argv the test gave the tool"
    try:
        # The stand-in takes the password from its environment and puts it on a child's
        # command line; the child lives until the audit has seen it.
        leaky, _ = start(a, tmp_path, 'read _; pw=${DATABASE_URL#*:*:}; sh -c "read _" child "${pw%%@*}"\n')
        wait_until("the leak found", lambda: a.hits, timeout=10)
        step(leaky)
        leaky.communicate(timeout=10)
        leaks = list(a.hits)
        # Here the test itself gave the tool the password as an argument, which it passes on.
        given, _ = start(a, tmp_path, 'read _; sh -c "read _" child "$1"\n', [SECRET])
        wait_until("the child's argv read", lambda: read_argv(a, b"child\0" + SECRET.encode()), timeout=10)
        step(given)
        given.communicate(timeout=10)
    finally:
        a.stop_sampling()
    assert leaks and all("argv of pid" in where and SECRET not in excerpt for where, _, excerpt in leaks), leaks
    assert a.hits == leaks, a.hits
    assert a.excused.get(excused, 0) >= 1, a.excused
