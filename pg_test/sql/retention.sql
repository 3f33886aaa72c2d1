-- Control: retention and legal holds (0.5.0). Expired rows of protected
-- tables are deleted by apply_retention(), never rows under an active legal
-- hold; the reference schema's defaults; every error and permission; and the
-- attacks on a function that deletes with the extension owner's rights:
-- filter injection (only_where is one validated expression, never spliced),
-- subqueries and functions that run code, catalog rows written behind the
-- API's back, table triggers and rules that would run with definer rights,
-- and search_path shadowing of the operators the deletion uses.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('ret_mon');
CREATE ROLE ret_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE ret_auditor LOGIN IN ROLE aegis_auditor;
CREATE ROLE ret_dev LOGIN IN ROLE aegis_developer;
CREATE ROLE ret_owner LOGIN;
GRANT CREATE ON SCHEMA public TO ret_owner;
RESET client_min_messages;

-- ------------------------------------------------------------ defaults
-- The requirements' periods for the reference schema.
SELECT table_name, keep, time_column, only_where, active_holds
FROM aegis.retention_policies WHERE table_name::text LIKE 'ret_mon.%' ORDER BY table_name::text;

-- ------------------------------------------------------------ data
INSERT INTO ret_mon.servers (server_id) VALUES ('s1');
INSERT INTO ret_mon.user_access_logs (user_id, accessed_at, resource)
SELECT 'u' || (g % 4), now() - g * interval '1 day', 'r' || g FROM generate_series(1, 200) g;
INSERT INTO ret_mon.error_logs (server_id, ts, error_message, contains_user_data)
SELECT 's1', now() - (3 * g + 1) * interval '1 day', 'e' || g, g % 2 = 0 FROM generate_series(1, 200) g;
INSERT INTO ret_mon.downtime_logs (server_id, start_time, cause, user_id)
SELECT 's1', now() - (10 * g + 5) * interval '1 day', 'c', CASE WHEN g % 3 = 0 THEN 'u1' END FROM generate_series(1, 100) g;

-- ------------------------------------------------------------ permissions
-- Administration is aegis_admin's; auditors read the policies and holds.
SET ROLE ret_auditor;
SELECT count(*) AS policies_visible FROM aegis.retention_policies WHERE table_name::text LIKE 'ret_mon.%';
SELECT count(*) AS holds_visible FROM aegis.legal_holds;
SELECT * FROM aegis.apply_retention(true);
SELECT aegis.set_retention('ret_mon.servers', '1 day', 'created_at');
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', NULL, 'auditor tries');
SELECT aegis.release_legal_hold(1);
SELECT aegis.row_filter('ret_mon.error_logs', 'true', 'ret_auditor');
RESET ROLE;
SET ROLE ret_dev;
SELECT * FROM aegis.apply_retention(true);
SELECT count(*) FROM aegis.retention_policies;
RESET ROLE;

-- ------------------------------------------------------------ set_retention errors
SET ROLE ret_admin;
SELECT aegis.set_retention(NULL, '1 day', 'ts');
SELECT aegis.set_retention('ret_mon.error_logs', '0 days', 'ts');
SELECT aegis.set_retention('ret_mon.error_logs', '-1 day', 'ts');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'no_such_column');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'error_message');
SELECT aegis.set_retention('ret_mon.security_errors', '1 day', 'ts');
SELECT aegis.set_retention('aegis.keys', '1 day', 'created_at');
SELECT aegis.set_retention('pg_catalog.pg_authid', '1 day', 'rolvaliduntil');
-- only_where is one boolean expression over the table's columns.
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', '');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'no_such_column');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'error_message');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'resolved AS r');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'count(*) > 0');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'generate_series(1, 2) > 0');
-- Injection: closing the expression, stacking statements, a second clause:
-- each is refused, nothing is spliced. A comment hides nothing either: the
-- whole text is one expression, and what the deletion uses is PostgreSQL's
-- rendering of it.
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'false) OR (true');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'true; DELETE FROM ret_mon.servers');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'true FROM pg_authid WHERE rolsuper');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'true ORDER BY 1');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'true UNION SELECT false');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', E'resolved --\n OR true');
SELECT only_where, aegis.row_filter(relid, only_where, 'ret_admin') AS used_as
FROM aegis.retention_rules WHERE relid = 'ret_mon.error_logs'::regclass;
-- Reading other data or running code: subqueries, functions outside
-- pg_catalog, volatile functions, settings.
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'EXISTS (SELECT 1 FROM aegis.keys)');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'server_id IN (SELECT server_id FROM ret_mon.servers)');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'aegis.version() IS NOT NULL');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'random() < 0.5');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'pg_sleep(0) IS NULL');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'current_setting(''data_directory'') <> ''''');
-- Stable built-ins that read data or settings would make a dry run's count
-- an oracle for what only superusers may see (pg_authid's password hashes).
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'table_to_xml(''pg_authid'', true, false, '''')::text LIKE ''%SCRAM%''');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'pg_stat_get_backend_activity(1) LIKE ''%PASSWORD%''');
-- Date and time functions are what filters need: fine.
SELECT aegis.row_filter('ret_mon.error_logs', 'date_trunc(''month'', ts) < now() AND ts::date <> current_date', 'ret_admin');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'nextval(''aegis.legal_holds_id_seq'') > 0');
RESET ROLE;
CREATE FUNCTION public.ret_leak(text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
GRANT EXECUTE ON FUNCTION public.ret_leak(text) TO PUBLIC;
SET ROLE ret_admin;
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'public.ret_leak(error_message)');
SELECT aegis.set_retention('ret_mon.error_logs', '1 day', 'ts', 'ret_leak(error_message)');
-- Built-in, non-volatile functions and operators are fine; the stored text is
-- what the admin wrote, the deletion uses PostgreSQL's rendering of it.
SELECT aegis.set_retention('ret_mon.error_logs', '1 year', 'ts',
    'contains_user_data AND lower(error_severity) IN (''error'', ''warning'') AND ts < now()');
SELECT aegis.row_filter('ret_mon.error_logs', 'contains_user_data AND lower(error_severity) IN (''error'', ''warning'') AND ts < now()', 'ret_admin');
SELECT aegis.set_retention('ret_mon.error_logs', '1 year', 'ts', 'contains_user_data');

-- ------------------------------------------------------------ legal holds
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', 'user_id = ''u1''', '') IS NULL AS no_reason;
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', 'user_id = ''u1''', NULL) IS NULL AS no_reason;
SELECT aegis.place_legal_hold(NULL, NULL, 'r');
SELECT aegis.place_legal_hold('ret_mon.security_errors', NULL, 'a view');
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', 'user_id = (SELECT max(user_id) FROM ret_mon.user_access_logs)', 'r');
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', 'true) OR (false', 'r');
SELECT aegis.place_legal_hold('ret_mon.user_access_logs', 'user_id = ''u1''', 'Case 2026-17: access of u1') AS hold_u1 \gset
SELECT aegis.place_legal_hold('ret_mon.downtime_logs', NULL, 'Outage review, whole table') AS hold_downtime \gset
SELECT id = :hold_u1 AS is_u1, table_name, only_where, reason, placed_by, released_at
FROM aegis.legal_holds ORDER BY id;
-- Admins release holds through the API; the history stays.
DELETE FROM aegis.legal_holds;
UPDATE aegis.legal_holds SET reason = 'rewritten';
SELECT table_name, active_holds FROM aegis.retention_policies WHERE table_name::text LIKE 'ret_mon.%' ORDER BY table_name::text;

-- ------------------------------------------------------------ apply
-- Dry run: counts what would go, changes nothing.
SELECT * FROM aegis.apply_retention(dry_run => true) WHERE table_name LIKE 'ret_mon.%';
SELECT (SELECT count(*) FROM ret_mon.user_access_logs) AS access_rows,
       (SELECT count(*) FROM ret_mon.error_logs) AS error_rows;
SELECT * FROM aegis.apply_retention(NULL);
-- The run: expired rows go, held ones stay (u1's, and every downtime row).
SELECT * FROM aegis.apply_retention() WHERE table_name LIKE 'ret_mon.%';
SELECT count(*) AS expired_left_unheld FROM ret_mon.user_access_logs
WHERE accessed_at < now() - interval '90 days' AND user_id <> 'u1';
SELECT count(*) AS held_kept FROM ret_mon.user_access_logs
WHERE accessed_at < now() - interval '90 days' AND user_id = 'u1';
SELECT count(*) FILTER (WHERE ts < now() - interval '1 year' AND contains_user_data) AS expired_with_user_data,
       count(*) FILTER (WHERE ts < now() - interval '1 year' AND NOT contains_user_data) AS old_without_user_data
FROM ret_mon.error_logs;
SELECT count(*) AS downtime_rows FROM ret_mon.downtime_logs;
SELECT table_name, last_deleted, last_held, last_applied_at IS NOT NULL AS applied
FROM aegis.retention_policies WHERE table_name::text LIKE 'ret_mon.%' ORDER BY table_name::text;
-- Every deleted row is a DELETE entry; each run of each table a RETENTION
-- entry naming the holds it respected.
SELECT table_name, count(*) AS delete_entries FROM aegis.audit_log
WHERE operation = 'DELETE' AND table_name LIKE 'ret_mon.%' GROUP BY 1 ORDER BY 1;
SELECT table_name, detail ->> 'rows_deleted' AS deleted, detail ->> 'rows_held' AS held,
       detail -> 'legal_holds' = to_jsonb(ARRAY[:hold_u1]::bigint[]) AS names_hold, detail ->> 'only_where' AS only_where
FROM aegis.audit_log WHERE operation = 'RETENTION' AND table_name = 'ret_mon.user_access_logs';
-- A second run finds nothing more.
SELECT * FROM aegis.apply_retention() WHERE table_name LIKE 'ret_mon.%';

-- Releasing: the held rows expire at the next run.
SELECT aegis.release_legal_hold(:hold_u1);
-- (ids depend on what other files took from the sequence: SQLSTATE only)
\set VERBOSITY sqlstate
SELECT aegis.release_legal_hold(:hold_u1);
\set VERBOSITY terse
SELECT aegis.release_legal_hold(-1);
SELECT * FROM aegis.apply_retention() WHERE table_name = 'ret_mon.user_access_logs';
SELECT count(*) AS expired_left FROM ret_mon.user_access_logs WHERE accessed_at < now() - interval '90 days';
-- The catalog changes are audit entries of the admin who made them.
SELECT table_name, operation, db_user, new_row ->> 'reason' AS reason, new_row ->> 'released_by' AS released_by
FROM aegis.audit_trail WHERE table_name = 'aegis.legal_holds' ORDER BY id;
SELECT operation, db_user, new_row ->> 'only_where' AS only_where FROM aegis.audit_trail
WHERE table_name = 'aegis.retention_rules' AND db_user = 'ret_admin' ORDER BY id;
RESET ROLE;

-- ------------------------------------------------------------ attacks on the definer
-- Catalog rows written behind the API's back: the catalog guard refuses
-- what the API would (a table pg_aegis never protected, an injected
-- filter), and every run checks each row again anyway.
SELECT aegis.create_key('ret_k') IS NOT NULL AS key_created;
UPDATE aegis.keys SET created_at = now() - interval '1 day' WHERE name = 'ret_k';
SET ROLE ret_admin;
INSERT INTO aegis.protected_tables (relid) VALUES ('aegis.keys');
INSERT INTO aegis.retention_rules (relid, keep, time_column) VALUES ('aegis.keys', '1 second', 'created_at');
UPDATE aegis.retention_rules SET only_where = 'false) OR (true' WHERE relid = 'ret_mon.incident_response_logs'::regclass;
SET client_min_messages = warning;
SELECT * FROM aegis.apply_retention() WHERE table_name IN ('aegis.keys', 'ret_mon.incident_response_logs');
RESET client_min_messages;
RESET ROLE;
SELECT count(*) AS keys_left FROM aegis.keys WHERE name = 'ret_k';
DELETE FROM aegis.retention_rules WHERE relid = 'aegis.keys'::regclass;
DELETE FROM aegis.protected_tables WHERE relid = 'aegis.keys'::regclass;
UPDATE aegis.retention_rules SET only_where = NULL WHERE relid = 'ret_mon.incident_response_logs'::regclass;

-- A table owner's trigger (or DELETE rule) runs during the deletion with
-- the owner's own rights, in a security-restricted operation, never with
-- pg_aegis's (attack_hardening.sql covers every other kind of owner code).
-- The admin who sets the policy must be able to read the table: expired
-- rows are selected with its rights.
SET ROLE ret_owner;
CREATE TABLE public.ret_t (id int PRIMARY KEY, at timestamptz NOT NULL);
INSERT INTO ret_t SELECT g, now() - g * interval '1 day' FROM generate_series(1, 10) g;
GRANT SELECT ON ret_t TO aegis_admin;
CREATE POLICY ret_t_admin ON ret_t TO aegis_admin USING (true);
CREATE FUNCTION public.ret_escalate() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN EXECUTE 'ALTER ROLE ret_owner SUPERUSER'; RETURN OLD;
   EXCEPTION WHEN insufficient_privilege THEN RAISE EXCEPTION 'ALTER ROLE ret_owner SUPERUSER refused (%)', SQLSTATE; END $$;
RESET ROLE;
SELECT aegis.protect('public.ret_t');
SET ROLE ret_admin;
SELECT aegis.set_retention('public.ret_t', '5 days', 'at');
RESET ROLE;
SET ROLE ret_owner;
CREATE TRIGGER ret_escalate AFTER DELETE ON ret_t FOR EACH ROW EXECUTE FUNCTION ret_escalate();
RESET ROLE;
SET ROLE ret_admin;
SELECT aegis.set_retention('public.ret_t', '5 days', 'at');
SET client_min_messages = warning;
SELECT * FROM aegis.apply_retention() WHERE table_name = 'public.ret_t';
RESET client_min_messages;
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'ret_owner';
SELECT count(*) AS rows_kept FROM ret_t;
-- A SECURITY DEFINER trigger function runs with its owner's rights (here
-- ret_owner's): the same.
ALTER FUNCTION public.ret_escalate() SECURITY DEFINER;
SET ROLE ret_admin;
SET client_min_messages = warning;
SELECT * FROM aegis.apply_retention() WHERE table_name = 'public.ret_t';
RESET client_min_messages;
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'ret_owner';
SELECT count(*) AS rows_left FROM ret_t;
DROP TRIGGER ret_escalate ON ret_t;
-- A rule cannot even be added to a protected table by its owner (the DDL
-- guard refuses it).
SET ROLE ret_owner;
CREATE RULE ret_rule AS ON DELETE TO ret_t DO ALSO SELECT 1;
RESET ROLE;
SET ROLE ret_admin;
SELECT aegis.set_retention('public.ret_t', '2 days', 'at');
RESET ROLE;

-- search_path: an operator the caller puts first on the path is not what the
-- deletion's comparison uses (the function runs with an empty search_path).
CREATE FUNCTION public.ret_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN EXECUTE 'ALTER ROLE ret_owner SUPERUSER'; RETURN true;
   EXCEPTION WHEN insufficient_privilege THEN RAISE EXCEPTION 'ALTER ROLE ret_owner SUPERUSER refused (%)', SQLSTATE; END $$;
CREATE OPERATOR public.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.ret_lt);
SET ROLE ret_admin;
SET search_path = public, pg_catalog;
SELECT aegis.set_retention('public.ret_t', '2 days', 'at');
SELECT * FROM aegis.apply_retention() WHERE table_name = 'public.ret_t';
RESET search_path;
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'ret_owner';
SELECT count(*) AS rows_left FROM ret_t;

-- ------------------------------------------------------------ scheduling
-- Without pg_cron the background worker runs the schedule (tests/lifecycle.rs
-- shows it running); this cluster's database has no worker, which is said.
SET ROLE ret_auditor;
SELECT aegis.schedule_retention('@daily');
SELECT aegis.unschedule_retention();
SELECT count(*) AS auditor_sees_schedule FROM aegis.retention_schedule;
RESET ROLE;
SET ROLE ret_admin;
SELECT aegis.schedule_retention(NULL);
SELECT aegis.schedule_retention('');
SELECT aegis.schedule_retention('0 3 * *');
SELECT aegis.schedule_retention('61 3 * * *');
SELECT aegis.schedule_retention('0 3 30 2 *');
SELECT aegis.schedule_retention('@sometimes');
SELECT aegis.schedule_retention('0 3 * * *; SELECT 1');
SET client_min_messages = warning;
SELECT aegis.schedule_retention('0 3 * * *') LIKE 'scheduled in the pg_aegis background worker: 0 3 * * *, next run %' AS scheduled;
RESET client_min_messages;
SELECT schedule, via, scheduled_by, next_run_at > now() AND next_run_at <= now() + interval '1 day' AS next_within_a_day,
       extract(hour FROM next_run_at AT TIME ZONE 'UTC') AS utc_hour
FROM aegis.retention_schedule;
SELECT aegis.cron_next('0 3 * * *', '2026-11-22 23:30+00') AT TIME ZONE 'UTC' AS next_0300,
       aegis.cron_next('*/15 9-17 * * mon-fri', '2026-11-21 12:00+00') AT TIME ZONE 'UTC' AS next_workday,
       aegis.cron_next('0 0 29 2 *', '2026-11-22 00:00+00') AT TIME ZONE 'UTC' AS next_leap_day,
       aegis.cron_next('@hourly', 'infinity') AS after_infinity;
SELECT aegis.unschedule_retention(), aegis.unschedule_retention();
SELECT operation, db_user, coalesce(new_row, old_row) ->> 'schedule' AS schedule
FROM aegis.audit_trail WHERE table_name = 'aegis.retention_schedule' ORDER BY id;
RESET ROLE;

-- ------------------------------------------------------------ other shapes
-- date time columns and partitioned tables (rows go from every partition).
CREATE TABLE public.ret_p (id int, day date NOT NULL, kind text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE public.ret_p_low PARTITION OF ret_p FOR VALUES FROM (1) TO (61);
CREATE TABLE public.ret_p_high PARTITION OF ret_p FOR VALUES FROM (61) TO (121);
INSERT INTO ret_p SELECT g, current_date - g * 7, CASE WHEN g % 2 = 0 THEN 'keep' END FROM generate_series(1, 120) g;
SELECT aegis.protect('public.ret_p');
GRANT SELECT ON ret_p TO aegis_admin;
CREATE POLICY ret_p_admin ON ret_p TO aegis_admin USING (true);
SET ROLE ret_admin;
SELECT aegis.set_retention('public.ret_p', '30 days', 'day', 'kind IS NULL');
SELECT * FROM aegis.apply_retention() WHERE table_name = 'public.ret_p';
RESET ROLE;
SELECT tableoid::regclass AS part, count(*) FILTER (WHERE kind IS NULL AND day < current_date - 30) AS expired_left,
       count(*) AS total FROM ret_p GROUP BY 1 ORDER BY 1;
-- remove_retention(); unprotect() forgets the table's policy too.
SET ROLE ret_admin;
SELECT aegis.remove_retention('public.ret_p'), aegis.remove_retention('public.ret_p');
SET client_min_messages = error;
SELECT aegis.unprotect('public.ret_t');
RESET client_min_messages;
SELECT count(*) AS ret_t_policies FROM aegis.retention_rules WHERE relid = 'public.ret_t'::regclass;
RESET ROLE;
ROLLBACK;
