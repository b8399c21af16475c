"""Real HTTP servers on 127.0.0.1 for the upload, webhook and --wait-http tests:
Debian's nginx with WebDAV PUT, and small Python servers whose answers a test scripts."""
import http.server
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from conftest import audit, wait_until

NGINX = "/usr/sbin/nginx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx serving and accepting PUTs into a temp dir (dav_methods PUT), as the harness's
    own process tree; stop() ends it."""

    def __init__(self):
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="mtr-nginx-"))
        self.root = self.base / "www"
        self.root.mkdir()
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.base / "nginx.conf"
        conf.write_text(f"""
{user}
daemon off;
master_process off;
worker_processes 1;
pid {self.base}/nginx.pid;
error_log {self.base}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {self.base}/access.log;
    client_body_temp_path {self.base}/body;
    proxy_temp_path {self.base}/proxy;
    fastcgi_temp_path {self.base}/fastcgi;
    uwsgi_temp_path {self.base}/uwsgi;
    scgi_temp_path {self.base}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        client_max_body_size 0;
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.base), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, self.proc)

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}/{path}"

    def access_log(self):
        return (self.base / "access.log").read_text()

    def stop(self):
        for f in self.root.rglob("*"):  # what the tool uploaded, for the secret audit
            if f.is_file():
                audit(f"upload {f.name}", f.read_bytes())
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def wait_port(port, proc=None, timeout=10):
    def listening():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(f"something listening on 127.0.0.1:{port}", listening, timeout)


class Recorder:
    """A threaded HTTP server answering each request with the next status of a script (the
    last one repeats) and the reply body, recording method, path, headers and the whole body (chunked too).
    hang=True: accept, read the request, never answer."""

    def __init__(self, statuses=(200,), hang=False, port=None, tls=None, reply=b""):
        self.statuses = list(statuses)
        self.hang = hang
        self.reply = reply  # the body of every answer
        self.requests = []
        self.lock = threading.Condition()  # notified at each request
        self.release = threading.Event()
        self.port = port or free_port()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length", 0))
                return self.rfile.read(n) if n else b""

            def handle_any(self):
                try:
                    body = self.body()
                except (ValueError, OSError):
                    body = None  # cut off: the client gave up
                # what the tool sent, for the secret audit: path (query), headers, body
                audit(f"http {self.command} {self.path}",
                      self.path.encode() + str(self.headers).encode() + (body or b""))
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": self.path,
                                           "headers": dict(self.headers), "body": body,
                                           "time": time.monotonic()})
                    status = outer.statuses[min(len(outer.requests), len(outer.statuses)) - 1]
                    outer.lock.notify_all()
                if outer.hang:
                    outer.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(outer.reply)))
                self.end_headers()
                self.wfile.write(outer.reply)

            do_GET = do_PUT = do_POST = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:  # (certificate, key) files: HTTPS
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="", host="127.0.0.1"):
        return f"{self.scheme}://{host}:{self.port}/{path}"

    def wait_for_requests(self, n=1, timeout=30):
        """Returns the requests once n have arrived (whole: body read, answer not yet sent);
        fails when the deadline passes first."""
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"{len(self.requests)} of {n} requests within {timeout}s")
            return list(self.requests)

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
