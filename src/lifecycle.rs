//! Lifecycle glue: the row filters of retention policies and legal holds.
//!
//! A filter is text a DBA types (`contains_user_data`, `user_id IS NOT NULL`)
//! and it ends up inside a DELETE that runs with the extension owner's
//! rights. So it is never spliced as typed: [`row_filter`] parses it as
//! exactly one expression (PostgreSQL's own parser, in the mode PL/pgSQL uses
//! for expressions, so no statement text is built around it), analyses it
//! against the table like a WHERE clause, refuses anything that could run
//! code or read other data, and returns PostgreSQL's own rendering of the
//! analysed tree (what `pg_get_expr()` prints). Only that rendering is ever
//! placed in SQL, and it is recomputed from the user's text at every use.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::PgList;

use crate::error::{AegisError, AegisResult};
use crate::keyring::{as_extension_owner, spi_error, with_safe_search_path};
use pgrx::datum::TimestampWithTimeZone;

/// The walk over an analysed filter: the table and the filter's author
/// (whose column privileges it may use), and why it is refused (first
/// reason found).
struct Walk {
    rel: pg_sys::Oid,
    author: pg_sys::Oid,
    refused: Option<String>,
}

/// Built-in objects: created by initdb, below the first OID a user object
/// can get. Their code is PostgreSQL's, not any role's.
fn built_in(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < pg_sys::FirstNormalObjectId
}

fn describe_function(func: pg_sys::Oid) -> String {
    // SAFETY: catalog lookups by OID; both return palloc'd copies or NULL.
    unsafe {
        let name = pg_sys::get_func_name(func);
        let nsp = pg_sys::get_namespace_name(pg_sys::get_func_namespace(func));
        let s = |p: *mut std::ffi::c_char| {
            if p.is_null() {
                "?".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        format!("{}.{}()", s(nsp), s(name))
    }
}

/// Date and time types: the only reason a row filter needs a function that
/// is not immutable (now(), casts between timestamps and dates, date_trunc).
const TIME_TYPES: [pg_sys::Oid; 6] = [
    pg_sys::TIMESTAMPTZOID,
    pg_sys::TIMESTAMPOID,
    pg_sys::DATEOID,
    pg_sys::INTERVALOID,
    pg_sys::TIMEOID,
    pg_sys::TIMETZOID,
];

/// Functions a filter may call: built-in (pg_catalog) and immutable, or
/// stable with a date/time argument or result. A filter runs with the
/// extension owner's rights and a dry run's row count answers "how many rows
/// match", so anything that reads data or settings (table_to_xml(),
/// current_setting(), pg_stat_get_backend_activity(), all stable) would be
/// an oracle for what only superusers may see; immutable functions compute
/// from their arguments alone.
unsafe extern "C-unwind" fn check_function(func: pg_sys::Oid, ctx: *mut std::ffi::c_void) -> bool {
    // SAFETY: ctx is the &mut Walk passed to the walker below.
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    // SAFETY: syscache lookups by OID; get_func_signature returns a palloc'd
    // array of nargs argument types.
    let (nsp, volatility, touches_time) = unsafe {
        let mut argtypes: *mut pg_sys::Oid = std::ptr::null_mut();
        let mut nargs: std::ffi::c_int = 0;
        let ret = pg_sys::get_func_signature(func, &mut argtypes, &mut nargs);
        let args = if argtypes.is_null() || nargs <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(argtypes, nargs as usize)
        };
        (
            pg_sys::get_func_namespace(func),
            pg_sys::func_volatile(func) as u8,
            TIME_TYPES.contains(&ret) || args.iter().any(|a| TIME_TYPES.contains(a)),
        )
    };
    let refused = if nsp != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE) || !built_in(func) {
        Some(format!(
            "{} is not a built-in function (only functions in pg_catalog are allowed)",
            describe_function(func)
        ))
    } else if volatility == pg_sys::PROVOLATILE_IMMUTABLE
        || (volatility == pg_sys::PROVOLATILE_STABLE && touches_time)
    {
        None
    } else if volatility == pg_sys::PROVOLATILE_STABLE {
        Some(format!(
            "{} is not immutable (stable built-ins are allowed only for dates and times)",
            describe_function(func)
        ))
    } else {
        Some(format!("{} is volatile", describe_function(func)))
    };
    match refused {
        Some(r) => {
            walk.refused = Some(r);
            true
        }
        None => false,
    }
}

/// What a filter may contain, by node kind. A whitelist, not a blacklist:
/// anything else — domains (their CHECK constraints run their owner's
/// functions), subqueries, row constructors and comparisons, whole-row
/// references, JSON and XML constructors, and node kinds future PostgreSQL
/// versions add — is refused.
fn allowed_node(tag: pg_sys::NodeTag) -> Result<(), &'static str> {
    use pg_sys::NodeTag as T;
    match tag {
        T::T_Var
        | T::T_Const
        | T::T_FuncExpr
        | T::T_OpExpr
        | T::T_DistinctExpr
        | T::T_NullIfExpr
        | T::T_ScalarArrayOpExpr
        | T::T_BoolExpr
        | T::T_NullTest
        | T::T_BooleanTest
        | T::T_RelabelType
        | T::T_CoerceViaIO
        | T::T_CaseExpr
        | T::T_CaseTestExpr
        | T::T_CoalesceExpr
        | T::T_MinMaxExpr
        | T::T_ArrayExpr
        | T::T_CollateExpr
        | T::T_SQLValueFunction
        | T::T_List => Ok(()),
        T::T_SubLink | T::T_SubPlan => Err("subqueries are not allowed"),
        T::T_CoerceToDomain | T::T_CoerceToDomainValue => Err(
            "domains are not allowed (a domain's constraints run functions chosen by its owner)",
        ),
        _ => Err(
            "only columns, constants, built-in operators and functions, AND/OR/NOT, \
                  IS [NOT] NULL, CASE, COALESCE, GREATEST/LEAST and arrays are allowed",
        ),
    }
}

unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, ctx: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: node is a valid analysed expression node; ctx is our &mut Walk.
    unsafe {
        let walk = &mut *(ctx as *mut Walk);
        let tag = (*node).type_;
        if let Err(why) = allowed_node(tag) {
            walk.refused = Some(why.into());
            return true;
        }
        if tag != pg_sys::NodeTag::T_List {
            // Values of a user-defined type run their type's code (I/O
            // functions, casts, comparison operators of its owner).
            let typ = pg_sys::exprType(node);
            if !built_in(typ) {
                walk.refused = Some(format!(
                    "values of type {} are not allowed (only built-in types)",
                    type_name(typ)
                ));
                return true;
            }
        }
        if tag == pg_sys::NodeTag::T_Var {
            let var = node as *mut pg_sys::Var;
            let attno = (*var).varattno;
            if attno <= 0 {
                walk.refused =
                    Some("system columns and whole-row references are not allowed".into());
                return true;
            }
            let may_read = pg_sys::pg_class_aclcheck(
                walk.rel,
                walk.author,
                pg_sys::ACL_SELECT as pg_sys::AclMode,
            ) == pg_sys::AclResult::ACLCHECK_OK
                || pg_sys::pg_attribute_aclcheck(
                    walk.rel,
                    attno,
                    walk.author,
                    pg_sys::ACL_SELECT as pg_sys::AclMode,
                ) == pg_sys::AclResult::ACLCHECK_OK;
            if !may_read {
                let col = pg_sys::get_attname(walk.rel, attno, true);
                let col = if col.is_null() {
                    format!("#{attno}")
                } else {
                    CStr::from_ptr(col).to_string_lossy().into_owned()
                };
                walk.refused = Some(format!(
                    "role {} may not read column \"{col}\" (a filter may use only what its author can read)",
                    crate::audit::role_name(walk.author)
                ));
                return true;
            }
        }
        if pg_sys::check_functions_in_node(node, Some(check_function), ctx) {
            return true;
        }
        pg_sys::expression_tree_walker(node, Some(walker), ctx)
    }
}

fn type_name(typ: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd string (or "???").
    unsafe {
        CStr::from_ptr(pg_sys::format_type_be(typ))
            .to_string_lossy()
            .into_owned()
    }
}

/// Parse `expr` as one expression: the parser's PL/pgSQL-expression mode
/// reads `<target list> [FROM ...] [WHERE ...] ...`; anything beyond exactly
/// one unnamed target is refused. Returns the raw (unanalysed) expression.
unsafe fn parse_one_expression(expr: &CStr) -> Result<*mut pg_sys::Node, AegisError> {
    let bad = |reason: &str| AegisError::InvalidFilter {
        reason: reason.to_string(),
    };
    // SAFETY: raw_parser returns a palloc'd List of one RawStmt in this mode
    // (or raises a syntax error).
    unsafe {
        let list = pg_sys::raw_parser(expr.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_PLPGSQL_EXPR);
        let stmts = PgList::<pg_sys::RawStmt>::from_pg(list);
        let raw = match stmts.get_ptr(0) {
            Some(r) if stmts.len() == 1 => r,
            _ => return Err(bad("it must be one expression")),
        };
        let sel = (*raw).stmt as *mut pg_sys::SelectStmt;
        if sel.is_null() || (*(sel as *mut pg_sys::Node)).type_ != pg_sys::NodeTag::T_SelectStmt {
            return Err(bad("it must be one expression"));
        }
        let s = &*sel;
        let targets = PgList::<pg_sys::ResTarget>::from_pg(s.targetList);
        if targets.is_empty() {
            return Err(bad("it is empty"));
        }
        if targets.len() != 1
            || !s.distinctClause.is_null()
            || !s.fromClause.is_null()
            || !s.whereClause.is_null()
            || !s.groupClause.is_null()
            || !s.havingClause.is_null()
            || !s.windowClause.is_null()
            || !s.sortClause.is_null()
            || !s.limitOffset.is_null()
            || !s.limitCount.is_null()
            || !s.lockingClause.is_null()
            || !s.intoClause.is_null()
        {
            return Err(bad(
                "it must be one expression, without FROM, WHERE, ORDER BY or other clauses",
            ));
        }
        let target = targets.get_ptr(0).ok_or_else(|| bad("it is empty"))?;
        if !(*target).name.is_null() {
            return Err(bad("it must be an expression, not a named column (AS ...)"));
        }
        Ok((*target).val)
    }
}

/// Validate `expr` as a boolean row filter on `tbl` and return its canonical
/// text (PostgreSQL's deparsed rendering), safe to place in a WHERE clause
/// on that table.
pub(crate) fn row_filter_impl(
    tbl: pg_sys::Oid,
    expr: &str,
    author: pg_sys::Oid,
) -> Result<String, AegisError> {
    let cexpr = CString::new(expr).map_err(|_| AegisError::InvalidFilter {
        reason: "it contains a NUL byte".into(),
    })?;
    // SAFETY: standard parse-analysis sequence (as CreatePolicy does for a
    // policy's USING clause): a parse state with the table as the only range
    // table entry, transformExpr as a WHERE clause, coercion to boolean,
    // collations; then the expression is walked and deparsed. All memory is
    // palloc'd in the current context; the relation stays locked (AccessShare)
    // until the transaction ends.
    unsafe {
        let raw = parse_one_expression(&cexpr)?;
        let rel = pg_sys::relation_open(tbl, pg_sys::AccessShareLock as i32);
        let relname = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_owned();
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = cexpr.as_ptr();
        let nsitem = pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::AccessShareLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
        let qual = pg_sys::transformExpr(pstate, raw, pg_sys::ParseExprKind::EXPR_KIND_WHERE);
        let qual = pg_sys::coerce_to_boolean(pstate, qual, c"only_where".as_ptr());
        pg_sys::assign_expr_collations(pstate, qual);
        let has_sublinks = (*pstate).p_hasSubLinks;
        pg_sys::free_parsestate(pstate);
        pg_sys::relation_close(rel, pg_sys::NoLock as i32);
        if has_sublinks {
            return Err(AegisError::FilterNotAllowed {
                reason: "subqueries are not allowed".into(),
            });
        }
        let mut walk = Walk {
            rel: tbl,
            author,
            refused: None,
        };
        if walker(qual, &mut walk as *mut Walk as *mut std::ffi::c_void) {
            return Err(AegisError::FilterNotAllowed {
                reason: walk.refused.unwrap_or_else(|| "not allowed".into()),
            });
        }
        let ctx = pg_sys::deparse_context_for(relname.as_ptr(), tbl);
        let text = pg_sys::deparse_expression(qual, ctx, false, false);
        Ok(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

/// `aegis.row_filter(tbl regclass, expr text, author regrole) → text`
/// (internal: granted to nobody; set_retention, place_legal_hold and
/// apply_retention call it). The author is the role the filter is
/// evaluated for: it must be able to read every column it names. STABLE:
/// the result depends on the table's definition, the catalog and
/// privileges, not only on the arguments.
#[pg_extern(stable, sql = false)]
fn row_filter(tbl: pg_sys::Oid, expr: &str, author: pg_sys::Oid) -> AegisResult<String> {
    Ok(row_filter_impl(tbl, expr, author)?)
}

// ---------------------------------------------------------------------------
// Pruning the audit trail behind a signed checkpoint
// ---------------------------------------------------------------------------

/// Remove the sealed prefix of the chain whose entries are all older than
/// `before` (never the newest entry, so sealing continues from it). The
/// chain hash at the last removed position becomes a checkpoint signed with
/// the audit_head key; verify_chain() starts from it. Tables that lost
/// entries are re-baselined so verify_table() keeps a starting point for
/// every row. The receipt is itself an audit entry (PRUNE).
fn prune_audit_impl(before: TimestampWithTimeZone) -> Result<serde_json::Value, AegisError> {
    let (receipt, tables) = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                // One sealer or pruner at a time (the lock seal() takes).
                client
                    .update(
                        "LOCK TABLE aegis.audit_chain IN SHARE ROW EXCLUSIVE MODE",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let row = client
                    .select(
                        "SELECT (SELECT max(position) FROM aegis.audit_chain), \
                                (SELECT COALESCE(max(position), 0) FROM aegis.audit_checkpoints), \
                                (SELECT min(c.position) FROM aegis.audit_chain c JOIN aegis.audit_log l \
                                   ON l.xid OPERATOR(pg_catalog.=) c.entry_xid AND l.id OPERATOR(pg_catalog.=) c.entry_id \
                                 WHERE l.statement_time OPERATOR(pg_catalog.>=) $1), \
                                (EXTRACT(EPOCH FROM pg_catalog.now()) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
                                  OPERATOR(pg_catalog.-) 946684800000000",
                        None,
                        &[before.into()],
                    )
                    .map_err(spi_error)?;
                let r = row.first();
                let last: Option<i64> = r.get(1).map_err(spi_error)?;
                let previous: i64 = r.get(2).map_err(spi_error)?.unwrap_or(0);
                let first_kept: Option<i64> = r.get(3).map_err(spi_error)?;
                let time_us: i64 = r.get(4).map_err(spi_error)?.unwrap_or(0);
                let Some(last) = last else {
                    return Ok((
                        serde_json::json!({"entries_pruned": 0, "reason": "the chain is empty"}),
                        Vec::new(),
                    ));
                };
                // Through the entry before the first one to keep, and never
                // the newest (the chain must keep a head to seal onto).
                let through = first_kept.map_or(last, |k| k - 1).min(last - 1);
                if through <= previous {
                    return Ok((
                        serde_json::json!({
                            "entries_pruned": 0,
                            "checkpoint_position": previous,
                            "reason": "no sealed entries older than the cutoff beyond the last checkpoint",
                        }),
                        Vec::new(),
                    ));
                }
                let hash = crate::audit::hash32(
                    client
                        .select(
                            "SELECT chain_hash FROM aegis.audit_chain WHERE position OPERATOR(pg_catalog.=) $1",
                            None,
                            &[through.into()],
                        )
                        .map_err(spi_error)?
                        .first()
                        .get_one::<Vec<u8>>()
                        .map_err(spi_error)?,
                );
                let signature = crate::audit::head_mac(through as u64, &hash, time_us)?;
                let mut tables = Vec::new();
                for t in client
                    .select(
                        "SELECT DISTINCT e.relid::pg_catalog.oid, e.relid::pg_catalog.text FROM aegis.audit_log l \
                         JOIN aegis.audit_chain c ON c.entry_id OPERATOR(pg_catalog.=) l.id \
                              AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                         JOIN aegis.rls_enforced e ON e.relid::pg_catalog.text OPERATOR(pg_catalog.=) l.table_name \
                         WHERE c.position OPERATOR(pg_catalog.<=) $1",
                        None,
                        &[through.into()],
                    )
                    .map_err(spi_error)?
                {
                    if let (Some(o), Some(n)) = (
                        t.get::<pg_sys::Oid>(1).map_err(spi_error)?,
                        t.get::<String>(2).map_err(spi_error)?,
                    ) {
                        tables.push((o, n));
                    }
                }
                let pruned: i64 = crate::audit::with_log_maintenance(
                    || -> Result<i64, AegisError> {
                        let n = client
                        .update(
                            "WITH d AS (DELETE FROM aegis.audit_log l USING aegis.audit_chain c \
                               WHERE c.entry_id OPERATOR(pg_catalog.=) l.id AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                                 AND c.position OPERATOR(pg_catalog.<=) $1 RETURNING 1) \
                             SELECT pg_catalog.count(*) FROM d",
                            None,
                            &[through.into()],
                        )
                        .map_err(spi_error)?
                        .first()
                        .get_one::<i64>()
                        .map_err(spi_error)?
                        .unwrap_or(0);
                        client
                        .update(
                            "DELETE FROM aegis.audit_chain WHERE position OPERATOR(pg_catalog.<=) $1",
                            None,
                            &[through.into()],
                        )
                        .map_err(spi_error)?;
                        Ok(n)
                    },
                )?;
                client
                    .update(
                        "INSERT INTO aegis.audit_checkpoints \
                         (position, chain_hash, time_us, signature, pruned_before, entries_pruned) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        None,
                        &[
                            through.into(),
                            hash.to_vec().into(),
                            time_us.into(),
                            signature.to_vec().into(),
                            before.into(),
                            pruned.into(),
                        ],
                    )
                    .map_err(spi_error)?;
                Ok((
                    serde_json::json!({
                        "entries_pruned": pruned,
                        "previous_checkpoint_position": previous,
                        "checkpoint": {
                            "position": through,
                            "hash": hex::encode(hash),
                            "time_us": time_us,
                            "signature": hex::encode(signature),
                        },
                    }),
                    tables,
                ))
            })
        })
    })?;
    let mut receipt = receipt;
    let mut rebaselined = serde_json::Map::new();
    for (oid, name) in tables {
        let n = crate::audit::audit_baseline_impl(oid)?;
        rebaselined.insert(name, n.into());
    }
    if let serde_json::Value::Object(m) = &mut receipt {
        m.insert(
            "cutoff".into(),
            serde_json::Value::String(before.to_iso_string()),
        );
        m.insert("rebaselined".into(), rebaselined.into());
    }
    if receipt.get("checkpoint").is_some() {
        let doc = crate::audit::Doc::from_json(&receipt.to_string())?;
        crate::audit::write_entry(&crate::audit::NewEntry {
            operation: "PRUNE",
            table_name: None,
            pk: None,
            old_row: None,
            new_row: None,
            detail: Some(&doc),
            content_change: None,
        })?;
    }
    Ok(receipt)
}

/// `aegis.prune_audit(before timestamptz) → jsonb` (superusers, or whom
/// they grant it to).
#[pg_extern(volatile, sql = false)]
fn prune_audit(before: TimestampWithTimeZone) -> AegisResult<pgrx::JsonB> {
    Ok(pgrx::JsonB(prune_audit_impl(before)?))
}

// ---------------------------------------------------------------------------
// Scheduling retention without pg_cron
// ---------------------------------------------------------------------------

/// Seconds between the Unix and PostgreSQL epochs.
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

fn cron_next_impl(
    schedule: &str,
    after: TimestampWithTimeZone,
) -> Result<Option<TimestampWithTimeZone>, AegisError> {
    if !after.is_finite() {
        return Ok(None);
    }
    let s = aegis_core::cron::Schedule::parse(schedule)?;
    let unix = after.into_inner().div_euclid(1_000_000) + PG_EPOCH_UNIX_SECS;
    Ok(s.next_after(unix)
        .and_then(|n| TimestampWithTimeZone::try_from((n - PG_EPOCH_UNIX_SECS) * 1_000_000).ok()))
}

/// `aegis.cron_next(schedule text, after timestamptz) → timestamptz`: the
/// first time after `after` (UTC) the schedule fires; 22023 for a schedule
/// that does not parse or never fires.
#[pg_extern(immutable, parallel_safe, sql = false)]
fn cron_next(
    schedule: &str,
    after: TimestampWithTimeZone,
) -> AegisResult<Option<TimestampWithTimeZone>> {
    Ok(cron_next_impl(schedule, after)?)
}

/// Is this database's worker retention schedule due? (The sealer asks every
/// round, read-only, and starts the retention worker when it is.)
pub(crate) fn scheduled_retention_due() -> Result<bool, AegisError> {
    with_safe_search_path(|| {
        Ok(crate::spi::get_one::<bool>(
            "SELECT pg_catalog.to_regclass('aegis.retention_schedule') IS NOT NULL \
                    AND EXISTS (SELECT 1 FROM aegis.retention_schedule \
                                WHERE via OPERATOR(pg_catalog.=) 'worker' \
                                  AND next_run_at OPERATOR(pg_catalog.<=) pg_catalog.now())",
            &[],
        )
        .map_err(spi_error)?
        .unwrap_or(false))
    })
}

/// The worker's scheduled run failed as a whole (cancelled by
/// `aegis.retention_timeout`, an error outside any one policy): say so in
/// the schedule and wait for its next time, rather than start again at
/// once.
pub(crate) fn record_failed_retention(why: &str) -> Result<(), AegisError> {
    with_safe_search_path(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "UPDATE aegis.retention_schedule SET last_run_at = pg_catalog.now(), \
                            last_status = 'failed: ' OPERATOR(pg_catalog.||) $1, \
                            next_run_at = aegis.cron_next(schedule, pg_catalog.now()) \
                     WHERE via OPERATOR(pg_catalog.=) 'worker'",
                    None,
                    &[why.into()],
                )
                .map_err(spi_error)?;
            Ok(())
        })
    })
}

/// One round of the background worker's retention schedule: if this
/// database has a worker schedule that is due, run apply_retention() and
/// move the schedule on. Returns whether it ran.
pub(crate) fn run_scheduled_retention() -> Result<bool, AegisError> {
    with_safe_search_path(|| {
        Spi::connect_mut(|client| {
            let exists = client
                .select(
                    "SELECT pg_catalog.to_regclass('aegis.retention_schedule') IS NOT NULL",
                    None,
                    &[],
                )
                .map_err(spi_error)?
                .first()
                .get_one::<bool>()
                .map_err(spi_error)?
                .unwrap_or(false);
            if !exists {
                return Ok(false);
            }
            // A row lock: a write (select() would run it read-only).
            let due = client
                .update(
                    "SELECT schedule FROM aegis.retention_schedule \
                     WHERE via OPERATOR(pg_catalog.=) 'worker' AND next_run_at OPERATOR(pg_catalog.<=) pg_catalog.now() \
                     FOR UPDATE SKIP LOCKED",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
            // Nothing due (the common case, every round): no row to read.
            if due.is_empty() {
                return Ok(false);
            }
            let Some(schedule) = due.first().get_one::<String>().map_err(spi_error)? else {
                return Ok(false);
            };
            let summary = client
                .select(
                    "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE rows_affected IS NULL), \
                            COALESCE(pg_catalog.sum(rows_affected), 0)::pg_catalog.int8, \
                            COALESCE(pg_catalog.sum(rows_locked), 0)::pg_catalog.int8 \
                     FROM aegis.apply_retention()",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
            let row = summary.first();
            let policies: i64 = row.get(1).map_err(spi_error)?.unwrap_or(0);
            let skipped: i64 = row.get(2).map_err(spi_error)?.unwrap_or(0);
            let deleted: i64 = row.get(3).map_err(spi_error)?.unwrap_or(0);
            let locked: i64 = row.get(4).map_err(spi_error)?.unwrap_or(0);
            let mut status = if skipped == 0 {
                format!("ok: {deleted} rows deleted, {policies} policies")
            } else {
                format!("{skipped} of {policies} policies skipped (see the server log); {deleted} rows deleted")
            };
            if locked > 0 {
                status = format!(
                    "{}; {locked} expired rows locked by other transactions, kept until a later run",
                    status.trim_start_matches("ok: ")
                );
            }
            client
                .update(
                    "UPDATE aegis.retention_schedule SET last_run_at = pg_catalog.now(), last_status = $1, \
                     next_run_at = aegis.cron_next($2, pg_catalog.now())",
                    None,
                    &[status.into(), schedule.into()],
                )
                .map_err(spi_error)?;
            Ok(true)
        })
    })
}

// ---------------------------------------------------------------------------
// Right to erasure
// ---------------------------------------------------------------------------

/// `aegis.mentions(text, identifier) → boolean`: does the text mention the
/// identifier (ASCII case-insensitive, not inside a longer word)?
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn mentions(text: &str, identifier: &str) -> bool {
    aegis_core::erasure::mentions(text, identifier)
}

/// `aegis.erase_mentions(text, identifier) → text`: every mention replaced
/// by `[ERASED]`.
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn erase_mentions(text: &str, identifier: &str) -> String {
    aegis_core::erasure::erase_mentions(text, identifier).unwrap_or_else(|| text.to_string())
}

/// A string as it appears inside jsonb's text form (escaped, unquoted),
/// lowercased: what the candidate search looks for.
fn json_needle(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_ascii_lowercase()
}

/// One audit entry to tombstone: (xid, id, per column: the changes).
type Tombstone = (
    String,
    i64,
    Vec<(&'static str, Vec<aegis_core::erasure::Change>)>,
);

/// Replace the subject's data inside audit entries (their pseudonym in
/// `subject_id`/`pii` values, mentions in free text) with tombstones and
/// mark the entries erased. The stored data digest is kept, so the entry
/// hash and the chain still verify; what each entry holds afterwards is
/// accounted for by the erasure receipt, which lists every tombstoned entry
/// with the digest of its new content (verify_chain() checks it). Returns
/// `{"count": n, "tombstoned": [[xid, id, digest], ...]}` (with `dry_run`,
/// only the count of entries that would be tombstoned). Receipts themselves
/// (ERASURE, TOMBSTONES) are never tombstoned: they name the subject only
/// by pseudonym, on purpose.
fn audit_tombstone_impl(subject: &str, dry_run: bool) -> Result<serde_json::Value, AegisError> {
    let pseudonym = crate::audit::subject_pseudonym(subject);
    let id_needle = json_needle(subject);
    let pseudo_needle = pseudonym.as_deref().map(json_needle);
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                let rows = client
                    .select(
                        "SELECT l.xid::pg_catalog.text, l.id, l.pk::pg_catalog.text, \
                                l.old_row::pg_catalog.text, l.new_row::pg_catalog.text \
                         FROM aegis.audit_log l, \
                              LATERAL (SELECT pg_catalog.lower(pg_catalog.concat_ws(' ', l.pk::pg_catalog.text, \
                                         l.old_row::pg_catalog.text, l.new_row::pg_catalog.text)) AS t) x \
                         WHERE l.operation OPERATOR(pg_catalog.<>) ALL ('{ERASURE,TOMBSTONES}') \
                           AND (pg_catalog.strpos(x.t, $1) OPERATOR(pg_catalog.>) 0 \
                                OR ($2::pg_catalog.text IS NOT NULL AND pg_catalog.strpos(x.t, $2) OPERATOR(pg_catalog.>) 0)) \
                         ORDER BY l.xid, l.id",
                        None,
                        &[id_needle.into(), pseudo_needle.into()],
                    )
                    .map_err(spi_error)?;
                let mut work: Vec<Tombstone> = Vec::new();
                for row in rows {
                    let xid: String = row.get(1).map_err(spi_error)?.unwrap_or_default();
                    let id: i64 = row.get(2).map_err(spi_error)?.unwrap_or(0);
                    let mut cols = Vec::new();
                    for (i, col) in [(3, "pk"), (4, "old_row"), (5, "new_row")] {
                        let Some(text) = row.get::<String>(i).map_err(spi_error)? else {
                            continue;
                        };
                        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                            AegisError::Internal(format!(
                                "audit entry {id}: {col} is not JSON: {e}"
                            ))
                        })?;
                        let changes = aegis_core::erasure::scrub(&v, pseudonym.as_deref(), subject);
                        if !changes.is_empty() {
                            cols.push((col, changes));
                        }
                    }
                    if !cols.is_empty() {
                        work.push((xid, id, cols));
                    }
                }
                let n = work.len() as i64;
                if dry_run {
                    return Ok(serde_json::json!({ "count": n }));
                }
                let keys: Vec<(String, i64)> =
                    work.iter().map(|(x, i, _)| (x.clone(), *i)).collect();
                crate::audit::with_log_maintenance(|| -> Result<(), AegisError> {
                    for (xid, id, cols) in work {
                        // Each changed string is set in place (jsonb_set), so
                        // every other value keeps its exact stored form.
                        let mut args: Vec<pgrx::datum::DatumWithOid> = vec![xid.into(), id.into()];
                        let mut sets = Vec::new();
                        for (col, changes) in cols {
                            let mut expr = col.to_string();
                            for c in changes {
                                let p = args.len() + 1;
                                expr = format!(
                                    "pg_catalog.jsonb_set({expr}, ${p}::pg_catalog.text[], \
                                     pg_catalog.to_jsonb(${}::pg_catalog.text))",
                                    p + 1
                                );
                                args.push(c.path.into());
                                args.push(c.value.into());
                            }
                            sets.push(format!("{col} = {expr}"));
                        }
                        client
                            .update(
                                &format!(
                                    "UPDATE aegis.audit_log SET {}, erased_at = pg_catalog.now() \
                                     WHERE xid OPERATOR(pg_catalog.=) $1::pg_catalog.xid8 \
                                       AND id OPERATOR(pg_catalog.=) $2",
                                    sets.join(", ")
                                ),
                                None,
                                &args,
                            )
                            .map_err(spi_error)?;
                    }
                    Ok(())
                })?;
                // The digest of each entry's content now, read back as the
                // verifier reads it.
                let mut tombstoned = Vec::with_capacity(keys.len());
                for (xid, id) in keys {
                    let row = client
                        .select(
                            "SELECT pg_catalog.convert_to(pk::pg_catalog.text, 'UTF8'), \
                                    pg_catalog.convert_to(old_row::pg_catalog.text, 'UTF8'), \
                                    pg_catalog.convert_to(new_row::pg_catalog.text, 'UTF8'), \
                                    pg_catalog.convert_to(detail::pg_catalog.text, 'UTF8') \
                             FROM aegis.audit_log \
                             WHERE xid OPERATOR(pg_catalog.=) $1::pg_catalog.xid8 AND id OPERATOR(pg_catalog.=) $2",
                            None,
                            &[xid.clone().into(), id.into()],
                        )
                        .map_err(spi_error)?;
                    let row = row.first();
                    let text = |i: usize| -> Result<Option<String>, AegisError> {
                        Ok(row
                            .get::<Vec<u8>>(i)
                            .map_err(spi_error)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned()))
                    };
                    let digest = crate::audit::data_digest_of(
                        text(1)?.as_deref(),
                        text(2)?.as_deref(),
                        text(3)?.as_deref(),
                        text(4)?.as_deref(),
                    );
                    tombstoned.push(serde_json::json!([xid, id, hex::encode(digest)]));
                }
                Ok(serde_json::json!({ "count": n, "tombstoned": tombstoned }))
            })
        })
    })
}

/// Write one TOMBSTONES entry listing every entry marked erased with the
/// digest of what it holds now. The 0.6.0 update runs it once, so entries
/// erased by 0.5.0 (whose receipts did not list them) stay verifiable; run
/// again it is itself recorded, as everything a superuser does here is.
fn attest_tombstones_impl() -> Result<i64, AegisError> {
    let listed = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let mut out = Vec::new();
                for row in client
                    .select(
                        "SELECT xid::pg_catalog.text, id, pg_catalog.convert_to(pk::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(old_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(new_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(detail::pg_catalog.text, 'UTF8') \
                         FROM aegis.audit_log WHERE erased_at IS NOT NULL ORDER BY xid, id",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?
                {
                    let text = |i: usize| -> Result<Option<String>, AegisError> {
                        Ok(row
                            .get::<Vec<u8>>(i)
                            .map_err(spi_error)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned()))
                    };
                    let xid: String = row.get(1).map_err(spi_error)?.unwrap_or_default();
                    let id: i64 = row.get(2).map_err(spi_error)?.unwrap_or(0);
                    let digest = crate::audit::data_digest_of(
                        text(3)?.as_deref(),
                        text(4)?.as_deref(),
                        text(5)?.as_deref(),
                        text(6)?.as_deref(),
                    );
                    out.push(serde_json::json!([xid, id, hex::encode(digest)]));
                }
                Ok::<_, AegisError>(out)
            })
        })
    })?;
    let n = listed.len() as i64;
    if n > 0 {
        let detail = serde_json::json!({
            "reason": "entries erased before 0.6.0, whose erasure receipts did not list them",
            "tombstoned": listed,
        });
        let doc = crate::audit::Doc::from_json(&detail.to_string())?;
        crate::audit::write_entry(&crate::audit::NewEntry {
            operation: "TOMBSTONES",
            table_name: None,
            pk: None,
            old_row: None,
            new_row: None,
            detail: Some(&doc),
            content_change: None,
        })?;
    }
    Ok(n)
}

/// `aegis.attest_tombstones() → bigint` (internal: granted to nobody; the
/// 0.6.0 update script calls it).
#[pg_extern(volatile, sql = false)]
fn attest_tombstones() -> AegisResult<i64> {
    Ok(attest_tombstones_impl()?)
}

/// `aegis.audit_tombstone(subject text, dry_run boolean) → bigint`
/// (internal: erase_subject() calls it; granted to nobody).
#[pg_extern(volatile, strict, sql = false)]
fn audit_tombstone(subject: &str, dry_run: bool) -> AegisResult<pgrx::JsonB> {
    Ok(pgrx::JsonB(audit_tombstone_impl(subject, dry_run)?))
}
