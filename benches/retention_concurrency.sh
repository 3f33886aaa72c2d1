#!/usr/bin/env bash
# Side-by-side benchmark, second half of benches/retention.sql (which loads
# the two identical protected tables): deleting the expired rows while a
# collector keeps inserting into the same table.
#   pg_aegis  SELECT * FROM aegis.apply_retention()   (one call: one scan
#             collects the expired rows' ctids, DELETEs of 10,000 ctids each,
#             one transaction)
#   baseline  DELETE FROM bench_ret_plain.user_access_logs
#             WHERE accessed_at < now() - interval '90 days'   (one statement)
# Each side, once, in turn (BENCH_RETENTION_ORDER, default "aegis plain"):
# CHECKPOINT; start pgbench inserting single rows into that side's table
# (BENCH_RETENTION_CLIENTS clients, 2 by default, at BENCH_RETENTION_RATE
# inserts/s in total, 500 by default, 0 for as fast as they go; -M prepared;
# as a LOGIN member of aegis_ingest, so RLS and the audit trigger apply;
# every transaction logged with -l); after BENCH_RETENTION_QUIET_SECONDS (5)
# of inserts alone, run the deletion from psql, timed on the server from
# before the statement to after its commit; 2 s later stop the inserter (its
# connections are terminated: pgbench then reports its clients as aborted,
# which is expected here).
# With a rate (-R), pgbench measures each insert from its scheduled start, so
# an insert held up counts the whole wait, and so do the inserts queued
# behind it; "exec" is the same latency minus the schedule lag (from the
# moment pgbench sent the insert): one insert blocked by a lock would show
# there as one long insert. An insert is "during the deletion" when it was
# in flight at any moment between the deletion's start and its commit.
# Locks are looked at two more ways: pg_stat_activity is sampled every 100 ms
# (how many of the inserter's active samples were waiting on a heavyweight
# lock, and the most common wait events of the inserter and of the deleting
# backend), and log_lock_waits (set by retention.sql, deadlock_timeout 1 s)
# logs every lock wait over a second, counted per side.
# Checked (the run fails otherwise): each side deleted exactly the expired
# rows, the fresh rows and every committed insert survived, the inserter ran
# from before the deletion to after it without errors, and each deleted row
# left one DELETE entry in aegis.audit_log (apply_retention() also its
# RETENTION entry).
# BENCH_RETENTION_KEEP=1 keeps the per-transaction logs and samples (and
# says where).
# usage: benches/retention_concurrency.sh DATA_DIR PORT DB   (run by scripts/bench.sh)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

DIR="$1"; PORT="$2"; DB="$3"
CLIENTS="${BENCH_RETENTION_CLIENTS:-2}"
RATE="${BENCH_RETENTION_RATE:-500}"
QUIET="${BENCH_RETENTION_QUIET_SECONDS:-5}"
GRACE=2
# pgbench's own time limit, only a safety net: the script stops it.
MAX_SECS="${BENCH_RETENTION_MAX_SECONDS:-600}"
read -r -a SIDES <<<"${BENCH_RETENTION_ORDER:-aegis plain}"
APP=bench_ret_inserter

sql() { cluster_psql "$DIR" "$PORT" "$DB" -At "$@"; }

WORK="$(mktemp -d)"
pgbench_pid=""
sampler_pid=""
cleanup_work() {
    [ -n "$pgbench_pid" ] && kill "$pgbench_pid" 2>/dev/null || true
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "${BENCH_RETENTION_KEEP:-}" ]; then
        log "kept the pgbench logs, samples and outputs in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup_work EXIT

IFS='|' read -r EXPIRED FRESH < <(sql -c "SELECT expired, fresh FROM bench_ret.params")
failures=()
fail() { failures+=("$*"); log "FAILED: $*"; }

for side in "${SIDES[@]}"; do
    cat >"$WORK/$side.sql" <<EOF
\\set r random(1, 1000000000)
INSERT INTO bench_ret_$side.user_access_logs (user_id, ip_address, resource)
VALUES ('user-' || :r % 5000, format('10.%s.%s.%s', :r / 65536 % 256, :r / 256 % 256, :r % 256)::inet,
        '/api/v1/orders/' || :r);
EOF
    # What the inserter's and the deleter's backends are doing, every 100 ms.
    cat >"$WORK/$side.sampler" <<EOF
\\o $WORK/$side.samples
SELECT extract(epoch FROM clock_timestamp()), application_name, state,
       coalesce(wait_event_type || ':' || wait_event, 'CPU')
FROM pg_stat_activity WHERE application_name IN ('$APP', 'bench_ret_deleter') \\watch 0.1
EOF
done
# The deletions. psql prints DELETE's command tag (QUIET off) and
# apply_retention()'s rows; t0/t1 are the server's clock around the statement
# and its commit (the inserter's log uses the same machine's clock); the WAL
# written meanwhile includes the inserter's few MB.
for side in aegis plain; do
    {
        echo "SELECT extract(epoch FROM clock_timestamp()) AS t0, pg_current_wal_lsn() AS l0 \\gset"
        if [ "$side" = aegis ]; then
            echo "SELECT table_name, rows_affected FROM aegis.apply_retention();"
        else
            echo "\\set QUIET off"
            echo "DELETE FROM bench_ret_plain.user_access_logs WHERE accessed_at < now() - interval '90 days';"
            echo "\\set QUIET on"
        fi
        echo "SELECT extract(epoch FROM clock_timestamp()) AS t1, round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0') / 1048576) AS wal \\gset"
        echo "\\echo times :t0 :t1 :wal"
    } >"$WORK/$side.del"
done

server_log_size() { as_pg stat -c %s "$DIR/server.log"; }

# pct FILE P -> the P-th percentile (nearest rank) of the numbers in FILE, in ms
pct() {
    sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        k = int(NR * p / 100); if (k < NR * p / 100) k++; if (k < 1) k = 1
        printf "%.1f", v[k] / 1000 }'
}

# top_waits SAMPLES T0 T1 APP -> "N active samples: CPU 60%, LWLock:WALWrite 25%, ..."
top_waits() {
    awk -F'|' -v t0="$2" -v t1="$3" -v app="$4" '
        $1 >= t0 && $1 <= t1 && $2 == app && $3 == "active" { n++; c[$4]++ }
        END { for (k in c) printf "%d %d %s\n", c[k], n, k }' "$1" \
    | sort -rn | head -4 | awk '{ printf "%s%s %.0f%%", (NR > 1 ? ", " : $2 " active samples: "), $3, 100 * $1 / $2 }'
}

declare -A R  # results: R[side.key]
run_side() {
    local side="$1" tbl="bench_ret_$1.user_access_logs" log_from out rc terminated
    sql -q -c "CHECKPOINT"
    log_from="$(server_log_size)"
    local rate_opt=()
    [ "$RATE" != 0 ] && rate_opt=(-R "$RATE")
    PGAPPNAME="$APP" "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" "${rate_opt[@]}" \
        -T "$MAX_SECS" -l --log-prefix="$WORK/log_$side" -f "$WORK/$side.sql" \
        -h "$DIR/run" -p "$PORT" -U bench_ret_ingest "$DB" >"$WORK/$side.out" 2>&1 &
    pgbench_pid=$!
    PGAPPNAME=bench_ret_sampler cluster_psql "$DIR" "$PORT" "$DB" -At -f "$WORK/$side.sampler" >/dev/null 2>&1 &
    sampler_pid=$!
    sleep "$QUIET"
    kill -0 "$pgbench_pid" 2>/dev/null || { cat "$WORK/$side.out" >&2; die "$side: the inserter stopped before the deletion"; }

    out="$(PGAPPNAME=bench_ret_deleter cluster_psql "$DIR" "$PORT" "$DB" -At -f "$WORK/$side.del")" \
        || { printf '%s\n' "$out" >&2; die "$side: the deletion failed"; }
    sleep "$GRACE"
    terminated="$(sql -c "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                          WHERE application_name = '$APP' AND datname = current_database()")"
    rc=0; wait "$pgbench_pid" || rc=$?
    pgbench_pid=""
    # The sampler ignores SIGINT (a background job of a script): ending its
    # connection ends its \watch, and psql exits after writing everything.
    sql -q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE application_name = 'bench_ret_sampler' AND datname = current_database()" >/dev/null
    wait "$sampler_pid" || true
    sampler_pid=""
    [ "$terminated" = "$CLIENTS" ] \
        || fail "$side: $terminated of $CLIENTS inserter connections were still there to stop (pgbench exit $rc; its -T $MAX_SECS too short?)"
    # Any error other than the terminated connections is a failed insert. (A
    # client terminated while idle, waiting for its next scheduled insert,
    # reads the FATAL on its next insert: "perhaps the backend died".)
    if grep -v -e 'terminating connection due to administrator command' -e 'Run was aborted' \
            -e 'aborted in command 1 (SQL) of script 0; perhaps the backend died while processing' \
            -e 'results are incomplete' -e 'number of failed transactions: 0 ' \
            "$WORK/$side.out" | grep -qi -e error -e fatal -e failed -e abort; then
        cat "$WORK/$side.out" >&2
        fail "$side: pgbench reported errors other than its terminated connections"
    fi

    local t0 t1 wal deleted
    read -r t0 t1 wal < <(printf '%s\n' "$out" | awk '$1 == "times" { print $2, $3, $4 }')
    if [ "$side" = aegis ]; then
        deleted="$(printf '%s\n' "$out" | awk -F'|' -v t="$tbl" '$1 == t { print $2 }')"
        local others
        others="$(printf '%s\n' "$out" | awk -F'|' -v t="$tbl" 'NF == 2 && $1 != t' | tr '\n' ' ')"
        [ -z "$others" ] || fail "aegis: apply_retention() also processed: $others"
    else
        deleted="$(printf '%s\n' "$out" | awk '$1 == "DELETE" { print $2 }')"
    fi
    [ "$deleted" = "$EXPIRED" ] || fail "$side: deleted ${deleted:-?} rows, expected $EXPIRED"

    # The inserter's transactions: client, number, latency us, script,
    # completion epoch s, us[, schedule lag us (with -R)].
    cat "$WORK"/log_"$side".* >"$WORK/$side.txlog"
    local stats
    stats="$(awk -v t0="$t0" -v t1="$t1" -v q="$QUIET" -v dur="$WORK/$side.during" -v pre="$WORK/$side.before" '
        BEGIN { printf "" > dur; printf "" > pre }
        {   lat = $3; ex = lat - (NF >= 7 ? $7 : 0); fin = $5 + $6 / 1e6; st = fin - lat / 1e6; n++
            if (n == 1 || fin < first) first = fin
            if (fin > last) last = fin
            if (lat > 1e6) over_all++
            if (st < t1 && fin > t0) {
                print lat > dur; nd++
                if (lat > 1e6) over++
                if (ex > exmax) exmax = ex
                if (ex > 1e6) exover++
            }
            if (fin >= t0 && fin <= t1) done++
            # before: the last q-1 seconds before the deletion (the first
            # second of the run is connection warm-up)
            if (fin < t0 && st >= t0 - q + 1) { print lat > pre; nb++ }
        }
        END { printf "%d %d %d %d %d %d %.6f %.6f %.1f %d\n", n, nd, done, over + 0, over_all + 0, nb, first, last,
                     exmax / 1000, exover + 0 }' \
        "$WORK/$side.txlog")"
    local n nd ndone over over_all nb first last exmax exover
    read -r n nd ndone over over_all nb first last exmax exover <<<"$stats"
    awk -v f="$first" -v l="$last" -v t0="$t0" -v t1="$t1" 'BEGIN { exit !(f < t0 && l > t1) }' \
        || fail "$side: the inserter did not run for the whole deletion (first insert done $first, last $last, deletion $t0 to $t1)"
    [ "$nd" -gt 0 ] || fail "$side: no insert ran during the deletion"

    # Lock waits over deadlock_timeout (1 s) logged while this side ran.
    local waits
    waits="$(as_pg tail -c +"$((log_from + 1))" "$DIR/server.log" | grep -c 'still waiting for' || true)"
    if [ "$waits" != 0 ]; then
        log "$side: lock waits over 1 s in the server log:"
        as_pg tail -c +"$((log_from + 1))" "$DIR/server.log" | grep -A2 'still waiting for' | head -20 >&2
    fi
    # The inserter's active samples during the deletion, and those waiting
    # on a heavyweight lock (wait_event_type Lock).
    local lock_samples
    lock_samples="$(awk -F'|' -v t0="$t0" -v t1="$t1" -v app="$APP" '
        $1 >= t0 && $1 <= t1 && $2 == app && $3 == "active" { n++; if ($4 ~ /^Lock:/) l++ }
        END { printf "%d/%d", l, n }' "$WORK/$side.samples")"

    # What is left: no expired row, every fresh row, every committed insert
    # (an insert in flight when its connection was terminated may have
    # committed without being logged: at most one per client).
    local left expired_left fresh_left inserted
    left="$(sql -c "SELECT count(*) FILTER (WHERE accessed_at < p.load_time - interval '90 days'),
                           count(*) FILTER (WHERE accessed_at BETWEEN p.load_time - interval '90 days' AND p.load_time),
                           count(*) FILTER (WHERE accessed_at > p.load_time)
                    FROM $tbl, bench_ret.params p")"
    IFS='|' read -r expired_left fresh_left inserted <<<"$left"
    [ "$expired_left" = 0 ] || fail "$side: $expired_left expired rows are still there"
    [ "$fresh_left" = "$FRESH" ] || fail "$side: $fresh_left of $FRESH fresh rows survived"
    if [ "$inserted" -lt "$n" ] || [ "$inserted" -gt $((n + CLIENTS)) ]; then
        fail "$side: $inserted inserted rows in the table, pgbench logged $n committed inserts"
    fi

    R[$side.secs]="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    R[$side.deleted]="$deleted"; R[$side.wal]="$wal"; R[$side.nd]="$nd"
    R[$side.over]="$over"; R[$side.over_all]="$over_all"; R[$side.exmax]="$exmax"; R[$side.exover]="$exover"
    R[$side.waits]="$waits"; R[$side.lock_samples]="$lock_samples"
    R[$side.rate]="$(awk -v d="$ndone" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", d / (b - a) }')"
    R[$side.rate_before]="$(awk -v nb="$nb" -v q="$QUIET" 'BEGIN { printf "%.0f", nb / (q - 1) }')"
    R[$side.p50]="$(pct "$WORK/$side.during" 50)"
    R[$side.p99]="$(pct "$WORK/$side.during" 99)"
    R[$side.max]="$(pct "$WORK/$side.during" 100)"
    R[$side.before_p99]="$(pct "$WORK/$side.before" 99)"
    R[$side.before_max]="$(pct "$WORK/$side.before" 100)"
    # Where the active inserts and the deleting backend spent the deletion (a
    # backend waiting for pgbench's next insert is idle and not counted).
    R[$side.ins_waits]="$(top_waits "$WORK/$side.samples" "$t0" "$t1" "$APP")"
    R[$side.del_waits]="$(top_waits "$WORK/$side.samples" "$t0" "$t1" bench_ret_deleter)"
}

for side in "${SIDES[@]}"; do
    run_side "$side"
done

# One DELETE entry per deleted row on both sides (and apply_retention()'s
# RETENTION entry); the inserter's INSERT entries are not counted here.
audit="$(sql -c "SELECT count(*) FILTER (WHERE operation = 'DELETE' AND table_name = 'bench_ret_aegis.user_access_logs'),
                        count(*) FILTER (WHERE operation = 'DELETE' AND table_name = 'bench_ret_plain.user_access_logs'),
                        count(*) FILTER (WHERE operation = 'RETENTION' AND table_name = 'bench_ret_aegis.user_access_logs')
                 FROM aegis.audit_log WHERE id > (SELECT first_entry FROM bench_ret.params)")"
IFS='|' read -r audit_aegis audit_plain audit_retention <<<"$audit"
[ "$audit_aegis" = "$EXPIRED" ] || fail "aegis: $audit_aegis DELETE audit entries, expected $EXPIRED"
[ "$audit_plain" = "$EXPIRED" ] || fail "plain: $audit_plain DELETE audit entries, expected $EXPIRED"
[ "$audit_retention" = 1 ] || fail "aegis: $audit_retention RETENTION audit entries, expected 1"

rate_label="$RATE inserts/s in total (pgbench -R)"
[ "$RATE" = 0 ] && rate_label="unthrottled"
echo
printf 'retention under a concurrent inserter: %s expired rows deleted, %s fresh rows kept, both tables protected (an audit entry per deleted row)\n' "$EXPIRED" "$FRESH"
printf 'inserter: pgbench, %s clients, single-row INSERT into the same table, -M prepared, %s; one run per side, in this order\n' "$CLIENTS" "$rate_label"
fmt='%-17s | %10s | %7s | %6s | %7s | %5s | %6s | %7s | %7s | %5s | %8s | %8s | %7s | %9s | %11s\n'
printf "$fmt" side "deletion s" rows "WAL MB" inserts "ins/s" "p50 ms" "p99 ms" "max ms" "> 1 s" "exec max" "exec >1s" "Lock" "lock log" "before p99/max"
printf -- '------------------+------------+---------+--------+---------+-------+--------+---------+---------+-------+----------+----------+---------+-----------+---------------\n'
for side in "${SIDES[@]}"; do
    label="apply_retention()"; [ "$side" = plain ] && label="plain DELETE"
    printf "$fmt" "$label" "${R[$side.secs]}" "${R[$side.deleted]}" "${R[$side.wal]}" "${R[$side.nd]}" "${R[$side.rate]}" \
        "${R[$side.p50]}" "${R[$side.p99]}" "${R[$side.max]}" "${R[$side.over]}" "${R[$side.exmax]}" "${R[$side.exover]}" \
        "${R[$side.lock_samples]}" "${R[$side.waits]}" "${R[$side.before_p99]}/${R[$side.before_max]}"
done
printf '%s\n' \
    "inserts: in flight at some moment of the deletion; ins/s: completed per second during it (before it: ${R[aegis.rate_before]} and ${R[plain.rate_before]});" \
    "p50/p99/max, > 1 s: their latency from the scheduled start, queueing included (> 1 s over the whole inserter run: ${R[aegis.over_all]} and ${R[plain.over_all]});" \
    "exec: latency from the moment pgbench sent the insert (ms; > 1 s: count); Lock: inserter samples waiting on a heavyweight lock / active samples;" \
    "lock log: lock waits over 1 s in the server log (log_lock_waits); before: the inserts of the $((QUIET - 1)) s before the deletion (ms)."
for side in "${SIDES[@]}"; do
    printf 'wait events during %s: inserter %s; deleter %s\n' "$side" "${R[$side.ins_waits]:-no sample}" "${R[$side.del_waits]:-no sample}"
done
ratio="$(awk -v a="${R[aegis.secs]}" -v p="${R[plain.secs]}" 'BEGIN { printf "%.2f", a / p }')"
printf 'ratio apply_retention() / plain DELETE time: %s (above 1: apply_retention() is slower)\n' "$ratio"
locks=missed
[ "${R[aegis.waits]}" = 0 ] && [ "${R[aegis.exover]}" = 0 ] && [ "${R[aegis.lock_samples]%%/*}" = 0 ] && locks=met
printf 'apply_retention(): no insert blocked by a lock for more than a second (no lock wait > 1 s logged or sampled, no single insert over 1 s): %s\n' "$locks"
printf 'apply_retention(): every concurrent insert done within 1 s of its schedule: %s (%s over 1 s, max %s ms; plain DELETE: %s, max %s ms)\n' \
    "$( [ "${R[aegis.over]}" = 0 ] && echo met || echo missed)" "${R[aegis.over]}" "${R[aegis.max]}" "${R[plain.over]}" "${R[plain.max]}"
printf 'check: %s rows deleted and %s fresh rows kept on each side, every insert kept, DELETE audit entries %s / %s, RETENTION entry %s: %s\n' \
    "$EXPIRED" "$FRESH" "$audit_aegis" "$audit_plain" "$audit_retention" "$( [ ${#failures[@]} = 0 ] && echo t || echo f)"

# Clean up what retention.sql made.
sql -q <<'EOF' >/dev/null
SET client_min_messages = error;  -- unprotect() and DROP warn
SELECT aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_ret_(aegis|plain)\.';
DROP SCHEMA IF EXISTS bench_ret, bench_ret_aegis, bench_ret_plain CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
DROP ROLE IF EXISTS bench_ret_ingest;
ALTER SYSTEM RESET autovacuum;
ALTER SYSTEM RESET log_lock_waits;
SELECT pg_reload_conf();
EOF

if [ ${#failures[@]} != 0 ]; then
    printf 'FAILED: %s\n' "${failures[@]}" >&2
    exit 1
fi
