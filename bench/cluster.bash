# Sourced by bench/*.sh: the database to measure against, and the machine-readable results
# (the protocol is described in bench/report.py and bench/README.md).

# The bench's name in its result lines; Python code run by the script reads it too.
BENCH_NAME="$(basename "$0")"
export BENCH_NAME

# Sets $url to BENCH_DATABASE_URL, or to a throwaway local cluster that is removed when the
# script exits.
bench_database_url() {
    if [ -n "${BENCH_DATABASE_URL:-}" ]; then
        url="$BENCH_DATABASE_URL"
        return
    fi
    bench_tmp="$(mktemp -d -t mtr-bench.XXXXXX)"
    trap '"$ROOT/scripts/pgtmp.sh" down "$bench_tmp" || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    echo "bench: starting a throwaway PostgreSQL cluster (set BENCH_DATABASE_URL to use your own)" >&2
    "$ROOT/scripts/pgtmp.sh" up "$bench_tmp" "bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" >/dev/null
    url="$("$ROOT/scripts/pgtmp.sh" url "$bench_tmp")"
}

# bench_result WHAT OURS PEER_NAME PEER UNIT N [TARGET]: appends a result line to
# $BENCH_RESULTS when it is set. PEER_NAME and PEER may be empty (a figure without a peer).
bench_result() {
    [ -n "${BENCH_RESULTS:-}" ] || return 0
    local f
    for f in "$@"; do
        case "$f" in *$'\t'*|*$'\n'*) echo "bench: a result field holds a tab or a newline: $f" >&2; return 1 ;; esac
    done
    printf 'result\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$BENCH_NAME" "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" \
        >>"$BENCH_RESULTS"
}

# bench_skip REASON: says why the bench cannot run here and what to do, records it, exits 77.
bench_skip() {
    echo "bench: skipped: $1" >&2
    if [ -n "${BENCH_RESULTS:-}" ]; then
        printf 'skip\t%s\t%s\n' "$BENCH_NAME" "${1//$'\t'/ }" >>"$BENCH_RESULTS"
    fi
    exit 77
}
