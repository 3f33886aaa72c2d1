-- pg_aegis bootstrap: runs first in CREATE EXTENSION, before any generated SQL.
-- The schema `aegis` is created by CREATE EXTENSION itself (control file:
-- schema = aegis), owned by the installing superuser.

-- Nothing in aegis is usable by PUBLIC unless a later file grants it.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;
-- Functions are executable by PUBLIC when created; 99_finalize.sql revokes that
-- from every function in the schema and grants back an explicit list. (Not
-- ALTER DEFAULT PRIVILEGES: that would outlive DROP EXTENSION.)

-- Schema squatting: with `schema = aegis` in the control file, CREATE EXTENSION
-- reuses an existing schema of that name. If an ordinary user created it first,
-- they would own the schema our functions land in and could replace them.
-- Refuse unless the schema is owned by a superuser.
DO $bootstrap$
DECLARE
    owner_name name;
    owner_super boolean;
BEGIN
    SELECT r.rolname, r.rolsuper INTO owner_name, owner_super
    FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
    WHERE n.nspname = 'aegis';
    IF NOT owner_super THEN
        RAISE EXCEPTION 'schema "aegis" is owned by non-superuser "%"', owner_name
            USING ERRCODE = '42501',
                  HINT = 'Drop that schema (after checking its contents) or transfer it to a superuser, then CREATE EXTENSION pg_aegis again.';
    END IF;
END
$bootstrap$;
