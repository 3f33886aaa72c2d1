//! Row images: a row's columns as the JSON object the audit trail stores.
//!
//! Values are rendered here from their binary form, never through a
//! PostgreSQL output function whose result depends on session settings, so
//! the same row gives the same image (and hash) under any `DateStyle`,
//! `TimeZone`, `IntervalStyle`, `extra_float_digits` or `bytea_output`:
//!
//! | column type | JSON |
//! |---|---|
//! | boolean | `true` / `false` |
//! | int2, int4, int8 | number |
//! | float4, float8 | shortest number that reads back to the same float; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | numeric | number (its exact decimal); `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | timestamptz | `"2026-11-22T20:15:36.123456Z"` (UTC, always 6 fraction digits) |
//! | timestamp | the same without `Z` |
//! | date | `"2026-11-22"` |
//! | bytea | `"\\x0a1b"` (hex) |
//! | json, jsonb | the value itself |
//! | anything else | its text form, computed by the caller under fixed settings |
//!
//! Years outside 0000–9999 are written with a sign (`"+12345-01-01"`,
//! `"-0044-03-15"`, astronomical numbering); `±infinity` as
//! `"infinity"`/`"-infinity"`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One column value in binary form.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// numeric's own decimal text (`numeric_out`, settings-independent).
    Numeric(&'a str),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// Microseconds since 2000-01-01 00:00 UTC.
    TimestampTz(i64),
    /// Microseconds since 2000-01-01 00:00 (no zone).
    Timestamp(i64),
    /// Days since 2000-01-01.
    Date(i32),
    /// A JSON value's text, embedded as it is.
    Json(&'a str),
}

/// Builds a JSON object, one column at a time.
#[derive(Debug, Default)]
pub struct ImageBuilder {
    out: String,
    empty: bool,
}

impl ImageBuilder {
    pub fn new() -> Self {
        let mut out = String::with_capacity(256);
        out.push('{');
        ImageBuilder { out, empty: true }
    }

    pub fn push(&mut self, name: &str, cell: &Cell<'_>) {
        self.push_scalar(name, &scalar(cell));
    }

    pub fn push_scalar(&mut self, name: &str, v: &Scalar<'_>) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_json_string(&mut self.out, name);
        self.out.push(':');
        push_scalar(&mut self.out, v);
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// One cell's JSON text on its own.
pub fn render_cell(cell: &Cell<'_>) -> String {
    let mut s = String::new();
    push_cell(&mut s, cell);
    s
}

/// Append `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A cell as the JSON value it becomes: what both the image text and its
/// jsonb (built without parsing text) are made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A JSON number, spelled as valid JSON.
    Number(Cow<'a, str>),
    /// A JSON string's content (unescaped).
    String(Cow<'a, str>),
    /// A JSON value's text, embedded as it is.
    Json(&'a str),
}

/// The JSON value of one cell.
pub fn scalar<'a>(cell: &Cell<'a>) -> Scalar<'a> {
    let owned = |f: &dyn Fn(&mut String)| {
        let mut s = String::new();
        f(&mut s);
        Cow::Owned(s)
    };
    match cell {
        Cell::Null => Scalar::Null,
        Cell::Bool(b) => Scalar::Bool(*b),
        Cell::Int(i) => Scalar::Number(owned(&|s| {
            let _ = write!(s, "{i}");
        })),
        Cell::Float(f) if f.is_nan() => Scalar::String(Cow::Borrowed("NaN")),
        Cell::Float(f) if f.is_infinite() => Scalar::String(Cow::Borrowed(if *f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        })),
        Cell::Float(f) => Scalar::Number(owned(&|s| push_float(s, *f))),
        Cell::Numeric(t) => match *t {
            "NaN" | "Infinity" | "-Infinity" => Scalar::String(Cow::Borrowed(t)),
            _ => Scalar::Number(Cow::Borrowed(t)),
        },
        Cell::Text(t) => Scalar::String(Cow::Borrowed(t)),
        Cell::Bytes(b) => Scalar::String(owned(&|s| {
            s.push_str("\\x");
            s.push_str(&hex::encode(b));
        })),
        Cell::TimestampTz(us) => Scalar::String(owned(&|s| push_timestamp(s, *us, true))),
        Cell::Timestamp(us) => Scalar::String(owned(&|s| push_timestamp(s, *us, false))),
        Cell::Date(d) => Scalar::String(match *d {
            i32::MAX => Cow::Borrowed("infinity"),
            i32::MIN => Cow::Borrowed("-infinity"),
            d => owned(&|s| push_date(s, i64::from(d))),
        }),
        Cell::Json(j) => Scalar::Json(j.trim()),
    }
}

fn push_cell(out: &mut String, cell: &Cell<'_>) {
    push_scalar(out, &scalar(cell));
}

fn push_scalar(out: &mut String, v: &Scalar<'_>) {
    match v {
        Scalar::Null => out.push_str("null"),
        Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Scalar::Number(n) => out.push_str(n),
        Scalar::String(s) => push_json_string(out, s),
        Scalar::Json(j) => out.push_str(j),
    }
}

/// A finite float's shortest round-trip spelling.
fn push_float(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0');
    } else {
        let a = f.abs();
        // Rust's float formatting is the shortest round-trip form; plain
        // notation for ordinary magnitudes, exponent form (valid JSON) for
        // the rest so 1e300 is not written out as 301 digits.
        if (1e-6..1e21).contains(&a) {
            let _ = write!(out, "{f}");
        } else {
            let _ = write!(out, "{f:e}");
        }
    }
}

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 0000-03-01 to 2000-01-01 in the proleptic Gregorian calendar.
const DAYS_0000_03_01_TO_2000: i64 = 730_425;

/// Civil date from days since 2000-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + DAYS_0000_03_01_TO_2000;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn push_date(out: &mut String, days: i64) {
    let (y, m, d) = civil(days);
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    } else {
        let sign = if y < 0 { '-' } else { '+' };
        let _ = write!(out, "{sign}{:04}-{m:02}-{d:02}", y.unsigned_abs());
    }
}

/// A timestamp as UTC ISO 8601 text (`2026-11-22T20:15:36.123456Z`).
pub fn timestamp_utc(us: i64) -> String {
    let mut s = String::new();
    push_timestamp(&mut s, us, true);
    s
}

fn push_timestamp(out: &mut String, us: i64, utc: bool) {
    match us {
        i64::MAX => return out.push_str("infinity"),
        i64::MIN => return out.push_str("-infinity"),
        _ => {}
    }
    let days = us.div_euclid(USECS_PER_DAY);
    let rem = us.rem_euclid(USECS_PER_DAY);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    push_date(out, days);
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if utc {
        out.push('Z');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(c: Cell<'_>) -> String {
        let mut b = ImageBuilder::new();
        b.push("v", &c);
        let s = b.finish();
        s["{\"v\":".len()..s.len() - 1].to_string()
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(one(Cell::Date(0)), "\"2000-01-01\"");
        assert_eq!(one(Cell::Date(-1)), "\"1999-12-31\"");
        assert_eq!(one(Cell::Date(59)), "\"2000-02-29\"");
        assert_eq!(one(Cell::Date(9822)), "\"2026-11-22\"");
        assert_eq!(one(Cell::Date(-730_485)), "\"0000-01-01\"");
        assert_eq!(one(Cell::Date(-730_486)), "\"-0001-12-31\"");
        assert_eq!(one(Cell::Date(i32::MAX)), "\"infinity\"");
        assert_eq!(
            one(Cell::TimestampTz(9822 * USECS_PER_DAY + 72_936_123_456)),
            "\"2026-11-22T20:15:36.123456Z\""
        );
        assert_eq!(one(Cell::Timestamp(-1)), "\"1999-12-31T23:59:59.999999\"");
        assert_eq!(one(Cell::TimestampTz(i64::MIN)), "\"-infinity\"");
        // 294276 AD, PostgreSQL's last representable year.
        assert!(one(Cell::Timestamp(9_223_371_331_199_999_999))
            .starts_with("\"+294276-12-31T23:59:59.999999"));
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(one(Cell::Float(0.1)), "0.1");
        assert_eq!(one(Cell::Float(-0.0)), "0");
        assert_eq!(one(Cell::Float(1e300)), "1e300");
        assert_eq!(one(Cell::Float(f64::NAN)), "\"NaN\"");
        assert_eq!(one(Cell::Float(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(one(Cell::Float(95.5)), "95.5");
        assert_eq!(one(Cell::Numeric("12.50")), "12.50");
        assert_eq!(one(Cell::Numeric("NaN")), "\"NaN\"");
        assert_eq!(one(Cell::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(
            one(Cell::Text("a\"b\\c\n\u{1}é")),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
        assert_eq!(one(Cell::Bytes(&[0, 0xab])), "\"\\\\x00ab\"");
        assert_eq!(one(Cell::Json(" {\"a\": [1]} ")), "{\"a\": [1]}");
    }

    #[test]
    fn images_are_valid_json() {
        let mut b = ImageBuilder::new();
        b.push("id", &Cell::Int(7));
        b.push("msg", &Cell::Text("x\u{7f}\u{1f}"));
        b.push("n", &Cell::Null);
        b.push("f", &Cell::Float(1e-7));
        let s = b.finish();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["msg"], "x\u{7f}\u{1f}");
        assert!(ImageBuilder::new().finish() == "{}");
    }

    proptest::proptest! {
        #[test]
        fn floats_round_trip(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL) {
            let s = one(Cell::Float(f));
            let back: f64 = s.parse().unwrap();
            proptest::prop_assert_eq!(back, f);
        }

        #[test]
        fn any_text_is_valid_json(s in ".*") {
            let j = one(Cell::Text(&s));
            let back: String = serde_json::from_str(&j).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
