-- Control: code a table owner hides where PostgreSQL folds constants when
-- it loads a relation's definition: a partition key expression and an index
-- expression. Whoever's rights are current at that moment runs it, so
-- pg_aegis must never load or plan a user table with more rights than its
-- owner: protect() runs its DDL as the owner, apply_retention() plans its
-- scan as the owner. (Found by a cold attack review of the first 0.6.0
-- changes: an aegis_admin's protect() and a superuser's retention policy
-- made the owner a superuser.) The relation definitions must be loaded in
-- a fresh session, so this runs in a database of its own, reconnecting.
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE DATABASE aegis_regress_folding;
\c aegis_regress_folding
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis;
CREATE ROLE fold_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE fold_owner LOGIN;
GRANT CREATE ON SCHEMA public TO fold_owner;
SET SESSION AUTHORIZATION fold_owner;
CREATE TABLE public.fold_witness (kind text, run_as name, was_superuser boolean);
GRANT INSERT ON fold_witness TO PUBLIC;
-- Records every run with rights other than its owner's, and tries to make
-- its owner a superuser (an immutable function cannot write; the volatile
-- one it calls can).
CREATE FUNCTION public.fold_witness_v(kind text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO public.fold_witness SELECT kind, current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE fold_owner SUPERUSER';
    END IF;
END $$;
CREATE FUNCTION public.fold_code(kind text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF current_user <> 'fold_owner' THEN
        PERFORM public.fold_witness_v(kind);
    END IF;
    RETURN 0;
END $$;
CREATE TABLE public.fold_parted (id bigint, at timestamptz NOT NULL)
    PARTITION BY RANGE ((id + public.fold_code('partition key')));
CREATE TABLE public.fold_parted_1 PARTITION OF fold_parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.fold_indexed (id int PRIMARY KEY, at timestamptz NOT NULL);
INSERT INTO fold_indexed SELECT g, now() - interval '2 years' FROM generate_series(1, 3) g;
CREATE INDEX ON fold_indexed ((id * public.fold_code('index expression')));
RESET SESSION AUTHORIZATION;
-- A fresh session: nothing of the owner's tables is loaded yet.
\c aegis_regress_folding
SET SESSION AUTHORIZATION fold_admin;
SELECT aegis.protect('public.fold_parted');
RESET SESSION AUTHORIZATION;
\c aegis_regress_folding
SET client_min_messages = warning;
SELECT aegis.protect('public.fold_indexed');
-- A superuser's policy, run by an admin in a fresh session, and by a
-- dry run.
SELECT aegis.set_retention('public.fold_indexed', '1 year', 'at');
RESET client_min_messages;
\c aegis_regress_folding
SET SESSION AUTHORIZATION fold_admin;
SELECT table_name, rows_affected FROM aegis.apply_retention(dry_run => true) WHERE table_name = 'public.fold_indexed';
RESET SESSION AUTHORIZATION;
\c aegis_regress_folding
SET SESSION AUTHORIZATION fold_admin;
SELECT table_name, rows_affected FROM aegis.apply_retention() WHERE table_name = 'public.fold_indexed';
RESET SESSION AUTHORIZATION;
-- A table with rows and an index expression attached as a partition: the
-- DDL guard protects it and records its rows (BASELINE) with pg_aegis's
-- rights, in a fresh session; the owner's code must not run then.
\c aegis_regress_folding
SET SESSION AUTHORIZATION fold_owner;
CREATE TABLE public.fold_attached (id bigint, at timestamptz NOT NULL);
INSERT INTO fold_attached VALUES (150, now());
CREATE INDEX ON fold_attached ((id * public.fold_code('attached index expression')));
RESET SESSION AUTHORIZATION;
\c aegis_regress_folding
SET SESSION AUTHORIZATION fold_owner;
ALTER TABLE fold_parted ATTACH PARTITION fold_attached FOR VALUES FROM (100) TO (200);
RESET SESSION AUTHORIZATION;
SELECT operation, pk, new_row ->> 'id' AS id FROM aegis.audit_log
WHERE table_name = 'public.fold_parted' AND operation = 'BASELINE' ORDER BY id;
-- Nothing ran with rights other than the owner's; nobody became superuser.
SELECT kind, run_as, was_superuser FROM fold_witness ORDER BY 1, 2;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'fold_owner';
\c aegis_regress
SET client_min_messages = warning;
DROP DATABASE aegis_regress_folding;
DROP ROLE fold_admin;
DROP ROLE fold_owner;
