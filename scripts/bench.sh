#!/usr/bin/env bash
# make bench: side-by-side benchmarks against the baselines a user would
# otherwise use, on a throwaway cluster with the release build. Prints one
# table per benchmark; the README records the ratios with date and machine.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPS="${BENCH_REPS:-7}"
BENCH_PORT="${AEGIS_BENCH_PORT:-54349}"

bash "$REPO_ROOT/scripts/setup.sh"
install_extension

DIR="$(state_dir bench)"
cluster_stop "$DIR"
rm -rf "$DIR"
cluster_init "$DIR" "$BENCH_PORT"
cluster_master_key "$DIR"
trap 'cluster_stop "$DIR"' EXIT
cluster_start "$DIR"
cluster_psql "$DIR" "$BENCH_PORT" postgres -c "CREATE DATABASE aegis_bench"
cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -c "CREATE EXTENSION pg_aegis; CREATE EXTENSION pgcrypto;"

printf 'pg_aegis benchmarks, %s, %s, %s CPUs, %s reps (median)\n' \
    "$(date -u +%Y-%m-%d)" "$(uname -m)" "$(nproc)" "$REPS"
# BENCH_ONLY=pii runs benches/pii.sql alone.
for f in "$REPO_ROOT"/benches/${BENCH_ONLY:-*}.sql; do
    printf '\n== %s\n' "$(basename "$f" .sql)"
    PGOPTIONS="-c bench.reps=$REPS" cluster_psql "$DIR" "$BENCH_PORT" aegis_bench -P pager=off -f "$f"
done

# The pure scanner's throughput (criterion, 2 KiB texts built from the PII
# corpus): the README quotes the MiB/s.
if [ -z "${BENCH_ONLY:-}" ] || [ "${BENCH_ONLY}" = pii ]; then
    printf '\n== pii scanner (aegis-core, criterion)\n'
    (cd "$REPO_ROOT" && cargo bench -q -p aegis-core --bench pii_scan -- \
        --warm-up-time 1 --measurement-time 3 2>/dev/null | grep -E '^2KiB|thrpt:' | grep -v '%')
fi
