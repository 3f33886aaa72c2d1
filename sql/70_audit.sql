-- Tamper-evident audit trail (src/audit.rs, aegis-core audit): the entries,
-- the chain that seals them, the append-only guards, and the event triggers
-- that keep protected tables from being quietly unprotected.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

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
