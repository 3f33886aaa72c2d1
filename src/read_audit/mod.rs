//! Read auditing: executor and utility hooks (installed when the library is
//! preloaded) that record each SELECT and COPY TO reading a protected table,
//! and log each permission-denied attempt on one. The hooks themselves are C
//! trampolines (src/read_audit_hooks.c) so errors of the statements they
//! wrap reach the client untouched; they call the functions below before or
//! after the standard executor.
//!
//! A read is recorded in `aegis.audit_log` (operation SELECT or COPY, one
//! entry per protected table, detail `{"rows": n, "query_id": id}`) when the
//! transaction can write; otherwise (read-only transaction, hot standby) it
//! goes to the server log as one JSON line. Denied attempts always go to the
//! server log, written before the error, so they survive its rollback. An
//! application's own reads of a table that asks for it are counted and
//! recorded per interval instead ([`aggregate`]).

mod aggregate;

use crate::audit::{self, Doc, NewEntry, ReadTarget};
use crate::error::raise;
use crate::guc;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// Set while pg_aegis itself runs queries (loading its catalog, writing
    /// an entry): those are never audited.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// Set when the executor recorded the query of a COPY TO, so the COPY
    /// statement itself is not recorded twice.
    static COPY_RECORDED: Cell<bool> = const { Cell::new(false) };
    /// The statement aegis.run_restricted() is running (a retention or
    /// erasure step) and the table it acts on: its reads of that table are
    /// not reads anyone asked for, and are already recorded as the run's
    /// RETENTION or ERASURE entry. Only that statement's reads of that
    /// table are skipped: what it sets off (an owner's trigger, or a rule's
    /// action, which shares the statement's text, reading another table)
    /// is recorded as usual.
    static MAINTENANCE: std::cell::RefCell<Option<(String, pg_sys::Oid)>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with `sql` marked as pg_aegis's own maintenance statement on
/// `target`.
pub(crate) fn as_maintenance<R>(sql: &str, target: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    // Restored on the way out, also when an ERROR unwinds through here.
    struct Restore(Option<(String, pg_sys::Oid)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take();
            MAINTENANCE.with(|m| *m.borrow_mut() = saved);
        }
    }
    let _restore = Restore(MAINTENANCE.with(|m| m.replace(Some((sql.to_string(), target)))));
    f()
}

/// The reads of `read` left to record once pg_aegis's own maintenance
/// statement is accounted for: the statement itself (its text, and the
/// query that sets its tag: a rule's actions share the text but not the
/// tag, unless one replaces it, and then it is recorded unless it reads
/// only the target) does not record reading the table it acts on.
unsafe fn without_maintenance(
    qd: *mut pg_sys::QueryDesc,
    targets: &HashMap<pg_sys::Oid, ReadTarget>,
    mut read: Vec<String>,
) -> Vec<String> {
    // SAFETY: sourceText is a NUL-terminated string or NULL; the plan is
    // valid.
    let (text, can_set_tag) = unsafe { ((*qd).sourceText, (*(*qd).plannedstmt).canSetTag) };
    if text.is_null() || !can_set_tag || read.is_empty() {
        return read;
    }
    let target = MAINTENANCE.with(|m| {
        m.borrow().as_ref().and_then(|(sql, target)| {
            // SAFETY: as above.
            (unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes() == sql.as_bytes())
                .then_some(*target)
        })
    });
    if let Some(t) = target.and_then(|t| targets.get(&t)) {
        read.retain(|r| *r != t.table);
    }
    read
}

unsafe extern "C" {
    fn aegis_install_read_audit_hooks();
}

/// Install the hooks (from `_PG_init`, only while preloading).
pub fn install() {
    // SAFETY: _PG_init runs once per process before any query; the C side
    // keeps and calls the previous hooks.
    unsafe { aegis_install_read_audit_hooks() };
}

struct Busy(bool);

impl Busy {
    fn enter() -> Self {
        Busy(BUSY.replace(true))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.set(self.0);
    }
}

/// Are we a parallel worker? (The leader records the statements it runs; a
/// worker can neither write nor assign a transaction id.)
fn in_worker() -> bool {
    // SAFETY: a backend global, -1 outside parallel workers.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

thread_local! {
    /// In a parallel worker: how many executors are running. The first is
    /// the leader's plan fragment (the leader records that statement);
    /// any other is a statement a function started inside the worker, which
    /// no one else sees.
    static WORKER_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The protected tables (and partitions) in this database; None when
/// pg_aegis is not installed here or inside our own queries.
fn targets() -> Option<Rc<HashMap<pg_sys::Oid, ReadTarget>>> {
    if BUSY.get() {
        return None;
    }
    let _busy = Busy::enter();
    // SAFETY: a transaction is in progress (the executor or utility runs).
    if !unsafe { pg_sys::IsTransactionState() } {
        return None;
    }
    audit::read_targets().filter(|t| !t.is_empty())
}

/// Does the statement read the rows of this range table entry? Exactly
/// when it needs SELECT on it: any SELECT, a WHERE or RETURNING of UPDATE
/// and DELETE, the source of INSERT … SELECT, MERGE, CREATE TABLE AS,
/// COPY (query) TO, a cursor. (Inheritance children and partitions the
/// planner adds need nothing: their parent's entry speaks for them.)
#[cfg(feature = "pg15")]
unsafe fn reads_rows(_stmt: *mut pg_sys::PlannedStmt, rte: *mut pg_sys::RangeTblEntry) -> bool {
    // SAFETY: a valid range table entry.
    unsafe { (*rte).requiredPerms & pg_sys::ACL_SELECT as pg_sys::AclMode != 0 }
}

#[cfg(not(feature = "pg15"))]
unsafe fn reads_rows(stmt: *mut pg_sys::PlannedStmt, rte: *mut pg_sys::RangeTblEntry) -> bool {
    // SAFETY: perminfoindex is 1-based into the plan's permInfos (0: none).
    unsafe {
        let i = (*rte).perminfoindex as usize;
        if i == 0 {
            return false;
        }
        let infos = PgList::<pg_sys::RTEPermissionInfo>::from_pg((*stmt).permInfos);
        infos
            .get_ptr(i - 1)
            .is_some_and(|p| (*p).requiredPerms & pg_sys::ACL_SELECT as pg_sys::AclMode != 0)
    }
}

/// Protected tables whose rows a statement reads: (table, audited).
unsafe fn protected_in(
    stmt: *mut pg_sys::PlannedStmt,
    targets: &HashMap<pg_sys::Oid, ReadTarget>,
    only_reads: bool,
) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    // SAFETY: a plan's range table is a List of RangeTblEntry.
    let list = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable) };
    for rte in list.iter_ptr() {
        // SAFETY: entries of a valid range table.
        let (kind, relid) = unsafe { ((*rte).rtekind, (*rte).relid) };
        if kind != pg_sys::RTEKind::RTE_RELATION {
            continue;
        }
        // SAFETY: as above.
        if only_reads && !unsafe { reads_rows(stmt, rte) } {
            continue;
        }
        if let Some(t) = targets.get(&relid) {
            let audited = t.audit_reads || guc::audit_reads();
            match out.iter_mut().find(|(n, _)| *n == t.table) {
                Some(e) => e.1 |= audited,
                None => out.push((t.table.clone(), audited)),
            }
        }
    }
    out
}

/// MERGE into a protected partitioned table is refused: a row its UPDATE
/// action moves to another partition reaches neither the UPDATE transition
/// tables nor the INSERT and DELETE ones whose triggers fire (PostgreSQL
/// fires statement triggers only for the actions the MERGE names), so the
/// capture triggers would never see it. INSERT ... ON CONFLICT and UPDATE
/// do the same work and are captured.
///
/// # Safety
/// `stmt` must be a valid planned MERGE statement.
unsafe fn refuse_partitioned_merge(
    stmt: *mut pg_sys::PlannedStmt,
    targets: &HashMap<pg_sys::Oid, ReadTarget>,
) {
    // SAFETY: a plan's range table is a List of RangeTblEntry.
    let list = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable) };
    for rte in list.iter_ptr() {
        // SAFETY: entries of a valid range table.
        let (kind, relid, relkind, lockmode) = unsafe {
            (
                (*rte).rtekind,
                (*rte).relid,
                (*rte).relkind,
                (*rte).rellockmode,
            )
        };
        if kind != pg_sys::RTEKind::RTE_RELATION
            || relkind != pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char
            || lockmode < pg_sys::RowExclusiveLock as i32
        {
            continue;
        }
        if let Some(t) = targets.get(&relid) {
            crate::error::raise(crate::error::AegisError::PartitionedMerge {
                table: t.table.clone(),
            });
        }
    }
}

/// Foreign-key checks are not reads anyone asked for. They are identified
/// by what they are: the referential-integrity code runs its queries
/// (`SELECT 1 FROM [ONLY] <table> x WHERE … FOR KEY SHARE OF x`) as the
/// owner of the table it queries, with the security-context flag
/// SECURITY_NOFORCE_RLS, which no SQL can set. pg_aegis's own maintenance
/// (aegis.run_restricted) sets that flag too, and code a table owner runs
/// inside it inherits it: so a statement counts as a foreign-key check only
/// if it also has that shape and reads only tables the current user owns.
/// A user's own FOR KEY SHARE query is recorded.
unsafe fn is_ri_check(qd: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: a valid query descriptor; rowMarks is a List of PlanRowMark,
    // rtable a List of RangeTblEntry; sourceText NUL-terminated or NULL.
    unsafe {
        if !pg_sys::InNoForceRLSOperation() || (*qd).operation != pg_sys::CmdType::CMD_SELECT {
            return false;
        }
        let stmt = (*qd).plannedstmt;
        let marks = PgList::<pg_sys::PlanRowMark>::from_pg((*stmt).rowMarks);
        if marks.is_empty()
            || !marks
                .iter_ptr()
                .all(|m| (*m).strength == pg_sys::LockClauseStrength::LCS_FORKEYSHARE)
        {
            return false;
        }
        let text = (*qd).sourceText;
        if text.is_null()
            || !std::ffi::CStr::from_ptr(text)
                .to_bytes()
                .starts_with(b"SELECT 1 FROM ")
        {
            return false;
        }
        let user = pg_sys::GetUserId();
        PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable)
            .iter_ptr()
            .filter(|r| (**r).rtekind == pg_sys::RTEKind::RTE_RELATION)
            .all(|r| owns(user, (*r).relid))
    }
}

/// Does `role` own the relation (or belong to its owning role)?
#[cfg(feature = "pg15")]
unsafe fn owns(role: pg_sys::Oid, relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by OID.
    unsafe { pg_sys::pg_class_ownercheck(relid, role) }
}

#[cfg(not(feature = "pg15"))]
unsafe fn owns(role: pg_sys::Oid, relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by OID.
    unsafe { pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, role) }
}

fn json_line(fields: serde_json::Value) -> String {
    let mut v = fields;
    // SAFETY: backend globals.
    let (user, session, pid) = unsafe {
        (
            pg_sys::GetUserId(),
            pg_sys::GetSessionUserId(),
            pg_sys::MyProcPid,
        )
    };
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("user".into(), audit::role_name(user).into());
        m.insert("session_user".into(), audit::role_name(session).into());
        m.insert("backend_pid".into(), pid.into());
    }
    format!("pg_aegis: {v}")
}

/// Can this transaction write an entry? (Not on a hot standby, in a
/// read-only transaction or in parallel mode.)
fn writable() -> bool {
    // SAFETY: backend globals and functions without side effects.
    unsafe { !pg_sys::RecoveryInProgress() && !pg_sys::XactReadOnly && !pg_sys::IsInParallelMode() }
}

/// Record a read of `tables`.
/// `command`: the statement's own command when it is not a SELECT (an
/// INSERT … SELECT, UPDATE … FROM, DELETE … RETURNING, MERGE that read them).
fn record(operation: &str, command: Option<&str>, tables: &[String], rows: u64, query_id: u64) {
    if tables.is_empty() {
        return;
    }
    let query_id = (query_id != 0).then_some(query_id as i64);
    let writable = writable();
    let line = |recorded_in: &str| {
        json_line(serde_json::json!({
            "event": "read", "operation": operation, "command": command, "tables": tables,
            "rows": rows, "query_id": query_id, "recorded_in": recorded_in,
        }))
    };
    if !writable {
        pgrx::log!("{}", line("server log (the transaction cannot write)"));
        return;
    }
    // The entries roll back with the transaction; if it (or the
    // subtransaction that read) aborts, the read goes to the server log
    // then, so a rollback cannot hide it.
    pending_push(line("server log (the transaction that read rolled back)"));
    let _busy = Busy::enter();
    let mut detail = serde_json::json!({ "rows": rows, "query_id": query_id });
    if let Some(c) = command {
        detail["command"] = c.into();
    }
    let detail = detail.to_string();
    let r = Doc::from_json(&detail).and_then(|detail| {
        for t in tables {
            audit::write_entry(&NewEntry {
                operation,
                table_name: Some(t),
                pk: None,
                old_row: None,
                new_row: None,
                detail: Some(&detail),
                content_change: None,
            })?;
        }
        Ok(())
    });
    if let Err(e) = r {
        raise(e);
    }
}

thread_local! {
    /// Log lines of reads recorded as entries in the current transaction,
    /// with the subtransaction that read; emitted if it aborts.
    static PENDING: std::cell::RefCell<Vec<(pg_sys::SubTransactionId, usize, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
}

fn pending_push(line: String) {
    pending_push_keyed(0, line);
}

/// A pending line that a later step may withdraw (`key`: the statement's
/// query descriptor).
fn pending_push_keyed(key: usize, line: String) {
    if !CALLBACKS.replace(true) {
        // SAFETY: registers functions for the life of the backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
        }
    }
    // SAFETY: a backend function without side effects.
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| p.borrow_mut().push((sub, key, line)));
}

fn pending_withdraw(key: usize) {
    PENDING.with(|p| p.borrow_mut().retain(|(_, k, _)| *k != key));
}

fn emit(lines: Vec<(pg_sys::SubTransactionId, usize, String)>) {
    for (_, _, l) in lines {
        pgrx::log!("{l}");
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent as X;
    match event {
        X::XACT_EVENT_ABORT | X::XACT_EVENT_PARALLEL_ABORT => {
            emit(PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())));
        }
        X::XACT_EVENT_COMMIT | X::XACT_EVENT_PARALLEL_COMMIT => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        // A prepared transaction may still be rolled back, by anyone, later
        // (ROLLBACK PREPARED): its reads go to the server log now, whatever
        // becomes of its entries.
        X::XACT_EVENT_PREPARE => {
            emit(PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())));
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent as S;
    match event {
        S::SUBXACT_EVENT_ABORT_SUB => {
            let aborted = PENDING.with(|p| {
                let mut p = p.borrow_mut();
                let (gone, kept): (Vec<_>, Vec<_>) =
                    p.drain(..).partition(|(s, _, _)| *s == my_subid);
                *p = kept;
                gone
            });
            emit(aborted);
        }
        S::SUBXACT_EVENT_COMMIT_SUB => PENDING.with(|p| {
            for e in p.borrow_mut().iter_mut().filter(|(s, _, _)| *s == my_subid) {
                e.0 = parent_subid;
            }
        }),
        _ => {}
    }
}

fn query_id_of(stmt: *mut pg_sys::PlannedStmt) -> Option<i64> {
    // SAFETY: a valid planned statement.
    let id = unsafe { crate::compat::query_id(stmt) };
    (id != 0).then_some(id as i64)
}

/// A statement a function started inside a parallel worker that reads an
/// audited table: the leader never sees it and a worker cannot write an
/// entry, so it goes to the server log, at once.
unsafe fn worker_read(qd: *mut pg_sys::QueryDesc) {
    let Some(targets) = targets() else {
        return;
    };
    // SAFETY: a valid query descriptor.
    let read: Vec<String> = unsafe { protected_in((*qd).plannedstmt, &targets, true) }
        .into_iter()
        .filter(|(_, audited)| *audited)
        .map(|(t, _)| t)
        .collect();
    if read.is_empty() {
        return;
    }
    pgrx::log!(
        "{}",
        json_line(serde_json::json!({
            "event": "read", "operation": "SELECT", "tables": read, "rows": null,
            // SAFETY: as above.
            "query_id": query_id_of(unsafe { (*qd).plannedstmt }),
            "recorded_in": "server log (run inside a parallel worker)",
        }))
    );
}

/// Before ExecutorStart: log a permission-denied attempt on a protected
/// table before the standard check raises the error, so the attempt is on
/// record whatever happens to the transaction.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_read_audit_before_start(
    qd: *mut pg_sys::QueryDesc,
    eflags: i32,
) {
    if in_worker() {
        let depth = WORKER_DEPTH.get();
        WORKER_DEPTH.set(depth + 1);
        if depth > 0 && eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 == 0 {
            // SAFETY: a valid query descriptor.
            unsafe { worker_read(qd) };
        }
        return;
    }
    let Some(targets) = targets() else {
        return;
    };
    // SAFETY: a valid query descriptor with its plan.
    unsafe {
        if (*qd).operation == pg_sys::CmdType::CMD_MERGE {
            refuse_partitioned_merge((*qd).plannedstmt, &targets);
        }
        let touched = protected_in((*qd).plannedstmt, &targets, false);
        // A read that never reaches ExecutorEnd (its transaction or
        // savepoint rolls back first, as a cursor's can) goes to the server
        // log then; ExecutorEnd withdraws this and records the read.
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 == 0 && !is_ri_check(qd) {
            let read: Vec<String> = protected_in((*qd).plannedstmt, &targets, true)
                .into_iter()
                .filter(|(_, audited)| *audited)
                .map(|(t, _)| t)
                .collect();
            let read = without_maintenance(qd, &targets, read);
            if !read.is_empty() {
                pending_push_keyed(
                    qd as usize,
                    json_line(serde_json::json!({
                        "event": "read", "operation": "SELECT", "tables": read, "rows": null,
                        "query_id": query_id_of((*qd).plannedstmt),
                        "recorded_in": "server log (the statement's transaction or savepoint rolled back before it ended)",
                    })),
                );
            }
        }
        if !touched.is_empty() && !crate::compat::statement_permitted((*qd).plannedstmt) {
            let tables: Vec<&String> = touched.iter().map(|(t, _)| t).collect();
            crate::alerts::count_denied_access();
            pgrx::log!(
                "{}",
                json_line(serde_json::json!({
                    "event": "access_denied", "tables": tables,
                    "query_id": query_id_of((*qd).plannedstmt),
                }))
            );
        }
    }
}

/// Before ExecutorEnd: record a statement that read protected tables' rows
/// (a SELECT, the query of a COPY TO, or any other statement that reads
/// them, see [`reads_rows`]), with the rows it processed.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_read_audit_before_end(qd: *mut pg_sys::QueryDesc) {
    if in_worker() {
        WORKER_DEPTH.set(WORKER_DEPTH.get().saturating_sub(1));
        return;
    }
    // SAFETY: a valid query descriptor that has run (its estate is live
    // until the standard ExecutorEnd).
    unsafe {
        if (*qd).estate.is_null()
            || (*(*qd).estate).es_top_eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0
        {
            return;
        }
        let Some(targets) = targets() else {
            return;
        };
        pending_withdraw(qd as usize);
        let stmt = (*qd).plannedstmt;
        let read: Vec<String> = protected_in(stmt, &targets, true)
            .into_iter()
            .filter(|(_, audited)| *audited)
            .map(|(t, _)| t)
            .collect();
        let mut read = without_maintenance(qd, &targets, read);
        if read.is_empty() || is_ri_check(qd) {
            return;
        }
        let copy =
            !(*qd).dest.is_null() && (*(*qd).dest).mydest == pg_sys::CommandDest::DestCopyOut;
        if copy {
            COPY_RECORDED.set(true);
        }
        use pg_sys::CmdType as C;
        let command = match (*qd).operation {
            C::CMD_INSERT => Some("INSERT"),
            C::CMD_UPDATE => Some("UPDATE"),
            C::CMD_DELETE => Some("DELETE"),
            C::CMD_MERGE => Some("MERGE"),
            _ => None,
        };
        let operation = if copy { "COPY" } else { "SELECT" };
        let rows = (*(*qd).estate).es_processed;
        // An application role's pure reads of a table that counts them,
        // and an UPDATE's, DELETE's or MERGE's reads of the table it
        // changes; a statement that writes what it read into another
        // relation (INSERT ... SELECT, UPDATE ... FROM, CREATE TABLE AS, a
        // materialized view, SELECT INTO) is recorded on its own.
        let into = !(*qd).dest.is_null()
            && matches!(
                (*(*qd).dest).mydest,
                pg_sys::CommandDest::DestIntoRel | pg_sys::CommandDest::DestTransientRel
            );
        let countable: Vec<String> = if command.is_none() && !into {
            read.clone()
        } else if matches!(command, Some("UPDATE" | "DELETE" | "MERGE")) {
            result_tables(stmt, &targets)
        } else {
            Vec::new()
        };
        if !countable.is_empty() {
            let mut candidates: Vec<String> = read
                .iter()
                .filter(|t| countable.contains(t))
                .cloned()
                .collect();
            let counted = counted_tables(&targets, &mut candidates);
            read.retain(|t| !counted.contains(t));
            aggregate::count(operation, &counted, rows);
        }
        record(
            operation,
            command,
            &read,
            rows,
            crate::compat::query_id(stmt),
        );
    }
}

/// The protected tables a statement changes (its result relations).
unsafe fn result_tables(
    stmt: *mut pg_sys::PlannedStmt,
    targets: &HashMap<pg_sys::Oid, ReadTarget>,
) -> Vec<String> {
    // SAFETY: a plan's resultRelations is an integer List of 1-based
    // indexes into its range table.
    unsafe {
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable);
        let results = (*stmt).resultRelations;
        if results.is_null() {
            return Vec::new();
        }
        (0..(*results).length.max(0) as usize)
            .filter_map(|i| {
                let index = (*(*results).elements.add(i)).int_value as usize;
                let rte = rtable.get_ptr(index.checked_sub(1)?)?;
                targets.get(&(*rte).relid).map(|t| t.table.clone())
            })
            .collect()
    }
}

/// Take out of `read` the tables whose reads this session counts (see
/// [`aggregate`]), and return them.
fn counted_tables(
    targets: &HashMap<pg_sys::Oid, ReadTarget>,
    read: &mut Vec<String>,
) -> Vec<String> {
    let mut counted = Vec::new();
    read.retain(|table| {
        let counts = targets
            .values()
            .find(|t| t.table == *table)
            .is_some_and(aggregate::applies);
        if counts {
            counted.push(table.clone());
        }
        !counts
    });
    counted
}

/// Before a COPY TO runs. A COPY of a protected table that the caller may
/// not read is refused by COPY itself, before any executor hook: the
/// attempt is logged and counted here, as a denied read is.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_read_audit_copy_begin(pstmt: *mut pg_sys::PlannedStmt) {
    COPY_RECORDED.set(false);
    let Some(targets) = targets() else {
        return;
    };
    // SAFETY: a CopyStmt (the C side checked); its relation is a RangeVar
    // when it names a table, its attlist a list of String nodes.
    unsafe {
        let copy = (*pstmt).utilityStmt.cast::<pg_sys::CopyStmt>();
        if (*copy).relation.is_null() {
            return;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*copy).relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        let Some(t) = targets.get(&relid) else {
            return;
        };
        let user = pg_sys::GetUserId();
        let select = pg_sys::ACL_SELECT as pg_sys::AclMode;
        let ok = pg_sys::AclResult::ACLCHECK_OK;
        let permitted = pg_sys::pg_class_aclcheck(relid, user, select) == ok
            || if (*copy).attlist.is_null() {
                pg_sys::pg_attribute_aclcheck_all(
                    relid,
                    user,
                    select,
                    pg_sys::AclMaskHow::ACLMASK_ALL,
                ) == ok
            } else {
                let list = (*copy).attlist;
                (0..(*list).length.max(0) as usize).all(|i| {
                    // A column name: a String node.
                    let node = (*(*list).elements.add(i))
                        .ptr_value
                        .cast::<pg_sys::String>();
                    let attnum = pg_sys::get_attnum(relid, (*node).sval);
                    // A column that does not exist, or a system column:
                    // COPY refuses it for that reason, not a privilege.
                    attnum <= 0 || pg_sys::pg_attribute_aclcheck(relid, attnum, user, select) == ok
                })
            };
        if !permitted {
            crate::alerts::count_denied_access();
            pgrx::log!(
                "{}",
                json_line(serde_json::json!({
                    "event": "access_denied", "tables": [t.table], "operation": "COPY",
                    "query_id": query_id_of(pstmt),
                }))
            );
        }
    }
}

/// After a COPY TO succeeded: a COPY that read a table directly (no
/// row-level security applies to the caller, e.g. a superuser) did not go
/// through the executor; record it here.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_read_audit_copy_done(
    pstmt: *mut pg_sys::PlannedStmt,
    qc: *mut pg_sys::QueryCompletion,
) {
    if COPY_RECORDED.replace(false) {
        return;
    }
    let Some(targets) = targets() else {
        return;
    };
    // SAFETY: a CopyStmt (the C side checked); its relation is a RangeVar
    // when it names a table.
    unsafe {
        let copy = (*pstmt).utilityStmt.cast::<pg_sys::CopyStmt>();
        if (*copy).relation.is_null() {
            return;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*copy).relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        let Some(t) = targets.get(&relid) else {
            return;
        };
        if !(t.audit_reads || guc::audit_reads()) {
            return;
        }
        let rows = if qc.is_null() { 0 } else { (*qc).nprocessed };
        if aggregate::applies(t) {
            aggregate::count("COPY", std::slice::from_ref(&t.table), rows);
            return;
        }
        record(
            "COPY",
            None,
            std::slice::from_ref(&t.table),
            rows,
            crate::compat::query_id(pstmt),
        );
    }
}
