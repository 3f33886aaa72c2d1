-- Control: generic row scoping (issue 18, item 3). A scope names the key
-- people are assigned to (Zabbix's hosts.hostid, a bigint); assignments
-- are checked against it (unknown ids refused); a protected table declares
-- how its rows reach the key, directly or through a join path (history ->
-- items -> hostid; events -> functions -> items -> hostid), and the
-- profile's on-call role sees exactly the rows of its hosts.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE sc_app LOGIN;
CREATE ROLE sc_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE sc_ann LOGIN IN ROLE aegis_oncall;
CREATE ROLE sc_ben LOGIN IN ROLE aegis_oncall;
CREATE ROLE sc_cid LOGIN IN ROLE aegis_oncall;
CREATE SCHEMA sc AUTHORIZATION sc_app;
GRANT USAGE ON SCHEMA sc TO aegis_admin;
SET ROLE sc_app;
CREATE TABLE sc.hosts (hostid bigint PRIMARY KEY, host varchar(128) NOT NULL);
CREATE TABLE sc.items (itemid bigint PRIMARY KEY, hostid bigint NOT NULL REFERENCES sc.hosts ON DELETE CASCADE, key_ text);
CREATE INDEX items_1 ON sc.items (hostid);
CREATE TABLE sc.functions (functionid bigint PRIMARY KEY, itemid bigint NOT NULL REFERENCES sc.items ON DELETE CASCADE,
                           triggerid bigint NOT NULL);
CREATE TABLE sc.history (itemid bigint NOT NULL, clock integer NOT NULL, value float8 NOT NULL, ns integer NOT NULL DEFAULT 0,
                         PRIMARY KEY (itemid, clock, ns));
CREATE TABLE sc.events (eventid bigint PRIMARY KEY, objectid bigint NOT NULL, clock integer NOT NULL, name text);
CREATE TABLE sc.notes (id int PRIMARY KEY, hostname text);
INSERT INTO sc.hosts VALUES (10084, 'db-001'), (10085, 'web-001');
INSERT INTO sc.items VALUES (1, 10084, 'cpu'), (2, 10084, 'mem'), (3, 10085, 'cpu');
INSERT INTO sc.functions VALUES (100, 1, 500), (101, 3, 501);
INSERT INTO sc.history VALUES (1, 1000, 0.5), (2, 1000, 0.6), (3, 1000, 0.7), (3, 1001, 0.8);
INSERT INTO sc.events VALUES (900, 500, 1000, 'db cpu high'), (901, 501, 1000, 'web cpu high');
RESET ROLE;
RESET client_min_messages;

SET ROLE sc_admin;
-- A scope's key table must be protected, its column must exist.
SELECT aegis.create_scope('host', 'sc.hosts', 'hostid');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.hosts', '{"application_roles": ["sc_app"], "profile": "metrics"}');
SELECT aegis.create_scope('host', 'sc.hosts', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.create_scope('Host!', 'sc.hosts', 'hostid');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.create_scope('host', 'sc.hosts', 'hostid');
-- The key table is scoped by its own key.
SELECT aegis.protect('sc.hosts', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "hostid"}}');
-- Assignments are checked against the key table.
SELECT aegis.assign_scope('sc_ann', 'host', '99999');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_scope('sc_ann', 'host', 'srv-003');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_scope('sc_ann', 'hosts', '10084');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO aegis.scope_assignments (engineer, scope, key) VALUES ('sc_ann', 'host', '424242');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.assign_scope('sc_ann', 'host', '10084');
SELECT aegis.assign_scope('sc_ben', 'host', '10085');
-- The tables of a path must be protected, and their columns must match.
SELECT aegis.protect('sc.history', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "hostid"}]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.items', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "hostid"}}');
SELECT aegis.protect('sc.history', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "key_", "column": "hostid"}]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.history', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "key_"}]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.history', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "nope"}]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.notes', '{"profile": "logs", "scope": {"name": "host", "column": "hostname"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.protect('sc.history', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "hostid"}]}}');
SELECT aegis.protect('sc.functions', '{"application_roles": ["sc_app"], "profile": "metrics",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "hostid"}]}}');
SELECT aegis.protect('sc.events', '{"application_roles": ["sc_app"], "profile": "logs",
    "scope": {"name": "host", "column": "objectid", "via": [{"table": "functions", "match": "triggerid", "column": "itemid"},
                                                            {"table": "items", "match": "itemid", "column": "hostid"}]}}');
-- The policy is the semi-join a DBA would write.
SELECT pg_get_expr(polqual, polrelid) AS events_oncall_rows FROM pg_policy
WHERE polrelid = 'sc.events'::regclass AND polname = 'aegis_profile_aegis_oncall';
RESET ROLE;

-- Each engineer sees the rows of their own hosts, through every path.
SET ROLE sc_ann;
SELECT 'ann' AS who, (SELECT array_agg(host ORDER BY host) FROM sc.hosts) AS hosts,
       (SELECT array_agg(itemid ORDER BY itemid) FROM sc.items) AS items,
       (SELECT array_agg(itemid || '@' || clock ORDER BY itemid, clock) FROM sc.history) AS history,
       (SELECT array_agg(name ORDER BY name) FROM sc.events) AS events;
RESET ROLE;
SET ROLE sc_ben;
SELECT 'ben' AS who, (SELECT array_agg(host ORDER BY host) FROM sc.hosts) AS hosts,
       (SELECT array_agg(itemid ORDER BY itemid) FROM sc.items) AS items,
       (SELECT array_agg(itemid || '@' || clock ORDER BY itemid, clock) FROM sc.history) AS history,
       (SELECT array_agg(name ORDER BY name) FROM sc.events) AS events;
-- Nobody reads another engineer's assignments.
SELECT engineer, key FROM aegis.scope_assignments ORDER BY 1, 2;
RESET ROLE;
-- An engineer with no assignment sees no rows; the application sees them all.
SET ROLE sc_cid;
SELECT count(*) AS unassigned_history, (SELECT count(*) FROM sc.events) AS unassigned_events FROM sc.history;
RESET ROLE;
SET ROLE sc_app;
SELECT count(*) AS application_history FROM sc.history;
RESET ROLE;
-- Unassigned: gone at once.
SET ROLE sc_admin;
SELECT aegis.unassign_scope('sc_ann', 'host', '10084');
SELECT aegis.unassign_scope('sc_ann', 'host', '10084') AS again;
RESET ROLE;
SET ROLE sc_ann;
SELECT count(*) AS ann_after_unassign FROM sc.history;
RESET ROLE;
-- Only admins create scopes and assign.
SET ROLE sc_ann;
SELECT aegis.assign_scope('sc_ann', 'host', '10085');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO aegis.scope_assignments (engineer, scope, key) VALUES ('sc_ann', 'host', '10085');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Attack: the key table's owner tries to make its own code run inside
-- assign_scope()'s definer lookup of the key (a policy calling a function
-- of its own; a trigger cannot fire on a SELECT, the key column's type and
-- the operator are built-in): the DDL guard refuses the policy, and the
-- lookup ran nothing of the owner's.
SET ROLE sc_app;
CREATE TABLE sc.witness (who name, was_superuser boolean);
CREATE FUNCTION sc.spy() RETURNS boolean LANGUAGE sql VOLATILE AS
$$ INSERT INTO sc.witness SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user); SELECT true $$;
GRANT INSERT ON sc.witness TO PUBLIC;
CREATE POLICY spy ON sc.hosts FOR SELECT USING (sc.spy());
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE sc_admin;
SELECT aegis.assign_scope('sc_cid', 'host', '10084');
RESET ROLE;
SELECT count(*) AS owner_code_ran FROM sc.witness;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'sc_app';
ROLLBACK;
