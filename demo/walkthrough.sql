-- pg_aegis guided walkthrough, run by `make demo` (psql echoes each statement).
-- Each later capability adds its section here, with sample monitoring data.

-- == 1. What is installed ====================================================
SELECT aegis.version();
SELECT * FROM aegis.build_info() ORDER BY item;

-- == 2. pgcrypto-compatible hashing ===========================================
-- Same bytes as pgcrypto, so queries can switch from digest() to aegis.digest().
SELECT aegis.digest('abc', 'sha256') = digest('abc', 'sha256') AS same_as_pgcrypto;
SELECT encode(aegis.hmac('GET /api/v1/metrics', 'webhook-secret', 'sha256'), 'hex') AS webhook_signature;
-- md5/sha1 are refused unless a superuser opts in (aegis.allow_legacy_hashes).
DO $$
BEGIN
    PERFORM aegis.digest('abc', 'md5');
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'refused as expected: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END $$;

-- == 3. Policy pack: roles, row-level security, masking ======================
-- The reference monitoring schema, created once (a second `make demo` keeps it).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'monitoring') THEN
        PERFORM aegis.create_monitoring_schema('monitoring');
        INSERT INTO monitoring.servers (server_id, hostname, region, owner_role) VALUES
            ('web-1', 'web-1.eu.example.net', 'eu', 'demo_shop_team'),
            ('db-1', 'db-1.eu.example.net', 'eu', NULL),
            ('db-2', 'db-2.us.example.net', 'us', NULL);
        INSERT INTO monitoring.error_logs (server_id, error_severity, error_message, user_identifier, user_ip) VALUES
            ('db-1', 'ERROR', 'connection timeout after 30s for jane.doe@example.com from 198.51.100.23', 'u-1001', '198.51.100.23'),
            ('db-1', 'SECURITY_BREACH', 'reused session token from 203.0.113.9', 'u-1002', '203.0.113.9'),
            ('db-2', 'WARNING', 'replication lag 12s', NULL, NULL),
            ('web-1', 'ERROR', 'upstream 502 for /checkout, card 4111 1111 1111 1111, callback +44 20 7946 0958', 'u-1003', '192.0.2.44');
        INSERT INTO monitoring.server_metrics (server_id, cpu_usage, memory_usage, network_in_bytes)
        SELECT s, 20 + g % 70, 40 + g % 50, g * 1000
        FROM unnest(ARRAY['web-1', 'db-1', 'db-2']) s, generate_series(1, 5) g;
        INSERT INTO monitoring.incident_response_logs (server_id, severity, incident_summary, root_cause, status) VALUES
            ('db-1', 'high', 'Checkout outage reported by jane@example.com', 'failed schema migration', 'resolved');
        INSERT INTO monitoring.aggregated_metrics VALUES ('eu', date_trunc('hour', now()), 41.5, 982000);
        INSERT INTO monitoring.cost_data (server_id, period_start, period_end, service, amount)
            VALUES ('db-1', '2026-10-01', '2026-10-31', 'compute', 1840.00);
    END IF;
END $$;
-- People are LOGIN roles that DBAs make members of the pg_aegis group roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_shop_team') THEN CREATE ROLE demo_shop_team NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alice') THEN CREATE ROLE alice LOGIN IN ROLE aegis_developer; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bob') THEN CREATE ROLE bob LOGIN IN ROLE aegis_oncall; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shop_app') THEN CREATE ROLE shop_app LOGIN IN ROLE aegis_app, demo_shop_team; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'carol') THEN CREATE ROLE carol LOGIN IN ROLE aegis_incident_viewer; END IF;
END $$;
SELECT aegis.assign_oncall('bob', 'db-2');
SELECT role_name, description FROM aegis.role_catalog() ORDER BY role_name;

-- alice (developer) reads error logs through developer_error_logs: PII in the
-- messages redacted, never SECURITY_BREACH rows, and she cannot write.
SET ROLE alice;
SELECT server_id, error_severity, error_message, user_network FROM monitoring.developer_error_logs ORDER BY id;
DO $$ BEGIN
    UPDATE monitoring.error_logs SET resolved = true;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'alice cannot update: %', SQLERRM;
END $$;
RESET ROLE;
-- bob (on-call) sees only the server he is assigned to.
SET ROLE bob;
SELECT server_id, error_severity, error_message FROM monitoring.error_logs ORDER BY id;
RESET ROLE;
-- shop_app sees metrics of the servers its team owns, nothing else.
SET ROLE shop_app;
SELECT server_id, count(*) AS metric_rows FROM monitoring.server_metrics GROUP BY server_id;
RESET ROLE;
-- carol (incident viewer) gets the incident with summary and root cause masked.
SET ROLE carol;
SELECT severity, incident_summary, root_cause, status FROM monitoring.masked_incident_logs;
RESET ROLE;
-- Which tables are protected, and how their columns are classified.
SELECT relid AS table_name, string_agg(column_name || '=' || class, ', ' ORDER BY column_name) AS classes
FROM aegis.column_classes GROUP BY relid ORDER BY relid::text;

-- == 4. Encryption with a keyring =============================================
-- make demo wrote a master key to .demo/master.key (mode 600) and set
-- aegis.master_key_file; SQL never sees it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'default') THEN
        PERFORM aegis.create_key('default');
        PERFORM aegis.create_key('user_ip', 'aegis_security');
        PERFORM aegis.create_key('pseudonym');
    END IF;
END $$;
SELECT name, version, status, is_current, decrypt_role FROM aegis.keys_overview();
-- Encrypt client IPs in place, bound to their row with the aad.
CREATE TABLE IF NOT EXISTS monitoring.login_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_pseudonym text, user_ip_enc bytea, at timestamptz DEFAULT now());
INSERT INTO monitoring.login_events (user_pseudonym, user_ip_enc)
SELECT aegis.pseudonymize(u), NULL FROM (VALUES ('jane@example.com'), ('omar@example.com')) v(u);
UPDATE monitoring.login_events SET user_ip_enc = aegis.encrypt('198.51.100.' || id, 'user_ip', 'login_events.user_ip:' || id)
WHERE user_ip_enc IS NULL;
SELECT id, user_pseudonym, length(user_ip_enc) AS ciphertext_bytes,
       aegis.decrypt(user_ip_enc, 'login_events.user_ip:' || id) AS user_ip
FROM monitoring.login_events ORDER BY id LIMIT 2;
-- alice is not in user_ip's decrypt_role: refused.
GRANT SELECT ON monitoring.login_events TO alice;
SET ROLE alice;
DO $$ BEGIN
    PERFORM aegis.decrypt(user_ip_enc, 'login_events.user_ip:' || id) FROM monitoring.login_events;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'alice: %', SQLERRM;
END $$;
RESET ROLE;
-- Rotate, re-encrypt online, and anonymize instead of encrypting when a
-- coarse value is enough.
SELECT aegis.rotate_key('user_ip') AS new_version;
UPDATE monitoring.login_events SET user_ip_enc = aegis.reencrypt(user_ip_enc, 'login_events.user_ip:' || id);
SELECT get_byte(user_ip_enc, 23) AS key_version, count(*) FROM monitoring.login_events GROUP BY 1;
SELECT aegis.anonymize_ip('198.51.100.77') AS coarse_ip;

-- == 5. PII redaction and log sanitizing ======================================
-- One pass over the text, every kind validated (Luhn, IBAN mod-97, SSN rules,
-- parsed IPv6); look-alikes in operational logs (timestamps, UUIDs, versions,
-- SQLSTATEs, digests) stay as they are.
SELECT array_agg(k) AS pii_kinds FROM aegis.pii_kinds() k;
SELECT aegis.redact_pii('login failed for jane.doe@example.com from 2001:db8::17, '
    || 'dsn postgres://app:s3cr3t@db:5432/prod, SSN 512-48-3097; '
    || 'req 550e8400-e29b-41d4-a716-446655440000 v1.2.3.4 SQLSTATE 23505') AS redacted;
SELECT * FROM aegis.detect_pii('mail jane.doe@example.com, IBAN GB82 WEST 1234 5698 7654 32');
-- Values written to dodge a pattern are decoded first (percent, HTML and
-- JSON escapes, fullwidth forms, Unicode dashes); the redaction replaces the
-- original bytes. Phones with extensions, 00 prefixes and context words.
SELECT aegis.redact_pii('GET /reset?email=jane.doe%40example.com&next=%2F; '
    || 'mail jane&#64;example.org; card 4111.1111.1111.1111; '
    || 'Paging on-call at 9575472073, or 958‐644‐2223x236, or 0044 20 7946 0958') AS redacted_obfuscated;
-- Styles: mask keeps what helps debugging; hash gives a keyed token, so the
-- same person stays trackable across rows without being identifiable.
SELECT aegis.redact_pii(error_message, NULL, 'mask') AS masked,
       aegis.redact_pii(error_message, '{EMAIL}', 'hash') AS email_tokens
FROM monitoring.error_logs WHERE aegis.has_pii(error_message) ORDER BY id;
-- Log injection: a forged line, terminal escapes and an oversized message.
SELECT aegis.sanitize_log(E'user=bob\nFORGED: admin login ok \x1b[2J' || repeat('x', 100), 64) AS sanitized;
-- A trigger sanitizes (and redacts) columns on the way in, COPY included.
CREATE TABLE IF NOT EXISTS monitoring.app_events (id bigint GENERATED ALWAYS AS IDENTITY, msg text);
DROP TRIGGER IF EXISTS app_events_sanitize ON monitoring.app_events;
CREATE TRIGGER app_events_sanitize BEFORE INSERT OR UPDATE ON monitoring.app_events
    FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('msg', 'redact');
INSERT INTO monitoring.app_events (msg) VALUES (E'password=hunter2 sent to ops@example.com\nFAKE entry');
SELECT msg FROM monitoring.app_events ORDER BY id DESC LIMIT 1;
-- Developers cannot read the raw table at all.
SET ROLE alice;
DO $$ BEGIN
    PERFORM 1 FROM monitoring.error_logs;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'alice: %', SQLERRM;
END $$;
RESET ROLE;

-- == 6. Tamper-evident audit trail ============================================
-- Every change to a protected table is an entry, personal data already
-- pseudonymized or redacted in the images.
UPDATE monitoring.error_logs SET resolved = true WHERE id = (SELECT min(id) FROM monitoring.error_logs);
SELECT operation, table_name, db_user, new_row ->> 'error_message' AS message,
       new_row ->> 'user_ip' AS user_ip
FROM aegis.audit_log ORDER BY id DESC LIMIT 1;
-- Sealing links committed entries into the hash chain; verification
-- recomputes it, and the signed head is what you store outside the database.
SELECT aegis.create_key('audit_head') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'audit_head');
SELECT aegis.seal() AS newly_sealed;
SELECT * FROM aegis.verify_chain();
SELECT aegis.chain_head() AS head \gset
SELECT :'head'::jsonb - 'signature' AS head_without_signature;
-- Nobody may change the trail, superusers included.
DO $$ BEGIN
    UPDATE aegis.audit_log SET operation = 'forged';
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE '%', SQLERRM;
END $$;
-- A superuser who lifts the guard is still caught.
BEGIN;
ALTER TABLE aegis.audit_log DISABLE TRIGGER append_only;
UPDATE aegis.audit_log SET new_row = jsonb_set(new_row, '{resolved}', 'false')
WHERE id = (SELECT entry_id FROM aegis.audit_chain ORDER BY position DESC LIMIT 1);
SELECT * FROM aegis.verify_chain(:'head');
ROLLBACK;
-- A statement that changes many rows leaves chunk entries: its context
-- once, the rows' images in arrays (1,000 rows per entry); the trail view
-- shows one row per image.
UPDATE monitoring.error_logs SET resolved = false;
SELECT id, operation, detail, jsonb_array_length(new_row) AS images FROM aegis.audit_log
WHERE table_name = 'monitoring.error_logs' AND operation = 'UPDATE' AND aegis.is_chunk(detail, old_row, new_row)
ORDER BY id DESC LIMIT 1;
SELECT id, item, new_row ->> 'resolved' AS resolved FROM aegis.audit_trail
WHERE id = (SELECT max(id) FROM aegis.audit_log WHERE table_name = 'monitoring.error_logs' AND operation = 'UPDATE')
ORDER BY item LIMIT 3;
-- Reads of the sensitive tables are audited too (their policy says
-- "audit_reads"; the library is preloaded), with who and how many rows.
SET ROLE bob;
SELECT count(*) AS errors_bob_sees FROM monitoring.error_logs;
RESET ROLE;
SELECT operation, table_name, db_user, detail FROM aegis.audit_log
WHERE operation = 'SELECT' ORDER BY id DESC LIMIT 1;
-- The live table matches its trail, and a change made behind the trigger's
-- back (a superuser in replica mode) is found.
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('monitoring.error_logs');
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE monitoring.error_logs SET error_message = 'nothing to see here'
WHERE id = (SELECT min(id) FROM monitoring.error_logs);
SELECT ok, mismatches, problem FROM aegis.verify_table('monitoring.error_logs');
ROLLBACK;
-- Metrics are audited as digests ("audit_inserts": "digest"): one entry per
-- insert statement with its row count and the change to the table's content
-- digest, no row image. The table still verifies, and a sample changed
-- behind the trail is caught, with the hour (bucket) it is in.
SELECT operation, detail, content_change IS NOT NULL AS has_digest FROM aegis.audit_log
WHERE table_name = 'monitoring.server_metrics' ORDER BY id DESC LIMIT 3;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('monitoring.server_metrics');
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE monitoring.server_metrics SET cpu_usage = 1 WHERE id = (SELECT min(id) FROM monitoring.server_metrics);
SELECT ok, mismatches, problem FROM aegis.verify_table('monitoring.server_metrics');
ROLLBACK;
-- A table's owner cannot switch its audit trigger or RLS off (the DDL guard);
-- a superuser can, and that is recorded.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_owner') THEN CREATE ROLE demo_owner; END IF;
END $$;
CREATE TABLE IF NOT EXISTS public.demo_guarded (id int PRIMARY KEY, note text);
ALTER TABLE public.demo_guarded OWNER TO demo_owner;
SELECT aegis.protect('public.demo_guarded')
WHERE NOT EXISTS (SELECT 1 FROM aegis.protected_tables WHERE relid = 'public.demo_guarded'::regclass);
SET ROLE demo_owner;
DO $$ BEGIN
    ALTER TABLE public.demo_guarded DISABLE TRIGGER aegis_audit_insert;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE '%', SQLERRM;
END $$;
RESET ROLE;

-- == 7. Lifecycle: retention and legal holds ==================================
-- The reference schema comes with the requirements' retention periods (a
-- demo schema created before 0.5.0 gets the access-log period here).
SELECT aegis.set_retention('monitoring.user_access_logs', '90 days', 'accessed_at')
WHERE NOT EXISTS (SELECT 1 FROM aegis.retention_rules WHERE relid = 'monitoring.user_access_logs'::regclass);
SELECT table_name, keep, time_column, only_where FROM aegis.retention_policies ORDER BY table_name::text;
-- Access records going back 30 weeks; one user's are evidence in a case.
INSERT INTO monitoring.user_access_logs (user_id, ip_address, accessed_at, resource)
SELECT 'u-' || (1000 + g % 5), '198.51.100.7', now() - g * interval '7 days', '/billing'
FROM generate_series(1, 30) g;
SELECT aegis.place_legal_hold('monitoring.user_access_logs', $$user_id = 'u-1002'$$,
                              'Case 2026-17: access history of u-1002') AS hold_id \gset
-- A filter is one checked expression, never spliced into SQL.
DO $$ BEGIN
    PERFORM aegis.set_retention('monitoring.user_access_logs', '90 days', 'accessed_at', 'true) OR (true');
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused (%): %', SQLSTATE, SQLERRM;
END $$;
DO $$ BEGIN
    PERFORM aegis.set_retention('monitoring.user_access_logs', '90 days', 'accessed_at',
                                'EXISTS (SELECT 1 FROM aegis.keys)');
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'refused (%): %', SQLSTATE, SQLERRM;
END $$;
SELECT * FROM aegis.apply_retention(dry_run => true);
SELECT * FROM aegis.apply_retention();
-- Only the held user's old records are left; each deletion and the run are in the trail.
SELECT user_id, count(*) AS older_than_90_days FROM monitoring.user_access_logs
WHERE accessed_at < now() - interval '90 days' GROUP BY 1;
SELECT operation, table_name, detail ->> 'rows_deleted' AS deleted, detail ->> 'rows_held' AS held,
       detail -> 'legal_holds' AS holds
FROM aegis.audit_log WHERE operation = 'RETENTION' AND table_name = 'monitoring.user_access_logs'
ORDER BY id DESC LIMIT 1;
SELECT aegis.release_legal_hold(:hold_id);
-- A Zabbix-style history table, daily partitions on an integer clock
-- (seconds since 1970; six days back, so the 40,000 rows fit at any hour),
-- audited as digests: retention drops each expired
-- partition whole, with one entry carrying the digest of what left, and the
-- table still verifies.
CREATE TABLE IF NOT EXISTS public.demo_history (itemid bigint NOT NULL, clock integer NOT NULL,
    value double precision NOT NULL, ns integer NOT NULL DEFAULT 0, PRIMARY KEY (itemid, clock, ns))
    PARTITION BY RANGE (clock);
DO $$
DECLARE d bigint := floor(extract(epoch FROM now()) / 86400)::bigint * 86400; k int;
BEGIN
    FOR k IN -1 .. 5 LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS public.demo_history_%s PARTITION OF public.demo_history FOR VALUES FROM (%s) TO (%s)',
                       to_char(to_timestamp(d - k * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'), d - k * 86400, d - (k - 1) * 86400);
    END LOOP;
END $$;
SELECT aegis.protect('public.demo_history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 3600}}')
WHERE NOT aegis.is_enforced('public.demo_history');
INSERT INTO public.demo_history
SELECT 23000 + g % 50, extract(epoch FROM now())::bigint - g * 9, g % 100, 0 FROM generate_series(1, 40000) g
ON CONFLICT DO NOTHING;
SELECT aegis.set_retention('public.demo_history', '2 days', 'clock', time_unit => 'seconds');
SELECT * FROM aegis.apply_retention() WHERE table_name = 'public.demo_history';
SELECT operation, detail ->> 'partition' AS partition, detail ->> 'rows' AS rows
FROM aegis.audit_log WHERE table_name = 'public.demo_history' AND operation = 'RETENTION' AND detail ? 'partition'
ORDER BY id DESC LIMIT 3;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('public.demo_history');
-- Every night at 03:00 UTC, by this database's background worker (or pg_cron
-- when it is installed).
SELECT aegis.schedule_retention('0 3 * * *');
SELECT schedule, via, next_run_at FROM aegis.retention_schedule;
SELECT aegis.seal() AS newly_sealed;
SELECT ok, entries_checked FROM aegis.verify_chain();

-- == 8. Right to erasure =======================================================
-- A user asks to be forgotten. Their data is in access logs, error logs
-- (as the user and inside messages) and the audit trail, and a document was
-- encrypted under their own key. (A new address per run: an erased
-- subject's key stays destroyed.)
SELECT 'erin.' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISS') || '@example.com' AS erin \gset
INSERT INTO monitoring.user_access_logs (user_id, ip_address, resource) VALUES (:'erin', '198.51.100.23', '/account');
INSERT INTO monitoring.error_logs (server_id, error_severity, error_message, user_identifier, user_ip)
VALUES ('web-1', 'ERROR', 'password reset failed for ' || :'erin', :'erin', '198.51.100.23'),
       ('db-1', 'WARNING', 'support note: ' || :'erin' || ' called about invoice 88', 'support-bot', NULL);
SELECT set_config('demo.erin_ct', aegis.encrypt_for_subject(:'erin', 'verified identity document #4411')::text, false)
       IS NOT NULL AS document_encrypted;
SELECT aegis.erase_subject(:'erin', dry_run => true) -> 'tables' AS would_touch;
SELECT jsonb_pretty(aegis.erase_subject(:'erin')) AS receipt;
-- Rows gone or anonymized, mentions erased, the document unreadable for good.
SELECT count(*) AS access_rows_left FROM monitoring.user_access_logs WHERE user_id = :'erin';
SELECT error_message, user_identifier FROM monitoring.error_logs
WHERE error_message LIKE '%[ERASED]%' ORDER BY id DESC LIMIT 2;
DO $$ BEGIN
    PERFORM aegis.decrypt(current_setting('demo.erin_ct')::bytea);
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'crypto-shredded: %', SQLERRM;
END $$;
-- The audit trail kept every entry, with tombstones where her data was, and
-- still verifies.
SELECT count(*) FILTER (WHERE erased_at IS NOT NULL) AS tombstoned_entries, count(*) AS entries FROM aegis.audit_log;
SELECT aegis.seal() AS newly_sealed;
SELECT ok, entries_checked FROM aegis.verify_chain();

-- == 9. Alerts ================================================================
-- (A demo schema created before 0.5.0 gets the alert trigger and rules here,
-- with the README's upgrade statements.)
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'aegis_alerts'
                   AND tgrelid = 'monitoring.server_metrics'::regclass) THEN
        CREATE TRIGGER aegis_alerts AFTER INSERT ON monitoring.server_metrics
            REFERENCING NEW TABLE AS aegis_new_rows FOR EACH STATEMENT
            EXECUTE FUNCTION aegis.metric_alerts('monitoring.alerts_history');
        INSERT INTO aegis.alert_rules (name, kind, metric, comparison, threshold, min_samples, severity, cooldown)
        VALUES ('cpu_high', 'threshold', 'cpu_usage', '>', 95, 30, 'critical', '15 minutes'),
               ('network_in_anomaly', 'anomaly', 'network_in_bytes', NULL, 4, 30, 'warning', '30 minutes')
        ON CONFLICT (name) DO NOTHING;
    END IF;
END $$;
SELECT name, kind, metric, comparison, threshold, severity, cooldown FROM aegis.alert_rules ORDER BY id;
-- What an on-call tool or SIEM does: LISTEN. (So that a second run of the
-- demo alerts again, the cooldown state is cleared first.)
DELETE FROM aegis.alert_state;
LISTEN aegis_alerts;
INSERT INTO monitoring.server_metrics (server_id, cpu_usage, memory_usage, network_in_bytes)
VALUES ('web-1', 42.0, 61, 1200000), ('web-1', 98.5, 71, 1300000);
-- psql shows the notification that arrived at commit (above): only an
-- event id, since any role may LISTEN. A listener reads the alert through
-- it, under row-level security (a forged payload names no event):
SELECT alert, severity, server_id, raised_by, detail ->> 'message' AS message
FROM aegis.alert_event(pg_catalog.jsonb_build_object('source', 'pg_aegis', 'database', current_database(),
    'id', (SELECT max(id) FROM aegis.alert_events))::text);
SELECT count(*) AS forged FROM aegis.alert_event('{"source": "pg_aegis", "kind": "security", "alert": "audit_chain_broken"}');
-- The alert is also a row of alerts_history.
SELECT rule, severity, server_id, value, message FROM monitoring.alerts_history ORDER BY id DESC LIMIT 1;
-- A second reading within the cooldown does not page anyone again.
INSERT INTO monitoring.server_metrics (server_id, cpu_usage) VALUES ('web-1', 99.0);
SELECT count(*) AS cpu_alerts_for_web1 FROM monitoring.alerts_history
WHERE rule = 'cpu_high' AND server_id = 'web-1' AND ts > now() - interval '1 minute';
-- Anomaly baselines in force: what earlier statements folded, merged with
-- what inserts appended since (no insert ever waits for another one, even
-- a collector that keeps its transaction open).
SELECT metric, server_id, n, round(mean) AS mean
FROM aegis.current_baselines('monitoring.server_metrics'::regclass) ORDER BY metric, server_id LIMIT 3;
-- Security checks go through the same channel (the worker runs them hourly).
SELECT alert, severity, detail FROM aegis.security_alerts(notify => false);
UNLISTEN aegis_alerts;

-- == 10. Compliance report =====================================================
-- What an auditor asks for: every control, its status, and what it evidences.
-- (This demo cluster has no TLS: those controls fail, with the remedy.)
SELECT control, status, detail FROM aegis.compliance_report();
SELECT control, remediation FROM aegis.compliance_report() WHERE status <> 'pass';
SELECT jsonb_pretty(aegis.compliance_report_json() -> 'summary') AS summary;

-- == 11. Hardening: nobody borrows pg_aegis's rights ==========================
-- (In a transaction that rolls back, so the demo can run again.)
BEGIN;
SET client_min_messages = warning;
CREATE ROLE demo_app;
CREATE ROLE demo_adm IN ROLE aegis_admin;
CREATE ROLE demo_aud IN ROLE aegis_auditor;
GRANT CREATE ON SCHEMA public TO demo_app;
RESET client_min_messages;
-- An application's table, with a CHECK constraint that tries to make its
-- owner a superuser whenever it runs with a superuser's rights.
SET SESSION AUTHORIZATION demo_app;
CREATE FUNCTION public.demo_sneaky(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'constraint runs as %', current_user;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE demo_app SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE TABLE public.demo_tickets (id int PRIMARY KEY, user_id text, body text CHECK (public.demo_sneaky(body)),
                                  created timestamptz NOT NULL DEFAULT now());
INSERT INTO demo_tickets (id, user_id, body) VALUES (1, 'u-7', 'printer on fire, ask u-7'), (2, 'u-8', 'u-8 says: call u-7');
GRANT SELECT ON demo_tickets TO aegis_admin;
CREATE POLICY admin_all ON demo_tickets TO aegis_admin USING (true);
RESET SESSION AUTHORIZATION;
-- The admin protects it and erases u-7: the constraint runs as its owner.
SET SESSION AUTHORIZATION demo_adm;
SELECT aegis.protect('public.demo_tickets', '{"columns": {"user_id": "subject_id", "body": "free_text"}}');
SELECT r -> 'tables' AS erased FROM aegis.erase_subject('u-7') r;
-- A retention filter cannot smuggle code in (a domain whose CHECK runs a function).
CREATE DOMAIN pg_temp.sneaky AS text CHECK (true);
DO $$ BEGIN
    PERFORM aegis.set_retention('public.demo_tickets', '1 day', 'created', 'body::pg_temp.sneaky IS NOT NULL');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END $$;
RESET SESSION AUTHORIZATION;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'demo_app';
SELECT id, user_id, body FROM demo_tickets ORDER BY id;
-- A policy calling a function its owner could later rewrite (letting
-- every row through with no DDL on the table) is not accepted.
SET SESSION AUTHORIZATION demo_app;
CREATE TABLE public.demo_notes (id int PRIMARY KEY, tenant text);
CREATE FUNCTION public.demo_tenant_ok(text) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT $1 = 'a' $$;
CREATE POLICY tenant ON demo_notes USING (public.demo_tenant_ok(tenant));
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION demo_adm;
DO $$ BEGIN
    PERFORM aegis.protect('public.demo_notes');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END $$;
RESET SESSION AUTHORIZATION;
-- An auditor reads the trail, but no value it could not read in the table.
SET SESSION AUTHORIZATION demo_aud;
SELECT operation, new_row FROM aegis.audit_trail WHERE table_name = 'public.demo_tickets' ORDER BY id LIMIT 2;
SELECT operation, new_row ->> 'amount' AS amount FROM aegis.audit_trail
WHERE table_name = 'monitoring.cost_data' ORDER BY id LIMIT 1;
RESET SESSION AUTHORIZATION;
ROLLBACK;

-- == 11. An application's own tables (Zabbix-style) ===========================
-- The application's login owns its tables. protect() names it (it keeps
-- working as before), a profile gives pg_aegis's group roles their access,
-- a scope gives on-call engineers their hosts through the application's
-- joins, a masking view shows people as pseudonyms, and erasure follows
-- the application's ids and foreign keys.
BEGIN;
CREATE ROLE demo_zbx LOGIN;
CREATE ROLE demo_auditor LOGIN IN ROLE aegis_auditor;
CREATE SCHEMA zbx AUTHORIZATION demo_zbx;
SET SESSION AUTHORIZATION demo_zbx;
CREATE TABLE zbx.hosts (hostid bigint PRIMARY KEY, host varchar(128) NOT NULL);
CREATE TABLE zbx.items (itemid bigint PRIMARY KEY, hostid bigint NOT NULL REFERENCES zbx.hosts ON DELETE CASCADE);
CREATE TABLE zbx.history (itemid bigint NOT NULL, clock integer NOT NULL, value float8 NOT NULL, ns integer NOT NULL DEFAULT 0,
                          PRIMARY KEY (itemid, clock, ns));
CREATE TABLE zbx.users (userid bigint PRIMARY KEY, username varchar(100) NOT NULL, name varchar(100), surname varchar(100));
CREATE TABLE zbx.media (mediaid bigint PRIMARY KEY, userid bigint NOT NULL REFERENCES zbx.users ON DELETE CASCADE,
                        sendto varchar(1024) NOT NULL);
INSERT INTO zbx.hosts VALUES (10084, 'db-001'), (10085, 'web-001');
INSERT INTO zbx.items VALUES (1, 10084), (2, 10085);
INSERT INTO zbx.history VALUES (1, 1764547200, 0.5), (2, 1764547200, 0.7), (2, 1764547260, 0.9);
INSERT INTO zbx.users VALUES (1, 'Admin', 'Zabbix', 'Administrator'), (42, 'mary.smith', 'Mary', 'Smith');
INSERT INTO zbx.media VALUES (421, 42, 'mary.smith@example.com');
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('zbx.hosts', '{"application_roles": ["demo_zbx"], "profile": "metrics"}');
SELECT aegis.create_scope('host', 'zbx.hosts', 'hostid');
SELECT aegis.protect('zbx.hosts', '{"application_roles": ["demo_zbx"], "profile": "metrics", "scope": {"name": "host", "column": "hostid"}}');
SELECT aegis.protect('zbx.items', '{"application_roles": ["demo_zbx"], "profile": "metrics", "scope": {"name": "host", "column": "hostid"}}');
SELECT aegis.protect('zbx.history', '{"application_roles": ["demo_zbx"], "profile": "metrics", "audit_inserts": "digest",
    "scope": {"name": "host", "column": "itemid", "via": [{"table": "items", "match": "itemid", "column": "hostid"}]}}');
SELECT aegis.protect('zbx.users', '{"application_roles": ["demo_zbx"], "profile": "users",
    "subject_directory": {"id": "userid", "names": ["username", ["name", "surname"]]},
    "columns": {"userid": "subject_id", "username": "subject_id", "name": "pii", "surname": "pii"}}');
SELECT aegis.protect('zbx.media', '{"application_roles": ["demo_zbx"], "profile": "users",
    "columns": {"userid": "subject_id", "sendto": "pii"}}');
-- Unknown ids are refused; bob is on call for host 10085.
DO $$ BEGIN PERFORM aegis.assign_scope('bob', 'host', '99999');
EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'refused: %', SQLERRM; END $$;
SELECT aegis.assign_scope('bob', 'host', '10085');
-- The application still sees everything; bob sees his host's history only.
SET SESSION AUTHORIZATION demo_zbx;
SELECT count(*) AS application_sees FROM zbx.history;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION bob;
SELECT itemid, clock, value FROM zbx.history ORDER BY clock;
RESET SESSION AUTHORIZATION;
-- An auditor sees users as pseudonyms through a masking view, and cannot
-- compute the pseudonym of a name it guesses.
SELECT aegis.create_masking_view('zbx.users', readers => ARRAY['aegis_auditor']::regrole[]);
SET SESSION AUTHORIZATION demo_auditor;
SELECT userid, username, name FROM zbx.users_masked ORDER BY userid;
DO $$ BEGIN PERFORM aegis.masked_pseudonym('mary.smith');
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'refused: %', SQLERRM; END $$;
RESET SESSION AUTHORIZATION;
-- Alerts on the application's history, mapped and checked when attached.
SELECT aegis.attach_metric_alerts('zbx.history', 'itemid', 'clock', ARRAY['value'], time_unit => 'seconds');
INSERT INTO aegis.alert_rules (name, metric, comparison, threshold, severity, cooldown)
VALUES ('demo_history_high', 'value', '>', 100, 'critical', '0');
SET SESSION AUTHORIZATION demo_zbx;
INSERT INTO zbx.history VALUES (1, 1764547300, 250, 0);
RESET SESSION AUTHORIZATION;
SELECT alert, server_id AS itemid, detail ->> 'message' AS message FROM aegis.alert_events WHERE alert = 'demo_history_high';
-- Erasing user 42 by id: her media go with her user row (the cascade is
-- counted and listed); the receipt says who asked.
SELECT r ->> 'complete' AS complete, r -> 'tables' AS tables, r ->> 'requested_by' AS requested_by
FROM aegis.erase_subject('42') r;
ROLLBACK;

-- == 12. An application's own reads, counted ==================================
-- The application reads its tables all day. With "application_reads":
-- "aggregate", a session that logged in as the application records its
-- reads as counts per table and interval (aegis.application_read_interval);
-- anyone else's read of the table stays an entry of its own.
CREATE ROLE demo_webapp LOGIN;
CREATE TABLE public.demo_sessions (sessionid text PRIMARY KEY, userid bigint NOT NULL);
ALTER TABLE public.demo_sessions OWNER TO demo_webapp;
INSERT INTO public.demo_sessions VALUES ('a1f3', 1), ('9c2e', 42);
SELECT aegis.protect('public.demo_sessions', '{"application_roles": ["demo_webapp"], "profile": "access_logs",
    "audit_reads": true, "application_reads": "aggregate", "columns": {"userid": "subject_id", "sessionid": "secret"}}');
\c - demo_webapp
SELECT count(*) FROM demo_sessions;
SELECT userid FROM demo_sessions WHERE sessionid = 'a1f3';
SELECT aegis.flush_application_reads() AS counts_recorded;
\c - postgres
SELECT count(*) FROM demo_sessions;
SELECT db_user, detail ->> 'aggregate' AS counted, detail ->> 'statements' AS statements, detail ->> 'rows' AS rows
FROM aegis.audit_log WHERE table_name = 'public.demo_sessions' AND operation = 'SELECT' ORDER BY id;
SELECT aegis.unprotect('public.demo_sessions');
DROP TABLE public.demo_sessions;
DROP ROLE demo_webapp;
