-- Lifecycle: retention policies and legal holds (src/lifecycle.rs validates
-- their row filters), scheduling, pruning the audit trail, and the right to
-- erasure. Rows expire after a table's retention period and are
-- deleted by apply_retention() in batches; rows under an active legal hold
-- are never deleted. Every change to these catalogs is captured by the audit
-- trigger (who set which retention, who placed or released which hold), and
-- every deleted row leaves a DELETE entry plus one RETENTION entry per table
-- and run.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- ===========================================================================
-- Row filters
-- ===========================================================================

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

-- ===========================================================================
-- Catalogs (extension config tables: pg_dump dumps their rows)
-- ===========================================================================

CREATE TABLE aegis.retention_rules (
    relid           regclass PRIMARY KEY REFERENCES aegis.protected_tables ON DELETE CASCADE,
    keep            interval NOT NULL CHECK (keep > interval '0'),
    time_column     name NOT NULL,
    only_where      text CHECK (only_where IS NULL OR pg_catalog.btrim(only_where) <> ''),
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by          name NOT NULL DEFAULT CURRENT_USER,
    last_applied_at timestamptz,
    last_deleted    bigint,
    last_held       bigint,
    last_locked     bigint,
    -- An integer time column: seconds or milliseconds since 1970 (NULL for
    -- timestamp and date columns).
    time_unit       text CHECK (time_unit IN ('seconds', 'milliseconds'))
);
COMMENT ON TABLE aegis.retention_rules IS
    'Retention periods of protected tables (aegis.set_retention); see aegis.retention_policies';

CREATE SEQUENCE aegis.legal_holds_id_seq;
CREATE TABLE aegis.legal_holds (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('aegis.legal_holds_id_seq'),
    relid       oid NOT NULL,
    table_name  text NOT NULL,
    only_where  text CHECK (only_where IS NULL OR pg_catalog.btrim(only_where) <> ''),
    reason      text NOT NULL CHECK (pg_catalog.btrim(reason) <> ''),
    placed_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    placed_by   name NOT NULL DEFAULT CURRENT_USER,
    released_at timestamptz,
    released_by name,
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
ALTER SEQUENCE aegis.legal_holds_id_seq OWNED BY aegis.legal_holds.id;
CREATE INDEX ON aegis.legal_holds (relid) WHERE released_at IS NULL;
COMMENT ON TABLE aegis.legal_holds IS
    'Legal holds: rows matching an active hold (only_where, or the whole table) are never deleted by retention';

SELECT pg_catalog.pg_extension_config_dump('aegis.retention_rules', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.legal_holds', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.legal_holds_id_seq', '');

-- Who set which retention and who placed or released which hold is audit
-- evidence: the same capture trigger as protected tables records every change
-- (including a superuser's direct DML) with the real user.
-- (apply_retention's own bookkeeping, the last_* columns, is left out: each
-- run is recorded as a RETENTION entry instead.)
CREATE TRIGGER aegis_audit AFTER INSERT OR DELETE ON aegis.retention_rules
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit_update AFTER UPDATE ON aegis.retention_rules
    FOR EACH ROW WHEN ((OLD.relid, OLD.keep, OLD.time_column, OLD.only_where, OLD.set_at, OLD.set_by)
                       IS DISTINCT FROM (NEW.relid, NEW.keep, NEW.time_column, NEW.only_where, NEW.set_at, NEW.set_by))
    EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.legal_holds
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();

CREATE VIEW aegis.retention_policies AS
SELECT r.relid AS table_name, r.keep, r.time_column, r.only_where,
       pg_catalog.now() - r.keep AS expires_before,
       (SELECT pg_catalog.count(*) FROM aegis.legal_holds h
        WHERE h.relid = r.relid::oid AND h.released_at IS NULL) AS active_holds,
       r.set_at, r.set_by, r.last_applied_at, r.last_deleted, r.last_held, r.last_locked, r.time_unit
FROM aegis.retention_rules r;
COMMENT ON VIEW aegis.retention_policies IS
    'Retention policies: period, time column, filter, active legal holds and the last run';

-- ===========================================================================
-- Checks shared by set_retention() and apply_retention()
-- ===========================================================================

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
CREATE FUNCTION aegis.lifecycle_check_table(tbl regclass, time_column name DEFAULT NULL)
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
CREATE FUNCTION aegis.legal_hold_filter(tbl regclass, OUT predicate text, OUT hold_ids bigint[])
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

-- ===========================================================================
-- Retention and legal hold administration (aegis_admin). SECURITY INVOKER:
-- aegis_admin writes the catalogs with its own privileges, so the audit
-- trigger records the real caller.
-- ===========================================================================

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

CREATE FUNCTION aegis.remove_retention(tbl regclass)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    WITH d AS (DELETE FROM aegis.retention_rules r WHERE r.relid = tbl RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION aegis.remove_retention(regclass) IS
    'Stop expiring rows of a table; true if it had a retention policy (admin-only)';

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

CREATE FUNCTION aegis.place_legal_hold(tbl regclass, only_where text, reason text)
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

CREATE FUNCTION aegis.release_legal_hold(id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    h record;
BEGIN
    SELECT * INTO h FROM aegis.legal_holds l WHERE l.id = release_legal_hold.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'legal hold % does not exist', id USING ERRCODE = '42704';
    END IF;
    IF h.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'legal hold % was already released by %', id, h.released_by
            USING ERRCODE = '55000', DETAIL = pg_catalog.format('Released at %s.', h.released_at);
    END IF;
    UPDATE aegis.legal_holds l SET released_at = pg_catalog.now(), released_by = CURRENT_USER
    WHERE l.id = release_legal_hold.id;
END
$$;
COMMENT ON FUNCTION aegis.release_legal_hold(bigint) IS
    'Release a legal hold: its rows expire again under their table''s retention (admin-only)';

-- ===========================================================================
-- apply_retention()
-- ===========================================================================

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

-- ===========================================================================
-- Pruning the audit trail
-- ===========================================================================

-- Where pruning cut the chain: the chain hash at the last removed position,
-- signed like chain_head() with the audit_head key. verify_chain() starts
-- from the newest checkpoint, so what remains stays verifiable and a forged
-- checkpoint (no master key) does not verify. Append-only like the chain.
CREATE TABLE aegis.audit_checkpoints (
    position       bigint PRIMARY KEY CHECK (position > 0),
    chain_hash     bytea NOT NULL CHECK (pg_catalog.length(chain_hash) = 32),
    time_us        bigint NOT NULL,
    signature      bytea NOT NULL CHECK (pg_catalog.length(signature) = 32),
    pruned_before  timestamptz NOT NULL,
    entries_pruned bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aegis.audit_checkpoints IS
    'Signed chain checkpoints left by prune_audit(): verification starts after the newest one';
SELECT pg_catalog.pg_extension_config_dump('aegis.audit_checkpoints', '');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON aegis.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON aegis.audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_append_only();
ALTER TABLE aegis.audit_checkpoints ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE aegis.audit_checkpoints ENABLE ALWAYS TRIGGER append_only_truncate;

-- Removes the sealed entries older than the cutoff (a prefix of the chain,
-- never its newest entry), leaves a signed checkpoint, re-baselines the
-- protected tables that lost entries (so verify_table() still has a starting
-- point for every row) and records a PRUNE entry with the receipt. Granted
-- to nobody: removing evidence is for superusers, or whom they grant it to.
CREATE FUNCTION aegis.prune_audit(before timestamptz) RETURNS jsonb
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'prune_audit_wrapper';
COMMENT ON FUNCTION aegis.prune_audit(timestamptz) IS
    'Remove sealed audit entries older than a time behind a signed checkpoint; returns the receipt (superuser)';

-- ===========================================================================
-- Scheduling
-- ===========================================================================

-- The first time after `after` (UTC) a five-field cron schedule fires.
CREATE FUNCTION aegis.cron_next(schedule text, after timestamptz) RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cron_next_wrapper';
COMMENT ON FUNCTION aegis.cron_next(text, timestamptz) IS
    'Next time (UTC) a cron schedule (minute hour day month weekday, or @daily etc.) fires after a time';

-- Where retention is scheduled: pg_cron's job, or the background worker's
-- next run. One row per database.
CREATE TABLE aegis.retention_schedule (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    schedule     text NOT NULL,
    via          text NOT NULL CHECK (via IN ('pg_cron', 'worker')),
    cron_job_id  bigint,
    scheduled_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    scheduled_by name NOT NULL DEFAULT CURRENT_USER,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_status  text,
    CHECK ((via = 'worker') = (next_run_at IS NOT NULL))
);
COMMENT ON TABLE aegis.retention_schedule IS
    'When apply_retention() runs by itself (aegis.schedule_retention): through pg_cron or the background worker';
SELECT pg_catalog.pg_extension_config_dump('aegis.retention_schedule', '');
CREATE TRIGGER aegis_audit AFTER INSERT OR DELETE ON aegis.retention_schedule
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit_update AFTER UPDATE ON aegis.retention_schedule
    FOR EACH ROW WHEN ((OLD.schedule, OLD.via, OLD.cron_job_id, OLD.scheduled_at, OLD.scheduled_by)
                       IS DISTINCT FROM (NEW.schedule, NEW.via, NEW.cron_job_id, NEW.scheduled_at, NEW.scheduled_by))
    EXECUTE FUNCTION aegis.audit_row();

-- SECURITY INVOKER (aegis_admin): with pg_cron installed in this database
-- the job is pg_cron's, owned by and run as the caller (who needs USAGE on
-- schema cron); otherwise the background worker of this database runs it
-- (as the bootstrap superuser; apply_retention() is the same either way).
CREATE FUNCTION aegis.schedule_retention(cron text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    job bigint;
    next timestamptz;
    workers text;
BEGIN
    IF cron IS NULL OR pg_catalog.btrim(cron) = '' THEN
        RAISE EXCEPTION 'a schedule is required' USING ERRCODE = '22004',
            HINT = 'For example ''0 3 * * *'' (daily at 03:00 UTC) or ''@hourly''.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
            USING 'aegis_retention', cron, 'SELECT aegis.apply_retention()';
        INSERT INTO aegis.retention_schedule AS s (schedule, via, cron_job_id, scheduled_by, next_run_at)
        VALUES (cron, 'pg_cron', job, CURRENT_USER, NULL)
        ON CONFLICT (singleton) DO UPDATE SET schedule = EXCLUDED.schedule, via = EXCLUDED.via,
            cron_job_id = EXCLUDED.cron_job_id, scheduled_at = pg_catalog.now(),
            scheduled_by = EXCLUDED.scheduled_by, next_run_at = NULL;
        RETURN pg_catalog.format('scheduled with pg_cron (job %s, "aegis_retention"): %s', job, cron);
    END IF;
    next := aegis.cron_next(cron, pg_catalog.now());
    INSERT INTO aegis.retention_schedule AS s (schedule, via, cron_job_id, scheduled_by, next_run_at)
    VALUES (cron, 'worker', NULL, CURRENT_USER, next)
    ON CONFLICT (singleton) DO UPDATE SET schedule = EXCLUDED.schedule, via = EXCLUDED.via,
        cron_job_id = NULL, scheduled_at = pg_catalog.now(),
        scheduled_by = EXCLUDED.scheduled_by, next_run_at = EXCLUDED.next_run_at;
    workers := pg_catalog.current_setting('aegis.seal_databases', true);
    IF workers IS NULL OR NOT pg_catalog.current_database() = ANY (
            SELECT pg_catalog.btrim(d) FROM pg_catalog.unnest(pg_catalog.string_to_array(workers, ',')) d) THEN
        RAISE WARNING 'no pg_aegis background worker runs in database "%": the schedule is stored but does not fire',
            pg_catalog.current_database()
            USING HINT = 'Add the database to aegis.seal_databases (with shared_preload_libraries = ''pg_aegis'') and restart, or install pg_cron.';
    END IF;
    RETURN pg_catalog.format('scheduled in the pg_aegis background worker: %s, next run %s', cron,
        pg_catalog.to_char(next AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'));
END
$$;
COMMENT ON FUNCTION aegis.schedule_retention(text) IS
    'Run apply_retention() on a cron schedule, through pg_cron when installed, else the background worker (admin-only)';

CREATE FUNCTION aegis.unschedule_retention()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    s record;
BEGIN
    SELECT * INTO s FROM aegis.retention_schedule FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF s.via = 'pg_cron' AND EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING s.cron_job_id;
    END IF;
    DELETE FROM aegis.retention_schedule;
    RETURN true;
END
$$;
COMMENT ON FUNCTION aegis.unschedule_retention() IS
    'Stop running retention on a schedule; true if it was scheduled (admin-only)';

-- ===========================================================================
-- Right to erasure
-- ===========================================================================

CREATE FUNCTION aegis.mentions(text text, identifier text) RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'mentions_wrapper';
COMMENT ON FUNCTION aegis.mentions(text, text) IS
    'Does the text mention the identifier (case-insensitive, not inside a longer word)?';
CREATE FUNCTION aegis.erase_mentions(text text, identifier text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'erase_mentions_wrapper';
COMMENT ON FUNCTION aegis.erase_mentions(text, text) IS
    'The text with every mention of the identifier replaced by [ERASED]';

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
CREATE FUNCTION aegis.erase_subject(subject text, dry_run boolean DEFAULT false)
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

GRANT SELECT ON aegis.retention_rules, aegis.legal_holds, aegis.retention_policies, aegis.audit_checkpoints,
    aegis.retention_schedule TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.retention_schedule TO aegis_admin;
GRANT INSERT, UPDATE, DELETE ON aegis.retention_rules TO aegis_admin;
GRANT INSERT, UPDATE (released_at, released_by) ON aegis.legal_holds TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.legal_holds_id_seq TO aegis_admin;
