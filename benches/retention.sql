-- Side-by-side benchmark: retention under a concurrent insert load, first
-- half (the data). benches/retention_concurrency.sh, run by scripts/bench.sh
-- right after this file, does the timed part and prints the table.
-- Acceptance criterion: "apply_retention deletes 1,000,000 expired rows in
-- batches without holding locks that block concurrent inserts for more than
-- a second".
--   pg_aegis  bench_ret_aegis.user_access_logs, with the reference 90-day
--             policy on accessed_at: SELECT * FROM aegis.apply_retention()
--   baseline  bench_ret_plain.user_access_logs, the same table (its policy
--             removed, so apply_retention() never touches it): the one
--             statement a DBA writes otherwise,
--             DELETE FROM ... WHERE accessed_at < now() - interval '90 days'
-- Both tables are the user_access_logs of their own
-- aegis.create_monitoring_schema() (same columns, identity key, indexes on
-- accessed_at and (user_id, accessed_at), RLS) and both stay protected, so
-- every deleted row writes a DELETE entry to aegis.audit_log on both sides
-- (user_id and ip_address as keyed pseudonyms).
-- Both get the same rows in the same physical order (time order, as an
-- append-only log fills up): bench.retention_rows expired rows (default
-- 1,000,000) spread over 91 to 455 days ago, then bench.retention_fresh
-- rows (default 100,000) spread over the last 89 days, which must survive.
-- The margins of a day either side of the 90-day cutoff keep the expected
-- counts exact whenever the timed part runs (within a day of the load).
-- The load goes through the audit trigger like any insert (one INSERT entry
-- per row; untimed). Every other retention policy in the two schemas is
-- removed, and the run refuses to start if any other table in the database
-- has one: apply_retention() would spend time on it.
-- Autovacuum is off while this runs (it would otherwise land on one side's
-- dead rows in the middle of the other side's timing); the tables are
-- vacuumed and analysed after the load. log_lock_waits is on (with the
-- default deadlock_timeout of 1 s): every lock wait of more than a second is
-- logged, and the shell script counts those lines per side. Both settings
-- are reset by retention_concurrency.sh.
\set QUIET on
\pset footer off
SET client_min_messages = warning;

-- ------------------------------------------------------------- setup
-- Leftovers of an interrupted run (unprotect() and DROP warn: silenced).
SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables
    WHERE relid::text ~ '^bench_ret_(aegis|plain)\.';
END $$;
DROP SCHEMA IF EXISTS bench_ret, bench_ret_aegis, bench_ret_plain CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
SET client_min_messages = warning;
DROP ROLE IF EXISTS bench_ret_ingest;
-- The concurrent inserter logs in as a collector: a member of aegis_ingest,
-- whose RLS policy on user_access_logs allows INSERT.
CREATE ROLE bench_ret_ingest LOGIN IN ROLE aegis_ingest;

ALTER SYSTEM SET autovacuum = off;
ALTER SYSTEM SET log_lock_waits = on;
SELECT pg_reload_conf() AS reloaded \gset

-- Pseudonyms need the keyring key (a deployment has it); without it the
-- trigger would store [PII] and skip the HMAC.
DO $$ BEGIN
    PERFORM aegis.create_key('pseudonym') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
    PERFORM aegis.create_monitoring_schema(s) FROM unnest('{bench_ret_aegis,bench_ret_plain}'::name[]) s;
    PERFORM aegis.remove_retention(r.relid) FROM aegis.retention_rules r
    WHERE r.relid::text ~ '^bench_ret_(aegis|plain)\.'
      AND r.relid <> 'bench_ret_aegis.user_access_logs'::regclass;
END $$;
DO $$
DECLARE others text;
BEGIN
    SELECT string_agg(relid::text, ', ') INTO others FROM aegis.retention_rules
    WHERE relid <> 'bench_ret_aegis.user_access_logs'::regclass;
    IF others IS NOT NULL THEN
        RAISE EXCEPTION 'retention benchmark: other tables have retention policies (%): apply_retention() would process them too', others;
    END IF;
    IF (SELECT keep FROM aegis.retention_rules WHERE relid = 'bench_ret_aegis.user_access_logs'::regclass)
       IS DISTINCT FROM interval '90 days' THEN
        RAISE EXCEPTION 'retention benchmark: the reference policy on user_access_logs is not 90 days';
    END IF;
END $$;

-- What the timed part checks against.
CREATE SCHEMA bench_ret;
CREATE TABLE bench_ret.params (
    expired     bigint NOT NULL,      -- rows older than 90 days at the load
    fresh       bigint NOT NULL,      -- rows younger than 90 days: must survive
    load_time   timestamptz NOT NULL, -- every loaded row is at or before it, every inserter row after it
    first_entry bigint NOT NULL       -- aegis.audit_log ids above it were written by the timed part
);
INSERT INTO bench_ret.params (expired, fresh, load_time, first_entry)
SELECT coalesce(nullif(current_setting('bench.retention_rows', true), ''), '1000000')::bigint,
       coalesce(nullif(current_setting('bench.retention_fresh', true), ''), '100000')::bigint,
       now(), 0;

-- The rows, in time order: user ids from 5,000 users, 10.x.y.z addresses,
-- request paths of 20 to 40 bytes.
CREATE TEMP TABLE ret_src AS
SELECT 'user-' || g % 5000 AS user_id,
       format('10.%s.%s.%s', g / 65536 % 256, g / 256 % 256, g % 256)::inet AS ip_address,
       p.load_time - interval '455 days' + (g - 1) * (interval '364 days' / p.expired) AS accessed_at,
       (ARRAY['/api/v1/orders/', '/api/v1/users/', '/admin/login?attempt=', '/dashboard/servers/',
              '/api/v1/metrics/query?id='])[g % 5 + 1] || g AS resource
FROM bench_ret.params p, generate_series(1, p.expired) g
UNION ALL
SELECT 'user-' || g % 5000,
       format('10.%s.%s.%s', g / 65536 % 256, g / 256 % 256, g % 256)::inet,
       p.load_time - interval '89 days' + (g - 1) * (interval '89 days' / p.fresh),
       (ARRAY['/api/v1/orders/', '/api/v1/users/', '/admin/login?attempt=', '/dashboard/servers/',
              '/api/v1/metrics/query?id='])[g % 5 + 1] || g
FROM bench_ret.params p, generate_series(1, p.fresh) g;

INSERT INTO bench_ret_aegis.user_access_logs (user_id, ip_address, accessed_at, resource)
SELECT user_id, ip_address, accessed_at, resource FROM ret_src ORDER BY accessed_at;
INSERT INTO bench_ret_plain.user_access_logs (user_id, ip_address, accessed_at, resource)
SELECT user_id, ip_address, accessed_at, resource FROM ret_src ORDER BY accessed_at;
DROP TABLE ret_src;
UPDATE bench_ret.params SET first_entry = (SELECT coalesce(max(id), 0) FROM aegis.audit_log);

-- Hint bits, visibility map and statistics, so neither side pays for them.
VACUUM (ANALYZE) bench_ret_aegis.user_access_logs, bench_ret_plain.user_access_logs;

-- The two tables hold the same rows; the counts are what the script expects.
DO $$
DECLARE p bench_ret.params; a bigint; b bigint; e bigint; f bigint;
BEGIN
    SELECT * INTO p FROM bench_ret.params;
    SELECT count(*), count(*) FILTER (WHERE accessed_at < p.load_time - interval '90 days'),
           count(*) FILTER (WHERE accessed_at >= p.load_time - interval '90 days')
    INTO a, e, f FROM bench_ret_aegis.user_access_logs;
    SELECT count(*) INTO b FROM (
        (SELECT user_id, ip_address, accessed_at, resource FROM bench_ret_aegis.user_access_logs
         EXCEPT ALL SELECT user_id, ip_address, accessed_at, resource FROM bench_ret_plain.user_access_logs)
        UNION ALL
        (SELECT user_id, ip_address, accessed_at, resource FROM bench_ret_plain.user_access_logs
         EXCEPT ALL SELECT user_id, ip_address, accessed_at, resource FROM bench_ret_aegis.user_access_logs)) d;
    IF e <> p.expired OR f <> p.fresh OR b <> 0 THEN
        RAISE EXCEPTION 'retention benchmark: load is wrong (% expired, % fresh, % rows differ between the tables)', e, f, b;
    END IF;
END $$;
