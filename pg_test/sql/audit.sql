-- Control: the audit trail in SQL. Capture of INSERT/UPDATE/DELETE/TRUNCATE
-- on protected tables with column classification applied (secret -> hash,
-- pii/subject_id -> pseudonym, free_text -> redact_pii), settings-independent
-- images and hashes, the append-only audit tables (for superusers too),
-- sealing, verification, the signed head, and who may do what.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET client_min_messages = warning;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
SELECT aegis.create_key('audit_head') IS NOT NULL AS head_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'audit_head');
RESET client_min_messages;

BEGIN;
SET client_min_messages = warning;
CREATE ROLE audit_dev LOGIN IN ROLE aegis_developer;
CREATE ROLE audit_auditor LOGIN IN ROLE aegis_auditor;
RESET client_min_messages;
CREATE TABLE public.audit_t (
    k text PRIMARY KEY, ts timestamptz, d date, f float8, b bytea, n numeric,
    iv interval, msg text, email text, token text, who text, j jsonb
);
SELECT aegis.protect('public.audit_t', '{"columns": {"msg": "free_text", "email": "pii",
    "token": "secret", "who": "subject_id"}}');
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'public.audit_t'::regclass ORDER BY 1;

-- ---------------------------------------------------------------- capture
INSERT INTO audit_t VALUES ('a', '2026-11-22 10:00:00+00', '2026-11-22', 0.1, '\x00ff', 12.50,
    '1 day 2 hours', 'failed for jane@example.com from 10.1.2.3', 'jane@example.com', 'hunter2',
    'user-42', '{"b": 1, "a": [true, null]}');
UPDATE audit_t SET f = 1e300 WHERE k = 'a';
DELETE FROM audit_t WHERE k = 'a';
-- protect() itself is in the trail (the policy catalog's rows, 0.6.0), then
-- the table's changes.
SELECT operation, table_name, pk, db_user = current_user AS by_me,
       backend_pid = pg_backend_pid() AS my_pid, statement_time = statement_timestamp() AS stmt_time,
       old_row IS NULL AS no_old, new_row IS NULL AS no_new
FROM aegis.audit_log WHERE xid = pg_current_xact_id() ORDER BY id;
-- The image: typed rendering, classification applied, nothing personal left.
SELECT jsonb_pretty(new_row - 'email' - 'who' - 'token') FROM aegis.audit_log
WHERE xid = pg_current_xact_id() AND operation = 'INSERT' AND table_name = 'public.audit_t';
SELECT new_row ->> 'email' ~ '^pseudonym:[0-9a-f]{32}$' AS email_pseudonymized,
       new_row ->> 'email' = 'pseudonym:' || aegis.pseudonymize('jane@example.com') AS same_as_pseudonymize,
       new_row ->> 'who' ~ '^pseudonym:' AS subject_pseudonymized,
       new_row ->> 'token' ~ '^sha256:[0-9a-f]{64}$' AS secret_hashed,
       new_row::text !~ 'jane|hunter2|user-42|10\.1\.2\.3' AS nothing_personal
FROM aegis.audit_log WHERE xid = pg_current_xact_id() AND operation = 'INSERT' AND table_name = 'public.audit_t';
SELECT old_row -> 'f' AS old_f, new_row -> 'f' AS new_f FROM aegis.audit_log
WHERE xid = pg_current_xact_id() AND operation = 'UPDATE';

-- Without the pseudonym key, pii columns are stored as [PII], never as themselves.
SAVEPOINT no_key;
DELETE FROM aegis.keys WHERE name = 'pseudonym';
INSERT INTO audit_t (k, email, who) VALUES ('nokey', 'jane@example.com', 'user-42');
SELECT new_row ->> 'email' AS email, new_row ->> 'who' AS who FROM aegis.audit_log
WHERE xid = pg_current_xact_id() AND pk ->> 'k' = 'nokey';
ROLLBACK TO SAVEPOINT no_key;

-- ---------------------------------------------------------------- settings do not change images or hashes
-- The same row written under other DateStyle, TimeZone, IntervalStyle,
-- extra_float_digits, bytea_output and lc_monetary gives the same image and
-- the same data digest.
INSERT INTO audit_t (k, ts, d, f, b, iv) VALUES ('g', '2026-11-22 10:00:00.5+00', '2026-11-22', 1.0/3, '\xdeadbeef', '1 day 2 hours 3.5 seconds');
DELETE FROM audit_t WHERE k = 'g';
SET DateStyle = 'German, DMY'; SET TimeZone = 'Asia/Kathmandu'; SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15; SET bytea_output = 'escape';
INSERT INTO audit_t (k, ts, d, f, b, iv) VALUES ('g', '2026-11-22 10:00:00.5+00', '2026-11-22', 1.0/3, '\xdeadbeef', '1 day 2 hours 3.5 seconds');
RESET DateStyle; RESET TimeZone; RESET IntervalStyle; RESET extra_float_digits; RESET bytea_output;
SELECT count(DISTINCT new_row) AS images, count(DISTINCT data_digest) AS digests, count(*) AS entries,
       min(new_row ->> 'ts') AS ts, min(new_row ->> 'iv') AS iv, min(new_row ->> 'b') AS b
FROM aegis.audit_log WHERE xid = pg_current_xact_id() AND operation = 'INSERT' AND pk ->> 'k' = 'g';

-- ---------------------------------------------------------------- TRUNCATE
TRUNCATE audit_t;
SELECT operation, table_name FROM aegis.audit_log
WHERE xid = pg_current_xact_id() AND operation = 'TRUNCATE';

-- ---------------------------------------------------------------- append-only, for every role
UPDATE aegis.audit_log SET operation = 'forged';
DELETE FROM aegis.audit_log;
TRUNCATE aegis.audit_log;
SET session_replication_role = replica;
DELETE FROM aegis.audit_log;
RESET session_replication_role;
-- Nobody holds INSERT: entries come only from the triggers.
SELECT has_table_privilege('aegis_admin', 'aegis.audit_log', 'INSERT') AS admin_insert,
       has_table_privilege('aegis_admin', 'aegis.audit_chain', 'INSERT') AS admin_chain_insert;

-- ---------------------------------------------------------------- who may read and verify
SET ROLE audit_dev;
SELECT count(*) FROM aegis.audit_log;
SELECT aegis.seal();
SELECT * FROM aegis.verify_chain();
SELECT aegis.chain_head();
INSERT INTO aegis.audit_log (id, xid, operation, db_user, session_user_name, backend_pid,
    statement_time, data_digest, entry_hash) VALUES (1, '1', 'forged', 'x', 'x', 1, now(), '\x', '\x');
-- A developer cannot aim the capture trigger at a table of their own: it
-- may be attached (a table owner's new partition clones it), but it writes
-- nothing for a table pg_aegis does not protect.
CREATE TEMP TABLE mine (x int);
CREATE TRIGGER forge AFTER INSERT ON mine FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
\set VERBOSITY sqlstate
INSERT INTO mine VALUES (1);
\set VERBOSITY terse
RESET ROLE;
SET ROLE audit_auditor;
SELECT count(*) > 0 AS auditor_reads FROM aegis.audit_trail;
RESET ROLE;
ROLLBACK;

-- ---------------------------------------------------------------- sealing and verification (committed)
-- Sealing needs a fresh snapshot after it locks the chain.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT aegis.seal();
ROLLBACK;
CREATE TABLE public.audit_c (k int PRIMARY KEY, v text);
SELECT aegis.protect('public.audit_c', '{}');
INSERT INTO audit_c SELECT g, 'v' || g FROM generate_series(1, 20) g;
UPDATE audit_c SET v = 'w' WHERE k <= 5;
BEGIN;
INSERT INTO audit_c VALUES (100, 'rolled back');
ROLLBACK;
SELECT aegis.seal() >= 2 AS sealed;
SELECT aegis.seal() AS nothing_left;
SELECT count(*) AS entries, count(position) AS sealed FROM aegis.audit_trail WHERE table_name = 'public.audit_c';
SELECT count(*) AS rolled_back_entries FROM aegis.audit_log WHERE pk ->> 'k' = '100' AND table_name = 'public.audit_c';
SELECT ok, entries_checked > 0 AS checked, first_bad_position, problem FROM aegis.verify_chain();
SELECT aegis.chain_head() AS head \gset
SELECT jsonb_typeof(:'head'::jsonb -> 'signature') AS signature, (:'head'::jsonb ->> 'position')::bigint > 0 AS position;
SELECT ok, problem FROM aegis.verify_chain(:'head');
-- A head that was not signed by this database's key, and malformed heads.
SELECT ok, problem FROM aegis.verify_chain(jsonb_set(:'head', '{position}', '1'));
SELECT ok FROM aegis.verify_chain('{"position": 1}');
SELECT ok FROM aegis.verify_chain('{"position": 1, "hash": "zz", "time_us": 1, "signature": null}');
SELECT ok FROM aegis.verify_chain('[]');
SET ROLE aegis_auditor;
SELECT ok FROM aegis.verify_chain();
RESET ROLE;
-- The chain is append-only too.
UPDATE aegis.audit_chain SET chain_hash = '\x00';
DELETE FROM aegis.audit_chain;
TRUNCATE aegis.audit_chain;
SELECT aegis.unprotect('public.audit_c');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'public.audit_c'::regclass;
DROP TABLE public.audit_c;
-- The keys this file created (other files expect a keyring without them).
DELETE FROM aegis.keys WHERE name IN ('pseudonym', 'audit_head');
