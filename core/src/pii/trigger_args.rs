//! Arguments of the `aegis.sanitize_columns()` trigger function, as given in
//! `CREATE TRIGGER ... EXECUTE FUNCTION aegis.sanitize_columns('col', ...)`.
//!
//! Each argument is a column name, or an option containing `=`:
//! `redact` / `redact=EMAIL,PHONE` (also redact PII, all or some kinds),
//! `style=tag|mask|hash|remove` (implies `redact`), `max_bytes=N`,
//! `sanitize=false` (redact only: no escaping, no truncation, so multi-line
//! messages keep their newlines; needs `redact`).

use super::{KindSet, Style, MIN_SANITIZE_BYTES};
use crate::CoreError;

/// Largest `max_bytes`: PostgreSQL's limit on a text value.
pub const MAX_SANITIZE_BYTES: usize = (1 << 30) - 1;
/// `sanitize_log()`'s default, also the trigger's.
pub const DEFAULT_SANITIZE_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq)]
pub struct SanitizeTriggerArgs {
    pub columns: Vec<String>,
    /// Kinds and style to redact after sanitizing, if asked for.
    pub redact: Option<(KindSet, Style)>,
    pub max_bytes: usize,
    /// Escape control characters, strip ANSI escapes and truncate
    /// (`sanitize_log()`) before redacting; false for redact-only.
    pub sanitize: bool,
}

fn bad(arg: &str, reason: impl Into<String>) -> CoreError {
    CoreError::TriggerArgument {
        arg: arg.to_string(),
        reason: reason.into(),
    }
}

/// Check a `max_bytes` value from SQL.
pub fn check_max_bytes(value: i64) -> Result<usize, CoreError> {
    usize::try_from(value)
        .ok()
        .filter(|v| (MIN_SANITIZE_BYTES..=MAX_SANITIZE_BYTES).contains(v))
        .ok_or(CoreError::SanitizeLimit {
            value,
            min: MIN_SANITIZE_BYTES,
            max: MAX_SANITIZE_BYTES,
        })
}

impl SanitizeTriggerArgs {
    pub fn parse(args: &[String]) -> Result<Self, CoreError> {
        let mut columns: Vec<String> = Vec::new();
        let mut kinds = None;
        let mut style = None;
        let mut max_bytes = DEFAULT_SANITIZE_BYTES;
        let mut max_bytes_given = false;
        let mut sanitize = true;
        for arg in args {
            match arg.split_once('=') {
                None if arg == "redact" => kinds = Some(KindSet::ALL),
                None if arg.is_empty() => return Err(bad(arg, "an empty column name")),
                None => {
                    if columns.contains(arg) {
                        return Err(bad(arg, "column listed twice"));
                    }
                    columns.push(arg.clone());
                }
                Some(("redact", list)) => {
                    kinds = Some(KindSet::parse(
                        list.split(',').map(|k| k.trim().as_bytes()),
                    )?)
                }
                Some(("style", s)) => style = Some(Style::parse(s.as_bytes())?),
                Some(("max_bytes", n)) => {
                    let v: i64 = n
                        .trim()
                        .parse()
                        .map_err(|_| bad(arg, "max_bytes must be an integer"))?;
                    max_bytes = check_max_bytes(v)?;
                    max_bytes_given = true;
                }
                Some(("sanitize", v)) => {
                    sanitize = match v.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(arg, "sanitize must be true or false")),
                    }
                }
                Some((opt, _)) => {
                    return Err(bad(
                        arg,
                        format!(
                        "unknown option \"{opt}\" (options are redact, style, max_bytes, sanitize)"
                    ),
                    ))
                }
            }
        }
        if columns.is_empty() {
            return Err(bad("", "no column names given"));
        }
        let redact = match (kinds, style) {
            (None, None) => None,
            (k, s) => Some((k.unwrap_or(KindSet::ALL), s.unwrap_or(Style::Tag))),
        };
        if !sanitize && redact.is_none() {
            return Err(bad(
                "sanitize=false",
                "with sanitize=false the trigger only redacts: add redact or redact=KINDS",
            ));
        }
        if !sanitize && max_bytes_given {
            return Err(bad(
                "sanitize=false",
                "max_bytes truncates while sanitizing: it has no effect with sanitize=false",
            ));
        }
        Ok(SanitizeTriggerArgs {
            columns,
            redact,
            max_bytes,
            sanitize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::Kind;

    fn p(args: &[&str]) -> Result<SanitizeTriggerArgs, CoreError> {
        SanitizeTriggerArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_columns_and_options() {
        let a = p(&["msg", "cause"]).unwrap();
        assert_eq!(a.columns, ["msg", "cause"]);
        assert_eq!(a.redact, None);
        assert_eq!(a.max_bytes, DEFAULT_SANITIZE_BYTES);
        let a = p(&["msg", "redact=email, phone", "max_bytes=4096"]).unwrap();
        let (k, s) = a.redact.unwrap();
        assert!(k.contains(Kind::Email) && k.contains(Kind::Phone) && !k.contains(Kind::Ipv4));
        assert_eq!(s, Style::Tag);
        assert_eq!(a.max_bytes, 4096);
        assert_eq!(
            p(&["msg", "style=mask"]).unwrap().redact,
            Some((KindSet::ALL, Style::Mask))
        );
        assert!(p(&["msg"]).unwrap().sanitize);
        let a = p(&["msg", "redact", "sanitize=false"]).unwrap();
        assert!(!a.sanitize && a.redact.is_some());
    }

    #[test]
    fn rejects_bad_arguments() {
        for args in [
            &[][..],
            &["redact"],
            &["msg", "msg"],
            &["msg", "redact=PASSPORT"],
            &["msg", "style=blur"],
            &["msg", "max_bytes=10"],
            &["msg", "max_bytes=lots"],
            &["msg", "colour=red"],
            &["msg", "sanitize=false"],
            &["msg", "sanitize=no", "redact"],
            &["msg", "redact", "sanitize=false", "max_bytes=4096"],
            &[""],
        ] {
            assert!(p(args).is_err(), "{args:?}");
        }
    }
}
