//! Right to erasure: finding a person's identifier in free text and in audit
//! row images, and what replaces it.
//!
//! A mention is an occurrence of the identifier, compared ASCII
//! case-insensitively, that is not part of a longer word: where the
//! identifier starts (ends) with a letter, digit or underscore, the
//! character before (after) it must not be one ("alice" is mentioned in
//! "login failed for Alice," but not in "malice"). The same rule serves the
//! tables (`aegis.mentions()` / `aegis.erase_mentions()`) and the audit
//! trail's tombstones, so both find exactly the same mentions.

/// What an erased value or mention becomes.
pub const TOMBSTONE: &str = "[ERASED]";

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte ranges of the mentions of `id` in `text`, in order, not overlapping.
fn mention_ranges(text: &str, id: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if id.is_empty() || id.len() > text.len() {
        return out;
    }
    // ASCII lowercasing keeps every byte offset (multi-byte sequences are
    // left alone), so offsets in the folded copies are offsets in `text`.
    let hay = text.to_ascii_lowercase();
    let needle = id.to_ascii_lowercase();
    let check_start = id.chars().next().is_some_and(is_word);
    let check_end = id.chars().next_back().is_some_and(is_word);
    let mut from = 0;
    while let Some(i) = hay[from..].find(&needle) {
        let start = from + i;
        let end = start + needle.len();
        let before_ok = !check_start || !text[..start].chars().next_back().is_some_and(is_word);
        let after_ok = !check_end || !text[end..].chars().next().is_some_and(is_word);
        if before_ok && after_ok {
            out.push((start, end));
            from = end;
        } else {
            // Step one character, not one byte: `from` stays on a boundary.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
        if from >= hay.len() {
            break;
        }
    }
    out
}

/// Whether `text` mentions `id`.
pub fn mentions(text: &str, id: &str) -> bool {
    !mention_ranges(text, id).is_empty()
}

/// `text` with every mention of `id` replaced by [`TOMBSTONE`]; None when
/// there is none.
pub fn erase_mentions(text: &str, id: &str) -> Option<String> {
    let ranges = mention_ranges(text, id);
    if ranges.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in ranges {
        out.push_str(&text[at..s]);
        out.push_str(TOMBSTONE);
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// One string inside a JSON document to replace: its path (object keys and
/// array indices, as `jsonb_set` takes them) and the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: Vec<String>,
    pub value: String,
}

/// The strings of an audit image that belong to the subject: values equal to
/// the subject's pseudonym (how `subject_id` and `pii` columns are stored)
/// become [`TOMBSTONE`], and mentions of `id` inside other strings are
/// erased. Object keys (column names) are never personal data and are left.
pub fn scrub(value: &serde_json::Value, pseudonym: Option<&str>, id: &str) -> Vec<Change> {
    fn walk(
        v: &serde_json::Value,
        path: &mut Vec<String>,
        pseudonym: Option<&str>,
        id: &str,
        out: &mut Vec<Change>,
    ) {
        match v {
            serde_json::Value::String(s) => {
                let new = if pseudonym == Some(s.as_str()) {
                    Some(TOMBSTONE.to_string())
                } else {
                    erase_mentions(s, id)
                };
                if let Some(value) = new {
                    out.push(Change {
                        path: path.clone(),
                        value,
                    });
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    walk(x, path, pseudonym, id, out);
                    path.pop();
                }
            }
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    path.push(k.clone());
                    walk(x, path, pseudonym, id, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), pseudonym, id, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn word_boundaries_and_case() {
        assert!(mentions("login failed for Alice, retrying", "alice"));
        assert!(mentions("alice", "alice"));
        assert!(mentions("user=alice;", "alice"));
        assert!(!mentions("malice aforethought", "alice"));
        assert!(!mentions("alice_2 logged in", "alice"));
        assert!(!mentions("alice2", "alice"));
        assert!(mentions("mail alice@example.com now", "alice@example.com"));
        assert!(mentions("(ALICE@EXAMPLE.COM)", "alice@example.com"));
        // An identifier edged by a non-word character needs no boundary there.
        assert!(mentions("x@alice", "@alice"));
        assert!(!mentions("", "alice"));
        assert!(!mentions("ali", "alice"));
        // Non-ASCII neighbours count as letters; offsets stay on boundaries.
        assert!(!mentions("éalice", "alice"));
        assert!(mentions("é alice é", "alice"));
        assert!(mentions("Jürgen Müller", "müller"));
    }

    #[test]
    fn erasing() {
        assert_eq!(
            erase_mentions("alice called; Alice again; malice stays", "alice").as_deref(),
            Some("[ERASED] called; [ERASED] again; malice stays")
        );
        assert_eq!(erase_mentions("nobody here", "alice"), None);
        assert_eq!(
            erase_mentions("alicealice alice", "alice").as_deref(),
            Some("alicealice [ERASED]")
        );
    }

    #[test]
    fn scrubbing_images() {
        let img = serde_json::json!({
            "user_id": "pseudonym:abc",
            "other": "pseudonym:def",
            "error_message": "timeout for alice",
            "n": 12.30,
            "tags": ["x", "alice"],
            "alice": "column names stay",
        });
        let mut changes = scrub(&img, Some("pseudonym:abc"), "alice");
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            changes,
            vec![
                Change {
                    path: vec!["error_message".into()],
                    value: "timeout for [ERASED]".into()
                },
                Change {
                    path: vec!["tags".into(), "1".into()],
                    value: "[ERASED]".into()
                },
                Change {
                    path: vec!["user_id".into()],
                    value: "[ERASED]".into()
                },
            ]
        );
        assert!(scrub(&img, None, "bob").is_empty());
    }

    proptest! {
        // Erasing leaves no mention, never touches text without one, and
        // erasing again changes nothing.
        #[test]
        fn erased_text_mentions_nothing(
            words in prop::collection::vec(prop::sample::select(vec![
                "alice", "Alice", "ALICE", "malice", "alice_x", "bob", "é", "-", " ", ",", "alice.", "x",
            ]), 0..12),
            sep in prop::sample::select(vec!["", " ", ";"]),
        ) {
            let text = words.join(sep);
            match erase_mentions(&text, "alice") {
                None => prop_assert!(!mentions(&text, "alice")),
                Some(out) => {
                    prop_assert!(!mentions(&out, "alice"), "{:?} -> {:?}", text, out);
                    prop_assert_eq!(erase_mentions(&out, "alice"), None);
                }
            }
        }
    }
}
