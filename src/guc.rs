//! Every GUC of pg_aegis: a documented static, a typed accessor, and its
//! registration in `_PG_init`. Names carry the `aegis.` prefix, which is
//! reserved so a misspelt `aegis.*` setting is an error, not a silent no-op.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};

/// `aegis.allow_legacy_hashes` (bool, default off, superuser).
/// When off, `aegis.digest`/`aegis.hmac` refuse md5 and sha1 with SQLSTATE
/// 22023. A superuser may turn it on for pgcrypto compatibility during a
/// migration; ordinary users cannot, so they cannot downgrade hashing in
/// code that runs with their privileges.
static ALLOW_LEGACY_HASHES: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn allow_legacy_hashes() -> bool {
    ALLOW_LEGACY_HASHES.get()
}

/// `aegis.master_key_file` (string, unset, postgresql.conf only, reloadable).
/// Path of a file holding the 32-byte master key as 64 hex digits; it must be
/// owned by the server's user with mode 600. Superuser-only, hidden from
/// SHOW ALL: the path itself is sensitive.
static MASTER_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `aegis.master_key_command` (string, unset, postgresql.conf only,
/// reloadable). A shell command printing the master key (64 hex digits) on
/// standard output, like ssl_passphrase_command, so a KMS or Vault CLI can
/// supply it. Used when aegis.master_key_file is unset.
static MASTER_KEY_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

fn non_empty(v: Option<CString>) -> Option<String> {
    v.map(|c| c.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
}

pub fn master_key_file() -> Option<String> {
    non_empty(MASTER_KEY_FILE.get())
}

pub fn master_key_command() -> Option<String> {
    non_empty(MASTER_KEY_COMMAND.get())
}

/// Run `f` with session settings changed, as `SECURITY DEFINER ... SET`
/// does: a GUC nest level, popped afterwards, and by PostgreSQL itself when
/// `f` raises an error (nest levels unwind with the (sub)transaction).
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    // SAFETY: standard GUC nesting; names and values are NUL-terminated and
    // valid for the call.
    let level = unsafe {
        let level = pgrx::pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pgrx::pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pgrx::pg_sys::GucContext::PGC_USERSET,
                pgrx::pg_sys::GucSource::PGC_S_SESSION,
                pgrx::pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        level
    };
    let r = f();
    // SAFETY: pops exactly the level pushed above.
    unsafe { pgrx::pg_sys::AtEOXact_GUC(true, level) };
    r
}

pub fn register() {
    GucRegistry::define_bool_guc(
        c"aegis.allow_legacy_hashes",
        c"Allow md5 and sha1 in aegis.digest() and aegis.hmac().",
        c"Off by default: both are cryptographically broken. Superuser-only, for pgcrypto compatibility.",
        &ALLOW_LEGACY_HASHES,
        GucContext::Suset,
        GucFlags::default(),
    );

    GucRegistry::define_string_guc(
        c"aegis.master_key_file",
        c"File holding the pg_aegis master key (64 hex digits, mode 600).",
        c"Set in postgresql.conf and reload. Superuser-only; not shown by SHOW ALL.",
        &MASTER_KEY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"aegis.master_key_command",
        c"Command printing the pg_aegis master key on standard output.",
        c"Used when aegis.master_key_file is unset. Superuser-only; not shown by SHOW ALL.",
        &MASTER_KEY_COMMAND,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );

    // SAFETY: called from _PG_init in the backend's main thread with a
    // static, NUL-terminated prefix; PostgreSQL copies nothing it does not own.
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
    unsafe {
        pgrx::pg_sys::MarkGUCPrefixReserved(c"aegis".as_ptr());
    }
}
