//! aegis-core: the parts of pg_aegis that need no PostgreSQL backend.
//!
//! Everything here is plain Rust so it can be unit-tested, property-tested,
//! fuzzed and benchmarked without a server. The pgrx crate (`pg_aegis`) wraps
//! these functions in thin `#[pg_extern]`s and maps [`CoreError`] to SQLSTATEs.

pub mod audit;
pub mod cron;
pub mod envelope;
pub mod erasure;
pub mod error;
pub mod hash;
pub mod masterkey;
pub mod pii;

pub use error::CoreError;

/// The extension version, shared by `aegis.version()` and the control file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
