//! The single-pass scanner. See the module documentation in `mod.rs`.
//!
//! Every detector is a function of the text and a start position that either
//! finds a validated span or says how far the scan may skip. Detectors read a
//! bounded number of bytes, except where the span they read becomes a match
//! or is skipped as a whole, which keeps the scan linear.

use super::normalize::normalize;
use super::phone::{calling_code_len, extension_after, is_context_word};
use super::validate::{card_valid, iban_valid, ssn_valid};
use super::{Kind, Match};
use std::net::Ipv6Addr;

/// Longest local part (RFC 5321) and domain (RFC 1035) of an email address.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
/// How far a quoted secret value may run before its closing quote.
const MAX_QUOTED: usize = 1024;
/// Longest textual IPv6 address: 8 groups, or 6 groups and an IPv4 address.
const MAX_IPV6: usize = 45;

/// `[A-Za-z0-9_]`, by table: the scan's inner loop asks this of every byte.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
};

#[inline(always)]
fn is_word(b: u8) -> bool {
    WORD[b as usize]
}

#[inline]
fn is_b64url(b: u8) -> bool {
    is_word(b) || b == b'-'
}

#[inline]
fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

#[inline]
fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// The byte at `i`, or 0 past the end (PostgreSQL text never contains NUL).
#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline]
fn before(s: &[u8], i: usize) -> u8 {
    if i == 0 {
        0
    } else {
        s[i - 1]
    }
}

fn run(s: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < s.len() && pred(s[i]) {
        i += 1;
    }
    i
}

fn run_max(s: &[u8], mut i: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
    let limit = s.len().min(i.saturating_add(max));
    while i < limit && pred(s[i]) {
        i += 1;
    }
    i
}

/// Iterate over the PII spans of UTF-8 `text`, left to right,
/// non-overlapping, after normalization (`normalize`: encoded and
/// obfuscated characters decoded); spans are byte ranges of `text` itself.
pub fn find_iter(text: &[u8]) -> Matches<'_> {
    find_iter_in(text, true)
}

/// As [`find_iter`]; `unicode`: whether the text is UTF-8 (a database in
/// another encoding gets only the ASCII decodings: percent, HTML, JSON).
pub fn find_iter_in(text: &[u8], unicode: bool) -> Matches<'_> {
    match normalize(text, unicode) {
        None => Matches::Direct(scanner(text)),
        // Rare (the text holds an escape or a mapped character): the spans
        // are found in the copy and mapped back, all at once.
        Some(n) => Matches::Mapped(
            scanner(&n.text)
                .map(|m| {
                    let (start, end) = n.original(m.start, m.end);
                    Match { start, end, ..m }
                })
                .collect::<Vec<_>>()
                .into_iter(),
        ),
    }
}

fn scanner(text: &[u8]) -> Scanner<'_> {
    Scanner {
        s: text,
        pos: 0,
        floor: 0,
        pending: Vec::new(),
    }
}

/// Whether UTF-8 `text` contains any PII: stops at the first span.
pub fn has_pii(text: &[u8]) -> bool {
    has_pii_in(text, true)
}

/// As [`has_pii`], for text in the given kind of encoding.
pub fn has_pii_in(text: &[u8], unicode: bool) -> bool {
    match normalize(text, unicode) {
        None => scanner(text).next().is_some(),
        Some(n) => scanner(&n.text).next().is_some(),
    }
}

/// The spans [`find_iter`] reports.
pub enum Matches<'a> {
    Direct(Scanner<'a>),
    Mapped(std::vec::IntoIter<Match>),
}

impl Iterator for Matches<'_> {
    type Item = Match;

    fn next(&mut self) -> Option<Match> {
        match self {
            Matches::Direct(s) => s.next(),
            Matches::Mapped(v) => v.next(),
        }
    }
}

pub struct Scanner<'a> {
    s: &'a [u8],
    /// Where the scan resumes.
    pos: usize,
    /// End of the last reported span: backward looks (an email's local part)
    /// never reach into it.
    floor: usize,
    /// A span found ahead of the scan position (the value after `password=`,
    /// the password after `-u user:`): reported once the text before it has
    /// been scanned, so nothing between the key and the value is skipped.
    pending: Vec<Match>,
}

enum Step {
    Found(Match),
    Skip(usize),
}

fn found(kind: Kind, start: usize, end: usize) -> Option<Step> {
    Some(Step::Found(Match { kind, start, end }))
}

impl Iterator for Scanner<'_> {
    type Item = Match;

    fn next(&mut self) -> Option<Match> {
        let s = self.s;
        let mut i = self.pos;
        loop {
            if let Some(&p) = self.pending.first() {
                if i >= p.start {
                    self.pending.remove(0);
                    return Some(self.emit(p));
                }
            }
            if i >= s.len() {
                self.pos = s.len();
                return None;
            }
            let b = s[i];
            let (step, next) = if is_word(b) {
                let end = run(s, i, is_word);
                (self.word(i, end), end)
            } else {
                let st = match b {
                    b'@' => email(s, i, self.floor),
                    b':' => colon(s, i, self.floor),
                    b'+' => plus_phone(s, i, self.floor),
                    b'(' => paren_phone(s, i, self.floor),
                    b'-' => pem(s, i),
                    _ => None,
                };
                (st, i + 1)
            };
            match step {
                Some(Step::Found(m)) => {
                    debug_assert!(m.start >= self.floor && m.end > m.start);
                    if self
                        .pending
                        .iter()
                        .any(|p| m.start < p.end && p.start < m.end)
                    {
                        // Overlaps a span already found ahead: that one wins.
                        i = next;
                    } else if m.start >= next {
                        // Ahead of the scan: hold it, scan what lies before it.
                        let at = self.pending.partition_point(|p| p.start < m.start);
                        self.pending.insert(at, m);
                        i = next;
                    } else {
                        return Some(self.emit(m));
                    }
                }
                Some(Step::Skip(j)) => {
                    debug_assert!(j > i);
                    // A skip never jumps over a span held for later.
                    i = match self.pending.first() {
                        Some(p) => j.min(p.start.max(i + 1)),
                        None => j,
                    };
                }
                None => i = next,
            }
        }
    }
}

impl Scanner<'_> {
    fn emit(&mut self, m: Match) -> Match {
        self.pos = m.end;
        self.floor = m.end;
        m
    }
}

// ---------------------------------------------------------------------------
// Words: numbers, hex structures, IBANs, tokens, key=value secrets
// ---------------------------------------------------------------------------

impl Scanner<'_> {
    /// `s[i..end]` is a whole word (`[A-Za-z0-9_]+`).
    fn word(&self, i: usize, end: usize) -> Option<Step> {
        let s = self.s;
        // Our own redaction tags (`[SECRET:af63b54c]`) are opaque.
        if before(s, i) == b'[' && tag_at(s, i - 1) {
            return Some(Step::Skip(run(s, i, |b| b != b']')));
        }
        let w = &s[i..end];
        let nb = at(s, end);
        if w.len() <= 8 && matches!(nb, b':' | b'-' | b'.') && w.iter().all(|&b| is_hex(b)) {
            if let Some(st) = hex_structure(s, i, end, self.floor) {
                return Some(st);
            }
        }
        if is_digit(w[0]) {
            if w.iter().all(|&b| is_digit(b)) {
                if let Some(st) = number(s, i, end, self.floor) {
                    return Some(st);
                }
            } else if w.len() >= 14 && w.iter().all(|&b| is_digit(b) || b == b'_') {
                // Underscores are word bytes: `4111_1111_1111_1111` is one word.
                let k = run(s, i, is_digit);
                if structure_left_ok(s, i, self.floor) {
                    if let Some(e) = card(s, i, k, self.floor).filter(|&e| e == end) {
                        return found(Kind::CreditCard, i, e);
                    }
                }
            }
            return kv_secret(s, i, end);
        }
        // Dispatch on the first byte and length so that ordinary words cost
        // a few comparisons.
        let f = w[0];
        let st = match f {
            b'A'..=b'Z' if w.len() >= 4 && is_digit(w[2]) => iban(s, i, end),
            b'a'..=b'z' if w.len() >= 4 && is_digit(w[2]) && w[1].is_ascii_lowercase() => {
                iban(s, i, end)
            }
            b'e' => jwt(s, i),
            _ => None,
        };
        if st.is_some() {
            return st;
        }
        if w.len() >= 14 && is_digit(w[w.len() - 1]) {
            if let Some(st) = glued_card(s, i, end) {
                return Some(st);
            }
        }
        if matches!(f, b'A' | b'g' | b'n' | b's' | b'r' | b'x' | b'h') {
            if let Some(st) = known_token(s, i, end) {
                return Some(st);
            }
        }
        if nb == b' ' && matches!(w.len(), 5 | 6) {
            if let Some(st) = auth_scheme(s, i, end) {
                return Some(st);
            }
        }
        if matches!(w.len(), 1 | 2 | 4 | 6) {
            if let Some(st) = command_credentials(s, i, end) {
                return Some(st);
            }
        }
        kv_secret(s, i, end)
    }
}

/// Left edge of a number or hex structure: not the middle of a longer dotted,
/// dashed, comma-grouped or colon-separated value (`1.2.3.4.5`, `2026-11-22`,
/// `1,234,567`, `12:34:56`), and not after `+` (handled as a phone).
fn structure_left_ok(s: &[u8], i: usize, floor: usize) -> bool {
    let p = before(s, i);
    if is_word(p) || p == b'+' {
        return false;
    }
    // Right after a reported span the left context is that span, which
    // redaction replaces: decide as if it were opaque, so that redacting
    // twice gives the same result as once (`::1-1::1` -> `[IPV6]-1::1`).
    if after_span(i, floor) {
        return true;
    }
    let pp = if i >= 2 { s[i - 2] } else { 0 };
    match p {
        b'.' => !pp.is_ascii_alphanumeric(),
        b'-' => !is_digit(pp),
        // `1,234,567`; but `...,4111111111111111,12.50` is a CSV field.
        b',' => !(is_digit(pp) && thousands_group(s, i)),
        b':' => {
            // After a group of hex digits (`dead:`, `12:`) we are inside an
            // address or a time; after a word (`mac:`, `port:`) we are not.
            let k = {
                let mut k = i - 1;
                while k > 0 && s[k - 1].is_ascii_alphanumeric() && i - 1 - k < 5 {
                    k -= 1;
                }
                k
            };
            let group = &s[k..i - 1];
            !(group.len() <= 4
                && !group.is_empty()
                && group.iter().all(|&b| is_hex(b))
                && (group.iter().any(|&b| is_digit(b)) || before(s, k) == b':'))
        }
        _ => true,
    }
}

/// Whether the one byte before `i` directly follows the previous span.
fn after_span(i: usize, floor: usize) -> bool {
    floor > 0 && (i == floor || i == floor + 1)
}

/// Redaction output at `j`: a tag, or a mask's `*`.
fn redacted_at(s: &[u8], j: usize) -> bool {
    at(s, j) == b'*' || tag_at(s, j)
}

/// A redaction tag at `j` (`[EMAIL]`, `[CREDIT_CARD:3f9a1c2e]`). Redacting again
/// sees a tag where the first pass saw the value it replaced, often a word
/// or a number; right-edge checks treat it as one, so that a neighbour the
/// first pass rejected is rejected again (`11::lJJJ@J.JJ` ->
/// `11::[EMAIL]`, where `11::` stays text).
fn tag_at(s: &[u8], j: usize) -> bool {
    if at(s, j) != b'[' {
        return false;
    }
    let e = run_max(s, j + 1, 12, |b| {
        b.is_ascii_uppercase() || b == b'_' || is_digit(b)
    });
    let name = &s[j + 1..e];
    if !Kind::ALL.iter().any(|k| k.name().as_bytes() == name) {
        return false;
    }
    match at(s, e) {
        b']' => true,
        b':' => {
            let h = run_max(s, e + 1, 9, is_hex);
            h > e + 1 && at(s, h) == b']'
        }
        _ => false,
    }
}

/// Right edge of a number: not followed by a word, `@` (local part of an
/// email), or a separator that continues the number (`.5`, `,000`, `-22`,
/// `:30`).
fn number_right_ok(s: &[u8], j: usize) -> bool {
    let c = at(s, j);
    let n = at(s, j + 1);
    !(is_word(c)
        || c == b'@'
        || tag_at(s, j)
        || (matches!(c, b'.' | b'-') && (is_digit(n) || redacted_at(s, j + 1)))
        || (c == b',' && thousands_group(s, j + 1))
        || (c == b':' && (n.is_ascii_alphanumeric() || n == b':' || redacted_at(s, j + 1))))
}

/// Whether `i` follows a space or dash after a group of digits (`1886 5589`),
/// but not after a word that ends in one (`L1 080 ...`).
fn after_digit_group(s: &[u8], i: usize) -> bool {
    if i < 2 || !matches!(s[i - 1], b' ' | b'-') {
        return false;
    }
    let mut k = i - 1;
    while k > 0 && s[k - 1].is_ascii_alphanumeric() {
        k -= 1;
    }
    k < i - 1 && s[k..i - 1].iter().all(|&b| is_digit(b))
}

/// Exactly three digits at `i`, then no more: a thousands group.
fn thousands_group(s: &[u8], i: usize) -> bool {
    run_max(s, i, 4, is_digit) - i == 3
}

/// `s[i..end]` is all hex digits, at most 8, followed by `:`, `-` or `.`:
/// a MAC address, an IPv6 address, or a UUID (skipped: never PII, but its
/// digit groups would otherwise look like phone or card fragments).
fn hex_structure(s: &[u8], i: usize, end: usize, floor: usize) -> Option<Step> {
    let len = end - i;
    let nb = at(s, end);
    // A colon MAC is distinctive enough to stand after a dash
    // (`AP 10.30.0.41-24:de:c6:c8:1a:f0-AP`).
    if len == 2 && nb == b':' && before(s, i) == b'-' {
        if let Some(e) = mac_separated(s, i, nb) {
            return found(Kind::MacAddress, i, e);
        }
    }
    if !structure_left_ok(s, i, floor) {
        return None;
    }
    if len == 8 && nb == b'-' {
        if let Some(e) = uuid_end(s, i) {
            return Some(Step::Skip(e));
        }
    }
    if len == 2 && matches!(nb, b':' | b'-') {
        if let Some(e) = mac_separated(s, i, nb) {
            return found(Kind::MacAddress, i, e);
        }
    }
    if len == 4 && nb == b'.' {
        if let Some(e) = mac_dotted(s, i) {
            return found(Kind::MacAddress, i, e);
        }
    }
    if nb == b':' && len <= 4 {
        return ipv6(s, i, floor);
    }
    None
}

fn hex_group(s: &[u8], i: usize, n: usize) -> bool {
    s.len() >= i + n && s[i..i + n].iter().all(|&b| is_hex(b))
}

fn uuid_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for (k, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if k > 0 {
            if at(s, j) != b'-' {
                return None;
            }
            j += 1;
        }
        if !hex_group(s, j, n) {
            return None;
        }
        j += n;
    }
    (!is_b64url(at(s, j))).then_some(j)
}

/// `00:1a:2b:3c:4d:5e` or `00-1A-2B-3C-4D-5E` (one separator throughout).
fn mac_separated(s: &[u8], i: usize, sep: u8) -> Option<usize> {
    let mut j = i;
    for k in 0..6 {
        if k > 0 {
            if at(s, j) != sep {
                return None;
            }
            j += 1;
        }
        if !hex_group(s, j, 2) {
            return None;
        }
        j += 2;
    }
    let c = at(s, j);
    (!(is_word(c) || (c == sep && is_hex(at(s, j + 1))))).then_some(j)
}

/// Cisco notation `0011.2233.4455`.
fn mac_dotted(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for k in 0..3 {
        if k > 0 {
            if at(s, j) != b'.' {
                return None;
            }
            j += 1;
        }
        if !hex_group(s, j, 4) {
            return None;
        }
        j += 4;
    }
    let c = at(s, j);
    (!(is_word(c) || (c == b'.' && is_word(at(s, j + 1))))).then_some(j)
}

/// An IPv6 address starting at `i` (a hex group, or `::`), parsed by the
/// standard library. Cheap structural checks run first: a time like
/// `18:33:33` never reaches the parser.
fn ipv6(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    // After `*`: the unmasked tail of a masked address (`****:****::1`).
    let p = before(s, i);
    if !after_span(i, floor) && (is_word(p) || matches!(p, b':' | b'.' | b'*')) {
        return None;
    }
    let end = run(s, i, |b| is_hex(b) || b == b':' || b == b'.');
    if end - i > MAX_IPV6 + 1 {
        return Some(Step::Skip(end));
    }
    let mut e = end;
    while e > i && s[e - 1] == b'.' {
        e -= 1;
    }
    if e >= i + 2 && s[e - 1] == b':' && s[e - 2] != b':' {
        e -= 1;
    }
    // The unspecified address alone only when delimited: `[::]:80`, `"::"`.
    if &s[i..e] == b"::" {
        let ok = matches!((p, at(s, e)), (b'[', b']') | (b'"', b'"') | (b'\'', b'\''));
        return ok.then_some({
            Step::Found(Match {
                kind: Kind::Ipv6,
                start: i,
                end: e,
            })
        });
    }
    if let Some(m) = ipv6_at(s, i, e) {
        return Some(m);
    }
    // Load balancers write `2001:db8::17:50514` (address:port, unbracketed):
    // when the whole does not parse, try it without a decimal last group.
    let k = s[i..e].iter().rposition(|&b| b == b':')? + i;
    if k > i && s[k - 1] != b':' && k + 1 < e && s[k + 1..e].iter().all(|&b| is_digit(b)) {
        return ipv6_at(s, i, k);
    }
    None
}

fn ipv6_at(s: &[u8], i: usize, e: usize) -> Option<Step> {
    let cand = &s[i..e];
    let c = at(s, e);
    if !ipv6_plausible(cand)
        || is_word(c)
        || tag_at(s, e)
        || (c == b':'
            && is_hex(at(s, e + 1))
            && !(cand.windows(2).any(|w| w == b"::") && port_after(s, e)))
    {
        return None;
    }
    std::str::from_utf8(cand).ok()?.parse::<Ipv6Addr>().ok()?;
    let mut end = e;
    if c == b'%' && is_word(at(s, e + 1)) {
        end = run_max(s, e + 1, 32, |b| is_word(b) || b == b'-' || b == b'.');
        while s[end - 1] == b'.' {
            end -= 1;
        }
    }
    found(Kind::Ipv6, i, end)
}

/// `:` and 1-5 decimal digits ending the token: a port.
fn port_after(s: &[u8], e: usize) -> bool {
    let d = run_max(s, e + 1, 6, is_digit);
    (2..=6).contains(&(d - e)) && !is_hex(at(s, d)) && at(s, d) != b':'
}

/// Shape test before parsing: "::" or exactly 7 colons (6 with an embedded
/// IPv4 address), and at least one decimal digit (`add::face` is a C++ name
/// far more often than an address).
fn ipv6_plausible(c: &[u8]) -> bool {
    let colons = c.iter().filter(|&&b| b == b':').count();
    let double = c.windows(2).any(|w| w == b"::");
    let dotted = c.contains(&b'.');
    (double || colons == 7 || (colons == 6 && dotted))
        && c.iter().any(|&b| is_digit(b))
        && c.iter().any(|&b| b != b':')
}

/// `s[i..end]` is a run of decimal digits at a word start.
fn number(s: &[u8], i: usize, end: usize, floor: usize) -> Option<Step> {
    let len = end - i;
    let nb = at(s, end);
    if nb == b'.' {
        if let Some(st) = ipv4(s, i, floor) {
            return Some(st);
        }
    }
    if !structure_left_ok(s, i, floor) {
        return None;
    }
    // `123 45 6789` alone or after a label, not inside a run of numbers:
    // access logs are full of `200 200 34 1532 ...`.
    let spaced_ok = || {
        matches!(label_before(s, i), Some(Label::Ssn))
            || !(before(s, i) == b' ' && i >= 2 && is_digit(s[i - 2])
                || at(s, i + 11) == b' ' && is_digit(at(s, i + 12)))
    };
    if len == 3 && (nb == b'-' || nb == b'.' || (nb == b' ' && spaced_ok())) {
        if let Some(e) = ssn_formatted(s, i) {
            return found(Kind::UsSsn, i, e);
        }
    }
    if (len == 3 || (len == 1 && s[i] == b'1')) && matches!(nb, b'-' | b'.') {
        if let Some(e) = nanp_phone(s, i) {
            return found(Kind::Phone, i, e);
        }
    }
    if s[i] == b'0'
        && matches!(at(s, i + 1), b'1'..=b'9')
        && (2..=5).contains(&len)
        && matches!(nb, b' ' | b'-')
    {
        if let Some(e) = national_phone(s, i) {
            return found(Kind::Phone, i, e);
        }
    }
    // International prefixes written instead of `+`: `00` (`0044 20 7946
    // 0958`, `001-819-566-4073`) and North America's `011` (`011 44 20 ...`).
    if s[i] == b'0' && at(s, i + 1) == b'0' && len >= 3 && !after_digit_group(s, i) {
        if let Some(e) = international(s, i + 2) {
            return found(Kind::Phone, i, e);
        }
    }
    if &s[i..end] == b"011" && matches!(nb, b' ' | b'-') && is_digit(at(s, end + 1)) {
        if let Some(e) = international(s, end + 1) {
            return found(Kind::Phone, i, e);
        }
    }
    if let Some(e) = card(s, i, end, floor) {
        return found(Kind::CreditCard, i, e);
    }
    // Grouped after a phone label: `Telefon: 030/1234567`, `tel 612 345 678`.
    if (2..=6).contains(&len) && matches!(nb, b' ' | b'-' | b'.' | b'/') && is_digit(at(s, end + 1))
    {
        // (Separators may differ: `0121/496 0041`, `02/57 46 63 62`.)
        let g = groups(s, i, b" -./", 6, false);
        let mut start = i;
        let shaped = g.ends().iter().all(|&(e, _)| {
            let ok = e - start >= 2;
            start = e + 1;
            ok
        });
        if let Some(&(e, digits)) = g.ends().last() {
            if shaped
                && g.ends().len() >= 2
                && !date_like(s, i)
                && (7..=15).contains(&digits)
                && matches!(label_before(s, i), Some(Label::Phone))
            {
                if extension_after(s, e).is_some() {
                    return found(Kind::Phone, i, e);
                }
                if number_right_ok(s, e) {
                    return found(Kind::Phone, i, e);
                }
            }
        }
    }
    if (7..=15).contains(&len) && number_right_ok(s, end) {
        match label_before(s, i) {
            Some(Label::Phone) => return found(Kind::Phone, i, end),
            Some(Label::Ssn) if len == 9 && ssn_valid(&s[i..end]) => {
                return found(Kind::UsSsn, i, end)
            }
            _ => {}
        }
    }
    None
}

/// A dotted quad, unless it is a version (`version 1.2.3.4`, `Chrome/120.0.0.0`).
fn ipv4(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    let mut j = i;
    for k in 0..4 {
        if k > 0 {
            if at(s, j) != b'.' {
                return None;
            }
            j += 1;
        }
        let e = run_max(s, j, 4, is_digit);
        if e == j || e - j > 3 {
            return None;
        }
        let v: u32 = s[j..e].iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0'));
        if v > 255 {
            return None;
        }
        j = e;
    }
    let c = at(s, j);
    if is_word(c) || tag_at(s, j) || (c == b'.' && (is_digit(at(s, j + 1)) || tag_at(s, j + 1))) {
        return None;
    }
    // Lists and ranges (`10.0.0.1,10.0.0.2`, `10.0.0.1-10.0.0.9`) are fine;
    // the tail of a longer dotted number or a word is not.
    let p = before(s, i);
    let pp = if i >= 2 { s[i - 2] } else { 0 };
    let fresh = !after_span(i, floor);
    if (fresh && (is_word(p) || p == b'+' || (p == b'.' && pp.is_ascii_alphanumeric())))
        || version_before(s, i)
    {
        return None;
    }
    // `Chrome/120.0.0.0` is a product version; `db.internal/10.0.3.12` is a
    // host name and its address.
    if p == b'/' && pp.is_ascii_alphabetic() {
        let mut k = i - 1;
        while k > 0 && (is_word(s[k - 1]) || matches!(s[k - 1], b'.' | b'-')) {
            k -= 1;
        }
        // `UDP/10.30.0.5` is an address; reduced user agents end in `.0.0`.
        if !s[k..i - 1].contains(&b'.') && s[..j].ends_with(b".0.0") {
            return None;
        }
    }
    found(Kind::Ipv4, i, j)
}

/// Is the word before `i` (past a few separators) one that introduces a
/// version number?
fn version_before(s: &[u8], i: usize) -> bool {
    let mut k = i;
    let mut n = 0;
    while k > 0 && n < 3 && matches!(s[k - 1], b' ' | b':' | b'=' | b'"' | b'\'') {
        k -= 1;
        n += 1;
    }
    let e = k;
    while k > 0 && s[k - 1].is_ascii_alphabetic() && e - k < 12 {
        k -= 1;
    }
    let w = &s[k..e];
    const WORDS: [&[u8]; 12] = [
        b"version",
        b"ver",
        b"release",
        b"build",
        b"firmware",
        b"fw",
        b"kernel",
        b"rev",
        b"revision",
        b"vsn",
        b"bios",
        b"driver",
    ];
    WORDS.iter().any(|x| x.eq_ignore_ascii_case(w))
}

/// Digit groups separated by one of `seps`, starting at `i`:
/// (group end, digits so far) for each group.
struct Groups {
    buf: [(usize, usize); 8],
    len: usize,
}

impl Groups {
    fn push(&mut self, g: (usize, usize)) {
        self.buf[self.len] = g;
        self.len += 1;
    }

    fn ends(&self) -> &[(usize, usize)] {
        &self.buf[..self.len]
    }
}

fn groups(s: &[u8], i: usize, seps: &[u8], max_groups: usize, same_sep: bool) -> Groups {
    debug_assert!(max_groups <= 8);
    let mut ends = Groups {
        buf: [(0, 0); 8],
        len: 0,
    };
    let mut j = i;
    let mut digits = 0;
    let mut sep_used = 0u8;
    loop {
        let e = run_max(s, j, 20, is_digit);
        if e == j {
            break;
        }
        digits += e - j;
        ends.push((e, digits));
        if ends.len >= max_groups || digits > 19 {
            break;
        }
        let c = at(s, e);
        if !seps.contains(&c) || !is_digit(at(s, e + 1)) {
            break;
        }
        if same_sep {
            if sep_used != 0 && c != sep_used {
                break;
            }
            sep_used = c;
        }
        j = e + 1;
    }
    ends
}

/// `123-45-6789` or `123 45 6789`.
fn ssn_formatted(s: &[u8], i: usize) -> Option<usize> {
    let sep = at(s, i + 3);
    if !(digits_at(s, i, 3)
        && at(s, i + 6) == sep
        && digits_at(s, i + 4, 2)
        && digits_at(s, i + 7, 4))
    {
        return None;
    }
    let e = i + 11;
    if !number_right_ok(s, e) || (at(s, e) == sep && is_digit(at(s, e + 1))) {
        return None;
    }
    let d = [&s[i..i + 3], &s[i + 4..i + 6], &s[i + 7..i + 11]].concat();
    ssn_valid(&d).then_some(e)
}

fn digits_at(s: &[u8], i: usize, n: usize) -> bool {
    s.len() >= i + n && s[i..i + n].iter().all(|&b| is_digit(b))
}

/// North American numbers: `555-123-4567`, `555.123.4567`, `1-800-555-0199`
/// (one separator throughout; spaced forms only after a `+1` or with
/// parentheses, because `640 480 1024` is more often three numbers).
fn nanp_phone(s: &[u8], i: usize) -> Option<usize> {
    let g = groups(s, i, b"-.", 4, true);
    let mut start = i;
    let lens: Vec<usize> = g
        .ends()
        .iter()
        .map(|&(e, _)| {
            let l = e - start;
            start = e + 1;
            l
        })
        .collect();
    let last = match lens.as_slice() {
        [1, 3, 3, 4, ..] if s[i] == b'1' => 3,
        [3, 3, 4, ..] => 2,
        _ => return None,
    };
    let e = g.ends()[last].0;
    if extension_after(s, e).is_some() {
        return Some(e);
    }
    (number_right_ok(s, e) && !(matches!(at(s, e), b'-' | b'.') && is_digit(at(s, e + 1))))
        .then_some(e)
}

/// National numbers with a trunk 0: `020 7946 0958`, `030 12345678`,
/// `01 23 45 67 89`, `0800-123-4567`.
fn national_phone(s: &[u8], i: usize) -> Option<usize> {
    // Not the tail of a longer digit-group sequence (a card, an IBAN).
    if after_digit_group(s, i) {
        return None;
    }
    let g = groups(s, i, b" -", 6, true);
    if g.ends().len() < 2 {
        return None;
    }
    let mut start = i;
    for &(e, _) in g.ends() {
        if !(2..=8).contains(&(e - start)) {
            return None;
        }
        start = e + 1;
    }
    let &(e, digits) = g.ends().last()?;
    if !(9..=12).contains(&digits) {
        return None;
    }
    if extension_after(s, e).is_some() {
        return Some(e);
    }
    let continues = matches!(at(s, e), b' ' | b'-') && (is_digit(at(s, e + 1)) || tag_at(s, e + 1));
    (number_right_ok(s, e) && !continues).then_some(e)
}

const CARD_SEPARATORS: &[u8] = b" -./_\t";

/// 13–19 digits, contiguous or in groups (`4111 1111 1111 1111`,
/// `3782-822463-10005`), Luhn-valid with a known brand prefix and length.
fn card(s: &[u8], i: usize, end: usize, floor: usize) -> Option<usize> {
    let len = end - i;
    // 12 digits (Maestro) contiguous only after a card label.
    if (13..=19).contains(&len) || (len == 12 && card_label_before(s, i)) {
        return (number_right_ok(s, end) && !id_key_before(s, i) && card_valid(&s[i..end]))
            .then_some(end);
    }
    // Groups of 4 (or 8: `41111111 11111111`), one separator throughout:
    // space, dash (every Unicode dash, after normalization), dot, slash,
    // underscore, tab.
    if !(len == 4 || len == 8) || !CARD_SEPARATORS.contains(&at(s, end)) {
        return None;
    }
    // Not the tail of a longer group sequence (`ES72 1886 5589 7096 ...`,
    // an IBAN that failed its own check).
    if after_digit_group(s, i) && i - 1 != floor {
        return None;
    }
    let g = groups(s, i, CARD_SEPARATORS, 6, true);
    // How many groups have card-like lengths: 4-4-4-4, 4-6-5, 4-6-4, and a
    // short fifth group (`6239 6855 0861 6955 11`, 18-digit UnionPay).
    let mut start = i;
    let mut shaped = 0;
    for (n, &(e, _)) in g.ends().iter().enumerate() {
        let min = if n >= 4 { 1 } else { 3 };
        let max = if len == 8 { 8 } else { 6 };
        if start != i && !(min..=max).contains(&(e - start)) {
            break;
        }
        shaped = n + 1;
        start = e + 1;
    }
    // Longest prefix of groups that is a valid card number.
    // (12 digits: Maestro only, and only in groups; a contiguous 12-digit
    // number is far more often an id.)
    for &(e, digits) in g.ends()[..shaped].iter().rev() {
        if !(12..=19).contains(&digits) || !number_right_ok(s, e) {
            continue;
        }
        let mut d = [0u8; 19];
        for (slot, b) in d.iter_mut().zip(s[i..e].iter().filter(|b| is_digit(**b))) {
            *slot = *b;
        }
        if card_valid(&d[..digits]) {
            return Some(e);
        }
    }
    None
}

/// The ASCII letter a Latin-1 letter (UTF-8 `C3 xx`, `xx` given) is
/// written with, lower case (`é` is `e`); 0 for other characters.
fn fold_latin1(x: u8) -> u8 {
    const MAP: &[u8; 64] = b"aaaaaaaceeeeiiiidnooooo\0ouuuuytsaaaaaaaceeeeiiiidnooooo\0ouuuuyty";
    match x {
        0x80..=0xbf => MAP[(x - 0x80) as usize],
        _ => 0,
    }
}

/// `2026-11-21`, `2026/11/21`, `21.11.2026`: a date, whatever precedes it.
fn date_like(s: &[u8], i: usize) -> bool {
    let d = |k: usize, n: usize| digits_at(s, k, n) && !is_digit(at(s, k + n));
    let sep = at(s, i + 4);
    (d(i, 4)
        && matches!(sep, b'-' | b'/' | b'.')
        && d(i + 5, 2)
        && at(s, i + 7) == sep
        && d(i + 8, 2))
        || (d(i, 2)
            && matches!(at(s, i + 2), b'-' | b'/' | b'.')
            && d(i + 3, 2)
            && at(s, i + 5) == at(s, i + 2)
            && d(i + 6, 4))
}

/// `card: `, `carte `, `tarjeta `, `card_no=` ... right before `i`.
fn card_label_before(s: &[u8], i: usize) -> bool {
    let mut k = i;
    while k > 0 && i - k < 3 && matches!(s[k - 1], b' ' | b':' | b'=' | b'"' | b'#') {
        k -= 1;
    }
    let e = k;
    while k > 0 && e - k < 16 && (s[k - 1].is_ascii_alphabetic() || s[k - 1] == b'_') {
        k -= 1;
    }
    let w = s[k..e].to_ascii_lowercase();
    let w = w
        .strip_suffix(b"_no")
        .or_else(|| w.strip_suffix(b"_number"))
        .unwrap_or(&w);
    matches!(
        w,
        b"card"
            | b"carte"
            | b"tarjeta"
            | b"karte"
            | b"kaart"
            | b"pan"
            | b"cc"
            | b"maestro"
            | b"creditcard"
            | b"debitcard"
    )
}

/// A card number glued to a short label: `pan4111111111111111`,
/// `CC5500000000000004` (letters, then 13-19 digits ending the word).
fn glued_card(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let k = end - s[i..end].iter().rev().take_while(|&&b| is_digit(b)).count();
    if !(13..=19).contains(&(end - k))
        || !(1..=8).contains(&(k - i))
        || !s[i..k].iter().all(u8::is_ascii_alphabetic)
        || !number_right_ok(s, end)
        || !card_valid(&s[k..end])
    {
        return None;
    }
    found(Kind::CreditCard, k, end)
}

/// Whether the number at `i` is the value of a key that names an id, a
/// time or a size (`"trace_id":"6827381021934427183"`, `offset=...`): such
/// numbers pass a Luhn check one time in ten.
fn id_key_before(s: &[u8], i: usize) -> bool {
    let mut k = i;
    while k > 0 && i - k < 4 && matches!(s[k - 1], b'"' | b'\'' | b' ' | b':' | b'=') {
        k -= 1;
    }
    // A key needs its `=` or `:`; a word and a space are not a key.
    if !s[k..i].iter().any(|&b| b == b'=' || b == b':') {
        return false;
    }
    let e = k;
    while k > 0 && e - k < 32 && (is_word(s[k - 1]) || s[k - 1] == b'-') {
        k -= 1;
    }
    if k == e {
        return false;
    }
    let mut buf = [0u8; 32];
    let key = &mut buf[..e - k];
    key.copy_from_slice(&s[k..e]);
    key.make_ascii_lowercase();
    const SUFFIXES: [&[u8]; 12] = [
        b"id",
        b"ids",
        b"ts",
        b"time",
        b"timestamp",
        b"offset",
        b"seq",
        b"nonce",
        b"bytes",
        b"size",
        b"count",
        b"lsn",
    ];
    SUFFIXES.iter().any(|x| key.ends_with(x))
}

enum Label {
    Phone,
    Ssn,
}

/// A bare digit run is a phone number or SSN only when a label says so right
/// before it: `phone: 5551234567`, `tel=...`, `Mobile No. ...`, `SSN ...`,
/// `Paging on-call at ...`, `Telefon: ...`, `teléfono ...` (up to two short
/// words, `at`, `on`, `me`, may stand between the label and the number).
fn label_before(s: &[u8], i: usize) -> Option<Label> {
    // `seq=0257510723` after `On-Call`: the value of an id key is no phone
    // (checked only once a phone label is found: it is the rarer case).
    let phone = || (!id_key_before(s, i)).then_some(Label::Phone);
    let mut k = i;
    let mut skipped = 0;
    for round in 0..4 {
        let mut n = 0;
        while k > 0
            && n < 4
            && matches!(
                s[k - 1],
                b' ' | b'\t' | b':' | b'=' | b'#' | b'"' | b'\'' | b'.'
            )
        {
            k -= 1;
            n += 1;
        }
        let e = k;
        // Letters of any script (`teléfono`: accents are dropped below).
        while k > 0 && (is_word(s[k - 1]) || s[k - 1] == b'-' || s[k - 1] >= 0x80) && e - k < 32 {
            k -= 1;
        }
        if k == e || before(s, k) == b'[' {
            return None;
        }
        // The label's letters and digits, lowercased, Latin-1 accents
        // folded (`tél.` is `tel`, `móvil` is `movil`), at most 32 bytes.
        let mut buf = [0u8; 32];
        let mut len = 0;
        let mut q = k;
        while q < e {
            let b = s[q];
            let c = if b == 0xc3 && q + 1 < e {
                q += 1;
                fold_latin1(s[q])
            } else {
                b.to_ascii_lowercase()
            };
            if c.is_ascii_alphanumeric() {
                buf[len] = c;
                len += 1;
            }
            q += 1;
        }
        let mut w = &buf[..len];
        // (Before the suffixes: `teléfono` ends in `no`.)
        if is_context_word(w) {
            return phone();
        }
        for suffix in [&b"number"[..], b"num", b"nr", b"no"] {
            if w.ends_with(suffix) {
                w = &w[..w.len() - suffix.len()];
                break;
            }
        }
        if w.is_empty() {
            if round == 0 {
                continue;
            }
            return None;
        }
        let ends = |x: &[u8]| w.ends_with(x);
        if ends(b"phone")
            || ends(b"mobile")
            || ends(b"msisdn")
            || ends(b"fax")
            || matches!(w, b"tel" | b"cell" | b"sms" | b"mob" | b"whatsapp")
            || is_context_word(w)
            // `on-call`, `call-back`: a hyphenated word with a context part.
            || s[k..e].split(|&b| b == b'-').any(|part| {
                part.len() < 16 && is_context_word(&part.to_ascii_lowercase())
            })
        {
            return phone();
        }
        if ends(b"ssn") || ends(b"socialsecurity") {
            return Some(Label::Ssn);
        }
        // A short word between the label and the number: look further.
        // ... unless it says the number is something else (`dial-in code`,
        // `call PIN`).
        if matches!(
            w,
            b"code" | b"pin" | b"id" | b"ref" | b"seq" | b"port" | b"pid"
        ) {
            return None;
        }
        if skipped < 2 && w.len() <= 4 && w.iter().all(u8::is_ascii_alphabetic) {
            skipped += 1;
            continue;
        }
        return None;
    }
    None
}

/// `+` and 8–15 digits in groups: `+14155552671`, `+44 20 7946 0958`,
/// `+1 (555) 123-4567`, `+44 (0)20 7946 0958`.
fn plus_phone(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    if (is_word(before(s, i)) && !after_span(i, floor)) || !matches!(at(s, i + 1), b'1'..=b'9') {
        return None;
    }
    international(s, i + 1).map(|e| {
        Step::Found(Match {
            kind: Kind::Phone,
            start: i,
            end: e,
        })
    })
}

/// The groups of an international number whose country code starts at
/// `j` (after `+`, `00` or `011`): where the number (and its extension)
/// ends.
fn international(s: &[u8], j: usize) -> Option<usize> {
    let cc = calling_code_len(&s[j..])?;
    let (cc_start, cc_end) = (j, j + cc);
    let mut j = j;
    let mut digits = 0;
    let mut best = None;
    for group in 0..8 {
        // Only the area code may be in parentheses: `+1 (555) ...`,
        // `+44 (0)20 ...`; a later `(` starts something else.
        let paren = at(s, j) == b'(';
        if paren && group != 1 {
            break;
        }
        let start = if paren { j + 1 } else { j };
        let e = run_max(s, start, 16, is_digit);
        if e == start {
            break;
        }
        digits += e - start;
        j = e;
        if paren {
            if at(s, j) != b')' {
                break;
            }
            j += 1;
        }
        if digits > 16 {
            break;
        }
        // `@` may follow: SIP URIs (`sip:+14155550132@host`, `+44...@trunk`).
        if (8..=15).contains(&digits) {
            if extension_after(s, j).is_some() {
                best = Some(j);
                break;
            }
            if number_right_ok(s, j) || at(s, j) == b'@' {
                best = Some(j);
            }
        }
        // Next group: one separator, or none after a parenthesis.
        if matches!(at(s, j), b' ' | b'-' | b'.')
            && (is_digit(at(s, j + 1)) || at(s, j + 1) == b'(')
        {
            j += 1;
        } else if !(paren && is_digit(at(s, j))) && at(s, j) != b'(' {
            break;
        }
    }
    let e = best?;
    // The national number: North America's has exactly 10 digits; others
    // 6 to 13, and never start with 0 (Italy's do) unless `(0)` is written.
    let national: Vec<u8> = s[cc_end..e]
        .iter()
        .take_while(|&&b| !b.is_ascii_alphabetic() && b != b'#')
        .copied()
        .filter(u8::is_ascii_digit)
        .collect();
    let ok = match &s[cc_start..cc_end] {
        b"1" => national.len() == 10,
        b"39" => (6..=11).contains(&national.len()),
        _ => {
            (6..=13).contains(&national.len())
                && (national.first() != Some(&b'0')
                    || s[cc_end..e].starts_with(b" (0)")
                    || s[cc_end..e].starts_with(b"(0)"))
        }
    };
    ok.then_some(e)
}

/// `(555) 123-4567`, `(020) 7946 0958`, `(0)20 7946 0958`.
fn paren_phone(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    if is_word(before(s, i)) && !after_span(i, floor) {
        return None;
    }
    let e = run_max(s, i + 1, 6, is_digit);
    if !(1..=5).contains(&(e - i - 1)) || at(s, e) != b')' {
        return None;
    }
    let mut digits = e - i - 1;
    let mut j = e + 1;
    let mut best = None;
    let mut first = true;
    for _ in 0..5 {
        let adjacent = first && is_digit(at(s, j));
        if !adjacent {
            if !(matches!(at(s, j), b' ' | b'-' | b'.') && is_digit(at(s, j + 1))) {
                break;
            }
            j += 1;
        }
        let g = run_max(s, j, 9, is_digit);
        // (Two-digit groups after an area code of two or more digits:
        // `(02) 23 37 46 81`, French style.)
        let min = if adjacent || e - i > 2 { 2 } else { 3 };
        if g - j < min {
            break;
        }
        digits += g - j;
        j = g;
        first = false;
        if digits > 12 {
            break;
        }
        if digits >= 9 {
            if extension_after(s, j).is_some() {
                best = Some(j);
                break;
            }
            if number_right_ok(s, j) {
                best = Some(j);
            }
        }
    }
    best.map(|e| {
        Step::Found(Match {
            kind: Kind::Phone,
            start: i,
            end: e,
        })
    })
}

/// `DE89370400440532013000` or `GB82 WEST 1234 5698 7654 32`.
fn iban(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let w = &s[i..end];
    // All upper case, or all lower case (`de89 3704 ...`), never mixed.
    let lower = w[0].is_ascii_lowercase();
    let letter = |b: u8| {
        if lower {
            b.is_ascii_lowercase()
        } else {
            b.is_ascii_uppercase()
        }
    };
    if w.len() < 4 || !w[..2].iter().all(|&b| letter(b)) || !w[2..4].iter().all(|&b| is_digit(b)) {
        return None;
    }
    let letter_or_digit = |b: u8| letter(b) || is_digit(b);
    if w.len() >= 15 {
        return (w.len() <= 34
            && w.iter().all(|&b| letter_or_digit(b))
            && iban_valid(&w.to_ascii_uppercase()))
        .then_some({
            Step::Found(Match {
                kind: Kind::Iban,
                start: i,
                end,
            })
        });
    }
    if w.len() != 4 || at(s, end) != b' ' {
        return None;
    }
    let mut compact = w.to_ascii_uppercase();
    let mut ends = Vec::new();
    let mut j = end;
    while at(s, j) == b' ' && compact.len() < 34 {
        let g = run_max(s, j + 1, 5, letter_or_digit);
        let glen = g - j - 1;
        if glen == 0 || glen > 4 || is_word(at(s, g)) {
            break;
        }
        compact.extend(s[j + 1..g].iter().map(u8::to_ascii_uppercase));
        ends.push((g, compact.len()));
        j = g;
        if glen < 4 {
            break;
        }
    }
    ends.iter()
        .rev()
        .find(|&&(_, n)| (15..=34).contains(&n) && iban_valid(&compact[..n]))
        .map(|&(e, _)| {
            Step::Found(Match {
                kind: Kind::Iban,
                start: i,
                end: e,
            })
        })
}

/// `header.payload.signature`, the header being base64url JSON (`eyJ`), or
/// the five parts of an encrypted JWT.
fn jwt(s: &[u8], i: usize) -> Option<Step> {
    if !s[i..].starts_with(b"eyJ") || before(s, i) == b'-' {
        return None;
    }
    let h = run(s, i, is_b64url);
    if h - i < 10 || at(s, h) != b'.' {
        return Some(Step::Skip(h));
    }
    let mut ends = vec![h];
    let mut j = h;
    while at(s, j) == b'.' && ends.len() < 5 {
        let e = run(s, j + 1, is_b64url);
        ends.push(e);
        j = e;
    }
    // ends[k] is the end of part k+1.
    let ok = |parts: usize| {
        ends.len() >= parts && {
            let e = ends[parts - 1];
            !(at(s, e) == b'.' && is_b64url(at(s, e + 1)))
        }
    };
    if ends.len() >= 5 && ok(5) {
        return found(Kind::Jwt, i, ends[4]);
    }
    if ends.len() >= 3 && ends[1] - ends[0] > 4 && ok(3) {
        return found(Kind::Jwt, i, ends[2]);
    }
    Some(Step::Skip(*ends.last().unwrap_or(&h)))
}

/// Credentials with a recognisable shape: AWS access key ids, GitHub, Slack,
/// Stripe, Google API, npm and Vault tokens.
fn known_token(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let w = &s[i..end];
    let upper_digit = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    if w.len() == 20
        && (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
        && w.iter().all(upper_digit)
    {
        return found(Kind::Secret, i, end);
    }
    let alnum_tail = |prefix: &[u8], min: usize| {
        w.starts_with(prefix)
            && w.len() >= prefix.len() + min
            && w[prefix.len()..].iter().all(|b| b.is_ascii_alphanumeric())
    };
    if ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_"]
        .iter()
        .any(|p| alnum_tail(p.as_bytes(), 30))
        || (w.starts_with(b"github_pat_") && w.len() >= 40)
        || ["sk_live_", "rk_live_", "sk_test_", "rk_test_"]
            .iter()
            .any(|p| alnum_tail(p.as_bytes(), 16))
    {
        return found(Kind::Secret, i, end);
    }
    if w.len() == 4
        && w.starts_with(b"xox")
        && matches!(w[3], b'a' | b'b' | b'p' | b'r' | b's')
        && at(s, end) == b'-'
    {
        let e = run(s, end, is_b64url);
        if e - end > 10 {
            return found(Kind::Secret, i, e);
        }
    }
    // HashiCorp Vault service, batch and recovery tokens: `hvs.CAES...`.
    if matches!(w, b"hvs" | b"hvb" | b"hvr") && at(s, end) == b'.' {
        let e = run(s, end + 1, is_b64url);
        if e - end > 20 {
            return found(Kind::Secret, i, e);
        }
    }
    if w.starts_with(b"AIza") {
        let e = run(s, i, is_b64url);
        if e - i == 39 {
            return found(Kind::Secret, i, e);
        }
    }
    None
}

/// `Bearer <token>`, and after `Authorization:` also `Basic`, `ApiKey` and
/// `token` credentials; a bearer token that is a JWT is reported as a JWT.
fn auth_scheme(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let w = &s[i..end];
    let bearer = w.eq_ignore_ascii_case(b"bearer");
    let other = [&b"basic"[..], b"apikey", b"token"]
        .iter()
        .any(|x| w.eq_ignore_ascii_case(x));
    if !(bearer || other) || at(s, end) != b' ' {
        return None;
    }
    let t = end + 1;
    if bearer {
        if let Some(Step::Found(m)) = jwt(s, t) {
            return Some(Step::Found(m));
        }
    }
    let e = run(s, t, |b| {
        is_b64url(b) || matches!(b, b'.' | b'~' | b'+' | b'/' | b'=')
    });
    let tok = &s[t..e];
    if tok.len() < 8 || is_word(at(s, e)) {
        return None;
    }
    let authz = {
        let mut k = i;
        while k > 0 && matches!(s[k - 1], b' ' | b':' | b'=' | b'"' | b'\'' | b',') && i - k < 4 {
            k -= 1;
        }
        k >= 13 && s[k - 13..k].eq_ignore_ascii_case(b"authorization")
    };
    // "Bearer authentication failed": a token has digits or symbols, a
    // word does not; after "Authorization:" anything goes.
    let tokenish = bearer && tok.iter().any(|b| !b.is_ascii_alphabetic());
    (authz || tokenish).then_some(Step::Found(Match {
        kind: Kind::Secret,
        start: t,
        end: e,
    }))
}

/// Credentials passed on a command line or in SQL, which logs capture:
/// `curl -u user:pass`, `--user user:pass`, `IDENTIFIED BY 'pass'`, and the
/// Redis `AUTH [user] pass` command (`"AUTH" "pass"` in MONITOR output).
fn command_credentials(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let w = &s[i..end];
    let nb = at(s, end);
    if nb == b' '
        && ((w == b"u" && before(s, i) == b'-' && !is_word(before(s, i - 1)))
            || (w == b"user" && i >= 2 && &s[i - 2..i] == b"--"))
    {
        let (vs, ve) = secret_value(s, end + 1, false)?;
        let c = s[vs..ve].iter().position(|&b| b == b':')? + vs;
        return (ve > c + 1 && !placeholder(&s[c + 1..ve]) && !redacted_at(s, c + 1)).then_some(
            Step::Found(Match {
                kind: Kind::Secret,
                start: c + 1,
                end: ve,
            }),
        );
    }
    if w.eq_ignore_ascii_case(b"by") && nb == b' ' && matches!(at(s, end + 1), b'\'' | b'"') {
        let k = i.checked_sub(11)?;
        if s[k..i].eq_ignore_ascii_case(b"identified ") {
            let (vs, ve) = secret_value(s, end + 1, false)?;
            return (!placeholder(&s[vs..ve])).then_some(Step::Found(Match {
                kind: Kind::Secret,
                start: vs,
                end: ve,
            }));
        }
    }
    // ~/.pgpass lines: `host:port:database:user:password`.
    if w == b"pgpass" && before(s, i) == b'.' && nb == b':' {
        let ls = run_max(s, end + 1, 4, |b| b == b' ');
        let le = run(s, ls, |b| b != b'\n' && b != b'\r' && b != b' ');
        let line = &s[ls..le];
        if line.iter().filter(|&&b| b == b':').count() == 4 {
            let c = line.iter().rposition(|&b| b == b':')? + ls;
            return (le > c + 1).then_some(Step::Found(Match {
                kind: Kind::Secret,
                start: c + 1,
                end: le,
            }));
        }
    }
    if w == b"AUTH" && matches!(before(s, i), 0 | b' ' | b'"' | b'\n' | b'>') {
        // Up to two arguments; the last one, ending the line, is the password.
        let mut j = if before(s, i) == b'"' && nb == b'"' {
            end + 1
        } else {
            end
        };
        let mut last = None;
        for _ in 0..2 {
            if at(s, j) != b' ' {
                break;
            }
            let Some((vs, ve)) = secret_value(s, j + 1, false) else {
                break;
            };
            last = Some((vs, ve));
            j = if matches!(at(s, ve), b'"' | b'\'') {
                ve + 1
            } else {
                ve
            };
        }
        let (vs, ve) = last?;
        let line_ends = matches!(at(s, j), 0 | b'\n' | b'\r');
        return (line_ends && !placeholder(&s[vs..ve])).then_some(Step::Found(Match {
            kind: Kind::Secret,
            start: vs,
            end: ve,
        }));
    }
    None
}

// ---------------------------------------------------------------------------
// key=value secrets
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum SecretKey {
    /// password, passwd, pwd, passphrase
    Password,
    /// secret, api_key, private_key, ...
    Key,
    /// token, access_token, ...
    Token,
}

fn secret_key_class(ident: &[u8]) -> Option<SecretKey> {
    let mut buf = [0u8; 64];
    let n = ident.len().min(64);
    for (d, s) in buf.iter_mut().zip(&ident[ident.len() - n..]) {
        *d = s.to_ascii_lowercase();
    }
    let k = &buf[..n];
    let ends = |x: &[u8]| k.ends_with(x);
    let component =
        |x: &[u8]| k == x || (ends(x) && matches!(k[k.len() - x.len() - 1], b'_' | b'-' | b'.'));
    // Docker's config.json: `"auth": "<base64 user:password>"`.
    if k == b"auth" {
        return Some(SecretKey::Token);
    }
    if ends(b"password")
        || ends(b"passwd")
        || ends(b"passphrase")
        || component(b"pwd")
        || component(b"pass")
    {
        return Some(SecretKey::Password);
    }
    if ends(b"secret") {
        return Some(SecretKey::Key);
    }
    const KEYS: [&[u8]; 20] = [
        b"apikey",
        b"api_key",
        b"api-key",
        b"privatekey",
        b"private_key",
        b"secretkey",
        b"secret_key",
        b"accesskey",
        b"access_key",
        b"signing_key",
        b"license_key",
        b"licensekey",
        b"master_key",
        b"encryption_key",
        b"client_key",
        b"app_key",
        b"auth_key",
        b"account_key",
        b"storage_key",
        b"webhook_key",
    ];
    if KEYS.iter().any(|x| ends(x)) {
        return Some(SecretKey::Key);
    }
    if ends(b"token") {
        return Some(SecretKey::Token);
    }
    None
}

/// `password=hunter2`, `"client_secret": "abc"`, `pwd: x`, `--password x`,
/// `api_key => 'k'`: the value is the secret. The key is the identifier that
/// ends at `end` (it may start before `i`: `x-api-key`, `db.password`).
fn kv_secret(s: &[u8], i: usize, end: usize) -> Option<Step> {
    let nb = at(s, end);
    if !matches!(nb, b'=' | b':' | b'"' | b'\'' | b'\\' | b' ')
        || !matches!(
            s[end - 1].to_ascii_lowercase(),
            b'd' | b'e' | b'h' | b's' | b't' | b'n' | b'y'
        )
    {
        return None;
    }
    // After a space only `key = value`, `key : value`, `--key value` and
    // SQL's `PASSWORD 'value'` continue; most words stop here.
    if nb == b' ' {
        let n = at(s, run_max(s, end, 4, |b| b == b' '));
        if !(matches!(n, b'=' | b':' | b'\'' | b'"') || (i >= 2 && &s[i - 2..i] == b"--")) {
            return None;
        }
    }
    let mut k = i;
    while k > 0 && (is_word(s[k - 1]) || matches!(s[k - 1], b'-' | b'.')) && end - k < 64 {
        k -= 1;
    }
    while k < i && matches!(s[k], b'-' | b'.') {
        k += 1;
    }
    let class = match secret_key_class(&s[k..end]) {
        Some(c) => c,
        // `{"name": "DB_PASSWORD", "value": "..."}`, Kubernetes `env:` entries,
        // Ansible `{'key': 'SMTP_PASSWORD', 'value': '...'}`.
        None if s[k..end].eq_ignore_ascii_case(b"value") => named_secret_before(s, k)?,
        None => return None,
    };
    // Separator: optional closing quote of a JSON key, then = : or =>.
    let mut j = end;
    let mut quoted_key = true;
    if s[j..].starts_with(b"\\\"") {
        j += 2;
    } else if matches!(at(s, j), b'"' | b'\'') {
        j += 1;
    } else {
        quoted_key = false;
    }
    let spaced = at(s, j) == b' ';
    while at(s, j) == b' ' && j - end < 4 {
        j += 1;
    }
    match at(s, j) {
        b'=' => {
            j += 1;
            if at(s, j) == b'>' {
                j += 1;
            }
            // `password= user=bob` is an empty password; `key = value`
            // (spaced on both sides) is config syntax.
            if !spaced && at(s, j) == b' ' {
                return None;
            }
        }
        b':' if !s[j..].starts_with(b"://") => j += 1,
        // `--password hunter2`
        b if j > end && is_b64url(b) && k >= 2 && &s[k - 2..k] == b"--" && at(s, end) == b' ' => {}
        // SQL: `PASSWORD 'x'` (CREATE/ALTER ROLE, which the server logs).
        b'\'' | b'"' if j > end && !quoted_key && class == SecretKey::Password => {}
        // Header dumps: `'x-api-key', 'value'`.
        b',' if quoted_key
            && at(s, j + 1) == b' '
            && matches!(at(s, j + 2), b'\'' | b'"')
            && !quoted_value_position(s, k) =>
        {
            j += 1
        }
        _ => return None,
    }
    while matches!(at(s, j), b' ' | b'\t') && j - end < 12 {
        j += 1;
    }
    // In a query string (`?user=x&password=y&db=z`) `&` ends the value;
    // elsewhere (`password: tr0ub&3`) it is part of it.
    let query = matches!(before(s, k), b'?' | b'&');
    let q = usize::from(matches!(at(s, j), b'"' | b'\''));
    if s[j + q..].starts_with(b"-----BEGIN ") {
        return pem(s, j + q);
    }
    let (vs, ve) = secret_value(s, j, query)?;
    // `"authorizationToken":"Bearer eyJ..."`: the scheme decides.
    let scheme_end = run(s, vs, is_word);
    if at(s, scheme_end) == b' ' {
        if let Some(st) = auth_scheme(s, vs, scheme_end) {
            return Some(st);
        }
    }
    let v = &s[vs..ve];
    let min = match class {
        SecretKey::Password => 2,
        SecretKey::Key => 6,
        SecretKey::Token => 8,
    };
    if v.len() < min {
        return None;
    }
    let key = &s[k..end];
    let not_secret = placeholder(v)
        // `PWD=/home/user`: the shell's working directory.
        || (matches!(v[0], b'/' | b'~')
            && (key.eq_ignore_ascii_case(b"pwd") || key.eq_ignore_ascii_case(b"oldpwd")))
        // `kubectl describe secret`: `password:  24 bytes`.
        || (v.iter().all(|&b| is_digit(b)) && s[ve..].starts_with(b" bytes"))
        // `pam_unix(passwd:chauthtok)`: a service and an action.
        || (before(s, k) == b'(' && at(s, ve) == b')' && v.iter().all(u8::is_ascii_lowercase))
        // Docker's `auth` holds base64, not a word (`auth: disabled`).
        || (key.eq_ignore_ascii_case(b"auth") && !v.iter().any(|&b| is_digit(b) || matches!(b, b'+' | b'/' | b'=')))
        // Code, not a value: `SECRET_KEY = os.environ["..."]`, `get_token()`.
        || matches!(at(s, ve), b'(' | b'[');
    if not_secret {
        // Not a secret; nothing inside a masked value is worth rescanning.
        return Some(Step::Skip(ve.max(end)));
    }
    if let Some(Step::Found(m)) = jwt(s, vs) {
        if m.end == ve {
            return Some(Step::Found(m));
        }
    }
    found(Kind::Secret, vs, ve)
}

/// Whether the quoted string starting at `k` (after its quote) is itself a
/// value (`'key': 'SMTP_PASSWORD'`), not a key.
fn quoted_value_position(s: &[u8], k: usize) -> bool {
    let mut q = k.saturating_sub(1);
    while q > 0 && s[q - 1] == b' ' {
        q -= 1;
    }
    q > 0 && matches!(s[q - 1], b':' | b'=')
}

/// For a `value` key: the class of the secret named by a `name` or `key`
/// entry just before it in the same object.
fn named_secret_before(s: &[u8], k: usize) -> Option<SecretKey> {
    let lo = k.saturating_sub(120);
    let window = &s[lo..k];
    // The object must not end between the name and the value.
    let start = window
        .iter()
        .rposition(|&b| b == b'}' || b == b'{')
        .map_or(0, |p| p + 1);
    let w = &window[start..];
    let mut best = None;
    for key in [&b"name"[..], b"key"] {
        let mut from = 0;
        while let Some(p) = memchr::memmem::find(&w[from..], key) {
            let at_ = from + p;
            let before_ok = at_ == 0 || !is_word(w[at_ - 1]);
            let after = at_ + key.len();
            if before_ok && !is_word(at(w, after)) {
                best = best.max(Some(after));
            }
            from = at_ + 1;
        }
    }
    let mut j = best?;
    while j < w.len() && matches!(w[j], b'"' | b'\'' | b' ' | b':' | b'=') {
        j += 1;
    }
    let e = run(w, j, |b| is_word(b) || b == b'-' || b == b'.');
    secret_key_class(&w[j..e]).filter(|_| e > j)
}

/// The value starting at `j`: quoted (`"..."`, `'...'`, `\"...\"`) or bare
/// (up to whitespace or a delimiter). A missing closing quote within
/// `MAX_QUOTED` bytes on the same line makes the value bare.
fn secret_value(s: &[u8], j: usize, query: bool) -> Option<(usize, usize)> {
    let (q, vs): (&[u8], usize) = if s[j.min(s.len())..].starts_with(b"\\\"") {
        (b"\\\"", j + 2)
    } else {
        match at(s, j) {
            b'"' => (b"\"", j + 1),
            b'\'' => (b"'", j + 1),
            _ => (b"", j),
        }
    };
    if !q.is_empty() {
        let limit = s.len().min(vs + MAX_QUOTED);
        let mut e = vs;
        while e < limit && s[e] != b'\n' {
            if s[e..].starts_with(q) {
                if e == vs {
                    return None;
                }
                return Some((vs, e));
            }
            e += 1;
        }
    }
    // A bracketed value runs to its closing bracket: `[SECRET]`, `<hidden>`.
    if let Some(close) = match at(s, vs) {
        b'[' => Some(b']'),
        b'<' => Some(b'>'),
        b'(' => Some(b')'),
        b'{' => Some(b'}'),
        _ => None,
    } {
        // `<from 1Password: "Mailgun prod">` may hold spaces; the others not.
        let e = if close == b'>' {
            run_max(s, vs + 1, 128, |b| b != close && b != b'\n')
        } else {
            run_max(s, vs + 1, 64, |b| b != close && !b.is_ascii_whitespace())
        };
        if at(s, e) == close {
            return Some((vs, e + 1));
        }
    }
    let mut e = run(s, vs, |b| {
        !(b.is_ascii_whitespace()
            || matches!(
                b,
                b',' | b';' | b'"' | b'\'' | b'<' | b'>' | b')' | b']' | b'}' | b'\\' | b'(' | b'['
            )
            || (query && b == b'&'))
    });
    // A sentence-ending period is not part of the value.
    if e > vs + 1 && s[e - 1] == b'.' && (e == s.len() || s[e].is_ascii_whitespace()) {
        e -= 1;
    }
    (e > vs).then_some((vs, e))
}

/// Values that are visibly not a secret: masked, redacted (including our own
/// redaction output, so redaction is idempotent), templated, or empty words.
fn placeholder(v: &[u8]) -> bool {
    if v.iter()
        .all(|b| matches!(b, b'*' | b'#' | b'x' | b'X' | b'.' | b'-' | b'?'))
    {
        return true;
    }
    let (f, l) = (v[0], v[v.len() - 1]);
    if matches!(
        (f, l),
        (b'[', b']') | (b'<', b'>') | (b'(', b')') | (b'{', b'}')
    ) {
        return true;
    }
    if v.starts_with(b"${") || v.starts_with(b"{{") || v.starts_with(b"%(") || v == b"%s" {
        return true;
    }
    // A hash of a secret (Vault audit logs): `hmac-sha256:3fae6908...`.
    if let Some(c) = v.iter().position(|&b| b == b':') {
        let hex = &v[c + 1..];
        if c > 0
            && hex.len() >= 32
            && hex.iter().all(|&b| is_hex(b))
            && v[..c]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return true;
        }
    }
    // An environment variable reference: `$CLIENT_SECRET`.
    if v.len() > 1
        && v[0] == b'$'
        && v[1..]
            .iter()
            .all(|&b| b.is_ascii_uppercase() || is_digit(b) || b == b'_')
    {
        return true;
    }
    const WORDS: [&[u8]; 17] = [
        b"null",
        b"none",
        b"nil",
        b"undefined",
        b"true",
        b"false",
        b"yes",
        b"no",
        b"redacted",
        b"hidden",
        b"masked",
        b"filtered",
        b"removed",
        b"empty",
        b"changeme",
        b"required",
        b"value_specified_in_no_log_parameter",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(v))
}

// ---------------------------------------------------------------------------
// Anchors that are not words: @ :// :: + ( -----BEGIN
// ---------------------------------------------------------------------------

/// `local@domain.tld` around the `@` at `i`. The local part is read
/// backwards, never past `floor` (the end of the previous span).
fn email(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    // Two-byte UTF-8 characters (accented Latin, Greek, Cyrillic) and the
    // three-byte letters of CJK, kana and Hangul are letters of
    // internationalized addresses (RFC 6531: `zoë@example.com`,
    // `用户@example.com`); other wide characters (full-width brackets and
    // punctuation, emoji) are taken as surrounding text. Spans still start
    // and end on character boundaries.
    let local_char =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut ls = i;
    while ls > floor && i - ls <= MAX_LOCAL {
        let b = s[ls - 1];
        if local_char(b) {
            ls -= 1;
        } else if (0x80..=0xbf).contains(&b)
            && ls >= floor + 2
            && (0xc2..=0xdf).contains(&s[ls - 2])
        {
            ls -= 2;
        } else if ls >= floor + 3 && wide_letter(&s[ls - 3..ls]) {
            ls -= 3;
        } else {
            break;
        }
    }
    let local = &s[ls..i];
    if local.is_empty()
        || i - ls > MAX_LOCAL
        || local[0] == b'.'
        || local[local.len() - 1] == b'.'
        || local.windows(2).any(|w| w == b"..")
        || !local
            .iter()
            .any(|&b| b.is_ascii_alphanumeric() || b >= 0x80)
    {
        return None;
    }
    // `https://user@host` is a URL's user name, not an address.
    if ls >= 3 && &s[ls - 3..ls] == b"://" {
        return None;
    }
    let ds = i + 1;
    let mut de = ds;
    while de < s.len() && de - ds <= MAX_DOMAIN {
        let b = s[de];
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            de += 1;
        } else if (0xc2..=0xdf).contains(&b) && (0x80..=0xbf).contains(&at(s, de + 1)) {
            de += 2;
        } else {
            break;
        }
    }
    let mut e = de;
    while e > ds && s[e - 1] == b'.' {
        e -= 1;
    }
    let domain = &s[ds..e];
    let mut labels = domain.split(|&b| b == b'.');
    let mut n = 0;
    let mut last: &[u8] = b"";
    for l in labels.by_ref() {
        if l.is_empty() || l.len() > 63 || l[0] == b'-' || l[l.len() - 1] == b'-' {
            return None;
        }
        n += 1;
        last = l;
    }
    if n < 2
        || last.len() < 2
        || !last.iter().all(u8::is_ascii_alphabetic)
        || domain.len() > MAX_DOMAIN
    {
        return None;
    }
    if is_word(at(s, e)) || at(s, e) == b'@' || tag_at(s, e) {
        return None;
    }
    // `git@github.com:org/repo.git` is an SSH remote.
    if at(s, e) == b':'
        && (at(s, e + 1).is_ascii_alphanumeric() || at(s, e + 1) == b'/' || tag_at(s, e + 1))
    {
        return None;
    }
    // `banner@2x.png`, `logo@3x.webp`: asset names, not addresses.
    const FILE_EXTENSIONS: [&[u8]; 16] = [
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"css", b"js", b"json", b"html",
        b"txt", b"log", b"pdf", b"gz", b"map",
    ];
    if FILE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(last)) {
        return None;
    }
    found(Kind::Email, ls, e)
}

/// A three-byte UTF-8 letter: CJK ideographs (U+4E00..U+9FFF), kana
/// (U+3040..U+30FF), Hangul syllables (U+AC00..U+D7A3).
fn wide_letter(c: &[u8]) -> bool {
    let cont = |b: u8| (0x80..=0xbf).contains(&b);
    if c.len() != 3 || !cont(c[1]) || !cont(c[2]) {
        return false;
    }
    let cp =
        (u32::from(c[0] & 0x0f) << 12) | (u32::from(c[1] & 0x3f) << 6) | u32::from(c[2] & 0x3f);
    (0xe0..=0xef).contains(&c[0])
        && ((0x4e00..=0x9fff).contains(&cp)
            || (0x3040..=0x30ff).contains(&cp)
            || (0xac00..=0xd7a3).contains(&cp))
}

fn colon(s: &[u8], i: usize, floor: usize) -> Option<Step> {
    if s[i..].starts_with(b"://") {
        return url_password(s, i);
    }
    if at(s, i + 1) == b':' {
        return ipv6(s, i, floor);
    }
    None
}

/// `scheme://user:password@host`: the password is the secret. The `@` is
/// skipped either way, so the host is never mistaken for an email domain.
fn url_password(s: &[u8], i: usize) -> Option<Step> {
    if !is_word(before(s, i)) {
        return None;
    }
    let us = i + 3;
    // `?` and `#` do not end the user info: unencoded passwords contain them.
    let ue = run_max(s, us, 256, |b| {
        !(b.is_ascii_whitespace() || matches!(b, b'/' | b'"' | b'\'' | b'<' | b'>' | b'`'))
    });
    let at_sign = s[us..ue].iter().rposition(|&b| b == b'@')? + us;
    let colon = s[us..at_sign]
        .iter()
        .position(|&b| b == b':')
        .map(|c| c + us);
    let Some(c) = colon else {
        // No password; `?q=a@b.example` may still hold an email.
        return Some(Step::Skip(us));
    };
    let pw = &s[c + 1..at_sign];
    if !pw.is_empty() && !placeholder(pw) {
        return found(Kind::Secret, c + 1, at_sign);
    }
    Some(Step::Skip(at_sign + 1))
}

/// A PEM private key block, through its END line (or the end of the text,
/// if truncated). Certificates and public keys are not secrets.
fn pem(s: &[u8], i: usize) -> Option<Step> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if !s[i..].starts_with(BEGIN) {
        return None;
    }
    let ls = i + BEGIN.len();
    let le = run_max(s, ls, 64, |b| b.is_ascii_uppercase() || b == b' ');
    if !s[le..].starts_with(b"-----")
        || !s[ls..le].ends_with(b"PRIVATE KEY") && !s[ls..le].ends_with(b"PRIVATE KEY BLOCK")
    {
        return Some(Step::Skip(le.max(i + 1)));
    }
    let mut end_marker = b"-----END ".to_vec();
    end_marker.extend_from_slice(&s[ls..le]);
    end_marker.extend_from_slice(b"-----");
    let body = le + 5;
    let e = memchr::memmem::find(&s[body..], &end_marker)
        .map(|k| body + k + end_marker.len())
        .unwrap_or(s.len());
    found(Kind::Secret, i, e)
}
