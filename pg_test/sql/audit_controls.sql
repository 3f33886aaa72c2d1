-- Control: the audit trail's guards and checks (0.4.0). verify_table()
-- against live rows (baselines, changes made behind the triggers' back), the
-- DDL guard (non-superusers cannot switch off RLS or the audit triggers of a
-- protected table, nor drop it; a superuser can, and it is recorded), read
-- auditing (per-table policy and the aegis.audit_reads setting, SELECT and
-- COPY), and the writer's refusal of indexes it cannot maintain.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET client_min_messages = warning;
CREATE ROLE ctl_owner LOGIN;
CREATE ROLE ctl_reader LOGIN;
CREATE ROLE ctl_auditor LOGIN IN ROLE aegis_auditor;
GRANT CREATE ON SCHEMA public TO ctl_owner;
RESET client_min_messages;

-- ------------------------------------------------------------ verify_table
-- Rows that exist when protection starts get their images in BASELINE
-- entries (chunk entries: one for up to 1,000 rows; the trail view shows
-- one row per image).
SET ROLE ctl_owner;
CREATE TABLE public.ctl_t (id int PRIMARY KEY, v text, secret_note text);
INSERT INTO ctl_t VALUES (1, 'one', 's1'), (2, 'two', 's2');
GRANT SELECT, INSERT, UPDATE, DELETE ON ctl_t TO ctl_reader;
RESET ROLE;
SELECT aegis.protect('public.ctl_t', '{"columns": {"secret_note": "secret"}}');
SELECT operation, detail, jsonb_array_length(new_row) AS images
FROM aegis.audit_log WHERE table_name = 'public.ctl_t' ORDER BY id;
SELECT operation, item, pk, new_row ->> 'v' AS v, new_row ->> 'secret_note' LIKE 'sha256:%' AS hashed
FROM aegis.audit_trail WHERE table_name = 'public.ctl_t' ORDER BY id, item;
CREATE POLICY ctl_all ON ctl_t USING (true) WITH CHECK (true);
INSERT INTO ctl_t VALUES (3, 'three', 's3');
UPDATE ctl_t SET v = 'TWO' WHERE id = 2;
DELETE FROM ctl_t WHERE id = 1;
SELECT * FROM aegis.verify_table('public.ctl_t');
-- Changes made with the audit trigger silenced (a superuser in replica mode)
-- are what verify_table() is for: a changed row, an unaudited row, a
-- vanished row.
SET session_replication_role = replica;
UPDATE ctl_t SET v = 'tampered' WHERE id = 3;
RESET session_replication_role;
-- (entry ids depend on what earlier files wrote: shown as N)
SELECT ok, rows_checked, mismatches, first_mismatch - 'problem' AS first_mismatch_key,
       regexp_replace(problem, 'entry \d+', 'entry N') AS problem FROM aegis.verify_table('public.ctl_t');
SET session_replication_role = replica;
UPDATE ctl_t SET v = 'three' WHERE id = 3;
INSERT INTO ctl_t VALUES (9, 'ghost', NULL);
RESET session_replication_role;
SELECT ok, mismatches, first_mismatch ->> 'problem' AS problem FROM aegis.verify_table('public.ctl_t');
SET session_replication_role = replica;
DELETE FROM ctl_t WHERE id IN (2, 9);
RESET session_replication_role;
SELECT ok, rows_checked, mismatches, regexp_replace(problem, 'entry \d+', 'entry N') AS problem
FROM aegis.verify_table('public.ctl_t');
-- Put back through audited statements: consistent again.
INSERT INTO ctl_t VALUES (2, 'TWO', 's2');
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('public.ctl_t');
-- After a TRUNCATE only what came later counts.
TRUNCATE ctl_t;
INSERT INTO ctl_t VALUES (5, 'five', NULL);
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('public.ctl_t');
-- Entries written before the pseudonym key existed hold [PII] for pii
-- columns; creating the key later is not a mismatch, a real change still is.
CREATE TABLE public.ctl_pii (id int PRIMARY KEY, email text, v text);
SELECT aegis.protect('public.ctl_pii', '{"columns": {"email": "pii"}}');
INSERT INTO ctl_pii VALUES (1, 'a@example.com', 'x');
SELECT new_row ->> 'email' AS stored_email FROM aegis.audit_log WHERE table_name = 'public.ctl_pii';
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key;
SELECT ok, mismatches FROM aegis.verify_table('public.ctl_pii');
SET session_replication_role = replica;
UPDATE ctl_pii SET v = 'y';
RESET session_replication_role;
SELECT ok, mismatches FROM aegis.verify_table('public.ctl_pii');
DELETE FROM aegis.keys WHERE name = 'pseudonym';
SET client_min_messages = error;
SELECT aegis.unprotect('public.ctl_pii');
RESET client_min_messages;
DROP TABLE ctl_pii;
-- Errors and privileges.
CREATE TABLE public.ctl_plain (id int PRIMARY KEY);
SELECT * FROM aegis.verify_table('public.ctl_plain');
CREATE TABLE public.ctl_nopk (v text);
SELECT aegis.protect('public.ctl_nopk');
SELECT * FROM aegis.verify_table('public.ctl_nopk');
SET ROLE ctl_reader;
SELECT * FROM aegis.verify_table('public.ctl_t');
SET ROLE ctl_auditor;
SELECT ok FROM aegis.verify_table('public.ctl_t');
RESET ROLE;

-- ------------------------------------------------------------ DDL guard
-- The owner (not a superuser) cannot switch off what protects the table.
SET ROLE ctl_owner;
ALTER TABLE ctl_t DISABLE TRIGGER aegis_audit_insert;
ALTER TABLE ctl_t DISABLE TRIGGER ALL;
ALTER TABLE ctl_t DISABLE ROW LEVEL SECURITY;
ALTER TABLE ctl_t NO FORCE ROW LEVEL SECURITY;
ALTER TABLE ctl_t DISABLE TRIGGER aegis_audit_truncate;
DROP TRIGGER aegis_audit_insert ON ctl_t;
DROP TABLE ctl_t;
-- Renaming a capture trigger is refused too (protect() makes them under
-- their names; another trigger of the owner's could take the name).
ALTER TRIGGER aegis_audit_insert ON ctl_t RENAME TO audit_renamed;
-- Harmless DDL still works.
ALTER TABLE ctl_t ADD COLUMN extra int;
ALTER TABLE ctl_t DROP COLUMN extra;
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.ctl_t'::regclass;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'public.ctl_t'::regclass AND tgname LIKE 'aegis%' ORDER BY 1;
-- A superuser may, with a warning, and it is recorded.
SET client_min_messages = warning;
ALTER TABLE ctl_t DISABLE TRIGGER aegis_audit_insert;
RESET client_min_messages;
SELECT operation, table_name, detail ->> 'command' AS command, detail ->> 'change' AS change
FROM aegis.audit_log WHERE operation = 'DDL' ORDER BY id DESC LIMIT 1;
ALTER TABLE ctl_t ENABLE TRIGGER aegis_audit_insert;
-- Dropping by a superuser: recorded, and the catalog forgets the table.
SET client_min_messages = warning;
DROP TABLE ctl_nopk;
RESET client_min_messages;
SELECT count(*) AS nopk_forgotten FROM aegis.protected_tables WHERE relid::text = 'ctl_nopk';
SELECT operation, table_name, detail ->> 'command' AS command FROM aegis.audit_log
WHERE operation = 'DDL' ORDER BY id DESC LIMIT 1;
-- unprotect() is the way out, and then the owner is free again.
SELECT aegis.unprotect('public.ctl_plain') IS NULL;  -- not protected: refused
SET client_min_messages = error;
SELECT aegis.protect('public.ctl_plain');
SELECT aegis.unprotect('public.ctl_plain');
RESET client_min_messages;
DROP TABLE ctl_plain;

-- ------------------------------------------------------------ read auditing
-- Off by default: a protected table without "audit_reads" is not recorded.
SELECT current_setting('aegis.audit_reads') AS audit_reads;
SET ROLE ctl_reader;
SELECT count(*) FROM ctl_t;
RESET ROLE;
SELECT count(*) AS read_entries FROM aegis.audit_log WHERE operation IN ('SELECT', 'COPY');
-- The policy asks for it: each read is recorded with who and how many rows.
SELECT aegis.protect('public.ctl_t', '{"columns": {"secret_note": "secret"}, "audit_reads": true}');
INSERT INTO ctl_t VALUES (6, 'six', NULL), (7, 'seven', NULL);
SET ROLE ctl_reader;
SELECT id FROM ctl_t WHERE id > 5 ORDER BY id;
COPY (SELECT v FROM ctl_t WHERE id = 6) TO STDOUT;
COPY ctl_t (id) TO STDOUT;
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM ctl_t;
FETCH 2 FROM c;
CLOSE c;
COMMIT;
RESET ROLE;
SELECT operation, table_name, db_user, detail ->> 'rows' AS rows
FROM aegis.audit_log WHERE operation IN ('SELECT', 'COPY') ORDER BY id;
-- A superuser's COPY reads the table directly (no row-level security for
-- superusers); it is recorded too.
COPY ctl_t (id) TO STDOUT;
SELECT operation, db_user, detail ->> 'rows' AS rows FROM aegis.audit_log
WHERE operation = 'COPY' ORDER BY id DESC LIMIT 1;
-- Only superusers may change the setting; when on, every protected table's
-- reads are recorded.
SET ROLE ctl_reader;
SET aegis.audit_reads = off;
RESET ROLE;
SELECT aegis.protect('public.ctl_t', '{"columns": {"secret_note": "secret"}}');
SET aegis.audit_reads = on;
SELECT count(*) FROM ctl_t;
SET aegis.audit_reads = off;
SELECT count(*) FROM ctl_t;
SELECT count(*) AS read_entries FROM aegis.audit_log WHERE operation IN ('SELECT', 'COPY');
-- Read-only transactions cannot write entries: the read goes to the server
-- log instead (tests/audit_reads.rs checks the log), and nothing fails.
SET aegis.audit_reads = on;
BEGIN READ ONLY;
SELECT count(*) FROM ctl_t;
COMMIT;
SET aegis.audit_reads = off;
SELECT count(*) AS read_entries FROM aegis.audit_log WHERE operation IN ('SELECT', 'COPY');
-- A bad policy value is refused.
SELECT aegis.protect('public.ctl_t', '{"audit_reads": "yes"}');

-- ------------------------------------------------------------ the writer's limits
-- An expression index on aegis.audit_log (a superuser could add one) cannot
-- be maintained by the direct writer: audited writes fail instead of
-- corrupting it or crashing.
CREATE INDEX ctl_expr ON aegis.audit_log (lower(operation));
INSERT INTO ctl_t VALUES (8, 'eight', NULL);
DROP INDEX aegis.ctl_expr;
INSERT INTO ctl_t VALUES (8, 'eight', NULL);
SELECT ok FROM aegis.verify_table('public.ctl_t');

-- ------------------------------------------------------------ cleanup
SET client_min_messages = error;
SELECT aegis.unprotect('public.ctl_t');
DROP TABLE ctl_t;
DROP OWNED BY ctl_owner, ctl_reader, ctl_auditor;
DROP ROLE ctl_owner, ctl_reader, ctl_auditor;

-- The writer builds jsonb directly (no parser): every stored image is the
-- same jsonb its text parses to, and every key is found by jsonb's binary
-- search (keys in jsonb order).
SELECT bool_and(d::text::jsonb = d AND (SELECT bool_and(d ? k) FROM jsonb_object_keys(d) k)) AS images_well_formed,
       count(*) > 0 AS some_images
FROM aegis.audit_log, LATERAL (VALUES (new_row), (old_row), (pk)) v(d)
WHERE jsonb_typeof(d) = 'object';

-- Entries name roles as they are called now: a rename in the middle of a
-- session is followed.
SET client_min_messages = warning;
CREATE ROLE ctl_writer;
CREATE TABLE public.ctl_names (id int PRIMARY KEY);
SELECT aegis.protect('public.ctl_names');
CREATE POLICY ctl_names_all ON ctl_names USING (true) WITH CHECK (true);
GRANT INSERT ON ctl_names TO ctl_writer;
RESET client_min_messages;
SET ROLE ctl_writer;
INSERT INTO ctl_names VALUES (1);
RESET ROLE;
ALTER ROLE ctl_writer RENAME TO ctl_writer_renamed;
SET ROLE ctl_writer_renamed;
INSERT INTO ctl_names VALUES (2);
RESET ROLE;
SELECT pk ->> 'id' AS id, db_user FROM aegis.audit_log
WHERE table_name = 'public.ctl_names' AND operation = 'INSERT' ORDER BY id;
SET client_min_messages = error;
SELECT aegis.unprotect('public.ctl_names');
DROP TABLE ctl_names;
DROP ROLE ctl_writer_renamed;
