"""Tiny example app: reports the schema revision and exits (stands in for a real service)."""
import os
import sys

import psycopg2


def database_url() -> str:
    """DATABASE_URL, else the contents of the file named by DATABASE_URL_FILE or
    MTR_DATABASE_URL_FILE (a Docker/Kubernetes secret)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    for var in ("DATABASE_URL_FILE", "MTR_DATABASE_URL_FILE"):
        path = os.environ.get(var)
        if not url and path:
            with open(path, encoding="utf-8") as f:
                url = f.read().strip()
    return url


def main() -> int:
    try:
        url = database_url()
    except OSError as exc:
        print(f"example app: cannot read the database URL file: {exc}", file=sys.stderr)
        return 1
    if not url:
        print("example app: DATABASE_URL is not set", file=sys.stderr)
        return 1
    try:
        conn = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error as exc:
        reason = "; ".join(line.strip() for line in str(exc).strip().splitlines())
        print(f"example app: cannot connect to the database: {reason}", file=sys.stderr)
        return 1
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            revision = row[0] if row else "none"
        else:
            revision = "none"
        cur.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = cur.fetchone()[0]
    conn.close()
    print(f"example app started: schema at revision {revision} ({tables} tables); args={sys.argv[1:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
