//! Every GUC of pg_aegis: a documented static, a typed accessor, and its
//! registration in `_PG_init`. Names carry the `aegis.` prefix, which is
//! reserved so a misspelt `aegis.*` setting is an error, not a silent no-op.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `aegis.allow_legacy_hashes` (bool, default off, superuser).
/// When off, `aegis.digest`/`aegis.hmac` refuse md5 and sha1 with SQLSTATE
/// 22023. A superuser may turn it on for pgcrypto compatibility during a
/// migration; ordinary users cannot, so they cannot downgrade hashing in
/// code that runs with their privileges.
static ALLOW_LEGACY_HASHES: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn allow_legacy_hashes() -> bool {
    ALLOW_LEGACY_HASHES.get()
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

    // SAFETY: called from _PG_init in the backend's main thread with a
    // static, NUL-terminated prefix; PostgreSQL copies nothing it does not own.
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
    unsafe {
        pgrx::pg_sys::MarkGUCPrefixReserved(c"aegis".as_ptr());
    }
}
