//! Entry hashes, chain links, the signed head and verification.
//!
//! ```text
//! data_digest  = SHA-256("pg_aegis audit data v1\0"  || fields)
//! entry_hash   = SHA-256("pg_aegis audit entry v1\0" || fields || data_digest)
//! chain_hash_p = SHA-256("pg_aegis audit chain v1\0" || p (u64 BE) || chain_hash_{p-1} || entry_hash_p)
//! chain_hash_0 = GENESIS (32 zero bytes)
//! head_sig     = HMAC-SHA-256(k, "pg_aegis audit head v1\0" || p || chain_hash_p || time (i64 BE))
//!                where k = HMAC-SHA-256(keyring key "audit_head", "aegis audit head v1")
//! ```
//! where `fields` is a u32 count and, per field, its name (u32 length and
//! bytes) and its canonical value (`canonical.rs`). Positions are not part of
//! the entry hash (writers hash before sealing assigns positions) but are
//! part of every link, so moving an entry breaks the chain.

use super::canonical::{encode_value, Value};
use crate::CoreError;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// The chain hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// How far verification looks ahead to tell a reordering from a forgery.
const REORDER_WINDOW: usize = 64;

fn encode_fields(fields: &[(&str, Value<'_>)], out: &mut Vec<u8>) -> Result<(), CoreError> {
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    for (name, v) in fields {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        encode_value(v, out)?;
    }
    Ok(())
}

/// Digest of an entry's personal data (row images, user names): kept in the
/// entry so the data itself can later be replaced by a tombstone.
pub fn data_digest(fields: &[(&str, Value<'_>)]) -> Result<[u8; 32], CoreError> {
    let mut buf = b"pg_aegis audit data v1\0".to_vec();
    encode_fields(fields, &mut buf)?;
    Ok(Sha256::digest(&buf).into())
}

/// The entry hash over its non-personal fields and its data digest.
pub fn entry_hash(
    fields: &[(&str, Value<'_>)],
    data_digest: &[u8; 32],
) -> Result<[u8; 32], CoreError> {
    let mut buf = b"pg_aegis audit entry v1\0".to_vec();
    encode_fields(fields, &mut buf)?;
    buf.extend_from_slice(data_digest);
    Ok(Sha256::digest(&buf).into())
}

/// The chain hash at `position`, linking the previous one and this entry.
pub fn chain_link(position: u64, prev: &[u8; 32], entry: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pg_aegis audit chain v1\0");
    h.update(position.to_be_bytes());
    h.update(prev);
    h.update(entry);
    h.finalize().into()
}

/// The message a published head's signature covers (`head_sig` above).
pub fn head_message(position: u64, chain_hash: &[u8; 32], time_us: i64) -> Vec<u8> {
    let mut m = b"pg_aegis audit head v1\0".to_vec();
    m.extend_from_slice(&position.to_be_bytes());
    m.extend_from_slice(chain_hash);
    m.extend_from_slice(&time_us.to_be_bytes());
    m
}

/// The label the head-signing subkey is derived with.
pub const HEAD_KEY_LABEL: &[u8] = b"aegis audit head v1";

/// One stored entry as verification sees it: what the table says, and the
/// entry hash recomputed from the stored fields.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub position: u64,
    pub entry_hash: [u8; 32],
    pub recomputed: [u8; 32],
    pub chain_hash: [u8; 32],
    /// For an entry marked erased (whose stored data digest stands in for
    /// its tombstoned data): does an erasure receipt in the trail account
    /// for its present content? Always true for other entries.
    pub tombstone_accounted: bool,
    /// The chain names an entry that is no longer in the log.
    pub entry_missing: bool,
}

/// A head saved outside the database.
#[derive(Debug, Clone, Copy)]
pub struct TrustedHead {
    pub position: u64,
    pub chain_hash: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The stored fields no longer give the stored entry hash.
    Modified,
    /// A position is missing, or its entry is gone from the log: an entry
    /// was deleted.
    Missing,
    /// A position appears twice: an entry was inserted.
    Duplicate,
    /// The entry that belongs at this position is further down the chain.
    Reordered { found_at: u64 },
    /// The link does not follow from the previous one: a forged entry, or a
    /// chain rewritten from here on.
    Forged,
    /// The trusted head's position holds a different chain hash: the chain
    /// was rewritten end to end.
    HeadMismatch,
    /// The entry is marked erased, but no erasure receipt accounts for it,
    /// or its content changed after the receipt was written.
    UnaccountedTombstone,
    /// The chain ends before the trusted head: its tail was removed.
    Truncated,
}

impl Problem {
    pub fn describe(self) -> String {
        match self {
            Problem::Modified => "entry modified: its fields do not match its hash".into(),
            Problem::Missing => "entry missing: deleted from the chain".into(),
            Problem::Duplicate => "entry inserted: its position is used twice".into(),
            Problem::Reordered { found_at } => {
                format!("entries reordered: the entry for this position is at position {found_at}")
            }
            Problem::Forged => {
                "chain broken: forged entry, or the chain was rewritten from here".into()
            }
            Problem::HeadMismatch => {
                "chain rewritten: the trusted head's position holds a different hash".into()
            }
            Problem::Truncated => "chain truncated: it ends before the trusted head".into(),
            Problem::UnaccountedTombstone => {
                "entry marked erased, but no erasure receipt accounts for its present content"
                    .into()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ok: bool,
    pub entries_checked: u64,
    pub first_bad_position: Option<u64>,
    pub problem: Option<Problem>,
}

/// Verify entries in position order, starting after `(first_position - 1,
/// prev)` (the genesis, or a signed checkpoint after pruning). Stops at the
/// first problem.
pub fn verify(
    entries: impl IntoIterator<Item = Stored>,
    first_position: u64,
    prev: [u8; 32],
    trusted: Option<TrustedHead>,
) -> Report {
    let mut it = entries.into_iter();
    let mut window: VecDeque<Stored> = VecDeque::new();
    let mut expected = first_position;
    let mut prev = prev;
    let mut checked = 0u64;
    let bad = |checked, pos, problem| Report {
        ok: false,
        entries_checked: checked,
        first_bad_position: Some(pos),
        problem: Some(problem),
    };
    while let Some(e) = window.pop_front().or_else(|| it.next()) {
        if e.position < expected {
            return bad(checked, e.position, Problem::Duplicate);
        }
        if e.position > expected {
            return bad(checked, expected, Problem::Missing);
        }
        if e.entry_missing {
            return bad(checked, e.position, Problem::Missing);
        }
        if e.recomputed != e.entry_hash {
            return bad(checked, e.position, Problem::Modified);
        }
        if !e.tombstone_accounted {
            return bad(checked, e.position, Problem::UnaccountedTombstone);
        }
        let link = chain_link(e.position, &prev, &e.entry_hash);
        if link != e.chain_hash {
            // Is the entry that belongs here further on?
            while window.len() < REORDER_WINDOW {
                match it.next() {
                    Some(n) => window.push_back(n),
                    None => break,
                }
            }
            let found = window
                .iter()
                .find(|n| chain_link(e.position, &prev, &n.entry_hash) == n.chain_hash);
            let problem = match found {
                Some(n) => Problem::Reordered {
                    found_at: n.position,
                },
                None => Problem::Forged,
            };
            return bad(checked, e.position, problem);
        }
        if let Some(h) = trusted {
            if h.position == e.position && h.chain_hash != link {
                return bad(checked, e.position, Problem::HeadMismatch);
            }
        }
        prev = link;
        expected += 1;
        checked += 1;
    }
    if let Some(h) = trusted {
        if h.position >= expected {
            return bad(checked, expected, Problem::Truncated);
        }
    }
    Report {
        ok: true,
        entries_checked: checked,
        first_bad_position: None,
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A chain of `n` entries (entry hash = hash of its index).
    fn chain(n: u64) -> Vec<Stored> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|p| {
                let eh = entry_hash(&[("op", Value::Int(p as i64))], &[0; 32]).unwrap();
                let link = chain_link(p, &prev, &eh);
                prev = link;
                Stored {
                    position: p,
                    tombstone_accounted: true,
                    entry_missing: false,
                    entry_hash: eh,
                    recomputed: eh,
                    chain_hash: link,
                }
            })
            .collect()
    }

    fn run(c: &[Stored]) -> Report {
        verify(c.iter().copied(), 1, GENESIS, None)
    }

    #[test]
    fn untampered_chains_verify() {
        for n in [0, 1, 2, 100] {
            let r = run(&chain(n));
            assert!(r.ok && r.entries_checked == n, "{r:?}");
        }
        let c = chain(10);
        let head = TrustedHead {
            position: 7,
            chain_hash: c[6].chain_hash,
        };
        assert!(verify(c.iter().copied(), 1, GENESIS, Some(head)).ok);
    }

    #[test]
    fn each_tampering_is_named_at_its_position() {
        let c = chain(10);
        // Modified: the fields no longer give the stored hash.
        let mut m = c.clone();
        m[4].recomputed[0] ^= 1;
        assert_eq!(
            (run(&m).first_bad_position, run(&m).problem),
            (Some(5), Some(Problem::Modified))
        );
        // Modified consistently (hash recomputed and stored): the link breaks.
        let mut m = c.clone();
        m[4].recomputed[0] ^= 1;
        m[4].entry_hash = m[4].recomputed;
        assert_eq!(run(&m).problem, Some(Problem::Forged));
        assert_eq!(run(&m).first_bad_position, Some(5));
        // Deleted in the middle.
        let mut d = c.clone();
        d.remove(3);
        assert_eq!(
            (run(&d).first_bad_position, run(&d).problem),
            (Some(4), Some(Problem::Missing))
        );
        // The last entry deleted from the log, its chain row left behind.
        let mut g = c.clone();
        g[9].entry_missing = true;
        assert_eq!(
            (run(&g).first_bad_position, run(&g).problem),
            (Some(10), Some(Problem::Missing))
        );
        // Inserted: a position used twice.
        let mut i = c.clone();
        i.insert(5, c[4]);
        assert_eq!(
            (run(&i).first_bad_position, run(&i).problem),
            (Some(5), Some(Problem::Duplicate))
        );
        // Forged entry with a fresh position at the end, linked by hand from
        // a wrong predecessor.
        let mut f = c.clone();
        let eh = entry_hash(&[("op", Value::Text("forged"))], &[0; 32]).unwrap();
        f.push(Stored {
            position: 11,
            tombstone_accounted: true,
            entry_missing: false,
            entry_hash: eh,
            recomputed: eh,
            chain_hash: chain_link(11, &GENESIS, &eh),
        });
        assert_eq!(
            (run(&f).first_bad_position, run(&f).problem),
            (Some(11), Some(Problem::Forged))
        );
        // Reordered: two entries swap positions (contents and hashes kept).
        let mut r = c.clone();
        let (a, b) = (r[2], r[6]);
        r[2] = Stored { position: 3, ..b };
        r[6] = Stored { position: 7, ..a };
        assert_eq!(
            (run(&r).first_bad_position, run(&r).problem),
            (Some(3), Some(Problem::Reordered { found_at: 7 }))
        );
        // A tombstone nobody accounts for: reported at its position.
        let mut u = c.clone();
        u[3].tombstone_accounted = false;
        assert_eq!(
            (run(&u).first_bad_position, run(&u).problem),
            (Some(4), Some(Problem::UnaccountedTombstone))
        );
        // Tail deleted: only a saved head notices.
        let head = TrustedHead {
            position: 10,
            chain_hash: c[9].chain_hash,
        };
        let t = &c[..8];
        assert!(run(t).ok);
        let rep = verify(t.iter().copied(), 1, GENESIS, Some(head));
        assert_eq!(
            (rep.first_bad_position, rep.problem),
            (Some(9), Some(Problem::Truncated))
        );
        // Rewritten end to end, consistently: only a saved head notices.
        let mut w = chain(10);
        let mut prev = GENESIS;
        for e in w.iter_mut() {
            e.entry_hash[31] ^= 0x55;
            e.recomputed = e.entry_hash;
            e.chain_hash = chain_link(e.position, &prev, &e.entry_hash);
            prev = e.chain_hash;
        }
        assert!(run(&w).ok);
        let rep = verify(w.iter().copied(), 1, GENESIS, Some(head));
        assert_eq!(
            (rep.first_bad_position, rep.problem),
            (Some(10), Some(Problem::HeadMismatch))
        );
    }

    #[test]
    fn head_signature_depends_on_every_part() {
        let h = [7u8; 32];
        let k = crate::envelope::SecretKey::from_bytes([1; 32]).purpose_key(HEAD_KEY_LABEL);
        let k2 = crate::envelope::SecretKey::from_bytes([2; 32]).purpose_key(HEAD_KEY_LABEL);
        let m = k.mac(&head_message(5, &h, 100));
        assert_ne!(m, k2.mac(&head_message(5, &h, 100)));
        assert_ne!(m, k.mac(&head_message(6, &h, 100)));
        assert_ne!(m, k.mac(&head_message(5, &[8; 32], 100)));
        assert_ne!(m, k.mac(&head_message(5, &h, 101)));
    }

    #[test]
    fn tombstoning_data_keeps_the_entry_hash() {
        let personal = [("new", Value::Json(r#"{"email":"jane@example.com"}"#))];
        let digest = data_digest(&personal).unwrap();
        let meta = [
            ("op", Value::Text("INSERT")),
            ("table", Value::Text("monitoring.error_logs")),
        ];
        let before = entry_hash(&meta, &digest).unwrap();
        // After erasure the data is gone but its digest is kept: same hash.
        assert_eq!(entry_hash(&meta, &digest).unwrap(), before);
        assert_ne!(
            data_digest(&[("new", Value::Json(r#"{"email":"[erased]"}"#))]).unwrap(),
            digest
        );
    }

    proptest! {
        #[test]
        fn any_single_change_is_detected(n in 2u64..40, victim in 0usize..40, kind in 0u8..4) {
            let mut c = chain(n);
            let v = victim % c.len();
            match kind {
                0 => c[v].recomputed[3] ^= 0x80,
                1 => c[v].chain_hash[0] ^= 1,
                2 => { c.remove(v); if v == c.len() { return Ok(()); } }
                _ => { let e = c[v]; c.insert(v, e); }
            }
            let r = run(&c);
            prop_assert!(!r.ok, "{:?}", r);
        }
    }
}
