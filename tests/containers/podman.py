"""podman + runc from Debian, run the way the tests and bench/containers.py need it: a private
CONTAINERS_CONF, private storage under a temporary directory, images built here, nothing pulled
and nothing left behind."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "containers"
HERE = pathlib.Path(__file__).resolve().parent

# What this kernel and this process need (crun refuses the hybrid cgroup layout; there is no
# CAP_SYS_RESOURCE to raise limits beyond these).
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

# The app image's Debian: a shell, the PostgreSQL client (pg_dump for backups, psql for the
# shell entrypoint it is compared with), nothing else.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ["postgresql-client-15"]

# Places podman may write outside its private directories as root; what it creates there is
# removed again at the end (the blob-info cache of containers/image has no option).
SYSTEM_PATHS = ["/var/lib/containers", "/run/containers", "/run/libpod", "/var/lib/cni", "/etc/containers/networks"]


class Unavailable(Exception):
    """podman cannot run a container here; the message is its own error."""


class Podman:
    def __init__(self):
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="mtr-podman-", dir="/tmp"))
        (self.base / "containers.conf").write_text(CONTAINERS_CONF)
        for d in ("root", "runroot", "tmp"):
            (self.base / d).mkdir()
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.base / "containers.conf")}
        self.global_args = ["--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"),
                            "--tmpdir", str(self.base / "tmp")]
        self.existed = {p: os.path.exists(p) for p in SYSTEM_PATHS}

    def run(self, *args, check=True, timeout=300, **kw):
        r = subprocess.run(["podman", *self.global_args, *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def popen(self, *args, **kw):
        return subprocess.Popen(["podman", *self.global_args, *args], env=self.env, **kw)

    # --- images --------------------------------------------------------------------------

    def import_scratch(self, binary, tag="localhost/mtr-scratch:test"):
        """FROM scratch: the static binary alone (and /tmp for its status file)."""
        import tarfile
        tar = self.base / "scratch.tar"
        with tarfile.open(tar, "w") as t:
            info = t.gettarinfo(str(binary), arcname="migrate-then-run")
            info.uid = info.gid = 0
            info.mode = 0o755
            with open(binary, "rb") as f:
                t.addfile(info, f)
            for d, mode in (("tmp", 0o1777), ("etc", 0o755)):
                di = tarfile.TarInfo(d)
                di.type, di.mode = tarfile.DIRTYPE, mode
                t.addfile(di)
            hosts = b"127.0.0.1 localhost\n"
            hi = tarfile.TarInfo("etc/hosts")
            hi.size, hi.mode = len(hosts), 0o644
            import io
            t.addfile(hi, io.BytesIO(hosts))
        self.run("import", "--change", 'ENTRYPOINT ["/migrate-then-run"]', str(tar), tag)
        return tag

    def debian_rootfs(self):
        """A small Debian rootfs tarball made by mmdebstrap, built once into build/containers/."""
        key = hashlib.sha256(json.dumps([DEBIAN_SUITE, DEBIAN_MIRROR, DEBIAN_PACKAGES, 1]).encode()).hexdigest()[:12]
        tar = CACHE / f"debian-{DEBIAN_SUITE}-{key}.tar"
        if tar.exists():
            return tar
        CACHE.mkdir(parents=True, exist_ok=True)
        part = tar.with_suffix(".partial")
        r = subprocess.run(["mmdebstrap", "--variant=essential", "--include=" + ",".join(DEBIAN_PACKAGES),
                            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                            "--dpkgopt=path-exclude=/usr/share/locale/*", "--format=tar",
                            DEBIAN_SUITE, str(part), DEBIAN_MIRROR], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            part.unlink(missing_ok=True)
            raise AssertionError(f"mmdebstrap failed:\n{r.stderr[-3000:]}")
        part.rename(tar)
        return tar

    def build_app(self, binary, tini, tag="localhost/mtr-app:test"):
        """The app image: the Debian rootfs, the static binary, tini, the test apps, a user 10001."""
        base = "localhost/mtr-debian:test"
        self.run("import", str(self.debian_rootfs()), base, timeout=600)
        ctx = self.base / "context"
        shutil.copytree(HERE / "app", ctx / "app")
        shutil.copy(binary, ctx / "migrate-then-run")
        shutil.copy(tini, ctx / "tini")
        shutil.copy(HERE / "Containerfile.app", ctx / "Containerfile")
        self.run("build", "--pull=never", "--network=host", "--format=docker", "-t", tag, str(ctx), timeout=600)
        return tag

    # --- containers ----------------------------------------------------------------------

    def inspect(self, name, fmt):
        return self.run("inspect", name, "--format", fmt).stdout.strip()

    def remove(self, name, timeout=60):
        """rm --force, until the container is gone: one caught between two --restart=always
        restarts ("stopped", not started again yet) refuses it, and a later try finds it settled."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.run("rm", "--force", "--time", "0", name, check=False)
            if self.run("container", "exists", name, check=False).returncode == 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"podman rm --force {name} kept failing: {r.stderr}")
            time.sleep(0.2)

    def logs(self, name):
        r = self.run("logs", name, check=False)
        return r.stdout + r.stderr

    def wait_for_log(self, name, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.logs(name)
            if text in out:
                return out
            if self.inspect(name, "{{.State.Status}}") == "exited" and text not in self.logs(name):
                raise AssertionError(f"{name} exited before {text!r}:\n{self.logs(name)}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in the logs of {name}:\n{self.logs(name)}")

    def events(self, name):
        """The tool's JSON events in a container's logs."""
        out = []
        for line in self.logs(name).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def cleanup(self):
        self.run("rm", "--all", "--force", "--time", "0", check=False)
        self.run("volume", "prune", "--force", check=False)
        self.run("system", "reset", "--force", check=False)
        # Anything still mounted under our directory (it should not be) is unmounted first.
        for line in reversed(pathlib.Path("/proc/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        for p, existed in self.existed.items():
            if not existed and os.path.exists(p):
                shutil.rmtree(p, ignore_errors=True)

    def leftovers(self):
        """What is left of us on the machine after cleanup()."""
        left = [p for p, existed in self.existed.items() if not existed and os.path.exists(p)]
        if self.base.exists():
            left.append(str(self.base))
        left += [l.split()[1] for l in pathlib.Path("/proc/mounts").read_text().splitlines()
                 if l.split()[1].startswith(str(self.base))]
        return left
