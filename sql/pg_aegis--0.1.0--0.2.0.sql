-- pg_aegis 0.1.0 -> 0.2.0: PII detection, redaction and log sanitizing.
-- A fresh 0.2.0 install and 0.1.0 updated with this script have the same
-- catalog: pg_test/sql/upgrade.sql compares them object by object.
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.2.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- ---------------------------------------------------------------- new functions (sql/60_pii.sql)
-- IMMUTABLE: the result depends on the text alone, so it can back a
-- generated column or an expression index. A later pg_aegis that detects
-- more will change results: rebuild such indexes after upgrading (REINDEX),
-- as with unaccent or a collation update.
CREATE FUNCTION aegis.redact_pii(msg text)
RETURNS text LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aegis_redact_pii';
COMMENT ON FUNCTION aegis.redact_pii(text) IS
    'Replace every detected PII value with its kind tag ([EMAIL], [IPV4], ...)';

-- STABLE and PARALLEL RESTRICTED because of the hash style, which reads the
-- keyring; NULL kinds means every kind.
CREATE FUNCTION aegis.redact_pii(msg text, kinds text[], style text DEFAULT 'tag')
RETURNS text LANGUAGE c STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'aegis_redact_pii_kinds';
COMMENT ON FUNCTION aegis.redact_pii(text, text[], text) IS
    'Redact the given kinds (NULL: all) in style tag, mask, hash (keyed pseudonym tokens) or remove';

CREATE FUNCTION aegis.has_pii(msg text)
RETURNS boolean LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'has_pii_wrapper';
COMMENT ON FUNCTION aegis.has_pii(text) IS 'True if the text contains any detectable PII';

CREATE FUNCTION aegis.detect_pii(msg text)
RETURNS TABLE (kind text, start_pos integer, end_pos integer, value text)
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE ROWS 2
AS 'MODULE_PATHNAME', 'detect_pii_wrapper';
COMMENT ON FUNCTION aegis.detect_pii(text) IS
    'Each PII value found: kind, 1-based character positions (end inclusive), value';

CREATE FUNCTION aegis.pii_kinds()
RETURNS SETOF text LANGUAGE c IMMUTABLE PARALLEL SAFE ROWS 10
AS 'MODULE_PATHNAME', 'pii_kinds_wrapper';
COMMENT ON FUNCTION aegis.pii_kinds() IS 'The PII kinds redact_pii() and detect_pii() know';

CREATE FUNCTION aegis.sanitize_log(msg text, max_bytes integer DEFAULT 8192)
RETURNS text LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aegis_sanitize_log';
COMMENT ON FUNCTION aegis.sanitize_log(text, integer) IS
    'Escape control characters, strip ANSI escapes, truncate to max_bytes on a character boundary';

CREATE FUNCTION aegis.sanitize_columns()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'sanitize_columns_wrapper';
COMMENT ON FUNCTION aegis.sanitize_columns() IS
    'BEFORE INSERT OR UPDATE row trigger: sanitize_log() (and with redact, redact_pii()) on the named columns';

-- As in sql/99_finalize.sql: revoke the default, then grant explicitly.
REVOKE EXECUTE ON FUNCTION
    aegis.redact_pii(text), aegis.redact_pii(text, text[], text),
    aegis.has_pii(text), aegis.detect_pii(text), aegis.pii_kinds(),
    aegis.sanitize_log(text, integer), aegis.sanitize_columns()
FROM PUBLIC;
-- PII functions read nothing but their arguments. The hash style of
-- redact_pii() is a pseudonym oracle like pseudonymize(): it checks for
-- EXECUTE on pseudonymize() itself, so granting these to PUBLIC opens nothing.
GRANT EXECUTE ON FUNCTION
    aegis.redact_pii(text), aegis.redact_pii(text, text[], text),
    aegis.has_pii(text), aegis.detect_pii(text), aegis.pii_kinds(),
    aegis.sanitize_log(text, integer), aegis.sanitize_columns()
TO PUBLIC;

-- ---------------------------------------------------------------- reference schema template (sql/40_monitoring_schema.sql)
-- New monitoring schemas get developer_error_logs (error messages through
-- redact_pii) instead of developers' direct SELECT on error_logs. Schemas
-- created by 0.1.0 are user objects and are not changed here; the README
-- ("Upgrading") has the statements that bring one up to date.
CREATE OR REPLACE FUNCTION aegis.monitoring_schema_ddl() RETURNS text
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
GRANT SELECT, INSERT, UPDATE ON %1$I.server_metrics TO aegis_devops;
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
-- Collectors write and never read back.
GRANT INSERT ON %1$I.server_metrics, %1$I.downtime_logs, %1$I.error_logs, %1$I.aggregated_metrics,
    %1$I.alerts_history, %1$I.user_access_logs TO aegis_ingest;

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

-- The first line revoked schema access from PUBLIC, as every install file
-- does; 99_finalize.sql grants USAGE back (functions decide the rest).
GRANT USAGE ON SCHEMA aegis TO PUBLIC;
