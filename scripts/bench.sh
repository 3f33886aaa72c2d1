#!/usr/bin/env bash
# make bench: side-by-side benchmarks against the baselines a user would
# otherwise use, on a throwaway cluster with the release build. Prints one
# table per benchmark; docs/benchmarks.md records the ratios with date and machine.
#   BENCH_ONLY=name        run benches/name.sql alone (e.g. BENCH_ONLY=audit)
#   BENCH_REPS=n           repetitions per benchmark (default 7)
#   BENCH_AUDIT_REPS=n     repetitions of the audit bulk inserts (default 5)
#   BENCH_PGBENCH_SECONDS, BENCH_PGBENCH_RUNS   see benches/audit_pgbench.sh
#   BENCH_SCALE_ROWS, BENCH_SCALE_BIG_ROWS  audit_scale: rows per bulk insert (200000),
#                          rows of the table protect() baselines (2000000)
#   BENCH_RETENTION_ROWS, BENCH_RETENTION_FRESH  expired / fresh rows (1000000 / 100000)
#   BENCH_RETENTION_CLIENTS, BENCH_RETENTION_RATE, ...  see benches/retention_concurrency.sh
#   BENCH_RP_ROWS, BENCH_RP_FRESH, BENCH_RP_ROUNDS  retention_partitions: rows of the
#                          expired partition / of each fresh day (1000000 / 100000), rounds (3)
#   BENCH_CV_ROWS, BENCH_CV_ENTRIES, BENCH_CV_DIGEST_STMTS, BENCH_CV_ROUNDS  audit_verify:
#                          table rows (1000000), entries per round (100000) of which
#                          digest statements of 1,000-row inserts (2000), rounds (3)
#   BENCH_ONLY=audit_pgbench  the pgbench half of the audit benchmark alone (narrow
#                          table: unprotected, digest, image)
#   PG_MAJOR, PG_EXTRA_ROOT, AEGIS_BENCH_PORT  which PostgreSQL (scripts/lib.sh) and port
#   BENCH_NO_INSTALL=1     skip setup.sh and the build: use the installed extension
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPS="${BENCH_REPS:-7}"
AUDIT_REPS="${BENCH_AUDIT_REPS:-$(( REPS < 5 ? REPS : 5 ))}"
BENCH_PORT="${AEGIS_BENCH_PORT:-54349}"
PGAUDIT_PKG="postgresql-${PG_MAJOR}-pgaudit"

if [ -z "${BENCH_NO_INSTALL:-}" ]; then
    PG_VERSIONS="$PG_MAJOR" bash "$REPO_ROOT/scripts/setup.sh"
    install_extension
else
    log "BENCH_NO_INSTALL: using the installed pg_aegis ($("$PG_CONFIG" --pkglibdir)/pg_aegis.so)"
fi

# The audit benchmark compares with pgaudit (a reference row): install it if
# missing; without it that benchmark says "pgaudit: not available".
audit_selected() { [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = audit ] || [ "$BENCH_ONLY" = audit_scale ]; }
pgaudit_lib() { [ -f "$("$PG_CONFIG" --pkglibdir)/pgaudit.so" ]; }
# Debian's package exists for Debian's PostgreSQL (15) only; it installs
# into /usr/lib/postgresql/<major>, never into the relocatable 16-18 builds.
if audit_selected && [ "$PG_MAJOR" != 15 ]; then
    log "pgaudit is not packaged for the PostgreSQL $PG_MAJOR build: the audit benchmarks run without it"
elif audit_selected && ! dpkg-query -W -f='${Status}' "$PGAUDIT_PKG" 2>/dev/null | grep -q "install ok installed"; then
    log "installing $PGAUDIT_PKG"
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        as_root apt-get install -y -qq --no-install-recommends "$PGAUDIT_PKG"; } >&2 \
        || log "could not install $PGAUDIT_PKG: the audit benchmark runs without pgaudit"
fi

DIR="$(state_dir bench)"
cluster_stop "$DIR"
rm -rf "$DIR"
cluster_init "$DIR" "$BENCH_PORT"
cluster_master_key "$DIR"
trap 'cluster_stop "$DIR"' EXIT
cluster_start "$DIR"
cluster_psql "$DIR" "$BENCH_PORT" postgres -c "CREATE DATABASE aegis_bench"
cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -c "CREATE EXTENSION pg_aegis; CREATE EXTENSION pgcrypto;"

# pgaudit's executor hooks run for every statement once it is loaded, so it
# is preloaded only while the audit benchmark runs (pg_aegis stays preloaded).
# A library that does not load leaves the cluster as it was.
restart() { cluster_stop "$DIR"; ( cluster_start "$DIR" ); }
pgaudit_loaded=""
pgaudit_on() {
    pgaudit_lib || return 0
    pgaudit_loaded=1
    cluster_psql "$DIR" "$BENCH_PORT" postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_aegis', 'pgaudit'"
    if ! restart; then
        log "pgaudit did not load: the audit benchmark runs without it"
        as_pg sed -i '/^shared_preload_libraries/d' "$DIR/data/postgresql.auto.conf"
        cluster_start "$DIR"
        pgaudit_loaded=""
    fi
}
pgaudit_off() {
    [ -n "$pgaudit_loaded" ] || return 0
    pgaudit_loaded=""
    cluster_psql "$DIR" "$BENCH_PORT" postgres -c "ALTER SYSTEM RESET shared_preload_libraries"
    restart
}

printf 'pg_aegis benchmarks, %s, %s, %s, %s CPUs, %s reps (median); load average %s\n' "$("$PG_BIN/postgres" --version)" \
    "$(date -u +%Y-%m-%d)" "$(uname -m)" "$(nproc)" "$REPS" "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${BENCH_ONLY:-}" = audit_pgbench ]; then
    printf '\n== audit_pgbench (narrow table)\n'
    bash "$REPO_ROOT/benches/audit_pgbench.sh" "$DIR" "$BENCH_PORT" aegis_bench
    exit 0
fi
# BENCH_ONLY=pii runs benches/pii.sql alone.
for f in "$REPO_ROOT"/benches/${BENCH_ONLY:-*}.sql; do
    name="$(basename "$f" .sql)"
    if [ "$name" = audit ]; then
        printf '\n== audit (%s reps)\n' "$AUDIT_REPS"
        pgaudit_on
        PGOPTIONS="-c bench.reps=$AUDIT_REPS" cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
        bash "$REPO_ROOT/benches/audit_pgbench.sh" "$DIR" "$BENCH_PORT" aegis_bench
        pgaudit_off
        continue
    fi
    if [ "$name" = audit_scale ]; then
        # Digest and image mode against unprotected tables, a minimal
        # PL/pgSQL trigger and pgaudit (reference), on the same data.
        printf '\n== audit_scale (%s reps)\n' "$AUDIT_REPS"
        pgaudit_on
        PGOPTIONS="-c bench.reps=$AUDIT_REPS -c bench.scale_rows=${BENCH_SCALE_ROWS:-200000} -c bench.scale_big_rows=${BENCH_SCALE_BIG_ROWS:-2000000}" \
            cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
        pgaudit_off
        continue
    fi
    if [ "$name" = retention ]; then
        # One run per side on the same data (a deletion cannot be repeated
        # on it): retention.sql loads, retention_concurrency.sh times the
        # deletions under a concurrent inserter and checks what is left.
        printf '\n== retention (one run per side)\n'
        PGOPTIONS="-c bench.retention_rows=${BENCH_RETENTION_ROWS:-1000000} -c bench.retention_fresh=${BENCH_RETENTION_FRESH:-100000}" \
            cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
        bash "$REPO_ROOT/benches/retention_concurrency.sh" "$DIR" "$BENCH_PORT" aegis_bench
        continue
    fi
    if [ "$name" = retention_partitions ]; then
        printf '\n== retention_partitions\n'
        PGOPTIONS="-c bench.rp_rows=${BENCH_RP_ROWS:-1000000} -c bench.rp_fresh=${BENCH_RP_FRESH:-100000} -c bench.rp_rounds=${BENCH_RP_ROUNDS:-3}" \
            cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
        continue
    fi
    if [ "$name" = audit_verify ]; then
        printf '\n== audit_verify\n'
        PGOPTIONS="-c bench.reps=$REPS -c bench.cv_rows=${BENCH_CV_ROWS:-1000000} -c bench.cv_entries=${BENCH_CV_ENTRIES:-100000} -c bench.cv_digest_stmts=${BENCH_CV_DIGEST_STMTS:-2000} -c bench.cv_rounds=${BENCH_CV_ROUNDS:-3}" \
            cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
        continue
    fi
    printf '\n== %s\n' "$name"
    PGOPTIONS="-c bench.reps=$REPS" cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
done

# The pure scanner's throughput (criterion, 2 KiB texts built from the PII
# corpus): docs/benchmarks.md quotes the MiB/s.
if [ -z "${BENCH_ONLY:-}" ] || [ "${BENCH_ONLY}" = pii ]; then
    printf '\n== pii scanner (aegis-core, criterion)\n'
    (cd "$REPO_ROOT" && cargo bench -q -p aegis-core --bench pii_scan -- \
        --warm-up-time 1 --measurement-time 3 2>/dev/null | grep -E '^2KiB|thrpt:' | grep -v '%')
fi
