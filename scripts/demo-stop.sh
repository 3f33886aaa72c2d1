#!/usr/bin/env bash
# make demo-stop: stop the demo cluster (its data stays; make demo restarts it).
# make demo-reset (--reset): also delete its data, so the next make demo starts
# from a fresh cluster (needed when a development build changed the schema
# without a version bump).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR="$(state_dir demo)"
if cluster_running "$DIR"; then
    cluster_stop "$DIR"
    [ "${1:-}" = "--reset" ] || log "demo cluster stopped (data kept in $DIR; make demo-reset deletes it)"
else
    log "demo cluster is not running"
fi
if [ "${1:-}" = "--reset" ]; then
    rm -rf "$DIR"
    log "demo cluster data removed ($DIR)"
fi
