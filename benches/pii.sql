-- Side-by-side benchmark: PII redaction inside the server.
--   redact_pii      aegis.redact_pii(msg) vs the chained regexp_replace() a
--                   user writes today (email, IPv4, IPv6, phone, card: five
--                   passes), on 200,000 log messages of 100 B to 2 KiB, one
--                   in ten carrying PII. ratio = baseline / pg_aegis.
--   clean rows      aegis.redact_pii(msg) vs length(msg) on 200,000 PII-free
--                   rows of 100 to 200 B: the cost of checking clean text.
--                   ratio = pg_aegis / baseline (target: at most 2).
-- Also printed: how many rows each side changes. The regexes are the usual
-- ones from Q&A sites; they rewrite timestamps, versions and ids in clean
-- rows (false positives) that redact_pii leaves alone.
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
DROP TABLE IF EXISTS pii_logs, pii_short;

CREATE TEMP TABLE lines(n int, l text);
INSERT INTO lines VALUES
 (0, '2026-11-22 18:33:33.123 UTC [4242] LOG:  checkpoint complete: wrote 1532 buffers (9.4%); 0 WAL file(s) added, 0 removed, 1 recycled; write=153.201 s, sync=0.004 s, total=153.214 s'),
 (1, 'GET /api/v1/orders?limit=25 HTTP/1.1 200 1532 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36" rt=0.041'),
 (2, 'at com.example.orders.OrderService.place(OrderService.java:142) at com.example.orders.Api.post(Api.java:57)'),
 (3, '{"level":"error","ts":1732300000.123,"caller":"db/pool.go:88","msg":"connection reset by peer","request_id":"550e8400-e29b-41d4-a716-446655440000","attempt":3}'),
 (4, 'Nov 22 18:33:33 app-3 kernel: [12345.678901] TCP: request_sock_TCP: Possible SYN flooding on port 8443. Sending cookies.'),
 (5, 'Back-off restarting failed container orders-api in pod orders-api-7d9f8c6b5-x2k4q_prod(3f9a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b)'),
 (6, 'ERROR:  duplicate key value violates unique constraint "orders_pkey" (SQLSTATE 23505) DETAIL:  Key (id)=(884213) already exists.'),
 (7, 'deploy v2.14.3 (commit 9fceb02d0ae598e95dc970b74767f19372d61af8) finished in 1532 ms; 4/4 replicas ready, image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
CREATE TEMP TABLE pii(n int, p text);
INSERT INTO pii VALUES
 (0, 'customer jane.doe@example.com'), (1, 'client 203.0.113.77'), (2, 'peer 2001:db8::8a2e:370:7334'),
 (3, 'callback +1 (555) 123-4567'), (4, 'card 4111 1111 1111 1111'), (5, 'reply to ops-team@example.org'),
 (6, 'from 198.51.100.23:51234'), (7, 'call 020 7946 0958');

-- Messages of 100 to 2048 bytes cut from a rotating sequence of log lines;
-- every tenth gets one PII phrase in the middle, ended by "; " (glued to a
-- following number, `call 020 7946 0958 23505` is ambiguous even to a reader,
-- and the scanner leaves digit runs it cannot delimit alone).
CREATE TABLE pii_logs AS
SELECT g AS id,
       CASE WHEN g % 10 = 0
            THEN left(m, t / 2) || ' ' || (SELECT p FROM pii WHERE n = (g / 10) % 8) || '; ' || substr(m, t / 2 + 1, t - t / 2)
            ELSE left(m, t) END AS msg,
       g % 10 = 0 AS has_pii
FROM generate_series(1, 200000) g,
     LATERAL (SELECT 100 + (g * 7919) % 1949 AS t) len,
     LATERAL (SELECT string_agg(l, ' ' ORDER BY k) AS m
              FROM generate_series(0, 19) k JOIN lines ON lines.n = (g + k * 3) % 8) txt;
CREATE TABLE pii_short AS
SELECT g AS id, left(m, 100 + g % 101) AS msg
FROM generate_series(1, 200000) g,
     LATERAL (SELECT string_agg(l, ' ' ORDER BY k) AS m
              FROM generate_series(0, 2) k JOIN lines ON lines.n = (g + k) % 8) txt;
VACUUM ANALYZE pii_logs, pii_short;

CREATE FUNCTION pg_temp.regex_redact(msg text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(msg,
    '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[EMAIL]', 'g'),
    '\m(?:\d{1,3}\.){3}\d{1,3}\M', '[IPV4]', 'g'),
    '(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}', '[IPV6]', 'g'),
    '\+?\d{0,3}[ .-]?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}', '[PHONE]', 'g'),
    '\m(?:\d[ -]?){13,19}\M', '[CREDIT_CARD]', 'g')
$f$;

\ir lib/harness.sql
-- pg_temp.regex_redact is a single-expression SQL function, so the planner
-- inlines it: the baseline runs exactly as the five calls written in place.
INSERT INTO cases (name, ours, base) VALUES
('redact_pii vs 5 chained regexp_replace',
 $$SELECT count(aegis.redact_pii(msg)) FROM pii_logs$$,
 $$SELECT count(pg_temp.regex_redact(msg)) FROM pii_logs$$),
('clean rows: redact_pii vs length',
 $$SELECT count(aegis.redact_pii(msg)) FROM pii_short$$,
 $$SELECT count(length(msg)) FROM pii_short$$);

DO $$ BEGIN PERFORM pg_temp.run_cases(current_setting('bench.reps')::int); END $$;

\set QUIET off
SELECT count(*) AS messages, round(avg(octet_length(msg))) AS avg_bytes,
       min(octet_length(msg)) AS min_bytes, max(octet_length(msg)) AS max_bytes,
       count(*) FILTER (WHERE has_pii) AS with_pii
FROM pii_logs;
SELECT * FROM pg_temp.report('aegis') WHERE "case" LIKE 'redact_pii%';
SELECT * FROM pg_temp.report('overhead') WHERE "case" LIKE 'clean rows%';
SELECT count(*) FILTER (WHERE has_pii AND aegis.redact_pii(msg) <> msg) AS aegis_changed_pii_rows,
       count(*) FILTER (WHERE NOT has_pii AND aegis.redact_pii(msg) <> msg) AS aegis_changed_clean_rows,
       count(*) FILTER (WHERE has_pii AND pg_temp.regex_redact(msg) <> msg) AS regex_changed_pii_rows,
       count(*) FILTER (WHERE NOT has_pii AND pg_temp.regex_redact(msg) <> msg) AS regex_changed_clean_rows
FROM pii_logs;
\set QUIET on
DROP TABLE pii_logs, pii_short;
