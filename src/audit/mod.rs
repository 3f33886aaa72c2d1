//! The audit trail in the backend, one file per stage:
//!   - `plan`: per-backend caches (our tables' OIDs, one plan per audited
//!     relation: how each column enters the image), the read-audit targets;
//!   - `encoding`: text in the server encoding <-> UTF-8;
//!   - `images`: row images (jsonb and canonical encoding, built together);
//!   - `write`: the statement's context and the direct insert of entries;
//!   - `capture`: the capture triggers and the append-only guard;
//!   - `chunk`: a multi-row statement's row images as few entries;
//!   - `seal`: linking committed entries into the chain;
//!   - `verify`: chain verification and the signed head;
//!   - `table`: entries pg_aegis writes itself (DDL records, baselines) and
//!     `verify_table()`.
//!
//! The entry layout, canonical encoding, row images and chain math are in
//! `aegis_core::audit`; SQL declarations in sql/70_audit.sql.
//!
//! Writers never wait for each other: each entry is hashed by the backend
//! that writes it and inserted straight into `aegis.audit_log` (heap and its
//! one index, no SQL, no permission check: no role holds INSERT on it).
//! `aegis.seal()` later links committed entries into `aegis.audit_chain`.

use crate::error::{protocol_error, raise, AegisError, AegisResult};
use crate::keyring::{self, as_extension_owner, spi_error, with_safe_search_path};
use crate::pii::{redact_tags, text_bytes};
use aegis_core::audit::{
    self as core_audit, Cell, Entry, ImageBuilder, Scalar, Stored, TrustedHead, Value,
};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

/// The keyring key whose pseudonyms replace pii and subject_id values (the
/// default of `aegis.pseudonymize()`, so they join with it).
pub(crate) const PSEUDONYM_KEY: &str = "pseudonym";
/// The keyring key that signs chain heads, used for nothing else.
pub(crate) const HEAD_KEY: &str = "audit_head";
/// Columns of aegis.audit_log, in order.
const AUDIT_LOG_NATTS: usize = 18;

fn internal(msg: impl Into<String>) -> AegisError {
    AegisError::Internal(msg.into())
}

pub(crate) mod capture;
pub(crate) mod chunk;
pub(crate) mod digest;
pub(crate) mod encoding;
pub(crate) mod images;
pub(crate) mod plan;
pub(crate) mod seal;
pub(crate) mod table;
pub(crate) mod verify;
pub(crate) mod write;

pub(crate) use capture::*;
pub(crate) use digest::{as_lifecycle_statement, install_depth_hooks};
use encoding::*;
pub(crate) use images::*;
pub(crate) use plan::*;
pub(crate) use seal::*;
pub(crate) use table::*;
pub(crate) use verify::*;
pub(crate) use write::*;
