//! pg_aegis: the pgrx glue. Thin `#[pg_extern]` wrappers over `aegis-core`,
//! GUC registration and SQLSTATE mapping. Logic that does not need a backend
//! belongs in `core/`, not here.
//!
//! Loading: everything in this release works whether or not the library is in
//! `shared_preload_libraries`; the server loads it on first use. The README
//! lists what needs preloading; `aegis.build_info()` says whether it was.

// Wrappers return pgrx's ErrorReport (about 200 bytes) so the SQLSTATE reaches
// PostgreSQL; it is only built on the error path, where size does not matter.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

mod alerts;
mod audit;
mod compat;
mod crypto;
mod ddl_guard;
mod error;
mod guc;
mod info;
mod keyring;
mod lifecycle;
mod pii;
mod policy;
mod read_audit;
mod sealer;
mod security;
mod spi;

::pgrx::pg_module_magic!(name, version);

// Hand-written DDL, in explicit order. Every file opens by revoking schema
// aegis from PUBLIC; finalize runs last, revokes EXECUTE on every function
// from PUBLIC and grants an explicit list, so no file can leave something open
// by accident.
extension_sql_file!("../sql/00_bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/10_crypto.sql",
    name = "crypto",
    requires = ["bootstrap"]
);
extension_sql_file!("../sql/20_roles.sql", name = "roles", requires = ["crypto"]);
extension_sql_file!(
    "../sql/30_policy.sql",
    name = "policy",
    requires = ["roles", policy::is_member]
);
extension_sql_file!(
    "../sql/40_monitoring_schema.sql",
    name = "monitoring_schema",
    requires = ["policy"]
);
extension_sql_file!(
    "../sql/50_keyring.sql",
    name = "keyring",
    requires = ["monitoring_schema"]
);
extension_sql_file!("../sql/60_pii.sql", name = "pii", requires = ["keyring"]);
extension_sql_file!(
    "../sql/70_audit.sql",
    name = "audit",
    requires = [
        "pii",
        audit::capture::audit_row,
        audit::digest::audit_statement,
        audit::capture::audit_truncate,
        audit::capture::audit_plans_changed,
        audit::capture::audit_append_only
    ]
);
extension_sql_file!(
    "../sql/80_lifecycle.sql",
    name = "lifecycle",
    requires = [
        "audit",
        lifecycle::row_filter,
        lifecycle::prune_audit,
        lifecycle::cron_next,
        lifecycle::mentions,
        lifecycle::erase_mentions,
        lifecycle::audit_tombstone,
        lifecycle::attest_tombstones,
        security::run_restricted
    ]
);
extension_sql_file!(
    "../sql/85_alerts.sql",
    name = "alerts",
    requires = [
        "lifecycle",
        alerts::metric_alerts,
        alerts::denied_access_count
    ]
);
extension_sql_file!(
    "../sql/90_compliance.sql",
    name = "compliance",
    requires = ["alerts", keyring::master_key_status]
);
extension_sql_file!(
    "../sql/95_catalog_guard.sql",
    name = "catalog_guard",
    requires = ["compliance"]
);
extension_sql_file!("../sql/99_finalize.sql", name = "finalize", finalize);

#[allow(non_snake_case)]
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx puts a captured Rust backtrace into an error's DETAIL, which
    // reaches the client, whenever the server was started with
    // RUST_BACKTRACE set. Internals (file paths, call stacks) are not for
    // clients: RUST_LIB_BACKTRACE=0 turns capturing off for
    // std::backtrace::Backtrace only (panics in the server log keep theirs).
    // SAFETY: a backend is single-threaded; _PG_init runs before any query.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    guc::register();
    info::record_load_mode();
    audit::install_depth_hooks();
    // SAFETY: reads a postmaster global.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        read_audit::install();
        alerts::init_shared_memory();
        sealer::register();
    }
}

// ---------------------------------------------------------------------------
// In-server unit tests (`cargo pgrx test`). The SQL contract is in pg_test/.
// ---------------------------------------------------------------------------

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_aegis'"]
    }
}
