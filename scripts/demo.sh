#!/usr/bin/env bash
# Demo: throwaway PostgreSQL, then migrate-then-run migrates the example project and execs its app.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="$ROOT/build/migrate-then-run"
PGTMP="$ROOT/scripts/pgtmp.sh"
PSQL=/usr/lib/postgresql/15/bin/psql

say() { echo "==> $*" >&2; }

if [ ! -x "$BIN" ]; then
    echo "demo: $BIN is missing; build it first with: make" >&2
    exit 1
fi

tmp="$(mktemp -d -t mtr-demo.XXXXXX)"
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    wait || true
    say "stopping and removing the throwaway PostgreSQL cluster"
    "$PGTMP" down "$tmp" || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "creating a throwaway PostgreSQL 15 cluster in $tmp (started 2 s from now, to show the wait)"
# A random password: the logs hide it wherever it appears, so it should not be a common word.
password="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$PGTMP" init "$tmp" "$password"
DATABASE_URL="$("$PGTMP" url "$tmp" postgres)"
export DATABASE_URL
(sleep 2 && "$PGTMP" start "$tmp" >/dev/null && echo "==> PostgreSQL is up" >&2) &
export MTR_LOG_FORMAT=text
export MTR_BACKUP_DIR="$tmp/backups"  # a backup is taken before migrating
export PYTHONDONTWRITEBYTECODE=1  # keep __pycache__ out of docker/example

cd "$ROOT"
say "running: build/migrate-then-run --alembic-ini docker/example/alembic.ini --python /usr/bin/python3 -- /usr/bin/python3 docker/example/app.py --greeting hello"
rc=0
"$BIN" --alembic-ini docker/example/alembic.ini --python /usr/bin/python3 \
    -- /usr/bin/python3 docker/example/app.py --greeting hello || rc=$?
say "migrate-then-run exited with status $rc"
exit "$rc"
