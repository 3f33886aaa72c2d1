-- Control: envelope encryption with the keyring. Round trips (text, bytea,
-- empty, large), AAD binding, rotation and online re-encryption, retirement,
-- decrypt authorization, and every bad input with its own SQLSTATE. Key
-- material never appears: the master key GUC is hidden and unsettable from
-- SQL, wrapped keys are unreadable to non-superusers.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SET client_min_messages = warning;
CREATE ROLE ex_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE ex_sec LOGIN IN ROLE aegis_security;
CREATE ROLE ex_dev LOGIN IN ROLE aegis_developer;
CREATE ROLE ex_auditor LOGIN IN ROLE aegis_auditor;
RESET client_min_messages;

-- Key management is admin-only.
SET ROLE ex_dev;
SELECT aegis.create_key('default');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE ex_admin;
SELECT aegis.create_key('default') IS NOT NULL AS created;
SELECT aegis.create_key('ip', 'aegis_security') IS NOT NULL AS created;
SELECT aegis.create_key('default');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.create_key('bad name; --');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Round trips: text, bytea, empty, non-ASCII, 100 MB.
SELECT aegis.decrypt(aegis.encrypt('disk full on /var')) AS text_rt,
       aegis.decrypt(aegis.encrypt('')) = '' AS empty_text_rt,
       aegis.decrypt_bytea(aegis.encrypt('\x00ff00'::bytea)) = '\x00ff00'::bytea AS bytea_rt,
       aegis.decrypt_bytea(aegis.encrypt(''::bytea)) = ''::bytea AS empty_bytea_rt,
       aegis.decrypt(aegis.encrypt('Grüße ☃', 'default', 'k')::bytea, 'k') AS utf8_rt,
       aegis.decrypt(aegis.encrypt(repeat('x', 100000000))) = repeat('x', 100000000) AS hundred_mb_rt;
-- Envelope: 52 bytes of overhead, fresh nonce each time, documented header.
SELECT length(aegis.encrypt('hello')) AS len_for_5_bytes,
       aegis.encrypt('hello') <> aegis.encrypt('hello') AS nondeterministic,
       substr(aegis.encrypt('hello'), 1, 4) = '\x41454701'::bytea AS magic_and_version;
-- NULL in, NULL out.
SELECT aegis.encrypt(NULL::text) IS NULL AS null_data, aegis.decrypt(NULL) IS NULL AS null_ct,
       aegis.decrypt_bytea(NULL) IS NULL AS null_ct_bytea, aegis.reencrypt(NULL) IS NULL AS null_reencrypt;
SELECT aegis.encrypt('x', NULL);
\echo :LAST_ERROR_SQLSTATE

-- AAD binds a ciphertext to its place.
CREATE TEMP TABLE vault(id int, ct bytea);
INSERT INTO vault VALUES (1, aegis.encrypt('198.51.100.7', 'ip', 'vault.ct:1'));
SELECT aegis.decrypt(ct, 'vault.ct:' || id) AS right_place FROM vault;
SELECT aegis.decrypt(ct, 'vault.ct:2') FROM vault;
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(ct) FROM vault;
\echo :LAST_ERROR_SQLSTATE

-- Bad ciphertexts: each has its own SQLSTATE, none crashes.
SELECT aegis.decrypt('\x'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt('\x414547'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(substr(aegis.encrypt('hello'), 1, 40));
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(overlay(aegis.encrypt('hello') PLACING '\x02'::bytea FROM 4));
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(overlay(aegis.encrypt('hello') PLACING '\xff'::bytea FROM 40));
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(overlay(aegis.encrypt('hello') PLACING '\x00000000000000000000000000000000'::bytea FROM 5));
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.encrypt('x', 'no_such_key');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.decrypt(aegis.encrypt('\xff00'::bytea));
\echo :LAST_ERROR_SQLSTATE

-- Authorization: only the key's decrypt_role and aegis_admin may decrypt.
GRANT SELECT ON vault TO PUBLIC;
SET ROLE ex_sec;
SELECT aegis.decrypt(ct, 'vault.ct:1') AS security_reads FROM vault;
RESET ROLE;
SET ROLE ex_admin;
SELECT aegis.decrypt(ct, 'vault.ct:1') AS admin_reads FROM vault;
RESET ROLE;
SET ROLE ex_dev;
SELECT aegis.decrypt(ct, 'vault.ct:1') FROM vault;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Decrypting is a privilege of the role, like table privileges: a NOINHERIT
-- member must SET ROLE to it first.
CREATE ROLE ex_noinherit LOGIN NOINHERIT IN ROLE aegis_security;
SET SESSION AUTHORIZATION ex_noinherit;
SELECT aegis.decrypt(ct, 'vault.ct:1') FROM vault;
\echo :LAST_ERROR_SQLSTATE
SET ROLE aegis_security;
SELECT aegis.decrypt(ct, 'vault.ct:1') AS after_set_role FROM vault;
RESET SESSION AUTHORIZATION;

-- Rotation: old data still decrypts; reencrypt moves it to the current
-- version; then the old version can be retired, and what was not moved stops
-- decrypting with a clear error.
CREATE TEMP TABLE rot(ct bytea);
INSERT INTO rot SELECT aegis.encrypt('row ' || g, 'ip') FROM generate_series(1, 5) g;
SET ROLE ex_admin;
SELECT aegis.rotate_key('ip') AS new_version;
SELECT aegis.retire_key_version('ip', 2);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) FILTER (WHERE aegis.decrypt(ct) LIKE 'row %') AS v1_still_decrypts FROM rot;
SELECT get_byte(ct, 23) AS version_before FROM rot LIMIT 1;
UPDATE rot SET ct = aegis.reencrypt(ct) WHERE ctid IN (SELECT ctid FROM rot LIMIT 4);
SELECT get_byte(ct, 23) AS version, count(*) FROM rot GROUP BY 1 ORDER BY 1;
SET ROLE ex_admin;
SELECT aegis.retire_key_version('ip', 1);
RESET ROLE;
SELECT count(*) FILTER (WHERE aegis.decrypt(ct) LIKE 'row %') AS moved_rows_decrypt FROM rot WHERE get_byte(ct, 23) = 2;
SELECT aegis.decrypt(ct) FROM rot WHERE get_byte(ct, 23) = 1;
\echo :LAST_ERROR_SQLSTATE
SET ROLE ex_auditor;
SELECT name, version, status, is_current, decrypt_role FROM aegis.keys_overview() ORDER BY name, version;
RESET ROLE;

-- Anyone may encrypt; 'default' has no decrypt_role, so only admins decrypt it.
SET ROLE ex_dev;
SELECT aegis.encrypt('mine') IS NOT NULL AS dev_can_encrypt;
SELECT aegis.decrypt(aegis.encrypt('mine'));
\echo :LAST_ERROR_SQLSTATE
-- No key material from SQL: wrapped keys, the master key setting, new keys.
SELECT wrapped_key FROM aegis.keys;
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.new_wrapped_key(gen_random_uuid(), 1);
\echo :LAST_ERROR_SQLSTATE
-- (PostgreSQL words this refusal differently by version: its SQLSTATE only.)
\set VERBOSITY sqlstate
SHOW aegis.master_key_file;
\set VERBOSITY terse
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS master_key_settings_listed FROM pg_settings WHERE name LIKE 'aegis.master_key%';
SET aegis.master_key_file = '/tmp/other.key';
\echo :LAST_ERROR_SQLSTATE
-- The keyring is read with the extension owner's rights: a user's operators
-- must never be picked up by those queries (that would run the user's code
-- as a superuser). Shadow = for uuid, int and text in a schema first on the
-- search_path, then call every entry point with a cache miss.
CREATE SCHEMA ex_evil AUTHORIZATION ex_dev;
SET ROLE ex_dev;
CREATE FUNCTION ex_evil.eq_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked as %', current_user; RETURN false; END $$;
CREATE FUNCTION ex_evil.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked as %', current_user; RETURN false; END $$;
CREATE FUNCTION ex_evil.eq_name(name, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked as %', current_user; RETURN false; END $$;
CREATE OPERATOR ex_evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = ex_evil.eq_uuid);
CREATE OPERATOR ex_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = ex_evil.eq_text);
CREATE OPERATOR ex_evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = ex_evil.eq_name);
SET search_path = ex_evil, pg_catalog;
SELECT aegis.decrypt(overlay(aegis.encrypt('x') PLACING '\x11111111111111111111111111111111'::bytea FROM 5));
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.encrypt('x', 'ip') IS NOT NULL AS encrypted_without_hijack;
SELECT aegis.encrypt('x', 'never_created');
\echo :LAST_ERROR_SQLSTATE
RESET search_path;
RESET ROLE;
SET ROLE ex_admin;
SELECT name, key_id IS NOT NULL AS has_id FROM aegis.keys ORDER BY name, version LIMIT 1;
SELECT wrapped_key FROM aegis.keys;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ROLLBACK;
