-- Control: least privilege around the extension itself.
-- Attacks tried here, each must fail:
--   * a non-superuser turns on legacy (broken) hashes for their session
--   * a non-superuser reads deployment details through build_info()
--   * a non-superuser plants or replaces objects in schema aegis
--   * schema squatting: a user pre-creates schema "aegis" so that a later
--     CREATE EXTENSION puts our functions in a schema the attacker owns
--   * search_path shadowing of aegis functions by a user's own schema
\set VERBOSITY terse
-- After each refused statement, psql echoes its SQLSTATE (LAST_ERROR_SQLSTATE).
\set SHOW_CONTEXT never

CREATE ROLE aegis_regress_mallory LOGIN;
GRANT CREATE ON DATABASE aegis_regress TO aegis_regress_mallory;

SET ROLE aegis_regress_mallory;
-- Allowed: hashing is public, as in pgcrypto.
SELECT aegis.digest('abc', 'sha256') = '\xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'::bytea AS can_hash;
SELECT aegis.version() IS NOT NULL AS can_read_version;
-- Denied: superuser-only GUC.
SET aegis.allow_legacy_hashes = on;
\echo :LAST_ERROR_SQLSTATE
SHOW aegis.allow_legacy_hashes;
SELECT aegis.digest('abc', 'md5');
\echo :LAST_ERROR_SQLSTATE
-- Denied: build_info is not granted to PUBLIC.
SELECT * FROM aegis.build_info();
\echo :LAST_ERROR_SQLSTATE
-- Denied: creating or replacing anything in schema aegis.
CREATE FUNCTION aegis.digest(data bytea, type text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\x00'::bytea $$;
CREATE TABLE aegis.stolen(x int);
\echo :LAST_ERROR_SQLSTATE
DROP FUNCTION aegis.digest(bytea, text);
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION aegis.hmac(bytea, bytea, text) SECURITY DEFINER;
-- Shadowing through search_path only affects the attacker's own unqualified
-- calls; schema-qualified aegis.digest still reaches the real function.
CREATE SCHEMA mallory;
CREATE FUNCTION mallory.digest(bytea, text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\x00'::bytea $$;
SET search_path = mallory, aegis, public;
SELECT aegis.digest('abc'::bytea, 'sha256') <> '\x00'::bytea AS qualified_call_is_real;
RESET search_path;
RESET ROLE;

-- Schema squatting before CREATE EXTENSION must be refused (42501).
BEGIN;
DROP EXTENSION pg_aegis;
DROP SCHEMA aegis;  -- DROP EXTENSION keeps the schema; remove it to let mallory squat
SET ROLE aegis_regress_mallory;
CREATE SCHEMA aegis;
CREATE FUNCTION aegis.trap() RETURNS int LANGUAGE sql AS 'SELECT 1';
RESET ROLE;
SAVEPOINT squat;
CREATE EXTENSION pg_aegis;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT squat;
SELECT count(*) AS aegis_functions_installed
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'aegis' AND p.proname = 'digest';
ROLLBACK;

-- After all that, the real extension is intact.
SELECT aegis.digest('abc', 'sha256') = digest('abc', 'sha256') AS intact;

DROP SCHEMA mallory CASCADE;
REVOKE CREATE ON DATABASE aegis_regress FROM aegis_regress_mallory;
DROP ROLE aegis_regress_mallory;
