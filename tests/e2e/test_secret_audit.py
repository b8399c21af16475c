"""The secret audit's own machinery (secret_audit.py), on a stand-in for the tool: a hit in output
or in a child's argv is found, and what the test itself passed on is not counted. Runs with the
audit (make test-secrets), which it vouches for."""
import subprocess
import time

import pytest

from secret_audit import ENABLED, Audit, ToolRun

pytestmark = pytest.mark.skipif(not ENABLED, reason="run by make test-secrets (MTR_SECRET_AUDIT=1)")

SECRET = "Self-test-4d1e-secret"  # not the suite's password: the real audit must not see it


def start(audit, tmp_path, script, argv_extra=()):
    """A stand-in tool: a shell script registered as a tool run, as Popen does in audit mode."""
    tool = tmp_path / "stand-in-tool"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    argv = [str(tool), *argv_extra]
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/d"}
    run = ToolRun(argv, env, "self-test")
    # The script waits until it is registered, as the real tool needs longer than that to start.
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.pid = p.pid
    audit.started(run)
    return p, run


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
    try:
        # The stand-in takes the password from its environment and puts it on a child's command line.
        leaky, _ = start(a, tmp_path, 'sleep 0.2; pw=${DATABASE_URL#*:*:}; sh -c "sleep 0.5" child "${pw%%@*}"\n')
        leaky.communicate(timeout=10)
        leaks = list(a.hits)
        # Here the test itself gave the tool the password as an argument, which it passes on.
        given, _ = start(a, tmp_path, 'sleep 0.2; sh -c "sleep 0.5" child "$1"\n', [SECRET])
        given.communicate(timeout=10)
        time.sleep(0.05)
    finally:
        a.stop_sampling()
    assert leaks and all("argv of pid" in where and SECRET not in excerpt for where, _, excerpt in leaks), leaks
    assert a.hits == leaks, a.hits
    assert a.excused.get("argv the test gave the tool", 0) >= 1, a.excused
