//! The part of the DDL guard (sql/70_audit.sql) that must run before a
//! command starts, called from the utility hook (src/read_audit_hooks.c).
//!
//! `ALTER TABLE … DETACH PARTITION … CONCURRENTLY` commits its first step
//! (the partition marked as being detached; its rows are no longer shown
//! through the table) in a transaction of its own before any event trigger
//! fires, so the `ddl_command_end` guard can refuse the command but not undo
//! that step. Here it is refused before it starts, for every role but a
//! superuser (whose command the event trigger records as usual).

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
    // SAFETY: plain backend state and syscache lookups.
    unsafe {
        if pg_sys::superuser()
            || pg_sys::get_extension_oid(c"pg_aegis".as_ptr(), true) == pg_sys::InvalidOid
        {
            return;
        }
    }
    // The guarded relations, as the event triggers see them: protected
    // tables, tables whose row security pg_aegis enforces, and every
    // relation the guard remembers (partitions included). Read-only, with
    // the extension owner's rights (the catalogs have no grants).
    let query = "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                 WHERE c.oid OPERATOR(pg_catalog.=) $1 \
                   AND (EXISTS (SELECT FROM aegis.protected_tables p WHERE p.relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1) \
                     OR EXISTS (SELECT FROM aegis.rls_enforced e WHERE e.relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1) \
                     OR EXISTS (SELECT FROM aegis.guard_states g WHERE g.relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1))";
    // SAFETY: an active snapshot for the query, pushed only when none is
    // (popped below; an error pops it with the transaction).
    let pushed = unsafe {
        let none = !pg_sys::ActiveSnapshotSet();
        if none {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        none
    };
    let name = with_safe_search_path(|| {
        as_extension_owner(|| {
            crate::spi::get_one::<String>(query, &[relid.into()]).map_err(spi_error)
        })
    });
    if pushed {
        // SAFETY: the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    let name = match name {
        Ok(Some(name)) => name,
        Ok(None) => return,
        Err(e) => raise(e),
    };
    let user = current_user_name();
    // The refusal goes to the server log as well, like the event triggers'
    // (it survives the rollback).
    let line = serde_json::json!({
        "command": "ALTER TABLE",
        "change": "detaching a partition concurrently from protected table",
        "tables": [name],
        "user": user,
        "event": "ddl_refused",
    });
    pgrx::log!("pg_aegis: {line}");
    raise(
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied: detaching a partition concurrently from protected table {name}"),
            "pg_aegis",
        )
        .set_detail(
            "DETACH PARTITION CONCURRENTLY commits its first step before any check could undo it; \
             the partitions of tables protected by pg_aegis stay attached.",
        )
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
