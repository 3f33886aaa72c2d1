-- Control: pseudonyms in masking views (issue 18, item 7). A masking view
-- generated from a table's column classes (owned by aegis_masking_owner)
-- shows pseudonyms to readers who cannot call pseudonymize(), without
-- giving them a pseudonym oracle: aegis.masked_pseudonym() answers only for
-- a column of a table read through such a view, never for a value the
-- reader chose (their own query, table, view, constraint or PL/pgSQL).
\set VERBOSITY terse
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
\pset null '(null)'
BEGIN;
SET client_min_messages = warning;
CREATE ROLE mv_app LOGIN;
CREATE ROLE mv_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE mv_auditor LOGIN IN ROLE aegis_auditor;
CREATE SCHEMA mv AUTHORIZATION mv_app;
GRANT USAGE ON SCHEMA mv TO aegis_admin;
GRANT CREATE ON SCHEMA public TO mv_auditor;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key
WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'pseudonym');
SET ROLE mv_app;
CREATE TABLE mv.users (userid bigint PRIMARY KEY, username varchar(100) NOT NULL, passwd varchar(60), lang varchar(7),
                       note text);
INSERT INTO mv.users VALUES (1, 'Admin', 'x', 'en_US', 'root'), (42, 'mary.smith', 'y', 'en_GB', 'call mary@example.com');
RESET ROLE;
RESET client_min_messages;

SET ROLE mv_admin;
SELECT aegis.protect('mv.users', '{"application_roles": ["mv_app"], "profile": "users",
    "columns": {"userid": "subject_id", "username": "subject_id", "passwd": "secret", "note": "free_text"}}');
SELECT aegis.create_masking_view('mv.users') AS view;
SELECT aegis.create_masking_view('mv.users', 'users') AS not_over_the_table;
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.pseudonymize('mary.smith') AS mary_pseudonym \gset
RESET ROLE;

-- The auditor reads pseudonyms, redacted free text, no secrets.
SET ROLE mv_auditor;
SELECT length(userid) AS id_len, username = :'mary_pseudonym' AS joinable, passwd, lang, note
FROM mv.users_masked ORDER BY lang;
-- ... but cannot compute a pseudonym of a value it chooses.
SELECT aegis.masked_pseudonym('mary.smith');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.pseudonymize('mary.smith');
\echo :LAST_ERROR_SQLSTATE
SELECT aegis.masked_pseudonym(g) FROM (VALUES ('mary.smith')) v(g);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.mv_guesses (g text CHECK (aegis.masked_pseudonym(g) IS NOT NULL));
INSERT INTO public.mv_guesses VALUES ('mary.smith');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.mv_guesses2 (g text);
INSERT INTO public.mv_guesses2 VALUES ('mary.smith');
SELECT aegis.masked_pseudonym(g) FROM public.mv_guesses2;
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW public.mv_own AS SELECT aegis.masked_pseudonym(g) AS p FROM public.mv_guesses2;
SELECT * FROM public.mv_own;
\echo :LAST_ERROR_SQLSTATE
DO $$ BEGIN PERFORM aegis.masked_pseudonym('mary.smith'); END $$;
\echo :LAST_ERROR_SQLSTATE
-- Nor over a column the view shows as stored (whose values a reader
-- with write access could have chosen).
SELECT aegis.masked_pseudonym(lang) FROM mv.users_masked;
\echo :LAST_ERROR_SQLSTATE
-- Filtering and joining on the view's pseudonyms works.
SELECT count(*) AS found_by_pseudonym FROM mv.users_masked WHERE username = :'mary_pseudonym';
RESET ROLE;
-- Cold review: a reader who may write a pseudonymized column could write a
-- guess and read its pseudonym back; such a reader gets no pseudonyms
-- (unless it may compute them anyway: admins, collectors).
CREATE ROLE mv_writer LOGIN;
GRANT USAGE ON SCHEMA mv TO mv_writer;
GRANT SELECT ON mv.users_masked TO mv_writer;
GRANT INSERT (userid, username) ON mv.users TO mv_writer;
SET ROLE mv_writer;
SELECT lang FROM mv.users_masked ORDER BY lang;
SELECT username FROM mv.users_masked ORDER BY lang;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE mv_admin;
SELECT count(username) AS admin_reads_pseudonyms FROM mv.users_masked;
RESET ROLE;
-- Cold review: costs and metrics are not public columns (a developer may not
-- read them in the table): NULL in the view, like secrets; a table with a
-- policy for aegis_masking_owner or PUBLIC (OR'd with the view's) is refused.
SET ROLE mv_app;
CREATE TABLE mv.charges (id int PRIMARY KEY, host text, amount numeric, cpu float8, token text);
INSERT INTO mv.charges VALUES (1, 'db-1', 10.5, 0.9, 's3cr3t');
CREATE TABLE mv.open (id int PRIMARY KEY, email text);
CREATE POLICY everyone ON mv.open FOR SELECT USING (true);
RESET ROLE;
SET ROLE mv_admin;
SELECT aegis.protect('mv.charges', '{"application_roles": ["mv_app"], "profile": "costs",
    "columns": {"amount": "cost", "cpu": "metric", "token": "secret"}}') IS NULL AS protected;
SELECT aegis.create_masking_view('mv.charges', readers => ARRAY['mv_auditor']::regrole[]) AS view;
SELECT aegis.protect('mv.open', '{"application_roles": ["mv_app"], "profile": "logs", "columns": {"email": "pii"}}') IS NULL AS protected;
SELECT aegis.create_masking_view('mv.open');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE mv_auditor;
SELECT id, host, amount, cpu, token FROM mv.charges_masked;
-- Attack (cold review): approvals were kept until the transaction ended, by
-- call-site address; a plan freed after EXECUTE left its memory to the next
-- plan of the same shape, so the reader's own view over guessed values sat
-- at the approved address and answered. Approvals now end with the query.
CREATE TEMP TABLE users (userid bigint PRIMARY KEY, username varchar(100) NOT NULL, passwd varchar(60), lang varchar(7),
                         note text);
INSERT INTO pg_temp.users SELECT g, CASE WHEN g = 7 THEN 'mary.smith' ELSE 'guess' || g END, NULL, 'en', NULL
FROM generate_series(1, 50) g;
CREATE TEMP VIEW users_masked WITH (security_barrier = true) AS
SELECT aegis.masked_pseudonym(t.userid::text) AS userid, aegis.masked_pseudonym(t.username::text) AS username,
       NULL::varchar(60) AS passwd, t.lang, aegis.redact_pii(t.note::text) AS note FROM pg_temp.users t;
PREPARE mv_p(int) AS SELECT username, lang FROM mv.users_masked WHERE length(lang) <> $1;
PREPARE mv_q(int) AS SELECT username, lang FROM pg_temp.users_masked WHERE length(lang) <> $1;
\o /dev/null
EXECUTE mv_p(0);
\o
EXECUTE mv_q(0);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ROLLBACK;
