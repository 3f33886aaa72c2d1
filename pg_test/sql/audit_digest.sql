-- Control: digest-mode audit capture ("audit_inserts": "digest"). A
-- Zabbix-shaped history table owned by its application login: INSERT
-- statements become one entry each (row count and content digest, no row
-- image), UPDATE and DELETE keep their row images, protect() of a table
-- with rows writes one BASELINE entry, and verify_table() finds every row
-- inserted, changed or deleted behind the trail (triggers disabled by a
-- superuser, session_replication_role = replica) and says where (bucket
-- range and partition). verify_chain() finds a forged or removed digest
-- entry. Attack tests as real logins (SET SESSION AUTHORIZATION).
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
CREATE ROLE dg_zabbix LOGIN;
CREATE ROLE dg_admin LOGIN IN ROLE aegis_admin;
CREATE SCHEMA dg AUTHORIZATION dg_zabbix;
SET SESSION AUTHORIZATION dg_zabbix;
-- history as Zabbix 6.0 declares it (itemid, clock, value, ns), and a
-- partitioned copy by clock (one partition per day).
CREATE TABLE dg.history (
    itemid bigint NOT NULL,
    clock  integer NOT NULL DEFAULT 0,
    value  double precision NOT NULL DEFAULT 0.0000,
    ns     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (itemid, clock, ns)
);
CREATE TABLE dg.history_p (LIKE dg.history INCLUDING ALL) PARTITION BY RANGE (clock);
CREATE TABLE dg.history_p_d1 PARTITION OF dg.history_p FOR VALUES FROM (1764547200) TO (1764633600);
CREATE TABLE dg.history_p_d2 PARTITION OF dg.history_p FOR VALUES FROM (1764633600) TO (1764720000);
INSERT INTO dg.history SELECT 10000 + g % 20, 1764547200 + g * 30, g / 7.0, g FROM generate_series(1, 2000) g;
INSERT INTO dg.history_p SELECT * FROM dg.history;
-- protect() forces row security on the owner too; until application roles
-- (issue 18) it needs a policy of its own to keep working.
CREATE POLICY dg_app ON dg.history TO dg_zabbix USING (true) WITH CHECK (true);
CREATE POLICY dg_app ON dg.history_p TO dg_zabbix USING (true) WITH CHECK (true);
GRANT USAGE ON SCHEMA dg TO dg_admin;
RESET SESSION AUTHORIZATION;

-- 1. Policy keys are checked.
SET SESSION AUTHORIZATION dg_admin;
SAVEPOINT s;
SELECT aegis.protect('dg.history', '{"audit_inserts": "digests"}');
ROLLBACK TO s;
SELECT aegis.protect('dg.history', '{"audit_images": "none"}');
ROLLBACK TO s;
SELECT aegis.protect('dg.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "value"}}');
ROLLBACK TO s;
SELECT aegis.protect('dg.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 0}}');
ROLLBACK TO s;
SELECT aegis.protect('dg.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 1.5}}');
ROLLBACK TO s;
SELECT aegis.protect('dg.history', '{"audit_inserts": "digest", "digest_buckets": {"col": "clock"}}');
ROLLBACK TO s;

-- 2. protect() of a table with 2,000 rows: one BASELINE entry, the
-- statement capture triggers, no row trigger; the application login keeps
-- writing through them.
SELECT aegis.protect('dg.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 3600}}');
SELECT aegis.protect('dg.history_p', '{"audit_inserts": "digest", "audit_images": "none", "digest_buckets": {"column": "clock"}}');
RESET SESSION AUTHORIZATION;
SELECT l.table_name, l.operation, l.detail, pg_catalog.length(l.content_change) > 2048 AS has_digest
FROM aegis.audit_log l WHERE l.table_name LIKE 'dg.%' ORDER BY l.id;
SELECT c.relname, t.tgname, aegis.is_statement_capture(t.oid) AS ours
FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'dg'::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2;
SET SESSION AUTHORIZATION dg_zabbix;
INSERT INTO dg.history SELECT 20000 + g % 5, 1764547200 + g * 60, g, 0 FROM generate_series(1, 500) g;
INSERT INTO dg.history VALUES (30000, 1764550000, 1.5, 0);
INSERT INTO dg.history SELECT 1, 1, 1, 1 WHERE false;
UPDATE dg.history SET value = value + 1 WHERE itemid = 30000;
DELETE FROM dg.history WHERE itemid = 20001;
INSERT INTO dg.history_p SELECT 20000 + g % 5, 1764547200 + g * 60, g, 0 FROM generate_series(1, 500) g;
UPDATE dg.history_p SET clock = clock + 86400 WHERE itemid = 20002;
DELETE FROM dg.history_p_d1 WHERE itemid = 20003;
RESET SESSION AUTHORIZATION;
-- One entry per statement (none for the statement that inserted nothing);
-- UPDATE and DELETE of history keep their images (in chunk entries), history_p
-- ("audit_images": "none") only the statement entries; a statement on a
-- partition names it.
SELECT l.table_name, l.operation, l.detail, l.pk IS NOT NULL AS has_image,
       l.content_change IS NOT NULL AS has_digest, pg_catalog.count(*)
FROM aegis.audit_log l WHERE l.table_name LIKE 'dg.%' AND l.operation <> 'BASELINE'
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3::text, 4;
-- No row image of an inserted row anywhere in the trail.
SELECT pg_catalog.count(*) AS insert_images FROM aegis.audit_log l
WHERE l.table_name LIKE 'dg.%' AND l.operation = 'INSERT' AND (l.new_row IS NOT NULL OR l.pk IS NOT NULL);
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history');
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history_p');

-- 3. Tampering behind the trail, each found with where it happened.
-- 3a. A superuser inserts with session_replication_role = replica.
SAVEPOINT t;
SET session_replication_role = replica;
INSERT INTO dg.history VALUES (99999, 1764560000, 0, 0);
RESET session_replication_role;
SELECT ok, mismatches, problem, first_mismatch -> 'bucket' AS bucket FROM aegis.verify_table('dg.history');
ROLLBACK TO t;
-- 3b. A superuser changes one value with the capture triggers disabled.
ALTER TABLE dg.history DISABLE TRIGGER USER;
UPDATE dg.history SET value = 42 WHERE itemid = 10003 AND ns = 3;
ALTER TABLE dg.history ENABLE TRIGGER USER;
SELECT ok, mismatches, problem, first_mismatch -> 'bucket' AS bucket FROM aegis.verify_table('dg.history');
ROLLBACK TO t;
-- 3c. A row deleted in one partition, in replica mode: the partition is named.
SET session_replication_role = replica;
DELETE FROM dg.history_p WHERE itemid = 10004 AND ns = 1924;
RESET session_replication_role;
SELECT ok, mismatches, problem, first_mismatch -> 'partitions' AS partitions FROM aegis.verify_table('dg.history_p');
ROLLBACK TO t;
-- 3d. A row moved to another bucket with its values otherwise unchanged.
SET session_replication_role = replica;
UPDATE dg.history SET clock = clock + 7200 WHERE itemid = 30000;
RESET session_replication_role;
SELECT ok, mismatches FROM aegis.verify_table('dg.history');
ROLLBACK TO t;
SELECT ok, mismatches FROM aegis.verify_table('dg.history');

-- 4. The owner cannot switch capture off (refused by the DDL guard), nor
-- plant a trigger of its own that writes statement entries.
SET SESSION AUTHORIZATION dg_zabbix;
SAVEPOINT o;
ALTER TABLE dg.history DISABLE TRIGGER aegis_audit_insert;
ROLLBACK TO o;
DROP TRIGGER aegis_audit_delete ON dg.history;
ROLLBACK TO o;
CREATE TRIGGER mine AFTER INSERT ON dg.history REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_statement();
INSERT INTO dg.history VALUES (40000, 1764550000, 1, 0);
ROLLBACK TO o;
RESET SESSION AUTHORIZATION;

-- 5. A partition truncated on its own: its digest leaves with it.
SET SESSION AUTHORIZATION dg_zabbix;
TRUNCATE dg.history_p_d2;
RESET SESSION AUTHORIZATION;
SELECT l.operation, l.detail, l.content_change IS NOT NULL AS has_digest FROM aegis.audit_log l
WHERE l.table_name = 'dg.history_p' AND l.operation = 'TRUNCATE' ORDER BY l.id;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history_p');

-- 5b. Retention of a digest-mode table: the expired rows leave as one
-- statement entry (count and digest change, "lifecycle": true), no image
-- per row; the table still verifies.
CREATE TABLE dg.samples (id bigint PRIMARY KEY, host text NOT NULL, ts timestamptz NOT NULL, v float8);
ALTER TABLE dg.samples OWNER TO dg_zabbix;
INSERT INTO dg.samples SELECT g, 'h' || g % 3, now() - g * interval '1 hour', g FROM generate_series(1, 100) g;
SELECT aegis.protect('dg.samples', '{"audit_inserts": "digest", "digest_buckets": {"column": "ts"}}');
SELECT aegis.set_retention('dg.samples', '2 days', 'ts');
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'dg.samples';
SELECT l.operation, l.detail, l.pk IS NOT NULL AS has_image, l.content_change IS NOT NULL AS has_digest, pg_catalog.count(*)
FROM aegis.audit_log l WHERE l.table_name = 'dg.samples' AND l.operation = 'DELETE' GROUP BY 1, 2, 3, 4;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.samples');

-- 10. What the cold attack review of digest mode found, each closed.
-- 10a. A decoy partition: its owner forces row security on it, gives it
-- an AFTER TRUNCATE trigger calling aegis.audit_truncate() and a trigger
-- of its own named aegis_audit_insert, then attaches it. It is protected
-- like any newcomer: pg_aegis's statement triggers replace the owner's,
-- its rows are baselined, and what is written into it is recorded.
CREATE TABLE dg.history_p_d9 (LIKE dg.history);
ALTER TABLE dg.history_p_d9 OWNER TO dg_zabbix;
CREATE FUNCTION public.dg_nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
SET SESSION AUTHORIZATION dg_zabbix;
INSERT INTO dg.history_p_d9 VALUES (77, 1764720000, 1, 0), (78, 1764720001, 2, 0);
ALTER TABLE dg.history_p_d9 ENABLE ROW LEVEL SECURITY;
ALTER TABLE dg.history_p_d9 FORCE ROW LEVEL SECURITY;
CREATE POLICY dg_app ON dg.history_p_d9 TO dg_zabbix USING (true) WITH CHECK (true);
CREATE TRIGGER decoy AFTER TRUNCATE ON dg.history_p_d9 FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_truncate();
CREATE TRIGGER aegis_audit_insert AFTER INSERT ON dg.history_p_d9 FOR EACH STATEMENT EXECUTE FUNCTION public.dg_nothing();
ALTER TABLE dg.history_p ATTACH PARTITION dg.history_p_d9 FOR VALUES FROM (1764720000) TO (1764806400);
INSERT INTO dg.history_p VALUES (79, 1764720002, 3, 0);
INSERT INTO dg.history_p_d9 VALUES (80, 1764720003, 4, 0);
RESET SESSION AUTHORIZATION;
SELECT t.tgname, aegis.is_statement_capture(t.oid) AS ours FROM pg_catalog.pg_trigger t
WHERE t.tgrelid = 'dg.history_p_d9'::regclass AND NOT t.tgisinternal ORDER BY 1;
SELECT l.operation, l.detail ->> 'rows' AS rows, l.detail ->> 'partition' AS partition
FROM aegis.audit_log l WHERE l.table_name = 'dg.history_p' AND l.id > (SELECT max(id) - 10 FROM aegis.audit_log)
  AND l.operation IN ('BASELINE', 'INSERT') ORDER BY l.id DESC LIMIT 3;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history_p');
-- 10b. The owner cannot drop a partition's BEFORE TRUNCATE capture trigger.
SET SESSION AUTHORIZATION dg_zabbix;
DROP TRIGGER aegis_audit_truncate_digest ON dg.history_p_d9;
ALTER TABLE dg.history_p_d9 DISABLE TRIGGER aegis_audit_truncate_digest;
RESET SESSION AUTHORIZATION;
-- 10c. A column added without a default changes no row's digest.
SET SESSION AUTHORIZATION dg_zabbix;
ALTER TABLE dg.samples ADD COLUMN note text;
RESET SESSION AUTHORIZATION;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.samples');
-- 10d. Retention's DELETE is recorded as a lifecycle statement, and only
-- it: what the owner's trigger does underneath (change a recent row,
-- delete an "evidence" row) is recorded as the owner's own statements,
-- with their row images.
CREATE FUNCTION public.dg_meddle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 1 THEN
        UPDATE dg.samples SET v = -1 WHERE id = 2;
        DELETE FROM dg.samples WHERE id = 3;
    END IF;
    RETURN NULL;
END $$;
INSERT INTO dg.samples VALUES (1001, 'h1', now() - interval '30 days', 1);
SET SESSION AUTHORIZATION dg_zabbix;
CREATE TRIGGER meddle AFTER DELETE ON dg.samples FOR EACH STATEMENT EXECUTE FUNCTION public.dg_meddle();
RESET SESSION AUTHORIZATION;
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'dg.samples';
SELECT l.operation, l.detail ->> 'lifecycle' AS lifecycle, l.pk IS NOT NULL AS has_image, pg_catalog.count(*)
FROM aegis.audit_log l WHERE l.table_name = 'dg.samples'
  AND l.id > (SELECT max(x.id) FROM aegis.audit_log x WHERE x.table_name = 'dg.samples' AND x.operation = 'INSERT')
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.samples');

-- 10e. Values whose text depends on session settings (a regclass prints
-- relative to search_path; money in lc_monetary's format, not testable
-- here: this machine has no locale but C) are digested under fixed
-- settings: a row inserted under another search_path verifies.
CREATE TABLE dg.refs (id int PRIMARY KEY, tbl regclass, cost money, ts timestamptz NOT NULL DEFAULT now());
SELECT aegis.protect('dg.refs', '{"audit_inserts": "digest"}');
SET search_path = dg, public;
INSERT INTO dg.refs (id, tbl, cost) VALUES (1, 'history', 12.5);
RESET search_path;
INSERT INTO dg.refs (id, tbl, cost) VALUES (2, 'dg.history', 7);
SET search_path = dg, public;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.refs');
RESET search_path;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.refs');

-- 6. Switching modes re-baselines: back to images (one BASELINE per row)
-- and the table verifies the image way; then digest again.
SET SESSION AUTHORIZATION dg_admin;
SELECT aegis.protect('dg.history_p', '{}');
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history_p');
SELECT aegis.protect('dg.history_p', '{"audit_inserts": "digest"}');
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('dg.history_p');
RESET SESSION AUTHORIZATION;
SELECT c.relname, t.tgname FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
WHERE c.relname LIKE 'history_p%' AND NOT t.tgisinternal ORDER BY 1, 2;

ROLLBACK;

-- 7. The chain (committed entries, sealed): a digest entry whose content
-- change was swapped, or one removed from the log, is found.
BEGIN;
SET client_min_messages = warning;
CREATE TABLE public.dg_chain (id bigint PRIMARY KEY, v double precision);
SELECT aegis.protect('public.dg_chain', '{"audit_inserts": "digest"}');
COMMIT;
INSERT INTO public.dg_chain SELECT g, g FROM generate_series(1, 100) g;
INSERT INTO public.dg_chain SELECT g, g FROM generate_series(101, 110) g;
SELECT aegis.seal() >= 2 AS sealed;
SELECT ok FROM aegis.verify_chain();
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
UPDATE aegis.audit_log SET content_change = (SELECT x.content_change FROM aegis.audit_log x
        WHERE x.table_name = 'public.dg_chain' AND x.operation = 'INSERT' ORDER BY x.id LIMIT 1)
WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain' AND operation = 'INSERT');
SELECT ok, problem FROM aegis.verify_chain();
SELECT ok, mismatches FROM aegis.verify_table('public.dg_chain');
ROLLBACK;
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
DELETE FROM aegis.audit_log WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain' AND operation = 'INSERT');
SELECT ok, problem FROM aegis.verify_chain();
SELECT ok, mismatches, problem FROM aegis.verify_table('public.dg_chain');
ROLLBACK;
SELECT ok FROM aegis.verify_chain();
SELECT ok, rows_checked FROM aegis.verify_table('public.dg_chain');

-- 8. Incremental verification: the first run checks the whole chain and
-- leaves a signed checkpoint; the next checks only what was sealed since.
DO $$ BEGIN
    PERFORM aegis.create_key('audit_head') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'audit_head');
END $$;
SELECT ok, entries_checked > 0 AS checked_some FROM aegis.verify_chain_incremental();
SELECT position = (SELECT max(position) FROM aegis.audit_chain) AS checkpoint_at_head FROM aegis.audit_verified;
SELECT ok, entries_checked, verified_from = (SELECT max(position) + 1 FROM aegis.audit_chain) AS resumed
FROM aegis.verify_chain_incremental();
INSERT INTO public.dg_chain SELECT g, g FROM generate_series(111, 120) g;
SELECT aegis.seal() >= 1 AS sealed;
SELECT ok, entries_checked >= 1 AND entries_checked < 5 AS only_new FROM aegis.verify_chain_incremental();
-- A new entry tampered with after sealing: found from the checkpoint on.
INSERT INTO public.dg_chain SELECT g, g FROM generate_series(121, 130) g;
SELECT aegis.seal() >= 1 AS sealed;
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
UPDATE aegis.audit_log SET detail = '{"rows": 9}' WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain');
SELECT ok, problem FROM aegis.verify_chain_incremental();
ROLLBACK;
-- A forged checkpoint (moved past a tampered entry) is not trusted: the
-- whole chain is verified.
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
UPDATE aegis.audit_log SET detail = '{"rows": 9}' WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain');
UPDATE aegis.audit_verified SET position = (SELECT max(position) FROM aegis.audit_chain),
    chain_hash = (SELECT chain_hash FROM aegis.audit_chain ORDER BY position DESC LIMIT 1);
SELECT ok, verified_from, problem FROM aegis.verify_chain_incremental();
ROLLBACK;
-- A published chain head is not a checkpoint: the same position, hash,
-- time and signature written into audit_verified are not trusted (the
-- checkpoint is signed under a label of its own, with its horizon).
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
UPDATE aegis.audit_log SET detail = '{"rows": 9}' WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain');
SELECT aegis.chain_head() AS head \gset
UPDATE aegis.audit_verified SET position = (:'head'::jsonb ->> 'position')::bigint,
    chain_hash = decode(:'head'::jsonb ->> 'hash', 'hex'), time_us = (:'head'::jsonb ->> 'time_us')::bigint,
    signature = decode(:'head'::jsonb ->> 'signature', 'hex');
SELECT ok, verified_from, problem FROM aegis.verify_chain_incremental();
ROLLBACK;
-- An old entry (below the checkpoint) tampered with: incremental
-- verification does not look there again; verify_chain() does.
BEGIN;
SET LOCAL client_min_messages = error;
ALTER TABLE aegis.audit_log DISABLE TRIGGER USER;
UPDATE aegis.audit_log SET detail = '{"rows": 99}' WHERE id = (SELECT min(id) FROM aegis.audit_log WHERE table_name = 'public.dg_chain' AND operation = 'INSERT');
SELECT ok FROM aegis.verify_chain_incremental();
SELECT ok, problem FROM aegis.verify_chain();
ROLLBACK;
-- A compliance report uses it.
SELECT status, detail ~ 'entries sealed since position' AS incremental FROM aegis.compliance_report()
WHERE control = 'audit.chain_verifies';
SET client_min_messages = warning;
DELETE FROM aegis.keys WHERE name = 'audit_head';
SELECT aegis.unprotect('public.dg_chain');
DROP TABLE public.dg_chain;
RESET client_min_messages;

-- 9. protect()'s digest baseline and verify_table() read every row with
-- the extension's rights: columns of the owner's own types (a composite
-- with a cast to text, a domain over it with a CHECK, a range, an enum),
-- its policies and triggers run none of the owner's code then (as
-- attack_hardening.sql M checks for image mode).
BEGIN;
SET client_min_messages = warning;
CREATE ROLE dg_owner2 LOGIN;
CREATE ROLE dg_admin2 LOGIN IN ROLE aegis_admin;
CREATE SCHEMA dg2 AUTHORIZATION dg_owner2;
CREATE TABLE public.dg_witness (kind text, run_as name, was_superuser boolean);
GRANT INSERT ON public.dg_witness TO PUBLIC;
CREATE FUNCTION public.dg_witness(kind text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.dg_witness SELECT kind, current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
    RETURN true;
END $$;
CREATE FUNCTION public.dg_witness_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM public.dg_witness('trigger ' || TG_OP); RETURN NULL; END $$;
GRANT USAGE ON SCHEMA dg2 TO dg_admin2;
SET SESSION AUTHORIZATION dg_owner2;
CREATE TYPE dg2.pair AS (a int, b text);
CREATE FUNCTION dg2.pair_text(dg2.pair) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.dg_witness('cast to text'); RETURN ''; END $$;
CREATE CAST (dg2.pair AS text) WITH FUNCTION dg2.pair_text(dg2.pair);
CREATE DOMAIN dg2.pair_d AS dg2.pair CHECK (public.dg_witness('domain'));
CREATE TYPE dg2.span AS RANGE (subtype = int4);
CREATE TYPE dg2.sev AS ENUM ('a', 'b');
CREATE TABLE dg2.typed (id int PRIMARY KEY, p dg2.pair, pd dg2.pair_d, r dg2.span, s dg2.sev,
                        ts timestamptz NOT NULL DEFAULT '2026-12-01');
CREATE POLICY typed_pol ON dg2.typed USING (public.dg_witness('policy'));
CREATE TRIGGER typed_trg AFTER UPDATE OR DELETE ON dg2.typed FOR EACH ROW EXECUTE FUNCTION public.dg_witness_trg();
INSERT INTO dg2.typed (id, p, pd, r, s) VALUES (1, ROW(1, 'x'), ROW(2, 'y'), '[1,5)', 'b');
RESET SESSION AUTHORIZATION;
TRUNCATE public.dg_witness;
SET SESSION AUTHORIZATION dg_admin2;
SELECT aegis.protect('dg2.typed', '{"audit_inserts": "digest", "digest_buckets": {"column": "ts"}}');
SELECT ok, rows_checked FROM aegis.verify_table('dg2.typed');
RESET SESSION AUTHORIZATION;
SELECT l.operation, l.detail FROM aegis.audit_log l WHERE l.table_name = 'dg2.typed' ORDER BY l.id;
SELECT kind, run_as, was_superuser FROM public.dg_witness ORDER BY 1;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'dg_owner2';

ROLLBACK;
