-- Control: the extension installs what it promises and nothing more.
-- Schema aegis, not relocatable; every function's volatility, strictness and
-- parallel safety as documented; no function executable by PUBLIC unless the
-- finalize script granted it on purpose.
\pset null '(null)'

SELECT extname, extrelocatable, n.nspname AS schema,
       extversion = aegis.version() AS version_matches
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'pg_aegis';

-- Every function in schema aegis, with its declared attributes.
SELECT p.oid::regprocedure AS function,
       p.provolatile AS vol, p.proisstrict AS strict, p.proparallel AS par,
       p.prosecdef AS secdef,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'aegis'
ORDER BY p.oid::regprocedure::text;

-- Every function not written in C pins an empty search_path (so no caller can
-- redirect an unqualified name), and every function has a comment.
SELECT p.oid::regprocedure AS function_without_search_path
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = 'aegis' AND l.lanname <> 'c'
  AND NOT coalesce('search_path=""' = ANY (p.proconfig), false)
ORDER BY 1;
SELECT p.oid::regprocedure AS function_without_comment
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'aegis' AND obj_description(p.oid, 'pg_proc') IS NULL
ORDER BY 1;

-- The group roles exist, hold no dangerous attributes, and are commented.
SELECT c.role_name, r.rolcanlogin, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb
       OR r.rolreplication OR r.rolbypassrls AS powerful, r.rolinherit,
       shobj_description(r.oid, 'pg_authid') LIKE 'pg_aegis group role: %' AS commented
FROM aegis.role_catalog() c LEFT JOIN pg_roles r ON r.rolname = c.role_name
ORDER BY c.role_name;
-- create_roles() is idempotent.
SELECT count(*) AS roles, count(*) FILTER (WHERE created) AS created_now FROM aegis.create_roles();

-- Every function belongs to the extension (so DROP EXTENSION removes it).
SELECT count(*) AS functions_outside_extension
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'aegis'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.objid = p.oid AND d.classid = 'pg_proc'::regclass
                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e');

-- PUBLIC may look the schema up but never create in it.
SELECT has_schema_privilege('public', 'aegis', 'USAGE') AS public_usage,
       has_schema_privilege('public', 'aegis', 'CREATE') AS public_create;

-- Loaded through shared_preload_libraries in the test cluster.
SELECT value AS preloaded FROM aegis.build_info() WHERE item = 'preloaded';
SELECT item FROM aegis.build_info() ORDER BY item;

-- Dropping and re-creating is clean (inside a transaction, undone after).
-- PostgreSQL keeps a control-file schema on DROP EXTENSION; it stays empty and
-- superuser-owned, and CREATE EXTENSION reuses it.
BEGIN;
DROP EXTENSION pg_aegis;
SELECT count(*) AS objects_left_in_aegis FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'aegis';
CREATE EXTENSION pg_aegis;
SELECT aegis.version() IS NOT NULL AS reinstalled;
ROLLBACK;
