-- Control: pseudonyms are keyed (not a bare hash), deterministic and
-- joinable, distinct per value, stable across key rotation, and limited to
-- the roles that may compute them; anonymize_ip coarsens addresses.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE ps_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE ps_dev LOGIN IN ROLE aegis_developer;
RESET client_min_messages;
SELECT aegis.pseudonymize('alice');
\echo :LAST_ERROR_SQLSTATE
SET ROLE ps_admin;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS created;
RESET ROLE;
SELECT length(aegis.pseudonymize('alice@example.com')) AS len,
       aegis.pseudonymize('alice@example.com') = aegis.pseudonymize('alice@example.com') AS deterministic,
       aegis.pseudonymize('alice@example.com') <> aegis.pseudonymize('bob@example.com') AS distinct_values,
       aegis.pseudonymize('alice@example.com') <> left(encode(digest('alice@example.com', 'sha256'), 'hex'), 32) AS not_a_bare_hash,
       aegis.pseudonymize('alice@example.com') <> left(encode(hmac('alice@example.com', '', 'sha256'), 'hex'), 32) AS keyed,
       aegis.pseudonymize(NULL) IS NULL AS null_in_null_out;
-- Joinable: the same person gets the same pseudonym in every table.
CREATE TEMP TABLE a AS SELECT aegis.pseudonymize(u) AS p FROM (VALUES ('u1'), ('u2'), ('u3')) v(u);
CREATE TEMP TABLE b AS SELECT aegis.pseudonymize(u) AS p FROM (VALUES ('u2'), ('u3'), ('u4')) v(u);
SELECT count(*) AS joined FROM a JOIN b USING (p);
-- Stable across rotation (the oldest active version is used).
CREATE TEMP TABLE before AS SELECT aegis.pseudonymize('carol') AS p;
SET ROLE ps_admin;
SELECT aegis.rotate_key('pseudonym');
RESET ROLE;
SELECT p = aegis.pseudonymize('carol') AS stable_after_rotation FROM before;
-- Who may compute them: admins and collectors, not readers.
SET ROLE ps_dev;
SELECT aegis.pseudonymize('alice@example.com');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT aegis.pseudonymize('x', 'no_such_key');
\echo :LAST_ERROR_SQLSTATE

-- anonymize_ip
SELECT aegis.anonymize_ip('192.0.2.77') AS v4,
       aegis.anonymize_ip('192.0.2.77', 16) AS v4_16,
       aegis.anonymize_ip('2001:db8:1234:5678::1') AS v6,
       aegis.anonymize_ip('::ffff:192.0.2.77', 24, 120) AS v4_mapped_120,
       aegis.anonymize_ip('10.1.2.3/8') AS narrow_input,
       aegis.anonymize_ip(NULL) IS NULL AS null_in_null_out;
SELECT aegis.anonymize_ip('192.0.2.1', 33);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
