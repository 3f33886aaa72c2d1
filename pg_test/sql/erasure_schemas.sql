-- Control: erasure on an application's own schema (issue 18, item 8). A
-- subject directory (users keyed by a bigint userid, named by username and
-- by "name surname") lets erase_subject() reach a person by numeric id or
-- by any of their names; foreign-key cascades are counted and listed, and
-- refused where they would delete rows the policy anonymizes or holds;
-- NOT NULL non-text columns cannot be anonymized (refused with the
-- reason); requested_by is the role the caller acts as; complete: false
-- always says why.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE es_app LOGIN;
CREATE ROLE es_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE es_dba LOGIN IN ROLE es_admin;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
CREATE SCHEMA es AUTHORIZATION es_app;
GRANT USAGE ON SCHEMA es TO aegis_admin;
SET ROLE es_app;
CREATE TABLE es.users (userid bigint PRIMARY KEY, username varchar(100) NOT NULL, name varchar(100), surname varchar(100));
CREATE TABLE es.media (mediaid bigint PRIMARY KEY, userid bigint NOT NULL REFERENCES es.users ON DELETE CASCADE,
                       sendto varchar(1024) NOT NULL);
CREATE TABLE es.sessions (sessionid varchar(32) PRIMARY KEY, userid bigint NOT NULL REFERENCES es.users ON DELETE CASCADE,
                          lastaccess integer NOT NULL);
CREATE TABLE es.alerts (alertid bigint PRIMARY KEY, userid bigint REFERENCES es.users ON DELETE CASCADE,
                        clock integer NOT NULL, message text NOT NULL);
CREATE TABLE es.auditlog (auditid varchar(25) PRIMARY KEY, userid bigint, username varchar(100), clock integer NOT NULL,
                          details text);
-- An unprotected table a cascade reaches.
CREATE TABLE es.user_prefs (userid bigint NOT NULL REFERENCES es.users ON DELETE CASCADE, k text, v text);
INSERT INTO es.users VALUES (1, 'Admin', 'Zabbix', 'Administrator'), (42, 'mary.smith', 'Mary', 'Smith'),
                            (7, 'john.doe', 'John', 'Doe');
INSERT INTO es.media VALUES (1, 42, 'mary@example.com'), (2, 42, '+44 20 7946 0958'), (3, 7, 'john@example.com');
INSERT INTO es.sessions VALUES ('s1', 42, 1000), ('s2', 7, 1000);
INSERT INTO es.alerts VALUES (1, 42, 1000, 'Problem on db1, paging Mary Smith'),
                             (2, 7, 1000, 'Problem on db2, mary.smith is on leave'),
                             (3, 7, 1000, 'all clear');
INSERT INTO es.auditlog VALUES ('a1', 42, 'mary.smith', 1000, 'login'), ('a2', 7, 'john.doe', 1000, 'login from Mary Smith''s desk');
INSERT INTO es.user_prefs VALUES (42, 'theme', 'dark'), (42, 'lang', 'en');
RESET ROLE;
RESET client_min_messages;

SET ROLE es_admin;
-- A subject directory is checked like the rest of the policy.
SELECT aegis.protect('es.users', '{"subject_directory": {"id": "nope"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('es.users', '{"subject_directory": {"id": "userid", "names": [[]]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('es.users', '{"subject_directory": ["userid"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('es.users', '{"application_roles": ["es_app"], "profile": "users",
    "subject_directory": {"id": "userid", "names": ["username", ["name", "surname"]]},
    "columns": {"userid": "subject_id", "username": "subject_id", "name": "pii", "surname": "pii"}}');
SELECT aegis.protect('es.media', '{"application_roles": ["es_app"], "profile": "users",
    "columns": {"userid": "subject_id", "sendto": "pii"}}');
SELECT aegis.protect('es.sessions', '{"application_roles": ["es_app"], "profile": "access_logs",
    "columns": {"userid": "subject_id"}}');
SELECT aegis.protect('es.alerts', '{"application_roles": ["es_app"], "profile": "logs", "erasure": "anonymize",
    "columns": {"userid": "subject_id", "message": "free_text"}}');
SELECT aegis.protect('es.auditlog', '{"application_roles": ["es_app"], "profile": "access_logs", "erasure": "anonymize",
    "columns": {"userid": "subject_id", "username": "subject_id", "details": "free_text"}}');

-- A bare short id is refused unless a directory knows it.
SELECT aegis.erase_subject('9');
\echo :LAST_ERROR_SQLSTATE

-- Dry run by numeric id: the directory gives Mary's names; the receipt
-- lists every table, the cascades (user_prefs is not protected, media and
-- sessions are deleted with her user row), and says why it is not complete.
SELECT r -> 'identifiers' AS identifiers, jsonb_pretty(r -> 'tables') AS tables, r -> 'incomplete_reasons' AS why,
       r ->> 'complete' AS complete
FROM aegis.erase_subject('42', dry_run => true) r;
RESET ROLE;
SELECT count(*) AS nothing_changed FROM es.media WHERE userid = 42;

-- A legal hold on one of her sessions: the cascade would delete held rows,
-- so her user row stays and the receipt says why.
SET ROLE es_admin;
SELECT aegis.place_legal_hold('es.sessions', 'sessionid = ''s1''', 'Case 9') AS hold \gset
SELECT jsonb_pretty(r -> 'tables' -> 'es.users') AS users, jsonb_pretty(r -> 'incomplete_reasons') AS why, r ->> 'complete' AS complete
FROM aegis.erase_subject('mary.smith', dry_run => true) r;
SELECT aegis.release_legal_hold(:hold);

-- The erasure, by display name, as a DBA acting as the admin role.
RESET ROLE;
SET ROLE es_dba;
SET ROLE es_admin;
SELECT jsonb_pretty(r -> 'tables') AS tables, r -> 'incomplete_reasons' AS why, r ->> 'complete' AS complete,
       r ->> 'requested_by' AS requested_by, r ->> 'session_user' AS session_user_name, r -> 'keys' ->> 'done' AS key_done,
       (r ->> 'audit_entries_tombstoned')::int > 0 AS entries_tombstoned
FROM aegis.erase_subject('Mary Smith') r;
RESET ROLE;
SELECT userid, username FROM es.users ORDER BY userid;
SELECT mediaid, userid FROM es.media ORDER BY mediaid;
SELECT sessionid FROM es.sessions ORDER BY sessionid;
SELECT count(*) AS prefs_left FROM es.user_prefs;
SELECT alertid, userid, message FROM es.alerts ORDER BY alertid;
SELECT auditid, userid, username, details FROM es.auditlog ORDER BY auditid;
-- Her audit entries hold tombstones now, and the chain still verifies.
SELECT (SELECT count(*) FROM aegis.audit_log WHERE table_name = 'es.media' AND erased_at IS NOT NULL) > 0 AS media_entries_tombstoned,
       (SELECT bool_and(ok) FROM aegis.verify_chain()) AS chain_ok;

-- Anonymizing a table whose subject column is NOT NULL and not text is
-- refused with the reason, and nothing is deleted in its place.
SET ROLE es_app;
CREATE TABLE es.notes (noteid bigint PRIMARY KEY, userid bigint NOT NULL REFERENCES es.users ON DELETE CASCADE, note text);
INSERT INTO es.notes VALUES (1, 7, 'x');
RESET ROLE;
SET ROLE es_admin;
SELECT aegis.protect('es.notes', '{"application_roles": ["es_app"], "profile": "logs", "erasure": "anonymize",
    "columns": {"userid": "subject_id"}}');
SELECT jsonb_pretty(r -> 'tables' -> 'es.notes') AS notes, jsonb_pretty(r -> 'incomplete_reasons') AS why
FROM aegis.erase_subject('john.doe') r;
RESET ROLE;
SELECT count(*) AS john_kept FROM es.users WHERE userid = 7;
-- Cold review of this erasure (findings F3, F6, F8): cascades matched by
-- the keys' own types (numeric 1.50 = 1.5), foreign keys into a partition,
-- a child whose own erasure was refused, a protected child without
-- subject columns; a directory whose id is not classified.
SET ROLE es_app;
CREATE TABLE es.accounts (acct numeric(10,2) PRIMARY KEY, holder text NOT NULL);
CREATE TABLE es.statements (sid int PRIMARY KEY, acct numeric REFERENCES es.accounts ON DELETE CASCADE, body text);
CREATE TABLE es.ledger (lid int, who text, PRIMARY KEY (lid)) PARTITION BY RANGE (lid);
CREATE TABLE es.ledger_1 PARTITION OF es.ledger FOR VALUES FROM (0) TO (100);
CREATE TABLE es.ledger_notes (nid int PRIMARY KEY, lid int REFERENCES es.ledger_1 (lid) ON DELETE CASCADE, note text);
CREATE TABLE es.plain_child (pid int PRIMARY KEY, acct numeric REFERENCES es.accounts ON DELETE CASCADE);
INSERT INTO es.accounts VALUES (1.50, 'zoe.q');
INSERT INTO es.statements VALUES (1, 1.5, 'statement');
INSERT INTO es.plain_child VALUES (1, 1.5);
INSERT INTO es.ledger VALUES (5, 'zoe.q');
INSERT INTO es.ledger_notes VALUES (1, 5, 'note');
RESET ROLE;
SET ROLE es_admin;
SELECT aegis.protect('es.users', '{"application_roles": ["es_app"], "profile": "users",
    "subject_directory": {"id": "userid", "names": ["username"]}, "columns": {"username": "subject_id"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('es.accounts', '{"application_roles": ["es_app"], "profile": "users", "columns": {"holder": "subject_id"}}');
SELECT aegis.protect('es.statements', '{"application_roles": ["es_app"], "profile": "users", "columns": {"body": "free_text"}}');
SELECT aegis.protect('es.plain_child', '{"application_roles": ["es_app"], "profile": "users"}');
SELECT aegis.protect('es.ledger', '{"application_roles": ["es_app"], "profile": "users", "columns": {"who": "subject_id"}}');
SELECT aegis.protect('es.ledger_notes', '{"application_roles": ["es_app"], "profile": "users"}');
SELECT aegis.place_legal_hold('es.statements', 'sid = 1', 'Case 11') AS h1 \gset
SELECT aegis.place_legal_hold('es.ledger_notes', 'nid = 1', 'Case 12') AS h2 \gset
SELECT r ->> 'complete' AS complete, jsonb_pretty(r -> 'incomplete_reasons') AS why
FROM aegis.erase_subject('zoe.q') r;
RESET ROLE;
SELECT (SELECT count(*) FROM es.accounts) AS accounts_kept, (SELECT count(*) FROM es.statements) AS held_statement_kept,
       (SELECT count(*) FROM es.ledger) AS ledger_kept, (SELECT count(*) FROM es.ledger_notes) AS held_note_kept;
ROLLBACK;
