"""The deployment examples: Dockerfile.example, docker/compose.example.yml and docker/k8s/.

Static checks (no Docker, no Kubernetes): every YAML file parses; the Dockerfile's COPY sources
exist; every migrate-then-run command line in them, and every one quoted in their comments,
uses options and MTR_* variables that `migrate-then-run --help` lists; the image and the
manifests agree with each other (status file, user id, Secret). Then the example commands run
for real against PostgreSQL, and the example ASGI app answers with the schema revision."""
import asyncio
import importlib.util
import json
import pathlib
import py_compile
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import PYTHON, ROOT, binary, clean_env

DOCKERFILE = ROOT / "Dockerfile.example"
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.example.yml"
COMPOSE_MIGRATE = DOCKER / "compose.migrate-service.yml"
K8S = DOCKER / "k8s"
EXAMPLE = DOCKER / "example"
ASGI = EXAMPLE / "asgi.py"
TOOL = "migrate-then-run"
HEAD = "0003"  # the example project's last revision


def k8s_manifests():
    return sorted(K8S.glob("*.yaml"))


def example_files():
    """Every file whose commands, variables and comments must match the tool."""
    return [DOCKERFILE, COMPOSE, COMPOSE_MIGRATE, *k8s_manifests(), K8S / "README.md",
            *sorted((DOCKER / "helm").rglob("*.yaml")), *sorted((DOCKER / "helm").rglob("*.tpl"))]


def yaml_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# --- what --help lists ---------------------------------------------------------------------

class Help:
    """Options and environment variables, parsed from `migrate-then-run --help`."""

    def __init__(self, text):
        self.takes_value = {}  # "--name" -> whether it takes a value
        self.env = set()
        for line in text.splitlines():
            if line.startswith("  --"):
                spec = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]  # "--name METAVAR" or "--a, --no-a"
                tokens = spec.replace(",", " ").split()
                names = [t for t in tokens if t.startswith("--")]
                has_value = any(not t.startswith("--") for t in tokens)
                for name in names:
                    self.takes_value[name] = has_value
            elif line.lstrip().startswith("env "):
                self.env.update(re.findall(r"\bMTR_[A-Z0-9_]+\b", line))
        self.env |= {"MTR_DATABASE_URL", "MTR_DATABASE_URL_FILE"}

    def known(self, option):
        """option without any =value; --no-NAME negates any flag (an option without a value)."""
        if option in self.takes_value:
            return True
        if option.startswith("--no-"):
            base = "--" + option[len("--no-"):]
            return self.takes_value.get(base) is False and base not in ("--help", "--version", "--health")
        return False

    def check_argv(self, argv, where):
        """Parses the tool's part of argv as the tool does; returns the app command after it."""
        assert pathlib.PurePath(argv[0]).name == TOOL, (where, argv)
        i = 1
        while i < len(argv):
            a = argv[i]
            if a == "--":
                return argv[i + 1:]
            if not a.startswith("-") or a == "-":
                return argv[i:]
            assert a.startswith("--"), f"{where}: short option {a!r} in {argv}"
            name, eq, _ = a.partition("=")
            assert self.known(name), f"{where}: {name} is not an option of {TOOL} (--help): {argv}"
            if self.takes_value.get(name) and not eq:
                assert i + 1 < len(argv), f"{where}: {name} needs a value: {argv}"
                i += 1
            i += 1
        return []


@pytest.fixture(scope="module")
def help_():
    out = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    h = Help(out.stdout)
    # Guard against a help format this parser no longer understands.
    for option in ("--alembic-ini", "--migrate-only", "--status-file", "--health", "--init", "--no-init"):
        assert option in h.takes_value, option
    assert h.takes_value["--alembic-ini"] and not h.takes_value["--migrate-only"]
    assert {"MTR_STATUS_FILE", "MTR_WAIT_TIMEOUT", "MTR_STATE_DIR"} <= h.env
    return h


# --- the Dockerfile ------------------------------------------------------------------------

def dockerfile_instructions():
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, rest = buf.partition(" ")
        out.append((instr.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def instruction(name):
    found = [rest for instr, rest in dockerfile_instructions() if instr == name]
    return found[-1] if found else None  # the last one wins, in the final stage


def exec_form(rest):
    """The JSON array of an exec-form instruction, else None."""
    try:
        v = json.loads(rest)
    except ValueError:
        return None
    return v if isinstance(v, list) and v and all(isinstance(x, str) for x in v) else None


def final_stage():
    """Instructions of the last stage (after the last FROM)."""
    instrs = dockerfile_instructions()
    last = max(i for i, (instr, _) in enumerate(instrs) if instr == "FROM")
    return instrs[last:]


def image_env():
    env = {}
    for instr, rest in final_stage():
        if instr == "ENV":
            for token in shlex.split(rest):
                k, eq, v = token.partition("=")
                assert eq, f"use ENV KEY=VALUE: {rest}"
                env[k] = v
    return env


def healthcheck_cmd():
    rest = instruction("HEALTHCHECK")
    assert rest is not None, "Dockerfile.example has no HEALTHCHECK"
    m = re.search(r"(?:^|\s)CMD\s+(.*)$", rest)
    assert m, f"HEALTHCHECK without CMD: {rest}"
    argv = exec_form(m.group(1))
    assert argv, f"HEALTHCHECK CMD should be exec form (a JSON array): {m.group(1)}"
    return argv


def option_value(argv, option):
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(option + "="):
            return a.split("=", 1)[1]
    return None


def test_dockerfile_entrypoint_is_exec_form_with_healthcheck_and_stopsignal(help_):
    entrypoint = exec_form(instruction("ENTRYPOINT") or "")
    assert entrypoint, f"ENTRYPOINT must be exec form (a JSON array): {instruction('ENTRYPOINT')}"
    assert entrypoint[0] == TOOL and entrypoint[-1] == "--", entrypoint
    assert exec_form(instruction("CMD") or ""), f"CMD should be exec form: {instruction('CMD')}"
    assert instruction("STOPSIGNAL") in ("SIGTERM", "15"), instruction("STOPSIGNAL")
    health = healthcheck_cmd()
    assert health[0] == TOOL and "--health" in health, health
    # The health check reads the status file that the ENTRYPOINT writes.
    status = option_value(health, "--status-file")
    assert status and image_env().get("MTR_STATUS_FILE") == status, (status, image_env())


def test_dockerfile_runs_as_a_numeric_non_root_user():
    user = instruction("USER")
    assert user, "Dockerfile.example has no USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER should be numeric and not root: {user}"


def test_dockerfile_copy_sources_exist():
    """The build context is the repository root."""
    copies = [rest for instr, rest in dockerfile_instructions() if instr in ("COPY", "ADD")]
    assert copies
    checked = 0
    for rest in copies:
        argv = exec_form(rest) or shlex.split(rest)
        flags = [a for a in argv if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage, not from the context
        paths = [a for a in argv if not a.startswith("--")]
        assert len(paths) >= 2, rest
        for src in paths[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} does not exist in the repository"
            checked += 1
    assert checked >= 2


def test_dockerfile_copies_the_static_binary_to_the_path_on_path():
    froms = [rest for instr, rest in final_stage() if instr == "COPY" and rest.startswith("--from=")]
    assert any(r.split()[-1] == f"/usr/local/bin/{TOOL}" for r in froms), froms


# --- YAML ----------------------------------------------------------------------------------

def test_every_yaml_file_under_docker_parses():
    # A Helm chart's templates are YAML only once rendered (test_manifests.py renders them).
    files = sorted(p for p in DOCKER.rglob("*") if p.suffix in (".yml", ".yaml") and "templates" not in p.parts)
    assert COMPOSE in files and len(k8s_manifests()) >= 4
    for path in files:
        try:
            docs = yaml_docs(path)
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {exc}")
        assert docs, f"{path.relative_to(ROOT)} is empty"


def test_compose_builds_the_example_image_from_the_repository_root():
    (doc,) = yaml_docs(COMPOSE)
    build = doc["services"]["app"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    # Every secret file is one the header comment explains how to create.
    header = COMPOSE.read_text().split("\nservices:")[0]
    for name, secret in doc["secrets"].items():
        file = (COMPOSE.parent / secret["file"]).resolve().relative_to(ROOT)
        assert str(file) in header, f"the header does not say how to create {file} (secret {name})"


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def as_argv(v):
    return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]


def manifest_commands():
    """(where, argv) of every command in the compose file and the Kubernetes manifests. A
    container without a command runs the image's ENTRYPOINT with its args (or the image's CMD)."""
    entrypoint = exec_form(instruction("ENTRYPOINT"))
    cmd = exec_form(instruction("CMD"))
    out = []
    for path in [COMPOSE, COMPOSE_MIGRATE, *k8s_manifests()]:
        where = str(path.relative_to(ROOT))
        for doc in yaml_docs(path):
            for node in walk(doc):
                test = node.get("test")
                if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
                    out.append((where, test[1:] if test[0] == "CMD" else shlex.split(test[1])))
                if "command" in node:
                    out.append((where, as_argv(node["command"]) + as_argv(node.get("args", []))))
                elif "entrypoint" in node:
                    out.append((where, as_argv(node["entrypoint"]) + as_argv(node.get("command", []))))
                elif "image" in node and ("args" in node or path not in (COMPOSE, COMPOSE_MIGRATE)):
                    if "example-app" in str(node["image"]):
                        out.append((where, entrypoint + (as_argv(node["args"]) if "args" in node else cmd)))
    return out


def tool_commands():
    cmds = [("Dockerfile.example ENTRYPOINT+CMD", exec_form(instruction("ENTRYPOINT")) + exec_form(instruction("CMD"))),
            ("Dockerfile.example HEALTHCHECK", healthcheck_cmd())]
    cmds += [(w, a) for w, a in manifest_commands() if a and pathlib.PurePath(a[0]).name == TOOL]
    return cmds


def test_commands_use_only_options_that_help_lists(help_):
    cmds = tool_commands()
    where = {w for w, _ in cmds}
    # The initContainer, the Job, the probes and the default entrypoint are all seen.
    for name in ("deployment.yaml", "job.yaml", "entrypoint-deployment.yaml"):
        assert str((K8S / name).relative_to(ROOT)) in where, (name, where)
    for w, argv in cmds:
        help_.check_argv(argv, w)


SEPARATOR = re.compile(r"(?<![\w-])--(?![\w-])")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def quoted_options(text):
    """(snippet, option) for options quoted in prose and comments: after `migrate-then-run` on a
    line (up to a closing backtick or a `--` separator), and in `code spans` that start with an
    option."""
    for line in text.splitlines():
        for m in re.finditer(re.escape(TOOL), line):
            rest = line[m.end():].split("`")[0]
            rest = SEPARATOR.split(rest)[0]
            for opt in OPTION.findall(rest):
                yield line.strip(), opt
    for span in re.findall(r"`([^`\n]+)`", text):
        if span.startswith("--"):
            for opt in OPTION.findall(SEPARATOR.split(span)[0]):
                yield span, opt


def test_options_quoted_in_comments_and_docs_exist(help_):
    seen = 0
    for path in example_files():
        for snippet, opt in quoted_options(path.read_text()):
            assert help_.known(opt.split("=")[0]), \
                f"{path.relative_to(ROOT)}: {opt} is not an option of {TOOL} (--help): {snippet}"
            seen += 1
    assert seen >= 10


def test_mtr_variables_are_ones_help_lists(help_):
    seen = set()
    for path in example_files():
        for name in re.findall(r"\bMTR_[A-Z0-9_]+\b", path.read_text()):
            assert name in help_.env, f"{path.relative_to(ROOT)}: {name} is not a variable of {TOOL} (--help)"
            seen.add(name)
    assert {"MTR_STATUS_FILE", "MTR_DATABASE_URL_FILE", "MTR_STATE_DIR", "MTR_WAIT_TIMEOUT"} <= seen, seen


# --- Kubernetes consistency ----------------------------------------------------------------

def containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("initContainers", []) + spec.get("containers", [])


def test_k8s_secret_references_exist():
    secrets = {}
    for path in k8s_manifests():
        for doc in yaml_docs(path):
            if doc.get("kind") == "Secret":
                secrets[doc["metadata"]["name"]] = set(doc.get("stringData", {})) | set(doc.get("data", {}))
    assert secrets
    refs = 0
    for path in k8s_manifests():
        for doc in yaml_docs(path):
            for node in walk(doc):
                ref = node.get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], ()), f"{path.name}: {ref} is not in secret.yaml"
                    refs += 1
    assert refs >= 3


def test_k8s_pods_match_the_image_and_can_write_the_status_file():
    uid = int(instruction("USER").split(":")[0])
    default_status = image_env().get("MTR_STATUS_FILE")
    workloads = 0
    for path in k8s_manifests():
        for doc in yaml_docs(path):
            if doc.get("kind") not in ("Deployment", "Job"):
                continue
            workloads += 1
            spec, ctrs = containers(doc)
            pod_sc = spec.get("securityContext", {})
            assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser") == uid, (path.name, pod_sc)
            for c in ctrs:
                assert "resources" in c, (path.name, c["name"])
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                status = env.get("MTR_STATUS_FILE", default_status)
                for node in walk(c):
                    if "exec" in node:
                        probe = node["exec"]["command"]
                        if pathlib.PurePath(probe[0]).name == TOOL:
                            assert option_value(probe, "--status-file") == status, (path.name, probe, status)
                if c.get("securityContext", {}).get("readOnlyRootFilesystem") and status:
                    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                    assert any(status.startswith(m.rstrip("/") + "/") for m in mounts), \
                        f"{path.name}: {c['name']} writes {status} on a read-only root filesystem"
    assert workloads >= 3


# --- the example app and commands, for real ------------------------------------------------

def test_asgi_example_compiles(tmp_path):
    py_compile.compile(str(ASGI), cfile=str(tmp_path / "asgi.pyc"), doraise=True)


def local_argv(argv):
    """An image command line for this checkout: our binary, the example project in place of /app."""
    return [binary() if a == TOOL else a.replace("/app/", f"{EXAMPLE}/").replace("/app", str(EXAMPLE))
            for a in argv]


def k8s_command(name, container):
    (doc,) = [d for d in yaml_docs(K8S / name) if d.get("kind") in ("Deployment", "Job")]
    _, ctrs = containers(doc)
    (c,) = [c for c in ctrs if c["name"] == container]
    return c["command"]


def asgi_get(app, path):
    """Calls the ASGI app directly, as a server would."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], body


def load_asgi():
    spec = importlib.util.spec_from_file_location("example_asgi", ASGI)
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in docker/example
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


def test_init_container_and_job_commands_migrate_and_the_app_reports_the_revision(pg, db, monkeypatch):
    env = clean_env(MTR_DATABASE_URL=pg.url(db), MTR_PYTHON=PYTHON, MTR_ON_FAILURE=None)
    init = local_argv(k8s_command("deployment.yaml", "migrate"))
    r = subprocess.run(init, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert pg.psql(db, "SELECT version_num FROM alembic_version") == HEAD
    # A second replica (here: the Job) finds nothing left to do.
    job = local_argv(k8s_command("job.yaml", "migrate"))
    r = subprocess.run(job, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert any(json.loads(line)["event"] == "migrate.skip" for line in r.stderr.splitlines()), r.stderr

    for var in ("MTR_DATABASE_URL", "DATABASE_URL_FILE", "MTR_DATABASE_URL_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", pg.url(db))
    app = load_asgi().app
    status, body = asgi_get(app, "/")
    assert (status, json.loads(body)) == (200, {"revision": HEAD}), body
    assert asgi_get(app, "/healthz") == (200, b"ok\n")
    assert asgi_get(app, "/nope")[0] == 404
    monkeypatch.setenv("DATABASE_URL", pg.url("no_such_database"))
    status, body = asgi_get(app, "/")
    assert status == 503 and pg.password not in body.decode(), body


def test_image_entrypoint_is_healthy_while_the_app_runs(pg, db, tmp_path):
    """ENTRYPOINT mode: with the image's ENTRYPOINT, the image's HEALTHCHECK command succeeds
    from inside the running app, and fails before the tool has run."""
    status = tmp_path / "status"
    health = local_argv(healthcheck_cmd())
    health[health.index("--status-file") + 1] = str(status)
    assert subprocess.run(health, capture_output=True, timeout=30).returncode == 1  # not started
    entrypoint = local_argv(exec_form(instruction("ENTRYPOINT")))
    env = clean_env(DATABASE_URL=pg.url(db), MTR_PYTHON=PYTHON, MTR_STATUS_FILE=str(status))
    r = subprocess.run(entrypoint + health, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # the app's exit status: the health check's
    assert pg.psql(db, "SELECT version_num FROM alembic_version") == HEAD
