-- Control: retention at monitoring scale. Integer epoch time columns
-- (Zabbix's clock, seconds; bigint milliseconds) are retention time
-- columns with a declared unit; a digest-mode table range-partitioned by
-- its time column loses whole expired partitions by DROP TABLE (one
-- RETENTION entry each, carrying the digest of what left, so verify_table()
-- still balances), never a partition a legal hold touches (only its unheld
-- rows go), and falls back to row-by-row deletion when a partition cannot
-- be dropped (a view depends on it). Image-mode tables keep row-by-row
-- deletion (one image per row is that mode's promise). The tables are
-- owned by an application login; retention is set by an aegis_admin login.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
CREATE ROLE rp_zabbix LOGIN;
CREATE ROLE rp_admin LOGIN IN ROLE aegis_admin;
CREATE SCHEMA rp AUTHORIZATION rp_zabbix;
-- Day boundaries around now, in seconds since 1970: partitions d_5 .. d_1
-- are 5 .. 1 days old, d_0 is today, d_next tomorrow.
CREATE FUNCTION pg_temp.day(k int) RETURNS bigint LANGUAGE sql
AS $$ SELECT (floor(extract(epoch FROM now()) / 86400)::bigint - k) * 86400 $$;
SET SESSION AUTHORIZATION rp_zabbix;
CREATE TABLE rp.history (
    itemid bigint NOT NULL,
    clock  integer NOT NULL DEFAULT 0,
    value  double precision NOT NULL DEFAULT 0.0000,
    ns     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (itemid, clock, ns)
) PARTITION BY RANGE (clock);
CREATE TABLE rp.history_text (
    itemid bigint NOT NULL,
    clock  integer NOT NULL DEFAULT 0,
    value  text NOT NULL DEFAULT '',
    ns     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (itemid, clock, ns)
) PARTITION BY RANGE (clock);
CREATE TABLE rp.metrics_ms (id bigint PRIMARY KEY, ts_ms bigint NOT NULL, v float8);
CREATE TABLE rp.events_ts (id bigint, ts timestamptz NOT NULL, msg text, PRIMARY KEY (id, ts))
    PARTITION BY RANGE (ts);
RESET SESSION AUTHORIZATION;
DO $$
DECLARE k int;
BEGIN
    FOR k IN 0 .. 5 LOOP
        EXECUTE format('CREATE TABLE rp.history_d_%s PARTITION OF rp.history FOR VALUES FROM (%s) TO (%s)',
                       k, pg_temp.day(k), pg_temp.day(k - 1));
        EXECUTE format('ALTER TABLE rp.history_d_%s OWNER TO rp_zabbix', k);
        EXECUTE format('CREATE TABLE rp.history_text_d_%s PARTITION OF rp.history_text FOR VALUES FROM (%s) TO (%s)',
                       k, pg_temp.day(k), pg_temp.day(k - 1));
        EXECUTE format('ALTER TABLE rp.history_text_d_%s OWNER TO rp_zabbix', k);
        EXECUTE format('CREATE TABLE rp.events_ts_d_%s PARTITION OF rp.events_ts FOR VALUES FROM (%L) TO (%L)',
                       k, to_timestamp(pg_temp.day(k)), to_timestamp(pg_temp.day(k - 1)));
        EXECUTE format('ALTER TABLE rp.events_ts_d_%s OWNER TO rp_zabbix', k);
    END LOOP;
    EXECUTE format('CREATE TABLE rp.history_next PARTITION OF rp.history FOR VALUES FROM (%s) TO (MAXVALUE)', pg_temp.day(-1));
    EXECUTE 'ALTER TABLE rp.history_next OWNER TO rp_zabbix';
END $$;
SET SESSION AUTHORIZATION rp_zabbix;
-- 200 rows a day, every 432 s, in each table.
INSERT INTO rp.history SELECT 10000 + g % 7, pg_temp.day(5) + g * 432, g, 0 FROM generate_series(0, 1199) g;
INSERT INTO rp.history_text SELECT itemid, clock, 'v' || value, ns FROM rp.history;
INSERT INTO rp.events_ts SELECT g, to_timestamp(pg_temp.day(5) + g * 432), 'event ' || g FROM generate_series(0, 1199) g;
INSERT INTO rp.metrics_ms SELECT g, (pg_temp.day(5) + g * 432) * 1000, g FROM generate_series(0, 1199) g;
CREATE POLICY rp_app ON rp.history TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY rp_app ON rp.history_text TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY rp_app ON rp.events_ts TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY rp_app ON rp.metrics_ms TO rp_zabbix USING (true) WITH CHECK (true);
GRANT USAGE ON SCHEMA rp TO rp_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA rp TO rp_admin;
CREATE POLICY rp_admin ON rp.history TO rp_admin USING (true);
CREATE POLICY rp_admin ON rp.history_text TO rp_admin USING (true);
CREATE POLICY rp_admin ON rp.events_ts TO rp_admin USING (true);
CREATE POLICY rp_admin ON rp.metrics_ms TO rp_admin USING (true);
RESET SESSION AUTHORIZATION;

-- The retention period puts the cutoff in the middle of d_2 (whatever the
-- time of day the test runs at): 'keep' is now() minus that instant.
SELECT now() - to_timestamp(pg_temp.day(2) + 43200) AS keep_mid_d2, now() - to_timestamp(pg_temp.day(1)) AS keep_end_d2,
       now() - to_timestamp(pg_temp.day(0)) AS keep_end_d1 \gset
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.protect('rp.history', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 3600}}');
SELECT aegis.protect('rp.history_text', '{}');
SELECT aegis.protect('rp.events_ts', '{"audit_inserts": "digest", "digest_buckets": {"column": "ts"}}');
SELECT aegis.protect('rp.metrics_ms', '{"audit_inserts": "digest", "digest_buckets": {"column": "ts_ms", "width": 86400000}}');

-- 1. An integer time column needs its unit; a timestamp column takes none.
SELECT aegis.set_retention('rp.history', '2 days', 'clock');
SELECT aegis.set_retention('rp.history', '2 days', 'clock', time_unit => 'minutes');
SELECT aegis.set_retention('rp.events_ts', '2 days', 'ts', time_unit => 'seconds');
SELECT aegis.set_retention('rp.history', '2 days', 'value', time_unit => 'seconds');
-- The catalog guard checks a direct write the same way.
INSERT INTO aegis.retention_rules (relid, keep, time_column) VALUES ('rp.history', '2 days', 'clock');
SELECT aegis.set_retention('rp.history', :'keep_mid_d2', 'clock', time_unit => 'seconds');
SELECT aegis.set_retention('rp.history_text', :'keep_mid_d2', 'clock', time_unit => 'seconds');
SELECT aegis.set_retention('rp.events_ts', :'keep_mid_d2', 'ts');
SELECT aegis.set_retention('rp.metrics_ms', :'keep_mid_d2', 'ts_ms', time_unit => 'milliseconds');
SELECT table_name, time_column, time_unit FROM aegis.retention_policies WHERE table_name::text LIKE 'rp.%' ORDER BY 1;

-- 2. A legal hold on two rows of the 4-day-old partition of history.
SELECT aegis.place_legal_hold('rp.history', format('clock IN (%s, %s)', pg_temp.day(4), pg_temp.day(4) + 432), 'case 17') > 0 AS held;

-- 3. Dry run: counts, drops nothing. Expired: d_5, d_4, d_3 whole and
-- the older half of d_2: 200 * 3 + 100 = 700 rows in every table, but
-- the two held rows of history.
SET SESSION AUTHORIZATION rp_admin;
SELECT r.table_name, r.rows_affected, r.rows_locked
FROM aegis.apply_retention(true) r WHERE r.table_name LIKE 'rp.%' ORDER BY 1;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS partitions FROM pg_class WHERE relnamespace = 'rp'::regnamespace AND relispartition AND relkind = 'r';

-- 4. The run: history loses d_5 and d_3 whole (d_4 keeps its two held
-- rows; its other rows go in one statement), d_2 loses its expired half row
-- by row; events_ts (timestamptz) loses d_5, d_4, d_3; history_text (image
-- mode) and metrics_ms (not partitioned) go row by row.
SET SESSION AUTHORIZATION rp_admin;
SELECT r.table_name, r.rows_affected, r.rows_locked
FROM aegis.apply_retention() r WHERE r.table_name LIKE 'rp.%' ORDER BY 1;
RESET SESSION AUTHORIZATION;
SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'rp'::regnamespace AND c.relispartition AND c.relkind = 'r'
ORDER BY 1;
SELECT count(*) AS held_rows_kept FROM rp.history_d_4;
SELECT (SELECT count(*) FROM rp.history) AS history_left,
       (SELECT count(*) FROM rp.history_text) AS history_text_left,
       (SELECT count(*) FROM rp.events_ts) AS events_left,
       (SELECT count(*) FROM rp.metrics_ms) AS metrics_left;
-- The trail: one RETENTION entry per dropped partition (its rows and the
-- digest of what left), one lifecycle statement entry per row-wise DELETE,
-- and the run's summary naming the dropped partitions.
SELECT l.table_name, l.operation,
       l.detail - 'cutoff' - 'keep' - 'requested_by' - 'legal_holds' - 'cutoff_epoch' AS detail,
       l.content_change IS NOT NULL AS digest
FROM aegis.audit_log l
WHERE l.table_name IN ('rp.history', 'rp.events_ts') AND l.operation IN ('RETENTION', 'DELETE')
ORDER BY l.table_name, l.id;
SELECT count(*) FILTER (WHERE operation = 'DELETE') AS history_text_delete_images
FROM aegis.audit_log WHERE table_name = 'rp.history_text';
-- Every table still verifies (the dropped content left the expected
-- digest with it), and so does the chain.
SELECT t, v.ok, v.rows_checked, v.mismatches
FROM unnest(ARRAY['rp.history', 'rp.history_text', 'rp.events_ts', 'rp.metrics_ms']) t,
     LATERAL aegis.verify_table(t::regclass) v ORDER BY 1;
SELECT ok, problem FROM aegis.verify_chain();
-- The DDL guard forgot the dropped partitions and still guards the rest:
-- the owner cannot drop one, a new partition comes out protected.
SELECT count(*) AS remembered_dropped FROM aegis.guard_states g
WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relid::oid);
SET SESSION AUTHORIZATION rp_zabbix;
DROP TABLE rp.history_d_2;
SELECT format('CREATE TABLE rp.history_text_d_6 PARTITION OF rp.history_text FOR VALUES FROM (%s) TO (%s)',
              pg_temp.day(6), pg_temp.day(5)) AS ddl \gset
:ddl;
RESET SESSION AUTHORIZATION;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'rp.history_text_d_6'::regclass;

-- 5. A partition that cannot be dropped (a view of the owner's depends on
-- it): that table's drops are undone, its expired rows deleted row by row.
SET SESSION AUTHORIZATION rp_zabbix;
CREATE VIEW rp.d1_view AS SELECT * FROM rp.events_ts_d_2;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.set_retention('rp.events_ts', :'keep_end_d2', 'ts');
SET client_min_messages = warning;
SELECT r.table_name, r.rows_affected > 0 AS deleted FROM aegis.apply_retention() r WHERE r.table_name = 'rp.events_ts';
RESET SESSION AUTHORIZATION;
SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'rp'::regnamespace AND c.relname LIKE 'events_ts_d_%' ORDER BY 1;
SELECT count(*) AS events_d_2_left FROM rp.events_ts_d_2;
SELECT ok, mismatches FROM aegis.verify_table('rp.events_ts');

SELECT count(*) AS events_d_1_left FROM rp.events_ts_d_1;

-- 6. A row changed behind the trail in a partition that has not expired:
-- verify_table() names the partition. When it expires, the RETENTION entry
-- removes what was really there (the forged row), not what the trail
-- expected, so the mismatch outlives the partition: tampering is never
-- laundered by retention.
SET session_replication_role = replica;
UPDATE rp.events_ts SET msg = 'forged' WHERE id = 900;
SET session_replication_role = origin;
SELECT ok, mismatches, first_mismatch -> 'partitions' AS partitions FROM aegis.verify_table('rp.events_ts');
DROP VIEW rp.d1_view;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.set_retention('rp.events_ts', :'keep_end_d1', 'ts');
SELECT r.table_name, r.rows_affected FROM aegis.apply_retention() r WHERE r.table_name = 'rp.events_ts';
RESET SESSION AUTHORIZATION;
SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'rp'::regnamespace AND c.relname LIKE 'events_ts_d_%' AND c.relkind = 'r';
SELECT ok, mismatches, first_mismatch ->> 'problem' LIKE 'rows were changed behind the audit trail in ts from % 0 rows found, 0 expected%' AS changed_then_removed
FROM aegis.verify_table('rp.events_ts');

-- 8. A table managed by pg_partman (daily partitions of an epoch column,
-- made and premade by partman.run_maintenance(), a default partition):
-- pg_aegis's retention drops its expired partitions the same way, the
-- partitions partman adds later come out protected, and the table
-- verifies. Retention belongs to pg_aegis: partman's own is left unset.
-- partman cuts daily partitions at midnight in the session's time zone and
-- pg_temp.day() counts UTC days: one clock for both, so what is created,
-- dropped and premade does not depend on the hour the test runs at.
SET TimeZone = 'UTC';
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
-- The application login runs partman (its documented non-superuser set-up).
GRANT ALL ON SCHEMA partman TO rp_zabbix;
GRANT ALL ON ALL TABLES IN SCHEMA partman TO rp_zabbix;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO rp_zabbix;
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO rp_zabbix;
SET SESSION AUTHORIZATION rp_zabbix;
CREATE TABLE rp.history_uint (
    itemid bigint NOT NULL,
    clock  integer NOT NULL DEFAULT 0,
    value  numeric(20,0) NOT NULL DEFAULT '0',
    ns     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (itemid, clock, ns)
) PARTITION BY RANGE (clock);
SELECT partman.create_parent('rp.history_uint', 'clock', 'native', 'daily', p_epoch => 'seconds', p_premake => 2,
                             p_start_partition => to_timestamp(pg_temp.day(5))::text);
RESET SESSION AUTHORIZATION;
SELECT count(*) AS partman_partitions, count(*) FILTER (WHERE c.relowner = 'rp_zabbix'::regrole) AS owned_by_app
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'rp.history_uint'::regclass;
SET SESSION AUTHORIZATION rp_zabbix;
INSERT INTO rp.history_uint SELECT 10000 + g % 7, pg_temp.day(5) + g * 432, g, 0 FROM generate_series(0, 1199) g;
CREATE POLICY rp_app ON rp.history_uint TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY rp_admin ON rp.history_uint TO rp_admin USING (true);
GRANT SELECT ON rp.history_uint TO rp_admin;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.protect('rp.history_uint', '{"audit_inserts": "digest", "digest_buckets": {"column": "clock", "width": 3600}}');
SELECT aegis.set_retention('rp.history_uint', :'keep_mid_d2', 'clock', time_unit => 'seconds');
SELECT r.table_name, r.rows_affected FROM aegis.apply_retention() r WHERE r.table_name = 'rp.history_uint';
RESET SESSION AUTHORIZATION;
SELECT jsonb_array_length(l.detail -> 'partitions_dropped') AS partitions_dropped, l.detail -> 'rows_deleted' AS rows_deleted
FROM aegis.audit_log l WHERE l.table_name = 'rp.history_uint' AND l.operation = 'RETENTION' AND l.detail ? 'keep';
SELECT count(*) AS left_rows, min(clock) >= pg_temp.day(2) + 43200 AS only_unexpired FROM rp.history_uint;
-- partman's maintenance premakes new partitions; they come out protected.
UPDATE partman.part_config SET premake = 4, infinite_time_partitions = true WHERE parent_table = 'rp.history_uint';
SET SESSION AUTHORIZATION rp_zabbix;
SELECT partman.run_maintenance('rp.history_uint');
RESET SESSION AUTHORIZATION;
-- How many partman premakes depends on the hour (it rounds the age of its
-- newest partition, from now(), to whole days): at least today's and four
-- days ahead.
SELECT max((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \((\d+)\)'))[1]::bigint) >= pg_temp.day(-5)
       AS premade_four_days_ahead
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'rp.history_uint'::regclass;
SELECT count(*) FILTER (WHERE NOT (c.relrowsecurity AND c.relforcerowsecurity)) AS unprotected_partitions
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'rp.history_uint'::regclass;
SET SESSION AUTHORIZATION rp_zabbix;
INSERT INTO rp.history_uint VALUES (1, pg_temp.day(-1) + 5, 1, 0);
RESET SESSION AUTHORIZATION;
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('rp.history_uint');

-- 9. What the cold review of partition retention found, each closed.
-- 9a. The owner's trigger, fired by retention's DELETE, sets search_path
-- for the session and brings an operator of its own: the settings it
-- changes end with the statement, so apply_retention() (definer rights)
-- never resolves an operator through them, the owner stays what it is and
-- the admin's session keeps its own search_path.
CREATE SCHEMA rp_ev AUTHORIZATION rp_zabbix;
SET SESSION AUTHORIZATION rp_zabbix;
CREATE FUNCTION rp_ev.plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE rp_zabbix SUPERUSER';
    END IF;
    RETURN $1 OPERATOR(pg_catalog.+) $2;
END $$;
CREATE OPERATOR rp_ev.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = rp_ev.plus);
CREATE TABLE rp_ev.bait (id int PRIMARY KEY, ts timestamptz NOT NULL);
INSERT INTO rp_ev.bait VALUES (1, now() - interval '100 days'), (2, now());
CREATE POLICY own ON rp_ev.bait TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY adm ON rp_ev.bait TO rp_admin USING (true);
GRANT USAGE ON SCHEMA rp_ev TO PUBLIC;
GRANT SELECT ON rp_ev.bait TO rp_admin;
GRANT EXECUTE ON FUNCTION rp_ev.plus(bigint, bigint) TO PUBLIC;
CREATE FUNCTION rp_ev.sp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'rp_ev, pg_catalog', false);
    PERFORM pg_catalog.set_config('TimeZone', 'HST-167', false);
    RETURN NULL;
END $$;
CREATE TRIGGER sp AFTER DELETE ON rp_ev.bait FOR EACH STATEMENT EXECUTE FUNCTION rp_ev.sp();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.protect('rp_ev.bait', '{}');
SELECT aegis.set_retention('rp_ev.bait', '30 days', 'ts');
SET search_path = public;
SELECT r.table_name, r.rows_affected FROM aegis.apply_retention() r WHERE r.table_name IN ('rp_ev.bait', 'rp.history')
ORDER BY 1;
SHOW search_path;
RESET SESSION AUTHORIZATION;
RESET search_path;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'rp_zabbix';
SELECT count(*) AS bait_left FROM rp_ev.bait;
-- 9b. A legal hold on a partition keeps that partition's rows.
SELECT format('CREATE TABLE rp.history_d_9 PARTITION OF rp.history FOR VALUES FROM (%s) TO (%s)', pg_temp.day(9), pg_temp.day(8)) AS ddl \gset
SET SESSION AUTHORIZATION rp_zabbix;
:ddl;
INSERT INTO rp.history SELECT 3, pg_temp.day(9) + g, g, 0 FROM generate_series(1, 5) g;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.place_legal_hold('rp.history_d_9', NULL, 'hold on one partition') > 0 AS held;
SELECT r.table_name, r.rows_affected FROM aegis.apply_retention() r WHERE r.table_name = 'rp.history';
RESET SESSION AUTHORIZATION;
SELECT count(*) AS held_partition_rows FROM rp.history_d_9;
-- 9c. Retention's DELETE cascading (ON DELETE CASCADE) into another
-- digest-mode table: the cascaded delete is the owner's schema doing, not
-- the lifecycle statement: recorded with its row images.
SET SESSION AUTHORIZATION rp_zabbix;
CREATE TABLE rp_ev.parent (id bigint PRIMARY KEY, ts timestamptz NOT NULL);
CREATE TABLE rp_ev.child (id bigint PRIMARY KEY, pid bigint REFERENCES rp_ev.parent (id) ON DELETE CASCADE, note text);
INSERT INTO rp_ev.parent VALUES (1, now() - interval '10 days'), (2, now());
INSERT INTO rp_ev.child SELECT g, 1, 'evidence ' || g FROM generate_series(1, 3) g;
CREATE POLICY own ON rp_ev.parent TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY own ON rp_ev.child TO rp_zabbix USING (true) WITH CHECK (true);
CREATE POLICY adm ON rp_ev.parent TO rp_admin USING (true);
CREATE POLICY adm ON rp_ev.child TO rp_admin USING (true);
GRANT SELECT ON rp_ev.parent, rp_ev.child TO rp_admin;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.protect('rp_ev.parent', '{"audit_inserts": "digest"}');
SELECT aegis.protect('rp_ev.child', '{"audit_inserts": "digest"}');
SELECT aegis.set_retention('rp_ev.parent', '1 day', 'ts');
SELECT r.table_name, r.rows_affected FROM aegis.apply_retention() r WHERE r.table_name = 'rp_ev.parent';
RESET SESSION AUTHORIZATION;
SELECT l.table_name, l.detail ->> 'lifecycle' AS lifecycle, l.pk IS NOT NULL AS has_image, count(*)
FROM aegis.audit_log l WHERE l.table_name IN ('rp_ev.parent', 'rp_ev.child') AND l.operation = 'DELETE'
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- 9e. Milliseconds need a bigint column.
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.set_retention('rp.history', '1 day', 'clock', time_unit => 'milliseconds');
RESET SESSION AUTHORIZATION;

-- 7. Only the extension calls retire_partition(); an admin cannot write a
-- removal entry with it.
SET SESSION AUTHORIZATION rp_admin;
SELECT aegis.retire_partition('rp.history_d_1');
RESET SESSION AUTHORIZATION;
ROLLBACK;

-- 9d. Above READ COMMITTED a run is refused (an older snapshot would not
-- see rows, held ones among them, inserted before a partition's lock); a
-- dry run is fine.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) >= 0 AS dry_run_ok FROM aegis.apply_retention(true);
SELECT * FROM aegis.apply_retention();
ROLLBACK;
