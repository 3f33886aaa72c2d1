//! PII detection (groundwork for the PII issue). `validate` holds the
//! checksum and structure rules that separate real identifiers from
//! look-alikes in operational logs; the single-pass scanner builds on them.

pub mod validate;
