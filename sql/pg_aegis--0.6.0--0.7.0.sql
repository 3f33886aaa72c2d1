-- pg_aegis 0.6.0 -> 0.7.0: what a fourth cold attack review of 0.6.0
-- found. The DDL guard fingerprints protected tables by OID (renaming a
-- schema or a role breaks nothing), follows what their policies and rules
-- use (functions, operators, views), and runs after every DDL command;
-- protect() refuses policies that call code a non-superuser owns;
-- retention and erasure record reads their statements set off (rules);
-- verify_chain() reports rows with transaction ids never assigned or
-- aborted and takes erasure receipts only from the chain or from entries
-- that may still be waiting for it. A fresh 0.7.0 install and 0.6.0
-- updated with this script have the same catalog (pg_test/sql/upgrade.sql).
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.7.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

DROP FUNCTION aegis.run_restricted(oid, boolean, text, text[]);
DROP EVENT TRIGGER aegis_guard_end;

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
-- receipt.
CREATE FUNCTION aegis.entry_may_be_pending(x xid8) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $$
SELECT x >= COALESCE((SELECT s.horizon FROM aegis.audit_seal_state s), '0'::xid8)
   AND CASE WHEN x >= pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()) THEN false
            ELSE COALESCE(pg_catalog.pg_xact_status(x), 'committed') <> 'aborted' END
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
            'changing row-level security, audit triggers, rules, policies, inheritance, partitions, ownership or column types of protected table');
        -- Only a superuser gets here (guard_report refused everyone else):
        -- the change is recorded, and is what the guard compares with now.
        PERFORM aegis.guard_remember();
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.guard_verify(text) IS
    'Internal: refuse (non-superuser) or record (superuser) a command that left protected tables broken';

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

-- What a DDL command must not change on a protected table (or partition)
-- without being refused (non-superusers) or recorded (superusers): who owns
-- it, its rules and their state, its row-level security policies and every
-- function, operator and view they use, its inheritance children (rows
-- seen through it but written around its trigger), its partitions
-- (detached or dropped, their rows leave it unaudited), and the types of
-- its columns. Everything by OID, not by name: renaming a schema, a role or
-- a function changes nothing a table shows. New partitions are fine: they
-- come out protected (guard_protect_partitions). New columns are fine.
CREATE OR REPLACE FUNCTION aegis.guard_state(tbl oid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT pg_catalog.jsonb_build_object(
    'fp', pg_catalog.md5(pg_catalog.concat_ws('|',
        (SELECT c.relowner::text FROM pg_catalog.pg_class c WHERE c.oid = tbl),
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
         WHERE i.inhparent = tbl AND NOT k.relispartition))),
    'parts', (SELECT COALESCE(pg_catalog.jsonb_agg(i.inhrelid::bigint), '[]')
              FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
              WHERE i.inhparent = tbl AND k.relispartition),
    'cols', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a.attnum::text,
                 a.atttypid::text || ':' || a.atttypmod::text || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END), '{}')
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped),
    -- The labels of enum columns: renaming one changes every row that holds
    -- it (adding labels is fine).
    'enums', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a.attnum::text,
                  (SELECT pg_catalog.jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
                   WHERE e.enumtypid = a.atttypid)), '{}')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid)))
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
                FROM aegis.run_restricted(owner, r.relid, true, pg_catalog.format(
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
                    counts := (SELECT x FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
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
                    n_deleted := n_deleted + (SELECT x[1]::bigint FROM aegis.run_restricted(part_owner, part, true, pg_catalog.format(
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
        counts := (SELECT x FROM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
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
                PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
                    'UPDATE %s SET %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, sets, is_subject, held),
                    ARRAY[subject]);
            ELSE
                PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
                    'DELETE FROM %s WHERE (%s) AND NOT COALESCE(%s, false)', t.relid, is_subject, held),
                    ARRAY[subject]);
            END IF;
        END IF;
        IF NOT dry_run AND n_mentions > n_mentions_held THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions(%1$I, $1)', x), ', ')
            INTO sets FROM pg_catalog.unnest(text_cols) x;
            PERFORM aegis.run_restricted(owner, t.relid, true, pg_catalog.format(
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

-- The checks. SECURITY DEFINER: it reads the audit trail, the keyring's
-- metadata and the lifecycle catalogs, and keeps its state, for auditors and
-- the background worker alike; it changes nothing else and takes no input
-- but the flag. Findings are returned; with notify, each is also sent as a
-- NOTIFY aegis_alerts JSON payload, at most once an hour per alert (the
-- worker runs this every aegis.security_check_interval).
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
BEGIN
    IF notify IS NULL THEN
        RAISE EXCEPTION 'notify must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- 1. The chain verifies (from its signed checkpoint, if pruned).
    SELECT * INTO v FROM aegis.verify_chain() c;
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
            INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
            VALUES ('denied_access_counter', pg_catalog.now(), d)
            ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at, last_value = EXCLUDED.last_value;
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
        IF notify AND NOT EXISTS (SELECT 1 FROM aegis.security_alert_state s
                                  WHERE s.alert = f ->> 'alert' AND s.last_at > pg_catalog.now() - interval '1 hour') THEN
            PERFORM pg_catalog.pg_notify('aegis_alerts', (pg_catalog.jsonb_build_object(
                'source', 'pg_aegis', 'kind', 'security', 'database', pg_catalog.current_database(),
                'ts', pg_catalog.now()) || f)::text);
            INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES (f ->> 'alert', pg_catalog.now())
            ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
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

-- Grants (99_finalize.sql).
REVOKE EXECUTE ON FUNCTION aegis.run_restricted(oid, regclass, boolean, text, text[]),
    aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid), aegis.entry_may_be_pending(xid8), aegis.guard_verify(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.guard_verify(text) TO PUBLIC;

GRANT USAGE ON SCHEMA aegis TO PUBLIC;

-- What the DDL guard compares with, in the new (OID) form, for every
-- protected table; then the guard watches every DDL command.
SELECT aegis.guard_remember();
-- Every DDL command: what can change a protected table without naming it
-- (REASSIGN OWNED, CREATE OR REPLACE of a view or function its policy
-- uses, ALTER OPERATOR, ALTER SCHEMA ...) is refused by the command that
-- does it, not found broken by whoever runs DDL next.
CREATE EVENT TRIGGER aegis_guard_end ON ddl_command_end
    EXECUTE FUNCTION aegis.guard_ddl_end();
