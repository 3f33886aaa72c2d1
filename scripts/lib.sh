#!/usr/bin/env bash
# Shared settings and cluster helpers, sourced by the other scripts.
# PostgreSQL refuses to run as root, so every server command runs as the
# `postgres` OS user (created by the Debian package).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_OS_USER="${PG_OS_USER:-postgres}"
# PostgreSQL 16-18 are relocatable builds installed by scripts/setup.sh.
PG_EXTRA_ROOT="${PG_EXTRA_ROOT:-/opt/pg_aegis-postgresql}"

# pg_use MAJOR: point PG_BIN, PG_CONFIG, PG_REGRESS and the build (cargo
# feature, target folder) at one PostgreSQL major version. 15 is Debian's
# (target/, as for every cargo command run by hand); 16-18 are setup.sh's,
# each built in target/pg<major>.
pg_use() {
    PG_MAJOR="$1"
    if [ "$PG_MAJOR" = 15 ]; then
        PG_BIN="/usr/lib/postgresql/15/bin"
        PG_REGRESS="/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress"
        PG_TARGET_DIR="$REPO_ROOT/target"
    else
        PG_BIN="$PG_EXTRA_ROOT/$PG_MAJOR/bin"
        PG_REGRESS="$PG_EXTRA_ROOT/$PG_MAJOR/lib/pgxs/src/test/regress/pg_regress"
        PG_TARGET_DIR="$REPO_ROOT/target/pg$PG_MAJOR"
    fi
    PG_CONFIG="$PG_BIN/pg_config"
}
pg_use "${PG_MAJOR:-15}"

DEMO_PORT="${AEGIS_DEMO_PORT:-54329}"
TEST_PORT="${AEGIS_TEST_PORT:-54339}"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as the PostgreSQL OS user (we are root here, or already it),
# from / so a working directory that user cannot enter causes no warnings.
# Callers pass absolute paths.
as_pg() {
    (
        cd / || exit 1
        if [ "$(id -un)" = "$PG_OS_USER" ]; then
            "$@"
        elif [ "$(id -u)" -eq 0 ]; then
            runuser -u "$PG_OS_USER" -- "$@"
        else
            sudo -u "$PG_OS_USER" -- "$@"
        fi
    )
}

# Where a local cluster lives. Under the repository (an ignored folder) when
# the postgres user can reach it; a clone under /root is not reachable, so
# fall back to /var/tmp with the same layout and say so.
state_dir() { # $1 = demo|test
    local name="$1"
    if as_pg test -x "$REPO_ROOT" -a -r "$REPO_ROOT" 2>/dev/null; then
        printf '%s/.%s\n' "$REPO_ROOT" "$name"
    else
        local tag
        tag="$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
        log "user $PG_OS_USER cannot read $REPO_ROOT: $name cluster goes to /var/tmp/pg_aegis-$tag/$name"
        printf '/var/tmp/pg_aegis-%s/%s\n' "$tag" "$name"
    fi
}

# cluster_init DIR PORT [extra postgresql.conf lines...]
# A fresh data directory in DIR/data, socket in DIR/run, log in DIR/server.log.
# Local socket connections trust; TCP on 127.0.0.1 needs a SCRAM password.
cluster_init() {
    local dir="$1" port="$2"; shift 2
    mkdir -p "$dir/run"
    chown -R "$PG_OS_USER" "$dir"
    chmod 700 "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    {
        echo "# pg_aegis local cluster"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir/run'"
        echo "shared_preload_libraries = 'pg_aegis'"
        echo "password_encryption = 'scram-sha-256'"
        echo "max_connections = 50"
        echo "shared_buffers = 128MB"
        local line
        for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

# cluster_master_key DIR: a random pg_aegis master key in DIR/master.key
# (64 hex digits, owned by the postgres user, mode 600), configured through
# aegis.master_key_file. Kept if it exists: data encrypted under it must stay
# readable across `make demo` runs.
cluster_master_key() {
    local dir="$1" key="$1/master.key"
    if [ ! -f "$key" ]; then
        ( umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key"; echo >>"$key" )
        chown "$PG_OS_USER" "$key"
        chmod 600 "$key"
    fi
    if ! grep -q '^aegis.master_key_file' "$dir/data/postgresql.conf"; then
        echo "aegis.master_key_file = '$key'" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    fi
}

cluster_running() { # DIR
    [ -f "$1/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

cluster_start() { # DIR
    local dir="$1"
    cluster_running "$dir" && return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/server.log" >&2; die "server in $dir did not start"; }
}

cluster_stop() { # DIR
    local dir="$1"
    if cluster_running "$dir"; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
    fi
}

# psql against a local cluster as the postgres superuser, over the socket.
cluster_psql() { # DIR PORT DB [psql args...]
    local dir="$1" port="$2" db="$3"; shift 3
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "$port" -U postgres -d "$db" "$@"
}

# Build (release) and install the extension into the system PostgreSQL.
install_extension() {
    log "building and installing pg_aegis (release, PostgreSQL $PG_MAJOR) into $("$PG_CONFIG" --pkglibdir)"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$PG_TARGET_DIR" cargo pgrx install --release \
        --pg-config "$PG_CONFIG" --no-default-features --features "pg$PG_MAJOR" >&2)
    # Install scripts of released versions (cargo pgrx writes only the
    # current one), so CREATE EXTENSION ... VERSION 'old' and the upgrade
    # path can be tested; update scripts themselves come from cargo pgrx.
    cp "$REPO_ROOT"/sql/released/pg_aegis--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
}
