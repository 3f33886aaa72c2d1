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

-- Functions and operators a table's policies use that a role other than a
-- superuser owns: their owner could change what the policy lets through
-- without any DDL on the table, so protect() refuses them. (Rules run as
-- the table's owner and are fingerprinted with what they use directly.)
CREATE FUNCTION aegis.policy_untrusted_code(tbl oid) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
SELECT pg_catalog.array_agg(x.what ORDER BY x.what)
FROM (SELECT CASE WHEN u.classid = 'pg_catalog.pg_proc'::regclass
                  THEN 'function ' || u.objid::regprocedure::text
                  ELSE 'operator ' || u.objid::regoperator::text END AS what,
             CASE WHEN u.classid = 'pg_catalog.pg_proc'::regclass
                  THEN (SELECT f.proowner FROM pg_catalog.pg_proc f WHERE f.oid = u.objid)
                  ELSE (SELECT o.oprowner FROM pg_catalog.pg_operator o WHERE o.oid = u.objid) END AS owner
      FROM aegis.policy_code(tbl, false) u
      WHERE u.classid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass)) x
WHERE NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = x.owner), false)
$$;
COMMENT ON FUNCTION aegis.policy_untrusted_code(oid) IS
    'Internal: functions and operators a table''s policies use that a non-superuser owns';

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
        RAISE EXCEPTION 'the row-level security policies of % use code a non-superuser owns: %',
            tbl, pg_catalog.array_to_string(untrusted, ', ') USING ERRCODE = '42501',
            DETAIL = 'Its owner could change what the policies let through without any DDL on the table.',
            HINT = 'Have a superuser own that code (ALTER FUNCTION ... OWNER TO), or use built-in functions.';
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
         FROM aegis.policy_code(tbl, true) u JOIN pg_catalog.pg_proc f ON f.oid = u.objid
         WHERE u.classid = 'pg_catalog.pg_proc'::regclass),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', o.oid, o.oprowner, o.oprcode::oid), ',' ORDER BY o.oid)
         FROM aegis.policy_code(tbl, true) u JOIN pg_catalog.pg_operator o ON o.oid = u.objid
         WHERE u.classid = 'pg_catalog.pg_operator'::regclass),
        (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', v.oid, v.relowner, v.relkind,
                    (SELECT pg_catalog.md5(pg_catalog.string_agg(w.ev_action::text, ',' ORDER BY w.oid))
                     FROM pg_catalog.pg_rewrite w WHERE w.ev_class = v.oid)), ',' ORDER BY v.oid)
         FROM aegis.policy_code(tbl, true) u JOIN pg_catalog.pg_class v ON v.oid = u.objid
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

-- Grants (99_finalize.sql).
REVOKE EXECUTE ON FUNCTION aegis.run_restricted(oid, regclass, boolean, text, text[]),
    aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid), aegis.entry_may_be_pending(xid8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid) TO aegis_admin;

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
