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
