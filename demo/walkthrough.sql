-- pg_aegis guided walkthrough, run by `make demo` (psql echoes each statement).
-- Each later capability adds its section here, with sample monitoring data.

-- == 1. What is installed ====================================================
SELECT aegis.version();
SELECT * FROM aegis.build_info() ORDER BY item;

-- == 2. pgcrypto-compatible hashing ===========================================
-- Same bytes as pgcrypto, so queries can switch from digest() to aegis.digest().
SELECT aegis.digest('abc', 'sha256') = digest('abc', 'sha256') AS same_as_pgcrypto;
SELECT encode(aegis.hmac('GET /api/v1/metrics', 'webhook-secret', 'sha256'), 'hex') AS webhook_signature;
-- md5/sha1 are refused unless a superuser opts in (aegis.allow_legacy_hashes).
DO $$
BEGIN
    PERFORM aegis.digest('abc', 'md5');
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'refused as expected: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END $$;
