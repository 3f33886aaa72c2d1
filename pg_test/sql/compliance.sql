-- Control: the compliance self-check (0.5.0). compliance_report() and its
-- JSON form: every control mapped to SOC 2 / ISO 27001 / GDPR, admins and
-- auditors only, and each database-side control flipping to fail (or warn)
-- when the misconfiguration it looks for is made, and back to pass when it
-- is fixed. (The server-side ones, TLS and pg_hba.conf, depend on this test
-- cluster's configuration; tests/lifecycle.rs flips them on a cluster of its
-- own.)
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('cmp');
CREATE ROLE cmp_auditor LOGIN IN ROLE aegis_auditor;
CREATE ROLE cmp_dev LOGIN IN ROLE aegis_developer;
RESET client_min_messages;
CREATE TEMP VIEW report AS SELECT r.control, r.status FROM aegis.compliance_report() r;

-- The controls and what they evidence.
SELECT control, soc2, iso27001, gdpr FROM aegis.compliance_mapping();
SELECT count(*) = 14 AS all_controls, bool_and(status IN ('pass', 'warn', 'fail')) AS statuses,
       bool_and(evidence_for LIKE 'SOC 2 % | ISO 27001 % | GDPR %') AS mapped
FROM aegis.compliance_report();
-- Who may run it.
SET ROLE cmp_dev;
SELECT count(*) FROM aegis.compliance_report();
SELECT aegis.compliance_report_json();
RESET ROLE;
SET ROLE cmp_auditor;
SELECT j -> 'summary' ? 'fail' AS has_summary, jsonb_array_length(j -> 'controls') AS controls,
       j -> 'controls' -> 0 -> 'evidence_for' ? 'iso27001' AS mapping_in_json
FROM aegis.compliance_report_json() j;
RESET ROLE;

-- The database-side controls, before anything is broken.
SELECT control, status FROM report
WHERE control NOT IN ('tls.ssl_enabled', 'tls.hba_hostssl_only', 'audit.sealed_recently', 'audit.chain_verifies')
ORDER BY control;

-- ------------------------------------------------------------ break, then fix
-- RLS switched off by a superuser (the guard records it, then allows it).
SET client_min_messages = error;
ALTER TABLE cmp.error_logs NO FORCE ROW LEVEL SECURITY;
RESET client_min_messages;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'access.rls_forced';
SELECT aegis.protect('cmp.error_logs', (SELECT policy FROM aegis.protected_tables WHERE relid = 'cmp.error_logs'::regclass));
SELECT status FROM report WHERE control = 'access.rls_forced';

-- A grant to PUBLIC.
GRANT SELECT ON cmp.cost_data TO PUBLIC;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'access.no_public_grants';
REVOKE SELECT ON cmp.cost_data FROM PUBLIC;
SELECT status FROM report WHERE control = 'access.no_public_grants';

-- A BYPASSRLS member of an aegis role (directly or through another role).
CREATE ROLE cmp_team NOLOGIN IN ROLE aegis_oncall;
CREATE ROLE cmp_bypass LOGIN BYPASSRLS IN ROLE cmp_team;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'access.privileged_members';
ALTER ROLE cmp_bypass NOBYPASSRLS;
SELECT status FROM report WHERE control = 'access.privileged_members';

-- A REPLICATION login, in no aegis role, reads every protected row through
-- the replication protocol; a publication sends a protected table away.
SELECT status FROM report WHERE control = 'access.replication';
CREATE ROLE cmp_repl LOGIN REPLICATION;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'access.replication';
ALTER ROLE cmp_repl NOREPLICATION;
SET client_min_messages = error;
CREATE PUBLICATION cmp_pub FOR TABLE cmp.error_logs;
RESET client_min_messages;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'access.replication';
DROP PUBLICATION cmp_pub;
SELECT status FROM report WHERE control = 'access.replication';

-- An aegis role with a pre-SCRAM password.
SET password_encryption = 'md5';
-- (PostgreSQL 18 warns about MD5 passwords; the report's verdict is what
-- is tested here.)
SET client_min_messages = error;
CREATE ROLE cmp_old LOGIN PASSWORD 'legacy-password' IN ROLE aegis_auditor;
RESET client_min_messages;
RESET password_encryption;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'auth.password_encryption';
ALTER ROLE cmp_old PASSWORD 'a-new-password';
SELECT status FROM report WHERE control = 'auth.password_encryption';
-- What a session SETs does not change the verdict: it reads the server's value.
SET password_encryption = 'md5';
SELECT status FROM report WHERE control = 'auth.password_encryption';
RESET password_encryption;

-- A key past its rotation age.
SELECT aegis.create_key('cmp_key') IS NOT NULL AS key_created;
UPDATE aegis.keys SET created_at = now() - interval '400 days' WHERE name = 'cmp_key';
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'keys.rotation_age';
SELECT aegis.rotate_key('cmp_key');
SELECT status FROM report WHERE control = 'keys.rotation_age';

-- Expired rows left in place; a legal hold keeps its rows out of the count.
INSERT INTO cmp.user_access_logs (user_id, accessed_at) VALUES ('u1', now() - interval '200 days'),
                                                               ('u2', now() - interval '200 days');
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'lifecycle.retention_applied';
SELECT aegis.place_legal_hold('cmp.user_access_logs', 'user_id = ''u1''', 'Case 9') IS NOT NULL AS held;
SELECT count(*) FROM aegis.apply_retention() WHERE rows_affected > 0;
SELECT status FROM report WHERE control = 'lifecycle.retention_applied';

-- A column added to a protected table and not classified: drift.
ALTER TABLE cmp.error_logs ADD COLUMN reporter_email text;
SELECT status, detail FROM aegis.compliance_report() WHERE control = 'classification.complete';
SELECT aegis.protect('cmp.error_logs', (SELECT policy FROM aegis.protected_tables WHERE relid = 'cmp.error_logs'::regclass)
                                       || '{"columns": {"error_message": "free_text", "user_identifier": "subject_id", "user_ip": "pii", "reporter_email": "pii"}}');
SELECT status FROM report WHERE control = 'classification.complete';

-- The JSON agrees with the table.
SELECT (j -> 'summary' ->> 'fail')::int = (SELECT count(*) FROM report WHERE status = 'fail') AS fail_counts_agree
FROM aegis.compliance_report_json() j;
ROLLBACK;
