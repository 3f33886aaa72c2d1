#!/usr/bin/env bash
# Side-by-side benchmark, second half of benches/audit.sql (which creates the
# schemas and roles used here): single-row INSERTs into error_logs with
# pgbench, one row per transaction, as a LOGIN member of aegis_ingest,
# protected (bench_audit) vs unprotected (bench_plain), at 1 and 4 clients.
# ratio = pg_aegis TPS / unprotected TPS (target: at least 0.6). The two sides
# alternate, BENCH_PGBENCH_RUNS runs each (median TPS); the PL/pgSQL jsonb
# trigger and pgaudit object auditing run once each as reference columns.
# Every run starts from an empty, checkpointed table. Drops the benchmark's
# schemas and roles at the end.
# Second table: the least favourable case for digest mode, single-row
# INSERTs into a narrow metric table (bigint identity key, text server id,
# timestamptz, five float8), as a LOGIN collector (INSERT granted; on the
# protected sides one permissive INSERT policy under protect()'s forced RLS):
# unprotected vs digest mode ({"audit_inserts": "digest", "digest_buckets":
# {"column": "ts"}}: target ratio >= 0.85) vs image mode (reference), at 1
# and 4 clients; the three sides rotate their order, BENCH_PGBENCH_RUNS runs
# each (median TPS), each from an empty, checkpointed table. Each side
# reports the trail bytes per inserted row (growth of aegis.audit_log over
# its runs / rows inserted). BENCH_ONLY=audit_pgbench runs this part alone
# (without benches/audit.sql's schemas, the error_logs part is skipped).
# usage: benches/audit_pgbench.sh DATA_DIR PORT DB   (run by scripts/bench.sh)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

DIR="$1"; PORT="$2"; DB="$3"
SECS="${BENCH_PGBENCH_SECONDS:-20}"
RUNS="${BENCH_PGBENCH_RUNS:-3}"
CLIENTS=(1 4)

sql() { cluster_psql "$DIR" "$PORT" "$DB" -At "$@"; }

have_pgaudit="$(sql -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'")"
# benches/audit.sql made the error_logs schemas (not when run alone).
have_error_logs="$(sql -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'bench_audit'")"
if [ "$have_error_logs" = 1 ] && [ "$have_pgaudit" != 1 ]; then echo "pgaudit: not available"; fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# One script per schema: the same row shapes as audit.sql's bulk data (one
# in ten rows names a user). -M prepared, as collectors' drivers do.
for side in plain audit plpgsql pgaudit; do
    cat >"$WORK/$side.sql" <<EOF
\\set r random(1, 1000000000)
\\set s random(1, 1000)
INSERT INTO bench_$side.error_logs (server_id, ts, error_severity, error_message, user_identifier, user_ip)
VALUES ('s' || lpad((:s)::text, 4, '0'), now(),
        CASE WHEN :r % 100 = 0 THEN 'SECURITY_BREACH' WHEN :r % 10 IN (1, 2, 3) THEN 'WARNING' ELSE 'ERROR' END,
        'upstream request timeout after 30000 ms calling orders-api /v1/orders [req ' || :r || ']'
        || CASE WHEN :r % 10 = 0 THEN ' for jane.doe' || :r % 97 || '@example.com' ELSE '' END,
        CASE WHEN :r % 10 = 0 THEN 'user-' || :r % 5000 END,
        CASE WHEN :r % 10 = 0 THEN format('10.%s.%s.7', :r / 256 % 256, :r % 256)::inet END);
EOF
done

# run SIDE CLIENTS -> TPS (excluding connection time)
run() {
    local side="$1" c="$2" user=bench_ingest out
    [ "$side" = pgaudit ] && user=bench_ingest_pgaudit
    sql -q -c "TRUNCATE bench_$side.error_logs" -c "CHECKPOINT" >/dev/null
    out="$("$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$c" -j "$c" -f "$WORK/$side.sql" \
        -h "$DIR/run" -p "$PORT" -U "$user" "$DB" 2>&1)" \
        || { printf '%s\n' "$out" >&2; die "pgbench failed ($side, $c clients)"; }
    [ "$side" = pgaudit ] && printf '%s\n' "$out" \
        | awk '/^number of transactions actually processed:/ { print $6 }' >>"$WORK/pgaudit_xacts"
    printf '%s\n' "$out" | awk '/^tps = / { print $3; exit }'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

pgaudit_lines_before=0
[ -f "$DIR/server.log" ] && pgaudit_lines_before="$(grep -c 'AUDIT: OBJECT' "$DIR/server.log" || true)"

error_logs_bench() {

echo
printf 'pgbench: single-row INSERT into error_logs, %s s per run, -M prepared, median of %s alternating runs (TPS)\n' "$SECS" "$RUNS"
printf '%7s | %15s | %12s | %5s | %-14s | %11s | %11s\n' clients "unprotected tps" "pg_aegis tps" ratio "target >= 0.6" "plpgsql tps" "pgaudit tps"
printf -- '--------+-----------------+--------------+-------+----------------+-------------+------------\n'
notes=""
for c in "${CLIENTS[@]}"; do
    plain=""; audit=""
    for ((i = 0; i < RUNS; i++)); do
        if (( (i + c) % 2 == 0 )); then
            plain+=" $(run plain "$c")"; audit+=" $(run audit "$c")"
        else
            audit+=" $(run audit "$c")"; plain+=" $(run plain "$c")"
        fi
    done
    plpgsql="$(run plpgsql "$c")"
    pgaudit="-"
    [ "$have_pgaudit" = 1 ] && pgaudit="$(printf '%.0f' "$(run pgaudit "$c")")"
    p="$(median <<<"$plain")"; a="$(median <<<"$audit")"
    ratio="$(awk -v a="$a" -v p="$p" 'BEGIN { printf "%.2f", a / p }')"
    met="$(awk -v r="$ratio" 'BEGIN { print (r >= 0.6) ? "met" : "missed" }')"
    printf '%7s | %15.0f | %12.0f | %5s | %-14s | %11.0f | %11s\n' "$c" "$p" "$a" "$ratio" "$met" "$plpgsql" "$pgaudit"
    notes+="$(printf '%s clients, each run (tps): unprotected%s; pg_aegis%s' "$c" "$plain" "$audit")"$'\n'
done
printf '%s' "$notes"

# Did the sides do what they claim? pg_aegis wrote one entry per committed
# row; pgaudit logged each statement to the server log.
printf 'check: pg_aegis entries for the last run = rows in bench_audit.error_logs: %s\n' \
    "$(sql -c "SELECT (SELECT count(*) FROM bench_audit.error_logs)
                    = (SELECT count(*) FROM aegis.audit_log l
                       WHERE table_name = 'bench_audit.error_logs' AND operation = 'INSERT'
                         AND id > (SELECT max(id) FROM aegis.audit_log
                                   WHERE table_name = 'bench_audit.error_logs' AND operation = 'TRUNCATE'))")"
if [ "$have_pgaudit" = 1 ]; then
    lines=$(( $(grep -c 'AUDIT: OBJECT' "$DIR/server.log" || true) - pgaudit_lines_before ))
    xacts="$(awk '{ n += $1 } END { print n + 0 }' "$WORK/pgaudit_xacts")"
    printf 'check: pgaudit logged one server log line per pgbench transaction: %s (%s lines, %s transactions)\n' \
        "$( [ "$lines" = "$xacts" ] && echo t || echo f)" "$lines" "$xacts"
fi
}
[ "$have_error_logs" = 1 ] && error_logs_bench

# ------------------------------------------------------------------ narrow
sql -q <<'EOF' >/dev/null
SET client_min_messages = error;
SELECT aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_nw_';
DROP SCHEMA IF EXISTS bench_nw_plain, bench_nw_digest, bench_nw_image CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
DROP ROLE IF EXISTS bench_nw_ingest;
CREATE ROLE bench_nw_ingest LOGIN;
DO $$
DECLARE s name;
BEGIN
    FOREACH s IN ARRAY '{bench_nw_plain,bench_nw_digest,bench_nw_image}'::name[] LOOP
        EXECUTE format('CREATE SCHEMA %I', s);
        EXECUTE format('CREATE TABLE %I.narrow (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
                       'server_id text NOT NULL, ts timestamptz NOT NULL, cpu float8, mem float8, disk float8, '
                       'net_in float8, net_out float8)', s);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO bench_nw_ingest', s);
        EXECUTE format('GRANT INSERT ON %I.narrow TO bench_nw_ingest', s);
    END LOOP;
END $$;
SELECT aegis.protect('bench_nw_digest.narrow', '{"audit_inserts": "digest", "digest_buckets": {"column": "ts"}}'),
       aegis.protect('bench_nw_image.narrow', '{}');
CREATE POLICY ingest ON bench_nw_digest.narrow FOR INSERT TO bench_nw_ingest WITH CHECK (true);
CREATE POLICY ingest ON bench_nw_image.narrow FOR INSERT TO bench_nw_ingest WITH CHECK (true);
ALTER SYSTEM SET autovacuum = off;
SELECT pg_reload_conf();
EOF
for side in plain digest image; do
    cat >"$WORK/nw_$side.sql" <<EOF
\\set r random(1, 1000000000)
\\set s random(1, 50)
INSERT INTO bench_nw_$side.narrow (server_id, ts, cpu, mem, disk, net_in, net_out)
VALUES ('srv-' || lpad((:s)::text, 3, '0'), now(), :r % 100, :r % 77, :r % 91, :r % 100000, :r % 99991);
EOF
done
# nw_run SIDE CLIENTS -> TPS; records the rows inserted and trail bytes written
nw_run() {
    local side="$1" c="$2" out b0 b1 n1
    sql -q -c "TRUNCATE bench_nw_$side.narrow" -c "CHECKPOINT" >/dev/null
    b0="$(sql -c "SELECT pg_total_relation_size('aegis.audit_log')")"
    out="$("$PG_BIN/pgbench" -n -M prepared -T "$SECS" -c "$c" -j "$c" -f "$WORK/nw_$side.sql" \
        -h "$DIR/run" -p "$PORT" -U bench_nw_ingest "$DB" 2>&1)" \
        || { printf '%s\n' "$out" >&2; die "pgbench failed (narrow $side, $c clients)"; }
    b1="$(sql -c "SELECT pg_total_relation_size('aegis.audit_log')")"
    n1="$(sql -c "SELECT count(*) FROM bench_nw_$side.narrow")"
    echo "$n1 $((b1 - b0))" >>"$WORK/nw_bytes_$side"
    printf '%s\n' "$out" | awk '/^tps = / { print $3; exit }'
}
sides=(plain digest image)
echo
printf 'pgbench: single-row INSERT into a narrow metric table, %s s per run, -M prepared, median of %s runs rotating the order (TPS)\n' "$SECS" "$RUNS"
printf '%7s | %15s | %10s | %12s | %-14s | %9s | %11s\n' clients "unprotected tps" "digest tps" "digest ratio" "target >= 0.85" "image tps" "image ratio"
printf -- '--------+-----------------+------------+--------------+----------------+-----------+------------\n'
notes=""
for c in "${CLIENTS[@]}"; do
    declare -A tps=([plain]="" [digest]="" [image]="")
    for ((i = 0; i < RUNS; i++)); do
        for ((j = 0; j < 3; j++)); do
            side="${sides[$(( (i + j + c) % 3 ))]}"
            tps[$side]+=" $(nw_run "$side" "$c")"
        done
    done
    p="$(median <<<"${tps[plain]}")"; d="$(median <<<"${tps[digest]}")"; im="$(median <<<"${tps[image]}")"
    dr="$(awk -v a="$d" -v p="$p" 'BEGIN { printf "%.2f", a / p }')"
    ir="$(awk -v a="$im" -v p="$p" 'BEGIN { printf "%.2f", a / p }')"
    met="$(awk -v r="$dr" 'BEGIN { print (r >= 0.85) ? "met" : "missed" }')"
    printf '%7s | %15.0f | %10.0f | %12s | %-14s | %9.0f | %11s\n' "$c" "$p" "$d" "$dr" "$met" "$im" "$ir"
    notes+="$(printf '%s clients, each run (tps): unprotected%s; digest%s; image%s' "$c" "${tps[plain]}" "${tps[digest]}" "${tps[image]}")"$'\n'
    unset tps
done
printf '%s' "$notes"
for side in plain digest image; do
    awk -v s="$side" '{ n += $1; b += $2 } END { printf "trail bytes per inserted row, %s: %.1f (%d rows, %d bytes of aegis.audit_log growth over its runs)\n", s, (n ? b / n : 0), n, b }' "$WORK/nw_bytes_$side"
done
sql -q <<'EOF' >/dev/null
SET client_min_messages = error;
SELECT aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_nw_';
DROP SCHEMA IF EXISTS bench_nw_plain, bench_nw_digest, bench_nw_image CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
DROP ROLE IF EXISTS bench_nw_ingest;
ALTER SYSTEM RESET autovacuum;
SELECT pg_reload_conf();
EOF
[ "$have_error_logs" = 1 ] || exit 0

# Clean up what audit.sql made.
sql -q <<'EOF' >/dev/null
SET client_min_messages = error;  -- unprotect() and DROP warn
SELECT aegis.unprotect(relid) FROM aegis.protected_tables
WHERE relid::text ~ '^bench_(audit|plain|plpgsql|supa|pgaudit)\.';
DROP SCHEMA IF EXISTS bench_audit, bench_plain, bench_plpgsql, bench_supa, bench_pgaudit CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
DROP ROLE IF EXISTS bench_ingest;
DROP ROLE IF EXISTS bench_ingest_pgaudit;
DROP ROLE IF EXISTS bench_auditor;
DROP EXTENSION IF EXISTS pgaudit;
ALTER SYSTEM RESET autovacuum;
SELECT pg_reload_conf();
EOF
