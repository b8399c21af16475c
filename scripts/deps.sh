#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when some are missing (root only).
#   scripts/deps.sh [GROUP...]          install what is missing (or say what is, when not root)
#   scripts/deps.sh --list [GROUP...]   print the package list
# A GROUP adds the packages of one extra target: bench (make bench), containers
# (make test-containers), fuzz (make fuzz), lint (make lint), valgrind (make test-valgrind).
set -euo pipefail

PACKAGES=(
    gcc make pkg-config libc6-dev
    libpq-dev libcurl4-openssl-dev libcjson-dev libssl-dev
    postgresql-15 postgresql-client-15
    python3 python3-pytest python3-alembic python3-psycopg2 python3-yaml
    util-linux tini openssl nginx-light pgbouncer
    # other migration tools the tests run for real (the npm ones: scripts/tools-deps.sh)
    nodejs sqitch libdbd-pg-perl python3-django yoyo
)
# Node.js from Debian comes without npm; a Node.js that ships its own npm needs no package.
command -v npm >/dev/null || PACKAGES+=(npm)
declare -A GROUP_PACKAGES=(
    # the chart, the supervisor peers besides tini, curl for the upload peer
    [bench]="gnuplot-nox dumb-init curl"
    # a real OCI runtime (podman with runc; crun refuses this kernel's cgroup layout) and the
    # Debian rootfs of the app image
    [containers]="podman runc mmdebstrap"
    [fuzz]="clang libclang-rt-14-dev llvm-14"
    [lint]="cppcheck clang-tidy"
    [valgrind]="valgrind"
)

list=false
if [ "${1:-}" = "--list" ]; then
    list=true
    shift
fi
for group in "$@"; do
    [ -n "${GROUP_PACKAGES[$group]+set}" ] || { echo "deps: unknown group '$group' (known: ${!GROUP_PACKAGES[*]})" >&2; exit 2; }
    # shellcheck disable=SC2206  # one package per word
    PACKAGES+=(${GROUP_PACKAGES[$group]})
done

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
