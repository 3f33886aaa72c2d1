#!/usr/bin/env bash
# Idempotent toolchain setup for pg_aegis on Debian 12 (run as root, or with sudo).
# Fast when everything is already present: every step checks before it acts.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
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

# --- cargo pgrx init -------------------------------------------------------------
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg${PG_MAJOR} *= *\"${PG_CONFIG}\"" "$PGRX_HOME/config.toml"; then
    log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
    cargo pgrx init "--pg${PG_MAJOR}" "$PG_CONFIG"
else
    log "cargo pgrx already initialised for pg${PG_MAJOR}"
fi
log "done in ${SECONDS}s"
