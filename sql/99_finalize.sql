-- Runs last. Grants are deliberate and listed here in one place.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA aegis FROM PUBLIC;
--
-- Hashing functions are harmless and pgcrypto grants them to PUBLIC; we do the
-- same so existing queries keep working after a switch from pgcrypto.
GRANT USAGE ON SCHEMA aegis TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    aegis.digest(bytea, text), aegis.digest(text, text),
    aegis.hmac(bytea, bytea, text), aegis.hmac(text, text, text),
    aegis.version()
TO PUBLIC;
-- Not granted: build_info() reveals deployment details (build profile,
-- preload state): superusers and explicit grantees only.
