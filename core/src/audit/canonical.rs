//! Canonical binary encoding of typed values: the bytes audit hashes are
//! computed over. Nothing here depends on how PostgreSQL prints a value, so
//! `DateStyle`, `TimeZone`, `extra_float_digits`, `lc_*` and `bytea_output`
//! cannot change a hash.
//!
//! Every value is a tag byte and a payload:
//!
//! | tag | value | payload |
//! |---|---|---|
//! | 0x00 | NULL | none |
//! | 0x01 | boolean | 1 byte, 0 or 1 |
//! | 0x02 | integer (int2/4/8) | i64, big-endian |
//! | 0x03 | float (float4/8) | IEEE 754 bits of the f64, big-endian; every NaN as 0x7ff8000000000000 |
//! | 0x04 | text | u32 length, big-endian, then UTF-8 bytes |
//! | 0x05 | bytes | u32 length, then the bytes |
//! | 0x06 | timestamp | i64 microseconds since 2000-01-01 00:00 UTC (PostgreSQL's own epoch), big-endian |
//! | 0x07 | JSON | the JSON value, encoded below |
//!
//! JSON values: 0x20 object (u32 count, then key/value pairs sorted by the
//! key's UTF-8 bytes, each key as u32 length and bytes; for duplicate keys the
//! last one wins, as in jsonb), 0x21 array (u32 count, items), 0x22 string
//! (u32 length, unescaped UTF-8), 0x23 number, 0x24 true, 0x25 false,
//! 0x26 null. A number is encoded by value, not by spelling, so `1.0`, `1`
//! and `1e0` are the same and `1e300` equals its 301-digit decimal: a sign
//! byte (0 or 1; zero is never negative), an i64 exponent and the
//! significant digits (u32 length, ASCII, no leading or trailing zeros), so
//! that value = digits x 10^exponent.

use super::image::Scalar;
use crate::CoreError;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// A typed value, as the audit trigger reads it from a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// Microseconds since 2000-01-01 00:00:00 UTC.
    Timestamp(i64),
    /// JSON text (a jsonb value's output).
    Json(&'a str),
    /// A JSON value already in canonical form (tag 0x07 and payload), as
    /// [`ObjectEncoder`] builds it: the writer's path, which never renders
    /// and re-parses the text.
    Encoded(&'a [u8]),
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), CoreError> {
    let n = u32::try_from(n).map_err(|_| CoreError::AuditValue {
        reason: "a value longer than 4 GiB".into(),
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Append the canonical encoding of `v` to `out`.
pub fn encode_value(v: &Value<'_>, out: &mut Vec<u8>) -> Result<(), CoreError> {
    match v {
        Value::Null => out.push(0x00),
        Value::Bool(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Value::Int(i) => {
            out.push(0x02);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0x03);
            let bits = if f.is_nan() {
                0x7ff8_0000_0000_0000
            } else {
                f.to_bits()
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Text(t) => {
            out.push(0x04);
            put_len(out, t.len())?;
            out.extend_from_slice(t.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(0x05);
            put_len(out, b.len())?;
            out.extend_from_slice(b);
        }
        Value::Timestamp(us) => {
            out.push(0x06);
            out.extend_from_slice(&us.to_be_bytes());
        }
        Value::Json(text) => {
            out.push(0x07);
            let raw: &RawValue = serde_json::from_str(text).map_err(|e| CoreError::AuditValue {
                reason: format!("invalid JSON: {e}"),
            })?;
            encode_json(raw, out)?;
        }
        Value::Encoded(bytes) => out.extend_from_slice(bytes),
    }
    Ok(())
}

/// Append the canonical JSON encoding of one scalar (no 0x07 tag): the same
/// bytes as encoding its JSON text.
pub fn encode_scalar(v: &Scalar<'_>, out: &mut Vec<u8>) -> Result<(), CoreError> {
    match v {
        Scalar::Null => out.push(0x26),
        Scalar::Bool(true) => out.push(0x24),
        Scalar::Bool(false) => out.push(0x25),
        Scalar::Number(n) => {
            out.push(0x23);
            encode_number(n, out)?;
        }
        Scalar::String(s) => {
            out.push(0x22);
            put_len(out, s.len())?;
            out.extend_from_slice(s.as_bytes());
        }
        Scalar::Json(text) => {
            let raw: &RawValue = serde_json::from_str(text).map_err(json_err)?;
            encode_json(raw, out)?;
        }
    }
    Ok(())
}

/// Builds the canonical encoding of a JSON object (a [`Value::Encoded`])
/// member by member. Members must come in strictly ascending byte order of
/// their keys, which is the canonical order: callers sort once (a table's
/// columns), not per row.
#[derive(Debug)]
pub struct ObjectEncoder {
    buf: Vec<u8>,
    count: u32,
    last: Vec<u8>,
}

impl Default for ObjectEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectEncoder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0x07, 0x20, 0, 0, 0, 0]);
        ObjectEncoder {
            buf,
            count: 0,
            last: Vec::new(),
        }
    }

    pub fn push(&mut self, key: &str, v: &Scalar<'_>) -> Result<(), CoreError> {
        if self.count > 0 && key.as_bytes() <= self.last.as_slice() {
            return Err(CoreError::AuditValue {
                reason: format!("object keys out of canonical order at {key:?}"),
            });
        }
        self.last.clear();
        self.last.extend_from_slice(key.as_bytes());
        self.count += 1;
        put_len(&mut self.buf, key.len())?;
        self.buf.extend_from_slice(key.as_bytes());
        encode_scalar(v, &mut self.buf)
    }

    /// The encoded object, tag included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[2..6].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// Builds the canonical encoding of a JSON array (a [`Value::Encoded`]) of
/// encoded values, item by item: the chunk entries of a multi-row statement
/// hold one image per row in an array. The same bytes as encoding the
/// array's JSON text.
#[derive(Debug)]
pub struct ArrayEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for ArrayEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ArrayEncoder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[0x07, 0x21, 0, 0, 0, 0]);
        ArrayEncoder { buf, count: 0 }
    }

    /// Append an item encoded as [`Value::Encoded`] (its 0x07 tag is
    /// dropped: items are JSON values inside the array), or JSON null.
    pub fn push(&mut self, item: Option<&[u8]>) -> Result<(), CoreError> {
        match item {
            None => self.buf.push(0x26),
            Some(b) => match b.split_first() {
                Some((0x07, payload)) if !payload.is_empty() => self.buf.extend_from_slice(payload),
                _ => {
                    return Err(CoreError::AuditValue {
                        reason: "an array item must be an encoded JSON value".into(),
                    })
                }
            },
        }
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| CoreError::AuditValue {
                reason: "an array of more than 2^32 items".into(),
            })?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes encoded so far.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// The encoded array, tag included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[2..6].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

fn json_err(e: serde_json::Error) -> CoreError {
    CoreError::AuditValue {
        reason: format!("invalid JSON: {e}"),
    }
}

fn encode_json(raw: &RawValue, out: &mut Vec<u8>) -> Result<(), CoreError> {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'{') => {
            let map: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(json_err)?;
            out.push(0x20);
            put_len(out, map.len())?;
            // BTreeMap<String> iterates in byte order of the keys.
            for (k, v) in map {
                put_len(out, k.len())?;
                out.extend_from_slice(k.as_bytes());
                encode_json(v, out)?;
            }
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(json_err)?;
            out.push(0x21);
            put_len(out, items.len())?;
            for v in items {
                encode_json(v, out)?;
            }
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(json_err)?;
            out.push(0x22);
            put_len(out, s.len())?;
            out.extend_from_slice(s.as_bytes());
        }
        Some(b't') => out.push(0x24),
        Some(b'f') => out.push(0x25),
        Some(b'n') => out.push(0x26),
        Some(_) => {
            out.push(0x23);
            encode_number(text.trim_end(), out)?;
        }
        None => {
            return Err(CoreError::AuditValue {
                reason: "empty JSON value".into(),
            })
        }
    }
    Ok(())
}

/// A JSON number by value: sign, exponent, significant digits.
fn encode_number(t: &str, out: &mut Vec<u8>) -> Result<(), CoreError> {
    let bad = || CoreError::AuditValue {
        reason: format!("invalid JSON number {t:?}"),
    };
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (mantissa, exp_part) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut exp: i64 = match exp_part {
        Some(e) => e.trim_start_matches('+').parse().map_err(|_| bad())?,
        None => 0,
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    if int_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    exp = exp
        .checked_sub(i64::try_from(frac_part.len()).map_err(|_| bad())?)
        .ok_or_else(bad)?;
    let mut digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let lead = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..lead);
    let trimmed = digits.trim_end_matches('0').len();
    exp = exp
        .checked_add(i64::try_from(digits.len() - trimmed).map_err(|_| bad())?)
        .ok_or_else(bad)?;
    digits.truncate(trimmed);
    if digits.is_empty() {
        // Zero: one spelling, never negative.
        out.push(0);
        out.extend_from_slice(&0i64.to_be_bytes());
        return put_len(out, 0);
    }
    out.push(u8::from(neg));
    out.extend_from_slice(&exp.to_be_bytes());
    put_len(out, digits.len())?;
    out.extend_from_slice(digits.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An owned cell, for generating rows.
    #[derive(Debug, Clone)]
    enum OwnedCell {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Numeric(String),
        Text(String),
        Bytes(Vec<u8>),
        TimestampTz(i64),
        Date(i32),
        Json(String),
    }

    impl OwnedCell {
        fn cell(&self) -> crate::audit::Cell<'_> {
            use crate::audit::Cell;
            match self {
                OwnedCell::Null => Cell::Null,
                OwnedCell::Bool(b) => Cell::Bool(*b),
                OwnedCell::Int(i) => Cell::Int(*i),
                OwnedCell::Float(f) => Cell::Float(*f),
                OwnedCell::Numeric(n) => Cell::Numeric(n),
                OwnedCell::Text(t) => Cell::Text(t),
                OwnedCell::Bytes(b) => Cell::Bytes(b),
                OwnedCell::TimestampTz(t) => Cell::TimestampTz(*t),
                OwnedCell::Date(d) => Cell::Date(*d),
                OwnedCell::Json(j) => Cell::Json(j),
            }
        }
    }

    fn arb_cell() -> impl Strategy<Value = OwnedCell> {
        prop_oneof![
            Just(OwnedCell::Null),
            any::<bool>().prop_map(OwnedCell::Bool),
            any::<i64>().prop_map(OwnedCell::Int),
            any::<f64>().prop_map(OwnedCell::Float),
            (-99_999i64..99_999, 0usize..4).prop_map(|(m, s)| {
                let t = m.unsigned_abs().to_string();
                let t = format!("{t:0>w$}", w = s + 1);
                let (i, f) = t.split_at(t.len() - s);
                let sign = if m < 0 { "-" } else { "" };
                OwnedCell::Numeric(if s == 0 {
                    format!("{sign}{i}")
                } else {
                    format!("{sign}{i}.{f}")
                })
            }),
            Just(OwnedCell::Numeric("NaN".into())),
            "\\PC{0,20}".prop_map(OwnedCell::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(OwnedCell::Bytes),
            any::<i64>().prop_map(OwnedCell::TimestampTz),
            any::<i32>().prop_map(OwnedCell::Date),
            Just(OwnedCell::Json(r#" {"b": [1.50, "x"], "a": null} "#.into())),
        ]
    }

    fn enc(v: Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&v, &mut out).unwrap();
        out
    }

    #[test]
    fn fixed_layouts() {
        assert_eq!(enc(Value::Null), [0x00]);
        assert_eq!(enc(Value::Bool(true)), [0x01, 1]);
        assert_eq!(
            enc(Value::Int(-2)),
            [0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(enc(Value::Text("hé")), [0x04, 0, 0, 0, 3, b'h', 0xc3, 0xa9]);
        assert_eq!(enc(Value::Timestamp(1)), [0x06, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(enc(Value::Float(f64::NAN)), enc(Value::Float(-f64::NAN)));
        assert_ne!(enc(Value::Float(0.0)), enc(Value::Float(-0.0)));
    }

    #[test]
    fn json_is_encoded_by_value() {
        // Key order, whitespace, escapes and number spelling do not matter.
        let a = enc(Value::Json(
            r#"{"b": [1.0, "x"], "a": {"z": null, "y": true}}"#,
        ));
        let b = enc(Value::Json(r#"{"a":{"y":true,"z":null},"b":[1,"\u0078"]}"#));
        assert_eq!(a, b);
        assert_eq!(
            enc(Value::Json("1e300")),
            enc(Value::Json(&format!("1{}", "0".repeat(300))))
        );
        assert_eq!(enc(Value::Json("-0.0")), enc(Value::Json("0")));
        assert_eq!(enc(Value::Json("12.50")), enc(Value::Json("1.25e1")));
        assert_ne!(enc(Value::Json("12.5")), enc(Value::Json("125")));
        assert_ne!(
            enc(Value::Json(r#"{"a":1}"#)),
            enc(Value::Json(r#"{"a":"1"}"#))
        );
        // Duplicate keys: the last wins, as in jsonb.
        assert_eq!(
            enc(Value::Json(r#"{"a":1,"a":2}"#)),
            enc(Value::Json(r#"{"a":2}"#))
        );
        let mut out = Vec::new();
        assert!(encode_value(&Value::Json("{"), &mut out).is_err());
    }

    #[test]
    fn types_never_collide() {
        // Same payload bytes, different types: different encodings.
        assert_ne!(enc(Value::Text("ab")), enc(Value::Bytes(b"ab")));
        assert_ne!(enc(Value::Int(0)), enc(Value::Timestamp(0)));
        assert_ne!(enc(Value::Json(r#""x""#)), enc(Value::Text("x")));
    }

    #[test]
    fn array_encoder_equals_encoding_the_array_text() {
        let mut a = ObjectEncoder::new();
        a.push("id", &Scalar::Number("1".into())).unwrap();
        a.push("msg", &Scalar::String("x\u{e9}".into())).unwrap();
        let a = a.finish();
        let mut arr = ArrayEncoder::new();
        arr.push(Some(&a)).unwrap();
        arr.push(None).unwrap();
        arr.push(Some(&a)).unwrap();
        assert_eq!(arr.len(), 3);
        let text = r#"[{"msg": "x\u00e9", "id": 1.0}, null, {"id": 1, "msg": "x\u00e9"}]"#;
        assert_eq!(arr.finish(), enc(Value::Json(text)));
        let mut bad = ArrayEncoder::new();
        assert!(bad.push(Some(&[0x04, 0, 0, 0, 0])).is_err());
        assert!(bad.push(Some(&[0x07])).is_err());
        assert_eq!(ArrayEncoder::new().finish(), enc(Value::Json("[]")));
    }

    proptest! {
        #[test]
        fn number_spellings_agree(m in -1_000_000i64..1_000_000, scale in 0u32..6, extra_zeros in 0usize..4) {
            // m / 10^scale written as a plain decimal, with trailing zeros,
            // and in exponent notation: one encoding.
            let sci = format!("{m}e-{scale}");
            let digits = m.unsigned_abs().to_string();
            let sign = if m < 0 { "-" } else { "" };
            let dec = if scale == 0 {
                format!("{sign}{digits}.{}", "0".repeat(extra_zeros.max(1)))
            } else {
                let s = scale as usize;
                let padded = format!("{:0>width$}", digits, width = s + 1);
                let (i, f) = padded.split_at(padded.len() - s);
                format!("{sign}{i}.{f}{}", "0".repeat(extra_zeros))
            };
            prop_assert_eq!(enc(Value::Json(&sci)), enc(Value::Json(&dec)));
        }

        #[test]
        fn object_encoder_equals_encoding_the_image_text(
            cells in proptest::collection::btree_map("[a-z_é]{1,8}", arb_cell(), 0..8),
            reversed in any::<bool>(),
        ) {
            use crate::audit::image::{scalar, ImageBuilder};
            // The writer's path (members in key order, never text) and the
            // verifier's (the stored image's text, any member order) agree.
            let mut text = ImageBuilder::new();
            let mut order: Vec<_> = cells.iter().collect();
            if reversed {
                order.reverse();
            }
            for (k, c) in &order {
                text.push(k, &c.cell());
            }
            let mut direct = ObjectEncoder::new();
            for (k, c) in &cells {
                direct.push(k, &scalar(&c.cell())).unwrap();
            }
            let text = text.finish();
            prop_assert_eq!(enc(Value::Json(&text)), direct.finish(), "{}", text);
        }

        #[test]
        fn arbitrary_json_text_never_panics(s in "\\PC{0,60}") {
            let mut out = Vec::new();
            let _ = encode_value(&Value::Json(&s), &mut out);
        }
    }
}
