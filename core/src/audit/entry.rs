//! The fields of one audit entry, in the one order both the writer and the
//! verifier hash them. Personal data (row images, key, detail) goes into the
//! data digest, so erasure can replace it with a tombstone; everything else
//! (what happened, where, by whom, when) goes into the entry hash directly.

use super::canonical::Value;
use super::chain::{data_digest, entry_hash};
use crate::CoreError;

/// What an entry says happened. The personal fields (pk, old_row, new_row,
/// detail) are JSON values: `Value::Json` text when read back for
/// verification, `Value::Encoded` when the writer built them directly;
/// `Value::Null` when absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    /// INSERT, UPDATE, DELETE, TRUNCATE, SELECT, COPY, DDL, ...
    pub operation: &'a str,
    /// Schema-qualified table name, quoted as needed (NULL for entries about
    /// no single table).
    pub table_name: Option<&'a str>,
    pub db_user: &'a str,
    pub session_user: &'a str,
    pub application_name: Option<&'a str>,
    /// Client address in inet's text form; NULL for Unix-socket clients.
    pub client_addr: Option<&'a str>,
    pub backend_pid: i32,
    /// The top-level transaction id (64-bit, with epoch).
    pub xid: i64,
    /// Statement start, microseconds since 2000-01-01 UTC.
    pub statement_time: i64,
    pub pk: Value<'a>,
    pub old_row: Value<'a>,
    pub new_row: Value<'a>,
    pub detail: Value<'a>,
    /// What a statement of a digest-mode table did to its content (the
    /// stored form of [`super::digest::Changes`]); None for every other
    /// entry, whose hash is then what it was before this field existed.
    pub content_change: Option<&'a [u8]>,
}

fn opt_text(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Null, Value::Text)
}

/// JSON text or NULL, as the verifier reads a stored field.
pub fn opt_json(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Null, Value::Json)
}

impl Entry<'_> {
    /// Digest of the personal data: key, old and new row, detail.
    pub fn data_digest(&self) -> Result<[u8; 32], CoreError> {
        data_digest(&[
            ("pk", self.pk),
            ("old_row", self.old_row),
            ("new_row", self.new_row),
            ("detail", self.detail),
        ])
    }

    /// The entry hash, given the data digest (recomputed, or the stored one
    /// for an entry whose data was erased).
    pub fn entry_hash(&self, data_digest: &[u8; 32]) -> Result<[u8; 32], CoreError> {
        let mut fields = vec![
            ("operation", Value::Text(self.operation)),
            ("table_name", opt_text(self.table_name)),
            ("db_user", Value::Text(self.db_user)),
            ("session_user", Value::Text(self.session_user)),
            ("application_name", opt_text(self.application_name)),
            ("client_addr", opt_text(self.client_addr)),
            ("backend_pid", Value::Int(i64::from(self.backend_pid))),
            ("xid", Value::Int(self.xid)),
            ("statement_time", Value::Timestamp(self.statement_time)),
        ];
        if let Some(c) = self.content_change {
            fields.push(("content_change", Value::Bytes(c)));
        }
        entry_hash(&fields, data_digest)
    }

    /// Both hashes: (data digest, entry hash).
    pub fn hashes(&self) -> Result<([u8; 32], [u8; 32]), CoreError> {
        let d = self.data_digest()?;
        Ok((d, self.entry_hash(&d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry<'static> {
        Entry {
            operation: "UPDATE",
            table_name: Some("monitoring.error_logs"),
            db_user: "alice",
            session_user: "alice",
            application_name: Some("psql"),
            client_addr: Some("10.0.0.1"),
            backend_pid: 4242,
            xid: 900,
            statement_time: 1_000_000,
            pk: Value::Json(r#"{"id": 1}"#),
            old_row: Value::Json(r#"{"id": 1, "msg": "a"}"#),
            new_row: Value::Json(r#"{"msg": "b", "id": 1}"#),
            detail: Value::Null,
            content_change: None,
        }
    }

    #[test]
    fn every_field_counts_and_json_spelling_does_not() {
        let (d, h) = sample().hashes().unwrap();
        let same = Entry {
            new_row: Value::Json(r#"{ "id": 1.0, "msg": "b" }"#),
            ..sample()
        };
        assert_eq!(same.hashes().unwrap(), (d, h));
        let variants = [
            Entry {
                operation: "DELETE",
                ..sample()
            },
            Entry {
                table_name: None,
                ..sample()
            },
            Entry {
                db_user: "bob",
                ..sample()
            },
            Entry {
                session_user: "bob",
                ..sample()
            },
            Entry {
                application_name: None,
                ..sample()
            },
            Entry {
                client_addr: Some("10.0.0.2"),
                ..sample()
            },
            Entry {
                backend_pid: 1,
                ..sample()
            },
            Entry {
                xid: 901,
                ..sample()
            },
            Entry {
                statement_time: 1,
                ..sample()
            },
            Entry {
                pk: Value::Json(r#"{"id": 2}"#),
                ..sample()
            },
            Entry {
                old_row: Value::Null,
                ..sample()
            },
            Entry {
                new_row: Value::Json(r#"{"id": 1, "msg": "c"}"#),
                ..sample()
            },
            Entry {
                detail: Value::Json("{}"),
                ..sample()
            },
            Entry {
                content_change: Some(&[1]),
                ..sample()
            },
        ];
        for v in variants {
            assert_ne!(v.hashes().unwrap().1, h, "{v:?}");
        }
        // Erasure: new data, same stored digest, same entry hash.
        let erased = Entry {
            old_row: Value::Json(r#"{"erased": true}"#),
            ..sample()
        };
        assert_eq!(erased.entry_hash(&d).unwrap(), h);
        assert_ne!(erased.data_digest().unwrap(), d);
    }
}
