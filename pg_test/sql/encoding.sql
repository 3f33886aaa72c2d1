-- Control: text is hashed as its stored bytes, like pgcrypto, in any server
-- encoding; a non-UTF-8 type name is an ordinary "unsupported" error, never an
-- internal one. Runs in a LATIN1 database made for this file and dropped after.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE DATABASE aegis_regress_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c aegis_regress_latin1
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis;
CREATE EXTENSION pgcrypto;
SET client_encoding = 'UTF8';
SELECT current_setting('server_encoding') AS server_encoding;
-- Same as pgcrypto, and equal to hashing the LATIN1 bytes (not the UTF-8 ones).
SELECT aegis.digest('Grüße', 'sha256') = digest('Grüße', 'sha256') AS same_as_pgcrypto,
       aegis.digest('Grüße', 'sha256') = aegis.digest(convert_to('Grüße', 'LATIN1'), 'sha256') AS hashes_latin1_bytes,
       aegis.digest('Grüße', 'sha256') <> aegis.digest(convert_to('Grüße', 'UTF8'), 'sha256') AS not_utf8_bytes,
       aegis.hmac('Grüße', 'Schlüssel', 'sha512') = hmac('Grüße', 'Schlüssel', 'sha512') AS hmac_same;
-- A type name with a non-ASCII character (one LATIN1 byte, invalid UTF-8).
SELECT aegis.digest('x', 'shä256');
\echo :LAST_ERROR_SQLSTATE
-- PII functions work on the database's bytes: positions count LATIN1
-- characters, redaction keeps the accented text around a finding intact,
-- and truncation uses an ASCII marker ("…" does not exist in LATIN1).
SELECT aegis.redact_pii('Café Müller: jane@example.com, Straße 5, 203.0.113.9') AS redacted;
SELECT kind, start_pos, end_pos, value,
       substr('Grüße an jane@example.com', start_pos, end_pos - start_pos + 1) = value AS substr_matches
FROM aegis.detect_pii('Grüße an jane@example.com');
SELECT aegis.sanitize_log(E'Grüße\nneue Zeile ' || repeat('é', 60), 40) AS sanitized,
       octet_length(aegis.sanitize_log(E'Grüße\nneue Zeile ' || repeat('é', 60), 40)) <= 40 AS fits;
\c aegis_regress
SET client_min_messages = warning;
DROP DATABASE aegis_regress_latin1;
