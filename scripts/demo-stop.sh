#!/usr/bin/env bash
# make demo-stop: stop the demo cluster (its data stays; make demo restarts it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR="$(state_dir demo)"
if cluster_running "$DIR"; then
    cluster_stop "$DIR"
    log "demo cluster stopped (data kept in $DIR; rm -rf it to start over)"
else
    log "demo cluster is not running"
fi
