//! The keyring as the backend sees it: the master key (from the GUCs, read
//! only when a data key must be unwrapped, never cached), the per-backend
//! cache of expanded data keys and pseudonym keys, reading `aegis.keys` with the extension
//! owner's rights (ordinary users cannot read it), decrypt authorization, and
//! the SQL functions that need key material: encrypt, decrypt, reencrypt and
//! new_wrapped_key. Key management (create/rotate/retire) is plpgsql in
//! sql/50_keyring.sql on top of these.

use crate::error::{AegisError, AegisResult};
use crate::guc;
use aegis_core::envelope::{self, KeyRef, SecretKey};
use aegis_core::{masterkey, CoreError};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

// ---------------------------------------------------------------------------
// Master key
// ---------------------------------------------------------------------------

fn server_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: DataDir is set by the postmaster before any backend runs SQL
    // and never changes afterwards; it is a NUL-terminated path.
    let dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    std::fs::metadata(std::path::Path::new(&*dir.to_string_lossy()))
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn master_key() -> Result<SecretKey, AegisError> {
    if let Some(path) = guc::master_key_file() {
        return masterkey::from_file(std::path::Path::new(&path), server_uid()).map_err(|e| {
            // The administrator finds the path in the server log; the
            // caller, who may not read the setting, gets the reason only.
            if let CoreError::MasterKeyFile { path, reason } = &e {
                pgrx::log!("pg_aegis: cannot use master key file \"{path}\": {reason}");
            }
            e.into()
        });
    }
    if let Some(cmd) = guc::master_key_command() {
        return Ok(masterkey::from_command(&cmd)?);
    }
    Err(CoreError::MasterKeyNotConfigured.into())
}

// ---------------------------------------------------------------------------
// Keyring rows and the per-backend cache
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct KeyRow {
    name: String,
    key_ref: KeyRef,
    status: String,
    decrypt_role: Option<pg_sys::Oid>,
    wrapped: Option<Vec<u8>>,
}

#[derive(Default)]
struct Cache {
    /// Current (highest active) version of each key name.
    current: HashMap<String, Rc<KeyRow>>,
    /// Oldest active version of each key name (pseudonyms must stay stable
    /// across rotations; retiring that version is the deliberate re-keying).
    oldest: HashMap<String, Rc<KeyRow>>,
    rows: HashMap<KeyRef, Rc<KeyRow>>,
    /// Expanded AES keys of unwrapped data keys (zeroed when dropped).
    ciphers: HashMap<KeyRef, Rc<envelope::DataCipher>>,
    /// Pseudonym keys by key name (derived from the oldest active version).
    pseudonym: HashMap<String, Rc<envelope::PseudonymKey>>,
    /// Keyed index for subject key names, derived from the master key.
    subject_index: Option<Rc<envelope::PseudonymKey>>,
    callback_registered: bool,
    keys_relid: Option<pg_sys::Oid>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Relcache callback: any change to aegis.keys (its statement trigger sends a
/// relcache invalidation, delivered to every backend at commit) drops every
/// cached row and unwrapped key of this backend.
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if relid == pg_sys::InvalidOid || Some(relid) == c.keys_relid {
            // Also forget the table's OID: after DROP/CREATE EXTENSION it is a
            // new table, looked up again on next use.
            c.keys_relid = None;
            c.current.clear();
            c.oldest.clear();
            c.pseudonym.clear();
            c.subject_index = None;
            c.rows.clear();
            c.ciphers.clear();
        }
    });
}

/// The OID of aegis.keys in this database.
fn keys_relid() -> Result<pg_sys::Oid, AegisError> {
    with_safe_search_path(|| {
        crate::spi::get_one::<pg_sys::Oid>(
            "SELECT 'aegis.keys'::pg_catalog.regclass::pg_catalog.oid",
            &[],
        )
    })
    .map_err(spi_error)?
    .ok_or_else(|| AegisError::Internal("aegis.keys is missing".into()))
}

fn ensure_callback() -> Result<(), AegisError> {
    let (registered, known) = CACHE.with(|c| {
        let c = c.borrow();
        (c.callback_registered, c.keys_relid.is_some())
    });
    if known {
        return Ok(());
    }
    let relid = keys_relid()?;
    if !registered {
        // SAFETY: registers a plain function pointer for the life of the
        // backend; PostgreSQL calls it from the main thread.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(
                Some(on_relcache_inval),
                pg_sys::Datum::from(0usize),
            )
        };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.callback_registered = true;
        c.keys_relid = Some(relid);
    });
    Ok(())
}

pub(crate) fn spi_error(e: pgrx::spi::SpiError) -> AegisError {
    AegisError::Internal(format!("pg_aegis internal query failed: {e}"))
}

/// Run `f` with `search_path = pg_catalog, pg_temp`, so no operator,
/// function or type in a caller's schema can be picked up by our queries
/// (operators and functions are never looked up in pg_temp). The setting is
/// restored afterwards, and by PostgreSQL on error (GUC nest levels unwind
/// with the (sub)transaction).
pub(crate) fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    crate::guc::with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], f)
}

/// Run `f` with the rights of the extension's owner, so the keyring can be
/// read without granting ordinary users SELECT on it. The user id switch is
/// undone afterwards, and by PostgreSQL itself if `f` raises an error
/// (transaction and subtransaction abort restore the previous user id).
/// Callers run inside [`with_safe_search_path`]: a query run with the owner's
/// rights must never resolve a name through the caller's search_path.
pub(crate) fn as_extension_owner<R>(
    f: impl FnOnce() -> Result<R, AegisError>,
) -> Result<R, AegisError> {
    let owner = crate::spi::get_one::<pg_sys::Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e \
         WHERE e.extname OPERATOR(pg_catalog.=) 'pg_aegis'::pg_catalog.name",
        &[],
    )
    .map_err(spi_error)?
    .ok_or_else(|| AegisError::Internal("pg_aegis is not installed in this database".into()))?;
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx: i32 = 0;
    // SAFETY: reads and then sets the backend's current user id; the flag
    // SECURITY_LOCAL_USERID_CHANGE forbids SET ROLE and the like meanwhile.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let r = f();
    // SAFETY: restores exactly what was read above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    r
}

const ROW_COLUMNS: &str =
    "name, key_id, version, status, decrypt_role::pg_catalog.oid, wrapped_key FROM aegis.keys";

fn read_rows(
    query: &str,
    args: Vec<pgrx::datum::DatumWithOid<'_>>,
) -> Result<Vec<KeyRow>, AegisError> {
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let table = client.select(query, None, &args).map_err(spi_error)?;
                let mut out = Vec::new();
                for row in table {
                    let name: String = row.get(1).map_err(spi_error)?.unwrap_or_default();
                    let id: pgrx::Uuid = row
                        .get(2)
                        .map_err(spi_error)?
                        .ok_or_else(|| AegisError::Internal("key without id".into()))?;
                    let version: i32 = row.get(3).map_err(spi_error)?.unwrap_or(0);
                    let status: String = row.get(4).map_err(spi_error)?.unwrap_or_default();
                    let decrypt_role: Option<pg_sys::Oid> = row.get(5).map_err(spi_error)?;
                    let wrapped: Option<Vec<u8>> = row.get(6).map_err(spi_error)?;
                    let mut idb = [0u8; 16];
                    idb.copy_from_slice(id.as_bytes());
                    out.push(KeyRow {
                        name,
                        key_ref: KeyRef {
                            id: idb,
                            version: u32::try_from(version).unwrap_or(0),
                        },
                        status,
                        decrypt_role,
                        wrapped,
                    });
                }
                Ok(out)
            })
        })
    })
}

fn active_row(name: &str, newest: bool) -> Result<Rc<KeyRow>, AegisError> {
    ensure_callback()?;
    let cached = CACHE.with(|c| {
        let c = c.borrow();
        let map = if newest { &c.current } else { &c.oldest };
        map.get(name).cloned()
    });
    if let Some(r) = cached {
        return Ok(r);
    }
    let order = if newest { "DESC" } else { "ASC" };
    let q = format!(
        "SELECT {ROW_COLUMNS} WHERE name OPERATOR(pg_catalog.=) $1 \
         AND status OPERATOR(pg_catalog.=) 'active' ORDER BY version {order} LIMIT 1"
    );
    let row = Rc::new(
        read_rows(&q, vec![name.into()])?
            .into_iter()
            .next()
            .ok_or_else(|| AegisError::UnknownKey {
                name: name.to_string(),
            })?,
    );
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let map = if newest {
            &mut c.current
        } else {
            &mut c.oldest
        };
        map.insert(name.to_string(), row.clone());
    });
    Ok(row)
}

fn current_row(name: &str) -> Result<Rc<KeyRow>, AegisError> {
    active_row(name, true)
}

fn row_by_ref(key_ref: KeyRef) -> Result<Rc<KeyRow>, AegisError> {
    ensure_callback()?;
    if let Some(r) = CACHE.with(|c| c.borrow().rows.get(&key_ref).cloned()) {
        return Ok(r);
    }
    let q = format!(
        "SELECT {ROW_COLUMNS} WHERE key_id OPERATOR(pg_catalog.=) $1 \
         AND version OPERATOR(pg_catalog.=) $2"
    );
    let id = pgrx::Uuid::from_bytes(key_ref.id);
    let version = i32::try_from(key_ref.version).map_err(|_| AegisError::UnknownKeyRef)?;
    let row = Rc::new(
        read_rows(&q, vec![id.into(), version.into()])?
            .into_iter()
            .next()
            .ok_or(AegisError::UnknownKeyRef)?,
    );
    CACHE.with(|c| c.borrow_mut().rows.insert(key_ref, row.clone()));
    Ok(row)
}

/// Unwrap a row's data key with the master key (not cached: callers cache
/// what they derive from it).
fn unwrap_row(row: &KeyRow) -> Result<SecretKey, AegisError> {
    let wrapped = row
        .wrapped
        .as_deref()
        .ok_or_else(|| AegisError::KeyDestroyed {
            name: row.name.clone(),
        })?;
    Ok(envelope::unwrap_key(&master_key()?, row.key_ref, wrapped)?)
}

fn cipher_for(row: &KeyRow) -> Result<Rc<envelope::DataCipher>, AegisError> {
    if let Some(c) = CACHE.with(|c| c.borrow().ciphers.get(&row.key_ref).cloned()) {
        return Ok(c);
    }
    let cipher = Rc::new(unwrap_row(row)?.data_cipher());
    CACHE.with(|c| c.borrow_mut().ciphers.insert(row.key_ref, cipher.clone()));
    Ok(cipher)
}

/// Decrypt is a privilege: checked like pg_has_role(role, 'USAGE'), so a
/// NOINHERIT member must SET ROLE first, as with table privileges.
fn may_decrypt(row: &KeyRow) -> bool {
    // SAFETY: privilege checks for the current user; catalog reads only.
    unsafe {
        let me = pg_sys::GetUserId();
        let admin = pg_sys::get_role_oid(c"aegis_admin".as_ptr(), true);
        (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(me, admin))
            || row.decrypt_role.is_some_and(|r| {
                pg_sys::SearchSysCacheExists(
                    pg_sys::SysCacheIdentifier::AUTHOID as i32,
                    pg_sys::Datum::from(r.to_u32()),
                    pg_sys::Datum::from(0usize),
                    pg_sys::Datum::from(0usize),
                    pg_sys::Datum::from(0usize),
                ) && pg_sys::has_privs_of_role(me, r)
            })
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

fn do_encrypt(data: &[u8], key_name: &str, aad: Option<&[u8]>) -> Result<Vec<u8>, AegisError> {
    let row = current_row(key_name)?;
    let cipher = cipher_for(&row)?;
    Ok(envelope::seal(&cipher, row.key_ref, data, aad)?)
}

fn do_decrypt(ct: &[u8], aad: Option<&[u8]>) -> Result<(Vec<u8>, Rc<KeyRow>), AegisError> {
    let key_ref = envelope::parse_header(ct)?;
    let row = row_by_ref(key_ref)?;
    if !may_decrypt(&row) {
        return Err(AegisError::DecryptDenied {
            name: row.name.clone(),
        });
    }
    match row.status.as_str() {
        "destroyed" => {
            return Err(AegisError::KeyDestroyed {
                name: row.name.clone(),
            })
        }
        "retired" => {
            return Err(AegisError::KeyRetired {
                name: row.name.clone(),
                version: key_ref.version,
            })
        }
        _ => {}
    }
    let cipher = cipher_for(&row)?;
    Ok((envelope::open(&cipher, ct, aad)?, row))
}

fn verify_text(bytes: &[u8]) -> Result<(), AegisError> {
    let len = i32::try_from(bytes.len()).map_err(|_| AegisError::NotText)?;
    // SAFETY: checks `len` bytes of a live slice against the server encoding;
    // noError = true, so it returns false instead of raising.
    let ok = unsafe { pg_sys::pg_verifymbstr(bytes.as_ptr().cast(), len, true) };
    if ok && !bytes.contains(&0) {
        Ok(())
    } else {
        Err(AegisError::NotText)
    }
}

// The SQL declarations are in sql/50_keyring.sql (sql = false): the text and
// bytea variants share these symbols, reading text as its raw bytes.

// Not STRICT (a NULL aad means "no aad"), so NULL data gives NULL here.

fn key_name_given(key_name: Option<&str>) -> Result<&str, AegisError> {
    key_name.ok_or(AegisError::NullArgument { what: "key_name" })
}

/// `aegis.encrypt(data, key_name, aad) → bytea`
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn encrypt_impl(
    data: Option<&[u8]>,
    key_name: Option<&str>,
    aad: Option<&[u8]>,
) -> AegisResult<Option<Vec<u8>>> {
    let Some(data) = data else { return Ok(None) };
    let name = key_name_given(key_name)?;
    // Key separation: the keys pg_aegis signs chain heads and makes
    // pseudonyms with encrypt nothing for anyone.
    if let Some(purpose) = reserved_purpose(name) {
        return Err(AegisError::ReservedKey {
            name: name.to_string(),
            purpose,
        }
        .into());
    }
    Ok(Some(do_encrypt(data, name, aad)?))
}

/// What a key reserved for pg_aegis's own use is for; None for the others.
fn reserved_purpose(name: &str) -> Option<&'static str> {
    if name == crate::audit::HEAD_KEY {
        Some("signing audit chain heads and checkpoints")
    } else if name == crate::audit::PSEUDONYM_KEY {
        Some("pseudonyms in the audit trail and hash-style redaction")
    } else {
        None
    }
}

/// `aegis.decrypt_bytea(ct, aad) → bytea`
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn decrypt_bytea_impl(ct: Option<&[u8]>, aad: Option<&[u8]>) -> AegisResult<Option<Vec<u8>>> {
    let Some(ct) = ct else { return Ok(None) };
    Ok(Some(do_decrypt(ct, aad)?.0))
}

/// `aegis.decrypt(ct, aad) → text`: the plaintext must be valid in the server
/// encoding (a value encrypted from bytea may not be; use decrypt_bytea). The
/// SQL declaration returns text; the bytes are returned as they are, which is
/// the varlena representation of text in the server encoding.
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn decrypt_text_impl(ct: Option<&[u8]>, aad: Option<&[u8]>) -> AegisResult<Option<Vec<u8>>> {
    let Some(ct) = ct else { return Ok(None) };
    let (pt, _) = do_decrypt(ct, aad)?;
    verify_text(&pt)?;
    Ok(Some(pt))
}

/// `aegis.reencrypt(ct, aad) → bytea`: to the current version of the same key.
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn reencrypt_impl(ct: Option<&[u8]>, aad: Option<&[u8]>) -> AegisResult<Option<Vec<u8>>> {
    let Some(ct) = ct else { return Ok(None) };
    let (pt, row) = do_decrypt(ct, aad)?;
    Ok(Some(do_encrypt(&pt, &row.name, aad)?))
}

/// `aegis.pseudonymize(value text, key_name text DEFAULT 'pseudonym') → text`:
/// 32 hex digits of keyed HMAC-SHA-256; deterministic (joinable across
/// rows and tables), not reversible, stable across key rotations.
#[pg_extern(stable, strict, parallel_restricted, sql = false)]
fn pseudonymize_impl(value: &[u8], key_name: &str) -> AegisResult<String> {
    pseudonym(value, key_name)
}

/// The keyed pseudonym of `value` under `key_name` (hex), for SQL and for
/// redact_pii()'s `hash` style.
pub(crate) fn pseudonym(value: &[u8], key_name: &str) -> AegisResult<String> {
    ensure_callback()?;
    let cached = CACHE.with(|c| c.borrow().pseudonym.get(key_name).cloned());
    let pk = match cached {
        Some(pk) => pk,
        None => {
            let row = active_row(key_name, false)?;
            let pk = Rc::new(unwrap_row(&row)?.pseudonym_key());
            CACHE.with(|c| {
                c.borrow_mut()
                    .pseudonym
                    .insert(key_name.to_string(), pk.clone())
            });
            pk
        }
    };
    Ok(pk.pseudonym(value))
}

unsafe extern "C-unwind" {
    /// src/masked_pseudonym.c: is this call at a call site approved when
    /// the query started?
    fn aegis_masked_call_approved(fcinfo: pg_sys::FunctionCallInfo) -> bool;
}

/// Is this column of a protected table (or of a partition of one)
/// classified `subject_id` or `pii`? For src/masked_pseudonym.c, which
/// approves `aegis.masked_pseudonym()` only over such columns.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_column_is_pseudonymized(
    relid: pg_sys::Oid,
    attnum: i16,
) -> bool {
    let found = with_safe_search_path(|| {
        as_extension_owner(|| {
            crate::spi::get_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM aegis.column_classes c \
                                JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = $2 \
                                WHERE c.relid = COALESCE(pg_catalog.pg_partition_root($1), $1)::pg_catalog.regclass \
                                  AND c.column_name = a.attname AND c.class IN ('subject_id', 'pii'))",
                &[relid.into(), attnum.into()],
            )
            .map_err(spi_error)
        })
    });
    matches!(found, Ok(Some(true)))
}

/// Version-1 calling convention record of `aegis_masked_pseudonym`.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_aegis_masked_pseudonym() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// `aegis.masked_pseudonym(value text) → text` (STRICT): `value`'s
/// pseudonym under the key "pseudonym", as `aegis.pseudonymize(value)`
/// gives it, but only at a call site src/masked_pseudonym.c approved (a
/// column of a table read through a view owned by aegis_masking_owner).
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_masked_pseudonym(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by the function manager with a valid fcinfo.
    if !unsafe { aegis_masked_call_approved(fcinfo) } {
        crate::error::raise(AegisError::MaskedPseudonym);
    }
    // SAFETY: the one text argument of a STRICT function (never NULL).
    let value: Option<&str> = unsafe { pgrx::fcinfo::pg_getarg(fcinfo, 0) };
    let p = pseudonym(value.unwrap_or_default().as_bytes(), "pseudonym")
        .unwrap_or_else(|e| crate::error::raise(e));
    pgrx::rust_str_to_text_p(&p)
        .into_datum()
        .unwrap_or(pg_sys::Datum::from(0))
}

/// A full HMAC-SHA-256 of `msg` under a subkey of `key_name` derived for
/// `label` only (signatures: the audit trail's chain heads). Not cached: it
/// is called once per signature.
pub(crate) fn purpose_mac(
    key_name: &str,
    label: &[u8],
    msg: &[u8],
) -> Result<[u8; 32], AegisError> {
    ensure_callback()?;
    let row = active_row(key_name, false)?;
    Ok(unwrap_row(&row)?.purpose_key(label).mac(msg))
}

/// `aegis.master_key_status() → jsonb` (internal: the compliance report):
/// whether a master key is configured, from where, and whether it loads
/// (file owned by the server's user, mode 600, 64 hex digits; or a command
/// that prints one). The key itself and the file's path are never returned.
#[pg_extern(volatile, sql = false)]
fn master_key_status() -> pgrx::JsonB {
    let source = if guc::master_key_file().is_some() {
        Some("file")
    } else if guc::master_key_command().is_some() {
        Some("command")
    } else {
        None
    };
    let problem = match master_key() {
        Ok(_) => None,
        Err(AegisError::Core(CoreError::MasterKeyFile { reason, .. })) => Some(reason),
        Err(e) => Some(e.to_string()),
    };
    pgrx::JsonB(serde_json::json!({
        "configured": source.is_some(),
        "source": source,
        "ok": problem.is_none(),
        "problem": problem,
    }))
}

// ---------------------------------------------------------------------------
// Per-subject keys (crypto-shredding)
// ---------------------------------------------------------------------------

/// The keyring name of a subject's key: "subject:" and a keyed index of the
/// subject (HMAC under a key derived from the master key), so key names do
/// not reveal who they belong to, not even to a dictionary attack by someone
/// who can list the keyring.
fn subject_key_name(subject: &[u8]) -> Result<String, AegisError> {
    let cached = CACHE.with(|c| c.borrow().subject_index.clone());
    let idx = match cached {
        Some(k) => k,
        None => {
            let k = Rc::new(master_key()?.purpose_key(b"aegis subject index v1"));
            CACHE.with(|c| c.borrow_mut().subject_index = Some(k.clone()));
            k
        }
    };
    Ok(format!("subject:{}", idx.pseudonym(subject)))
}

/// The subject's current key, created (with the extension owner's rights) if
/// the subject has none or all its versions were destroyed.
fn subject_row(subject: &[u8]) -> Result<Rc<KeyRow>, AegisError> {
    let name = subject_key_name(subject)?;
    match current_row(&name) {
        Ok(row) => return Ok(row),
        Err(AegisError::UnknownKey { .. }) => {}
        Err(e) => return Err(e),
    }
    let existing = read_rows(
        &format!(
            "SELECT {ROW_COLUMNS} WHERE name OPERATOR(pg_catalog.=) $1 ORDER BY version DESC LIMIT 1"
        ),
        vec![name.as_str().into()],
    )?;
    let (id, version) = match existing.first() {
        Some(r) => (r.key_ref.id, r.key_ref.version + 1),
        None => (random_uuid()?, 1),
    };
    let key_ref = KeyRef { id, version };
    let wrapped = envelope::wrap_key(&master_key()?, key_ref, &SecretKey::generate()?)?;
    let version_i32 = i32::try_from(version).map_err(|_| AegisError::UnknownKeyRef)?;
    with_safe_search_path(|| {
        as_extension_owner(|| {
            // A concurrent session may create the same version first: keep theirs.
            Spi::connect_mut(|client| {
                client
                    .update(
                        "INSERT INTO aegis.keys (key_id, name, version, wrapped_key) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                        None,
                        &[
                            pgrx::Uuid::from_bytes(id).into(),
                            name.as_str().into(),
                            version_i32.into(),
                            wrapped.into(),
                        ],
                    )
                    .map(|_| ())
                    .map_err(spi_error)
            })
        })
    })?;
    CACHE.with(|c| c.borrow_mut().current.remove(&name));
    current_row(&name)
}

fn random_uuid() -> Result<[u8; 16], AegisError> {
    let mut id: [u8; 16] = envelope::random_bytes()?;
    // RFC 4122 version 4, variant 1.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(id)
}

/// `aegis.encrypt_for_subject(subject text, data text) → bytea`: encrypt
/// under the subject's own key (created on first use). Forgetting the subject
/// destroys that key, and with it every copy of this ciphertext.
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn encrypt_for_subject_impl(
    subject: Option<&[u8]>,
    data: Option<&[u8]>,
) -> AegisResult<Option<Vec<u8>>> {
    let subject = subject.ok_or(AegisError::NullArgument { what: "subject" })?;
    let Some(data) = data else { return Ok(None) };
    let row = subject_row(subject)?;
    let cipher = cipher_for(&row)?;
    Ok(Some(
        envelope::seal(&cipher, row.key_ref, data, None).map_err(AegisError::from)?,
    ))
}

/// `aegis.subject_key_name(subject text) → text` (admin-only): which keyring
/// entry holds a subject's key, for forget_subject() and receipts.
#[pg_extern(stable, strict, parallel_restricted, sql = false)]
fn subject_key_name_impl(subject: &[u8]) -> AegisResult<String> {
    Ok(subject_key_name(subject)?)
}

/// `aegis.new_wrapped_key(key_id uuid, version int) → bytea`: a fresh random
/// data key, returned only wrapped under the master key (admin-only).
#[pg_extern(volatile, parallel_restricted, sql = false)]
fn new_wrapped_key_impl(key_id: pgrx::Uuid, version: i32) -> AegisResult<Vec<u8>> {
    let mut id = [0u8; 16];
    id.copy_from_slice(key_id.as_bytes());
    let key_ref = KeyRef {
        id,
        version: u32::try_from(version).map_err(|_| AegisError::UnknownKeyRef)?,
    };
    let dk = SecretKey::generate().map_err(AegisError::from)?;
    Ok(envelope::wrap_key(&master_key()?, key_ref, &dk).map_err(AegisError::from)?)
}

/// `aegis.invalidate_keyring_cache()`: called by the keyring's statement
/// trigger; every backend drops its cached keys when the change commits. A
/// failure here fails the keyring change itself: a change other backends
/// would not see must not commit.
#[pg_extern(volatile, sql = false)]
fn invalidate_keyring_cache_impl() -> AegisResult<()> {
    let relid = keys_relid()?;
    // SAFETY: queues a relcache invalidation for aegis.keys; no memory is shared.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(())
}
