#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when some are missing (root only).
#   scripts/deps.sh               install what is missing (or say what is, when not root)
#   scripts/deps.sh bench         the same, with what `make bench` needs besides
#   scripts/deps.sh --list        print the package list
#   scripts/deps.sh --list bench  print it with the bench packages
set -euo pipefail

PACKAGES=(
    gcc make pkg-config libc6-dev
    libpq-dev libcurl4-openssl-dev libcjson-dev libssl-dev
    postgresql-15 postgresql-client-15
    python3 python3-pytest python3-alembic python3-psycopg2 python3-yaml
    util-linux tini openssl nginx-light
)
# make bench: the chart, the supervisor peers besides tini, curl for the upload peer.
BENCH_PACKAGES=(gnuplot-nox dumb-init curl)

list=false
if [ "${1:-}" = "--list" ]; then
    list=true
    shift
fi
case "${1:-}" in
    '') ;;
    bench) PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
    *) echo "usage: scripts/deps.sh [--list] [bench]" >&2; exit 2 ;;
esac

if $list; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
