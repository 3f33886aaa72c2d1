//! Redaction styles over the scanner's spans.

use super::normalize::normalize as decode;
use super::{find_iter_in, Kind, KindSet};
use crate::CoreError;
use std::borrow::Cow;
use std::net::Ipv6Addr;

/// How a detected value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `[EMAIL]`
    Tag,
    /// Partial: `j***@example.com`, `***.***.***.17`, `**** **** **** 4242`.
    Mask,
    /// Keyed pseudonym token `[EMAIL:3f9a1c2e]`: the same value gives the
    /// same token, so a person stays trackable across rows without being
    /// identifiable. The caller supplies the keyed hash.
    Hash,
    /// The value is deleted.
    Remove,
}

impl Style {
    pub const NAMES: [&'static str; 4] = ["tag", "mask", "hash", "remove"];

    pub fn parse(name: &[u8]) -> Result<Style, CoreError> {
        let styles = [Style::Tag, Style::Mask, Style::Hash, Style::Remove];
        Style::NAMES
            .iter()
            .zip(styles)
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, s)| s)
            // Escaped: control characters in an error (and the server
            // log) could forge log lines.
            .ok_or_else(|| CoreError::UnknownRedactionStyle {
                name: name.escape_ascii().to_string(),
            })
    }
}

/// Hex digits of the keyed hash kept in a `hash`-style token: 32 bits, so a
/// table of a few thousand people has no collisions in practice while the
/// token stays short. It is a tracking handle, not an identifier.
const TOKEN_HEX: usize = 8;

/// Replace the spans of `kinds` in `text`. `pseudonym` is only called for
/// [`Style::Hash`], with the kind and the normalized value (see
/// [`normalize`]), and returns hex digits. Returns the input itself, not a
/// copy, when nothing was replaced.
pub fn redact<'a, E>(
    text: &'a [u8],
    kinds: KindSet,
    style: Style,
    pseudonym: impl FnMut(Kind, &[u8]) -> Result<String, E>,
) -> Result<Cow<'a, [u8]>, E> {
    redact_in(text, kinds, style, true, pseudonym)
}

/// As [`redact`]; `unicode`: whether the text is UTF-8 (see
/// [`super::find_iter_in`]).
pub fn redact_in<'a, E>(
    text: &'a [u8],
    kinds: KindSet,
    style: Style,
    unicode: bool,
    mut pseudonym: impl FnMut(Kind, &[u8]) -> Result<String, E>,
) -> Result<Cow<'a, [u8]>, E> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for m in find_iter_in(text, unicode) {
        if !kinds.contains(m.kind) {
            continue;
        }
        let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
        o.extend_from_slice(&text[copied..m.start]);
        let v = &text[m.start..m.end];
        match style {
            Style::Tag => {
                o.push(b'[');
                o.extend_from_slice(m.kind.name().as_bytes());
                o.push(b']');
            }
            Style::Mask => {
                let decoded = decode(v, unicode);
                mask(m.kind, decoded.as_ref().map_or(v, |d| &d.text), o)
            }
            Style::Hash => {
                // The decoded value (`jane%40example.com` is jane@example.com):
                // an obfuscated spelling gets the plain value's token.
                let decoded = decode(v, unicode);
                let h = pseudonym(
                    m.kind,
                    &normalize(m.kind, decoded.as_ref().map_or(v, |d| &d.text)),
                )?;
                o.push(b'[');
                o.extend_from_slice(m.kind.name().as_bytes());
                o.push(b':');
                o.extend_from_slice(&h.as_bytes()[..h.len().min(TOKEN_HEX)]);
                o.push(b']');
            }
            Style::Remove => {}
        }
        copied = m.end;
    }
    Ok(match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.extend_from_slice(&text[copied..]);
            Cow::Owned(o)
        }
    })
}

/// The form of a value that is hashed for `hash` tokens, so that spellings of
/// the same value get the same token: emails lowercased, IPv6 addresses in
/// canonical form, phone, card and SSN digits only, IBANs without spaces,
/// MAC addresses as lowercase hex.
pub fn normalize(kind: Kind, v: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Email => v.to_ascii_lowercase(),
        Kind::Ipv6 => {
            let addr = v.split(|&b| b == b'%').next().unwrap_or(v);
            match std::str::from_utf8(addr)
                .ok()
                .and_then(|t| t.parse::<Ipv6Addr>().ok())
            {
                Some(a) => a.to_string().into_bytes(),
                None => v.to_ascii_lowercase(),
            }
        }
        Kind::Phone | Kind::CreditCard | Kind::UsSsn => {
            v.iter().copied().filter(u8::is_ascii_digit).collect()
        }
        Kind::Iban => v.iter().copied().filter(|b| *b != b' ').collect(),
        Kind::MacAddress => v
            .iter()
            .copied()
            .filter(u8::is_ascii_hexdigit)
            .map(|b| b.to_ascii_lowercase())
            .collect(),
        Kind::Ipv4 | Kind::Jwt | Kind::Secret => v.to_vec(),
    }
}

/// Partial masking: enough is kept to tell values apart while debugging
/// (the email domain, the last octet, the last four digits, the card
/// network's nothing), never enough to identify someone.
fn mask(kind: Kind, v: &[u8], o: &mut Vec<u8>) {
    match kind {
        Kind::Email => {
            let at = v.iter().rposition(|&b| b == b'@').unwrap_or(0);
            // The first character, whole: local parts may start with a
            // two-byte UTF-8 letter (`élodie@...`).
            let first = if (0xc2..=0xdf).contains(&v[0]) && v.len() > 1 {
                2
            } else {
                1
            };
            o.extend_from_slice(&v[..first]);
            o.extend_from_slice(b"***");
            o.extend_from_slice(&v[at..]);
        }
        Kind::Ipv4 => {
            let last = v.iter().rposition(|&b| b == b'.').unwrap_or(0);
            o.extend_from_slice(b"***.***.***");
            o.extend_from_slice(&v[last..]);
        }
        Kind::Ipv6 => {
            // Every group but the last becomes `****`; an embedded IPv4
            // address keeps only its last octet; the zone id is dropped.
            let addr = v.split(|&b| b == b'%').next().unwrap_or(v);
            let last = addr
                .iter()
                .rposition(|&b| b == b':' || b == b'.')
                .unwrap_or(0);
            let mut in_group = false;
            for &b in &addr[..last] {
                if b == b':' || b == b'.' {
                    o.push(b);
                    in_group = false;
                } else if !in_group {
                    o.extend_from_slice(if addr[..last].contains(&b'.') && b.is_ascii_digit() {
                        b"***"
                    } else {
                        b"****"
                    });
                    in_group = true;
                }
            }
            o.extend_from_slice(&addr[last..]);
        }
        Kind::Phone | Kind::CreditCard | Kind::UsSsn => keep_last(v, 4, u8::is_ascii_digit, o),
        Kind::Iban => {
            o.extend_from_slice(&v[..2]);
            keep_last(&v[2..], 4, u8::is_ascii_alphanumeric, o);
        }
        Kind::MacAddress => {
            // The first half is the vendor (OUI), the second the device.
            let half = v.len() / 2;
            o.extend_from_slice(&v[..half]);
            for &b in &v[half..] {
                o.push(if b.is_ascii_hexdigit() { b'*' } else { b });
            }
        }
        Kind::Jwt => {
            // The header only names the algorithm; claims and signature go.
            let dot = v.iter().position(|&b| b == b'.').unwrap_or(v.len());
            o.extend_from_slice(&v[..dot]);
            o.extend_from_slice(b".***.***");
        }
        Kind::Secret => o.extend_from_slice(b"********"),
    }
}

/// Replace every byte matching `is` with `*`, except the last `keep` of them.
fn keep_last(v: &[u8], keep: usize, is: fn(&u8) -> bool, o: &mut Vec<u8>) {
    let total = v.iter().filter(|b| is(b)).count();
    let mut seen = 0;
    for b in v {
        if is(b) {
            seen += 1;
            o.push(if seen + keep > total { *b } else { b'*' });
        } else {
            o.push(*b);
        }
    }
}
