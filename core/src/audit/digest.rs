//! Content digests of digest-mode tables: what `verify_table()` checks a
//! table against when the trail holds no image of its inserted rows.
//!
//! ```text
//! row encoding  = u32 column count, then per non-NULL column (in the
//!                 table's column order): u32 name length, name, the value
//!                 (encode_cell); NULLs are left out, so adding a column
//!                 without a default changes no row's encoding
//! row element   = BLAKE3-XOF(derive_key "pg_aegis row digest v2", row encoding),
//!                 first 2048 bytes read as 1024 little-endian u16 lanes,
//!                 the next 32 as 4 little-endian u64 check lanes
//! content       = sum of the elements of its rows, lane by lane, mod 2^16
//!                 (check lanes mod 2^64)
//! ```
//!
//! The content digest is LtHash16 (Lewi, Kim, Maykov, Weis: "Securing
//! Update Propagation with Homomorphic Hashing", 2019): a multiset hash
//! whose value depends only on which rows are present (not their order),
//! that is updated by adding the elements of inserted rows and subtracting
//! those of deleted ones. Each statement's entry carries the change it made
//! (per bucket: the row count change and the digest change), so the
//! content the trail expects is the sum of the entries since the baseline,
//! and one scan of the table computes what it holds. Finding a different
//! multiset of rows with the same digest is a short-vector lattice problem
//! in dimension 1024 (the paper's security argument for these parameters:
//! about 200 bits); a plain sum of 256-bit hashes would fall to Wagner's
//! generalised-birthday attack with a few tens of thousands of rows.
//!
//! The paper's argument is about sets. A table without a unique key can
//! hold many copies of one row, and 2^16 copies of any element sum to zero
//! in 16-bit lanes: 65,536 identical rows changed alike behind the trail
//! would leave the LtHash16 lanes (and the count) as they were. The four
//! 64-bit check lanes close that: the same change leaves them unchanged
//! only for a number of copies that is a multiple of about 2^63 (their
//! values are odd multiples of a small power of two, almost surely below
//! 2^8), far beyond any table.
//!
//! Buckets narrow a mismatch down: rows are grouped by the value of one
//! column (a time or an integer column) divided into ranges of a fixed
//! width, and every bucket has its own count and digest.

use super::image::Cell;
use crate::CoreError;
use std::collections::BTreeMap;

/// Lanes of a content digest.
pub const LANES: usize = 1024;
/// 64-bit check lanes of a content digest (against many copies of a row).
pub const CHECK_LANES: usize = 4;
/// Bytes of a content digest.
pub const DIGEST_BYTES: usize = 2 * LANES + 8 * CHECK_LANES;
const CONTEXT: &str = "pg_aegis row digest v2";
const ELEMENT_CONTEXT: &str = "pg_aegis row element v2";
/// Rows a bucket change lists by their hashes (33 bytes each in its stored
/// form) before it stores the 2,080-byte digest instead: a single-row
/// statement's entry stays small, and so does one spreading a few rows
/// over many buckets.
pub const LIST_MAX: usize = 16;
/// Format byte of an encoded change set.
const CHANGES_V2: u8 = 2;
/// The bucket of a table without a bucket column.
pub const WHOLE_TABLE: i64 = i64::MIN;

/// A multiset digest of rows (LtHash16, and 64-bit check lanes).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentDigest {
    lanes: Box<[u16; LANES]>,
    check: [u64; CHECK_LANES],
}

impl std::fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentDigest({})", hex::encode(&self.to_bytes()[..8]))
    }
}

impl Default for ContentDigest {
    fn default() -> Self {
        ContentDigest {
            lanes: Box::new([0; LANES]),
            check: [0; CHECK_LANES],
        }
    }
}

/// A row's 32-byte hash: what a bucket change with few rows stores.
pub fn row_hash(row: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(row);
    *h.finalize().as_bytes()
}

/// A row hash expanded to its element: 2,080 bytes of BLAKE3 output (1,024
/// little-endian u16 lanes, then 4 little-endian u64 check lanes).
fn expand(hash: &[u8; 32]) -> [u8; DIGEST_BYTES] {
    let mut h = blake3::Hasher::new_derive_key(ELEMENT_CONTEXT);
    h.update(hash);
    let mut buf = [0u8; DIGEST_BYTES];
    h.finalize_xof().fill(&mut buf);
    buf
}

/// The row's element.
fn element(row: &[u8]) -> [u8; DIGEST_BYTES] {
    expand(&row_hash(row))
}

impl ContentDigest {
    /// Add one row (its encoding, see [`RowEncoder`]).
    pub fn add_row(&mut self, row: &[u8]) {
        self.fold(&element(row), false);
    }

    /// Remove one row.
    pub fn remove_row(&mut self, row: &[u8]) {
        self.fold(&element(row), true);
    }

    /// Add or remove a row given by its hash.
    fn fold_hash(&mut self, hash: &[u8; 32], subtract: bool) {
        self.fold(&expand(hash), subtract);
    }

    /// Add (or subtract) a digest in its byte form.
    fn fold(&mut self, e: &[u8; DIGEST_BYTES], subtract: bool) {
        let (lanes, check) = e.split_at(2 * LANES);
        for (a, b) in self.lanes.iter_mut().zip(lanes.chunks_exact(2)) {
            let v = u16::from_le_bytes([b[0], b[1]]);
            *a = if subtract {
                a.wrapping_sub(v)
            } else {
                a.wrapping_add(v)
            };
        }
        for (a, b) in self.check.iter_mut().zip(check.chunks_exact(8)) {
            let v = u64::from_le_bytes(b.try_into().unwrap_or_default());
            *a = if subtract {
                a.wrapping_sub(v)
            } else {
                a.wrapping_add(v)
            };
        }
    }

    /// Add another digest (the union of two multisets).
    pub fn add(&mut self, other: &ContentDigest) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *a = a.wrapping_add(*b);
        }
        for (a, b) in self.check.iter_mut().zip(other.check.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Subtract another digest.
    pub fn sub(&mut self, other: &ContentDigest) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *a = a.wrapping_sub(*b);
        }
        for (a, b) in self.check.iter_mut().zip(other.check.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.lanes.iter().all(|&l| l == 0) && self.check.iter().all(|&l| l == 0)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DIGEST_BYTES);
        out.extend(self.lanes.iter().flat_map(|l| l.to_le_bytes()));
        out.extend(self.check.iter().flat_map(|l| l.to_le_bytes()));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CoreError> {
        if b.len() != DIGEST_BYTES {
            return Err(bad(format!(
                "a content digest of {} bytes (expected {DIGEST_BYTES})",
                b.len()
            )));
        }
        let mut d = ContentDigest::default();
        let (lanes, check) = b.split_at(2 * LANES);
        for (l, c) in d.lanes.iter_mut().zip(lanes.chunks_exact(2)) {
            *l = u16::from_le_bytes([c[0], c[1]]);
        }
        for (l, c) in d.check.iter_mut().zip(check.chunks_exact(8)) {
            *l = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        Ok(d)
    }
}

fn bad(reason: String) -> CoreError {
    CoreError::AuditValue { reason }
}

/// Encodes one row for its digest: column names and binary values in the
/// table's column order (no JSON, no classification: the digest is of the
/// row as stored).
#[derive(Debug, Default)]
pub struct RowEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl RowEncoder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0; 4]);
        RowEncoder { buf, count: 0 }
    }

    /// Start the next row (reuses the buffer).
    pub fn clear(&mut self) {
        self.buf.truncate(4);
        self.count = 0;
    }

    pub fn push(&mut self, name: &str, cell: &Cell<'_>) -> Result<(), CoreError> {
        put_len(&mut self.buf, name.len())?;
        self.buf.extend_from_slice(name.as_bytes());
        encode_cell(cell, &mut self.buf)?;
        self.count += 1;
        Ok(())
    }

    /// The row's encoding.
    pub fn finish(&mut self) -> &[u8] {
        self.buf[..4].copy_from_slice(&self.count.to_be_bytes());
        &self.buf
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), CoreError> {
    let n = u32::try_from(n).map_err(|_| bad("a value longer than 4 GiB".into()))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// A cell's binary encoding: a tag (distinct per kind, so a text "1" is not
/// an integer 1) and a payload.
pub fn encode_cell(cell: &Cell<'_>, out: &mut Vec<u8>) -> Result<(), CoreError> {
    match cell {
        Cell::Null => out.push(0x40),
        Cell::Bool(b) => out.extend_from_slice(&[0x41, u8::from(*b)]),
        Cell::Int(i) => {
            out.push(0x42);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Cell::Float(f) => {
            out.push(0x43);
            let bits = if f.is_nan() {
                0x7ff8_0000_0000_0000
            } else {
                f.to_bits()
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Cell::Numeric(t) => {
            out.push(0x44);
            put_len(out, t.len())?;
            out.extend_from_slice(t.as_bytes());
        }
        Cell::Text(t) => {
            out.push(0x45);
            put_len(out, t.len())?;
            out.extend_from_slice(t.as_bytes());
        }
        Cell::Bytes(b) => {
            out.push(0x46);
            put_len(out, b.len())?;
            out.extend_from_slice(b);
        }
        Cell::TimestampTz(t) => {
            out.push(0x47);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Cell::Timestamp(t) => {
            out.push(0x48);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Cell::Date(d) => {
            out.push(0x49);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Cell::Json(t) => {
            out.push(0x4a);
            put_len(out, t.len())?;
            out.extend_from_slice(t.as_bytes());
        }
    }
    Ok(())
}

/// The bucket (its first value) that `value` falls in, for buckets `width`
/// wide; [`WHOLE_TABLE`] without a bucket column.
pub fn bucket_of(value: Option<i64>, width: i64) -> i64 {
    match value {
        Some(v) if width > 0 => v.div_euclid(width).saturating_mul(width),
        _ => WHOLE_TABLE,
    }
}

/// Row count and content change of one bucket.
#[derive(Debug, Clone)]
pub struct BucketChange {
    pub rows: i64,
    digest: ContentDigest,
    /// The hashes of the rows added (true) and removed (false), while there
    /// are at most LIST_MAX of them; None after (the digest alone).
    list: Option<Vec<(bool, [u8; 32])>>,
}

impl Default for BucketChange {
    fn default() -> Self {
        BucketChange {
            rows: 0,
            digest: ContentDigest::default(),
            list: Some(Vec::new()),
        }
    }
}

/// Equal when the row counts and digests are (however they are stored).
impl PartialEq for BucketChange {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows && self.digest == other.digest
    }
}
impl Eq for BucketChange {}

impl BucketChange {
    pub fn digest(&self) -> &ContentDigest {
        &self.digest
    }

    fn note(&mut self, added: bool, hash: [u8; 32]) {
        if let Some(l) = &mut self.list {
            if l.len() < LIST_MAX {
                l.push((added, hash));
            } else {
                self.list = None;
            }
        }
    }

    fn add_row(&mut self, row: &[u8]) {
        let h = row_hash(row);
        self.rows += 1;
        self.digest.fold_hash(&h, false);
        self.note(true, h);
    }

    fn remove_row(&mut self, row: &[u8]) {
        let h = row_hash(row);
        self.rows -= 1;
        self.digest.fold_hash(&h, true);
        self.note(false, h);
    }

    fn add(&mut self, other: &BucketChange) {
        self.rows += other.rows;
        self.digest.add(&other.digest);
        match (&mut self.list, &other.list) {
            (Some(a), Some(b)) if a.len() + b.len() <= LIST_MAX => a.extend_from_slice(b),
            _ => self.list = None,
        }
    }

    /// The opposite change (what was added, removed).
    fn negated(&self) -> BucketChange {
        let mut d = ContentDigest::default();
        d.sub(&self.digest);
        BucketChange {
            rows: -self.rows,
            digest: d,
            list: self
                .list
                .as_ref()
                .map(|l| l.iter().map(|&(a, h)| (!a, h)).collect()),
        }
    }
}

/// What a statement (or a baseline) changed, bucket by bucket; also what a
/// scan finds, and the sum the trail expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub buckets: BTreeMap<i64, BucketChange>,
}

impl Changes {
    pub fn add_row(&mut self, bucket: i64, row: &[u8]) {
        self.buckets.entry(bucket).or_default().add_row(row);
    }

    pub fn remove_row(&mut self, bucket: i64, row: &[u8]) {
        self.buckets.entry(bucket).or_default().remove_row(row);
    }

    /// Add another change set (entries summed in any order give the same).
    pub fn add(&mut self, other: &Changes) {
        for (k, c) in &other.buckets {
            self.buckets.entry(*k).or_default().add(c);
        }
    }

    /// The opposite change set (a content leaving).
    pub fn negated(&self) -> Changes {
        Changes {
            buckets: self
                .buckets
                .iter()
                .map(|(k, b)| (*k, b.negated()))
                .collect(),
        }
    }

    /// Total row change.
    pub fn rows(&self) -> i64 {
        self.buckets.values().map(|b| b.rows).sum()
    }

    /// Drop buckets that cancelled out (no rows, zero digest).
    pub fn prune(&mut self) {
        self.buckets
            .retain(|_, b| b.rows != 0 || !b.digest.is_zero());
    }

    /// The stored form: a format byte, then per bucket (ascending) the
    /// bucket (i64), the row change (i64), both big-endian, and either
    /// 0x00 and the digest, or 0x01, a count (u8, at most LIST_MAX) and
    /// that many row hashes, each after 0x01 (added) or 0x00 (removed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.buckets.len() * 64);
        out.push(CHANGES_V2);
        for (k, b) in &self.buckets {
            out.extend_from_slice(&k.to_be_bytes());
            out.extend_from_slice(&b.rows.to_be_bytes());
            match &b.list {
                Some(l) => {
                    out.push(1);
                    out.push(l.len() as u8);
                    for (added, h) in l {
                        out.push(u8::from(*added));
                        out.extend_from_slice(h);
                    }
                }
                None => {
                    out.push(0);
                    out.extend_from_slice(&b.digest.to_bytes());
                }
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CoreError> {
        let (&v, _) = b
            .split_first()
            .ok_or_else(|| bad("an empty content change".into()))?;
        if v != CHANGES_V2 {
            return Err(bad(format!("content change format {v} (expected 2)")));
        }
        let truncated = || bad(format!("a truncated content change of {} bytes", b.len()));
        let mut c = Changes::default();
        let mut rest = &b[1..];
        while !rest.is_empty() {
            if rest.len() < 17 {
                return Err(truncated());
            }
            let k = i64::from_be_bytes(rest[0..8].try_into().unwrap_or_default());
            let rows = i64::from_be_bytes(rest[8..16].try_into().unwrap_or_default());
            let form = rest[16];
            rest = &rest[17..];
            let change = match form {
                0 => {
                    if rest.len() < DIGEST_BYTES {
                        return Err(truncated());
                    }
                    let digest = ContentDigest::from_bytes(&rest[..DIGEST_BYTES])?;
                    rest = &rest[DIGEST_BYTES..];
                    BucketChange {
                        rows,
                        digest,
                        list: None,
                    }
                }
                1 => {
                    let (&n, tail) = rest.split_first().ok_or_else(truncated)?;
                    let n = usize::from(n);
                    if n > LIST_MAX || tail.len() < n * 33 {
                        return Err(truncated());
                    }
                    let mut bc = BucketChange::default();
                    let mut net = 0i64;
                    for item in tail[..n * 33].chunks_exact(33) {
                        let added = match item[0] {
                            1 => true,
                            0 => false,
                            x => return Err(bad(format!("a listed row marked {x}"))),
                        };
                        let h: [u8; 32] = item[1..].try_into().unwrap_or_default();
                        bc.digest.fold_hash(&h, !added);
                        bc.note(added, h);
                        net += if added { 1 } else { -1 };
                    }
                    if net != rows {
                        return Err(bad(format!("bucket {k} lists {net} rows but says {rows}")));
                    }
                    bc.rows = rows;
                    rest = &tail[n * 33..];
                    bc
                }
                x => return Err(bad(format!("bucket form {x}"))),
            };
            if c.buckets.insert(k, change).is_some() {
                return Err(bad(format!("bucket {k} twice in a content change")));
            }
        }
        Ok(c)
    }
}

/// A bucket whose rows differ from what the trail expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMismatch {
    pub bucket: i64,
    pub expected_rows: i64,
    pub rows: i64,
}

/// Compare what the trail expects with what a scan found, bucket by bucket
/// (ascending).
pub fn compare(expected: &Changes, found: &Changes) -> Vec<BucketMismatch> {
    let zero = BucketChange::default();
    let keys: std::collections::BTreeSet<i64> = expected
        .buckets
        .keys()
        .chain(found.buckets.keys())
        .copied()
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let e = expected.buckets.get(&k).unwrap_or(&zero);
            let f = found.buckets.get(&k).unwrap_or(&zero);
            (e != f).then_some(BucketMismatch {
                bucket: k,
                expected_rows: e.rows,
                rows: f.rows,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(id: i64, msg: &str) -> Vec<u8> {
        let mut e = RowEncoder::new();
        e.push("id", &Cell::Int(id)).unwrap();
        e.push("msg", &Cell::Text(msg)).unwrap();
        e.finish().to_vec()
    }

    #[test]
    fn order_does_not_matter_and_every_change_shows() {
        let rows: Vec<Vec<u8>> = (0..50).map(|i| row(i, "x")).collect();
        let mut a = Changes::default();
        let mut b = Changes::default();
        for r in &rows {
            a.add_row(7, r);
        }
        for r in rows.iter().rev() {
            b.add_row(7, r);
        }
        assert_eq!(a, b);
        assert!(compare(&a, &b).is_empty());
        // One row changed, added, removed, or moved to another bucket.
        let mut changed = b.clone();
        changed.remove_row(7, &rows[3]);
        changed.add_row(7, &row(3, "y"));
        assert_eq!(compare(&a, &changed).len(), 1);
        assert_eq!(compare(&a, &changed)[0].rows, 50);
        let mut extra = b.clone();
        extra.add_row(7, &row(99, "x"));
        assert_eq!(compare(&a, &extra)[0].rows, 51);
        let mut gone = b.clone();
        gone.remove_row(7, &rows[0]);
        assert_eq!(compare(&a, &gone)[0].expected_rows, 50);
        let mut moved = b.clone();
        moved.remove_row(7, &rows[0]);
        moved.add_row(8, &rows[0]);
        let m = compare(&a, &moved);
        assert_eq!(m.iter().map(|m| m.bucket).collect::<Vec<_>>(), vec![7, 8]);
        // A duplicated row is another multiset.
        let mut dup = b.clone();
        dup.add_row(7, &rows[0]);
        dup.remove_row(7, &rows[1]);
        assert_eq!(dup.rows(), 50);
        assert!(!compare(&a, &dup).is_empty());
    }

    #[test]
    fn many_copies_of_a_changed_row_still_show() {
        // 65,536 identical rows changed alike: the 16-bit lanes wrap to
        // zero, the check lanes do not.
        let (old, new) = (row(1, "same"), row(1, "forged"));
        let mut d = ContentDigest::default();
        let mut lanes_only = [0u16; LANES];
        let (e_old, e_new) = (element(&old), element(&new));
        for _ in 0..65_536u32 {
            d.remove_row(&old);
            d.add_row(&new);
            for (i, l) in lanes_only.iter_mut().enumerate() {
                let o = u16::from_le_bytes([e_old[2 * i], e_old[2 * i + 1]]);
                let n = u16::from_le_bytes([e_new[2 * i], e_new[2 * i + 1]]);
                *l = l.wrapping_sub(o).wrapping_add(n);
            }
        }
        assert!(lanes_only.iter().all(|&l| l == 0), "LtHash16 alone wraps");
        assert!(!d.is_zero(), "the check lanes see the change");
    }

    #[test]
    fn cells_of_different_kinds_differ() {
        let enc = |c: Cell<'_>| {
            let mut e = RowEncoder::new();
            e.push("v", &c).unwrap();
            e.finish().to_vec()
        };
        let all = [
            enc(Cell::Null),
            enc(Cell::Int(1)),
            enc(Cell::Text("1")),
            enc(Cell::Numeric("1")),
            enc(Cell::Float(1.0)),
            enc(Cell::Bool(true)),
            enc(Cell::TimestampTz(1)),
            enc(Cell::Timestamp(1)),
            enc(Cell::Date(1)),
            enc(Cell::Bytes(b"1")),
            enc(Cell::Json("1")),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Column names count, and so does their order.
        let mut e = RowEncoder::new();
        e.push("a", &Cell::Int(1)).unwrap();
        e.push("b", &Cell::Int(2)).unwrap();
        let ab = e.finish().to_vec();
        e.clear();
        e.push("b", &Cell::Int(2)).unwrap();
        e.push("a", &Cell::Int(1)).unwrap();
        assert_ne!(ab, e.finish());
    }

    #[test]
    fn stored_form_round_trips_and_rejects_garbage() {
        let mut c = Changes::default();
        c.add_row(WHOLE_TABLE, &row(1, "a"));
        c.add_row(86_400, &row(2, "b"));
        c.remove_row(0, &row(3, "c"));
        let e = c.encode();
        // Few rows per bucket: listed by their hashes.
        assert_eq!(e.len(), 1 + 3 * (17 + 1 + 33));
        assert_eq!(Changes::decode(&e).unwrap(), c);
        // More than LIST_MAX: the digest.
        let mut many = c.clone();
        for i in 0..=LIST_MAX as i64 {
            many.add_row(0, &row(100 + i, "m"));
        }
        let m = many.encode();
        assert_eq!(m.len(), 1 + 2 * (17 + 1 + 33) + 17 + DIGEST_BYTES);
        let back = Changes::decode(&m).unwrap();
        assert_eq!(back, many);
        // A listed bucket equals the same change summed as a digest.
        let mut summed = Changes::decode(&m).unwrap();
        summed.add(&c.negated());
        summed.add(&c);
        assert_eq!(summed, many);
        assert!(Changes::decode(&m[..m.len() - 1]).is_err());
        let mut bad_count = e.clone();
        bad_count[16] = 5; // the first bucket's row change no longer matches its list
        assert!(Changes::decode(&bad_count).is_err());
        assert!(Changes::decode(&[]).is_err());
        assert!(Changes::decode(&e[..e.len() - 1]).is_err());
        // Format 1 (16-bit lanes only, before the check lanes) is refused.
        let mut v1 = e.clone();
        v1[0] = 1;
        assert!(Changes::decode(&v1).is_err());
    }

    #[test]
    fn buckets_floor_toward_minus_infinity() {
        assert_eq!(bucket_of(Some(86_399), 86_400), 0);
        assert_eq!(bucket_of(Some(86_400), 86_400), 86_400);
        assert_eq!(bucket_of(Some(-1), 86_400), -86_400);
        assert_eq!(bucket_of(None, 86_400), WHOLE_TABLE);
        assert_eq!(bucket_of(Some(5), 0), WHOLE_TABLE);
    }

    proptest! {
        /// Inserting, updating and deleting in any order: the sum of the
        /// statements' changes equals a fresh scan of what is left.
        #[test]
        fn statement_changes_add_up_to_the_content(
            ops in proptest::collection::vec((0i64..20, 0u8..3, 0i64..4), 1..80)
        ) {
            let mut table: BTreeMap<i64, (i64, String)> = BTreeMap::new();
            let mut trail = Changes::default();
            for (id, op, bucket) in ops {
                let mut stmt = Changes::default();
                match (op, table.get(&id).cloned()) {
                    (0, None) => {
                        let v = format!("v{bucket}");
                        stmt.add_row(bucket, &row(id, &v));
                        table.insert(id, (bucket, v));
                    }
                    (1, Some((b, v))) => {
                        stmt.remove_row(b, &row(id, &v));
                        let nv = format!("{v}+");
                        stmt.add_row(bucket, &row(id, &nv));
                        table.insert(id, (bucket, nv));
                    }
                    (2, Some((b, v))) => {
                        stmt.remove_row(b, &row(id, &v));
                        table.remove(&id);
                    }
                    _ => {}
                }
                let stored = Changes::decode(&stmt.encode()).unwrap();
                trail.add(&stored);
            }
            let mut scan = Changes::default();
            for (id, (b, v)) in &table {
                scan.add_row(*b, &row(*id, v));
            }
            trail.prune();
            prop_assert!(compare(&trail, &scan).is_empty());
        }
    }
}
