//! The capture triggers: `audit_row()`, `audit_truncate()`, the plans
//! invalidation trigger and the append-only guard.

use super::*;

/// `aegis.audit_row()`: AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.
#[pg_trigger(sql = false)]
pub(super) fn audit_row<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    if !matches!(trigger.when(), Ok(PgTriggerWhen::After))
        || !matches!(trigger.level(), PgTriggerLevel::Row)
    {
        protocol_error("aegis.audit_row() must be an AFTER ... FOR EACH ROW trigger");
    }
    let td = trigger.trigger_data();
    // SAFETY: a row trigger's relation is valid for the call.
    if unsafe { restoring_catalog(td.tg_relation) } {
        return Ok(None);
    }
    let (op, old, new) = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => ("INSERT", None, Some(td.tg_trigtuple)),
        Ok(PgTriggerOperation::Update) => ("UPDATE", Some(td.tg_trigtuple), Some(td.tg_newtuple)),
        Ok(PgTriggerOperation::Delete) => ("DELETE", Some(td.tg_trigtuple), None),
        _ => protocol_error("aegis.audit_row() fires on INSERT, UPDATE or DELETE"),
    };
    // SAFETY: a row trigger: the relation and tuples are valid for the call.
    let r = unsafe {
        let rel = td.tg_relation;
        plan_for(rel).and_then(|plan| {
            if !plan.capturable {
                return Err(AegisError::NotProtected {
                    table: relation_name(rel),
                });
            }
            let tupdesc = (*rel).rd_att;
            let pseudonyms = pseudonyms_available();
            let old = old
                .map(|t| images(&plan, tupdesc, t, pseudonyms))
                .transpose()?;
            let new = new
                .map(|t| images(&plan, tupdesc, t, pseudonyms))
                .transpose()?;
            let pk = new.as_ref().or(old.as_ref()).and_then(|i| i.pk.as_ref());
            write_entry(&NewEntry {
                operation: op,
                table_name: Some(&plan.table_name),
                pk,
                old_row: old.as_ref().map(|i| &i.row),
                new_row: new.as_ref().map(|i| &i.row),
                detail: None,
                content_change: None,
            })
        })
    };
    if let Err(e) = r {
        raise(e);
    }
    Ok(None)
}

/// A superuser's COPY into one of pg_aegis's own catalogs: what pg_restore
/// does when it restores the extension's configuration tables. Those rows'
/// history is already in the restored trail; capturing them again would
/// append a second, restore-time copy of it. (Everyone else's changes to
/// the catalogs, and a superuser's through the API or plain DML, are
/// captured; a superuser could switch triggers off anyway.)
pub(super) unsafe fn restoring_catalog(rel: pg_sys::Relation) -> bool {
    // SAFETY: a valid relation; debug_query_string is the client's current
    // statement (NUL-terminated) or NULL.
    unsafe {
        let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        if nsp.is_null() || CStr::from_ptr(nsp).to_bytes() != b"aegis" || !pg_sys::superuser() {
            return false;
        }
        let q = pg_sys::debug_query_string;
        !q.is_null()
            && CStr::from_ptr(q)
                .to_string_lossy()
                .trim_start()
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
    }
}

/// `aegis.audit_truncate()`: AFTER TRUNCATE ... FOR EACH STATEMENT.
#[pg_trigger(sql = false)]
pub(super) fn audit_truncate<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::PgTriggerOperation;
    if !matches!(trigger.op(), Ok(PgTriggerOperation::Truncate)) {
        protocol_error("aegis.audit_truncate() must be an AFTER TRUNCATE trigger");
    }
    let td = trigger.trigger_data();
    // SAFETY: the relation is valid for the call.
    let r = unsafe { plan_for(td.tg_relation) }.and_then(|plan| {
        // SAFETY: as above.
        let own = unsafe { relation_name(td.tg_relation) };
        if !plan.capturable {
            return Err(AegisError::NotProtected { table: own });
        }
        let detail = (own != plan.table_name)
            .then(|| {
                let mut d = String::from("{\"partition\":");
                core_audit::image::push_json_string(&mut d, &own);
                d.push('}');
                Doc::from_json(&d)
            })
            .transpose()?;
        write_entry(&NewEntry {
            operation: "TRUNCATE",
            table_name: Some(&plan.table_name),
            pk: None,
            old_row: None,
            new_row: None,
            detail: detail.as_ref(),
            content_change: None,
        })
    });
    if let Err(e) = r {
        raise(e);
    }
    Ok(None)
}

/// # Safety
/// `rel` must be an open relation.
pub(super) unsafe fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: per the contract (an open relation always has rd_rel);
    // quote_qualified_identifier returns a palloc'd string.
    unsafe {
        let form = &*(*rel).rd_rel;
        let nsp = pg_sys::get_namespace_name(form.relnamespace);
        let q = pg_sys::quote_qualified_identifier(nsp, form.relname.data.as_ptr());
        to_utf8(CStr::from_ptr(q).to_bytes()).into_owned()
    }
}

/// `aegis.audit_plans_changed()`: statement trigger on the classification
/// catalogs; every backend drops its audit plans when the change commits.
#[pg_trigger(sql = false)]
pub(super) fn audit_plans_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: queues a relcache invalidation of the catalog table that fired.
    unsafe { pg_sys::CacheInvalidateRelcache(trigger.trigger_data().tg_relation) };
    Ok(None)
}

thread_local! {
    /// Set only while pg_aegis's own maintenance (pruning behind a signed
    /// checkpoint) changes the audit tables; no SQL can set it.
    pub(super) static MAINTENANCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with the append-only guard lifted for pg_aegis's own row
/// changes. Reset on return and on error (pgrx unwinds through this frame).
pub(crate) fn with_log_maintenance<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MAINTENANCE.set(self.0);
        }
    }
    let _reset = Reset(MAINTENANCE.replace(true));
    f()
}

/// `aegis.audit_append_only()`: refuses UPDATE, DELETE and TRUNCATE.
#[pg_trigger(sql = false)]
pub(super) fn audit_append_only<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::PgTriggerOperation;
    if MAINTENANCE.get() {
        match trigger.op() {
            Ok(PgTriggerOperation::Delete) => return Ok(trigger.old()),
            Ok(PgTriggerOperation::Update) => return Ok(trigger.new()),
            _ => {}
        }
    }
    let table = trigger.table_name().unwrap_or_default();
    raise(
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("aegis.{table} is append-only"),
            "pg_aegis",
        )
        .set_detail(format!(
            "{} is refused for every role: audit entries are never changed or removed.",
            match trigger.op() {
                Ok(pgrx::trigger_support::PgTriggerOperation::Update) => "UPDATE",
                Ok(pgrx::trigger_support::PgTriggerOperation::Delete) => "DELETE",
                _ => "TRUNCATE",
            }
        )),
    )
}
