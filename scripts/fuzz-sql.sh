#!/usr/bin/env bash
# make fuzz-sql: random SQL from sqlsmith against a throwaway cluster with
# pg_aegis preloaded and created, the reference monitoring schema filled with
# data, run as three real logins in turn: a member of aegis_developer, a member
# of aegis_admin, and a superuser. FUZZ_SQL_QUERIES (default 20000) is split
# between them; FUZZ_SQL_TIMEOUT (seconds, default 900) bounds each run.
# FUZZ_SQL_SEED fixes the random seeds; FUZZ_SQL_ARGS adds sqlsmith options
# (for instance --exclude-catalog: no pg_catalog tables in FROM clauses).
# Uses the pg_aegis already installed into PostgreSQL 15 (make install first).
#
# The point is crashes: a backend or worker killed by a signal, a PANIC, or a
# server that stops accepting connections fails the run (exit 1), printing the
# query that did it. Errors are expected (sqlsmith writes nonsense on purpose)
# and only summarised, by SQLSTATE class; internal errors (XX...), generic
# 22000s and Rust panics get their own list: that is where a pg_aegis bug
# that does not crash shows (PostgreSQL's own functions raise a few too).
# Logs, the sqlsmith output and every generated query stay in the state dir.
# Not part of make test (its result depends on the random queries).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TOTAL="${FUZZ_SQL_QUERIES:-20000}"
RUN_TIMEOUT="${FUZZ_SQL_TIMEOUT:-900}"
PORT="${AEGIS_FUZZ_SQL_PORT:-54369}"
# sqlsmith reads --seed with stoi: keep it below 2^31.
SEED="${FUZZ_SQL_SEED:-$(( RANDOM << 15 | RANDOM ))}"
DB="fuzz"
# login = the role sqlsmith connects as; the order is the order of the runs.
USERS=(fuzz_developer fuzz_admin fuzz_super)

if ! [[ "$TOTAL" =~ ^[0-9]+$ ]] || [ "$TOTAL" -lt "${#USERS[@]}" ]; then
    die "FUZZ_SQL_QUERIES must be a number >= ${#USERS[@]} (got '$TOTAL')"
fi
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ ]] || die "FUZZ_SQL_TIMEOUT must be a number of seconds"

# -- tools ---------------------------------------------------------------------
# sqlsmith generates the queries; jq reads the server's JSON log. Both are
# Debian packages, installed here so a fresh machine works.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v sqlsmith >/dev/null 2>&1 || missing+=(sqlsmith)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    }
fi
[ -f "$("$PG_CONFIG" --pkglibdir)/pg_aegis.so" ] || die "pg_aegis is not installed: run make install first"

# -- cluster -------------------------------------------------------------------
DIR="$(state_dir fuzz-sql)"
CL="$DIR/cluster"
OUT="$DIR/out"
PGLOG="$CL/data/log/postgresql.log"   # text log (also catches raw stderr)
PGJSON="$CL/data/log/postgresql.json" # the same events as JSON, one per line

# shellcheck disable=SC2317  # called by the trap
cleanup() { cluster_stop "$CL"; }
trap cleanup EXIT
cluster_stop "$CL"
rm -rf "$DIR"
mkdir -p "$OUT"

log "throwaway cluster in $CL on port $PORT"
# The collector writes every message twice: text (grep-able, with whatever a
# crashing process printed to stderr) and JSON (SQLSTATE, user and statement
# as fields). Connections are logged to map a crashed PID to its login.
# A crashed backend's query is logged from its pg_stat_activity slot, which
# holds track_activity_query_size bytes: 64kB fits sqlsmith's queries.
# restart_after_crash (the default) lets the run go on and find more.
cluster_init "$CL" "$PORT" \
    "fsync = off" "synchronous_commit = off" \
    "logging_collector = on" "log_destination = 'stderr,jsonlog'" \
    "log_directory = 'log'" "log_filename = 'postgresql.log'" \
    "log_rotation_age = 0" "log_rotation_size = 0" \
    "log_line_prefix = '%m [%p] %q%u@%d %e '" "log_connections = on" \
    "log_min_error_statement = error" "lc_messages = 'C'" \
    "track_activity_query_size = '64kB'" "track_functions = 'all'" \
    "aegis.seal_databases = '$DB'" "aegis.seal_interval = '1s'"
cluster_master_key "$CL"
cluster_start "$CL"

psql_db() { cluster_psql "$CL" "$PORT" "$DB" "$@"; }
cluster_psql "$CL" "$PORT" postgres -c "CREATE DATABASE $DB"

log "creating pg_aegis, the monitoring schema, data and the fuzzing logins"
psql_db >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis;
SELECT aegis.create_key('pseudonym');
SELECT aegis.create_key('audit_head');
SELECT aegis.create_monitoring_schema('monitoring');

-- A few hundred rows, with the PII, odd values and NULLs the masking and
-- redaction code has to cope with, so generated queries have data to chew on.
INSERT INTO monitoring.servers (server_id, hostname, region, environment, owner_role)
SELECT 'srv-' || g, 'srv-' || g || '.' || r || '.example.net', r,
       (ARRAY['prod', 'staging', 'dev', NULL])[1 + g % 4], (ARRAY['aegis_app', NULL]::name[])[1 + g % 2]
FROM generate_series(1, 24) g, LATERAL (SELECT (ARRAY['eu', 'us', 'ap'])[1 + g % 3] AS r) x;

INSERT INTO monitoring.server_metrics (server_id, ts, cpu_usage, memory_usage, disk_usage,
                                       network_in_bytes, network_out_bytes)
SELECT 'srv-' || (1 + g % 24), now() - g * interval '1 minute',
       CASE WHEN g % 17 = 0 THEN NULL ELSE (g * 7) % 101 END, (g * 13) % 100, (g * 3) % 100,
       CASE WHEN g % 50 = 0 THEN 9000000000 ELSE g * 1024 END, g * 512
FROM generate_series(1, 400) g;

INSERT INTO monitoring.downtime_logs (server_id, start_time, end_time, cause, reported_by, user_name, user_id)
SELECT 'srv-' || (1 + g % 24), now() - g * interval '1 day', now() - g * interval '1 day' + interval '17 minutes',
       (ARRAY['power loss reported by ops@example.com', 'kernel panic on 10.0.0.' || g,
              'disk full', NULL, 'call +1 415 555 01' || lpad((g % 100)::text, 2, '0')])[1 + g % 5],
       CASE WHEN g % 3 = 0 THEN 'jane.doe' END, CASE WHEN g % 4 = 0 THEN 'Jane Doe' END,
       CASE WHEN g % 2 = 0 THEN 'u-' || (1000 + g % 37) END
FROM generate_series(1, 120) g;

INSERT INTO monitoring.error_logs (server_id, ts, error_severity, error_message, user_identifier,
                                   user_ip, resolved, contains_user_data)
SELECT 'srv-' || (1 + g % 24), now() - g * interval '37 minutes',
       (ARRAY['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', 'SECURITY_BREACH'])[1 + g % 6],
       (ARRAY['timeout for jane.doe@example.com from 198.51.100.' || (g % 255),
              'card 4111 1111 1111 1111 declined, callback +44 20 7946 0958',
              'token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc' || g || ' reused',
              'IBAN DE89370400440532013000, SSN 078-05-1120, IPv6 2001:db8::' || g,
              'plain message ' || g, '', NULL,
              repeat('ü€😀 ', 200) || 'x@y.z'])[1 + g % 8],
       CASE WHEN g % 2 = 0 THEN 'u-' || (1000 + g % 37) END,
       CASE WHEN g % 3 = 0 THEN ('192.0.2.' || (g % 255))::inet
            WHEN g % 3 = 1 THEN ('2001:db8::' || to_hex(g))::inet END,
       g % 5 = 0, g % 2 = 0
FROM generate_series(1, 300) g;

INSERT INTO monitoring.incident_response_logs (server_id, ts, severity, incident_summary, root_cause,
                                               status, assigned_to)
SELECT 'srv-' || (1 + g % 24), now() - g * interval '5 hours',
       (ARRAY['low', 'medium', 'high', 'critical'])[1 + g % 4],
       'outage reported by user' || g || '@example.com', CASE WHEN g % 2 = 0 THEN 'bad deploy' END,
       (ARRAY['open', 'investigating', 'resolved', 'closed', 'archived'])[1 + g % 5],
       CASE WHEN g % 3 > 0 THEN 'oncall-' || g % 7 END
FROM generate_series(1, 60) g;

INSERT INTO monitoring.aggregated_metrics (region, hour, hourly_avg_cpu_usage, peak_network_usage)
SELECT r, date_trunc('hour', now()) - g * interval '1 hour', (g * 11) % 100, g * 100000
FROM generate_series(1, 50) g, unnest(ARRAY['eu', 'us', 'ap']) r;

INSERT INTO monitoring.cost_data (server_id, period_start, period_end, service, amount, currency)
SELECT 'srv-' || (1 + g % 24), date '2025-01-01' + g, date '2025-01-01' + g + 30,
       (ARRAY['compute', 'storage', 'egress'])[1 + g % 3], (g * 123.45) % 10000,
       (ARRAY['USD', 'EUR'])[1 + g % 2]
FROM generate_series(1, 100) g;

INSERT INTO monitoring.alerts_history (server_id, ts, rule, severity, metric, value, message, acknowledged)
SELECT 'srv-' || (1 + g % 24), now() - g * interval '2 hours', 'cpu_high',
       (ARRAY['info', 'warning', 'critical'])[1 + g % 3], 'cpu_usage', 90 + g % 10,
       'cpu high on srv-' || (1 + g % 24) || ', paged ops@example.com', g % 2 = 0
FROM generate_series(1, 80) g;

INSERT INTO monitoring.user_access_logs (user_id, ip_address, accessed_at, resource)
SELECT 'u-' || (1000 + g % 37), ('203.0.113.' || (g % 255))::inet, now() - g * interval '3 hours',
       '/api/v1/' || (ARRAY['metrics', 'errors', 'incidents', 'costs'])[1 + g % 4]
FROM generate_series(1, 250) g;

SELECT aegis.assign_oncall('aegis_oncall', 'srv-1');

-- Real logins (never SET ROLE): what a member of each group role can reach.
CREATE ROLE fuzz_developer LOGIN IN ROLE aegis_developer;
CREATE ROLE fuzz_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE fuzz_super LOGIN SUPERUSER;
-- sqlsmith sets its own 1s statement_timeout per session; these are the
-- backstop for anything that resets it, and for lock waits.
ALTER DATABASE fuzz SET statement_timeout = '5s';
ALTER DATABASE fuzz SET lock_timeout = '2s';
ALTER DATABASE fuzz SET idle_in_transaction_session_timeout = '60s';
ANALYZE;
SQL
# Function counts from here on are the fuzzing's (a new session: the setup
# session flushed its own counts when it ended).
psql_db -c "SELECT pg_stat_reset()" >/dev/null

postmaster_alive() {
    local pid
    pid="$(head -n 1 "$CL/data/postmaster.pid" 2>/dev/null)" && kill -0 "$pid" 2>/dev/null
}

server_alive() { # up to 60s, for crash recovery to finish
    local i
    for i in $(seq 1 60); do
        postmaster_alive || return 1
        psql_db -Atc "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

# -- fuzzing ---------------------------------------------------------------------
# Each run is one sqlsmith process: --max-queries bounds it, SIGINT after
# FUZZ_SQL_TIMEOUT seconds stops it early (sqlsmith prints its summary on
# SIGINT), SIGKILL 30s later if even that hangs. Every statement runs inside
# BEGIN ... ROLLBACK, so the data stays as set up above. --dump-all-queries
# writes each query (flushed) before running it, for crash queries longer than
# the log keeps.
declare -A RAN RC
dead=0
for i in "${!USERS[@]}"; do
    user="${USERS[$i]}"
    n=$((TOTAL / ${#USERS[@]}))
    [ "$i" -eq 0 ] && n=$((n + TOTAL % ${#USERS[@]}))
    seed=$((SEED + i))
    log "sqlsmith as $user: $n queries, seed $seed, at most ${RUN_TIMEOUT}s"
    t0=$SECONDS
    set +e
    # shellcheck disable=SC2086  # FUZZ_SQL_ARGS is a list of options
    timeout -s INT -k 30 "$RUN_TIMEOUT" sqlsmith --verbose --dump-all-queries \
        --seed="$seed" --max-queries="$n" ${FUZZ_SQL_ARGS:-} \
        --target="host=$CL/run port=$PORT dbname=$DB user=$user application_name=sqlsmith" \
        >"$OUT/$user.queries.sql" 2>"$OUT/$user.sqlsmith.log" &
    spid=$!
    # Without a postmaster sqlsmith would spend a second per remaining query
    # reconnecting; stop it (timeout passes SIGINT on).
    while kill -0 "$spid" 2>/dev/null; do
        sleep 2
        if ! postmaster_alive; then
            log "  the postmaster is gone: stopping sqlsmith"
            kill -INT "$spid" 2>/dev/null
            break
        fi
    done
    wait "$spid"
    RC[$user]=$?
    set -e
    RAN[$user]="$(grep -Eo '^queries: [0-9]+' "$OUT/$user.sqlsmith.log" | tail -n 1 | awk '{print $2}' || true)"
    log "  $user: ${RAN[$user]:-0} queries in $((SECONDS - t0))s (sqlsmith exit ${RC[$user]})"
    if ! server_alive; then
        log "  the server no longer accepts connections"
        dead=1
        break
    fi
done

# -- report -----------------------------------------------------------------------
# Which pg_aegis functions ran at all (track_functions = all; STRICT functions
# called with a NULL argument do not run, and are not counted).
coverage=""
if [ "$dead" -eq 0 ]; then
    psql_db -AtF $'\t' -c "SELECT p.oid::regprocedure, coalesce(s.calls, 0)
        FROM pg_proc p LEFT JOIN pg_stat_user_functions s ON s.funcid = p.oid
        WHERE p.pronamespace = 'aegis'::regnamespace AND p.prokind = 'f'
        ORDER BY 2 DESC, 1" >"$OUT/aegis-function-calls.tsv" 2>/dev/null || true
    coverage="$(awk -F '\t' '$2 > 0 { ran++; calls += $2 } END { printf "%d of %d pg_aegis functions ran, %d calls in any session incl. the sealer worker", ran, NR, calls }' \
        "$OUT/aegis-function-calls.tsv")"
fi
[ -f "$PGJSON" ] || { log "warning: no JSON server log at $PGJSON"; PGJSON=/dev/null; }
[ -f "$PGLOG" ] || { log "warning: no server log at $PGLOG"; PGLOG=/dev/null; }
# Only the fuzzing logins' own errors; the JSON log is the source of truth
# (sqlsmith's counts lump errors by message text).
jq -c --argjson users "$(printf '%s\n' "${USERS[@]}" | jq -R . | jq -sc .)" \
    'select(.error_severity == "ERROR" and (.user as $u | any($users[]; . == $u)))
     | {user, state: (.state_code // "?????"), message, detail, context, statement}
     | .suspect = ((.state | test("^(XX|22000$)"))
                   or ([.message, .detail, .context] | map(. // "") | join(" ")
                       | test("panick|backtrace|unwrap\\(|called `(Option|Result)"; "i")))
     | if .suspect then . else del(.statement) end' \
    "$PGJSON" >"$OUT/errors.jsonl"

class_name() {
    case "$1" in
        08) echo "connection exception" ;; 0A) echo "feature not supported" ;;
        21) echo "cardinality violation" ;; 22) echo "data exception" ;;
        23) echo "integrity constraint violation" ;; 25) echo "invalid transaction state" ;;
        24) echo "invalid cursor state" ;; 26) echo "invalid SQL statement name" ;;
        27) echo "triggered data change violation" ;; 28) echo "invalid authorization" ;;
        2B) echo "dependent privilege descriptors" ;; 2F) echo "SQL routine exception" ;;
        34) echo "invalid cursor name" ;; 3D) echo "invalid catalog name" ;;
        09) echo "triggered action exception" ;; 0B) echo "invalid transaction initiation" ;;
        38) echo "external routine exception" ;; 39) echo "external routine invocation" ;;
        3F) echo "invalid schema name" ;; 40) echo "transaction rollback" ;;
        42) echo "syntax error or access rule violation" ;; 44) echo "WITH CHECK OPTION violation" ;;
        53) echo "insufficient resources" ;; 54) echo "program limit exceeded" ;;
        55) echo "object not in prerequisite state" ;; 57) echo "operator intervention (incl. timeouts)" ;;
        58) echo "system error" ;; F0) echo "configuration file error" ;; P0) echo "PL/pgSQL" ;;
        XX) echo "internal error" ;; *) echo "" ;;
    esac
}

echo
echo "== fuzz-sql report (PostgreSQL $PG_MAJOR, seed $SEED, logs in $DIR) =="
total_ran=0
for user in "${USERS[@]}"; do
    ran="${RAN[$user]:-}"
    errs="$(jq -r --arg u "$user" 'select(.user == $u) | 1' "$OUT/errors.jsonl" | wc -l)"
    if [ -z "${RC[$user]+x}" ]; then
        printf '%-15s not run\n' "$user"; continue
    fi
    case "${RC[$user]}" in
        0) note="" ;;
        124 | 137) note=" (stopped after FUZZ_SQL_TIMEOUT=${RUN_TIMEOUT}s)" ;;
        *) note=" (sqlsmith exit ${RC[$user]}, see $OUT/$user.sqlsmith.log)" ;;
    esac
    total_ran=$((total_ran + ${ran:-0}))
    lost="$(grep -E '^[.eStC]+$' "$OUT/$user.sqlsmith.log" | tr -cd 'C' | wc -c || true)"
    [ "$lost" -eq 0 ] || note="$note, connection lost on $lost queries"
    printf '%-15s %6s queries, %6s errors%s\n' "$user" "${ran:-?}" "$errs" "$note"
    jq -r --arg u "$user" 'select(.user == $u) | .state[0:2]' "$OUT/errors.jsonl" \
        | sort | uniq -c | sort -rn | while read -r count class; do
            printf '    %-6s %-4s %s\n' "$count" "$class" "$(class_name "$class")"
        done
done
echo "total: $total_ran queries${coverage:+; $coverage ($OUT/aegis-function-calls.tsv)}"

# pg_aegis suspects: internal errors, the generic 22000 pgrx gives an
# unmapped Rust error, and anything mentioning a panic or a backtrace.
# Grouped by SQLSTATE and message (numbers folded), with the shortest query.
jq -sc 'map(select(.suspect))
        | group_by([.state, (.message | gsub("[0-9]+"; "N"))])
        | map({state: .[0].state, count: length, message: .[0].message, detail: .[0].detail,
               users: (map(.user) | unique), query: (map(.statement // "") | min_by(length))})
        | sort_by(-.count) | .[]' "$OUT/errors.jsonl" >"$OUT/suspects.jsonl"
echo
if [ -s "$OUT/suspects.jsonl" ]; then
    echo "internal / generic errors ($(wc -l <"$OUT/suspects.jsonl") kinds; all in $OUT/suspects.jsonl):"
    jq -r '"  \(.count)x \(.state) [\(.users | join(","))] \(.message | .[0:160])" +
           (if .detail then "\n      DETAIL: \(.detail | .[0:300] | gsub("\n"; " | "))" else "" end) +
           "\n      query: \(.query | .[0:400] | gsub("\\s+"; " "))"' "$OUT/suspects.jsonl" | head -n 60
else
    echo "internal / generic errors: none"
fi
# Raw Rust panic output that bypassed ereport goes to stderr, i.e. the text log.
if grep -qE "panicked at|stack backtrace" "$PGLOG"; then
    echo "Rust panic output in $PGLOG:"
    grep -nE -A3 "panicked at|stack backtrace" "$PGLOG" | head -n 20
fi

# Crashes: the postmaster's report of a child that died abnormally, or a PANIC.
crash_re='terminated by signal|was terminated by exception|exited with exit code ([2-9]|[1-9][0-9]+)([^0-9]|$)|terminating any other active server processes'
crash_lines="$(grep -cE "$crash_re|[^A-Z]PANIC: " "$PGLOG" || true)"
jq -c 'select(.error_severity == "PANIC"
              or (.backend_type == "postmaster"
                  and (.message | test("terminated by signal|terminated by exception|exited with exit code ([2-9]|[1-9][0-9]+)($|[^0-9])"))))
       | {severity: .error_severity, message, detail, pid, user, statement}' "$PGJSON" >"$OUT/crashes.jsonl"
echo
if [ "${crash_lines:-0}" -eq 0 ] && [ ! -s "$OUT/crashes.jsonl" ] && [ "$dead" -eq 0 ]; then
    echo "crashes: none (no backend terminated by a signal, no PANIC, server accepting connections)"
    for user in "${USERS[@]}"; do
        case "${RC[$user]:-0}" in 0 | 124 | 137) ;; *) die "sqlsmith failed as $user: see $OUT/$user.sqlsmith.log" ;; esac
    done
    exit 0
fi

echo "CRASHES: $(wc -l <"$OUT/crashes.jsonl") event(s) in the server log"
[ "$dead" -eq 1 ] && echo "  the server stopped accepting connections"
n=0
while IFS= read -r ev; do
    n=$((n + 1))
    msg="$(jq -r .message <<<"$ev")"
    detail="$(jq -r '.detail // ""' <<<"$ev")"
    who="$(jq -r '.user // ""' <<<"$ev")"
    crashed_pid="$(grep -Eo 'PID [0-9]+' <<<"$msg" | awk '{print $2; exit}' || true)"
    if [ -n "$crashed_pid" ]; then
        who="$(jq -r --argjson p "$crashed_pid" 'select(.pid == $p and .user != null) | .user' "$PGJSON" \
            | awk 'NR == 1' || true)"
    fi
    echo "--- crash $n: $(jq -r .severity <<<"$ev"): $msg${who:+ (login $who)}"
    if [[ "$detail" == "Failed process was running: "* ]]; then
        query="${detail#Failed process was running: }"
    else
        [ -n "$detail" ] && echo "DETAIL: $detail"
        query="$(jq -r '.statement // ""' <<<"$ev")"
    fi
    [ -n "$query" ] || continue
    # The log keeps track_activity_query_size - 1 bytes: find the whole
    # query among those sqlsmith generated if it was cut.
    if [ "${#query}" -ge 65000 ]; then
        full="$(Q="$query" awk 'BEGIN { RS = ";\n" } index($0, ENVIRON["Q"]) == 1 { print $0 ";"; exit }' \
            "$OUT"/*.queries.sql)"
        [ -n "$full" ] && query="$full"
    fi
    printf '%s\n' "$query" >"$OUT/crash-$n.sql"
    echo "query (also in $OUT/crash-$n.sql):"
    printf '%s\n' "$query"
done <"$OUT/crashes.jsonl"

# sqlsmith's side: --verbose prints one character per query (. ok, e error,
# S syntax error, t timeout, C connection lost), so the Nth character is the
# Nth query in the dump. A crash in the COMMIT/ROLLBACK around a statement is
# logged by the server as that ROLLBACK; this names the statement before it.
# (A crash of another session, or pg_terminate_backend, breaks a connection too.)
for user in "${USERS[@]}"; do
    [ -f "$OUT/$user.sqlsmith.log" ] || continue
    k=0
    for q in $(awk '/^[.eStC]+$/ { for (i = 1; i <= length($0); i++) { c = substr($0, i, 1); n++
                                     if (c == "C" && prev != "C") print n; prev = c } }' \
               "$OUT/$user.sqlsmith.log" | head -n 5); do
        k=$((k + 1))
        awk -v n="$q" 'BEGIN { RS = ";\n" } NR == n { print $0 ";"; exit }' \
            "$OUT/$user.queries.sql" >"$OUT/broken-$user-$k.sql"
        echo "--- sqlsmith as $user lost its connection at its query #$q (in $OUT/broken-$user-$k.sql):"
        head -c 4000 "$OUT/broken-$user-$k.sql"
    done
done
echo "--- server log lines:"
grep -nE "$crash_re|[^A-Z]PANIC: " "$PGLOG" | head -n 40
exit 1
