//! Writing entries: the statement's context, and the direct insert into
//! `aegis.audit_log` (heap and index, opened once per statement).

use super::*;

/// A role's name as the audit trail records it.
pub(crate) fn role_name(oid: pg_sys::Oid) -> String {
    user_name(oid).to_string()
}

/// The protected tables of this database and their partitions, cached until
/// the catalog changes; None when pg_aegis is not installed here.
pub(crate) fn read_targets() -> Option<Rc<HashMap<pg_sys::Oid, ReadTarget>>> {
    if let Some(t) = CACHE.with(|c| c.borrow().read_targets.clone()) {
        return Some(t);
    }
    // Every statement of every database asks: where pg_aegis is not
    // installed, answer with one syscache lookup (no error built).
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    if unsafe { pg_sys::get_namespace_oid(c"aegis".as_ptr(), true) } == pg_sys::InvalidOid {
        return None;
    }
    // Registers the invalidation callback; fails when not installed.
    audit_log_oids().ok()?;
    // ExecutorEnd of a portal runs after its snapshot was popped; loading
    // the catalog needs one (only here, not on every statement).
    // In a parallel worker no setting may change (not even search_path for
    // the duration of a query): the query names everything with its schema,
    // so it runs as it is there.
    let map = crate::spi::with_active_snapshot(|| {
        // SAFETY: a backend global, -1 outside parallel workers.
        if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
            as_extension_owner(load_read_targets)
        } else {
            // Loaded again after every catalog change: never worth JIT
            // compiling (which its estimate can trigger on a big catalog).
            crate::guc::with_settings(&[(c"jit", c"off")], || {
                with_safe_search_path(|| as_extension_owner(load_read_targets))
            })
        }
    });
    let map = Rc::new(map.ok()?);
    CACHE.with(|c| c.borrow_mut().read_targets = Some(map.clone()));
    Some(map)
}

/// The protected tables (and partitions) and whether reads of each are
/// audited, from the policy catalog (every name schema-qualified).
pub(super) fn load_read_targets() -> Result<HashMap<pg_sys::Oid, ReadTarget>, AegisError> {
    Spi::connect(|client| {
        let mut map = HashMap::new();
        for row in client
                    .select(
                        // Each protected table's flags and application
                        // roles once (not once per partition), then its
                        // partition tree.
                        "WITH p AS MATERIALIZED ( \
                             SELECT p.relid, \
                                    COALESCE((p.policy OPERATOR(pg_catalog.->>) 'audit_reads')::boolean, false) AS audit_reads, \
                                    COALESCE(p.policy OPERATOR(pg_catalog.->>) 'application_reads', 'statement') \
                                        OPERATOR(pg_catalog.=) 'aggregate' AS aggregate, \
                                    ARRAY(SELECT u.role FROM pg_catalog.pg_policy pol \
                                          CROSS JOIN LATERAL pg_catalog.unnest(pol.polroles) AS u(role) \
                                          WHERE pol.polrelid OPERATOR(pg_catalog.=) p.relid \
                                            AND pol.polname OPERATOR(pg_catalog.=) 'aegis_application' \
                                            AND pg_catalog.jsonb_typeof(p.policy OPERATOR(pg_catalog.->) 'application_roles') \
                                                OPERATOR(pg_catalog.=) 'array' \
                                            AND (p.policy OPERATOR(pg_catalog.->) 'application_roles') \
                                                OPERATOR(pg_catalog.?) pg_catalog.pg_get_userbyid(u.role)::pg_catalog.text) AS roles \
                             FROM aegis.protected_tables p) \
                         SELECT t.relid::pg_catalog.oid, pg_catalog.quote_ident(n.nspname) \
                                OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), \
                                p.audit_reads, p.aggregate, p.roles \
                         FROM p \
                         CROSS JOIN LATERAL (SELECT p.relid UNION \
                              SELECT pt.relid FROM pg_catalog.pg_partition_tree(p.relid) pt) t \
                         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid \
                         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?
                {
                    let relid: Option<pg_sys::Oid> = row.get(1).map_err(spi_error)?;
                    let table: Option<String> = row.get(2).map_err(spi_error)?;
                    let audit_reads: Option<bool> = row.get(3).map_err(spi_error)?;
                    let aggregate: Option<bool> = row.get(4).map_err(spi_error)?;
                    let roles: Option<Vec<Option<pg_sys::Oid>>> =
                        row.get(5).map_err(spi_error)?;
                    if let (Some(relid), Some(table)) = (relid, table) {
                        map.insert(
                            relid,
                            ReadTarget {
                                table,
                                audit_reads: audit_reads.unwrap_or(false),
                                aggregate_application_reads: aggregate.unwrap_or(false),
                                application_roles: roles
                                    .unwrap_or_default()
                                    .into_iter()
                                    .flatten()
                                    .collect(),
                            },
                        );
                    }
                }
        Ok::<_, AegisError>(map)
    })
}

pub(super) fn user_name(oid: pg_sys::Oid) -> Rc<str> {
    if let Some(n) = CACHE.with(|c| c.borrow().users.get(&oid).cloned()) {
        return n;
    }
    // SAFETY: noerr lookup; NULL for a dropped role.
    let name: Rc<str> = unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            Rc::from(format!("oid:{}", oid.to_u32()))
        } else {
            Rc::from(to_utf8(CStr::from_ptr(p).to_bytes()).as_ref())
        }
    };
    CACHE.with(|c| c.borrow_mut().users.insert(oid, name.clone()));
    name
}

pub(super) fn client_addr() -> Option<String> {
    if let Some(a) = CACHE.with(|c| c.borrow().client_addr.clone()) {
        return a;
    }
    // SAFETY: inet_client_addr() takes no arguments and returns NULL for
    // Unix-socket and background connections.
    let addr = unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(pg_sys::inet_client_addr, &[])
            .map(|d| output_text(pg_sys::Oid::from(pg_sys::F_INET_OUT), d))
    };
    CACHE.with(|c| c.borrow_mut().client_addr = Some(addr.clone()));
    addr
}

pub(super) fn application_name() -> Option<String> {
    // SAFETY: reads the GUC's C string (never freed while we read it).
    unsafe {
        let p = pg_sys::application_name;
        if p.is_null() || *p == 0 {
            None
        } else {
            Some(to_utf8(CStr::from_ptr(p).to_bytes()).into_owned())
        }
    }
}

/// What the caller supplies for an entry; the rest is the session's.
pub(crate) struct NewEntry<'a> {
    pub operation: &'a str,
    pub table_name: Option<&'a str>,
    pub pk: Option<&'a Doc>,
    pub old_row: Option<&'a Doc>,
    pub new_row: Option<&'a Doc>,
    pub detail: Option<&'a Doc>,
    /// A digest-mode statement's content change (`digest::Changes`, encoded).
    pub content_change: Option<&'a [u8]>,
}

pub(super) fn text_datum(s: &str) -> pg_sys::Datum {
    if server_is_utf8() {
        // SAFETY: copies `len` bytes into a palloc'd text.
        return unsafe {
            pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
                s.as_ptr().cast(),
                s.len() as i32,
            ))
        };
    }
    let c = to_server_cstring(s);
    // SAFETY: a NUL-terminated string; the text is palloc'd.
    unsafe { pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr())) }
}

pub(super) fn jsonb_datum(s: &str) -> pg_sys::Datum {
    let c = to_server_cstring(s);
    // SAFETY: jsonb_in takes one cstring; our images are valid JSON.
    unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(c.as_ptr()))],
        )
        .unwrap_or(pg_sys::Datum::from(0usize))
    }
}

pub(super) fn bytea_datum(b: &[u8]) -> pg_sys::Datum {
    pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(b).into_pg())
}

/// Append one entry to aegis.audit_log: hashed here, inserted into the heap
/// and its index directly.
pub(crate) fn write_entry(e: &NewEntry<'_>) -> Result<(), AegisError> {
    let (log_oid, seq) = audit_log_oids()?;
    // SAFETY: backend globals and a transaction that can write (callers run
    // in triggers and DDL); GetTopFullTransactionId assigns one if needed.
    let (user, session, xid, stmt, pid) = unsafe {
        (
            user_name(pg_sys::GetUserId()),
            user_name(pg_sys::GetSessionUserId()),
            pg_sys::GetTopFullTransactionId().value,
            pg_sys::GetCurrentStatementStartTimestamp(),
            pg_sys::MyProcPid,
        )
    };
    let app = application_name();
    let addr = client_addr();
    let entry = Entry {
        operation: e.operation,
        table_name: e.table_name,
        db_user: &user,
        session_user: &session,
        application_name: app.as_deref(),
        client_addr: addr.as_deref(),
        backend_pid: pid,
        xid: xid as i64,
        statement_time: stmt,
        pk: e.pk.map_or(Value::Null, Doc::value),
        old_row: e.old_row.map_or(Value::Null, Doc::value),
        new_row: e.new_row.map_or(Value::Null, Doc::value),
        detail: e.detail.map_or(Value::Null, Doc::value),
        content_change: e.content_change,
    };
    let (data_digest, entry_hash) = entry.hashes()?;
    // SAFETY: nextval_oid takes the sequence's OID; it checks USAGE, which
    // PUBLIC holds.
    let id = unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::nextval_oid,
            &[Some(pg_sys::Datum::from(seq))],
        )
        .ok_or_else(|| internal("nextval returned NULL"))?
    };
    let none = pg_sys::Datum::from(0usize);
    let opt = |v: Option<pg_sys::Datum>| (v.unwrap_or(none), v.is_none());
    let cols: [(pg_sys::Datum, bool); AUDIT_LOG_NATTS] = [
        (id, false),
        (pg_sys::Datum::from(xid), false),
        (text_datum(e.operation), false),
        opt(e.table_name.map(text_datum)),
        (text_datum(&user), false),
        (text_datum(&session), false),
        opt(app.as_deref().map(text_datum)),
        // SAFETY: inet_in parses the text inet_out produced.
        opt(addr.as_deref().map(|a| unsafe {
            let c = to_server_cstring(a);
            pgrx::fcinfo::direct_function_call_as_datum(
                pg_sys::inet_in,
                &[Some(pg_sys::Datum::from(c.as_ptr()))],
            )
            .unwrap_or(none)
        })),
        (pg_sys::Datum::from(pid), false),
        (pg_sys::Datum::from(stmt), false),
        opt(e.pk.map(|d| d.datum)),
        opt(e.old_row.map(|d| d.datum)),
        opt(e.new_row.map(|d| d.datum)),
        opt(e.detail.map(|d| d.datum)),
        (bytea_datum(&data_digest), false),
        (bytea_datum(&entry_hash), false),
        (none, true),
        opt(e.content_change.map(bytea_datum)),
    ];
    let mut values: Vec<pg_sys::Datum> = cols.iter().map(|c| c.0).collect();
    let mut nulls: Vec<bool> = cols.iter().map(|c| c.1).collect();
    let mut old_layout = false;
    let r = with_open_log(log_oid, |rel, indstate| {
        // SAFETY: the relation and its index state are open (see
        // with_open_log); the tuple matches its descriptor (the column count
        // was checked when it was opened: the layout has every column, or
        // all but content_change while an older update script runs, which
        // writes no digest-mode entries).
        unsafe {
            let natts = (*(*rel).rd_att).natts as usize;
            if natts < values.len() && e.content_change.is_some() {
                old_layout = true;
                return;
            }
            values.truncate(natts);
            nulls.truncate(natts);
            let tuple =
                pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            // The catalog insert helpers: heap insert, then each index of
            // the table (aegis.audit_log has one plain btree, no
            // expressions).
            pg_sys::CatalogTupleInsertWithInfo(rel, tuple, indstate);
            pg_sys::heap_freetuple(tuple);
        }
    });
    if old_layout {
        return Err(internal(
            "aegis.audit_log has no content_change column: finish ALTER EXTENSION pg_aegis UPDATE first",
        ));
    }
    r
}

/// aegis.audit_log, opened once per statement for all its entries (a bulk
/// statement writes one per row): held by the top transaction's resource
/// owner, so it outlives the trigger calls and subtransactions; closed when
/// the statement's resources are released (a portal's or subtransaction's
/// owner) and, at the latest, just before commit; forgotten on abort (the
/// resource owner releases it then). Not kept across statements, so a later
/// statement of the transaction does not find the table "in use".
pub(super) struct OpenLog {
    pub(super) oid: pg_sys::Oid,
    pub(super) rel: pg_sys::Relation,
    pub(super) indstate: pg_sys::CatalogIndexState,
}

thread_local! {
    pub(super) static OPEN_LOG: std::cell::Cell<Option<OpenLog>> = const { std::cell::Cell::new(None) };
    /// Set between pre-commit and the end of the transaction: entries
    /// written then (none are expected) open and close the log themselves.
    pub(super) static COMMITTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    pub(super) static XACT_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Restores the resource owner and memory context on every exit, errors
/// included.
pub(super) struct TopTransactionScope {
    pub(super) owner: pg_sys::ResourceOwner,
    pub(super) context: pg_sys::MemoryContext,
}

impl TopTransactionScope {
    /// # Safety
    /// Inside a transaction.
    pub(super) unsafe fn enter() -> Self {
        // SAFETY: per the contract both globals are valid.
        unsafe {
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
            let context = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
            TopTransactionScope { owner, context }
        }
    }
}

impl Drop for TopTransactionScope {
    fn drop(&mut self) {
        // SAFETY: puts back what enter() replaced.
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.context);
            pg_sys::CurrentResourceOwner = self.owner;
        }
    }
}

pub(super) unsafe fn open_log(oid: pg_sys::Oid) -> Result<OpenLog, AegisError> {
    // SAFETY: opens with the lock an insert takes; closes again if the
    // layout is not ours.
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        // The layout before 0.7.0 (no content_change) while an update
        // script of an older version runs with this library.
        let natts = (*(*rel).rd_att).natts as usize;
        if natts != AUDIT_LOG_NATTS && natts != AUDIT_LOG_NATTS - 1 {
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return Err(internal("aegis.audit_log has an unexpected layout"));
        }
        let indstate = pg_sys::CatalogOpenIndexes(rel);
        // The catalog insert helpers maintain plain indexes only: an
        // expression or partial index (a superuser could add one) would be
        // corrupted or crash the backend, so refuse to write instead.
        let n = (*indstate).ri_NumIndices as usize;
        let plain = (0..n).all(|i| {
            let ii = *(*indstate).ri_IndexRelationInfo.add(i);
            (*ii).ii_Expressions.is_null()
                && (*ii).ii_Predicate.is_null()
                && (*ii).ii_ExclusionOps.is_null()
        });
        if !plain {
            pg_sys::CatalogCloseIndexes(indstate);
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return Err(AegisError::LogIndex);
        }
        Ok(OpenLog { oid, rel, indstate })
    }
}

pub(super) unsafe fn close_log(l: OpenLog) {
    // SAFETY: closes what open_log opened (the lock stays to commit).
    unsafe {
        pg_sys::CatalogCloseIndexes(l.indstate);
        pg_sys::table_close(l.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent as X;
    match event {
        X::XACT_EVENT_PRE_COMMIT
        | X::XACT_EVENT_PARALLEL_PRE_COMMIT
        | X::XACT_EVENT_PRE_PREPARE => {
            COMMITTING.set(true);
            if let Some(l) = OPEN_LOG.take() {
                // SAFETY: closed under the owner it was opened with.
                unsafe {
                    let _scope = TopTransactionScope::enter();
                    close_log(l);
                }
            }
        }
        X::XACT_EVENT_COMMIT
        | X::XACT_EVENT_PARALLEL_COMMIT
        | X::XACT_EVENT_PREPARE
        | X::XACT_EVENT_ABORT
        | X::XACT_EVENT_PARALLEL_ABORT => {
            // On abort the resource owner has released (or will release)
            // the relation: only forget it.
            OPEN_LOG.set(None);
            COMMITTING.set(false);
        }
        _ => {}
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn on_resource_release(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if is_commit
        && !is_top_level
        && phase == pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_BEFORE_LOCKS
    {
        if let Some(l) = OPEN_LOG.take() {
            // SAFETY: closed under the owner it was opened with.
            unsafe {
                let _scope = TopTransactionScope::enter();
                close_log(l);
            }
        }
    }
}

/// Run `f` with aegis.audit_log and its index state open.
pub(super) fn with_open_log(
    oid: pg_sys::Oid,
    f: impl FnOnce(pg_sys::Relation, pg_sys::CatalogIndexState),
) -> Result<(), AegisError> {
    if COMMITTING.get() {
        // SAFETY: a plain open/insert/close under the current owner.
        let l = unsafe { open_log(oid) }?;
        f(l.rel, l.indstate);
        unsafe { close_log(l) };
        return Ok(());
    }
    if !XACT_CALLBACK.get() {
        // SAFETY: registers functions for the life of the backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
            pg_sys::RegisterResourceReleaseCallback(
                Some(on_resource_release),
                std::ptr::null_mut(),
            );
        }
        XACT_CALLBACK.set(true);
    }
    let l = match OPEN_LOG.take() {
        Some(l) if l.oid == oid => l,
        other => {
            // SAFETY: in a transaction (we are writing an entry); opened
            // under the top transaction's owner and memory, so it outlives
            // this statement and subtransactions.
            unsafe {
                let _scope = TopTransactionScope::enter();
                if let Some(stale) = other {
                    close_log(stale);
                }
                open_log(oid)?
            }
        }
    };
    let (rel, indstate) = (l.rel, l.indstate);
    OPEN_LOG.set(Some(l));
    f(rel, indstate);
    Ok(())
}
