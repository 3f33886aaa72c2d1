//! The background sealer: one worker per database in `aegis.seal_databases`
//! runs `aegis.seal()` every `aegis.seal_interval`, so entries are linked
//! into the chain without anyone calling seal(); keeps the metric alerts'
//! baselines and cooldowns; runs the security checks every
//! `aegis.security_check_interval`; and, when the database's retention
//! schedule is due (`aegis.schedule_retention()` without pg_cron), starts a
//! retention worker of its own for the run (`aegis_retention_main`), so a
//! table owner's code that retention runs never stalls the sealer.
//! Every duty runs in a transaction of its own with a bounded lock wait.
//! Registered at server start when the library is preloaded.

use crate::guc;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
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
/// its result, or the message of the ERROR it raised (logged as a WARNING;
/// the transaction is rolled back and the worker goes on).
fn round<R>(
    what: &str,
    db: &str,
    body: impl FnOnce() -> Result<R, crate::error::AegisError> + std::panic::UnwindSafe,
) -> Result<Result<R, crate::error::AegisError>, String> {
    // SAFETY: the worker's main loop, outside any transaction.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = PgTryBuilder::new(|| {
        Ok(crate::guc::with_settings(
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
        Err(msg)
    })
    .execute();
    // SAFETY: ends the transaction started above: committed if the duty
    // finished, rolled back (with its snapshot and locks) if it raised.
    unsafe {
        if r.is_ok() {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        } else {
            pg_sys::AbortCurrentTransaction();
        }
    }
    r
}

/// How long past `aegis.retention_timeout` the sealer lets a retention
/// worker whose statement was cancelled wind down before it ends it.
const RETENTION_GRACE: Duration = Duration::from_secs(5);

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
    let mut retention: Option<(DynamicBackgroundWorker, std::time::Instant)> = None;
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
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(crate::error::AegisError::SealerBlocked { holders })) => {
                pgrx::warning!("pg_aegis sealer in {db:?}: the audit chain is locked by {holders}; sealing waits");
                let r = round("sealer", &db, || {
                    crate::alerts::report_blocked_sealer(&holders)
                });
                if let Ok(Err(e)) = r {
                    pgrx::warning!("pg_aegis sealer in {db:?}: reporting the blocked chain: {e}");
                }
            }
            Ok(Err(e)) => pgrx::warning!("pg_aegis sealer in {db:?}: {e}"),
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
        if let Ok(Err(e)) = r {
            pgrx::warning!("pg_aegis alert upkeep in {db:?}: {e}");
        }
        // The retention schedule (aegis.schedule_retention without pg_cron)
        // runs in a worker of its own when due: a table owner's code that
        // retention runs (a slow trigger) delays retention only, never
        // sealing or the checks, and a shutdown ends it.
        let running = retention.as_ref().is_some_and(|(h, _)| {
            matches!(h.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
        });
        let overdue = retention.as_ref().and_then(|(_, started)| {
            guc::retention_timeout().filter(|ms| {
                started.elapsed() > Duration::from_millis(*ms as u64) + RETENTION_GRACE
            })
        });
        if let (true, Some(ms)) = (running, overdue) {
            // Its statement was cancelled at the timeout and it did not end
            // (an owner's trigger that catches the cancel): SIGTERM, which
            // nothing it runs can catch; the run rolls back.
            if let Some((h, _)) = retention.take() {
                let _ = h.terminate();
            }
            let why = format!(
                "stopped after aegis.retention_timeout ({ms} ms): it did not end when its statement was cancelled"
            );
            pgrx::warning!("pg_aegis scheduled retention in {db:?}: {why}");
            let r = round("scheduled retention", &db, move || {
                crate::lifecycle::record_failed_retention(&why)
            });
            if let Ok(Err(e)) = r {
                pgrx::warning!("pg_aegis scheduled retention in {db:?}: {e}");
            }
        } else if running {
            // Still running.
        } else {
            retention = None;
            let due = round("scheduled retention", &db, || {
                if !installed() {
                    return Ok(false);
                }
                crate::lifecycle::scheduled_retention_due()
            });
            if let Ok(Ok(true)) = due {
                match BackgroundWorkerBuilder::new(&format!("pg_aegis retention {db}"))
                    .set_type("pg_aegis retention")
                    .set_library("pg_aegis")
                    .set_function("aegis_retention_main")
                    .set_extra(&db)
                    .enable_spi_access()
                    .set_restart_time(None)
                    // SAFETY: this process's pid.
                    .set_notify_pid(unsafe { pg_sys::MyProcPid })
                    .load_dynamic()
                {
                    Ok(h) => retention = Some((h, std::time::Instant::now())),
                    Err(_) => pgrx::warning!(
                        "pg_aegis: no background worker slot for the scheduled retention of {db:?} \
                         (max_worker_processes); retried next round"
                    ),
                }
            } else if let Ok(Err(e)) = due {
                pgrx::warning!("pg_aegis scheduled retention in {db:?}: {e}");
            }
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
                if let Ok(Err(e)) = r {
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

unsafe extern "C" {
    // src/worker_support.c
    fn aegis_die_on_sigterm();
    fn aegis_arm_statement_timeout(delay_ms: i32);
    fn aegis_disarm_statement_timeout();
}

/// The scheduled retention run, in a worker of its own started by the
/// sealer when the schedule is due: `apply_retention()` with lock_timeout
/// and `aegis.retention_timeout` bounding it, then it exits. SIGTERM (a
/// shutdown, pg_terminate_backend()) ends it at the next interrupt check,
/// inside a table owner's slow trigger too; the run's deletions roll back
/// and the sealer starts it again while the schedule is due. A run that
/// fails (a timeout) records why in `aegis.retention_schedule` and waits
/// for the schedule's next time.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn aegis_retention_main(_arg: pg_sys::Datum) {
    // SAFETY: PostgreSQL's own handler for a backend's SIGTERM (sets
    // ProcDiePending; the next CHECK_FOR_INTERRUPTS ends the process), set
    // before signals are unblocked, as bgworkers do.
    unsafe {
        aegis_die_on_sigterm();
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    let timeout = guc::retention_timeout();
    let r = round("scheduled retention", &db, || {
        if !installed() {
            return Ok(false);
        }
        // A statement timeout is armed by the client protocol only: a
        // worker arms its own (its SIGINT handler cancels the statement).
        // SAFETY: registered timeouts of this backend; disarmed below.
        unsafe {
            if let Some(ms) = timeout {
                aegis_arm_statement_timeout(ms);
            }
        }
        let r = crate::lifecycle::run_scheduled_retention();
        // SAFETY: as above.
        unsafe { aegis_disarm_statement_timeout() };
        r
    });
    // SAFETY: as above (an ERROR skipped the disarming).
    unsafe { aegis_disarm_statement_timeout() };
    match r {
        Ok(Ok(true)) => pgrx::log!("pg_aegis: scheduled retention ran in database {db:?}"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            pgrx::warning!("pg_aegis scheduled retention in {db:?}: {e}");
            let msg = e.to_string();
            let _ = round("scheduled retention", &db, move || {
                crate::lifecycle::record_failed_retention(&msg)
            });
        }
        Err(msg) => {
            let _ = round("scheduled retention", &db, move || {
                crate::lifecycle::record_failed_retention(&msg)
            });
        }
    }
}
