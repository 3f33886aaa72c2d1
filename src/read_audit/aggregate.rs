//! Reads of an application's own roles, counted rather than recorded one by
//! one: a table protected with `"application_reads": "aggregate"` records
//! the reads of its application roles (the session's login is one of them
//! and runs as itself) as one entry per table, operation and role and
//! interval, with the number of statements and rows, instead of an entry
//! per statement. Everyone else's reads of the table are recorded as
//! before.
//!
//! Nothing counted is dropped: the counts are recorded at the first
//! counted read after `aegis.application_read_interval`, when the session
//! calls `aegis.flush_application_reads()`, and when it ends (in a
//! transaction of its own). Where the trail cannot be written (a read-only
//! transaction, a hot standby, a session ended by an error) the counts go
//! to the server log as JSON lines, as any read that cannot be written
//! does; if the transaction that recorded them rolls back, they go there
//! then. What a crash interrupts is lost with the backend: what it
//! counted since it last recorded (an idle session's counts wait for its
//! next counted read or its end).

use super::{json_line, pending_push, writable, Busy};
use crate::audit::{self, Doc, NewEntry, ReadTarget};
use crate::error::raise;
use crate::guc;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// What the reads of one table, operation and role came to.
struct Counts {
    statements: u64,
    rows: u64,
    first: pg_sys::TimestampTz,
    last: pg_sys::TimestampTz,
}

/// The reads counted since they were last recorded.
#[derive(Default)]
struct Counted {
    /// When the first of them was counted.
    since: Option<pg_sys::TimestampTz>,
    /// By (table, operation, role).
    by: BTreeMap<(String, &'static str, u32), Counts>,
}

thread_local! {
    static COUNTED: RefCell<Counted> = RefCell::new(Counted::default());
    static AT_EXIT: Cell<bool> = const { Cell::new(false) };
}

/// Are this session's reads of `t` counted rather than recorded one by
/// one? When the table says so and a client logged in as one of its
/// application roles, runs as itself and is not in a restricted operation
/// (a person who may SET ROLE to the application's role, a superuser's SET
/// SESSION AUTHORIZATION, a background job running as it: statement by
/// statement).
pub(super) fn applies(t: &ReadTarget) -> bool {
    if !t.aggregate_application_reads {
        return false;
    }
    // SAFETY: backend globals and functions without side effects.
    let (login, session, user, client, restricted) = unsafe {
        (
            pg_sys::GetAuthenticatedUserId(),
            pg_sys::GetSessionUserId(),
            pg_sys::GetUserId(),
            !pg_sys::MyProcPort.is_null(),
            pg_sys::InSecurityRestrictedOperation(),
        )
    };
    client
        && !restricted
        && login == session
        && user == session
        && t.application_roles.contains(&session)
}

/// Count a statement that read `tables` and processed `rows`; record the
/// counts when the interval is over.
pub(super) fn count(operation: &'static str, tables: &[String], rows: u64) {
    if tables.is_empty() {
        return;
    }
    // SAFETY: backend globals and a clock read.
    let (role, now) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetCurrentTimestamp()) };
    let due = COUNTED.with(|c| {
        let mut c = c.borrow_mut();
        let since = *c.since.get_or_insert(now);
        for t in tables {
            let e =
                c.by.entry((t.clone(), operation, role.to_u32()))
                    .or_insert(Counts {
                        statements: 0,
                        rows: 0,
                        first: now,
                        last: now,
                    });
            e.statements += 1;
            e.rows = e.rows.saturating_add(rows);
            e.last = now;
        }
        now.saturating_sub(since) >= guc::application_read_interval_s() * 1_000_000
    });
    if !AT_EXIT.replace(true) {
        // SAFETY: registers a callback for the life of the backend; it runs
        // before ShutdownPostgres (callbacks run last registered first), so
        // a transaction can still be started in it.
        unsafe { pg_sys::before_shmem_exit(Some(at_exit), pg_sys::Datum::from(0usize)) };
    }
    if due {
        flush();
    }
}

fn timestamp(ts: pg_sys::TimestampTz) -> String {
    // SAFETY: returns a string in a static buffer, copied at once.
    unsafe { std::ffi::CStr::from_ptr(pg_sys::timestamptz_to_str(ts)) }
        .to_string_lossy()
        .into_owned()
}

/// What is counted, taken out of the backend's counts: (table, operation,
/// the counts as JSON fields).
fn take() -> Vec<(String, &'static str, serde_json::Value)> {
    let taken = COUNTED.with(|c| {
        let mut c = c.borrow_mut();
        c.since = None;
        std::mem::take(&mut c.by)
    });
    taken
        .into_iter()
        .map(|((table, operation, role), k)| {
            let fields = serde_json::json!({
                "aggregate": true,
                "role": audit::role_name(pg_sys::Oid::from(role)),
                "statements": k.statements, "rows": k.rows,
                "first": timestamp(k.first), "last": timestamp(k.last),
            });
            (table, operation, fields)
        })
        .collect()
}

/// The server log line of one count.
fn line(table: &str, operation: &str, fields: &serde_json::Value, recorded_in: &str) -> String {
    let mut v = serde_json::json!({
        "event": "read", "operation": operation, "tables": [table], "recorded_in": recorded_in,
    });
    if let (serde_json::Value::Object(m), serde_json::Value::Object(f)) = (&mut v, fields) {
        m.extend(f.clone());
    }
    json_line(v)
}

fn log_all(recorded_in: &str) -> usize {
    let counts = take();
    for (table, operation, fields) in &counts {
        pgrx::log!("{}", line(table, operation, fields, recorded_in));
    }
    counts.len()
}

/// Record the counts: entries in the audit trail when the transaction can
/// write, else lines in the server log. Returns how many (table,
/// operation, role) counts it recorded.
pub(super) fn flush() -> usize {
    if !writable() {
        return log_all("server log (the transaction cannot write)");
    }
    let counts = take();
    // Every line is pending before the first entry is written: if any
    // write fails, or the transaction rolls back later, all of them reach
    // the server log.
    for (table, operation, fields) in &counts {
        pending_push(line(
            table,
            operation,
            fields,
            "server log (the transaction that recorded them rolled back)",
        ));
    }
    let _busy = Busy::enter();
    for (table, operation, fields) in &counts {
        let r = Doc::from_json(&fields.to_string()).and_then(|detail| {
            audit::write_entry(&NewEntry {
                operation,
                table_name: Some(table),
                pk: None,
                old_row: None,
                new_row: None,
                detail: Some(&detail),
                content_change: None,
            })
        });
        if let Err(e) = r {
            raise(e);
        }
    }
    counts.len()
}

/// When the session ends: record what is still counted, in a transaction
/// of its own when the session ends normally outside a transaction, else
/// in the server log. (An error here ends the backend with FATAL; the
/// transaction is then rolled back by PostgreSQL's own exit callback, which
/// sends the pending lines to the server log.)
#[pg_guard]
unsafe extern "C-unwind" fn at_exit(code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if COUNTED.with(|c| c.borrow().by.is_empty()) {
        return;
    }
    // SAFETY: backend globals and functions without side effects.
    let can_start = unsafe {
        code == 0
            && !pg_sys::IsTransactionOrTransactionBlock()
            && !pg_sys::RecoveryInProgress()
            && pg_sys::MyDatabaseId != pg_sys::InvalidOid
    };
    if !can_start {
        log_all("server log (the session ended)");
        return;
    }
    // SAFETY: no transaction is open (checked above); the snapshot is
    // pushed and popped inside it. An exiting backend cannot be cancelled:
    // it waits for a lock on the trail at most 10 s (then the error ends
    // it, and the counts reach the server log as the transaction aborts).
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::set_config_option(
            c"lock_timeout".as_ptr(),
            c"10s".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    flush();
    // SAFETY: as above.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
}

/// `aegis.flush_application_reads() → bigint`: record this session's
/// counted reads now; how many (table, operation, role) counts.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn flush_application_reads_impl() -> i64 {
    flush() as i64
}
