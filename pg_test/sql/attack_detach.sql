-- Control: ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY on a protected
-- table. Its first step (the partition marked as being detached, its rows
-- no longer shown through the table) commits in a transaction of its own
-- before any event trigger fires, so the DDL guard refuses it before the
-- command starts (utility hook). The command cannot run in a transaction
-- block, so this test runs in autocommit, as a real login through SET
-- SESSION AUTHORIZATION. (Found by a cold attack review of 0.6.0.)
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE ROLE det_owner LOGIN;
GRANT CREATE ON SCHEMA public TO det_owner;
SET SESSION AUTHORIZATION det_owner;
CREATE TABLE public.det_parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.det_2025 PARTITION OF det_parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- A partition that is partitioned itself: detaching from it hides rows too.
CREATE TABLE public.det_2026 PARTITION OF det_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY RANGE (at);
CREATE TABLE public.det_2026_h1 PARTITION OF det_2026 FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE public.det_plain_parted (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE public.det_plain_2025 PARTITION OF det_plain_parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO det_parted VALUES (1, '2025-03-01', 'a'), (2, '2026-03-01', 'b');
RESET SESSION AUTHORIZATION;
SELECT aegis.protect('public.det_parted');
RESET client_min_messages;
-- The owner: refused before anything commits, from the table and from its
-- partitioned partition.
SET SESSION AUTHORIZATION det_owner;
ALTER TABLE det_parted DETACH PARTITION det_2025 CONCURRENTLY;
ALTER TABLE public.det_2026 DETACH PARTITION det_2026_h1 CONCURRENTLY;
-- Still attached, nothing pending, every row still shown through the table.
RESET SESSION AUTHORIZATION;
SELECT i.inhrelid::regclass AS partition, i.inhdetachpending FROM pg_inherits i
WHERE i.inhparent IN ('public.det_parted'::regclass, 'public.det_2026'::regclass) ORDER BY 1;
SELECT count(*) AS rows_shown FROM det_parted;
SET SESSION AUTHORIZATION det_owner;
-- Tables pg_aegis does not protect are not its business.
ALTER TABLE det_plain_parted DETACH PARTITION det_plain_2025 CONCURRENTLY;
-- The refusal is a clean error (nothing else in the way of the command).
ALTER TABLE no_such_table DETACH PARTITION det_2025 CONCURRENTLY;
RESET SESSION AUTHORIZATION;
-- A superuser may: the command runs and the guard records it.
SET client_min_messages = error;
ALTER TABLE det_parted DETACH PARTITION det_2025 CONCURRENTLY;
RESET client_min_messages;
SELECT detail ->> 'change' AS change, detail ->> 'command' AS command FROM aegis.audit_log
WHERE operation = 'DDL' AND table_name = 'public.det_parted' ORDER BY id DESC LIMIT 1;
SELECT count(*) AS partitions_left FROM pg_inherits WHERE inhparent = 'public.det_parted'::regclass;
SET client_min_messages = warning;
SELECT aegis.unprotect('public.det_parted');
DROP TABLE det_parted, det_2025, det_plain_parted, det_plain_2025;
DROP OWNED BY det_owner;
DROP ROLE det_owner;
