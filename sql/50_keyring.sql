-- Keyring and envelope encryption. Data keys are stored only wrapped under
-- the master key (which never enters SQL: see aegis.master_key_file /
-- aegis.master_key_command); nobody but superusers can read aegis.keys'
-- wrapped_key column. The C functions read the keyring with the extension
-- owner's rights and check decrypt authorization themselves.
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

CREATE TABLE aegis.keys (
    key_id       uuid NOT NULL,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    version      integer NOT NULL CHECK (version > 0),
    algorithm    text NOT NULL DEFAULT 'aes-256-gcm' CHECK (algorithm = 'aes-256-gcm'),
    wrapped_key  bytea CHECK (wrapped_key IS NULL OR length(wrapped_key) = 60),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired', 'destroyed')),
    decrypt_role regrole,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rotated_at   timestamptz,
    retired_at   timestamptz,
    PRIMARY KEY (key_id, version),
    UNIQUE (name, version),
    CHECK ((status = 'destroyed') = (wrapped_key IS NULL))
);
COMMENT ON TABLE aegis.keys IS
    'pg_aegis keyring: one row per key version; data keys only wrapped under the master key';
SELECT pg_catalog.pg_extension_config_dump('aegis.keys', '');

-- Every change to the keyring drops the cached keys of every backend (a
-- relcache invalidation, delivered when the change commits).
CREATE FUNCTION aegis.invalidate_keyring_cache() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'invalidate_keyring_cache_impl_wrapper';
COMMENT ON FUNCTION aegis.invalidate_keyring_cache() IS
    'Make every backend drop its cached data keys at commit (used by the keyring trigger)';
CREATE FUNCTION aegis.keyring_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM aegis.invalidate_keyring_cache();
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION aegis.keyring_changed() IS 'Statement trigger on aegis.keys: invalidate key caches';
CREATE TRIGGER keyring_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aegis.keys
    FOR EACH STATEMENT EXECUTE FUNCTION aegis.keyring_changed();

-- ---------------------------------------------------------------- C functions
-- text and bytea variants share symbols: text is read and returned as its raw
-- bytes in the database encoding, like the hashing functions. PARALLEL
-- RESTRICTED: they read the keyring with the extension owner's rights and
-- keep a per-backend key cache, which belong in the leader.
CREATE FUNCTION aegis.encrypt(data bytea, key_name text DEFAULT 'default', aad text DEFAULT NULL)
RETURNS bytea LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'encrypt_impl_wrapper';
CREATE FUNCTION aegis.encrypt(data text, key_name text DEFAULT 'default', aad text DEFAULT NULL)
RETURNS bytea LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'encrypt_impl_wrapper';
CREATE FUNCTION aegis.decrypt(ct bytea, aad text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'decrypt_text_impl_wrapper';
CREATE FUNCTION aegis.decrypt_bytea(ct bytea, aad text DEFAULT NULL)
RETURNS bytea LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'decrypt_bytea_impl_wrapper';
CREATE FUNCTION aegis.reencrypt(ct bytea, aad text DEFAULT NULL)
RETURNS bytea LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'reencrypt_impl_wrapper';
CREATE FUNCTION aegis.new_wrapped_key(key_id uuid, version integer)
RETURNS bytea LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'new_wrapped_key_impl_wrapper';
COMMENT ON FUNCTION aegis.encrypt(bytea, text, text) IS
    'AES-256-GCM envelope of data under the current version of a named key; aad binds it to its place';
COMMENT ON FUNCTION aegis.encrypt(text, text, text) IS
    'AES-256-GCM envelope of text (raw bytes) under the current version of a named key';
COMMENT ON FUNCTION aegis.decrypt(bytea, text) IS
    'Decrypt an aegis envelope to text (members of the key''s decrypt_role and aegis_admin only)';
COMMENT ON FUNCTION aegis.decrypt_bytea(bytea, text) IS
    'Decrypt an aegis envelope to bytea (members of the key''s decrypt_role and aegis_admin only)';
COMMENT ON FUNCTION aegis.reencrypt(bytea, text) IS
    'Re-encrypt an envelope under the current version of its key (online rotation)';
COMMENT ON FUNCTION aegis.new_wrapped_key(uuid, integer) IS
    'A new random data key, returned only wrapped under the master key (admin-only, used by create_key/rotate_key)';

-- Pseudonyms: keyed HMAC under the oldest active version of a key (stable
-- across rotations). STRICT: NULL in, NULL out.
CREATE FUNCTION aegis.pseudonymize(value text, key_name text DEFAULT 'pseudonym')
RETURNS text LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pseudonymize_impl_wrapper';
COMMENT ON FUNCTION aegis.pseudonymize(text, text) IS
    'Keyed HMAC-SHA-256 pseudonym (32 hex digits): deterministic, joinable, not reversible';

-- Pseudonyms in masking views (src/masked_pseudonym.c): executable by
-- everyone, it answers only at a call site approved when the query
-- started: a column of a table read through a view owned by
-- aegis_masking_owner (never a value the reader chose). Needs the library
-- preloaded (the approval is made by the ExecutorStart hook).
CREATE FUNCTION aegis.masked_pseudonym(value text)
RETURNS text LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'aegis_masked_pseudonym';
COMMENT ON FUNCTION aegis.masked_pseudonym(text) IS
    'The pseudonym of a column read through a masking view owned by aegis_masking_owner (refused anywhere else)';

-- Coarsen an IP address to its network: the host bits are zeroed and the
-- result is a host address (192.0.2.77 -> 192.0.2.0 with the default /24).
CREATE FUNCTION aegis.anonymize_ip(addr inet, v4_prefix integer DEFAULT 24, v6_prefix integer DEFAULT 48)
RETURNS inet
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    p integer := CASE pg_catalog.family(addr) WHEN 4 THEN v4_prefix ELSE v6_prefix END;
BEGIN
    IF addr IS NULL THEN
        RETURN NULL;
    END IF;
    IF v4_prefix IS NULL OR v4_prefix NOT BETWEEN 0 AND 32 OR v6_prefix IS NULL OR v6_prefix NOT BETWEEN 0 AND 128 THEN
        RAISE EXCEPTION 'prefix out of range (v4: 0..32, v6: 0..128)' USING ERRCODE = '22023';
    END IF;
    RETURN pg_catalog.set_masklen(
        pg_catalog.network(pg_catalog.set_masklen(addr, LEAST(p, pg_catalog.masklen(addr))))::inet,
        CASE pg_catalog.family(addr) WHEN 4 THEN 32 ELSE 128 END);
END
$$;
COMMENT ON FUNCTION aegis.anonymize_ip(inet, integer, integer) IS
    'Zero the host bits of an address (default /24 for IPv4, /48 for IPv6)';

-- ---------------------------------------------------------------- key management
-- SECURITY INVOKER: aegis_admin holds the table privileges these need.
CREATE FUNCTION aegis.create_key(name text, decrypt_role regrole DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    id uuid := pg_catalog.gen_random_uuid();
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
        RAISE EXCEPTION 'invalid key name %', pg_catalog.quote_nullable(name) USING ERRCODE = '22023',
            HINT = 'Key names are 1 to 128 characters: letters, digits, _ . : -';
    END IF;
    IF EXISTS (SELECT 1 FROM aegis.keys k WHERE k.name = create_key.name) THEN
        RAISE EXCEPTION 'encryption key "%" already exists', name USING ERRCODE = '42710',
            HINT = 'Use aegis.rotate_key() for a new version.';
    END IF;
    INSERT INTO aegis.keys (key_id, name, version, wrapped_key, decrypt_role)
    VALUES (id, create_key.name, 1, aegis.new_wrapped_key(id, 1), create_key.decrypt_role);
    RETURN id;
END
$$;
COMMENT ON FUNCTION aegis.create_key(text, regrole) IS
    'Create a named data key (version 1), decryptable by decrypt_role and aegis_admin (admin-only)';

CREATE FUNCTION aegis.rotate_key(name text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    cur record;
BEGIN
    SELECT k.key_id, k.version, k.decrypt_role INTO cur
    FROM aegis.keys k WHERE k.name = rotate_key.name
    ORDER BY k.version DESC LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'encryption key "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    UPDATE aegis.keys k SET rotated_at = pg_catalog.now()
    WHERE k.key_id = cur.key_id AND k.version = cur.version;
    INSERT INTO aegis.keys (key_id, name, version, wrapped_key, decrypt_role)
    VALUES (cur.key_id, rotate_key.name, cur.version + 1,
            aegis.new_wrapped_key(cur.key_id, cur.version + 1), cur.decrypt_role);
    RETURN cur.version + 1;
END
$$;
COMMENT ON FUNCTION aegis.rotate_key(text) IS
    'Add a new version of a key; it becomes current, older versions still decrypt (admin-only)';

CREATE FUNCTION aegis.retire_key_version(name text, version integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    newest integer;
BEGIN
    SELECT pg_catalog.max(k.version) INTO newest FROM aegis.keys k
    WHERE k.name = retire_key_version.name AND k.status = 'active';
    IF NOT EXISTS (SELECT 1 FROM aegis.keys k
                   WHERE k.name = retire_key_version.name AND k.version = retire_key_version.version) THEN
        RAISE EXCEPTION 'encryption key "%" has no version %', name, version USING ERRCODE = '42704';
    END IF;
    IF version = newest THEN
        RAISE EXCEPTION 'version % is the current version of key "%"', version, name USING ERRCODE = '55000',
            HINT = 'Rotate the key first, re-encrypt the data with aegis.reencrypt(), then retire the old version.';
    END IF;
    UPDATE aegis.keys k SET status = 'retired', retired_at = pg_catalog.now()
    WHERE k.name = retire_key_version.name AND k.version = retire_key_version.version AND k.status = 'active';
END
$$;
COMMENT ON FUNCTION aegis.retire_key_version(text, integer) IS
    'Stop using an old key version: its ciphertexts no longer decrypt (admin-only)';

CREATE FUNCTION aegis.keys_overview()
RETURNS TABLE(name text, key_id uuid, version integer, algorithm text, status text,
              is_current boolean, decrypt_role regrole, created_at timestamptz,
              rotated_at timestamptz, retired_at timestamptz)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT k.name, k.key_id, k.version, k.algorithm, k.status,
           k.status = 'active' AND k.version = pg_catalog.max(k.version) FILTER (WHERE k.status = 'active')
                                                  OVER (PARTITION BY k.name),
           k.decrypt_role, k.created_at, k.rotated_at, k.retired_at
    FROM aegis.keys k
    ORDER BY k.name, k.version
$$;
COMMENT ON FUNCTION aegis.keys_overview() IS 'The keyring without key material (admins and auditors)';

-- Admins manage keys; auditors see the keyring's shape. Nobody but superusers
-- (and the C functions, with the extension owner's rights) reads wrapped_key.
GRANT SELECT (key_id, name, version, algorithm, status, decrypt_role, created_at, rotated_at, retired_at)
    ON aegis.keys TO aegis_admin, aegis_auditor;
GRANT INSERT, UPDATE ON aegis.keys TO aegis_admin;

-- ---------------------------------------------------------------- crypto-shredding
-- Per-subject keys: named "subject:" + a keyed index of the subject (derived
-- from the master key, so names reveal nobody), decryptable by aegis_admin.
CREATE FUNCTION aegis.encrypt_for_subject(subject text, data text)
RETURNS bytea LANGUAGE c VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'encrypt_for_subject_impl_wrapper';
COMMENT ON FUNCTION aegis.encrypt_for_subject(text, text) IS
    'Encrypt under the subject''s own key (created on first use); forget_subject() makes it unreadable';
CREATE FUNCTION aegis.subject_key_name(subject text)
RETURNS text LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'subject_key_name_impl_wrapper';
COMMENT ON FUNCTION aegis.subject_key_name(text) IS
    'The keyring name of a subject''s key (admin-only)';

-- Destroys every version of the subject's key: the wrapped key bytes are
-- deleted, so the subject's ciphertexts in tables, backups, dumps and
-- replicas can never be decrypted again. Idempotent; returns a receipt.
-- SECURITY INVOKER: aegis_admin may UPDATE aegis.keys.
CREATE FUNCTION aegis.forget_subject(subject text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    key_name text;
    destroyed integer;
    total integer;
BEGIN
    IF subject IS NULL THEN
        RAISE EXCEPTION 'subject must not be NULL' USING ERRCODE = '22004';
    END IF;
    key_name := aegis.subject_key_name(subject);
    UPDATE aegis.keys k SET status = 'destroyed', wrapped_key = NULL, retired_at = pg_catalog.now()
    WHERE k.name = key_name AND k.status <> 'destroyed';
    GET DIAGNOSTICS destroyed = ROW_COUNT;
    SELECT pg_catalog.count(*) INTO total FROM aegis.keys k WHERE k.name = key_name;
    RETURN pg_catalog.jsonb_build_object(
        'subject_key', key_name,
        'versions_destroyed_now', destroyed,
        'versions_destroyed_total', total,
        'already_forgotten', destroyed = 0 AND total > 0,
        'had_key', total > 0,
        'at', pg_catalog.now());
END
$$;
COMMENT ON FUNCTION aegis.forget_subject(text) IS
    'Crypto-shred a subject: destroy every version of their key and return a receipt (admin-only)';
