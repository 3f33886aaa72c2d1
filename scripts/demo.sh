#!/usr/bin/env bash
# make demo: set up, build (release), install, start a local cluster with the
# library preloaded, create a database with pg_aegis, run the walkthrough and
# print how to connect. Safe to run again: it reuses a running cluster.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DEMO_DB="aegis_demo"

bash "$REPO_ROOT/scripts/setup.sh"
install_extension

DIR="$(state_dir demo)"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
    log "initialising demo cluster in $DIR"
    rm -rf "$DIR"
    # The background sealer links the demo's audit entries every second.
    cluster_init "$DIR" "$DEMO_PORT" "aegis.seal_databases = '$DEMO_DB'"
fi
cluster_master_key "$DIR"
if cluster_running "$DIR"; then
    # A running server keeps the old library in already-open backends only;
    # a restart makes every session (and the preloaded hooks) use the new build.
    log "restarting demo cluster to load the freshly installed library"
    as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -m fast -w -t 60 restart >/dev/null
else
    log "starting demo cluster on port $DEMO_PORT"
    cluster_start "$DIR"
fi

if ! cluster_psql "$DIR" "$DEMO_PORT" postgres -Atc \
        "SELECT 1 FROM pg_database WHERE datname = '$DEMO_DB'" | grep -q 1; then
    cluster_psql "$DIR" "$DEMO_PORT" postgres -c "CREATE DATABASE $DEMO_DB"
fi
cluster_psql "$DIR" "$DEMO_PORT" "$DEMO_DB" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_aegis;
ALTER EXTENSION pg_aegis UPDATE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SQL

log "walkthrough (demo/walkthrough.sql)"
cluster_psql "$DIR" "$DEMO_PORT" "$DEMO_DB" -P pager=off -e -f "$REPO_ROOT/demo/walkthrough.sql"

cat <<EOF

pg_aegis demo is running (PostgreSQL ${PG_MAJOR}, port ${DEMO_PORT}, data in ${DIR}).
Connect with:

    psql -h ${DIR}/run -p ${DEMO_PORT} -U postgres ${DEMO_DB}

Try:  SELECT aegis.digest('abc', 'sha256') = digest('abc', 'sha256');
Stop: make demo-stop
EOF
