-- Metric alerts (src/alerts.rs): rules, the statement trigger that
-- evaluates them over each insert's new rows, the cooldown state and the
-- incrementally kept anomaly baselines. Alerts go to the alerts table the
-- trigger names and to NOTIFY aegis_alerts (a JSON payload).
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

GRANT SELECT ON aegis.alert_rules, aegis.alert_state, aegis.metric_baselines TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE, DELETE ON aegis.alert_rules TO aegis_admin;
GRANT USAGE ON SEQUENCE aegis.alert_rules_id_seq TO aegis_admin;
