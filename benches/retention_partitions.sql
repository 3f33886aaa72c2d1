-- Side-by-side benchmark: retention of a digest-mode Zabbix history table
-- (issue: the audit trail at monitoring scale, open retention targets).
-- Two parts, on identical copies that differ only in protection:
--   1. partition drop  history (itemid bigint, clock integer, value float8,
--      ns integer; key itemid, clock, ns), range-partitioned by clock, one
--      partition a day; the partition of three days ago holds
--      bench.rp_rows rows (default 1,000,000) and has wholly expired;
--      yesterday, today (bench.rp_fresh rows each, default 100,000) and a
--      future partition stay.
--        pg_aegis  protected, {"audit_inserts": "digest", "digest_buckets":
--                  {"column": "clock"}}, retention set_retention(history,
--                  keep, 'clock', time_unit => 'seconds') with the cutoff
--                  a minute into the partition of two days ago (before its
--                  first row): SELECT * FROM aegis.apply_retention() drops
--                  the expired partition and deletes nothing else.
--        baseline  the same table unprotected: DROP TABLE of that partition.
--      Target: <= 1 s, O(1) trail entries.
--   2. row-wise  the same history shape, not partitioned, bench.rp_rows
--      expired rows (10 to 3 days old) then bench.rp_fresh fresh rows (the
--      last day), in time order.
--        pg_aegis  protected in digest mode, the same retention policy:
--                  SELECT * FROM aegis.apply_retention()
--        baseline  unprotected: DELETE FROM history WHERE clock < cutoff
--                  (the same cutoff, in seconds since 1970).
--      Target: <= 1.5x the plain DELETE; the trail bytes it writes.
-- Each part: bench.rp_rounds rounds (default 3), the data reloaded (and
-- vacuumed, analysed, checkpointed: untimed) before each, the order of the
-- sides alternating; each side timed from before its statement to after
-- its COMMIT; medians. What the trail gained during the timed call: its
-- entries, their stored size (pg_column_size of each audit_log row) and
-- the growth of aegis.audit_log (heap, TOAST, index; in whole pages).
-- Everything runs as the benchmark's superuser. Autovacuum is off while it
-- runs; the run refuses to start if another table has a retention policy.
\set QUIET on
\pset footer off
SET client_min_messages = warning;

-- ------------------------------------------------------------- setup
SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_rp_';
END $$;
DROP SCHEMA IF EXISTS bench_rp_aegis, bench_rp_plain, bench_rp_rw_aegis, bench_rp_rw_plain CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
SET client_min_messages = warning;
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM aegis.retention_rules) THEN
        RAISE EXCEPTION 'retention_partitions benchmark: other tables have retention policies (%): apply_retention() would process them too',
            (SELECT string_agg(relid::text, ', ') FROM aegis.retention_rules);
    END IF;
END $$;
ALTER SYSTEM SET autovacuum = off;
SELECT pg_reload_conf() AS reloaded \gset

-- Day boundaries in seconds since 1970: day(k) starts the day k days ago.
CREATE FUNCTION pg_temp.day(k int) RETURNS bigint LANGUAGE sql
AS $$ SELECT (floor(extract(epoch FROM now()) / 86400)::bigint - k) * 86400 $$;
CREATE FUNCTION pg_temp.setting(name text, dflt bigint) RETURNS bigint LANGUAGE sql
AS $$ SELECT coalesce(nullif(current_setting(name, true), ''), dflt::text)::bigint $$;
CREATE TEMP TABLE rp_params AS
SELECT pg_temp.setting('bench.rp_rows', 1000000) AS expired,
       pg_temp.setting('bench.rp_fresh', 100000) AS fresh,
       pg_temp.setting('bench.rp_rounds', 3)::int AS rounds;

CREATE SCHEMA bench_rp_aegis;
CREATE SCHEMA bench_rp_plain;
CREATE SCHEMA bench_rp_rw_aegis;
CREATE SCHEMA bench_rp_rw_plain;
DO $$
DECLARE s name; k int;
BEGIN
    FOREACH s IN ARRAY '{bench_rp_aegis,bench_rp_plain}'::name[] LOOP
        EXECUTE format('CREATE TABLE %I.history (itemid bigint NOT NULL, clock integer NOT NULL DEFAULT 0, '
                       'value double precision NOT NULL DEFAULT 0, ns integer NOT NULL DEFAULT 0, '
                       'PRIMARY KEY (itemid, clock, ns)) PARTITION BY RANGE (clock)', s);
        FOR k IN 0 .. 2 LOOP
            EXECUTE format('CREATE TABLE %I.history_d_%s PARTITION OF %I.history FOR VALUES FROM (%s) TO (%s)',
                           s, k, s, pg_temp.day(k), pg_temp.day(k - 1));
        END LOOP;
        EXECUTE format('CREATE TABLE %I.history_next PARTITION OF %I.history FOR VALUES FROM (%s) TO (MAXVALUE)',
                       s, s, pg_temp.day(-1));
    END LOOP;
    FOREACH s IN ARRAY '{bench_rp_rw_aegis,bench_rp_rw_plain}'::name[] LOOP
        EXECUTE format('CREATE TABLE %I.history (itemid bigint NOT NULL, clock integer NOT NULL DEFAULT 0, '
                       'value double precision NOT NULL DEFAULT 0, ns integer NOT NULL DEFAULT 0, '
                       'PRIMARY KEY (itemid, clock, ns))', s);
    END LOOP;
END $$;
SELECT aegis.protect('bench_rp_aegis.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock"}}'),
       aegis.protect('bench_rp_rw_aegis.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock"}}')
    \gset
-- The partitions that stay: day 2 from its second hour on (the cutoff is
-- a minute into it), yesterday and today up to now; 20,000 items.
DO $$
DECLARE s name; k int; n bigint := (SELECT fresh FROM rp_params);
BEGIN
    FOREACH s IN ARRAY '{bench_rp_aegis,bench_rp_plain}'::name[] LOOP
        FOR k IN 0 .. 2 LOOP
            EXECUTE format('INSERT INTO %I.history SELECT 10000 + g %% 20000, $1 + 3600 + g * $2 / $3, (g %% 1000) / 7.0, g '
                           'FROM generate_series(0, $3 - 1) g', s)
            USING pg_temp.day(k), CASE WHEN k = 0 THEN least(extract(epoch FROM now())::bigint - pg_temp.day(0) - 7200, 86400 - 7200)
                                       ELSE 86400 - 7200 END, n;
        END LOOP;
    END LOOP;
END $$;

-- Statistics, and hint bits set by one read, so neither side pays for them
-- (VACUUM cannot run in a procedure; ANALYZE and a scan can).
CREATE PROCEDURE pg_temp.rp_settle(tbls text[]) LANGUAGE plpgsql AS $$
DECLARE t text; n bigint;
BEGIN
    FOREACH t IN ARRAY tbls LOOP
        EXECUTE format('ANALYZE %s', t);
        EXECUTE format('SELECT count(*) FROM %s', t) INTO n;
        COMMIT;
    END LOOP;
END $$;

CREATE TEMP TABLE rp_timings(part text, side text, round int, ms float8, rows bigint, entries bigint, bytes bigint,
                             growth bigint);

-- ------------------------------------------------------------- part 1: partition drop
-- (Re)create the expired partition of three days ago on both sides and
-- fill it; untimed.
CREATE PROCEDURE pg_temp.rp_load_partition() LANGUAGE plpgsql AS $$
DECLARE s name; n bigint := (SELECT expired FROM rp_params);
BEGIN
    FOREACH s IN ARRAY '{bench_rp_aegis,bench_rp_plain}'::name[] LOOP
        EXECUTE format('CREATE TABLE %I.history_d_3 PARTITION OF %I.history FOR VALUES FROM (%s) TO (%s)',
                       s, s, pg_temp.day(3), pg_temp.day(2));
        COMMIT;
        -- Zabbix's history syncers insert in batches: 1,000 rows a statement.
        EXECUTE format('INSERT INTO %I.history SELECT 10000 + g %% 20000, $1 + g * 86399 / $2, (g %% 1000) / 7.0, g '
                       'FROM generate_series(0, $2 - 1) g', s) USING pg_temp.day(3), n;
        COMMIT;
    END LOOP;
    CALL pg_temp.rp_settle('{bench_rp_aegis.history,bench_rp_plain.history}');
END $$;

CREATE PROCEDURE pg_temp.rp_time(part text, side text, round int, stmt text, tbl regclass) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ms float8; e0 bigint; b0 bigint; n bigint;
BEGIN
    SELECT coalesce(max(id), 0) INTO e0 FROM aegis.audit_log;
    b0 := pg_total_relation_size('aegis.audit_log');
    COMMIT;
    t0 := clock_timestamp();
    IF stmt = 'apply_retention' THEN
        SELECT sum(rows_affected) INTO n FROM aegis.apply_retention();
    ELSE
        EXECUTE stmt;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    COMMIT;
    ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
    -- Bytes: the stored size of the entries written (pg_column_size of
    -- each row), and the growth of the relation (page granularity).
    INSERT INTO rp_timings
    SELECT part, side, round, ms, n, count(*), coalesce(sum(pg_column_size(l.*)), 0),
           pg_total_relation_size('aegis.audit_log') - b0
    FROM aegis.audit_log l WHERE l.id > e0;
    COMMIT;
END $$;

-- One round of part 1: the cutoff a minute into day 2 (a keep computed now).
CREATE PROCEDURE pg_temp.rp_round_partition(round int) LANGUAGE plpgsql AS $$
DECLARE keep interval := now() - to_timestamp(pg_temp.day(2) + 60); s text;
BEGIN
    PERFORM aegis.set_retention('bench_rp_aegis.history', keep, 'clock', time_unit => 'seconds');
    COMMIT;
    CHECKPOINT;
    FOREACH s IN ARRAY CASE WHEN round % 2 = 0 THEN '{aegis,plain}'::text[] ELSE '{plain,aegis}'::text[] END LOOP
        IF s = 'aegis' THEN
            CALL pg_temp.rp_time('partition', 'aegis', round, 'apply_retention', 'bench_rp_aegis.history');
        ELSE
            CALL pg_temp.rp_time('partition', 'plain', round, 'DROP TABLE bench_rp_plain.history_d_3', NULL);
        END IF;
    END LOOP;
    PERFORM aegis.remove_retention('bench_rp_aegis.history');
    COMMIT;
    IF to_regclass('bench_rp_aegis.history_d_3') IS NOT NULL OR to_regclass('bench_rp_plain.history_d_3') IS NOT NULL THEN
        RAISE EXCEPTION 'retention_partitions: round %: the expired partition is still there', round;
    END IF;
END $$;

-- ------------------------------------------------------------- part 2: row-wise
CREATE PROCEDURE pg_temp.rp_load_rowwise() LANGUAGE plpgsql AS $$
DECLARE s name; n bigint := (SELECT expired FROM rp_params); f bigint := (SELECT fresh FROM rp_params);
        fresh_from bigint := extract(epoch FROM now())::bigint - 86400;  -- the same on both sides
BEGIN
    FOREACH s IN ARRAY '{bench_rp_rw_aegis,bench_rp_rw_plain}'::name[] LOOP
        EXECUTE format('TRUNCATE %I.history', s);
        COMMIT;
        -- Expired: 10 to 3 days old; fresh: the last day (before now).
        EXECUTE format('INSERT INTO %I.history SELECT 10000 + g %% 20000, $1 + g * (7 * 86400) / $2, (g %% 1000) / 7.0, g '
                       'FROM generate_series(0, $2 - 1) g', s) USING pg_temp.day(10), n;
        EXECUTE format('INSERT INTO %I.history SELECT 10000 + g %% 20000, $1 + g * 86000 / $2, (g %% 1000) / 7.0, g '
                       'FROM generate_series(0, $2 - 1) g', s) USING fresh_from, f;
        COMMIT;
    END LOOP;
    CALL pg_temp.rp_settle('{bench_rp_rw_aegis.history,bench_rp_rw_plain.history}');
END $$;

CREATE PROCEDURE pg_temp.rp_round_rowwise(round int) LANGUAGE plpgsql AS $$
DECLARE keep interval := now() - to_timestamp(pg_temp.day(2) + 60); cutoff bigint; s text;
BEGIN
    PERFORM aegis.set_retention('bench_rp_rw_aegis.history', keep, 'clock', time_unit => 'seconds');
    COMMIT;
    CHECKPOINT;
    FOREACH s IN ARRAY CASE WHEN round % 2 = 0 THEN '{aegis,plain}'::text[] ELSE '{plain,aegis}'::text[] END LOOP
        IF s = 'aegis' THEN
            CALL pg_temp.rp_time('row-wise', 'aegis', round, 'apply_retention', 'bench_rp_rw_aegis.history');
        ELSE
            -- apply_retention's cutoff, in the column's terms: now() - keep.
            cutoff := floor(extract(epoch FROM now() - keep))::bigint;
            CALL pg_temp.rp_time('row-wise', 'plain', round,
                format('DELETE FROM bench_rp_rw_plain.history WHERE clock < %s', cutoff), NULL);
        END IF;
    END LOOP;
    PERFORM aegis.remove_retention('bench_rp_rw_aegis.history');
    COMMIT;
END $$;

-- ------------------------------------------------------------- the rounds
CREATE PROCEDURE pg_temp.rp_run() LANGUAGE plpgsql AS $$
DECLARE r int;
BEGIN
    FOR r IN 1 .. (SELECT rounds FROM rp_params) LOOP
        CALL pg_temp.rp_load_partition();
        CALL pg_temp.rp_round_partition(r);
        CALL pg_temp.rp_load_rowwise();
        CALL pg_temp.rp_round_rowwise(r);
        -- Sealing is off the timed path; keep the trail sealed between rounds.
        PERFORM aegis.seal();
        COMMIT;
    END LOOP;
END $$;
CALL pg_temp.rp_run();

-- ------------------------------------------------------------- checks
-- Both sides did the same thing: what is left is the same rows, each
-- deletion removed the expired rows (apply_retention() counts the rows of
-- a dropped partition), and the trail still balances the protected tables.
DO $$
DECLARE p rp_params; bad text;
BEGIN
    SELECT * INTO p FROM rp_params;
    SELECT string_agg(format('%s/%s round %s: %s rows', part, side, round, rows), '; ') INTO bad
    FROM rp_timings WHERE side = 'aegis' AND rows <> p.expired OR part = 'row-wise' AND rows <> p.expired;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'retention_partitions: a deletion did not remove exactly the % expired rows: %', p.expired, bad;
    END IF;
    IF (SELECT count(*) FROM ((TABLE bench_rp_aegis.history EXCEPT ALL TABLE bench_rp_plain.history)
                              UNION ALL (TABLE bench_rp_plain.history EXCEPT ALL TABLE bench_rp_aegis.history)) d) <> 0
       OR (SELECT count(*) FROM ((TABLE bench_rp_rw_aegis.history EXCEPT ALL TABLE bench_rp_rw_plain.history)
                              UNION ALL (TABLE bench_rp_rw_plain.history EXCEPT ALL TABLE bench_rp_rw_aegis.history)) d) <> 0
       OR (SELECT count(*) FROM bench_rp_rw_aegis.history) <> p.fresh
       OR (SELECT count(*) FROM bench_rp_aegis.history) <> 3 * p.fresh THEN
        RAISE EXCEPTION 'retention_partitions: the two sides kept different rows';
    END IF;
END $$;
SELECT bool_and(ok) AS rp_ok, coalesce(string_agg(problem, '; '), '') AS rp_problem FROM (
    SELECT * FROM aegis.verify_table('bench_rp_aegis.history')
    UNION ALL SELECT * FROM aegis.verify_table('bench_rp_rw_aegis.history')) v \gset

-- ------------------------------------------------------------- report
\set QUIET off
\echo
SELECT format('retention of a digest-mode history table: %s expired rows, %s rounds (median ms, each side timed with its COMMIT); trail = entries written by the call, their stored bytes, and the growth of aegis.audit_log',
              expired, rounds) AS "retention_partitions" FROM rp_params;
WITH m AS (
    SELECT part, side, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
           max(rows) AS rows, max(entries) AS entries, percentile_cont(0.5) WITHIN GROUP (ORDER BY bytes) AS bytes,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY growth) AS growth
    FROM rp_timings GROUP BY 1, 2)
SELECT a.part, CASE a.part WHEN 'partition' THEN 'apply_retention() vs DROP TABLE partition'
                          ELSE 'apply_retention() vs DELETE WHERE clock < cutoff' END AS "pg_aegis vs baseline",
       (SELECT expired FROM rp_params) AS rows_expired,
       round(a.ms::numeric, 1) AS pg_aegis_ms, round(b.ms::numeric, 1) AS baseline_ms,
       round((a.ms / b.ms)::numeric, 2) AS ratio,
       a.entries AS trail_entries, a.bytes::bigint AS trail_entry_bytes,
       round((a.bytes / (SELECT expired FROM rp_params))::numeric, 3) AS trail_bytes_per_row,
       pg_size_pretty(a.growth::bigint) AS audit_log_growth,
       CASE a.part WHEN 'partition' THEN '<= 1 s, O(1) entries' ELSE '<= 1.5x' END AS target,
       CASE a.part WHEN 'partition' THEN CASE WHEN a.ms <= 1000 AND a.entries <= 5 THEN 'met' ELSE 'missed' END
                   ELSE CASE WHEN a.ms / b.ms <= 1.5 THEN 'met' ELSE 'missed' END END AS result
FROM m a JOIN m b ON b.part = a.part AND b.side = 'plain'
WHERE a.side = 'aegis' ORDER BY a.part;
SELECT part, side, string_agg(round(ms::numeric, 1)::text, ' ' ORDER BY round) AS "each round (ms)",
       string_agg(entries::text, ' ' ORDER BY round) AS "entries", string_agg(bytes::text, ' ' ORDER BY round) AS "entry bytes",
       string_agg(growth::text, ' ' ORDER BY round) AS "audit_log growth"
FROM rp_timings GROUP BY 1, 2 ORDER BY 1, 2;
SELECT :'rp_ok'::boolean AS "check: verify_table() balances both protected tables afterwards",
       :'rp_problem' AS problem;
\set QUIET on

-- ------------------------------------------------------------- cleanup
SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.remove_retention(relid) FROM aegis.retention_rules WHERE relid::text ~ '^bench_rp_';
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_rp_';
END $$;
DROP SCHEMA bench_rp_aegis, bench_rp_plain, bench_rp_rw_aegis, bench_rp_rw_plain CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
ALTER SYSTEM RESET autovacuum;
SELECT pg_reload_conf() AS reloaded \gset
