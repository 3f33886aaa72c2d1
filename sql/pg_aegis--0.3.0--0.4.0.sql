-- pg_aegis 0.3.0 -> 0.4.0: audit trail completed: faster capture, the
-- sealing worker's state, verify_table() with baselines, read auditing
-- (policy key audit_reads), and the DDL guard.
-- A fresh 0.4.0 install and 0.3.0 updated with this script have the same
-- catalog: pg_test/sql/upgrade.sql compares them object by object.
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.4.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- Cached ids for bulk statements.
ALTER SEQUENCE aegis.audit_log_id_seq CACHE 32;

-- What the sealing horizon was computed over (see sql/70_audit.sql).
ALTER TABLE aegis.audit_seal_state
    ADD COLUMN chain_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN log_was_empty  boolean NOT NULL DEFAULT true;

-- protect(): the audit_reads policy key; enforce_rls(): baseline entries.
CREATE OR REPLACE FUNCTION aegis.enforce_rls(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    newly boolean;
BEGIN
    newly := NOT EXISTS (SELECT 1 FROM aegis.rls_enforced r WHERE r.relid = tbl);
    PERFORM aegis.switch_rls(tbl, true);
    INSERT INTO aegis.rls_enforced (relid) VALUES (tbl) ON CONFLICT (relid) DO NOTHING;
    -- The rows already there are the trail's starting point.
    IF newly THEN
        PERFORM aegis.audit_baseline(tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.enforce_rls(regclass) IS
    'Internal step of protect(): enable and force RLS, revoke PUBLIC (definer rights; admin-only)';

CREATE OR REPLACE FUNCTION aegis.protect(tbl regclass, policy jsonb DEFAULT '{}'::jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    k text;
    col text;
    cls text;
    valid_classes text[] := ARRAY['public', 'pii', 'secret', 'free_text', 'subject_id', 'metric', 'cost'];
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
    policy := COALESCE(policy, '{}'::jsonb);
    IF pg_catalog.jsonb_typeof(policy) <> 'object' THEN
        RAISE EXCEPTION 'policy must be a JSON object, not %', pg_catalog.jsonb_typeof(policy)
            USING ERRCODE = '22023', HINT = 'Example: {"columns": {"user_ip": "pii", "error_message": "free_text"}}';
    END IF;
    FOR k IN SELECT pg_catalog.jsonb_object_keys(policy) LOOP
        IF k NOT IN ('columns', 'audit_reads') THEN
            RAISE EXCEPTION 'unknown policy key "%"', k USING ERRCODE = '22023',
                HINT = 'Valid keys: columns, audit_reads.';
        END IF;
    END LOOP;
    IF policy ? 'audit_reads' AND pg_catalog.jsonb_typeof(policy -> 'audit_reads') <> 'boolean' THEN
        RAISE EXCEPTION 'policy.audit_reads must be true or false' USING ERRCODE = '22023';
    END IF;
    IF policy ? 'columns' AND pg_catalog.jsonb_typeof(policy -> 'columns') <> 'object' THEN
        RAISE EXCEPTION 'policy.columns must be an object mapping column names to classes'
            USING ERRCODE = '22023';
    END IF;
    FOR col, cls IN SELECT e.key, e.value #>> '{}' FROM pg_catalog.jsonb_each(COALESCE(policy -> 'columns', '{}')) e LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % does not exist', col, tbl USING ERRCODE = '42703';
        END IF;
        IF cls IS NULL OR NOT cls = ANY (valid_classes) THEN
            RAISE EXCEPTION 'unknown column class "%" for column "%"', cls, col USING ERRCODE = '22023',
                HINT = 'Valid classes: ' || pg_catalog.array_to_string(valid_classes, ', ') || '.';
        END IF;
    END LOOP;

    PERFORM aegis.enforce_rls(tbl);

    INSERT INTO aegis.protected_tables AS p (relid, policy, protected_by)
    VALUES (tbl, protect.policy, CURRENT_USER)
    ON CONFLICT (relid) DO UPDATE SET policy = EXCLUDED.policy, protected_at = pg_catalog.now(),
                                      protected_by = EXCLUDED.protected_by;
    DELETE FROM aegis.column_classes c WHERE c.relid = tbl;
    INSERT INTO aegis.column_classes (relid, column_name, class)
    SELECT tbl, e.key, e.value #>> '{}'
    FROM pg_catalog.jsonb_each(COALESCE(protect.policy -> 'columns', '{}')) e;
END
$$;
COMMENT ON FUNCTION aegis.protect(regclass, jsonb) IS
    'Put a table under pg_aegis protection: enable and force RLS, revoke PUBLIC, record column classes (admin-only)';

-- The reference schema audits reads of its four sensitive tables.
CREATE OR REPLACE FUNCTION aegis.create_monitoring_schema(schema name DEFAULT 'monitoring')
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
                      "network_in_bytes": "metric", "network_out_bytes": "metric"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.downtime_logs', schema)::regclass,
        '{"columns": {"cause": "free_text", "reported_by": "subject_id", "user_name": "subject_id",
                      "user_id": "subject_id"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.error_logs', schema)::regclass,
        '{"columns": {"error_message": "free_text", "user_identifier": "subject_id", "user_ip": "pii"}, "audit_reads": true}');
    PERFORM aegis.protect(pg_catalog.format('%I.incident_response_logs', schema)::regclass,
        '{"columns": {"incident_summary": "free_text", "root_cause": "free_text", "assigned_to": "pii"}, "audit_reads": true}');
    PERFORM aegis.protect(pg_catalog.format('%I.aggregated_metrics', schema)::regclass,
        '{"columns": {"hourly_avg_cpu_usage": "metric", "peak_network_usage": "metric"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.cost_data', schema)::regclass,
        '{"columns": {"amount": "cost"}, "audit_reads": true}');
    PERFORM aegis.protect(pg_catalog.format('%I.alerts_history', schema)::regclass,
        '{"columns": {"value": "metric", "message": "free_text"}}');
    PERFORM aegis.protect(pg_catalog.format('%I.user_access_logs', schema)::regclass,
        '{"columns": {"user_id": "subject_id", "ip_address": "pii"}, "audit_reads": true}');
END
$$;
COMMENT ON FUNCTION aegis.create_monitoring_schema(name) IS
    'Create the reference monitoring schema with its roles, grants, RLS policies and masking views';

-- ===========================================================================
-- Live rows against the trail; entries written by pg_aegis itself
-- ===========================================================================

CREATE FUNCTION aegis.verify_table(tbl regclass)
RETURNS TABLE (ok boolean, rows_checked bigint, mismatches bigint, first_mismatch jsonb, problem text)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'verify_table_wrapper';
COMMENT ON FUNCTION aegis.verify_table(regclass) IS
    'Check that every live row of a protected table equals its latest audit entry, and that no audited row is missing';

-- Internal (no grants): enforce_rls() records each existing row of a table
-- it starts protecting as a BASELINE entry, so verify_table() has an entry
-- for every row.
CREATE FUNCTION aegis.audit_baseline(tbl regclass) RETURNS bigint LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_baseline_wrapper';
COMMENT ON FUNCTION aegis.audit_baseline(regclass) IS
    'Internal: record every existing row of a newly protected table as a BASELINE audit entry';

-- Internal (no grants): the DDL guard records what a superuser did.
CREATE FUNCTION aegis.audit_event(operation text, table_name text, detail jsonb) RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_event_wrapper';
COMMENT ON FUNCTION aegis.audit_event(text, text, jsonb) IS
    'Internal: append one audit entry (used by the DDL guard)';

-- ===========================================================================
-- DDL guard: switching off RLS or the audit triggers of a protected table,
-- or dropping it, is refused for non-superusers and recorded for
-- superusers. ddl_command_start notes which protected tables are compliant
-- (RLS enabled and forced, capture triggers present and enabled);
-- ddl_command_end compares, so only a command that breaks a compliant table
-- is refused, never one that merely runs while another table is broken.
-- ===========================================================================

-- Definer rights: the guard runs as whoever issues the DDL, who may not read
-- the aegis catalog.
CREATE FUNCTION aegis.guard_compliant_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT t.relid::oid
FROM aegis.rls_enforced e
CROSS JOIN LATERAL (SELECT e.relid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt) t
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
WHERE c.relrowsecurity AND c.relforcerowsecurity
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_row()'::pg_catalog.regprocedure
                AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[]))
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_truncate()'::pg_catalog.regprocedure
                AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[]))
$$;
COMMENT ON FUNCTION aegis.guard_compliant_tables() IS
    'Internal: protected tables (and partitions) whose RLS is enabled and forced and whose audit triggers fire';

CREATE FUNCTION aegis.guard_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.set_config('aegis_guard.compliant',
        COALESCE((SELECT pg_catalog.string_agg(o::text, ',') FROM aegis.guard_compliant_tables() o), ''), true);
END
$$;
COMMENT ON FUNCTION aegis.guard_ddl_start() IS
    'Internal event trigger: note the compliant protected tables before a DDL command';

-- Refuse (non-superusers) or record (superusers) a change that left tables
-- in "broken" non-compliant. The refusal is also written to the server log
-- as a JSON line, which survives the rollback.
CREATE FUNCTION aegis.guard_report(names text[], command text, what text) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    is_super boolean;
    detail jsonb;
    t text;
BEGIN
    SELECT r.rolsuper INTO is_super FROM pg_catalog.pg_roles r
    WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER;
    detail := pg_catalog.jsonb_build_object('command', command, 'change', what,
        'tables', pg_catalog.to_jsonb(names), 'user', CURRENT_USER, 'session_user', SESSION_USER);
    IF COALESCE(is_super, false) THEN
        FOREACH t IN ARRAY names LOOP
            PERFORM aegis.audit_event('DDL', t, detail);
        END LOOP;
        RAISE WARNING 'pg_aegis: % %: recorded in the audit trail', what,
            pg_catalog.array_to_string(names, ', ');
        RETURN;
    END IF;
    RAISE LOG 'pg_aegis: %', (detail || '{"event": "ddl_refused"}')::text;
    RAISE EXCEPTION 'permission denied: % %', what, pg_catalog.array_to_string(names, ', ')
        USING ERRCODE = '42501',
              DETAIL = 'Row-level security and the audit triggers of tables protected by pg_aegis stay on.',
              HINT = 'An aegis_admin can unprotect the table first (aegis.unprotect), which is itself audited.';
END
$$;
COMMENT ON FUNCTION aegis.guard_report(text[], text, text) IS
    'Internal: refuse (non-superuser) or record (superuser) a change that weakened protected tables';

CREATE FUNCTION aegis.guard_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    before oid[];
    broken text[];
BEGIN
    before := pg_catalog.string_to_array(
        NULLIF(pg_catalog.current_setting('aegis_guard.compliant', true), ''), ',')::oid[];
    IF before IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.array_agg(pg_catalog.format('%I.%I', n.nspname, c.relname) ORDER BY 1) INTO broken
    FROM pg_catalog.unnest(before) b
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) b
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE b NOT IN (SELECT aegis.guard_compliant_tables());
    PERFORM pg_catalog.set_config('aegis_guard.compliant', '', true);
    IF broken IS NOT NULL THEN
        PERFORM aegis.guard_report(broken, tg_tag, 'switching off row-level security or audit triggers of protected table');
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.guard_ddl_end() IS
    'Internal event trigger: refuse or record a DDL command that weakened a protected table';

CREATE FUNCTION aegis.guard_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    dropped oid[];
    names text[];
BEGIN
    SELECT pg_catalog.array_agg(d.objid), pg_catalog.array_agg(d.object_identity ORDER BY d.object_identity)
    INTO dropped, names
    FROM pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.objsubid OPERATOR(pg_catalog.=) 0
      AND d.objid IN (SELECT aegis.guard_protected_tables());
    IF dropped IS NULL THEN
        RETURN;
    END IF;
    PERFORM aegis.guard_report(names, tg_tag, 'dropping protected table');
    -- A superuser dropped them (guard_report refused everyone else): forget
    -- them in the catalog too.
    PERFORM aegis.guard_forget(dropped);
END
$$;
COMMENT ON FUNCTION aegis.guard_sql_drop() IS
    'Internal event trigger: refuse or record dropping a protected table';

CREATE FUNCTION aegis.guard_protected_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT p.relid::oid FROM aegis.protected_tables p
UNION SELECT e.relid::oid FROM aegis.rls_enforced e
$$;
COMMENT ON FUNCTION aegis.guard_protected_tables() IS 'Internal: OIDs of protected tables';

CREATE FUNCTION aegis.guard_forget(dropped oid[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
DELETE FROM aegis.rls_enforced e WHERE e.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
DELETE FROM aegis.protected_tables p WHERE p.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
$$;
COMMENT ON FUNCTION aegis.guard_forget(oid[]) IS 'Internal: forget dropped protected tables (superuser only)';

CREATE EVENT TRIGGER aegis_guard_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'DROP TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION aegis.guard_ddl_start();
CREATE EVENT TRIGGER aegis_guard_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION aegis.guard_ddl_end();
CREATE EVENT TRIGGER aegis_guard_drop ON sql_drop
    EXECUTE FUNCTION aegis.guard_sql_drop();

-- Privileges of the new functions (as sql/99_finalize.sql grants them).
REVOKE EXECUTE ON FUNCTION
    aegis.verify_table(regclass), aegis.audit_baseline(regclass), aegis.audit_event(text, text, jsonb),
    aegis.guard_compliant_tables(), aegis.guard_ddl_start(), aegis.guard_report(text[], text, text),
    aegis.guard_ddl_end(), aegis.guard_sql_drop(), aegis.guard_protected_tables(), aegis.guard_forget(oid[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.verify_table(regclass) TO aegis_admin, aegis_auditor;
GRANT EXECUTE ON FUNCTION
    aegis.guard_compliant_tables(), aegis.guard_protected_tables(), aegis.guard_report(text[], text, text)
TO PUBLIC;

-- Tables protected before this update: their current rows become the
-- baseline verify_table() compares to (rows changed since 0.3.0 already have
-- entries; the baseline is newer and equal to them).
SELECT aegis.audit_baseline(e.relid) FROM aegis.rls_enforced e ORDER BY e.relid::pg_catalog.oid;

GRANT USAGE ON SCHEMA aegis TO PUBLIC;
