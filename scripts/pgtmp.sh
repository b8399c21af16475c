#!/usr/bin/env bash
# Manage a throwaway PostgreSQL 15 cluster in a directory (for tests, demos and benchmarks).
set -euo pipefail

PGBIN="${PGTMP_PGBIN:-/usr/lib/postgresql/15/bin}"
PYTHON=/usr/bin/python3
PROG="$(basename "$0")"

usage() {
    cat >&2 <<EOF
usage: $PROG init DIR [PASSWORD]   create a cluster in DIR/data (superuser postgres)
       $PROG start DIR             start it; prints the TCP port on stdout
       $PROG stop DIR              stop it (fast); keeps DIR
       $PROG up DIR [PASSWORD]     init + start; prints the port
       $PROG down DIR              stop + remove DIR
       $PROG url DIR [DBNAME]      print postgresql://postgres:PASSWORD@127.0.0.1:PORT/DBNAME
EOF
    exit 2
}

die() { echo "$PROG: error: $*" >&2; exit 1; }

# Run a server binary, as the postgres OS user when we are root (the server refuses to run as root).
pgrun() {
    local bin="$1"; shift
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$PGBIN/$bin" "$@")
    else
        "$PGBIN/$bin" "$@"
    fi
}

need_bins() {
    local b
    for b in initdb pg_ctl postgres; do
        [ -x "$PGBIN/$b" ] || die "$PGBIN/$b not found; install the server with: apt-get install postgresql-15"
    done
    if [ "$(id -u)" -eq 0 ]; then
        id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user (apt-get install postgresql-15 creates it)"
        command -v runuser >/dev/null 2>&1 || die "runuser not found (package util-linux)"
    fi
}

# Absolute path of DIR (which must exist).
absdir() { (cd "$1" 2>/dev/null && pwd -P) || die "directory '$1' does not exist"; }

need_cluster() {
    [ -f "$1/data/PG_VERSION" ] || die "'$1' holds no cluster (run: $PROG init $1)"
    [ -s "$1/port" ] || die "'$1/port' is missing"
}

cmd_init() {
    local dir="$1" password="${2:-postgres}" port pwfile
    need_bins
    [ -x "$PYTHON" ] || die "$PYTHON not found (needed to pick a free port)"
    case "$password" in *$'\n'*|'') die "password must be non-empty and single-line" ;; esac
    mkdir -p "$dir"
    chmod 700 "$dir"
    dir="$(absdir "$dir")"
    [ -e "$dir/data" ] && die "'$dir/data' already exists"
    case "$dir" in *"'"*) die "DIR must not contain a single quote" ;; esac
    # Socket path must fit in sun_path (107 bytes) including "/.s.PGSQL.NNNNN".
    [ "${#dir}" -le 90 ] || die "path '$dir' is too long for a Unix socket directory; use a shorter DIR"
    : >"$dir/.pgtmp"  # marker: lets 'down' know this directory is ours to delete

    (umask 077 && printf '%s\n' "$password" >"$dir/password")
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$dir"
        runuser -u postgres -- test -w "$dir" \
            || die "user postgres cannot write to '$dir' (a parent directory is not accessible); use a DIR under /tmp"
    fi
    pwfile="$dir/.pwfile"  # 0600, owned by the server user; removed right after initdb
    (umask 077 && printf '%s\n' "$password" >"$pwfile")
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$pwfile"

    if ! pgrun initdb -D "$dir/data" -U postgres --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"

    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- added by $PROG ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    echo "$port" >"$dir/port"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/port"
}

cmd_start() {
    local dir
    dir="$(absdir "$1")"
    need_bins
    need_cluster "$dir"
    if ! pgrun pg_ctl status -D "$dir/data" >/dev/null 2>&1; then
        if ! pgrun pg_ctl start -D "$dir/data" -l "$dir/server.log" -w -t 30 -s; then
            echo "--- last lines of $dir/server.log ---" >&2
            tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
            die "could not start the server in '$dir'"
        fi
    fi
    cat "$dir/port"
}

cmd_stop() {
    local dir="$1" rc=0
    [ -d "$dir" ] || return 0
    dir="$(absdir "$dir")"
    [ -f "$dir/data/postmaster.pid" ] || return 0
    need_bins
    pgrun pg_ctl status -D "$dir/data" >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || return 0  # not running
    pgrun pg_ctl stop -D "$dir/data" -m fast -w -t 30 -s || die "could not stop the server in '$dir'"
}

cmd_down() {
    local dir="$1"
    [ -e "$dir" ] || return 0
    dir="$(absdir "$dir")"
    [ -e "$dir/.pgtmp" ] || [ -z "$(ls -A "$dir")" ] \
        || die "refusing to delete '$dir': it was not created by '$PROG init'"
    cmd_stop "$dir"
    rm -rf -- "$dir"
}

cmd_url() {
    local dir dbname="${2:-postgres}"
    dir="$(absdir "$1")"
    [ -s "$dir/port" ] || die "'$dir' holds no cluster (run: $PROG init $dir)"
    [ -s "$dir/password" ] || die "'$dir/password' is missing"
    # Percent-encode the password and database name so any characters are safe in the URL.
    "$PYTHON" - "$(head -n 1 "$dir/password")" "$(cat "$dir/port")" "$dbname" <<'EOF'
import sys
from urllib.parse import quote
pw, port, db = sys.argv[1:]
print(f"postgresql://postgres:{quote(pw, safe='')}@127.0.0.1:{port}/{quote(db, safe='')}")
EOF
}

[ $# -ge 2 ] || usage
cmd="$1"; dir="$2"; shift 2
case "$cmd" in
    init)  [ $# -le 1 ] || usage; cmd_init "$dir" "$@" ;;
    start) [ $# -eq 0 ] || usage; cmd_start "$dir" ;;
    stop)  [ $# -eq 0 ] || usage; cmd_stop "$dir" ;;
    up)    [ $# -le 1 ] || usage; cmd_init "$dir" "$@"; cmd_start "$dir" ;;
    down)  [ $# -eq 0 ] || usage; cmd_down "$dir" ;;
    url)   [ $# -le 1 ] || usage; cmd_url "$dir" "$@" ;;
    *)     usage ;;
esac
