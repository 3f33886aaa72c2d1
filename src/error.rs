//! The one error type of the pgrx crate, and its mapping to SQLSTATEs.
//!
//! Wrappers return `Result<T, ErrorReport>`; `?` on an [`AegisError`] (or a
//! `CoreError`, through `From`) turns it into an `ErrorReport` with the right
//! SQLSTATE and hint. pgrx would report any other error type as a generic
//! 22000, which is why nothing else is ever returned to PostgreSQL.

use aegis_core::CoreError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum AegisError {
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl AegisError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            AegisError::Core(e) => match e {
                CoreError::UnknownHashAlgorithm { .. } | CoreError::LegacyHashAlgorithm { .. } => {
                    ERRCODE_INVALID_PARAMETER_VALUE // 22023
                }
                CoreError::NotAnEnvelope
                | CoreError::UnsupportedEnvelopeVersion { .. }
                | CoreError::EnvelopeTruncated { .. } => {
                    ERRCODE_INVALID_BINARY_REPRESENTATION // 22P03
                }
                // Tampering is corruption from the database's point of view;
                // XX001 is what monitoring already alerts on.
                CoreError::DecryptionFailed => ERRCODE_DATA_CORRUPTED, // XX001
                CoreError::PlaintextTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED, // 54000
                CoreError::WrappedKeyInvalid
                | CoreError::MasterKeyFormat { .. }
                | CoreError::MasterKeyNotConfigured
                | CoreError::MasterKeyFile { .. }
                | CoreError::MasterKeyCommand { .. } => {
                    ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE // 55000
                }
                CoreError::RandomUnavailable => ERRCODE_SYSTEM_ERROR, // 58000
            },
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AegisError::Core(e) => e.hint(),
        }
    }
}

impl From<AegisError> for ErrorReport {
    #[track_caller]
    fn from(e: AegisError) -> Self {
        let report = ErrorReport::new(e.sqlstate(), e.to_string(), "pg_aegis");
        match e.hint() {
            Some(h) => report.set_hint(h),
            None => report,
        }
    }
}

/// Shorthand for wrapper return types.
pub type AegisResult<T> = Result<T, ErrorReport>;

/// Lets `?` go straight from a `CoreError` to an `ErrorReport`.
pub trait OrReport<T> {
    fn or_report(self) -> AegisResult<T>;
}

impl<T, E: Into<AegisError>> OrReport<T> for Result<T, E> {
    #[track_caller]
    fn or_report(self) -> AegisResult<T> {
        self.map_err(|e| ErrorReport::from(e.into()))
    }
}
