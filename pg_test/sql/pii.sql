-- Control: PII redaction and log sanitizing in SQL. redact_pii() in every
-- style, detect_pii() positions, has_pii(), pii_kinds(), sanitize_log(), the
-- sanitize_columns() trigger, NULL/empty/huge inputs, and the errors for bad
-- kinds, styles and limits.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE pii_dev LOGIN IN ROLE aegis_developer;
CREATE ROLE pii_ingest LOGIN IN ROLE aegis_ingest;
RESET client_min_messages;

-- ---------------------------------------------------------------- kinds
SELECT array_agg(k) AS kinds FROM aegis.pii_kinds() k;

-- ---------------------------------------------------------------- redact_pii, tag style
CREATE TEMP TABLE samples(id int, msg text);
INSERT INTO samples VALUES
 (1, 'login failed for jane.doe@example.com from 203.0.113.7'),
 (2, 'peer [2001:db8::17]:443 reset; mac 00:1a:2b:3c:4d:5e'),
 (3, 'call +1 (555) 123-4567 or 020 7946 0958'),
 (4, 'card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32, ssn 512-48-3097'),
 (5, 'dsn postgres://app:s3cr3t@db.internal:5432/prod password=hunter2 Authorization: Bearer abc123.def456'),
 (6, 'token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl ok'),
 (7, '2026-11-22T18:33:33.123Z pid=4242 req 550e8400-e29b-41d4-a716-446655440000 v1.2.3.4 SQLSTATE 23505 took 1532 ms'),
 (8, ''),
 (9, 'Zoë <zoë@example.com> 電話 +81 3-1234-5678');
SELECT id, aegis.redact_pii(msg) FROM samples ORDER BY id;
-- Idempotent, and text without PII comes back unchanged.
SELECT bool_and(aegis.redact_pii(aegis.redact_pii(msg)) = aegis.redact_pii(msg)) AS idempotent,
       bool_and(aegis.redact_pii(msg) = msg) FILTER (WHERE NOT aegis.has_pii(msg)) AS clean_unchanged
FROM samples;
SELECT aegis.redact_pii(NULL) IS NULL AS null_in_null_out;

-- ---------------------------------------------------------------- other styles and kinds
SELECT aegis.redact_pii(msg, NULL, 'mask') FROM samples WHERE id IN (1, 3, 4, 5) ORDER BY id;
SELECT aegis.redact_pii(msg, '{email}', 'remove') FROM samples WHERE id = 1;
SELECT aegis.redact_pii(msg, '{IPV4,US_SSN}') FROM samples WHERE id IN (1, 4) ORDER BY id;
SELECT aegis.redact_pii(msg, '{}') = msg AS empty_kinds_change_nothing FROM samples WHERE id = 1;
SELECT aegis.redact_pii(NULL, '{EMAIL}') IS NULL AS null_msg;
-- hash: keyed tokens; the same person (any spelling) gets the same token.
SELECT aegis.create_key('pseudonym') IS NOT NULL AS key_created;
SELECT aegis.redact_pii('JANE.DOE@EXAMPLE.COM', NULL, 'hash') = aegis.redact_pii('jane.doe@example.com', NULL, 'hash') AS same_token,
       aegis.redact_pii('jane.doe@example.com', NULL, 'hash') <> aegis.redact_pii('john@example.com', NULL, 'hash') AS distinct_tokens,
       aegis.redact_pii('mail jane.doe@example.com', NULL, 'hash') ~ '^mail \[EMAIL:[0-9a-f]{8}\]$' AS token_shape,
       position('jane' IN aegis.redact_pii('jane.doe@example.com', NULL, 'hash')) = 0 AS not_identifying;

-- ---------------------------------------------------------------- errors
SELECT aegis.redact_pii('x', '{EMAIL,PASSPORT}');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT aegis.redact_pii('x', NULL, 'blur');
\set VERBOSITY terse
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.redact_pii('x', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.redact_pii('x', '{EMAIL,NULL}');
\echo :LAST_ERROR_SQLSTATE

-- The hash style is a pseudonym oracle: only for roles that may call
-- aegis.pseudonymize() (admins, ingest), never developers.
SET SESSION AUTHORIZATION pii_dev;
SELECT aegis.redact_pii('jane.doe@example.com', NULL, 'hash');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.redact_pii('jane.doe@example.com', NULL, 'mask') AS developer_may_mask;
-- Nor through a hash-style trigger on a table of one's own.
CREATE TEMP TABLE my_oracle(v text);
CREATE TRIGGER my_oracle_hash BEFORE INSERT ON my_oracle
    FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('v', 'style=hash');
INSERT INTO my_oracle VALUES ('jane.doe@example.com');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS tokens_obtained FROM my_oracle;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION pii_ingest;
SELECT aegis.redact_pii('jane.doe@example.com', NULL, 'hash') ~ '^\[EMAIL:[0-9a-f]{8}\]$' AS ingest_may_hash;
RESET SESSION AUTHORIZATION;

-- ---------------------------------------------------------------- detect_pii, has_pii
SELECT d.* FROM samples s, aegis.detect_pii(s.msg) d WHERE s.id IN (1, 9) ORDER BY s.id, d.start_pos;
-- Positions are characters, 1-based, end inclusive: substr() gives the value.
SELECT bool_and(substr(s.msg, d.start_pos, d.end_pos - d.start_pos + 1) = d.value) AS positions_match,
       count(*) AS findings
FROM samples s, aegis.detect_pii(s.msg) d;
SELECT id, aegis.has_pii(msg) FROM samples ORDER BY id;
SELECT count(*) AS none_in_empty FROM aegis.detect_pii('');

-- ---------------------------------------------------------------- huge input
-- 16 MiB of clean log text with one address at the very end: found, and the
-- text around it kept intact.
SELECT length(r) = length(m) - length('ops@example.com') + length('[EMAIL]') AS lengths_add_up,
       right(r, 7) = '[EMAIL]' AS redacted_at_end, aegis.has_pii(m) AS found
FROM (SELECT m, aegis.redact_pii(m) AS r
      FROM (SELECT repeat('2026-11-22 12:00:00 UTC [42] LOG: checkpoint complete ', 300000) || 'ops@example.com' AS m) x) y;

-- ---------------------------------------------------------------- sanitize_log
SELECT aegis.sanitize_log(E'user=bob\nFORGED: admin logged in\r\tx') AS newlines_escaped;
SELECT aegis.sanitize_log(E'\x1b[31mred\x1b[0m and \x1b]0;title\x07done') AS ansi_removed;
SELECT aegis.sanitize_log(E'bell \x07 del \x7f lone esc \x1b') AS controls_visible;
SELECT aegis.sanitize_log(E'rtl \u202Egnp.exe next\u2028line') AS unicode_controls;
SELECT aegis.sanitize_log(repeat('é', 40), 40) AS truncated,
       octet_length(aegis.sanitize_log(repeat('é', 40), 40)) <= 40 AS fits;
SELECT aegis.sanitize_log(aegis.sanitize_log(E'a\nb', 32), 32) = aegis.sanitize_log(E'a\nb', 32) AS idempotent,
       aegis.sanitize_log('clean line') = 'clean line' AS clean_unchanged;
SELECT aegis.sanitize_log('x', 31);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.sanitize_log('x', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.sanitize_log(NULL) IS NULL AS null_in_null_out;

-- ---------------------------------------------------------------- the trigger
CREATE TEMP TABLE app_log(id int, msg text, note varchar(40), code int);
CREATE TRIGGER app_log_sanitize BEFORE INSERT OR UPDATE ON app_log
    FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('msg', 'note', 'redact', 'max_bytes=64');
INSERT INTO app_log VALUES
    (1, E'login from 10.1.2.3\nFAKE line', 'by jane@example.com', 7),
    (2, NULL, 'plain', 8),
    (3, repeat('x', 100), NULL, 9);
SELECT id, msg, note, code FROM app_log ORDER BY id;
UPDATE app_log SET msg = E'again\r\nmail bob@example.org' WHERE id = 2;
SELECT msg FROM app_log WHERE id = 2;
-- Updating another column leaves sanitized text as it is.
UPDATE app_log SET code = code + 1;
SELECT count(*) FILTER (WHERE msg LIKE '%\\\\%') AS double_escaped FROM app_log;
-- Redaction can make a value longer than a varchar(n) allows: an error, not
-- a silently over-long value.
INSERT INTO app_log (id, note) VALUES (4, 'a@b.io a@b.io a@b.io a@b.io a@b.io a@b.i');
\echo :LAST_ERROR_SQLSTATE
-- Misconfigured triggers fail with clear errors.
CREATE TEMP TABLE t2(a text, n int);
CREATE TRIGGER bad_col BEFORE INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('nope');
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad_col ON t2;
CREATE TRIGGER bad_type BEFORE INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('n');
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad_type ON t2;
CREATE TRIGGER bad_opt BEFORE INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('a', 'style=blur');
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad_opt ON t2;
CREATE TRIGGER no_cols BEFORE INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns();
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER no_cols ON t2;
CREATE TRIGGER after_trg AFTER INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('a');
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER after_trg ON t2;
CREATE TRIGGER stmt_trg BEFORE INSERT ON t2 FOR EACH STATEMENT EXECUTE FUNCTION aegis.sanitize_columns('a');
INSERT INTO t2 VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
