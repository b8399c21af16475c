"""Minimal ASGI app (no framework) for the example image: `uvicorn asgi:app --app-dir /app`.

GET /         {"revision": "<alembic revision>"} read from the database (503 if it is unreachable)
GET /healthz  "ok" without touching the database (a liveness check)

The database URL is DATABASE_URL, else MTR_DATABASE_URL, else the contents of the file named by
DATABASE_URL_FILE or MTR_DATABASE_URL_FILE (a Docker or Kubernetes secret).
"""
import asyncio
import json
import os

import psycopg2


def database_url() -> str:
    for var in ("DATABASE_URL", "MTR_DATABASE_URL"):
        url = os.environ.get(var, "").strip()
        if url:
            return url
    for var in ("DATABASE_URL_FILE", "MTR_DATABASE_URL_FILE"):
        path = os.environ.get(var)
        if path:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
    raise RuntimeError("DATABASE_URL is not set")


def schema_revision() -> str:
    """The applied Alembic revision(s), comma-separated; "none" before the first migration."""
    conn = psycopg2.connect(database_url(), connect_timeout=5, application_name="example-asgi")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
            if not cur.fetchone()[0]:
                return "none"
            cur.execute("SELECT version_num FROM alembic_version ORDER BY version_num")
            return ",".join(row[0] for row in cur.fetchall()) or "none"
    finally:
        conn.close()


async def respond(send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, payload: dict) -> None:
    await respond(send, status, json.dumps(payload).encode() + b"\n", b"application/json")


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if path not in ("/", "/healthz"):
        await send_json(send, 404, {"error": "not found"})
    elif method not in ("GET", "HEAD"):
        await send_json(send, 405, {"error": "method not allowed"})
    elif path == "/healthz":
        await respond(send, 200, b"ok\n", b"text/plain; charset=utf-8")
    else:
        try:
            # psycopg2 blocks: keep it off the event loop.
            revision = await asyncio.get_running_loop().run_in_executor(None, schema_revision)
        except (psycopg2.Error, OSError, RuntimeError) as exc:
            reason = "; ".join(line.strip() for line in str(exc).strip().splitlines())
            await send_json(send, 503, {"error": f"database unavailable: {reason}"})
        else:
            await send_json(send, 200, {"revision": revision})
