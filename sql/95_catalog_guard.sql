-- The catalogs behind the API. aegis_admin writes pg_aegis's catalogs with
-- its own privileges (the API functions are SECURITY INVOKER, so the audit
-- trigger records the real author). Direct INSERT/UPDATE/DELETE by a role
-- that is not a superuser is therefore held to exactly the rules the API
-- follows, by one BEFORE trigger per catalog, and every change is captured
-- by the audit trigger with its real author:
--   * author columns (protected_by, set_by, placed_by, released_by,
--     assigned_by, scheduled_by) and their times are set to the current
--     user and now(), never taken from the statement: nobody can make a
--     filter run with someone else's rights;
--   * what the API validates is validated again (row filters for their
--     author, time columns, policies, column classes, cron schedules);
--   * bookkeeping that pg_aegis keeps (last_applied_at, last_run_at …)
--     changes only with superuser rights (apply_retention() and the
--     background worker), so "retention ran" cannot be faked;
--   * a protected table is forgotten only after its protection is gone
--     (aegis.unprotect()), and a released legal hold stays released.
-- Superusers are not held (they can do anything; restores run as them);
-- their changes are captured all the same.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

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

-- The role profile in force on a protected table (NULL: none).
CREATE FUNCTION aegis.profile_in_force(tbl regclass) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT e.profile FROM aegis.rls_enforced e WHERE e.relid OPERATOR(pg_catalog.=) tbl
$$;
COMMENT ON FUNCTION aegis.profile_in_force(regclass) IS
    'Internal: the role profile in force on a protected table (NULL: none)';

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

CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.column_classes
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.oncall_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
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
-- What the catalog records is what is in force (30_policy.sql).
CREATE TRIGGER aegis_enforce AFTER INSERT OR UPDATE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.protected_tables_enforce();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.column_classes
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.oncall_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.keys
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scopes
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
