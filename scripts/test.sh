#!/usr/bin/env bash
# make test: every test layer, then one summary line "N passed, N failed".
#   1. core         cargo test -p aegis-core             (pure Rust: unit + property tests)
#   2. pgrx         cargo pgrx test pg15 --runas postgres (Rust tests inside a backend)
#   3. regress      pg_regress over pg_test/              (the SQL contract, attack tests)
#   4. integration  cargo test -p aegis-integration       (real client logins)
# Layers 3 and 4 share a throwaway cluster with the release build installed and
# preloaded; layer 4 also uses a second one without preloading.
# Exit status is non-zero if anything failed, including a layer that could not run.
# LAYERS="regress integration" make test runs a subset (for development only:
# the full run is what CI and the README mean by make test).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

bash "$REPO_ROOT/scripts/setup.sh" || die "setup failed"

DIR="$(state_dir test)"
LOGS="$DIR/logs"
PASSED=0
FAILED=0
declare -a REPORT=()

# Sum the "test result: ok. N passed; M failed" lines libtest prints per binary.
count_libtest() { # LOGFILE LAYER RC
    local log="$1" layer="$2" rc="$3" p f
    p=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -E 'test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # build error or crash: still a failure
    record "$layer" "$p" "$f"
}

record() { # LAYER PASSED FAILED
    PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
    REPORT+=("$(printf '%-12s %4d passed, %d failed' "$1" "$2" "$3")")
}

LAYERS="${LAYERS:-core pgrx regress integration}"
want() { [[ " $LAYERS " == *" $1 "* ]]; }

cleanup() { cluster_stop "$DIR/cluster"; cluster_stop "$DIR/nopreload"; }
trap cleanup EXIT

cleanup
rm -rf "$DIR"
mkdir -p "$LOGS"

# -- 1. core -------------------------------------------------------------------
if want core; then
log "layer 1/4: cargo test -p aegis-core"
(cd "$REPO_ROOT" && cargo test --no-fail-fast -p aegis-core 2>&1) | tee "$LOGS/core.log"
count_libtest "$LOGS/core.log" core "${PIPESTATUS[0]}"
fi

# -- 2. pgrx -------------------------------------------------------------------
if want pgrx; then
log "layer 2/4: cargo pgrx test pg${PG_MAJOR} --runas ${PG_OS_USER}"
mkdir -p "$DIR/pgrx-data" && chown "$PG_OS_USER" "$DIR/pgrx-data"
(cd "$REPO_ROOT" && cargo pgrx test "pg${PG_MAJOR}" --runas "$PG_OS_USER" \
    --pgdata "$DIR/pgrx-data" 2>&1) | tee "$LOGS/pgrx.log"
count_libtest "$LOGS/pgrx.log" pgrx "${PIPESTATUS[0]}"
fi

# -- install + throwaway cluster ---------------------------------------------------
cluster_ok=1
if ! want regress && ! want integration; then
    cluster_ok=0
elif ! install_extension >"$LOGS/install.log" 2>&1; then
    cat "$LOGS/install.log"; cluster_ok=0
else
    log "starting throwaway cluster on port $TEST_PORT"
    ( cluster_init "$DIR/cluster" "$TEST_PORT" "fsync = off" "synchronous_commit = off" \
        && cluster_master_key "$DIR/cluster" && cluster_start "$DIR/cluster" ) || cluster_ok=0
    # A second cluster without preloading, for the integration tests that
    # check the library also works when loaded on first use.
    if want integration; then
        ( cluster_init "$DIR/nopreload" "$((TEST_PORT + 1))" "fsync = off" \
            "shared_preload_libraries = ''" && cluster_start "$DIR/nopreload" ) || cluster_ok=0
    fi
fi

# -- 3. regress -------------------------------------------------------------------
if want regress; then
log "layer 3/4: pg_regress over pg_test/"
if [ "$cluster_ok" -eq 1 ]; then
    R="$DIR/regress"
    mkdir -p "$R" && cp -r "$REPO_ROOT/pg_test/sql" "$REPO_ROOT/pg_test/expected" "$R/"
    chown -R "$PG_OS_USER" "$R"
    tests=()
    missing=0
    for f in "$REPO_ROOT"/pg_test/sql/*.sql; do
        t="$(basename "$f" .sql)"
        if [ ! -f "$REPO_ROOT/pg_test/expected/$t.out" ]; then
            log "FAIL: pg_test/sql/$t.sql has no pg_test/expected/$t.out"
            missing=$((missing + 1))
        else
            tests+=("$t")
        fi
    done
    (as_pg "$PG_REGRESS" --host="$DIR/cluster/run" --port="$TEST_PORT" \
        --user=postgres --dbname=aegis_regress --inputdir="$R" --outputdir="$R" \
        --bindir="$PG_BIN" --load-extension=pg_aegis --load-extension=pgcrypto "${tests[@]}" 2>&1) | tee "$LOGS/regress.log"
    rc="${PIPESTATUS[0]}"
    p=$(grep -Ec '\.\.\. ok ' "$LOGS/regress.log")
    f=$(grep -Ec '\.\.\. FAILED ' "$LOGS/regress.log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    [ -f "$R/regression.diffs" ] && cp "$R/regression.diffs" "$LOGS/" && cat "$R/regression.diffs"
    record regress "$p" "$((f + missing))"
else
    record regress 0 1
fi
fi

# -- 4. integration ---------------------------------------------------------------
if want integration; then
log "layer 4/4: cargo test -p aegis-integration"
if [ "$cluster_ok" -eq 1 ]; then
    (cd "$REPO_ROOT" && AEGIS_TEST_SOCKET_DIR="$DIR/cluster/run" AEGIS_TEST_PORT="$TEST_PORT" \
        AEGIS_TEST_DATA_DIR="$DIR/cluster/data" AEGIS_TEST_PG_BIN="$PG_BIN" \
        AEGIS_TEST_PORT_NOPRELOAD="$((TEST_PORT + 1))" AEGIS_TEST_NOPRELOAD_SOCKET_DIR="$DIR/nopreload/run" \
        cargo test --no-fail-fast -p aegis-integration 2>&1) | tee "$LOGS/integration.log"
    count_libtest "$LOGS/integration.log" integration "${PIPESTATUS[0]}"
else
    record integration 0 1
fi
fi

printf '\n'
printf '%s\n' "${REPORT[@]}"
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
