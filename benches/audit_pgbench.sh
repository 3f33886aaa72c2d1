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
# usage: benches/audit_pgbench.sh DATA_DIR PORT DB   (run by scripts/bench.sh)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

DIR="$1"; PORT="$2"; DB="$3"
SECS="${BENCH_PGBENCH_SECONDS:-20}"
RUNS="${BENCH_PGBENCH_RUNS:-3}"
CLIENTS=(1 4)

sql() { cluster_psql "$DIR" "$PORT" "$DB" -At "$@"; }

have_pgaudit="$(sql -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'")"
[ "$have_pgaudit" = 1 ] || echo "pgaudit: not available"

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
