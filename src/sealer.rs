//! The background sealer: one worker per database in `aegis.seal_databases`
//! runs `aegis.seal()` every `aegis.seal_interval`, so entries are linked
//! into the chain without anyone calling seal(), and runs the database's
//! retention schedule when it is due (`aegis.schedule_retention()` without
//! pg_cron), and the security checks every `aegis.security_check_interval`.
//! Registered at server start when the library is preloaded.

use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
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

/// How long any duty of the worker waits for a lock someone else holds
/// (a row of a table retention deletes from, the security checks' state):
/// then that duty's round fails, is logged, and the worker goes on.
const LOCK_TIMEOUT: &std::ffi::CStr = c"2s";

/// Run one duty in a transaction of its own, with `lock_timeout` bounded:
/// its result, or None when it raised an ERROR (logged as a WARNING with
/// the error; the transaction is rolled back and the worker goes on).
fn round<R>(
    what: &str,
    db: &str,
    body: impl FnOnce() -> Result<R, crate::error::AegisError> + std::panic::UnwindSafe,
) -> Option<Result<R, crate::error::AegisError>> {
    // SAFETY: the worker's main loop, outside any transaction.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = PgTryBuilder::new(|| {
        Some(crate::guc::with_settings(
            &[(c"lock_timeout", LOCK_TIMEOUT)],
            body,
        ))
    })
    .catch_others(|e| {
        let msg = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        };
        pgrx::warning!("pg_aegis {what} in {db:?}: {msg}; this round is skipped");
        None
    })
    .execute();
    // SAFETY: ends the transaction started above: committed if the duty
    // finished, rolled back (with its snapshot and locks) if it raised.
    unsafe {
        if r.is_some() {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        } else {
            pg_sys::AbortCurrentTransaction();
        }
    }
    r
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
        // Each duty runs in a transaction of its own (`round`): an error,
        // a server ERROR included (a lock timeout), ends that duty's round
        // only; the next round retries.
        // The chain's lock is waited for a bounded time only: whoever holds
        // it delays sealing, never the worker's other duties.
        let r = round("sealer", &db, || {
            if !installed() {
                return Ok(0);
            }
            crate::audit::seal_impl(true)
        });
        match r {
            Some(Ok(_)) | None => {}
            Some(Err(crate::error::AegisError::SealerBlocked { holders })) => {
                pgrx::warning!("pg_aegis sealer in {db:?}: the audit chain is locked by {holders}; sealing waits");
                let r = round("sealer", &db, || {
                    crate::alerts::report_blocked_sealer(&holders)
                });
                if let Some(Err(e)) = r {
                    pgrx::warning!("pg_aegis sealer in {db:?}: reporting the blocked chain: {e}");
                }
            }
            Some(Err(e)) => pgrx::warning!("pg_aegis sealer in {db:?}: {e}"),
        }
        // Metric alerts' upkeep: baselines the inserts could not fold (a
        // collector kept its transaction open), expired cooldowns. Never
        // waits for a lock.
        let r = round("alert upkeep", &db, || {
            if !installed() {
                return Ok(0);
            }
            crate::alerts::alert_upkeep()
        });
        if let Some(Err(e)) = r {
            pgrx::warning!("pg_aegis alert upkeep in {db:?}: {e}");
        }
        // The retention schedule (aegis.schedule_retention without pg_cron)
        // runs in a transaction of its own, after sealing.
        let r = round("scheduled retention", &db, || {
            if !installed() {
                return Ok(false);
            }
            crate::lifecycle::run_scheduled_retention()
        });
        match r {
            Some(Ok(true)) => pgrx::log!("pg_aegis: scheduled retention ran in database {db:?}"),
            Some(Ok(false)) | None => {}
            Some(Err(e)) => pgrx::warning!("pg_aegis scheduled retention in {db:?}: {e}"),
        }
        // Security checks (aegis.security_check_interval), also in a
        // transaction of their own; they NOTIFY what they find.
        if let Some(every) = guc::security_check_interval() {
            if last_security_check.elapsed() >= every {
                last_security_check = std::time::Instant::now();
                let r = round("security checks", &db, || {
                    if !installed() {
                        return Ok(0);
                    }
                    crate::alerts::run_security_checks()
                });
                if let Some(Err(e)) = r {
                    pgrx::warning!("pg_aegis security checks in {db:?}: {e}");
                }
            }
        }
    }
    // Stopped by a signal (pg_terminate_backend(), DROP DATABASE ... WITH
    // (FORCE), a restore recreating the database): exit with code 1, so the
    // postmaster starts the worker again after its restart interval (10 s);
    // exit code 0 would end it until the server restarts. At server
    // shutdown the postmaster starts nothing again. A database that is
    // missing when the worker starts fails its connection (FATAL, code 1):
    // it is retried the same way until the database is back.
    pgrx::log!(
        "pg_aegis sealer in database {db:?} stopped; the postmaster starts it again in 10 s"
    );
    // SAFETY: ends this background worker process, as PostgreSQL's own
    // workers do.
    unsafe { pg_sys::proc_exit(1) };
}
