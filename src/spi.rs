//! Read-only SPI helpers.
//!
//! pgrx's `Spi::get_one*`, `Spi::run*`, `SpiClient::update` and
//! `open_cursor_mut` "mark the transaction mutable": they call
//! `GetCurrentTransactionId()`, which assigns a transaction id. That is an
//! error in a parallel worker, in a parallel-mode leader ("cannot assign
//! XIDs during a parallel operation") and on a hot standby ("cannot assign
//! TransactionIds during recovery"). Code that only reads — the read-audit
//! hooks, decryption, verification, masking views — must use these helpers,
//! which run the query through `SpiClient::select` (read-only SPI). clippy.toml
//! forbids the xid-assigning calls outside the places that write.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::prelude::*;

/// The first column of the first row of a read-only query, or None when it
/// returns no row or NULL.
pub(crate) fn get_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<A>, pgrx::spi::SpiError> {
    Spi::connect(|client| {
        let table = client.select(query, Some(1), args)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_one::<A>()
    })
}

/// Run `f` with an active snapshot: the one in place, or the transaction's,
/// pushed for the call and popped afterwards (an error pops it with the
/// transaction). Hooks and the executor's end run without one sometimes;
/// SPI needs one.
pub(crate) fn with_active_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushes a snapshot only when none is active, popped below.
    let pushed = unsafe {
        let none = !pg_sys::ActiveSnapshotSet();
        if none {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        none
    };
    let r = f();
    if pushed {
        // SAFETY: the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    r
}

/// The first column of the first row of a read-only query, as a boolean
/// (false for no row or NULL), run under the latest snapshot instead of the
/// transaction's: what has committed by now, even in a repeatable-read or
/// serializable transaction whose snapshot is older (what PostgreSQL's own
/// foreign-key checks do to see concurrent changes). Inside an SPI
/// connection only.
pub(crate) fn bool_in_latest_snapshot(
    query: &std::ffi::CStr,
    args: &[DatumWithOid<'_>],
) -> Result<bool, pgrx::spi::SpiError> {
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| {
            a.datum()
                .map(|d| d.sans_lifetime())
                .unwrap_or(pg_sys::Datum::from(0usize))
        })
        .collect();
    let nulls: Vec<std::os::raw::c_char> = args
        .iter()
        .map(|a| (if a.datum().is_some() { b' ' } else { b'n' }) as std::os::raw::c_char)
        .collect();
    // SAFETY: an SPI connection is open (the caller's); the plan is
    // prepared from a valid query string with one type per argument, run
    // read-only under a snapshot taken now (SPI pushes and pops it), and
    // freed; the result is read before anything else runs through SPI.
    unsafe {
        let plan = pg_sys::SPI_prepare(query.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            return Err(pgrx::spi::SpiError::SpiError(
                pgrx::spi::SpiErrorCodes::try_from(pg_sys::SPI_result)
                    .unwrap_or(pgrx::spi::SpiErrorCodes::Unconnected),
            ));
        }
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            1,
        );
        let mut found = false;
        if rc == pg_sys::SPI_OK_SELECT as i32
            && pg_sys::SPI_processed > 0
            && !pg_sys::SPI_tuptable.is_null()
        {
            let tt = pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*(*tt).vals, (*tt).tupdesc, 1, &mut isnull);
            found = !isnull && bool::from_datum(d, false).unwrap_or(false);
        }
        pg_sys::SPI_freeplan(plan);
        if rc < 0 {
            return Err(pgrx::spi::SpiError::SpiError(
                pgrx::spi::SpiErrorCodes::try_from(rc)
                    .unwrap_or(pgrx::spi::SpiErrorCodes::Unconnected),
            ));
        }
        Ok(found)
    }
}
