# Sourced by bench/*.sh: sets $url to BENCH_DATABASE_URL, or to a throwaway local cluster that
# is removed when the script exits.
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
