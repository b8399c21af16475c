#!/usr/bin/env bash
# Builds static musl libraries (OpenSSL, libpq, libcurl, cJSON) from Debian's source packages and prints their prefix.
#
#   scripts/static-deps.sh     prints the absolute prefix (with include/ and lib/) as the only line on stdout
#
# The prefix is ${STATIC_DEPS_DIR:-<repo>/build/static-deps}/<key>, where <key> is a short hash of the
# chosen source versions, the architecture, the musl version and this script. A prefix that holds a
# completed build is reused as it is. Source packages come from the Debian archive that the system's
# /etc/apt/sources.list.d/debian.sources names, through a private apt index kept in the cache dir
# (the system's apt configuration is not changed); the index is refreshed once a day, or at once with
# STATIC_DEPS_REFRESH=1. STATIC_DEPS_KEEP_BUILD=1 keeps the build trees. Progress goes to stderr.
set -euo pipefail

PROG="static-deps"
# stdout carries the prefix only: everything else, ours or a tool's, goes to stderr.
exec 3>&1 1>&2

PACKAGES=(openssl postgresql-15 curl cjson)
TOOL_PACKAGES=(musl-tools musl-dev dpkg-dev build-essential pkg-config perl xz-utils bzip2 file)
JOBS="${STATIC_DEPS_JOBS:-2}"

die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"

# --- build tools -----------------------------------------------------------------------------

missing=()
for p in "${TOOL_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "$PROG: missing packages: ${missing[*]}" >&2
        echo "$PROG: install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || die "could not install ${missing[*]}"
    fi
fi
for c in musl-gcc dpkg-source apt-get apt-cache make ar strip perl pkg-config flock sha256sum; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found"
done

ARCH="$(dpkg --print-architecture)"
case "$ARCH" in
    amd64) OPENSSL_TARGET=linux-x86_64 ;;
    arm64) OPENSSL_TARGET=linux-aarch64 ;;
    *) die "unsupported architecture '$ARCH' (known: amd64, arm64)" ;;
esac
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)" || die "dpkg-architecture failed"
for d in /usr/include/linux "/usr/include/$MULTIARCH/asm" /usr/include/asm-generic; do
    [ -d "$d" ] || die "kernel headers '$d' not found (package linux-libc-dev)"
done
MUSL_VERSION="$(dpkg-query -W -f='${Version}' musl-dev)"

# --- cache dir and lock ----------------------------------------------------------------------

CACHE="${STATIC_DEPS_DIR:-$ROOT/build/static-deps}"
mkdir -p "$CACHE" || die "cannot create cache dir '$CACHE'"
CACHE="$(cd "$CACHE" && pwd -P)"
case "$CACHE" in *[[:space:]]*) die "cache dir '$CACHE' must not contain white space" ;; esac
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock '$CACHE/.lock'"

# --- private apt index of source packages ----------------------------------------------------

SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources
APT_DIR="$CACHE/apt"
APT_OPTS=(
    -o Dir::Etc::SourceList=/dev/null
    -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
)
UNAVAILABLE="$APT_DIR/unavailable"   # versions the index lists but the archive did not serve

[ -r "$SYSTEM_SOURCES" ] || die "'$SYSTEM_SOURCES' not found: the Debian archive to fetch sources from is unknown"
mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" "$APT_DIR/cache" "$UNAVAILABLE"
sed -E 's/^Types:[[:space:]]+deb[[:space:]]*$/Types: deb-src/' "$SYSTEM_SOURCES" >"$APT_DIR/sources.list.d/debian.sources.new"
grep -q '^Types: deb-src' "$APT_DIR/sources.list.d/debian.sources.new" \
    || die "'$SYSTEM_SOURCES' has no 'Types: deb' stanza to turn into 'Types: deb-src'"
if ! cmp -s "$APT_DIR/sources.list.d/debian.sources.new" "$APT_DIR/sources.list.d/debian.sources"; then
    mv "$APT_DIR/sources.list.d/debian.sources.new" "$APT_DIR/sources.list.d/debian.sources"
    rm -f "$APT_DIR/updated"
else
    rm -f "$APT_DIR/sources.list.d/debian.sources.new"
fi

have_index() { compgen -G "$APT_DIR/lists/*_Sources*" >/dev/null; }

if [ "${STATIC_DEPS_REFRESH:-0}" = 1 ] || ! have_index || [ ! -e "$APT_DIR/updated" ] \
        || [ -n "$(find "$APT_DIR/updated" -mmin +1440 2>/dev/null)" ]; then
    say "updating the source package index (log: $APT_DIR/update.log)"
    if apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1; then
        touch "$APT_DIR/updated"
        rm -f "$UNAVAILABLE"/*
    elif have_index; then
        say "warning: apt-get update failed, using the previous index:"
        tail -n 5 "$APT_DIR/update.log" >&2
    else
        tail -n 20 "$APT_DIR/update.log" >&2
        die "apt-get update of the source package index failed"
    fi
fi

# Versions of source package $1 in the index, newest first (dpkg's ordering: ~ and + matter).
listed_versions() {
    apt-cache "${APT_OPTS[@]}" showsrc "$1" 2>/dev/null | awk -v pkg="$1" '
        /^Package: / { p = $2 }
        /^Version: / && p == pkg { print $2 }' | sort -u | sort_debian_versions
}

# The newest listed version of $1 whose source the archive serves; downloads it into $SRC_DIR.
# Sets CHOSEN_VERSION and CHOSEN_DSC.
choose_and_download() {
    local pkg="$1" v versions dir tmp tried=()
    versions="$(listed_versions "$pkg")"
    [ -n "$versions" ] || die "source package '$pkg' is not in the index (see $APT_DIR/update.log)"
    for v in $versions; do
        dir="$CACHE/sources/${pkg}_$v"
        if [ -e "$dir/.complete" ]; then
            CHOSEN_VERSION="$v"
            break
        fi
        tried+=("$v")
        [ -e "$UNAVAILABLE/${pkg}_$v" ] && continue
        say "downloading source $pkg=$v"
        tmp="$CACHE/sources/.tmp-${pkg}_$v"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        # Let apt's unprivileged download user write there when we are root.
        if [ "$(id -u)" -eq 0 ] && id -u _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
        if (cd "$tmp" && apt-get "${APT_OPTS[@]}" source --download-only "$pkg=$v") \
                >"$CACHE/sources/${pkg}.download.log" 2>&1; then
            rm -rf "$dir"
            mv "$tmp" "$dir"
            : >"$dir/.complete"
            CHOSEN_VERSION="$v"
            break
        fi
        say "$pkg=$v could not be downloaded, trying an older version:"
        grep -E '^(E|W):' "$CACHE/sources/${pkg}.download.log" | head -n 3 >&2 || true
        : >"$UNAVAILABLE/${pkg}_$v"
        rm -rf "$tmp"
    done
    [ -n "${CHOSEN_VERSION:-}" ] || die "no listed version of '$pkg' could be downloaded (tried: ${tried[*]:-none}; log: $CACHE/sources/${pkg}.download.log)"
    CHOSEN_DSC="$(find "$CACHE/sources/${pkg}_$CHOSEN_VERSION" -maxdepth 1 -name '*.dsc' | head -n 1)"
    [ -n "$CHOSEN_DSC" ] || die "no .dsc file in '$CACHE/sources/${pkg}_$CHOSEN_VERSION'"
}

# Sorts Debian version strings (one per line) newest first, with dpkg's comparison.
sort_debian_versions() {
    local -a vs=()
    local v i j t
    while read -r v; do [ -n "$v" ] && vs+=("$v"); done
    for ((i = 1; i < ${#vs[@]}; i++)); do
        t="${vs[$i]}"
        j=$((i - 1))
        while [ $j -ge 0 ] && dpkg --compare-versions "${vs[$j]}" lt "$t"; do
            vs[$((j + 1))]="${vs[$j]}"
            j=$((j - 1))
        done
        vs[$((j + 1))]="$t"
    done
    [ ${#vs[@]} -eq 0 ] || printf '%s\n' "${vs[@]}"
}

mkdir -p "$CACHE/sources"
declare -A VERSION DSC
for pkg in "${PACKAGES[@]}"; do
    CHOSEN_VERSION=""
    choose_and_download "$pkg"
    VERSION[$pkg]="$CHOSEN_VERSION"
    DSC[$pkg]="$CHOSEN_DSC"
done

# --- the prefix ------------------------------------------------------------------------------

key_material="$(
    for pkg in "${PACKAGES[@]}"; do echo "$pkg=${VERSION[$pkg]}"; done
    echo "arch=$ARCH musl=$MUSL_VERSION"
    sha256sum <"$SELF" | cut -d' ' -f1
)"
KEY="$(printf '%s\n' "$key_material" | sha256sum | cut -c1-12)"
PREFIX="$CACHE/$KEY"

if [ -e "$PREFIX/.complete" ]; then
    echo "$PREFIX" >&3
    exit 0
fi

say "building into $PREFIX"
for pkg in "${PACKAGES[@]}"; do say "  $pkg ${VERSION[$pkg]}"; done
mkdir -p "$PREFIX/include" "$PREFIX/lib" "$PREFIX/logs" "$PREFIX/build"
printf '%s\n' "$key_material" >"$PREFIX/versions"

# musl's headers do not include the kernel's; OpenSSL needs a few of them.
KHDR="$PREFIX/kernel-headers"
mkdir -p "$KHDR"
ln -sfn /usr/include/linux "$KHDR/linux"
ln -sfn "/usr/include/$MULTIARCH/asm" "$KHDR/asm"
ln -sfn /usr/include/asm-generic "$KHDR/asm-generic"

export CC=musl-gcc
export MAKEFLAGS=""          # a calling make's flags must not leak into the builds
unset MAKELEVEL MFLAGS CFLAGS CPPFLAGS LDFLAGS LIBS
# Only our prefix may answer pkg-config queries: the system's .pc files describe glibc builds.
export PKG_CONFIG_LIBDIR="$PREFIX/lib/pkgconfig"
export PKG_CONFIG_PATH=""
DEP_CFLAGS="-O2 -ffunction-sections -fdata-sections"

LOG=""
# Runs a command, appending its output to $LOG; on failure shows the log's tail and stops.
run() {
    echo "+ $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "$PROG: command failed: $*" >&2
        # With parallel jobs the first error is often not among the last lines.
        if grep -q -E '(error|Error|ERROR):' "$LOG"; then
            echo "$PROG: --- first error lines of $LOG ---" >&2
            grep -E '(error|Error|ERROR):' "$LOG" | head -n 10 >&2
        fi
        echo "$PROG: --- last 40 lines of $LOG ---" >&2
        tail -n 40 "$LOG" >&2
        die "building $CURRENT failed (full log: $LOG)"
    fi
}

# Unpacks the source package of $1 (Debian's patches applied) into $PREFIX/build/$1; cd there.
unpack() {
    local pkg="$1" dest="$PREFIX/build/$1"
    rm -rf "$dest"
    run dpkg-source -x "${DSC[$pkg]}" "$dest"
    cd "$dest"
}

# Builds dependency $1 with function build_$1 unless already done; logs to $PREFIX/logs/$1.log.
build() {
    local name="$1" t0
    CURRENT="$name"
    [ -e "$PREFIX/.done-$name" ] && return 0
    LOG="$PREFIX/logs/$name.log"
    : >"$LOG"
    t0=$SECONDS
    say "building $name (log: $LOG)"
    "build_$name"
    cd "$PREFIX"
    : >"$PREFIX/.done-$name"
    say "built $name in $((SECONDS - t0)) s"
}

build_openssl() {
    unpack openssl
    # --openssldir: where the runtime system keeps openssl.cnf and its CA certificates.
    run ./Configure "$OPENSSL_TARGET" no-shared no-tests no-async \
        --prefix="$PREFIX" --libdir=lib --openssldir=/etc/ssl \
        -isystem "$KHDR" $DEP_CFLAGS
    run make -j"$JOBS" build_libs
    run make install_dev
}

build_libpq() {
    unpack postgresql-15
    run ./configure --prefix="$PREFIX" \
        --with-ssl=openssl --without-readline --without-icu --without-gssapi --without-ldap \
        --without-zlib --without-lz4 --without-zstd --without-libxml --without-libxslt \
        --without-systemd --without-selinux --without-perl --without-python --without-tcl \
        --without-llvm --disable-nls \
        CC=musl-gcc CFLAGS="$DEP_CFLAGS" \
        CPPFLAGS="-I$PREFIX/include -isystem $KHDR" LDFLAGS="-L$PREFIX/lib"
    run make -C src/interfaces/libpq -j"$JOBS" all-static-lib
    local f
    for f in src/interfaces/libpq/libpq.a src/common/libpgcommon.a src/common/libpgcommon_shlib.a \
            src/port/libpgport.a src/port/libpgport_shlib.a; do
        run install -m 0644 "$f" "$PREFIX/lib/"
    done
    for f in src/interfaces/libpq/libpq-fe.h src/interfaces/libpq/libpq-events.h \
            src/include/postgres_ext.h src/include/pg_config_ext.h; do
        run install -m 0644 "$f" "$PREFIX/include/"
    done
    # The Unix socket directory libpq tries when no host is given.
    local sockdir
    sockdir="$(printf '#include "pg_config.h"\n#include "pg_config_manual.h"\nDEFAULT_PGSOCKET_DIR\n' \
        | musl-gcc -E -P -x c -Isrc/include - 2>>"$LOG" | tail -n 1 | tr -d "\"")"
    [ -n "$sockdir" ] || die "could not read DEFAULT_PGSOCKET_DIR from the configured sources"
    echo "$sockdir" >"$PREFIX/libpq-default-socket-dir"
    say "libpq's default socket directory: $sockdir"
}

build_curl() {
    unpack curl
    run ./configure --prefix="$PREFIX" --libdir="$PREFIX/lib" \
        --disable-shared --enable-static --with-openssl="$PREFIX" \
        --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt --with-ca-path=/etc/ssl/certs \
        --without-libpsl --without-nghttp2 --without-nghttp3 --without-ngtcp2 --without-libidn2 \
        --without-zstd --without-brotli --without-zlib --without-librtmp --without-libssh2 \
        --without-libssh --without-libgsasl --without-gssapi --without-hyper \
        --disable-manual --disable-ldap --disable-ldaps --disable-ftp --disable-file \
        --disable-dict --disable-telnet --disable-tftp --disable-pop3 --disable-imap \
        --disable-smtp --disable-gopher --disable-mqtt --disable-rtsp --disable-smb \
        --disable-ntlm-wb \
        CC=musl-gcc CFLAGS="$DEP_CFLAGS" CPPFLAGS="-isystem $KHDR" LDFLAGS="-L$PREFIX/lib"
    run make -C lib -j"$JOBS"
    run make -C lib install
    run make -C include install
    run make install-pkgconfigDATA
}

build_cjson() {
    unpack cjson
    run musl-gcc $DEP_CFLAGS -std=c89 -c cJSON.c -o cJSON.o
    run rm -f libcjson.a
    run ar rcs libcjson.a cJSON.o
    run install -m 0644 libcjson.a "$PREFIX/lib/"
    run install -d "$PREFIX/include/cjson"
    run install -m 0644 cJSON.h "$PREFIX/include/cjson/cJSON.h"
    run install -m 0644 cJSON.h "$PREFIX/include/cJSON.h"
}

t_all=$SECONDS
build openssl
build libpq
build curl
build cjson

for f in libssl.a libcrypto.a libpq.a libpgcommon.a libpgport.a libcurl.a libcjson.a; do
    [ -s "$PREFIX/lib/$f" ] || die "'$PREFIX/lib/$f' is missing after the build"
done
if [ "${STATIC_DEPS_KEEP_BUILD:-0}" != 1 ]; then
    rm -rf "$PREFIX/build"
fi
: >"$PREFIX/.complete"
say "static libraries ready in $((SECONDS - t_all)) s"
echo "$PREFIX" >&3
