-- Control: crypto-shredding. Each subject gets its own key (created on first
-- use, named without revealing the subject); forget_subject() destroys it,
-- after which every ciphertext of that subject fails with a clear error
-- (never garbage), other subjects are untouched, and the call is idempotent
-- with a receipt. Only admins may find or destroy subject keys.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE cs_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE cs_ingest LOGIN IN ROLE aegis_ingest;
CREATE ROLE cs_dev LOGIN IN ROLE aegis_developer;
RESET client_min_messages;

CREATE TEMP TABLE notes(subject text, ct bytea);
GRANT INSERT, SELECT ON notes TO PUBLIC;
SET ROLE cs_ingest;
INSERT INTO notes SELECT s, aegis.encrypt_for_subject(s, 'note ' || g || ' about ' || s)
FROM (VALUES ('alice@example.com'), ('bob@example.com')) v(s), generate_series(1, 3) g;
RESET ROLE;
-- Exactly one key per subject; names do not contain the subject.
SELECT count(*) AS subject_keys, bool_and(name LIKE 'subject:%') AS named_by_index,
       bool_and(name NOT LIKE '%alice%' AND name NOT LIKE '%bob%') AS subject_not_revealed
FROM aegis.keys WHERE name LIKE 'subject:%';
SELECT aegis.subject_key_name('alice@example.com') = aegis.subject_key_name('alice@example.com') AS stable_name,
       aegis.subject_key_name('alice@example.com') <> aegis.subject_key_name('bob@example.com') AS distinct_names;
-- Admins decrypt; others may not.
SET ROLE cs_admin;
SELECT subject, aegis.decrypt(ct) AS note FROM notes ORDER BY 1, 2;
RESET ROLE;
SET ROLE cs_dev;
-- (Key names depend on the cluster's master key, so these two errors print
-- only their SQLSTATE; the message names the key, not the subject.)
\set VERBOSITY sqlstate
SELECT aegis.decrypt(ct) FROM notes LIMIT 1;
\set VERBOSITY terse
SELECT position('alice' IN :'LAST_ERROR_MESSAGE') = 0 AS message_does_not_name_subject;
SELECT aegis.forget_subject('alice@example.com');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.subject_key_name('alice@example.com');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Forget alice: her notes become unreadable, bob's are not.
SET ROLE cs_admin;
SELECT receipt - 'at' - 'subject_key' AS receipt, receipt ? 'at' AS has_time
FROM aegis.forget_subject('alice@example.com') receipt;
\set VERBOSITY sqlstate
SELECT aegis.decrypt(ct) FROM notes WHERE subject = 'alice@example.com' LIMIT 1;
\set VERBOSITY terse
SELECT regexp_replace(:'LAST_ERROR_MESSAGE', 'subject:[0-9a-f]{32}', 'subject:<index>') AS error;
SELECT count(*) AS bob_notes_readable FROM notes WHERE subject = 'bob@example.com' AND aegis.decrypt(ct) LIKE 'note %';
-- Idempotent.
SELECT receipt - 'at' - 'subject_key' AS receipt FROM aegis.forget_subject('alice@example.com') receipt;
-- A subject never seen: nothing to destroy.
SELECT receipt - 'at' - 'subject_key' AS receipt FROM aegis.forget_subject('nobody@example.com') receipt;
-- No key bytes are left for alice anywhere in the keyring.
RESET ROLE;
SELECT count(*) FILTER (WHERE wrapped_key IS NOT NULL) AS alice_key_bytes_left,
       count(*) FILTER (WHERE status = 'destroyed') AS destroyed_versions
FROM aegis.keys WHERE name = aegis.subject_key_name('alice@example.com');
-- New data about alice later gets a new key version; the old data stays lost.
SET ROLE cs_ingest;
INSERT INTO notes VALUES ('alice@example.com', aegis.encrypt_for_subject('alice@example.com', 'after erasure'));
RESET ROLE;
SET ROLE cs_admin;
SELECT count(*) FILTER (WHERE get_byte(ct, 23) = 2 AND aegis.decrypt(ct) = 'after erasure') AS new_note_readable
FROM notes WHERE subject = 'alice@example.com' AND get_byte(ct, 23) = 2;
RESET ROLE;
SELECT aegis.encrypt_for_subject(NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.encrypt_for_subject('carol', NULL) IS NULL AS null_data_null_out;
ROLLBACK;
