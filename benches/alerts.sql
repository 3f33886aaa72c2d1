-- Side-by-side benchmark: the metric alert trigger's cost on bulk inserts.
-- Bulk INSERT ... SELECT of 200,000 server_metrics rows into two identical
-- tables (the server_metrics of two aegis.create_monitoring_schema()s, both
-- protected, so both pay RLS and the audit trigger):
--   alerts     bench_alerts.server_metrics with the aegis_alerts statement
--              trigger: the default rules (cpu_usage > 95, network_in_bytes
--              anomaly) over the statement's new rows, anomaly baselines
--              merged, an alert row and a NOTIFY per rule and server
--   noalerts   bench_noalerts.server_metrics, the trigger dropped
-- 1,000 servers; 5% of the rows have cpu_usage above 95 (from 50 servers:
-- cpu_high fires once per server and statement, the cooldown holds the
-- rest); 100 servers jump in inbound traffic, which the anomaly rule catches
-- against baselines learnt beforehand from normal traffic. Alert state,
-- alerts and those baselines are restored before each timed insert (outside
-- the timing), so every round fires the same alerts.
-- Every insert runs as a LOGIN member of aegis_ingest, one transaction each,
-- timed with its COMMIT; CHECKPOINT before each; one warm-up round, then
-- :reps rounds alternating the order; medians.
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;

SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables
    WHERE relid::text ~ '^bench_(alerts|noalerts)\.';
END $$;
DROP SCHEMA IF EXISTS bench_alerts, bench_noalerts CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
SET client_min_messages = warning;
DROP ROLE IF EXISTS bench_alert_ingest;
CREATE ROLE bench_alert_ingest LOGIN IN ROLE aegis_ingest;
ALTER SYSTEM SET autovacuum = off;
SELECT pg_reload_conf() AS reloaded \gset

DO $$ BEGIN
    PERFORM aegis.create_key('pseudonym') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
    PERFORM aegis.create_monitoring_schema(s) FROM unnest('{bench_alerts,bench_noalerts}'::name[]) s;
END $$;
DROP TRIGGER aegis_alerts ON bench_noalerts.server_metrics;
DO $$
DECLARE s name;
BEGIN
    FOREACH s IN ARRAY '{bench_alerts,bench_noalerts}'::name[] LOOP
        EXECUTE format('INSERT INTO %I.servers (server_id) '
                       'SELECT format(''s%%s'', lpad(g::text, 4, ''0'')) FROM generate_series(1, 1000) g', s);
        EXECUTE format('ANALYZE %I.servers', s);
    END LOOP;
END $$;

CREATE TEMP TABLE alert_src AS
SELECT format('s%s', lpad((g % 1000 + 1)::text, 4, '0')) AS server_id,
       '2026-11-22'::timestamptz - (g / 1000) * interval '1 minute' AS ts,
       ((g * 37) % 1000) / 10.0 AS cpu_usage,
       ((g * 53) % 1000) / 10.0 AS memory_usage,
       50.0 AS disk_usage,
       (1000000 + (g % 97) * 1000 + CASE WHEN g % 10 = 3 AND g > 199000 THEN 50000000 ELSE 0 END)::bigint AS network_in_bytes,
       (500000 + (g % 89) * 1000)::bigint AS network_out_bytes
FROM generate_series(1, 200000) g;
ANALYZE alert_src;
GRANT SELECT ON alert_src TO bench_alert_ingest;

-- Baselines from normal traffic (the same servers, no jumps), kept aside.
INSERT INTO bench_alerts.server_metrics (server_id, ts, cpu_usage, network_in_bytes)
SELECT format('s%s', lpad((g % 1000 + 1)::text, 4, '0')), '2026-11-21'::timestamptz, 10, 1000000 + (g % 97) * 1000
FROM generate_series(1, 100000) g;
-- (Inserts append deltas; the worker folds them: here, by hand.)
SELECT aegis.alert_upkeep() AS folded \gset
CREATE TEMP TABLE alert_baselines AS
SELECT * FROM aegis.metric_baselines WHERE relid = 'bench_alerts.server_metrics'::regclass;

CREATE TEMP TABLE alert_timings(rep int, side text, ms float8, n bigint, alerts bigint);

CREATE PROCEDURE pg_temp.alert_run(reps int, sides text[])
LANGUAGE plpgsql AS $$
DECLARE
    r int; s text; ord text[]; t0 timestamptz; ms float8; n bigint; a bigint;
BEGIN
    FOR r IN 0..reps LOOP  -- round 0 warms up and is not recorded
        ord := CASE WHEN r % 2 = 0 THEN sides
                    ELSE ARRAY(SELECT sides[i] FROM generate_subscripts(sides, 1) i ORDER BY i DESC) END;
        FOREACH s IN ARRAY ord LOOP
            EXECUTE format('TRUNCATE bench_%s.server_metrics, bench_%s.alerts_history', s, s);
            DELETE FROM aegis.alert_state;
            DELETE FROM aegis.metric_baselines WHERE relid = 'bench_alerts.server_metrics'::regclass;
            DELETE FROM aegis.metric_baseline_deltas WHERE relid = 'bench_alerts.server_metrics'::regclass;
            INSERT INTO aegis.metric_baselines SELECT * FROM pg_temp.alert_baselines;
            COMMIT;
            CHECKPOINT;
            SET ROLE bench_alert_ingest;
            t0 := clock_timestamp();
            EXECUTE format('INSERT INTO bench_%s.server_metrics '
                           '(server_id, ts, cpu_usage, memory_usage, disk_usage, network_in_bytes, network_out_bytes) '
                           'SELECT server_id, ts, cpu_usage, memory_usage, disk_usage, network_in_bytes, network_out_bytes '
                           'FROM pg_temp.alert_src', s);
            GET DIAGNOSTICS n = ROW_COUNT;
            COMMIT;
            ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
            RESET ROLE;
            EXECUTE format('SELECT count(*) FROM bench_%s.alerts_history', s) INTO a;
            IF r > 0 THEN
                INSERT INTO alert_timings VALUES (r, s, ms, n, a);
            END IF;
            COMMIT;
        END LOOP;
    END LOOP;
END $$;

CALL pg_temp.alert_run(current_setting('bench.reps')::int, '{noalerts,alerts}');

CREATE TEMP VIEW alert_medians AS
SELECT side, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms, min(ms) AS min_ms, max(ms) AS max_ms,
       max(n) AS n, max(alerts) AS alerts, count(*) AS reps
FROM alert_timings GROUP BY side;

\set QUIET off
\echo
\echo 'bulk INSERT ... SELECT of 200,000 rows into protected server_metrics, one transaction each (median, min, max ms)'
SELECT c.label AS "case", m.n AS "rows", m.alerts AS alerts_fired, round(m.ms::numeric, 2) AS median_ms,
       round(m.min_ms::numeric, 2) AS min_ms, round(m.max_ms::numeric, 2) AS max_ms, m.reps
FROM alert_medians m
JOIN (VALUES (1, 'noalerts', 'protected, no alert trigger'),
             (2, 'alerts', 'protected + aegis_alerts trigger (default rules)')) c(k, side, label)
  ON c.side = m.side
ORDER BY c.k;
SELECT 'alert trigger / none' AS ratio,
       round((max(ms) FILTER (WHERE side = 'alerts') / max(ms) FILTER (WHERE side = 'noalerts'))::numeric, 2) AS value,
       '<= 1.3' AS target,
       max(ms) FILTER (WHERE side = 'alerts') / max(ms) FILTER (WHERE side = 'noalerts') <= 1.3 AS met
FROM alert_medians;
-- What fired in the last round: cpu_high once per hot server, the anomalies.
SELECT rule, count(*) AS alerts FROM bench_alerts.alerts_history GROUP BY rule ORDER BY rule;
\set QUIET on

-- Single-row inserts, the least favourable case: the trigger's cost per
-- statement (the rules' scans, the baseline delta and its fold, the
-- cooldown check) paid for one row. 5,000 one-row INSERT statements per
-- round as the ingest login, one transaction, servers round-robin, normal
-- values (nothing fires); baselines restored first, as above.
CREATE TEMP TABLE alert_single(rep int, side text, ms float8);
CREATE PROCEDURE pg_temp.alert_single_run(reps int, sides text[])
LANGUAGE plpgsql AS $$
DECLARE
    r int; s text; ord text[]; t0 timestamptz; i int; ms float8;
BEGIN
    FOR r IN 0..reps LOOP
        ord := CASE WHEN r % 2 = 0 THEN sides
                    ELSE ARRAY(SELECT sides[k] FROM generate_subscripts(sides, 1) k ORDER BY k DESC) END;
        FOREACH s IN ARRAY ord LOOP
            EXECUTE format('TRUNCATE bench_%s.server_metrics, bench_%s.alerts_history', s, s);
            DELETE FROM aegis.alert_state;
            DELETE FROM aegis.metric_baselines WHERE relid = 'bench_alerts.server_metrics'::regclass;
            DELETE FROM aegis.metric_baseline_deltas WHERE relid = 'bench_alerts.server_metrics'::regclass;
            INSERT INTO aegis.metric_baselines SELECT * FROM pg_temp.alert_baselines;
            COMMIT;
            CHECKPOINT;
            SET ROLE bench_alert_ingest;
            t0 := clock_timestamp();
            FOR i IN 1..5000 LOOP
                EXECUTE format('INSERT INTO bench_%s.server_metrics (server_id, cpu_usage, network_in_bytes) '
                               'VALUES ($1, $2, $3)', s)
                USING format('s%s', lpad((i % 1000 + 1)::text, 4, '0')), 20.0 + i % 50, (1000000 + (i % 97) * 1000)::bigint;
            END LOOP;
            COMMIT;
            ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
            RESET ROLE;
            IF r > 0 THEN
                INSERT INTO alert_single VALUES (r, s, ms);
            END IF;
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
CALL pg_temp.alert_single_run(current_setting('bench.reps')::int, '{noalerts,alerts}');
\set QUIET off
\echo
\echo '5,000 single-row INSERT statements into protected server_metrics, one transaction (median, min, max ms)'
SELECT side, round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2) AS median_ms,
       round(min(ms)::numeric, 2) AS min_ms, round(max(ms)::numeric, 2) AS max_ms, count(*) AS reps
FROM alert_single GROUP BY side ORDER BY side DESC;
SELECT 'alert trigger / none (single-row)' AS ratio,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'alerts')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'noalerts'))::numeric, 2) AS value
FROM alert_single;
\set QUIET on

SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables
    WHERE relid::text ~ '^bench_(alerts|noalerts)\.';
END $$;
DROP SCHEMA bench_alerts, bench_noalerts CASCADE;
DROP TABLE alert_src;
DROP ROLE bench_alert_ingest;
ALTER SYSTEM RESET autovacuum;
SELECT pg_reload_conf() AS reloaded \gset
