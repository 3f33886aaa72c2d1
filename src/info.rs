//! `aegis.version()` and `aegis.build_info()`: what is installed and how it
//! was loaded, so a DBA can check a deployment from SQL.

use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Remember whether `_PG_init` ran while `shared_preload_libraries` was being
/// processed (in the postmaster, inherited by every backend through fork).
pub fn record_load_mode() {
    // SAFETY: a plain global bool PostgreSQL sets before loading preload
    // libraries; read once from the main thread during _PG_init.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloading, Ordering::Relaxed);
}

/// Whether the library was loaded through shared_preload_libraries.
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// The extension version (same as `pg_extension.extversion` after install).
#[pg_extern(immutable, parallel_safe)]
fn version() -> &'static str {
    aegis_core::VERSION
}

/// Facts about the running library: version, the PostgreSQL major version it
/// was built for, build profile, and whether it was preloaded.
#[pg_extern(stable, parallel_safe)]
fn build_info() -> TableIterator<'static, (name!(item, String), name!(value, String))> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let rows = vec![
        ("version".to_string(), aegis_core::VERSION.to_string()),
        (
            "postgres_major".to_string(),
            (pg_sys::PG_VERSION_NUM / 10000).to_string(),
        ),
        ("profile".to_string(), profile.to_string()),
        (
            "preloaded".to_string(),
            PRELOADED.load(Ordering::Relaxed).to_string(),
        ),
    ];
    TableIterator::new(rows)
}
