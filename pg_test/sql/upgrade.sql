-- Control: the upgrade path. 0.1.0, installed and in use (a monitoring
-- schema with data, a key, ciphertext), is updated to the current version;
-- the data and its protection survive, and the extension's catalog is then
-- identical, object by object (definitions, grants, comments, settings), to
-- a fresh install. Runs in a database of its own.
\set SHOW_CONTEXT never
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE DATABASE aegis_regress_upgrade;
\c aegis_regress_upgrade
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_aegis';
SELECT aegis.create_monitoring_schema('monitoring');
INSERT INTO monitoring.servers (server_id) VALUES ('s1');
INSERT INTO monitoring.error_logs (server_id, error_message) VALUES ('s1', 'timeout for bob@example.com');
SELECT aegis.create_key('notes') IS NOT NULL AS key_created;
CREATE TABLE notes AS SELECT aegis.encrypt('kept across the upgrade', 'notes') AS ct;

ALTER EXTENSION pg_aegis UPDATE;
SELECT extversion = aegis.version() AS updated_to_this_build FROM pg_extension WHERE extname = 'pg_aegis';
-- Data, keys and policies carry over; the new functions work.
SELECT aegis.decrypt(ct) FROM notes;
SELECT relrowsecurity AND relforcerowsecurity AS rls_still_forced
FROM pg_class WHERE oid = 'monitoring.error_logs'::regclass;
SELECT aegis.redact_pii(error_message) FROM monitoring.error_logs;
-- 0.3.0: tables protected before the update are audited from now on.
SELECT count(*) AS audit_triggers FROM pg_trigger
WHERE tgfoid IN ('aegis.audit_row()'::regprocedure, 'aegis.audit_truncate()'::regprocedure);
UPDATE monitoring.error_logs SET resolved = true;
SELECT operation, table_name, new_row ->> 'error_message' AS message FROM aegis.audit_log;
SELECT aegis.seal();
SELECT ok, entries_checked FROM aegis.verify_chain();
-- 0.4.0: the update records the protected tables' rows as baselines, so
-- verify_table() works at once; the DDL guard is active.
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('monitoring.error_logs');
SELECT count(*) AS guard_event_triggers FROM pg_event_trigger WHERE evtname LIKE 'aegis\_guard\_%';
-- 0.6.0: the DDL guard remembers every protected table of the installation
-- at once, and the chain (with the update's tombstone attestation) verifies.
SELECT count(*) = (SELECT count(*) FROM aegis.rls_enforced) AS guard_remembers_every_table
FROM aegis.guard_states g WHERE g.relid IN (SELECT relid FROM aegis.rls_enforced);
-- 0.5.0: the README's statements give an existing monitoring schema the
-- reference retention periods; apply_retention() then works on it.
SELECT aegis.set_retention('monitoring.user_access_logs', '90 days', 'accessed_at');
SELECT aegis.set_retention('monitoring.incident_response_logs', '1 year', 'ts');
SELECT aegis.set_retention('monitoring.error_logs', '1 year', 'ts', 'contains_user_data');
SELECT aegis.set_retention('monitoring.downtime_logs', '2 years', 'start_time',
    'reported_by IS NOT NULL OR user_name IS NOT NULL OR user_id IS NOT NULL');
SELECT table_name, keep, only_where FROM aegis.retention_policies ORDER BY table_name::text;
SELECT * FROM aegis.apply_retention(dry_run => true);
-- The alert trigger, its default rules and the erasure policies.
CREATE TRIGGER aegis_alerts AFTER INSERT ON monitoring.server_metrics
    REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION aegis.metric_alerts('monitoring.alerts_history');
INSERT INTO aegis.alert_rules (name, kind, metric, comparison, threshold, min_samples, severity, cooldown)
VALUES ('cpu_high', 'threshold', 'cpu_usage', '>', 95, 30, 'critical', '15 minutes'),
       ('network_in_anomaly', 'anomaly', 'network_in_bytes', NULL, 4, 30, 'warning', '30 minutes')
ON CONFLICT (name) DO NOTHING;
SELECT aegis.protect(relid, policy || '{"erasure": "anonymize"}') FROM aegis.protected_tables
WHERE relid IN ('monitoring.error_logs'::regclass, 'monitoring.downtime_logs'::regclass);
INSERT INTO monitoring.server_metrics (server_id, cpu_usage) VALUES ('s1', 99);
SELECT rule, message FROM monitoring.alerts_history;
SELECT relid::text AS tbl, policy ->> 'erasure' AS erasure FROM aegis.protected_tables
WHERE policy ? 'erasure' ORDER BY 1;
SELECT count(*) AS controls FROM aegis.compliance_report();
-- 0.7.0: tables protected before the update capture with statement
-- triggers (the row trigger gave way); a multi-row statement's images are
-- one chunk entry, and the table still verifies against its older entries.
SELECT c.relname, array_agg(t.tgname::text ORDER BY t.tgname) AS capture_triggers
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.oid = 'monitoring.error_logs'::regclass AND t.tgname LIKE 'aegis%' GROUP BY 1;
SELECT 'monitoring.error_logs'::regclass::oid IN (SELECT aegis.guard_compliant_tables()) AS compliant;
INSERT INTO monitoring.error_logs (server_id, error_severity, error_message)
SELECT 's1', 'WARNING', 'bulk ' || g FROM generate_series(1, 3) g;
SELECT operation, detail, jsonb_typeof(new_row) AS images FROM aegis.audit_log
WHERE table_name = 'monitoring.error_logs' ORDER BY id DESC LIMIT 3;
SELECT ok, mismatches FROM aegis.verify_table('monitoring.error_logs');
-- 0.7.0: digest mode on an updated install; the entries written before the
-- update and the new digest entries verify in one chain.
SELECT aegis.protect('monitoring.server_metrics',
    (SELECT policy FROM aegis.protected_tables WHERE relid = 'monitoring.server_metrics'::regclass)
    || '{"audit_inserts": "digest", "digest_buckets": {"column": "ts"}}');
INSERT INTO monitoring.server_metrics (server_id, cpu_usage) SELECT 's1', g FROM generate_series(1, 50) g;
SELECT operation, detail, content_change IS NOT NULL AS has_digest FROM aegis.audit_log
WHERE table_name = 'monitoring.server_metrics' AND operation IN ('BASELINE', 'INSERT') ORDER BY id;
SELECT aegis.seal() > 0 AS sealed;
SELECT ok FROM aegis.verify_chain();
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('monitoring.server_metrics');
-- The README's statements that give a 0.1.0 monitoring schema the 0.2.0
-- developer view; afterwards a developer reads only redacted messages.
CREATE VIEW monitoring.developer_error_logs WITH (security_barrier = true, security_invoker = false) AS
SELECT e.id, e.server_id, e.ts, e.error_severity, aegis.redact_pii(e.error_message) AS error_message,
       aegis.anonymize_ip(e.user_ip) AS user_network, e.resolved, e.contains_user_data
FROM monitoring.error_logs e;
ALTER VIEW monitoring.developer_error_logs OWNER TO aegis_masking_owner;
REVOKE ALL ON monitoring.developer_error_logs FROM PUBLIC;
GRANT SELECT ON monitoring.developer_error_logs TO aegis_developer, aegis_admin;
GRANT SELECT ON monitoring.error_logs TO aegis_masking_owner;
CREATE POLICY developer_view_no_breach ON monitoring.error_logs FOR SELECT TO aegis_masking_owner
    USING (error_severity <> 'SECURITY_BREACH');
DROP POLICY developer_no_breach ON monitoring.error_logs;
REVOKE SELECT ON monitoring.error_logs FROM aegis_developer;
CREATE ROLE up_dev LOGIN IN ROLE aegis_developer;
SET SESSION AUTHORIZATION up_dev;
SELECT error_message FROM monitoring.developer_error_logs;
SELECT error_message FROM monitoring.error_logs;
RESET SESSION AUTHORIZATION;
DROP ROLE up_dev;

-- The catalog fingerprint of everything that belongs to the extension.
CREATE FUNCTION pg_temp.fingerprint() RETURNS TABLE(item text) LANGUAGE sql AS $$
    SELECT pg_describe_object(d.classid, d.objid, 0) || ' ' || coalesce(
        CASE d.classid
        WHEN 'pg_proc'::regclass THEN
            (SELECT pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, 'default')
                    || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
             FROM pg_proc p WHERE p.oid = d.objid)
        WHEN 'pg_class'::regclass THEN
            (SELECT c.relkind::text || ' acl=' || coalesce(c.relacl::text, 'default')
                    || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                    || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-')
                    || ' cols=' || coalesce((SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                                                    || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
                                                    || ':' || coalesce(col_description(c.oid, a.attnum), '-')
                                                    || ':' || coalesce(a.attacl::text, ''), ', ' ORDER BY a.attnum)
                                             FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                    || ' view=' || coalesce(pg_get_viewdef(c.oid), '-')
             FROM pg_class c WHERE c.oid = d.objid)
        WHEN 'pg_type'::regclass THEN (SELECT format_type(t.oid, NULL) FROM pg_type t WHERE t.oid = d.objid)
        END, '')
    FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_aegis')
      -- PostgreSQL 17 also records the row types of tables and views (and
      -- their array types) as members; they follow their relations, which
      -- are compared above, so they are left out on every version.
      AND NOT (d.classid = 'pg_type'::regclass AND EXISTS (
            SELECT 1 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
            JOIN pg_class c ON c.oid = CASE WHEN t.typrelid <> 0 THEN t.typrelid ELSE e.typrelid END
            WHERE t.oid = d.objid AND c.relkind <> 'c'))
    UNION ALL
    SELECT 'schema aegis acl=' || coalesce(nspacl::text, 'default') FROM pg_namespace WHERE nspname = 'aegis'
    UNION ALL
    SELECT 'policy ' || polname || ' on ' || polrelid::regclass || ' ' || pg_get_expr(polqual, polrelid)
    FROM pg_policy WHERE polrelid::regclass::text LIKE 'aegis.%'
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
    WHERE NOT t.tgisinternal AND t.tgrelid::regclass::text LIKE 'aegis.%'
    UNION ALL
    -- (The set of configuration tables pg_dump dumps; their order in
    -- extconfig is only the order in which they were registered.)
    SELECT 'config ' || (SELECT string_agg(c::regclass::text, ',' ORDER BY c::regclass::text)
                         FROM unnest(extconfig) c)
    FROM pg_extension WHERE extname = 'pg_aegis'
$$;
CREATE TEMP TABLE updated AS SELECT * FROM pg_temp.fingerprint();

-- A fresh install of this build in the same database.
DROP TABLE notes;
DROP SCHEMA monitoring CASCADE;
DROP EXTENSION pg_aegis;
DROP SCHEMA aegis CASCADE;
CREATE EXTENSION pg_aegis;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.fingerprint();
-- What the comparison covers.
SELECT count(*) FILTER (WHERE item LIKE 'function %') AS functions,
       count(*) FILTER (WHERE item LIKE 'table %' OR item LIKE 'view %') AS tables_and_views,
       count(*) FILTER (WHERE item LIKE 'policy %') AS policies,
       count(*) FILTER (WHERE item LIKE 'trigger %') AS triggers,
       count(*) AS items
FROM fresh;
-- Anything here differs between the updated and the fresh catalog.
(SELECT 'only after update' AS "where", item FROM updated EXCEPT SELECT 'only after update', item FROM fresh)
UNION ALL
(SELECT 'only in fresh install', item FROM fresh EXCEPT SELECT 'only in fresh install', item FROM updated)
ORDER BY 1, 2;
\c aegis_regress
SET client_min_messages = warning;
DROP DATABASE aegis_regress_upgrade;
