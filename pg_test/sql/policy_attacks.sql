-- Control: the policy pack holds against the usual ways around RLS and masking.
-- Each attack below must fail (or see only what the attacker may see):
--   1. SET ROLE to a group role one is not a member of
--   2. a leaky user function in WHERE, against an RLS table and a masking view
--   3. COPY (SELECT ...) and COPY table TO, over masked/RLS data; COPY FROM
--   4. cursors over a masking view
--   5. views: one's own view over a protected table; views owned by roles
--      that bypass RLS
--   6. search_path hijack of the SECURITY DEFINER helper and of protect()
--   7. identifier injection through table and schema names
--   8. inference through WHERE / ORDER BY on masked columns
--   9. the table owner without BYPASSRLS
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('monitoring');
CREATE ROLE ax_dev LOGIN IN ROLE aegis_developer;
CREATE ROLE ax_viewer LOGIN IN ROLE aegis_incident_viewer;
CREATE ROLE ax_ops LOGIN IN ROLE aegis_operations;
CREATE ROLE ax_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE ax_ingest LOGIN IN ROLE aegis_ingest;
INSERT INTO monitoring.servers (server_id) VALUES ('s1');
INSERT INTO monitoring.error_logs (server_id, error_severity, error_message) VALUES
    ('s1', 'ERROR', 'timeout talking to db for bob@example.com'),
    ('s1', 'SECURITY_BREACH', 'stolen token used from 203.0.113.9');
INSERT INTO monitoring.incident_response_logs (server_id, incident_summary, root_cause) VALUES
    ('s1', 'DB outage caused by alice@example.com', 'bad migration');
INSERT INTO monitoring.aggregated_metrics VALUES ('eu', '2026-11-01 10:00+00', 40, 9000), ('us', '2026-11-01 10:00+00', 50, 12000);
RESET client_min_messages;

-- 1. SET ROLE to a role one is not a member of. SET SESSION AUTHORIZATION
-- makes ax_dev the session user, as after a real login (a superuser session
-- that merely SET ROLEs could switch to any role).
SET SESSION AUTHORIZATION ax_dev;
SET ROLE aegis_admin;
\echo :LAST_ERROR_SQLSTATE
SET ROLE aegis_masking_owner;
\echo :LAST_ERROR_SQLSTATE
SET ROLE aegis_developer;
SELECT session_user, current_user;
RESET SESSION AUTHORIZATION;

-- 2. Leaky functions: a temporary function that reports every value it sees.
CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN RAISE NOTICE 'leaked: %', $1; RETURN true; END $$;
GRANT EXECUTE ON FUNCTION pg_temp.leak(text) TO PUBLIC;
SET ROLE ax_dev;
-- Developers read error messages only through developer_error_logs; the
-- table itself is closed to them.
SELECT count(*) FROM monitoring.error_logs WHERE pg_temp.leak(error_message);
-- Through the view the function only ever sees redacted text, and never a
-- SECURITY_BREACH row (the owner's RLS policy runs first).
SELECT count(*) FROM monitoring.developer_error_logs WHERE pg_temp.leak(error_message);
RESET ROLE;
SET ROLE ax_viewer;
-- The masking view's CASE runs first: the function only ever sees [REDACTED].
SELECT count(*) FROM monitoring.masked_incident_logs WHERE pg_temp.leak(incident_summary);
SELECT count(*) FROM monitoring.masked_incident_logs WHERE pg_temp.leak(root_cause);
RESET ROLE;

-- 3. COPY. COPY (query) and COPY table TO apply RLS and masking;
-- COPY FROM into an RLS table is refused by PostgreSQL (collectors use INSERT).
SET ROLE ax_viewer;
COPY (SELECT incident_summary, root_cause FROM monitoring.masked_incident_logs) TO STDOUT;
RESET ROLE;
SET ROLE ax_dev;
COPY monitoring.error_logs (error_severity, error_message) TO STDOUT;
COPY (SELECT error_severity, error_message FROM monitoring.developer_error_logs) TO STDOUT;
COPY (SELECT error_message FROM monitoring.developer_error_logs WHERE error_severity = 'SECURITY_BREACH') TO STDOUT;
RESET ROLE;
SET ROLE ax_ingest;
COPY monitoring.error_logs (server_id, error_message) FROM STDIN;
s1	copied line
\.
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- 4. Cursors see the same masked rows.
SET ROLE ax_viewer;
DECLARE c CURSOR FOR SELECT incident_summary FROM monitoring.masked_incident_logs;
FETCH ALL FROM c;
CLOSE c;
RESET ROLE;
SET ROLE ax_dev;
DECLARE d CURSOR FOR SELECT error_message FROM monitoring.developer_error_logs;
FETCH ALL FROM d;
CLOSE d;
RESET ROLE;

-- 5. Views. A user's own view runs with the user's rights: still no breach rows.
CREATE SCHEMA scratch;
GRANT CREATE, USAGE ON SCHEMA scratch TO ax_dev;
SET ROLE ax_dev;
CREATE VIEW scratch.my_errors AS SELECT error_message FROM monitoring.error_logs;
SELECT error_message FROM scratch.my_errors ORDER BY 1;
-- A view over the masking view adds nothing: still redacted.
CREATE VIEW scratch.my_dev_errors AS SELECT error_message FROM monitoring.developer_error_logs;
SELECT error_message FROM scratch.my_dev_errors ORDER BY 1;
-- Shadowing the redaction function changes nothing: the view calls the
-- schema-qualified aegis.redact_pii.
CREATE FUNCTION scratch.redact_pii(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
SET search_path = scratch, public;
SELECT error_message FROM monitoring.developer_error_logs ORDER BY 1;
RESET search_path;
RESET ROLE;
-- Our views never read with the rights of a role that bypasses RLS (a
-- superuser-owned definer view would return every row whatever the reader's
-- policies say): each is either security_invoker (the reader's rights and
-- policies apply) or owned by aegis_masking_owner (NOBYPASSRLS).
SELECT c.relname AS view, r.rolname AS owner,
       coalesce('security_invoker=true' = ANY (c.reloptions), false) AS security_invoker,
       coalesce('security_barrier=true' = ANY (c.reloptions), false) AS security_barrier,
       coalesce('security_invoker=true' = ANY (c.reloptions), false)
           OR NOT (r.rolsuper OR r.rolbypassrls) AS rls_always_applies
FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
WHERE c.relnamespace = 'monitoring'::regnamespace AND c.relkind = 'v'
ORDER BY 1;
-- Nobody is a member of the masking owner, and it cannot log in.
SELECT count(*) AS masking_owner_members FROM pg_auth_members WHERE roleid = 'aegis_masking_owner'::regrole;
SELECT rolcanlogin, rolbypassrls FROM pg_roles WHERE rolname = 'aegis_masking_owner';

-- 6. search_path hijack: shadow every pg_catalog function and operator the
-- definer-rights code uses, then call it. Nothing from schema evil may run.
CREATE SCHEMA evil;
CREATE FUNCTION evil.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked format'; RETURN 'SELECT 1'; END $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked jsonb_typeof'; RETURN 'object'; END $$;
CREATE FUNCTION evil.texteq(name, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked ='; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.texteq);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC;
CREATE TABLE public.target(id int);
SET ROLE ax_admin;
SET search_path = evil, pg_catalog, public;
SELECT aegis.protect('public.target', '{"columns": {"id": "metric"}}');
SELECT aegis.enforce_rls('public.target');
RESET search_path;
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.target'::regclass;
-- The definer function itself pins its search_path.
SELECT proconfig FROM pg_proc WHERE oid = 'aegis.enforce_rls(regclass)'::regprocedure;

-- 7. Identifier injection through names: they are quoted, never spliced.
CREATE TABLE public."x; DROP TABLE monitoring.servers; --"(id int);
SET ROLE ax_admin;
SELECT aegis.protect('public."x; DROP TABLE monitoring.servers; --"');
RESET ROLE;
SELECT to_regclass('monitoring.servers') IS NOT NULL AS servers_still_there,
       (SELECT relforcerowsecurity FROM pg_class WHERE relname = 'x; DROP TABLE monitoring.servers; --') AS weird_table_protected;
SELECT aegis.create_monitoring_schema(E'mon"; DROP TABLE monitoring.servers; --');
SELECT to_regclass('monitoring.servers') IS NOT NULL AS servers_still_there,
       count(*) AS weird_schema_tables
FROM pg_tables WHERE schemaname = E'mon"; DROP TABLE monitoring.servers; --';

-- 8. Inference. Masked columns cannot be referenced on the table at all...
SET ROLE ax_viewer;
SELECT incident_id FROM monitoring.incident_response_logs WHERE incident_summary LIKE '%alice%';
\echo :LAST_ERROR_SQLSTATE
SELECT incident_id FROM monitoring.incident_response_logs ORDER BY root_cause;
\echo :LAST_ERROR_SQLSTATE
-- ...and through the view they compare as the masked value.
SELECT count(*) AS matches_on_real_text FROM monitoring.masked_incident_logs WHERE incident_summary LIKE '%alice%';
SELECT count(*) AS matches_on_mask FROM monitoring.masked_incident_logs WHERE incident_summary = '[REDACTED]';
RESET ROLE;
SET ROLE ax_ops;
SELECT region FROM monitoring.aggregated_metrics WHERE peak_network_usage > 10000;
\echo :LAST_ERROR_SQLSTATE
SELECT region FROM monitoring.masked_aggregated_metrics ORDER BY peak_network_usage, region;
RESET ROLE;

-- 9. The owner without BYPASSRLS: FORCE ROW LEVEL SECURITY applies to it too.
CREATE ROLE ax_owner NOLOGIN;
GRANT USAGE ON SCHEMA monitoring TO ax_owner;
ALTER TABLE monitoring.error_logs OWNER TO ax_owner;
SET ROLE ax_owner;
SELECT count(*) AS owner_sees FROM monitoring.error_logs;
RESET ROLE;
ROLLBACK;
