-- PII detection, redaction and log sanitizing (src/pii.rs, aegis-core pii).
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- IMMUTABLE: the result depends on the text alone, so it can back a
-- generated column or an expression index. A later pg_aegis that detects
-- more will change results: rebuild such indexes after upgrading (REINDEX),
-- as with unaccent or a collation update.
CREATE FUNCTION aegis.redact_pii(msg text)
RETURNS text LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aegis_redact_pii';
COMMENT ON FUNCTION aegis.redact_pii(text) IS
    'Replace every detected PII value with its kind tag ([EMAIL], [IPV4], ...)';

-- STABLE and PARALLEL RESTRICTED because of the hash style, which reads the
-- keyring; NULL kinds means every kind.
CREATE FUNCTION aegis.redact_pii(msg text, kinds text[], style text DEFAULT 'tag')
RETURNS text LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'aegis_redact_pii_kinds';
COMMENT ON FUNCTION aegis.redact_pii(text, text[], text) IS
    'Redact the given kinds (NULL: all) in style tag, mask, hash (keyed pseudonym tokens) or remove';

CREATE FUNCTION aegis.has_pii(msg text)
RETURNS boolean LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'has_pii_wrapper';
COMMENT ON FUNCTION aegis.has_pii(text) IS 'True if the text contains any detectable PII';

CREATE FUNCTION aegis.detect_pii(msg text)
RETURNS TABLE (kind text, start_pos integer, end_pos integer, value text)
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE ROWS 2
AS 'MODULE_PATHNAME', 'detect_pii_wrapper';
COMMENT ON FUNCTION aegis.detect_pii(text) IS
    'Each PII value found: kind, 1-based character positions (end inclusive), value';

CREATE FUNCTION aegis.pii_kinds()
RETURNS SETOF text LANGUAGE c IMMUTABLE PARALLEL SAFE ROWS 10
AS 'MODULE_PATHNAME', 'pii_kinds_wrapper';
COMMENT ON FUNCTION aegis.pii_kinds() IS 'The PII kinds redact_pii() and detect_pii() know';

CREATE FUNCTION aegis.sanitize_log(msg text, max_bytes integer DEFAULT 8192)
RETURNS text LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aegis_sanitize_log';
COMMENT ON FUNCTION aegis.sanitize_log(text, integer) IS
    'Escape control characters, strip ANSI escapes, truncate to max_bytes on a character boundary';

CREATE FUNCTION aegis.sanitize_columns()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'sanitize_columns_wrapper';
COMMENT ON FUNCTION aegis.sanitize_columns() IS
    'BEFORE INSERT OR UPDATE row trigger: sanitize_log() (and with redact, redact_pii()) on the named columns';
