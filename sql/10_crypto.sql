-- Digests and HMACs (pgcrypto-compatible). The text variants bind the same C
-- symbols as the bytea variants: text is hashed as its raw bytes, exactly as
-- pgcrypto does, with no encoding conversion.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;
-- PUBLIC's EXECUTE on these is revoked and granted back deliberately in
-- 99_finalize.sql, in one place with every other grant.
-- Declared by hand (the Rust side is `sql = false`) so the argument is named
-- `type` as in the documentation.

CREATE FUNCTION aegis.digest(data bytea, type text) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'digest_bytea_wrapper';

CREATE FUNCTION aegis.hmac(data bytea, key bytea, type text) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'hmac_bytea_wrapper';

CREATE FUNCTION aegis.digest(data text, type text) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'digest_bytea_wrapper';
COMMENT ON FUNCTION aegis.digest(text, text) IS
    'Digest of text (raw bytes) with sha224, sha256, sha384 or sha512; pgcrypto-compatible';

CREATE FUNCTION aegis.hmac(data text, key text, type text) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'hmac_bytea_wrapper';
COMMENT ON FUNCTION aegis.hmac(text, text, text) IS
    'HMAC of text (raw bytes) with sha224, sha256, sha384 or sha512; pgcrypto-compatible';

COMMENT ON FUNCTION aegis.digest(bytea, text) IS
    'Digest with sha224, sha256, sha384 or sha512; pgcrypto-compatible';
COMMENT ON FUNCTION aegis.hmac(bytea, bytea, text) IS
    'HMAC with sha224, sha256, sha384 or sha512; pgcrypto-compatible';
