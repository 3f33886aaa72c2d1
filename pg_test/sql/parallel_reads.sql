-- Control: parallel queries and read auditing (0.6.0). In 0.5.0, after one
-- audited read every later parallel query of the session failed ("cannot
-- assign XIDs during a parallel operation"): the read-audit hook assigned a
-- transaction id in the parallel workers. The hook never needs one now. Runs
-- in autocommit mode (a transaction that already has an id would hide the
-- bug), in a database of its own that it drops.
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE DATABASE aegis_regress_parallel;
\c aegis_regress_parallel
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis;
CREATE ROLE par_reader LOGIN;
CREATE TABLE public.par_logs (id int PRIMARY KEY, msg text);
INSERT INTO par_logs SELECT g, 'm' || g FROM generate_series(1, 1000) g;
SELECT aegis.protect('public.par_logs', '{"audit_reads": true}');
CREATE POLICY par_all ON par_logs TO par_reader USING (true);
GRANT SELECT ON par_logs TO par_reader;
CREATE TABLE public.par_big AS SELECT g AS id FROM generate_series(1, 300000) g;
GRANT SELECT ON par_big TO par_reader;
ANALYZE par_big;
ANALYZE par_logs;
RESET client_min_messages;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
-- The plans are parallel.
CREATE FUNCTION pg_temp.parallel_plan(q text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        IF line LIKE '%Gather%' THEN RETURN true; END IF;
    END LOOP;
    RETURN false;
END $$;
SELECT pg_temp.parallel_plan('SELECT count(*) FROM par_big') AS big_parallel,
       pg_temp.parallel_plan('SELECT count(*) FROM par_big b JOIN par_logs l ON l.id = b.id') AS join_parallel;
-- As a superuser: an audited read, then parallel scans (twice, and one
-- that reads the audited table in parallel too).
SELECT count(*) AS read_logs FROM par_logs;
SELECT count(*) FROM par_big;
SELECT count(*) FROM par_big;
SELECT count(*) FROM par_big b JOIN par_logs l ON l.id = b.id;
-- As a role with no superuser rights, in the same long-lived session.
SET SESSION AUTHORIZATION par_reader;
SELECT count(*) AS read_logs FROM par_logs;
SELECT count(*) FROM par_big;
SELECT count(*) FROM par_big;
SELECT count(*) FROM par_big b JOIN par_logs l ON l.id = b.id;
RESET SESSION AUTHORIZATION;
-- In a read-only transaction the reads go to the server log, and parallel
-- scans still work.
BEGIN READ ONLY;
SELECT count(*) AS read_logs FROM par_logs;
SELECT count(*) FROM par_big;
COMMIT;
-- Every read of par_logs in a writable transaction is in the trail, once,
-- by the leader: two by the superuser, two by par_reader.
SELECT db_user = 'par_reader' AS by_reader, count(*) AS entries
FROM aegis.audit_log WHERE operation = 'SELECT' AND table_name = 'public.par_logs'
GROUP BY 1 ORDER BY 1;
\c aegis_regress
SET client_min_messages = warning;
DROP DATABASE aegis_regress_parallel;
DROP ROLE par_reader;
