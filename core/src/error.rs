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
}

impl CoreError {
    /// A hint for the user: what to do instead.
    pub fn hint(&self) -> String {
        match self {
            CoreError::UnknownHashAlgorithm { .. } => format!(
                "Supported types are {}.",
                crate::hash::HashAlgorithm::supported_names(false).join(", ")
            ),
            CoreError::LegacyHashAlgorithm { .. } => format!(
                "Use one of {}; for pgcrypto compatibility a superuser can SET aegis.allow_legacy_hashes = on.",
                crate::hash::HashAlgorithm::supported_names(false).join(", ")
            ),
        }
    }
}
