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
