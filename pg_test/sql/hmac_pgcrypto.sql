-- Control: aegis.hmac() is byte-identical to pgcrypto's hmac() for every
-- supported algorithm, with empty, short, block-sized and over-long keys
-- (over-long keys are hashed first per RFC 2104) and inputs up to 9 MiB.

CREATE TEMP TABLE algos(name text);
INSERT INTO algos VALUES ('sha224'), ('sha256'), ('sha384'), ('sha512'), ('SHA-512');

CREATE TEMP TABLE keys(k bytea);
INSERT INTO keys
SELECT substr(decode(string_agg(md5((n * 77 + i)::text), '' ORDER BY i), 'hex'), 1, n)
FROM generate_series(0, 200, 7) n, generate_series(0, 13) i
GROUP BY n;
INSERT INTO keys VALUES (''), ('\x00'), (decode(repeat('aa', 63), 'hex')), (decode(repeat('aa', 64), 'hex')),
    (decode(repeat('aa', 65), 'hex')), (decode(repeat('bb', 127), 'hex')), (decode(repeat('bb', 128), 'hex')),
    (decode(repeat('bb', 129), 'hex')), (decode(repeat('cc', 5000), 'hex'));

CREATE TEMP TABLE inputs(b bytea);
INSERT INTO inputs
SELECT substr(decode(string_agg(md5((n * 13 + i)::text), '' ORDER BY i), 'hex'), 1, n)
FROM generate_series(0, 300, 11) n, generate_series(0, 20) i
GROUP BY n;
INSERT INTO inputs VALUES (''), (convert_to(repeat('incident ', 1024 * 1024), 'UTF8'));

SELECT count(*) AS compared,
       count(*) FILTER (WHERE aegis.hmac(b, k, name) IS DISTINCT FROM hmac(b, k, name)) AS mismatches
FROM inputs, keys, algos;

-- text variant
SELECT count(*) AS compared,
       count(*) FILTER (WHERE aegis.hmac(t, key, name) IS DISTINCT FROM hmac(t, key, name)) AS mismatches
FROM (VALUES (''), ('what do ya want for nothing?'), ('Grüße ☃')) d(t),
     (VALUES (''), ('Jefe'), (repeat('k', 300))) k(key), algos;

-- RFC 4231 test case 2 as a known answer.
SELECT encode(aegis.hmac('what do ya want for nothing?', 'Jefe', 'sha256'), 'hex') AS rfc4231_case2;

-- NULL in any argument gives NULL.
SELECT aegis.hmac(NULL::bytea, 'k'::bytea, 'sha256') IS NULL AS null_data,
       aegis.hmac('x'::text, NULL, 'sha256') IS NULL AS null_key,
       aegis.hmac('x'::text, 'k', NULL) IS NULL AS null_type;
