-- pg_aegis 0.5.0 -> 0.6.0: hardening. Every statement retention and
-- erasure run on a user table runs as its owner in a security-restricted
-- operation (aegis.run_restricted); filters are a whitelist of built-in code
-- and are evaluated as their author; unprotect() restores what protect()
-- found. A fresh 0.6.0 install and 0.5.0 updated with this script have the
-- same catalog: pg_test/sql/upgrade.sql compares them object by object.
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.6.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- What protect() found, so that unprotect() restores it (NULL for tables
-- protected before 0.6.0: unprotect() switches row security off for them,
-- as 0.5.0 did).
ALTER TABLE aegis.rls_enforced ADD COLUMN prior_state jsonb;
ALTER TABLE aegis.rls_enforced ADD COLUMN baseline_pending boolean NOT NULL DEFAULT false;

DROP FUNCTION aegis.switch_rls(regclass, boolean);
DROP FUNCTION aegis.row_filter(regclass, text);
DROP FUNCTION aegis.audit_tombstone(text, boolean);
-- The DDL guard keeps its state in aegis.guard_states now, not in a session
-- setting between two event triggers.
DROP EVENT TRIGGER aegis_guard_start;
DROP FUNCTION aegis.guard_ddl_start();
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
    PERFORM aegis.run_restricted((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), false, stmt, '{}');
END
$$;
COMMENT ON FUNCTION aegis.owner_ddl(oid, text) IS
    'Internal: run one DDL statement on a table as its owner, in a security-restricted operation';

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
                  AND (   (t.tgfoid = 'aegis.audit_row()'::pg_catalog.regprocedure
                           AND NOT (t.tgtype = 29 AND t.tgqual IS NULL AND t.tgattr = ''::pg_catalog.int2vector AND t.tgnargs = 0))
                       OR (t.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure
                           AND NOT (t.tgtype = 32 AND t.tgqual IS NULL AND t.tgnargs = 0)))
            LOOP
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('DROP TRIGGER %I ON %I.%I', tg, r.nspname, r.relname));
            END LOOP;
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', r.nspname, r.relname));
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', r.nspname, r.relname));
            PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM PUBLIC', r.nspname, r.relname));
            -- Statement triggers are not inherited by partitions: each gets one.
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                           WHERE t.tgrelid = r.oid
                             AND t.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure) THEN
                PERFORM aegis.owner_ddl(r.oid, pg_catalog.format('CREATE TRIGGER aegis_audit_truncate AFTER TRUNCATE ON %I.%I '
                    'FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_truncate()', r.nspname, r.relname));
            END IF;
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
        END IF;
    END LOOP;
    -- Row triggers on a partitioned table are cloned to its partitions.
    IF enable AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                              WHERE t.tgrelid = tbl AND t.tgfoid = 'aegis.audit_row()'::pg_catalog.regprocedure) THEN
        -- (Any row capture trigger left here is exactly protect()'s: the
        -- loop above replaced the others.)
        PERFORM aegis.owner_ddl(tbl, pg_catalog.format('CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON %I.%I '
            'FOR EACH ROW EXECUTE FUNCTION aegis.audit_row()', nsp, rel));
    ELSIF NOT enable THEN
        PERFORM aegis.owner_ddl(tbl, pg_catalog.format('DROP TRIGGER IF EXISTS aegis_audit ON %I.%I', nsp, rel));
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.switch_rls(regclass, boolean, jsonb) IS
    'Internal: RLS and audit triggers on (enable, force, revoke PUBLIC, attach) or off for a table and its partitions (no grants)';

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
        IF k NOT IN ('columns', 'audit_reads', 'erasure') THEN
            RAISE EXCEPTION 'unknown policy key "%"', k USING ERRCODE = '22023',
                HINT = 'Valid keys: columns, audit_reads, erasure.';
        END IF;
    END LOOP;
    IF policy ? 'audit_reads' AND pg_catalog.jsonb_typeof(policy -> 'audit_reads') <> 'boolean' THEN
        RAISE EXCEPTION 'policy.audit_reads must be true or false' USING ERRCODE = '22023';
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
END
$$;
COMMENT ON FUNCTION aegis.check_policy(regclass, jsonb) IS
    'Internal: is this a valid protect() policy for the table?';

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

-- What a DDL command must not change on a protected table (or partition)
-- without being refused (non-superusers) or recorded (superusers): who owns
-- it, its rules and their state, its row-level security policies, its
-- inheritance children (rows seen through it but written around its
-- trigger), its partitions (detached or dropped, their rows leave it
-- unaudited), and the types of its columns. New partitions are fine: they
-- come out protected (guard_protect_partitions). New columns are fine.
CREATE FUNCTION aegis.guard_state(tbl oid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT pg_catalog.jsonb_build_object(
    'fp', pg_catalog.md5(pg_catalog.concat_ws('|',
        (SELECT pg_catalog.pg_get_userbyid(c.relowner)::text FROM pg_catalog.pg_class c WHERE c.oid = tbl),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', w.rulename, w.ev_type, w.ev_enabled,
                    pg_catalog.md5(w.ev_action::text), pg_catalog.md5(COALESCE(w.ev_qual::text, ''))), ',' ORDER BY w.rulename)
         FROM pg_catalog.pg_rewrite w WHERE w.ev_class = tbl),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', p.polname, p.polcmd, p.polpermissive,
                    (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(r)::text END, ',' ORDER BY 1)
                     FROM pg_catalog.unnest(p.polroles) r),
                    pg_catalog.md5(COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')),
                    pg_catalog.md5(COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), ''))), ',' ORDER BY p.polname)
         FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl),
        -- The functions the table's policies and rules call: replacing one
        -- changes what the table shows as surely as changing the policy.
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', f.oid::regprocedure::text,
                    pg_catalog.md5(COALESCE(f.prosrc, '') || COALESCE(f.probin, '')), f.provolatile, f.prosecdef,
                    f.proconfig::text), ',' ORDER BY 1)
         FROM (SELECT DISTINCT d.refobjid FROM pg_catalog.pg_depend d
               WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass
                 AND ((d.classid = 'pg_catalog.pg_policy'::regclass
                       AND d.objid IN (SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl))
                   OR (d.classid = 'pg_catalog.pg_rewrite'::regclass
                       AND d.objid IN (SELECT w.oid FROM pg_catalog.pg_rewrite w WHERE w.ev_class = tbl)))) x
         JOIN pg_catalog.pg_proc f ON f.oid = x.refobjid),
        (SELECT pg_catalog.string_agg(i.inhrelid::regclass::text, ',' ORDER BY 1)
         FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
         WHERE i.inhparent = tbl AND NOT k.relispartition))),
    'parts', (SELECT COALESCE(pg_catalog.jsonb_agg(i.inhrelid::regclass::text), '[]')
              FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
              WHERE i.inhparent = tbl AND k.relispartition),
    'cols', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a.attname,
                 pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END), '{}')
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped),
    -- The labels of enum columns: renaming one changes every row that holds
    -- it (adding labels is fine).
    'enums', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a.attname,
                  (SELECT pg_catalog.jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
                   WHERE e.enumtypid = a.atttypid)), '{}')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid)))
$$;
COMMENT ON FUNCTION aegis.guard_state(oid) IS
    'Internal: what the DDL guard compares before and after a command (owner, rules, policies, inheritance, partitions, column types)';

-- New partitions of a protected table come out protected: row security
-- enabled and forced, PUBLIC revoked, the TRUNCATE capture trigger (the row
-- capture trigger is cloned by PostgreSQL itself). Definer rights: the
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
    FOR r IN
        SELECT DISTINCT e.relid, c.oid AS part
        FROM aegis.rls_enforced e
        CROSS JOIN LATERAL pg_catalog.pg_partition_tree(e.relid) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        WHERE c.relkind IN ('r', 'p') AND c.oid <> e.relid::oid
          AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                   AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                               WHERE g.tgrelid = c.oid AND g.tgfoid = 'aegis.audit_truncate()'::pg_catalog.regprocedure))
    LOOP
        PERFORM aegis.switch_rls(r.relid, true);
        PERFORM aegis.guard_remember(r.relid);
        PERFORM aegis.audit_event('DDL', r.relid::text, pg_catalog.jsonb_build_object(
            'change', 'partition added and protected', 'partition', r.part::regclass::text,
            'user', SESSION_USER));
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.guard_protect_partitions() IS
    'Internal: protect new partitions of protected tables (definer rights; only adds protection)';

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
                                              WHERE pg_catalog.to_regclass(x #>> '{}') IS NOT NULL)
               OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each_text(g.state -> 'cols') col(cname, typ)
                          WHERE n.state -> 'cols' ? col.cname AND n.state -> 'cols' ->> col.cname <> col.typ)
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

CREATE FUNCTION aegis.guard_remembered() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT g.relid::oid FROM aegis.guard_states g
$$;
COMMENT ON FUNCTION aegis.guard_remembered() IS 'Internal: OIDs of the relations the DDL guard remembers';

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

-- What a retention policy must satisfy, for the current user as its author
-- (set_retention() and the catalog guard on aegis.retention_rules).
CREATE FUNCTION aegis.check_retention_rule(tbl regclass, keep interval, time_column name, only_where text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF tbl IS NULL OR keep IS NULL OR time_column IS NULL THEN
        RAISE EXCEPTION 'table, keep and time_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', keep USING ERRCODE = '22023';
    END IF;
    PERFORM aegis.lifecycle_check_table(tbl, time_column);
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
COMMENT ON FUNCTION aegis.check_retention_rule(regclass, interval, name, text) IS
    'Internal: may the current user set this retention policy (protected table, date/time column it can read, valid filter)?';

-- What a legal hold must satisfy, for the current user as its author
-- (place_legal_hold() and the catalog guard on aegis.legal_holds).
CREATE FUNCTION aegis.check_legal_hold(tbl regclass, only_where text, reason text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF reason IS NULL OR pg_catalog.btrim(reason) = '' THEN
        RAISE EXCEPTION 'a legal hold needs a reason' USING ERRCODE = '22023',
            HINT = 'Name the matter, case or request it preserves evidence for.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
    END IF;
    IF only_where IS NOT NULL THEN
        PERFORM aegis.row_filter(tbl, only_where, pg_catalog.quote_ident(CURRENT_USER)::regrole);
        -- A filtered hold's count would tell its author about rows it
        -- cannot see.
        IF NOT aegis.reads_all_rows(tbl) THEN
            RAISE EXCEPTION 'role % does not see every row of %: row-level security narrows its view', CURRENT_USER, tbl
                USING ERRCODE = '42501',
                      HINT = 'Place a hold on the whole table (only_where NULL), or have a role that sees every row place it.';
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.check_legal_hold(regclass, text, text) IS
    'Internal: may the current user place this legal hold (a table, a reason, a valid filter)?';

-- Parses the text as one expression, analyses it as a WHERE clause on the
-- table, and accepts only a whitelist of node kinds over built-in types:
-- columns the author may read, constants, built-in non-volatile functions
-- and operators, AND/OR/NOT, IS [NOT] NULL, CASE, COALESCE, GREATEST/LEAST,
-- arrays (no domains, subqueries, user-defined types, casts or operators).
-- Returns PostgreSQL's rendering of the analysed expression; only that
-- rendering is ever placed in SQL. Called by set_retention() and
-- place_legal_hold() (author: the caller) and at every run (author: who set
-- the policy or placed the hold).
CREATE FUNCTION aegis.row_filter(tbl regclass, expr text, author regrole) RETURNS text
LANGUAGE c STABLE STRICT
SET search_path = ''
AS 'MODULE_PATHNAME', 'row_filter_wrapper';
COMMENT ON FUNCTION aegis.row_filter(regclass, text, regrole) IS
    'Internal: validate a row filter on a table for its author and return its canonical text';

-- Runs one statement as a role in a security-restricted operation (see
-- src/security.rs); rows come back as text arrays, DML as its row count.
-- Internal: granted to nobody (only apply_retention() and erase_subject(),
-- which run as the extension owner, call it).
CREATE FUNCTION aegis.run_restricted(role oid, noforce_rls boolean, query text, args text[])
RETURNS SETOF text[]
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'run_restricted_wrapper';
COMMENT ON FUNCTION aegis.run_restricted(oid, boolean, text, text[]) IS
    'Internal: run one statement as a role inside a security-restricted operation';

-- Internal (granted to nobody): tombstones the subject's data inside audit
-- entries; only erase_subject() calls it.
-- Returns {"count": n, "tombstoned": [[xid, id, digest], ...]}: the entries
-- and the digests of what they hold now, which the erasure receipt lists so
-- that verify_chain() can tell a tombstone from tampering.
CREATE FUNCTION aegis.audit_tombstone(subject text, dry_run boolean) RETURNS jsonb
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_tombstone_wrapper';
COMMENT ON FUNCTION aegis.audit_tombstone(text, boolean) IS
    'Internal: replace a subject''s data in audit entries with tombstones (the chain still verifies); returns what the receipt lists';

-- Internal (granted to nobody): one TOMBSTONES entry listing every entry
-- marked erased with the digest of what it holds now. The 0.6.0 update runs
-- it once for entries erased before receipts listed them.
CREATE FUNCTION aegis.attest_tombstones() RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'attest_tombstones_wrapper';
COMMENT ON FUNCTION aegis.attest_tombstones() IS
    'Internal: record the present content of every erased audit entry (used by the 0.6.0 update)';

CREATE OR REPLACE FUNCTION aegis.protect(tbl regclass, policy jsonb DEFAULT '{}'::jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    policy := COALESCE(policy, '{}'::jsonb);
    PERFORM aegis.check_policy(tbl, policy);

    PERFORM aegis.enforce_rls(tbl);

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
    PERFORM aegis.take_baseline(tbl);
END
$$;
COMMENT ON FUNCTION aegis.protect(regclass, jsonb) IS
    'Put a table under pg_aegis protection: enable and force RLS, revoke PUBLIC, record column classes (admin-only)';

-- Definer rights: the guard runs as whoever issues the DDL, who may not read
-- the aegis catalog.
CREATE OR REPLACE FUNCTION aegis.guard_compliant_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT t.relid::oid
FROM aegis.rls_enforced e
CROSS JOIN LATERAL (SELECT e.relid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(e.relid) pt) t
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
WHERE c.relrowsecurity AND c.relforcerowsecurity
  -- The capture triggers exactly as protect() made them: AFTER ROW on
  -- INSERT, UPDATE and DELETE (tgtype 29) and AFTER TRUNCATE (32), no WHEN
  -- condition, no column list, no arguments, firing.
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_row()'::pg_catalog.regprocedure
                AND g.tgtype OPERATOR(pg_catalog.=) 29 AND g.tgqual IS NULL
                AND g.tgattr OPERATOR(pg_catalog.=) ''::pg_catalog.int2vector AND g.tgnargs OPERATOR(pg_catalog.=) 0
                AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[]))
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid
                AND g.tgfoid OPERATOR(pg_catalog.=) 'aegis.audit_truncate()'::pg_catalog.regprocedure
                AND g.tgtype OPERATOR(pg_catalog.=) 32 AND g.tgqual IS NULL AND g.tgnargs OPERATOR(pg_catalog.=) 0
                AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::"char"[]))
$$;
COMMENT ON FUNCTION aegis.guard_compliant_tables() IS
    'Internal: protected tables (and partitions) whose RLS is enabled and forced and whose audit triggers fire';

CREATE OR REPLACE FUNCTION aegis.guard_forget(dropped oid[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
DELETE FROM aegis.guard_states g WHERE g.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
DELETE FROM aegis.rls_enforced e WHERE e.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
DELETE FROM aegis.protected_tables p WHERE p.relid::oid OPERATOR(pg_catalog.=) ANY (dropped);
$$;
COMMENT ON FUNCTION aegis.guard_forget(oid[]) IS 'Internal: forget dropped protected tables (superuser only)';

CREATE OR REPLACE FUNCTION aegis.guard_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    broken text[];
BEGIN
    PERFORM aegis.guard_protect_partitions();
    -- pg_restore (a superuser's, who could switch the guard off anyway)
    -- rebuilds protected tables step by step: nothing to report, and what
    -- the restored tables are is what the guard compares with afterwards.
    IF pg_catalog.current_setting('application_name') = 'pg_restore'
       AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) THEN
        PERFORM aegis.guard_remember();
        RETURN;
    END IF;
    -- Broken: no longer compliant, or owner, rules, policies or inheritance
    -- children changed, or a partition left, or a column changed type,
    -- compared with the state remembered when pg_aegis accepted it.
    SELECT pg_catalog.array_agg(g.name ORDER BY g.name) INTO broken
    FROM aegis.guard_check() g WHERE g.broken;
    IF broken IS NOT NULL THEN
        PERFORM aegis.guard_report(broken, tg_tag,
            'changing row-level security, audit triggers, rules, policies, inheritance, partitions, ownership or column types of protected table');
        -- Only a superuser gets here (guard_report refused everyone else):
        -- the change is recorded, and is what the guard compares with now.
        PERFORM aegis.guard_remember();
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.guard_ddl_end() IS
    'Internal event trigger: protect new partitions; refuse or record a DDL command that weakened a protected table';

CREATE OR REPLACE FUNCTION aegis.guard_sql_drop() RETURNS event_trigger
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
BEGIN
    newly := NOT EXISTS (SELECT 1 FROM aegis.rls_enforced r WHERE r.relid = tbl);
    IF newly THEN
        prior := aegis.rls_state(tbl);
    END IF;
    PERFORM aegis.switch_rls(tbl, true);
    -- The rows already there are the trail's starting point: recorded by
    -- take_baseline() once the table's columns are classified (before
    -- that, the images would hold PII and secrets in clear).
    INSERT INTO aegis.rls_enforced (relid, prior_state, baseline_pending) VALUES (tbl, prior, true)
    ON CONFLICT (relid) DO NOTHING;
    -- What the DDL guard compares every later command with.
    PERFORM aegis.guard_remember(tbl);
END
$$;
COMMENT ON FUNCTION aegis.enforce_rls(regclass) IS
    'Internal step of protect(): enable and force RLS, revoke PUBLIC (definer rights; admin-only)';

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

-- Gives the table back as protect() found it: row security enabled and
-- forced only if it was, PUBLIC's privileges restored. When that leaves RLS
-- off, every role granted on the table sees every row, so it warns.
-- SECURITY INVOKER; the switch goes through relax_rls().
CREATE OR REPLACE FUNCTION aegis.unprotect(tbl regclass)
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

-- May retention or erasure act on this table? It must be protected (its
-- changes are audited) and the time column must be a timestamp or date.
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
        IF typ NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype, 'date'::regtype) THEN
            RAISE EXCEPTION 'time column "%" of % is of type %, not a timestamp or date', time_column, tbl, typ
                USING ERRCODE = '42804';
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.lifecycle_check_table(regclass, name) IS
    'Internal: may retention or erasure act on this table (protected, time column of a date/time type)?';

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
    FOR h IN
        SELECT l.id, l.only_where, l.placed_by FROM aegis.legal_holds l
        WHERE l.relid = tbl::oid AND l.released_at IS NULL ORDER BY l.id
    LOOP
        hold_ids := hold_ids || h.id;
        IF h.only_where IS NULL THEN
            whole := true;
        ELSE
            predicate := COALESCE(predicate || ' OR ', '') || '('
                || aegis.row_filter(tbl, h.only_where,
                                    COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(h.placed_by)), 10::pg_catalog.oid::pg_catalog.regrole))
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

CREATE OR REPLACE FUNCTION aegis.set_retention(tbl regclass, keep interval, time_column name, only_where text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.check_retention_rule(tbl, keep, time_column, only_where);
    INSERT INTO aegis.retention_rules AS r (relid, keep, time_column, only_where, set_by)
    VALUES (tbl, set_retention.keep, set_retention.time_column, set_retention.only_where, CURRENT_USER)
    ON CONFLICT (relid) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column,
        only_where = EXCLUDED.only_where, set_at = pg_catalog.now(), set_by = EXCLUDED.set_by;
END
$$;
COMMENT ON FUNCTION aegis.set_retention(regclass, interval, name, text) IS
    'Keep rows of a protected table for an interval after time_column (optionally only rows matching only_where) (admin-only)';

CREATE OR REPLACE FUNCTION aegis.place_legal_hold(tbl regclass, only_where text, reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM aegis.check_legal_hold(tbl, only_where, reason);
    INSERT INTO aegis.legal_holds AS h (relid, table_name, only_where, reason, placed_by)
    VALUES (tbl, tbl::text, place_legal_hold.only_where, place_legal_hold.reason, CURRENT_USER)
    RETURNING h.id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION aegis.place_legal_hold(regclass, text, text) IS
    'Preserve rows of a table (those matching only_where, or all when NULL) from retention; returns the hold id (admin-only)';

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
CREATE OR REPLACE FUNCTION aegis.apply_retention(dry_run boolean DEFAULT false)
RETURNS TABLE(table_name text, rows_affected bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    r record;
    batch_size integer := 10000;
    cutoff timestamptz;
    expired text;
    held text;
    hold_ids bigint[];
    n_deleted bigint;
    n_held bigint;
    author regrole;
    owner oid;
    part regclass;
    part_owner oid;
    ids text;
    lo text;
    hi text;
    counts text[];
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT dry_run THEN
        LOCK TABLE aegis.legal_holds IN SHARE MODE;
    END IF;
    FOR r IN
        SELECT rr.* FROM aegis.retention_rules rr ORDER BY rr.relid::text
    LOOP
        table_name := r.relid::text;
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
            expired := pg_catalog.format('%I < $1::pg_catalog.timestamptz', r.time_column);
            IF r.only_where IS NOT NULL THEN
                expired := expired || ' AND (' || aegis.row_filter(r.relid, r.only_where, author) || ')';
            END IF;
            SELECT f.predicate, f.hold_ids INTO held, hold_ids FROM aegis.legal_hold_filter(r.relid) f;
            n_held := 0;
            n_deleted := 0;
            -- Expired rows, as the table's owner (whose code a scan may run):
            -- batches of ctids per partition.
            FOR part, ids, lo, hi IN
                SELECT x[1]::regclass, x[2], x[3], x[4]
                FROM aegis.run_restricted(owner, true, pg_catalog.format(
                    'SELECT b.tableoid::pg_catalog.regclass::pg_catalog.text, '
                    '       pg_catalog.array_agg(b.ctid ORDER BY b.ctid)::pg_catalog.text, '
                    '       pg_catalog.min(b.ctid)::pg_catalog.text, pg_catalog.max(b.ctid)::pg_catalog.text '
                    'FROM (SELECT tableoid, ctid, (pg_catalog.row_number() OVER (PARTITION BY tableoid ORDER BY ctid) - 1) / %s AS batch '
                    '      FROM %s WHERE %s) b '
                    'GROUP BY b.tableoid, b.batch ORDER BY b.tableoid, b.batch', batch_size, r.relid, expired),
                    ARRAY[cutoff::text]) x
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
                    counts := (SELECT x FROM aegis.run_restricted(part_owner, true, pg_catalog.format(
                        'SELECT pg_catalog.count(*) FILTER (WHERE COALESCE(%2$s, false))::pg_catalog.text, '
                        '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%2$s, false))::pg_catalog.text '
                        'FROM ONLY %1$s WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                        '  AND ctid = ANY ($2::pg_catalog.tid[]) AND %3$s', part, COALESCE(held, 'false'), expired),
                        ARRAY[cutoff::text, ids, lo, hi]) x);
                END IF;
                n_held := n_held + counts[1]::bigint;
                IF dry_run THEN
                    n_deleted := n_deleted + counts[2]::bigint;
                ELSE
                    n_deleted := n_deleted + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, true, pg_catalog.format(
                        'DELETE FROM ONLY %s WHERE ctid >= $3::pg_catalog.tid AND ctid <= $4::pg_catalog.tid '
                        '  AND ctid = ANY ($2::pg_catalog.tid[]) AND %s AND NOT COALESCE(%s, false)',
                        part, expired, COALESCE(held, 'false')),
                        ARRAY[cutoff::text, ids, lo, hi]) x);
                END IF;
            END LOOP;
            IF NOT dry_run THEN
                UPDATE aegis.retention_rules rr
                SET last_applied_at = pg_catalog.now(), last_deleted = n_deleted, last_held = n_held
                WHERE rr.relid = r.relid;
                PERFORM aegis.audit_event('RETENTION', r.relid::text, pg_catalog.jsonb_build_object(
                    'keep', r.keep::text, 'time_column', r.time_column, 'cutoff', cutoff,
                    'only_where', r.only_where, 'rows_deleted', n_deleted, 'rows_held', n_held,
                    'legal_holds', pg_catalog.to_jsonb(hold_ids), 'requested_by', SESSION_USER,
                    'selected_as', r.set_by));
            END IF;
            rows_affected := n_deleted;
        EXCEPTION WHEN OTHERS THEN
            -- One broken policy (a dropped column, an author who lost the
            -- right to read the table) must not stop the others: it is
            -- reported and skipped.
            RAISE WARNING 'retention of % skipped: %', r.relid, SQLERRM;
            rows_affected := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.apply_retention(boolean) IS
    'Delete expired rows of every table with a retention policy, except rows under legal hold; dry_run only counts (admin-only)';

-- SECURITY DEFINER: erasure must reach every row of the subject whatever the
-- caller's row-level security, and rewrite audit entries nobody may touch.
-- Every statement on a user table (counting, UPDATE, DELETE) runs as the
-- table's owner in a security-restricted operation exempt from its FORCE
-- ROW LEVEL SECURITY (aegis.run_restricted): triggers, constraints, domains,
-- defaults, generated columns, index expressions, rules, casts and
-- operators of the table run with the owner's rights, never pg_aegis's.
-- What it runs is fixed: tables in aegis.rls_enforced, identifiers through
-- %I/regclass, the subject only as a bound parameter ($1), holds through
-- row_filter(). Empty search_path. EXECUTE: aegis_admin.
--
-- Where the subject is: every protected table's subject_id columns (equal
-- to the identifier) and free_text columns (mentioning it). Rows of the
-- subject are deleted, or anonymized when the table's policy says
-- "erasure": "anonymize" (subject_id and pii columns set to NULL, or to
-- '[ERASED]' when NOT NULL, mentions erased); rows that only mention the
-- subject have the mentions erased. Rows under an active legal hold are not
-- touched but counted; while any are held, the subject's key and audit
-- entries are kept too (they are evidence), and the receipt says the
-- erasure is not complete. Otherwise the subject's key is destroyed
-- (crypto-shredding) and their data in audit entries is replaced by
-- tombstones. The receipt is recorded as an ERASURE entry.
CREATE OR REPLACE FUNCTION aegis.erase_subject(subject text, dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    t record;
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
    any_held boolean := false;
    keys jsonb;
    tombstoned bigint;
    tomb jsonb;
    subject_pseudonym text;
    receipt jsonb;
    owner oid;
    counts text[];
BEGIN
    IF subject IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION 'subject and dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.length(pg_catalog.btrim(subject)) < 3 THEN
        RAISE EXCEPTION 'a subject identifier needs at least 3 characters' USING ERRCODE = '22023',
            HINT = 'Shorter identifiers would match inside unrelated text; pass the full user id, name or email.';
    END IF;
    IF NOT dry_run THEN
        LOCK TABLE aegis.legal_holds IN SHARE MODE;
    END IF;
    FOR t IN
        SELECT p.relid, p.policy FROM aegis.protected_tables p
        JOIN aegis.rls_enforced e ON e.relid = p.relid
        ORDER BY p.relid::text
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
        is_subject := COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I::text = $1', x), ' OR ')
                                FROM pg_catalog.unnest(subj_cols) x), 'false');
        mentioned := COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('aegis.mentions(%I, $1)', x), ' OR ')
                               FROM pg_catalog.unnest(text_cols) x), 'false');
        held := COALESCE((SELECT f.predicate FROM aegis.legal_hold_filter(t.relid) f), 'false');
        SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = t.relid;
        counts := (SELECT x FROM aegis.run_restricted(owner, true, pg_catalog.format(
            'SELECT pg_catalog.count(*) FILTER (WHERE %1$s)::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE (%1$s) AND COALESCE(%3$s, false))::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s))::pg_catalog.text, '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s) AND COALESCE(%3$s, false))::pg_catalog.text '
            'FROM %4$s WHERE (%1$s) OR (%2$s)', is_subject, mentioned, held, t.relid),
            ARRAY[subject]) x);
        n_rows := counts[1]::bigint;
        n_rows_held := counts[2]::bigint;
        n_mentions := counts[3]::bigint;
        n_mentions_held := counts[4]::bigint;
        IF n_rows_held > 0 OR n_mentions_held > 0 THEN
            any_held := true;
        END IF;
        IF NOT dry_run AND n_rows > n_rows_held THEN
            IF mode = 'anonymize' THEN
                SELECT pg_catalog.concat_ws(', ',
                    (SELECT pg_catalog.string_agg(pg_catalog.format(
                        CASE WHEN a.attnotnull THEN '%1$I = CASE WHEN %1$I::text = $1 THEN ''[ERASED]'' ELSE %1$I END'
                             ELSE '%1$I = CASE WHEN %1$I::text = $1 THEN NULL ELSE %1$I END' END, x), ', ')
                     FROM pg_catalog.unnest(subj_cols) x
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = x),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('%I = NULL', x), ', ')
                     FROM pg_catalog.unnest(pii_cols) x
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = x
                     WHERE NOT a.attnotnull),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions(%1$I, $1)', x), ', ')
                     FROM pg_catalog.unnest(text_cols) x))
                INTO sets;
                PERFORM aegis.run_restricted(owner, true, pg_catalog.format(
                    'UPDATE %s SET %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, sets, is_subject, held),
                    ARRAY[subject]);
            ELSE
                PERFORM aegis.run_restricted(owner, true, pg_catalog.format(
                    'DELETE FROM %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, is_subject, held),
                    ARRAY[subject]);
            END IF;
        END IF;
        IF NOT dry_run AND n_mentions > n_mentions_held THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions(%1$I, $1)', x), ', ')
            INTO sets FROM pg_catalog.unnest(text_cols) x;
            PERFORM aegis.run_restricted(owner, true, pg_catalog.format(
                'UPDATE %s SET %s WHERE NOT COALESCE(%s, false) AND (%s) AND NOT COALESCE(%s, false)',
                t.relid, sets, is_subject, mentioned, held),
                ARRAY[subject]);
        END IF;
        IF n_rows > 0 OR n_mentions > 0 THEN
            tables := tables || pg_catalog.jsonb_build_object(t.relid::text, pg_catalog.jsonb_build_object(
                'action', CASE WHEN mode = 'anonymize' THEN 'anonymized' ELSE 'deleted' END,
                'rows', n_rows - n_rows_held, 'rows_held', n_rows_held,
                'mentions_erased', n_mentions - n_mentions_held, 'mentions_held', n_mentions_held));
        END IF;
    END LOOP;

    -- The key and the trail: kept while anything of the subject is held.
    IF any_held THEN
        keys := pg_catalog.jsonb_build_object('done', false,
            'reason', 'rows under legal hold: the key and the audit entries are kept until the holds are released; run erase_subject() again then');
        tombstoned := 0;
    ELSIF dry_run THEN
        keys := pg_catalog.jsonb_build_object('done', false, 'reason', 'dry run');
        tombstoned := (aegis.audit_tombstone(subject, true) ->> 'count')::bigint;
    ELSE
        -- Without a usable master key the key cannot be found, let alone
        -- destroyed: the receipt says so and the erasure is not complete.
        BEGIN
            keys := aegis.forget_subject(subject) || '{"done": true}';
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            keys := pg_catalog.jsonb_build_object('done', false, 'reason', SQLERRM);
        END;
        tomb := aegis.audit_tombstone(subject, false);
        tombstoned := (tomb ->> 'count')::bigint;
    END IF;
    BEGIN
        subject_pseudonym := aegis.pseudonymize(subject, 'pseudonym');
    EXCEPTION WHEN OTHERS THEN
        subject_pseudonym := NULL;
    END;
    receipt := pg_catalog.jsonb_build_object(
        'subject_pseudonym', subject_pseudonym,
        'dry_run', dry_run,
        'complete', NOT any_held AND NOT dry_run AND (keys ->> 'done')::boolean,
        'tables', tables,
        'audit_entries_tombstoned', tombstoned,
        'tombstoned', COALESCE(tomb -> 'tombstoned', '[]'),
        'keys', keys,
        'requested_by', SESSION_USER,
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

-- The trail as its readers may see it (70_audit.sql): row images filtered
-- per reader, raw hashes for superusers, direct SELECT column-wise.
REVOKE SELECT ON aegis.audit_log, aegis.audit_chain FROM aegis_auditor, aegis_admin;
CREATE OR REPLACE VIEW aegis.audit_trail WITH (security_barrier = true) AS
SELECT c.position, l.id, l.xid, l.operation, l.table_name, l.db_user, l.session_user_name,
       l.application_name, l.client_addr, l.backend_pid, l.statement_time,
       aegis.visible_image(l.table_name, l.pk) AS pk,
       aegis.visible_image(l.table_name, l.old_row) AS old_row,
       aegis.visible_image(l.table_name, l.new_row) AS new_row,
       l.detail,
       CASE WHEN s.super THEN pg_catalog.encode(l.entry_hash, 'hex') END AS entry_hash,
       CASE WHEN s.super THEN pg_catalog.encode(c.chain_hash, 'hex') END AS chain_hash,
       c.sealed_at, l.erased_at
FROM aegis.audit_log l LEFT JOIN aegis.audit_chain c ON c.entry_id = l.id AND c.entry_xid = l.xid
CROSS JOIN (SELECT r.rolsuper AS super FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) s;
COMMENT ON VIEW aegis.audit_trail IS
    'Audit entries with their chain position (NULL until sealed); row images as the reader may see them, hashes for superusers';

GRANT SELECT (id, xid, operation, table_name, db_user, session_user_name, application_name, client_addr,
              backend_pid, statement_time, detail, erased_at)
    ON aegis.audit_log TO aegis_auditor, aegis_admin;
GRANT SELECT (position, entry_xid, entry_id, sealed_at) ON aegis.audit_chain TO aegis_auditor, aegis_admin;

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

-- The DDL guard watches rules, policies, inheritance, partitions, owners
-- and column types too (70_audit.sql): its event trigger fires on more tags.
DROP EVENT TRIGGER aegis_guard_end;
CREATE EVENT TRIGGER aegis_guard_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'DROP TRIGGER', 'ALTER TRIGGER', 'CREATE TABLE', 'DROP TABLE',
                 'CREATE RULE', 'DROP RULE', 'ALTER RULE', 'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY',
                 'ALTER TYPE', 'CREATE FUNCTION', 'ALTER FUNCTION', 'DROP FUNCTION')
    EXECUTE FUNCTION aegis.guard_ddl_end();
CREATE EVENT TRIGGER aegis_guard_rewrite ON table_rewrite
    EXECUTE FUNCTION aegis.guard_table_rewrite();

-- ===========================================================================
-- 95_catalog_guard.sql, whole: the catalogs behind the API
-- ===========================================================================

-- Is pg_aegis enforcing row security on this table? (rls_enforced has no
-- grants; this reveals no more than guard_protected_tables().)
CREATE FUNCTION aegis.is_enforced(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT 1 FROM aegis.rls_enforced e WHERE e.relid OPERATOR(pg_catalog.=) tbl)
$$;
COMMENT ON FUNCTION aegis.is_enforced(regclass) IS
    'Internal: does pg_aegis enforce row security on this table (protect() ran)?';

CREATE FUNCTION aegis.catalog_guard() RETURNS trigger
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

    WHEN 'retention_rules' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.relid IS DISTINCT FROM OLD.relid THEN
            RAISE EXCEPTION 'the table of a retention_rules row cannot change' USING ERRCODE = '42501';
        END IF;
        IF (TG_OP = 'INSERT' AND (NEW.last_applied_at, NEW.last_deleted, NEW.last_held) IS DISTINCT FROM (NULL, NULL, NULL))
           OR (TG_OP = 'UPDATE' AND (NEW.last_applied_at, NEW.last_deleted, NEW.last_held)
                                    IS DISTINCT FROM (OLD.last_applied_at, OLD.last_deleted, OLD.last_held)) THEN
            RAISE EXCEPTION 'last_applied_at, last_deleted and last_held are kept by apply_retention()'
                USING ERRCODE = '42501';
        END IF;
        PERFORM aegis.check_retention_rule(NEW.relid, NEW.keep, NEW.time_column, NEW.only_where);
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

CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.column_classes
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.oncall_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.retention_rules
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.legal_holds
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.retention_schedule
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.alert_rules
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.keys
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();

-- The policy catalog is audit evidence like the retention catalogs: who
-- protected, reclassified or unprotected which table, who assigned whom.
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.column_classes
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.oncall_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.keys
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();

-- Grants (99_finalize.sql): new functions are granted to nobody but what
-- follows.
REVOKE EXECUTE ON FUNCTION aegis.switch_rls(regclass, boolean, jsonb), aegis.rls_state(regclass),
    aegis.row_filter(regclass, text, regrole), aegis.run_restricted(oid, boolean, text, text[]),
    aegis.check_policy(regclass, jsonb), aegis.is_enforced(regclass), aegis.catalog_guard(),
    aegis.reads_all_rows(regclass), aegis.visible_image(text, jsonb),
    aegis.guard_state(oid), aegis.guard_protect_partitions(),
    aegis.owner_ddl(oid, text), aegis.role_reads_all_rows(regclass, oid),
    aegis.guard_check(), aegis.guard_remember(regclass), aegis.guard_remembered(), aegis.take_baseline(regclass),
    aegis.guard_table_rewrite(),
    aegis.audit_tombstone(text, boolean), aegis.attest_tombstones(),
    aegis.check_retention_rule(regclass, interval, name, text), aegis.check_legal_hold(regclass, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.row_filter(regclass, text, regrole) TO aegis_admin;
GRANT EXECUTE ON FUNCTION
    aegis.check_policy(regclass, jsonb), aegis.is_enforced(regclass),
    aegis.check_retention_rule(regclass, interval, name, text), aegis.check_legal_hold(regclass, text, text)
TO aegis_admin;

GRANT EXECUTE ON FUNCTION aegis.reads_all_rows(regclass), aegis.role_reads_all_rows(regclass, oid),
    aegis.visible_image(text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.guard_state(oid), aegis.guard_protect_partitions(), aegis.guard_check(),
    aegis.guard_remembered() TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.take_baseline(regclass) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.audit_row(), aegis.audit_truncate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.audit_row(), aegis.audit_truncate() TO PUBLIC;

GRANT USAGE ON SCHEMA aegis TO PUBLIC;

-- Entries erased before 0.6.0: their receipts did not list them, so one
-- TOMBSTONES entry records what they hold now (verify_chain() requires a
-- receipt for every tombstone from now on).
SELECT aegis.attest_tombstones();
-- What the DDL guard compares with, for every table protected before.
SELECT aegis.guard_remember();
