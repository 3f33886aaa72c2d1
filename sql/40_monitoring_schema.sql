-- The reference monitoring data model and its permission matrix.
-- aegis.create_monitoring_schema() creates ordinary user tables (not
-- extension members: pg_dump dumps their DDL and data, users can evolve them),
-- grants each role exactly its cells of the matrix, adds the row-level
-- security policies and masking views, and protects every table.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- The DDL template; %1$I is the schema. Kept as data so the function body
-- stays small and the whole model can be read in one place.
CREATE FUNCTION aegis.monitoring_schema_ddl() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $template$ SELECT $ddl$
CREATE SCHEMA %1$I;
REVOKE ALL ON SCHEMA %1$I FROM PUBLIC;
GRANT USAGE ON SCHEMA %1$I TO aegis_admin, aegis_developer, aegis_oncall, aegis_devops,
    aegis_auditor, aegis_security, aegis_finance, aegis_operations, aegis_app,
    aegis_incident_viewer, aegis_incident_editor, aegis_incident_admin, aegis_ingest,
    aegis_masking_owner;

-- ---------------------------------------------------------------- tables
CREATE TABLE %1$I.servers (
    server_id   text PRIMARY KEY CHECK (server_id <> ''),
    hostname    text,
    region      text,
    environment text,
    owner_role  name,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON %1$I.servers (owner_role);

CREATE TABLE %1$I.server_metrics (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id         text NOT NULL REFERENCES %1$I.servers ON UPDATE CASCADE,
    ts                timestamptz NOT NULL DEFAULT now(),
    cpu_usage         double precision CHECK (cpu_usage BETWEEN 0 AND 100),
    memory_usage      double precision CHECK (memory_usage BETWEEN 0 AND 100),
    disk_usage        double precision CHECK (disk_usage BETWEEN 0 AND 100),
    network_in_bytes  bigint CHECK (network_in_bytes >= 0),
    network_out_bytes bigint CHECK (network_out_bytes >= 0)
);
CREATE INDEX ON %1$I.server_metrics (server_id, ts);

CREATE TABLE %1$I.downtime_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   text NOT NULL REFERENCES %1$I.servers ON UPDATE CASCADE,
    start_time  timestamptz NOT NULL DEFAULT now(),
    end_time    timestamptz CHECK (end_time IS NULL OR end_time >= start_time),
    cause       text,
    reported_by text,
    user_name   text,
    user_id     text
);
CREATE INDEX ON %1$I.downtime_logs (server_id, start_time);

CREATE TABLE %1$I.error_logs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id          text NOT NULL REFERENCES %1$I.servers ON UPDATE CASCADE,
    ts                 timestamptz NOT NULL DEFAULT now(),
    error_severity     text NOT NULL DEFAULT 'ERROR'
        CHECK (error_severity IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', 'SECURITY_BREACH')),
    error_message      text,
    user_identifier    text,
    user_ip            inet,
    resolved           boolean NOT NULL DEFAULT false,
    contains_user_data boolean NOT NULL DEFAULT false
);
CREATE INDEX ON %1$I.error_logs (server_id, ts);
CREATE INDEX ON %1$I.error_logs (ts) WHERE error_severity = 'SECURITY_BREACH';

CREATE TABLE %1$I.incident_response_logs (
    incident_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    server_id        text REFERENCES %1$I.servers ON UPDATE CASCADE,
    ts               timestamptz NOT NULL DEFAULT now(),
    severity         text NOT NULL DEFAULT 'medium' CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    incident_summary text,
    root_cause       text,
    status           text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'investigating', 'resolved', 'closed', 'archived')),
    assigned_to      text
);
CREATE INDEX ON %1$I.incident_response_logs (server_id, ts);

CREATE TABLE %1$I.aggregated_metrics (
    region               text NOT NULL,
    hour                 timestamptz NOT NULL,
    hourly_avg_cpu_usage double precision,
    peak_network_usage   bigint CHECK (peak_network_usage >= 0),
    PRIMARY KEY (region, hour)
);

CREATE TABLE %1$I.cost_data (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id    text REFERENCES %1$I.servers ON UPDATE CASCADE,
    period_start date NOT NULL,
    period_end   date NOT NULL CHECK (period_end >= period_start),
    service      text NOT NULL,
    amount       numeric(14, 2) NOT NULL,
    currency     char(3) NOT NULL DEFAULT 'USD'
);
CREATE INDEX ON %1$I.cost_data (server_id, period_start);

CREATE TABLE %1$I.alerts_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id    text REFERENCES %1$I.servers ON UPDATE CASCADE,
    ts           timestamptz NOT NULL DEFAULT now(),
    rule         text NOT NULL,
    severity     text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    metric       text,
    value        double precision,
    message      text,
    acknowledged boolean NOT NULL DEFAULT false
);
CREATE INDEX ON %1$I.alerts_history (server_id, ts);

CREATE TABLE %1$I.user_access_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text NOT NULL,
    ip_address  inet,
    accessed_at timestamptz NOT NULL DEFAULT now(),
    resource    text
);
CREATE INDEX ON %1$I.user_access_logs (user_id, accessed_at);
CREATE INDEX ON %1$I.user_access_logs (accessed_at);

-- ---------------------------------------------------------------- grants
-- Table privileges say which commands a role may run at all; the policies
-- below say which rows. Nobody but the owner may TRUNCATE (it skips RLS).
GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.servers, %1$I.server_metrics, %1$I.downtime_logs,
    %1$I.error_logs, %1$I.incident_response_logs, %1$I.aggregated_metrics, %1$I.alerts_history,
    %1$I.user_access_logs TO aegis_admin;
GRANT SELECT ON %1$I.servers TO aegis_auditor, aegis_devops, aegis_oncall, aegis_app;
-- Writers get the columns, never the identity column: a role that picks
-- ids (OVERRIDING SYSTEM VALUE) the sequence hands out later would make
-- other writers' inserts wait on its open transaction, or fail.
GRANT SELECT ON %1$I.server_metrics TO aegis_devops;
GRANT INSERT (server_id, ts, cpu_usage, memory_usage, disk_usage, network_in_bytes, network_out_bytes),
      UPDATE (server_id, ts, cpu_usage, memory_usage, disk_usage, network_in_bytes, network_out_bytes)
    ON %1$I.server_metrics TO aegis_devops;
GRANT SELECT ON %1$I.server_metrics TO aegis_app;
GRANT SELECT ON %1$I.downtime_logs TO aegis_developer, aegis_oncall, aegis_auditor;
-- Developers read error messages only through developer_error_logs, which
-- redacts PII: a direct grant would make the redaction optional.
GRANT SELECT ON %1$I.error_logs TO aegis_oncall, aegis_auditor, aegis_masking_owner;
GRANT SELECT ON %1$I.error_logs TO aegis_security;
GRANT SELECT ON %1$I.alerts_history TO aegis_oncall, aegis_auditor;
GRANT SELECT ON %1$I.user_access_logs TO aegis_auditor;
GRANT SELECT ON %1$I.cost_data TO aegis_finance;
-- Incidents: full rows for security and incident admins; viewers, editors and
-- auditors get the non-sensitive columns only (summary and root cause through
-- the masking view), so they cannot even filter or sort on them.
GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.incident_response_logs TO aegis_incident_admin;
GRANT SELECT ON %1$I.incident_response_logs TO aegis_security, aegis_masking_owner;
GRANT SELECT (incident_id, server_id, ts, severity, status, assigned_to)
    ON %1$I.incident_response_logs TO aegis_incident_viewer, aegis_incident_editor, aegis_auditor;
GRANT INSERT, UPDATE ON %1$I.incident_response_logs TO aegis_incident_editor;
-- Aggregated metrics: operations reads everything but peak_network_usage.
GRANT SELECT (region, hour, hourly_avg_cpu_usage) ON %1$I.aggregated_metrics TO aegis_operations;
GRANT SELECT ON %1$I.aggregated_metrics TO aegis_masking_owner;
-- Collectors write and never read back (never the identity column).
GRANT INSERT (server_id, ts, cpu_usage, memory_usage, disk_usage, network_in_bytes, network_out_bytes)
    ON %1$I.server_metrics TO aegis_ingest;
GRANT INSERT (server_id, start_time, end_time, cause, reported_by, user_name, user_id)
    ON %1$I.downtime_logs TO aegis_ingest;
GRANT INSERT (server_id, ts, error_severity, error_message, user_identifier, user_ip, resolved, contains_user_data)
    ON %1$I.error_logs TO aegis_ingest;
GRANT INSERT ON %1$I.aggregated_metrics TO aegis_ingest;
GRANT INSERT (server_id, ts, rule, severity, metric, value, message, acknowledged)
    ON %1$I.alerts_history TO aegis_ingest;
GRANT INSERT (user_id, ip_address, accessed_at, resource) ON %1$I.user_access_logs TO aegis_ingest;

-- ---------------------------------------------------------------- policies
-- Session lookups run once per query as initplans ((SELECT aegis.f())), and
-- compare with "= ANY(array)", which the planner turns into index conditions.
CREATE POLICY admin_all ON %1$I.servers FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.servers FOR SELECT TO aegis_auditor, aegis_devops USING (true);
CREATE POLICY oncall_assigned ON %1$I.servers FOR SELECT TO aegis_oncall
    USING (server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
CREATE POLICY app_owned ON %1$I.servers FOR SELECT TO aegis_app
    USING (owner_role = ANY ((SELECT aegis.member_role_names())::name[]));

CREATE POLICY admin_all ON %1$I.server_metrics FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.server_metrics FOR SELECT TO aegis_devops USING (true);
CREATE POLICY devops_insert ON %1$I.server_metrics FOR INSERT TO aegis_devops WITH CHECK (true);
CREATE POLICY devops_update ON %1$I.server_metrics FOR UPDATE TO aegis_devops USING (true) WITH CHECK (true);
CREATE POLICY ingest_insert ON %1$I.server_metrics FOR INSERT TO aegis_ingest WITH CHECK (true);
CREATE POLICY app_owned ON %1$I.server_metrics FOR SELECT TO aegis_app
    USING (server_id = ANY (ARRAY(SELECT s.server_id FROM %1$I.servers s
                                  WHERE s.owner_role = ANY ((SELECT aegis.member_role_names())::name[]))));

CREATE POLICY admin_all ON %1$I.downtime_logs FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.downtime_logs FOR SELECT TO aegis_developer, aegis_auditor USING (true);
CREATE POLICY oncall_assigned ON %1$I.downtime_logs FOR SELECT TO aegis_oncall
    USING (server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
CREATE POLICY ingest_insert ON %1$I.downtime_logs FOR INSERT TO aegis_ingest WITH CHECK (true);

CREATE POLICY admin_all ON %1$I.error_logs FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.error_logs FOR SELECT TO aegis_auditor USING (true);
-- What developer_error_logs (owned by aegis_masking_owner) may read.
CREATE POLICY developer_view_no_breach ON %1$I.error_logs FOR SELECT TO aegis_masking_owner
    USING (error_severity <> 'SECURITY_BREACH');
CREATE POLICY security_breach_only ON %1$I.error_logs FOR SELECT TO aegis_security
    USING (error_severity = 'SECURITY_BREACH');
CREATE POLICY oncall_assigned ON %1$I.error_logs FOR SELECT TO aegis_oncall
    USING (server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
CREATE POLICY ingest_insert ON %1$I.error_logs FOR INSERT TO aegis_ingest WITH CHECK (true);

CREATE POLICY admin_all ON %1$I.incident_response_logs FOR ALL TO aegis_admin, aegis_incident_admin
    USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.incident_response_logs FOR SELECT
    TO aegis_security, aegis_auditor, aegis_incident_viewer, aegis_incident_editor, aegis_masking_owner
    USING (true);
-- Editors never archive: they cannot write an archived row nor touch one.
CREATE POLICY editor_insert ON %1$I.incident_response_logs FOR INSERT TO aegis_incident_editor
    WITH CHECK (status <> 'archived');
CREATE POLICY editor_update ON %1$I.incident_response_logs FOR UPDATE TO aegis_incident_editor
    USING (status <> 'archived') WITH CHECK (status <> 'archived');

CREATE POLICY admin_all ON %1$I.aggregated_metrics FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.aggregated_metrics FOR SELECT TO aegis_operations, aegis_masking_owner
    USING (true);
CREATE POLICY ingest_insert ON %1$I.aggregated_metrics FOR INSERT TO aegis_ingest WITH CHECK (true);

CREATE POLICY finance_read ON %1$I.cost_data FOR SELECT TO aegis_finance USING (true);

CREATE POLICY admin_all ON %1$I.alerts_history FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.alerts_history FOR SELECT TO aegis_auditor USING (true);
CREATE POLICY oncall_assigned ON %1$I.alerts_history FOR SELECT TO aegis_oncall
    USING (server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
CREATE POLICY ingest_insert ON %1$I.alerts_history FOR INSERT TO aegis_ingest WITH CHECK (true);

CREATE POLICY admin_all ON %1$I.user_access_logs FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY read_all ON %1$I.user_access_logs FOR SELECT TO aegis_auditor USING (true);
CREATE POLICY ingest_insert ON %1$I.user_access_logs FOR INSERT TO aegis_ingest WITH CHECK (true);

-- ---------------------------------------------------------------- views
-- Masking views read columns their readers may not read themselves, so they
-- run with the owner's rights (security_invoker = false). Their owner is
-- aegis_masking_owner: NOLOGIN, NOBYPASSRLS, member of nothing, so RLS still
-- applies to every read through them (a superuser-owned view would skip
-- RLS). security_barrier keeps user predicates from running before the view's.
CREATE VIEW %1$I.masked_incident_logs WITH (security_barrier = true, security_invoker = false) AS
SELECT i.incident_id, i.server_id, i.ts, i.severity,
       CASE WHEN (SELECT aegis.is_member_of_any('{aegis_admin,aegis_security,aegis_incident_admin}'))
            THEN i.incident_summary ELSE '[REDACTED]' END AS incident_summary,
       CASE WHEN (SELECT aegis.is_member_of_any('{aegis_admin,aegis_security,aegis_incident_admin}'))
            THEN i.root_cause ELSE '[REDACTED]' END AS root_cause,
       i.status, i.assigned_to
FROM %1$I.incident_response_logs i;
ALTER VIEW %1$I.masked_incident_logs OWNER TO aegis_masking_owner;
REVOKE ALL ON %1$I.masked_incident_logs FROM PUBLIC;
GRANT SELECT ON %1$I.masked_incident_logs TO aegis_admin, aegis_security, aegis_auditor,
    aegis_incident_viewer, aegis_incident_editor, aegis_incident_admin;

CREATE VIEW %1$I.masked_aggregated_metrics WITH (security_barrier = true, security_invoker = false) AS
SELECT a.region, a.hour, a.hourly_avg_cpu_usage,
       CASE WHEN (SELECT aegis.is_member_of_any('{aegis_admin}'))
            THEN a.peak_network_usage::text ELSE 'MASKED' END AS peak_network_usage
FROM %1$I.aggregated_metrics a;
ALTER VIEW %1$I.masked_aggregated_metrics OWNER TO aegis_masking_owner;
REVOKE ALL ON %1$I.masked_aggregated_metrics FROM PUBLIC;
GRANT SELECT ON %1$I.masked_aggregated_metrics TO aegis_admin, aegis_operations;

-- Error messages are free text full of emails, IPs and tokens: developers get
-- them through redact_pii() (tag style, so the kind of data that was there
-- stays visible). The user columns are left out and the client address is
-- coarsened to its /24 (/48) network.
CREATE VIEW %1$I.developer_error_logs WITH (security_barrier = true, security_invoker = false) AS
SELECT e.id, e.server_id, e.ts, e.error_severity,
       aegis.redact_pii(e.error_message) AS error_message,
       aegis.anonymize_ip(e.user_ip) AS user_network,
       e.resolved, e.contains_user_data
FROM %1$I.error_logs e;
ALTER VIEW %1$I.developer_error_logs OWNER TO aegis_masking_owner;
REVOKE ALL ON %1$I.developer_error_logs FROM PUBLIC;
GRANT SELECT ON %1$I.developer_error_logs TO aegis_developer, aegis_admin;

-- No masking here, so the reader's own rights suffice: security_invoker =
-- true, and the reader's RLS policies decide the rows.
CREATE VIEW %1$I.security_errors WITH (security_barrier = true, security_invoker = true) AS
SELECT e.* FROM %1$I.error_logs e WHERE e.error_severity = 'SECURITY_BREACH';
REVOKE ALL ON %1$I.security_errors FROM PUBLIC;
GRANT SELECT ON %1$I.security_errors TO aegis_admin, aegis_security, aegis_auditor;
$ddl$ $template$;
COMMENT ON FUNCTION aegis.monitoring_schema_ddl() IS
    'DDL of the reference monitoring schema (%1$I = schema), used by create_monitoring_schema()';

-- SECURITY INVOKER: the caller creates (and owns) the schema and tables, needs
-- CREATE on the database and the right to give views to aegis_masking_owner
-- (in practice a superuser; EXECUTE is not granted to anyone by default).
CREATE FUNCTION aegis.create_monitoring_schema(schema name DEFAULT 'monitoring')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    t text;
BEGIN
    IF schema IS NULL OR schema = '' THEN
        RAISE EXCEPTION 'schema name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF schema IN ('aegis', 'public', 'information_schema') OR schema LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'cannot create the monitoring schema as "%"', schema USING ERRCODE = '42939',
            HINT = 'Use a schema of its own, such as monitoring.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = schema) THEN
        RAISE EXCEPTION 'schema "%" already exists', schema USING ERRCODE = '42P06',
            HINT = 'create_monitoring_schema() only creates a new schema; use aegis.protect() for existing tables.';
    END IF;
    PERFORM aegis.create_roles();
    EXECUTE pg_catalog.format(aegis.monitoring_schema_ddl(), schema);

    PERFORM aegis.protect(pg_catalog.format('%I.servers', schema)::regclass, '{}');
    PERFORM aegis.protect(pg_catalog.format('%I.server_metrics', schema)::regclass,
        '{"columns": {"cpu_usage": "metric", "memory_usage": "metric", "disk_usage": "metric",
                      "network_in_bytes": "metric", "network_out_bytes": "metric"},
          "audit_inserts": "digest", "digest_buckets": {"column": "ts"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.downtime_logs', schema)::regclass,
        '{"columns": {"cause": "free_text", "reported_by": "subject_id", "user_name": "subject_id",
                      "user_id": "subject_id"}, "erasure": "anonymize"}');
    PERFORM aegis.protect(pg_catalog.format('%I.error_logs', schema)::regclass,
        '{"columns": {"error_message": "free_text", "user_identifier": "subject_id", "user_ip": "pii"}, "audit_reads": true,
          "erasure": "anonymize"}');
    PERFORM aegis.protect(pg_catalog.format('%I.incident_response_logs', schema)::regclass,
        '{"columns": {"incident_summary": "free_text", "root_cause": "free_text", "assigned_to": "pii"}, "audit_reads": true}');
    PERFORM aegis.protect(pg_catalog.format('%I.aggregated_metrics', schema)::regclass,
        '{"columns": {"hourly_avg_cpu_usage": "metric", "peak_network_usage": "metric"},
          "audit_inserts": "digest", "digest_buckets": {"column": "hour"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.cost_data', schema)::regclass,
        '{"columns": {"amount": "cost"}, "audit_reads": true}');
    PERFORM aegis.protect(pg_catalog.format('%I.alerts_history', schema)::regclass,
        '{"columns": {"value": "metric", "message": "free_text"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.user_access_logs', schema)::regclass,
        '{"columns": {"user_id": "subject_id", "ip_address": "pii"}, "audit_reads": true}');

    -- Alerts: CPU above 95 % and unusual inbound traffic, evaluated per
    -- insert statement into server_metrics, written to alerts_history and
    -- sent with NOTIFY aegis_alerts. The rules are shared by every
    -- monitoring schema (created once).
    EXECUTE pg_catalog.format('CREATE TRIGGER aegis_alerts AFTER INSERT ON %I.server_metrics '
        'REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts(%L)',
        schema, pg_catalog.format('%I.alerts_history', schema));
    INSERT INTO aegis.alert_rules (name, kind, metric, comparison, threshold, min_samples, severity, cooldown)
    VALUES ('cpu_high', 'threshold', 'cpu_usage', '>', 95, 30, 'critical', '15 minutes'),
           ('network_in_anomaly', 'anomaly', 'network_in_bytes', NULL, 4, 30, 'warning', '30 minutes')
    ON CONFLICT (name) DO NOTHING;

    -- Erasure: downtime and error records are operational evidence, so a
    -- person's erasure anonymizes them ("erasure": "anonymize" above); access
    -- logs are about the person and are deleted (the default).
    -- Retention from the requirements: access logs 90 days, incidents one
    -- year, error logs with user data one year, downtime records that name a
    -- person two years. Everything else is kept until a policy says otherwise.
    PERFORM aegis.set_retention(pg_catalog.format('%I.user_access_logs', schema)::regclass,
        '90 days', 'accessed_at');
    PERFORM aegis.set_retention(pg_catalog.format('%I.incident_response_logs', schema)::regclass,
        '1 year', 'ts');
    PERFORM aegis.set_retention(pg_catalog.format('%I.error_logs', schema)::regclass,
        '1 year', 'ts', 'contains_user_data');
    PERFORM aegis.set_retention(pg_catalog.format('%I.downtime_logs', schema)::regclass,
        '2 years', 'start_time', 'reported_by IS NOT NULL OR user_name IS NOT NULL OR user_id IS NOT NULL');
END
$$;
COMMENT ON FUNCTION aegis.create_monitoring_schema(name) IS
    'Create the reference monitoring schema with its roles, grants, RLS policies and masking views';
