-- Side-by-side benchmark: aegis.digest/aegis.hmac against pgcrypto's
-- digest/hmac, the baseline a user would otherwise use. Same data, same
-- server, same run; runs alternate between the two so machine noise hits both.
-- Reported: median wall time of each side, and the ratio pgcrypto / pg_aegis
-- (above 1 means pg_aegis is faster).
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

\ir lib/harness.sql
INSERT INTO cases
SELECT d || ' / ' || f, NULL,
       format('SELECT count(%s) FROM bench_data WHERE dataset = %L', o, d),
       format('SELECT count(%s) FROM bench_data WHERE dataset = %L', t, d)
FROM (VALUES ('log lines 80 B x 200k'), ('4 KiB x 20k'), ('1 MiB x 40')) ds(d),
     (VALUES ('digest sha256', 'aegis.digest(b, ''sha256'')', 'public.digest(b, ''sha256'')'),
             ('digest sha512', 'aegis.digest(b, ''sha512'')', 'public.digest(b, ''sha512'')'),
             ('hmac sha256',   'aegis.hmac(b, ''k3y'', ''sha256'')', 'public.hmac(b, ''k3y'', ''sha256'')')) fs(f, o, t);

DO $$ BEGIN PERFORM pg_temp.run_cases(current_setting('bench.reps')::int); END $$;

\set QUIET off
SELECT * FROM pg_temp.report('aegis');
\set QUIET on
DROP TABLE bench_data;
