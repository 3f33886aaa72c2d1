//! What differs between PostgreSQL 15, 16, 17 and 18 in the server APIs
//! pg_aegis calls: one function per difference, chosen by the `pgNN`
//! feature, so callers never test versions themselves.

use pgrx::pg_sys;

/// The attributes of a tuple descriptor (`natts` of them, dropped ones
/// included). PostgreSQL 18 keeps compact attributes first and the full
/// ones after them.
///
/// # Safety
/// `tupdesc` must be a valid tuple descriptor that outlives the slice.
pub(crate) unsafe fn tupdesc_attrs<'a>(
    tupdesc: pg_sys::TupleDesc,
) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: the caller's tuple descriptor; natts attributes follow.
    unsafe {
        let natts = (*tupdesc).natts.max(0) as usize;
        #[cfg(not(feature = "pg18"))]
        {
            (*tupdesc).attrs.as_slice(natts)
        }
        #[cfg(feature = "pg18")]
        {
            let first: *const pg_sys::FormData_pg_attribute =
                (*tupdesc).compact_attrs.as_ptr().add(natts).cast();
            std::slice::from_raw_parts(first, natts)
        }
    }
}

/// Whether `role` may execute the function `func` (PostgreSQL 16 replaced
/// `pg_proc_aclcheck` by the generic `object_aclcheck`).
///
/// # Safety
/// A backend with a transaction; `func` a function that exists.
pub(crate) unsafe fn may_execute(func: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: a syscache ACL check on the backend's main thread.
    unsafe {
        #[cfg(feature = "pg15")]
        let r = pg_sys::pg_proc_aclcheck(func, role, pg_sys::ACL_EXECUTE as pg_sys::AclMode);
        #[cfg(not(feature = "pg15"))]
        let r = pg_sys::object_aclcheck(
            pg_sys::ProcedureRelationId,
            func,
            role,
            pg_sys::ACL_EXECUTE as pg_sys::AclMode,
        );
        r == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// Whether the current user has every permission a planned statement's
/// range table needs, without raising (PostgreSQL 16 moved the permissions
/// out of the range table into `permInfos`).
///
/// # Safety
/// `stmt` must be a valid planned statement.
pub(crate) unsafe fn statement_permitted(stmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: the caller's planned statement.
    unsafe {
        #[cfg(feature = "pg15")]
        {
            pg_sys::ExecCheckRTPerms((*stmt).rtable, false)
        }
        #[cfg(not(feature = "pg15"))]
        {
            pg_sys::ExecCheckPermissions((*stmt).rtable, (*stmt).permInfos, false)
        }
    }
}

/// A planned statement's query id, 0 when none was computed (an unsigned
/// integer up to PostgreSQL 17, a signed one from 18: the same 64 bits).
///
/// # Safety
/// `stmt` must be a valid planned statement.
pub(crate) unsafe fn query_id(stmt: *const pg_sys::PlannedStmt) -> u64 {
    // SAFETY: the caller's planned statement.
    #[allow(clippy::unnecessary_cast)]
    unsafe {
        (*stmt).queryId as u64
    }
}
