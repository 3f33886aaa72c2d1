-- Control: ciphertext never lands in a text column as hex (issue 18, item
-- 6). aegis.encrypt() returns bytea; an INSERT, UPDATE, INSERT ... ON
-- CONFLICT or MERGE that assigns it to a text or varchar column (which
-- PostgreSQL would do silently, through bytea's hex output) is refused
-- before it starts. The supported path: a bytea column, migrated in place.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE SCHEMA et;
CREATE TABLE et.media (mediaid int PRIMARY KEY, sendto varchar(1024) NOT NULL, note text, sendto_ct bytea);
INSERT INTO et.media VALUES (1, 'mary@example.com', NULL, NULL), (2, 'john@example.com', NULL, NULL);
SELECT aegis.create_key('et_key') IS NOT NULL AS key_created;
RESET client_min_messages;

-- The defect: each form of storing ciphertext in a string column is refused.
UPDATE et.media SET sendto = aegis.encrypt(sendto, 'et_key');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO et.media (mediaid, sendto) VALUES (3, aegis.encrypt('x@example.com', 'et_key'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO et.media (mediaid, sendto) VALUES (3, 'a'), (4, aegis.encrypt('x@example.com', 'et_key'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO et.media (mediaid, sendto) SELECT 5, aegis.encrypt('x@example.com', 'et_key');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO et.media (mediaid, sendto) VALUES (1, 'y')
    ON CONFLICT (mediaid) DO UPDATE SET note = aegis.encrypt(EXCLUDED.sendto, 'et_key');
\echo :LAST_ERROR_SQLSTATE
MERGE INTO et.media m USING (VALUES (2)) v(id) ON m.mediaid = v.id
    WHEN MATCHED THEN UPDATE SET note = aegis.encrypt_for_subject('john', m.sendto);
\echo :LAST_ERROR_SQLSTATE
WITH c AS (SELECT aegis.encrypt('x@example.com', 'et_key') AS ct)
UPDATE et.media SET note = (SELECT ct FROM c) WHERE mediaid = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FILTER (WHERE sendto LIKE '\\x%' OR note LIKE '\\x%') AS hex_stored FROM et.media;

-- The supported path: a bytea column, filled from the plaintext.
UPDATE et.media SET sendto_ct = aegis.encrypt(sendto, 'et_key', 'et.media.sendto');
SELECT mediaid, aegis.decrypt(sendto_ct, 'et.media.sendto') = sendto AS round_trip FROM et.media ORDER BY mediaid;
-- An explicit cast is the caller's choice; reading ciphertext as text is fine.
UPDATE et.media SET note = aegis.encrypt('x', 'et_key')::text WHERE mediaid = 2;
SELECT note LIKE '\\x%' AS explicit_hex FROM et.media WHERE mediaid = 2;
SELECT length(aegis.encrypt('x', 'et_key')::text) > 0 AS select_is_fine;
ROLLBACK;
