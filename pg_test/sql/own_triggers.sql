-- Control: pg_aegis's own triggers on an application's table (issue 18,
-- item 5). sanitize_columns() has a redact-only mode (sanitize=false) that
-- keeps multi-line messages intact; a table carrying pg_aegis's triggers
-- can still be kept by retention (dry run and real) and erased from.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE ot_app LOGIN;
CREATE ROLE ot_admin LOGIN IN ROLE aegis_admin;
CREATE SCHEMA ot AUTHORIZATION ot_app;
GRANT USAGE ON SCHEMA ot TO aegis_admin;
SET ROLE ot_app;
CREATE TABLE ot.alerts (alertid bigint PRIMARY KEY, clock integer NOT NULL, userid bigint,
                        sendto varchar(1024), message text);
CREATE TRIGGER alerts_redact BEFORE INSERT OR UPDATE ON ot.alerts
    FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('message', 'redact=EMAIL', 'sanitize=false');
CREATE TABLE ot.log (id bigint PRIMARY KEY, msg text);
CREATE TRIGGER log_sanitize BEFORE INSERT OR UPDATE ON ot.log
    FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('msg', 'redact=EMAIL');
RESET ROLE;
RESET client_min_messages;

-- Redact-only keeps newlines and tabs; the default mode escapes them.
SET ROLE ot_app;
INSERT INTO ot.alerts VALUES (1, 1000, 42, 'mary@example.com', E'Problem: disk full\nHost: db1\n\tcontact mary@example.com'),
                             (2, 2000000000, 7, NULL, E'Resolved\nby John Doe (john@example.com)');
INSERT INTO ot.log VALUES (1, E'line one\nmary@example.com');
SELECT alertid, message FROM ot.alerts ORDER BY alertid;
SELECT msg FROM ot.log;
-- Bad options are refused when the trigger fires, with their reason.
CREATE TRIGGER bad BEFORE INSERT ON ot.log FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('msg', 'sanitize=false');
INSERT INTO ot.log VALUES (2, 'x');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON ot.log;
RESET ROLE;

-- Retention and erasure act on a table that carries pg_aegis's triggers.
SET ROLE ot_admin;
SELECT aegis.protect('ot.alerts', '{"application_roles": ["ot_app"], "profile": "logs", "erasure": "anonymize",
                                    "columns": {"sendto": "pii", "message": "free_text", "userid": "subject_id"}}');
SELECT aegis.set_retention('ot.alerts', interval '30 days', 'clock', time_unit => 'seconds');
SELECT table_name, rows_affected FROM aegis.apply_retention(dry_run => true) WHERE table_name = 'ot.alerts';
SELECT count(*) AS rows_after_dry_run FROM ot.alerts;
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'ot.alerts';
SELECT alertid FROM ot.alerts ORDER BY alertid;
SELECT r -> 'tables' -> 'ot.alerts' AS erased, r ->> 'complete' AS complete, r -> 'incomplete_reasons' AS why
FROM aegis.erase_subject('John Doe', dry_run => true) r;
SELECT r -> 'tables' -> 'ot.alerts' AS erased, r ->> 'complete' AS complete, r -> 'incomplete_reasons' AS why
FROM aegis.erase_subject('John Doe') r;
SELECT alertid, message FROM ot.alerts ORDER BY alertid;
SELECT aegis.remove_retention('ot.alerts');
RESET ROLE;
ROLLBACK;
