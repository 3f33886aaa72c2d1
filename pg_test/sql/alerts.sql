-- Control: metric alerts (0.5.0). The aegis_alerts statement trigger on
-- server_metrics turns rule matches into alerts_history rows and
-- aegis.alert_events rows read under row-level security (NOTIFY, which
-- carries only an event's id, is checked by tests/lifecycle.rs with
-- listening clients), once per rule and
-- server within the cooldown; anomaly rules use incrementally kept
-- baselines; rules are validated, admin-only and audited; a role that may
-- insert metrics but not alerts still gets its alerts written; the trigger
-- refuses to be attached the wrong way; rule names and metrics are data,
-- never SQL. Security alerts: who may run the checks, a denied-access burst,
-- old keys, overdue retention.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('alm');
CREATE ROLE alm_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE alm_devops LOGIN IN ROLE aegis_devops;
CREATE ROLE alm_auditor LOGIN IN ROLE aegis_auditor;
RESET client_min_messages;
INSERT INTO alm.servers (server_id) VALUES ('web-1'), ('db-1');

-- The default rules and the trigger.
SELECT name, kind, metric, comparison, threshold, min_samples, severity, cooldown, enabled
FROM aegis.alert_rules ORDER BY id;
SELECT tgname, pg_get_triggerdef(oid) LIKE '%REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts(''alm.alerts_history'')' AS as_documented
FROM pg_trigger WHERE tgrelid = 'alm.server_metrics'::regclass AND tgname = 'aegis_alerts';

-- ------------------------------------------------------------ thresholds
-- DevOps may insert metrics but not alerts: the alert is written anyway.
SET ROLE alm_devops;
INSERT INTO alm.server_metrics (server_id, cpu_usage) VALUES ('web-1', 50), ('web-1', 97.5), ('web-1', 99), ('db-1', 96);
INSERT INTO alm.alerts_history (server_id, rule) VALUES ('web-1', 'forged');
-- Writers never choose ids: ids the sequence hands out later, taken by an
-- open transaction, would make other inserts wait on it, or fail.
INSERT INTO alm.server_metrics (id, server_id, cpu_usage) OVERRIDING SYSTEM VALUE VALUES (1000, 'web-1', 1);
RESET ROLE;
SELECT server_id, rule, severity, metric, value, message FROM alm.alerts_history ORDER BY server_id;
-- Within the cooldown: no second alert for the same rule and server.
SET ROLE alm_devops;
INSERT INTO alm.server_metrics (server_id, cpu_usage) VALUES ('web-1', 99.9);
RESET ROLE;
SELECT count(*) AS alerts FROM alm.alerts_history;
-- After it (the state says it fired an hour ago): alerts again.
UPDATE aegis.alert_state SET last_fired_at = last_fired_at - interval '1 hour';
INSERT INTO alm.server_metrics (server_id, cpu_usage) VALUES ('web-1', 98);
SELECT count(*) AS alerts FROM alm.alerts_history;

-- ------------------------------------------------------------ delivery
-- Each alert is an aegis.alert_events row (raised by the collector whose
-- insert set it off); NOTIFY carries only its id (tests/lifecycle.rs
-- listens). Who reads which event is row-level security's call.
SELECT kind, alert, severity, server_id, raised_by, detail ->> 'message' AS message
FROM aegis.alert_events ORDER BY id;
CREATE ROLE alm_oncall LOGIN IN ROLE aegis_oncall;
CREATE ROLE alm_dev LOGIN IN ROLE aegis_developer;
SELECT aegis.assign_oncall('alm_oncall', 'db-1');
SET SESSION AUTHORIZATION alm_oncall;
SELECT alert, server_id FROM aegis.alert_events ORDER BY id;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION alm_dev;
SELECT count(*) FROM aegis.alert_events;
RESET SESSION AUTHORIZATION;
-- A listener tells a genuine notification from a forged one: the genuine
-- payload names an event it can read; anything else names none.
SELECT format('{"source": "pg_aegis", "database": "%s", "id": %s}', current_database(), min(id)) AS genuine
FROM aegis.alert_events \gset
SET SESSION AUTHORIZATION alm_devops;
SELECT alert, server_id FROM aegis.alert_event(:'genuine');
SELECT count(*) AS forged_rows FROM aegis.alert_event('{"source": "pg_aegis", "database": "' || current_database() || '", "id": 999999999}');
SELECT count(*) AS forged_rows FROM aegis.alert_event('{"source":"pg_aegis","kind":"security","alert":"audit_chain_broken"}');
SELECT count(*) AS forged_rows FROM aegis.alert_event('not json at all');
SELECT count(*) AS forged_rows FROM aegis.alert_event('{"source": "pg_aegis", "database": "elsewhere", "id": 1}');
SELECT count(*) AS forged_rows FROM aegis.alert_event('{"source": "pg_aegis", "database": "' || current_database() || '", "id": 1.5}');
-- Only pg_aegis writes events.
INSERT INTO aegis.alert_events (kind, alert, severity, raised_by, detail) VALUES ('security', 'x', 'critical', 'me', '{}');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION alm_dev;
SELECT count(*) AS dev_sees FROM aegis.alert_event(:'genuine');
RESET SESSION AUTHORIZATION;

-- ------------------------------------------------------------ anomalies
-- 100 steady samples, then a jump; a value inside the usual range is quiet.
INSERT INTO alm.server_metrics (server_id, cpu_usage, network_in_bytes)
SELECT 'db-1', 10, 1000000 + (g % 10) * 1000 FROM generate_series(1, 100) g;
SELECT metric, server_id, n, round(mean) AS mean, round(sqrt(m2 / (n - 1))) AS stddev
FROM aegis.current_baselines('alm.server_metrics'::regclass) ORDER BY metric, server_id;
-- Appended as deltas (an insert locks nothing); the worker's upkeep folds
-- them into the baselines, which stay the same.
SELECT count(*) > 0 AS pending FROM aegis.metric_baseline_deltas;
SELECT aegis.alert_upkeep() > 0 AS folded;
SELECT count(*) AS pending FROM aegis.metric_baseline_deltas;
SELECT metric, server_id, n, round(mean) AS mean FROM aegis.current_baselines('alm.server_metrics'::regclass);
-- Inserts skip, rather than wait for, baselines and cooldowns another
-- transaction holds locked: only pg_aegis can lock them (an admin or an
-- auditor, who may read them, cannot hold them to silence an alert).
SET SESSION AUTHORIZATION alm_admin;
SELECT 1 FROM aegis.alert_state FOR UPDATE;
SELECT 1 FROM aegis.metric_baselines FOR KEY SHARE;
SELECT 1 FROM aegis.metric_baseline_deltas FOR SHARE;
RESET SESSION AUTHORIZATION;
INSERT INTO alm.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', 10, 1006000);
INSERT INTO alm.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', 10, 90000000);
SELECT rule, severity, value, message FROM alm.alerts_history WHERE rule = 'network_in_anomaly';
-- Too few samples (web-1 has none with traffic): no anomaly alert.
INSERT INTO alm.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('web-1', 10, 90000000);
SELECT count(*) AS web1_anomalies FROM alm.alerts_history WHERE rule = 'network_in_anomaly' AND server_id = 'web-1';

-- ------------------------------------------------------------ rules
SET ROLE alm_admin;
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, severity, cooldown)
VALUES ('disk_full', 'disk_usage', '>=', 90, 'critical', '0');
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('memory_low', 'memory_usage', '<', 1);
-- Bad rules are refused by the catalog's checks.
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('Bad Name', 'cpu_usage', '>', 1);
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('bad_op', 'cpu_usage', '!=', 1);
INSERT INTO aegis.alert_rules (name, kind, metric, threshold) VALUES ('no_op', 'threshold', 'cpu_usage', 1);
INSERT INTO aegis.alert_rules (name, kind, metric, comparison, threshold) VALUES ('anomaly_op', 'anomaly', 'cpu_usage', '>', 3);
INSERT INTO aegis.alert_rules (name, kind, metric, threshold) VALUES ('anomaly_k', 'anomaly', 'cpu_usage', 0);
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('nan', 'cpu_usage', '>', 'NaN');
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, severity) VALUES ('sev', 'cpu_usage', '>', 1, 'panic');
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, cooldown) VALUES ('cool', 'cpu_usage', '>', 1, '-1 minute');
-- A metric that is not a numeric column of the table (or is SQL) is data:
-- the rule never matches anything.
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold)
VALUES ('injected', 'cpu_usage) > 0 OR (true', '>', 0), ('textual', 'server_id', '>', 0);
RESET ROLE;
SET ROLE alm_auditor;
SELECT count(*) > 0 AS auditor_reads_rules FROM aegis.alert_rules;
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('mine', 'cpu_usage', '>', 1);
RESET ROLE;
-- New rules apply to the next insert (every backend reloads them).
INSERT INTO alm.server_metrics (server_id, cpu_usage, memory_usage, disk_usage) VALUES ('web-1', 10, 0.5, 91);
SELECT rule, severity, metric, value, message FROM alm.alerts_history
WHERE rule IN ('disk_full', 'memory_low', 'injected', 'textual') ORDER BY rule;
-- Disabled rules are skipped; a zero cooldown fires every time.
UPDATE aegis.alert_rules SET enabled = false WHERE name = 'memory_low';
INSERT INTO alm.server_metrics (server_id, cpu_usage, memory_usage, disk_usage) VALUES ('web-1', 10, 0.5, 92);
SELECT rule, count(*) FROM alm.alerts_history WHERE rule IN ('disk_full', 'memory_low') GROUP BY rule ORDER BY rule;
-- Rule changes are audit entries of the admin who made them.
SELECT operation, db_user, new_row ->> 'name' AS rule FROM aegis.audit_log
WHERE table_name = 'aegis.alert_rules' AND db_user = 'alm_admin' ORDER BY id;

-- ------------------------------------------------------------ attached wrongly
CREATE TABLE public.alm_t (server_id text, ts timestamptz DEFAULT now(), v int);
CREATE TRIGGER a BEFORE INSERT ON alm_t FOR EACH ROW EXECUTE FUNCTION aegis.metric_alerts('alm.alerts_history');
INSERT INTO alm_t VALUES ('x', now(), 1);
DROP TRIGGER a ON alm_t;
CREATE TRIGGER a AFTER INSERT ON alm_t FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts('alm.alerts_history');
INSERT INTO alm_t VALUES ('x', now(), 1);
DROP TRIGGER a ON alm_t;
CREATE TRIGGER a AFTER INSERT ON alm_t REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts();
INSERT INTO alm_t VALUES ('x', now(), 1);
DROP TRIGGER a ON alm_t;
-- ------------------------------------------------------------ security alerts
-- Admins and auditors run the checks (the worker does it periodically).
SET ROLE alm_dev;
SELECT * FROM aegis.security_alerts(false);
RESET ROLE;
SET ROLE alm_auditor;
SELECT alert, severity, detail -> 'tables' ? 'alm.user_access_logs' AS names_table
FROM aegis.security_alerts(false) WHERE alert = 'retention_overdue';
RESET ROLE;
SELECT aegis.security_alerts(NULL);
-- A burst of denied attempts on a protected table (a developer may not read
-- error_logs directly), counted by the read-audit hook.
SELECT true AS baseline_taken FROM (SELECT count(*) FROM aegis.security_alerts(false)) s;
DO $$ BEGIN
    FOR i IN 1..12 LOOP
        BEGIN
            SET LOCAL ROLE alm_dev;
            PERFORM 1 FROM alm.error_logs;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END $$;
RESET ROLE;
SELECT alert, severity, (detail ->> 'attempts')::int >= 12 AS counted
FROM aegis.security_alerts(false) WHERE alert = 'denied_access_burst';
-- A dry look does not move the baseline: looking again between probes
-- cannot keep the burst from being sent.
SELECT alert, (detail ->> 'attempts')::int >= 12 AS still_counted
FROM aegis.security_alerts(false) WHERE alert = 'denied_access_burst';
-- Sent (notify): each finding becomes an event only admins and auditors
-- read; the notification carries its id alone.
SELECT count(*) > 0 AS sent FROM aegis.security_alerts(true);
SELECT alert, severity, raised_by = session_user AS raised_by_caller FROM aegis.alert_events
WHERE kind = 'security' ORDER BY alert;
-- Another burst within the hour is sent too (alerts are sent at most once
-- an hour, except bursts: one anyone can cause must not hide the next).
DO $$ BEGIN
    FOR i IN 1..12 LOOP
        BEGIN
            SET LOCAL ROLE alm_dev;
            PERFORM 1 FROM alm.error_logs;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END $$;
RESET ROLE;
SELECT alert FROM aegis.security_alerts(true) WHERE alert = 'denied_access_burst';
SELECT count(*) AS bursts_sent FROM aegis.alert_events WHERE alert = 'denied_access_burst';
SET SESSION AUTHORIZATION alm_devops;
SELECT count(*) AS devops_sees_security FROM aegis.alert_events WHERE kind = 'security';
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION alm_auditor;
SELECT count(*) > 0 AS auditor_sees_security FROM aegis.alert_events WHERE kind = 'security';
-- Notifying inside a transaction block (this file is one) would keep the
-- alerts' state locked until COMMIT, stalling the worker's checks: refused
-- to non-superusers; looking is fine.
SELECT count(*) FROM aegis.security_alerts(true);
SELECT count(*) > 0 AS looked FROM aegis.security_alerts(false);
RESET SESSION AUTHORIZATION;
-- Keys whose current version is over a year old.
SELECT aegis.create_key('alm_old') IS NOT NULL AS key_created;
UPDATE aegis.keys SET created_at = now() - interval '400 days' WHERE name = 'alm_old';
SELECT alert, detail -> 'keys' AS keys FROM aegis.security_alerts(false) WHERE alert = 'keys_past_rotation_age';
SELECT aegis.rotate_key('alm_old');
SELECT count(*) AS old_keys_after_rotation FROM aegis.security_alerts(false) WHERE alert = 'keys_past_rotation_age';
-- Retention applied: that finding goes away.
SELECT count(*) > 0 AS applied FROM aegis.apply_retention();
SELECT count(*) AS overdue_after_run FROM aegis.security_alerts(false) WHERE alert = 'retention_overdue';

-- The trigger reads server_id and ts and writes the alerts table with
-- pg_aegis's rights: code a non-superuser controls must never run there.
-- A table owner's own type for server_id, with its cast to text (run by
-- the trigger's queries) and an alerts table the owner owns, with a
-- trigger: a superuser attaching metric_alerts to them is refused at the
-- first insert, and neither function ever runs.
CREATE ROLE alm_owner LOGIN;
GRANT CREATE ON SCHEMA public TO alm_owner;
SET SESSION AUTHORIZATION alm_owner;
CREATE TYPE public.alm_sid AS (s text);
CREATE FUNCTION public.alm_sid_text(public.alm_sid) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'owner cast ran as %', current_user; RETURN ($1).s; END $$;
CREATE CAST (public.alm_sid AS text) WITH FUNCTION public.alm_sid_text(public.alm_sid);
CREATE TABLE public.alm_owned (server_id public.alm_sid, ts timestamptz DEFAULT now(), cpu_usage float8);
CREATE TABLE public.alm_owned_alerts (id bigint GENERATED ALWAYS AS IDENTITY, server_id text, ts timestamptz,
    rule text, severity text, metric text, value float8, message text);
CREATE FUNCTION public.alm_alert_trigger() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE NOTICE 'owner trigger ran as %', current_user; RETURN NEW; END $$;
CREATE TRIGGER t BEFORE INSERT ON public.alm_owned_alerts FOR EACH ROW EXECUTE FUNCTION public.alm_alert_trigger();
RESET SESSION AUTHORIZATION;
-- Both are refused when the trigger is created (0.7.0).
CREATE TRIGGER a AFTER INSERT ON public.alm_owned REFERENCING NEW TABLE AS nt FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('public.alm_owned_alerts');
ALTER TABLE public.alm_owned ALTER COLUMN server_id TYPE text USING (server_id).s;
CREATE TRIGGER a AFTER INSERT ON public.alm_owned REFERENCING NEW TABLE AS nt FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('public.alm_owned_alerts');
-- And when the tables change after the trigger was accepted, at the next
-- insert: an alerts table given to a non-superuser ...
DROP TRIGGER t ON public.alm_owned_alerts;
ALTER TABLE public.alm_owned_alerts OWNER TO postgres;
CREATE TRIGGER a AFTER INSERT ON public.alm_owned REFERENCING NEW TABLE AS nt FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('public.alm_owned_alerts');
ALTER TABLE public.alm_owned_alerts OWNER TO alm_owner;
GRANT INSERT ON public.alm_owned TO alm_owner;
SET SESSION AUTHORIZATION alm_owner;
INSERT INTO public.alm_owned VALUES ('web-9', now(), 99);
INSERT INTO public.alm_owned VALUES ('web-9', now(), 10);
-- ... or a key column turned into the owner's own type.
ALTER TABLE public.alm_owned ALTER COLUMN server_id TYPE public.alm_sid USING ROW(server_id);
INSERT INTO public.alm_owned VALUES (ROW('web-9'), now(), 99);
RESET SESSION AUTHORIZATION;
SELECT count(*) AS owner_alerts_written FROM public.alm_owned_alerts;

-- A rule on v, an alerts table that does not exist: a clear error.
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold) VALUES ('v_high', 'v', '>', 0);
CREATE TRIGGER a AFTER INSERT ON alm_t REFERENCING NEW TABLE AS nt FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('public.no_such_alerts');
INSERT INTO alm_t VALUES ('x', now(), 1);
ROLLBACK;
