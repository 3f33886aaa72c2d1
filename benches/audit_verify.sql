-- Benchmark: verification at monitoring scale, digest mode (issue: the
-- audit trail at monitoring scale, open verification targets).
-- One Zabbix history table (itemid bigint, clock integer, value float8,
-- ns integer; key itemid, clock, ns), protected with {"audit_inserts":
-- "digest", "digest_buckets": {"column": "clock"}}, filled with
-- bench.cv_rows rows (default 1,000,000) in 1,000-row INSERT statements,
-- one transaction each (as Zabbix's history syncers write).
--   1. verify_table() on it, against the yardstick of one scan computing a
--      SHA-256 of every row's text; bench.reps rounds alternating which
--      runs first, medians. Target: >= 1,000,000 rows/s.
--   2. verify_chain_incremental() after a full verification: each round
--      adds about bench.cv_entries entries (default 100,000) to the trail,
--      realistic ones: bench.cv_digest_stmts (default 2,000) digest entries
--      of 1,000-row inserts, then single-row UPDATEs of existing rows (each
--      an image entry plus its statement's content-change digest entry), one
--      transaction per 100 updates, until the round has its entries; then
--      aegis.seal() links them (timed, reported), then
--      verify_chain_incremental() (timed) must check exactly them. The
--      yardstick: one scan computing a SHA-256 of each of those entries'
--      text. bench.cv_rounds rounds (default 3), medians.
--      Target: <= 1 s for 100,000 entries.
-- A full verify_chain() of the whole trail is timed once at the end, for
-- reference. Everything runs as the benchmark's superuser; autovacuum off.
\set QUIET on
\pset footer off
SET client_min_messages = warning;

-- ------------------------------------------------------------- setup
SET client_min_messages = error;
DO $$ BEGIN
    PERFORM aegis.unprotect(relid) FROM aegis.protected_tables WHERE relid::text ~ '^bench_cv\.';
END $$;
DROP SCHEMA IF EXISTS bench_cv CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
SET client_min_messages = warning;
ALTER SYSTEM SET autovacuum = off;
SELECT pg_reload_conf() AS reloaded \gset

CREATE FUNCTION pg_temp.setting(name text, dflt bigint) RETURNS bigint LANGUAGE sql
AS $$ SELECT coalesce(nullif(current_setting(name, true), ''), dflt::text)::bigint $$;
CREATE TEMP TABLE cv_params AS
SELECT pg_temp.setting('bench.cv_rows', 1000000) AS rows_,
       pg_temp.setting('bench.cv_entries', 100000) AS entries,
       pg_temp.setting('bench.cv_digest_stmts', 2000) AS digest_stmts,
       pg_temp.setting('bench.cv_rounds', 3)::int AS rounds,
       least(pg_temp.setting('bench.reps', 5), 5)::int AS reps;

-- Incremental verification resumes from a checkpoint signed with the
-- audit_head key (a deployment has it); without it every run is a full one.
DO $$ BEGIN
    PERFORM aegis.create_key('audit_head') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'audit_head');
END $$;
CREATE SCHEMA bench_cv;
CREATE TABLE bench_cv.history (itemid bigint NOT NULL, clock integer NOT NULL DEFAULT 0,
    value double precision NOT NULL DEFAULT 0, ns integer NOT NULL DEFAULT 0, PRIMARY KEY (itemid, clock, ns));
SELECT aegis.protect('bench_cv.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock"}}') \gset

-- n rows from row number first on: 20,000 items, one sample of each every
-- 20 s from 2026-12-01 on (so 1,000-row statements each fall in one bucket
-- of a day, as a syncer's batch does).
CREATE PROCEDURE pg_temp.cv_insert(first bigint, n bigint) LANGUAGE plpgsql AS $$
DECLARE i bigint := first;
BEGIN
    WHILE i < first + n LOOP
        INSERT INTO bench_cv.history
        SELECT 10000 + g % 20000, 1764547200 + g / 1000, (g % 1000) / 7.0, g % 1000000000
        FROM generate_series(i, i + 999) g;
        COMMIT;
        i := i + 1000;
    END LOOP;
END $$;
CREATE TEMP TABLE cv_state(next_row bigint);
INSERT INTO cv_state SELECT rows_ FROM cv_params;
SELECT rows_ AS cv_rows FROM cv_params \gset
CALL pg_temp.cv_insert(0, :cv_rows);
ANALYZE bench_cv.history;
SELECT aegis.seal() AS sealed \gset
CHECKPOINT;

CREATE TEMP TABLE cv_timings(what text, round int, ms float8, n bigint, bytes bigint);

-- ------------------------------------------------------------- 1. verify_table()
CREATE PROCEDURE pg_temp.cv_verify_table() LANGUAGE plpgsql AS $$
DECLARE r int; s text; t0 timestamptz; n bigint; ok boolean;
BEGIN
    -- Warm-up: one of each (hint bits, cache).
    PERFORM count(sha256(t::text::bytea)) FROM bench_cv.history t;
    PERFORM * FROM aegis.verify_table('bench_cv.history');
    COMMIT;
    FOR r IN 1 .. (SELECT reps FROM cv_params) LOOP
        FOREACH s IN ARRAY CASE WHEN r % 2 = 0 THEN '{verify,sha}'::text[] ELSE '{sha,verify}'::text[] END LOOP
            t0 := clock_timestamp();
            IF s = 'verify' THEN
                SELECT v.ok, v.rows_checked INTO ok, n FROM aegis.verify_table('bench_cv.history') v;
                IF NOT ok THEN
                    RAISE EXCEPTION 'audit_verify: verify_table() found a problem';
                END IF;
            ELSE
                SELECT count(sha256(t::text::bytea)) INTO n FROM bench_cv.history t;
            END IF;
            INSERT INTO cv_timings VALUES (s, r, extract(epoch FROM clock_timestamp() - t0) * 1000, n, NULL);
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
CALL pg_temp.cv_verify_table();

-- ------------------------------------------------------------- 2. verify_chain_incremental()
CREATE PROCEDURE pg_temp.cv_chain() LANGUAGE plpgsql AS $$
DECLARE
    p cv_params; r int; t0 timestamptz; e0 bigint; e1 bigint; b0 bigint; n bigint; ok boolean;
    k bigint; nrows bigint; pos0 bigint; v record;
BEGIN
    SELECT * INTO p FROM cv_params;
    -- The first incremental verification is a full one.
    t0 := clock_timestamp();
    SELECT * INTO v FROM aegis.verify_chain_incremental();
    IF NOT v.ok THEN
        RAISE EXCEPTION 'audit_verify: the trail does not verify: %', v.problem;
    END IF;
    INSERT INTO cv_timings VALUES ('first verify_chain_incremental() (full)', 0,
        extract(epoch FROM clock_timestamp() - t0) * 1000, v.entries_checked, NULL);
    COMMIT;
    FOR r IN 1 .. p.rounds LOOP
        SELECT coalesce(max(id), 0) INTO e0 FROM aegis.audit_log;
        b0 := pg_total_relation_size('aegis.audit_log') + pg_total_relation_size('aegis.audit_chain');
        -- Digest entries of 1,000-row inserts.
        SELECT next_row INTO nrows FROM cv_state;
        CALL pg_temp.cv_insert(nrows, p.digest_stmts * 1000);
        UPDATE cv_state SET next_row = next_row + p.digest_stmts * 1000;
        COMMIT;
        SELECT next_row INTO nrows FROM cv_state;
        -- Single-row updates of rows spread over the table, 100 a transaction.
        k := 0;
        WHILE (SELECT count(*) FROM aegis.audit_log WHERE id > e0) < p.entries LOOP
            FOR i IN 1 .. 100 LOOP
                UPDATE bench_cv.history SET value = value + 1
                WHERE itemid = 10000 + (k * 7919 % nrows) % 20000 AND clock = 1764547200 + (k * 7919 % nrows) / 1000
                  AND ns = (k * 7919 % nrows) % 1000000000;
                k := k + 1;
            END LOOP;
            COMMIT;
        END LOOP;
        SELECT max(id) INTO e1 FROM aegis.audit_log;
        CHECKPOINT;
        t0 := clock_timestamp();
        n := aegis.seal();
        COMMIT;
        INSERT INTO cv_timings VALUES ('seal()', r, extract(epoch FROM clock_timestamp() - t0) * 1000, n, NULL);
        COMMIT;
        t0 := clock_timestamp();
        SELECT * INTO v FROM aegis.verify_chain_incremental();
        COMMIT;
        INSERT INTO cv_timings VALUES ('verify_chain_incremental()', r, extract(epoch FROM clock_timestamp() - t0) * 1000,
            v.entries_checked, pg_total_relation_size('aegis.audit_log') + pg_total_relation_size('aegis.audit_chain') - b0);
        IF NOT v.ok OR v.entries_checked < e1 - e0 THEN
            RAISE EXCEPTION 'audit_verify: round %: verify_chain_incremental() checked % entries (ok %, %), % were added',
                r, v.entries_checked, v.ok, v.problem, e1 - e0;
        END IF;
        INSERT INTO cv_timings VALUES ('round entries: statement digests (inserts, updates)', r, NULL,
            (SELECT count(*) FROM aegis.audit_log WHERE id > e0 AND id <= e1 AND new_row IS NULL AND old_row IS NULL), NULL);
        INSERT INTO cv_timings VALUES ('round entries: single-row updates', r, NULL, k, NULL);
        INSERT INTO cv_timings VALUES ('round entries: added to the trail', r, NULL, e1 - e0, NULL);
        INSERT INTO cv_timings VALUES ('round: verification resumed from position', r, NULL, v.verified_from, NULL);
        COMMIT;
        -- The yardstick: a SHA-256 of each new entry's text, one scan.
        t0 := clock_timestamp();
        SELECT count(sha256(l::text::bytea)) INTO n FROM aegis.audit_log l WHERE id > e0 AND id <= e1;
        INSERT INTO cv_timings VALUES ('one scan, SHA-256 per entry', r, extract(epoch FROM clock_timestamp() - t0) * 1000, n, NULL);
        COMMIT;
    END LOOP;
    t0 := clock_timestamp();
    SELECT * INTO v FROM aegis.verify_chain();
    INSERT INTO cv_timings VALUES ('verify_chain() (full, reference)', 0,
        extract(epoch FROM clock_timestamp() - t0) * 1000, v.entries_checked, NULL);
    COMMIT;
END $$;
CALL pg_temp.cv_chain();

-- ------------------------------------------------------------- report
\set QUIET off
\echo
SELECT format('verification in digest mode: history table of %s rows (1,000-row inserts); verify_table() %s rounds, chain %s rounds of ~%s entries',
              rows_, reps, rounds, entries) AS "audit_verify" FROM cv_params;
WITH m AS (SELECT what, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms, max(n) AS n FROM cv_timings GROUP BY 1)
SELECT 'verify_table() in digest mode' AS what, v.n AS rows, round(v.ms::numeric, 1) AS median_ms,
       round(v.n / (v.ms / 1000)) AS rows_per_s,
       round(s.ms::numeric, 1) AS "SHA-256 scan ms", round(s.n / (s.ms / 1000)) AS "SHA-256 scan rows/s",
       round((v.ms / s.ms)::numeric, 2) AS "ratio (verify / scan)",
       '>= 1,000,000 rows/s' AS target, CASE WHEN v.n / (v.ms / 1000) >= 1000000 THEN 'met' ELSE 'missed' END AS result
FROM m v, m s WHERE v.what = 'verify' AND s.what = 'sha';
WITH m AS (SELECT what, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY n) AS n,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY bytes) AS bytes
           FROM cv_timings WHERE round > 0 GROUP BY 1)
SELECT 'verify_chain_incremental() of new entries' AS what, v.n::bigint AS entries, round(v.ms::numeric, 1) AS median_ms,
       round(v.n / (v.ms / 1000)) AS entries_per_s,
       round(s.ms::numeric, 1) AS "SHA-256 scan ms", round((v.ms / s.ms)::numeric, 2) AS "ratio (verify / scan)",
       pg_size_pretty(v.bytes::bigint) AS "trail growth (log + chain)",
       round((v.ms * 100000 / v.n)::numeric, 1) AS "ms per 100,000", '<= 1 s per 100,000' AS target,
       CASE WHEN v.ms * 100000 / v.n <= 1000 THEN 'met' ELSE 'missed' END AS result
FROM m v, m s WHERE v.what = 'verify_chain_incremental()' AND s.what = 'one scan, SHA-256 per entry';
SELECT what, string_agg(coalesce(round(ms::numeric, 1)::text, '-'), ' ' ORDER BY round) AS "each round (ms)",
       string_agg(n::text, ' ' ORDER BY round) AS "n (rows, entries, updates)"
FROM cv_timings WHERE what NOT IN ('verify', 'sha') GROUP BY what ORDER BY min(round), what;
\set QUIET on

-- ------------------------------------------------------------- cleanup
SET client_min_messages = error;
SELECT aegis.unprotect('bench_cv.history') \gset
DROP SCHEMA bench_cv CASCADE;
DELETE FROM aegis.protected_tables WHERE relid::text ~ '^[0-9]+$';
ALTER SYSTEM RESET autovacuum;
SELECT pg_reload_conf() AS reloaded \gset
