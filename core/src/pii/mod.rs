//! PII detection and redaction for free text (log lines, incident notes).
//!
//! [`find_iter`] is a single forward pass over the bytes: it walks the text
//! word by word and only looks closer at positions where a kind can start
//! (a digit, `@`, `+`, `(`, `::`, `://`, `-----BEGIN`, a key followed by `=`
//! or `:`, a few token prefixes). Every candidate is parsed and validated
//! (`validate`: Luhn and card brands, IBAN mod-97, SSN rules; IPv6 through
//! the standard library's parser) and rejected when its surroundings say it
//! is a look-alike (part of a longer dotted or dashed number, a version, a
//! UUID, a timestamp). Work per byte is bounded, so the scan is linear in
//! the input.
//!
//! Only ASCII bytes are ever matched, and every span starts and ends next to
//! an ASCII byte, so spans never split a character in UTF-8 or in any other
//! server encoding PostgreSQL supports (their multibyte characters never
//! contain ASCII bytes).

mod normalize;
mod phone;
mod redact;
mod sanitize;
mod scan;
pub mod trigger_args;
pub mod validate;

pub use redact::{normalize, redact, redact_in, Style};
pub use sanitize::{sanitize_log, Charset, MIN_SANITIZE_BYTES};
pub use scan::{find_iter, find_iter_in, has_pii, has_pii_in, Matches, Scanner};

use crate::CoreError;

/// A kind of personal data or secret the scanner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Ipv4,
    Ipv6,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    MacAddress,
    Jwt,
    Secret,
}

impl Kind {
    /// Every kind, in the order `aegis.pii_kinds()` lists them.
    pub const ALL: [Kind; 10] = [
        Kind::Email,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::MacAddress,
        Kind::Jwt,
        Kind::Secret,
    ];

    /// The SQL-visible name, also used in redaction tags (`[EMAIL]`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Ipv4 => "IPV4",
            Kind::Ipv6 => "IPV6",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Iban => "IBAN",
            Kind::UsSsn => "US_SSN",
            Kind::MacAddress => "MAC_ADDRESS",
            Kind::Jwt => "JWT",
            Kind::Secret => "SECRET",
        }
    }

    /// Parse a kind name, case-insensitively (`email`, `EMAIL`).
    pub fn parse(name: &[u8]) -> Result<Kind, CoreError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().as_bytes().eq_ignore_ascii_case(name))
            // Escaped like a hash algorithm's name: control characters
            // in an error (and the server log) could forge log lines.
            .ok_or_else(|| CoreError::UnknownPiiKind {
                name: name.escape_ascii().to_string(),
            })
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of kinds (which ones to redact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSet(u16);

impl KindSet {
    pub const ALL: KindSet = KindSet((1 << Kind::ALL.len()) - 1);
    pub const EMPTY: KindSet = KindSet(0);

    pub fn contains(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn insert(&mut self, k: Kind) {
        self.0 |= k.bit();
    }

    /// Parse a list of kind names; the first unknown name is the error.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Result<KindSet, CoreError> {
        let mut set = KindSet::EMPTY;
        for n in names {
            set.insert(Kind::parse(n)?);
        }
        Ok(set)
    }
}

/// A detected span: byte offsets into the scanned text, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Number of characters in UTF-8 text (bytes that do not continue a
/// character); detect_pii's positions are character positions, like SQL's.
pub fn utf8_char_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count()
}

#[cfg(test)]
mod tests;
