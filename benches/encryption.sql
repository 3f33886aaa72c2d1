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

\ir lib/harness.sql
INSERT INTO cases (name, ours, base) VALUES
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

-- Same answers on both sides.
SELECT name, pg_temp.run_as(ours_role, ours) = pg_temp.run_as(NULL, base) AS same_row_count FROM cases ORDER BY name;

DO $$ BEGIN PERFORM pg_temp.run_cases(least(current_setting('bench.reps')::int, 3)); END $$;

\set QUIET off
SELECT * FROM pg_temp.report('aegis');
\set QUIET on
DROP TABLE enc_data;
