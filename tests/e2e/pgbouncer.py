"""Debian's PgBouncer in front of a test cluster: started on a free port, as the postgres OS user
when we are root (it refuses to run as root), in the pool mode a test asks for."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

PGBOUNCER = "/usr/sbin/pgbouncer"


def available():
    return os.access(PGBOUNCER, os.X_OK)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    """One PgBouncer process: every database of the cluster, one user (postgres) whose password
    it knows (auth_file), so that it can log in to the server with SCRAM on the client's behalf."""

    def __init__(self, cluster, pool_mode, pool_size=5):
        self.cluster = cluster
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mtr-pgb-", dir="/tmp"))
        self.port = _free_port()
        self.proc = None
        (self.dir / "userlist.txt").write_text(f'"postgres" "{cluster.password}"\n')
        (self.dir / "pgbouncer.ini").write_text(f"""\
[databases]
* = host=127.0.0.1 port={cluster.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 500
logfile = {self.dir}/pgbouncer.log
pidfile =
admin_users = postgres
ignore_startup_parameters = extra_float_digits
""")
        os.chmod(self.dir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres", "postgres")

    def start(self):
        # As root: the postgres user, with no intermediate process, so that stop() reaches it.
        who = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        self.proc = subprocess.Popen([PGBOUNCER, str(self.dir / "pgbouncer.ini")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd="/", **who)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pgbouncer exited:\n" + self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("pgbouncer did not listen:\n" + self.log())

    def log(self):
        try:
            return (self.dir / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""

    def url(self, db="postgres"):
        return f"postgresql://postgres:{self.cluster.password}@127.0.0.1:{self.port}/{db}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
