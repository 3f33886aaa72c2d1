-- pg_aegis 0.6.0 -> 0.7.0: what a fourth cold attack review of 0.6.0
-- found. The DDL guard fingerprints protected tables by OID (renaming a
-- schema or a role breaks nothing), follows what their policies and rules
-- use (functions, operators, views), and runs after every DDL command;
-- protect() refuses policies that call code a non-superuser owns;
-- retention and erasure record reads their statements set off (rules);
-- verify_chain() reports rows with transaction ids never assigned or
-- aborted and takes erasure receipts only from the chain or from entries
-- that may still be waiting for it. Digest-mode capture ("audit_inserts":
-- "digest"): statement triggers over transition tables, entries carrying
-- a content change (aegis.audit_log.content_change; entries without one
-- hash as before, so existing trails verify unchanged). A fresh 0.7.0
-- install and 0.6.0
-- updated with this script have the same catalog (pg_test/sql/upgrade.sql).
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.7.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

DROP FUNCTION aegis.run_restricted(oid, boolean, text, text[]);
-- apply_retention() also reports the expired rows it could not delete
-- because another transaction had them locked.
DROP FUNCTION aegis.apply_retention(boolean);
ALTER TABLE aegis.retention_rules ADD COLUMN last_locked bigint;
-- Integer epoch time columns (time_unit) and whole expired partitions.
ALTER TABLE aegis.retention_rules ADD COLUMN time_unit text CHECK (time_unit IN ('seconds', 'milliseconds'));
DROP FUNCTION aegis.set_retention(regclass, interval, name, text);
DROP FUNCTION aegis.check_retention_rule(regclass, interval, name, text);
DROP EVENT TRIGGER aegis_guard_end;
ALTER TABLE aegis.audit_log ADD COLUMN content_change bytea;
ALTER TABLE aegis.audit_log ALTER COLUMN content_change SET STORAGE EXTERNAL;
ALTER TABLE aegis.audit_log SET (toast_tuple_target = 4096);
-- Row images, in chunk entries arrays of up to 1,000 rows: compressed with
-- LZ4 where the server has it (a quarter of a bulk insert's time went to
-- pglz; LZ4 compresses several times faster, about as small).
DO $$ BEGIN
    ALTER TABLE aegis.audit_log ALTER COLUMN pk SET COMPRESSION lz4,
        ALTER COLUMN old_row SET COMPRESSION lz4, ALTER COLUMN new_row SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
-- Capture with statement triggers in both modes; the mode the triggers
-- and baseline of each protected table were made for.
ALTER TABLE aegis.rls_enforced ADD COLUMN capture text;
-- The role profile in force on each protected table.
ALTER TABLE aegis.rls_enforced ADD COLUMN profile text;

CREATE OR REPLACE VIEW aegis.retention_policies AS
SELECT r.relid AS table_name, r.keep, r.time_column, r.only_where,
       pg_catalog.now() - r.keep AS expires_before,
       (SELECT pg_catalog.count(*) FROM aegis.legal_holds h
        WHERE h.relid = r.relid::oid AND h.released_at IS NULL) AS active_holds,
       r.set_at, r.set_by, r.last_applied_at, r.last_deleted, r.last_held, r.last_locked, r.time_unit
FROM aegis.retention_rules r;
COMMENT ON VIEW aegis.retention_policies IS
    'Retention policies: period, time column, filter, active legal holds and the last run';

ALTER TABLE aegis.alert_state DROP CONSTRAINT alert_state_pkey;
-- The cooldown is per metrics table too (firings before the update: none).
ALTER TABLE aegis.alert_state ADD COLUMN relid oid;
CREATE INDEX alert_state_rule_table_server ON aegis.alert_state (rule_id, relid, server_id, last_fired_at);
COMMENT ON TABLE aegis.alert_state IS 'Internal: when each alert rule fired for each server of each metrics table (cooldown; appended, pruned by the worker)';
ALTER TABLE aegis.metric_baselines DROP CONSTRAINT metric_baselines_n_check;
ALTER TABLE aegis.metric_baselines ADD CONSTRAINT metric_baselines_n_check CHECK (n >= 0);
COMMENT ON TABLE aegis.metric_baselines IS
    'Internal: recent mean and variance of each server''s metrics, for anomaly rules (folded; see current_baselines())';
CREATE TABLE aegis.metric_baseline_deltas (
    relid     oid NOT NULL,
    metric    name NOT NULL,
    server_id text NOT NULL,
    n         bigint NOT NULL CHECK (n > 0),
    mean      double precision NOT NULL,
    m2        double precision NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX metric_baseline_deltas_key ON aegis.metric_baseline_deltas (relid, metric, server_id);
COMMENT ON TABLE aegis.metric_baseline_deltas IS
    'Internal: each insert statement''s count, mean and squared deviations per server, not yet folded into metric_baselines';

-- Every alert pg_aegis raised, metric and security: what a notification's
-- id points to. Only pg_aegis's own definer code writes it (no grants);
-- readers see what row-level security lets them: admins and auditors all,
-- DevOps metric alerts, on-call engineers metric alerts of the servers
-- assigned to them now. Runtime record: not dumped.
CREATE TABLE aegis.alert_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raised_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind       text NOT NULL CHECK (kind IN ('metric', 'security')),
    alert      text NOT NULL,
    severity   text NOT NULL,
    server_id  text,
    raised_by  name NOT NULL,
    detail     jsonb NOT NULL
);
COMMENT ON TABLE aegis.alert_events IS
    'Alerts pg_aegis raised (metric and security), read under row-level security; NOTIFY aegis_alerts carries only their id';
ALTER TABLE aegis.alert_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY admins_and_auditors ON aegis.alert_events FOR SELECT TO aegis_admin, aegis_auditor USING (true);
CREATE POLICY devops_metrics ON aegis.alert_events FOR SELECT TO aegis_devops USING (kind = 'metric');
CREATE POLICY oncall_assigned ON aegis.alert_events FOR SELECT TO aegis_oncall
    USING (kind = 'metric' AND server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
GRANT SELECT ON aegis.alert_events TO aegis_admin, aegis_auditor, aegis_devops, aegis_oncall;

-- Record an alert and announce it: the aegis.alert_events row, then
-- NOTIFY aegis_alerts with its id (sent at commit). Internal: pg_aegis's
-- own code calls it (metric alerts as the extension owner, security alerts
-- inside security_alerts() and for the worker); granted to nobody.
CREATE FUNCTION aegis.announce_alert(kind text, alert text, severity text, server_id text, raised_by name, detail jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    event_id bigint;
BEGIN
    INSERT INTO aegis.alert_events (kind, alert, severity, server_id, raised_by, detail)
    VALUES (kind, alert, severity, server_id, raised_by, detail)
    RETURNING id INTO event_id;
    PERFORM pg_catalog.pg_notify('aegis_alerts', pg_catalog.jsonb_build_object(
        'source', 'pg_aegis', 'database', pg_catalog.current_database(), 'id', event_id)::text);
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION aegis.announce_alert(text, text, text, text, name, jsonb) IS
    'Internal: record an alert in aegis.alert_events and NOTIFY aegis_alerts with its id';

-- What a listener does with a notification: the alert it announces, if it
-- is genuine (pg_aegis's JSON, this database, an id of aegis.alert_events)
-- and the caller may see it; no row otherwise (a forged payload, garbage,
-- another database's alert, or one the caller may not read). SECURITY
-- INVOKER: row-level security decides.
CREATE FUNCTION aegis.alert_event(notification text) RETURNS SETOF aegis.alert_events
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    j jsonb;
BEGIN
    BEGIN
        j := notification::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        RETURN;
    END;
    IF pg_catalog.jsonb_typeof(j) IS DISTINCT FROM 'object'
       OR j ->> 'source' IS DISTINCT FROM 'pg_aegis'
       OR j ->> 'database' IS DISTINCT FROM pg_catalog.current_database()
       OR pg_catalog.jsonb_typeof(j -> 'id') IS DISTINCT FROM 'number'
       OR (j ->> 'id') !~ '^[0-9]{1,18}$'
       OR NOT pg_catalog.has_table_privilege('aegis.alert_events', 'SELECT') THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT e.* FROM aegis.alert_events e WHERE e.id = (j ->> 'id')::bigint;
END
$$;
COMMENT ON FUNCTION aegis.alert_event(text) IS
    'The alert a NOTIFY aegis_alerts payload announces, if genuine and visible to the caller; no row otherwise';

-- Which table's inserts are evaluated, and how its columns map: the entity
-- a value belongs to (a server, a Zabbix itemid: any built-in type), the
-- time column (a timestamp, or an integer epoch in seconds or
-- milliseconds), the metric columns the rules may name, and where alerts
-- go besides aegis.alert_events (an alerts table a superuser owns, and
-- which of its columns take each field; none: alert_events only). Written
-- only by attach_metric_alerts() / detach_metric_alerts(), which check it
-- first; the trigger reads it with each insert.
CREATE TABLE aegis.metric_alert_sources (
    relid          regclass PRIMARY KEY,
    entity_column  name NOT NULL,
    time_column    name NOT NULL,
    time_unit      text CHECK (time_unit IN ('seconds', 'milliseconds')),
    metrics        name[] NOT NULL,
    alerts_table   regclass,
    alerts_columns jsonb,
    attached_by    name NOT NULL DEFAULT CURRENT_USER,
    attached_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aegis.metric_alert_sources IS
    'Metrics tables whose inserts metric alerts evaluate, and how their columns map (aegis.attach_metric_alerts)';
SELECT pg_catalog.pg_extension_config_dump('aegis.metric_alert_sources', '');
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.metric_alert_sources
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();

CREATE TABLE aegis.scopes (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    key_table  regclass NOT NULL,
    key_column name NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT CURRENT_USER
);
COMMENT ON TABLE aegis.scopes IS
    'Row scopes: the table and column whose key people are assigned to (aegis.create_scope)';

CREATE TABLE aegis.scope_assignments (
    engineer    regrole NOT NULL,
    scope       text NOT NULL REFERENCES aegis.scopes ON DELETE CASCADE,
    key         text NOT NULL,
    until       timestamptz,
    assigned_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    assigned_by name NOT NULL DEFAULT CURRENT_USER,
    PRIMARY KEY (engineer, scope, key)
);
CREATE INDEX ON aegis.scope_assignments (scope, key);
COMMENT ON TABLE aegis.scope_assignments IS
    'Who is assigned to which keys of a scope, until when (NULL = open-ended) (aegis.assign_scope)';
SELECT pg_catalog.pg_extension_config_dump('aegis.scopes', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.scope_assignments', '');
ALTER TABLE aegis.scope_assignments ENABLE ROW LEVEL SECURITY;
ALTER TABLE aegis.scope_assignments FORCE ROW LEVEL SECURITY;
-- Everyone reads their own assignments (the policies need them); admins
-- all of them; auditors read all.
CREATE POLICY own ON aegis.scope_assignments FOR SELECT TO PUBLIC USING (aegis.is_member(engineer::oid));
CREATE POLICY admin_all ON aegis.scope_assignments FOR ALL TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY auditor_read ON aegis.scope_assignments FOR SELECT TO aegis_auditor USING (true);
GRANT SELECT ON aegis.scope_assignments, aegis.scopes TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON aegis.scope_assignments TO aegis_admin;

CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scopes
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
-- Where incremental verification resumes: the newest position a
-- verification found sound, its chain hash, signed with the head key (as a
-- pruning checkpoint is), and the sealing horizon then (entries outside the
-- chain are looked for from there on). One row, written only by
-- verify_chain_incremental(); not dumped (after a restore the first
-- incremental verification is a full one).
CREATE TABLE aegis.audit_verified (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position    bigint NOT NULL,
    chain_hash  bytea NOT NULL,
    time_us     bigint NOT NULL,
    signature   bytea NOT NULL,
    horizon     xid8 NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aegis.audit_verified IS
    'Internal: the newest verified, signed chain position incremental verification resumes from';
-- The one row exists from the start (a placeholder no signature matches),
-- so recording a checkpoint is an UPDATE that skips a row someone else has
-- locked: a verification left open in a transaction never makes another
-- (the worker's) wait.
INSERT INTO aegis.audit_verified (position, chain_hash, time_us, signature, horizon)
VALUES (0, '\x', 0, '\x', '0');
REVOKE ALL ON aegis.audit_verified FROM PUBLIC;
GRANT SELECT (position, verified_at) ON aegis.audit_verified TO aegis_auditor, aegis_admin;

CREATE FUNCTION aegis.audit_statement() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_statement_wrapper';
COMMENT ON FUNCTION aegis.audit_statement() IS
    'Statement triggers protect() attaches: AFTER INSERT, UPDATE or DELETE over transition tables (row images in chunks; in digest mode one entry per statement with its content change), BEFORE TRUNCATE of a digest-mode partition (its content leaves)';

CREATE FUNCTION aegis.verify_chain_incremental()
RETURNS TABLE (ok boolean, entries_checked bigint, first_bad_position bigint, problem text, verified_from bigint)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'verify_chain_incremental_wrapper';
COMMENT ON FUNCTION aegis.verify_chain_incremental() IS
    'verify_chain() from the newest verified, signed checkpoint on (the whole chain the first time), then move the checkpoint';

-- What a protected table's inserts record: 'image' (the classified image
-- of each row) or 'digest' (a row count and a content digest). Both modes
-- capture with statement triggers over transition tables. protect()'s
-- "audit_inserts" key; image by default.
CREATE FUNCTION aegis.capture_mode(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT COALESCE((SELECT p.policy ->> 'audit_inserts' FROM aegis.protected_tables p
                     WHERE p.relid = COALESCE(pg_catalog.pg_partition_root(tbl), tbl)), 'image')
$$;
COMMENT ON FUNCTION aegis.capture_mode(regclass) IS
    'Internal: how a protected table''s changes are captured (image or digest)';

-- Is this trigger one of the statement capture triggers, exactly
-- as protect() makes them (name, event, transition tables, no condition,
-- column list or arguments)?
CREATE FUNCTION aegis.is_statement_capture(trigger oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT COALESCE((SELECT t.tgfoid = 'aegis.audit_statement()'::pg_catalog.regprocedure
                            AND t.tgqual IS NULL AND t.tgnargs = 0 AND t.tgattr = ''::pg_catalog.int2vector
                            AND ((t.tgname = 'aegis_audit_insert' AND t.tgtype = 4
                                  AND t.tgoldtable IS NULL AND t.tgnewtable = 'aegis_new')
                              OR (t.tgname = 'aegis_audit_update' AND t.tgtype = 16
                                  AND t.tgoldtable = 'aegis_old' AND t.tgnewtable = 'aegis_new')
                              OR (t.tgname = 'aegis_audit_delete' AND t.tgtype = 8
                                  AND t.tgoldtable = 'aegis_old' AND t.tgnewtable IS NULL)
                              OR (t.tgname = 'aegis_audit_truncate_digest' AND t.tgtype = 34
                                  AND t.tgoldtable IS NULL AND t.tgnewtable IS NULL))
                     FROM pg_catalog.pg_trigger t WHERE t.oid = trigger), false)
$$;
COMMENT ON FUNCTION aegis.is_statement_capture(oid) IS
    'Internal: is this trigger one of the statement capture triggers, exactly as protect() makes them?';

-- A protected table's capture triggers replaced by those of its recorded
-- mode (protect() with another "audit_inserts"): one step of pg_aegis's
-- own, so the DDL guard's event triggers (enabled on origin) do not fire on
-- the half-way states; enforce_rls() remembers the result. Not granted:
-- runs only inside enforce_rls().
CREATE FUNCTION aegis.switch_capture(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
SET session_replication_role = replica
AS $$
BEGIN
    PERFORM aegis.switch_rls(tbl, true);
END
$$;
COMMENT ON FUNCTION aegis.switch_capture(regclass) IS
    'Internal: replace a protected table''s capture triggers with those of its mode (no grants)';

-- Runs one statement on a table (target) as a role in a security-restricted
-- operation (see src/security.rs); rows come back as text arrays, DML as
-- its row count. Its own reads of the target are recorded by the run's
-- RETENTION or ERASURE entry, not as reads; anything else it reads is.
-- Internal: granted to nobody (only apply_retention() and erase_subject(),
-- which run as the extension owner, call it).
CREATE FUNCTION aegis.run_restricted(role oid, target regclass, noforce_rls boolean, query text, args text[])
RETURNS SETOF text[]
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'run_restricted_wrapper';
COMMENT ON FUNCTION aegis.run_restricted(oid, regclass, boolean, text, text[]) IS
    'Internal: run one statement on a table as a role inside a security-restricted operation';

-- The code and views a table's row-level security policies and rules use,
-- found through pg_depend and followed through what those depend on in
-- turn (operators to their functions, views to their definitions, SQL
-- functions with a BEGIN ATOMIC body to what they call). Replacing any of
-- them changes what the table shows as surely as changing the policy.
-- (A PL/pgSQL body records no dependencies: what it calls is its owner's
-- to vouch for, which is why policies may only call code a superuser owns,
-- aegis.policy_untrusted_code().)
CREATE FUNCTION aegis.policy_code(tbl oid, with_rules boolean)
RETURNS TABLE (classid oid, objid oid)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH RECURSIVE uses(classid, objid) AS (
    -- What the table's policies and rules depend on (index lookups by
    -- depender: pg_depend_depender_index).
    SELECT d.refclassid, d.refobjid
    FROM (SELECT 'pg_catalog.pg_policy'::regclass::oid AS classid, p.oid AS objid
          FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl
          UNION ALL
          SELECT 'pg_catalog.pg_rewrite'::regclass::oid, w.oid
          FROM pg_catalog.pg_rewrite w WHERE w.ev_class = tbl AND with_rules) o
    JOIN pg_catalog.pg_depend d ON d.classid = o.classid AND d.objid = o.objid
    WHERE d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_class'::regclass)
      AND NOT (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tbl)
    UNION
    -- And what those depend on: a function or operator directly, a view
    -- through its rules.
    SELECT d.refclassid, d.refobjid
    FROM uses u
    LEFT JOIN pg_catalog.pg_rewrite w ON u.classid = 'pg_catalog.pg_class'::regclass AND w.ev_class = u.objid
    JOIN pg_catalog.pg_depend d
      ON d.classid = CASE WHEN u.classid = 'pg_catalog.pg_class'::regclass THEN 'pg_catalog.pg_rewrite'::regclass::oid ELSE u.classid END
     AND d.objid = CASE WHEN u.classid = 'pg_catalog.pg_class'::regclass THEN w.oid ELSE u.objid END
    WHERE d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_class'::regclass)
      AND d.deptype = 'n' AND u.objid >= 16384
)
SELECT u.classid, u.objid FROM uses u
WHERE u.objid >= 16384  -- built-in objects cannot change
$$;
COMMENT ON FUNCTION aegis.policy_code(oid, boolean) IS
    'Internal: functions, operators and relations a table''s policies (and rules) use, followed through their own dependencies';

-- What a table's row-level security policies depend on that a role other
-- than a superuser controls: that role could change what the policies let
-- through without any DDL on the table, so protect() refuses the table.
-- A policy may use built-in objects, objects a superuser owns, and the
-- rows of protected tables (their changes are recorded); not functions,
-- operators, types (an enum's labels can be renamed), text search
-- configurations and dictionaries, collations or relations a non-superuser
-- owns (a view can be redefined, an unprotected table's rows changed
-- unrecorded), and no built-in function that looks an object up by name at
-- run time (has_table_privilege('t', ...), to_regclass(), a cast of text to
-- regclass ...): creating the object or granting a privilege would change
-- the answer. (Rules run as the table's owner; they are fingerprinted with
-- what they use.)
CREATE FUNCTION aegis.policy_untrusted_code(tbl oid) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH deps AS (
    SELECT d.refclassid AS classid, d.refobjid AS objid
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid
    WHERE p.polrelid = tbl AND d.refobjid >= 16384
      AND NOT (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tbl)
      AND d.refclassid <> 'pg_catalog.pg_authid'::regclass
    UNION
    SELECT u.classid, u.objid FROM aegis.policy_code(tbl, false) u
), owned AS (
    SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS what, d.classid, d.objid,
           CASE d.classid
               WHEN 'pg_catalog.pg_proc'::regclass THEN (SELECT f.proowner FROM pg_catalog.pg_proc f WHERE f.oid = d.objid)
               WHEN 'pg_catalog.pg_operator'::regclass THEN (SELECT o.oprowner FROM pg_catalog.pg_operator o WHERE o.oid = d.objid)
               WHEN 'pg_catalog.pg_type'::regclass THEN (SELECT t.typowner FROM pg_catalog.pg_type t WHERE t.oid = d.objid)
               WHEN 'pg_catalog.pg_ts_config'::regclass THEN (SELECT c.cfgowner FROM pg_catalog.pg_ts_config c WHERE c.oid = d.objid)
               WHEN 'pg_catalog.pg_ts_dict'::regclass THEN (SELECT c.dictowner FROM pg_catalog.pg_ts_dict c WHERE c.oid = d.objid)
               WHEN 'pg_catalog.pg_collation'::regclass THEN (SELECT c.collowner FROM pg_catalog.pg_collation c WHERE c.oid = d.objid)
               WHEN 'pg_catalog.pg_class'::regclass THEN (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = d.objid)
           END AS owner
    FROM deps d
), lookups AS (
    -- Run-time name lookups, found in the stored expressions themselves
    -- (built-in functions record no dependency).
    SELECT 'run-time lookup by name: ' || f.oid::regprocedure::text AS what
    FROM pg_catalog.pg_policy p
    CROSS JOIN LATERAL pg_catalog.regexp_matches(COALESCE(p.polqual::text, '') || ' ' || COALESCE(p.polwithcheck::text, ''),
                                                 ':(?:funcid|opfuncid) (\d+)', 'g') m
    JOIN pg_catalog.pg_proc f ON f.oid = m[1]::oid
    WHERE p.polrelid = tbl
      AND (f.proname ~ '^has_.*_privilege$' OR f.proname ~ '^to_reg'
           OR f.prorettype IN (SELECT t.oid FROM pg_catalog.pg_type t
                               WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typname ~ '^reg'))
    UNION
    SELECT 'run-time lookup by name: cast to ' || t.typname
    FROM pg_catalog.pg_policy p
    CROSS JOIN LATERAL pg_catalog.regexp_matches(COALESCE(p.polqual::text, '') || ' ' || COALESCE(p.polwithcheck::text, ''),
                                                 ':resulttype (\d+)', 'g') m
    JOIN pg_catalog.pg_type t ON t.oid = m[1]::oid
    WHERE p.polrelid = tbl AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typname ~ '^reg'
)
SELECT pg_catalog.array_agg(x.what ORDER BY x.what)
FROM (SELECT o.what FROM owned o
      WHERE NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = o.owner), false)
        AND NOT (o.classid = 'pg_catalog.pg_class'::regclass AND o.objid IN (SELECT aegis.guard_protected_tables()))
      UNION
      SELECT l.what FROM lookups l) x
$$;
COMMENT ON FUNCTION aegis.policy_untrusted_code(oid) IS
    'Internal: what a table''s policies depend on that a non-superuser controls, and run-time name lookups in them';

-- Can an entry outside the chain still be waiting to be sealed? Only if its
-- transaction is at or above the sealing horizon, was assigned (below the
-- next transaction id) and did not abort (an aborted transaction's own
-- entries are invisible). Any other row outside the chain was inserted by
-- hand: verify_chain() reports it, and never takes it as an erasure
-- receipt. Before the first seal (a new trail, or one restored from a dump,
-- whose entries carry another cluster's transaction ids) every entry is
-- waiting: the first seal takes them all.
CREATE FUNCTION aegis.entry_may_be_pending(x xid8) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    horizon xid8;
BEGIN
    SELECT s.horizon INTO horizon FROM aegis.audit_seal_state s;
    IF horizon IS NULL THEN
        RETURN true;
    ELSIF x < horizon THEN
        RETURN false;
    ELSIF x < pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()) THEN
        RETURN COALESCE(pg_catalog.pg_xact_status(x), 'committed') <> 'aborted';
    END IF;
    -- At or past the snapshot's xmax, a visible entry is this
    -- transaction's own (its xid or a subtransaction's, when no later
    -- transaction has finished yet: still in progress), or names an xid
    -- never assigned (pg_xact_status() refuses one in the future).
    BEGIN
        RETURN COALESCE(pg_catalog.pg_xact_status(x) = 'in progress', false);
    EXCEPTION WHEN OTHERS THEN
        RETURN false;
    END;
END
$$;
COMMENT ON FUNCTION aegis.entry_may_be_pending(xid8) IS
    'Internal: can an entry of this transaction still be waiting for the chain (assigned, not aborted, at or above the horizon)?';

-- Refuse (non-superusers) or record (superusers) a command that left
-- protected tables broken: no longer compliant, or owner, rules, policies
-- (and what they use), inheritance children, partitions or column types
-- changed, compared with the state remembered when pg_aegis accepted them.
-- Called by the ddl_command_end event trigger, and by the utility hook
-- after REASSIGN OWNED (which fires no event trigger).
CREATE FUNCTION aegis.guard_verify(command text) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    broken text[];
BEGIN
    SELECT pg_catalog.array_agg(g.name ORDER BY g.name) INTO broken
    FROM aegis.guard_check() g WHERE g.broken;
    IF broken IS NOT NULL THEN
        PERFORM aegis.guard_report(broken, command,
            'changing row-level security, audit triggers, rules, policies, grants, inheritance, partitions, ownership, columns or primary key of protected table');
        -- Only a superuser gets here (guard_report refused everyone else):
        -- the change is recorded, and is what the guard compares with now.
        PERFORM aegis.guard_remember();
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.guard_verify(text) IS
    'Internal: refuse (non-superuser) or record (superuser) a command that left protected tables broken';

-- The background sealer could not take the chain's lock within its bounded
-- wait: a security alert naming who holds it (pid, role, application,
-- since when), at most once every 10 minutes; the worker goes on with its
-- other duties and tries again next round. Internal: the worker (a
-- superuser) calls it; granted to nobody.
CREATE FUNCTION aegis.report_blocked_sealer(holders text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM aegis.security_alert_state s
               WHERE s.alert = 'audit_sealer_blocked' AND s.last_at > pg_catalog.now() - interval '10 minutes') THEN
        RETURN;
    END IF;
    PERFORM aegis.announce_alert('security', 'audit_sealer_blocked', 'warning', NULL, SESSION_USER,
            pg_catalog.jsonb_build_object('holders', holders,
                'hint', 'a session holds a lock on aegis.audit_chain; sealing waits for it (pg_terminate_backend(pid) ends it)'));
    INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES ('audit_sealer_blocked', pg_catalog.now())
    ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
END
$$;
COMMENT ON FUNCTION aegis.report_blocked_sealer(text) IS
    'Internal: the background sealer reports who holds the chain''s lock (security alert, at most every 10 minutes)';

-- The baselines in force for a metrics table: each folded baseline merged
-- with its pending deltas (taken together as one batch, then merged with
-- the folded figures, whose count is capped at 1000), optionally for one
-- metric and some servers only.
CREATE FUNCTION aegis.current_baselines(rel oid, only_metric name DEFAULT NULL, servers text[] DEFAULT NULL)
RETURNS TABLE (metric name, server_id text, n bigint, mean double precision, m2 double precision)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
DECLARE
    -- Only the conditions given: each call is planned for them, so the
    -- indexes on (relid, metric, server_id) serve the inserting statement.
    cond text := 'x.relid = $1'
        || CASE WHEN only_metric IS NOT NULL THEN ' AND x.metric = $2' ELSE '' END
        || CASE WHEN servers IS NOT NULL THEN ' AND x.server_id = ANY ($3)' ELSE '' END;
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format($q$
    WITH p AS (
        SELECT x.metric, x.server_id, x.n, x.mean, x.m2,
               pg_catalog.sum(x.n * x.mean) OVER w / pg_catalog.sum(x.n) OVER w AS grand
        FROM aegis.metric_baseline_deltas x
        WHERE %1$s
        WINDOW w AS (PARTITION BY x.metric, x.server_id)
    ), pending AS (
        SELECT p.metric, p.server_id, pg_catalog.sum(p.n)::bigint AS n, pg_catalog.min(p.grand) AS mean,
               pg_catalog.sum(p.m2 + p.n * ((p.mean - p.grand) ^ 2)) AS m2
        FROM p GROUP BY p.metric, p.server_id
    ), folded AS (
        SELECT x.metric, x.server_id, LEAST(x.n, 1000) AS w, x.n, x.mean, x.m2
        FROM aegis.metric_baselines x
        WHERE %1$s AND x.n > 0
    )
    SELECT COALESCE(f.metric, d.metric), COALESCE(f.server_id, d.server_id),
           CASE WHEN d.n IS NULL THEN f.n WHEN f.n IS NULL THEN d.n ELSE f.w + d.n END,
           CASE WHEN d.n IS NULL THEN f.mean WHEN f.n IS NULL THEN d.mean
                ELSE ((f.w * f.mean) + (d.n * d.mean)) / (f.w + d.n) END,
           CASE WHEN d.n IS NULL THEN f.m2 WHEN f.n IS NULL THEN d.m2
                ELSE ((f.m2 * f.w) / f.n) + d.m2 + (((d.mean - f.mean) ^ 2) * f.w * d.n) / (f.w + d.n) END
    FROM folded f FULL JOIN pending d ON d.metric = f.metric AND d.server_id = f.server_id
    $q$, cond) USING rel, only_metric, servers;
END
$fn$;
COMMENT ON FUNCTION aegis.current_baselines(oid, name, text[]) IS
    'The anomaly baselines in force for a metrics table: folded figures merged with pending deltas';

-- Fold pending deltas into the baselines, for one metrics table and some
-- servers (the inserting statement) or all (the worker). Never waits: the
-- baselines another transaction is folding right now (their rows locked
-- until it ends) are skipped (SKIP LOCKED), and a baseline's row another
-- transaction is creating at this moment is waited for 10 ms at most
-- (then nothing is folded this time). Only in READ COMMITTED, where each
-- statement sees what committed before it (a transaction-snapshot
-- isolation level would fail on a baseline folded since its snapshot):
-- anything else leaves it to later. Returns how many baselines it folded.
CREATE FUNCTION aegis.fold_metric_baselines(rel oid DEFAULT NULL, servers text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
SET lock_timeout = '10ms'
AS $$
DECLARE
    rels oid[];
    mets name[];
    srvs text[];
    folded bigint;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN 0;
    END IF;
    BEGIN
        -- A baseline's row exists once it has deltas (created once, ever).
        INSERT INTO aegis.metric_baselines (relid, metric, server_id, n, mean, m2, updated_at)
        SELECT DISTINCT d.relid, d.metric, d.server_id, 0, 0, 0, pg_catalog.now()
        FROM aegis.metric_baseline_deltas d
        WHERE (rel IS NULL OR d.relid = rel) AND (servers IS NULL OR d.server_id = ANY (servers))
          AND NOT EXISTS (SELECT 1 FROM aegis.metric_baselines b
                          WHERE b.relid = d.relid AND b.metric = d.metric AND b.server_id = d.server_id)
        ON CONFLICT (relid, metric, server_id) DO NOTHING;
        -- The rows of the baselines with pending deltas that no other
        -- transaction is folding.
        SELECT pg_catalog.array_agg(k.relid), pg_catalog.array_agg(k.metric), pg_catalog.array_agg(k.server_id)
        INTO rels, mets, srvs
        FROM (SELECT b.relid, b.metric, b.server_id
              FROM aegis.metric_baselines b
              WHERE (rel IS NULL OR b.relid = rel) AND (servers IS NULL OR b.server_id = ANY (servers))
                AND EXISTS (SELECT 1 FROM aegis.metric_baseline_deltas d
                            WHERE d.relid = b.relid AND d.metric = b.metric AND d.server_id = b.server_id)
              FOR UPDATE OF b SKIP LOCKED) k;
    EXCEPTION WHEN lock_not_available THEN
        RETURN 0;
    END;
    IF rels IS NULL THEN
        RETURN 0;
    END IF;
    -- A statement of its own, so it sees every fold committed before the
    -- rows were locked: the deltas taken out are exactly those merged in.
    WITH k AS (
        SELECT * FROM ROWS FROM (pg_catalog.unnest(rels), pg_catalog.unnest(mets), pg_catalog.unnest(srvs)) AS k(relid, metric, server_id)
    ), taken AS (
        DELETE FROM aegis.metric_baseline_deltas d USING k
        WHERE d.relid = k.relid AND d.metric = k.metric AND d.server_id = k.server_id
        RETURNING d.relid, d.metric, d.server_id, d.n, d.mean, d.m2
    ), p AS (
        SELECT t.*, pg_catalog.sum(t.n * t.mean) OVER w / pg_catalog.sum(t.n) OVER w AS grand
        FROM taken t WINDOW w AS (PARTITION BY t.relid, t.metric, t.server_id)
    ), d AS (
        SELECT p.relid, p.metric, p.server_id, pg_catalog.sum(p.n)::bigint AS n, pg_catalog.min(p.grand) AS mean,
               pg_catalog.sum(p.m2 + p.n * ((p.mean - p.grand) ^ 2)) AS m2
        FROM p GROUP BY p.relid, p.metric, p.server_id
    ), merged AS (
        UPDATE aegis.metric_baselines b SET
            n = LEAST(b.n, 1000) + d.n,
            mean = ((LEAST(b.n, 1000) * b.mean) + (d.n * d.mean)) / (LEAST(b.n, 1000) + d.n),
            m2 = CASE WHEN b.n = 0 THEN d.m2
                      ELSE ((b.m2 * LEAST(b.n, 1000)) / b.n) + d.m2
                           + (((d.mean - b.mean) ^ 2) * LEAST(b.n, 1000) * d.n) / (LEAST(b.n, 1000) + d.n) END,
            updated_at = pg_catalog.now()
        FROM d
        WHERE b.relid = d.relid AND b.metric = d.metric AND b.server_id = d.server_id
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO folded FROM merged;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION aegis.fold_metric_baselines(oid, text[]) IS
    'Internal: fold pending metric deltas into the anomaly baselines, skipping any another transaction is folding';

-- Whether the calling statement runs inside a transaction block (explicit
-- BEGIN, or several statements sent as one query). Internal.
CREATE FUNCTION aegis.in_transaction_block() RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'in_transaction_block_wrapper';
COMMENT ON FUNCTION aegis.in_transaction_block() IS
    'Internal: whether the calling statement runs inside a transaction block';

-- The background worker's upkeep of metric alerts, every round: fold every
-- pending delta no insert could fold, forget firings past their rule's
-- cooldown (nobody locks those rows: the delete never waits).
CREATE FUNCTION aegis.alert_upkeep() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    folded bigint;
BEGIN
    folded := aegis.fold_metric_baselines();
    DELETE FROM aegis.alert_state s
    WHERE s.last_fired_at < pg_catalog.now()
          - COALESCE((SELECT r.cooldown FROM aegis.alert_rules r WHERE r.id = s.rule_id), interval '0');
    RETURN folded;
END
$$;
COMMENT ON FUNCTION aegis.alert_upkeep() IS
    'Internal: the worker folds pending metric deltas and forgets firings past their cooldown';

-- SECURITY DEFINER: deleting expired rows must see every row whatever the
-- caller's row-level security, and the scheduler runs it with no user at all.
-- Privilege rules (see src/security.rs and the README's security model):
--   * a policy decides with no more rights than its author (set_by) has:
--     at every run the author must still read every row of the table and
--     the time column, and the filter is validated by row_filter() for the
--     author (built-in code only, columns the author may read);
--   * every statement on the table (the scan that selects expired rows,
--     the counts, the deletions) runs as the owner of the table (or
--     partition), in a security-restricted operation exempt from its FORCE
--     ROW LEVEL SECURITY, with the conditions and legal holds checked
--     again: every trigger, rule, constraint, index or partition-key
--     expression or other code of the owner's runs with the owner's
--     rights, never pg_aegis's or the author's;
--   * nothing else touches a user table. Tables come from aegis.rls_enforced
--     (written only by enforce_rls), identifiers through %I/regclass, values
--     as bound parameters. Empty search_path. EXECUTE: aegis_admin.
--
-- Deletion is batched: one scan collects the expired rows' ctids, and each
-- batch deletes its ctids (a TID range scan over the batch's pages) with the
-- conditions checked again, so a row changed or newly held meanwhile is
-- kept. DELETE takes only ROW EXCLUSIVE locks, which never block concurrent
-- inserts; batches bound the after-trigger queue. Holds cannot change during
-- a run (SHARE lock on aegis.legal_holds: place_legal_hold waits for the run
-- to commit).
--
-- Whole partitions: a digest-mode table range-partitioned by its time
-- column, with no row filter in its policy, loses each partition whose
-- rows have all expired (expired_partitions()) by DROP TABLE instead of row
-- by row, after every table's row-wise deletions (the drop locks the
-- parent until the run commits, which then follows at once). Each
-- partition is locked (ACCESS EXCLUSIVE, waiting at most 2 s; a busy one
-- is kept for a later run), checked for rows a legal hold covers (then
-- only its unheld rows are deleted, in one statement as its owner), its
-- content recorded as one RETENTION entry (aegis.retire_partition: the
-- digest of what leaves, so verify_table() still balances) and dropped;
-- the DDL guard does not fire for it (session_replication_role = replica
-- for the DROP alone) and forgets it. If dropping fails (a view depends on
-- the partition, the parent is busy), every drop of that table is undone
-- with its entries and its partitions' expired rows are deleted row by row
-- (one statement per partition).
CREATE FUNCTION aegis.apply_retention(dry_run boolean DEFAULT false)
RETURNS TABLE(table_name text, rows_affected bigint, rows_locked bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
-- The cutoff is handed to each statement as text: it must read back as the
-- same instant whatever the caller's settings (a DateStyle and TimeZone
-- whose abbreviation reads back as another zone would move it by hours).
-- A timestamp without time zone column is compared as UTC.
SET DateStyle = 'ISO, YMD'
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    r record;
    batch_size integer := 10000;
    cutoff timestamptz;
    cutoff_val text;
    expired text;
    held text;
    hold_ids bigint[];
    n_deleted bigint;
    n_held bigint;
    n_locked bigint;
    n_batch bigint;
    locked text;
    author regrole;
    owner oid;
    part regclass;
    part_owner oid;
    ids text;
    lo text;
    hi text;
    counts text[];
    drops regclass[];
    -- One element per table (res_*) and per partition to drop (d_*).
    res_table text[] := '{}';
    res_relid regclass[] := '{}';
    res_rows bigint[] := '{}';
    res_held bigint[] := '{}';
    res_locked bigint[] := '{}';
    res_event jsonb[] := '{}';
    d_idx integer[] := '{}';
    d_part regclass[] := '{}';
    d_held text[] := '{}';
    d_expired text[] := '{}';
    d_cutoff text[] := '{}';
    i integer;
    k integer;
    k_end integer;
    ready regclass[];
    dropped text[];
    srr text;
    lt text;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- Each statement must see what was committed before it: rows inserted
    -- after an older snapshot (a legal hold's rows among them) would be
    -- invisible to the checks and dropped with their partition.
    IF NOT dry_run AND pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'apply_retention() runs only at READ COMMITTED, not %', pg_catalog.current_setting('transaction_isolation')
            USING ERRCODE = '25001';
    END IF;
    IF NOT dry_run THEN
        LOCK TABLE aegis.legal_holds IN SHARE MODE;
    END IF;
    FOR r IN
        SELECT rr.* FROM aegis.retention_rules rr ORDER BY rr.relid::text
    LOOP
        i := pg_catalog.cardinality(res_table) + 1;
        res_table[i] := r.relid::text;
        res_relid[i] := r.relid;
        BEGIN
            PERFORM aegis.lifecycle_check_table(r.relid, r.time_column);
            author := pg_catalog.to_regrole(pg_catalog.quote_ident(r.set_by));
            IF author IS NULL THEN
                RAISE EXCEPTION 'role "%", who set this retention policy, no longer exists', r.set_by
                    USING ERRCODE = '42704', HINT = 'Set the policy again with aegis.set_retention().';
            END IF;
            -- The author's rights bound the policy at every run: every row
            -- and the columns it names (row_filter() checks the filter's).
            IF NOT (pg_catalog.has_column_privilege(author, r.relid, r.time_column, 'SELECT')
                    AND aegis.role_reads_all_rows(r.relid, author)) THEN
                RAISE EXCEPTION 'role "%", who set this policy, may no longer read every row of % and its column "%"',
                    r.set_by, r.relid, r.time_column USING ERRCODE = '42501';
            END IF;
            SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = r.relid;
            cutoff := pg_catalog.now() - r.keep;
            -- An integer time column counts seconds or milliseconds since
            -- 1970: the cutoff in its terms, as an int8 (the comparison
            -- with a smallint, integer or bigint column uses its index).
            IF (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = r.relid AND a.attname = r.time_column AND a.attnum > 0 AND NOT a.attisdropped)
               IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
                cutoff_val := pg_catalog.floor(EXTRACT(epoch FROM cutoff)
                                  * CASE WHEN r.time_unit = 'milliseconds' THEN 1000 ELSE 1 END)::bigint::text;
                expired := pg_catalog.format('%I < $1::pg_catalog.int8', r.time_column);
            ELSE
                cutoff_val := cutoff::text;
                expired := pg_catalog.format('%I < $1::pg_catalog.timestamptz', r.time_column);
            END IF;
            IF r.only_where IS NOT NULL THEN
                expired := expired || ' AND (' || aegis.row_filter(r.relid, r.only_where, author) || ')';
            END IF;
            SELECT f.predicate, f.hold_ids INTO held, hold_ids FROM aegis.legal_hold_filter(r.relid) f;
            -- Whole partitions that have expired, dropped after every
            -- table's row-wise deletions (see above).
            drops := '{}';
            IF r.only_where IS NULL AND held IS DISTINCT FROM 'true' AND aegis.capture_mode(r.relid) = 'digest' THEN
                drops := ARRAY(SELECT e FROM aegis.expired_partitions(r.relid, r.time_column, cutoff_val) e);
            END IF;
            n_held := 0;
            n_deleted := 0;
            n_locked := 0;
            -- Expired rows, as the table's owner (whose code a scan may run):
            -- batches of ctids per partition.
            FOR part, ids, lo, hi IN
                SELECT x[1]::regclass, x[2], x[3], x[4]
                FROM aegis.run_restricted(owner, r.relid, true, pg_catalog.format(
                    'SELECT b.tableoid::pg_catalog.regclass::pg_catalog.text, '
                    '       pg_catalog.array_agg(b.ctid ORDER BY b.ctid)::pg_catalog.text, '
                    '       pg_catalog.min(b.ctid)::pg_catalog.text, pg_catalog.max(b.ctid)::pg_catalog.text '
                    'FROM (SELECT tableoid, ctid, (pg_catalog.row_number() OVER (PARTITION BY tableoid ORDER BY ctid) - 1) / %s AS batch '
                    '      FROM %s WHERE %s AND tableoid OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.oid[])) b '
                    'GROUP BY b.tableoid, b.batch ORDER BY b.tableoid, b.batch', batch_size, r.relid, expired),
                    ARRAY[cutoff_val, drops::pg_catalog.oid[]::text]) x
            LOOP
                SELECT c.relowner INTO part_owner FROM pg_catalog.pg_class c WHERE c.oid = part;
                -- As the owner of the partition: which of them are held,
                -- and (unless a dry run) delete the others. The ctid range
                -- makes each batch a TID range scan of its own pages (a
                -- bare "ctid = ANY" of 10,000 ctids is planned as a scan of
                -- the whole table). With no legal hold on the table, a real
                -- run has nothing to count: it only deletes.
                counts := ARRAY['0', '0'];
                IF held IS NOT NULL OR dry_run THEN
                    counts := (SELECT x FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                        'SELECT pg_catalog.count(*) FILTER (WHERE COALESCE(%2$s, false))::pg_catalog.text, '
                        '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%2$s, false))::pg_catalog.text '
                        'FROM ONLY %1$s WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                        '  AND ctid = ANY ($2::pg_catalog.tid[]) AND %3$s', part, COALESCE(held, 'false'), expired),
                        ARRAY[cutoff_val, ids, lo, hi]) x);
                END IF;
                n_held := n_held + counts[1]::bigint;
                IF dry_run THEN
                    n_deleted := n_deleted + counts[2]::bigint;
                ELSE
                    -- Rows another transaction has locked (an editor's open
                    -- UPDATE) are skipped, not waited for: the run never
                    -- stalls on them; they are counted below and deleted
                    -- by a later run. The rows it could lock are deleted
                    -- by a statement of their own (a WITH query would not
                    -- take an owner's DO ALSO rules), with no wait: they
                    -- are this transaction's now.
                    locked := (SELECT x[1] FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                        'SELECT COALESCE(pg_catalog.array_agg(l.ctid), ''{}'')::pg_catalog.text '
                        'FROM (SELECT ctid FROM ONLY %s WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                        '        AND ctid = ANY ($2::pg_catalog.tid[]) AND %s AND NOT COALESCE(%s, false) '
                        '      FOR UPDATE SKIP LOCKED) l',
                        part, expired, COALESCE(held, 'false')),
                        ARRAY[cutoff_val, ids, lo, hi]) x);
                    n_batch := (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                        'DELETE FROM ONLY %s WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                        '  AND ctid = ANY ($2::pg_catalog.tid[])', part),
                        ARRAY[cutoff_val, locked, lo, hi]) x);
                    n_deleted := n_deleted + n_batch;
                    -- Fewer than the batch's unheld expired rows: whichever
                    -- are still there and still expired were locked.
                    IF n_batch + counts[1]::bigint < pg_catalog.cardinality(ids::pg_catalog.tid[]) THEN
                        n_locked := n_locked + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                            'SELECT pg_catalog.count(*)::pg_catalog.text FROM ONLY %s '
                            'WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                            '  AND ctid = ANY ($2::pg_catalog.tid[]) AND %s AND NOT COALESCE(%s, false)',
                            part, expired, COALESCE(held, 'false')),
                            ARRAY[cutoff_val, ids, lo, hi]) x);
                    END IF;
                END IF;
            END LOOP;
            res_rows[i] := n_deleted;
            res_held[i] := n_held;
            res_locked[i] := n_locked;
            res_event[i] := pg_catalog.jsonb_build_object(
                'keep', r.keep::text, 'time_column', r.time_column, 'cutoff', cutoff,
                'only_where', r.only_where, 'legal_holds', pg_catalog.to_jsonb(hold_ids),
                'requested_by', SESSION_USER, 'selected_as', r.set_by);
            IF r.time_unit IS NOT NULL THEN
                res_event[i] := res_event[i] || pg_catalog.jsonb_build_object('time_unit', r.time_unit, 'cutoff_epoch', cutoff_val::bigint);
            END IF;
            FOREACH part IN ARRAY drops LOOP
                k := pg_catalog.cardinality(d_part) + 1;
                d_idx[k] := i;
                d_part[k] := part;
                d_held[k] := held;
                d_expired[k] := expired;
                d_cutoff[k] := cutoff_val;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            -- One broken policy (a dropped column, an author who lost the
            -- right to read the table) must not stop the others: it is
            -- reported and skipped.
            RAISE WARNING 'retention of % skipped: %', r.relid, SQLERRM;
            res_rows[i] := NULL;
            res_event[i] := NULL;
        END;
    END LOOP;

    -- Whole expired partitions, table by table (d_* are in table order).
    lt := pg_catalog.current_setting('lock_timeout');
    k := 1;
    WHILE k <= pg_catalog.cardinality(d_part) LOOP
        i := d_idx[k];
        k_end := k;
        WHILE k_end < pg_catalog.cardinality(d_part) AND d_idx[k_end + 1] = i LOOP
            k_end := k_end + 1;
        END LOOP;
        dropped := '{}';
        -- What the rollback below undoes, the counts must forget too.
        n_deleted := res_rows[i];
        n_held := res_held[i];
        BEGIN
            ready := '{}';
            FOR k IN k .. k_end LOOP
                part := d_part[k];
                SELECT c.relowner INTO part_owner FROM pg_catalog.pg_class c WHERE c.oid = part;
                CONTINUE WHEN part_owner IS NULL;
                IF dry_run THEN
                    counts := (SELECT x FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                        'SELECT pg_catalog.count(*) FILTER (WHERE COALESCE(%2$s, false))::pg_catalog.text, '
                        '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%2$s, false))::pg_catalog.text '
                        'FROM ONLY %1$s WHERE %3$s', part, COALESCE(d_held[k], 'false'), d_expired[k]),
                        ARRAY[d_cutoff[k]]) x);
                    res_held[i] := res_held[i] + counts[1]::bigint;
                    res_rows[i] := res_rows[i] + counts[2]::bigint;
                    CONTINUE;
                END IF;
                BEGIN
                    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
                    EXECUTE pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', part);
                    counts := ARRAY['0'];
                    IF d_held[k] IS NOT NULL THEN
                        counts := (SELECT x FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
                            'SELECT pg_catalog.count(*)::pg_catalog.text FROM ONLY %s WHERE COALESCE(%s, false)',
                            part, d_held[k]), ARRAY[d_cutoff[k]]) x);
                    END IF;
                    IF counts[1]::bigint > 0 THEN
                        -- A hold covers rows of it: it stays; the others go.
                        res_held[i] := res_held[i] + counts[1]::bigint;
                        res_rows[i] := res_rows[i] + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true,
                            pg_catalog.format('DELETE FROM ONLY %s WHERE %s AND NOT COALESCE(%s, false)',
                                              part, d_expired[k], d_held[k]), ARRAY[d_cutoff[k]]) x);
                    ELSE
                        ready := ready || part;
                    END IF;
                EXCEPTION WHEN lock_not_available THEN
                    RAISE WARNING 'retention of %: partition % is in use; it is kept until a later run', res_table[i], part;
                END;
            END LOOP;
            FOREACH part IN ARRAY ready LOOP
                res_rows[i] := res_rows[i] + aegis.retire_partition(part);
                dropped := dropped || part::text;
                srr := pg_catalog.current_setting('session_replication_role');
                PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
                EXECUTE pg_catalog.format('DROP TABLE %s', part);
                PERFORM pg_catalog.set_config('session_replication_role', srr, true);
                PERFORM aegis.guard_forget(ARRAY[part::oid]);
            END LOOP;
            IF pg_catalog.cardinality(ready) > 0 THEN
                PERFORM aegis.guard_remember(res_relid[i]);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'retention of %: expired partitions not dropped (%); their rows are deleted row by row',
                res_table[i], SQLERRM;
            dropped := '{}';
            res_rows[i] := n_deleted;
            res_held[i] := n_held;
            FOR k IN k .. k_end LOOP
                BEGIN
                    part := d_part[k];
                    SELECT c.relowner INTO part_owner FROM pg_catalog.pg_class c WHERE c.oid = part;
                    CONTINUE WHEN part_owner IS NULL;
                    res_held[i] := res_held[i] + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true,
                        pg_catalog.format('SELECT pg_catalog.count(*)::pg_catalog.text FROM ONLY %s WHERE %s AND COALESCE(%s, false)',
                                          part, d_expired[k], COALESCE(d_held[k], 'false')), ARRAY[d_cutoff[k]]) x);
                    res_rows[i] := res_rows[i] + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true,
                        pg_catalog.format('DELETE FROM ONLY %s WHERE %s AND NOT COALESCE(%s, false)',
                                          part, d_expired[k], COALESCE(d_held[k], 'false')), ARRAY[d_cutoff[k]]) x);
                EXCEPTION WHEN OTHERS THEN
                    RAISE WARNING 'retention of %: partition % skipped: %', res_table[i], part, SQLERRM;
                END;
            END LOOP;
        END;
        IF pg_catalog.cardinality(dropped) > 0 THEN
            res_event[i] := res_event[i] || pg_catalog.jsonb_build_object('partitions_dropped', pg_catalog.to_jsonb(dropped));
        END IF;
        k := k_end + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', lt, true);

    FOR i IN 1 .. pg_catalog.cardinality(res_table) LOOP
        table_name := res_table[i];
        rows_affected := res_rows[i];
        rows_locked := NULL;
        IF res_event[i] IS NOT NULL AND NOT dry_run THEN
            UPDATE aegis.retention_rules rr
            SET last_applied_at = pg_catalog.now(), last_deleted = res_rows[i], last_held = res_held[i],
                last_locked = res_locked[i]
            WHERE rr.relid = res_relid[i];
            PERFORM aegis.audit_event('RETENTION', res_table[i], res_event[i] || pg_catalog.jsonb_build_object(
                'rows_deleted', res_rows[i], 'rows_held', res_held[i], 'rows_locked', res_locked[i]));
            IF res_locked[i] > 0 THEN
                RAISE WARNING 'retention of %: % expired rows were locked by other transactions and are kept until a later run',
                    res_table[i], res_locked[i];
            END IF;
            -- A dry run locks nothing, so it cannot tell.
            rows_locked := res_locked[i];
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.apply_retention(boolean) IS
    'Delete expired rows of every table with a retention policy, except rows under legal hold; dry_run only counts (admin-only)';

-- The partitions of a table that hold only expired rows: leaves of a table
-- range-partitioned by its time column alone whose upper bound is at or
-- before the cutoff (every row is below its upper bound, so below the
-- cutoff). Not the default partition, not sub-partitioned ones, nothing of
-- a table a foreign key references (dropping would have to check the
-- referencing rows). The bound is read from the catalog and compared as a
-- value of the column's own (built-in) type; catalog reads only, no user
-- code. cutoff is apply_retention()'s: a timestamptz, or an int8 epoch
-- for integer time columns.
CREATE FUNCTION aegis.expired_partitions(tbl regclass, time_column name, cutoff text)
RETURNS SETOF regclass
LANGUAGE plpgsql STABLE
SET search_path = ''
-- Bounds print and parse the same whatever the session's settings.
SET DateStyle = 'ISO, YMD'
SET TimeZone = 'UTC'
AS $$
DECLARE
    typ regtype;
    p record;
    m text[];
    upper_bound text;
    expired boolean;
BEGIN
    SELECT a.atttypid::regtype INTO typ
    FROM pg_catalog.pg_partitioned_table pt
    JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partrelid = tbl AND pt.partstrat = 'r' AND pt.partnatts = 1 AND a.attname = time_column;
    IF typ IS NULL OR typ NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype,
                                  'date'::regtype, 'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                  WHERE k.contype = 'f' AND k.confrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t)) THEN
        RETURN;
    END IF;
    FOR p IN
        SELECT c.oid::regclass AS part, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = tbl AND c.relkind = 'r' AND c.relispartition
        ORDER BY c.oid
    LOOP
        m := pg_catalog.regexp_match(p.bound, '^FOR VALUES FROM \((.*)\) TO \((.*)\)$');
        CONTINUE WHEN m IS NULL OR m[2] = 'MAXVALUE';
        upper_bound := m[2];
        IF upper_bound ~ '^''.*''$' THEN
            upper_bound := pg_catalog.replace(pg_catalog.substr(upper_bound, 2, pg_catalog.length(upper_bound) - 2), '''''', '''');
        END IF;
        EXECUTE pg_catalog.format('SELECT $1::%s OPERATOR(pg_catalog.<=) $2::%s', typ,
                    CASE WHEN typ IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
                         THEN 'pg_catalog.int8' ELSE 'pg_catalog.timestamptz' END)
            INTO expired USING upper_bound, cutoff;
        IF expired THEN
            RETURN NEXT p.part;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.expired_partitions(regclass, name, text) IS
    'Internal: the partitions of a table range-partitioned by its time column whose every row is older than the cutoff';

-- Internal (no grants): apply_retention() records an expired partition of a
-- digest-mode table leaving, under the ACCESS EXCLUSIVE lock its drop keeps.
CREATE FUNCTION aegis.retire_partition(part regclass) RETURNS bigint LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'retire_partition_wrapper';
COMMENT ON FUNCTION aegis.retire_partition(regclass) IS
    'Internal: one RETENTION entry removing the content of a digest-mode partition about to be dropped';

-- Is an entry a chunk (row images of a multi-row statement in arrays)?
CREATE FUNCTION aegis.is_chunk(detail jsonb, old_row jsonb, new_row jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT COALESCE(detail OPERATOR(pg_catalog.?) 'rows'
                    AND pg_catalog.jsonb_typeof(COALESCE(new_row, old_row)) OPERATOR(pg_catalog.=) 'array', false)
$$;
COMMENT ON FUNCTION aegis.is_chunk(jsonb, jsonb, jsonb) IS
    'Is an audit entry a chunk (the row images of a multi-row statement, as arrays)?';

-- What a retention policy must satisfy, for the current user as its author
-- (set_retention() and the catalog guard on aegis.retention_rules).
CREATE FUNCTION aegis.check_retention_rule(tbl regclass, keep interval, time_column name, only_where text,
                                           time_unit text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    epoch boolean;
BEGIN
    IF tbl IS NULL OR keep IS NULL OR time_column IS NULL THEN
        RAISE EXCEPTION 'table, keep and time_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', keep USING ERRCODE = '22023';
    END IF;
    PERFORM aegis.lifecycle_check_table(tbl, time_column);
    SELECT a.atttypid IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) INTO epoch
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = time_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF epoch AND time_unit IS NULL THEN
        RAISE EXCEPTION 'time column "%" of % holds integers: say whether they count seconds or milliseconds since 1970', time_column, tbl
            USING ERRCODE = '22023', HINT = 'Pass time_unit => ''seconds'' (Zabbix''s clock) or time_unit => ''milliseconds''.';
    ELSIF NOT epoch AND time_unit IS NOT NULL THEN
        RAISE EXCEPTION 'time_unit applies to integer time columns; "%" of % is a timestamp or date', time_column, tbl
            USING ERRCODE = '22023';
    ELSIF time_unit NOT IN ('seconds', 'milliseconds') THEN
        RAISE EXCEPTION 'time_unit must be ''seconds'' or ''milliseconds'', not %', pg_catalog.quote_literal(time_unit)
            USING ERRCODE = '22023';
    ELSIF time_unit = 'milliseconds' AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                         WHERE a.attrelid = tbl AND a.attname = time_column) <> 'bigint'::regtype THEN
        RAISE EXCEPTION 'time column "%" of % cannot hold milliseconds since 1970: it is not a bigint', time_column, tbl
            USING ERRCODE = '22023';
    END IF;
    -- A policy decides about rows with no more rights than its author has:
    -- the author must be able to read the time column (and every column
    -- the filter names, row_filter() checks) in every row of the table.
    IF NOT pg_catalog.has_column_privilege(tbl, time_column, 'SELECT') THEN
        RAISE EXCEPTION 'role % may not read column "%" of %', CURRENT_USER, time_column, tbl
            USING ERRCODE = '42501',
                  HINT = 'A retention policy decides with its author''s rights: a role that can read the table (or a superuser) must set it.';
    END IF;
    IF NOT aegis.reads_all_rows(tbl) THEN
        RAISE EXCEPTION 'role % does not see every row of %: row-level security narrows its view', CURRENT_USER, tbl
            USING ERRCODE = '42501',
                  HINT = 'A retention policy decides about every row: its author must see them all (a policy USING (true) for it, BYPASSRLS, or a superuser).';
    END IF;
    IF only_where IS NOT NULL THEN
        PERFORM aegis.row_filter(tbl, only_where, pg_catalog.quote_ident(CURRENT_USER)::regrole);
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.check_retention_rule(regclass, interval, name, text, text) IS
    'Internal: may the current user set this retention policy (protected table, date/time or epoch column it can read, valid filter)?';

CREATE FUNCTION aegis.set_retention(tbl regclass, keep interval, time_column name, only_where text DEFAULT NULL,
                                    time_unit text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.check_retention_rule(tbl, keep, time_column, only_where, time_unit);
    INSERT INTO aegis.retention_rules AS r (relid, keep, time_column, only_where, time_unit, set_by)
    VALUES (tbl, set_retention.keep, set_retention.time_column, set_retention.only_where, set_retention.time_unit,
            CURRENT_USER)
    ON CONFLICT (relid) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column,
        only_where = EXCLUDED.only_where, time_unit = EXCLUDED.time_unit, set_at = pg_catalog.now(),
        set_by = EXCLUDED.set_by;
END
$$;
COMMENT ON FUNCTION aegis.set_retention(regclass, interval, name, text, text) IS
    'Keep rows of a protected table for an interval after time_column (a timestamp, a date, or an integer counting time_unit since 1970; optionally only rows matching only_where) (admin-only)';

-- The application roles a protect() policy names, validated and sorted:
-- existing roles, never PUBLIC, a predefined pg_ role or one of pg_aegis's
-- group roles (which would hand every member all rows).
CREATE FUNCTION aegis.application_roles_of(policy jsonb) RETURNS name[]
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    e jsonb;
    roles name[] := '{}';
BEGIN
    IF policy IS NULL OR NOT policy ? 'application_roles' THEN
        RETURN roles;
    END IF;
    IF pg_catalog.jsonb_typeof(policy -> 'application_roles') <> 'array' THEN
        RAISE EXCEPTION 'policy.application_roles must be an array of role names' USING ERRCODE = '22023',
            HINT = 'Example: {"application_roles": ["zabbix"]}: the roles that own or run the application keep reading and writing its tables as before.';
    END IF;
    FOR e IN SELECT x FROM pg_catalog.jsonb_array_elements(policy -> 'application_roles') x LOOP
        IF pg_catalog.jsonb_typeof(e) <> 'string' OR e #>> '{}' = '' THEN
            RAISE EXCEPTION 'policy.application_roles must be an array of role names, not %', e USING ERRCODE = '22023';
        END IF;
        IF pg_catalog.lower(e #>> '{}') = 'public' OR (e #>> '{}') LIKE 'pg\_%'
           OR (e #>> '{}') IN (SELECT c.role_name FROM aegis.role_catalog() c) THEN
            RAISE EXCEPTION 'role "%" cannot be an application role', e #>> '{}' USING ERRCODE = '22023',
                DETAIL = 'Every member of an application role reads and writes all rows of the table.',
                HINT = 'Name the login (or NOLOGIN group) the application itself connects as.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = e #>> '{}') THEN
            RAISE EXCEPTION 'role "%" does not exist', e #>> '{}' USING ERRCODE = '42704';
        END IF;
        roles := roles || (e #>> '{}')::name;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT r FROM pg_catalog.unnest(roles) r ORDER BY r);
END
$$;
COMMENT ON FUNCTION aegis.application_roles_of(jsonb) IS
    'Internal: the application roles a protect() policy names, validated and sorted';

-- The application roles in force on a relation: those of its
-- aegis_application policy, if the policy is exactly as pg_aegis makes it
-- (permissive, every command, USING and WITH CHECK true); NULL if a policy
-- of that name is anything else.
CREATE FUNCTION aegis.application_roles_in_force(tbl oid) RETURNS name[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl AND p.polname = 'aegis_application')
            THEN '{}'::name[]
        ELSE (SELECT ARRAY(SELECT r.rolname FROM pg_catalog.unnest(p.polroles) u(role)
                           JOIN pg_catalog.pg_roles r ON r.oid = u.role ORDER BY r.rolname)
              FROM pg_catalog.pg_policy p
              WHERE p.polrelid = tbl AND p.polname = 'aegis_application' AND p.polcmd = '*' AND p.polpermissive
                AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
                AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) = 'true'
                AND NOT 0::oid = ANY (p.polroles))
    END
$$;
COMMENT ON FUNCTION aegis.application_roles_in_force(oid) IS
    'Internal: the roles of a relation''s aegis_application policy (NULL if it is not as pg_aegis makes it)';

-- Make a relation's aegis_application policy name exactly these roles
-- (none: no policy). Runs as the table's owner (owner_ddl). Not granted:
-- runs only inside switch_rls() and enforce_access().
CREATE FUNCTION aegis.sync_application_policy(rel oid, roles name[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    nsp name;
    relname name;
BEGIN
    IF aegis.application_roles_in_force(rel) IS NOT DISTINCT FROM COALESCE(roles, '{}') THEN
        RETURN;
    END IF;
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = rel AND p.polname = 'aegis_application') THEN
        PERFORM aegis.owner_ddl(rel, pg_catalog.format('DROP POLICY aegis_application ON %I.%I', nsp, relname));
    END IF;
    IF pg_catalog.cardinality(roles) > 0 THEN
        PERFORM aegis.owner_ddl(rel, pg_catalog.format(
            'CREATE POLICY aegis_application ON %I.%I AS PERMISSIVE FOR ALL TO %s USING (true) WITH CHECK (true)',
            nsp, relname, (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r), ', ') FROM pg_catalog.unnest(roles) r)));
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.sync_application_policy(oid, name[]) IS
    'Internal: give a relation the aegis_application policy for these roles (no grants)';

-- The recorded "application_roles", "profile", "columns" and "scope" of a
-- protected table in force: the aegis_application policy, and the
-- profile's grants and policies, on the table and every partition; USAGE
-- on its schema for the roles the profile names. Definer rights: policies
-- are created by the table's owner (owner_ddl), which aegis_admin is not;
-- it acts only on a table pg_aegis protects, with the policy its catalog
-- holds. Its DDL runs with session_replication_role = replica (the guard's
-- event triggers, enabled on origin, do not fire on pg_aegis's own step);
-- the guard then remembers the table as it now is. Granted to nobody: the
-- catalog trigger below calls it.
CREATE FUNCTION aegis.enforce_access(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET session_replication_role = replica
AS $$
DECLARE
    roles name[];
    prof text;
    r oid;
    policy jsonb;
BEGIN
    -- What the catalog says, which is what protect() (or an audited direct
    -- change, held to the same checks by the catalog guard) recorded.
    policy := COALESCE((SELECT p.policy FROM aegis.protected_tables p WHERE p.relid = tbl), '{}');
    roles := aegis.application_roles_of(policy);
    prof := aegis.profile_of(policy);
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not protected by pg_aegis', tbl USING ERRCODE = '55000';
    END IF;
    FOR r IN SELECT tbl::oid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t
             JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE c.relkind IN ('r', 'p') LOOP
        PERFORM aegis.sync_application_policy(r, roles);
        PERFORM aegis.sync_profile(r, tbl, prof, COALESCE(policy -> 'columns', '{}'), aegis.scope_predicate_of(tbl, policy -> 'scope'));
    END LOOP;
    PERFORM aegis.sync_masking_policy(tbl, false);
    UPDATE aegis.rls_enforced e SET profile = prof WHERE e.relid = tbl;
    -- Schema privileges run no code of anyone's: granted with the
    -- extension's rights (recorded as the schema owner's grant).
    IF prof IS NOT NULL THEN
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %s',
            (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
            (SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(c.role_name), ', ') FROM aegis.profile_catalog() c
             WHERE c.profile = prof AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles x WHERE x.rolname = c.role_name)));
    END IF;
    PERFORM aegis.guard_remember(tbl);
END
$$;
COMMENT ON FUNCTION aegis.enforce_access(regclass) IS
    'Internal: put a protected table''s recorded application roles, profile, column grants and scope in force (definer rights; no grants)';

-- Whatever writes a protected table's policy into the catalog (protect(),
-- or an admin's direct change the catalog guard has checked) puts it in
-- force at once: the catalog and the table never disagree. SECURITY
-- DEFINER: enforce_access() is granted to nobody.
CREATE FUNCTION aegis.protected_tables_enforce() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    -- (A restore loads this catalog before aegis.rls_enforced: the table
    -- comes with its policies and grants, nothing to put in force yet.)
    IF EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid = NEW.relid) THEN
        PERFORM aegis.enforce_access(NEW.relid);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION aegis.protected_tables_enforce() IS
    'Internal trigger: put a protected table''s recorded policy in force when the catalog changes';

-- ===========================================================================
-- Role profiles: what each of pg_aegis's group roles may do on a protected
-- table, from its purpose (protect()'s "profile") and its column classes,
-- instead of hand-written GRANTs and policies. The table holds the whole
-- mapping (documented in docs/access.md); aegis_admin reads and changes
-- every profiled table. "Public columns" are those classified public (or
-- not classified), plus metric columns where the profile says so; the
-- other classes (pii, secret, free_text, subject_id, cost) are the
-- sensitive ones. Scoped rows: the on-call scope declared for the table
-- (none declared: no rows).
-- ===========================================================================
CREATE FUNCTION aegis.profile_catalog()
RETURNS TABLE(profile text, role_name name, privileges text[], columns text, row_scope text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    VALUES
        ('logs', 'aegis_admin'::name, '{SELECT,INSERT,UPDATE,DELETE}'::text[], 'all', 'all'),
        ('logs', 'aegis_auditor', '{SELECT}', 'all', 'all'),
        ('logs', 'aegis_security', '{SELECT}', 'all', 'all'),
        ('logs', 'aegis_oncall', '{SELECT}', 'all', 'scoped'),
        ('logs', 'aegis_developer', '{SELECT}', 'public', 'all'),
        ('logs', 'aegis_ingest', '{INSERT}', 'all', 'all'),
        ('metrics', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('metrics', 'aegis_auditor', '{SELECT}', 'all', 'all'),
        ('metrics', 'aegis_devops', '{SELECT,INSERT,UPDATE}', 'all', 'all'),
        ('metrics', 'aegis_operations', '{SELECT}', 'public+metric', 'all'),
        ('metrics', 'aegis_developer', '{SELECT}', 'public+metric', 'all'),
        ('metrics', 'aegis_oncall', '{SELECT}', 'all', 'scoped'),
        ('metrics', 'aegis_ingest', '{INSERT}', 'all', 'all'),
        ('incidents', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('incidents', 'aegis_incident_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('incidents', 'aegis_security', '{SELECT}', 'all', 'all'),
        ('incidents', 'aegis_incident_editor', '{SELECT,INSERT,UPDATE}', 'public', 'all'),
        ('incidents', 'aegis_incident_viewer', '{SELECT}', 'public', 'all'),
        ('incidents', 'aegis_auditor', '{SELECT}', 'public', 'all'),
        ('incidents', 'aegis_oncall', '{SELECT}', 'all', 'scoped'),
        ('costs', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('costs', 'aegis_finance', '{SELECT}', 'all', 'all'),
        ('costs', 'aegis_auditor', '{SELECT}', 'all', 'all'),
        ('costs', 'aegis_ingest', '{INSERT}', 'all', 'all'),
        ('access_logs', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('access_logs', 'aegis_auditor', '{SELECT}', 'all', 'all'),
        ('access_logs', 'aegis_security', '{SELECT}', 'all', 'all'),
        ('access_logs', 'aegis_ingest', '{INSERT}', 'all', 'all'),
        ('users', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all'),
        ('users', 'aegis_auditor', '{SELECT}', 'public', 'all'),
        ('admin_only', 'aegis_admin', '{SELECT,INSERT,UPDATE,DELETE}', 'all', 'all')
$$;
COMMENT ON FUNCTION aegis.profile_catalog() IS
    'What each pg_aegis group role may do on a table protected with a profile (protect()''s "profile")';

-- The profile a protect() policy names (NULL: none), validated.
CREATE FUNCTION aegis.profile_of(policy jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF policy IS NULL OR NOT policy ? 'profile' THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.jsonb_typeof(policy -> 'profile') <> 'string'
       OR NOT EXISTS (SELECT 1 FROM aegis.profile_catalog() c WHERE c.profile = policy ->> 'profile') THEN
        RAISE EXCEPTION 'unknown profile %', policy -> 'profile' USING ERRCODE = '22023',
            HINT = 'Profiles: ' || (SELECT pg_catalog.string_agg(DISTINCT c.profile, ', ') FROM aegis.profile_catalog() c)
                   || ' (SELECT * FROM aegis.profile_catalog() shows what each grants).';
    END IF;
    RETURN policy ->> 'profile';
END
$$;
COMMENT ON FUNCTION aegis.profile_of(jsonb) IS 'Internal: the profile a protect() policy names, validated';

-- Give a relation exactly the grants and policies of a profile (NULL:
-- none): every privilege of pg_aegis's group roles on it is revoked, every
-- aegis_profile_* policy dropped, then the profile's are made, from the
-- column classes of the policy being put in force (classes: protect()'s
-- "columns"). Runs as the table's owner (owner_ddl). Not granted: runs
-- only inside enforce_access() and switch_rls().
CREATE FUNCTION aegis.sync_profile(rel oid, root oid, profile text, classes jsonb, scope text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    nsp name;
    relname name;
    p record;
    pol name;
    cols text;
    priv text;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    -- A table that never had a profile keeps the grants its DBA gave.
    IF profile IS NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy x
                                       WHERE x.polrelid = rel AND x.polname LIKE 'aegis\_profile\_%') THEN
        RETURN;
    END IF;
    FOR pol IN SELECT x.polname FROM pg_catalog.pg_policy x WHERE x.polrelid = rel AND x.polname LIKE 'aegis\_profile\_%' LOOP
        PERFORM aegis.owner_ddl(rel, pg_catalog.format('DROP POLICY %I ON %I.%I', pol, nsp, relname));
    END LOOP;
    PERFORM aegis.owner_ddl(rel, pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM %s', nsp, relname,
        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.role_name), ', ') FROM aegis.role_catalog() r
         WHERE r.role_name <> 'aegis_masking_owner' AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles x WHERE x.rolname = r.role_name))));
    IF profile IS NULL THEN
        RETURN;
    END IF;
    FOR p IN SELECT c.* FROM aegis.profile_catalog() c WHERE c.profile = sync_profile.profile
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles x WHERE x.rolname = c.role_name) LOOP
        CONTINUE WHEN p.row_scope = 'scoped' AND scope IS NULL;
        -- Sensitive columns are left out of "public" grants; identity and
        -- generated columns are never written by the group roles.
        FOREACH priv IN ARRAY p.privileges LOOP
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_attribute ra ON ra.attrelid = root AND ra.attname = a.attname
            WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
              AND (p.columns = 'all' OR COALESCE(classes ->> a.attname, 'public') = 'public'
                   OR (p.columns = 'public+metric' AND classes ->> a.attname = 'metric'))
              AND (priv NOT IN ('INSERT', 'UPDATE') OR (ra.attidentity = '' AND ra.attgenerated = ''));
            IF priv = 'DELETE' OR (p.columns = 'all' AND (priv = 'SELECT' OR p.role_name = 'aegis_admin')) THEN
                PERFORM aegis.owner_ddl(rel, pg_catalog.format('GRANT %s ON TABLE %I.%I TO %I', priv, nsp, relname, p.role_name));
            ELSIF cols IS NOT NULL THEN
                PERFORM aegis.owner_ddl(rel, pg_catalog.format('GRANT %s (%s) ON TABLE %I.%I TO %I', priv, cols, nsp, relname, p.role_name));
            END IF;
        END LOOP;
        -- The policy covers exactly the commands the role is granted.
        PERFORM aegis.owner_ddl(rel, CASE
            WHEN p.privileges = '{SELECT}' THEN pg_catalog.format(
                'CREATE POLICY %I ON %I.%I AS PERMISSIVE FOR SELECT TO %I USING (%s)',
                'aegis_profile_' || p.role_name, nsp, relname, p.role_name,
                CASE WHEN p.row_scope = 'scoped' THEN scope ELSE 'true' END)
            WHEN p.privileges = '{INSERT}' THEN pg_catalog.format(
                'CREATE POLICY %I ON %I.%I AS PERMISSIVE FOR INSERT TO %I WITH CHECK (%s)',
                'aegis_profile_' || p.role_name, nsp, relname, p.role_name,
                CASE WHEN p.row_scope = 'scoped' THEN scope ELSE 'true' END)
            ELSE pg_catalog.format(
                'CREATE POLICY %I ON %I.%I AS PERMISSIVE FOR ALL TO %I USING (%s) WITH CHECK (%s)',
                'aegis_profile_' || p.role_name, nsp, relname, p.role_name,
                CASE WHEN p.row_scope = 'scoped' THEN scope ELSE 'true' END,
                CASE WHEN p.row_scope = 'scoped' THEN scope ELSE 'true' END) END);
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.sync_profile(oid, oid, text, jsonb, text) IS
    'Internal: give a relation the grants and policies of a role profile (no grants)';

-- The rows a masking view shows its reader: the view reads the table as
-- aegis_masking_owner, through pg_aegis's policy aegis_masking; a reader in
-- a role the table's profile scopes (on-call) sees through it only the rows
-- of its scope, as it would in the table (current_user, in a view's
-- policies, is the reader). Everyone else the view is granted to sees every
-- row. Made by create_masking_view() (create: true) and kept in step with
-- the table's profile and scope by enforce_access(). Runs as the table's
-- owner (owner_ddl). Not granted.
CREATE FUNCTION aegis.sync_masking_policy(tbl regclass, create_it boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    policy jsonb := COALESCE((SELECT p.policy FROM aegis.protected_tables p WHERE p.relid = tbl), '{}');
    scope text := aegis.scope_predicate_of(tbl, policy -> 'scope');
    scoped name[];
    pred text := 'true';
    verb text;
BEGIN
    SELECT pg_catalog.array_agg(c.role_name ORDER BY c.role_name) INTO scoped FROM aegis.profile_catalog() c
    WHERE c.profile = aegis.profile_of(policy) AND c.row_scope = 'scoped';
    IF scoped IS NOT NULL THEN
        -- No scope declared: scoped roles see no rows of the table, so none
        -- through its view either. A scope reached through a join path
        -- would read the path's tables as aegis_masking_owner, which may
        -- not read them: scoped readers see none of its rows through the
        -- view (they read the table itself, scoped).
        IF pg_catalog.jsonb_array_length(COALESCE(policy -> 'scope' -> 'via', '[]')) > 0 THEN
            scope := NULL;
        END IF;
        pred := pg_catalog.format('NOT aegis.is_member_of_any(%L::name[]) OR (%s)', scoped, COALESCE(scope, 'false'));
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl AND p.polname = 'aegis_masking') THEN
        verb := 'ALTER POLICY aegis_masking ON %s TO aegis_masking_owner USING (%s)';
    ELSIF create_it THEN
        verb := 'CREATE POLICY aegis_masking ON %s AS PERMISSIVE FOR SELECT TO aegis_masking_owner USING (%s)';
    ELSE
        RETURN;
    END IF;
    PERFORM aegis.owner_ddl(tbl, pg_catalog.format(verb, tbl, pred));
END
$$;
COMMENT ON FUNCTION aegis.sync_masking_policy(regclass, boolean) IS
    'Internal: the rows a table''s masking views show (scoped readers: their scope only)';

-- The row predicate of a protected table's declared scope (NULL: none).
CREATE FUNCTION aegis.scope_predicate(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT aegis.scope_predicate_of(tbl, (SELECT p.policy -> 'scope' FROM aegis.protected_tables p WHERE p.relid = tbl))
$$;
COMMENT ON FUNCTION aegis.scope_predicate(regclass) IS
    'Internal: the row predicate of a table''s on-call scope (NULL: none declared)';

-- The role profile in force on a protected table (NULL: none).
CREATE FUNCTION aegis.profile_in_force(tbl regclass) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT e.profile FROM aegis.rls_enforced e WHERE e.relid OPERATOR(pg_catalog.=) tbl
$$;
COMMENT ON FUNCTION aegis.profile_in_force(regclass) IS
    'Internal: the role profile in force on a protected table (NULL: none)';

-- Mentions of any of several names (a subject's user name, display name,
-- email ...): aegis.mentions() / aegis.erase_mentions() over a list.
CREATE FUNCTION aegis.mentions_any(text text, names text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.unnest(names) n WHERE aegis.mentions(text, n))
$$;
COMMENT ON FUNCTION aegis.mentions_any(text, text[]) IS
    'Does the text mention any of the names (aegis.mentions())?';

CREATE FUNCTION aegis.erase_mentions_all(text text, names text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    n text;
BEGIN
    -- Longest first: "Mary Smith" before "Mary".
    FOR n IN SELECT x FROM pg_catalog.unnest(names) x ORDER BY pg_catalog.length(x) DESC, x LOOP
        text := aegis.erase_mentions(text, n);
    END LOOP;
    RETURN text;
END
$$;
COMMENT ON FUNCTION aegis.erase_mentions_all(text, text[]) IS
    'The text with every mention of any of the names replaced by [ERASED]';

-- protect()'s "subject_directory": the table that lists the people (Zabbix's
-- users), by the column that identifies them ("id", of any type) and the
-- columns that name them ("names": a column, or a list of columns that
-- together make a display name, joined by spaces, e.g. ["name", "surname"]).
-- Checked by check_policy(); erase_subject() looks the subject up there.
CREATE FUNCTION aegis.check_subject_directory(tbl regclass, dir jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    e jsonb;
    c jsonb;
BEGIN
    IF pg_catalog.jsonb_typeof(dir) <> 'object' OR NOT dir ? 'id'
       OR pg_catalog.jsonb_typeof(dir -> 'id') <> 'string'
       OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(dir) k WHERE k NOT IN ('id', 'names'))
       OR (dir ? 'names' AND pg_catalog.jsonb_typeof(dir -> 'names') <> 'array') THEN
        RAISE EXCEPTION 'policy.subject_directory must be {"id": <column>, "names": [<column> or [<columns>], ...]}'
            USING ERRCODE = '22023',
                  HINT = 'Example: {"subject_directory": {"id": "userid", "names": ["username", ["name", "surname"]]}}';
    END IF;
    FOR e IN SELECT v FROM pg_catalog.jsonb_array_elements(COALESCE(dir -> 'names', '[]')) v LOOP
        IF pg_catalog.jsonb_typeof(e) NOT IN ('string', 'array') OR e = '[]' THEN
            RAISE EXCEPTION 'a subject directory name is a column or a non-empty list of columns, not %', e USING ERRCODE = '22023';
        END IF;
    END LOOP;
    FOR c IN SELECT dir -> 'id'
             UNION ALL
             SELECT v FROM pg_catalog.jsonb_array_elements(COALESCE(dir -> 'names', '[]')) v
             WHERE pg_catalog.jsonb_typeof(v) = 'string'
             UNION ALL
             SELECT x FROM pg_catalog.jsonb_array_elements(COALESCE(dir -> 'names', '[]')) v,
                           pg_catalog.jsonb_array_elements(v) x
             WHERE pg_catalog.jsonb_typeof(v) = 'array' LOOP
        IF pg_catalog.jsonb_typeof(c) <> 'string' OR NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = tbl AND a.attname = c #>> '{}' AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'subject directory column % of % does not exist', c, tbl USING ERRCODE = '42703';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.check_subject_directory(regclass, jsonb) IS
    'Internal: is this a valid protect() subject_directory for the table?';

-- What deleting rows of a table would do to the tables whose foreign keys
-- reference it (or one of its partitions) with ON DELETE CASCADE, SET NULL
-- or SET DEFAULT, followed down cascades: per referencing table, the rows
-- it would change, how, and why erasure must refuse (rows under legal hold;
-- rows of a table whose erasure policy is anonymize, which a cascade would
-- delete; rows it cannot count). The rows to delete: pred over the table's
-- columns, with args ($1 is always the subject's identifiers, ids).
-- Referencing rows are matched with the referenced columns' own types and
-- equality (keys handed down as text, cast back), never as text. Rows of a
-- protected referencing table that erasure itself deletes or detaches
-- first (its own rows of the subject) are not counted, unless its own
-- action was refused (refused). Every query runs as the owner of the table
-- it reads (run_restricted). Internal: granted to nobody.
CREATE FUNCTION aegis.erasure_cascades(parent regclass, pred text, args text[], ids text, refused oid[],
                                       depth integer DEFAULT 1)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    fk record;
    keys text[];
    child_pred text;
    held text;
    counts text[];
    out jsonb := '[]';
    why text;
    child_mode text;
    subj text;
    own text;
BEGIN
    FOR fk IN
        SELECT con.conname, con.conrelid::regclass AS child, con.confrelid::regclass AS referenced, con.confdeltype,
               (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY k(n, i)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS child_cols,
               (SELECT pg_catalog.string_agg(pg_catalog.format('%I::pg_catalog.text', a.attname), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS parent_texts,
               (SELECT pg_catalog.string_agg(pg_catalog.format('pg_catalog.array_agg(s.c%s)::pg_catalog.text', k.i), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)) AS parent_arrays,
               (SELECT pg_catalog.string_agg(pg_catalog.format('c%s', k.i), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)) AS parent_aliases,
               (SELECT pg_catalog.string_agg(pg_catalog.format('u.x%s::%s', k.i, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS typed_keys,
               (SELECT pg_catalog.string_agg(pg_catalog.format('$%s::pg_catalog.text[]', k.i + 1), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)) AS key_params,
               (SELECT pg_catalog.string_agg(pg_catalog.format('x%s', k.i), ', ' ORDER BY k.i)
                FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, i)) AS key_aliases,
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = con.conrelid) AS child_owner,
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = con.confrelid) AS referenced_owner,
               (SELECT pg_catalog.array_agg(a.attname) FROM pg_catalog.unnest(con.conkey) k(n)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS child_keys
        FROM pg_catalog.pg_constraint con
        WHERE con.contype = 'f' AND con.confdeltype IN ('c', 'n', 'd')
          -- The table or any of its partitions; a partitioned table's own
          -- foreign key once, not its clones on each partition.
          AND con.confrelid IN (SELECT parent::oid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(parent) t)
          AND con.conparentid = 0
        ORDER BY con.conrelid::regclass::text, con.conname
    LOOP
        why := NULL;
        BEGIN
            keys := (SELECT x FROM aegis.run_restricted(fk.referenced_owner, fk.referenced, true, pg_catalog.format(
                         'SELECT %s FROM (SELECT DISTINCT %s FROM %s WHERE %s) s(%s)',
                         fk.parent_arrays, fk.parent_texts, fk.referenced, pred, fk.parent_aliases), args) x);
            CONTINUE WHEN keys IS NULL OR keys[1] IS NULL;
            child_pred := pg_catalog.format('(%s) IN (SELECT %s FROM pg_catalog.unnest(%s) u(%s))',
                                            fk.child_cols, fk.typed_keys, fk.key_params, fk.key_aliases);
            held := COALESCE((SELECT f.predicate FROM aegis.legal_hold_filter(fk.child) f), 'false');
            child_mode := (SELECT COALESCE(p.policy ->> 'erasure', 'delete') FROM aegis.protected_tables p
                           JOIN aegis.rls_enforced e ON e.relid = p.relid WHERE p.relid = fk.child);
            -- The child's own rows of the subject, which erasure deletes (or
            -- anonymizes out of the key: every key column a nullable
            -- subject_id column) before it gets here, unless it refused.
            subj := (SELECT pg_catalog.string_agg(pg_catalog.format('%I::pg_catalog.text = ANY ($1::pg_catalog.text[])', c.column_name), ' OR ')
                     FROM aegis.column_classes c WHERE c.relid = fk.child AND c.class = 'subject_id');
            own := 'false';
            IF child_mode IS NOT NULL AND subj IS NOT NULL AND NOT fk.child::oid = ANY (COALESCE(refused, '{}'))
               AND NOT (child_mode = 'anonymize' AND EXISTS (
                       SELECT 1 FROM pg_catalog.unnest(fk.child_keys) k
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = fk.child AND a.attname = k
                       WHERE a.attnotnull OR NOT EXISTS (SELECT 1 FROM aegis.column_classes c
                                                         WHERE c.relid = fk.child AND c.column_name = k AND c.class = 'subject_id'))) THEN
                own := pg_catalog.format('(%s) AND NOT COALESCE(%s, false)', subj, held);
            END IF;
            child_pred := pg_catalog.format('(%s) AND NOT COALESCE(%s, false)', child_pred, own);
            counts := (SELECT x FROM aegis.run_restricted(fk.child_owner, fk.child, true, pg_catalog.format(
                'SELECT pg_catalog.count(*)::pg_catalog.text, pg_catalog.count(*) FILTER (WHERE COALESCE(%s, false))::pg_catalog.text '
                'FROM %s WHERE %s', held, fk.child, child_pred), ids || keys) x);
        EXCEPTION WHEN insufficient_privilege THEN
            out := out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                'table', fk.child::text, 'via', parent::text, 'constraint', fk.conname,
                'refused', pg_catalog.format('the rows of %s that foreign key %s would change cannot be counted: %s',
                                             fk.child, fk.conname, SQLERRM)));
            CONTINUE;
        END;
        CONTINUE WHEN counts[1]::bigint = 0;
        IF counts[2]::bigint > 0 THEN
            why := pg_catalog.format('%s rows of %s under legal hold would be %s through foreign key %s',
                counts[2], fk.child, CASE WHEN fk.confdeltype = 'c' THEN 'deleted' ELSE 'changed' END, fk.conname);
        ELSIF fk.confdeltype = 'c' AND child_mode = 'anonymize' THEN
            why := pg_catalog.format('%s rows of %s would be deleted through foreign key %s (ON DELETE CASCADE), but its erasure policy is anonymize',
                counts[1], fk.child, fk.conname);
        END IF;
        out := out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'table', fk.child::text, 'via', fk.referenced::text, 'constraint', fk.conname,
            'action', CASE fk.confdeltype WHEN 'c' THEN 'deleted_by_cascade' WHEN 'n' THEN 'set_null_by_cascade'
                                          ELSE 'set_default_by_cascade' END,
            'rows', counts[1]::bigint, 'protected', child_mode IS NOT NULL, 'refused', why)));
        IF fk.confdeltype = 'c' THEN
            IF depth >= 16 THEN
                out := out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('table', fk.child::text,
                    'refused', 'foreign key cascades deeper than 16 tables'));
            ELSE
                out := out || aegis.erasure_cascades(fk.child, child_pred, ids || keys, ids, refused, depth + 1);
            END IF;
        END IF;
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION aegis.erasure_cascades(regclass, text, text[], text, oid[], integer) IS
    'Internal: what deleting rows would cascade to through foreign keys, and why erasure must refuse';

-- What in an alerts table would run with pg_aegis's rights when an alert
-- is written there (NULL: nothing). pg_aegis writes alerts with the
-- extension owner's rights, so every relation of the table's partition tree
-- must be a superuser's, nobody else may hold TRIGGER on them, and what
-- their columns, defaults, constraints, indexes, triggers and rules use
-- (functions, types, operators) must be a superuser's too.
CREATE FUNCTION aegis.alerts_table_untrusted(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    WITH rels AS (
        SELECT tbl::oid AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t
    ), parts AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
        WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid IN (SELECT r.relid FROM rels r)
          AND d.deptype IN ('a', 'n', 'i')
        UNION
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, r.relid FROM rels r
    ), uses AS (
        SELECT d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
        JOIN parts p ON d.classid = p.classid AND d.objid = p.objid
    )
    SELECT pg_catalog.string_agg(x.what, ', ' ORDER BY x.what) FROM (
        SELECT pg_catalog.format('%s is owned by non-superuser %s', c.oid::regclass, o.rolname) AS what
        FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.relid JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
        WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('%s grants TRIGGER to %s', c.oid::regclass,
                                 CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
        FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.relid
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE a.privilege_type = 'TRIGGER'
          AND NOT COALESCE((SELECT g.rolsuper FROM pg_catalog.pg_roles g WHERE g.oid = a.grantee), false)
        UNION
        SELECT pg_catalog.format('it uses function %s of non-superuser %s', f.oid::regprocedure, o.rolname)
        FROM uses u JOIN pg_catalog.pg_proc f ON u.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND f.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = f.proowner WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('it uses type %s of non-superuser %s', t.oid::regtype, o.rolname)
        FROM uses u JOIN pg_catalog.pg_type t ON u.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = t.typowner WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('it uses operator %s of non-superuser %s', op.oid::regoperator, o.rolname)
        FROM uses u JOIN pg_catalog.pg_operator op ON u.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND op.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = op.oprowner WHERE NOT o.rolsuper
    ) x
$$;
COMMENT ON FUNCTION aegis.alerts_table_untrusted(regclass) IS
    'Internal: what in an alerts table would run with pg_aegis''s rights (NULL: nothing)';

-- Is a column of this table usable as this part of the mapping? Raises the
-- error that says why not.
CREATE FUNCTION aegis.check_alert_column(tbl regclass, col name, what text, allowed regtype[])
RETURNS regtype
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    typ oid;
BEGIN
    IF col IS NULL THEN
        RAISE EXCEPTION 'the % column must not be NULL', what USING ERRCODE = '22004';
    END IF;
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% column "%" of % does not exist', what, col, tbl USING ERRCODE = '42703';
    END IF;
    -- A type a non-superuser created brings its own casts and operators,
    -- which the trigger would run with pg_aegis's rights.
    IF typ >= 16384 THEN
        RAISE EXCEPTION '% column "%" of % has type %, which is not built in', what, col, tbl, typ::regtype
            USING ERRCODE = '42804', DETAIL = 'The alert trigger reads it with pg_aegis''s rights: only built-in types.';
    END IF;
    IF allowed IS NOT NULL AND NOT typ::regtype = ANY (allowed) THEN
        RAISE EXCEPTION '% column "%" of % has type %; it must be one of %', what, col, tbl, typ::regtype, allowed
            USING ERRCODE = '42804';
    END IF;
    RETURN typ::regtype;
END
$$;
COMMENT ON FUNCTION aegis.check_alert_column(regclass, name, text, regtype[]) IS
    'Internal: may this column serve as this part of a metric alert mapping?';

-- Everything attach_metric_alerts() checks, so that a mapping that would
-- fail is refused when it is attached, never when a collector inserts.
CREATE FUNCTION aegis.check_metric_alert_source(tbl regclass, entity_column name, time_column name, metrics name[],
                                                time_unit text, alerts_table regclass, alerts_columns jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    numeric_types regtype[] := '{smallint,integer,bigint,real,double precision,numeric}';
    time_type regtype;
    m name;
    cols jsonb;
    k text;
    fields text[] := ARRAY['entity', 'time', 'rule', 'severity', 'metric', 'value', 'message'];
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
    END IF;
    IF tbl::oid IN (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('aegis', 'pg_catalog', 'information_schema')) THEN
        RAISE EXCEPTION 'metric alerts cannot be attached to %', tbl USING ERRCODE = '42501';
    END IF;
    PERFORM aegis.check_alert_column(tbl, entity_column, 'entity', NULL);
    time_type := aegis.check_alert_column(tbl, time_column, 'time',
        '{timestamp with time zone,timestamp without time zone,date,smallint,integer,bigint}');
    IF time_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) AND time_unit IS NULL THEN
        RAISE EXCEPTION 'time column "%" of % holds integers: say whether they count seconds or milliseconds since 1970', time_column, tbl
            USING ERRCODE = '22023', HINT = 'Pass time_unit => ''seconds'' (Zabbix''s clock) or time_unit => ''milliseconds''.';
    ELSIF time_type NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) AND time_unit IS NOT NULL THEN
        RAISE EXCEPTION 'time_unit applies to integer time columns; "%" of % is of type %', time_column, tbl, time_type
            USING ERRCODE = '22023';
    ELSIF time_unit NOT IN ('seconds', 'milliseconds') THEN
        RAISE EXCEPTION 'time_unit must be seconds or milliseconds, not %', time_unit USING ERRCODE = '22023';
    END IF;
    IF metrics IS NULL THEN
        metrics := ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.atttypid::regtype = ANY (numeric_types)
                           AND a.attname NOT IN (entity_column, time_column) ORDER BY a.attnum);
    END IF;
    IF pg_catalog.cardinality(metrics) = 0 THEN
        RAISE EXCEPTION '% has no metric column to alert on', tbl USING ERRCODE = '22023',
            HINT = 'Name them: metrics => ARRAY[''value''] (numeric columns).';
    END IF;
    FOREACH m IN ARRAY metrics LOOP
        PERFORM aegis.check_alert_column(tbl, m, 'metric', numeric_types);
    END LOOP;
    IF alerts_table IS NULL THEN
        IF alerts_columns IS NOT NULL THEN
            RAISE EXCEPTION 'alerts_columns needs alerts_table' USING ERRCODE = '22023';
        END IF;
    ELSE
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = alerts_table) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION '% is not a table', alerts_table USING ERRCODE = '42809';
        END IF;
        -- Its triggers, defaults, constraints and rules run with
        -- pg_aegis's rights when an alert is written.
        IF aegis.alerts_table_untrusted(alerts_table) IS NOT NULL THEN
            RAISE EXCEPTION 'alerts table % is not a superuser''s alone: %', alerts_table, aegis.alerts_table_untrusted(alerts_table)
                USING ERRCODE = '42501',
                DETAIL = 'pg_aegis writes alerts with its own rights, so its triggers, defaults and constraints would run with them.',
                HINT = 'Have a superuser own it (ALTER TABLE ... OWNER TO), or attach without an alerts table: alerts still reach aegis.alert_events.';
        END IF;
        cols := COALESCE(alerts_columns, '{"entity": "server_id", "time": "ts", "rule": "rule", "severity": "severity",
                                            "metric": "metric", "value": "value", "message": "message"}');
        IF pg_catalog.jsonb_typeof(cols) <> 'object' THEN
            RAISE EXCEPTION 'alerts_columns must map fields to columns of %', alerts_table USING ERRCODE = '22023';
        END IF;
        FOR k IN SELECT pg_catalog.jsonb_object_keys(cols) LOOP
            IF NOT k = ANY (fields) THEN
                RAISE EXCEPTION 'unknown alert field "%"', k USING ERRCODE = '22023',
                    HINT = 'Fields: ' || pg_catalog.array_to_string(fields, ', ') || '.';
            END IF;
            IF pg_catalog.jsonb_typeof(cols -> k) <> 'string' THEN
                RAISE EXCEPTION 'alert field "%" must name a column of %', k, alerts_table USING ERRCODE = '22023';
            END IF;
            PERFORM aegis.check_alert_column(alerts_table, (cols ->> k)::name, 'alerts ' || k,
                CASE k WHEN 'time' THEN '{timestamp with time zone,timestamp without time zone,date,integer,bigint}'::regtype[]
                       WHEN 'value' THEN '{smallint,integer,bigint,real,double precision,numeric,text,character varying}'::regtype[]
                       WHEN 'entity' THEN NULL
                       ELSE '{text,character varying}'::regtype[] END);
        END LOOP;
        IF NOT cols ? 'message' THEN
            RAISE EXCEPTION 'alerts_columns must map "message"' USING ERRCODE = '22023';
        END IF;
    END IF;
    RETURN pg_catalog.jsonb_build_object('metrics', metrics, 'alerts_columns', cols);
END
$$;
COMMENT ON FUNCTION aegis.check_metric_alert_source(regclass, name, name, name[], text, regclass, jsonb) IS
    'Internal: is this a valid metric alert mapping? (raises why not)';

-- Attach metric alerts to any metrics table: the mapping is checked and
-- recorded, and the statement trigger aegis_metric_alerts created.
-- SECURITY DEFINER: creating a trigger needs ownership of the table (which
-- aegis_admin does not have) and EXECUTE on aegis.metric_alerts() (which
-- nobody has: a table owner's own trigger could write alerts); it creates
-- only that trigger, on a table the mapping check accepted, and creating a
-- trigger runs no code of the table's. EXECUTE: aegis_admin.
CREATE FUNCTION aegis.attach_metric_alerts(tbl regclass, entity_column name, time_column name,
                                           metrics name[] DEFAULT NULL, time_unit text DEFAULT NULL,
                                           alerts_table regclass DEFAULT NULL, alerts_columns jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    checked jsonb;
BEGIN
    checked := aegis.check_metric_alert_source(tbl, entity_column, time_column, metrics, time_unit, alerts_table, alerts_columns);
    INSERT INTO aegis.metric_alert_sources AS s (relid, entity_column, time_column, time_unit, metrics, alerts_table,
                                                 alerts_columns, attached_by)
    VALUES (tbl, entity_column, time_column, time_unit,
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(checked -> 'metrics'))::name[],
            alerts_table, checked -> 'alerts_columns',
            COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER))
    ON CONFLICT (relid) DO UPDATE SET entity_column = EXCLUDED.entity_column, time_column = EXCLUDED.time_column,
        time_unit = EXCLUDED.time_unit, metrics = EXCLUDED.metrics, alerts_table = EXCLUDED.alerts_table,
        alerts_columns = EXCLUDED.alerts_columns, attached_by = EXCLUDED.attached_by, attached_at = pg_catalog.now();
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts'
                   AND t.tgfoid = 'aegis.metric_alerts()'::pg_catalog.regprocedure AND t.tgnargs = 0) THEN
        -- With the extension's rights, not the owner's: EXECUTE on
        -- aegis.metric_alerts() is nobody's (a trigger of the owner's own
        -- could write alerts). Creating and dropping a trigger runs no code
        -- of the table's.
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts') THEN
            EXECUTE pg_catalog.format('DROP TRIGGER aegis_metric_alerts ON %s', tbl);
        END IF;
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER aegis_metric_alerts AFTER INSERT ON %s REFERENCING NEW TABLE AS aegis_new_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts()', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb) IS
    'Evaluate metric alert rules on a table''s inserts, with a checked column mapping (admin-only)';

-- Stop evaluating a table's inserts: the trigger and the mapping go.
-- SECURITY DEFINER for the same reason as attach_metric_alerts().
CREATE FUNCTION aegis.detach_metric_alerts(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts'
               AND t.tgfoid = 'aegis.metric_alerts()'::pg_catalog.regprocedure) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER aegis_metric_alerts ON %s', tbl);
    END IF;
    DELETE FROM aegis.metric_alert_sources s WHERE s.relid = tbl;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION aegis.detach_metric_alerts(regclass) IS
    'Stop evaluating metric alerts on a table (admin-only)';

-- A metric alert trigger someone writes by hand is checked when it is
-- created (the DDL guard calls this for every new trigger on
-- aegis.metric_alerts()): an AFTER INSERT statement trigger with a NEW
-- TABLE, and either no argument and a mapping recorded for its table, or
-- the reference alerts table as argument over a table with the reference
-- columns server_id and ts. SECURITY DEFINER: the DDL guard runs it as
-- whoever creates the trigger, and the mapping catalog has no grants; it
-- only reads catalogs and raises. EXECUTE: PUBLIC.
CREATE FUNCTION aegis.check_metric_alerts_trigger(trig oid) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    t record;
    arg text;
BEGIN
    SELECT g.tgrelid::regclass AS rel, g.tgname, g.tgtype, g.tgnewtable, g.tgnargs, g.tgargs INTO t
    FROM pg_catalog.pg_trigger g WHERE g.oid = trig;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- AFTER (not BEFORE/INSTEAD), statement level, INSERT only.
    IF t.tgtype <> 4 OR t.tgnewtable IS NULL THEN
        RAISE EXCEPTION 'trigger % on %: aegis.metric_alerts() must be AFTER INSERT ... REFERENCING NEW TABLE AS ... FOR EACH STATEMENT',
            t.tgname, t.rel USING ERRCODE = '39P01';
    END IF;
    IF t.tgnargs = 0 THEN
        IF NOT EXISTS (SELECT 1 FROM aegis.metric_alert_sources s WHERE s.relid = t.rel) THEN
            RAISE EXCEPTION 'trigger % on %: no metric alert mapping is recorded for the table', t.tgname, t.rel
                USING ERRCODE = '22023',
                      HINT = 'Use aegis.attach_metric_alerts(table, entity_column, time_column, ...), which checks the mapping and creates the trigger.';
        END IF;
        RETURN;
    END IF;
    IF t.tgnargs > 1 THEN
        RAISE EXCEPTION 'trigger % on %: aegis.metric_alerts() takes at most one argument (the reference alerts table)', t.tgname, t.rel
            USING ERRCODE = '22023';
    END IF;
    arg := pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1);
    IF pg_catalog.to_regclass(arg) IS NULL THEN
        RAISE EXCEPTION 'trigger % on %: alerts table "%" does not exist', t.tgname, t.rel, arg USING ERRCODE = '42P01';
    END IF;
    PERFORM aegis.check_metric_alert_source(t.rel, 'server_id', 'ts', NULL, NULL, pg_catalog.to_regclass(arg), NULL);
END
$$;
COMMENT ON FUNCTION aegis.check_metric_alerts_trigger(oid) IS
    'Internal: refuse, when it is created, a metric alert trigger that would fail on insert';

-- The keys of a scope assigned to the current user (or a role they belong
-- to), now. SECURITY INVOKER: row-level security on scope_assignments
-- shows each role only its own. Policies call it as (SELECT ...), once per
-- query.
CREATE FUNCTION aegis.scope_keys(scope text) RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT COALESCE(pg_catalog.array_agg(DISTINCT a.key), '{}')
            FROM aegis.scope_assignments a
            WHERE a.scope = scope_keys.scope AND aegis.is_member(a.engineer::oid)
              AND (a.until IS NULL OR a.until > pg_catalog.now()));
END
$$;
COMMENT ON FUNCTION aegis.scope_keys(text) IS 'Keys of a scope currently assigned to the current user';

-- Does this key exist in the scope's key table? Raises why not. SECURITY
-- DEFINER: the key table may be one aegis_admin cannot read; the lookup
-- runs as its owner in a security-restricted operation (run_restricted),
-- with the key as a bound parameter cast to the column's type. EXECUTE:
-- aegis_admin.
CREATE FUNCTION aegis.check_scope_key(scope text, key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    s record;
    typ text;
    hit text[];
BEGIN
    SELECT x.key_table, x.key_column INTO s FROM aegis.scopes x WHERE x.name = check_scope_key.scope;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scope "%" does not exist', scope USING ERRCODE = '42704',
            HINT = 'Create it with aegis.create_scope(name, key_table, key_column).';
    END IF;
    IF key IS NULL OR pg_catalog.btrim(key) = '' THEN
        RAISE EXCEPTION 'the key must not be empty' USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.format_type(a.atttypid, NULL) INTO typ FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = s.key_table AND a.attname = s.key_column AND a.attnum > 0 AND NOT a.attisdropped;
    BEGIN
        hit := (SELECT x FROM aegis.run_restricted((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = s.key_table),
                      s.key_table, true,
                      pg_catalog.format('SELECT ''1''::pg_catalog.text FROM %s WHERE %I = $1::%s LIMIT 1', s.key_table, s.key_column, typ),
                      ARRAY[key]) x);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range OR datetime_field_overflow THEN
        RAISE EXCEPTION '"%" is not a valid % key of scope "%" (%)', key, typ, scope, SQLERRM USING ERRCODE = '22P02';
    END;
    IF hit IS NULL THEN
        RAISE EXCEPTION 'no %.% = % exists: scope "%" has no such key', s.key_table, s.key_column, key, scope
            USING ERRCODE = '22023', HINT = 'Assign keys that exist in the scope''s key table.';
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.check_scope_key(text, text) IS
    'Internal: does this key exist in the scope''s key table? (raises why not)';

CREATE FUNCTION aegis.create_scope(name text, key_table regclass, key_column name)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF name IS NULL OR key_table IS NULL OR key_column IS NULL THEN
        RAISE EXCEPTION 'name, key_table and key_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid scope name "%"', name USING ERRCODE = '22023',
            HINT = 'Lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid = key_table) THEN
        RAISE EXCEPTION 'the key table % of a scope must be protected by pg_aegis', key_table USING ERRCODE = '55000',
            DETAIL = 'Policies read it: its changes must be audited and its DDL guarded.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = key_table AND a.attname = key_column
                   AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid < 16384) THEN
        RAISE EXCEPTION 'column "%" of % does not exist or is not of a built-in type', key_column, key_table
            USING ERRCODE = '42703';
    END IF;
    INSERT INTO aegis.scopes (name, key_table, key_column, created_by)
    VALUES (create_scope.name, create_scope.key_table, create_scope.key_column,
            COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER));
END
$$;
COMMENT ON FUNCTION aegis.create_scope(text, regclass, name) IS
    'Create a row scope: people are assigned to keys of this table''s column (admin-only)';

-- SECURITY INVOKER: aegis_admin writes scope_assignments with its own
-- privileges (the audit trigger records who), after the key is checked.
CREATE FUNCTION aegis.assign_scope(engineer regrole, scope text, key text, until timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF engineer IS NULL THEN
        RAISE EXCEPTION 'engineer must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF until IS NOT NULL AND until <= pg_catalog.now() THEN
        RAISE EXCEPTION 'until must be in the future' USING ERRCODE = '22023',
            HINT = 'Use aegis.unassign_scope() to end an assignment now.';
    END IF;
    PERFORM aegis.check_scope_key(scope, key);
    INSERT INTO aegis.scope_assignments AS a (engineer, scope, key, until)
    VALUES (assign_scope.engineer, assign_scope.scope, pg_catalog.btrim(assign_scope.key), assign_scope.until)
    ON CONFLICT ON CONSTRAINT scope_assignments_pkey
    DO UPDATE SET until = EXCLUDED.until, assigned_at = pg_catalog.now(), assigned_by = CURRENT_USER;
END
$$;
COMMENT ON FUNCTION aegis.assign_scope(regrole, text, text, timestamptz) IS
    'Assign a role to a key of a scope (a host id, ...), optionally until a time; unknown keys are refused (admin-only)';

CREATE FUNCTION aegis.unassign_scope(engineer regrole, scope text, key text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    WITH d AS (
        DELETE FROM aegis.scope_assignments a
        WHERE a.engineer = unassign_scope.engineer AND a.scope = unassign_scope.scope AND a.key = pg_catalog.btrim(unassign_scope.key)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION aegis.unassign_scope(regrole, text, text) IS
    'End a scope assignment; true if there was one (admin-only)';

-- The row predicate of a table's declared scope (protect()'s "scope":
-- {"name": <scope>, "column": <column>, "via": [{"table", "match",
-- "column"}, ...]}), checked: the scope exists, every table of the path is
-- protected (policies read them; protected, their changes are audited and
-- their DDL guarded), every column exists, each step matches the type of
-- the column before it and the last column the scope key's type. NULL
-- without a scope.
CREATE FUNCTION aegis.scope_predicate_of(tbl regclass, scope jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    s record;
    key_type oid;
    prev_type oid;
    prev_rel regclass := tbl;
    prev_col name;
    step jsonb;
    steps jsonb;
    i integer := 0;
    rel regclass;
    pred text;
    typ oid;
    n integer;
BEGIN
    IF scope IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.jsonb_typeof(scope) <> 'object' OR pg_catalog.jsonb_typeof(scope -> 'name') IS DISTINCT FROM 'string'
       OR pg_catalog.jsonb_typeof(scope -> 'column') IS DISTINCT FROM 'string'
       OR (scope ? 'via' AND pg_catalog.jsonb_typeof(scope -> 'via') <> 'array')
       OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(scope) k WHERE k NOT IN ('name', 'column', 'via')) THEN
        RAISE EXCEPTION 'policy.scope must be {"name": <scope>, "column": <column>, "via": [{"table": ..., "match": ..., "column": ...}, ...]}'
            USING ERRCODE = '22023',
                  HINT = 'Example: {"scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "hostid"}]}}';
    END IF;
    SELECT x.key_table, x.key_column INTO s FROM aegis.scopes x WHERE x.name = scope ->> 'name';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scope "%" does not exist', scope ->> 'name' USING ERRCODE = '42704',
            HINT = 'Create it with aegis.create_scope(name, key_table, key_column).';
    END IF;
    SELECT a.atttypid INTO key_type FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = s.key_table AND a.attname = s.key_column AND a.attnum > 0 AND NOT a.attisdropped;
    prev_col := scope ->> 'column';
    SELECT a.atttypid INTO prev_type FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = prev_col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scope column "%" of % does not exist', prev_col, tbl USING ERRCODE = '42703';
    END IF;
    steps := COALESCE(scope -> 'via', '[]');
    n := pg_catalog.jsonb_array_length(steps);
    IF n > 8 THEN
        RAISE EXCEPTION 'a scope path has at most 8 steps' USING ERRCODE = '22023';
    END IF;
    -- Innermost first: the last column holds the scope's key.
    FOR step IN SELECT x FROM pg_catalog.jsonb_array_elements(steps) x LOOP
        i := i + 1;
        IF pg_catalog.jsonb_typeof(step) <> 'object'
           OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(step) k WHERE k NOT IN ('table', 'match', 'column'))
           OR pg_catalog.jsonb_typeof(step -> 'table') IS DISTINCT FROM 'string'
           OR pg_catalog.jsonb_typeof(step -> 'match') IS DISTINCT FROM 'string'
           OR pg_catalog.jsonb_typeof(step -> 'column') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'scope step % must be {"table": <table>, "match": <column>, "column": <column>}', i
                USING ERRCODE = '22023';
        END IF;
        rel := pg_catalog.to_regclass(step ->> 'table');
        IF rel IS NULL THEN
            -- Relative to the scoped table's schema, as Zabbix's names are.
            rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I',
                (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                step ->> 'table'));
        END IF;
        IF rel IS NULL THEN
            RAISE EXCEPTION 'scope step %: table "%" does not exist', i, step ->> 'table' USING ERRCODE = '42P01';
        END IF;
        IF NOT aegis.is_enforced(rel) THEN
            RAISE EXCEPTION 'scope step %: table % must be protected by pg_aegis', i, rel USING ERRCODE = '55000',
                DETAIL = 'The policy reads it: its changes must be audited and its DDL guarded.',
                HINT = 'Protect it first (with the same application roles).';
        END IF;
        SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = rel AND a.attname = step ->> 'match' AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'scope step %: column "%" of % does not exist', i, step ->> 'match', rel USING ERRCODE = '42703';
        END IF;
        IF typ <> prev_type AND NOT (typ IN (20, 21, 23) AND prev_type IN (20, 21, 23)) THEN
            RAISE EXCEPTION 'scope step %: %.% (%) cannot match %.% (%)', i, rel, step ->> 'match', typ::regtype,
                prev_rel, prev_col, prev_type::regtype USING ERRCODE = '42804';
        END IF;
        SELECT a.atttypid INTO prev_type FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = rel AND a.attname = step ->> 'column' AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'scope step %: column "%" of % does not exist', i, step ->> 'column', rel USING ERRCODE = '42703';
        END IF;
        prev_rel := rel;
        prev_col := step ->> 'column';
    END LOOP;
    IF prev_type <> key_type AND NOT (prev_type IN (20, 21, 23) AND key_type IN (20, 21, 23)) THEN
        RAISE EXCEPTION 'scope "%" keys are % (%.%), but %.% is %', scope ->> 'name', key_type::regtype, s.key_table, s.key_column,
            prev_rel, prev_col, prev_type::regtype USING ERRCODE = '42804';
    END IF;
    -- Build it from the inside out.
    pred := pg_catalog.format('%s = ANY ((SELECT aegis.scope_keys(%L))::%s[])',
        CASE WHEN n = 0 THEN pg_catalog.quote_ident(prev_col) ELSE pg_catalog.format('aegis_s%s.%I', n, prev_col) END,
        scope ->> 'name', pg_catalog.format_type(key_type, NULL));
    FOR i IN REVERSE n..1 LOOP
        step := steps -> (i - 1);
        rel := COALESCE(pg_catalog.to_regclass(step ->> 'table'), pg_catalog.to_regclass(pg_catalog.format('%I.%I',
                   (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                   step ->> 'table')));
        pred := pg_catalog.format('%s = ANY (ARRAY(SELECT aegis_s%s.%I FROM %s aegis_s%s WHERE %s))',
            CASE WHEN i = 1 THEN pg_catalog.quote_ident(scope ->> 'column')
                 ELSE pg_catalog.format('aegis_s%s.%I', i - 1, steps -> (i - 2) ->> 'column') END,
            i, step ->> 'match', rel, i, pred);
    END LOOP;
    RETURN pred;
END
$$;
COMMENT ON FUNCTION aegis.scope_predicate_of(regclass, jsonb) IS
    'Internal: the checked row predicate of a protect() scope declaration';

-- Pseudonyms in masking views (src/masked_pseudonym.c): executable by
-- everyone, it answers only at a call site approved when the query
-- started: a column of a table read through a view owned by
-- aegis_masking_owner (never a value the reader chose). Needs the library
-- preloaded (the approval is made by the ExecutorStart hook).
CREATE FUNCTION aegis.masked_pseudonym(value text)
RETURNS text LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'aegis_masked_pseudonym';
COMMENT ON FUNCTION aegis.masked_pseudonym(text) IS
    'The pseudonym of a column read through a masking view owned by aegis_masking_owner (refused anywhere else)';

-- SECURITY DEFINER: creating a view owned by aegis_masking_owner, and the
-- table's aegis_masking policy and grant (as the table's owner, through
-- owner_ddl), need rights aegis_admin does not have. It creates only that
-- view (its text built from the catalog with %I, over pg_aegis's own
-- functions) on a table pg_aegis protects; its policy DDL runs with
-- session_replication_role = replica and the guard remembers the table
-- afterwards. EXECUTE: aegis_admin.
CREATE FUNCTION aegis.create_masking_view(tbl regclass, view_name name DEFAULT NULL, readers regrole[] DEFAULT NULL)
RETURNS regclass
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET session_replication_role = replica
AS $$
DECLARE
    nsp name;
    rel name;
    cols text;
    v regclass;
    r regrole;
    classes jsonb;
BEGIN
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not protected by pg_aegis', tbl USING ERRCODE = '55000';
    END IF;
    SELECT n.nspname, c.relname INTO nsp, rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    view_name := COALESCE(view_name, (rel || '_masked')::name);
    IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', nsp, view_name)) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
                       WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', nsp, view_name))
                         AND c.relkind = 'v' AND o.rolname = 'aegis_masking_owner') THEN
        RAISE EXCEPTION 'relation %.% exists and is not a masking view', nsp, view_name USING ERRCODE = '42P07';
    END IF;
    -- The view reads the table as aegis_masking_owner through one policy of
    -- pg_aegis's; any other permissive policy for that role (or PUBLIC)
    -- would be OR'd with it and widen what the view shows (the reference
    -- schema's own masking views have theirs).
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
               WHERE p.polrelid = tbl AND p.polname <> 'aegis_masking' AND p.polpermissive AND p.polcmd IN ('r', '*')
                 AND (0::oid = ANY (p.polroles)
                      OR (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = 'aegis_masking_owner') = ANY (p.polroles))) THEN
        RAISE EXCEPTION 'table % has policies for aegis_masking_owner or PUBLIC', tbl USING ERRCODE = '55000',
            DETAIL = 'They would widen the rows a masking view shows.',
            HINT = 'Masking views are made for tables whose policies are pg_aegis''s (protect()).';
    END IF;
    classes := COALESCE((SELECT p.policy -> 'columns' FROM aegis.protected_tables p WHERE p.relid = tbl), '{}');
    SELECT pg_catalog.string_agg(CASE COALESCE(classes ->> a.attname, 'public')
               WHEN 'subject_id' THEN pg_catalog.format('aegis.masked_pseudonym(t.%1$I::text) AS %1$I', a.attname)
               WHEN 'pii' THEN pg_catalog.format('aegis.masked_pseudonym(t.%1$I::text) AS %1$I', a.attname)
               -- Secrets, costs (finance's) and metrics (not public columns):
               -- NULL, as text, never of the column's type (a domain of the
               -- owner's would run its CHECK for every reader).
               WHEN 'secret' THEN pg_catalog.format('NULL::pg_catalog.text AS %1$I', a.attname)
               WHEN 'cost' THEN pg_catalog.format('NULL::pg_catalog.text AS %1$I', a.attname)
               WHEN 'metric' THEN pg_catalog.format('NULL::pg_catalog.text AS %1$I', a.attname)
               WHEN 'free_text' THEN
                   CASE WHEN a.atttypid IN ('text'::regtype, 'character varying'::regtype)
                        THEN pg_catalog.format('aegis.redact_pii(t.%1$I::text) AS %1$I', a.attname)
                        ELSE pg_catalog.format('NULL::pg_catalog.text AS %1$I', a.attname) END
               ELSE pg_catalog.format('t.%1$I', a.attname) END, ', ' ORDER BY a.attnum)
    INTO cols
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    -- The table, for the view's owner: read through pg_aegis's policy.
    PERFORM aegis.owner_ddl(tbl, pg_catalog.format('GRANT SELECT ON TABLE %I.%I TO aegis_masking_owner', nsp, rel));
    PERFORM aegis.sync_masking_policy(tbl, true);
    PERFORM aegis.guard_remember(tbl);
    EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %I.%I WITH (security_barrier = true) AS SELECT %s FROM %I.%I t',
                              nsp, view_name, cols, nsp, rel);
    v := pg_catalog.format('%I.%I', nsp, view_name)::regclass;
    EXECUTE pg_catalog.format('ALTER VIEW %s OWNER TO aegis_masking_owner', v);
    EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', v);
    -- Readers: as given, else the roles the table's profile limits to its
    -- public columns.
    FOR r IN
        SELECT x FROM pg_catalog.unnest(readers) x
        UNION
        SELECT c.role_name::regrole FROM aegis.profile_catalog() c
        WHERE readers IS NULL AND c.profile = aegis.profile_in_force(tbl) AND c.columns <> 'all'
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles x WHERE x.rolname = c.role_name)
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %s', v, r);
        -- The view is no use to a reader who cannot reach its schema (as
        -- enforce_access(), with the extension's rights: no one's code runs).
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %s', nsp, r);
    END LOOP;
    EXECUTE pg_catalog.format('GRANT SELECT ON %s TO aegis_admin', v);
    RETURN v;
END
$$;
COMMENT ON FUNCTION aegis.create_masking_view(regclass, name, regrole[]) IS
    'A masking view of a protected table from its column classes: pseudonyms, redacted free text, no secrets (admin-only)';

CREATE FUNCTION aegis.flush_application_reads() RETURNS bigint LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'flush_application_reads_impl_wrapper';
COMMENT ON FUNCTION aegis.flush_application_reads() IS
    'Record now the reads this session counted ("application_reads": "aggregate"); returns how many table counts';

CREATE OR REPLACE FUNCTION aegis.audit_row() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_row_wrapper';
COMMENT ON FUNCTION aegis.audit_row() IS
    'AFTER INSERT OR UPDATE OR DELETE row trigger on pg_aegis''s own catalogs (and protected tables before 0.7.0): one audit entry per row change';

-- Run one DDL statement on a user table as the table's owner, in a
-- security-restricted operation (aegis.run_restricted): whatever the
-- command makes PostgreSQL evaluate (a partition key's or an index's
-- expressions, which it folds when it loads them) runs with the owner's
-- rights, never with pg_aegis's. Internal: granted to nobody.
CREATE OR REPLACE FUNCTION aegis.owner_ddl(tbl oid, stmt text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.run_restricted((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), tbl, false, stmt, '{}');
END
$$;
COMMENT ON FUNCTION aegis.owner_ddl(oid, text) IS
    'Internal: run one DDL statement on a table as its owner, in a security-restricted operation';

-- SECURITY INVOKER, so protected_by records the real caller; the table
-- switch goes through enforce_rls(), the catalog rows through aegis_admin's
-- own privileges on aegis.protected_tables and aegis.column_classes.
-- What protect()'s policy must be (protect() and the catalog guard on
-- aegis.protected_tables): an object with known keys, audit_reads a
-- boolean, erasure delete or anonymize, columns that exist mapped to known
-- classes.
CREATE OR REPLACE FUNCTION aegis.check_policy(tbl regclass, policy jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    k text;
    col text;
    cls text;
    valid_classes text[] := ARRAY['public', 'pii', 'secret', 'free_text', 'subject_id', 'metric', 'cost'];
    untrusted text[];
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
        IF k NOT IN ('columns', 'audit_reads', 'erasure', 'audit_inserts', 'audit_images', 'digest_buckets', 'application_roles', 'application_reads', 'profile', 'subject_directory', 'scope') THEN
            RAISE EXCEPTION 'unknown policy key "%"', k USING ERRCODE = '22023',
                HINT = 'Valid keys: columns, audit_reads, erasure, audit_inserts, audit_images, digest_buckets, application_roles, application_reads, profile, subject_directory, scope.';
        END IF;
    END LOOP;
    IF policy ? 'audit_inserts' AND COALESCE(policy ->> 'audit_inserts', '') NOT IN ('image', 'digest') THEN
        RAISE EXCEPTION 'policy.audit_inserts must be "image" or "digest"' USING ERRCODE = '22023',
            HINT = 'image: the classified image of every inserted row (the default); digest: one entry per statement with its row count and a content digest.';
    END IF;
    IF (policy ? 'audit_images' OR policy ? 'digest_buckets') AND COALESCE(policy ->> 'audit_inserts', 'image') <> 'digest' THEN
        RAISE EXCEPTION 'policy.% applies only with "audit_inserts": "digest"',
            CASE WHEN policy ? 'audit_images' THEN 'audit_images' ELSE 'digest_buckets' END USING ERRCODE = '22023';
    END IF;
    IF policy ? 'audit_images' AND COALESCE(policy ->> 'audit_images', '') NOT IN ('update_delete', 'none') THEN
        RAISE EXCEPTION 'policy.audit_images must be "update_delete" or "none"' USING ERRCODE = '22023',
            HINT = 'update_delete: UPDATE and DELETE keep one entry with row images per row (the default); none: statement entries only.';
    END IF;
    IF policy ? 'digest_buckets' THEN
        IF pg_catalog.jsonb_typeof(policy -> 'digest_buckets') <> 'object'
           OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(policy -> 'digest_buckets') b WHERE b NOT IN ('column', 'width'))
           OR pg_catalog.jsonb_typeof(policy #> '{digest_buckets,column}') IS DISTINCT FROM 'string'
           OR (policy #> '{digest_buckets}' ? 'width'
               AND (pg_catalog.jsonb_typeof(policy #> '{digest_buckets,width}') <> 'number'
                    OR (policy #>> '{digest_buckets,width}')::numeric <> pg_catalog.trunc((policy #>> '{digest_buckets,width}')::numeric)
                    OR (policy #>> '{digest_buckets,width}')::numeric NOT BETWEEN 1 AND 9223372036854)) THEN
            RAISE EXCEPTION 'policy.digest_buckets must be {"column": <name>, "width": <positive integer>}' USING ERRCODE = '22023',
                HINT = 'Rows are grouped by the column''s value in ranges of width (seconds for timestamp and date columns, default 86400; units for integer columns), so verify_table() can say where a difference is.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = tbl AND a.attname = policy #>> '{digest_buckets,column}' AND a.attnum > 0
                         AND NOT a.attisdropped
                         AND a.atttypid IN ('int2'::pg_catalog.regtype, 'int4'::pg_catalog.regtype, 'int8'::pg_catalog.regtype,
                                            'timestamp'::pg_catalog.regtype, 'timestamptz'::pg_catalog.regtype,
                                            'date'::pg_catalog.regtype)) THEN
            RAISE EXCEPTION 'digest bucket column "%" of % is not an integer, timestamp or date column',
                policy #>> '{digest_buckets,column}', tbl USING ERRCODE = '42804';
        END IF;
        IF (SELECT a.atttypid FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = tbl AND a.attname = policy #>> '{digest_buckets,column}') = 'date'::pg_catalog.regtype
           AND COALESCE((policy #>> '{digest_buckets,width}')::bigint, 86400) % 86400 <> 0 THEN
            RAISE EXCEPTION 'a date bucket column needs a width in whole days (a multiple of 86400 seconds)' USING ERRCODE = '22023';
        END IF;
    END IF;
    PERFORM aegis.application_roles_of(policy);
    PERFORM aegis.profile_of(policy);
    IF policy ? 'subject_directory' THEN
        PERFORM aegis.check_subject_directory(tbl, policy -> 'subject_directory');
        -- Erasure deletes the directory's row of a person through this
        -- column: it must be the table's subject_id.
        IF COALESCE(policy #>> ARRAY['columns', policy #>> '{subject_directory,id}'], '') <> 'subject_id' THEN
            RAISE EXCEPTION 'the subject directory''s id column "%" must be classified subject_id', policy #>> '{subject_directory,id}'
                USING ERRCODE = '22023',
                      HINT = 'Add it to "columns": {"' || (policy #>> '{subject_directory,id}') || '": "subject_id"}, so erasure finds the person''s own row.';
        END IF;
    END IF;
    PERFORM aegis.scope_predicate_of(tbl, policy -> 'scope');
    IF policy ? 'audit_reads' AND pg_catalog.jsonb_typeof(policy -> 'audit_reads') <> 'boolean' THEN
        RAISE EXCEPTION 'policy.audit_reads must be true or false' USING ERRCODE = '22023';
    END IF;
    IF policy ? 'application_reads' THEN
        IF pg_catalog.jsonb_typeof(policy -> 'application_reads') IS DISTINCT FROM 'string'
           OR (policy ->> 'application_reads') NOT IN ('statement', 'aggregate') THEN
            RAISE EXCEPTION 'policy.application_reads must be "statement" or "aggregate"' USING ERRCODE = '22023',
                HINT = 'statement: the application roles'' reads are recorded like anyone''s (the default); aggregate: as counts per table and aegis.application_read_interval.';
        END IF;
        IF policy ->> 'application_reads' = 'aggregate' AND pg_catalog.cardinality(aegis.application_roles_of(policy)) = 0 THEN
            RAISE EXCEPTION 'policy.application_reads "aggregate" needs "application_roles"' USING ERRCODE = '22023',
                HINT = 'Name the roles the application connects as: {"application_roles": ["<role>"], "application_reads": "aggregate"}; only their reads are counted.';
        END IF;
    END IF;
    IF policy ? 'erasure' AND COALESCE(policy ->> 'erasure', '') NOT IN ('delete', 'anonymize') THEN
        RAISE EXCEPTION 'policy.erasure must be "delete" or "anonymize"' USING ERRCODE = '22023',
            HINT = 'What erase_subject() does with a person''s rows: delete them (the default) or keep them without the person.';
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
    untrusted := aegis.policy_untrusted_code(tbl);
    IF untrusted IS NOT NULL THEN
        RAISE EXCEPTION 'the row-level security policies of % depend on what a non-superuser controls: %',
            tbl, pg_catalog.array_to_string(untrusted, ', ') USING ERRCODE = '42501',
            DETAIL = 'Its owner could change what the policies let through without any DDL on the table.',
            HINT = 'Write policies over the row, the reader and protected tables; have a superuser own the functions, types and views they use (ALTER ... OWNER TO).';
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.check_policy(regclass, jsonb) IS
    'Internal: is this a valid protect() policy for the table?';

-- Switch RLS and the audit triggers on (enable + force, revoke PUBLIC,
-- attach) or off for a table and, if it is partitioned, its existing partitions (RLS on the parent does not cover a
-- partition queried directly; partitions added later need protect() again).
-- Refuses non-tables, catalogs and pg_aegis's own schema; builds identifiers
-- only with %I from pg_class. Not granted to anyone: it runs only inside the
-- two definer-rights functions below, with their (owner's) rights.
CREATE OR REPLACE FUNCTION aegis.switch_rls(tbl regclass, enable boolean, prior jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    nsp name;
    rel name;
    kind "char";
    r record;
    was jsonb;
    tg name;
    digest boolean;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
    digest := aegis.capture_mode(tbl) = 'digest';
    SELECT n.nspname, c.relname, c.relkind INTO nsp, rel, kind
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = '42P01';
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%.%" is not a table', nsp, rel USING ERRCODE = '42809',
            HINT = 'protect() applies to ordinary and partitioned tables; protect the tables behind a view.';
    END IF;
    IF nsp IN ('pg_catalog', 'information_schema', 'aegis', 'pg_toast')
       OR nsp LIKE 'pg\_temp\_%' OR nsp LIKE 'pg\_toast\_temp\_%' THEN
        RAISE EXCEPTION 'cannot % "%.%": schema "%" is not for user data',
            CASE WHEN enable THEN 'protect' ELSE 'unprotect' END, nsp, rel, nsp
            USING ERRCODE = '42501';
    END IF;
    IF enable AND EXISTS (SELECT 1 FROM pg_catalog.pg_partition_tree(tbl) t
                          JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE c.relkind = 'f') THEN
        RAISE EXCEPTION 'cannot protect "%.%": it has a foreign-table partition', nsp, rel USING ERRCODE = '0A000',
            DETAIL = 'No capture trigger sees the changes of a foreign table.',
            HINT = 'Detach the foreign partition, or protect the table it stores its rows in.';
    END IF;
    FOR r IN
        SELECT n.nspname, c.relname, c.oid
        FROM (SELECT tbl AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
    LOOP
        IF enable THEN
            -- Capture triggers not exactly as protect() makes them (planted
            -- beforehand, WHEN (false) say) are replaced.
            FOR tg IN
                SELECT t.tgname FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = r.oid AND t.tgparentid = 0 AND NOT t.tgisinternal
                  -- (Row capture: tables protected before 0.7.0, whose
                  -- statement triggers replace it.)
                  AND (   t.tgfoid = 'aegis.audit_row()'::pg_catalog.regprocedure
                       OR (t.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure
                           AND NOT (t.tgtype = 32 AND t.tgqual IS NULL AND t.tgnargs = 0))
                       -- Statement capture: only as made below (the
                       -- partition TRUNCATE one in digest mode only).
                       OR (t.tgfoid = 'aegis.audit_statement()'::pg_catalog.regprocedure
                           AND NOT (aegis.is_statement_capture(t.oid)
                                    AND (digest OR t.tgname <> 'aegis_audit_truncate_digest'))))
            LOOP
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER %I ON %I.%I', tg, r.nspname, r.relname));
            END LOOP;
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', r.nspname, r.relname));
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', r.nspname, r.relname));
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM PUBLIC', r.nspname, r.relname));
            -- A partition gets the table's application roles.
            IF r.oid <> tbl::oid THEN
                PERFORM aegis.sync_application_policy(r.oid, COALESCE(aegis.application_roles_in_force(tbl), '{}'));
                -- (A partition that has its profile already is left as
                -- it is: enforce_access() changes profiles.)
                IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy x WHERE x.polrelid = r.oid AND x.polname LIKE 'aegis\_profile\_%') THEN
                    PERFORM aegis.sync_profile(r.oid, tbl, aegis.profile_of(p.policy), COALESCE(p.policy -> 'columns', '{}'),
                                               aegis.scope_predicate_of(tbl, p.policy -> 'scope'))
                    FROM aegis.protected_tables p WHERE p.relid = tbl;
                END IF;
            END IF;
            -- Statement triggers are not inherited by partitions: each gets one.
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                           WHERE t.tgrelid = r.oid
                             AND t.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure) THEN
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_truncate AFTER TRUNCATE ON %I.%I '
                    'FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_truncate()', r.nspname, r.relname));
            END IF;
            -- Statement triggers over transition tables, on the table and
            -- on each partition (a statement on a partition fires the
            -- partition's own, not its parent's).
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                               WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_insert' AND aegis.is_statement_capture(t.oid)) THEN
                    -- A trigger of the owner's under that name gives way.
                    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_insert') THEN
                        PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER aegis_audit_insert ON %I.%I', r.nspname, r.relname));
                    END IF;
                    PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_insert AFTER INSERT ON %I.%I '
                        'REFERENCING NEW TABLE AS aegis_new FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_statement()',
                        r.nspname, r.relname));
                END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                               WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_update' AND aegis.is_statement_capture(t.oid)) THEN
                    -- A trigger of the owner's under that name gives way.
                    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_update') THEN
                        PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER aegis_audit_update ON %I.%I', r.nspname, r.relname));
                    END IF;
                    PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_update AFTER UPDATE ON %I.%I '
                        'REFERENCING OLD TABLE AS aegis_old NEW TABLE AS aegis_new FOR EACH STATEMENT '
                        'EXECUTE FUNCTION aegis.audit_statement()', r.nspname, r.relname));
                END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                               WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_delete' AND aegis.is_statement_capture(t.oid)) THEN
                    -- A trigger of the owner's under that name gives way.
                    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_delete') THEN
                        PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER aegis_audit_delete ON %I.%I', r.nspname, r.relname));
                    END IF;
                    PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_delete AFTER DELETE ON %I.%I '
                        'REFERENCING OLD TABLE AS aegis_old FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_statement()',
                        r.nspname, r.relname));
                END IF;
                -- A partition of a digest-mode table truncated on its own
                -- takes its rows out of the table: their digest is
                -- recorded first.
                IF digest AND r.oid <> tbl::oid AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                               WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_truncate_digest'
                                 AND aegis.is_statement_capture(t.oid)) THEN
                    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = 'aegis_audit_truncate_digest') THEN
                        PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER aegis_audit_truncate_digest ON %I.%I',
                            r.nspname, r.relname));
                    END IF;
                    PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_truncate_digest BEFORE TRUNCATE ON %I.%I '
                        'FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_statement()', r.nspname, r.relname));
                END IF;
            END;
        ELSE
            -- Back to what protect() found (prior_state), or off.
            was := (SELECT e FROM pg_catalog.jsonb_array_elements(COALESCE(prior, '[]')) e
                    WHERE (e ->> 'relid')::oid = r.oid);
            IF NOT COALESCE((was ->> 'force')::boolean, false) THEN
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I NO FORCE ROW LEVEL SECURITY', r.nspname, r.relname));
            END IF;
            IF NOT COALESCE((was ->> 'rls')::boolean, false) THEN
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I DISABLE ROW LEVEL SECURITY', r.nspname, r.relname));
            END IF;
            IF pg_catalog.jsonb_array_length(COALESCE(was -> 'public', '[]')) > 0 THEN
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('GRANT %s ON TABLE %I.%I TO PUBLIC',
                    (SELECT pg_catalog.string_agg(p, ', ') FROM pg_catalog.jsonb_array_elements_text(was -> 'public') p
                     WHERE p IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')),
                    r.nspname, r.relname));
            END IF;
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER IF EXISTS aegis_audit_truncate ON %I.%I', r.nspname, r.relname));
            PERFORM aegis.sync_application_policy(r.oid, '{}');
        END IF;
        IF NOT enable THEN
            FOR tg IN SELECT t.tgname FROM pg_catalog.pg_trigger t
                      WHERE t.tgrelid = r.oid AND t.tgfoid = 'aegis.audit_statement()'::pg_catalog.regprocedure LOOP
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER %I ON %I.%I', tg, r.nspname, r.relname));
            END LOOP;
        END IF;
    END LOOP;
    -- The row capture trigger of tables protected before 0.7.0 (row
    -- triggers on a partitioned table are cloned to its partitions) gives
    -- way to the statement triggers.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
               WHERE t.tgrelid = tbl AND t.tgname = 'aegis_audit'
                 AND t.tgfoid = 'aegis.audit_row()'::pg_catalog.regprocedure) THEN
        PERFORM aegis.owner_ddl(tbl, pg_catalog.format('DROP TRIGGER aegis_audit ON %I.%I', nsp, rel));
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.switch_rls(regclass, boolean, jsonb) IS
    'Internal: RLS and audit triggers on (enable, force, revoke PUBLIC, attach) or off for a table and its partitions (no grants)';

-- The only definer-rights steps: switching row-level security needs table
-- ownership, and aegis_admin configures policies on tables it does not own.
-- SECURITY DEFINER, kept minimal: enforce_rls() can only add protection and
-- records what it enforced in aegis.rls_enforced; relax_rls() acts only on
-- tables recorded there (which only enforce_rls() writes), so it cannot be
-- used to switch off RLS that a table's owner enabled for other reasons.
-- Both run with an empty search_path. EXECUTE: aegis_admin only.
CREATE OR REPLACE FUNCTION aegis.enforce_rls(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    newly boolean;
    prior jsonb;
    switching boolean;
BEGIN
    newly := NOT EXISTS (SELECT 1 FROM aegis.rls_enforced r WHERE r.relid = tbl);
    IF newly THEN
        prior := aegis.rls_state(tbl);
    END IF;
    -- A protected table changing capture mode needs a baseline in the new
    -- mode (verify_table() compares with it).
    switching := NOT newly AND aegis.capture_mode(tbl) IS DISTINCT FROM
        (SELECT r.capture FROM aegis.rls_enforced r WHERE r.relid = tbl);
    IF switching THEN
        PERFORM aegis.switch_capture(tbl);
        UPDATE aegis.rls_enforced r SET baseline_pending = true, capture = aegis.capture_mode(tbl) WHERE r.relid = tbl;
    ELSE
        PERFORM aegis.switch_rls(tbl, true);
    END IF;
    -- The rows already there are the trail's starting point: recorded by
    -- take_baseline() once the table's columns are classified (before
    -- that, the images would hold PII and secrets in clear).
    INSERT INTO aegis.rls_enforced (relid, prior_state, baseline_pending, capture)
    VALUES (tbl, prior, true, aegis.capture_mode(tbl))
    ON CONFLICT (relid) DO NOTHING;
    -- What the DDL guard compares every later command with.
    PERFORM aegis.guard_remember(tbl);
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
    newly boolean;
BEGIN
    policy := COALESCE(policy, '{}'::jsonb);
    PERFORM aegis.check_policy(tbl, policy);
    newly := NOT EXISTS (SELECT 1 FROM aegis.protected_tables p WHERE p.relid = tbl);

    PERFORM aegis.enforce_rls(tbl);
    -- (Said once, when the table is first protected.)
    IF newly AND (SELECT NOT o.rolsuper AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(aegis.application_roles_of(policy)) a
                                             WHERE pg_catalog.pg_has_role(o.oid, a, 'MEMBER'))
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner WHERE c.oid = tbl) THEN
        RAISE WARNING 'the owner of %, role "%", now sees and changes only the rows policies grant it', tbl,
            (SELECT o.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner WHERE c.oid = tbl)
            USING DETAIL = 'Row-level security is forced on the owner too.',
                  HINT = 'If the application runs as this role, name it: aegis.protect(tbl, ''{"application_roles": ["<role>"]}'').';
    END IF;

    INSERT INTO aegis.protected_tables AS p (relid, policy, protected_by, known_columns)
    VALUES (tbl, protect.policy, CURRENT_USER,
            ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum))
    ON CONFLICT (relid) DO UPDATE SET policy = EXCLUDED.policy, protected_at = pg_catalog.now(),
                                      protected_by = EXCLUDED.protected_by,
                                      known_columns = EXCLUDED.known_columns;
    DELETE FROM aegis.column_classes c WHERE c.relid = tbl;
    INSERT INTO aegis.column_classes (relid, column_name, class)
    SELECT tbl, e.key, e.value #>> '{}'
    FROM pg_catalog.jsonb_each(COALESCE(protect.policy -> 'columns', '{}')) e;
    -- The capture triggers of the recorded mode (audit_inserts).
    PERFORM aegis.enforce_rls(tbl);
    PERFORM aegis.take_baseline(tbl);
END
$$;
COMMENT ON FUNCTION aegis.protect(regclass, jsonb) IS
    'Put a table under pg_aegis protection: enable and force RLS, revoke PUBLIC, record column classes (admin-only)';

CREATE OR REPLACE FUNCTION aegis.relax_rls(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    prior jsonb;
BEGIN
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM aegis.rls_enforced r WHERE r.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not protected by pg_aegis', tbl USING ERRCODE = '55000';
    END IF;
    -- Forget the table first: the DDL guard refuses switching off RLS or the
    -- audit trigger of a table still recorded here.
    DELETE FROM aegis.rls_enforced r WHERE r.relid = tbl RETURNING r.prior_state INTO prior;
    DELETE FROM aegis.guard_states g
    WHERE g.relid::oid IN (SELECT tbl::oid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(tbl) pt);
    PERFORM aegis.switch_rls(tbl, false, prior);
END
$$;
COMMENT ON FUNCTION aegis.relax_rls(regclass) IS
    'Internal step of unprotect(): RLS off on a protected table (definer rights; admin-only)';

-- Definer rights: the guard runs as whoever issues the DDL, who may not read
-- the aegis catalog.
CREATE OR REPLACE FUNCTION aegis.guard_compliant_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
-- Run after every DDL on a protected table: with LLVM JIT on (Debian's
-- PostgreSQL 15), its estimate (a function scan per protected table) passed
-- jit_above_cost and each call spent a third of a second compiling.
SET jit = off
AS $$
SELECT t.relid::oid
FROM aegis.rls_enforced e
CROSS JOIN LATERAL (SELECT e.relid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt) t
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
WHERE c.relrowsecurity AND c.relforcerowsecurity
  -- The capture triggers exactly as protect() made them: the three
  -- statement triggers over transition tables on each relation, no WHEN
  -- condition, column list or arguments, firing;
  AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger g
       WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
         AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_statement()'::pg_catalog.regprocedure
         AND aegis.is_statement_capture(g.oid) AND g.tgname OPERATOR(pg_catalog.<>) 'aegis_audit_truncate_digest'
         AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[])) OPERATOR(pg_catalog.=) 3
  -- in digest mode, on a partition, the BEFORE TRUNCATE one (its content
  -- leaving is recorded);
  AND (aegis.capture_mode(e.relid) OPERATOR(pg_catalog.<>) 'digest'
       OR t.relid OPERATOR(pg_catalog.=) e.relid::oid
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                  WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                    AND g.tgname OPERATOR(pg_catalog.=) 'aegis_audit_truncate_digest'
                    AND aegis.is_statement_capture(g.oid)
                    AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[])))
  -- and no row capture trigger left from before 0.7.0 (it would record
  -- every row twice).
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                  WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                    AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_row()'::pg_catalog.regprocedure)
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_truncate()'::pg_catalog.regprocedure
                AND g.tgtype OPERATOR(pg_catalog.=) 32 AND g.tgqual IS NULL AND g.tgnargs OPERATOR(pg_catalog.=) 0
                AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[]))
$$;
COMMENT ON FUNCTION aegis.guard_compliant_tables() IS
    'Internal: protected tables (and partitions) whose RLS is enabled and forced and whose audit triggers fire';

-- What a DDL command must not change on a protected table (or partition)
-- without being refused (non-superusers) or recorded (superusers): who owns
-- it, its rules and their state, its row-level security policies and every
-- function, operator and view they use, its inheritance children (rows
-- seen through it but written around its trigger), its partitions
-- (detached or dropped, their rows leave it unaudited), and the types of
-- its columns, dropped columns and its primary key. Everything by OID, not
-- by name: renaming a schema, a role or
-- a function changes nothing a table shows. New partitions are fine: they
-- come out protected (guard_protect_partitions). New columns are fine.
CREATE OR REPLACE FUNCTION aegis.guard_state(tbl oid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT pg_catalog.jsonb_build_object(
    'fp', pg_catalog.md5(pg_catalog.concat_ws('|',
        (SELECT c.relowner::text FROM pg_catalog.pg_class c WHERE c.oid = tbl),
        -- Who may do what on it (its grants and its columns'): a GRANT by
        -- its owner would hand rows and columns past the profile.
        (SELECT COALESCE(c.relacl::text, '') FROM pg_catalog.pg_class c WHERE c.oid = tbl),
        (SELECT pg_catalog.string_agg(a.attnum::text || '=' || a.attacl::text, ',' ORDER BY a.attnum)
         FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attacl IS NOT NULL),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', w.oid, w.ev_type, w.ev_enabled,
                    pg_catalog.md5(w.ev_action::text), pg_catalog.md5(COALESCE(w.ev_qual::text, ''))), ',' ORDER BY w.oid)
         FROM pg_catalog.pg_rewrite w WHERE w.ev_class = tbl),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', p.oid, p.polcmd, p.polpermissive,
                    (SELECT pg_catalog.string_agg(r::text, ',' ORDER BY 1) FROM pg_catalog.unnest(p.polroles) r),
                    pg_catalog.md5(COALESCE(p.polqual::text, '')),
                    pg_catalog.md5(COALESCE(p.polwithcheck::text, ''))), ',' ORDER BY p.oid)
         FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl),
        -- What the policies and rules use, and who may change it.
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', f.oid, f.proowner,
                    pg_catalog.md5(COALESCE(f.prosrc, '') || COALESCE(f.probin, '') || COALESCE(f.prosqlbody::text, '')),
                    f.prolang, f.provolatile, f.prosecdef, f.proconfig::text), ',' ORDER BY f.oid)
         FROM ROWS FROM (pg_catalog.unnest(pc.classids), pg_catalog.unnest(pc.objids)) u(classid, objid) JOIN pg_catalog.pg_proc f ON f.oid = u.objid
         WHERE u.classid = 'pg_catalog.pg_proc'::regclass),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', o.oid, o.oprowner, o.oprcode::oid), ',' ORDER BY o.oid)
         FROM ROWS FROM (pg_catalog.unnest(pc.classids), pg_catalog.unnest(pc.objids)) u(classid, objid) JOIN pg_catalog.pg_operator o ON o.oid = u.objid
         WHERE u.classid = 'pg_catalog.pg_operator'::regclass),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', v.oid, v.relowner, v.relkind,
                    (SELECT pg_catalog.md5(pg_catalog.string_agg(w.ev_action::text, ',' ORDER BY w.oid))
                     FROM pg_catalog.pg_rewrite w WHERE w.ev_class = v.oid)), ',' ORDER BY v.oid)
         FROM ROWS FROM (pg_catalog.unnest(pc.classids), pg_catalog.unnest(pc.objids)) u(classid, objid) JOIN pg_catalog.pg_class v ON v.oid = u.objid
         WHERE u.classid = 'pg_catalog.pg_class'::regclass AND v.relkind IN ('v', 'm')),
        (SELECT pg_catalog.string_agg(i.inhrelid::text, ',' ORDER BY 1)
         FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
         WHERE i.inhparent = tbl AND NOT k.relispartition),
        -- The primary key: what entries are filed under and verify_table()
        -- matches rows by.
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', con.conkey::text, con.condeferrable, con.condeferred,
                    (SELECT i.indcollation::text FROM pg_catalog.pg_index i WHERE i.indexrelid = con.conindid)), ',')
         FROM pg_catalog.pg_constraint con WHERE con.conrelid = tbl AND con.contype = 'p'),
        -- The attributes of composite types its columns hold (directly or
        -- as arrays): dropping one drops its values from every row.
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', a.attnum, ca.attnum, ca.attname, ca.atttypid, ca.atttypmod), ','
                                      ORDER BY a.attnum, ca.attnum)
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         JOIN pg_catalog.pg_type ct ON ct.oid = CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN t.typelem ELSE t.oid END
         JOIN pg_catalog.pg_attribute ca ON ca.attrelid = ct.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND ct.typrelid <> 0))),
    'parts', (SELECT COALESCE(pg_catalog.jsonb_agg(i.inhrelid::bigint), '[]')
              FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
              WHERE i.inhparent = tbl AND k.relispartition),
    'cols', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a.attnum::text,
                 a.atttypid::text || ':' || a.atttypmod::text || ':' || a.attcollation::text || ':' || a.attname
                 -- A generated column's expression: changing it (a
                 -- virtual column, PostgreSQL 18) changes every value read.
                 || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text || ':'
                         || pg_catalog.md5(COALESCE((SELECT d.adbin::text FROM pg_catalog.pg_attrdef d
                                                     WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum), ''))
                         ELSE '' END), '{}')
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped),
    -- The labels of enum columns: renaming one changes every row that holds
    -- it (adding labels is fine).
    'enums', (SELECT COALESCE(pg_catalog.jsonb_object_agg(x.attnum::text, x.labels), '{}')
              FROM (SELECT a.attnum,
                           -- Every enum a column's values hold, however
                           -- deep: through arrays, domains (of domains),
                           -- ranges, multiranges and composite attributes.
                           (WITH RECURSIVE reach(typ) AS (
                                SELECT a.atttypid
                                UNION
                                SELECT n.typ FROM reach r
                                JOIN pg_catalog.pg_type t ON t.oid = r.typ
                                CROSS JOIN LATERAL (
                                    SELECT t.typelem WHERE t.typelem <> 0
                                    UNION ALL SELECT t.typbasetype WHERE t.typbasetype <> 0
                                    UNION ALL SELECT g.rngsubtype FROM pg_catalog.pg_range g WHERE g.rngtypid = t.oid
                                    UNION ALL SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = t.oid
                                    UNION ALL SELECT ca.atttypid FROM pg_catalog.pg_attribute ca
                                              WHERE t.typrelid <> 0 AND ca.attrelid = t.typrelid
                                                AND ca.attnum > 0 AND NOT ca.attisdropped) n(typ))
                            SELECT pg_catalog.jsonb_agg(e.enumlabel ORDER BY e.enumtypid, e.enumsortorder)
                            FROM pg_catalog.pg_enum e WHERE e.enumtypid IN (SELECT r.typ FROM reach r)) AS labels
                    FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped) x
              WHERE x.labels IS NOT NULL))
-- What the policies and rules use, followed once (most relations, such as
-- partitions, have neither).
FROM (SELECT pg_catalog.array_agg(u.classid) AS classids, pg_catalog.array_agg(u.objid) AS objids
      FROM aegis.policy_code(tbl, true) u
      WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl)
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w WHERE w.ev_class = tbl)) pc
$$;
COMMENT ON FUNCTION aegis.guard_state(oid) IS
    'Internal: what the DDL guard compares before and after a command (owner, rules, policies, inheritance, partitions, column types)';

-- Every protected table and partition: its name, and whether a command
-- broke it: it was compliant when remembered and is not now, or its owner,
-- rules, policies or inheritance children changed, a partition left, or a
-- column changed type. Relations seen for the first time are remembered
-- as they are. Definer rights: guard_states is the extension
-- owner's; it only reads catalogs and adds first sightings.
CREATE OR REPLACE FUNCTION aegis.guard_check() RETURNS TABLE (relid oid, name text, broken boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH rels AS (
        SELECT DISTINCT t.relid AS oid
        FROM aegis.rls_enforced e
        CROSS JOIN LATERAL (SELECT e.relid::oid AS relid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE c.relkind IN ('r', 'p')
    ), now AS (
        SELECT r.oid, aegis.guard_state(r.oid) AS state, r.oid IN (SELECT aegis.guard_compliant_tables()) AS compliant
        FROM rels r
    ), seen AS (
        INSERT INTO aegis.guard_states AS g (relid, state, compliant)
        SELECT n.oid, n.state, n.compliant FROM now n
        WHERE NOT EXISTS (SELECT 1 FROM aegis.guard_states g2 WHERE g2.relid::oid = n.oid)
        ON CONFLICT DO NOTHING
        RETURNING g.relid::oid
    )
    SELECT n.oid, pg_catalog.format('%I.%I', ns.nspname, c.relname),
           g.state IS NOT NULL AND (
                  (g.compliant AND NOT n.compliant)
               OR n.state ->> 'fp' <> g.state ->> 'fp'
               OR NOT (n.state -> 'parts') @> (SELECT COALESCE(pg_catalog.jsonb_agg(x), '[]')
                                              FROM pg_catalog.jsonb_array_elements(g.state -> 'parts') x
                                              WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class k
                                                            WHERE k.oid = (x #>> '{}')::oid))
               OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each_text(g.state -> 'cols') col(cname, typ)
                          WHERE n.state -> 'cols' ? col.cname AND n.state -> 'cols' ->> col.cname <> col.typ)
               -- A dropped column takes its values with it, unrecorded.
               OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(g.state -> 'cols') k
                          WHERE NOT n.state -> 'cols' ? k)
               OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(COALESCE(g.state -> 'enums', '{}')) en(cname, labels)
                          WHERE n.state -> 'enums' ? en.cname AND NOT (n.state -> 'enums' -> en.cname) @> en.labels))
    FROM now n
    JOIN pg_catalog.pg_class c ON c.oid = n.oid
    JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
    LEFT JOIN aegis.guard_states g ON g.relid::oid = n.oid;
END
$$;
COMMENT ON FUNCTION aegis.guard_check() IS
    'Internal: protected tables and partitions, and whether a command changed them from what the guard remembers';

-- SECURITY DEFINER: erasure must reach every row of the subject whatever the
-- caller's row-level security, and rewrite audit entries nobody may touch.
-- Every statement on a user table (counting, UPDATE, DELETE) runs as the
-- table's owner in a security-restricted operation exempt from its FORCE
-- ROW LEVEL SECURITY (aegis.run_restricted): triggers, constraints, domains,
-- defaults, generated columns, index expressions, rules, casts and
-- operators of the table run with the owner's rights, never pg_aegis's.
-- What it runs is fixed: tables in aegis.rls_enforced, identifiers through
-- %I/regclass, the subject's identifiers only as bound parameters, holds
-- through row_filter(). Empty search_path. EXECUTE: aegis_admin.
--
-- Who: the subject as given and, where protect() declared a subject
-- directory (Zabbix's users: "subject_directory": {"id": "userid", "names":
-- ["username", ["name", "surname"]]}), the id and every name of the
-- directory rows whose id or a name equals it: erase_subject('42') and
-- erase_subject('mary.smith') reach the same person.
-- Where: every protected table's subject_id columns (equal, as text, to one
-- of the identifiers) and free_text columns (mentioning one of the names:
-- identifiers of 3 characters or more that are not only digits). Tables are
-- visited referencing tables first, so each acts on its own policy before
-- the tables it references: rows of the subject are deleted, or anonymized
-- when the table's policy says "erasure": "anonymize" (subject_id and pii
-- columns set to NULL, or to '[ERASED]' when NOT NULL text; refused, with
-- the reason, when NOT NULL of another type; mentions erased); rows that
-- only mention the subject have the mentions erased.
-- Foreign keys: before deleting, what ON DELETE CASCADE / SET NULL / SET
-- DEFAULT would do is counted (aegis.erasure_cascades()) and listed in the
-- receipt; if a cascade would delete rows under legal hold or rows of a
-- table whose policy is anonymize, the table's rows are not deleted and the
-- receipt says why. Rows under an active legal hold are not touched but
-- counted. While anything of the subject is kept, the subject's key and
-- audit entries are kept too (they are evidence), and the receipt says the
-- erasure is not complete and why (incomplete_reasons). Otherwise the
-- subject's key is destroyed (crypto-shredding) and their data in audit
-- entries is replaced by tombstones. The receipt is recorded as an ERASURE
-- entry, with who asked: requested_by (the role the caller acts as) and
-- session_user (the login).
CREATE OR REPLACE FUNCTION aegis.erase_subject(subject text, dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    t record;
    d record;
    subj_cols name[];
    text_cols name[];
    pii_cols name[];
    mode text;
    is_subject text;
    mentioned text;
    held text;
    sets text;
    n_rows bigint;
    n_rows_held bigint;
    n_mentions bigint;
    n_mentions_held bigint;
    tables jsonb := '{}';
    keys jsonb;
    tombstoned bigint := 0;
    tomb jsonb;
    tomb_list jsonb := '[]';
    subject_pseudonym text;
    receipt jsonb;
    owner oid;
    counts text[];
    ids text[];
    names text[];
    found text[];
    id_expr text;
    name_exprs text[];
    args text[];
    reasons text[] := '{}';
    cascades jsonb;
    refusal text;
    unfit text[];
    requested_by text;
    refused_rels oid[] := '{}';
    directory_rows bigint := 0;
    i text;
BEGIN
    IF subject IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION 'subject and dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- Who asked: the role the caller acts as (SET ROLE: only a role the
    -- session may become), and the session's login.
    requested_by := COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER);
    subject := pg_catalog.btrim(subject);
    IF NOT dry_run THEN
        LOCK TABLE aegis.legal_holds IN SHARE MODE;
    END IF;

    -- ---------------------------------------------------------------- who
    ids := ARRAY[subject];
    FOR d IN
        SELECT p.relid, p.policy -> 'subject_directory' AS dir FROM aegis.protected_tables p
        JOIN aegis.rls_enforced e ON e.relid = p.relid
        WHERE p.policy ? 'subject_directory' ORDER BY p.relid::text
    LOOP
        CONTINUE WHEN subject = '';
        id_expr := pg_catalog.format('%I::pg_catalog.text', d.dir ->> 'id');
        name_exprs := ARRAY(
            SELECT CASE WHEN pg_catalog.jsonb_typeof(v) = 'string' THEN pg_catalog.format('%I::pg_catalog.text', v #>> '{}')
                        ELSE (SELECT 'pg_catalog.concat_ws('' '', '
                                     || pg_catalog.string_agg(pg_catalog.format('%I::pg_catalog.text', c #>> '{}'), ', ') || ')'
                              FROM pg_catalog.jsonb_array_elements(v) c) END
            FROM pg_catalog.jsonb_array_elements(COALESCE(d.dir -> 'names', '[]')) v);
        SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = d.relid;
        FOR found IN
            SELECT x FROM aegis.run_restricted(owner, d.relid, true, pg_catalog.format(
                'SELECT %s FROM %s WHERE %s',
                pg_catalog.array_to_string(id_expr || name_exprs, ', '), d.relid,
                pg_catalog.array_to_string(ARRAY(SELECT e || ' = $1' FROM pg_catalog.unnest(id_expr || name_exprs) e), ' OR ')),
                ARRAY[subject]) x
        LOOP
            directory_rows := directory_rows + 1;
            ids := ids || ARRAY(SELECT pg_catalog.btrim(f) FROM pg_catalog.unnest(found) f
                                WHERE f IS NOT NULL AND pg_catalog.btrim(f) <> '');
        END LOOP;
    END LOOP;
    IF directory_rows = 0 AND pg_catalog.length(subject) < 3 THEN
        RAISE EXCEPTION 'a subject identifier needs at least 3 characters' USING ERRCODE = '22023',
            HINT = 'Shorter identifiers would match inside unrelated text; pass the full user id, name or email, or declare a subject directory (protect()''s "subject_directory") to erase by numeric id.';
    END IF;
    ids := ARRAY(SELECT DISTINCT x FROM pg_catalog.unnest(ids) x ORDER BY x);
    -- Names to find in free text: never a short or all-digit identifier
    -- (user id 42 is no mention of anyone).
    names := ARRAY(SELECT x FROM pg_catalog.unnest(ids) x WHERE pg_catalog.length(x) >= 3 AND x !~ '^[0-9]+$' ORDER BY x);
    args := ARRAY[ids::text, names::text];

    -- ---------------------------------------------------------------- where
    -- Referencing tables before the tables they reference: longest chain of
    -- foreign keys up from the table first.
    FOR t IN
        WITH RECURSIVE up(relid, parent, depth, path) AS (
            SELECT p.relid::oid, con.confrelid, 1, ARRAY[p.relid::oid]
            FROM aegis.protected_tables p
            JOIN pg_catalog.pg_constraint con ON con.conrelid = p.relid AND con.contype = 'f'
            WHERE con.confrelid <> p.relid::oid
            UNION ALL
            SELECT u.relid, con.confrelid, u.depth + 1, u.path || u.parent
            FROM up u JOIN pg_catalog.pg_constraint con ON con.conrelid = u.parent AND con.contype = 'f'
            WHERE NOT con.confrelid = ANY (u.path || u.parent) AND u.depth < 16
        )
        SELECT p.relid, p.policy
        FROM aegis.protected_tables p
        JOIN aegis.rls_enforced e ON e.relid = p.relid
        ORDER BY COALESCE((SELECT pg_catalog.max(u.depth) FROM up u WHERE u.relid = p.relid::oid), 0) DESC, p.relid::text
    LOOP
        SELECT pg_catalog.array_agg(c.column_name ORDER BY c.column_name) FILTER (WHERE c.class = 'subject_id'),
               pg_catalog.array_agg(c.column_name ORDER BY c.column_name)
                   FILTER (WHERE c.class = 'free_text'
                             AND COALESCE(NULLIF(ty.typbasetype, 0), a.atttypid)
                                 IN ('text'::regtype, 'character varying'::regtype)),
               pg_catalog.array_agg(c.column_name ORDER BY c.column_name) FILTER (WHERE c.class = 'pii')
        INTO subj_cols, text_cols, pii_cols
        FROM aegis.column_classes c
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.relid AND a.attname = c.column_name
             AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
        WHERE c.relid = t.relid;
        CONTINUE WHEN subj_cols IS NULL AND text_cols IS NULL;
        PERFORM aegis.lifecycle_check_table(t.relid);
        mode := COALESCE(t.policy ->> 'erasure', 'delete');
        is_subject := COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I::pg_catalog.text = ANY ($1::pg_catalog.text[])', x), ' OR ')
                                FROM pg_catalog.unnest(subj_cols) x), 'false');
        mentioned := CASE WHEN text_cols IS NULL OR pg_catalog.cardinality(names) = 0 THEN 'false'
                          ELSE (SELECT pg_catalog.string_agg(pg_catalog.format('aegis.mentions_any(%I, $2::pg_catalog.text[])', x), ' OR ')
                                FROM pg_catalog.unnest(text_cols) x) END;
        held := COALESCE((SELECT f.predicate FROM aegis.legal_hold_filter(t.relid) f), 'false');
        SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = t.relid;
        counts := (SELECT x FROM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
            'SELECT pg_catalog.count(*) FILTER (WHERE %1$s)::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE (%1$s) AND COALESCE(%3$s, false))::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s))::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s) AND COALESCE(%3$s, false))::pg_catalog.text '
            'FROM %4$s WHERE (%1$s) OR (%2$s)', is_subject, mentioned, held, t.relid),
            args) x);
        n_rows := counts[1]::bigint;
        n_rows_held := counts[2]::bigint;
        n_mentions := counts[3]::bigint;
        n_mentions_held := counts[4]::bigint;
        IF n_rows_held > 0 OR n_mentions_held > 0 THEN
            reasons := reasons || pg_catalog.format('%s rows of %s are under legal hold', n_rows_held + n_mentions_held, t.relid);
        END IF;
        refusal := NULL;
        cascades := '[]';
        IF n_rows > n_rows_held THEN
            IF mode = 'anonymize' THEN
                -- A NOT NULL column that is not text cannot be emptied.
                unfit := ARRAY(SELECT x FROM pg_catalog.unnest(subj_cols || COALESCE(pii_cols, '{}')) x
                               JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = x
                               JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                               WHERE a.attnotnull AND COALESCE(NULLIF(ty.typbasetype, 0), a.atttypid)
                                     NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype));
                IF pg_catalog.cardinality(unfit) > 0 THEN
                    refusal := pg_catalog.format('%s rows of %s cannot be anonymized: %s is NOT NULL and not text',
                                                 n_rows - n_rows_held, t.relid, pg_catalog.array_to_string(unfit, ', '));
                END IF;
            ELSE
                cascades := aegis.erasure_cascades(t.relid,
                    pg_catalog.format('(%s) AND NOT COALESCE(%s, false)', is_subject, held), args, ids::text, refused_rels);
                refusal := (SELECT pg_catalog.string_agg(c ->> 'refused', '; ') FROM pg_catalog.jsonb_array_elements(cascades) c
                            WHERE c ->> 'refused' IS NOT NULL);
            END IF;
            IF refusal IS NOT NULL THEN
                reasons := reasons || refusal;
                refused_rels := refused_rels || t.relid::oid;
            END IF;
        END IF;
        IF NOT dry_run AND n_rows > n_rows_held AND refusal IS NULL THEN
            IF mode = 'anonymize' THEN
                SELECT pg_catalog.concat_ws(', ',
                    (SELECT pg_catalog.string_agg(pg_catalog.format(
                        CASE WHEN a.attnotnull THEN '%1$I = CASE WHEN %1$I::pg_catalog.text = ANY ($1::pg_catalog.text[]) THEN ''[ERASED]'' ELSE %1$I END'
                             ELSE '%1$I = CASE WHEN %1$I::pg_catalog.text = ANY ($1::pg_catalog.text[]) THEN NULL ELSE %1$I END' END, x), ', ')
                     FROM pg_catalog.unnest(subj_cols) x
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = x),
                    (SELECT pg_catalog.string_agg(pg_catalog.format(
                        CASE WHEN a.attnotnull THEN '%I = ''[ERASED]''' ELSE '%I = NULL' END, x), ', ')
                     FROM pg_catalog.unnest(pii_cols) x
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = x),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions_all(%1$I, $2::pg_catalog.text[])', x), ', ')
                     FROM pg_catalog.unnest(text_cols) x WHERE pg_catalog.cardinality(names) > 0))
                INTO sets;
                PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
                    'UPDATE %s SET %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, sets, is_subject, held),
                    args);
            ELSE
                PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
                    'DELETE FROM %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, is_subject, held),
                    args);
            END IF;
        END IF;
        IF NOT dry_run AND n_mentions > n_mentions_held THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions_all(%1$I, $2::pg_catalog.text[])', x), ', ')
            INTO sets FROM pg_catalog.unnest(text_cols) x;
            PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
                'UPDATE %s SET %s WHERE NOT COALESCE(%s, false) AND (%s) AND NOT COALESCE(%s, false)',
                t.relid, sets, is_subject, mentioned, held),
                args);
        END IF;
        IF n_rows > 0 OR n_mentions > 0 THEN
            tables := tables || pg_catalog.jsonb_build_object(t.relid::text, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'action', CASE WHEN refusal IS NOT NULL THEN 'refused'
                               WHEN mode = 'anonymize' THEN 'anonymized' ELSE 'deleted' END,
                'rows', CASE WHEN refusal IS NOT NULL THEN 0 ELSE n_rows - n_rows_held END, 'rows_held', n_rows_held,
                'mentions_erased', n_mentions - n_mentions_held, 'mentions_held', n_mentions_held,
                'refused', refusal,
                'cascades', CASE WHEN cascades = '[]' THEN NULL ELSE cascades END)));
        END IF;
    END LOOP;

    -- The key and the trail: kept while anything of the subject is kept.
    IF pg_catalog.cardinality(reasons) > 0 THEN
        keys := pg_catalog.jsonb_build_object('done', false,
            'reason', 'rows of the subject are kept (incomplete_reasons): the key and the audit entries are kept too; run erase_subject() again when they can go');
    ELSIF dry_run THEN
        keys := pg_catalog.jsonb_build_object('done', false, 'reason', 'dry run');
        FOREACH i IN ARRAY ids LOOP
            tombstoned := tombstoned + (aegis.audit_tombstone(i, true) ->> 'count')::bigint;
        END LOOP;
    ELSE
        -- Without a usable master key the key cannot be found, let alone
        -- destroyed: the receipt says so and the erasure is not complete.
        BEGIN
            keys := aegis.forget_subject(subject) || '{"done": true}';
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            keys := pg_catalog.jsonb_build_object('done', false, 'reason', SQLERRM);
            reasons := reasons || ('the subject''s key was not destroyed: ' || SQLERRM);
        END;
        FOREACH i IN ARRAY ids LOOP
            tomb := aegis.audit_tombstone(i, false);
            tomb_list := tomb_list || COALESCE(tomb -> 'tombstoned', '[]');
        END LOOP;
        -- An entry tombstoned for two identifiers: the digest of what it
        -- holds at the end.
        tomb_list := COALESCE((SELECT pg_catalog.jsonb_agg(x.e ORDER BY x.n)
                               FROM (SELECT DISTINCT ON (a.e ->> 0, a.e ->> 1) a.e, a.n
                                     FROM pg_catalog.jsonb_array_elements(tomb_list) WITH ORDINALITY a(e, n)
                                     ORDER BY a.e ->> 0, a.e ->> 1, a.n DESC) x), '[]');
        tombstoned := pg_catalog.jsonb_array_length(tomb_list);
    END IF;
    IF dry_run THEN
        reasons := reasons || 'dry run: nothing was changed'::text;
    END IF;
    BEGIN
        subject_pseudonym := aegis.pseudonymize(subject, 'pseudonym');
    EXCEPTION WHEN OTHERS THEN
        subject_pseudonym := NULL;
    END;
    receipt := pg_catalog.jsonb_build_object(
        'subject_pseudonym', subject_pseudonym,
        'dry_run', dry_run,
        'complete', pg_catalog.cardinality(reasons) = 0,
        'incomplete_reasons', pg_catalog.to_jsonb(reasons),
        'identifiers', pg_catalog.cardinality(ids),
        'tables', tables,
        'audit_entries_tombstoned', tombstoned,
        'tombstoned', tomb_list,
        'keys', keys,
        'requested_by', requested_by,
        'session_user', SESSION_USER,
        'at', pg_catalog.now(),
        'chain_position', (SELECT pg_catalog.max(c.position) FROM aegis.audit_chain c));
    IF NOT dry_run THEN
        PERFORM aegis.audit_event('ERASURE', NULL, receipt);
        receipt := receipt || pg_catalog.jsonb_build_object('audit_entry_id', pg_catalog.currval('aegis.audit_log_id_seq'));
    END IF;
    RETURN receipt;
END
$$;
COMMENT ON FUNCTION aegis.erase_subject(text, boolean) IS
    'GDPR erasure of a person across protected tables, their key and the audit trail, except what legal holds keep; returns the receipt (admin-only)';

-- May retention or erasure act on this table? It must be protected (its
-- changes are audited) and the time column must be a timestamp or date, or
-- an integer holding seconds or milliseconds since 1970 (Zabbix's clock).
-- Code the table's owner controls (triggers, constraints, domains, defaults,
-- generated columns, index expressions, rules, casts and operators of its
-- types) is no reason to refuse any more: every statement on the table runs
-- as its owner in a security-restricted operation (aegis.run_restricted),
-- so that code runs with the owner's own rights.
-- SECURITY DEFINER so that set_retention() (run with the admin's rights) can
-- read aegis.rls_enforced; it only reads catalogs and raises or returns.
CREATE OR REPLACE FUNCTION aegis.lifecycle_check_table(tbl regclass, time_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    typ regtype;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not protected by pg_aegis', tbl USING ERRCODE = '55000',
            HINT = 'Retention and erasure act only on protected tables, whose changes are audited: SELECT aegis.protect(''<table>'');';
    END IF;
    IF time_column IS NOT NULL THEN
        SELECT a.atttypid::regtype INTO typ FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = time_column AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % does not exist', time_column, tbl USING ERRCODE = '42703';
        END IF;
        IF typ NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype, 'date'::regtype,
                       'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
            RAISE EXCEPTION 'time column "%" of % is of type %, not a timestamp, a date or an integer epoch', time_column, tbl, typ
                USING ERRCODE = '42804';
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.lifecycle_check_table(regclass, name) IS
    'Internal: may retention or erasure act on this table (protected, time column of a date/time type or an integer epoch)?';

-- The rows of a table under active legal holds, as one predicate over its
-- columns (each hold's filter validated by row_filter() for the role that
-- placed it; 'true' when a hold covers the whole table; NULL without holds),
-- and the holds' ids. A hold whose author no longer exists keeps protecting:
-- its filter is then validated without an author's limits (a hold can only
-- keep rows, never delete them).
CREATE OR REPLACE FUNCTION aegis.legal_hold_filter(tbl regclass, OUT predicate text, OUT hold_ids bigint[])
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    h record;
    whole boolean := false;
BEGIN
    hold_ids := '{}';
    -- Holds on the table, and on any of its partitions (those keep the
    -- rows of that partition only: tableoid).
    FOR h IN
        SELECT l.id, l.relid, l.only_where, l.placed_by FROM aegis.legal_holds l
        WHERE l.relid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t UNION SELECT tbl::oid)
          AND l.released_at IS NULL ORDER BY l.id
    LOOP
        hold_ids := hold_ids || h.id;
        IF h.only_where IS NULL AND h.relid = tbl::oid THEN
            whole := true;
        ELSE
            predicate := COALESCE(predicate || ' OR ', '') || '('
                || CASE WHEN h.relid <> tbl::oid
                        THEN pg_catalog.format('tableoid OPERATOR(pg_catalog.=) %s::pg_catalog.oid', h.relid::oid) ELSE '' END
                || CASE WHEN h.relid <> tbl::oid AND h.only_where IS NOT NULL THEN ' AND (' ELSE '' END
                || COALESCE(aegis.row_filter(h.relid::regclass, h.only_where,
                                    COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(h.placed_by)), 10::pg_catalog.oid::pg_catalog.regrole)), '')
                || CASE WHEN h.relid <> tbl::oid AND h.only_where IS NOT NULL THEN ')' ELSE '' END
                || ')';
        END IF;
    END LOOP;
    IF whole THEN
        predicate := 'true';
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.legal_hold_filter(regclass) IS
    'Internal: the active legal holds of a table as one validated predicate, and their ids';

CREATE OR REPLACE FUNCTION aegis.catalog_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    super boolean;
BEGIN
    SELECT r.rolsuper INTO super FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER;
    IF COALESCE(super, false) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    -- (In each branch, a NULL key is left to the table's NOT NULL
    -- constraint, 23502.)
    CASE TG_TABLE_NAME
    WHEN 'protected_tables' THEN
        IF TG_OP = 'DELETE' THEN
            IF aegis.is_enforced(OLD.relid) THEN
                RAISE EXCEPTION 'table % is still protected', OLD.relid USING ERRCODE = '55000',
                    HINT = 'Use aegis.unprotect(), which gives the table back and then forgets it.';
            END IF;
            RETURN OLD;
        END IF;
        IF NEW.relid IS NULL THEN
            RETURN NEW;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.relid IS DISTINCT FROM OLD.relid THEN
            RAISE EXCEPTION 'the table of a protected_tables row cannot change' USING ERRCODE = '42501';
        END IF;
        IF NOT aegis.is_enforced(NEW.relid) THEN
            RAISE EXCEPTION 'table % is not protected', NEW.relid USING ERRCODE = '55000',
                HINT = 'Use aegis.protect().';
        END IF;
        PERFORM aegis.check_policy(NEW.relid, NEW.policy);
        NEW.protected_by := CURRENT_USER;
        NEW.protected_at := pg_catalog.now();
        -- What protect() records: the table's columns now (a forged list
        -- would hide classification drift from the compliance report).
        NEW.known_columns := ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = NEW.relid AND a.attnum > 0 AND NOT a.attisdropped
                                   ORDER BY a.attnum);
        RETURN NEW;

    WHEN 'column_classes' THEN
        IF TG_OP <> 'DELETE' AND (NEW.relid IS NULL OR NEW.column_name IS NULL) THEN
            RETURN NEW;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.relid IS DISTINCT FROM OLD.relid THEN
            RAISE EXCEPTION 'the table of a column_classes row cannot change' USING ERRCODE = '42501';
        END IF;
        IF TG_OP <> 'DELETE' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = NEW.relid AND a.attname = NEW.column_name AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % does not exist', NEW.column_name, NEW.relid USING ERRCODE = '42703';
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;

    WHEN 'oncall_assignments' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.until IS NOT NULL AND NEW.until <= pg_catalog.now()
           AND (TG_OP = 'INSERT' OR NEW.until IS DISTINCT FROM OLD.until) THEN
            RAISE EXCEPTION 'until must be in the future' USING ERRCODE = '22023',
                HINT = 'Use aegis.unassign_oncall() to end an assignment now.';
        END IF;
        NEW.assigned_by := CURRENT_USER;
        NEW.assigned_at := pg_catalog.now();
        RETURN NEW;

    WHEN 'scope_assignments' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.until IS NOT NULL AND NEW.until <= pg_catalog.now()
           AND (TG_OP = 'INSERT' OR NEW.until IS DISTINCT FROM OLD.until) THEN
            RAISE EXCEPTION 'until must be in the future' USING ERRCODE = '22023',
                HINT = 'Use aegis.unassign_scope() to end an assignment now.';
        END IF;
        IF NEW.scope IS NOT NULL AND NEW.key IS NOT NULL
           AND (TG_OP = 'INSERT' OR (NEW.scope, NEW.key) IS DISTINCT FROM (OLD.scope, OLD.key)) THEN
            PERFORM aegis.check_scope_key(NEW.scope, NEW.key);
        END IF;
        NEW.assigned_by := CURRENT_USER;
        NEW.assigned_at := pg_catalog.now();
        RETURN NEW;

    WHEN 'retention_rules' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.relid IS DISTINCT FROM OLD.relid THEN
            RAISE EXCEPTION 'the table of a retention_rules row cannot change' USING ERRCODE = '42501';
        END IF;
        IF (TG_OP = 'INSERT' AND (NEW.last_applied_at, NEW.last_deleted, NEW.last_held, NEW.last_locked)
                                 IS DISTINCT FROM (NULL, NULL, NULL, NULL))
           OR (TG_OP = 'UPDATE' AND (NEW.last_applied_at, NEW.last_deleted, NEW.last_held, NEW.last_locked)
                                    IS DISTINCT FROM (OLD.last_applied_at, OLD.last_deleted, OLD.last_held, OLD.last_locked)) THEN
            RAISE EXCEPTION 'last_applied_at, last_deleted, last_held and last_locked are kept by apply_retention()'
                USING ERRCODE = '42501';
        END IF;
        PERFORM aegis.check_retention_rule(NEW.relid, NEW.keep, NEW.time_column, NEW.only_where, NEW.time_unit);
        NEW.set_by := CURRENT_USER;
        NEW.set_at := pg_catalog.now();
        RETURN NEW;

    WHEN 'legal_holds' THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'legal holds are never deleted' USING ERRCODE = '42501',
                HINT = 'Release it with aegis.release_legal_hold().';
        END IF;
        IF TG_OP = 'INSERT' THEN
            IF NEW.released_at IS NOT NULL OR NEW.released_by IS NOT NULL THEN
                RAISE EXCEPTION 'a legal hold is placed unreleased' USING ERRCODE = '22023';
            END IF;
            PERFORM aegis.check_legal_hold(NEW.relid, NEW.only_where, NEW.reason);
            NEW.table_name := NEW.relid::regclass::text;
            NEW.placed_by := CURRENT_USER;
            NEW.placed_at := pg_catalog.now();
            RETURN NEW;
        END IF;
        -- UPDATE: only releasing an active hold.
        IF OLD.released_at IS NOT NULL OR NEW.released_at IS NULL
           OR (NEW.id, NEW.relid, NEW.table_name, NEW.only_where, NEW.reason, NEW.placed_at, NEW.placed_by)
              IS DISTINCT FROM (OLD.id, OLD.relid, OLD.table_name, OLD.only_where, OLD.reason, OLD.placed_at, OLD.placed_by) THEN
            RAISE EXCEPTION 'a legal hold can only be released, once' USING ERRCODE = '42501',
                HINT = 'Use aegis.release_legal_hold(); place a new hold to change one.';
        END IF;
        NEW.released_by := CURRENT_USER;
        NEW.released_at := pg_catalog.now();
        RETURN NEW;

    WHEN 'retention_schedule' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF (TG_OP = 'INSERT' AND (NEW.last_run_at, NEW.last_status) IS DISTINCT FROM (NULL, NULL))
           OR (TG_OP = 'UPDATE' AND (NEW.last_run_at, NEW.last_status) IS DISTINCT FROM (OLD.last_run_at, OLD.last_status)) THEN
            RAISE EXCEPTION 'last_run_at and last_status are kept by the scheduler' USING ERRCODE = '42501';
        END IF;
        IF NEW.schedule IS NULL OR NEW.via IS NULL THEN
            RETURN NEW;
        END IF;
        IF aegis.cron_next(NEW.schedule, pg_catalog.now()) IS NULL THEN
            RAISE EXCEPTION 'schedule "%" never fires', NEW.schedule USING ERRCODE = '22023';
        END IF;
        -- The next run follows from the schedule, not from the statement.
        NEW.next_run_at := CASE WHEN NEW.via = 'worker' THEN aegis.cron_next(NEW.schedule, pg_catalog.now()) END;
        NEW.scheduled_by := CURRENT_USER;
        NEW.scheduled_at := pg_catalog.now();
        RETURN NEW;

    WHEN 'keys' THEN
        -- What create_key(), rotate_key(), retire_key_version() and
        -- forget_subject() do, and nothing else: a new name at version 1 or
        -- the next version of a key (same id, same decrypt role), active;
        -- rotated_at set once; an older version retired; a subject key
        -- destroyed. Never a changed decrypt role or a destroyed signing,
        -- pseudonym or data key.
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'keys are never deleted' USING ERRCODE = '42501';
        END IF;
        IF NEW.name IS NULL OR NEW.version IS NULL THEN
            RETURN NEW;
        END IF;
        IF TG_OP = 'INSERT' THEN
            IF NEW.status <> 'active' OR NEW.rotated_at IS NOT NULL OR NEW.retired_at IS NOT NULL
               OR NEW.version <> 1 + COALESCE((SELECT pg_catalog.max(k.version) FROM aegis.keys k WHERE k.name = NEW.name), 0)
               OR EXISTS (SELECT 1 FROM aegis.keys k WHERE k.name = NEW.name
                          AND (k.key_id <> NEW.key_id OR k.decrypt_role IS DISTINCT FROM NEW.decrypt_role)) THEN
                RAISE EXCEPTION 'a key version is created only by aegis.create_key() or aegis.rotate_key()'
                    USING ERRCODE = '42501';
            END IF;
            NEW.created_at := pg_catalog.now();
            RETURN NEW;
        END IF;
        IF (NEW.key_id, NEW.name, NEW.version, NEW.algorithm, NEW.decrypt_role, NEW.created_at)
               IS DISTINCT FROM (OLD.key_id, OLD.name, OLD.version, OLD.algorithm, OLD.decrypt_role, OLD.created_at)
           OR (NEW.rotated_at IS DISTINCT FROM OLD.rotated_at AND OLD.rotated_at IS NOT NULL)
           OR (NEW.status <> OLD.status AND NOT (
                   (OLD.status = 'active' AND NEW.status = 'retired'
                    AND EXISTS (SELECT 1 FROM aegis.keys k WHERE k.name = OLD.name AND k.version > OLD.version))
                OR (NEW.status = 'destroyed' AND OLD.name LIKE 'subject:%')))
           OR (NEW.wrapped_key IS DISTINCT FROM OLD.wrapped_key AND NEW.status <> 'destroyed') THEN
            RAISE EXCEPTION 'key "%" version % can change only through the keyring API', OLD.name, OLD.version
                USING ERRCODE = '42501',
                      HINT = 'aegis.rotate_key(), aegis.retire_key_version(), aegis.forget_subject().';
        END IF;
        RETURN NEW;

    WHEN 'alert_rules' THEN
        IF TG_OP <> 'DELETE' THEN
            NEW.created_by := CASE WHEN TG_OP = 'INSERT' THEN CURRENT_USER ELSE OLD.created_by END;
            NEW.created_at := CASE WHEN TG_OP = 'INSERT' THEN pg_catalog.now() ELSE OLD.created_at END;
            RETURN NEW;
        END IF;
        RETURN OLD;

    ELSE
        RAISE EXCEPTION 'catalog_guard() is not attached to %', TG_TABLE_NAME USING ERRCODE = '39P01';
    END CASE;
END
$$;
COMMENT ON FUNCTION aegis.catalog_guard() IS
    'Internal trigger: hold direct changes to a pg_aegis catalog to the API''s rules (non-superusers)';

-- The DDL template; %1$I is the schema. Kept as data so the function body
-- stays small and the whole model can be read in one place.
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

-- The checks. SECURITY DEFINER: it reads the audit trail, the keyring's
-- metadata and the lifecycle catalogs, and keeps its state, for auditors and
-- the background worker alike; it changes nothing else and takes no input
-- but the flag. Findings are returned; with notify, each is also recorded
-- in aegis.alert_events and announced by NOTIFY aegis_alerts (its id only),
-- at most once an hour per alert (the worker runs this every
-- aegis.security_check_interval).
CREATE OR REPLACE FUNCTION aegis.security_alerts(notify boolean DEFAULT true)
RETURNS TABLE(alert text, severity text, detail jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    findings jsonb[] := '{}';
    f jsonb;
    v record;
    n bigint;
    t timestamptz;
    d bigint;
    prev record;
    names text[];
    baseline_moved boolean := false;
BEGIN
    IF notify IS NULL THEN
        RAISE EXCEPTION 'notify must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- Notifying updates the alerts' state, which the background worker
    -- updates too: a non-superuser may do it only in a transaction of its
    -- own (in a transaction block its row locks would last until COMMIT;
    -- several statements sent as one query are a transaction block too).
    IF notify AND aegis.in_transaction_block()
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER) THEN
        RAISE EXCEPTION 'aegis.security_alerts(notify => true) must run in a transaction of its own, not inside a transaction block'
            USING ERRCODE = '25001',
                  HINT = 'Its state updates would wait for COMMIT and stall the background worker meanwhile; security_alerts(false) only looks.';
    END IF;
    -- 1. The chain verifies (from its signed checkpoint, if pruned).
    SELECT * INTO v FROM aegis.verify_chain_incremental() c;
    IF NOT v.ok THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'audit_chain_broken', 'severity', 'critical',
            'detail', pg_catalog.jsonb_build_object('first_bad_position', v.first_bad_position, 'problem', v.problem));
    END IF;
    -- 2. Entries of ended transactions left out of the chain for 10 minutes
    -- (is the sealer running?).
    SELECT u.entries, u.oldest INTO n, t FROM aegis.unsealed_entries(interval '10 minutes') u;
    IF n > 0 THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'audit_entries_unsealed', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('entries', n, 'oldest', t,
                'hint', 'run aegis.seal(), or add this database to aegis.seal_databases'));
    END IF;
    -- 3. A burst of permission-denied attempts on protected tables since the
    -- last check (10 or more; counted in every database of the cluster).
    d := aegis.denied_access_count();
    IF d IS NOT NULL THEN
        SELECT s.last_value, s.last_at INTO prev FROM aegis.security_alert_state s WHERE s.alert = 'denied_access_counter';
        IF prev.last_value IS NOT NULL AND d - prev.last_value >= 10 THEN
            findings := findings || pg_catalog.jsonb_build_object('alert', 'denied_access_burst', 'severity', 'warning',
                'detail', pg_catalog.jsonb_build_object('attempts', d - prev.last_value, 'since', prev.last_at,
                    'hint', 'the server log has one access_denied line per attempt, with the role'));
        END IF;
        -- Only a run that notifies moves the baseline (a dry look sets the
        -- first one): otherwise whoever looks between probes would keep the
        -- burst from ever being sent.
        IF notify THEN
            -- Waits at most lock_timeout (the worker sets one): a session
            -- holding the row costs this round's baseline update, not the
            -- worker.
            BEGIN
                INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
                VALUES ('denied_access_counter', pg_catalog.now(), d)
                ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at, last_value = EXCLUDED.last_value;
                baseline_moved := true;
            EXCEPTION WHEN lock_not_available THEN
                RAISE WARNING 'pg_aegis: the denied-access baseline is locked by another session; kept as it was';
            END;
        ELSE
            INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
            VALUES ('denied_access_counter', pg_catalog.now(), d)
            ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO NOTHING;
        END IF;
    END IF;
    -- 4. Retention policies never applied, or not for more than two days.
    SELECT pg_catalog.array_agg(r.relid::text ORDER BY r.relid::text) INTO names
    FROM aegis.retention_rules r
    WHERE r.last_applied_at IS NULL OR r.last_applied_at < pg_catalog.now() - interval '2 days';
    IF names IS NOT NULL THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'retention_overdue', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('tables', pg_catalog.to_jsonb(names),
                'hint', 'SELECT aegis.apply_retention(); or aegis.schedule_retention(''0 3 * * *'')'));
    END IF;
    -- 5. Keys whose current version is older than a year (subject keys,
    -- which exist to be destroyed, not rotated, are left out).
    SELECT k.stale INTO names FROM aegis.stale_keys(interval '365 days') k;
    IF names IS NOT NULL THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'keys_past_rotation_age', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('keys', pg_catalog.to_jsonb(names), 'max_age', '365 days',
                'hint', 'SELECT aegis.rotate_key(name); then aegis.reencrypt() the data'));
    END IF;

    FOREACH f IN ARRAY findings LOOP
        alert := f ->> 'alert';
        severity := f ->> 'severity';
        detail := f -> 'detail';
        RETURN NEXT;
        -- At most once an hour per alert, except a burst of denied
        -- attempts: each burst since the last check is its own (a burst
        -- anyone can cause must not hide the next one for an hour), sent
        -- when this check moved the baseline past it (if another session
        -- holds the baseline, the same burst is not sent again and again).
        IF notify AND ((f ->> 'alert' = 'denied_access_burst' AND baseline_moved)
                       OR (f ->> 'alert' <> 'denied_access_burst'
                           AND NOT EXISTS (SELECT 1 FROM aegis.security_alert_state s
                                           WHERE s.alert = f ->> 'alert' AND s.last_at > pg_catalog.now() - interval '1 hour'))) THEN
            PERFORM aegis.announce_alert('security', f ->> 'alert', f ->> 'severity', NULL, SESSION_USER, f -> 'detail');
            BEGIN
                INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES (f ->> 'alert', pg_catalog.now())
                ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
            EXCEPTION WHEN lock_not_available THEN
                RAISE WARNING 'pg_aegis: the state of alert % is locked by another session; it may be sent again', f ->> 'alert';
            END;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.security_alerts(boolean) IS
    'Security checks (chain, unsealed entries, denied-access bursts, overdue retention, old keys); notify sends each via NOTIFY aegis_alerts';

CREATE OR REPLACE FUNCTION aegis.guard_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    n_all bigint;
    n_temp bigint;
BEGIN
    -- A command that only made or changed temporary relations of this
    -- session that inherit from nothing (CREATE TEMP TABLE, its indexes)
    -- cannot touch a protected table: skip the check, which reads the
    -- state of every protected relation.
    -- A metric alert trigger that would fail on every insert is refused
    -- now, when it is created.
    -- (Not while pg_aegis's own script runs: the functions come later.)
    IF tg_tag = 'CREATE TRIGGER' AND pg_catalog.to_regprocedure('aegis.check_metric_alerts_trigger(oid)') IS NOT NULL THEN
        PERFORM aegis.check_metric_alerts_trigger(c.objid) FROM pg_catalog.pg_event_trigger_ddl_commands() c
        WHERE c.classid = 'pg_catalog.pg_trigger'::regclass
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.oid = c.objid
                      AND t.tgfoid = pg_catalog.to_regprocedure('aegis.metric_alerts()'));
    END IF;
    SELECT pg_catalog.count(*),
           pg_catalog.count(*) FILTER (WHERE c.classid = 'pg_catalog.pg_class'::regclass
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_class k WHERE k.oid = c.objid AND k.relpersistence = 't')
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.objid))
    INTO n_all, n_temp
    FROM pg_catalog.pg_event_trigger_ddl_commands() c;
    IF n_all > 0 AND n_all = n_temp THEN
        RETURN;
    END IF;
    PERFORM aegis.guard_protect_partitions();
    -- pg_restore (a superuser's, who could switch the guard off anyway)
    -- rebuilds protected tables step by step: nothing to report, and what
    -- the restored tables are is what the guard compares with afterwards.
    IF pg_catalog.current_setting('application_name') = 'pg_restore'
       AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) THEN
        PERFORM aegis.guard_remember();
        RETURN;
    END IF;
    PERFORM aegis.guard_verify(tg_tag);
END
$$;
COMMENT ON FUNCTION aegis.guard_ddl_end() IS
    'Internal event trigger: protect new partitions; refuse or record a DDL command that weakened a protected table';

-- Refuse (non-superusers) or record (superusers) a change that left tables
-- in "broken" non-compliant. The refusal is also written to the server log
-- as a JSON line, which survives the rollback.
CREATE OR REPLACE FUNCTION aegis.guard_report(names text[], command text, what text) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    is_super boolean;
    detail jsonb;
    t text;
    in_event boolean;
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
    -- Executable by everyone (the guard runs as whoever issues the DDL),
    -- so a refusal is logged only when it is the guard's: the tables are
    -- ones the guard finds broken now, or the running command is dropping
    -- or rewriting (only a sql_drop or table_rewrite event trigger can ask).
    -- Anyone else gets an error and writes nothing to the server log.
    IF COALESCE(pg_catalog.cardinality(names), 0) = 0 THEN
        RAISE EXCEPTION 'aegis.guard_report() reports only what the DDL guard refuses' USING ERRCODE = '42501';
    END IF;
    IF NOT (names <@ COALESCE((SELECT pg_catalog.array_agg(g.name) FROM aegis.guard_check() g WHERE g.broken), '{}')) THEN
        BEGIN
            PERFORM pg_catalog.pg_event_trigger_table_rewrite_oid();
            in_event := true;
        EXCEPTION WHEN OTHERS THEN
            BEGIN
                PERFORM 1 FROM pg_catalog.pg_event_trigger_dropped_objects() d
                WHERE d.object_identity = ANY (names);
                in_event := FOUND;
            EXCEPTION WHEN OTHERS THEN
                in_event := false;
            END;
        END;
        IF NOT in_event THEN
            RAISE EXCEPTION 'aegis.guard_report() reports only what the DDL guard refuses' USING ERRCODE = '42501';
        END IF;
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

-- New partitions of a protected table come out protected: row security
-- enabled and forced, PUBLIC revoked, the TRUNCATE capture trigger (the row
-- capture trigger is cloned by PostgreSQL itself), and the rows of an
-- attached table recorded as BASELINE entries. Definer rights: the
-- partition's creator may not own the capture functions' grants; it can
-- only add protection. Recorded as a DDL entry. Its own ALTER TABLEs run
-- with session_replication_role = replica, so the guard's event triggers
-- (enabled on origin) do not fire again inside it.
CREATE OR REPLACE FUNCTION aegis.guard_protect_partitions() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET session_replication_role = replica
AS $$
DECLARE
    r record;
BEGIN
    -- A foreign table takes no capture trigger over transition tables and
    -- cannot be scanned by verify_table(): it cannot join a protected table.
    FOR r IN
        SELECT e.relid, c.oid AS part
        FROM aegis.rls_enforced e
        CROSS JOIN LATERAL pg_catalog.pg_partition_tree(e.relid) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        WHERE c.relkind = 'f'
    LOOP
        RAISE EXCEPTION 'foreign table % cannot be a partition of protected table %', r.part::regclass, r.relid
            USING ERRCODE = '42501', DETAIL = 'No capture trigger sees the changes of a foreign table.';
    END LOOP;
    FOR r IN
        SELECT DISTINCT e.relid, c.oid AS part
        FROM aegis.rls_enforced e
        CROSS JOIN LATERAL pg_catalog.pg_partition_tree(e.relid) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        WHERE c.relkind IN ('r', 'p') AND c.oid <> e.relid::oid
          -- A partition the guard has never seen is protected (and its
          -- rows baselined) whatever it looks like: its owner may have
          -- dressed it up as protected before attaching it.
          AND (NOT EXISTS (SELECT 1 FROM aegis.guard_states g WHERE g.relid::oid = c.oid)
               OR NOT (c.relrowsecurity AND c.relforcerowsecurity
                       AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                                   WHERE g.tgrelid = c.oid AND g.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure)))
    LOOP
        -- A table joining a protected one brings no row-level security
        -- policies of its own: they would decide what its rows show to
        -- whoever queries it directly (and could pose as pg_aegis's own).
        IF NOT EXISTS (SELECT 1 FROM aegis.guard_states g WHERE g.relid::oid = r.part)
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = r.part) THEN
            RAISE EXCEPTION 'table % has row-level security policies of its own and cannot become a partition of protected table %',
                r.part::regclass, r.relid USING ERRCODE = '42501',
                HINT = 'Drop its policies first: the protected table''s apply to it once it has joined.';
        END IF;
        PERFORM aegis.switch_rls(r.relid, true);
        -- Grants of pg_aegis's group roles on it are the profile's, not the
        -- ones it came with.
        IF NOT EXISTS (SELECT 1 FROM aegis.guard_states g WHERE g.relid::oid = r.part) THEN
            PERFORM aegis.sync_profile(r.part, r.relid::oid, aegis.profile_of(p.policy), COALESCE(p.policy -> 'columns', '{}'),
                                       aegis.scope_predicate_of(r.relid, p.policy -> 'scope'))
            FROM aegis.protected_tables p WHERE p.relid = r.relid AND p.policy ? 'profile';
        END IF;
        IF r.part NOT IN (SELECT aegis.guard_compliant_tables()) THEN
            RAISE EXCEPTION 'partition % of protected table % could not be protected', r.part::regclass, r.relid
                USING ERRCODE = '42501';
        END IF;
        PERFORM aegis.guard_remember(r.relid);
        PERFORM aegis.audit_event('DDL', r.relid::text, pg_catalog.jsonb_build_object(
            'change', 'partition added and protected', 'partition', r.part::regclass::text,
            'user', SESSION_USER));
        -- A table attached with rows in it: they now show through the
        -- protected table, so each becomes a BASELINE entry, as at
        -- protect() (a heap scan rendered with built-in output functions:
        -- none of the owner's code runs).
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = r.part) = 'r' THEN
            PERFORM aegis.audit_baseline(r.part);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.guard_protect_partitions() IS
    'Internal: protect new partitions of protected tables (definer rights; only adds protection)';

-- Which requirement each control evidences. Data, so auditors can read the
-- mapping itself (SOC 2 Trust Services Criteria 2017; ISO/IEC 27001:2022
-- Annex A; GDPR articles).
CREATE OR REPLACE FUNCTION aegis.compliance_mapping()
RETURNS TABLE(control text, soc2 text, iso27001 text, gdpr text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    VALUES
    ('tls.ssl_enabled',            'CC6.7',        'A.8.24, A.8.20',  'Art. 32(1)(a)'),
    ('tls.hba_hostssl_only',       'CC6.7',        'A.8.20, A.8.21',  'Art. 32(1)(a)'),
    ('auth.password_encryption',   'CC6.1',        'A.5.17, A.8.5',   'Art. 32(1)(b)'),
    ('access.rls_forced',          'CC6.1, CC6.3', 'A.5.15, A.8.3',   'Art. 25(2), Art. 32(1)(b)'),
    ('access.no_public_grants',    'CC6.1, CC6.3', 'A.5.15, A.8.3',   'Art. 25(2)'),
    ('access.privileged_members',  'CC6.2, CC6.3', 'A.8.2, A.5.18',   'Art. 32(1)(b)'),
    ('access.replication',         'CC6.1, CC6.6', 'A.8.2, A.8.3',    'Art. 32(1)(b), Art. 44'),
    ('keys.master_key',            'CC6.1',        'A.8.24',          'Art. 32(1)(a)'),
    ('keys.rotation_age',          'CC6.1',        'A.8.24',          'Art. 32(1)(a)'),
    ('audit.chain_verifies',       'CC7.2, CC4.1', 'A.8.15, A.5.28',  'Art. 5(2), Art. 30'),
    ('audit.sealed_recently',      'CC7.2',        'A.8.15, A.8.16',  'Art. 5(2)'),
    ('audit.read_auditing',        'CC7.2',        'A.8.15',          'Art. 5(2), Art. 32(1)(d)'),
    ('lifecycle.retention_applied','C1.2',         'A.5.33, A.8.10',  'Art. 5(1)(e), Art. 17'),
    ('classification.complete',    'C1.1',         'A.5.12, A.5.9',   'Art. 30, Art. 25(1)')
$$;
COMMENT ON FUNCTION aegis.compliance_mapping() IS
    'The SOC 2 / ISO 27001 / GDPR requirements each compliance_report() control evidences';

-- SECURITY DEFINER: the checks read what only superusers may (pg_hba rules,
-- password hashes' format, the master key's file, the seal state); the
-- report returns verdicts and names (roles, tables, columns, hba lines),
-- never secrets. Takes no input. EXECUTE: aegis_admin, aegis_auditor.
CREATE OR REPLACE FUNCTION aegis.compliance_report()
RETURNS TABLE(control text, status text, detail text, remediation text, evidence_for text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    members oid[];
    protected oid[];
    names text[];
    supers text[];
    bad text;
    n bigint;
    m bigint;
    t timestamptz;
    v record;
    mk jsonb;
    c record;
BEGIN
    -- The aegis roles and every role that is a member of one, however
    -- indirectly (pg_auth_members: superusers are not members by default).
    WITH RECURSIVE r(oid) AS (
        SELECT a.oid FROM pg_catalog.pg_authid a WHERE a.rolname LIKE 'aegis\_%'
        UNION
        SELECT m.member FROM pg_catalog.pg_auth_members m JOIN r ON m.roleid = r.oid
    )
    SELECT pg_catalog.array_agg(r.oid) INTO members FROM r;
    -- Protected tables and their partitions.
    protected := ARRAY(SELECT e.relid::oid FROM aegis.rls_enforced e
                       UNION SELECT pt.relid FROM aegis.rls_enforced e, pg_catalog.pg_partition_tree(e.relid) pt);

    FOR c IN SELECT * FROM aegis.compliance_mapping() LOOP
        control := c.control;
        evidence_for := pg_catalog.format('SOC 2 %s | ISO 27001 %s | GDPR %s', c.soc2, c.iso27001, c.gdpr);
        remediation := NULL;
        CASE c.control
        WHEN 'tls.ssl_enabled' THEN
            IF pg_catalog.current_setting('ssl') = 'on' THEN
                status := 'pass'; detail := 'ssl = on';
            ELSE
                status := 'fail'; detail := 'ssl = off: connections are not encrypted';
                remediation := 'Set ssl = on with ssl_cert_file and ssl_key_file in postgresql.conf and reload.';
            END IF;
        WHEN 'tls.hba_hostssl_only' THEN
            -- A host/hostnossl rule that admits aegis roles (by name, +group,
            -- or "all") lets them in without TLS, unless an earlier
            -- "hostnossl all all ... reject" line catches those connections.
            SELECT pg_catalog.string_agg(pg_catalog.format('line %s: %s %s %s %s %s', h.line_number, h.type,
                       pg_catalog.array_to_string(h.database, ','), pg_catalog.array_to_string(h.user_name, ','),
                       COALESCE(h.address, 'all'), h.auth_method), '; ' ORDER BY h.line_number)
            INTO bad
            FROM pg_catalog.pg_hba_file_rules h
            WHERE h.error IS NULL AND h.type IN ('host', 'hostnossl') AND h.auth_method <> 'reject'
              AND (h.user_name @> '{all}'
                   OR EXISTS (SELECT 1 FROM pg_catalog.unnest(h.user_name) u
                              JOIN pg_catalog.pg_authid a ON a.rolname = pg_catalog.ltrim(u, '+')
                              WHERE a.oid = ANY (members)))
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_hba_file_rules e
                              WHERE e.error IS NULL AND e.line_number < h.line_number AND e.type = 'hostnossl'
                                AND e.auth_method = 'reject' AND e.database @> '{all}' AND e.user_name @> '{all}');
            IF bad IS NULL THEN
                status := 'pass'; detail := 'no pg_hba.conf rule admits aegis roles without TLS';
            ELSE
                status := 'fail'; detail := 'non-TLS connections allowed: ' || bad;
                remediation := 'Use hostssl for these lines (or add "hostnossl all all 0.0.0.0/0 reject" and "hostnossl all all ::/0 reject" first), then reload.';
            END IF;
        WHEN 'auth.password_encryption' THEN
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) INTO names
            FROM pg_catalog.pg_authid a
            WHERE a.oid = ANY (members) AND a.rolpassword IS NOT NULL AND a.rolpassword NOT LIKE 'SCRAM-SHA-256$%';
            -- The server's (or role's and database's) setting, not a SET in
            -- this session.
            SELECT s.reset_val INTO bad FROM pg_catalog.pg_settings s WHERE s.name = 'password_encryption';
            IF bad <> 'scram-sha-256' THEN
                status := 'fail';
                detail := pg_catalog.format('password_encryption = %s', bad);
                remediation := 'Set password_encryption = scram-sha-256, reload, and have the roles set their passwords again.';
            ELSIF names IS NOT NULL THEN
                status := 'fail';
                detail := 'roles with a non-SCRAM password: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Have these roles set their password again (\password in psql) now that scram-sha-256 is the default.';
            ELSE
                status := 'pass'; detail := 'password_encryption = scram-sha-256; no aegis role has an older password hash';
            END IF;
        WHEN 'access.rls_forced' THEN
            SELECT pg_catalog.count(*), pg_catalog.array_agg(x.relid::regclass::text ORDER BY x.relid::regclass::text)
                       FILTER (WHERE NOT (k.relrowsecurity AND k.relforcerowsecurity))
            INTO n, names
            FROM pg_catalog.unnest(protected) x(relid)
            JOIN pg_catalog.pg_class k ON k.oid = x.relid;
            IF names IS NULL THEN
                status := CASE WHEN n = 0 THEN 'warn' ELSE 'pass' END;
                detail := CASE WHEN n = 0 THEN 'no protected tables' ELSE pg_catalog.format('%s protected tables and partitions: RLS enabled and forced', n) END;
                remediation := CASE WHEN n = 0 THEN 'Protect the tables holding monitoring data: SELECT aegis.protect(''<table>'');' END;
            ELSE
                status := 'fail'; detail := 'RLS not enabled and forced on: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'SELECT aegis.protect(''<table>'') again for each (it enables and forces RLS).';
            END IF;
        WHEN 'access.no_public_grants' THEN
            SELECT pg_catalog.array_agg(DISTINCT x.relid::regclass::text) INTO names
            FROM pg_catalog.unnest(protected) x(relid)
            JOIN pg_catalog.pg_class k ON k.oid = x.relid
            WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(k.relacl) g WHERE g.grantee = 0);
            IF names IS NULL THEN
                status := 'pass'; detail := 'no protected table grants anything to PUBLIC';
            ELSE
                status := 'fail'; detail := 'PUBLIC has privileges on: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'REVOKE ALL ON <table> FROM PUBLIC; grant the aegis roles what they need instead.';
            END IF;
        WHEN 'access.privileged_members' THEN
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) FILTER (WHERE a.rolbypassrls AND NOT a.rolsuper),
                   pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) FILTER (WHERE a.rolsuper)
            INTO names, supers
            FROM pg_catalog.pg_authid a WHERE a.oid = ANY (members);
            IF names IS NOT NULL THEN
                status := 'fail';
                detail := 'BYPASSRLS members of aegis roles (row-level security does not apply to them): '
                          || pg_catalog.array_to_string(names, ', ');
                remediation := 'ALTER ROLE <role> NOBYPASSRLS, or take it out of the aegis roles.';
            ELSIF supers IS NOT NULL THEN
                status := 'warn';
                detail := 'superusers that are members of aegis roles: ' || pg_catalog.array_to_string(supers, ', ');
                remediation := 'Give day-to-day work to non-superuser members; keep superusers out of the aegis roles.';
            ELSE
                status := 'pass'; detail := 'no superuser or BYPASSRLS role is a member of an aegis role';
            END IF;
        WHEN 'access.replication' THEN
            -- A REPLICATION login streams the whole cluster (or decodes
            -- every change through a logical slot) past row-level security
            -- and read auditing; a logical slot of this database holds
            -- protected rows for whoever reads it; a publication of a
            -- protected table sends its rows to subscribers, whose apply
            -- worker writes them with triggers off.
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) INTO names
            FROM pg_catalog.pg_authid a WHERE a.rolreplication AND NOT a.rolsuper;
            SELECT pg_catalog.array_agg(s.slot_name::text ORDER BY s.slot_name) INTO supers
            FROM pg_catalog.pg_replication_slots s
            WHERE s.slot_type = 'logical' AND s.database = pg_catalog.current_database();
            SELECT pg_catalog.string_agg(DISTINCT pub.pubname::text, ', ') INTO bad
            FROM pg_catalog.pg_publication pub
            WHERE pub.puballtables
               OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                          WHERE pt.pubname = pub.pubname
                            AND pg_catalog.format('%I.%I', pt.schemaname, pt.tablename)::regclass::oid = ANY (protected));
            IF names IS NOT NULL OR supers IS NOT NULL THEN
                status := 'fail';
                detail := pg_catalog.concat_ws('; ',
                    'non-superuser roles with REPLICATION (they can read every protected row through the replication protocol, unaudited): '
                        || pg_catalog.array_to_string(names, ', '),
                    'logical replication slots in this database (they decode every change to protected tables): '
                        || pg_catalog.array_to_string(supers, ', '),
                    'publications covering protected tables: ' || bad);
                remediation := 'ALTER ROLE <role> NOREPLICATION for roles that do not run a replica; drop slots no replica uses (pg_drop_replication_slot).';
            ELSIF bad IS NOT NULL THEN
                status := 'warn';
                detail := 'publications covering protected tables (subscribers receive their rows; a subscriber''s apply worker writes with triggers off, so its verify_table() reports rows with no entry): ' || bad;
                remediation := 'Protect the tables on the subscriber as well, and treat it as holding the same personal data.';
            ELSE
                status := 'pass'; detail := 'no non-superuser REPLICATION role, no logical slot in this database, no publication of a protected table';
            END IF;
        WHEN 'keys.master_key' THEN
            mk := aegis.master_key_status();
            IF (mk ->> 'ok')::boolean THEN
                status := 'pass'; detail := pg_catalog.format('master key from a %s; it loads', mk ->> 'source');
            ELSIF (mk ->> 'configured')::boolean THEN
                status := 'fail'; detail := 'the master key does not load: ' || (mk ->> 'problem');
                remediation := 'The key file must be owned by the server''s user, mode 600, holding 64 hex digits (or the command must print them).';
            ELSE
                status := 'fail'; detail := 'no master key configured: no column encryption, pseudonyms or signed heads';
                remediation := 'Set aegis.master_key_file (or aegis.master_key_command) in postgresql.conf and reload.';
            END IF;
        WHEN 'keys.rotation_age' THEN
            SELECT k.total, k.stale INTO n, names FROM aegis.stale_keys(interval '365 days') k;
            IF names IS NULL THEN
                status := 'pass'; detail := pg_catalog.format('%s keys, every current version younger than 365 days', n);
            ELSE
                status := 'warn'; detail := 'current version older than 365 days: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'SELECT aegis.rotate_key(''<name>''); then re-encrypt with aegis.reencrypt() and retire the old version.';
            END IF;
        WHEN 'audit.chain_verifies' THEN
            -- Incremental: the entries sealed since the last verification
            -- (the first time, all of them); verify_chain() checks all.
            SELECT * INTO v FROM aegis.verify_chain_incremental();
            IF v.ok THEN
                status := 'pass';
                detail := CASE WHEN v.verified_from > 1
                               THEN pg_catalog.format('%s entries sealed since position %s verify (earlier ones verified before; aegis.verify_chain() checks them all)',
                                                      v.entries_checked, v.verified_from)
                               ELSE pg_catalog.format('%s sealed entries verify', v.entries_checked) END;
            ELSE
                status := 'fail';
                detail := pg_catalog.format('at position %s: %s', v.first_bad_position, v.problem);
                remediation := 'Investigate now: compare with a head saved outside the database (aegis.verify_chain(head)) and the server log.';
            END IF;
        WHEN 'audit.sealed_recently' THEN
            SELECT u.entries INTO n FROM aegis.unsealed_entries(interval '10 minutes') u;
            SELECT s.sealed_at INTO t FROM aegis.audit_seal_state s;
            IF n = 0 THEN
                status := 'pass';
                detail := COALESCE('last sealed ' || t::text, 'nothing waiting to be sealed') || '; no entry waits longer than 10 minutes';
            ELSE
                status := 'fail'; detail := pg_catalog.format('%s entries older than 10 minutes are not sealed', n);
                remediation := 'Add this database to aegis.seal_databases (library preloaded) or run SELECT aegis.seal(); on a schedule.';
            END IF;
        WHEN 'audit.read_auditing' THEN
            SELECT pg_catalog.array_agg(p.relid::text ORDER BY p.relid::text) INTO names
            FROM aegis.protected_tables p WHERE (p.policy ->> 'audit_reads')::boolean;
            IF EXISTS (SELECT 1 FROM aegis.build_info() b WHERE b.item = 'preloaded' AND b.value = 'true') THEN
                status := 'pass';
                detail := CASE WHEN pg_catalog.current_setting('aegis.audit_reads', true) = 'on'
                               THEN 'reads of every protected table are recorded (aegis.audit_reads = on)'
                               ELSE 'reads recorded for: ' || COALESCE(pg_catalog.array_to_string(names, ', '), 'no table asks for it') END
                          || COALESCE('; the application roles'' reads counted per interval (aegis.application_read_interval) for: '
                                      || (SELECT pg_catalog.string_agg(p.relid::text, ', ' ORDER BY p.relid::text)
                                                      FROM aegis.protected_tables p WHERE p.policy ->> 'application_reads' = 'aggregate'), '');
            ELSIF names IS NULL THEN
                status := 'pass'; detail := 'no table asks for read auditing';
            ELSE
                status := 'fail';
                detail := 'pg_aegis is not preloaded: reads of these tables are not recorded: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Set shared_preload_libraries = ''pg_aegis'' in postgresql.conf and restart.';
            END IF;
        WHEN 'lifecycle.retention_applied' THEN
            SELECT pg_catalog.count(*), pg_catalog.sum(r.rows_affected),
                   pg_catalog.array_agg(pg_catalog.format('%s: %s', r.table_name, COALESCE(r.rows_affected::text, 'policy cannot run'))
                                        ORDER BY r.table_name) FILTER (WHERE r.rows_affected IS DISTINCT FROM 0)
            INTO n, m, names
            FROM aegis.apply_retention(dry_run => true) r;
            IF n = 0 THEN
                status := 'warn'; detail := 'no retention policies: data is kept for ever';
                remediation := 'SELECT aegis.set_retention(''<table>'', ''<period>'', ''<time column>'');';
            ELSIF names IS NULL THEN
                status := 'pass'; detail := pg_catalog.format('%s retention policies; no expired row outside legal holds', n);
            ELSE
                status := 'fail'; detail := 'expired rows outside legal holds: ' || pg_catalog.array_to_string(names, ', ');
                -- Why they survived the last run, when it was row locks.
                SELECT pg_catalog.array_agg(pg_catalog.format('%s: %s', rr.relid::text, rr.last_locked) ORDER BY rr.relid::text)
                INTO names FROM aegis.retention_rules rr WHERE rr.last_locked > 0;
                IF names IS NOT NULL THEN
                    detail := detail || '; locked by other transactions at the last run: ' || pg_catalog.array_to_string(names, ', ');
                END IF;
                remediation := 'SELECT * FROM aegis.apply_retention(); and schedule it: SELECT aegis.schedule_retention(''0 3 * * *'');';
            END IF;
        WHEN 'classification.complete' THEN
            -- Columns added to a protected table since protect() last ran and
            -- not classified since: personal data may be arriving unnoticed.
            SELECT pg_catalog.array_agg(pg_catalog.format('%s.%I', p.relid::text, a.attname) ORDER BY p.relid::text, a.attnum)
            INTO names
            FROM aegis.protected_tables p
            JOIN pg_catalog.pg_attribute a ON a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE p.known_columns IS NOT NULL AND NOT a.attname = ANY (p.known_columns)
              AND NOT EXISTS (SELECT 1 FROM aegis.column_classes cc WHERE cc.relid = p.relid AND cc.column_name = a.attname);
            IF names IS NULL THEN
                status := 'pass'; detail := 'every column added since protection is classified';
            ELSE
                status := 'warn'; detail := 'unclassified columns added since protect(): ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Classify them: SELECT aegis.protect(''<table>'', <policy with the new columns>); (public columns too).';
            END IF;
        END CASE;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.compliance_report() IS
    'The controls pg_aegis can check (pass/warn/fail), with detail, remediation and the SOC 2/ISO 27001/GDPR requirements they evidence';

-- A chunk entry (the row images of a multi-row statement, as arrays; see
-- src/audit/chunk.rs) shows as one view row per changed row, numbered by
-- "item" (NULL for every other entry).
CREATE OR REPLACE VIEW aegis.audit_trail WITH (security_barrier = true) AS
SELECT c.position, l.id, l.xid, l.operation, l.table_name, l.db_user, l.session_user_name,
       l.application_name, l.client_addr, l.backend_pid, l.statement_time,
       aegis.visible_image(l.table_name, i.pk) AS pk,
       aegis.visible_image(l.table_name, i.old_row) AS old_row,
       aegis.visible_image(l.table_name, i.new_row) AS new_row,
       l.detail,
       CASE WHEN s.super THEN pg_catalog.encode(l.entry_hash, 'hex') END AS entry_hash,
       CASE WHEN s.super THEN pg_catalog.encode(c.chain_hash, 'hex') END AS chain_hash,
       c.sealed_at, l.erased_at, i.item
FROM aegis.audit_log l LEFT JOIN aegis.audit_chain c ON c.entry_id = l.id AND c.entry_xid = l.xid
CROSS JOIN LATERAL (
    SELECT NULL::integer AS item, l.pk, l.old_row, l.new_row
    WHERE NOT aegis.is_chunk(l.detail, l.old_row, l.new_row)
    UNION ALL
    SELECT n::integer, l.pk OPERATOR(pg_catalog.->) (n - 1), l.old_row OPERATOR(pg_catalog.->) (n - 1),
           l.new_row OPERATOR(pg_catalog.->) (n - 1)
    FROM pg_catalog.generate_series(1, CASE WHEN aegis.is_chunk(l.detail, l.old_row, l.new_row)
                                            THEN (l.detail OPERATOR(pg_catalog.->>) 'rows')::integer ELSE 0 END) n
) i
CROSS JOIN (SELECT r.rolsuper AS super FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) s;
COMMENT ON VIEW aegis.audit_trail IS
    'Audit entries with their chain position (NULL until sealed); row images as the reader may see them (a chunk entry: one row per item), hashes for superusers';

-- Grants (99_finalize.sql).
REVOKE EXECUTE ON FUNCTION aegis.run_restricted(oid, regclass, boolean, text, text[]),
    aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid), aegis.entry_may_be_pending(xid8), aegis.is_chunk(jsonb, jsonb, jsonb), aegis.guard_verify(text), aegis.report_blocked_sealer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.apply_retention(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.apply_retention(boolean) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.guard_verify(text), aegis.is_chunk(jsonb, jsonb, jsonb) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.alert_event(text), aegis.announce_alert(text, text, text, text, name, jsonb),
    aegis.current_baselines(oid, name, text[]), aegis.fold_metric_baselines(oid, text[]), aegis.in_transaction_block(), aegis.alert_upkeep() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.current_baselines(oid, name, text[]) TO aegis_admin, aegis_auditor;
GRANT SELECT ON aegis.metric_baseline_deltas TO aegis_admin, aegis_auditor;
GRANT EXECUTE ON FUNCTION aegis.alert_event(text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.capture_mode(regclass), aegis.is_statement_capture(oid), aegis.switch_capture(regclass),
    aegis.audit_statement() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.audit_statement() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.verify_chain_incremental() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.verify_chain_incremental() TO aegis_admin, aegis_auditor;
REVOKE EXECUTE ON FUNCTION aegis.expired_partitions(regclass, name, text), aegis.retire_partition(regclass),
    aegis.check_retention_rule(regclass, interval, name, text, text), aegis.set_retention(regclass, interval, name, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.check_retention_rule(regclass, interval, name, text, text),
    aegis.set_retention(regclass, interval, name, text, text) TO aegis_admin;

REVOKE EXECUTE ON FUNCTION aegis.application_roles_of(jsonb), aegis.application_roles_in_force(oid),
    aegis.sync_application_policy(oid, name[]), aegis.enforce_access(regclass), aegis.protected_tables_enforce(),
    aegis.profile_of(jsonb), aegis.sync_profile(oid, oid, text, jsonb, text), aegis.scope_predicate(regclass),
    aegis.profile_catalog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.profile_catalog() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.flush_application_reads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.flush_application_reads() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.profile_in_force(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.profile_of(jsonb), aegis.profile_in_force(regclass) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.mentions_any(text, text[]), aegis.erase_mentions_all(text, text[]),
    aegis.check_subject_directory(regclass, jsonb), aegis.erasure_cascades(regclass, text, text[], text, oid[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.mentions_any(text, text[]), aegis.erase_mentions_all(text, text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.check_subject_directory(regclass, jsonb) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.check_alert_column(regclass, name, text, regtype[]), aegis.alerts_table_untrusted(regclass),
    aegis.check_metric_alert_source(regclass, name, name, name[], text, regclass, jsonb),
    aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb), aegis.detach_metric_alerts(regclass),
    aegis.check_metric_alerts_trigger(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb),
    aegis.detach_metric_alerts(regclass) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.check_metric_alerts_trigger(oid) TO PUBLIC;
GRANT SELECT ON aegis.metric_alert_sources TO aegis_admin, aegis_auditor;
REVOKE EXECUTE ON FUNCTION aegis.scope_keys(text), aegis.check_scope_key(text, text), aegis.create_scope(text, regclass, name),
    aegis.assign_scope(regrole, text, text, timestamptz), aegis.unassign_scope(regrole, text, text),
    aegis.scope_predicate_of(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.scope_keys(text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.masked_pseudonym(text), aegis.create_masking_view(regclass, name, regrole[]),
    aegis.sync_masking_policy(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.masked_pseudonym(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.create_masking_view(regclass, name, regrole[]) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.create_scope(text, regclass, name), aegis.assign_scope(regrole, text, text, timestamptz),
    aegis.unassign_scope(regrole, text, text), aegis.check_scope_key(text, text), aegis.scope_predicate_of(regclass, jsonb) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.application_roles_of(jsonb), aegis.application_roles_in_force(oid) TO aegis_admin;
CREATE TRIGGER aegis_enforce AFTER INSERT OR UPDATE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.protected_tables_enforce();

GRANT USAGE ON SCHEMA aegis TO PUBLIC;

-- Every protected table of 0.6.0 (all image mode) now captures with the
-- statement triggers: its row trigger gives way (its entries, and how
-- verify_table() reads them, are unchanged).
UPDATE aegis.rls_enforced SET capture = 'image';
SELECT aegis.switch_capture(e.relid) FROM aegis.rls_enforced e
WHERE pg_catalog.to_regclass(e.relid::pg_catalog.text) IS NOT NULL;

-- What the DDL guard compares with, in the new (OID) form, for every
-- protected table; then the guard watches every DDL command.
SELECT aegis.guard_remember();
-- Every DDL command: what can change a protected table without naming it
-- (REASSIGN OWNED, CREATE OR REPLACE of a view or function its policy
-- uses, ALTER OPERATOR, ALTER SCHEMA ...) is refused by the command that
-- does it, not found broken by whoever runs DDL next.
CREATE EVENT TRIGGER aegis_guard_end ON ddl_command_end
    EXECUTE FUNCTION aegis.guard_ddl_end();
