//! Entries pg_aegis writes itself (DDL records, baselines) and
//! `verify_table()`.

use super::*;

/// `aegis.audit_event(operation, table_name, detail)`: internal (no grants);
/// the DDL guard records a superuser's change with it.
#[pg_extern(volatile, sql = false)]
pub(super) fn audit_event(
    operation: Option<&str>,
    table_name: Option<&str>,
    detail: Option<pgrx::JsonB>,
) -> AegisResult<()> {
    let operation = operation.ok_or(AegisError::NullArgument { what: "operation" })?;
    let detail = detail
        .map(|d| Doc::from_json(&d.0.to_string()))
        .transpose()?;
    write_entry(&NewEntry {
        operation,
        table_name,
        pk: None,
        old_row: None,
        new_row: None,
        detail: detail.as_ref(),
        content_change: None,
    })?;
    Ok(())
}

/// The leaf relations of a table's partition tree (the table itself when it
/// is not partitioned).
pub(super) fn leaf_relations(tbl: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>, AegisError> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client
            .select(
                // Every relation with rows that the table shows: itself,
                // its partitions, and its inheritance children (rows
                // written there never passed the table's capture trigger).
                "WITH RECURSIVE t(relid) AS (SELECT $1 UNION \
                   SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent OPERATOR(pg_catalog.=) t.relid) \
                 SELECT t.relid FROM t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid \
                 WHERE c.relkind OPERATOR(pg_catalog.=) 'r'",
                None,
                &[tbl.into()],
            )
            .map_err(spi_error)?
        {
            if let Some(o) = row.get::<pg_sys::Oid>(1).map_err(spi_error)? {
                out.push(o);
            }
        }
        Ok(out)
    })
}

/// Run `f` on every live tuple (in the active snapshot) of every leaf of
/// `tbl`, with that leaf's plan and descriptor.
pub(super) fn for_each_row(
    tbl: pg_sys::Oid,
    mut f: impl FnMut(&RelPlan, pg_sys::TupleDesc, pg_sys::HeapTuple) -> Result<(), AegisError>,
) -> Result<(), AegisError> {
    for_each_leaf_row(tbl, |_, plan, tupdesc, tuple| f(plan, tupdesc, tuple))
}

/// As for_each_row(), also naming the leaf each tuple is in.
pub(super) fn for_each_leaf_row(
    tbl: pg_sys::Oid,
    mut f: impl FnMut(
        pg_sys::Oid,
        &RelPlan,
        pg_sys::TupleDesc,
        pg_sys::HeapTuple,
    ) -> Result<(), AegisError>,
) -> Result<(), AegisError> {
    for leaf in leaf_relations(tbl)? {
        // SAFETY: the relation is opened with a read lock for the scan and
        // closed after it; tuples are valid until the next heap_getnext.
        unsafe {
            let rel = pg_sys::table_open(leaf, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let plan = plan_for(rel)?;
            let scan = pg_sys::heap_beginscan(
                rel,
                pg_sys::GetActiveSnapshot(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                pg_sys::ScanOptions::SO_TYPE_SEQSCAN
                    | pg_sys::ScanOptions::SO_ALLOW_STRAT
                    | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE,
            );
            let mut result = Ok(());
            loop {
                let t = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if t.is_null() {
                    break;
                }
                result = f(leaf, &plan, (*rel).rd_att, t);
                if result.is_err() {
                    break;
                }
                pgrx::check_for_interrupts!();
            }
            pg_sys::heap_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            result?;
        }
    }
    Ok(())
}

/// `aegis.audit_baseline(tbl) → bigint`: internal (no grants; enforce_rls()
/// calls it once, when it starts protecting a table): each existing row
/// becomes a BASELINE entry, the starting point verify_table() compares to.
#[pg_extern(volatile, sql = false)]
pub(super) fn audit_baseline(tbl: pg_sys::Oid) -> AegisResult<i64> {
    Ok(audit_baseline_impl(tbl)?)
}

/// `aegis.retire_partition(part) → bigint`: internal (no grants;
/// apply_retention() calls it before dropping an expired partition of a
/// digest-mode table): one entry removing the partition's content, under
/// an ACCESS EXCLUSIVE lock kept until the drop commits.
#[pg_extern(volatile, sql = false)]
pub(super) fn retire_partition(part: pg_sys::Oid) -> AegisResult<i64> {
    Ok(digest::retire_partition(part)?)
}

pub(crate) fn audit_baseline_impl(tbl: pg_sys::Oid) -> Result<i64, AegisError> {
    // SAFETY: opened only to plan it (lock kept to the end).
    let plan = unsafe {
        let rel = pg_sys::table_open(tbl, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let plan = plan_for(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        plan?
    };
    if plan.digest.is_some() {
        return digest::digest_baseline(tbl, &plan.table_name);
    }
    let mut n = 0i64;
    let pseudonyms = pseudonyms_available();
    // The rows' images in chunk entries, as a multi-row statement's.
    let mut chunks = super::chunk::ImageChunks::new("BASELINE", &plan.table_name);
    for_each_row(tbl, |leaf, tupdesc, tuple| {
        // SAFETY: a live tuple of the scanned leaf.
        chunks.add(|| {
            Ok((
                None,
                Some(unsafe { images(leaf, tupdesc, tuple, pseudonyms) }?),
            ))
        })?;
        n += 1;
        Ok(())
    })?;
    chunks.flush()?;
    Ok(n)
}

/// The latest entry for one key.
pub(super) struct Latest {
    pub(super) id: i64,
    pub(super) operation: String,
    pub(super) new_row: Option<Vec<u8>>,
}

pub(super) fn verify_table_impl(tbl: pg_sys::Oid) -> Result<VerifyTableRow, AegisError> {
    // SAFETY: opens the table only to plan it (lock kept to the end).
    let plan = unsafe {
        let rel = pg_sys::table_open(tbl, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let name = relation_name(rel);
        let protected = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one::<bool>(
                    "SELECT EXISTS (SELECT 1 FROM aegis.rls_enforced \
                     WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)",
                    &[tbl.into()],
                )
                .map_err(spi_error)
            })
        })?;
        if protected != Some(true) {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Err(AegisError::NotProtected { table: name });
        }
        let plan = plan_for(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        plan?
    };
    if plan.digest.is_some() {
        return digest::verify_digest_table(tbl, &plan);
    }
    if !plan.has_pk {
        return Err(AegisError::NoPrimaryKey {
            table: plan.table_name.clone(),
        });
    }
    // The latest entry per key since the table was last truncated whole, in
    // statement order (then transaction and entry order; a chunk entry's
    // rows in their order). An UPDATE that changed a row's key (a row
    // moved to another partition, say) also ends the old key's history.
    let mut latest: HashMap<Vec<u8>, Latest> = HashMap::new();
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let rows = client
                    .select(
                        "WITH t AS (SELECT l.statement_time, l.xid, l.id FROM aegis.audit_log l \
                           WHERE l.table_name OPERATOR(pg_catalog.=) $1 \
                             AND l.operation OPERATOR(pg_catalog.=) 'TRUNCATE' AND l.detail IS NULL \
                           ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1), \
                         e AS (SELECT l.statement_time, l.xid, l.id, x.item, l.operation, x.pk, x.old_row, x.new_row \
                           FROM aegis.audit_log l \
                           CROSS JOIN LATERAL ( \
                               SELECT 0 AS item, l.pk, l.old_row, l.new_row \
                               WHERE NOT aegis.is_chunk(l.detail, l.old_row, l.new_row) \
                               UNION ALL \
                               SELECT n, l.pk OPERATOR(pg_catalog.->) (n OPERATOR(pg_catalog.-) 1), \
                                      l.old_row OPERATOR(pg_catalog.->) (n OPERATOR(pg_catalog.-) 1), \
                                      l.new_row OPERATOR(pg_catalog.->) (n OPERATOR(pg_catalog.-) 1) \
                               FROM pg_catalog.generate_series(1, CASE WHEN aegis.is_chunk(l.detail, l.old_row, l.new_row) \
                                   THEN (l.detail OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int4 ELSE 0 END) n) x \
                           WHERE l.table_name OPERATOR(pg_catalog.=) $1 AND l.pk IS NOT NULL \
                             AND NOT EXISTS (SELECT 1 FROM t WHERE (t.statement_time, t.xid, t.id) \
                                 OPERATOR(pg_catalog.>=) (l.statement_time, l.xid, l.id))), \
                         f AS (SELECT e.statement_time, e.xid, e.id, e.item, 1 AS kind, e.operation, e.pk, e.new_row \
                           FROM e WHERE pg_catalog.jsonb_typeof(e.pk) OPERATOR(pg_catalog.=) 'object' \
                           UNION ALL \
                           SELECT e.statement_time, e.xid, e.id, e.item, 0, 'DELETE', o.pk, NULL \
                           FROM e CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_object_agg(k, e.old_row OPERATOR(pg_catalog.->) k) AS pk \
                                                      FROM pg_catalog.jsonb_object_keys(e.pk) k) o \
                           WHERE e.operation OPERATOR(pg_catalog.=) 'UPDATE' \
                             AND pg_catalog.jsonb_typeof(e.pk) OPERATOR(pg_catalog.=) 'object' \
                             AND pg_catalog.jsonb_typeof(e.old_row) OPERATOR(pg_catalog.=) 'object' \
                             AND o.pk OPERATOR(pg_catalog.<>) e.pk) \
                         SELECT DISTINCT ON (f.pk) pg_catalog.convert_to(f.pk::pg_catalog.text, 'UTF8'), \
                                f.id, f.operation, pg_catalog.convert_to(f.new_row::pg_catalog.text, 'UTF8') \
                         FROM f \
                         ORDER BY f.pk, f.statement_time DESC, f.xid DESC, f.id DESC, f.kind DESC, f.item DESC",
                        None,
                        &[plan.table_name.as_str().into()],
                    )
                    .map_err(spi_error)?;
                for row in rows {
                    let pk: Vec<u8> = row.get(1).map_err(spi_error)?.unwrap_or_default();
                    let new_row: Option<Vec<u8>> = row.get(4).map_err(spi_error)?;
                    let canon = |b: &[u8]| -> Result<Vec<u8>, AegisError> {
                        let mut out = Vec::new();
                        core_audit::encode_value(
                            &Value::Json(&String::from_utf8_lossy(b)),
                            &mut out,
                        )?;
                        Ok(out)
                    };
                    latest.insert(
                        canon(&pk)?,
                        Latest {
                            id: row.get(2).map_err(spi_error)?.unwrap_or(0),
                            operation: row.get(3).map_err(spi_error)?.unwrap_or_default(),
                            new_row: new_row.map(|b| canon(&b)).transpose()?,
                        },
                    );
                }
                Ok::<_, AegisError>(())
            })
        })
    })?;
    let mut checked = 0i64;
    let mut mismatches = 0i64;
    let mut first: Option<(serde_json::Value, String)> = None;
    let mut note = |pk: serde_json::Value, problem: String, first: &mut Option<_>| {
        mismatches += 1;
        if first.is_none() {
            *first = Some((pk, problem));
        }
    };
    let pk_json = |doc: &Doc| -> serde_json::Value {
        // SAFETY: a jsonb datum we built.
        let text = unsafe { output_text(pg_sys::Oid::from(pg_sys::F_JSONB_OUT), doc.datum) };
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    };
    let pseudonyms = pseudonyms_available();
    for_each_row(tbl, |plan, tupdesc, tuple| {
        checked += 1;
        // SAFETY: a live tuple of the scanned leaf.
        let img = unsafe { images(plan, tupdesc, tuple, pseudonyms) }?;
        let Some(pk) = img.pk.as_ref() else {
            // A leaf without the table's key: an inheritance child, whose
            // rows were written around the table's capture trigger.
            note(
                serde_json::json!({ "table": plan.table_name }),
                format!(
                    "row of {} (an inheritance child without the table's key): not written through the table's capture trigger",
                    plan.table_name
                ),
                &mut first,
            );
            return Ok(());
        };
        match latest.remove(&pk.canonical) {
            None => note(pk_json(pk), "row has no audit entry".into(), &mut first),
            Some(l) if l.operation == "DELETE" => note(
                pk_json(pk),
                format!(
                    "row was deleted in the audit trail (entry {}) but is present",
                    l.id
                ),
                &mut first,
            ),
            Some(l) if l.new_row.as_deref() != Some(img.row.canonical.as_slice()) => {
                // An entry written before the pseudonym key existed holds
                // `[PII]` where the row now gives a pseudonym: compare the
                // row rendered that way too.
                let matches_plain = pseudonyms && {
                    // SAFETY: as above.
                    let plain = unsafe { images(plan, tupdesc, tuple, false) }?;
                    l.new_row.as_deref() == Some(plain.row.canonical.as_slice())
                };
                if !matches_plain {
                    note(
                        pk_json(pk),
                        format!("row differs from its latest audit entry {}", l.id),
                        &mut first,
                    );
                }
            }
            Some(_) => {}
        }
        Ok(())
    })?;
    // Keys the trail says exist but the table does not have.
    let mut missing: Vec<&Latest> = latest
        .values()
        .filter(|l| l.operation != "DELETE")
        .collect();
    missing.sort_by_key(|l| l.id);
    for l in missing {
        note(
            serde_json::json!({ "entry_id": l.id }),
            format!("row of audit entry {} is missing from the table", l.id),
            &mut first,
        );
    }
    let (first_mismatch, problem) = match first {
        Some((pk, p)) => (
            Some(pgrx::JsonB(serde_json::json!({ "key": pk, "problem": p }))),
            Some(p),
        ),
        None => (None, None),
    };
    Ok((
        Some(mismatches == 0),
        Some(checked),
        Some(mismatches),
        first_mismatch,
        problem,
    ))
}

pub(super) type VerifyTableRow = (
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<pgrx::JsonB>,
    Option<String>,
);

/// `aegis.verify_table(tbl) → TABLE(ok, rows_checked, mismatches, first_mismatch, problem)`
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, sql = false)]
pub(super) fn verify_table(
    tbl: pg_sys::Oid,
) -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(rows_checked, Option<i64>),
        name!(mismatches, Option<i64>),
        name!(first_mismatch, Option<pgrx::JsonB>),
        name!(problem, Option<String>),
    ),
> {
    match verify_table_impl(tbl) {
        Ok(row) => TableIterator::once(row),
        Err(e) => raise(e),
    }
}
