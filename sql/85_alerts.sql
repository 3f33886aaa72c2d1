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

-- When each rule fired for each server (the cooldown): appended, never
-- updated or locked, so no transaction can hold a pair's state (an open
-- collector's firing is invisible to the others until it commits: it can
-- neither silence their alerts nor make them wait). Two collectors firing
-- the same pair at the same moment may both alert. The background worker
-- forgets firings past their rule's cooldown. Runtime state: not dumped.
-- The cooldown is per table too (relid: the metrics table whose insert
-- fired): whoever may insert into one attached table can neither silence
-- nor pre-empt an alert that another table's rows raise for the same
-- entity.
CREATE TABLE aegis.alert_state (
    rule_id       bigint NOT NULL REFERENCES aegis.alert_rules ON DELETE CASCADE,
    server_id     text NOT NULL,
    last_fired_at timestamptz NOT NULL,
    relid         oid
);
CREATE INDEX alert_state_rule_table_server ON aegis.alert_state (rule_id, relid, server_id, last_fired_at);
COMMENT ON TABLE aegis.alert_state IS 'Internal: when each alert rule fired for each server of each metrics table (cooldown; appended, pruned by the worker)';

-- Per (metrics table, metric, server): count, mean and sum of squared
-- deviations of recent values (the old count capped at 1000 samples, so
-- old values fade). Each insert statement appends its rows' figures to
-- aegis.metric_baseline_deltas (never waits); deltas are folded in here by
-- the inserting statement when no other transaction is folding the same
-- baseline (its row lock, which only pg_aegis can take: nobody else has
-- UPDATE), else later by another statement or the background worker
-- (fold_metric_baselines). A row with n = 0 is a baseline created for
-- folding, with nothing folded yet. The baseline in force is this row
-- merged with the pending deltas (current_baselines). Learned state: not
-- dumped (relids do not survive a restore).
CREATE TABLE aegis.metric_baselines (
    relid      oid NOT NULL,
    metric     name NOT NULL,
    server_id  text NOT NULL,
    n          bigint NOT NULL CHECK (n >= 0),
    mean       double precision NOT NULL,
    m2         double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (relid, metric, server_id)
);
COMMENT ON TABLE aegis.metric_baselines IS
    'Internal: recent mean and variance of each server''s metrics, for anomaly rules (folded; see current_baselines())';
CREATE TABLE aegis.metric_baseline_deltas (
    relid     oid NOT NULL,
    metric    name NOT NULL,
    server_id text NOT NULL,
    n         bigint NOT NULL CHECK (n > 0),
    mean      double precision NOT NULL,
    m2        double precision NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX metric_baseline_deltas_key ON aegis.metric_baseline_deltas (relid, metric, server_id);
COMMENT ON TABLE aegis.metric_baseline_deltas IS
    'Internal: each insert statement''s count, mean and squared deviations per server, not yet folded into metric_baselines';

-- The baselines in force for a metrics table: each folded baseline merged
-- with its pending deltas (taken together as one batch, then merged with
-- the folded figures, whose count is capped at 1000), optionally for one
-- metric and some servers only.
CREATE FUNCTION aegis.current_baselines(rel oid, only_metric name DEFAULT NULL, servers text[] DEFAULT NULL)
RETURNS TABLE (metric name, server_id text, n bigint, mean double precision, m2 double precision)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
DECLARE
    -- Only the conditions given: each call is planned for them, so the
    -- indexes on (relid, metric, server_id) serve the inserting statement.
    cond text := 'x.relid = $1'
        || CASE WHEN only_metric IS NOT NULL THEN ' AND x.metric = $2' ELSE '' END
        || CASE WHEN servers IS NOT NULL THEN ' AND x.server_id = ANY ($3)' ELSE '' END;
BEGIN
    RETURN QUERY EXECUTE pg_catalog.format($q$
    WITH p AS (
        SELECT x.metric, x.server_id, x.n, x.mean, x.m2,
               pg_catalog.sum(x.n * x.mean) OVER w / pg_catalog.sum(x.n) OVER w AS grand
        FROM aegis.metric_baseline_deltas x
        WHERE %1$s
        WINDOW w AS (PARTITION BY x.metric, x.server_id)
    ), pending AS (
        SELECT p.metric, p.server_id, pg_catalog.sum(p.n)::bigint AS n, pg_catalog.min(p.grand) AS mean,
               pg_catalog.sum(p.m2 + p.n * ((p.mean - p.grand) ^ 2)) AS m2
        FROM p GROUP BY p.metric, p.server_id
    ), folded AS (
        SELECT x.metric, x.server_id, LEAST(x.n, 1000) AS w, x.n, x.mean, x.m2
        FROM aegis.metric_baselines x
        WHERE %1$s AND x.n > 0
    )
    SELECT COALESCE(f.metric, d.metric), COALESCE(f.server_id, d.server_id),
           CASE WHEN d.n IS NULL THEN f.n WHEN f.n IS NULL THEN d.n ELSE f.w + d.n END,
           CASE WHEN d.n IS NULL THEN f.mean WHEN f.n IS NULL THEN d.mean
                ELSE ((f.w * f.mean) + (d.n * d.mean)) / (f.w + d.n) END,
           CASE WHEN d.n IS NULL THEN f.m2 WHEN f.n IS NULL THEN d.m2
                ELSE ((f.m2 * f.w) / f.n) + d.m2 + (((d.mean - f.mean) ^ 2) * f.w * d.n) / (f.w + d.n) END
    FROM folded f FULL JOIN pending d ON d.metric = f.metric AND d.server_id = f.server_id
    $q$, cond) USING rel, only_metric, servers;
END
$fn$;
COMMENT ON FUNCTION aegis.current_baselines(oid, name, text[]) IS
    'The anomaly baselines in force for a metrics table: folded figures merged with pending deltas';

-- Fold pending deltas into the baselines, for one metrics table and some
-- servers (the inserting statement) or all (the worker). Never waits: the
-- baselines another transaction is folding right now (their rows locked
-- until it ends) are skipped (SKIP LOCKED), and a baseline's row another
-- transaction is creating at this moment is waited for 10 ms at most
-- (then nothing is folded this time). Only in READ COMMITTED, where each
-- statement sees what committed before it (a transaction-snapshot
-- isolation level would fail on a baseline folded since its snapshot):
-- anything else leaves it to later. Returns how many baselines it folded.
CREATE FUNCTION aegis.fold_metric_baselines(rel oid DEFAULT NULL, servers text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
SET lock_timeout = '10ms'
AS $$
DECLARE
    rels oid[];
    mets name[];
    srvs text[];
    folded bigint;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN 0;
    END IF;
    BEGIN
        -- A baseline's row exists once it has deltas (created once, ever).
        INSERT INTO aegis.metric_baselines (relid, metric, server_id, n, mean, m2, updated_at)
        SELECT DISTINCT d.relid, d.metric, d.server_id, 0, 0, 0, pg_catalog.now()
        FROM aegis.metric_baseline_deltas d
        WHERE (rel IS NULL OR d.relid = rel) AND (servers IS NULL OR d.server_id = ANY (servers))
          AND NOT EXISTS (SELECT 1 FROM aegis.metric_baselines b
                          WHERE b.relid = d.relid AND b.metric = d.metric AND b.server_id = d.server_id)
        ON CONFLICT (relid, metric, server_id) DO NOTHING;
        -- The rows of the baselines with pending deltas that no other
        -- transaction is folding.
        SELECT pg_catalog.array_agg(k.relid), pg_catalog.array_agg(k.metric), pg_catalog.array_agg(k.server_id)
        INTO rels, mets, srvs
        FROM (SELECT b.relid, b.metric, b.server_id
              FROM aegis.metric_baselines b
              WHERE (rel IS NULL OR b.relid = rel) AND (servers IS NULL OR b.server_id = ANY (servers))
                AND EXISTS (SELECT 1 FROM aegis.metric_baseline_deltas d
                            WHERE d.relid = b.relid AND d.metric = b.metric AND d.server_id = b.server_id)
              FOR UPDATE OF b SKIP LOCKED) k;
    EXCEPTION WHEN lock_not_available THEN
        RETURN 0;
    END;
    IF rels IS NULL THEN
        RETURN 0;
    END IF;
    -- A statement of its own, so it sees every fold committed before the
    -- rows were locked: the deltas taken out are exactly those merged in.
    WITH k AS (
        SELECT * FROM ROWS FROM (pg_catalog.unnest(rels), pg_catalog.unnest(mets), pg_catalog.unnest(srvs)) AS k(relid, metric, server_id)
    ), taken AS (
        DELETE FROM aegis.metric_baseline_deltas d USING k
        WHERE d.relid = k.relid AND d.metric = k.metric AND d.server_id = k.server_id
        RETURNING d.relid, d.metric, d.server_id, d.n, d.mean, d.m2
    ), p AS (
        SELECT t.*, pg_catalog.sum(t.n * t.mean) OVER w / pg_catalog.sum(t.n) OVER w AS grand
        FROM taken t WINDOW w AS (PARTITION BY t.relid, t.metric, t.server_id)
    ), d AS (
        SELECT p.relid, p.metric, p.server_id, pg_catalog.sum(p.n)::bigint AS n, pg_catalog.min(p.grand) AS mean,
               pg_catalog.sum(p.m2 + p.n * ((p.mean - p.grand) ^ 2)) AS m2
        FROM p GROUP BY p.relid, p.metric, p.server_id
    ), merged AS (
        UPDATE aegis.metric_baselines b SET
            n = LEAST(b.n, 1000) + d.n,
            mean = ((LEAST(b.n, 1000) * b.mean) + (d.n * d.mean)) / (LEAST(b.n, 1000) + d.n),
            m2 = CASE WHEN b.n = 0 THEN d.m2
                      ELSE ((b.m2 * LEAST(b.n, 1000)) / b.n) + d.m2
                           + (((d.mean - b.mean) ^ 2) * LEAST(b.n, 1000) * d.n) / (LEAST(b.n, 1000) + d.n) END,
            updated_at = pg_catalog.now()
        FROM d
        WHERE b.relid = d.relid AND b.metric = d.metric AND b.server_id = d.server_id
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO folded FROM merged;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION aegis.fold_metric_baselines(oid, text[]) IS
    'Internal: fold pending metric deltas into the anomaly baselines, skipping any another transaction is folding';

-- The background worker's upkeep of metric alerts, every round: fold every
-- pending delta no insert could fold, forget firings past their rule's
-- cooldown (nobody locks those rows: the delete never waits).
CREATE FUNCTION aegis.alert_upkeep() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    folded bigint;
BEGIN
    folded := aegis.fold_metric_baselines();
    DELETE FROM aegis.alert_state s
    WHERE s.last_fired_at < pg_catalog.now()
          - COALESCE((SELECT r.cooldown FROM aegis.alert_rules r WHERE r.id = s.rule_id), interval '0');
    RETURN folded;
END
$$;
COMMENT ON FUNCTION aegis.alert_upkeep() IS
    'Internal: the worker folds pending metric deltas and forgets firings past their cooldown';

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

-- Record an alert and announce it: the aegis.alert_events row, then
-- NOTIFY aegis_alerts with its id (sent at commit). Internal: pg_aegis's
-- own code calls it (metric alerts as the extension owner, security alerts
-- inside security_alerts() and for the worker); granted to nobody.
CREATE FUNCTION aegis.announce_alert(kind text, alert text, severity text, server_id text, raised_by name, detail jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    event_id bigint;
BEGIN
    INSERT INTO aegis.alert_events (kind, alert, severity, server_id, raised_by, detail)
    VALUES (kind, alert, severity, server_id, raised_by, detail)
    RETURNING id INTO event_id;
    PERFORM pg_catalog.pg_notify('aegis_alerts', pg_catalog.jsonb_build_object(
        'source', 'pg_aegis', 'database', pg_catalog.current_database(), 'id', event_id)::text);
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION aegis.announce_alert(text, text, text, text, name, jsonb) IS
    'Internal: record an alert in aegis.alert_events and NOTIFY aegis_alerts with its id';

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

-- The trigger, attached by attach_metric_alerts() (below: no argument, the
-- mapping in aegis.metric_alert_sources), or by create_monitoring_schema()
-- to server_metrics with the reference alerts table as argument:
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
-- Metric alerts on any metrics table: a declared mapping
-- ===========================================================================

-- Which table's inserts are evaluated, and how its columns map: the entity
-- a value belongs to (a server, a Zabbix itemid: any built-in type), the
-- time column (a timestamp, or an integer epoch in seconds or
-- milliseconds), the metric columns the rules may name, and where alerts
-- go besides aegis.alert_events (an alerts table a superuser owns, and
-- which of its columns take each field; none: alert_events only). Written
-- only by attach_metric_alerts() / detach_metric_alerts(), which check it
-- first; the trigger reads it with each insert.
CREATE TABLE aegis.metric_alert_sources (
    relid          regclass PRIMARY KEY,
    entity_column  name NOT NULL,
    time_column    name NOT NULL,
    time_unit      text CHECK (time_unit IN ('seconds', 'milliseconds')),
    metrics        name[] NOT NULL,
    alerts_table   regclass,
    alerts_columns jsonb,
    attached_by    name NOT NULL DEFAULT CURRENT_USER,
    attached_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aegis.metric_alert_sources IS
    'Metrics tables whose inserts metric alerts evaluate, and how their columns map (aegis.attach_metric_alerts)';
SELECT pg_catalog.pg_extension_config_dump('aegis.metric_alert_sources', '');
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.metric_alert_sources
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();

-- Is a column of this table usable as this part of the mapping? Raises the
-- error that says why not.
CREATE FUNCTION aegis.check_alert_column(tbl regclass, col name, what text, allowed regtype[])
RETURNS regtype
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    typ oid;
BEGIN
    IF col IS NULL THEN
        RAISE EXCEPTION 'the % column must not be NULL', what USING ERRCODE = '22004';
    END IF;
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% column "%" of % does not exist', what, col, tbl USING ERRCODE = '42703';
    END IF;
    -- A type a non-superuser created brings its own casts and operators,
    -- which the trigger would run with pg_aegis's rights.
    IF typ >= 16384 THEN
        RAISE EXCEPTION '% column "%" of % has type %, which is not built in', what, col, tbl, typ::regtype
            USING ERRCODE = '42804', DETAIL = 'The alert trigger reads it with pg_aegis''s rights: only built-in types.';
    END IF;
    IF allowed IS NOT NULL AND NOT typ::regtype = ANY (allowed) THEN
        RAISE EXCEPTION '% column "%" of % has type %; it must be one of %', what, col, tbl, typ::regtype, allowed
            USING ERRCODE = '42804';
    END IF;
    RETURN typ::regtype;
END
$$;
COMMENT ON FUNCTION aegis.check_alert_column(regclass, name, text, regtype[]) IS
    'Internal: may this column serve as this part of a metric alert mapping?';

-- What in an alerts table would run with pg_aegis's rights when an alert
-- is written there (NULL: nothing). pg_aegis writes alerts with the
-- extension owner's rights, so every relation of the table's partition tree
-- must be a superuser's, nobody else may hold TRIGGER on them, and what
-- their columns, defaults, constraints, indexes, triggers and rules use
-- (functions, types, operators) must be a superuser's too.
CREATE FUNCTION aegis.alerts_table_untrusted(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    WITH rels AS (
        SELECT tbl::oid AS relid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(tbl) t
    ), parts AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
        WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid IN (SELECT r.relid FROM rels r)
          AND d.deptype IN ('a', 'n', 'i')
        UNION
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, r.relid FROM rels r
    ), uses AS (
        SELECT d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
        JOIN parts p ON d.classid = p.classid AND d.objid = p.objid
    )
    SELECT pg_catalog.string_agg(x.what, ', ' ORDER BY x.what) FROM (
        SELECT pg_catalog.format('%s is owned by non-superuser %s', c.oid::regclass, o.rolname) AS what
        FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.relid JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
        WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('%s grants TRIGGER to %s', c.oid::regclass,
                                 CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
        FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.relid
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE a.privilege_type = 'TRIGGER'
          AND NOT COALESCE((SELECT g.rolsuper FROM pg_catalog.pg_roles g WHERE g.oid = a.grantee), false)
        UNION
        SELECT pg_catalog.format('it uses function %s of non-superuser %s', f.oid::regprocedure, o.rolname)
        FROM uses u JOIN pg_catalog.pg_proc f ON u.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND f.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = f.proowner WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('it uses type %s of non-superuser %s', t.oid::regtype, o.rolname)
        FROM uses u JOIN pg_catalog.pg_type t ON u.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = t.typowner WHERE NOT o.rolsuper
        UNION
        SELECT pg_catalog.format('it uses operator %s of non-superuser %s', op.oid::regoperator, o.rolname)
        FROM uses u JOIN pg_catalog.pg_operator op ON u.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND op.oid = u.refobjid
        JOIN pg_catalog.pg_roles o ON o.oid = op.oprowner WHERE NOT o.rolsuper
    ) x
$$;
COMMENT ON FUNCTION aegis.alerts_table_untrusted(regclass) IS
    'Internal: what in an alerts table would run with pg_aegis''s rights (NULL: nothing)';

-- Everything attach_metric_alerts() checks, so that a mapping that would
-- fail is refused when it is attached, never when a collector inserts.
CREATE FUNCTION aegis.check_metric_alert_source(tbl regclass, entity_column name, time_column name, metrics name[],
                                                time_unit text, alerts_table regclass, alerts_columns jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    numeric_types regtype[] := '{smallint,integer,bigint,real,double precision,numeric}';
    time_type regtype;
    m name;
    cols jsonb;
    k text;
    fields text[] := ARRAY['entity', 'time', 'rule', 'severity', 'metric', 'value', 'message'];
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
    END IF;
    IF tbl::oid IN (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('aegis', 'pg_catalog', 'information_schema')) THEN
        RAISE EXCEPTION 'metric alerts cannot be attached to %', tbl USING ERRCODE = '42501';
    END IF;
    PERFORM aegis.check_alert_column(tbl, entity_column, 'entity', NULL);
    time_type := aegis.check_alert_column(tbl, time_column, 'time',
        '{timestamp with time zone,timestamp without time zone,date,smallint,integer,bigint}');
    IF time_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) AND time_unit IS NULL THEN
        RAISE EXCEPTION 'time column "%" of % holds integers: say whether they count seconds or milliseconds since 1970', time_column, tbl
            USING ERRCODE = '22023', HINT = 'Pass time_unit => ''seconds'' (Zabbix''s clock) or time_unit => ''milliseconds''.';
    ELSIF time_type NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) AND time_unit IS NOT NULL THEN
        RAISE EXCEPTION 'time_unit applies to integer time columns; "%" of % is of type %', time_column, tbl, time_type
            USING ERRCODE = '22023';
    ELSIF time_unit NOT IN ('seconds', 'milliseconds') THEN
        RAISE EXCEPTION 'time_unit must be seconds or milliseconds, not %', time_unit USING ERRCODE = '22023';
    END IF;
    IF metrics IS NULL THEN
        metrics := ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.atttypid::regtype = ANY (numeric_types)
                           AND a.attname NOT IN (entity_column, time_column) ORDER BY a.attnum);
    END IF;
    IF pg_catalog.cardinality(metrics) = 0 THEN
        RAISE EXCEPTION '% has no metric column to alert on', tbl USING ERRCODE = '22023',
            HINT = 'Name them: metrics => ARRAY[''value''] (numeric columns).';
    END IF;
    FOREACH m IN ARRAY metrics LOOP
        PERFORM aegis.check_alert_column(tbl, m, 'metric', numeric_types);
    END LOOP;
    IF alerts_table IS NULL THEN
        IF alerts_columns IS NOT NULL THEN
            RAISE EXCEPTION 'alerts_columns needs alerts_table' USING ERRCODE = '22023';
        END IF;
    ELSE
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = alerts_table) NOT IN ('r', 'p') THEN
            RAISE EXCEPTION '% is not a table', alerts_table USING ERRCODE = '42809';
        END IF;
        -- Its triggers, defaults, constraints and rules run with
        -- pg_aegis's rights when an alert is written.
        IF aegis.alerts_table_untrusted(alerts_table) IS NOT NULL THEN
            RAISE EXCEPTION 'alerts table % is not a superuser''s alone: %', alerts_table, aegis.alerts_table_untrusted(alerts_table)
                USING ERRCODE = '42501',
                DETAIL = 'pg_aegis writes alerts with its own rights, so its triggers, defaults and constraints would run with them.',
                HINT = 'Have a superuser own it (ALTER TABLE ... OWNER TO), or attach without an alerts table: alerts still reach aegis.alert_events.';
        END IF;
        cols := COALESCE(alerts_columns, '{"entity": "server_id", "time": "ts", "rule": "rule", "severity": "severity",
                                            "metric": "metric", "value": "value", "message": "message"}');
        IF pg_catalog.jsonb_typeof(cols) <> 'object' THEN
            RAISE EXCEPTION 'alerts_columns must map fields to columns of %', alerts_table USING ERRCODE = '22023';
        END IF;
        FOR k IN SELECT pg_catalog.jsonb_object_keys(cols) LOOP
            IF NOT k = ANY (fields) THEN
                RAISE EXCEPTION 'unknown alert field "%"', k USING ERRCODE = '22023',
                    HINT = 'Fields: ' || pg_catalog.array_to_string(fields, ', ') || '.';
            END IF;
            IF pg_catalog.jsonb_typeof(cols -> k) <> 'string' THEN
                RAISE EXCEPTION 'alert field "%" must name a column of %', k, alerts_table USING ERRCODE = '22023';
            END IF;
            PERFORM aegis.check_alert_column(alerts_table, (cols ->> k)::name, 'alerts ' || k,
                CASE k WHEN 'time' THEN '{timestamp with time zone,timestamp without time zone,date,integer,bigint}'::regtype[]
                       WHEN 'value' THEN '{smallint,integer,bigint,real,double precision,numeric,text,character varying}'::regtype[]
                       WHEN 'entity' THEN NULL
                       ELSE '{text,character varying}'::regtype[] END);
        END LOOP;
        IF NOT cols ? 'message' THEN
            RAISE EXCEPTION 'alerts_columns must map "message"' USING ERRCODE = '22023';
        END IF;
    END IF;
    RETURN pg_catalog.jsonb_build_object('metrics', metrics, 'alerts_columns', cols);
END
$$;
COMMENT ON FUNCTION aegis.check_metric_alert_source(regclass, name, name, name[], text, regclass, jsonb) IS
    'Internal: is this a valid metric alert mapping? (raises why not)';

-- Attach metric alerts to any metrics table: the mapping is checked and
-- recorded, and the statement trigger aegis_metric_alerts created.
-- SECURITY DEFINER: creating a trigger needs ownership of the table (which
-- aegis_admin does not have) and EXECUTE on aegis.metric_alerts() (which
-- nobody has: a table owner's own trigger could write alerts); it creates
-- only that trigger, on a table the mapping check accepted, and creating a
-- trigger runs no code of the table's. EXECUTE: aegis_admin.
CREATE FUNCTION aegis.attach_metric_alerts(tbl regclass, entity_column name, time_column name,
                                           metrics name[] DEFAULT NULL, time_unit text DEFAULT NULL,
                                           alerts_table regclass DEFAULT NULL, alerts_columns jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    checked jsonb;
BEGIN
    checked := aegis.check_metric_alert_source(tbl, entity_column, time_column, metrics, time_unit, alerts_table, alerts_columns);
    INSERT INTO aegis.metric_alert_sources AS s (relid, entity_column, time_column, time_unit, metrics, alerts_table,
                                                 alerts_columns, attached_by)
    VALUES (tbl, entity_column, time_column, time_unit,
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(checked -> 'metrics'))::name[],
            alerts_table, checked -> 'alerts_columns',
            COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER))
    ON CONFLICT (relid) DO UPDATE SET entity_column = EXCLUDED.entity_column, time_column = EXCLUDED.time_column,
        time_unit = EXCLUDED.time_unit, metrics = EXCLUDED.metrics, alerts_table = EXCLUDED.alerts_table,
        alerts_columns = EXCLUDED.alerts_columns, attached_by = EXCLUDED.attached_by, attached_at = pg_catalog.now();
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts'
                   AND t.tgfoid = 'aegis.metric_alerts()'::pg_catalog.regprocedure AND t.tgnargs = 0) THEN
        -- With the extension's rights, not the owner's: EXECUTE on
        -- aegis.metric_alerts() is nobody's (a trigger of the owner's own
        -- could write alerts). Creating and dropping a trigger runs no code
        -- of the table's.
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts') THEN
            EXECUTE pg_catalog.format('DROP TRIGGER aegis_metric_alerts ON %s', tbl);
        END IF;
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER aegis_metric_alerts AFTER INSERT ON %s REFERENCING NEW TABLE AS aegis_new_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION aegis.metric_alerts()', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb) IS
    'Evaluate metric alert rules on a table''s inserts, with a checked column mapping (admin-only)';

-- Stop evaluating a table's inserts: the trigger and the mapping go.
-- SECURITY DEFINER for the same reason as attach_metric_alerts().
CREATE FUNCTION aegis.detach_metric_alerts(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'aegis_metric_alerts'
               AND t.tgfoid = 'aegis.metric_alerts()'::pg_catalog.regprocedure) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER aegis_metric_alerts ON %s', tbl);
    END IF;
    DELETE FROM aegis.metric_alert_sources s WHERE s.relid = tbl;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION aegis.detach_metric_alerts(regclass) IS
    'Stop evaluating metric alerts on a table (admin-only)';

-- A metric alert trigger someone writes by hand is checked when it is
-- created (the DDL guard calls this for every new trigger on
-- aegis.metric_alerts()): an AFTER INSERT statement trigger with a NEW
-- TABLE, and either no argument and a mapping recorded for its table, or
-- the reference alerts table as argument over a table with the reference
-- columns server_id and ts. SECURITY DEFINER: the DDL guard runs it as
-- whoever creates the trigger, and the mapping catalog has no grants; it
-- only reads catalogs and raises. EXECUTE: PUBLIC.
CREATE FUNCTION aegis.check_metric_alerts_trigger(trig oid) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    t record;
    arg text;
BEGIN
    SELECT g.tgrelid::regclass AS rel, g.tgname, g.tgtype, g.tgnewtable, g.tgnargs, g.tgargs INTO t
    FROM pg_catalog.pg_trigger g WHERE g.oid = trig;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- AFTER (not BEFORE/INSTEAD), statement level, INSERT only.
    IF t.tgtype <> 4 OR t.tgnewtable IS NULL THEN
        RAISE EXCEPTION 'trigger % on %: aegis.metric_alerts() must be AFTER INSERT ... REFERENCING NEW TABLE AS ... FOR EACH STATEMENT',
            t.tgname, t.rel USING ERRCODE = '39P01';
    END IF;
    IF t.tgnargs = 0 THEN
        IF NOT EXISTS (SELECT 1 FROM aegis.metric_alert_sources s WHERE s.relid = t.rel) THEN
            RAISE EXCEPTION 'trigger % on %: no metric alert mapping is recorded for the table', t.tgname, t.rel
                USING ERRCODE = '22023',
                      HINT = 'Use aegis.attach_metric_alerts(table, entity_column, time_column, ...), which checks the mapping and creates the trigger.';
        END IF;
        RETURN;
    END IF;
    IF t.tgnargs > 1 THEN
        RAISE EXCEPTION 'trigger % on %: aegis.metric_alerts() takes at most one argument (the reference alerts table)', t.tgname, t.rel
            USING ERRCODE = '22023';
    END IF;
    arg := pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1);
    IF pg_catalog.to_regclass(arg) IS NULL THEN
        RAISE EXCEPTION 'trigger % on %: alerts table "%" does not exist', t.tgname, t.rel, arg USING ERRCODE = '42P01';
    END IF;
    PERFORM aegis.check_metric_alert_source(t.rel, 'server_id', 'ts', NULL, NULL, pg_catalog.to_regclass(arg), NULL);
END
$$;
COMMENT ON FUNCTION aegis.check_metric_alerts_trigger(oid) IS
    'Internal: refuse, when it is created, a metric alert trigger that would fail on insert';

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

-- Whether the calling statement runs inside a transaction block (explicit
-- BEGIN, or several statements sent as one query). Internal.
CREATE FUNCTION aegis.in_transaction_block() RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'in_transaction_block_wrapper';
COMMENT ON FUNCTION aegis.in_transaction_block() IS
    'Internal: whether the calling statement runs inside a transaction block';

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
    baseline_moved boolean := false;
BEGIN
    IF notify IS NULL THEN
        RAISE EXCEPTION 'notify must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- Notifying updates the alerts' state, which the background worker
    -- updates too: a non-superuser may do it only in a transaction of its
    -- own (in a transaction block its row locks would last until COMMIT;
    -- several statements sent as one query are a transaction block too).
    IF notify AND aegis.in_transaction_block()
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER) THEN
        RAISE EXCEPTION 'aegis.security_alerts(notify => true) must run in a transaction of its own, not inside a transaction block'
            USING ERRCODE = '25001',
                  HINT = 'Its state updates would wait for COMMIT and stall the background worker meanwhile; security_alerts(false) only looks.';
    END IF;
    -- 1. The chain verifies (from its signed checkpoint, if pruned).
    SELECT * INTO v FROM aegis.verify_chain_incremental() c;
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
                baseline_moved := true;
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
        -- At most once an hour per alert, except a burst of denied
        -- attempts: each burst since the last check is its own (a burst
        -- anyone can cause must not hide the next one for an hour), sent
        -- when this check moved the baseline past it (if another session
        -- holds the baseline, the same burst is not sent again and again).
        IF notify AND ((f ->> 'alert' = 'denied_access_burst' AND baseline_moved)
                       OR (f ->> 'alert' <> 'denied_access_burst'
                           AND NOT EXISTS (SELECT 1 FROM aegis.security_alert_state s
                                           WHERE s.alert = f ->> 'alert' AND s.last_at > pg_catalog.now() - interval '1 hour'))) THEN
            PERFORM aegis.announce_alert('security', f ->> 'alert', f ->> 'severity', NULL, SESSION_USER, f -> 'detail');
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
BEGIN
    IF EXISTS (SELECT 1 FROM aegis.security_alert_state s
               WHERE s.alert = 'audit_sealer_blocked' AND s.last_at > pg_catalog.now() - interval '10 minutes') THEN
        RETURN;
    END IF;
    PERFORM aegis.announce_alert('security', 'audit_sealer_blocked', 'warning', NULL, SESSION_USER,
            pg_catalog.jsonb_build_object('holders', holders,
                'hint', 'a session holds a lock on aegis.audit_chain; sealing waits for it (pg_terminate_backend(pid) ends it)'));
    INSERT INTO aegis.security_alert_state AS s (alert, last_at) VALUES ('audit_sealer_blocked', pg_catalog.now())
    ON CONFLICT ON CONSTRAINT security_alert_state_pkey DO UPDATE SET last_at = EXCLUDED.last_at;
END
$$;
COMMENT ON FUNCTION aegis.report_blocked_sealer(text) IS
    'Internal: the background sealer reports who holds the chain''s lock (security alert, at most every 10 minutes)';

GRANT SELECT ON aegis.alert_rules, aegis.alert_state, aegis.metric_baselines, aegis.metric_baseline_deltas,
    aegis.security_alert_state
    TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.alert_rules TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.alert_rules_id_seq TO aegis_admin;
