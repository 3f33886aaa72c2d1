-- Statement capture and chunk entries (0.7.0): every protected table is
-- captured by statement triggers over transition tables; a statement that
-- changes one row leaves a one-row entry, more rows leave chunk entries
-- (context once, images in arrays, 1,000 rows per entry). Attacks from a
-- cold review of the change, as a real table owner: MERGE moving rows
-- between partitions, a foreign-table partition, a partition trigger that
-- drops a moved row, and erasure of two subjects who share a chunk.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
SET client_min_messages = warning;
CREATE ROLE st_owner LOGIN;
CREATE ROLE st_admin LOGIN IN ROLE aegis_admin;
GRANT CREATE ON SCHEMA public TO st_owner;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
RESET client_min_messages;

-- ------------------------------------------------------------ chunks
SET SESSION AUTHORIZATION st_owner;
CREATE TABLE public.st_t (id int PRIMARY KEY, v text);
CREATE POLICY st_all ON public.st_t USING (true) WITH CHECK (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.st_t');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.st_t'::regclass AND NOT tgisinternal ORDER BY 1;
SET SESSION AUTHORIZATION st_owner;
INSERT INTO st_t VALUES (1, 'one');
INSERT INTO st_t SELECT g, 'v' || g FROM generate_series(2, 1002) g;
UPDATE st_t SET v = 'w' WHERE id <= 3;
DELETE FROM st_t WHERE id > 1000;
RESET SESSION AUTHORIZATION;
-- One-row entry, two chunks for 1,001 rows, one chunk per statement after.
SELECT operation, detail, jsonb_typeof(new_row) AS new_row, jsonb_typeof(old_row) AS old_row,
       COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(pk) = 'array' THEN pk END), 1) AS images,
       aegis.is_chunk(detail, old_row, new_row) AS chunk
FROM aegis.audit_log WHERE table_name = 'public.st_t' ORDER BY id;
-- The trail view: one row per image.
SELECT operation, item, pk, old_row ->> 'v' AS old_v, new_row ->> 'v' AS new_v
FROM aegis.audit_trail WHERE table_name = 'public.st_t' AND operation = 'UPDATE' ORDER BY item;
SELECT count(*) AS images FROM aegis.audit_trail WHERE table_name = 'public.st_t';
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('public.st_t');
-- A change behind the trail is still found, inside a chunk's rows.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE st_t SET v = 'tampered' WHERE id = 500;
SELECT ok, mismatches, first_mismatch -> 'key' AS key,
       problem LIKE 'row differs from its latest audit entry %' AS differs
FROM aegis.verify_table('public.st_t');
ROLLBACK;
SELECT aegis.seal() > 0 AS sealed;
SELECT ok FROM aegis.verify_chain();

-- ------------------------------------------------------------ MERGE
-- MERGE into a protected partitioned table is refused: a row its UPDATE
-- action moves to another partition would reach no capture trigger.
SET SESSION AUTHORIZATION st_owner;
CREATE TABLE public.st_p (id int, region int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE public.st_p1 PARTITION OF public.st_p FOR VALUES IN (1);
CREATE TABLE public.st_p2 PARTITION OF public.st_p FOR VALUES IN (2);
CREATE POLICY st_all ON public.st_p USING (true) WITH CHECK (true);
CREATE POLICY st_all ON public.st_p1 USING (true) WITH CHECK (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.st_p');
SET SESSION AUTHORIZATION st_owner;
INSERT INTO st_p VALUES (1, 1, 'balance=100');
MERGE INTO st_p t USING (VALUES (1)) s(id) ON t.id = s.id AND t.region = 1
WHEN MATCHED THEN UPDATE SET region = 2, v = 'balance=999999';
MERGE INTO st_p t USING (VALUES (2)) s(id) ON t.id = s.id
WHEN NOT MATCHED THEN INSERT VALUES (2, 1, 'new');
SELECT id, region, v FROM st_p ORDER BY id;
-- MERGE into a partition itself (it cannot move rows) and into an
-- ordinary table is captured like any statement.
MERGE INTO st_p1 t USING (VALUES (1)) s(id) ON t.id = s.id
WHEN MATCHED THEN UPDATE SET v = 'balance=101';
MERGE INTO st_t t USING (VALUES (1), (5000)) s(id) ON t.id = s.id
WHEN MATCHED THEN UPDATE SET v = 'merged' WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'merged in');
-- The same move by UPDATE is captured (old and new images), and the
-- table verifies: the old key's history ends there.
UPDATE st_p SET region = 2 WHERE id = 1;
RESET SESSION AUTHORIZATION;
SELECT table_name, operation, pk, old_row ->> 'region' AS old_region, new_row ->> 'v' AS v FROM aegis.audit_log
WHERE table_name IN ('public.st_p', 'public.st_t') AND id > (SELECT max(id) - 4 FROM aegis.audit_log) ORDER BY id;
SELECT ok, mismatches FROM aegis.verify_table('public.st_p');
-- Keys swapped inside one statement verify too.
SET SESSION AUTHORIZATION st_owner;
INSERT INTO st_t VALUES (7001, 'a'), (7002, 'b');
UPDATE st_t SET id = CASE id WHEN 7001 THEN 7003 WHEN 7002 THEN 7001 END WHERE id IN (7001, 7002);
RESET SESSION AUTHORIZATION;
SELECT ok, mismatches, problem FROM aegis.verify_table('public.st_t');

-- ------------------------------------------------------------ a moved row dropped
-- A partition's BEFORE INSERT trigger dropping a row an UPDATE moves there
-- would pair the UPDATE's old and new rows wrongly: refused.
SET SESSION AUTHORIZATION st_owner;
CREATE FUNCTION public.st_swallow() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN IF NEW.id = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER a_swallow BEFORE INSERT ON public.st_p1 FOR EACH ROW EXECUTE FUNCTION public.st_swallow();
INSERT INTO st_p VALUES (3, 2, 'three');
UPDATE st_p SET region = 1, v = v || '!';
SELECT id, region, v FROM st_p ORDER BY id;
RESET SESSION AUTHORIZATION;

-- ------------------------------------------------------------ foreign partitions
-- A foreign table takes no capture trigger: it cannot join a protected
-- table, and a table with one cannot be protected.
CREATE FOREIGN DATA WRAPPER st_fdw;
CREATE SERVER st_srv FOREIGN DATA WRAPPER st_fdw;
GRANT USAGE ON FOREIGN SERVER st_srv TO st_owner;
SET SESSION AUTHORIZATION st_owner;
CREATE TABLE public.st_h (itemid bigint, clock int, value float8) PARTITION BY RANGE (clock);
CREATE TABLE public.st_h1 PARTITION OF public.st_h FOR VALUES FROM (0) TO (100);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.st_h', '{"audit_inserts": "digest"}');
SET SESSION AUTHORIZATION st_owner;
CREATE FOREIGN TABLE public.st_h2 PARTITION OF public.st_h FOR VALUES FROM (100) TO (200) SERVER st_srv;
CREATE FOREIGN TABLE public.st_h3 (itemid bigint, clock int, value float8) SERVER st_srv;
ALTER TABLE public.st_h ATTACH PARTITION public.st_h3 FOR VALUES FROM (200) TO (300);
CREATE TABLE public.st_q (id int, region int) PARTITION BY LIST (region);
CREATE FOREIGN TABLE public.st_q1 PARTITION OF public.st_q FOR VALUES IN (1) SERVER st_srv;
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.st_q');
SELECT count(*) AS foreign_partitions FROM pg_inherits WHERE inhparent = 'public.st_h'::regclass
  AND inhrelid IN (SELECT oid FROM pg_class WHERE relkind = 'f');

-- ------------------------------------------------------------ erasure in a chunk
-- Two subjects in one chunk entry: erasing one keeps the other's image;
-- erasing the second later finds it although the entry is already marked.
-- (Rolled back: other files count the trail's tombstones.)
BEGIN;
SET SESSION AUTHORIZATION st_owner;
CREATE TABLE public.st_acc (id int PRIMARY KEY, user_id text, note text);
CREATE POLICY st_all ON public.st_acc USING (true) WITH CHECK (true);
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.st_acc', '{"columns": {"user_id": "subject_id", "note": "free_text"}}');
SET SESSION AUTHORIZATION st_owner;
INSERT INTO st_acc VALUES (1, 'alice.st', 'alice.st logged in'), (2, 'bob.st', 'bob.st logged in from home');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION st_admin;
SELECT r -> 'tables' -> 'public.st_acc' ->> 'rows' AS rows, r ->> 'complete' AS complete
FROM aegis.erase_subject('alice.st') r;
RESET SESSION AUTHORIZATION;
SELECT item, new_row ->> 'user_id' LIKE 'pseudonym:%' AS pseudonym, new_row ->> 'note' AS note
FROM aegis.audit_trail WHERE table_name = 'public.st_acc' AND operation = 'INSERT' ORDER BY item;
SET SESSION AUTHORIZATION st_admin;
SELECT r ->> 'complete' AS complete FROM aegis.erase_subject('bob.st') r;
RESET SESSION AUTHORIZATION;
SELECT item, new_row ->> 'user_id' AS user_id, new_row ->> 'note' AS note
FROM aegis.audit_trail WHERE table_name = 'public.st_acc' AND operation = 'INSERT' ORDER BY item;
SELECT count(*) AS entries_naming_bob FROM aegis.audit_log
WHERE concat_ws(' ', pk, old_row, new_row) ILIKE '%bob.st%'
   OR concat_ws(' ', pk, old_row, new_row) LIKE '%' || aegis.pseudonymize('bob.st') || '%';
SELECT ok FROM aegis.verify_chain();
ROLLBACK;

-- ------------------------------------------------------------ cleanup
SET client_min_messages = warning;
SELECT aegis.unprotect(t) FROM unnest('{public.st_t,public.st_p,public.st_h}'::regclass[]) t;
DROP TABLE public.st_t, public.st_p, public.st_h, public.st_q;
DROP FOREIGN TABLE public.st_h3;
DROP FUNCTION public.st_swallow();
DROP SERVER st_srv;
DROP FOREIGN DATA WRAPPER st_fdw;
DROP OWNED BY st_owner, st_admin;
DROP ROLE st_owner, st_admin;
-- The key this file created (other files expect a keyring without it).
DELETE FROM aegis.keys WHERE name = 'pseudonym';
RESET client_min_messages;
