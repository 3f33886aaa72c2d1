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

/// The normalized copy: `text[k]` came from `orig[start[k]..end[k]]`.
pub struct Normalized {
    pub text: Vec<u8>,
    start: Vec<u32>,
    end: Vec<u32>,
}

impl Normalized {
    /// The original byte range of the normalized range `s..e` (`e > s`).
    pub fn original(&self, s: usize, e: usize) -> (usize, usize) {
        (self.start[s] as usize, self.end[e - 1] as usize)
    }
}

/// Whether `text` may hold anything [`normalize`] decodes.
#[inline]
fn may_need(text: &[u8], unicode: bool) -> bool {
    memchr::memchr3(b'%', b'&', b'\\', text).is_some() || (unicode && !text.is_ascii())
}

/// The normalized copy of `text`, or `None` when normalization changes
/// nothing. `unicode`: the text is UTF-8 (the database's encoding); the
/// Unicode mappings apply only then. Texts over 4 GiB are not normalized.
pub fn normalize(text: &[u8], unicode: bool) -> Option<Normalized> {
    if !may_need(text, unicode) || text.len() > u32::MAX as usize {
        return None;
    }
    let mut out: Option<Normalized> = None;
    let mut copied = 0; // text[..copied] is in `out` (once it exists)
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let (decoded, len) = match b {
            b'%' => (percent(text, i).map(Some), 3),
            b'&' => match entity(text, i) {
                Some((c, l)) => (Some(Some(c)), l),
                None => (None, 1),
            },
            b'\\' => (json_escape(text, i).and_then(|c| map_char(c, true)), 6),
            0x80.. if unicode => match utf8_char(text, i) {
                Some((c, l)) => match map_char(c, false) {
                    Some(r) => (Some(r), l),
                    None => {
                        i += l;
                        continue;
                    }
                },
                None => (None, 1),
            },
            _ => (None, 1),
        };
        let Some(replacement) = decoded else {
            i += 1;
            continue;
        };
        // Something changes at i: bring the copy up to date.
        let n = out.get_or_insert_with(|| Normalized {
            text: Vec::with_capacity(text.len()),
            start: Vec::with_capacity(text.len()),
            end: Vec::with_capacity(text.len()),
        });
        push_same(n, text, copied, i);
        if let Some(c) = replacement {
            n.text.push(c);
            n.start.push(i as u32);
            n.end.push((i + len) as u32);
        }
        i += len;
        copied = i;
    }
    let mut n = out?;
    push_same(&mut n, text, copied, text.len());
    Some(n)
}

fn push_same(n: &mut Normalized, text: &[u8], from: usize, to: usize) {
    n.text.extend_from_slice(&text[from..to]);
    for k in from..to {
        n.start.push(k as u32);
        n.end.push(k as u32 + 1);
    }
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

    #[test]
    fn unicode_only_in_utf8_text() {
        // In LATIN1, 0xEF 0xBC 0xA0 are three letters, not U+FF20.
        assert!(normalize("a＠b".as_bytes(), false).is_none());
        assert!(normalize(b"a%40b", false).is_some());
    }
}
