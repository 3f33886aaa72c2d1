//! PII detection, redaction and log sanitizing: thin wrappers over
//! `aegis_core::pii`. SQL declarations are in sql/60_pii.sql.
//!
//! Text arguments arrive as raw datums and are read as bytes in the database
//! encoding (the scanner only matches ASCII, which every server encoding
//! keeps intact), and a text that needs no change is returned as the very
//! datum that came in: no copy, no allocation.

use crate::error::{protocol_error, raise, AegisError, AegisResult};
use crate::keyring;
use aegis_core::pii::trigger_args::{check_max_bytes, SanitizeTriggerArgs};
use aegis_core::pii::{self, Charset, Kind, KindSet, Style};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::borrow::Cow;

/// The keyring key whose pseudonyms make `hash`-style tokens, the same
/// default as `aegis.pseudonymize()`.
const HASH_KEY: &str = crate::audit::PSEUDONYM_KEY;

/// The bytes of a text datum (detoasted if needed).
///
/// # Safety
/// `d` must be a non-null text (or other varlena) datum.
pub(crate) unsafe fn text_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: the caller guarantees a varlena datum; detoasting returns a
    // palloc'd or in-place varlena valid for the rest of the call.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        pgrx::varlena::varlena_to_byte_slice(v)
    }
}

/// The input datum when `out` borrows it, else a new text.
fn text_result(input: pg_sys::Datum, out: Cow<'_, [u8]>) -> pg_sys::Datum {
    match out {
        Cow::Borrowed(_) => input,
        Cow::Owned(v) => pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(&v).into_pg()),
    }
}

/// Argument `n`, or None when it is SQL NULL.
///
/// # Safety
/// `fcinfo` must be the current call's; `n` less than its argument count.
unsafe fn arg_datum(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<pg_sys::Datum> {
    // SAFETY: per the function's contract.
    unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, n) }
}

// The text-returning functions are plain V1 C functions rather than
// #[pg_extern]s: they return their argument datum itself when nothing
// changes, which pgrx's return conventions cannot express.
macro_rules! v1_info {
    ($finfo:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

v1_info!(pg_finfo_aegis_redact_pii);
/// `aegis.redact_pii(msg text) → text`: every kind, tag style.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_redact_pii(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: declared STRICT with one text argument: a non-null text datum.
    let msg = unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0) };
    let bytes = unsafe { text_bytes(msg) };
    text_result(msg, redact_tags(bytes))
}

/// Every kind replaced by its tag: `aegis.redact_pii(msg)`, and the audit
/// trail's free_text columns.
pub(crate) fn redact_tags(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Ok(out) = pii::redact_in(bytes, KindSet::ALL, Style::Tag, utf8_database(), |_, _| {
        Ok::<String, std::convert::Infallible>(String::new())
    });
    out
}

v1_info!(pg_finfo_aegis_redact_pii_kinds);
/// `aegis.redact_pii(msg text, kinds text[], style text DEFAULT 'tag') →
/// text`. Not STRICT: NULL kinds means every kind.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_redact_pii_kinds(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the SQL declaration is (text, text[], text).
    let (msg, kinds, style) = unsafe {
        (
            arg_datum(fcinfo, 0),
            pgrx::fcinfo::pg_getarg::<Array<'_, &[u8]>>(fcinfo, 1),
            pgrx::fcinfo::pg_getarg::<&[u8]>(fcinfo, 2),
        )
    };
    match redact_kinds(msg, kinds, style) {
        Ok(Some(d)) => d,
        // SAFETY: marks this call's result NULL.
        Ok(None) => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
        Err(e) => raise(e),
    }
}

fn redact_kinds(
    msg: Option<pg_sys::Datum>,
    kinds: Option<Array<'_, &[u8]>>,
    style: Option<&[u8]>,
) -> AegisResult<Option<pg_sys::Datum>> {
    let style = Style::parse(style.ok_or(AegisError::NullArgument { what: "style" })?)
        .map_err(AegisError::from)?;
    let kinds = match kinds {
        None => KindSet::ALL,
        Some(a) => {
            let mut names = Vec::with_capacity(a.len());
            for k in a.iter() {
                names.push(k.ok_or(AegisError::NullArgument { what: "a kind" })?);
            }
            KindSet::parse(names).map_err(AegisError::from)?
        }
    };
    if style == Style::Hash {
        ensure_may_pseudonymize()?;
    }
    let Some(msg) = msg else { return Ok(None) };
    // SAFETY: a non-null text datum.
    let bytes = unsafe { text_bytes(msg) };
    Ok(Some(text_result(msg, redact(bytes, kinds, style)?)))
}

v1_info!(pg_finfo_aegis_sanitize_log);
/// `aegis.sanitize_log(msg text, max_bytes int DEFAULT 8192) → text`
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn aegis_sanitize_log(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: declared STRICT with (text, integer): both non-null.
    let (msg, max_bytes) = unsafe {
        (
            pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0),
            pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1).value() as i32,
        )
    };
    let max = check_max_bytes(i64::from(max_bytes)).unwrap_or_else(|e| raise(AegisError::from(e)));
    // SAFETY: a non-null text datum.
    let bytes = unsafe { text_bytes(msg) };
    text_result(msg, sanitize(bytes, max))
}

fn utf8_database() -> bool {
    // SAFETY: reads the backend's database encoding, set at connection start.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// Length of the character starting `s`, in the database encoding.
fn mblen(s: &[u8]) -> usize {
    // SAFETY: `s` is non-empty text in the database encoding (validated on
    // input by PostgreSQL); pg_mblen reads at most one character from it.
    unsafe { pg_sys::pg_mblen(s.as_ptr().cast()) as usize }
}

/// Characters in `s` (database encoding).
fn char_count(s: &[u8]) -> usize {
    if utf8_database() {
        pii::utf8_char_count(s)
    } else {
        // SAFETY: as for mblen; the length bounds the read.
        unsafe { pg_sys::pg_mbstrlen_with_len(s.as_ptr().cast(), s.len() as i32) as usize }
    }
}

fn redact(text: &[u8], kinds: KindSet, style: Style) -> AegisResult<Cow<'_, [u8]>> {
    pii::redact_in(
        text,
        kinds,
        style,
        utf8_database(),
        |kind: Kind, v: &[u8]| {
            // The kind is part of the hashed value: an IBAN and a card number
            // with the same digits get different tokens.
            let mut keyed = Vec::with_capacity(kind.name().len() + 1 + v.len());
            keyed.extend_from_slice(kind.name().as_bytes());
            keyed.push(b':');
            keyed.extend_from_slice(v);
            keyring::pseudonym(&keyed, HASH_KEY)
        },
    )
}

/// `hash` tokens are pseudonyms, and pseudonyms are an oracle for guessing
/// low-entropy values; the style is for those who may call
/// `aegis.pseudonymize()` (see sql/99_finalize.sql). Checked on every call
/// (a row of a hash-style trigger included), so it is a syscache ACL check
/// on a cached function OID, not a query.
fn ensure_may_pseudonymize() -> Result<(), AegisError> {
    let oid = pseudonymize_oid()?;
    // SAFETY: an ACL check for the current user on a function that exists
    // (pseudonymize_oid checked it); both run on the backend's main thread.
    let ok = unsafe { crate::compat::may_execute(oid, pg_sys::GetUserId()) };
    if ok {
        Ok(())
    } else {
        Err(AegisError::HashStyleDenied)
    }
}

thread_local! {
    static PSEUDONYMIZE_OID: std::cell::Cell<pg_sys::Oid> =
        const { std::cell::Cell::new(pg_sys::InvalidOid) };
}

/// OID of `aegis.pseudonymize(text, text)`, looked up once per backend and
/// again if the function is gone (the extension was dropped and recreated).
fn pseudonymize_oid() -> Result<pg_sys::Oid, AegisError> {
    let cached = PSEUDONYMIZE_OID.with(|c| c.get());
    // SAFETY: a syscache existence probe by OID.
    let exists = cached != pg_sys::InvalidOid
        && unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                pg_sys::Datum::from(cached.to_u32()),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
            )
        };
    if exists {
        return Ok(cached);
    }
    let oid = crate::spi::get_one::<pg_sys::Oid>(
        "SELECT 'aegis.pseudonymize(pg_catalog.text, pg_catalog.text)'::pg_catalog.regprocedure::pg_catalog.oid",
        &[],
    )
    .map_err(|e| AegisError::Internal(e.to_string()))?
    .ok_or_else(|| AegisError::Internal("aegis.pseudonymize(text, text) is missing".into()))?;
    PSEUDONYMIZE_OID.with(|c| c.set(oid));
    Ok(oid)
}

/// `aegis.has_pii(msg text) → boolean`: stops at the first finding.
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn has_pii(msg: &[u8]) -> bool {
    pii::has_pii_in(msg, utf8_database())
}

/// `aegis.detect_pii(msg text) → TABLE(kind, start_pos, end_pos, value)`:
/// 1-based character positions, end inclusive, so
/// `substr(msg, start_pos, end_pos - start_pos + 1) = value`.
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn detect_pii(
    msg: &[u8],
) -> TableIterator<
    'static,
    (
        name!(kind, &'static str),
        name!(start_pos, i32),
        name!(end_pos, i32),
        name!(value, Vec<u8>),
    ),
> {
    let mut rows = Vec::new();
    let mut byte_pos = 0;
    let mut char_pos = 0;
    for m in pii::find_iter_in(msg, utf8_database()) {
        char_pos += char_count(&msg[byte_pos..m.start]);
        let len = char_count(&msg[m.start..m.end]);
        rows.push((
            m.kind.name(),
            (char_pos + 1) as i32,
            (char_pos + len) as i32,
            msg[m.start..m.end].to_vec(),
        ));
        char_pos += len;
        byte_pos = m.end;
    }
    TableIterator::new(rows)
}

/// `aegis.pii_kinds() → SETOF text`
#[pg_extern(immutable, parallel_safe, sql = false)]
fn pii_kinds() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(Kind::ALL.into_iter().map(Kind::name))
}

fn sanitize(bytes: &[u8], max_bytes: usize) -> Cow<'_, [u8]> {
    if utf8_database() {
        pii::sanitize_log(bytes, max_bytes, Charset::Utf8)
    } else {
        pii::sanitize_log(bytes, max_bytes, Charset::Other(&mblen))
    }
}

// ---------------------------------------------------------------------------
// The sanitize_columns() trigger
// ---------------------------------------------------------------------------

/// `aegis.sanitize_columns()`: BEFORE INSERT OR UPDATE ... FOR EACH ROW.
/// Sanitizes (and optionally redacts) the named text columns of the new row.
/// Errors are raised directly: pgrx would turn a returned error into a
/// generic internal error, losing its SQLSTATE.
#[pg_trigger(sql = false)]
fn sanitize_columns<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, std::convert::Infallible> {
    use pgrx::trigger_support::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    if !matches!(trigger.when(), Ok(PgTriggerWhen::Before))
        || !matches!(trigger.level(), PgTriggerLevel::Row)
    {
        protocol_error("aegis.sanitize_columns() must be a BEFORE ... FOR EACH ROW trigger");
    }
    if !matches!(
        trigger.op(),
        Ok(PgTriggerOperation::Insert | PgTriggerOperation::Update)
    ) {
        protocol_error("aegis.sanitize_columns() must fire on INSERT or UPDATE");
    }
    let args = trigger
        .extra_args()
        .unwrap_or_else(|e| raise(AegisError::Internal(e.to_string())));
    let args = SanitizeTriggerArgs::parse(&args).unwrap_or_else(|e| raise(AegisError::from(e)));
    // The same gate as redact_pii(): a trigger on one's own table must not
    // become a pseudonym oracle.
    if matches!(args.redact, Some((_, Style::Hash))) {
        ensure_may_pseudonymize().unwrap_or_else(|e| raise(e));
    }
    let td = trigger.trigger_data();
    let Some(new) = trigger.new() else {
        protocol_error("aegis.sanitize_columns() found no new row");
    };
    // SAFETY: a row trigger on INSERT/UPDATE: the relation and the new tuple
    // are valid for the duration of the call.
    unsafe {
        let rel = td.tg_relation;
        let tupdesc = (*rel).rd_att;
        let tuple = if matches!(trigger.op(), Ok(PgTriggerOperation::Insert)) {
            td.tg_trigtuple
        } else {
            td.tg_newtuple
        };
        let mut cols = Vec::new();
        let mut values = Vec::new();
        for name in &args.columns {
            let cname = std::ffi::CString::new(name.as_str())
                .unwrap_or_else(|_| raise(AegisError::Internal("column name contains NUL".into())));
            let attnum = pg_sys::SPI_fnumber(tupdesc, cname.as_ptr());
            if attnum <= 0 {
                raise(ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "column \"{}\" of relation \"{}\" does not exist",
                        name,
                        trigger.table_name().unwrap_or_default()
                    ),
                    "pg_aegis",
                ));
            }
            let att = crate::compat::tupdesc_attrs(tupdesc)[(attnum - 1) as usize];
            let base = pg_sys::getBaseType(att.atttypid);
            if base != pg_sys::TEXTOID && base != pg_sys::VARCHAROID {
                raise(ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!("column \"{name}\" is not of type text or varchar"),
                    "pg_aegis",
                ));
            }
            let mut isnull = false;
            let d = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
            if isnull {
                continue;
            }
            let bytes = text_bytes(d);
            let mut out = if args.sanitize {
                sanitize(bytes, args.max_bytes)
            } else {
                Cow::Borrowed(bytes)
            };
            if let Some((kinds, style)) = args.redact {
                if let Cow::Owned(r) = redact(&out, kinds, style).unwrap_or_else(|e| raise(e)) {
                    out = Cow::Owned(r);
                }
            }
            if let Cow::Owned(v) = out {
                // A varchar(n) keeps its limit: redaction tags can be longer
                // than what they replace.
                if base == pg_sys::VARCHAROID && att.atttypmod > pg_sys::VARHDRSZ as i32 {
                    let limit = (att.atttypmod - pg_sys::VARHDRSZ as i32) as usize;
                    if char_count(&v) > limit {
                        raise(ErrorReport::new(
                            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
                            format!(
                                "sanitized value too long for column \"{name}\" (varchar({limit}))"
                            ),
                            "pg_aegis",
                        ));
                    }
                }
                cols.push(attnum);
                values.push(text_result(d, Cow::Owned(v)));
            }
        }
        if cols.is_empty() {
            return Ok(Some(new));
        }
        let mut nulls = vec![false; cols.len()];
        let modified = pg_sys::heap_modify_tuple_by_cols(
            tuple,
            tupdesc,
            cols.len() as i32,
            cols.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        Ok(Some(PgHeapTuple::from_heap_tuple(
            pgrx::PgTupleDesc::from_pg_unchecked(tupdesc),
            modified,
        )))
    }
}

#[cfg(any(test, feature = "pg_test"))]
// In-backend tests may assign xids freely.
#[allow(clippy::disallowed_methods)]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn redact_and_detect_agree() {
        let r = Spi::get_one::<String>(
            "SELECT aegis.redact_pii('mail jane@example.com from 10.1.2.3')",
        )
        .unwrap();
        assert_eq!(r.as_deref(), Some("mail [EMAIL] from [IPV4]"));
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM aegis.detect_pii('mail jane@example.com from 10.1.2.3') d \
             WHERE substr('mail jane@example.com from 10.1.2.3', d.start_pos, d.end_pos - d.start_pos + 1) = d.value",
        )
        .unwrap();
        assert_eq!(n, Some(2));
    }

    #[pg_test]
    fn unchanged_text_is_the_same_datum() {
        // A toasted (compressed) value that needs no change comes back
        // as-is: still compressed, byte for byte.
        Spi::run("CREATE TEMP TABLE t (m text); ALTER TABLE t ALTER m SET STORAGE MAIN; INSERT INTO t SELECT repeat('no pii here ', 10000)").unwrap();
        let same = Spi::get_one::<bool>(
            "SELECT pg_column_size(aegis.redact_pii(m)) = pg_column_size(m) AND pg_column_size(m) < 10000 FROM t",
        )
        .unwrap();
        assert_eq!(same, Some(true));
    }
}
