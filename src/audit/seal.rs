//! Sealing: linking committed entries into `aegis.audit_chain`.

use super::*;

pub(crate) fn hash32(v: Option<Vec<u8>>) -> [u8; 32] {
    let mut h = [0u8; 32];
    if let Some(v) = v {
        if v.len() == 32 {
            h.copy_from_slice(&v);
        }
    }
    h
}

/// How many entries one sealing round reads at a time.
pub(super) const SEAL_BATCH: i64 = 20_000;

/// How long the background sealer waits for the chain's lock before it
/// gives up this round (and reports who holds it).
pub(super) const WORKER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who holds a lock on aegis.audit_chain that a sealer's lock conflicts
/// with (pid, role, application, since when), for the worker's report.
pub(super) fn chain_lock_holders() -> String {
    crate::spi::get_one::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.format('pid %s (role %s, application %L, transaction since %s)', \
                l.pid, COALESCE(a.usename::pg_catalog.text, '?'), a.application_name, a.xact_start), '; ' ORDER BY l.pid) \
         FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
         WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted \
           AND l.relation OPERATOR(pg_catalog.=) 'aegis.audit_chain'::pg_catalog.regclass \
           AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
                                                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
           AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
           AND l.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,\
ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}')",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "unknown (the lock was released meanwhile)".into())
}

/// One sealing round: by a caller (aegis.seal(): waits for the chain's
/// lock, and must not hold it past its own statement) or by the background
/// sealer (`worker`: waits at most WORKER_LOCK_WAIT, then reports who holds
/// the lock and leaves sealing to its next round).
pub(crate) fn seal_impl(worker: bool) -> Result<i64, AegisError> {
    // SAFETY: reads the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(AegisError::SealIsolation);
    }
    // A lock taken in a transaction block lasts until COMMIT: the
    // background sealer (and every other sealer) would wait for whoever
    // keeps it open. Only a superuser, who can stop the worker anyway, may.
    // SAFETY: backend state.
    if !worker && unsafe { pg_sys::IsTransactionBlock() && !pg_sys::superuser() } {
        return Err(AegisError::SealInTransactionBlock);
    }
    if worker {
        let chain = aegis_relid(c"audit_chain")?;
        let started = std::time::Instant::now();
        // SAFETY: a conditional lock request; held to the end of the
        // transaction like LOCK TABLE's.
        while !unsafe {
            pg_sys::ConditionalLockRelationOid(
                chain,
                pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE,
            )
        } {
            if started.elapsed() >= WORKER_LOCK_WAIT {
                return Err(AegisError::SealerBlocked {
                    holders: chain_lock_holders(),
                });
            }
            pgrx::check_for_interrupts!();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                // One sealer at a time; writers are never blocked by this.
                // (The worker holds the lock already.)
                client
                    .update(
                        "LOCK TABLE aegis.audit_chain IN SHARE ROW EXCLUSIVE MODE",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let head = client
                    .select(
                        "SELECT position, chain_hash FROM aegis.audit_chain \
                         ORDER BY position DESC LIMIT 1",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let (mut position, mut prev) = match head.first().get_two::<i64, Vec<u8>>() {
                    Ok((Some(p), h)) => (p, hash32(h)),
                    _ => (0, core_audit::GENESIS),
                };
                // The horizon is trusted only if the chain is still where
                // that seal left it and the log was not empty then: a seal
                // that ran while a restore was loading the log would
                // otherwise leave the restored entries below the horizon,
                // never sealed.
                let horizon: Option<String> = client
                    .select(
                        "SELECT horizon::pg_catalog.text FROM aegis.audit_seal_state \
                         WHERE chain_position OPERATOR(pg_catalog.=) $1 AND NOT log_was_empty",
                        None,
                        &[position.into()],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<String>()
                    .unwrap_or(None);
                // Every transaction below this snapshot's xmin has ended, so
                // any later snapshot sees all of their committed entries:
                // those are what this round seals, and xmin is the new
                // horizon. Without a horizon (new install, or restored from a
                // dump) every entry not yet in the chain is a candidate; xids
                // at or above xmax cannot belong to this cluster's running
                // transactions (restored entries), so they are sealed too.
                let snap = client
                    .select(
                        "SELECT pg_catalog.pg_snapshot_xmin(s)::pg_catalog.text, \
                                pg_catalog.pg_snapshot_xmax(s)::pg_catalog.text \
                         FROM pg_catalog.pg_current_snapshot() s",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let (xmin, xmax) = snap
                    .first()
                    .get_two::<String, String>()
                    .map_err(spi_error)?;
                let candidates = "SELECT l.id, l.xid::pg_catalog.text::pg_catalog.int8, l.entry_hash \
                     FROM aegis.audit_log l \
                     WHERE ($1::pg_catalog.xid8 IS NULL OR l.xid OPERATOR(pg_catalog.>=) $1::pg_catalog.xid8) \
                       AND (l.xid OPERATOR(pg_catalog.<) $5::pg_catalog.xid8 \
                            OR ($1 IS NULL AND l.xid OPERATOR(pg_catalog.>=) $6::pg_catalog.xid8)) \
                       AND (l.xid, l.id) OPERATOR(pg_catalog.>) ($2::pg_catalog.int8::pg_catalog.text::pg_catalog.xid8, $3) \
                       AND NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id OPERATOR(pg_catalog.=) l.id) \
                     ORDER BY l.xid, l.id LIMIT $4";
                let mut sealed = 0i64;
                let mut after: (i64, i64) = (0, 0);
                loop {
                    let mut ids = Vec::new();
                    let mut xids = Vec::new();
                    let mut hashes = Vec::new();
                    let rows = client
                        .select(
                            candidates,
                            None,
                            &[
                                horizon.clone().into(),
                                after.0.into(),
                                after.1.into(),
                                SEAL_BATCH.into(),
                                xmin.clone().into(),
                                xmax.clone().into(),
                            ],
                        )
                        .map_err(spi_error)?;
                    for row in rows {
                        let id: i64 = row.get(1).map_err(spi_error)?.unwrap_or(0);
                        let xid: i64 = row.get(2).map_err(spi_error)?.unwrap_or(0);
                        let entry = hash32(row.get(3).map_err(spi_error)?);
                        position += 1;
                        prev = core_audit::chain_link(position as u64, &prev, &entry);
                        ids.push(id);
                        xids.push(xid);
                        hashes.push(prev.to_vec());
                        after = (xid, id);
                    }
                    let n = ids.len() as i64;
                    if n > 0 {
                        let first = position - n + 1;
                        client
                            .update(
                                "INSERT INTO aegis.audit_chain (position, entry_xid, entry_id, chain_hash) \
                                 SELECT $1 OPERATOR(pg_catalog.+) o OPERATOR(pg_catalog.-) 1, \
                                        x::pg_catalog.text::pg_catalog.xid8, i, h \
                                 FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.int8[]), \
                                      pg_catalog.unnest($4::pg_catalog.bytea[])) WITH ORDINALITY AS u(x, i, h, o)",
                                None,
                                &[first.into(), xids.into(), ids.into(), hashes.into()],
                            )
                            .map_err(spi_error)?;
                        sealed += n;
                    }
                    if n < SEAL_BATCH {
                        break;
                    }
                }
                client
                    .update(
                        "INSERT INTO aegis.audit_seal_state (horizon, sealed_at, chain_position, log_was_empty) \
                         VALUES ($1::pg_catalog.xid8, pg_catalog.now(), $2, \
                                 NOT EXISTS (SELECT 1 FROM aegis.audit_log)) \
                         ON CONFLICT (singleton) DO UPDATE SET horizon = EXCLUDED.horizon, \
                         sealed_at = EXCLUDED.sealed_at, chain_position = EXCLUDED.chain_position, \
                         log_was_empty = EXCLUDED.log_was_empty",
                        None,
                        &[xmin.into(), position.into()],
                    )
                    .map_err(spi_error)?;
                Ok(sealed)
            })
        })
    })
}

/// `aegis.seal() → bigint`
#[pg_extern(volatile, sql = false)]
pub(super) fn seal() -> AegisResult<i64> {
    Ok(seal_impl(false)?)
}
