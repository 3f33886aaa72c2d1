//! The one error type of aegis-core. Each variant is a user-facing condition;
//! the pgrx layer maps each to a SQLSTATE (see `src/error.rs`), so messages here
//! are written for the person who typed the SQL, never internal details.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A hash algorithm name we do not know at all.
    #[error("unsupported hash algorithm \"{name}\"")]
    UnknownHashAlgorithm { name: String },

    /// A known but cryptographically broken algorithm (md5, sha1) while
    /// `aegis.allow_legacy_hashes` is off.
    #[error("hash algorithm \"{name}\" is disabled: it is cryptographically broken")]
    LegacyHashAlgorithm { name: String },

    /// Input to decrypt() that does not start like a pg_aegis envelope.
    #[error("not a pg_aegis ciphertext")]
    NotAnEnvelope,

    #[error("unsupported pg_aegis ciphertext format version {version}")]
    UnsupportedEnvelopeVersion { version: u8 },

    #[error("pg_aegis ciphertext is truncated ({len} bytes)")]
    EnvelopeTruncated { len: usize },

    /// GCM authentication failed: altered ciphertext, wrong key, or an AAD
    /// other than the one it was sealed with. Deliberately does not say which.
    #[error(
        "decryption failed: the ciphertext was altered, or the key or aad differs from encryption"
    )]
    DecryptionFailed,

    #[error("value too large to encrypt ({len} bytes)")]
    PlaintextTooLarge { len: usize },

    /// A wrapped data key did not unwrap under the configured master key.
    #[error("a data key could not be unwrapped with the configured master key")]
    WrappedKeyInvalid,

    /// Never carries the key text itself.
    #[error("the master key is malformed: {reason}")]
    MasterKeyFormat { reason: String },

    #[error("the operating system's random number generator is unavailable")]
    RandomUnavailable,

    /// Neither aegis.master_key_file nor aegis.master_key_command is set.
    #[error("no master key is configured")]
    MasterKeyNotConfigured,

    /// The path is not in the message: callers who may not read the
    /// server's settings see the reason only (the server log has the path).
    #[error("cannot use the master key file (aegis.master_key_file): {reason}")]
    MasterKeyFile { path: String, reason: String },

    #[error("aegis.master_key_command failed: {reason}")]
    MasterKeyCommand { reason: String },

    #[error("unknown PII kind \"{name}\"")]
    UnknownPiiKind { name: String },

    #[error("unknown redaction style \"{name}\"")]
    UnknownRedactionStyle { name: String },

    #[error("max_bytes must be between {min} and {max}, not {value}")]
    SanitizeLimit { value: i64, min: usize, max: usize },

    #[error("invalid aegis.sanitize_columns() argument \"{arg}\": {reason}")]
    TriggerArgument { arg: String, reason: String },

    /// A cron schedule that does not parse or never fires.
    #[error("invalid schedule: {reason}")]
    CronSchedule { reason: String },

    /// A value the audit trail cannot encode canonically.
    #[error("cannot encode an audit value: {reason}")]
    AuditValue { reason: String },
}

impl CoreError {
    /// A hint for the user: what to do instead.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            CoreError::UnknownHashAlgorithm { .. } => format!(
                "Supported types are {}.",
                crate::hash::HashAlgorithm::supported_names(false).join(", ")
            ),
            CoreError::LegacyHashAlgorithm { .. } => format!(
                "Use one of {}; for pgcrypto compatibility a superuser can SET aegis.allow_legacy_hashes = on.",
                crate::hash::HashAlgorithm::supported_names(false).join(", ")
            ),
            CoreError::NotAnEnvelope | CoreError::EnvelopeTruncated { .. } => {
                "Pass a value produced by aegis.encrypt(), unmodified.".to_string()
            }
            CoreError::UnsupportedEnvelopeVersion { .. } => {
                "It was written by a newer pg_aegis; upgrade the extension to read it.".to_string()
            }
            CoreError::DecryptionFailed => {
                "Check that the aad is exactly the one used with aegis.encrypt().".to_string()
            }
            CoreError::WrappedKeyInvalid => {
                "The master key differs from the one the keyring was created with.".to_string()
            }
            CoreError::MasterKeyFormat { .. } => {
                "The master key must be 32 random bytes written as 64 hex digits.".to_string()
            }
            CoreError::MasterKeyNotConfigured => "Set aegis.master_key_file (a file with 64 hex digits, mode 600, \
                 owned by the server's user) or aegis.master_key_command in postgresql.conf, \
                 then reload; `make demo` shows an example."
                .to_string(),
            CoreError::MasterKeyFile { .. } => {
                "The file must hold 64 hex digits, be owned by the database server's user and have mode 600.".to_string()
            }
            CoreError::MasterKeyCommand { .. } => {
                "The command must print the key as 64 hex digits on standard output and exit with status 0.".to_string()
            }
            CoreError::UnknownPiiKind { .. } => format!(
                "Valid kinds are {}.",
                crate::pii::Kind::ALL.map(|k| k.name()).join(", ")
            ),
            CoreError::UnknownRedactionStyle { .. } => format!(
                "Valid styles are {}.",
                crate::pii::Style::NAMES.join(", ")
            ),
            CoreError::PlaintextTooLarge { .. }
            | CoreError::RandomUnavailable
            | CoreError::SanitizeLimit { .. }
            | CoreError::AuditValue { .. } => return None,
            CoreError::CronSchedule { .. } => "Five fields, minute hour day-of-month month day-of-week, \
                 e.g. '0 3 * * *' (daily at 03:00 UTC), or @hourly, @daily, @weekly, @monthly."
                .to_string(),
            CoreError::TriggerArgument { .. } => "Arguments are column names and the options redact, \
                 redact=KIND,..., style=tag|mask|hash|remove and max_bytes=N."
                .to_string(),
        })
    }
}
