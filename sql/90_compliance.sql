-- The compliance self-check: every control pg_aegis can verify from inside
-- the database, its status, why, what to do, and which SOC 2, ISO 27001 and
-- GDPR requirements it evidences.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

-- Internal: whether the master key is configured and loads (never the key
-- or the file's path).
CREATE FUNCTION aegis.master_key_status() RETURNS jsonb LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'master_key_status_wrapper';
COMMENT ON FUNCTION aegis.master_key_status() IS
    'Internal: is the master key configured (file or command), and does it load (file owner and mode 600)?';

-- Which requirement each control evidences. Data, so auditors can read the
-- mapping itself (SOC 2 Trust Services Criteria 2017; ISO/IEC 27001:2022
-- Annex A; GDPR articles).
CREATE FUNCTION aegis.compliance_mapping()
RETURNS TABLE(control text, soc2 text, iso27001 text, gdpr text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    VALUES
    ('tls.ssl_enabled',            'CC6.7',        'A.8.24, A.8.20',  'Art. 32(1)(a)'),
    ('tls.hba_hostssl_only',       'CC6.7',        'A.8.20, A.8.21',  'Art. 32(1)(a)'),
    ('auth.password_encryption',   'CC6.1',        'A.5.17, A.8.5',   'Art. 32(1)(b)'),
    ('access.rls_forced',          'CC6.1, CC6.3', 'A.5.15, A.8.3',   'Art. 25(2), Art. 32(1)(b)'),
    ('access.no_public_grants',    'CC6.1, CC6.3', 'A.5.15, A.8.3',   'Art. 25(2)'),
    ('access.privileged_members',  'CC6.2, CC6.3', 'A.8.2, A.5.18',   'Art. 32(1)(b)'),
    ('access.replication',         'CC6.1, CC6.6', 'A.8.2, A.8.3',    'Art. 32(1)(b), Art. 44'),
    ('keys.master_key',            'CC6.1',        'A.8.24',          'Art. 32(1)(a)'),
    ('keys.rotation_age',          'CC6.1',        'A.8.24',          'Art. 32(1)(a)'),
    ('audit.chain_verifies',       'CC7.2, CC4.1', 'A.8.15, A.5.28',  'Art. 5(2), Art. 30'),
    ('audit.sealed_recently',      'CC7.2',        'A.8.15, A.8.16',  'Art. 5(2)'),
    ('audit.read_auditing',        'CC7.2',        'A.8.15',          'Art. 5(2), Art. 32(1)(d)'),
    ('lifecycle.retention_applied','C1.2',         'A.5.33, A.8.10',  'Art. 5(1)(e), Art. 17'),
    ('classification.complete',    'C1.1',         'A.5.12, A.5.9',   'Art. 30, Art. 25(1)')
$$;
COMMENT ON FUNCTION aegis.compliance_mapping() IS
    'The SOC 2 / ISO 27001 / GDPR requirements each compliance_report() control evidences';

-- SECURITY DEFINER: the checks read what only superusers may (pg_hba rules,
-- password hashes' format, the master key's file, the seal state); the
-- report returns verdicts and names (roles, tables, columns, hba lines),
-- never secrets. Takes no input. EXECUTE: aegis_admin, aegis_auditor.
CREATE FUNCTION aegis.compliance_report()
RETURNS TABLE(control text, status text, detail text, remediation text, evidence_for text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    members oid[];
    protected oid[];
    names text[];
    supers text[];
    bad text;
    n bigint;
    m bigint;
    t timestamptz;
    v record;
    mk jsonb;
    c record;
BEGIN
    -- The aegis roles and every role that is a member of one, however
    -- indirectly (pg_auth_members: superusers are not members by default).
    WITH RECURSIVE r(oid) AS (
        SELECT a.oid FROM pg_catalog.pg_authid a WHERE a.rolname LIKE 'aegis\_%'
        UNION
        SELECT m.member FROM pg_catalog.pg_auth_members m JOIN r ON m.roleid = r.oid
    )
    SELECT pg_catalog.array_agg(r.oid) INTO members FROM r;
    -- Protected tables and their partitions.
    protected := ARRAY(SELECT e.relid::oid FROM aegis.rls_enforced e
                       UNION SELECT pt.relid FROM aegis.rls_enforced e, pg_catalog.pg_partition_tree(e.relid) pt);

    FOR c IN SELECT * FROM aegis.compliance_mapping() LOOP
        control := c.control;
        evidence_for := pg_catalog.format('SOC 2 %s | ISO 27001 %s | GDPR %s', c.soc2, c.iso27001, c.gdpr);
        remediation := NULL;
        CASE c.control
        WHEN 'tls.ssl_enabled' THEN
            IF pg_catalog.current_setting('ssl') = 'on' THEN
                status := 'pass'; detail := 'ssl = on';
            ELSE
                status := 'fail'; detail := 'ssl = off: connections are not encrypted';
                remediation := 'Set ssl = on with ssl_cert_file and ssl_key_file in postgresql.conf and reload.';
            END IF;
        WHEN 'tls.hba_hostssl_only' THEN
            -- A host/hostnossl rule that admits aegis roles (by name, +group,
            -- or "all") lets them in without TLS, unless an earlier
            -- "hostnossl all all ... reject" line catches those connections.
            SELECT pg_catalog.string_agg(pg_catalog.format('line %s: %s %s %s %s %s', h.line_number, h.type,
                       pg_catalog.array_to_string(h.database, ','), pg_catalog.array_to_string(h.user_name, ','),
                       COALESCE(h.address, 'all'), h.auth_method), '; ' ORDER BY h.line_number)
            INTO bad
            FROM pg_catalog.pg_hba_file_rules h
            WHERE h.error IS NULL AND h.type IN ('host', 'hostnossl') AND h.auth_method <> 'reject'
              AND (h.user_name @> '{all}'
                   OR EXISTS (SELECT 1 FROM pg_catalog.unnest(h.user_name) u
                              JOIN pg_catalog.pg_authid a ON a.rolname = pg_catalog.ltrim(u, '+')
                              WHERE a.oid = ANY (members)))
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_hba_file_rules e
                              WHERE e.error IS NULL AND e.line_number < h.line_number AND e.type = 'hostnossl'
                                AND e.auth_method = 'reject' AND e.database @> '{all}' AND e.user_name @> '{all}');
            IF bad IS NULL THEN
                status := 'pass'; detail := 'no pg_hba.conf rule admits aegis roles without TLS';
            ELSE
                status := 'fail'; detail := 'non-TLS connections allowed: ' || bad;
                remediation := 'Use hostssl for these lines (or add "hostnossl all all 0.0.0.0/0 reject" and "hostnossl all all ::/0 reject" first), then reload.';
            END IF;
        WHEN 'auth.password_encryption' THEN
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) INTO names
            FROM pg_catalog.pg_authid a
            WHERE a.oid = ANY (members) AND a.rolpassword IS NOT NULL AND a.rolpassword NOT LIKE 'SCRAM-SHA-256$%';
            -- The server's (or role's and database's) setting, not a SET in
            -- this session.
            SELECT s.reset_val INTO bad FROM pg_catalog.pg_settings s WHERE s.name = 'password_encryption';
            IF bad <> 'scram-sha-256' THEN
                status := 'fail';
                detail := pg_catalog.format('password_encryption = %s', bad);
                remediation := 'Set password_encryption = scram-sha-256, reload, and have the roles set their passwords again.';
            ELSIF names IS NOT NULL THEN
                status := 'fail';
                detail := 'roles with a non-SCRAM password: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Have these roles set their password again (\password in psql) now that scram-sha-256 is the default.';
            ELSE
                status := 'pass'; detail := 'password_encryption = scram-sha-256; no aegis role has an older password hash';
            END IF;
        WHEN 'access.rls_forced' THEN
            SELECT pg_catalog.count(*), pg_catalog.array_agg(x.relid::regclass::text ORDER BY x.relid::regclass::text)
                       FILTER (WHERE NOT (k.relrowsecurity AND k.relforcerowsecurity))
            INTO n, names
            FROM pg_catalog.unnest(protected) x(relid)
            JOIN pg_catalog.pg_class k ON k.oid = x.relid;
            IF names IS NULL THEN
                status := CASE WHEN n = 0 THEN 'warn' ELSE 'pass' END;
                detail := CASE WHEN n = 0 THEN 'no protected tables' ELSE pg_catalog.format('%s protected tables and partitions: RLS enabled and forced', n) END;
                remediation := CASE WHEN n = 0 THEN 'Protect the tables holding monitoring data: SELECT aegis.protect(''<table>'');' END;
            ELSE
                status := 'fail'; detail := 'RLS not enabled and forced on: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'SELECT aegis.protect(''<table>'') again for each (it enables and forces RLS).';
            END IF;
        WHEN 'access.no_public_grants' THEN
            SELECT pg_catalog.array_agg(DISTINCT x.relid::regclass::text) INTO names
            FROM pg_catalog.unnest(protected) x(relid)
            JOIN pg_catalog.pg_class k ON k.oid = x.relid
            WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(k.relacl) g WHERE g.grantee = 0);
            IF names IS NULL THEN
                status := 'pass'; detail := 'no protected table grants anything to PUBLIC';
            ELSE
                status := 'fail'; detail := 'PUBLIC has privileges on: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'REVOKE ALL ON <table> FROM PUBLIC; grant the aegis roles what they need instead.';
            END IF;
        WHEN 'access.privileged_members' THEN
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) FILTER (WHERE a.rolbypassrls AND NOT a.rolsuper),
                   pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) FILTER (WHERE a.rolsuper)
            INTO names, supers
            FROM pg_catalog.pg_authid a WHERE a.oid = ANY (members);
            IF names IS NOT NULL THEN
                status := 'fail';
                detail := 'BYPASSRLS members of aegis roles (row-level security does not apply to them): '
                          || pg_catalog.array_to_string(names, ', ');
                remediation := 'ALTER ROLE <role> NOBYPASSRLS, or take it out of the aegis roles.';
            ELSIF supers IS NOT NULL THEN
                status := 'warn';
                detail := 'superusers that are members of aegis roles: ' || pg_catalog.array_to_string(supers, ', ');
                remediation := 'Give day-to-day work to non-superuser members; keep superusers out of the aegis roles.';
            ELSE
                status := 'pass'; detail := 'no superuser or BYPASSRLS role is a member of an aegis role';
            END IF;
        WHEN 'access.replication' THEN
            -- A REPLICATION login streams the whole cluster (or decodes
            -- every change through a logical slot) past row-level security
            -- and read auditing; a logical slot of this database holds
            -- protected rows for whoever reads it; a publication of a
            -- protected table sends its rows to subscribers, whose apply
            -- worker writes them with triggers off.
            SELECT pg_catalog.array_agg(a.rolname::text ORDER BY a.rolname) INTO names
            FROM pg_catalog.pg_authid a WHERE a.rolreplication AND NOT a.rolsuper;
            SELECT pg_catalog.array_agg(s.slot_name::text ORDER BY s.slot_name) INTO supers
            FROM pg_catalog.pg_replication_slots s
            WHERE s.slot_type = 'logical' AND s.database = pg_catalog.current_database();
            SELECT pg_catalog.string_agg(DISTINCT pub.pubname::text, ', ') INTO bad
            FROM pg_catalog.pg_publication pub
            WHERE pub.puballtables
               OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                          WHERE pt.pubname = pub.pubname
                            AND pg_catalog.format('%I.%I', pt.schemaname, pt.tablename)::regclass::oid = ANY (protected));
            IF names IS NOT NULL OR supers IS NOT NULL THEN
                status := 'fail';
                detail := pg_catalog.concat_ws('; ',
                    'non-superuser roles with REPLICATION (they can read every protected row through the replication protocol, unaudited): '
                        || pg_catalog.array_to_string(names, ', '),
                    'logical replication slots in this database (they decode every change to protected tables): '
                        || pg_catalog.array_to_string(supers, ', '),
                    'publications covering protected tables: ' || bad);
                remediation := 'ALTER ROLE <role> NOREPLICATION for roles that do not run a replica; drop slots no replica uses (pg_drop_replication_slot).';
            ELSIF bad IS NOT NULL THEN
                status := 'warn';
                detail := 'publications covering protected tables (subscribers receive their rows; a subscriber''s apply worker writes with triggers off, so its verify_table() reports rows with no entry): ' || bad;
                remediation := 'Protect the tables on the subscriber as well, and treat it as holding the same personal data.';
            ELSE
                status := 'pass'; detail := 'no non-superuser REPLICATION role, no logical slot in this database, no publication of a protected table';
            END IF;
        WHEN 'keys.master_key' THEN
            mk := aegis.master_key_status();
            IF (mk ->> 'ok')::boolean THEN
                status := 'pass'; detail := pg_catalog.format('master key from a %s; it loads', mk ->> 'source');
            ELSIF (mk ->> 'configured')::boolean THEN
                status := 'fail'; detail := 'the master key does not load: ' || (mk ->> 'problem');
                remediation := 'The key file must be owned by the server''s user, mode 600, holding 64 hex digits (or the command must print them).';
            ELSE
                status := 'fail'; detail := 'no master key configured: no column encryption, pseudonyms or signed heads';
                remediation := 'Set aegis.master_key_file (or aegis.master_key_command) in postgresql.conf and reload.';
            END IF;
        WHEN 'keys.rotation_age' THEN
            SELECT k.total, k.stale INTO n, names FROM aegis.stale_keys(interval '365 days') k;
            IF names IS NULL THEN
                status := 'pass'; detail := pg_catalog.format('%s keys, every current version younger than 365 days', n);
            ELSE
                status := 'warn'; detail := 'current version older than 365 days: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'SELECT aegis.rotate_key(''<name>''); then re-encrypt with aegis.reencrypt() and retire the old version.';
            END IF;
        WHEN 'audit.chain_verifies' THEN
            -- Incremental: the entries sealed since the last verification
            -- (the first time, all of them); verify_chain() checks all.
            SELECT * INTO v FROM aegis.verify_chain_incremental();
            IF v.ok THEN
                status := 'pass';
                detail := CASE WHEN v.verified_from > 1
                               THEN pg_catalog.format('%s entries sealed since position %s verify (earlier ones verified before; aegis.verify_chain() checks them all)',
                                                      v.entries_checked, v.verified_from)
                               ELSE pg_catalog.format('%s sealed entries verify', v.entries_checked) END;
            ELSE
                status := 'fail';
                detail := pg_catalog.format('at position %s: %s', v.first_bad_position, v.problem);
                remediation := 'Investigate now: compare with a head saved outside the database (aegis.verify_chain(head)) and the server log.';
            END IF;
        WHEN 'audit.sealed_recently' THEN
            SELECT u.entries INTO n FROM aegis.unsealed_entries(interval '10 minutes') u;
            SELECT s.sealed_at INTO t FROM aegis.audit_seal_state s;
            IF n = 0 THEN
                status := 'pass';
                detail := COALESCE('last sealed ' || t::text, 'nothing waiting to be sealed') || '; no entry waits longer than 10 minutes';
            ELSE
                status := 'fail'; detail := pg_catalog.format('%s entries older than 10 minutes are not sealed', n);
                remediation := 'Add this database to aegis.seal_databases (library preloaded) or run SELECT aegis.seal(); on a schedule.';
            END IF;
        WHEN 'audit.read_auditing' THEN
            SELECT pg_catalog.array_agg(p.relid::text ORDER BY p.relid::text) INTO names
            FROM aegis.protected_tables p WHERE (p.policy ->> 'audit_reads')::boolean;
            IF EXISTS (SELECT 1 FROM aegis.build_info() b WHERE b.item = 'preloaded' AND b.value = 'true') THEN
                status := 'pass';
                detail := CASE WHEN pg_catalog.current_setting('aegis.audit_reads', true) = 'on'
                               THEN 'reads of every protected table are recorded (aegis.audit_reads = on)'
                               ELSE 'reads recorded for: ' || COALESCE(pg_catalog.array_to_string(names, ', '), 'no table asks for it') END
                          || COALESCE('; the application roles'' reads counted per interval (aegis.application_read_interval) for: '
                                      || (SELECT pg_catalog.string_agg(p.relid::text, ', ' ORDER BY p.relid::text)
                                                      FROM aegis.protected_tables p WHERE p.policy ->> 'application_reads' = 'aggregate'), '');
            ELSIF names IS NULL THEN
                status := 'pass'; detail := 'no table asks for read auditing';
            ELSE
                status := 'fail';
                detail := 'pg_aegis is not preloaded: reads of these tables are not recorded: ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Set shared_preload_libraries = ''pg_aegis'' in postgresql.conf and restart.';
            END IF;
        WHEN 'lifecycle.retention_applied' THEN
            SELECT pg_catalog.count(*), pg_catalog.sum(r.rows_affected),
                   pg_catalog.array_agg(pg_catalog.format('%s: %s', r.table_name, COALESCE(r.rows_affected::text, 'policy cannot run'))
                                        ORDER BY r.table_name) FILTER (WHERE r.rows_affected IS DISTINCT FROM 0)
            INTO n, m, names
            FROM aegis.apply_retention(dry_run => true) r;
            IF n = 0 THEN
                status := 'warn'; detail := 'no retention policies: data is kept for ever';
                remediation := 'SELECT aegis.set_retention(''<table>'', ''<period>'', ''<time column>'');';
            ELSIF names IS NULL THEN
                status := 'pass'; detail := pg_catalog.format('%s retention policies; no expired row outside legal holds', n);
            ELSE
                status := 'fail'; detail := 'expired rows outside legal holds: ' || pg_catalog.array_to_string(names, ', ');
                -- Why they survived the last run, when it was row locks.
                SELECT pg_catalog.array_agg(pg_catalog.format('%s: %s', rr.relid::text, rr.last_locked) ORDER BY rr.relid::text)
                INTO names FROM aegis.retention_rules rr WHERE rr.last_locked > 0;
                IF names IS NOT NULL THEN
                    detail := detail || '; locked by other transactions at the last run: ' || pg_catalog.array_to_string(names, ', ');
                END IF;
                remediation := 'SELECT * FROM aegis.apply_retention(); and schedule it: SELECT aegis.schedule_retention(''0 3 * * *'');';
            END IF;
        WHEN 'classification.complete' THEN
            -- Columns added to a protected table since protect() last ran and
            -- not classified since: personal data may be arriving unnoticed.
            SELECT pg_catalog.array_agg(pg_catalog.format('%s.%I', p.relid::text, a.attname) ORDER BY p.relid::text, a.attnum)
            INTO names
            FROM aegis.protected_tables p
            JOIN pg_catalog.pg_attribute a ON a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE p.known_columns IS NOT NULL AND NOT a.attname = ANY (p.known_columns)
              AND NOT EXISTS (SELECT 1 FROM aegis.column_classes cc WHERE cc.relid = p.relid AND cc.column_name = a.attname);
            IF names IS NULL THEN
                status := 'pass'; detail := 'every column added since protection is classified';
            ELSE
                status := 'warn'; detail := 'unclassified columns added since protect(): ' || pg_catalog.array_to_string(names, ', ');
                remediation := 'Classify them: SELECT aegis.protect(''<table>'', <policy with the new columns>); (public columns too).';
            END IF;
        END CASE;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.compliance_report() IS
    'The controls pg_aegis can check (pass/warn/fail), with detail, remediation and the SOC 2/ISO 27001/GDPR requirements they evidence';

CREATE FUNCTION aegis.compliance_report_json()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'generated_at', pg_catalog.now(),
        'database', pg_catalog.current_database(),
        'pg_aegis', aegis.version(),
        'summary', pg_catalog.jsonb_build_object(
            'pass', pg_catalog.count(*) FILTER (WHERE r.status = 'pass'),
            'warn', pg_catalog.count(*) FILTER (WHERE r.status = 'warn'),
            'fail', pg_catalog.count(*) FILTER (WHERE r.status = 'fail')),
        'controls', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'control', r.control, 'status', r.status, 'detail', r.detail, 'remediation', r.remediation,
            'evidence_for', pg_catalog.jsonb_build_object('soc2', m.soc2, 'iso27001', m.iso27001, 'gdpr', m.gdpr))
            ORDER BY r.n))
    FROM aegis.compliance_report() WITH ORDINALITY r(control, status, detail, remediation, evidence_for, n)
    JOIN aegis.compliance_mapping() m ON m.control = r.control
$$;
COMMENT ON FUNCTION aegis.compliance_report_json() IS
    'compliance_report() as one JSON document with a summary and the requirement mapping, for evidence collection';
