//! The tamper-evident audit trail's pure logic (groundwork for the audit
//! issue): the canonical encoding entries are hashed over, the chain links,
//! the signed head, and verification that names the first problem.
//!
//! Design (see the README when the trail lands): writers hash their own
//! entries in parallel (`entry_hash`); a sealing step later gives committed
//! entries consecutive positions and links them (`chain_link`), so no writer
//! waits on a global lock. An entry's personal data is hashed separately
//! (`data_digest`) and only that digest enters the entry hash, so erasure
//! can replace the data with a tombstone and the chain still verifies.

pub mod canonical;
pub mod chain;
pub mod digest;
pub mod entry;
pub mod image;

pub use canonical::{encode_scalar, encode_value, ArrayEncoder, ObjectEncoder, Value};
pub use chain::{
    chain_link, data_digest, entry_hash, head_message, verify, Problem, Report, Stored,
    TrustedHead, GENESIS, HEAD_KEY_LABEL,
};
pub use entry::{opt_json, Entry};
pub use image::{scalar, Cell, ImageBuilder, Scalar};
