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
-- CACHE: a bulk statement takes one id per row; cached ids skip the
-- sequence's buffer lock and WAL record for most of them.
CREATE SEQUENCE aegis.audit_log_id_seq CACHE 32;
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
    erased_at         timestamptz,
    -- Digest-mode statements only: the change they made to the table's
    -- content (row count and LtHash digest per bucket; src/audit/digest.rs).
    content_change    bytea
);
-- The only index on the write path: sealing reads new entries by xid range,
-- verification joins the chain on (xid, id).
CREATE UNIQUE INDEX audit_log_xid_id ON aegis.audit_log (xid, id);
-- A content change is 2 KiB of incompressible digest per bucket: never
-- compressed (EXTERNAL), and kept in the row up to 4 KiB (a one-bucket
-- statement: one row, not a row and two TOAST chunks); larger rows are
-- toasted as usual.
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
-- chain_position and log_was_empty say what the horizon was computed over:
-- when the chain has since changed under it or the log was empty (a seal
-- that ran before a restore loaded the data), the next seal searches the
-- whole log instead of trusting the horizon.
CREATE TABLE aegis.audit_seal_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    horizon        xid8 NOT NULL,
    sealed_at      timestamptz NOT NULL,
    chain_position bigint NOT NULL DEFAULT 0,
    log_was_empty  boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE aegis.audit_seal_state IS 'Internal: the sealing horizon (not dumped)';

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

SELECT pg_catalog.pg_extension_config_dump('aegis.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.audit_chain', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.audit_log_id_seq', '');

-- Who sees what in the trail. A role must never read in the trail a value
-- it could not read in the source table: the row images (pk, old_row,
-- new_row) of an entry are shown through aegis.audit_trail only
--   * column by column, where the reader may SELECT that column of the
--     table (other values read "[HIDDEN]"), and
--   * only where the reader sees every row of the table (superuser,
--     BYPASSRLS, owner without FORCE, row security off, or a permissive
--     USING (true) policy and no restrictive one); otherwise every value is
--     hidden, since a policy cannot be evaluated on a past image.
-- Entries of tables that no longer exist show their images to superusers
-- only. Metadata (who, when, which table, operation, detail) is shown to
-- every trail reader. The raw digests and chain hashes are not shown to
-- roles that are not superusers: an unkeyed hash of a row image is an
-- oracle for guessing a low-entropy hidden value. Verification needs no
-- raw hash (verify_chain(), verify_table(), chain_head() run with the
-- extension's rights). Direct SELECT on aegis.audit_log is column-wise for
-- the same reason.
-- Does a role see every row of a table, or does row-level security narrow
-- its view (superuser, BYPASSRLS, owner without FORCE, row security off, or
-- a permissive USING (true) policy for it and no restrictive one)? Used for
-- the trail's readers and for the authors of retention and legal-hold
-- filters.
CREATE FUNCTION aegis.role_reads_all_rows(tbl regclass, who oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT r.rolsuper OR r.rolbypassrls OR NOT c.relrowsecurity
        OR (pg_catalog.pg_has_role(who, c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)
        OR (EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                      AND (0::oid = ANY (p.polroles)
                           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) x(role)
                                      WHERE pg_catalog.pg_has_role(who, x.role, 'USAGE')))
                      AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true')
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                            WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
                              AND (0::oid = ANY (p.polroles)
                                   OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) x(role)
                                              WHERE pg_catalog.pg_has_role(who, x.role, 'USAGE')))))
    FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
    WHERE c.oid = tbl AND r.oid = who
$$;
COMMENT ON FUNCTION aegis.role_reads_all_rows(regclass, oid) IS
    'Does the role see every row of the table (no row-level security narrows it)?';

CREATE FUNCTION aegis.reads_all_rows(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT aegis.role_reads_all_rows(tbl, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER))
$$;
COMMENT ON FUNCTION aegis.reads_all_rows(regclass) IS
    'Does the current user see every row of the table (no row-level security narrows it)?';

CREATE FUNCTION aegis.visible_image(table_name text, image jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    tbl regclass;
    all_rows boolean;
BEGIN
    IF image IS NULL OR pg_catalog.jsonb_typeof(image) <> 'object' THEN
        RETURN image;
    END IF;
    tbl := pg_catalog.to_regclass(table_name);
    IF tbl IS NULL THEN
        RETURN CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
                    THEN image END;
    END IF;
    all_rows := COALESCE(aegis.reads_all_rows(tbl), false);
    RETURN (SELECT pg_catalog.jsonb_object_agg(e.key,
                CASE WHEN all_rows AND EXISTS (
                         SELECT 1 FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = tbl AND a.attname = e.key AND a.attnum > 0 AND NOT a.attisdropped
                           AND pg_catalog.has_column_privilege(tbl, a.attnum, 'SELECT'))
                     THEN e.value ELSE '"[HIDDEN]"'::jsonb END)
            FROM pg_catalog.jsonb_each(image) e);
END
$$;
COMMENT ON FUNCTION aegis.visible_image(text, jsonb) IS
    'A row image as the current user may see it: columns it cannot read, or all of them under row-level security, read [HIDDEN]';

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

-- A chunk entry (the row images of a multi-row statement, as arrays; see
-- src/audit/chunk.rs) shows as one view row per changed row, numbered by
-- "item" (NULL for every other entry).
CREATE VIEW aegis.audit_trail WITH (security_barrier = true) AS
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

REVOKE ALL ON aegis.audit_log, aegis.audit_chain FROM PUBLIC;
GRANT SELECT (id, xid, operation, table_name, db_user, session_user_name, application_name, client_addr,
              backend_pid, statement_time, detail, erased_at)
    ON aegis.audit_log TO aegis_auditor, aegis_admin;
GRANT SELECT (position, entry_xid, entry_id, sealed_at) ON aegis.audit_chain TO aegis_auditor, aegis_admin;
GRANT SELECT ON aegis.audit_seal_state, aegis.audit_trail TO aegis_auditor, aegis_admin;

-- ===========================================================================
-- Capture
-- ===========================================================================

CREATE FUNCTION aegis.audit_row() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_row_wrapper';
COMMENT ON FUNCTION aegis.audit_row() IS
    'AFTER INSERT OR UPDATE OR DELETE row trigger on pg_aegis''s own catalogs (and protected tables before 0.7.0): one audit entry per row change';

CREATE FUNCTION aegis.audit_statement() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_statement_wrapper';
COMMENT ON FUNCTION aegis.audit_statement() IS
    'Statement triggers protect() attaches: AFTER INSERT, UPDATE or DELETE over transition tables (row images in chunks; in digest mode one entry per statement with its content change), BEFORE TRUNCATE of a digest-mode partition (its content leaves)';

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

CREATE FUNCTION aegis.flush_application_reads() RETURNS bigint LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'flush_application_reads_impl_wrapper';
COMMENT ON FUNCTION aegis.flush_application_reads() IS
    'Record now the reads this session counted ("application_reads": "aggregate"); returns how many table counts';

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

CREATE FUNCTION aegis.verify_chain_incremental()
RETURNS TABLE (ok boolean, entries_checked bigint, first_bad_position bigint, problem text, verified_from bigint)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'verify_chain_incremental_wrapper';
COMMENT ON FUNCTION aegis.verify_chain_incremental() IS
    'verify_chain() from the newest verified, signed checkpoint on (the whole chain the first time), then move the checkpoint';

CREATE FUNCTION aegis.chain_head() RETURNS jsonb LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'chain_head_wrapper';
COMMENT ON FUNCTION aegis.chain_head() IS
    'The sealed chain head (position, hash, time) signed with the audit_head key: store it outside the database';

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

-- Internal (no grants): apply_retention() records an expired partition of a
-- digest-mode table leaving, under the ACCESS EXCLUSIVE lock its drop keeps.
CREATE FUNCTION aegis.retire_partition(part regclass) RETURNS bigint LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'retire_partition_wrapper';
COMMENT ON FUNCTION aegis.retire_partition(regclass) IS
    'Internal: one RETENTION entry removing the content of a digest-mode partition about to be dropped';

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
CREATE FUNCTION aegis.guard_state(tbl oid) RETURNS jsonb
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

-- What each protected table (and partition) was when pg_aegis last
-- accepted it: its guard_state() and whether it was compliant (a superuser
-- may leave one that is not: it is reported once, then remembered). Kept here, where no SQL of
-- a table owner can reach (no grants; a session setting could be changed by
-- code the owner runs in the middle of a command), and compared after every
-- DDL command. Dumped (a restored database keeps guarding at once).
CREATE TABLE aegis.guard_states (
    relid     regclass PRIMARY KEY,
    state     jsonb NOT NULL,
    compliant boolean NOT NULL
);
COMMENT ON TABLE aegis.guard_states IS
    'Internal: the state of each protected table and partition the DDL guard compares with';
SELECT pg_catalog.pg_extension_config_dump('aegis.guard_states', '');

-- Every protected table and partition: its name, and whether a command
-- broke it: it was compliant when remembered and is not now, or its owner,
-- rules, policies or inheritance children changed, a partition left, or a
-- column changed type. Relations seen for the first time are remembered
-- as they are. Definer rights: guard_states is the extension
-- owner's; it only reads catalogs and adds first sightings.
CREATE FUNCTION aegis.guard_check() RETURNS TABLE (relid oid, name text, broken boolean)
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

-- Remember protected relations as they are now: a table's tree when
-- protect() has just made it compliant (tbl), or every protected relation
-- after a superuser's recorded change (NULL). SECURITY INVOKER: only a
-- superuser (or the extension's own definer functions) can write
-- aegis.guard_states.
CREATE FUNCTION aegis.guard_remember(tbl regclass DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    DELETE FROM aegis.guard_states g
    WHERE tbl IS NULL
      AND NOT EXISTS (SELECT 1 FROM aegis.rls_enforced e
                      WHERE g.relid::oid IN (SELECT e.relid::oid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt));
    INSERT INTO aegis.guard_states AS g (relid, state, compliant)
    SELECT t.relid, aegis.guard_state(t.relid), t.relid IN (SELECT aegis.guard_compliant_tables())
    FROM aegis.rls_enforced e
    CROSS JOIN LATERAL (SELECT e.relid::oid AS relid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt) t
    JOIN pg_catalog.pg_class c ON c.oid = t.relid
    WHERE (tbl IS NULL OR e.relid = tbl) AND c.relkind IN ('r', 'p')
    ON CONFLICT (relid) DO UPDATE SET state = EXCLUDED.state, compliant = EXCLUDED.compliant;
$$;
COMMENT ON FUNCTION aegis.guard_remember(regclass) IS
    'Internal: remember protected relations as they are now (a table after protect(), or all after a superuser''s recorded change)';

-- New partitions of a protected table come out protected: row security
-- enabled and forced, PUBLIC revoked, the TRUNCATE capture trigger (the row
-- capture trigger is cloned by PostgreSQL itself), and the rows of an
-- attached table recorded as BASELINE entries. Definer rights: the
-- partition's creator may not own the capture functions' grants; it can
-- only add protection. Recorded as a DDL entry. Its own ALTER TABLEs run
-- with session_replication_role = replica, so the guard's event triggers
-- (enabled on origin) do not fire again inside it.
CREATE FUNCTION aegis.guard_protect_partitions() RETURNS void
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

CREATE FUNCTION aegis.guard_ddl_end() RETURNS event_trigger
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

-- A table rewrite (ALTER COLUMN ... TYPE ... USING, a volatile default for
-- a new column, ALTER TYPE) replaces every row without any trigger firing:
-- refused (non-superusers) or recorded (superusers) for protected tables.
CREATE FUNCTION aegis.guard_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    t oid := pg_catalog.pg_event_trigger_table_rewrite_oid();
    n text;
BEGIN
    IF t IN (SELECT aegis.guard_protected_tables()) OR t IN (SELECT aegis.guard_remembered()) THEN
        SELECT pg_catalog.format('%I.%I', ns.nspname, c.relname) INTO n
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace WHERE c.oid = t;
        PERFORM aegis.guard_report(ARRAY[n], tg_tag,
            'rewriting every row of protected table (no capture trigger fires)');
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.guard_table_rewrite() IS
    'Internal event trigger: refuse or record rewriting the rows of a protected table';

CREATE FUNCTION aegis.guard_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    dropped oid[];
    names text[];
BEGIN
    -- Protected tables, and the partitions of protected tables the guard
    -- remembers (they are gone from the catalog by now).
    SELECT pg_catalog.array_agg(d.objid), pg_catalog.array_agg(d.object_identity ORDER BY d.object_identity)
    INTO dropped, names
    FROM pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.objsubid OPERATOR(pg_catalog.=) 0
      AND (d.objid IN (SELECT aegis.guard_protected_tables())
           OR d.objid IN (SELECT aegis.guard_remembered()));
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


CREATE FUNCTION aegis.guard_remembered() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT g.relid::oid FROM aegis.guard_states g
$$;
COMMENT ON FUNCTION aegis.guard_remembered() IS 'Internal: OIDs of the relations the DDL guard remembers';

CREATE FUNCTION aegis.guard_forget(dropped oid[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
DELETE FROM aegis.guard_states g WHERE g.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
DELETE FROM aegis.rls_enforced e WHERE e.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
DELETE FROM aegis.protected_tables p WHERE p.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
$$;
COMMENT ON FUNCTION aegis.guard_forget(oid[]) IS 'Internal: forget dropped protected tables (superuser only)';

-- Every DDL command: what can change a protected table without naming it
-- (REASSIGN OWNED, CREATE OR REPLACE of a view or function its policy
-- uses, ALTER OPERATOR, ALTER SCHEMA ...) is refused by the command that
-- does it, not found broken by whoever runs DDL next.
CREATE EVENT TRIGGER aegis_guard_end ON ddl_command_end
    EXECUTE FUNCTION aegis.guard_ddl_end();
CREATE EVENT TRIGGER aegis_guard_rewrite ON table_rewrite
    EXECUTE FUNCTION aegis.guard_table_rewrite();
CREATE EVENT TRIGGER aegis_guard_drop ON sql_drop
    EXECUTE FUNCTION aegis.guard_sql_drop();
