//! Statement-level capture over transition tables (both modes), and digest
//! mode (`"audit_inserts": "digest"`): the O(1) baseline and
//! `verify_table()` against the content digest. The digest itself is
//! `aegis_core::audit::digest`.
//!
//! Image mode: a statement's rows' classified images, in chunk entries
//! (`chunk`). Digest mode: an INSERT statement becomes one entry: its
//! context, its row count and the change it made to the table's content
//! digest (per bucket), no row image. UPDATE and DELETE statements get the
//! same statement entry and, unless the policy says `"audit_images":
//! "none"`, their rows' images as in image mode. The content the trail expects is the sum of the
//! statement entries since the baseline; `verify_table()` scans the table
//! once and compares, bucket by bucket.

use super::chunk::ImageChunks;
use super::*;
use aegis_core::audit::digest::{self as core_digest, Changes, RowEncoder};

/// The digest encoding of one row (columns in the plan's order).
///
/// # Safety
/// `values`/`nulls` must be a deformed row of the relation `plan` is for.
pub(super) unsafe fn encode_row(
    plan: &RelPlan,
    values: &[pg_sys::Datum],
    nulls: &[bool],
    enc: &mut RowEncoder,
) -> Result<(), AegisError> {
    enc.clear();
    for col in &plan.columns {
        // NULLs are left out: a column added without a default (NULL in
        // every row) leaves every row's digest as it was.
        if nulls[col.index] {
            continue;
        }
        // SAFETY: a non-null datum of this column.
        unsafe { with_cell(col, values[col.index], |cell| enc.push(&col.name, cell)) }?;
    }
    Ok(())
}

/// The bucket a row falls in.
pub(super) fn bucket_of(plan: &DigestPlan, values: &[pg_sys::Datum], nulls: &[bool]) -> i64 {
    let Some((index, render, width)) = plan.bucket else {
        return core_digest::WHOLE_TABLE;
    };
    let v = (!nulls[index]).then(|| {
        let d = values[index];
        match render {
            Render::Int2 => i64::from(d.value() as i16),
            Render::Int4 => i64::from(d.value() as i32),
            Render::Date => i64::from(d.value() as i32),
            _ => d.value() as i64,
        }
    });
    core_digest::bucket_of(v, width)
}

/// Switches to a short-lived memory context for one row at a time; back to
/// the caller's on drop (errors included).
struct RowContext {
    context: pg_sys::MemoryContext,
    caller: pg_sys::MemoryContext,
    /// Rows since the last reset: most rows allocate nothing, so the
    /// context is reset every RESET_EVERY rows, not after each.
    rows: std::cell::Cell<u32>,
}

const RESET_EVERY: u32 = 256;

impl RowContext {
    fn new() -> Self {
        // SAFETY: a child of the current context (freed with it on error).
        unsafe {
            let caller = pg_sys::CurrentMemoryContext;
            let context = pg_sys::AllocSetContextCreateInternal(
                caller,
                c"pg_aegis row digest".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            );
            RowContext {
                context,
                caller,
                rows: std::cell::Cell::new(0),
            }
        }
    }

    /// Run `f` in the row context; what it allocated is freed within the
    /// next RESET_EVERY rows.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: both contexts are alive; the reset frees only row data.
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.context);
            let r = f();
            pg_sys::MemoryContextSwitchTo(self.caller);
            let n = self.rows.get() + 1;
            if n >= RESET_EVERY {
                pg_sys::MemoryContextReset(self.context);
                self.rows.set(0);
            } else {
                self.rows.set(n);
            }
            r
        }
    }
}

impl Drop for RowContext {
    fn drop(&mut self) {
        // SAFETY: back to the caller's context; ours is freed with it.
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.caller);
        }
    }
}

/// A reader of a transition table with its own read pointer (other
/// triggers reading the same table are not disturbed).
struct TransitionReader {
    store: *mut pg_sys::Tuplestorestate,
    pointer: i32,
    slot: *mut pg_sys::TupleTableSlot,
    natts: i32,
    /// Where tuples read back from a spilled store are allocated: the
    /// slot frees each one when it takes the next, so they must not live
    /// in the per-row context that is reset after every row.
    context: pg_sys::MemoryContext,
}

impl TransitionReader {
    /// # Safety
    /// `store` is a transition table of a trigger on a relation described
    /// by `tupdesc`, valid for the call.
    unsafe fn new(store: *mut pg_sys::Tuplestorestate, tupdesc: pg_sys::TupleDesc) -> Self {
        // SAFETY: per the contract.
        unsafe {
            let pointer =
                pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
            pg_sys::tuplestore_select_read_pointer(store, pointer);
            pg_sys::tuplestore_rescan(store);
            pg_sys::tuplestore_select_read_pointer(store, 0);
            TransitionReader {
                store,
                pointer,
                slot: pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple),
                natts: (*tupdesc).natts,
                context: pg_sys::CurrentMemoryContext,
            }
        }
    }

    /// The next row, deformed (values valid until the next call).
    fn next(&mut self) -> Option<(&[pg_sys::Datum], &[bool])> {
        // SAFETY: our own read pointer, selected around the fetch; the slot
        // matches the store's rows.
        unsafe {
            let caller = pg_sys::MemoryContextSwitchTo(self.context);
            pg_sys::tuplestore_select_read_pointer(self.store, self.pointer);
            let got = pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot);
            pg_sys::tuplestore_select_read_pointer(self.store, 0);
            if got && ((*self.slot).tts_nvalid as i32) < self.natts {
                pg_sys::slot_getsomeattrs_int(self.slot, self.natts);
            }
            pg_sys::MemoryContextSwitchTo(caller);
            if !got {
                return None;
            }
            let n = self.natts as usize;
            Some((
                std::slice::from_raw_parts((*self.slot).tts_values, n),
                std::slice::from_raw_parts((*self.slot).tts_isnull, n),
            ))
        }
    }
}

impl Drop for TransitionReader {
    fn drop(&mut self) {
        // SAFETY: the slot was made by new().
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
    }
}

thread_local! {
    /// Set while pg_aegis's own lifecycle statements (retention, erasure:
    /// aegis.run_restricted) change tables: the executor depth at which
    /// their statement's AFTER triggers fire. A digest-mode DELETE fired at
    /// exactly that depth records the statement (count and digest change),
    /// not an image of each expired or erased row; anything the table
    /// owner's code runs underneath is deeper and recorded as usual.
    static LIFECYCLE: std::cell::Cell<Option<(i32, pg_sys::Oid)>> = const { std::cell::Cell::new(None) };
}

unsafe extern "C-unwind" {
    /// ExecutorRun and ExecutorFinish frames open now (src/read_audit_hooks.c).
    fn aegis_executor_depth() -> std::ffi::c_int;
    fn aegis_install_depth_hooks();
}

/// Install the executor depth hooks (from `_PG_init`, whenever the library
/// is loaded).
pub(crate) fn install_depth_hooks() {
    // SAFETY: called once per backend, from _PG_init.
    unsafe { aegis_install_depth_hooks() };
}

/// Run `f` (one SPI statement on `target`) as one of pg_aegis's lifecycle
/// statements (see LIFECYCLE): the statement SPI runs next executes one
/// frame deeper. Only its own relation's triggers count: a cascade of a
/// foreign key queues the referencing table's triggers at the same depth.
pub(crate) fn as_lifecycle_statement<R>(target: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<(i32, pg_sys::Oid)>);
    impl Drop for Reset {
        fn drop(&mut self) {
            LIFECYCLE.set(self.0);
        }
    }
    // SAFETY: reads a backend-local counter.
    let depth = unsafe { aegis_executor_depth() } + 1;
    let _reset = Reset(LIFECYCLE.replace(Some((depth, target))));
    f()
}

/// Is the statement whose AFTER triggers fire now on `rel` pg_aegis's
/// lifecycle statement?
fn is_lifecycle_statement(rel: pg_sys::Oid) -> bool {
    // SAFETY: reads a backend-local counter.
    LIFECYCLE.get() == Some((unsafe { aegis_executor_depth() }, rel))
}

/// `aegis.audit_statement()`: AFTER INSERT, UPDATE or DELETE ... REFERENCING
/// ... FOR EACH STATEMENT on a protected table (either mode), and BEFORE
/// TRUNCATE of a digest-mode partition.
#[pg_trigger(sql = false)]
pub(super) fn audit_statement<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    let td = trigger.trigger_data();
    if !matches!(trigger.level(), PgTriggerLevel::Statement) {
        protocol_error("aegis.audit_statement() must be a FOR EACH STATEMENT trigger");
    }
    // A partition about to be truncated: its content leaves the table, so
    // its digest is recorded before it goes (the AFTER TRUNCATE entry of
    // aegis.audit_truncate() follows).
    if matches!(trigger.op(), Ok(PgTriggerOperation::Truncate)) {
        if !matches!(trigger.when(), Ok(PgTriggerWhen::Before))
            || trigger.name().ok() != Some("aegis_audit_truncate_digest")
        {
            protocol_error(
                "aegis.audit_statement() runs only as the capture triggers aegis.protect() creates",
            );
        }
        if let Err(e) = truncate_partition(td.tg_relation) {
            raise(e);
        }
        return Ok(None);
    }
    if !matches!(trigger.when(), Ok(PgTriggerWhen::After)) {
        protocol_error(
            "aegis.audit_statement() must be an AFTER trigger on INSERT, UPDATE or DELETE",
        );
    }
    let (op, old, new) = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => ("INSERT", None, Some(td.tg_newtable)),
        Ok(PgTriggerOperation::Update) => ("UPDATE", Some(td.tg_oldtable), Some(td.tg_newtable)),
        Ok(PgTriggerOperation::Delete) => ("DELETE", Some(td.tg_oldtable), None),
        _ => protocol_error("aegis.audit_statement() fires on INSERT, UPDATE, DELETE or TRUNCATE"),
    };
    // Only the triggers protect() makes (switch_rls): a table owner's own
    // trigger calling this function would count its statements twice.
    let expected = match op {
        "INSERT" => "aegis_audit_insert",
        "UPDATE" => "aegis_audit_update",
        _ => "aegis_audit_delete",
    };
    if trigger.name().ok() != Some(expected) {
        protocol_error(
            "aegis.audit_statement() runs only as the capture triggers aegis.protect() creates",
        );
    }
    if old.is_some_and(|t| t.is_null()) || new.is_some_and(|t| t.is_null()) {
        protocol_error(
            "aegis.audit_statement() needs its transition tables (REFERENCING OLD/NEW TABLE)",
        );
    }
    // SAFETY: a statement trigger: the relation and transition tables are
    // valid for the call.
    let r = unsafe { capture_statement(td.tg_relation, op, old, new) };
    if let Err(e) = r {
        raise(e);
    }
    Ok(None)
}

/// # Safety
/// `rel` is the trigger's relation; `old`/`new` its transition tables.
unsafe fn capture_statement(
    rel: pg_sys::Relation,
    op: &str,
    old: Option<*mut pg_sys::Tuplestorestate>,
    new: Option<*mut pg_sys::Tuplestorestate>,
) -> Result<(), AegisError> {
    // SAFETY: per the contract.
    let plan = unsafe { plan_for(rel) }?;
    let own = unsafe { relation_name(rel) };
    if !plan.capturable {
        return Err(AegisError::NotProtected { table: own });
    }
    // Digest mode records inserts as a content change; image mode (and
    // digest mode's UPDATE and DELETE, unless "audit_images": "none") keep
    // each row's classified images, written in chunks.
    let dp = plan.digest.as_ref();
    let tupdesc = unsafe { (*rel).rd_att };
    // SAFETY: the trigger's relation, open for the call.
    let lifecycle = op == "DELETE" && is_lifecycle_statement(unsafe { (*rel).rd_id });
    let images = match dp {
        Some(dp) => dp.images && op != "INSERT" && !lifecycle,
        None => true,
    };
    let pseudonyms = images && pseudonyms_available();
    let mut changes = Changes::default();
    let mut rows = 0i64;
    let mut enc = RowEncoder::new();
    let mut chunks = ImageChunks::new(op, &plan.table_name);
    let context = RowContext::new();
    let mut run = || -> Result<(), AegisError> {
        // SAFETY: transition tables of this trigger, in the relation's
        // row type.
        let mut old_rows = old.map(|t| unsafe { TransitionReader::new(t, tupdesc) });
        let mut new_rows = new.map(|t| unsafe { TransitionReader::new(t, tupdesc) });
        let paired = old_rows.is_some() && new_rows.is_some();
        loop {
            // UPDATE's two tables hold the old and new version of each row
            // in the same order.
            let done = context.run(|| -> Result<bool, AegisError> {
                let mut got_old = None;
                let mut got_new = None;
                if let Some(r) = old_rows.as_mut() {
                    got_old = r.next();
                }
                if let Some(r) = new_rows.as_mut() {
                    got_new = r.next();
                }
                if got_old.is_none() && got_new.is_none() {
                    return Ok(true);
                }
                // An UPDATE's two tables pair row by row; a row missing
                // from one (a partition's BEFORE INSERT trigger dropped a
                // moved row) would pair every later row wrongly.
                if paired && got_old.is_some() != got_new.is_some() {
                    return Err(AegisError::UnpairedUpdate {
                        table: plan.table_name.clone(),
                    });
                }
                if let Some(dp) = dp {
                    if let Some((values, nulls)) = got_old {
                        // SAFETY: a row of this relation.
                        unsafe { encode_row(&plan, values, nulls, &mut enc) }?;
                        changes.remove_row(bucket_of(dp, values, nulls), enc.finish());
                    }
                    if let Some((values, nulls)) = got_new {
                        // SAFETY: as above.
                        unsafe { encode_row(&plan, values, nulls, &mut enc) }?;
                        changes.add_row(bucket_of(dp, values, nulls), enc.finish());
                    }
                }
                rows += 1;
                if images {
                    // SAFETY: rows of this relation, deformed.
                    chunks.add(|| unsafe {
                        Ok((
                            got_old
                                .map(|(v, n)| images_of(&plan, v, n, pseudonyms))
                                .transpose()?,
                            got_new
                                .map(|(v, n)| images_of(&plan, v, n, pseudonyms))
                                .transpose()?,
                        ))
                    })?;
                }
                Ok(false)
            })?;
            if done {
                break;
            }
            pgrx::check_for_interrupts!();
        }
        chunks.flush()
    };
    if plan.guarded {
        crate::guc::with_settings(&FIXED_SETTINGS, run)?;
    } else {
        run()?;
    }
    if rows == 0 || dp.is_none() {
        // Nothing changed, or image mode: no statement entry.
        return Ok(());
    }
    let mut d = format!("{{\"rows\":{rows}");
    if own != plan.table_name {
        d.push_str(",\"partition\":");
        core_audit::image::push_json_string(&mut d, &own);
    }
    if lifecycle {
        d.push_str(",\"lifecycle\":true");
    }
    d.push('}');
    let detail = Doc::from_json(&d)?;
    write_entry(&NewEntry {
        operation: op,
        table_name: Some(&plan.table_name),
        pk: None,
        old_row: None,
        new_row: None,
        detail: Some(&detail),
        content_change: Some(&changes.encode()),
    })
}

/// BEFORE TRUNCATE of a digest-mode partition: an entry removing what it
/// holds (one scan).
fn truncate_partition(rel: pg_sys::Relation) -> Result<(), AegisError> {
    remove_partition(rel, "TRUNCATE", "").map(|_| ())
}

/// Retention dropping a whole expired partition (`aegis.retire_partition`):
/// one entry removing what it holds, written under the ACCESS EXCLUSIVE
/// lock the drop keeps, so nothing can change it between this scan and the
/// drop. Returns the rows removed.
pub(super) fn retire_partition(part: pg_sys::Oid) -> Result<i64, AegisError> {
    // SAFETY: the lock is taken here (waiting at most lock_timeout) and
    // kept to the end of the transaction, which drops the partition.
    unsafe {
        let rel = pg_sys::table_open(part, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
        let out = if (*(*rel).rd_rel).relispartition {
            remove_partition(
                rel,
                "RETENTION",
                ",\"lifecycle\":true,\"partition_dropped\":true",
            )
        } else {
            Err(internal(format!(
                "{} is not a partition",
                relation_name(rel)
            )))
        };
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}

/// One entry (`operation`) removing the content of a digest-mode
/// partition, as one scan finds it; `extra` ends the detail object.
fn remove_partition(
    rel: pg_sys::Relation,
    operation: &str,
    extra: &str,
) -> Result<i64, AegisError> {
    // SAFETY: the caller's relation, open for the call.
    let (plan, own, relid) = unsafe { (plan_for(rel)?, relation_name(rel), (*rel).rd_id) };
    if !plan.capturable || plan.digest.is_none() {
        return Err(AegisError::NotProtected { table: own });
    }
    let Scan { found, rows: n, .. } = scan_content(relid)?;
    if n == 0 {
        return Ok(0);
    }
    let removed = found.negated();
    let mut d = format!("{{\"rows\":{n},\"partition\":");
    core_audit::image::push_json_string(&mut d, &own);
    d.push_str(extra);
    d.push('}');
    let detail = Doc::from_json(&d)?;
    write_entry(&NewEntry {
        operation,
        table_name: Some(&plan.table_name),
        pk: None,
        old_row: None,
        new_row: None,
        detail: Some(&detail),
        content_change: Some(&removed.encode()),
    })?;
    Ok(n)
}

/// What one scan found: the content per bucket, the leaves (partitions)
/// holding rows of each bucket, and the row count.
pub(super) struct Scan {
    pub(super) found: Changes,
    pub(super) leaves: HashMap<i64, Vec<String>>,
    pub(super) rows: i64,
}

/// The content of a table as one scan finds it, per bucket (leaf by leaf),
/// and which leaves hold rows of each bucket.
pub(super) fn scan_content(tbl: pg_sys::Oid) -> Result<Scan, AegisError> {
    let mut found = Changes::default();
    let mut leaves: HashMap<i64, Vec<String>> = HashMap::new();
    let mut n = 0i64;
    let mut enc = RowEncoder::new();
    let mut values: Vec<pg_sys::Datum> = Vec::new();
    let mut nulls: Vec<bool> = Vec::new();
    let mut current_leaf: Option<(pg_sys::Oid, String)> = None;
    // The last (leaf, bucket) noted: rows come leaf by leaf, mostly in
    // bucket runs, so the map is touched only when either changes.
    let mut noted: Option<(pg_sys::Oid, i64)> = None;
    let context = RowContext::new();
    // Values are rendered as capture renders them: under fixed settings.
    crate::guc::with_settings(&FIXED_SETTINGS, || {
        for_each_leaf_row(tbl, |leaf, plan, tupdesc, tuple| {
            let Some(dp) = plan.digest else {
                return Err(internal(format!(
                    "{} is not in digest mode",
                    plan.table_name
                )));
            };
            if current_leaf.as_ref().map(|l| l.0) != Some(leaf) {
                // SAFETY: the leaf is open for the scan.
                let name = unsafe {
                    let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(leaf));
                    let rel = pg_sys::get_rel_name(leaf);
                    to_utf8(CStr::from_ptr(pg_sys::quote_qualified_identifier(nsp, rel)).to_bytes())
                        .into_owned()
                };
                current_leaf = Some((leaf, name));
            }
            n += 1;
            let b = context.run(|| -> Result<i64, AegisError> {
                // SAFETY: a live tuple of the scanned leaf, described by tupdesc.
                unsafe {
                    let natts = (*tupdesc).natts as usize;
                    values.resize(natts, pg_sys::Datum::from(0usize));
                    nulls.resize(natts, false);
                    pg_sys::heap_deform_tuple(
                        tuple,
                        tupdesc,
                        values.as_mut_ptr(),
                        nulls.as_mut_ptr(),
                    );
                    encode_row(plan, &values, &nulls, &mut enc)?;
                }
                let b = bucket_of(&dp, &values, &nulls);
                found.add_row(b, enc.finish());
                Ok(b)
            })?;
            if noted != Some((leaf, b)) {
                noted = Some((leaf, b));
                let names = leaves.entry(b).or_default();
                if let Some((_, name)) = &current_leaf {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
            Ok(())
        })
    })?;
    Ok(Scan {
        found,
        leaves,
        rows: n,
    })
}

/// `protect()`'s baseline of a digest-mode table: one BASELINE entry with
/// the digest of every row already there (one scan).
pub(super) fn digest_baseline(tbl: pg_sys::Oid, table_name: &str) -> Result<i64, AegisError> {
    let Scan { found, rows: n, .. } = scan_content(tbl)?;
    if n == 0 {
        return Ok(0);
    }
    // A partition attached with rows adds to the table's content; any other
    // baseline is the whole content (verify_table() starts from the latest).
    // SAFETY: a relation OID of the partition tree being baselined.
    let own = unsafe {
        let rel = pg_sys::table_open(tbl, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let n = relation_name(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    };
    let mut d = format!("{{\"rows\":{n}");
    if own != table_name {
        d.push_str(",\"partition\":");
        core_audit::image::push_json_string(&mut d, &own);
    }
    d.push('}');
    let detail = Doc::from_json(&d)?;
    write_entry(&NewEntry {
        operation: "BASELINE",
        table_name: Some(table_name),
        pk: None,
        old_row: None,
        new_row: None,
        detail: Some(&detail),
        content_change: Some(&found.encode()),
    })?;
    Ok(1)
}

/// The content the trail expects: every content change recorded for the
/// table since it was last truncated whole.
pub(super) fn expected_content(table_name: &str) -> Result<(Changes, i64), AegisError> {
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let mut expected = Changes::default();
                let mut entries = 0i64;
                let mut cursor = client.open_cursor(
                    "WITH t AS (SELECT l.statement_time, l.xid, l.id FROM aegis.audit_log l \
                       WHERE l.table_name OPERATOR(pg_catalog.=) $1 \
                         AND l.operation OPERATOR(pg_catalog.=) 'TRUNCATE' AND l.detail IS NULL \
                       ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1), \
                          b AS (SELECT l.statement_time, l.xid, l.id FROM aegis.audit_log l \
                       WHERE l.table_name OPERATOR(pg_catalog.=) $1 \
                         AND l.operation OPERATOR(pg_catalog.=) 'BASELINE' AND l.content_change IS NOT NULL \
                         AND NOT l.detail OPERATOR(pg_catalog.?) 'partition' \
                       ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1) \
                     SELECT l.content_change FROM aegis.audit_log l \
                     WHERE l.table_name OPERATOR(pg_catalog.=) $1 AND l.content_change IS NOT NULL \
                       AND NOT EXISTS (SELECT 1 FROM t WHERE (t.statement_time, t.xid, t.id) \
                           OPERATOR(pg_catalog.>=) (l.statement_time, l.xid, l.id)) \
                       AND NOT EXISTS (SELECT 1 FROM b WHERE (b.statement_time, b.xid, b.id) \
                           OPERATOR(pg_catalog.>) (l.statement_time, l.xid, l.id))",
                    &[table_name.into()],
                );
                loop {
                    let batch = cursor.fetch(1_000).map_err(spi_error)?;
                    if batch.is_empty() {
                        break;
                    }
                    for row in batch {
                        if let Some(b) = row.get::<Vec<u8>>(1).map_err(spi_error)? {
                            expected.add(&Changes::decode(&b)?);
                            entries += 1;
                        }
                    }
                }
                expected.prune();
                Ok::<_, AegisError>((expected, entries))
            })
        })
    })
}

/// How a bucket reads in a report: its range in the column's own terms.
fn bucket_range(plan: &RelPlan, dp: &DigestPlan, bucket: i64) -> serde_json::Value {
    let Some((index, render, width)) = dp.bucket else {
        return serde_json::json!("whole table");
    };
    let column = plan
        .columns
        .iter()
        .find(|c| c.index == index)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let end = bucket.saturating_add(width);
    let show = |v: i64| -> serde_json::Value {
        let (f, d) = match render {
            Render::TimestampTz => (pg_sys::F_TIMESTAMPTZ_OUT, pg_sys::Datum::from(v)),
            Render::Timestamp => (pg_sys::F_TIMESTAMP_OUT, pg_sys::Datum::from(v)),
            Render::Date => (pg_sys::F_DATE_OUT, pg_sys::Datum::from(v as i32)),
            _ => return serde_json::json!(v),
        };
        // SAFETY: the type's output function on a value of that type.
        serde_json::json!(crate::guc::with_settings(&FIXED_SETTINGS, || unsafe {
            output_text(pg_sys::Oid::from(f), d)
        }))
    };
    serde_json::json!({ "column": column, "from": show(bucket), "to": show(end) })
}

/// `verify_table()` of a digest-mode table: one scan against the sum of
/// its content changes.
pub(super) fn verify_digest_table(
    tbl: pg_sys::Oid,
    plan: &RelPlan,
) -> Result<VerifyTableRow, AegisError> {
    let dp = plan
        .digest
        .ok_or_else(|| internal("not a digest-mode table"))?;
    let (expected, _) = expected_content(&plan.table_name)?;
    let Scan {
        found,
        leaves,
        rows: n,
    } = scan_content(tbl)?;
    let mismatches = core_digest::compare(&expected, &found);
    let Some(first) = mismatches.first() else {
        return Ok((Some(true), Some(n), Some(0), None, None));
    };
    let range = bucket_range(plan, &dp, first.bucket);
    let partitions = leaves.get(&first.bucket).cloned().unwrap_or_default();
    let what = match first.rows.cmp(&first.expected_rows) {
        std::cmp::Ordering::Greater => "rows were added behind the audit trail",
        std::cmp::Ordering::Less => "rows were removed behind the audit trail",
        std::cmp::Ordering::Equal => "rows were changed behind the audit trail",
    };
    let problem = format!(
        "{what} in {}: {} rows found, {} expected from the trail ({} of {} buckets differ)",
        match &range {
            serde_json::Value::Object(o) => format!(
                "{} from {} to {}",
                o.get("column").and_then(|v| v.as_str()).unwrap_or(""),
                o.get("from")
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default(),
                o.get("to")
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default()
            ),
            _ => "the whole table".into(),
        },
        first.rows,
        first.expected_rows,
        mismatches.len(),
        expected.buckets.len().max(found.buckets.len())
    );
    let detail = serde_json::json!({
        "bucket": range,
        "partitions": partitions,
        "rows": first.rows,
        "expected_rows": first.expected_rows,
        "problem": problem,
    });
    Ok((
        Some(false),
        Some(n),
        Some(mismatches.len() as i64),
        Some(pgrx::JsonB(detail)),
        Some(problem),
    ))
}
