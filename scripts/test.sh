#!/usr/bin/env bash
# make test: every test layer on every supported PostgreSQL, then one summary
# line "N passed, N failed".
#   0. lint         make lint: cargo fmt --check, clippy -D warnings (counted as one test)
#   1. core         cargo test -p aegis-core              (pure Rust: unit + property tests)
#   2. pgrx         cargo pgrx test pg15 --runas postgres  (Rust tests inside a backend)
#   3. regress      pg_regress over pg_test/               (the SQL contract, attack tests)
#   4. integration  cargo test -p aegis-integration        (real client logins)
# Layers 1 and 2 run once, on PostgreSQL 15 (Debian's; core needs no server,
# pgrx's test harness is built for one version). Layers 3 and 4 run on
# every version in PG_VERSIONS (default "15 16 17 18"), one after the other,
# each against a throwaway cluster with that version's release build
# installed and preloaded (layer 4 also uses a second one without
# preloading). Exit status is non-zero if anything failed, including a layer
# that could not run. For development only: LAYERS="regress integration"
# runs a subset, PG_VERSIONS="16" a subset of versions (the full run is
# what CI and the README mean by make test).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PG_VERSIONS="${PG_VERSIONS:-15 16 17 18}"
export PG_VERSIONS
bash "$REPO_ROOT/scripts/setup.sh" || die "setup failed"

BASE="$(state_dir test)"
LOGS="$BASE/logs"
PASSED=0
FAILED=0
declare -a REPORT=()
declare -a FAILURES=()
declare -a TIMES=()

# Sum the "test result: ok. N passed; M failed" lines libtest prints per
# binary; failed tests are named in its "failures:" list.
count_libtest() { # LOGFILE LAYER RC
    local log="$1" layer="$2" rc="$3" p f names
    p=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -E 'test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
    names=$(awk '/^failures:$/ {on=1; next} on && /^    [A-Za-z0-9_:]+$/ {print $1} on && /^test result:/ {on=0}' "$log" \
        | sort -u | tr '\n' ' ')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; names="(build error or crash, see $log)"; fi
    record "$layer" "$p" "$f" "$names"
}

# pg_regress: "test name ... ok" / "... FAILED" up to PostgreSQL 15, TAP
# ("ok 1 - name", "not ok 5 - name") from 16.
count_regress() { # LOGFILE LAYER RC MISSING
    local log="$1" layer="$2" rc="$3" missing="$4" p f names
    p=$(grep -Ec '\.\.\. ok |^ok [0-9]+ ' "$log")
    f=$(grep -Ec '\.\.\. FAILED |^not ok [0-9]+ ' "$log")
    names=$( { grep -Eo '^test [a-z0-9_]+ +\.\.\. FAILED' "$log" | awk '{print $2}';
               grep -E '^not ok [0-9]+ ' "$log" | sed -E 's/^not ok [0-9]+ +- +([a-z0-9_]+).*/\1/'; } | tr '\n' ' ')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; names="(pg_regress failed, see $log)"; fi
    record "$layer" "$p" "$((f + missing))" "$names"
}

record() { # LAYER PASSED FAILED [NAMES]
    PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
    REPORT+=("$(printf '%-18s %4d passed, %d failed' "$1" "$2" "$3")")
    if [ "$3" -gt 0 ]; then FAILURES+=("$1: ${4:-?}"); fi
}

LAYERS="${LAYERS:-lint core pgrx regress integration}"
want() { [[ " $LAYERS " == *" $1 "* ]]; }

DIR=""
cleanup() {
    [ -n "$DIR" ] || return 0
    cluster_stop "$DIR/cluster"; cluster_stop "$DIR/nopreload"
}
trap cleanup EXIT

rm -rf "$BASE"
mkdir -p "$LOGS"

# -- 0. lint -------------------------------------------------------------------
if want lint; then
log "layer 0/4: make lint"
(cd "$REPO_ROOT" && make --no-print-directory lint 2>&1) | tee "$LOGS/lint.log"
if [ "${PIPESTATUS[0]}" -eq 0 ]; then record lint 1 0; else record lint 0 1 "(see $LOGS/lint.log)"; fi
fi

# -- 1. core -------------------------------------------------------------------
if want core; then
log "layer 1/4: cargo test -p aegis-core"
(cd "$REPO_ROOT" && cargo test --no-fail-fast -p aegis-core 2>&1) | tee "$LOGS/core.log"
count_libtest "$LOGS/core.log" core "${PIPESTATUS[0]}"
fi

# -- 2. pgrx (PostgreSQL 15) -------------------------------------------------------
if want pgrx && [[ " $PG_VERSIONS " == *" 15 "* ]]; then
pg_use 15
log "layer 2/4: cargo pgrx test pg15 --runas ${PG_OS_USER}"
mkdir -p "$BASE/pgrx-data" && chown "$PG_OS_USER" "$BASE/pgrx-data"
(cd "$REPO_ROOT" && cargo pgrx test pg15 --runas "$PG_OS_USER" \
    --pgdata "$BASE/pgrx-data" 2>&1) | tee "$LOGS/pgrx.log"
count_libtest "$LOGS/pgrx.log" pgrx "${PIPESTATUS[0]}"
fi

for major in $PG_VERSIONS; do
want regress || want integration || break
started=$SECONDS
pg_use "$major"
DIR="$BASE/pg$major"
mkdir -p "$DIR"

# -- install + throwaway cluster ---------------------------------------------------
cluster_ok=1
if ! install_extension >"$LOGS/install-pg$major.log" 2>&1; then
    cat "$LOGS/install-pg$major.log"; cluster_ok=0
else
    log "PostgreSQL $major: starting throwaway cluster on port $TEST_PORT"
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
log "layer 3/4 on PostgreSQL $major: pg_regress over pg_test/"
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
        --bindir="$PG_BIN" --load-extension=pg_aegis --load-extension=pgcrypto "${tests[@]}" 2>&1) \
        | tee "$LOGS/regress-pg$major.log"
    rc="${PIPESTATUS[0]}"
    [ -f "$R/regression.diffs" ] && cp "$R/regression.diffs" "$LOGS/regression-pg$major.diffs" \
        && cat "$R/regression.diffs"
    count_regress "$LOGS/regress-pg$major.log" "regress pg$major" "$rc" "$missing"
else
    record "regress pg$major" 0 1 "(no cluster)"
fi
fi

# -- 4. integration ---------------------------------------------------------------
if want integration; then
log "layer 4/4 on PostgreSQL $major: cargo test -p aegis-integration"
if [ "$cluster_ok" -eq 1 ]; then
    (cd "$REPO_ROOT" && AEGIS_TEST_SOCKET_DIR="$DIR/cluster/run" AEGIS_TEST_PORT="$TEST_PORT" \
        AEGIS_TEST_DATA_DIR="$DIR/cluster/data" AEGIS_TEST_PG_BIN="$PG_BIN" \
        AEGIS_TEST_PORT_NOPRELOAD="$((TEST_PORT + 1))" AEGIS_TEST_NOPRELOAD_SOCKET_DIR="$DIR/nopreload/run" \
        cargo test --no-fail-fast -p aegis-integration 2>&1) | tee "$LOGS/integration-pg$major.log"
    count_libtest "$LOGS/integration-pg$major.log" "integration pg$major" "${PIPESTATUS[0]}"
else
    record "integration pg$major" 0 1 "(no cluster)"
fi
fi

cleanup
DIR=""
TIMES+=("pg$major $((SECONDS - started))s")
done

printf '\n'
printf '%s\n' "${REPORT[@]}"
[ "${#TIMES[@]}" -gt 0 ] && printf 'time per version (build, regress, integration): %s\n' "${TIMES[*]}"
for f in "${FAILURES[@]}"; do printf 'FAILED %s\n' "$f"; done
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
