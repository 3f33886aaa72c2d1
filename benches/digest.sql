-- Side-by-side benchmark: aegis.digest/aegis.hmac against pgcrypto's
-- digest/hmac, the baseline a user would otherwise use. Same data, same
-- server, same run; runs alternate between the two so machine noise hits both.
-- Reported: median wall time of each side over :reps runs, and the ratio
-- pgcrypto_ms / aegis_ms (above 1 means pg_aegis is faster).
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;  -- measure the functions, not the planner

DROP TABLE IF EXISTS bench_data;
CREATE TABLE bench_data(dataset text, b bytea);
-- 200k log-line sized values (80 bytes), 20k 4 KiB values, 40 values of 1 MiB.
INSERT INTO bench_data
SELECT 'log lines 80 B x 200k', convert_to(rpad('2026-11-22T10:00:00Z ERROR conn ' || g, 80, 'x'), 'UTF8')
FROM generate_series(1, 200000) g;
INSERT INTO bench_data
SELECT '4 KiB x 20k', decode(repeat(md5(g::text), 128), 'hex') FROM generate_series(1, 20000) g;
INSERT INTO bench_data
SELECT '1 MiB x 40', decode(repeat(md5(g::text), 32768), 'hex') FROM generate_series(1, 40) g;
VACUUM ANALYZE bench_data;

CREATE TEMP TABLE cases(dataset text, fn text, ours text, theirs text);
INSERT INTO cases
SELECT d, f,
       format('SELECT count(%s) FROM bench_data WHERE dataset = %L', o, d),
       format('SELECT count(%s) FROM bench_data WHERE dataset = %L', t, d)
FROM (VALUES ('log lines 80 B x 200k'), ('4 KiB x 20k'), ('1 MiB x 40')) ds(d),
     (VALUES ('digest sha256', 'aegis.digest(b, ''sha256'')', 'public.digest(b, ''sha256'')'),
             ('digest sha512', 'aegis.digest(b, ''sha512'')', 'public.digest(b, ''sha512'')'),
             ('hmac sha256',   'aegis.hmac(b, ''k3y'', ''sha256'')', 'public.hmac(b, ''k3y'', ''sha256'')')) fs(f, o, t);

CREATE TEMP TABLE timings(dataset text, fn text, side text, rep int, ms float8);

CREATE FUNCTION pg_temp.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

-- One warm-up round (caches, library load), then alternate sides.
DO $$
DECLARE c record; r int; ignored float8;
BEGIN
    FOR c IN SELECT * FROM cases LOOP
        ignored := pg_temp.time_ms(c.ours) + pg_temp.time_ms(c.theirs);
    END LOOP;
    FOR r IN 1..current_setting('bench.reps')::int LOOP
        FOR c IN SELECT * FROM cases ORDER BY dataset, fn LOOP
            IF r % 2 = 0 THEN
                INSERT INTO timings VALUES (c.dataset, c.fn, 'aegis', r, pg_temp.time_ms(c.ours));
                INSERT INTO timings VALUES (c.dataset, c.fn, 'pgcrypto', r, pg_temp.time_ms(c.theirs));
            ELSE
                INSERT INTO timings VALUES (c.dataset, c.fn, 'pgcrypto', r, pg_temp.time_ms(c.theirs));
                INSERT INTO timings VALUES (c.dataset, c.fn, 'aegis', r, pg_temp.time_ms(c.ours));
            END IF;
        END LOOP;
    END LOOP;
END $$;

\set QUIET off
SELECT dataset, fn AS function,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'aegis')::numeric, 1) AS aegis_ms,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'pgcrypto')::numeric, 1) AS pgcrypto_ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'pgcrypto')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'aegis'))::numeric, 2) AS ratio
FROM timings
GROUP BY dataset, fn
ORDER BY min(length(dataset)) DESC, dataset, fn;
DROP TABLE bench_data;
