-- Control: aegis.protect()/unprotect() and the on-call API validate their
-- input, are admin-only, and do exactly what they say (RLS enabled and
-- forced, PUBLIC revoked, classification recorded and replaceable).
\set VERBOSITY terse
\set SHOW_CONTEXT never
-- Each failing statement rolls back alone (psql wraps statements in savepoints).
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE px_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE px_dev LOGIN IN ROLE aegis_developer;
CREATE SCHEMA app;
CREATE TABLE app.events (id int PRIMARY KEY, who text, ip inet, note text);
INSERT INTO app.events VALUES (1, 'alice', '192.0.2.1', 'login');
GRANT SELECT ON app.events TO PUBLIC;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE VIEW app.v AS SELECT * FROM app.events;
RESET client_min_messages;

-- Only aegis_admin may call them.
SET ROLE px_dev;
SELECT aegis.protect('app.events');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_oncall('px_dev', 's1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Bad input: each fails with its own SQLSTATE and changes nothing.
SET ROLE px_admin;
SELECT aegis.protect('app.v');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('pg_catalog.pg_class');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('aegis.protected_tables');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('app.events', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('app.events', '{"colums": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('app.events', '{"columns": {"nope": "pii"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('app.events', '{"columns": {"ip": "confidential"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('app.events', '{"columns": {"ip": 7}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_oncall('px_dev', '');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_oncall('px_dev', 's1', now() - interval '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.unprotect('app.events');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS nothing_recorded FROM aegis.protected_tables WHERE relid = 'app.events'::regclass;

-- A table the admin does not own: protect() enables and forces RLS, revokes
-- PUBLIC and records the classification.
SET ROLE px_admin;
SELECT aegis.protect('app.events', '{"columns": {"who": "subject_id", "ip": "pii", "note": "free_text"}}');
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity, has_table_privilege('public', 'app.events', 'SELECT') AS public_select
FROM pg_class WHERE oid = 'app.events'::regclass;
SELECT protected_by, policy FROM aegis.protected_tables WHERE relid = 'app.events'::regclass;
SELECT column_name, class FROM aegis.column_classes WHERE relid = 'app.events'::regclass ORDER BY 1;
-- With RLS forced and no policy, a role granted SELECT sees nothing.
GRANT SELECT ON app.events TO px_dev;
SET ROLE px_dev;
SELECT count(*) AS rows_without_policy FROM app.events;
RESET ROLE;
-- Protecting again replaces the classification.
SET ROLE px_admin;
SELECT aegis.protect('app.events', '{"columns": {"ip": "secret"}}');
RESET ROLE;
SELECT column_name, class FROM aegis.column_classes WHERE relid = 'app.events'::regclass ORDER BY 1;

-- unprotect() turns RLS off (with a warning) and forgets the table.
SET ROLE px_admin;
SELECT aegis.unprotect('app.events');
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'app.events'::regclass;
SELECT count(*) AS still_recorded FROM aegis.column_classes WHERE relid = 'app.events'::regclass;
-- The definer-rights helper cannot switch off RLS on a table pg_aegis does
-- not protect (here: one whose owner enabled RLS by itself).
ALTER TABLE app.events ENABLE ROW LEVEL SECURITY;
SET ROLE px_admin;
SELECT aegis.relax_rls('app.events');
\echo :LAST_ERROR_SQLSTATE
-- Nor by recording the table in the catalog by hand (aegis_admin may write
-- aegis.protected_tables, but only enforce_rls() marks what it enforced).
INSERT INTO aegis.protected_tables (relid) VALUES ('app.events');
SELECT aegis.relax_rls('app.events');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.unprotect('app.events');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT relrowsecurity AS owner_rls_kept FROM pg_class WHERE oid = 'app.events'::regclass;
-- A partitioned table: its partitions are protected too.
CREATE TABLE app.parted (ts date, v int) PARTITION BY RANGE (ts);
CREATE TABLE app.parted_2026 PARTITION OF app.parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
GRANT SELECT ON app.parted_2026 TO PUBLIC;
SET ROLE px_admin;
SELECT aegis.protect('app.parted');
RESET ROLE;
SELECT relname, relrowsecurity, relforcerowsecurity, has_table_privilege('public', oid, 'SELECT') AS public_select
FROM pg_class WHERE relname IN ('parted', 'parted_2026') ORDER BY relname;
-- ...and unprotect() relaxes them all again.
SET ROLE px_admin;
SELECT aegis.unprotect('app.parted');
RESET ROLE;
SELECT relname, relrowsecurity, relforcerowsecurity
FROM pg_class WHERE relname IN ('parted', 'parted_2026') ORDER BY relname;

-- create_monitoring_schema() refuses to reuse or misplace a schema.
SELECT aegis.create_monitoring_schema('app');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT aegis.create_monitoring_schema('pg_monitoring');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT aegis.create_monitoring_schema('public');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Not callable by ordinary users, aegis_admin included.
BEGIN;
CREATE ROLE px_admin2 LOGIN IN ROLE aegis_admin;
SET ROLE px_admin2;
SELECT aegis.create_monitoring_schema('mon2');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
