-- Control: the permission matrix of the reference monitoring schema.
-- Every group role (through a real LOGIN role that is a member of it) x every
-- table and view x SELECT / INSERT / UPDATE / DELETE / TRUNCATE. Each cell is
-- run for real and rolled back:
--   ok:N    allowed; N rows visible (SELECT) or affected (writes)
--   denied  SQLSTATE 42501 from the privilege system
--   rls     SQLSTATE 42501 from a row-level security WITH CHECK
--   -       not applicable (views are read-only)
-- Seed: servers s1 (owned by app_team_a, on-call assigned), s2, and s3 with
-- no dependent rows (so deleting servers is not blocked by foreign keys); error_logs
-- has one SECURITY_BREACH row on s1; one of two incidents is archived.
\set SHOW_CONTEXT never
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('monitoring');

CREATE ROLE app_team_a NOLOGIN;
CREATE ROLE app_team_b NOLOGIN;
CREATE TEMP TABLE logins(login name, grp name);
INSERT INTO logins
SELECT 'mx_' || substr(role_name, 7), role_name FROM aegis.role_catalog()
WHERE role_name <> 'aegis_masking_owner';
INSERT INTO logins VALUES ('mx_nobody', NULL);
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM logins LOOP
        EXECUTE format('CREATE ROLE %I LOGIN', r.login);
        IF r.grp IS NOT NULL THEN
            EXECUTE format('GRANT %I TO %I', r.grp, r.login);
        END IF;
    END LOOP;
END $$;
GRANT app_team_a TO mx_app;
SELECT aegis.assign_oncall('mx_oncall', 's1');

INSERT INTO monitoring.servers (server_id, hostname, owner_role) VALUES
    ('s1', 'db-1', 'app_team_a'), ('s2', 'db-2', 'app_team_b'), ('s3', 'spare', 'app_team_b');
INSERT INTO monitoring.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES
    ('s1', 10, 100), ('s1', 20, 200), ('s2', 30, 300);
INSERT INTO monitoring.downtime_logs (server_id, cause, user_name) VALUES
    ('s1', 'disk full', 'alice'), ('s2', 'kernel panic', 'bob');
INSERT INTO monitoring.error_logs (server_id, error_severity, error_message) VALUES
    ('s1', 'ERROR', 'timeout'), ('s1', 'SECURITY_BREACH', 'token replay from 203.0.113.9'),
    ('s2', 'ERROR', 'oom');
INSERT INTO monitoring.incident_response_logs (server_id, incident_summary, root_cause, status) VALUES
    ('s1', 'DB outage', 'bad migration', 'open'), ('s2', 'old outage', 'power', 'archived');
INSERT INTO monitoring.aggregated_metrics VALUES
    ('eu', '2026-11-01 10:00+00', 40.5, 9000), ('us', '2026-11-01 10:00+00', 55.0, 12000);
INSERT INTO monitoring.cost_data (server_id, period_start, period_end, service, amount) VALUES
    ('s1', '2026-10-01', '2026-10-31', 'compute', 1200.50), ('s2', '2026-10-01', '2026-10-31', 'storage', 80);
INSERT INTO monitoring.alerts_history (server_id, rule, value) VALUES ('s1', 'cpu_usage > 95', 97), ('s2', 'cpu_usage > 95', 99);
INSERT INTO monitoring.user_access_logs (user_id, ip_address, resource) VALUES
    ('u1', '198.51.100.7', '/dashboards'), ('u2', '198.51.100.8', '/costs');

-- Runs one statement as a login role and undoes it; returns the cell value.
CREATE FUNCTION pg_temp.cell(login name, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    msg text;
    result text;
BEGIN
    EXECUTE format('SET ROLE %I', login);
    BEGIN
        EXECUTE stmt;
        GET DIAGNOSTICS n = ROW_COUNT;
        RAISE EXCEPTION USING ERRCODE = 'XX900', MESSAGE = n::text;  -- undo
    EXCEPTION
        WHEN SQLSTATE 'XX900' THEN
            result := 'ok:' || SQLERRM;
        WHEN insufficient_privilege THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            result := CASE WHEN msg LIKE '%row-level security%' THEN 'rls' ELSE 'denied' END;
        WHEN OTHERS THEN
            result := SQLSTATE || ' ' || SQLERRM;
    END;
    RESET ROLE;
    RETURN result;
END $$;

CREATE TEMP TABLE targets(obj text, is_view boolean, ins text, upd_col text, del_where text DEFAULT '');
INSERT INTO targets VALUES
    ('servers', false, $$(server_id, owner_role) VALUES ('s9', 'app_team_a')$$, 'hostname', $$WHERE server_id = 's3'$$),
    ('server_metrics', false, $$(server_id, cpu_usage) VALUES ('s1', 50)$$, 'cpu_usage', ''),
    ('downtime_logs', false, $$(server_id, cause) VALUES ('s1', 'x')$$, 'cause', ''),
    ('error_logs', false, $$(server_id, error_message) VALUES ('s1', 'x')$$, 'resolved', ''),
    ('incident_response_logs', false, $$(server_id, severity) VALUES ('s1', 'low')$$, 'status', ''),
    ('aggregated_metrics', false, $$(region, hour) VALUES ('ap', '2026-11-01 10:00+00')$$, 'hourly_avg_cpu_usage', ''),
    ('cost_data', false, $$(period_start, period_end, service, amount) VALUES ('2026-11-01', '2026-11-30', 'x', 1)$$, 'amount', ''),
    ('alerts_history', false, $$(server_id, rule) VALUES ('s1', 'x')$$, 'acknowledged', ''),
    ('user_access_logs', false, $$(user_id) VALUES ('u9')$$, 'resource', '');
INSERT INTO targets (obj, is_view) VALUES
    ('masked_incident_logs', true), ('masked_aggregated_metrics', true), ('security_errors', true),
    ('developer_error_logs', true);

RESET client_min_messages;
SELECT l.login AS role, t.obj AS "table/view",
       pg_temp.cell(l.login, format('SELECT * FROM monitoring.%I', t.obj)) AS "select",
       CASE WHEN t.is_view THEN '-' ELSE pg_temp.cell(l.login, format('INSERT INTO monitoring.%I %s', t.obj, t.ins)) END AS "insert",
       CASE WHEN t.is_view THEN '-' ELSE pg_temp.cell(l.login, format('UPDATE monitoring.%I SET %I = %I', t.obj, t.upd_col, t.upd_col)) END AS "update",
       CASE WHEN t.is_view THEN '-' ELSE pg_temp.cell(l.login, format('DELETE FROM monitoring.%I %s', t.obj, t.del_where)) END AS "delete",
       CASE WHEN t.is_view THEN '-' ELSE pg_temp.cell(l.login, format('TRUNCATE monitoring.%I CASCADE', t.obj)) END AS "truncate"
FROM logins l CROSS JOIN targets t
ORDER BY l.login, t.is_view, t.obj;

-- Targeted cells the matrix cannot show.
SELECT 'incident_editor inserts an archived incident' AS "case",
       pg_temp.cell('mx_incident_editor', $$INSERT INTO monitoring.incident_response_logs (status) VALUES ('archived')$$) AS result
UNION ALL
SELECT 'incident_editor archives an open incident',
       pg_temp.cell('mx_incident_editor', $$UPDATE monitoring.incident_response_logs SET status = 'archived' WHERE status = 'open'$$)
UNION ALL
SELECT 'incident_editor updates the archived incident',
       pg_temp.cell('mx_incident_editor', $$UPDATE monitoring.incident_response_logs SET assigned_to = 'x' WHERE status = 'archived'$$)
UNION ALL
SELECT 'incident_admin archives an open incident',
       pg_temp.cell('mx_incident_admin', $$UPDATE monitoring.incident_response_logs SET status = 'archived' WHERE status = 'open'$$)
UNION ALL
SELECT 'ingest reads back what it inserts (RETURNING)',
       pg_temp.cell('mx_ingest', $$INSERT INTO monitoring.error_logs (server_id) VALUES ('s1') RETURNING *$$)
UNION ALL
SELECT 'app reads metrics of its own server s1',
       pg_temp.cell('mx_app', $$SELECT * FROM monitoring.server_metrics WHERE server_id = 's1'$$)
UNION ALL
SELECT 'app reads metrics of s2 (owned by app_team_b)',
       pg_temp.cell('mx_app', $$SELECT * FROM monitoring.server_metrics WHERE server_id = 's2'$$)
UNION ALL
SELECT 'oncall reads error logs of s2 (not assigned)',
       pg_temp.cell('mx_oncall', $$SELECT * FROM monitoring.error_logs WHERE server_id = 's2'$$)
UNION ALL
SELECT 'operations reads peak_network_usage from the table',
       pg_temp.cell('mx_operations', $$SELECT peak_network_usage FROM monitoring.aggregated_metrics$$)
UNION ALL
SELECT 'incident_viewer filters on incident_summary in the table',
       pg_temp.cell('mx_incident_viewer', $$SELECT incident_id FROM monitoring.incident_response_logs WHERE incident_summary LIKE 'DB%'$$)
UNION ALL
SELECT 'developer marks an error resolved',
       pg_temp.cell('mx_developer', $$UPDATE monitoring.error_logs SET resolved = true$$)
UNION ALL
SELECT 'admin marks an error resolved',
       pg_temp.cell('mx_admin', $$UPDATE monitoring.error_logs SET resolved = true WHERE error_severity = 'ERROR'$$)
UNION ALL
SELECT 'devops reads cost data',
       pg_temp.cell('mx_devops', $$SELECT amount FROM monitoring.cost_data$$);

-- What the masking views show to whom.
SET ROLE mx_incident_viewer;
SELECT incident_summary, root_cause FROM monitoring.masked_incident_logs ORDER BY ts, status;
SET ROLE mx_security;
SELECT incident_summary, root_cause FROM monitoring.masked_incident_logs ORDER BY ts, status;
SET ROLE mx_operations;
SELECT region, peak_network_usage FROM monitoring.masked_aggregated_metrics ORDER BY region;
SET ROLE mx_admin;
SELECT region, peak_network_usage FROM monitoring.masked_aggregated_metrics ORDER BY region;
RESET ROLE;

-- On-call visibility follows the assignment: ended or expired means nothing.
SELECT pg_temp.cell('mx_oncall', 'SELECT * FROM monitoring.downtime_logs') AS while_assigned;
UPDATE aegis.oncall_assignments SET until = now() - interval '1 second' WHERE engineer = 'mx_oncall'::regrole;
SELECT pg_temp.cell('mx_oncall', 'SELECT * FROM monitoring.downtime_logs') AS after_expiry;
SELECT aegis.unassign_oncall('mx_oncall', 's1') AS unassigned, aegis.unassign_oncall('mx_oncall', 's1') AS again;
SELECT pg_temp.cell('mx_oncall', 'SELECT * FROM aegis.oncall_assignments') AS own_assignments_left;
ROLLBACK;
