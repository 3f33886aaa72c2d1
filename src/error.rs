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
        match self {
            AegisError::Core(CoreError::UnknownHashAlgorithm { .. })
            | AegisError::Core(CoreError::LegacyHashAlgorithm { .. }) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE // 22023
            }
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AegisError::Core(e) => Some(e.hint()),
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
