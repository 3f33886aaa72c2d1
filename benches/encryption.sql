-- Side-by-side benchmark: column encryption and pseudonyms against what users
-- do today with pgcrypto, on the same 100,000 values of 64 to 256 bytes.
--   round trip      aegis.decrypt(aegis.encrypt(v))           (AES-256-GCM, keyring)
--   vs pgp_sym      pgp_sym_decrypt(pgp_sym_encrypt(v, pw), pw) (defaults: S2K, CAST5/AES128 + SHA1 MDC)
--   vs encrypt_iv   decrypt_iv(encrypt_iv(v, key, iv, 'aes-cbc')) (AES-CBC, no authentication)
--   pseudonymize    aegis.pseudonymize(v) vs pgcrypto hmac(v, key, 'sha256')
-- ratio = baseline / pg_aegis (above 1: pg_aegis is faster). pgp_sym is slow
-- by design (key stretching per call), so this file runs at most 3 reps.
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
DROP TABLE IF EXISTS enc_data;
CREATE TABLE enc_data AS
SELECT g AS id, left(repeat(md5(g::text) || 'user=alice@example.com ip=198.51.100.7 ', 8), 64 + (g * 37) % 193) AS v
FROM generate_series(1, 100000) g;
VACUUM ANALYZE enc_data;
DO $$ BEGIN
    PERFORM aegis.create_key('bench') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'bench');
    PERFORM aegis.create_key('pseudonym') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
END $$;

CREATE TEMP TABLE cases(name text, ours text, base text);
INSERT INTO cases VALUES
('round trip vs pgp_sym_encrypt/decrypt',
 $$SELECT count(aegis.decrypt(aegis.encrypt(v, 'bench'))) FROM enc_data$$,
 $$SELECT count(pgp_sym_decrypt(pgp_sym_encrypt(v, 'correct horse battery'), 'correct horse battery')) FROM enc_data$$),
('round trip vs encrypt_iv/decrypt_iv aes-cbc',
 $$SELECT count(aegis.decrypt(aegis.encrypt(v, 'bench'))) FROM enc_data$$,
 $$SELECT count(convert_from(decrypt_iv(encrypt_iv(convert_to(v, 'UTF8'), '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, '\x0f0e0d0c0b0a09080706050403020100'::bytea, 'aes-cbc'), '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, '\x0f0e0d0c0b0a09080706050403020100'::bytea, 'aes-cbc'), 'UTF8')) FROM enc_data$$),
('pseudonymize vs pgcrypto hmac sha256',
 $$SELECT count(aegis.pseudonymize(v)) FROM enc_data$$,
 $$SELECT count(hmac(v, 'k3y', 'sha256')) FROM enc_data$$),
('aegis.hmac vs pgcrypto hmac sha256',
 $$SELECT count(aegis.hmac(v, 'k3y', 'sha256')) FROM enc_data$$,
 $$SELECT count(hmac(v, 'k3y', 'sha256')) FROM enc_data$$);

CREATE FUNCTION pg_temp.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

-- Same answers on both sides.
CREATE FUNCTION pg_temp.val(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r bigint; BEGIN EXECUTE q INTO r; RETURN r; END $$;
SELECT name, pg_temp.val(ours) = pg_temp.val(base) AS same_row_count FROM cases ORDER BY name;

CREATE TEMP TABLE timings(name text, side text, ms float8);
DO $$
DECLARE c record; r int; ignored float8;
BEGIN
    FOR c IN SELECT * FROM cases LOOP
        ignored := pg_temp.time_ms(c.ours);
    END LOOP;
    FOR r IN 1..least(current_setting('bench.reps')::int, 3) LOOP
        FOR c IN SELECT * FROM cases ORDER BY name LOOP
            IF r % 2 = 0 THEN
                INSERT INTO timings VALUES (c.name, 'aegis', pg_temp.time_ms(c.ours));
                INSERT INTO timings VALUES (c.name, 'base', pg_temp.time_ms(c.base));
            ELSE
                INSERT INTO timings VALUES (c.name, 'base', pg_temp.time_ms(c.base));
                INSERT INTO timings VALUES (c.name, 'aegis', pg_temp.time_ms(c.ours));
            END IF;
        END LOOP;
    END LOOP;
END $$;

\set QUIET off
SELECT name AS "case",
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'aegis')::numeric, 1) AS pg_aegis_ms,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'base')::numeric, 1) AS baseline_ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'base')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'aegis'))::numeric, 2) AS ratio
FROM timings GROUP BY name ORDER BY name;
\set QUIET on
DROP TABLE enc_data;
