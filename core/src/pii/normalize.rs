//! Normalization before matching: obfuscated and encoded forms of the
//! characters PII is written with, decoded into a copy the scanner reads,
//! with every byte of the copy mapped back to the original bytes it came
//! from, so spans are reported (and redacted) in the original text.
//!
//! Decoded, only when the result is a character the scanner matches:
//! - percent-encoding `%40` (printable ASCII only: `%0A` stays as it is),
//! - HTML numeric (`&#64;`, `&#x40;`) and a few named entities (`&commat;`,
//!   `&period;`, `&nbsp;` ...),
//! - JSON escapes `\u0040`,
//! - in UTF-8 text: fullwidth forms (`＠`, `１`), Unicode dashes and hyphens
//!   (U+2010..U+2015, U+2212) as `-`, Unicode spaces (no-break, thin,
//!   ideographic) as a space, and zero-width characters and the soft hyphen
//!   removed.
//!
//! Nothing else changes: text with none of these is scanned as it is, with
//! no copy (the common case costs one pass of `memchr`-class searching).

/// The normalized copy. Each change is an edit: normalized position `n`,
/// the 0 or 1 byte it produced there, and the original bytes `o0..o1` it
/// replaced; every other byte is copied, so its original position follows
/// from the last edit before it.
pub struct Normalized {
    pub text: Vec<u8>,
    edits: Vec<Edit>,
}

#[derive(Clone, Copy)]
struct Edit {
    n: u32,
    out: u32,
    o0: u32,
    o1: u32,
}

impl Normalized {
    /// The original byte range of the normalized range `s..e` (`e > s`).
    pub fn original(&self, s: usize, e: usize) -> (usize, usize) {
        (self.map(s).0, self.map(e - 1).1)
    }

    /// The original range of the normalized byte `k`.
    fn map(&self, k: usize) -> (usize, usize) {
        let k = k as u32;
        // The last edit starting at or before k.
        let i = self.edits.partition_point(|x| x.n <= k);
        if i == 0 {
            return (k as usize, k as usize + 1);
        }
        let x = self.edits[i - 1];
        if x.out == 1 && x.n == k {
            return (x.o0 as usize, x.o1 as usize);
        }
        let o = x.o1 + (k - x.n - x.out);
        (o as usize, o as usize + 1)
    }
}

/// Bytes where a decoding can start: `%`, `&`, `\`, and (UTF-8) the lead
/// bytes of the mapped characters (U+00A0, U+00AD; U+1680, U+180E;
/// U+2000..U+206F and U+2212; U+3000; U+FE58..U+FF5E).
static TRIGGER: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'%' as usize] = 1;
    t[b'&' as usize] = 1;
    t[b'\\' as usize] = 1;
    t[0xc2] = 2;
    t[0xe1] = 2;
    t[0xe2] = 2;
    t[0xe3] = 2;
    t[0xef] = 2;
    t
};

/// The normalized copy of `text`, or `None` when normalization changes
/// nothing. `unicode`: the text is UTF-8 (the database's encoding); the
/// Unicode mappings apply only then. Texts over 4 GiB are not normalized.
pub fn normalize(text: &[u8], unicode: bool) -> Option<Normalized> {
    let wanted = if unicode { 3 } else { 1 };
    let first = text
        .iter()
        .position(|&b| TRIGGER[b as usize] & wanted != 0)?;
    if text.len() > u32::MAX as usize {
        return None;
    }
    let mut out: Option<Normalized> = None;
    let mut copied = 0; // text[..copied] is in `out` (once it exists)
    let mut i = first;
    while i < text.len() {
        let b = text[i];
        if TRIGGER[b as usize] & wanted == 0 {
            i += 1;
            continue;
        }
        let (decoded, len) = match b {
            b'%' => (percent(text, i).map(Some), 3),
            b'&' => match entity(text, i) {
                Some((c, l)) => (Some(Some(c)), l),
                None => (None, 1),
            },
            b'\\' => (json_escape(text, i).and_then(|c| map_char(c, true)), 6),
            _ => match utf8_char(text, i) {
                Some((c, l)) => (map_char(c, false).filter(|r| in_token(text, i, l, *r)), l),
                None => (None, 1),
            },
        };
        let Some(replacement) = decoded else {
            i += len.min(if b >= 0x80 { len } else { 1 });
            continue;
        };
        // Something changes at i: bring the copy up to date.
        let n = out.get_or_insert_with(|| Normalized {
            text: Vec::with_capacity(text.len()),
            edits: Vec::new(),
        });
        n.text.extend_from_slice(&text[copied..i]);
        n.edits.push(Edit {
            n: n.text.len() as u32,
            out: u32::from(replacement.is_some()),
            o0: i as u32,
            o1: (i + len) as u32,
        });
        if let Some(c) = replacement {
            n.text.push(c);
        }
        i += len;
        copied = i;
    }
    let mut n = out?;
    n.text.extend_from_slice(&text[copied..]);
    Some(n)
}

/// A Unicode space or dash is mapped only inside a token (next to an ASCII
/// letter or digit on either side: `958‐644`, `020 7946`, `jane.doe`):
/// prose dashes and spaces (`arrived — attached`) are left alone, so the
/// text is scanned as it is, with no copy. Other mappings always apply.
fn in_token(s: &[u8], i: usize, len: usize, r: Option<u8>) -> bool {
    if !matches!(r, Some(b' ' | b'-')) {
        return true;
    }
    let alnum = |k: Option<&u8>| k.is_some_and(u8::is_ascii_alphanumeric);
    // A fullwidth letter or digit (U+FF10..U+FF5A, three bytes) counts too.
    let fullwidth = |k: usize| {
        s.get(k..k + 3).is_some_and(|c| {
            c[0] == 0xef
                && ((c[1] == 0xbc && (0x90..=0xbf).contains(&c[2]))
                    || (c[1] == 0xbd && (0x80..=0x9a).contains(&c[2])))
        })
    };
    alnum(i.checked_sub(1).and_then(|k| s.get(k)))
        || alnum(s.get(i + len))
        || (i >= 3 && fullwidth(i - 3))
        || fullwidth(i + len)
}

fn hex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// `%HH` at `i` decoding to printable ASCII.
fn percent(s: &[u8], i: usize) -> Option<u8> {
    let v = hex(*s.get(i + 1)?)? * 16 + hex(*s.get(i + 2)?)?;
    (0x20..0x7f).contains(&v).then_some(v as u8)
}

/// `&#64;`, `&#x40;` or `&name;` at `i`: the ASCII character it maps to and
/// the entity's length.
fn entity(s: &[u8], i: usize) -> Option<(u8, usize)> {
    let rest = &s[i + 1..s.len().min(i + 12)];
    let semi = rest.iter().position(|&b| b == b';')?;
    let body = &rest[..semi];
    let len = semi + 2;
    let cp = if let Some(num) = body.strip_prefix(b"#") {
        let (digits, radix) = match num.first() {
            Some(b'x' | b'X') => (&num[1..], 16),
            _ => (num, 10),
        };
        if digits.is_empty() || digits.len() > 7 {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()?
    } else {
        const NAMED: [(&[u8], u32); 14] = [
            (b"commat", 0x40),
            (b"period", 0x2e),
            (b"nbsp", 0xa0),
            (b"plus", 0x2b),
            (b"lpar", 0x28),
            (b"rpar", 0x29),
            (b"hyphen", 0x2010),
            (b"dash", 0x2010),
            (b"minus", 0x2212),
            (b"colon", 0x3a),
            (b"sol", 0x2f),
            (b"lowbar", 0x5f),
            (b"equals", 0x3d),
            (b"num", 0x23),
        ];
        NAMED.iter().find(|(n, _)| *n == body)?.1
    };
    Some((map_char(cp, true)??, len))
}

/// `\uHHHH` at `i`.
fn json_escape(s: &[u8], i: usize) -> Option<u32> {
    if s.get(i + 1) != Some(&b'u') || s.len() < i + 6 {
        return None;
    }
    let mut v = 0;
    for &b in &s[i + 2..i + 6] {
        v = v * 16 + hex(b)?;
    }
    Some(v)
}

/// The UTF-8 character at `i` (a lead byte) and its length.
fn utf8_char(s: &[u8], i: usize) -> Option<(u32, usize)> {
    let b = s[i];
    let (len, init) = match b {
        0xc2..=0xdf => (2, (b & 0x1f) as u32),
        0xe0..=0xef => (3, (b & 0x0f) as u32),
        0xf0..=0xf4 => (4, (b & 0x07) as u32),
        _ => return None,
    };
    let cont = s.get(i + 1..i + len)?;
    let mut cp = init;
    for &c in cont {
        if c & 0xc0 != 0x80 {
            return None;
        }
        cp = (cp << 6) | (c & 0x3f) as u32;
    }
    Some((cp, len))
}

/// What a code point becomes: `Some(Some(ascii))`, `Some(None)` (removed),
/// or `None` (kept as it is). `escaped`: it was written as an escape, so an
/// ASCII character decodes to itself (printable ones only).
fn map_char(cp: u32, escaped: bool) -> Option<Option<u8>> {
    match cp {
        0x20..=0x7e if escaped => Some(Some(cp as u8)),
        // Fullwidth ASCII variants.
        0xff01..=0xff5e => Some(Some((cp - 0xfee0) as u8)),
        0x3000 => Some(Some(b' ')),
        // Hyphens, dashes, minus signs.
        0x2010..=0x2015 | 0x2212 | 0xfe58 | 0xfe63 => Some(Some(b'-')),
        // Spaces: no-break, en/em/thin/hair, narrow no-break, medium math.
        0xa0 | 0x1680 | 0x2000..=0x200a | 0x202f | 0x205f => Some(Some(b' ')),
        // Zero-width characters and the soft hyphen: removed.
        0xad | 0x180e | 0x200b..=0x200d | 0x2060 | 0xfeff => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        match normalize(s.as_bytes(), true) {
            Some(n) => String::from_utf8(n.text).unwrap(),
            None => s.to_string(),
        }
    }

    #[test]
    fn decodes_what_pii_is_hidden_with() {
        assert_eq!(norm("jane.doe%40example.com"), "jane.doe@example.com");
        assert_eq!(norm("jane&#64;example.com"), "jane@example.com");
        assert_eq!(norm("jane&#x40;example&period;com"), "jane@example.com");
        assert_eq!(norm("jane&commat;example.com"), "jane@example.com");
        assert_eq!(norm("jane\\u0040example.com"), "jane@example.com");
        assert_eq!(norm("jane＠example.com"), "jane@example.com");
        assert_eq!(norm("jane\u{200b}@example.com"), "jane@example.com");
        assert_eq!(norm("１９２.１６８.１.１"), "192.168.1.1");
        assert_eq!(norm("958\u{2010}644\u{2011}2223"), "958-644-2223");
        assert_eq!(norm("020\u{a0}7946\u{202f}0958"), "020 7946 0958");
        assert_eq!(norm("password%3Dhunter2"), "password=hunter2");
        assert_eq!(norm("4111\u{ad}1111"), "41111111");
    }

    #[test]
    fn leaves_everything_else_alone() {
        for s in [
            "100% done",
            "a & b",
            "C:\\path\\to",
            "%0A and %zz",
            "&unknown; &#;",
            "Grüße ☃ 用户",
            "\\u00e9",
            "&#233;",
        ] {
            assert_eq!(norm(s), s, "{s}");
        }
        assert!(normalize(b"plain ascii line", true).is_none());
        assert!(normalize("Grüße".as_bytes(), true).is_none());
    }

    #[test]
    fn maps_back_to_the_original_bytes() {
        let s = "mail jane%40example.com now";
        let n = normalize(s.as_bytes(), true).unwrap();
        let t = std::str::from_utf8(&n.text).unwrap();
        let (a, b) = (t.find("jane").unwrap(), t.find(" now").unwrap());
        let (oa, ob) = n.original(a, b);
        assert_eq!(&s[oa..ob], "jane%40example.com");
        let s = "tel ５５５\u{2010}０１９９ ok";
        let n = normalize(s.as_bytes(), true).unwrap();
        let t = std::str::from_utf8(&n.text).unwrap();
        assert_eq!(t, "tel 555-0199 ok");
        let (oa, ob) = n.original(4, 12);
        assert_eq!(&s[oa..ob], "５５５\u{2010}０１９９");
    }

    proptest::proptest! {
        /// Every normalized byte maps to an original range, in order,
        /// without overlap (an ASCII one on character boundaries); a byte
        /// that was copied maps to the same byte.
        #[test]
        fn mapping_is_monotonic_and_exact(
            t in "([a-z0-9 .@+-]|%40|%2E|&#64;|&commat;|\\\\u0040|＠|１|\u{2010}|\u{a0}|\u{200b}|—|é|用)*"
        ) {
            if let Some(n) = normalize(t.as_bytes(), true) {
                let mut last = 0;
                for k in 0..n.text.len() {
                    let (a, b) = n.map(k);
                    proptest::prop_assert!(a >= last && b > a && b <= t.len());
                    if n.text[k] < 0x80 {
                        // (Spans start and end on ASCII bytes of the copy.)
                        proptest::prop_assert!(t.is_char_boundary(a) && t.is_char_boundary(b));
                    }
                    if b - a == 1 {
                        proptest::prop_assert_eq!(t.as_bytes()[a], n.text[k]);
                    }
                    last = b;
                }
            }
        }
    }

    #[test]
    fn unicode_only_in_utf8_text() {
        // In LATIN1, 0xEF 0xBC 0xA0 are three letters, not U+FF20.
        assert!(normalize("a＠b".as_bytes(), false).is_none());
        assert!(normalize(b"a%40b", false).is_some());
    }
}
