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

/// `aegis.audit_reads` (bool, default off, superuser). When on, every
/// SELECT and COPY TO that reads a protected table is recorded; when off,
/// only tables whose policy says `"audit_reads": true` are (the reference
/// schema sets it for error_logs, incident_response_logs, cost_data and
/// user_access_logs). Needs the library in shared_preload_libraries.
static AUDIT_READS: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn audit_reads() -> bool {
    AUDIT_READS.get()
}

/// `aegis.application_read_interval` (seconds, default 60, 0 to 1 day,
/// superuser). Reads of a table whose policy says `"application_reads":
/// "aggregate"` by its application roles are counted in the backend and
/// recorded as one entry per table and interval: at the first such read
/// after this long, when `aegis.flush_application_reads()` is called, and
/// when the session ends. 0 records the counts at every read.
static APPLICATION_READ_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);

pub fn application_read_interval_s() -> i64 {
    i64::from(APPLICATION_READ_INTERVAL_S.get().max(0))
}

/// `aegis.seal_databases` (string, default empty, postgresql.conf only,
/// restart). Comma-separated databases in which a background worker runs
/// `aegis.seal()` every `aegis.seal_interval`. Empty: no worker.
static SEAL_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn seal_databases() -> Vec<String> {
    non_empty(SEAL_DATABASES.get())
        .map(|s| {
            s.split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `aegis.seal_interval` (milliseconds, default 1000, 10 ms to 1 day,
/// postgresql.conf, reloadable): how often the background sealer runs.
static SEAL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn seal_interval() -> std::time::Duration {
    std::time::Duration::from_millis(SEAL_INTERVAL_MS.get().max(10) as u64)
}

/// `aegis.security_check_interval` (milliseconds, default 1 hour, 0 = off,
/// postgresql.conf, reloadable): how often the background worker runs
/// `aegis.security_alerts()` (chain verification, unsealed entries,
/// denied-access bursts, overdue retention, keys past their rotation age)
/// and sends what it finds through NOTIFY aegis_alerts.
static SECURITY_CHECK_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);

pub fn security_check_interval() -> Option<std::time::Duration> {
    let ms = SECURITY_CHECK_INTERVAL_MS.get();
    (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
}

/// `aegis.retention_timeout` (milliseconds, default 1 hour, 0 = none,
/// postgresql.conf, reloadable): how long the background worker's scheduled
/// retention run may take before it is cancelled (rolled back, recorded as
/// failed in `aegis.retention_schedule`, tried again at the schedule's next
/// time).
static RETENTION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);

pub fn retention_timeout() -> Option<i32> {
    let ms = RETENTION_TIMEOUT_MS.get();
    (ms > 0).then_some(ms)
}

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

    GucRegistry::define_bool_guc(
        c"aegis.audit_reads",
        c"Record every SELECT and COPY TO of a protected table in the audit trail.",
        c"Off: only tables whose protect() policy has \"audit_reads\": true. Superuser-only; needs shared_preload_libraries.",
        &AUDIT_READS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"aegis.application_read_interval",
        c"How long an application role's reads of a table are counted before they are recorded.",
        c"Applies to tables whose protect() policy says \"application_reads\": \"aggregate\". 0: record at every read. Superuser-only.",
        &APPLICATION_READ_INTERVAL_S,
        0,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // A server-start setting can only be defined while preloading (a later
    // load may not create one); without preloading there is no worker.
    // SAFETY: reads a postmaster global.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"aegis.seal_databases",
            c"Databases in which a background worker seals the audit chain (comma-separated).",
            c"Empty: no sealing worker; call aegis.seal() yourself. Needs shared_preload_libraries; restart to change.",
            &SEAL_DATABASES,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_int_guc(
        c"aegis.seal_interval",
        c"How often the background sealer runs aegis.seal().",
        c"The tamper window of new entries is about this long.",
        &SEAL_INTERVAL_MS,
        10,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );

    GucRegistry::define_int_guc(
        c"aegis.security_check_interval",
        c"How often the background worker runs aegis.security_alerts() and notifies what it finds.",
        c"0 turns the periodic check off. Runs in the databases of aegis.seal_databases.",
        &SECURITY_CHECK_INTERVAL_MS,
        0,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );

    GucRegistry::define_int_guc(
        c"aegis.retention_timeout",
        c"How long the background worker's scheduled retention run may take.",
        c"0: no limit. A run cancelled by it is rolled back and recorded as failed in aegis.retention_schedule.",
        &RETENTION_TIMEOUT_MS,
        0,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );

    // SAFETY: called from _PG_init in the backend's main thread with a
    // static, NUL-terminated prefix; PostgreSQL copies nothing it does not own.
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
    unsafe {
        pgrx::pg_sys::MarkGUCPrefixReserved(c"aegis".as_ptr());
    }
}
