-- Control: hardening (0.6.0). Attack tests, as real logins through SET
-- SESSION AUTHORIZATION (never SET ROLE from a superuser), for the classes
-- found in 0.5.0:
--   A. superuser from aegis_admin through code in a retention or legal-hold
--      filter (domains, casts, operators, functions of the caller's);
--   B. superuser from a table owner through code the owner controls
--      (constraints, domains, defaults, generated columns, index expressions,
--      triggers, rules) when retention or erasure changes the table;
--   C. filters as an oracle for values their author cannot read;
--   D. unprotect() switching off row security the owner had enabled;
--   E. reads that left no entry (row marks, DML that reads, CTAS, cursors);
--   G. pg_aegis's catalogs changed behind the API, unrecorded;
--   H. the trail as a readable side copy of what a role may not read;
--   I. an owner writing around the capture trigger (inheritance children,
--      rules, policies, column types, detached or dropped partitions), and
--      new partitions that could not be created or came out unprotected;
--   J. what a cold attack review of the first 0.6.0 changes found: a
--      capture trigger replaced by one WHEN (false), the keyring changed
--      behind the API (code in partition keys and index expressions:
--      attack_folding.sql);
--   K. what a second cold review found: the DDL guard's state changed by
--      owner code in the middle of a command, capture triggers planted
--      before protect(), an owner's trigger reading FOR KEY SHARE inside an
--      erasure to pass as a foreign-key check;
--   L. what a third cold review found: rows rewritten by ALTER COLUMN ...
--      TYPE ... USING with the same type, an enum label renamed, a policy's
--      function replaced;
--   M. protect()'s baseline and verify_table() over columns of the owner's
--      own types (casts, domains, ranges), policies and triggers;
--   N. what the fourth and fifth cold reviews found: what a policy depends
--      on changed by its owner (inner function, operator, view, table,
--      enum labels, text search configuration, name lookups), REASSIGN
--      OWNED and a schema rename, a partition added during a session, a
--      rule reading during retention, a row beside the chain with an
--      unassigned xid; and the sixth and seventh: chain rows below the
--      verified range, dropped columns, the key, composite attributes,
--      enum arrays, renames, forged guard reports.
-- (Parallel queries after an audited read: parallel_reads.sql.)
-- Each witness records who ran the owner's code and whether that role was a
-- superuser at that moment; every escalation attempt checks rolsuper at the
-- end.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('hard_mon');
CREATE ROLE hard_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE hard_owner LOGIN;
GRANT CREATE ON SCHEMA public TO hard_owner;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO hard_admin', current_database()); END $$;
INSERT INTO hard_mon.servers (server_id) VALUES ('s1');
INSERT INTO hard_mon.user_access_logs (user_id, accessed_at, resource)
SELECT 'u' || g, now() - g * interval '30 days', '/r' || g FROM generate_series(1, 10) g;
INSERT INTO hard_mon.cost_data (server_id, period_start, period_end, service, amount)
SELECT 's1', current_date - g * 40, current_date - g * 40, 'compute', 12000 + g * 100 FROM generate_series(1, 6) g;
RESET client_min_messages;

-- ====================================================================== A
-- The reported attack: a domain in pg_temp whose CHECK makes the caller a
-- superuser when it runs with a superuser's rights.
SET SESSION AUTHORIZATION hard_admin;
CREATE FUNCTION pg_temp.evil(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE hard_admin SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE DOMAIN pg_temp.d AS text CHECK (pg_temp.evil(VALUE));
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at',
                           $f$resource::pg_temp.d IS NOT NULL$f$);
-- The same in a schema the caller owns, through a cast and an operator of
-- its own, and a function of its own.
CREATE SCHEMA hard_evil;
CREATE DOMAIN hard_evil.d AS text CHECK (pg_temp.evil(VALUE));
CREATE TYPE hard_evil.e AS ENUM ('x');
CREATE FUNCTION hard_evil.to_e(text) RETURNS hard_evil.e LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_temp.evil($1); RETURN 'x'; END $$;
CREATE CAST (text AS hard_evil.e) WITH FUNCTION hard_evil.to_e(text);
CREATE FUNCTION hard_evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RETURN pg_temp.evil($1); END $$;
CREATE OPERATOR hard_evil.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = hard_evil.eq);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$resource::hard_evil.d = 'x'$f$);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$resource::hard_evil.e = 'x'$f$);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$resource OPERATOR(hard_evil.===) 'x'$f$);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$hard_evil.eq(resource, 'x')$f$);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$ROW(resource, user_id) IS NOT NULL$f$);
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$ctid IS NOT NULL$f$);
-- Legal holds: the same validation.
SELECT aegis.place_legal_hold('hard_mon.user_access_logs', $f$resource::pg_temp.d IS NOT NULL$f$, 'evil');
SELECT aegis.place_legal_hold('hard_mon.user_access_logs', $f$resource OPERATOR(hard_evil.===) 'x'$f$, 'evil');
-- Behind the API: the catalog guard validates direct writes the same way.
INSERT INTO aegis.retention_rules (relid, keep, time_column, only_where)
VALUES ('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$resource::pg_temp.d IS NOT NULL$f$)
ON CONFLICT (relid) DO UPDATE SET only_where = EXCLUDED.only_where;
INSERT INTO aegis.legal_holds (relid, table_name, only_where, reason)
VALUES ('hard_mon.user_access_logs'::regclass, 'hard_mon.user_access_logs', $f$resource OPERATOR(hard_evil.===) 'x'$f$, 'evil');
RESET SESSION AUTHORIZATION;
-- A filter stored before 0.6.0 (or by a superuser, whom the guard does not
-- hold) is validated again, for its author, at every run: skipped.
UPDATE aegis.retention_rules SET only_where = $f$resource::pg_temp.d IS NOT NULL$f$, set_by = 'hard_admin'
WHERE relid = 'hard_mon.user_access_logs'::regclass;
SET SESSION AUTHORIZATION hard_admin;
SELECT table_name, rows_affected FROM aegis.apply_retention(dry_run => true) WHERE table_name = 'hard_mon.user_access_logs';
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'hard_mon.user_access_logs';
-- A filter of built-in code still works, and deletes as before.
SELECT aegis.set_retention('hard_mon.user_access_logs', '90 days', 'accessed_at', $f$resource LIKE '/r%' AND length(user_id) < 4$f$);
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'hard_mon.user_access_logs';
RESET SESSION AUTHORIZATION;
SELECT rolsuper AS admin_became_superuser FROM pg_roles WHERE rolname = 'hard_admin';
SELECT count(*) AS access_rows_left FROM hard_mon.user_access_logs;

-- ====================================================================== C
-- A filter is evaluated with no more rights than its author has: aegis_admin
-- cannot read cost_data, so it can neither filter on nor count its rows.
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.set_retention('hard_mon.cost_data', '1 day', 'period_start', 'amount > 12000 AND amount < 12400');
SELECT aegis.set_retention('hard_mon.cost_data', '1 day', 'period_start');
SELECT aegis.place_legal_hold('hard_mon.cost_data', 'amount > 12000', 'probe');
-- Written behind the API: the same refusal.
INSERT INTO aegis.retention_rules (relid, keep, time_column, only_where)
VALUES ('hard_mon.cost_data', '1 day', 'period_start', 'amount > 12000 AND amount < 12400');
RESET SESSION AUTHORIZATION;
-- Stored by a superuser with the admin as author, it is selected with the
-- admin's rights at every run: skipped.
INSERT INTO aegis.retention_rules (relid, keep, time_column, only_where, set_by)
VALUES ('hard_mon.cost_data', '1 day', 'period_start', 'amount > 12000 AND amount < 12400', 'hard_admin');
SET SESSION AUTHORIZATION hard_admin;
SELECT table_name, rows_affected FROM aegis.apply_retention(dry_run => true) WHERE table_name = 'hard_mon.cost_data';
RESET SESSION AUTHORIZATION;
DELETE FROM aegis.retention_rules WHERE relid = 'hard_mon.cost_data'::regclass;
SELECT count(*) AS cost_rows_kept FROM hard_mon.cost_data;
-- Row-level security of the author counts too: on an owner's table where
-- the admin sees only tenant a's rows, the admin cannot set a policy at all
-- (it would decide about rows the admin cannot see); nothing is deleted.
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_notes (id int PRIMARY KEY, tenant text, created timestamptz, note text);
INSERT INTO hard_notes SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, now() - interval '400 days', 'n' FROM generate_series(1, 10) g;
ALTER TABLE hard_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON hard_notes TO aegis_admin USING (tenant = 'a');
GRANT SELECT ON hard_notes TO aegis_admin;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_notes');
SELECT count(*) AS admin_sees FROM hard_notes;
SELECT aegis.set_retention('public.hard_notes', '1 year', 'created');
SELECT aegis.set_retention('public.hard_notes', '1 year', 'created', $f$tenant = 'b'$f$);
SELECT table_name, rows_affected FROM aegis.apply_retention(dry_run => true) WHERE table_name = 'public.hard_notes';
SELECT aegis.set_retention('public.hard_notes', '1 year', 'created');
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'public.hard_notes';
SELECT aegis.remove_retention('public.hard_notes');
RESET SESSION AUTHORIZATION;
SELECT tenant, count(*) FROM hard_notes GROUP BY tenant ORDER BY tenant;

-- ====================================================================== B
-- Every kind of code a table owner controls, each leaving a witness row:
-- who ran it, and whether that role was a superuser then. Each also tries
-- to make its owner a superuser.
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_witness (kind text, run_as name, was_superuser boolean);
GRANT INSERT ON hard_witness TO PUBLIC;
CREATE FUNCTION public.hard_witness(kind text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hard_witness
    SELECT kind, current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE hard_owner SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION public.hard_witness_imm(kind text, v text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.hard_witness(kind); RETURN v; END $$;
CREATE FUNCTION public.hard_witness_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM public.hard_witness('trigger ' || TG_OP); RETURN COALESCE(NEW, OLD); END $$;
CREATE DOMAIN public.hard_body AS text CHECK (public.hard_witness('domain'));
CREATE TABLE public.hard_tickets (
    id int PRIMARY KEY,
    created timestamptz NOT NULL,
    user_id text,
    body public.hard_body,
    note text DEFAULT public.hard_witness_imm('default', 'd'),
    body_len int GENERATED ALWAYS AS (length(public.hard_witness_imm('generated', body))) STORED,
    CHECK (public.hard_witness('check'))
);
CREATE INDEX hard_tickets_expr ON hard_tickets (public.hard_witness_imm('index', body));
CREATE INDEX hard_tickets_part ON hard_tickets (id) WHERE public.hard_witness_imm('partial', body) IS NOT NULL;
CREATE TRIGGER hard_before BEFORE UPDATE OR DELETE ON hard_tickets FOR EACH ROW EXECUTE FUNCTION public.hard_witness_trg();
CREATE TRIGGER hard_after AFTER UPDATE OR DELETE ON hard_tickets FOR EACH ROW EXECUTE FUNCTION public.hard_witness_trg();
CREATE RULE hard_rule AS ON DELETE TO hard_tickets DO ALSO SELECT public.hard_witness('rule');
INSERT INTO hard_tickets (id, created, user_id, body) VALUES
    (1, now() - interval '3 years', 'u-7', 'old ticket of u-7'),
    (2, now(), 'u-8', 'u-8 wrote: call u-7 back'),
    (3, now(), 'u-7', 'new ticket of u-7');
CREATE POLICY admin_all ON hard_tickets TO aegis_admin USING (true);
GRANT SELECT ON hard_tickets TO aegis_admin;
TRUNCATE hard_witness;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_tickets', '{"columns": {"body": "free_text", "user_id": "subject_id"}}');
SELECT aegis.set_retention('public.hard_tickets', '2 years', 'created');
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'public.hard_tickets';
SELECT (r -> 'tables' -> 'public.hard_tickets') AS tickets, r ->> 'complete' AS complete
FROM aegis.erase_subject('u-7') r;
RESET SESSION AUTHORIZATION;
SELECT id, user_id, body FROM hard_tickets ORDER BY id;
SELECT kind, run_as, was_superuser, count(*) > 0 AS ran FROM hard_witness
GROUP BY kind, run_as, was_superuser ORDER BY kind;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'hard_owner';
-- The deletions and updates are in the trail, done as the owner on the
-- admin's behalf.
SELECT operation, db_user, session_user_name FROM aegis.audit_log
WHERE table_name = 'public.hard_tickets' AND operation IN ('DELETE', 'UPDATE') ORDER BY id;

-- ====================================================================== D
-- unprotect() gives the table back as protect() found it.
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_tenants (id int, tenant text);
ALTER TABLE hard_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_tenant ON hard_tenants USING (tenant = current_user);
GRANT SELECT, INSERT ON hard_tenants TO PUBLIC;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_tenants');
RESET SESSION AUTHORIZATION;
SELECT relrowsecurity, relforcerowsecurity, has_table_privilege('public', 'hard_tenants', 'SELECT') AS public_select
FROM pg_class WHERE oid = 'hard_tenants'::regclass;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.unprotect('public.hard_tenants');
RESET SESSION AUTHORIZATION;
SELECT relrowsecurity, relforcerowsecurity,
       has_table_privilege('public', 'hard_tenants', 'SELECT') AS public_select,
       has_table_privilege('public', 'hard_tenants', 'INSERT') AS public_insert,
       has_table_privilege('public', 'hard_tenants', 'UPDATE') AS public_update
FROM pg_class WHERE oid = 'hard_tenants'::regclass;

-- ====================================================================== E
-- Every statement that reads an audited table's rows leaves an entry;
-- foreign-key checks (identified by the RI security context, not by their
-- row mark) do not.
INSERT INTO hard_mon.error_logs (server_id, error_message) VALUES ('s1', 'e1'), ('s1', 'e2');
CREATE TABLE hard_evil.refs (log_id bigint REFERENCES hard_mon.error_logs (id));
GRANT INSERT ON hard_evil.refs TO hard_admin;
CREATE TEMP TABLE hard_mark AS SELECT max(id) AS m FROM aegis.audit_log;
GRANT SELECT ON hard_mark TO PUBLIC;
SET SESSION AUTHORIZATION hard_admin;
CREATE TEMP TABLE hard_k (id int);
INSERT INTO hard_k VALUES (1);
SELECT count(*) FROM (SELECT e.id FROM hard_mon.error_logs e, hard_k k FOR KEY SHARE OF k) s;
CREATE TABLE hard_evil.mine (LIKE hard_mon.error_logs);
INSERT INTO hard_evil.mine SELECT * FROM hard_mon.error_logs;
CREATE TABLE hard_evil.copy AS SELECT * FROM hard_mon.error_logs;
UPDATE hard_evil.mine m SET error_message = e.error_message FROM hard_mon.error_logs e WHERE m.id = e.id;
DELETE FROM hard_evil.mine m USING hard_mon.error_logs e WHERE m.id = e.id;
UPDATE hard_mon.error_logs SET resolved = true WHERE error_message = 'e1' RETURNING id > 0 AS returned;
MERGE INTO hard_evil.mine m USING hard_mon.error_logs e ON m.id = e.id
WHEN NOT MATCHED THEN INSERT VALUES (e.*);
DECLARE c CURSOR FOR SELECT error_message FROM hard_mon.error_logs ORDER BY id;
FETCH 1 FROM c;
CLOSE c;
-- A foreign-key check reads error_logs as its owner: not a read by anyone.
INSERT INTO hard_evil.refs SELECT min(id) FROM hard_evil.copy;
RESET SESSION AUTHORIZATION;
SELECT detail ->> 'command' AS command, count(*) AS entries
FROM aegis.audit_log WHERE operation = 'SELECT' AND table_name = 'hard_mon.error_logs'
  AND id > (SELECT m FROM hard_mark)
GROUP BY 1 ORDER BY 1;

-- ====================================================================== G
-- The catalogs behind the API: aegis_admin's direct changes are held to the
-- API's rules and recorded with their real author.
CREATE TEMP TABLE hard_mark2 AS SELECT max(id) AS m FROM aegis.audit_log;
GRANT SELECT ON hard_mark2 TO PUBLIC;
SET SESSION AUTHORIZATION hard_admin;
-- A forged author, so that a filter would run with a superuser's rights:
-- refused (hard_admin cannot read cost_data), or the author is the caller.
INSERT INTO aegis.retention_rules (relid, keep, time_column, only_where, set_by)
VALUES ('hard_mon.cost_data', '1 day', 'period_start', 'amount > 12000', 'postgres');
INSERT INTO aegis.retention_rules (relid, keep, time_column, set_by, set_at)
VALUES ('hard_mon.servers', '1 day', 'created_at', 'postgres', '2000-01-01')
RETURNING set_by, set_at > now() - interval '1 minute' AS set_now;
-- Faking that retention ran.
UPDATE aegis.retention_rules SET last_applied_at = now(), last_deleted = 0
WHERE relid = 'hard_mon.servers'::regclass;
-- Switching read auditing and classification off behind protect()'s back.
DELETE FROM aegis.protected_tables WHERE relid = 'hard_mon.error_logs'::regclass;
UPDATE aegis.protected_tables SET policy = '{"audit_reads": "no"}' WHERE relid = 'hard_mon.error_logs'::regclass;
INSERT INTO aegis.protected_tables (relid) VALUES ('hard_evil.mine');
INSERT INTO aegis.column_classes VALUES ('hard_mon.error_logs', 'no_such_column', 'pii');
INSERT INTO aegis.column_classes VALUES (NULL, NULL, 'pii');
-- What protect() itself could do is allowed, and recorded with its author.
UPDATE aegis.protected_tables SET policy = policy - 'audit_reads', protected_by = 'postgres',
    known_columns = '{}'
WHERE relid = 'hard_mon.error_logs'::regclass
RETURNING protected_by, cardinality(known_columns) > 0 AS real_columns;
DELETE FROM aegis.column_classes WHERE relid = 'hard_mon.error_logs'::regclass AND column_name = 'user_ip';
-- Legal holds: placed as oneself, released once, never edited or deleted.
INSERT INTO aegis.legal_holds (relid, table_name, reason, placed_by)
VALUES ('hard_mon.error_logs'::regclass, 'something else', 'case 1', 'postgres')
RETURNING placed_by, table_name;
INSERT INTO aegis.legal_holds (relid, table_name, reason, released_at, released_by)
VALUES ('hard_mon.error_logs'::regclass, 'x', 'born released', now(), 'hard_admin');
UPDATE aegis.legal_holds SET released_at = now(), released_by = 'postgres' WHERE reason = 'case 1'
RETURNING released_by;
UPDATE aegis.legal_holds SET released_at = NULL, released_by = NULL WHERE reason = 'case 1';
DELETE FROM aegis.legal_holds WHERE reason = 'case 1';
-- On-call assignments that have already ended; the author.
INSERT INTO aegis.oncall_assignments (engineer, server_id, until) VALUES ('hard_owner', 's1', now() - interval '1 day');
INSERT INTO aegis.oncall_assignments (engineer, server_id, assigned_by) VALUES ('hard_owner', 's1', 'postgres')
RETURNING assigned_by;
-- A schedule's next run follows from the schedule; its bookkeeping is the
-- scheduler's.
INSERT INTO aegis.retention_schedule (schedule, via, next_run_at, scheduled_by)
VALUES ('0 3 * * *', 'worker', now(), 'postgres')
RETURNING scheduled_by, next_run_at > now() AS next_is_later;
UPDATE aegis.retention_schedule SET last_run_at = now(), last_status = 'ok';
RESET SESSION AUTHORIZATION;
SELECT operation, table_name, db_user FROM aegis.audit_log
WHERE id > (SELECT m FROM hard_mark2) AND table_name LIKE 'aegis.%'
ORDER BY id;

-- ====================================================================== H
-- The trail shows a role no value it could not read in the table itself:
-- cost amounts and incident summaries are hidden from an auditor (who
-- reads incidents only through the masking view), error_logs images are
-- not; raw hashes are for superusers; the table itself is column-wise.
CREATE ROLE hard_auditor LOGIN IN ROLE aegis_auditor;
INSERT INTO hard_mon.incident_response_logs (server_id, incident_summary, root_cause, status)
VALUES ('s1', 'breach by mallory', 'weak password', 'open');
SET SESSION AUTHORIZATION hard_auditor;
SELECT count(*) AS cost_rows_readable FROM hard_mon.cost_data;
SELECT new_row ->> 'amount' AS amount, new_row ->> 'service' AS service, entry_hash IS NULL AS no_hash
FROM aegis.audit_trail WHERE table_name = 'hard_mon.cost_data' ORDER BY id LIMIT 2;
SELECT new_row ->> 'incident_summary' AS summary, new_row ->> 'root_cause' AS root_cause
FROM aegis.audit_trail WHERE table_name = 'hard_mon.incident_response_logs' AND operation = 'INSERT';
SELECT new_row ->> 'error_message' AS message FROM aegis.audit_trail
WHERE table_name = 'hard_mon.error_logs' AND operation = 'INSERT' ORDER BY id LIMIT 1;
SELECT new_row FROM aegis.audit_log LIMIT 1;
SELECT data_digest FROM aegis.audit_log LIMIT 1;
SELECT chain_hash FROM aegis.audit_chain LIMIT 1;
SELECT count(*) > 0 AS metadata_readable FROM aegis.audit_log WHERE table_name = 'hard_mon.cost_data';
SELECT ok FROM aegis.verify_chain();
RESET SESSION AUTHORIZATION;
-- protect() by an admin who cannot read the owner's table: the baseline is
-- recorded (verify_table needs it), and the admin cannot read it back.
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_payroll (id int PRIMARY KEY, salary int);
INSERT INTO hard_payroll VALUES (1, 91000), (2, 87000);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_payroll');
SELECT operation, new_row FROM aegis.audit_trail WHERE table_name = 'public.hard_payroll' ORDER BY id;
RESET SESSION AUTHORIZATION;
SELECT operation, new_row FROM aegis.audit_trail WHERE table_name = 'public.hard_payroll' ORDER BY id;

-- ====================================================================== I
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_plain (id int PRIMARY KEY, v text);
CREATE TABLE public.hard_parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.hard_parted_2025 PARTITION OF hard_parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.hard_spare (LIKE hard_parted);
CREATE TABLE public.hard_mine (x int);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_plain'), aegis.protect('public.hard_parted');
SET SESSION AUTHORIZATION hard_owner;
-- Writing around the table's trigger, or changing what it shows: refused.
CREATE TABLE public.hard_child () INHERITS (hard_plain);
CREATE RULE hard_reroute AS ON INSERT TO hard_plain DO INSTEAD NOTHING;
CREATE POLICY hard_all ON hard_plain USING (true);
ALTER TABLE hard_plain ALTER COLUMN v TYPE varchar(3);
ALTER TABLE hard_tickets DISABLE RULE hard_rule;
ALTER TABLE hard_parted DETACH PARTITION hard_parted_2025;
DROP TABLE hard_parted_2025;
-- An application migration adding a column is fine.
ALTER TABLE hard_plain ADD COLUMN note text;
-- New partitions, created or attached by the owner, come out protected and
-- audited; the rows an attached table brings become BASELINE entries (the
-- eighth review: they showed with no entry).
CREATE TABLE public.hard_parted_2026 PARTITION OF hard_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO hard_spare VALUES (9, '2027-03-01', 'brought along');
ALTER TABLE hard_parted ATTACH PARTITION hard_spare FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
RESET SESSION AUTHORIZATION;
SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity AS rls_forced,
       (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid
          AND g.tgfoid IN ('aegis.audit_row()'::regprocedure, 'aegis.audit_truncate()'::regprocedure)) AS capture_triggers
FROM pg_class c WHERE c.relname IN ('hard_parted_2025', 'hard_parted_2026', 'hard_spare') ORDER BY 1;
INSERT INTO hard_parted VALUES (1, '2026-06-01', 'a'), (2, '2027-06-01', 'b');
SELECT table_name, operation, pk FROM aegis.audit_log WHERE table_name = 'public.hard_parted' AND operation IN ('INSERT', 'BASELINE') ORDER BY id;
SELECT ok, rows_checked FROM aegis.verify_table('public.hard_parted');
-- The capture trigger attached to a table pg_aegis does not protect writes
-- nothing but an error.
SET SESSION AUTHORIZATION hard_owner;
CREATE TRIGGER forge AFTER INSERT ON hard_mine FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
INSERT INTO hard_mine VALUES (1);
RESET SESSION AUTHORIZATION;
-- A superuser may do it all, recorded; verify_table then sees the rows an
-- inheritance child adds around the trigger.
SET client_min_messages = error;
CREATE TABLE public.hard_child () INHERITS (hard_plain);
RESET client_min_messages;
INSERT INTO hard_child VALUES (7, 'around the trigger');
SELECT ok, problem IS NOT NULL AS reported FROM aegis.verify_table('public.hard_plain');
SELECT detail ->> 'change' AS change, table_name FROM aegis.audit_log
WHERE operation = 'DDL' AND table_name = 'public.hard_plain' ORDER BY id;

-- ====================================================================== J
-- (Code in partition keys and index expressions: attack_folding.sql.)
-- The capture trigger replaced by one that never fires: refused.
SET SESSION AUTHORIZATION hard_owner;
CREATE OR REPLACE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON hard_plain
    FOR EACH ROW WHEN (false) EXECUTE FUNCTION aegis.audit_row();
CREATE OR REPLACE TRIGGER aegis_audit_insert AFTER INSERT ON hard_plain
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_statement();
CREATE OR REPLACE TRIGGER aegis_audit_insert AFTER INSERT ON hard_plain
    REFERENCING NEW TABLE AS aegis_new FOR EACH STATEMENT WHEN (false) EXECUTE FUNCTION aegis.audit_statement();
RESET SESSION AUTHORIZATION;
-- The keyring behind the API: another role's decrypt right, a destroyed
-- signing key, a forged version.
SET SESSION AUTHORIZATION hard_admin;
UPDATE aegis.keys SET decrypt_role = 'hard_owner' WHERE name = 'pseudonym';
UPDATE aegis.keys SET status = 'destroyed', wrapped_key = NULL WHERE name = 'pseudonym';
UPDATE aegis.keys SET status = 'retired' WHERE name = 'pseudonym';
SELECT aegis.rotate_key('pseudonym') > 1 AS rotated;
SELECT aegis.retire_key_version('pseudonym', 1);
RESET SESSION AUTHORIZATION;
SELECT operation, db_user, new_row ->> 'version' AS version, new_row ->> 'status' AS status
FROM aegis.audit_log WHERE table_name = 'aegis.keys' AND db_user = 'hard_admin' ORDER BY id;

-- ====================================================================== K
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_app (id int PRIMARY KEY, v text);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_app');
SET SESSION AUTHORIZATION hard_owner;
-- (0.6.0's first guard kept its state in a session setting, which code the
-- owner runs in the middle of the command could blank.)
CREATE FUNCTION public.hard_blank_guard() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM set_config('aegis_guard.compliant', '', true); RETURN 0; END $$;
ALTER TABLE hard_app ADD COLUMN z int DEFAULT public.hard_blank_guard(),
    DISABLE TRIGGER aegis_audit_insert, NO FORCE ROW LEVEL SECURITY;
-- Capture triggers planted before protect(), firing never.
CREATE TABLE public.hard_planted (id int PRIMARY KEY, v text);
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON hard_planted FOR EACH ROW WHEN (false)
    EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit_truncate AFTER TRUNCATE ON hard_planted FOR EACH STATEMENT WHEN (false)
    EXECUTE FUNCTION aegis.audit_truncate();
CREATE TRIGGER aegis_audit_insert AFTER INSERT ON hard_planted REFERENCING NEW TABLE AS aegis_new
    FOR EACH STATEMENT WHEN (false) EXECUTE FUNCTION aegis.audit_statement();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_planted');
RESET SESSION AUTHORIZATION;
SELECT tgname, tgtype, tgqual IS NULL AS fires_always FROM pg_trigger
WHERE tgrelid = 'hard_planted'::regclass AND NOT tgisinternal ORDER BY 1;
INSERT INTO hard_planted VALUES (1, 'audited');
SET SESSION AUTHORIZATION hard_owner;
ALTER TABLE hard_planted DISABLE TRIGGER aegis_audit_insert;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS planted_entries FROM aegis.audit_log WHERE table_name = 'public.hard_planted' AND operation = 'INSERT';
-- An owner's trigger reading an audited table FOR KEY SHARE while an
-- erasure changes its table: a read like any other.
CREATE TEMP TABLE hard_mark3 AS SELECT max(id) AS m FROM aegis.audit_log;
GRANT SELECT ON hard_mark3 TO PUBLIC;
SET SESSION AUTHORIZATION hard_admin;
CREATE TABLE hard_evil.bait (id int PRIMARY KEY, who text);
INSERT INTO hard_evil.bait VALUES (1, 'victim123');
CREATE TABLE hard_evil.loot (msg text);
CREATE FUNCTION hard_evil.steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hard_evil.loot SELECT resource FROM hard_mon.user_access_logs FOR KEY SHARE;
    RETURN OLD;
END $$;
CREATE TRIGGER steal BEFORE DELETE OR UPDATE ON hard_evil.bait FOR EACH ROW EXECUTE FUNCTION hard_evil.steal();
SELECT aegis.protect('hard_evil.bait', '{"columns": {"who": "subject_id"}}');
SELECT (r -> 'tables' -> 'hard_evil.bait' ->> 'rows') AS erased FROM aegis.erase_subject('victim123') r;
RESET SESSION AUTHORIZATION;
SELECT count(*) > 0 AS loot_taken FROM hard_evil.loot;
SELECT operation, table_name, db_user, detail ->> 'command' AS command FROM aegis.audit_log
WHERE id > (SELECT m FROM hard_mark3) AND operation IN ('SELECT', 'DELETE') ORDER BY id;

-- ====================================================================== L
SET SESSION AUTHORIZATION hard_owner;
CREATE TYPE public.hard_sev AS ENUM ('low', 'high');
CREATE FUNCTION public.hard_pol(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 100';
CREATE TABLE public.hard_money (id int PRIMARY KEY, amount numeric, sev public.hard_sev);
INSERT INTO hard_money VALUES (1, 10, 'low'), (500, 20, 'high');
CREATE POLICY hard_own ON hard_money FOR SELECT TO PUBLIC USING (public.hard_pol(id));
RESET SESSION AUTHORIZATION;
-- A policy calling code its owner could replace is refused (fourth
-- review); once a superuser owns the function, the table is protected.
SELECT aegis.protect('public.hard_money');
ALTER FUNCTION public.hard_pol(int) OWNER TO CURRENT_USER;
SELECT aegis.protect('public.hard_money');
SET SESSION AUTHORIZATION hard_owner;
ALTER TABLE hard_money ALTER COLUMN amount TYPE numeric USING amount * 1000;
ALTER TYPE hard_sev RENAME VALUE 'low' TO 'critical';
CREATE OR REPLACE FUNCTION public.hard_pol(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
-- Adding a label changes no row: fine.
ALTER TYPE hard_sev ADD VALUE 'medium';
RESET SESSION AUTHORIZATION;
SELECT id, amount, sev FROM hard_money ORDER BY id;
SELECT prosrc FROM pg_proc WHERE oid = 'public.hard_pol(int)'::regprocedure;
-- ====================================================================== M
-- protect()'s baseline and verify_table() render every existing row with
-- the extension's rights: columns of the owner's own types (a composite
-- with casts to json, jsonb and text, an array of it, a domain over it, a
-- range, an enum), the owner's policies and triggers must run none of the
-- owner's code then.
SET SESSION AUTHORIZATION hard_owner;
TRUNCATE hard_witness;
CREATE TYPE public.hard_pair AS (a int, b text);
CREATE FUNCTION public.hard_pair_json(public.hard_pair) RETURNS json LANGUAGE plpgsql AS $$
BEGIN PERFORM public.hard_witness('cast to json'); RETURN '{}'; END $$;
CREATE FUNCTION public.hard_pair_jsonb(public.hard_pair) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.hard_witness('cast to jsonb'); RETURN '{}'; END $$;
CREATE FUNCTION public.hard_pair_text(public.hard_pair) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.hard_witness('cast to text'); RETURN ''; END $$;
CREATE CAST (public.hard_pair AS json) WITH FUNCTION public.hard_pair_json(public.hard_pair);
CREATE CAST (public.hard_pair AS jsonb) WITH FUNCTION public.hard_pair_jsonb(public.hard_pair);
CREATE CAST (public.hard_pair AS text) WITH FUNCTION public.hard_pair_text(public.hard_pair);
CREATE DOMAIN public.hard_pair_d AS public.hard_pair CHECK (public.hard_witness('domain over composite'));
CREATE TYPE public.hard_span AS RANGE (subtype = int4);
CREATE TYPE public.hard_sev2 AS ENUM ('a', 'b');
CREATE TABLE public.hard_typed (id int PRIMARY KEY, p public.hard_pair, ps public.hard_pair[],
                                pd public.hard_pair_d, r public.hard_span, s public.hard_sev2);
CREATE POLICY hard_typed_pol ON hard_typed USING (public.hard_witness('policy'));
RESET SESSION AUTHORIZATION;
ALTER FUNCTION public.hard_witness(text) OWNER TO CURRENT_USER;
SET SESSION AUTHORIZATION hard_owner;
CREATE TRIGGER hard_typed_trg BEFORE UPDATE OR DELETE ON hard_typed FOR EACH ROW EXECUTE FUNCTION public.hard_witness_trg();
INSERT INTO hard_typed VALUES (1, ROW(1, 'x'), ARRAY[ROW(2, 'y')::public.hard_pair], ROW(3, 'z'), '[1,5)', 'b');
TRUNCATE hard_witness;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_typed');
SELECT ok, rows_checked FROM aegis.verify_table('public.hard_typed');
RESET SESSION AUTHORIZATION;
SELECT operation, new_row FROM aegis.audit_log WHERE table_name = 'public.hard_typed' ORDER BY id;
SELECT kind, run_as, was_superuser FROM hard_witness ORDER BY 1;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'hard_owner';
-- ====================================================================== N
-- What a fourth cold review found.
-- 1. What a policy depends on, changed by its owner with no DDL on the
--    table: a function its function calls, an operator's function, a view
--    or an unprotected table it reads, an enum's labels, a text search
--    configuration, a privilege or an object looked up by name at run time
--    (the fourth and fifth reviews). protect() refuses such policies.
CREATE ROLE hard_reader LOGIN;
GRANT CREATE ON DATABASE aegis_regress TO hard_owner;
SET SESSION AUTHORIZATION hard_owner;
CREATE SCHEMA hard_tw;
CREATE TABLE hard_tw.acct (id int PRIMARY KEY, owner_name text, secret text);
INSERT INTO hard_tw.acct VALUES (1, 'alice', 's1'), (2, 'bob', 's2'), (3, 'carol', 's3');
CREATE FUNCTION hard_tw.inner_ok(n text) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT n = 'alice' $$;
CREATE FUNCTION hard_tw.pol(n text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN hard_tw.inner_ok(n); END $$;
CREATE FUNCTION hard_tw.eqf(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT $1 = $2 $$;
CREATE OPERATOR hard_tw.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = hard_tw.eqf);
CREATE TABLE hard_tw.allowed (id int);
INSERT INTO hard_tw.allowed VALUES (1);
CREATE VIEW hard_tw.allowed_v AS SELECT id FROM hard_tw.allowed;
CREATE TYPE hard_tw.lbl AS ENUM ('alice', 'bob');
CREATE TEXT SEARCH CONFIGURATION hard_tw.cfg (COPY = pg_catalog.simple);
CREATE TABLE hard_tw.gate (x int);
CREATE TABLE hard_tw.by_fn (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_op (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_view (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_table (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_enum (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_ts (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_priv (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_reg (LIKE hard_tw.acct);
CREATE TABLE hard_tw.by_protected (LIKE hard_tw.acct);
CREATE POLICY own ON hard_tw.by_fn USING (hard_tw.pol(owner_name));
CREATE POLICY own ON hard_tw.by_op USING (owner_name OPERATOR(hard_tw.===) 'alice');
CREATE POLICY own ON hard_tw.by_view USING (id IN (SELECT v.id FROM hard_tw.allowed_v v));
CREATE POLICY own ON hard_tw.by_table USING (id IN (SELECT a.id FROM hard_tw.allowed a));
CREATE POLICY own ON hard_tw.by_enum USING (owner_name = ('alice'::hard_tw.lbl)::text);
CREATE POLICY own ON hard_tw.by_ts USING (NOT (to_tsvector('hard_tw.cfg'::regconfig, secret) @@ 's2'::tsquery));
CREATE POLICY own ON hard_tw.by_priv USING (owner_name = 'alice' OR has_table_privilege('hard_tw.gate', 'UPDATE'));
CREATE POLICY own ON hard_tw.by_reg USING (owner_name = 'alice' OR to_regclass('hard_tw.opensesame') IS NOT NULL);
CREATE TABLE hard_tw.allowed_p (id int PRIMARY KEY);
INSERT INTO hard_tw.allowed_p VALUES (1);
CREATE POLICY all_rows ON hard_tw.allowed_p USING (true) WITH CHECK (true);
CREATE POLICY own ON hard_tw.by_protected USING (id IN (SELECT a.id FROM hard_tw.allowed_p a));
INSERT INTO hard_tw.by_protected SELECT * FROM hard_tw.acct;
GRANT USAGE ON SCHEMA hard_tw TO hard_reader, aegis_admin;
GRANT SELECT ON hard_tw.by_protected, hard_tw.allowed_p TO hard_reader;
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('hard_tw.allowed_p');
-- Policies that depend on what their owner controls: refused, each naming
-- what it depends on.
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('hard_tw.by_fn');
SELECT aegis.protect('hard_tw.by_op');
SELECT aegis.protect('hard_tw.by_view');
SELECT aegis.protect('hard_tw.by_table');
SELECT aegis.protect('hard_tw.by_enum');
SELECT aegis.protect('hard_tw.by_ts');
SELECT aegis.protect('hard_tw.by_priv');
SELECT aegis.protect('hard_tw.by_reg');
-- A policy reading a protected table is accepted: changing what it lets
-- through means writing that table, which is recorded.
SELECT aegis.protect('hard_tw.by_protected');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_owner;
INSERT INTO hard_tw.allowed_p VALUES (2);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION hard_reader;
SELECT count(*) AS reader_sees FROM hard_tw.by_protected;
RESET SESSION AUTHORIZATION;
SELECT operation, pk FROM aegis.audit_log WHERE table_name = 'hard_tw.allowed_p' AND operation = 'INSERT' ORDER BY id;
-- 2. REASSIGN OWNED (no event trigger fires for it) and a schema rename:
--    reassigning the owner of a protected table, or of a function a rule on
--    one calls, is refused; a schema rename changes nothing a table shows,
--    and never leaves other roles' DDL refused.
CREATE ROLE hard_owner2;
GRANT hard_owner2 TO hard_owner;
GRANT CREATE ON SCHEMA public TO hard_owner2;
GRANT CREATE ON DATABASE aegis_regress TO hard_owner2;
SET SESSION AUTHORIZATION hard_owner;
SET ROLE hard_owner2;
CREATE FUNCTION public.hard_rule_fn() RETURNS boolean LANGUAGE sql STABLE AS 'SELECT true';
RESET ROLE;
CREATE TABLE public.hard_ruled (id int PRIMARY KEY);
CREATE TABLE public.hard_ruled_log (id int);
CREATE RULE log_it AS ON INSERT TO hard_ruled WHERE public.hard_rule_fn() DO ALSO INSERT INTO public.hard_ruled_log VALUES (NEW.id);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_ruled');
SET SESSION AUTHORIZATION hard_owner;
REASSIGN OWNED BY hard_owner TO hard_owner2;
REASSIGN OWNED BY hard_owner2 TO hard_owner;
ALTER SCHEMA hard_tw RENAME TO hard_tw2;
RESET SESSION AUTHORIZATION;
SELECT pg_get_userbyid(proowner) AS rule_fn_owner FROM pg_proc WHERE oid = 'public.hard_rule_fn()'::regprocedure;
SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'hard_tw2.by_protected'::regclass;
SET SESSION AUTHORIZATION hard_reader;
CREATE TEMP TABLE hard_reader_scratch (i int);
RESET SESSION AUTHORIZATION;
SELECT count(*) AS broken_tables FROM aegis.guard_check() WHERE broken;
-- A superuser's REASSIGN OWNED is recorded like any other DDL.
SET client_min_messages = error;
REASSIGN OWNED BY hard_owner2 TO hard_owner;
RESET client_min_messages;
SELECT detail ->> 'command' AS command, table_name FROM aegis.audit_log
WHERE operation = 'DDL' AND detail ->> 'command' = 'REASSIGN OWNED' ORDER BY id;
-- 3. A partition added while a session is running: that session's reads
--    of it are recorded (the session's list of protected tables follows).
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_rp (id int, note text) PARTITION BY RANGE (id);
CREATE TABLE public.hard_rp_1 PARTITION OF hard_rp FOR VALUES FROM (0) TO (100);
CREATE POLICY all_rows ON hard_rp USING (true) WITH CHECK (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_rp', '{"audit_reads": true}');
SET SESSION AUTHORIZATION hard_owner;
SELECT count(*) FROM hard_rp;
CREATE TABLE public.hard_rp_2 PARTITION OF hard_rp FOR VALUES FROM (100) TO (200);
INSERT INTO hard_rp VALUES (150, 'in the new partition');
SELECT note FROM hard_rp_2;
RESET SESSION AUTHORIZATION;
SELECT operation, table_name, db_user FROM aegis.audit_log
WHERE table_name = 'public.hard_rp' AND operation = 'SELECT' ORDER BY id;
-- 4. A rule's action shares the text of a retention statement: what it
--    reads is recorded, not passed off as the retention run's own read.
SET SESSION AUTHORIZATION hard_owner;
CREATE TABLE public.hard_logs (id int PRIMARY KEY, at timestamptz NOT NULL, msg text);
INSERT INTO hard_logs VALUES (1, now() - interval '3 years', 'old'), (2, now(), 'new');
CREATE TABLE public.hard_sink (id int, secret text);
CREATE TABLE public.hard_vault (id int PRIMARY KEY, secret text);
INSERT INTO hard_vault VALUES (1, 'top');
CREATE RULE steal AS ON DELETE TO hard_logs DO ALSO INSERT INTO public.hard_sink SELECT id, secret FROM public.hard_vault;
GRANT SELECT ON hard_logs TO aegis_admin;
CREATE POLICY admin_all ON hard_logs TO aegis_admin USING (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_vault', '{"audit_reads": true}');
SET SESSION AUTHORIZATION hard_admin;
SELECT aegis.protect('public.hard_logs');
SELECT aegis.set_retention('public.hard_logs', '1 year', 'at');
CREATE TEMP TABLE hard_mark4 AS SELECT COALESCE(max(id), 0) AS m FROM aegis.audit_log;
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'public.hard_logs';
RESET SESSION AUTHORIZATION;
SELECT count(*) AS taken FROM hard_sink;
SELECT operation, table_name, db_user FROM aegis.audit_log
WHERE id > (SELECT m FROM hard_mark4) AND table_name IN ('public.hard_vault', 'public.hard_logs')
  AND operation IN ('SELECT', 'DELETE') ORDER BY id;
-- 5. A superuser's row beside the chain with a transaction id never
--    assigned (or aborted) is reported, and is never taken as an erasure
--    receipt.
SELECT aegis.seal() >= 0 AS sealed;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
INSERT INTO aegis.audit_log
SELECT (SELECT max(id) + 1 FROM aegis.audit_log), '4611686018427387904'::xid8, 'TOMBSTONES', NULL, db_user,
       session_user_name, application_name, client_addr, backend_pid, statement_time, pk, old_row, new_row,
       '{"tombstoned": []}', data_digest, entry_hash, NULL
FROM aegis.audit_log ORDER BY id LIMIT 1;
ALTER TABLE aegis.audit_log ENABLE TRIGGER USER;
SELECT ok, replace(problem, (SELECT max(id)::text FROM aegis.audit_log), 'N') AS problem FROM aegis.verify_chain();
-- A chain row below the verified range (where pruning leaves none, and
-- no verification walks) is reported: an entry "chained" there would pass
-- as sealed (the sixth review's forged receipt).
ALTER TABLE aegis.audit_chain DROP CONSTRAINT audit_chain_position_check;
ALTER TABLE aegis.audit_chain DISABLE TRIGGER USER;
INSERT INTO aegis.audit_chain (position, entry_xid, entry_id, chain_hash)
SELECT 0, l.xid, l.id, '\x00' FROM aegis.audit_log l
WHERE NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id) ORDER BY l.id LIMIT 1;
ALTER TABLE aegis.audit_chain ENABLE TRIGGER USER;
SELECT ok, problem FROM aegis.verify_chain();
-- 7. Dropping a column (its values go, unrecorded; added again with a
--    default, every row shows a new value) or the primary key (what
--    entries are filed under) is refused to the owner.
SET SESSION AUTHORIZATION hard_owner;
ALTER TABLE hard_app DROP COLUMN v;
ALTER TABLE hard_app DROP CONSTRAINT hard_app_pkey;
ALTER TABLE hard_app ADD COLUMN note text DEFAULT 'added';
RESET SESSION AUTHORIZATION;
SELECT a.attname FROM pg_attribute a WHERE a.attrelid = 'public.hard_app'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;
SELECT conname FROM pg_constraint WHERE conrelid = 'public.hard_app'::regclass AND contype = 'p';
-- 8. The guard's report function is executable by everyone (the guard
--    runs as whoever issues the DDL), but writes a refusal to the server
--    log only for what the guard itself refuses: no forged evidence (no
--    empty or NULL list of tables either: the seventh review).
SET SESSION AUTHORIZATION hard_reader;
SELECT aegis.guard_report(ARRAY['public.hard_plain'], 'ALTER TABLE', 'dropping protected table');
SELECT aegis.guard_report('{}', 'DROP TABLE', 'forged');
SELECT aegis.guard_report(NULL, 'DROP TABLE', 'forged');
RESET SESSION AUTHORIZATION;
-- 9. What else changes the values or the key of every row with no row
--    written (the seventh review): an attribute of a composite type a
--    column holds dropped, a label of an enum an array column holds
--    renamed, the key's collation or deferrability, a column renamed
--    (classifications name columns).
SET SESSION AUTHORIZATION hard_owner;
CREATE TYPE public.hard_ct AS (x int, secret text);
CREATE TYPE public.hard_v2 AS ENUM ('guilty', 'clear');
-- (libc: the relocatable PostgreSQL 16-18 builds the tests also run on have
-- no ICU; any collation other than the column's is a change.)
CREATE COLLATION public.hard_ci (provider = libc, locale = 'C');
CREATE TABLE public.hard_shape (id text PRIMARY KEY, c public.hard_ct, va public.hard_v2[]);
CREATE POLICY all_rows ON hard_shape USING (true) WITH CHECK (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_shape');
SET SESSION AUTHORIZATION hard_owner;
INSERT INTO hard_shape VALUES ('k1', ROW(1, 'orig'), '{guilty}');
ALTER TYPE public.hard_ct DROP ATTRIBUTE secret;
ALTER TYPE public.hard_v2 RENAME VALUE 'guilty' TO 'innocent';
ALTER TABLE hard_shape ALTER COLUMN id TYPE text COLLATE public.hard_ci;
ALTER TABLE hard_shape DROP CONSTRAINT hard_shape_pkey, ADD PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE hard_shape RENAME COLUMN va TO verdicts;
SELECT id, c, va FROM hard_shape;
-- Enums held deeper (the eighth review): through a domain over a domain,
-- a range, a composite attribute.
CREATE TYPE public.hard_e1 AS ENUM ('a', 'b');
CREATE DOMAIN public.hard_d1 AS public.hard_e1;
CREATE DOMAIN public.hard_d2 AS public.hard_d1;
CREATE TYPE public.hard_e2 AS ENUM ('p', 'q');
CREATE TYPE public.hard_e3 AS ENUM ('m', 'n');
CREATE TYPE public.hard_r3 AS RANGE (subtype = public.hard_e3);
CREATE TYPE public.hard_c2 AS (x public.hard_e2, y int);
CREATE TABLE public.hard_deep (id int PRIMARY KEY, dd public.hard_d2, rr public.hard_r3, cc public.hard_c2);
INSERT INTO hard_deep VALUES (1, 'a', '[m,n]', '(p,1)');
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.hard_deep');
SET SESSION AUTHORIZATION hard_owner;
ALTER TYPE public.hard_e1 RENAME VALUE 'a' TO 'zz';
ALTER TYPE public.hard_e3 RENAME VALUE 'm' TO 'zz';
ALTER TYPE public.hard_e2 RENAME VALUE 'p' TO 'zz';
RESET SESSION AUTHORIZATION;
SELECT dd, rr, cc FROM hard_deep;
ROLLBACK;
