//! The one error type of the pgrx crate, and its mapping to SQLSTATEs.
//!
//! Wrappers return `Result<T, ErrorReport>`; `?` on an [`AegisError`] turns it
//! into an `ErrorReport` with the right SQLSTATE and hint. A `CoreError` goes
//! through `.map_err(AegisError::from)?` (the orphan rule forbids a direct
//! `From<CoreError> for ErrorReport`). pgrx would report any other error type
//! as a generic 22000, which is why nothing else is ever returned to PostgreSQL.

use aegis_core::CoreError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AegisError {
    #[error(transparent)]
    Core(#[from] CoreError),

    #[error("encryption key \"{name}\" does not exist or has no active version")]
    UnknownKey { name: String },

    #[error("the ciphertext was made with a key that is not in this database's keyring")]
    UnknownKeyRef,

    #[error("permission denied to decrypt with key \"{name}\"")]
    DecryptDenied { name: String },

    #[error("key \"{name}\" is reserved for pg_aegis's own use ({purpose})")]
    ReservedKey { name: String, purpose: &'static str },

    #[error("encryption key \"{name}\" has been destroyed: this data can no longer be decrypted")]
    KeyDestroyed { name: String },

    #[error("version {version} of encryption key \"{name}\" is retired")]
    KeyRetired { name: String, version: u32 },

    #[error("the decrypted value is not valid text in the database encoding")]
    NotText,

    #[error("{what} must not be NULL")]
    NullArgument { what: &'static str },

    #[error("permission denied for the hash redaction style")]
    HashStyleDenied,

    #[error("aegis.seal() must run in a READ COMMITTED transaction")]
    SealIsolation,

    #[error("aegis.seal() must run in a transaction of its own, not inside a transaction block")]
    SealInTransactionBlock,

    #[error("the audit chain is locked by another session: {holders}")]
    SealerBlocked { holders: String },

    #[error("invalid trusted head: {reason}")]
    BadHead { reason: String },

    #[error("the audit chain is empty: nothing has been sealed yet")]
    EmptyChain,

    #[error("table {table} is not protected by pg_aegis")]
    NotProtected { table: String },

    #[error("MERGE into protected partitioned table {table} is not supported: rows it moves between partitions would not be audited")]
    PartitionedMerge { table: String },

    #[error("the transition tables of an UPDATE on {table} differ in size: its rows cannot be paired for the audit trail")]
    UnpairedUpdate { table: String },

    #[error("table {table} has no primary key: its rows cannot be matched to audit entries")]
    NoPrimaryKey { table: String },

    #[error("aegis.audit_log has an expression, partial or exclusion index: audit entries cannot be written")]
    LogIndex,

    #[error("the trusted head (position {head}) is older than the pruning checkpoint at position {checkpoint}")]
    HeadBeforeCheckpoint { head: u64, checkpoint: u64 },

    #[error("alerts table \"{name}\" named by the aegis_alerts trigger does not exist")]
    AlertsTable { name: String },

    #[error("aegis.metric_alerts() will not run with pg_aegis's rights over code a non-superuser controls: {what}")]
    AlertsUntrusted { what: String },

    #[error("aegis.masked_pseudonym() may only be used by a masking view")]
    MaskedPseudonym,

    #[error("aegis.metric_alerts() on {table}: {what}")]
    AlertsMapping { table: String, what: String },

    #[error("invalid row filter: {reason}")]
    InvalidFilter { reason: String },

    #[error("row filter not allowed: {reason}")]
    FilterNotAllowed { reason: String },

    /// Unexpected state (catalog missing, SPI failure): a bug or a damaged
    /// installation, never a user mistake.
    #[error("{0}")]
    Internal(String),
}

impl AegisError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            AegisError::Core(e) => match e {
                CoreError::UnknownHashAlgorithm { .. }
                | CoreError::LegacyHashAlgorithm { .. }
                | CoreError::UnknownPiiKind { .. }
                | CoreError::UnknownRedactionStyle { .. }
                | CoreError::SanitizeLimit { .. }
                | CoreError::TriggerArgument { .. }
                | CoreError::CronSchedule { .. }
                | CoreError::AuditValue { .. } => {
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
            AegisError::UnknownKey { .. } | AegisError::UnknownKeyRef => ERRCODE_UNDEFINED_OBJECT, // 42704
            AegisError::DecryptDenied { .. }
            | AegisError::HashStyleDenied
            | AegisError::ReservedKey { .. } => {
                ERRCODE_INSUFFICIENT_PRIVILEGE // 42501
            }
            AegisError::KeyDestroyed { .. } | AegisError::KeyRetired { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE // 55000
            }
            AegisError::NotText => ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, // 22021
            AegisError::NullArgument { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED, // 22004
            AegisError::SealIsolation | AegisError::SealInTransactionBlock => {
                ERRCODE_ACTIVE_SQL_TRANSACTION // 25001
            }
            AegisError::SealerBlocked { .. } => ERRCODE_LOCK_NOT_AVAILABLE, // 55P03
            AegisError::BadHead { .. } => ERRCODE_INVALID_PARAMETER_VALUE,  // 22023
            AegisError::EmptyChain => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, // 55000
            AegisError::NotProtected { .. }
            | AegisError::NoPrimaryKey { .. }
            | AegisError::LogIndex => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE // 55000
            }
            AegisError::HeadBeforeCheckpoint { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, // 55000
            AegisError::PartitionedMerge { .. } => ERRCODE_FEATURE_NOT_SUPPORTED, // 0A000
            AegisError::UnpairedUpdate { .. } => ERRCODE_TRIGGERED_ACTION_EXCEPTION, // 09000
            AegisError::AlertsTable { .. } => ERRCODE_UNDEFINED_TABLE,            // 42P01
            AegisError::AlertsUntrusted { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE, // 42501
            AegisError::AlertsMapping { .. } => ERRCODE_INVALID_PARAMETER_VALUE,  // 22023
            AegisError::MaskedPseudonym => ERRCODE_INSUFFICIENT_PRIVILEGE,        // 42501
            AegisError::InvalidFilter { .. } => ERRCODE_INVALID_PARAMETER_VALUE,  // 22023
            AegisError::FilterNotAllowed { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE, // 42501
            AegisError::Internal(_) => ERRCODE_INTERNAL_ERROR,                    // XX000
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AegisError::Core(e) => e.hint(),
            AegisError::UnknownKey { name } => Some(format!(
                "An administrator creates it with SELECT aegis.create_key('{}');",
                name.replace('\'', "''")
            )),
            AegisError::UnknownKeyRef => Some(
                "It may come from another database or cluster, or its key was deleted from aegis.keys.".into(),
            ),
            AegisError::DecryptDenied { .. } => Some(
                "Decryption is allowed to members of the key's decrypt_role and of aegis_admin.".into(),
            ),
            AegisError::KeyRetired { .. } => Some(
                "Re-encrypt data with aegis.reencrypt() before retiring a version; an administrator can reactivate it.".into(),
            ),
            AegisError::NotText => Some("Use aegis.decrypt_bytea() for binary data.".into()),
            AegisError::ReservedKey { .. } => Some(
                "One key, one purpose: create a key of your own with aegis.create_key(name).".into(),
            ),
            AegisError::HashStyleDenied => Some(
                "It needs EXECUTE on aegis.pseudonymize(text, text); use the tag or mask style.".into(),
            ),
            AegisError::SealIsolation => Some(
                "Sealing takes a fresh snapshot after locking the chain; run it in its own READ COMMITTED transaction.".into(),
            ),
            AegisError::SealerBlocked { .. } => Some(
                "The background sealer tries again next round; pg_terminate_backend(pid) ends a session that keeps the lock.".into(),
            ),
            AegisError::SealInTransactionBlock => Some(
                "It locks the chain until the transaction ends, which would stop the background sealer meanwhile: call it outside BEGIN ... COMMIT.".into(),
            ),
            AegisError::BadHead { .. } => Some(
                "Pass the jsonb aegis.chain_head() returned, unchanged: position, hash, time_us and signature.".into(),
            ),
            AegisError::EmptyChain => {
                Some("Run SELECT aegis.seal(); after the first audited change.".into())
            }
            AegisError::NotProtected { .. } => Some("Protect it first: SELECT aegis.protect('<table>');".into()),
            AegisError::NoPrimaryKey { .. } => None,
            AegisError::PartitionedMerge { .. } => Some(
                "Use INSERT ... ON CONFLICT, UPDATE and DELETE, or MERGE into the partitions themselves.".into(),
            ),
            AegisError::UnpairedUpdate { .. } => Some(
                "A BEFORE INSERT trigger on a partition dropped a row the UPDATE moved there; such a row move cannot be recorded.".into(),
            ),
            AegisError::LogIndex => Some(
                "Only plain indexes may exist on aegis.audit_log; drop the extra index.".into(),
            ),
            AegisError::HeadBeforeCheckpoint { .. } => Some(
                "The entries up to the checkpoint were pruned; verify without a head (from the signed checkpoint) or with a head saved after the pruning.".into(),
            ),
            AegisError::InvalidFilter { .. } => Some(
                "A row filter is one boolean expression over the table's columns, e.g. contains_user_data AND severity <> 'low'.".into(),
            ),
            AegisError::FilterNotAllowed { .. } => Some(
                "A filter may use only columns its author can read, constants, and built-in operators and functions over built-in types (immutable, or stable for dates and times).".into(),
            ),
            AegisError::AlertsTable { .. } => Some(
                "The trigger's argument names the table alerts are written to (server_id, ts, rule, severity, metric, value, message).".into(),
            ),
            AegisError::AlertsUntrusted { .. } => Some(
                "The trigger reads server_id and ts with pg_aegis's rights (built-in types only) and writes the alerts table with them (a table a superuser owns).".into(),
            ),
            AegisError::MaskedPseudonym => Some(
                "It answers only in a view owned by aegis_masking_owner (aegis.create_masking_view()), for a column of the table the view reads that the reader may not write, with pg_aegis in shared_preload_libraries; a pseudonym of a value you choose takes aegis.pseudonymize(), granted to admins and collectors.".into(),
            ),
            AegisError::AlertsMapping { .. } => Some(
                "Attach metric alerts with aegis.attach_metric_alerts(table, entity_column, time_column, ...), which checks the mapping first.".into(),
            ),
            AegisError::KeyDestroyed { .. }
            | AegisError::Internal(_)
            | AegisError::NullArgument { .. } => None,
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

/// Raise `e` as an ERROR right here. For triggers and V1 functions, where
/// pgrx would turn a returned error into a generic internal error.
pub fn raise(e: impl Into<ErrorReport>) -> ! {
    e.into().report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A trigger function attached the wrong way (39P01).
pub fn protocol_error(msg: &str) -> ! {
    raise(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        msg.to_string(),
        "pg_aegis",
    ))
}
