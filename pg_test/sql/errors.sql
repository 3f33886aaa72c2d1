-- Control: bad input fails with a specific SQLSTATE and a helpful hint, never
-- an internal message; md5/sha1 are refused unless a superuser opts in.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Unknown algorithm: SQLSTATE 22023, hint names the supported types.
SELECT aegis.digest('x', 'whirlpool');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.hmac('x', 'k', 'sha3-256');
SELECT aegis.digest('x', '');
-- Names are matched exactly, like pgcrypto: no trimming.
SELECT aegis.digest('x', 'sha256 ');
-- Control characters in the name are escaped in the message: no forged log lines.
SELECT aegis.digest('x', E'sha256"\nLOG:  forged entry');
-- The same for PII kinds and redaction styles.
SELECT aegis.redact_pii('x', ARRAY[E'EMAIL\nLOG:  forged entry'], 'tag');
SELECT aegis.redact_pii('x', ARRAY['EMAIL'], E'tag\nLOG:  forged entry');
-- The keys pg_aegis signs and pseudonymizes with encrypt nothing (42501),
-- whether or not they exist yet.
SELECT aegis.encrypt('x'::text, 'audit_head');
SELECT aegis.encrypt('\x00'::bytea, 'pseudonym');

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
    ($$SELECT aegis.digest('x', 'whirlpool')$$),
    ($$SELECT aegis.digest('x'::bytea, 'blake2b512')$$),
    ($$SELECT aegis.hmac('x', 'k', 'nope')$$),
    ($$SELECT aegis.hmac('x'::bytea, 'k'::bytea, 'md5')$$),
    ($$SELECT aegis.digest('x', 'sha1')$$)
) v(q) ORDER BY q;

-- Legacy algorithms: refused by default, with a hint on how to opt in.
SHOW aegis.allow_legacy_hashes;
SELECT aegis.digest('abc', 'md5');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.hmac('abc', 'k', 'SHA-1');

-- A superuser may enable them for pgcrypto compatibility; output still matches.
BEGIN;
SET LOCAL aegis.allow_legacy_hashes = on;
SELECT aegis.digest('abc', 'md5') = digest('abc', 'md5') AS md5_same,
       aegis.digest('abc', 'sha1') = digest('abc', 'sha1') AS sha1_same,
       aegis.hmac('abc', 'k', 'sha-1') = hmac('abc', 'k', 'sha1') AS hmac_sha1_same;
ROLLBACK;
SELECT pg_temp.sqlstate_of($$SELECT aegis.digest('abc', 'md5')$$) AS refused_again;

-- The aegis.* GUC prefix is reserved: a typo is an error, not a silent no-op.
SET aegis.allow_legacy_hash = on;
\echo :LAST_ERROR_SQLSTATE
