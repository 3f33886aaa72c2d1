-- Group roles of the policy pack: cluster-wide NOLOGIN roles that DBAs grant to
-- people (GRANT aegis_developer TO alice). Created idempotently, never dropped
-- by pg_aegis (DROP EXTENSION leaves them, since other databases may use them).
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

CREATE FUNCTION aegis.role_catalog()
RETURNS TABLE(role_name name, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    VALUES
        ('aegis_admin'::name, 'read and change all logs and metrics, mark errors resolved, delete logs, configure retention, keys and policies'),
        ('aegis_developer', 'read downtime and error logs for troubleshooting (SECURITY_BREACH rows hidden); never writes; no cost data'),
        ('aegis_oncall', 'read downtime/error logs and alerts only for servers currently assigned to them'),
        ('aegis_devops', 'read and write server metrics (SELECT, INSERT, UPDATE); no cost data'),
        ('aegis_auditor', 'read-only on all logs and alerts (incident details masked); never writes'),
        ('aegis_security', 'read SECURITY_BREACH error logs and full incident details'),
        ('aegis_finance', 'read cost data; the only role that sees it'),
        ('aegis_operations', 'read aggregated metrics (peak network usage masked)'),
        ('aegis_app', 'read metrics of servers it owns (servers.owner_role)'),
        ('aegis_incident_viewer', 'read incidents (summary and root cause masked)'),
        ('aegis_incident_editor', 'insert and update incidents, never delete or archive'),
        ('aegis_incident_admin', 'insert, update, delete and archive incidents, full details'),
        ('aegis_ingest', 'insert-only writer for collectors (logs, metrics); cannot read back'),
        ('aegis_masking_owner', 'internal: owns the masking views; NOBYPASSRLS; grant it to nobody')
$$;
COMMENT ON FUNCTION aegis.role_catalog() IS 'The group roles pg_aegis manages and what each may do';

-- Creates the missing roles; returns every role with whether it was created.
-- SECURITY INVOKER: creating roles needs CREATEROLE, which the caller (the
-- superuser running CREATE EXTENSION, or a DBA) must have.
-- A role that already exists is adopted only if it is harmless: NOLOGIN, not
-- superuser, no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS. Otherwise someone
-- may have pre-created it to collect the privileges we are about to grant.
CREATE FUNCTION aegis.create_roles()
RETURNS TABLE(role_name name, created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    r record;
    existing record;
BEGIN
    FOR r IN SELECT c.role_name FROM aegis.role_catalog() c LOOP
        SELECT a.rolcanlogin, a.rolsuper, a.rolcreaterole, a.rolcreatedb,
               a.rolreplication, a.rolbypassrls
          INTO existing
          FROM pg_catalog.pg_roles a WHERE a.rolname = r.role_name;
        IF NOT FOUND THEN
            EXECUTE pg_catalog.format(
                'CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT',
                r.role_name);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r.role_name,
                'pg_aegis group role: ' || (SELECT c.description FROM aegis.role_catalog() c
                                           WHERE c.role_name = r.role_name));
            role_name := r.role_name; created := true;
        ELSIF existing.rolcanlogin OR existing.rolsuper OR existing.rolcreaterole
              OR existing.rolcreatedb OR existing.rolreplication OR existing.rolbypassrls THEN
            RAISE EXCEPTION 'role "%" already exists with powers a pg_aegis group role must not have', r.role_name
                USING ERRCODE = '42501',
                      HINT = 'Make it NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS, after checking who created it and its members.';
        ELSE
            role_name := r.role_name; created := false;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.create_roles() IS
    'Create the pg_aegis group roles that do not exist yet (idempotent); never drops any';

SELECT count(*) FROM aegis.create_roles();
