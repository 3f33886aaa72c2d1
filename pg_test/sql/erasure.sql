-- Control: the right to erasure (0.5.0). erase_subject() removes a person
-- from every protected table (deleted, or anonymized where the table's
-- policy says so; mentions in free text erased), destroys their key, puts
-- tombstones over their data in audit entries, respects legal holds, and
-- records a receipt; dry runs change nothing; it is idempotent and
-- admin-only. Attacks: the subject as an injection or pattern string, a
-- table owner's trigger that would run with definer rights.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
SELECT aegis.create_monitoring_schema('era');
CREATE ROLE era_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE era_auditor LOGIN IN ROLE aegis_auditor;
CREATE ROLE era_owner LOGIN;
GRANT CREATE ON SCHEMA public TO era_owner;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
RESET client_min_messages;

INSERT INTO era.servers (server_id) VALUES ('s1');
INSERT INTO era.user_access_logs (user_id, resource) VALUES ('alice', '/a'), ('alice', '/b'), ('bob', '/c');
INSERT INTO era.error_logs (server_id, error_message, user_identifier, user_ip) VALUES
    ('s1', 'login failed for alice from 10.0.0.1', 'alice', '10.0.0.1'),
    ('s1', 'bob reported that Alice cannot log in', 'bob', '10.0.0.2'),
    ('s1', 'malice detected', 'carol', NULL);
INSERT INTO era.downtime_logs (server_id, cause, reported_by, user_name) VALUES
    ('s1', 'alice pulled the plug', 'alice', 'alice'), ('s1', 'power', 'bob', NULL);
INSERT INTO era.incident_response_logs (server_id, incident_summary) VALUES ('s1', 'Alice''s account compromised');
SELECT aegis.encrypt_for_subject('alice', 'her note') AS alice_ct \gset
SELECT aegis.encrypt_for_subject('bob', 'his note') AS bob_ct \gset

-- ------------------------------------------------------------ permissions and errors
SET ROLE era_auditor;
SELECT aegis.erase_subject('alice', true);
SELECT aegis.audit_tombstone('alice', true);
-- Finding mentions reveals nothing but its arguments: anyone may.
SELECT aegis.mentions('ping Alice.', 'alice') AS mentioned, aegis.mentions('malice', 'alice') AS not_inside_words,
       aegis.erase_mentions('alice and ALICE, not malice', 'alice') AS erased;
RESET ROLE;
SET ROLE era_admin;
SELECT aegis.audit_tombstone('alice', true);
SELECT aegis.erase_subject(NULL);
SELECT aegis.erase_subject('alice', NULL);
SELECT aegis.erase_subject('al');
SELECT aegis.erase_subject('   ');
-- protect()'s erasure policy key.
SELECT aegis.protect('era.user_access_logs', '{"erasure": "shred"}');
SELECT aegis.protect('era.user_access_logs', '{"erasure": true}');

-- ------------------------------------------------------------ dry run
SELECT r -> 'tables' AS tables, r ->> 'complete' AS complete, r ->> 'audit_entries_tombstoned' AS entries,
       r -> 'keys' ->> 'done' AS key_done
FROM aegis.erase_subject('alice', dry_run => true) r;
SELECT (SELECT count(*) FROM era.user_access_logs WHERE user_id = 'alice') AS alice_rows_left,
       (SELECT count(*) FROM aegis.audit_log WHERE erased_at IS NOT NULL) AS tombstones,
       aegis.decrypt(:'alice_ct') AS alice_note;

-- ------------------------------------------------------------ under a legal hold
-- Alice's access records are evidence: they stay, and so do her key and
-- her audit entries; the receipt says the erasure is not complete.
SELECT aegis.place_legal_hold('era.user_access_logs', 'resource = ''/b''', 'Case 7') AS hold \gset
SELECT r -> 'tables' -> 'era.user_access_logs' AS access_logs, r ->> 'complete' AS complete,
       r -> 'keys' AS keys, r ->> 'audit_entries_tombstoned' AS entries
FROM aegis.erase_subject('alice') r;
SELECT user_id, resource FROM era.user_access_logs ORDER BY id;
SELECT aegis.decrypt(:'alice_ct') AS alice_note_kept;
SELECT aegis.release_legal_hold(:hold);

-- ------------------------------------------------------------ the erasure
SELECT r -> 'tables' AS tables, r ->> 'complete' AS complete, r -> 'keys' ->> 'versions_destroyed_now' AS key_versions,
       r ->> 'audit_entries_tombstoned' <> '0' AS entries_tombstoned, r ? 'audit_entry_id' AS has_entry
FROM aegis.erase_subject('alice') r \gset era_
SELECT :'era_tables'::jsonb AS tables, :'era_complete' AS complete, :'era_key_versions' AS key_versions,
       :'era_entries_tombstoned' AS entries_tombstoned, :'era_has_entry' AS has_entry;
SELECT user_id, resource FROM era.user_access_logs ORDER BY id;
SELECT error_message, user_identifier, user_ip FROM era.error_logs ORDER BY id;
SELECT cause, reported_by, user_name FROM era.downtime_logs ORDER BY id;
SELECT incident_summary FROM era.incident_response_logs;
-- Crypto-shredding: her ciphertexts are gone for good, Bob's are not. (The
-- key's name derives from the cluster's master key: SQLSTATE only.)
\set VERBOSITY sqlstate
SELECT aegis.decrypt(:'alice_ct');
\set VERBOSITY terse
SELECT aegis.decrypt(:'bob_ct') AS bob_note;
-- The trail keeps every entry, but none holds her pseudonym or her name
-- (read as a superuser, who sees every image whole).
RESET ROLE;
SELECT count(*) AS entries_mentioning_alice FROM aegis.audit_log
WHERE aegis.mentions(concat_ws(' ', pk, old_row, new_row), 'alice')
   OR concat_ws(' ', pk, old_row, new_row) LIKE '%pseudonym:' || aegis.pseudonymize('alice') || '%';
SELECT count(*) > 0 AS bob_still_recorded FROM aegis.audit_log
WHERE concat_ws(' ', pk, old_row, new_row) LIKE '%pseudonym:' || aegis.pseudonymize('bob') || '%';
SELECT operation, table_name, old_row ->> 'user_id' AS user_id FROM aegis.audit_log
WHERE erased_at IS NOT NULL AND table_name = 'era.user_access_logs' ORDER BY id;
-- The receipt is an entry, and names the subject only by pseudonym.
SELECT detail ->> 'subject_pseudonym' = aegis.pseudonymize('alice') AS by_pseudonym,
       aegis.mentions(detail::text, 'alice') AS names_her, detail -> 'tables' ? 'era.user_access_logs' AS lists_tables
FROM aegis.audit_log WHERE operation = 'ERASURE' ORDER BY id DESC LIMIT 1;
SET ROLE era_admin;
-- Idempotent: a second request finds nothing left and says so.
SELECT r -> 'tables' AS tables, r ->> 'complete' AS complete, r -> 'keys' ->> 'already_forgotten' AS already_forgotten,
       r ->> 'audit_entries_tombstoned' AS entries
FROM aegis.erase_subject('alice') r;

-- ------------------------------------------------------------ attacks
-- The subject is a bound value, never SQL or a pattern.
SELECT r -> 'tables' AS tables FROM aegis.erase_subject($$bob' OR 'x'='x$$) r;
SELECT r -> 'tables' AS tables FROM aegis.erase_subject('%%%') r;
SELECT r -> 'tables' AS tables FROM aegis.erase_subject('.*.*') r;
SELECT count(*) AS bob_rows_intact FROM era.user_access_logs WHERE user_id = 'bob';
RESET ROLE;
-- A trigger of a table owner runs with the owner's own rights (a
-- security-restricted operation), never pg_aegis's: the escalation fails,
-- and with it the erasure, which changes nothing.
SET ROLE era_owner;
CREATE TABLE public.era_t (id int PRIMARY KEY, who text);
INSERT INTO era_t VALUES (1, 'dave');
CREATE FUNCTION public.era_escalate() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN EXECUTE 'ALTER ROLE era_owner SUPERUSER'; RETURN OLD;
   EXCEPTION WHEN insufficient_privilege THEN RAISE EXCEPTION 'ALTER ROLE era_owner SUPERUSER refused (%)', SQLSTATE; END $$;
CREATE TRIGGER era_escalate AFTER DELETE ON era_t FOR EACH ROW EXECUTE FUNCTION era_escalate();
RESET ROLE;
SELECT aegis.protect('public.era_t', '{"columns": {"who": "subject_id"}}');
SET ROLE era_admin;
SELECT aegis.erase_subject('dave');
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'era_owner';
SELECT count(*) AS dave_kept FROM era_t;
ROLLBACK;
