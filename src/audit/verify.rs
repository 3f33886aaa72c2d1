//! Verification of the chain, and the signed head.

use super::*;

pub(super) type VerifyRow = (Option<bool>, Option<i64>, Option<i64>, Option<String>);

/// The latest pruning checkpoint: the chain is verified from the position
/// after it, starting from its (signed) chain hash.
pub(super) struct Checkpoint {
    pub(super) position: u64,
    pub(super) hash: [u8; 32],
    pub(super) time_us: i64,
    pub(super) signature: [u8; 32],
}

pub(super) fn latest_checkpoint() -> Result<Option<Checkpoint>, AegisError> {
    // The trail is read with the extension's rights: its readers see only
    // what aegis.audit_trail shows them, verification needs everything.
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let t = client
                .select(
                    "SELECT position, chain_hash, time_us, signature FROM aegis.audit_checkpoints \
                     ORDER BY position DESC LIMIT 1",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
                if t.is_empty() {
                    return Ok(None);
                }
                let r = t.first();
                Ok(Some(Checkpoint {
                    position: r.get::<i64>(1).map_err(spi_error)?.unwrap_or(0) as u64,
                    hash: hash32(r.get(2).map_err(spi_error)?),
                    time_us: r.get::<i64>(3).map_err(spi_error)?.unwrap_or(0),
                    signature: hash32(r.get(4).map_err(spi_error)?),
                }))
            })
        })
    })
}

/// Where incremental verification resumes: after a verified position,
/// from its chain hash; entries outside the chain are looked for among
/// transactions from `horizon` on (what sealing had not finished then).
pub(super) struct Resume {
    pub(super) first: u64,
    pub(super) prev: [u8; 32],
    pub(super) horizon: i64,
}

/// Read the chain in position order and recompute every entry (from the
/// start of the kept chain, or from `resume`).
pub(super) fn verify_impl(
    trusted: Option<TrustedHead>,
    resume: Option<&Resume>,
) -> Result<VerifyRow, AegisError> {
    verify_range(trusted, resume).map(|(row, _)| row)
}

/// As verify_impl(), also returning the position verification started at.
fn verify_range(
    trusted: Option<TrustedHead>,
    resume: Option<&Resume>,
) -> Result<(VerifyRow, u64), AegisError> {
    let checkpoint = latest_checkpoint()?;
    let (first, prev) = match &checkpoint {
        None => (1, core_audit::GENESIS),
        Some(cp) => {
            if !signature_matches(&head_mac(cp.position, &cp.hash, cp.time_us)?, &cp.signature) {
                return Ok((
                    (
                        Some(false),
                        Some(0),
                        Some(cp.position as i64),
                        Some(format!(
                            "pruning checkpoint at position {}: its signature does not verify",
                            cp.position
                        )),
                    ),
                    cp.position,
                ));
            }
            if let Some(t) = &trusted {
                if t.position < cp.position {
                    return Err(AegisError::HeadBeforeCheckpoint {
                        head: t.position,
                        checkpoint: cp.position,
                    });
                }
                if t.position == cp.position && t.chain_hash != cp.hash {
                    return Ok((
                        (
                            Some(false),
                            Some(0),
                            Some(cp.position as i64),
                            Some(
                                "chain rewritten: the trusted head's position holds a different hash"
                                    .into(),
                            ),
                        ),
                        cp.position,
                    ));
                }
            }
            (cp.position + 1, cp.hash)
        }
    };
    // The kept chain starts at `kept`; verification at `first`.
    let kept = first;
    let (first, prev, horizon) = match resume {
        Some(r) if r.first > kept => (r.first, r.prev, r.horizon),
        _ => (first, prev, 0),
    };
    let trusted = trusted.filter(|t| t.position >= first);
    let receipts = tombstone_receipts(first as i64)?;
    let report = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| -> Result<_, AegisError> {
                let mut cursor = client.open_cursor(
                "SELECT c.position, c.chain_hash, l.entry_hash, l.data_digest, l.erased_at IS NOT NULL, \
                        pg_catalog.convert_to(l.operation, 'UTF8'), pg_catalog.convert_to(l.table_name, 'UTF8'), \
                        pg_catalog.convert_to(l.db_user, 'UTF8'), pg_catalog.convert_to(l.session_user_name, 'UTF8'), \
                        pg_catalog.convert_to(l.application_name, 'UTF8'), \
                        pg_catalog.convert_to(NULLIF(pg_catalog.format('%s', l.client_addr), ''), 'UTF8'), \
                        l.backend_pid, l.xid::pg_catalog.text::pg_catalog.int8, \
                        (EXTRACT(EPOCH FROM l.statement_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
                          OPERATOR(pg_catalog.-) 946684800000000, \
                        pg_catalog.convert_to(l.pk::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.old_row::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.new_row::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.detail::pg_catalog.text, 'UTF8'), l.id, l.content_change \
                 FROM aegis.audit_chain c \
                 LEFT JOIN aegis.audit_log l ON l.xid OPERATOR(pg_catalog.=) c.entry_xid \
                      AND l.id OPERATOR(pg_catalog.=) c.entry_id \
                 WHERE c.position OPERATOR(pg_catalog.>=) $1 \
                 ORDER BY c.position",
                &[(first as i64).into()],
            );
                // Streamed batch by batch: memory stays flat however long the
                // chain is.
                let mut failed: Option<AegisError> = None;
                let mut batch: std::collections::VecDeque<Stored> = Default::default();
                let entries = std::iter::from_fn(|| loop {
                    if let Some(s) = batch.pop_front() {
                        return Some(s);
                    }
                    if failed.is_some() {
                        return None;
                    }
                    match cursor.fetch(10_000) {
                        Ok(rows) if rows.is_empty() => return None,
                        Ok(rows) => {
                            for row in rows {
                                match stored_from_row(&row, &receipts) {
                                    Ok(s) => batch.push_back(s),
                                    Err(e) => {
                                        failed = Some(e);
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => failed = Some(spi_error(e)),
                    }
                });
                let report = core_audit::verify(entries, first, prev, trusted);
                match failed {
                    Some(e) => Err(e),
                    None => Ok(report),
                }
            })
        })
    })?;
    let r = report;
    let (ok, checked, pos, problem) = if r.ok {
        // Entries outside the chain that sealing will never pick up: their
        // transactions ended before the horizon, or never ran (a
        // transaction id not assigned yet, or one that aborted, whose own
        // entries no one could see): inserted by hand. An entry is chained
        // only under its own (xid, id): a row that reuses a chained entry's
        // id with another xid is outside the chain too.
        let orphan: Option<i64> = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one(
                    "SELECT (SELECT l.id FROM aegis.audit_log l \
                     WHERE NOT EXISTS \
                     (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id OPERATOR(pg_catalog.=) l.id \
                        AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                        AND c.position OPERATOR(pg_catalog.>=) $1) \
                       AND NOT aegis.entry_may_be_pending(l.xid) \
                       AND l.xid OPERATOR(pg_catalog.>=) $2::pg_catalog.text::pg_catalog.xid8 \
                     ORDER BY l.id LIMIT 1)",
                    &[(kept as i64).into(), horizon.to_string().into()],
                )
                .map_err(spi_error)
            })
        })?;
        // Chain rows below the verified range: pruning removes them with
        // their entries, so one there was put there by hand (an entry
        // "chained" where no verification walks).
        let below: Option<i64> = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one(
                    "SELECT (SELECT c.position FROM aegis.audit_chain c \
                     WHERE c.position OPERATOR(pg_catalog.<) $1 ORDER BY c.position LIMIT 1)",
                    &[(kept as i64).into()],
                )
                .map_err(spi_error)
            })
        })?;
        if let Some(p) = below {
            return Ok((
                (
                    Some(false),
                    Some(r.entries_checked as i64),
                    Some(p),
                    Some(format!(
                        "chain row at position {p}, below the verified range (which starts at {kept}): added by hand"
                    )),
                ),
                first,
            ));
        }
        match orphan {
            Some(id) => (
                false,
                r.entries_checked,
                None,
                Some(format!(
                    "entry inserted outside the chain: audit_log id {id} belongs to no position"
                )),
            ),
            None => (true, r.entries_checked, None, None),
        }
    } else {
        (
            false,
            r.entries_checked,
            r.first_bad_position.map(|p| p as i64),
            r.problem.map(|p| p.describe()),
        )
    };
    Ok(((Some(ok), Some(checked as i64), pos, problem), first))
}

/// What erasure receipts say tombstoned entries hold now: (xid, id) → the
/// data digest of their tombstoned content. Receipts are the "tombstoned"
/// lists of ERASURE entries (erase_subject) and TOMBSTONES entries (the
/// 0.6.0 update's attestation of entries erased before it), taken only from
/// receipts that are in the chain or may still be waiting for it (see
/// aegis.entry_may_be_pending) and whose own data still matches their
/// stored digest; a later receipt for the same entry replaces an earlier
/// one.
pub(super) fn tombstone_receipts(first: i64) -> Result<HashMap<(i64, i64), [u8; 32]>, AegisError> {
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let mut out = HashMap::new();
                for row in client
                    .select(
                        "SELECT pg_catalog.convert_to(l.pk::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.old_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.new_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.detail::pg_catalog.text, 'UTF8'), l.data_digest \
                         FROM aegis.audit_log l \
                         WHERE l.operation OPERATOR(pg_catalog.=) ANY ('{ERASURE,TOMBSTONES}') \
                           AND l.detail OPERATOR(pg_catalog.?) 'tombstoned' \
                           AND (EXISTS (SELECT 1 FROM aegis.audit_chain c \
                                        WHERE c.entry_id OPERATOR(pg_catalog.=) l.id \
                                          AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                                          AND c.position OPERATOR(pg_catalog.>=) $1) \
                                OR aegis.entry_may_be_pending(l.xid)) \
                         ORDER BY l.statement_time, l.xid, l.id",
                        None,
                        &[first.into()],
                    )
                    .map_err(spi_error)?
                {
                    let text = |i: usize| -> Result<Option<String>, AegisError> {
                        Ok(row
                            .get::<Vec<u8>>(i)
                            .map_err(spi_error)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned()))
                    };
                    let (pk, old, new, detail) = (text(1)?, text(2)?, text(3)?, text(4)?);
                    let stored = hash32(row.get(5).map_err(spi_error)?);
                    if data_digest_of(pk.as_deref(), old.as_deref(), new.as_deref(), detail.as_deref())
                        != stored
                    {
                        continue;
                    }
                    let doc: serde_json::Value =
                        serde_json::from_str(detail.as_deref().unwrap_or("null")).unwrap_or_default();
                    for t in doc["tombstoned"].as_array().into_iter().flatten() {
                        let xid = t[0].as_str().and_then(|x| x.parse::<i64>().ok());
                        let id = t[1].as_i64();
                        let digest = t[2].as_str().and_then(|h| hex::decode(h).ok());
                        if let (Some(xid), Some(id), Some(d)) = (xid, id, digest) {
                            if let Ok(d) = <[u8; 32]>::try_from(d.as_slice()) {
                                out.insert((xid, id), d);
                            }
                        }
                    }
                }
                Ok(out)
            })
        })
    })
}

/// The data digest of an entry's stored data (as the verifier reads it).
pub(crate) fn data_digest_of(
    pk: Option<&str>,
    old: Option<&str>,
    new: Option<&str>,
    detail: Option<&str>,
) -> [u8; 32] {
    core_audit::data_digest(&[
        ("pk", core_audit::opt_json(pk)),
        ("old_row", core_audit::opt_json(old)),
        ("new_row", core_audit::opt_json(new)),
        ("detail", core_audit::opt_json(detail)),
    ])
    .unwrap_or([0xff; 32])
}

pub(super) fn stored_from_row(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    receipts: &HashMap<(i64, i64), [u8; 32]>,
) -> Result<Stored, AegisError> {
    let bytes = |i: usize| -> Result<Option<String>, AegisError> {
        Ok(row
            .get::<Vec<u8>>(i)
            .map_err(spi_error)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let position: i64 = row.get(1).map_err(spi_error)?.unwrap_or(0);
    let chain_hash = hash32(row.get(2).map_err(spi_error)?);
    let entry_hash = hash32(row.get(3).map_err(spi_error)?);
    let stored_digest = hash32(row.get(4).map_err(spi_error)?);
    let erased: bool = row.get(5).map_err(spi_error)?.unwrap_or(false);
    let (op, table, user, session, app, addr) = (
        bytes(6)?,
        bytes(7)?,
        bytes(8)?,
        bytes(9)?,
        bytes(10)?,
        bytes(11)?,
    );
    let pid: i32 = row.get(12).map_err(spi_error)?.unwrap_or(0);
    let xid: i64 = row.get(13).map_err(spi_error)?.unwrap_or(0);
    let stmt: i64 = row.get(14).map_err(spi_error)?.unwrap_or(0);
    let (pk, old, new, detail) = (bytes(15)?, bytes(16)?, bytes(17)?, bytes(18)?);
    let content_change: Option<Vec<u8>> = row.get(20).map_err(spi_error)?;
    let entry = Entry {
        operation: op.as_deref().unwrap_or(""),
        table_name: table.as_deref(),
        db_user: user.as_deref().unwrap_or(""),
        session_user: session.as_deref().unwrap_or(""),
        application_name: app.as_deref(),
        client_addr: addr.as_deref(),
        backend_pid: pid,
        xid,
        statement_time: stmt,
        pk: core_audit::opt_json(pk.as_deref()),
        old_row: core_audit::opt_json(old.as_deref()),
        new_row: core_audit::opt_json(new.as_deref()),
        detail: core_audit::opt_json(detail.as_deref()),
        content_change: content_change.as_deref(),
    };
    // An erased entry's data is a tombstone: its stored digest stands in,
    // and an erasure receipt must account for what it holds now.
    let id: i64 = row.get(19).map_err(spi_error)?.unwrap_or(0);
    let current = entry.data_digest().unwrap_or([0xff; 32]);
    let (digest, tombstone_accounted) = if erased {
        (stored_digest, receipts.get(&(xid, id)) == Some(&current))
    } else {
        (current, true)
    };
    let recomputed = entry.entry_hash(&digest).unwrap_or([0xff; 32]);
    Ok(Stored {
        entry_missing: row.get::<i64>(19).map_err(spi_error)?.is_none(),
        position: position as u64,
        entry_hash,
        recomputed,
        chain_hash,
        tombstone_accounted,
    })
}

/// `aegis.verify_chain() → TABLE(ok, entries_checked, first_bad_position, problem)`
// The row type is spelled out in both signatures: pgrx's SQL generator does
// not resolve a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, sql = false)]
pub(super) fn verify_chain() -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(entries_checked, Option<i64>),
        name!(first_bad_position, Option<i64>),
        name!(problem, Option<String>),
    ),
> {
    TableIterator::once(verify_impl(None, None).unwrap_or_else(|e| raise(e)))
}

/// The newest verified checkpoint (aegis.audit_verified), if its signature
/// holds and the chain still has its hash at its position; Err(problem)
/// when the chain no longer matches it.
fn verified_checkpoint() -> Result<Result<Option<Resume>, String>, AegisError> {
    let row = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let t = client
                    .select(
                        "SELECT v.position, v.chain_hash, v.time_us, v.signature, \
                                v.horizon::pg_catalog.text::pg_catalog.int8, \
                                (SELECT c.chain_hash FROM aegis.audit_chain c \
                                 WHERE c.position OPERATOR(pg_catalog.=) v.position) \
                         FROM aegis.audit_verified v",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                if t.is_empty() {
                    return Ok::<_, AegisError>(None);
                }
                let r = t.first();
                Ok(Some((
                    r.get::<i64>(1).map_err(spi_error)?.unwrap_or(0) as u64,
                    hash32(r.get(2).map_err(spi_error)?),
                    r.get::<i64>(3).map_err(spi_error)?.unwrap_or(0),
                    hash32(r.get(4).map_err(spi_error)?),
                    r.get::<i64>(5).map_err(spi_error)?.unwrap_or(0),
                    r.get::<Vec<u8>>(6).map_err(spi_error)?,
                )))
            })
        })
    })?;
    let Some((position, hash, time_us, signature, horizon, in_chain)) = row else {
        return Ok(Ok(None));
    };
    // Without the head key a checkpoint cannot be trusted: verify it all.
    let Ok(mac) = checkpoint_mac(position, &hash, time_us, horizon) else {
        return Ok(Ok(None));
    };
    if !signature_matches(&mac, &signature) {
        // Not ours (forged or from another keyring): start from the beginning.
        return Ok(Ok(None));
    }
    match in_chain {
        Some(h) if h.as_slice() == hash.as_slice() => Ok(Ok(Some(Resume {
            first: position + 1,
            prev: hash,
            horizon,
        }))),
        // Pruned past it: the pruning checkpoint takes over.
        None => Ok(Ok(None)),
        Some(_) => Ok(Err(format!(
            "chain rewritten: position {position} no longer holds the hash verified there"
        ))),
    }
}

/// Record `position` (just verified) as the checkpoint the next incremental
/// verification resumes from: signed with the head key; skipped on a
/// standby, in a read-only transaction, or without the key.
fn record_verified(position: u64) -> Result<(), AegisError> {
    // SAFETY: backend globals.
    if unsafe { pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly || pg_sys::IsInParallelMode() }
    {
        return Ok(());
    }
    let row = with_safe_search_path(|| {
        as_extension_owner(|| {
            crate::spi::get_one::<Vec<u8>>(
                "SELECT c.chain_hash FROM aegis.audit_chain c WHERE c.position OPERATOR(pg_catalog.=) $1",
                &[(position as i64).into()],
            )
            .map_err(spi_error)
        })
    })?;
    let Some(hash) = row else { return Ok(()) };
    let hash = hash32(Some(hash));
    // SAFETY: the statement's start time, microseconds since 2000.
    let time_us = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let horizon = with_safe_search_path(|| {
        as_extension_owner(|| {
            crate::spi::get_one::<i64>(
                "SELECT COALESCE((SELECT s.horizon FROM aegis.audit_seal_state s), '0'::pg_catalog.xid8) \
                 ::pg_catalog.text::pg_catalog.int8",
                &[],
            )
            .map_err(spi_error)
        })
    })?
    .unwrap_or(0);
    let Ok(sig) = checkpoint_mac(position, &hash, time_us, horizon) else {
        return Ok(());
    };
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                client
                    .update(
                        "UPDATE aegis.audit_verified v SET position = $1, chain_hash = $2, time_us = $3, \
                             signature = $4, verified_at = pg_catalog.now(), \
                             horizon = $5::pg_catalog.text::pg_catalog.xid8 \
                         FROM (SELECT x.singleton FROM aegis.audit_verified x \
                               WHERE x.position OPERATOR(pg_catalog.<) $1 FOR UPDATE SKIP LOCKED) l \
                         WHERE v.singleton",
                        None,
                        &[
                            (position as i64).into(),
                            hash.to_vec().into(),
                            time_us.into(),
                            sig.to_vec().into(),
                            horizon.to_string().into(),
                        ],
                    )
                    .map_err(spi_error)?;
                Ok::<_, AegisError>(())
            })
        })
    })
}

/// `aegis.verify_chain_incremental() → TABLE(ok, entries_checked,
/// first_bad_position, problem, verified_from)`: verifies the entries
/// sealed since the newest verified checkpoint, then moves it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, sql = false)]
pub(super) fn verify_chain_incremental() -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(entries_checked, Option<i64>),
        name!(first_bad_position, Option<i64>),
        name!(problem, Option<String>),
        name!(verified_from, Option<i64>),
    ),
> {
    let run = || -> Result<_, AegisError> {
        let resume = match verified_checkpoint()? {
            Ok(r) => r,
            Err(problem) => return Ok((Some(false), Some(0), None, Some(problem), None)),
        };
        let ((ok, checked, bad, problem), start) = verify_range(None, resume.as_ref())?;
        let checked_n = checked.unwrap_or(0);
        if ok == Some(true) && checked_n > 0 {
            // Positions are consecutive once the chain verifies: the last
            // one verified (entries sealed since are left for next time).
            record_verified(start + checked_n as u64 - 1)?;
        }
        Ok((ok, checked, bad, problem, Some(start as i64)))
    };
    TableIterator::once(run().unwrap_or_else(|e| raise(e)))
}

/// `aegis.verify_chain(trusted_head jsonb)`
#[allow(clippy::type_complexity)]
#[pg_extern(stable, sql = false)]
pub(super) fn verify_chain_trusted(
    trusted_head: pgrx::JsonB,
) -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(entries_checked, Option<i64>),
        name!(first_bad_position, Option<i64>),
        name!(problem, Option<String>),
    ),
> {
    let run = || -> Result<VerifyRow, AegisError> {
        let head = parse_head(&trusted_head.0)?;
        if !head_signature_ok(&head)? {
            return Ok((
                Some(false),
                Some(0),
                Some(head.position as i64),
                Some("trusted head's signature does not verify: not issued by this database's audit_head key".into()),
            ));
        }
        verify_impl(
            Some(TrustedHead {
                position: head.position,
                chain_hash: head.hash,
            }),
            None,
        )
    };
    TableIterator::once(run().unwrap_or_else(|e| raise(e)))
}

pub(super) struct Head {
    pub(super) position: u64,
    pub(super) hash: [u8; 32],
    pub(super) time_us: i64,
    pub(super) signature: Option<[u8; 32]>,
}

pub(super) fn parse_head(v: &serde_json::Value) -> Result<Head, AegisError> {
    let bad = |what: &str| AegisError::BadHead {
        reason: what.to_string(),
    };
    let position = v
        .get("position")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("\"position\" must be a positive integer"))?;
    let hex32 = |key: &str| -> Result<Option<[u8; 32]>, AegisError> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(s) => {
                let s = s
                    .as_str()
                    .ok_or_else(|| bad(&format!("\"{key}\" must be a string")))?;
                let b =
                    hex::decode(s).map_err(|_| bad(&format!("\"{key}\" must be 64 hex digits")))?;
                let a: [u8; 32] = b
                    .try_into()
                    .map_err(|_| bad(&format!("\"{key}\" must be 64 hex digits")))?;
                Ok(Some(a))
            }
        }
    };
    let hash = hex32("hash")?.ok_or_else(|| bad("\"hash\" is missing"))?;
    let time_us = v
        .get("time_us")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| bad("\"time_us\" must be an integer"))?;
    Ok(Head {
        position,
        hash,
        time_us,
        signature: hex32("signature")?,
    })
}

pub(crate) fn head_mac(
    position: u64,
    hash: &[u8; 32],
    time_us: i64,
) -> Result<[u8; 32], AegisError> {
    let msg = core_audit::head_message(position, hash, time_us);
    keyring::purpose_mac(HEAD_KEY, core_audit::HEAD_KEY_LABEL, &msg)
}

/// The signature of an incremental-verification checkpoint: the head key
/// under a label of its own (a published chain head is not a checkpoint),
/// over the position, hash, time and the sealing horizon it resumes from.
fn checkpoint_mac(
    position: u64,
    hash: &[u8; 32],
    time_us: i64,
    horizon: i64,
) -> Result<[u8; 32], AegisError> {
    let mut msg = core_audit::head_message(position, hash, time_us);
    msg.extend_from_slice(&horizon.to_be_bytes());
    keyring::purpose_mac(HEAD_KEY, b"aegis verified checkpoint v1", &msg)
}

pub(super) fn signature_matches(expected: &[u8; 32], got: &[u8; 32]) -> bool {
    // Constant time is not needed for a public value, but costs nothing.
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |a, (x, y)| a | (x ^ y))
        == 0
}

pub(super) fn head_signature_ok(h: &Head) -> Result<bool, AegisError> {
    let Some(sig) = h.signature else {
        return Err(AegisError::BadHead {
            reason: "\"signature\" is missing".into(),
        });
    };
    Ok(signature_matches(
        &head_mac(h.position, &h.hash, h.time_us)?,
        &sig,
    ))
}

/// `aegis.chain_head() → jsonb`
#[pg_extern(volatile, sql = false)]
pub(super) fn chain_head() -> AegisResult<pgrx::JsonB> {
    let row = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(
                |client| -> Result<Option<(i64, [u8; 32], i64)>, AegisError> {
                    let t = client
                .select(
                    "SELECT position, chain_hash, (EXTRACT(EPOCH FROM pg_catalog.now()) \
                     OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 OPERATOR(pg_catalog.-) 946684800000000, \
                     pg_catalog.now()::pg_catalog.text \
                     FROM aegis.audit_chain ORDER BY position DESC LIMIT 1",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
                    if t.is_empty() {
                        return Ok(None);
                    }
                    let r = t.first();
                    Ok(Some((
                        r.get::<i64>(1).map_err(spi_error)?.unwrap_or(0),
                        hash32(r.get(2).map_err(spi_error)?),
                        r.get::<i64>(3).map_err(spi_error)?.unwrap_or(0),
                    )))
                },
            )
        })
    })?;
    let Some((position, hash, time_us)) = row else {
        return Err(AegisError::EmptyChain.into());
    };
    let sig = head_mac(position as u64, &hash, time_us)?;
    Ok(pgrx::JsonB(serde_json::json!({
        "position": position,
        "hash": hex::encode(hash),
        "time_us": time_us,
        "time": core_audit::image::timestamp_utc(time_us),
        "key": HEAD_KEY,
        "signature": hex::encode(sig),
    })))
}
