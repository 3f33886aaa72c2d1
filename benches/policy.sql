-- Side-by-side benchmark: row-level security and masking overhead.
-- Same data, same run, alternating sides, medians over :reps runs.
--   app:       aegis_app member reading metrics of the servers it owns (RLS
--              supplies the filter) vs the table owner with the equivalent
--              explicit WHERE server_id = ANY('{...}').
--   oncall:    aegis_oncall member reading a week of error logs of its
--              assigned servers vs the owner with the explicit WHERE.
--   masking:   aegis_operations reading masked_aggregated_metrics vs the
--              owner reading the raw table.
-- ratio = pg_aegis / baseline (1.00 = no overhead; the target is <= 1.2).
-- For each RLS pair it also prints whether both plans use the same index.
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;

DROP SCHEMA IF EXISTS bench_mon CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text LIKE 'bench\_mon.%';
DO $$ BEGIN PERFORM aegis.create_monitoring_schema('bench_mon'); END $$;
DROP ROLE IF EXISTS bench_app; DROP ROLE IF EXISTS bench_oncall; DROP ROLE IF EXISTS bench_ops;
DROP ROLE IF EXISTS bench_team;
CREATE ROLE bench_team NOLOGIN;
CREATE ROLE bench_app LOGIN IN ROLE aegis_app, bench_team;
CREATE ROLE bench_oncall LOGIN IN ROLE aegis_oncall;
CREATE ROLE bench_ops LOGIN IN ROLE aegis_operations;

-- 1,000 servers; bench_team owns 10, bench_oncall is assigned 10 others.
INSERT INTO bench_mon.servers (server_id, owner_role)
SELECT format('s%s', lpad(g::text, 4, '0')), CASE WHEN g % 100 = 7 THEN 'bench_team' END
FROM generate_series(1, 1000) g;
DO $$ BEGIN
    PERFORM aegis.assign_oncall('bench_oncall', format('s%s', lpad(g::text, 4, '0')))
    FROM generate_series(1, 1000) g WHERE g % 100 = 42;
END $$;
-- 1,000,000 metrics (1,000 per server) and 200,000 error logs over 30 days.
INSERT INTO bench_mon.server_metrics (server_id, ts, cpu_usage, memory_usage, network_in_bytes)
SELECT format('s%s', lpad((g % 1000 + 1)::text, 4, '0')),
       '2026-11-01'::timestamptz + (g / 1000) * interval '1 minute', (g * 7) % 100, (g * 3) % 100, g
FROM generate_series(0, 999999) g;
INSERT INTO bench_mon.error_logs (server_id, ts, error_severity, error_message)
SELECT format('s%s', lpad((g % 1000 + 1)::text, 4, '0')),
       '2026-11-22'::timestamptz - (g % 43200) * interval '1 minute',
       CASE WHEN g % 100 = 0 THEN 'SECURITY_BREACH' ELSE 'ERROR' END, 'error ' || g
FROM generate_series(0, 199999) g;
-- 200,000 hourly aggregates (23 regions x 8,696 hours).
INSERT INTO bench_mon.aggregated_metrics
SELECT 'region-' || r, '2025-11-01'::timestamptz + h * interval '1 hour', (r * h) % 100, r * h
FROM generate_series(1, 23) r, generate_series(0, 8695) h;
VACUUM ANALYZE bench_mon.servers, bench_mon.server_metrics, bench_mon.error_logs, bench_mon.aggregated_metrics;

\ir lib/harness.sql
INSERT INTO cases VALUES
('app: own servers'' metrics (1M rows)', 'bench_app',
 'SELECT count(*), avg(cpu_usage) FROM bench_mon.server_metrics',
 format('SELECT count(*), avg(cpu_usage) FROM bench_mon.server_metrics WHERE server_id = ANY (%L::text[])',
        (SELECT array_agg(server_id) FROM bench_mon.servers WHERE owner_role = 'bench_team'))),
('oncall: last 7 days of errors (200k rows)', 'bench_oncall',
 $q$SELECT count(*) FROM bench_mon.error_logs WHERE ts > '2026-11-15'$q$,
 format($q$SELECT count(*) FROM bench_mon.error_logs WHERE ts > '2026-11-15' AND server_id = ANY (%L::text[])$q$,
        (SELECT array_agg(server_id) FROM aegis.oncall_assignments WHERE engineer = 'bench_oncall'::regrole))),
('masking view vs raw table (200k rows)', 'bench_ops',
 'SELECT count(*), max(peak_network_usage) FROM bench_mon.masked_aggregated_metrics',
 'SELECT count(*), max(peak_network_usage::text) FROM bench_mon.aggregated_metrics');

-- Index scans on the queried table (the app policy also looks up the
-- servers the app owns, through servers' own index: listed, not compared).
CREATE FUNCTION pg_temp.index_lines(r name, q text, tbl text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE line text; acc text[] := '{}';
BEGIN
    EXECUTE format('SET ROLE %I', coalesce(r, session_user));
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        IF line ~ 'Index' AND strpos(line, tbl) > 0 THEN
            acc := acc || regexp_replace(line, '^[ >-]*', '');
        END IF;
    END LOOP;
    RESET ROLE;
    RETURN array_to_string(acc, '; ');
END $$;

-- Same answers on both sides (the benchmark compares equal work).
SELECT name, pg_temp.run_as(ours_role, ours) = pg_temp.run_as(NULL, base) AS same_result FROM cases ORDER BY name;
-- Same index path on both sides for the RLS cases.
SELECT name, pg_temp.index_lines(ours_role, ours, tbl) AS pg_aegis_plan,
       pg_temp.index_lines(ours_role, ours, tbl) = pg_temp.index_lines(NULL, base, tbl) AS same_index_path
FROM cases, LATERAL (SELECT substring(ours FROM 'bench_mon\.(\w+)') AS tbl) t
WHERE name NOT LIKE 'masking%' ORDER BY name;

DO $$ BEGIN PERFORM pg_temp.run_cases(current_setting('bench.reps')::int); END $$;

\set QUIET off
SELECT * FROM pg_temp.report('overhead');
\set QUIET on
DROP SCHEMA bench_mon CASCADE;
DELETE FROM aegis.oncall_assignments WHERE engineer = 'bench_oncall'::regrole;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
DROP ROLE bench_app; DROP ROLE bench_oncall; DROP ROLE bench_ops; DROP ROLE bench_team;
