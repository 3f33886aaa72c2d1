-- Control: application roles (issue 18, item 1). A table owned by the
-- application's own login keeps working for that login after protect()
-- names it in "application_roles" (reads and writes unchanged, writes still
-- audited), while everyone else stays governed by pg_aegis; the policy that
-- lets it through is pg_aegis's, follows new partitions, cannot be edited
-- behind protect()'s back, and goes with unprotect().
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE ar_app LOGIN;
CREATE ROLE ar_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE ar_dev LOGIN IN ROLE aegis_developer;
CREATE SCHEMA ar AUTHORIZATION ar_app;
SET ROLE ar_app;
CREATE TABLE ar.users (userid bigint PRIMARY KEY, username varchar(100) NOT NULL, passwd varchar(32));
INSERT INTO ar.users VALUES (1, 'Admin', 'x'), (42, 'mary.smith', 'y');
CREATE TABLE ar.history (itemid bigint NOT NULL, clock integer NOT NULL, value double precision, PRIMARY KEY (itemid, clock))
    PARTITION BY RANGE (clock);
CREATE TABLE ar.history_p1 PARTITION OF ar.history FOR VALUES FROM (0) TO (1000);
INSERT INTO ar.history VALUES (1, 10, 0.5), (2, 20, 1.5);
GRANT USAGE ON SCHEMA ar TO ar_dev, aegis_admin;
GRANT SELECT ON ar.users TO ar_dev;
RESET ROLE;
RESET client_min_messages;

-- Without application roles, forced row security shows the owner its own
-- table empty: protect() says so.
SET ROLE ar_admin;
SELECT aegis.protect('ar.users', '{"columns": {"username": "subject_id", "passwd": "secret"}}');
SET ROLE ar_app;
SELECT count(*) AS owner_sees_without_application_roles FROM ar.users;
RESET ROLE;

-- Bad application_roles: each refused with its own SQLSTATE.
SET ROLE ar_admin;
SELECT aegis.protect('ar.users', '{"application_roles": "ar_app"}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('ar.users', '{"application_roles": [7]}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('ar.users', '{"application_roles": ["no_such_role"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('ar.users', '{"application_roles": ["public"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('ar.users', '{"application_roles": ["pg_read_all_data"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('ar.users', '{"application_roles": ["aegis_developer"]}');
\echo :LAST_ERROR_SQLSTATE
-- Only aegis_admin may name them; the step itself is nobody's to call.
SET ROLE ar_admin;
SELECT aegis.enforce_access('ar.users');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Named, the application reads and writes exactly as before.
SET ROLE ar_admin;
SELECT aegis.protect('ar.users', '{"application_roles": ["ar_app"], "columns": {"username": "subject_id", "passwd": "secret"}}');
SELECT aegis.protect('ar.history', '{"application_roles": ["ar_app"]}');
SELECT aegis.application_roles_in_force('ar.users'::regclass) AS in_force,
       (SELECT policy -> 'application_roles' FROM aegis.protected_tables WHERE relid = 'ar.users'::regclass) AS recorded;
RESET ROLE;
SET ROLE ar_app;
SELECT count(*) AS owner_reads FROM ar.users;
INSERT INTO ar.users VALUES (43, 'john.doe', 'z');
UPDATE ar.users SET passwd = 'w' WHERE userid = 42;
DELETE FROM ar.users WHERE userid = 43;
SELECT count(*) AS owner_reads_history FROM ar.history;
INSERT INTO ar.history VALUES (3, 30, 2.5);
SELECT count(*) AS owner_reads_partition_directly FROM ar.history_p1;
-- A partition the application adds later gets the policy too.
CREATE TABLE ar.history_p2 PARTITION OF ar.history FOR VALUES FROM (1000) TO (2000);
INSERT INTO ar.history VALUES (4, 1500, 3.5);
SELECT count(*) AS owner_reads_new_partition FROM ar.history_p2;
RESET ROLE;
SELECT aegis.application_roles_in_force('ar.history_p2'::regclass) AS new_partition_roles;
-- Its writes are still audited, under its own name.
SELECT operation, count(*) FROM aegis.audit_log
WHERE table_name IN ('ar.users', 'ar.history', 'ar.history_p1', 'ar.history_p2') AND db_user = 'ar_app'
GROUP BY operation ORDER BY operation;
SET ROLE ar_app;
-- It cannot take pg_aegis's policy away or widen it: the DDL guard refuses.
DROP POLICY aegis_application ON ar.users;
\echo :LAST_ERROR_SQLSTATE
ALTER POLICY aegis_application ON ar.users TO ar_app, ar_dev;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Everyone else is still governed by pg_aegis: a developer granted SELECT
-- but no policy sees nothing.
SET ROLE ar_dev;
SELECT count(*) AS developer_sees FROM ar.users;
RESET ROLE;

-- The catalog says what is in force: a direct edit of the catalog (checked
-- like protect(), audited) is put in force at once.
SET ROLE ar_admin;
UPDATE aegis.protected_tables SET policy = policy || '{"application_roles": ["no_such_role"]}' WHERE relid = 'ar.users'::regclass;
\echo :LAST_ERROR_SQLSTATE
UPDATE aegis.protected_tables SET policy = policy || '{"application_roles": ["ar_app", "ar_dev"]}' WHERE relid = 'ar.users'::regclass;
SELECT aegis.application_roles_in_force('ar.users'::regclass) AS after_direct_edit;
UPDATE aegis.protected_tables SET policy = policy || '{"application_roles": ["ar_app"]}' WHERE relid = 'ar.users'::regclass;
UPDATE aegis.protected_tables SET policy = policy || '{"audit_reads": false}' WHERE relid = 'ar.users'::regclass;
SELECT policy -> 'audit_reads' AS other_edit_passes FROM aegis.protected_tables WHERE relid = 'ar.users'::regclass;
-- protect() without the key takes the roles away again.
SELECT aegis.protect('ar.users', '{"columns": {"username": "subject_id", "passwd": "secret"}}');
SELECT aegis.application_roles_in_force('ar.users'::regclass) AS after_removal;
RESET ROLE;
SET ROLE ar_app;
SELECT count(*) AS owner_sees_after_removal FROM ar.users;
RESET ROLE;

-- unprotect() drops the policy with the rest of the protection.
SET ROLE ar_admin;
SELECT aegis.unprotect('ar.history');
RESET ROLE;
SELECT count(*) AS policies_left FROM pg_policy WHERE polrelid IN ('ar.history'::regclass, 'ar.history_p1'::regclass, 'ar.history_p2'::regclass);
ROLLBACK;
