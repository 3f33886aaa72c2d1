-- Shared benchmark harness, included by benches/*.sql with \ir.
-- A benchmark fills the temp table `cases` (one row per comparison: the
-- pg_aegis query, the role it runs as, and the baseline query), then calls
-- pg_temp.run_cases(reps): one warm-up round, then `reps` rounds alternating
-- which side runs first, so machine noise hits both. Both sides run under
-- SET ROLE (the baseline as the session user), so only the queries differ.
CREATE TEMP TABLE cases(name text PRIMARY KEY, ours_role name, ours text, base text);
CREATE TEMP TABLE timings(name text, side text, ms float8);

CREATE FUNCTION pg_temp.run_as(r name, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
    EXECUTE format('SET ROLE %I', coalesce(r, session_user));
    EXECUTE q INTO res;
    RESET ROLE;
    RETURN res;
END $$;

CREATE FUNCTION pg_temp.time_ms(r name, q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    PERFORM pg_temp.run_as(r, q);
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

CREATE FUNCTION pg_temp.run_cases(reps int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE c record; r int; ignored float8;
BEGIN
    FOR c IN SELECT * FROM cases LOOP
        ignored := pg_temp.time_ms(c.ours_role, c.ours) + pg_temp.time_ms(NULL, c.base);
    END LOOP;
    FOR r IN 1..reps LOOP
        FOR c IN SELECT * FROM cases ORDER BY name LOOP
            IF r % 2 = 0 THEN
                INSERT INTO timings VALUES (c.name, 'aegis', pg_temp.time_ms(c.ours_role, c.ours));
                INSERT INTO timings VALUES (c.name, 'base', pg_temp.time_ms(NULL, c.base));
            ELSE
                INSERT INTO timings VALUES (c.name, 'base', pg_temp.time_ms(NULL, c.base));
                INSERT INTO timings VALUES (c.name, 'aegis', pg_temp.time_ms(c.ours_role, c.ours));
            END IF;
        END LOOP;
    END LOOP;
END $$;

-- Medians per case. `faster_is` = 'aegis' reports baseline/pg_aegis (above 1:
-- pg_aegis faster); 'overhead' reports pg_aegis/baseline (1.00: no overhead).
CREATE FUNCTION pg_temp.report(mode text)
RETURNS TABLE("case" text, pg_aegis_ms numeric, baseline_ms numeric, ratio numeric)
LANGUAGE sql AS $$
    SELECT name,
           round(a::numeric, 2), round(b::numeric, 2),
           round((CASE mode WHEN 'overhead' THEN a / b ELSE b / a END)::numeric, 2)
    FROM (SELECT name,
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'aegis') AS a,
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE side = 'base') AS b
          FROM timings GROUP BY name) m
    ORDER BY name
$$;
