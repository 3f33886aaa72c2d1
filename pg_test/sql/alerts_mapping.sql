-- Control: metric alerts on any metrics table (issue 18, item 4). A
-- declared mapping (entity, time, metrics, and optionally an alerts table
-- and its columns) is checked when it is attached; a misconfigured one is
-- refused then, with a clear error, never when a collector inserts. A
-- trigger written by hand is checked when it is created. Zabbix's history
-- (itemid bigint, clock integer epoch, value) alerts per item.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
CREATE ROLE am_app LOGIN;
CREATE ROLE am_admin LOGIN IN ROLE aegis_admin;
CREATE SCHEMA am AUTHORIZATION am_app;
GRANT USAGE ON SCHEMA am TO aegis_admin;
SET ROLE am_app;
CREATE TABLE am.history (itemid bigint NOT NULL, clock integer NOT NULL DEFAULT 0, value double precision NOT NULL DEFAULT 0,
                         ns integer NOT NULL DEFAULT 0, PRIMARY KEY (itemid, clock, ns));
CREATE DOMAIN am.item_id AS bigint;
CREATE TABLE am.odd (itemid am.item_id, clock integer, value float8);
CREATE TABLE am.app_alerts (clock integer, message text);
RESET ROLE;
-- An alerts table a superuser owns, with columns of its own.
CREATE TABLE am.item_alerts (id bigserial PRIMARY KEY, item bigint, at integer, sev varchar(16), what text);
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, severity, cooldown)
VALUES ('am_value_high', 'value', '>', 90, 'critical', '0');
RESET client_min_messages;

-- The defect: a DBA (superuser) attaching the reference trigger to
-- Zabbix's history. Refused when it is created, with the reason (it used
-- to make every insert fail).
CREATE TRIGGER t AFTER INSERT ON am.history REFERENCING NEW TABLE AS n FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('am.item_alerts');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t AFTER INSERT ON am.history REFERENCING NEW TABLE AS n FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts();
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t BEFORE INSERT ON am.history FOR EACH ROW EXECUTE FUNCTION aegis.metric_alerts();
\echo :LAST_ERROR_SQLSTATE
-- The table's owner cannot attach pg_aegis's trigger at all.
SET ROLE am_app;
CREATE TRIGGER t AFTER INSERT ON am.history REFERENCING NEW TABLE AS n FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts();
\echo :LAST_ERROR_SQLSTATE
INSERT INTO am.history VALUES (1, 1764547200, 99, 0);
SELECT count(*) AS inserts_still_work FROM am.history;
RESET ROLE;

-- Bad mappings: each refused at attach time with its own SQLSTATE.
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'hostid', 'clock', time_unit => 'seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'minutes');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', ARRAY['nope'], 'seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.odd', 'itemid', 'clock', time_unit => 'seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.app_alerts',
                                  alerts_columns => '{"time": "clock", "message": "message"}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.item_alerts');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.item_alerts',
                                  alerts_columns => '{"entity": "item", "colour": "what", "message": "what"}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.item_alerts',
                                  alerts_columns => '{"entity": "item", "time": "sev", "message": "what"}');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.item_alerts',
                                  alerts_columns => '{"entity": "item"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS nothing_attached FROM aegis.metric_alert_sources WHERE relid = 'am.history'::regclass;
RESET ROLE;
-- Only aegis_admin attaches.
SET ROLE am_app;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Attached to aegis.alert_events only: per item, the time from the epoch.
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds');
SELECT relid, entity_column, time_column, time_unit, metrics, alerts_table FROM aegis.metric_alert_sources;
RESET ROLE;
SET ROLE am_app;
INSERT INTO am.history VALUES (10001, 1764547200, 95.5, 0), (10001, 1764547260, 97, 0), (10002, 1764547200, 12, 0);
RESET ROLE;
SELECT alert, severity, server_id, raised_by, detail ->> 'ts' AS ts, detail ->> 'value' AS value, detail ->> 'message' AS message,
       detail -> 'alert_id' AS alert_id
FROM aegis.alert_events WHERE alert = 'am_value_high' ORDER BY id;

-- With an alerts table and a column mapping: an integer time column takes
-- epoch seconds.
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.item_alerts',
                                  alerts_columns => '{"entity": "item", "time": "at", "severity": "sev", "message": "what"}');
RESET ROLE;
SET ROLE am_app;
INSERT INTO am.history VALUES (10003, 1764547300, 99, 0);
RESET ROLE;
SELECT item, at, sev, what FROM am.item_alerts ORDER BY id;

-- An alerts table with a partition, or a TRIGGER grant, of a non-superuser:
-- its triggers would run with pg_aegis's rights (a way to superuser).
-- Refused at attach time, and at the next alert if it changes later.
CREATE TABLE am.parted_alerts (item bigint, at integer, what text) PARTITION BY RANGE (at);
CREATE TABLE am.parted_alerts_1 PARTITION OF am.parted_alerts FOR VALUES FROM (0) TO (2000000000);
ALTER TABLE am.parted_alerts_1 OWNER TO am_app;
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.parted_alerts',
                                  alerts_columns => '{"entity": "item", "time": "at", "message": "what"}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER TABLE am.parted_alerts_1 OWNER TO postgres;
GRANT TRIGGER ON am.parted_alerts TO am_app;
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.parted_alerts',
                                  alerts_columns => '{"entity": "item", "time": "at", "message": "what"}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE TRIGGER ON am.parted_alerts FROM am_app;
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds', alerts_table => 'am.parted_alerts',
                                  alerts_columns => '{"entity": "item", "time": "at", "message": "what"}');
RESET ROLE;
ALTER TABLE am.parted_alerts_1 OWNER TO am_app;
SET ROLE am_app;
CREATE FUNCTION am.escalate() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'owner trigger ran as %', current_user; RETURN NEW; END $$;
CREATE TRIGGER escalate BEFORE INSERT ON am.parted_alerts_1 FOR EACH ROW EXECUTE FUNCTION am.escalate();
INSERT INTO am.history VALUES (10005, 1764547300, 99, 0);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS alerts_written FROM am.parted_alerts;

-- Detached: the trigger and the mapping go; inserts go on.
SET ROLE am_admin;
SELECT aegis.detach_metric_alerts('am.history');
RESET ROLE;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'am.history'::regclass AND NOT tgisinternal;
SET ROLE am_app;
INSERT INTO am.history VALUES (10004, 1764547300, 99, 0);
RESET ROLE;

-- One rule, two attached tables with a column of its metric: the cooldown
-- is per rule, table and entity, so rows inserted into one table can
-- neither silence nor pre-empt the alert the other's rows raise for the
-- same entity; each alert names the table it came from.
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, severity, cooldown)
VALUES ('am_value_cool', 'value', '>', 50, 'warning', '1 hour');
SET ROLE am_app;
CREATE TABLE am.trends (itemid bigint NOT NULL, clock integer NOT NULL, value double precision NOT NULL);
RESET ROLE;
SET ROLE am_admin;
SELECT aegis.attach_metric_alerts('am.history', 'itemid', 'clock', time_unit => 'seconds');
SELECT aegis.attach_metric_alerts('am.trends', 'itemid', 'clock', time_unit => 'seconds');
RESET ROLE;
SET ROLE am_app;
INSERT INTO am.trends VALUES (10009, 1764547200, 99);
INSERT INTO am.history VALUES (10009, 1764547200, 99, 0);
INSERT INTO am.trends VALUES (10009, 1764547260, 99);
INSERT INTO am.history VALUES (10009, 1764547260, 99, 0);
RESET ROLE;
SELECT server_id, detail ->> 'table' AS source_table, count(*) AS alerts
FROM aegis.alert_events WHERE alert = 'am_value_cool' GROUP BY 1, 2 ORDER BY 2;
ROLLBACK;
