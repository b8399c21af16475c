#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when some are missing (root only).
#   scripts/deps.sh                 install what is missing (or say what is, when not root)
#   scripts/deps.sh --list          print the package list
#   scripts/deps.sh [--list] bench  the same, with what `make bench` needs besides
#   scripts/deps.sh [--list] GROUP  the same for an optional group instead: fuzz (make fuzz),
#                                   lint (make lint)
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

# The optional groups: the build libraries (headers for the compilers and analyzers) and their tools.
BUILD_LIBS=(make pkg-config libc6-dev libpq-dev libcurl4-openssl-dev libcjson-dev libssl-dev)
FUZZ_PACKAGES=("${BUILD_LIBS[@]}" clang libclang-rt-14-dev llvm-14)
LINT_PACKAGES=("${BUILD_LIBS[@]}" cppcheck clang-tidy)

list=false
if [ "${1:-}" = "--list" ]; then
    list=true
    shift
fi
case "${1:-}" in
    "") ;;
    bench) PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
    fuzz) PACKAGES=("${FUZZ_PACKAGES[@]}") ;;
    lint) PACKAGES=("${LINT_PACKAGES[@]}") ;;
    *) echo "deps: unknown group '$1' (expected bench, fuzz or lint)" >&2; exit 64 ;;
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
