//! The part of the DDL guard (sql/70_audit.sql) that must run before a
//! command starts, called from the utility hook (src/read_audit_hooks.c).
//!
//! `ALTER TABLE … DETACH PARTITION … CONCURRENTLY` commits its first step
//! (the partition marked as being detached; its rows are no longer shown
//! through the table) in a transaction of its own before any event trigger
//! fires, so the `ddl_command_end` guard can refuse the command but not undo
//! that step; `REASSIGN OWNED` fires no event trigger at all. Here both are
//! refused before they start, for every role but a superuser (whose DETACH
//! the event trigger records as usual).

use crate::error::raise;
use crate::keyring::{as_extension_owner, spi_error, with_safe_search_path};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Refuse `ALTER TABLE relid DETACH PARTITION … CONCURRENTLY` when `relid`
/// is a protected table, or a partition of one, and the user is not a
/// superuser.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn aegis_guard_detach_concurrently(relid: pg_sys::Oid) {
    let names = guarded(
        "c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
        pg_sys::Datum::from(relid),
        pg_sys::OIDOID,
    );
    refuse(
        names,
        "ALTER TABLE",
        "detaching a partition concurrently from protected table",
        "DETACH PARTITION CONCURRENTLY commits its first step before any check could undo it; \
         the partitions of tables protected by pg_aegis stay attached.",
    );
}

/// Refuse `REASSIGN OWNED BY …` (which fires no event trigger) when one of
/// the roles owns a protected table or partition, unless the user is a
/// superuser.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_guard_reassign_owned(stmt: *mut pg_sys::ReassignOwnedStmt) {
    // SAFETY: a parsed REASSIGN OWNED statement; roles is a List of RoleSpec.
    let roles: Vec<pg_sys::Oid> = unsafe {
        pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*stmt).roles)
            .iter_ptr()
            .map(|r| pg_sys::get_rolespec_oid(r, true))
            .filter(|o| *o != pg_sys::InvalidOid)
            .collect()
    };
    let Some(roles) = (!roles.is_empty()).then(|| roles.into_datum()).flatten() else {
        return;
    };
    let names = guarded(
        "c.relowner OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])",
        roles,
        pg_sys::OIDARRAYOID,
    );
    refuse(
        names,
        "REASSIGN OWNED",
        "changing the owner of protected table",
        "REASSIGN OWNED fires no event trigger; the owners of tables protected by pg_aegis \
         change only through ALTER TABLE ... OWNER TO, which the DDL guard records.",
    );
}

/// After `REASSIGN OWNED` (which fires no event trigger): what the DDL
/// guard's event trigger does after any other command, `aegis.guard_verify`
/// (refused for non-superusers if it left a protected table changed: the
/// owner of a view or function its policies or rules use; recorded for
/// superusers).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn aegis_guard_after_reassign_owned() {
    // SAFETY: a syscache lookup.
    if unsafe { pg_sys::get_extension_oid(c"pg_aegis".as_ptr(), true) } == pg_sys::InvalidOid {
        return;
    }
    // A write (a superuser's change is recorded): the command has a
    // transaction id already. Run as the user, like the event trigger.
    let r = crate::spi::with_active_snapshot(|| {
        with_safe_search_path(|| {
            Spi::connect_mut(|client| {
                client
                    .update("SELECT aegis.guard_verify('REASSIGN OWNED')", None, &[])
                    .map(|_| ())
                    .map_err(spi_error)
            })
        })
    });
    if let Err(e) = r {
        raise(e);
    }
}

/// The guarded relations (protected tables, tables whose row security
/// pg_aegis enforces, and every relation the DDL guard remembers,
/// partitions included) that match `filter` on pg_class `c`, by name;
/// nothing for a superuser or where pg_aegis is not installed. Read-only,
/// with the extension owner's rights (the catalogs have no grants).
fn guarded(filter: &str, arg: pg_sys::Datum, typoid: pg_sys::Oid) -> Vec<String> {
    // SAFETY: plain backend state and syscache lookups.
    unsafe {
        if pg_sys::superuser()
            || pg_sys::get_extension_oid(c"pg_aegis".as_ptr(), true) == pg_sys::InvalidOid
        {
            return Vec::new();
        }
    }
    let query = format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE ({filter}) \
           AND (c.oid IN (SELECT p.relid::pg_catalog.oid FROM aegis.protected_tables p) \
             OR c.oid IN (SELECT e.relid::pg_catalog.oid FROM aegis.rls_enforced e) \
             OR c.oid IN (SELECT g.relid::pg_catalog.oid FROM aegis.guard_states g)) \
         ORDER BY 1"
    );
    let names = crate::spi::with_active_snapshot(|| {
        with_safe_search_path(|| {
            as_extension_owner(|| {
                Spi::connect(|client| {
                    // SAFETY: the datum is of the type named.
                    let args = [unsafe { pgrx::datum::DatumWithOid::new(arg, typoid) }];
                    let mut out = Vec::new();
                    for row in client.select(&query, None, &args).map_err(spi_error)? {
                        if let Some(n) = row.get::<String>(1).map_err(spi_error)? {
                            out.push(n);
                        }
                    }
                    Ok(out)
                })
            })
        })
    });
    match names {
        Ok(n) => n,
        Err(e) => raise(e),
    }
}

/// Refuse the command if it touches guarded relations: a JSON line in the
/// server log (it survives the rollback, like the event triggers') and
/// 42501.
fn refuse(names: Vec<String>, command: &str, change: &str, detail: &str) {
    if names.is_empty() {
        return;
    }
    let user = current_user_name();
    let line = serde_json::json!({
        "command": command,
        "change": change,
        "tables": names,
        "user": user,
        "event": "ddl_refused",
    });
    pgrx::log!("pg_aegis: {line}");
    raise(
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied: {change} {}", names.join(", ")),
            "pg_aegis",
        )
        .set_detail(detail)
        .set_hint("An aegis_admin can unprotect the table first (aegis.unprotect), which is itself audited."),
    )
}

fn current_user_name() -> String {
    // SAFETY: the current user exists while a command runs.
    unsafe {
        let p = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), true);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
