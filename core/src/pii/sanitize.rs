//! Log-injection defence for text that ends up in logs, terminals and SIEMs.
//!
//! * Control characters are escaped visibly: `\n`, `\r`, `\t`, `\x1b`; in
//!   UTF-8 also the C1 controls and the invisible characters that reorder or
//!   break lines (`\u2028`, `\u202e`, ...), so one stored message is always
//!   one displayed line, in the order it was written.
//! * ANSI escape sequences (colours, cursor movement, window titles) are
//!   removed: they rewrite what an operator's terminal shows.
//! * Text longer than `max_bytes` is cut on a character boundary and ends in
//!   `…[truncated N bytes]` (N counts input bytes left out).
//!
//! Backslashes are deliberately not escaped: a literal `\n` in the input
//! cannot break a line, and leaving it alone makes the function idempotent,
//! which matters in a BEFORE UPDATE trigger that sees its own output again.

use std::borrow::Cow;

/// The smallest `max_bytes` that leaves room for the truncation marker.
pub const MIN_SANITIZE_BYTES: usize = 32;

/// The database encoding, as far as sanitizing cares.
pub enum Charset<'f> {
    Utf8,
    /// Any other server encoding (all are ASCII supersets whose multibyte
    /// characters contain no ASCII bytes); the function returns the length
    /// of the character starting the slice (PostgreSQL's `pg_mblen`).
    Other(&'f dyn Fn(&[u8]) -> usize),
}

const ESC: u8 = 0x1b;

/// Sanitize `text` (see the module documentation). Returns the input itself
/// when it needs no change. `max_bytes` must be at least
/// [`MIN_SANITIZE_BYTES`]; smaller values are raised to it.
pub fn sanitize_log<'a>(text: &'a [u8], max_bytes: usize, charset: Charset<'_>) -> Cow<'a, [u8]> {
    let max_bytes = max_bytes.max(MIN_SANITIZE_BYTES);
    let utf8 = matches!(charset, Charset::Utf8);
    if text.len() <= max_bytes && !needs_work(text, utf8) {
        return Cow::Borrowed(text);
    }
    let (prefix, suffix): (&[u8], &[u8]) = if utf8 {
        ("…[truncated ".as_bytes(), b" bytes]")
    } else {
        (b"...[truncated ", b" bytes]")
    };
    let marker_max = prefix.len() + text.len().to_string().len() + suffix.len();
    let budget = max_bytes.saturating_sub(marker_max);

    let mut out = Vec::with_capacity(text.len().min(max_bytes) + 16);
    // Last unit boundary at which the output still fits before a marker.
    let mut fit = (0usize, 0usize);
    let mut truncated = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == ESC {
            match ansi_len(text, i + 1) {
                Some(n) => i += 1 + n,
                None => {
                    push_hex(&mut out, b);
                    i += 1;
                }
            }
        } else if b < 0x20 || b == 0x7f {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => push_hex(&mut out, b),
            }
            i += 1;
        } else if b < 0x80 {
            out.push(b);
            i += 1;
        } else if utf8 {
            let (cp, len) = decode_utf8(&text[i..]);
            if cp == 0x9b {
                // The one-byte form of ESC [ (CSI).
                if let Some(n) = csi_len(text, i + len) {
                    i += len + n;
                    continue;
                }
            }
            if escaped_codepoint(cp) {
                out.extend_from_slice(format!("\\u{cp:04x}").as_bytes());
            } else {
                out.extend_from_slice(&text[i..i + len]);
            }
            i += len;
        } else {
            let len = match &charset {
                Charset::Other(mblen) => mblen(&text[i..]).clamp(1, text.len() - i),
                Charset::Utf8 => 1,
            };
            out.extend_from_slice(&text[i..i + len]);
            i += len;
        }
        if out.len() <= budget {
            fit = (out.len(), i);
        }
        if out.len() > max_bytes {
            truncated = true;
            break;
        }
    }
    if truncated {
        out.truncate(fit.0);
        out.extend_from_slice(prefix);
        out.extend_from_slice((text.len() - fit.1).to_string().as_bytes());
        out.extend_from_slice(suffix);
    }
    Cow::Owned(out)
}

fn push_hex(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
}

/// Whether anything in `text` must be escaped or removed.
fn needs_work(text: &[u8], utf8: bool) -> bool {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b < 0x20 || b == 0x7f {
            return true;
        }
        if utf8 && (b == 0xc2 || b == 0xe2 || b == 0xd8 || b == 0xef) {
            let (cp, len) = decode_utf8(&text[i..]);
            if cp == 0x9b || escaped_codepoint(cp) {
                return true;
            }
            i += len;
            continue;
        }
        i += 1;
    }
    false
}

/// C1 controls and the invisible characters that break lines or reorder
/// text (Trojan Source).
fn escaped_codepoint(cp: u32) -> bool {
    matches!(cp,
        0x80..=0x9f
        | 0x061c
        | 0x200e | 0x200f
        | 0x2028..=0x202e
        | 0x2066..=0x2069
        | 0xfeff)
}

/// Decode one UTF-8 character; an invalid byte decodes as itself, length 1
/// (never happens in a UTF-8 database; keeps arbitrary input panic-free).
fn decode_utf8(s: &[u8]) -> (u32, usize) {
    let b = s[0];
    let (len, init) = match b {
        0xc2..=0xdf => (2, u32::from(b & 0x1f)),
        0xe0..=0xef => (3, u32::from(b & 0x0f)),
        0xf0..=0xf4 => (4, u32::from(b & 0x07)),
        _ => return (u32::from(b), 1),
    };
    if s.len() < len || !s[1..len].iter().all(|c| c & 0xc0 == 0x80) {
        return (u32::from(b), 1);
    }
    let cp = s[1..len]
        .iter()
        .fold(init, |a, c| (a << 6) | u32::from(c & 0x3f));
    (cp, len)
}

/// Length of the escape sequence after an ESC at `i - 1` (not counting the
/// ESC), or None when it is not a complete sequence (then the ESC is shown).
fn ansi_len(s: &[u8], i: usize) -> Option<usize> {
    let b = *s.get(i)?;
    match b {
        b'[' => csi_len(s, i + 1).map(|n| n + 1),
        // OSC, DCS, SOS, PM, APC: a string ended by BEL or ESC \.
        b']' | b'P' | b'X' | b'^' | b'_' => {
            let limit = s.len().min(i + 1 + 4096);
            let mut j = i + 1;
            while j < limit {
                match s[j] {
                    0x07 => return Some(j + 1 - i),
                    ESC if s.get(j + 1) == Some(&b'\\') => return Some(j + 2 - i),
                    _ => j += 1,
                }
            }
            None
        }
        // nF: intermediates then a final byte (character set selection).
        0x20..=0x2f => {
            let mut j = i;
            while j < s.len() && j - i < 8 && (0x20..=0x2f).contains(&s[j]) {
                j += 1;
            }
            matches!(s.get(j), Some(0x30..=0x7e)).then(|| j + 1 - i)
        }
        // Fp, Fe, Fs: one final byte.
        0x30..=0x7e => Some(1),
        _ => None,
    }
}

/// Control Sequence after its introducer: parameter bytes, intermediate
/// bytes, one final byte. Returns its length.
fn csi_len(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < s.len() && j - i < 64 && (0x30..=0x3f).contains(&s[j]) {
        j += 1;
    }
    while j < s.len() && j - i < 64 && (0x20..=0x2f).contains(&s[j]) {
        j += 1;
    }
    matches!(s.get(j), Some(0x40..=0x7e)).then(|| j + 1 - i)
}
