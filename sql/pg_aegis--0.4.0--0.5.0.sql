-- pg_aegis 0.4.0 -> 0.5.0: lifecycle: retention policies, legal holds,
-- apply_retention() and its schedule, pruning the audit trail behind a
-- signed checkpoint, the right to erasure (erase_subject), metric alerts
-- and security alerts (NOTIFY aegis_alerts), the compliance report,
-- protect()'s
-- "erasure" policy key, and the reference schema's retention, erasure and
-- alert defaults. A fresh 0.5.0 install and 0.4.0 updated with this script have
-- the same catalog: pg_test/sql/upgrade.sql compares them object by object.
\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.5.0'" to load this file. \quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- protect() now records the columns a table had (classification drift).
ALTER TABLE aegis.protected_tables ADD COLUMN known_columns name[];
UPDATE aegis.protected_tables p
SET known_columns = ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum);

-- ===========================================================================
-- Row filters
-- ===========================================================================

-- Parses the text as one expression, analyses it as a WHERE clause on the
-- table, refuses subqueries and any function that is not a non-volatile
-- built-in, and returns PostgreSQL's rendering of the analysed expression.
-- Only that rendering is ever placed in SQL. Internal: granted to nobody.
CREATE FUNCTION aegis.row_filter(tbl regclass, expr text) RETURNS text
LANGUAGE c STABLE STRICT
SET search_path = ''
AS 'MODULE_PATHNAME', 'row_filter_wrapper';
COMMENT ON FUNCTION aegis.row_filter(regclass, text) IS
    'Internal: validate a row filter on a table and return its canonical text';

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
    last_held       bigint
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
       r.set_at, r.set_by, r.last_applied_at, r.last_deleted, r.last_held
FROM aegis.retention_rules r;
COMMENT ON VIEW aegis.retention_policies IS
    'Retention policies: period, time column, filter, active legal holds and the last run';

-- ===========================================================================
-- Checks shared by set_retention() and apply_retention()
-- ===========================================================================

-- apply_retention() and erase_subject() change rows with the extension
-- owner's rights, so anything
-- the table runs on DELETE or UPDATE would run with them too. A table whose owner is
-- not a superuser may therefore have no enabled trigger of its own that runs
-- with the caller's rights (pg_aegis's capture triggers, foreign-key triggers
-- and SECURITY DEFINER trigger functions are fine) and no DELETE rule.
-- Foreign-key actions cascade with the referencing table's owner's rights.
-- SECURITY DEFINER so that set_retention() (run with the admin's rights) can
-- read aegis.rls_enforced; it only reads catalogs and raises or returns.
CREATE FUNCTION aegis.lifecycle_check_table(tbl regclass, time_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    owner_is_super boolean;
    offenders text;
    typ regtype;
    tree oid[];
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
    SELECT r.rolsuper INTO owner_is_super
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
    WHERE c.oid = tbl;
    IF COALESCE(owner_is_super, false) THEN
        RETURN;
    END IF;
    -- The table and its partitions (pg_partition_tree is empty for a plain table).
    tree := ARRAY(SELECT tbl::oid UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(tbl) pt);
    SELECT pg_catalog.string_agg(pg_catalog.format('trigger %I on %s', t.tgname, t.tgrelid::regclass), ', '
                                 ORDER BY t.tgname)
    INTO offenders
    FROM pg_catalog.unnest(tree) r(relid)
    JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.relid
    JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
    WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND NOT p.prosecdef
      AND t.tgfoid NOT IN ('aegis.audit_row()'::regprocedure, 'aegis.audit_truncate()'::regprocedure);
    IF offenders IS NULL THEN
        SELECT pg_catalog.string_agg(pg_catalog.format('rule %I on %s', w.rulename, w.ev_class::regclass), ', ')
        INTO offenders
        FROM pg_catalog.unnest(tree) r(relid)
        JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.relid
        WHERE w.ev_type = '4' AND w.ev_enabled <> 'D';
    END IF;
    IF offenders IS NOT NULL THEN
        RAISE EXCEPTION 'pg_aegis cannot delete from or update %: % would run with pg_aegis''s rights', tbl, offenders
            USING ERRCODE = '42501',
                  HINT = 'Make the trigger function SECURITY DEFINER, drop the rule, or have a superuser own the table.';
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.lifecycle_check_table(regclass, name) IS
    'Internal: may retention or erasure change this table (protected, time column, no code running with definer rights)?';

-- The rows of a table under active legal holds, as one predicate over its
-- columns (each hold's filter validated by row_filter(); 'true' when a hold
-- covers the whole table; NULL without holds), and the holds' ids.
CREATE FUNCTION aegis.legal_hold_filter(tbl regclass, OUT predicate text, OUT hold_ids bigint[])
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    h record;
    whole boolean := false;
BEGIN
    hold_ids := '{}';
    FOR h IN
        SELECT l.id, l.only_where FROM aegis.legal_holds l
        WHERE l.relid = tbl::oid AND l.released_at IS NULL ORDER BY l.id
    LOOP
        hold_ids := hold_ids || h.id;
        IF h.only_where IS NULL THEN
            whole := true;
        ELSE
            predicate := COALESCE(predicate || ' OR ', '') || '(' || aegis.row_filter(tbl, h.only_where) || ')';
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

CREATE FUNCTION aegis.set_retention(tbl regclass, keep interval, time_column name, only_where text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
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
    IF only_where IS NOT NULL THEN
        PERFORM aegis.row_filter(tbl, only_where);
    END IF;
    INSERT INTO aegis.retention_rules AS r (relid, keep, time_column, only_where, set_by)
    VALUES (tbl, set_retention.keep, set_retention.time_column, set_retention.only_where, CURRENT_USER)
    ON CONFLICT (relid) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column,
        only_where = EXCLUDED.only_where, set_at = pg_catalog.now(), set_by = EXCLUDED.set_by;
END
$$;
COMMENT ON FUNCTION aegis.set_retention(regclass, interval, name, text) IS
    'Keep rows of a protected table for an interval after time_column (optionally only rows matching only_where) (admin-only)';

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

CREATE FUNCTION aegis.place_legal_hold(tbl regclass, only_where text, reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    id bigint;
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
        PERFORM aegis.row_filter(tbl, only_where);
    END IF;
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

-- SECURITY DEFINER: deleting expired rows must see every row whatever the
-- caller's row-level security, and the scheduler runs it with no user at all.
-- What it may run is fixed: tables recorded in aegis.rls_enforced (written
-- only by enforce_rls, which refuses catalogs and pg_aegis's schema), filters
-- re-validated by row_filter() at every run (built-in, non-volatile functions
-- only, no subqueries), retention_check_table() against triggers and rules
-- that would run with these rights, identifiers through %I/regclass. Empty
-- search_path. EXECUTE: aegis_admin.
--
-- Deletion is batched: one scan collects the expired rows' ctids, and each
-- batch deletes its ctids (a TID range scan over the batch's pages) with the
-- conditions checked again, so
-- a row changed or newly held meanwhile is kept. DELETE takes only ROW
-- EXCLUSIVE locks, which never block concurrent inserts; batches bound the
-- after-trigger queue. Holds cannot change during a run (SHARE lock on
-- aegis.legal_holds: place_legal_hold waits for the run to commit).
CREATE FUNCTION aegis.apply_retention(dry_run boolean DEFAULT false)
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
    k bigint;
    part regclass;
    ids tid[];
    lo tid;
    hi tid;
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
            cutoff := pg_catalog.now() - r.keep;
            expired := pg_catalog.format('%I < $1', r.time_column);
            IF r.only_where IS NOT NULL THEN
                expired := expired || ' AND (' || aegis.row_filter(r.relid, r.only_where) || ')';
            END IF;
            SELECT f.predicate, f.hold_ids INTO held, hold_ids FROM aegis.legal_hold_filter(r.relid) f;
            n_held := 0;
            IF held IS NOT NULL THEN
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE %s AND COALESCE(%s, false)',
                                          r.relid, expired, held)
                    INTO n_held USING cutoff;
                expired := expired || ' AND NOT COALESCE(' || held || ', false)';
            END IF;
            n_deleted := 0;
            IF dry_run THEN
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE %s', r.relid, expired)
                    INTO n_deleted USING cutoff;
            ELSE
                FOR part, ids, lo, hi IN EXECUTE pg_catalog.format(
                    'SELECT b.tableoid::pg_catalog.regclass, pg_catalog.array_agg(b.ctid), pg_catalog.min(b.ctid), pg_catalog.max(b.ctid) '
                    'FROM (SELECT tableoid, ctid, (pg_catalog.row_number() OVER (PARTITION BY tableoid ORDER BY ctid) - 1) / $2 AS batch '
                    '      FROM %s WHERE %s) b '
                    'GROUP BY b.tableoid, b.batch ORDER BY b.tableoid, b.batch', r.relid, expired)
                    USING cutoff, batch_size
                LOOP
                    -- The ctid range makes each batch a TID range scan of
                    -- its own pages (a bare "ctid = ANY" of 10,000 ctids is
                    -- planned as a scan of the whole table).
                    EXECUTE pg_catalog.format(
                        'DELETE FROM ONLY %s WHERE ctid >= $3 AND ctid <= $4 AND ctid = ANY ($2) AND %s', part, expired)
                        USING cutoff, ids, lo, hi;
                    GET DIAGNOSTICS k = ROW_COUNT;
                    n_deleted := n_deleted + k;
                END LOOP;
                UPDATE aegis.retention_rules rr
                SET last_applied_at = pg_catalog.now(), last_deleted = n_deleted, last_held = n_held
                WHERE rr.relid = r.relid;
                PERFORM aegis.audit_event('RETENTION', r.relid::text, pg_catalog.jsonb_build_object(
                    'keep', r.keep::text, 'time_column', r.time_column, 'cutoff', cutoff,
                    'only_where', r.only_where, 'rows_deleted', n_deleted, 'rows_held', n_held,
                    'legal_holds', pg_catalog.to_jsonb(hold_ids), 'requested_by', SESSION_USER));
            END IF;
            rows_affected := n_deleted;
        EXCEPTION WHEN OTHERS THEN
            -- One broken policy (a dropped column, a trigger added since)
            -- must not stop the others: it is reported and skipped.
            RAISE WARNING 'retention of % skipped: %', r.relid, SQLERRM;
            rows_affected := NULL;
        END;
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

-- Internal (granted to nobody): tombstones the subject's data inside audit
-- entries; only erase_subject() calls it.
CREATE FUNCTION aegis.audit_tombstone(subject text, dry_run boolean) RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_tombstone_wrapper';
COMMENT ON FUNCTION aegis.audit_tombstone(text, boolean) IS
    'Internal: replace a subject''s data in audit entries with tombstones (the chain still verifies)';

-- SECURITY DEFINER: erasure must reach every row of the subject whatever the
-- caller's row-level security, and rewrite audit entries nobody may touch.
-- What it runs is fixed: tables in aegis.rls_enforced, identifiers through
-- %I/regclass, the subject only as a bound parameter ($1), holds through
-- row_filter(), lifecycle_check_table() against triggers and rules that
-- would run with these rights. Empty search_path. EXECUTE: aegis_admin.
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
CREATE FUNCTION aegis.erase_subject(subject text, dry_run boolean DEFAULT false)
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
    subject_pseudonym text;
    receipt jsonb;
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
                             AND a.atttypid IN ('text'::regtype, 'character varying'::regtype)),
               pg_catalog.array_agg(c.column_name ORDER BY c.column_name) FILTER (WHERE c.class = 'pii')
        INTO subj_cols, text_cols, pii_cols
        FROM aegis.column_classes c
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.relid AND a.attname = c.column_name
             AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relid = t.relid;
        CONTINUE WHEN subj_cols IS NULL AND text_cols IS NULL;
        PERFORM aegis.lifecycle_check_table(t.relid);
        mode := COALESCE(t.policy ->> 'erasure', 'delete');
        is_subject := COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I::text = $1', x), ' OR ')
                                FROM pg_catalog.unnest(subj_cols) x), 'false');
        mentioned := COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('aegis.mentions(%I, $1)', x), ' OR ')
                               FROM pg_catalog.unnest(text_cols) x), 'false');
        held := COALESCE((SELECT f.predicate FROM aegis.legal_hold_filter(t.relid) f), 'false');
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*) FILTER (WHERE %1$s), '
            '       pg_catalog.count(*) FILTER (WHERE (%1$s) AND COALESCE(%3$s, false)), '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s)), '
            '       pg_catalog.count(*) FILTER (WHERE NOT COALESCE(%1$s, false) AND (%2$s) AND COALESCE(%3$s, false)) '
            'FROM %4$s WHERE (%1$s) OR (%2$s)', is_subject, mentioned, held, t.relid)
            INTO n_rows, n_rows_held, n_mentions, n_mentions_held USING subject;
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
                EXECUTE pg_catalog.format('UPDATE %s SET %s WHERE (%s) AND NOT COALESCE(%s, false)',
                                          t.relid, sets, is_subject, held) USING subject;
            ELSE
                EXECUTE pg_catalog.format('DELETE FROM %s WHERE (%s) AND NOT COALESCE(%s, false)',
                                          t.relid, is_subject, held) USING subject;
            END IF;
        END IF;
        IF NOT dry_run AND n_mentions > n_mentions_held THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = aegis.erase_mentions(%1$I, $1)', x), ', ')
            INTO sets FROM pg_catalog.unnest(text_cols) x;
            EXECUTE pg_catalog.format('UPDATE %s SET %s WHERE NOT COALESCE(%s, false) AND (%s) AND NOT COALESCE(%s, false)',
                                      t.relid, sets, is_subject, mentioned, held) USING subject;
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
        tombstoned := aegis.audit_tombstone(subject, true);
    ELSE
        -- Without a usable master key the key cannot be found, let alone
        -- destroyed: the receipt says so and the erasure is not complete.
        BEGIN
            keys := aegis.forget_subject(subject) || '{"done": true}';
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            keys := pg_catalog.jsonb_build_object('done', false, 'reason', SQLERRM);
        END;
        tombstoned := aegis.audit_tombstone(subject, false);
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

GRANT SELECT ON aegis.retention_rules, aegis.legal_holds, aegis.retention_policies, aegis.audit_checkpoints,
    aegis.retention_schedule TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.retention_schedule TO aegis_admin;
GRANT INSERT, UPDATE, DELETE ON aegis.retention_rules TO aegis_admin;
GRANT INSERT, UPDATE (released_at, released_by) ON aegis.legal_holds TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.legal_holds_id_seq TO aegis_admin;

-- Metric alerts.

CREATE SEQUENCE aegis.alert_rules_id_seq;
CREATE TABLE aegis.alert_rules (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('aegis.alert_rules_id_seq'),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_.:-]{1,64}$'),
    kind        text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'anomaly')),
    metric      name NOT NULL,
    comparison  text CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold   double precision NOT NULL
                CHECK (threshold > '-Infinity'::double precision AND threshold < 'Infinity'::double precision),
    min_samples integer NOT NULL DEFAULT 30 CHECK (min_samples >= 2),
    severity    text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    cooldown    interval NOT NULL DEFAULT '15 minutes' CHECK (cooldown >= interval '0'),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT CURRENT_USER,
    -- threshold rules compare with a constant; anomaly rules alert above
    -- mean + threshold (k) standard deviations of the server's recent values
    CHECK ((kind = 'threshold') = (comparison IS NOT NULL)),
    CHECK (kind = 'threshold' OR threshold > 0)
);
ALTER SEQUENCE aegis.alert_rules_id_seq OWNED BY aegis.alert_rules.id;
COMMENT ON TABLE aegis.alert_rules IS
    'Metric alert rules: threshold (metric comparison threshold) or anomaly (above mean + k stddev), with severity and cooldown';
SELECT pg_catalog.pg_extension_config_dump('aegis.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.alert_rules_id_seq', '');
-- Rule changes are audit entries, and make every backend reload the rules.
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.alert_rules
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER alert_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aegis.alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_plans_changed();

-- When each rule last fired for each server (the cooldown). Runtime state:
-- not dumped.
CREATE TABLE aegis.alert_state (
    rule_id       bigint NOT NULL REFERENCES aegis.alert_rules ON DELETE CASCADE,
    server_id     text NOT NULL,
    last_fired_at timestamptz NOT NULL,
    PRIMARY KEY (rule_id, server_id)
);
COMMENT ON TABLE aegis.alert_state IS 'Internal: when each alert rule last fired for each server (cooldown)';

-- Per (metrics table, metric, server): count, mean and sum of squared
-- deviations of recent values, merged once per insert statement (the old
-- count capped at 1000 samples, so old values fade). Learned state: not
-- dumped (relids do not survive a restore).
CREATE TABLE aegis.metric_baselines (
    relid      oid NOT NULL,
    metric     name NOT NULL,
    server_id  text NOT NULL,
    n          bigint NOT NULL CHECK (n > 0),
    mean       double precision NOT NULL,
    m2         double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (relid, metric, server_id)
);
COMMENT ON TABLE aegis.metric_baselines IS
    'Internal: recent mean and variance of each server''s metrics, for anomaly rules';

-- The trigger, attached by create_monitoring_schema() to server_metrics:
--   CREATE TRIGGER aegis_alerts AFTER INSERT ON monitoring.server_metrics
--     REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT
--     EXECUTE FUNCTION aegis.metric_alerts('monitoring.alerts_history');
-- It reads the rules and writes alerts, state and baselines with the
-- extension owner's rights (an ingest role may insert metrics without being
-- able to write alerts); every value is a bound parameter, every identifier
-- quoted, and the alerts table is resolved with to_regclass().
CREATE FUNCTION aegis.metric_alerts() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'metric_alerts_wrapper';
COMMENT ON FUNCTION aegis.metric_alerts() IS
    'Statement trigger (REFERENCING NEW TABLE) on a metrics table: alert rules -> alerts table + NOTIFY aegis_alerts';

-- ===========================================================================
-- Security alerts: through the same channel as metric alerts
-- ===========================================================================

-- Permission-denied attempts on protected tables since the server started,
-- in every database (shared memory; NULL without preloading).
CREATE FUNCTION aegis.denied_access_count() RETURNS bigint LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'denied_access_count_wrapper';
COMMENT ON FUNCTION aegis.denied_access_count() IS
    'Permission-denied attempts on protected tables since server start, all databases (NULL when not preloaded)';

-- When each security alert was last sent, and the denied-access counter at
-- the last check. Runtime state: not dumped.
CREATE TABLE aegis.security_alert_state (
    alert      text PRIMARY KEY,
    last_at    timestamptz NOT NULL,
    last_value bigint
);
COMMENT ON TABLE aegis.security_alert_state IS
    'Internal: when each security alert was last notified; the denied-access counter at the last check';

-- Shared by security_alerts() and compliance_report() (internal, no grants;
-- both run them with the owner's rights). Entries of ended transactions
-- still outside the chain after `older_than`: only entries at or above the
-- sealing horizon can be waiting (those below are sealed, or reported by
-- verify_chain()).
CREATE FUNCTION aegis.unsealed_entries(older_than interval, OUT entries bigint, OUT oldest timestamptz)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.count(*), pg_catalog.min(l.statement_time)
    FROM aegis.audit_log l
    WHERE l.xid >= COALESCE((SELECT s.horizon FROM aegis.audit_seal_state s), '0'::xid8)
      AND l.statement_time < pg_catalog.now() - older_than
      AND NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id AND c.entry_xid = l.xid)
$$;
COMMENT ON FUNCTION aegis.unsealed_entries(interval) IS
    'Internal: entries left out of the chain for longer than an interval, and the oldest one''s time';

-- Keys (subject keys excepted: they exist to be destroyed, not rotated)
-- whose current version is older than max_age, and how many keys there are.
CREATE FUNCTION aegis.stale_keys(max_age interval, OUT stale text[], OUT total bigint)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.array_agg(k.name ORDER BY k.name) FILTER (WHERE k.created_at < pg_catalog.now() - max_age),
           pg_catalog.count(*)
    FROM aegis.keys k
    WHERE k.status = 'active' AND k.name NOT LIKE 'subject:%'
      AND k.version = (SELECT pg_catalog.max(k2.version) FROM aegis.keys k2
                       WHERE k2.name = k.name AND k2.status = 'active')
$$;
COMMENT ON FUNCTION aegis.stale_keys(interval) IS
    'Internal: keys whose current version is older than max_age, and the number of keys';

-- The checks. SECURITY DEFINER: it reads the audit trail, the keyring's
-- metadata and the lifecycle catalogs, and keeps its state, for auditors and
-- the background worker alike; it changes nothing else and takes no input
-- but the flag. Findings are returned; with notify, each is also sent as a
-- NOTIFY aegis_alerts JSON payload, at most once an hour per alert (the
-- worker runs this every aegis.security_check_interval).
CREATE FUNCTION aegis.security_alerts(notify boolean DEFAULT true)
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
        INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
        VALUES ('denied_access_counter', pg_catalog.now(), d)
        ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at, last_value = EXCLUDED.last_value;
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

GRANT SELECT ON aegis.alert_rules, aegis.alert_state, aegis.metric_baselines, aegis.security_alert_state
    TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.alert_rules TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.alert_rules_id_seq TO aegis_admin;

-- The compliance report.

-- Internal: whether the master key is configured and loads (never the key
-- or the file's path).
CREATE FUNCTION aegis.master_key_status() RETURNS jsonb LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'master_key_status_wrapper';
COMMENT ON FUNCTION aegis.master_key_status() IS
    'Internal: is the master key configured (file or command), and does it load (file owner and mode 600)?';

-- Which requirement each control evidences. Data, so auditors can read the
-- mapping itself (SOC 2 Trust Services Criteria 2017; ISO/IEC 27001:2022
-- Annex A; GDPR articles).
CREATE FUNCTION aegis.compliance_mapping()
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
CREATE FUNCTION aegis.compliance_report()
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
            SELECT * INTO v FROM aegis.verify_chain();
            IF v.ok THEN
                status := 'pass'; detail := pg_catalog.format('%s sealed entries verify', v.entries_checked);
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
                               ELSE 'reads recorded for: ' || COALESCE(pg_catalog.array_to_string(names, ', '), 'no table asks for it') END;
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

CREATE FUNCTION aegis.compliance_report_json()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'generated_at', pg_catalog.now(),
        'database', pg_catalog.current_database(),
        'pg_aegis', aegis.version(),
        'summary', pg_catalog.jsonb_build_object(
            'pass', pg_catalog.count(*) FILTER (WHERE r.status = 'pass'),
            'warn', pg_catalog.count(*) FILTER (WHERE r.status = 'warn'),
            'fail', pg_catalog.count(*) FILTER (WHERE r.status = 'fail')),
        'controls', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'control', r.control, 'status', r.status, 'detail', r.detail, 'remediation', r.remediation,
            'evidence_for', pg_catalog.jsonb_build_object('soc2', m.soc2, 'iso27001', m.iso27001, 'gdpr', m.gdpr))
            ORDER BY r.n))
    FROM aegis.compliance_report() WITH ORDINALITY r(control, status, detail, remediation, evidence_for, n)
    JOIN aegis.compliance_mapping() m ON m.control = r.control
$$;
COMMENT ON FUNCTION aegis.compliance_report_json() IS
    'compliance_report() as one JSON document with a summary and the requirement mapping, for evidence collection';

-- protect(): the "erasure" policy key.
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
END
$$;
COMMENT ON FUNCTION aegis.protect(regclass, jsonb) IS
    'Put a table under pg_aegis protection: enable and force RLS, revoke PUBLIC, record column classes (admin-only)';

-- create_monitoring_schema(): retention and erasure defaults for new
-- monitoring schemas (existing ones: see the README, "Upgrading").
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
                      "user_id": "subject_id"}, "erasure": "anonymize"}');
    PERFORM aegis.protect(pg_catalog.format('%I.error_logs', schema)::regclass,
        '{"columns": {"error_message": "free_text", "user_identifier": "subject_id", "user_ip": "pii"}, "audit_reads": true,
          "erasure": "anonymize"}');
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

REVOKE EXECUTE ON FUNCTION
    aegis.row_filter(regclass, text),
    aegis.lifecycle_check_table(regclass, name),
    aegis.legal_hold_filter(regclass),
    aegis.set_retention(regclass, interval, name, text),
    aegis.remove_retention(regclass),
    aegis.place_legal_hold(regclass, text, text),
    aegis.release_legal_hold(bigint),
    aegis.apply_retention(boolean),
    aegis.prune_audit(timestamptz),
    aegis.cron_next(text, timestamptz),
    aegis.schedule_retention(text),
    aegis.unschedule_retention(),
    aegis.mentions(text, text),
    aegis.erase_mentions(text, text),
    aegis.audit_tombstone(text, boolean),
    aegis.erase_subject(text, boolean),
    aegis.metric_alerts(),
    aegis.denied_access_count(),
    aegis.unsealed_entries(interval),
    aegis.stale_keys(interval),
    aegis.security_alerts(boolean),
    aegis.master_key_status(),
    aegis.compliance_mapping(),
    aegis.compliance_report(),
    aegis.compliance_report_json()
FROM PUBLIC;
-- Lifecycle: retention and legal holds are administered by aegis_admin (the
-- catalogs are written with the admin's own rights, so the audit trigger
-- records who did it); the row-filter validator and the table check are what
-- those functions call. apply_retention() is the definer-rights step.
GRANT EXECUTE ON FUNCTION
    aegis.set_retention(regclass, interval, name, text), aegis.remove_retention(regclass),
    aegis.place_legal_hold(regclass, text, text), aegis.release_legal_hold(bigint),
    aegis.apply_retention(boolean),
    aegis.row_filter(regclass, text), aegis.lifecycle_check_table(regclass, name),
    aegis.schedule_retention(text), aegis.unschedule_retention(), aegis.cron_next(text, timestamptz),
    aegis.legal_hold_filter(regclass), aegis.erase_subject(text, boolean)
TO aegis_admin;
-- Security checks: admins and auditors (the worker runs them as superuser).
GRANT EXECUTE ON FUNCTION aegis.security_alerts(boolean), aegis.denied_access_count()
TO aegis_admin, aegis_auditor;
-- The compliance report: admins and auditors; the mapping is documentation.
GRANT EXECUTE ON FUNCTION aegis.compliance_report(), aegis.compliance_report_json() TO aegis_admin, aegis_auditor;
GRANT EXECUTE ON FUNCTION aegis.compliance_mapping() TO PUBLIC;
-- Finding and erasing mentions reads nothing but the arguments.
GRANT EXECUTE ON FUNCTION aegis.mentions(text, text), aegis.erase_mentions(text, text) TO PUBLIC;

GRANT USAGE ON SCHEMA aegis TO PUBLIC;
