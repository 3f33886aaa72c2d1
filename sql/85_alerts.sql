-- Alerts (src/alerts.rs). Metric alerts: rules, the statement trigger that
-- evaluates them over each insert's new rows, the cooldown state and the
-- incrementally kept anomaly baselines; alerts go to the alerts table the
-- trigger names and to aegis.alert_events. Security alerts: periodic
-- checks, also to aegis.alert_events. NOTIFY aegis_alerts carries only an
-- alert's id: any role can LISTEN (and NOTIFY) on any channel, so the
-- content is read from aegis.alert_events under row-level security, which
-- only pg_aegis writes (a forged notification names no alert, or one
-- already delivered).
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

CREATE SEQUENCE aegis.alert_rules_id_seq;
CREATE TABLE aegis.alert_rules (
    id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('aegis.alert_rules_id_seq'),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_.:-]{1,64}$'),
    kind        text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'anomaly')),
    metric      name NOT NULL,
    comparison  text CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold   double precision NOT NULL
                CHECK (threshold > '-Infinity'::double precision AND threshold < 'Infinity'::double precision),
    min_samples integer NOT NULL DEFAULT 30 CHECK (min_samples >= 2),
    severity    text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    cooldown    interval NOT NULL DEFAULT '15 minutes' CHECK (cooldown >= interval '0'),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT CURRENT_USER,
    -- threshold rules compare with a constant; anomaly rules alert above
    -- mean + threshold (k) standard deviations of the server's recent values
    CHECK ((kind = 'threshold') = (comparison IS NOT NULL)),
    CHECK (kind = 'threshold' OR threshold > 0)
);
ALTER SEQUENCE aegis.alert_rules_id_seq OWNED BY aegis.alert_rules.id;
COMMENT ON TABLE aegis.alert_rules IS
    'Metric alert rules: threshold (metric comparison threshold) or anomaly (above mean + k stddev), with severity and cooldown';
SELECT pg_catalog.pg_extension_config_dump('aegis.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('aegis.alert_rules_id_seq', '');
-- Rule changes are audit entries, and make every backend reload the rules.
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.alert_rules
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER alert_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aegis.alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.audit_plans_changed();

-- When each rule last fired for each server (the cooldown). Runtime state:
-- not dumped.
CREATE TABLE aegis.alert_state (
    rule_id       bigint NOT NULL REFERENCES aegis.alert_rules ON DELETE CASCADE,
    server_id     text NOT NULL,
    last_fired_at timestamptz NOT NULL,
    PRIMARY KEY (rule_id, server_id)
);
COMMENT ON TABLE aegis.alert_state IS 'Internal: when each alert rule last fired for each server (cooldown)';

-- Per (metrics table, metric, server): count, mean and sum of squared
-- deviations of recent values, merged once per insert statement (the old
-- count capped at 1000 samples, so old values fade). Learned state: not
-- dumped (relids do not survive a restore).
CREATE TABLE aegis.metric_baselines (
    relid      oid NOT NULL,
    metric     name NOT NULL,
    server_id  text NOT NULL,
    n          bigint NOT NULL CHECK (n > 0),
    mean       double precision NOT NULL,
    m2         double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (relid, metric, server_id)
);
COMMENT ON TABLE aegis.metric_baselines IS
    'Internal: recent mean and variance of each server''s metrics, for anomaly rules';

-- Every alert pg_aegis raised, metric and security: what a notification's
-- id points to. Only pg_aegis's own definer code writes it (no grants);
-- readers see what row-level security lets them: admins and auditors all,
-- DevOps metric alerts, on-call engineers metric alerts of the servers
-- assigned to them now. Runtime record: not dumped.
CREATE TABLE aegis.alert_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raised_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind       text NOT NULL CHECK (kind IN ('metric', 'security')),
    alert      text NOT NULL,
    severity   text NOT NULL,
    server_id  text,
    raised_by  name NOT NULL,
    detail     jsonb NOT NULL
);
COMMENT ON TABLE aegis.alert_events IS
    'Alerts pg_aegis raised (metric and security), read under row-level security; NOTIFY aegis_alerts carries only their id';
ALTER TABLE aegis.alert_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY admins_and_auditors ON aegis.alert_events FOR SELECT TO aegis_admin, aegis_auditor USING (true);
CREATE POLICY devops_metrics ON aegis.alert_events FOR SELECT TO aegis_devops USING (kind = 'metric');
CREATE POLICY oncall_assigned ON aegis.alert_events FOR SELECT TO aegis_oncall
    USING (kind = 'metric' AND server_id = ANY ((SELECT aegis.oncall_servers())::text[]));
GRANT SELECT ON aegis.alert_events TO aegis_admin, aegis_auditor, aegis_devops, aegis_oncall;

-- What a listener does with a notification: the alert it announces, if it
-- is genuine (pg_aegis's JSON, this database, an id of aegis.alert_events)
-- and the caller may see it; no row otherwise (a forged payload, garbage,
-- another database's alert, or one the caller may not read). SECURITY
-- INVOKER: row-level security decides.
CREATE FUNCTION aegis.alert_event(notification text) RETURNS SETOF aegis.alert_events
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    j jsonb;
BEGIN
    BEGIN
        j := notification::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        RETURN;
    END;
    IF pg_catalog.jsonb_typeof(j) IS DISTINCT FROM 'object'
       OR j ->> 'source' IS DISTINCT FROM 'pg_aegis'
       OR j ->> 'database' IS DISTINCT FROM pg_catalog.current_database()
       OR pg_catalog.jsonb_typeof(j -> 'id') IS DISTINCT FROM 'number'
       OR (j ->> 'id') !~ '^[0-9]{1,18}$'
       OR NOT pg_catalog.has_table_privilege('aegis.alert_events', 'SELECT') THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT e.* FROM aegis.alert_events e WHERE e.id = (j ->> 'id')::bigint;
END
$$;
COMMENT ON FUNCTION aegis.alert_event(text) IS
    'The alert a NOTIFY aegis_alerts payload announces, if genuine and visible to the caller; no row otherwise';

-- The trigger, attached by create_monitoring_schema() to server_metrics:
--   CREATE TRIGGER aegis_alerts AFTER INSERT ON monitoring.server_metrics
--     REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT
--     EXECUTE FUNCTION aegis.metric_alerts('monitoring.alerts_history');
-- It reads the rules and writes alerts, state and baselines with the
-- extension owner's rights (an ingest role may insert metrics without being
-- able to write alerts); every value is a bound parameter, every identifier
-- quoted, and the alerts table is resolved with to_regclass().
CREATE FUNCTION aegis.metric_alerts() RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'metric_alerts_wrapper';
COMMENT ON FUNCTION aegis.metric_alerts() IS
    'Statement trigger (REFERENCING NEW TABLE) on a metrics table: alert rules -> alerts table + NOTIFY aegis_alerts';

-- ===========================================================================
-- Security alerts: through the same channel as metric alerts
-- ===========================================================================

-- Permission-denied attempts on protected tables since the server started,
-- in every database (shared memory; NULL without preloading).
CREATE FUNCTION aegis.denied_access_count() RETURNS bigint LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'denied_access_count_wrapper';
COMMENT ON FUNCTION aegis.denied_access_count() IS
    'Permission-denied attempts on protected tables since server start, all databases (NULL when not preloaded)';

-- When each security alert was last sent, and the denied-access counter at
-- the last check. Runtime state: not dumped.
CREATE TABLE aegis.security_alert_state (
    alert      text PRIMARY KEY,
    last_at    timestamptz NOT NULL,
    last_value bigint
);
COMMENT ON TABLE aegis.security_alert_state IS
    'Internal: when each security alert was last notified; the denied-access counter at the last check';

-- Shared by security_alerts() and compliance_report() (internal, no grants;
-- both run them with the owner's rights). Entries of ended transactions
-- still outside the chain after `older_than`: only entries at or above the
-- sealing horizon can be waiting (those below are sealed, or reported by
-- verify_chain()).
CREATE FUNCTION aegis.unsealed_entries(older_than interval, OUT entries bigint, OUT oldest timestamptz)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.count(*), pg_catalog.min(l.statement_time)
    FROM aegis.audit_log l
    WHERE l.xid >= COALESCE((SELECT s.horizon FROM aegis.audit_seal_state s), '0'::xid8)
      AND l.statement_time < pg_catalog.now() - older_than
      AND NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id AND c.entry_xid = l.xid)
$$;
COMMENT ON FUNCTION aegis.unsealed_entries(interval) IS
    'Internal: entries left out of the chain for longer than an interval, and the oldest one''s time';

-- Keys (subject keys excepted: they exist to be destroyed, not rotated)
-- whose current version is older than max_age, and how many keys there are.
CREATE FUNCTION aegis.stale_keys(max_age interval, OUT stale text[], OUT total bigint)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.array_agg(k.name ORDER BY k.name) FILTER (WHERE k.created_at < pg_catalog.now() - max_age),
           pg_catalog.count(*)
    FROM aegis.keys k
    WHERE k.status = 'active' AND k.name NOT LIKE 'subject:%'
      AND k.version = (SELECT pg_catalog.max(k2.version) FROM aegis.keys k2
                       WHERE k2.name = k.name AND k2.status = 'active')
$$;
COMMENT ON FUNCTION aegis.stale_keys(interval) IS
    'Internal: keys whose current version is older than max_age, and the number of keys';

-- The checks. SECURITY DEFINER: it reads the audit trail, the keyring's
-- metadata and the lifecycle catalogs, and keeps its state, for auditors and
-- the background worker alike; it changes nothing else and takes no input
-- but the flag. Findings are returned; with notify, each is also recorded
-- in aegis.alert_events and announced by NOTIFY aegis_alerts (its id only),
-- at most once an hour per alert (the worker runs this every
-- aegis.security_check_interval).
CREATE FUNCTION aegis.security_alerts(notify boolean DEFAULT true)
RETURNS TABLE(alert text, severity text, detail jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    findings jsonb[] := '{}';
    f jsonb;
    v record;
    n bigint;
    t timestamptz;
    d bigint;
    prev record;
    names text[];
    event_id bigint;
BEGIN
    IF notify IS NULL THEN
        RAISE EXCEPTION 'notify must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- Notifying updates the alerts' state, which the background worker
    -- updates too: a non-superuser may do it only in a transaction of its
    -- own (in a transaction block its row locks would last until COMMIT).
    -- The first statement of a transaction starts when the transaction
    -- does; any later one does not.
    IF notify AND pg_catalog.statement_timestamp() <> pg_catalog.transaction_timestamp()
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER) THEN
        RAISE EXCEPTION 'aegis.security_alerts(notify => true) must run in a transaction of its own, not inside a transaction block'
            USING ERRCODE = '25001',
                  HINT = 'Its state updates would wait for COMMIT and stall the background worker meanwhile; security_alerts(false) only looks.';
    END IF;
    -- 1. The chain verifies (from its signed checkpoint, if pruned).
    SELECT * INTO v FROM aegis.verify_chain() c;
    IF NOT v.ok THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'audit_chain_broken', 'severity', 'critical',
            'detail', pg_catalog.jsonb_build_object('first_bad_position', v.first_bad_position, 'problem', v.problem));
    END IF;
    -- 2. Entries of ended transactions left out of the chain for 10 minutes
    -- (is the sealer running?).
    SELECT u.entries, u.oldest INTO n, t FROM aegis.unsealed_entries(interval '10 minutes') u;
    IF n > 0 THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'audit_entries_unsealed', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('entries', n, 'oldest', t,
                'hint', 'run aegis.seal(), or add this database to aegis.seal_databases'));
    END IF;
    -- 3. A burst of permission-denied attempts on protected tables since the
    -- last check (10 or more; counted in every database of the cluster).
    d := aegis.denied_access_count();
    IF d IS NOT NULL THEN
        SELECT s.last_value, s.last_at INTO prev FROM aegis.security_alert_state s WHERE s.alert = 'denied_access_counter';
        IF prev.last_value IS NOT NULL AND d - prev.last_value >= 10 THEN
            findings := findings || pg_catalog.jsonb_build_object('alert', 'denied_access_burst', 'severity', 'warning',
                'detail', pg_catalog.jsonb_build_object('attempts', d - prev.last_value, 'since', prev.last_at,
                    'hint', 'the server log has one access_denied line per attempt, with the role'));
        END IF;
        -- Only a run that notifies moves the baseline (a dry look sets the
        -- first one): otherwise whoever looks between probes would keep the
        -- burst from ever being sent.
        IF notify THEN
            -- Waits at most lock_timeout (the worker sets one): a session
            -- holding the row costs this round's baseline update, not the
            -- worker.
            BEGIN
                INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
                VALUES ('denied_access_counter', pg_catalog.now(), d)
                ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at, last_value = EXCLUDED.last_value;
            EXCEPTION WHEN lock_not_available THEN
                RAISE WARNING 'pg_aegis: the denied-access baseline is locked by another session; kept as it was';
            END;
        ELSE
            INSERT INTO aegis.security_alert_state AS s (alert, last_at, last_value)
            VALUES ('denied_access_counter', pg_catalog.now(), d)
            ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO NOTHING;
        END IF;
    END IF;
    -- 4. Retention policies never applied, or not for more than two days.
    SELECT pg_catalog.array_agg(r.relid::text ORDER BY r.relid::text) INTO names
    FROM aegis.retention_rules r
    WHERE r.last_applied_at IS NULL OR r.last_applied_at < pg_catalog.now() - interval '2 days';
    IF names IS NOT NULL THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'retention_overdue', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('tables', pg_catalog.to_jsonb(names),
                'hint', 'SELECT aegis.apply_retention(); or aegis.schedule_retention(''0 3 * * *'')'));
    END IF;
    -- 5. Keys whose current version is older than a year (subject keys,
    -- which exist to be destroyed, not rotated, are left out).
    SELECT k.stale INTO names FROM aegis.stale_keys(interval '365 days') k;
    IF names IS NOT NULL THEN
        findings := findings || pg_catalog.jsonb_build_object('alert', 'keys_past_rotation_age', 'severity', 'warning',
            'detail', pg_catalog.jsonb_build_object('keys', pg_catalog.to_jsonb(names), 'max_age', '365 days',
                'hint', 'SELECT aegis.rotate_key(name); then aegis.reencrypt() the data'));
    END IF;

    FOREACH f IN ARRAY findings LOOP
        alert := f ->> 'alert';
        severity := f ->> 'severity';
        detail := f -> 'detail';
        RETURN NEXT;
        IF notify AND NOT EXISTS (SELECT 1 FROM aegis.security_alert_state s
                                  WHERE s.alert = f ->> 'alert' AND s.last_at > pg_catalog.now() - interval '1 hour') THEN
            INSERT INTO aegis.alert_events (kind, alert, severity, raised_by, detail)
            VALUES ('security', f ->> 'alert', f ->> 'severity', SESSION_USER, f -> 'detail')
            RETURNING id INTO event_id;
            PERFORM pg_catalog.pg_notify('aegis_alerts', pg_catalog.jsonb_build_object(
                'source', 'pg_aegis', 'database', pg_catalog.current_database(), 'id', event_id)::text);
            BEGIN
                INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES (f ->> 'alert', pg_catalog.now())
                ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
            EXCEPTION WHEN lock_not_available THEN
                RAISE WARNING 'pg_aegis: the state of alert % is locked by another session; it may be sent again', f ->> 'alert';
            END;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION aegis.security_alerts(boolean) IS
    'Security checks (chain, unsealed entries, denied-access bursts, overdue retention, old keys); notify sends each via NOTIFY aegis_alerts';

-- The background sealer could not take the chain's lock within its bounded
-- wait: a security alert naming who holds it (pid, role, application,
-- since when), at most once every 10 minutes; the worker goes on with its
-- other duties and tries again next round. Internal: the worker (a
-- superuser) calls it; granted to nobody.
CREATE FUNCTION aegis.report_blocked_sealer(holders text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    event_id bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM aegis.security_alert_state s
               WHERE s.alert = 'audit_sealer_blocked' AND s.last_at > pg_catalog.now() - interval '10 minutes') THEN
        RETURN;
    END IF;
    INSERT INTO aegis.alert_events (kind, alert, severity, raised_by, detail)
    VALUES ('security', 'audit_sealer_blocked', 'warning', SESSION_USER,
            pg_catalog.jsonb_build_object('holders', holders,
                'hint', 'a session holds a lock on aegis.audit_chain; sealing waits for it (pg_terminate_backend(pid) ends it)'))
    RETURNING id INTO event_id;
    PERFORM pg_catalog.pg_notify('aegis_alerts', pg_catalog.jsonb_build_object(
        'source', 'pg_aegis', 'database', pg_catalog.current_database(), 'id', event_id)::text);
    INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES ('audit_sealer_blocked', pg_catalog.now())
    ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
END
$$;
COMMENT ON FUNCTION aegis.report_blocked_sealer(text) IS
    'Internal: the background sealer reports who holds the chain''s lock (security alert, at most every 10 minutes)';

GRANT SELECT ON aegis.alert_rules, aegis.alert_state, aegis.metric_baselines, aegis.security_alert_state
    TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.alert_rules TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.alert_rules_id_seq TO aegis_admin;
