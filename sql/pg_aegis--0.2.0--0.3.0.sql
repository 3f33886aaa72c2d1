-- pg_aegis 0.2.0 -> 0.3.0: the tamper-evident audit trail.
-- A fresh 0.3.0 install and 0.2.0 updated with this script have the same
-- catalog: pg_test/sql/upgrade.sql compares them object by object.
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.3.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- ---------------------------------------------------------------- audit trail (sql/70_audit.sql)
-- ===========================================================================
-- Entries: written only by pg_aegis's own triggers and hooks, straight into
-- the heap (no INSERT privilege exists for anyone, so no role can add rows
-- through SQL). Row images are JSON rendered from binary values; secret
-- columns appear only as a hash, pii and subject_id columns as keyed
-- pseudonyms, free_text through redact_pii().
-- ===========================================================================

-- nextval() checks USAGE for the user whose statement fires the trigger.
-- Taking an id reveals nothing and ids are not chain positions (gaps are
-- harmless), so PUBLIC may use it.
CREATE SEQUENCE aegis.audit_log_id_seq;
GRANT USAGE ON SEQUENCE aegis.audit_log_id_seq TO PUBLIC;

CREATE TABLE aegis.audit_log (
    id                bigint NOT NULL,
    xid               xid8 NOT NULL,
    operation         text NOT NULL,
    table_name        text,
    db_user           text NOT NULL,
    session_user_name text NOT NULL,
    application_name  text,
    client_addr       inet,
    backend_pid       integer NOT NULL,
    statement_time    timestamptz NOT NULL,
    pk                jsonb,
    old_row           jsonb,
    new_row           jsonb,
    detail            jsonb,
    data_digest       bytea NOT NULL,
    entry_hash        bytea NOT NULL,
    erased_at         timestamptz
);
-- The only index on the write path: sealing reads new entries by xid range,
-- verification joins the chain on (xid, id).
CREATE UNIQUE INDEX audit_log_xid_id ON aegis.audit_log (xid, id);
COMMENT ON TABLE aegis.audit_log IS
    'Audit entries (append-only); positions and chain hashes are in aegis.audit_chain once sealed';

CREATE TABLE aegis.audit_chain (
    position   bigint PRIMARY KEY CHECK (position > 0),
    entry_xid  xid8 NOT NULL,
    entry_id   bigint NOT NULL UNIQUE,
    chain_hash bytea NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aegis.audit_chain IS
    'The hash chain: entry at each position and its chained hash (written only by aegis.seal())';

-- Where the last seal stopped: every transaction below horizon had ended, so
-- its entries are sealed. Not dumped on purpose: xids are not portable to
-- another cluster, so after a restore the first seal searches the whole log.
CREATE TABLE aegis.audit_seal_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    horizon   xid8 NOT NULL,
    sealed_at timestamptz NOT NULL
);
COMMENT ON TABLE aegis.audit_seal_state IS 'Internal: the sealing horizon (not dumped)';

SELECT pg_catalog.pg_extension_config_dump('aegis.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.audit_chain', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.audit_log_id_seq', '');

CREATE VIEW aegis.audit_trail AS
SELECT c.position, l.id, l.xid, l.operation, l.table_name, l.db_user, l.session_user_name,
       l.application_name, l.client_addr, l.backend_pid, l.statement_time, l.pk, l.old_row,
       l.new_row, l.detail, pg_catalog.encode(l.entry_hash, 'hex') AS entry_hash,
       pg_catalog.encode(c.chain_hash, 'hex') AS chain_hash, c.sealed_at, l.erased_at
FROM aegis.audit_log l LEFT JOIN aegis.audit_chain c ON c.entry_id = l.id AND c.entry_xid = l.xid;
COMMENT ON VIEW aegis.audit_trail IS
    'Audit entries with their chain position (NULL until sealed), hashes in hex';

GRANT SELECT ON aegis.audit_log, aegis.audit_chain, aegis.audit_seal_state, aegis.audit_trail
    TO aegis_auditor, aegis_admin;

-- ===========================================================================
-- Capture
-- ===========================================================================

CREATE FUNCTION aegis.audit_row() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_row_wrapper';
COMMENT ON FUNCTION aegis.audit_row() IS
    'AFTER INSERT OR UPDATE OR DELETE row trigger that protect() attaches: one audit entry per row change';

CREATE FUNCTION aegis.audit_truncate() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_truncate_wrapper';
COMMENT ON FUNCTION aegis.audit_truncate() IS
    'AFTER TRUNCATE statement trigger that protect() attaches: one audit entry per truncated table';

-- Any change to the classification drops every backend's cached column
-- plans at commit (a relcache invalidation of the catalog table).
CREATE FUNCTION aegis.audit_plans_changed() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_plans_changed_wrapper';
COMMENT ON FUNCTION aegis.audit_plans_changed() IS
    'Internal statement trigger: audit column plans are rebuilt after a classification change';
CREATE TRIGGER audit_plans_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON aegis.column_classes FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_plans_changed();
CREATE TRIGGER audit_plans_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON aegis.protected_tables FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_plans_changed();

-- ===========================================================================
-- Append-only: no UPDATE, DELETE or TRUNCATE, for any role, the owner and
-- superusers included (a superuser can drop these triggers; that is the
-- tamper window verify_chain() exists for).
-- ===========================================================================

CREATE FUNCTION aegis.audit_append_only() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_append_only_wrapper';
COMMENT ON FUNCTION aegis.audit_append_only() IS
    'Internal trigger: refuses UPDATE, DELETE and TRUNCATE on the audit tables';
-- ENABLE ALWAYS: they fire under session_replication_role = replica too.
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON aegis.audit_log
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON aegis.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON aegis.audit_chain
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON aegis.audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_append_only();
ALTER TABLE aegis.audit_log ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE aegis.audit_log ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE aegis.audit_chain ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE aegis.audit_chain ENABLE ALWAYS TRIGGER append_only_truncate;

-- ===========================================================================
-- Sealing, verification, anchoring
-- ===========================================================================

CREATE FUNCTION aegis.seal() RETURNS bigint LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'seal_wrapper';
COMMENT ON FUNCTION aegis.seal() IS
    'Link every committed, unsealed entry of ended transactions into the chain; returns how many';

CREATE FUNCTION aegis.verify_chain()
RETURNS TABLE (ok boolean, entries_checked bigint, first_bad_position bigint, problem text)
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'verify_chain_wrapper';
COMMENT ON FUNCTION aegis.verify_chain() IS
    'Recompute every entry hash and chain link; name the first problem and its position';

CREATE FUNCTION aegis.verify_chain(trusted_head jsonb)
RETURNS TABLE (ok boolean, entries_checked bigint, first_bad_position bigint, problem text)
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'verify_chain_trusted_wrapper';
COMMENT ON FUNCTION aegis.verify_chain(jsonb) IS
    'verify_chain(), and prove the chain still holds this saved head (catches truncation and rewrites)';

CREATE FUNCTION aegis.chain_head() RETURNS jsonb LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'chain_head_wrapper';
COMMENT ON FUNCTION aegis.chain_head() IS
    'The sealed chain head (position, hash, time) signed with the audit_head key: store it outside the database';

-- ---------------------------------------------------------------- protect() attaches the audit triggers (sql/30_policy.sql)
CREATE OR REPLACE FUNCTION aegis.switch_rls(tbl regclass, enable boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    nsp name;
    rel name;
    kind "char";
    r record;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
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
    FOR r IN
        SELECT n.nspname, c.relname
        FROM (SELECT tbl AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
    LOOP
        IF enable THEN
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', r.nspname, r.relname);
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', r.nspname, r.relname);
            EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM PUBLIC', r.nspname, r.relname);
            -- Statement triggers are not inherited by partitions: each gets one.
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                           WHERE t.tgrelid = pg_catalog.format('%I.%I', r.nspname, r.relname)::regclass
                             AND t.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure) THEN
                EXECUTE pg_catalog.format('CREATE TRIGGER aegis_audit_truncate AFTER TRUNCATE ON %I.%I '
                    'FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_truncate()', r.nspname, r.relname);
            END IF;
        ELSE
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I NO FORCE ROW LEVEL SECURITY', r.nspname, r.relname);
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I DISABLE ROW LEVEL SECURITY', r.nspname, r.relname);
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS aegis_audit_truncate ON %I.%I', r.nspname, r.relname);
        END IF;
    END LOOP;
    -- Row triggers on a partitioned table are cloned to its partitions.
    IF enable AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                              WHERE t.tgrelid = tbl AND t.tgfoid = 'aegis.audit_row()'::pg_catalog.regprocedure) THEN
        EXECUTE pg_catalog.format('CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON %I.%I '
            'FOR EACH ROW EXECUTE FUNCTION aegis.audit_row()', nsp, rel);
    ELSIF NOT enable THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS aegis_audit ON %I.%I', nsp, rel);
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.switch_rls(regclass, boolean) IS
    'Internal: RLS and audit triggers on (enable, force, revoke PUBLIC, attach) or off for a table and its partitions (no grants)';

CREATE OR REPLACE FUNCTION aegis.relax_rls(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM aegis.rls_enforced r WHERE r.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not protected by pg_aegis', tbl USING ERRCODE = '55000';
    END IF;
    -- Forget the table first: the DDL guard refuses switching off RLS or the
    -- audit trigger of a table still recorded here.
    DELETE FROM aegis.rls_enforced r WHERE r.relid = tbl;
    PERFORM aegis.switch_rls(tbl, false);
END
$$;
COMMENT ON FUNCTION aegis.relax_rls(regclass) IS
    'Internal step of unprotect(): RLS off on a protected table (definer rights; admin-only)';

-- ---------------------------------------------------------------- grants (sql/99_finalize.sql)
-- As in sql/99_finalize.sql: revoke the default, then grant explicitly.
REVOKE EXECUTE ON FUNCTION
    aegis.audit_row(), aegis.audit_truncate(), aegis.audit_plans_changed(), aegis.audit_append_only(),
    aegis.seal(), aegis.verify_chain(), aegis.verify_chain(jsonb), aegis.chain_head()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    aegis.seal(), aegis.verify_chain(), aegis.verify_chain(jsonb), aegis.chain_head()
TO aegis_admin, aegis_auditor;

-- ---------------------------------------------------------------- tables protected under 0.2.0
-- Attach the audit triggers (their rows were not audited before: the trail
-- starts now).
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT r.relid FROM aegis.rls_enforced r LOOP
        PERFORM aegis.switch_rls(t, true);
    END LOOP;
END
$$;

-- This script opened by revoking schema aegis from PUBLIC, as every file
-- does; give back what sql/99_finalize.sql grants.
GRANT USAGE ON SCHEMA aegis TO PUBLIC;
