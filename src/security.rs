//! Running code with no more rights than it should have.
//!
//! pg_aegis's definer-rights paths (retention, erasure) must change rows of
//! user tables that the caller may not be able to see. Whatever such a
//! statement makes PostgreSQL run — triggers, CHECK constraints, domain
//! constraints, defaults, stored generated columns, index expressions and
//! partial-index predicates, casts and operators of the table's types, rules,
//! row-level security policies — belongs to the table's owner. PostgreSQL's
//! own maintenance commands (VACUUM, ANALYZE, REINDEX, REFRESH MATERIALIZED
//! VIEW, CLUSTER) solve the same problem by switching to the table owner in a
//! *security-restricted operation*; so does this module:
//!
//! * statements that change a user table run as the **table owner**, with
//!   `SECURITY_RESTRICTED_OPERATION` (no SET ROLE, no SET SESSION
//!   AUTHORIZATION, no temporary objects or held cursors that outlive it) and
//!   `SECURITY_NOFORCE_RLS` (the owner is exempt from its own FORCE ROW LEVEL
//!   SECURITY, as in foreign-key checks), so any code the owner planted runs
//!   with the owner's own rights and nothing more;
//! * expressions a caller wrote (retention and legal-hold filters) select
//!   rows as their **author**, in the same kind of restricted operation,
//!   with the author's privileges and row-level security, so a filter can
//!   never tell its author anything about rows or columns they cannot read.
//!
//! The switch is undone when the closure returns, and by PostgreSQL itself if
//! it raises an error (subtransaction and transaction abort restore the user
//! id and security context saved when they began).

use pgrx::prelude::*;

use crate::error::{AegisError, AegisResult};
use crate::keyring::{spi_error, with_safe_search_path};

/// Run `f` as `role` inside a security-restricted operation. With
/// `noforce_rls`, the role is exempt from FORCE ROW LEVEL SECURITY on tables
/// it owns (and only those: RLS of other owners' tables still applies).
pub(crate) fn restricted<R>(
    role: pg_sys::Oid,
    noforce_rls: bool,
    f: impl FnOnce() -> Result<R, AegisError>,
) -> Result<R, AegisError> {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx: i32 = 0;
    let mut ctx =
        pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    if noforce_rls {
        ctx |= pg_sys::SECURITY_NOFORCE_RLS as i32;
    }
    // SAFETY: reads and sets the backend's current user id and security
    // context; restored below on success, by (sub)transaction abort on error.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(role, saved_ctx | ctx);
    }
    let r = f();
    // SAFETY: restores exactly what was read above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    r
}

/// Run one statement as `role` in a security-restricted operation (see
/// [`restricted`]) and return its rows, every column as text (the query
/// casts them); a statement without a result set returns one row holding
/// the number of rows it processed. Parameters are bound as text (`$1` …,
/// cast in the query), never spliced.
fn run_restricted_impl(
    role: pg_sys::Oid,
    target: pg_sys::Oid,
    noforce_rls: bool,
    query: &str,
    args: Vec<Option<String>>,
) -> Result<Vec<Vec<Option<String>>>, AegisError> {
    // SAFETY: a syscache lookup.
    if unsafe {
        !pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            pg_sys::Datum::from(role),
            0.into(),
            0.into(),
            0.into(),
        )
    } {
        return Err(AegisError::Internal(format!(
            "role {} does not exist",
            role.to_u32()
        )));
    }
    let args: Vec<pgrx::datum::DatumWithOid> = args.into_iter().map(|a| a.into()).collect();
    // Settings the owner's code changes while it runs (a plain SET or
    // set_config() in a trigger outlives the trigger, and would override
    // the SET clauses of the definer function that called us: its
    // search_path, its TimeZone) are undone when the statement ends, as
    // VACUUM and ANALYZE do around an owner's index expressions.
    // SAFETY: standard GUC nesting; popped below, or by (sub)transaction
    // abort on error.
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    let r = with_safe_search_path(|| {
        restricted(role, noforce_rls, || {
            crate::read_audit::as_maintenance(query, target, || {
                crate::audit::as_lifecycle_statement(target, || {
                    Spi::connect_mut(|client| {
                        let table = client.update(query, None, &args).map_err(spi_error)?;
                        // No tuple table: DML without RETURNING; its row count.
                        let Ok(ncols) = table.columns() else {
                            return Ok(vec![vec![Some(table.len().to_string())]]);
                        };
                        let mut out = Vec::with_capacity(table.len());
                        for row in table {
                            let mut cols = Vec::with_capacity(ncols);
                            for i in 1..=ncols {
                                cols.push(row.get::<String>(i).map_err(spi_error)?);
                            }
                            out.push(cols);
                        }
                        Ok(out)
                    })
                })
            })
        })
    });
    // SAFETY: pops exactly the level pushed above, discarding what was set
    // inside it.
    unsafe { pg_sys::AtEOXact_GUC(false, level) };
    r
}

/// `aegis.run_restricted(role oid, target regclass, noforce_rls boolean,
/// query text, args text[]) → setof text[]` (internal: granted to nobody;
/// apply_retention() and erase_subject() call it for every statement on a
/// user table, `target`).
#[pg_extern(volatile, sql = false)]
fn run_restricted(
    role: pg_sys::Oid,
    target: pg_sys::Oid,
    noforce_rls: bool,
    query: &str,
    args: Vec<Option<String>>,
) -> AegisResult<SetOfIterator<'static, Vec<Option<String>>>> {
    Ok(SetOfIterator::new(run_restricted_impl(
        role,
        target,
        noforce_rls,
        query,
        args,
    )?))
}
