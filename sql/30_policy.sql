-- Policy catalog and the protect() hook: which tables pg_aegis protects, how
-- their columns are classified, on-call assignments, and the session helpers
-- the row-level security policies call.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- ===========================================================================
-- Catalog tables (extension config tables: pg_dump dumps their rows)
-- ===========================================================================

CREATE TABLE aegis.protected_tables (
    relid        regclass PRIMARY KEY,
    policy       jsonb NOT NULL DEFAULT '{}'::jsonb,
    protected_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    protected_by name NOT NULL DEFAULT CURRENT_USER,
    -- The table's columns when protect() last ran: a column added since and
    -- not classified is drift (aegis.compliance_report warns).
    known_columns name[]
);
COMMENT ON TABLE aegis.protected_tables IS 'Tables under pg_aegis protection (aegis.protect)';

CREATE TABLE aegis.column_classes (
    relid       regclass NOT NULL REFERENCES aegis.protected_tables ON DELETE CASCADE,
    column_name name NOT NULL,
    class       text NOT NULL CHECK (class IN ('public', 'pii', 'secret', 'free_text', 'subject_id', 'metric', 'cost')),
    PRIMARY KEY (relid, column_name)
);
COMMENT ON TABLE aegis.column_classes IS
    'Column classification of protected tables; unlisted columns are public';

CREATE TABLE aegis.oncall_assignments (
    engineer    regrole NOT NULL,
    server_id   text NOT NULL CHECK (server_id <> ''),
    assigned_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    until       timestamptz,
    assigned_by name NOT NULL DEFAULT CURRENT_USER,
    PRIMARY KEY (engineer, server_id)
);
CREATE INDEX ON aegis.oncall_assignments (server_id);
COMMENT ON TABLE aegis.oncall_assignments IS
    'Which on-call engineer (a role) is assigned to which server, until when (NULL = open-ended)';

-- Tables on which enforce_rls() switched RLS on: written only by the
-- definer-rights functions (no grants), so relax_rls() cannot be pointed at a
-- table pg_aegis never protected by inserting into aegis.protected_tables.
CREATE TABLE aegis.rls_enforced (
    relid       regclass PRIMARY KEY,
    enforced_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- What protect() found, per relation of the table's tree, so that
    -- unprotect() restores it exactly: [{"relid", "rls", "force", "public"}]
    -- (row security enabled and forced, privileges PUBLIC held). NULL for
    -- tables protected before 0.6.0.
    prior_state jsonb,
    -- protect() has made the table compliant but not yet recorded its rows
    -- (take_baseline() does, once the columns are classified).
    baseline_pending boolean NOT NULL DEFAULT false,
    -- The capture mode the table's triggers and baseline were made for
    -- (capture_mode()); protect() with another mode re-baselines.
    capture text,
    -- The role profile in force (enforce_access()); NULL: none.
    profile text
);
COMMENT ON TABLE aegis.rls_enforced IS
    'Internal: tables whose RLS pg_aegis enabled (written only by enforce_rls/relax_rls)';

SELECT pg_catalog.pg_extension_config_dump('aegis.protected_tables', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.rls_enforced', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.column_classes', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.oncall_assignments', '');

-- ===========================================================================
-- Session helpers used inside RLS policies and masking views. They reveal only
-- the caller's own memberships and assignments, so PUBLIC may call them.
-- Policies call them as (SELECT aegis.f()) so each runs once per query (an
-- initplan), and the comparison becomes an indexable "= ANY(array)".
-- ===========================================================================

-- plpgsql rather than sql: plpgsql caches its plans for the session, while a
-- sql-language function would be planned again in every query that uses it.
CREATE FUNCTION aegis.member_role_oids() RETURNS oid[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT COALESCE(pg_catalog.array_agg(r.oid), '{}')
            FROM pg_catalog.pg_roles r WHERE aegis.is_member(r.oid));
END
$$;
COMMENT ON FUNCTION aegis.member_role_oids() IS 'OIDs of every role the current user is a member of, itself included';

CREATE FUNCTION aegis.member_role_names() RETURNS name[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT COALESCE(pg_catalog.array_agg(r.rolname), '{}')
            FROM pg_catalog.pg_roles r WHERE aegis.is_member(r.oid));
END
$$;
COMMENT ON FUNCTION aegis.member_role_names() IS 'Names of every role the current user is a member of, itself included';

CREATE FUNCTION aegis.is_member_of_any(roles name[]) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                   WHERE r.rolname = ANY (roles) AND aegis.is_member(r.oid));
END
$$;
COMMENT ON FUNCTION aegis.is_member_of_any(name[]) IS
    'True if the current user is a member of any of these roles (unknown names are ignored, not an error)';

-- SECURITY INVOKER on purpose: aegis.oncall_assignments has its own RLS, so
-- an engineer can only ever read their own assignments through this.
CREATE FUNCTION aegis.oncall_servers() RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT COALESCE(pg_catalog.array_agg(DISTINCT a.server_id), '{}')
            FROM aegis.oncall_assignments a
            WHERE aegis.is_member(a.engineer::oid) AND (a.until IS NULL OR a.until > pg_catalog.now()));
END
$$;
COMMENT ON FUNCTION aegis.oncall_servers() IS 'Servers currently assigned to the current user (or a role they belong to)';

ALTER TABLE aegis.oncall_assignments ENABLE ROW LEVEL SECURITY;
ALTER TABLE aegis.oncall_assignments FORCE ROW LEVEL SECURITY;
CREATE POLICY oncall_own ON aegis.oncall_assignments FOR SELECT
    TO aegis_oncall USING (aegis.is_member(engineer::oid));
CREATE POLICY admin_all ON aegis.oncall_assignments FOR ALL
    TO aegis_admin USING (true) WITH CHECK (true);
CREATE POLICY auditor_read ON aegis.oncall_assignments FOR SELECT
    TO aegis_auditor USING (true);
GRANT SELECT ON aegis.oncall_assignments TO aegis_oncall, aegis_auditor;
GRANT SELECT, INSERT, UPDATE, DELETE ON aegis.oncall_assignments TO aegis_admin;

-- ===========================================================================
-- On-call API (admin-only by grant; SECURITY INVOKER: aegis_admin has the
-- table privileges itself, so no definer rights are needed)
-- ===========================================================================

CREATE FUNCTION aegis.assign_oncall(engineer regrole, server_id text, until timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF server_id IS NULL OR pg_catalog.btrim(server_id) = '' THEN
        RAISE EXCEPTION 'server_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF engineer IS NULL THEN
        RAISE EXCEPTION 'engineer must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF until IS NOT NULL AND until <= pg_catalog.now() THEN
        RAISE EXCEPTION 'until must be in the future' USING ERRCODE = '22023',
            HINT = 'Use aegis.unassign_oncall() to end an assignment now.';
    END IF;
    INSERT INTO aegis.oncall_assignments AS a (engineer, server_id, until)
    VALUES (assign_oncall.engineer, assign_oncall.server_id, assign_oncall.until)
    ON CONFLICT ON CONSTRAINT oncall_assignments_pkey
    DO UPDATE SET until = EXCLUDED.until, assigned_at = pg_catalog.now(), assigned_by = CURRENT_USER;
END
$$;
COMMENT ON FUNCTION aegis.assign_oncall(regrole, text, timestamptz) IS
    'Assign an on-call engineer (role) to a server, optionally until a time (admin-only)';

CREATE FUNCTION aegis.unassign_oncall(engineer regrole, server_id text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    WITH d AS (
        DELETE FROM aegis.oncall_assignments a
        WHERE a.engineer = unassign_oncall.engineer AND a.server_id = unassign_oncall.server_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION aegis.unassign_oncall(regrole, text) IS
    'End an on-call assignment; true if there was one (admin-only)';

-- ===========================================================================
-- protect() / unprotect()
-- ===========================================================================

-- Run one DDL statement on a user table as the table's owner, in a
-- security-restricted operation (aegis.run_restricted): whatever the
-- command makes PostgreSQL evaluate (a partition key's or an index's
-- expressions, which it folds when it loads them) runs with the owner's
-- rights, never with pg_aegis's. Internal: granted to nobody.
CREATE FUNCTION aegis.owner_ddl(tbl oid, stmt text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.run_restricted((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), tbl, false, stmt, '{}');
END
$$;
COMMENT ON FUNCTION aegis.owner_ddl(oid, text) IS
    'Internal: run one DDL statement on a table as its owner, in a security-restricted operation';

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

-- Switch RLS and the audit triggers on (enable + force, revoke PUBLIC,
-- attach) or off for a table and, if it is partitioned, its existing partitions (RLS on the parent does not cover a
-- partition queried directly; partitions added later need protect() again).
-- Refuses non-tables, catalogs and pg_aegis's own schema; builds identifiers
-- only with %I from pg_class. Not granted to anyone: it runs only inside the
-- two definer-rights functions below, with their (owner's) rights.
CREATE FUNCTION aegis.switch_rls(tbl regclass, enable boolean, prior jsonb DEFAULT NULL)
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

-- Row security and PUBLIC's privileges of a table and its partitions, as
-- protect() finds them (enforce_rls() records it; relax_rls() restores it).
CREATE FUNCTION aegis.rls_state(tbl regclass)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'relid', c.oid, 'rls', c.relrowsecurity, 'force', c.relforcerowsecurity,
               'public', (SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT a.privilege_type), '[]')
                          FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0))
               ORDER BY c.oid), '[]')
    FROM (SELECT tbl AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t) t
    JOIN pg_catalog.pg_class c ON c.oid = t.relid
    WHERE c.relkind IN ('r', 'p')
$$;
COMMENT ON FUNCTION aegis.rls_state(regclass) IS
    'Internal: row security and PUBLIC privileges of a table and its partitions';

-- The only definer-rights steps: switching row-level security needs table
-- ownership, and aegis_admin configures policies on tables it does not own.
-- SECURITY DEFINER, kept minimal: enforce_rls() can only add protection and
-- records what it enforced in aegis.rls_enforced; relax_rls() acts only on
-- tables recorded there (which only enforce_rls() writes), so it cannot be
-- used to switch off RLS that a table's owner enabled for other reasons.
-- Both run with an empty search_path. EXECUTE: aegis_admin only.
CREATE FUNCTION aegis.enforce_rls(tbl regclass)
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

-- protect()'s last step: record the existing rows of a newly protected
-- table as BASELINE entries, now that its columns are classified. Definer
-- rights: the audit trail is written with the extension's; it acts only on
-- a table enforce_rls() just protected (baseline_pending), once.
CREATE FUNCTION aegis.take_baseline(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    UPDATE aegis.rls_enforced r SET baseline_pending = false WHERE r.relid = tbl AND r.baseline_pending;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    RETURN aegis.audit_baseline(tbl);
END
$$;
COMMENT ON FUNCTION aegis.take_baseline(regclass) IS
    'Internal step of protect(): BASELINE entries for a newly protected table''s rows, once classified';

CREATE FUNCTION aegis.relax_rls(tbl regclass)
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

-- OIDs of the protected tables (the DDL guard's event triggers, which run
-- as whoever issues the DDL, and protect()'s policy check read them).
CREATE FUNCTION aegis.guard_protected_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT p.relid::oid FROM aegis.protected_tables p
UNION SELECT e.relid::oid FROM aegis.rls_enforced e
$$;
COMMENT ON FUNCTION aegis.guard_protected_tables() IS 'Internal: OIDs of protected tables';

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

-- ===========================================================================
-- Application roles: the roles that own or run the application whose tables
-- pg_aegis protects (Zabbix's "zabbix" login). protect()'s
-- "application_roles" names them; each protected relation then carries one
-- permissive policy, aegis_application, FOR ALL TO those roles USING (true)
-- WITH CHECK (true), so the application reads and writes exactly as before
-- (forced row security would otherwise show its own tables to it empty),
-- while its changes are still captured by the audit triggers. The policy on
-- the table is the source of truth; protected_tables.policy says the same
-- (the catalog guard refuses a direct edit that would make them differ).
-- ===========================================================================

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

-- ===========================================================================
-- Scopes: row scoping for on-call by a key of any type, reached directly or
-- through a join path (Zabbix: hosts.hostid; history -> items -> hostid;
-- events -> functions -> items -> hostid). A scope names the table whose
-- key identifies what people are assigned to (create_scope); assignments
-- are checked against it (an id that does not exist is refused); a
-- protected table declares how its rows reach the key (protect()'s
-- "scope"), and its profile's scoped roles (aegis_oncall) see the rows
-- whose key is assigned to them. The predicate compares the row's column
-- with an array computed once per query (an initplan over the tables of the
-- path, itself using their indexes): "= ANY (array)" is an index condition
-- even inside row-level security (a sublink in a security qual would be a
-- filter over every row instead).
-- ===========================================================================

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

-- The row predicate of a protected table's declared scope (NULL: none).
CREATE FUNCTION aegis.scope_predicate(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT aegis.scope_predicate_of(tbl, (SELECT p.policy -> 'scope' FROM aegis.protected_tables p WHERE p.relid = tbl))
$$;
COMMENT ON FUNCTION aegis.scope_predicate(regclass) IS
    'Internal: the row predicate of a table''s on-call scope (NULL: none declared)';

-- ===========================================================================
-- Masking views: a protected table's rows for readers who may not see its
-- sensitive columns, generated from the column classes: subject_id and pii
-- columns as pseudonyms (aegis.masked_pseudonym(): joinable, not
-- reversible, and the readers cannot compute one for a value they choose),
-- free text with PII redacted, secrets NULL, the rest as stored. The view
-- is owned by aegis_masking_owner (which reads the table through one
-- policy of pg_aegis's, aegis_masking) and is a security barrier.
-- ===========================================================================

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

-- SECURITY INVOKER, so protected_by records the real caller; the table
-- switch goes through enforce_rls(), the catalog rows through aegis_admin's
-- own privileges on aegis.protected_tables and aegis.column_classes.
-- What protect()'s policy must be (protect() and the catalog guard on
-- aegis.protected_tables): an object with known keys, audit_reads a
-- boolean, erasure delete or anonymize, columns that exist mapped to known
-- classes.
CREATE FUNCTION aegis.check_policy(tbl regclass, policy jsonb)
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

CREATE FUNCTION aegis.protect(tbl regclass, policy jsonb DEFAULT '{}'::jsonb)
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

-- Gives the table back as protect() found it: row security enabled and
-- forced only if it was, PUBLIC's privileges restored. When that leaves RLS
-- off, every role granted on the table sees every row, so it warns.
-- SECURITY INVOKER; the switch goes through relax_rls().
CREATE FUNCTION aegis.unprotect(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.relax_rls(tbl);
    DELETE FROM aegis.protected_tables p WHERE p.relid = tbl;
    IF NOT (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = tbl) THEN
        RAISE WARNING 'row-level security is now off on %: every role granted on it sees all rows', tbl;
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.unprotect(regclass) IS
    'Remove pg_aegis protection from a table: RLS off, classification forgotten (admin-only)';
