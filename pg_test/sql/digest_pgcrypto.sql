-- Control: aegis.digest() is byte-identical to pgcrypto's digest() for every
-- supported algorithm and name spelling, on empty, short, binary, non-ASCII
-- and multi-megabyte inputs, for both the bytea and text variants.

CREATE TEMP TABLE algos(name text);
INSERT INTO algos VALUES ('sha224'), ('sha256'), ('sha384'), ('sha512'),
    ('SHA256'), ('Sha-384'), ('sha2-512'), ('SHA2-224'), ('sha-256');

-- Inputs: every length 0..600 of pseudo-random bytes (crosses every block
-- boundary of both the 64- and 128-byte block sizes), a few texts, and large
-- values of 1, 4 and 16 MiB.
CREATE TEMP TABLE inputs(label text, b bytea);
INSERT INTO inputs
SELECT 'len' || n,
       substr(decode(string_agg(md5((n * 1000 + i)::text), '' ORDER BY i), 'hex'), 1, n)
FROM generate_series(0, 600) n, generate_series(0, 40) i
GROUP BY n;
INSERT INTO inputs VALUES
    ('empty', ''::bytea),
    ('nul', '\x00'::bytea),
    ('abc', 'abc'::bytea),
    ('utf8', convert_to('Grüße, 東京 — ☃', 'UTF8')),
    ('1MiB', convert_to(repeat('a', 1024 * 1024), 'UTF8')),
    ('4MiB-mixed', decode(repeat(md5('x') || md5('y'), 65536), 'hex')),
    ('16MiB', convert_to(repeat('downtime ', 2 * 1024 * 1024 - 1) || 'x', 'UTF8'));

SELECT count(*) AS inputs, sum(length(b)) > 20000000 AS over_20mb FROM inputs;

-- bytea variant: no mismatches across all inputs and names.
SELECT count(*) AS compared,
       count(*) FILTER (WHERE aegis.digest(b, name) IS DISTINCT FROM digest(b, name)) AS mismatches
FROM inputs, algos;

-- text variant (hashes the raw bytes, like pgcrypto).
SELECT count(*) AS compared,
       count(*) FILTER (WHERE aegis.digest(t, name) IS DISTINCT FROM digest(t, name)) AS mismatches
FROM (VALUES (''), ('abc'), ('Grüße, 東京 — ☃'), (repeat('error: disk full ', 100000))) v(t), algos;

-- Known answers, so a bug shared with pgcrypto could not hide.
SELECT encode(aegis.digest('abc', 'sha256'), 'hex') AS sha256_abc;
SELECT encode(aegis.digest('', 'sha224'), 'hex') AS sha224_empty;
SELECT length(aegis.digest('x', 'sha224')) AS l224, length(aegis.digest('x', 'sha256')) AS l256,
       length(aegis.digest('x', 'sha384')) AS l384, length(aegis.digest('x', 'sha512')) AS l512;

-- NULL in, NULL out.
SELECT aegis.digest(NULL::bytea, 'sha256') IS NULL AS null_data,
       aegis.digest('x'::text, NULL) IS NULL AS null_type,
       aegis.digest(NULL::text, NULL) IS NULL AS both_null;

-- Usable in an index expression (IMMUTABLE) and in parallel plans.
CREATE TEMP TABLE t(msg text);
CREATE INDEX ON t (aegis.digest(msg, 'sha256'));
INSERT INTO t SELECT 'event ' || g FROM generate_series(1, 100) g;
SELECT count(*) AS found FROM t WHERE aegis.digest(msg, 'sha256') = digest('event 42', 'sha256');
