//! The background sealer: one worker per database in `aegis.seal_databases`
//! runs `aegis.seal()` every `aegis.seal_interval`, so entries are linked
//! into the chain without anyone calling seal(), and runs the database's
//! retention schedule when it is due (`aegis.schedule_retention()` without
//! pg_cron), and the security checks every `aegis.security_check_interval`.
//! Registered at server start when the library is preloaded.

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// Register one worker per configured database (called from `_PG_init`
/// while shared_preload_libraries is processed).
pub fn register() {
    for db in guc::seal_databases() {
        if db.len() >= 64 {
            pgrx::warning!(
                "pg_aegis: database name {db:?} in aegis.seal_databases is too long; skipped"
            );
            continue;
        }
        BackgroundWorkerBuilder::new(&format!("pg_aegis sealer {db}"))
            .set_type("pg_aegis sealer")
            .set_library("pg_aegis")
            .set_function("aegis_sealer_main")
            .set_extra(&db)
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

/// Whether pg_aegis is installed in this database (the worker waits
/// quietly until it is).
fn installed() -> bool {
    crate::spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_aegis')",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn aegis_sealer_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    pgrx::log!("pg_aegis sealer started in database {db:?}");
    let mut last_security_check = std::time::Instant::now();
    while BackgroundWorker::wait_latch(Some(guc::seal_interval())) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf in the worker's main loop, as
            // PostgreSQL's own workers do on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // A returned error ends this round only (logged; the next retries);
        // a server ERROR ends the worker, which the postmaster restarts
        // after 10 s.
        // The chain's lock is waited for a bounded time only: whoever holds
        // it delays sealing, never the worker's other duties.
        let r = BackgroundWorker::transaction(|| {
            if !installed() {
                return Ok(0);
            }
            crate::audit::seal_impl(true)
        });
        match r {
            Ok(_) => {}
            Err(crate::error::AegisError::SealerBlocked { holders }) => {
                pgrx::warning!("pg_aegis sealer in {db:?}: the audit chain is locked by {holders}; sealing waits");
                let r = BackgroundWorker::transaction(|| {
                    crate::alerts::report_blocked_sealer(&holders)
                });
                if let Err(e) = r {
                    pgrx::warning!("pg_aegis sealer in {db:?}: reporting the blocked chain: {e}");
                }
            }
            Err(e) => pgrx::warning!("pg_aegis sealer in {db:?}: {e}"),
        }
        // The retention schedule (aegis.schedule_retention without pg_cron)
        // runs in a transaction of its own, after sealing.
        let r = BackgroundWorker::transaction(|| {
            if !installed() {
                return Ok(false);
            }
            crate::lifecycle::run_scheduled_retention()
        });
        match r {
            Ok(true) => pgrx::log!("pg_aegis: scheduled retention ran in database {db:?}"),
            Ok(false) => {}
            Err(e) => pgrx::warning!("pg_aegis scheduled retention in {db:?}: {e}"),
        }
        // Security checks (aegis.security_check_interval), also in a
        // transaction of their own; they NOTIFY what they find.
        if let Some(every) = guc::security_check_interval() {
            if last_security_check.elapsed() >= every {
                last_security_check = std::time::Instant::now();
                let r = BackgroundWorker::transaction(|| {
                    if !installed() {
                        return Ok(0);
                    }
                    crate::alerts::run_security_checks()
                });
                if let Err(e) = r {
                    pgrx::warning!("pg_aegis security checks in {db:?}: {e}");
                }
            }
        }
    }
    pgrx::log!("pg_aegis sealer in database {db:?} stopped");
}
