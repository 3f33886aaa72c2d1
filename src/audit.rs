//! The audit trail in the backend: the capture triggers, writing entries,
//! sealing, verification, the signed head and the DDL guard. The entry
//! layout, canonical encoding, row images and chain math are in
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
const AUDIT_LOG_NATTS: usize = 17;

fn internal(msg: impl Into<String>) -> AegisError {
    AegisError::Internal(msg.into())
}

// ---------------------------------------------------------------------------
// Per-backend caches: OIDs of our tables, and one plan per audited relation
// ---------------------------------------------------------------------------

/// How a column's value enters the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    /// Only a hash of the value.
    Secret,
    /// A keyed pseudonym (pii and subject_id).
    Pseudonym,
    /// Through redact_pii().
    FreeText,
}

/// How a column's binary value is rendered.
#[derive(Debug, Clone, Copy)]
enum Render {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Name,
    TimestampTz,
    Timestamp,
    Date,
    Bytea,
    Json,
    Jsonb,
    /// An output function whose result does not depend on settings.
    Plain(pg_sys::Oid),
    /// Any other output function: called under fixed settings.
    Guarded(pg_sys::Oid),
}

#[derive(Debug)]
struct Column {
    /// Index into the tuple descriptor.
    index: usize,
    name: String,
    render: Render,
    class: Class,
    in_pk: bool,
}

#[derive(Debug)]
struct RelPlan {
    /// The protected (root) table's name, schema-qualified and quoted.
    table_name: String,
    columns: Vec<Column>,
    has_pk: bool,
    guarded: bool,
    /// May the capture trigger write entries for this relation: a table
    /// pg_aegis protects (or a partition of one), or one of its own
    /// catalogs. EXECUTE on the trigger functions is PUBLIC (an owner's new
    /// partition clones them), so attaching them elsewhere must do nothing
    /// but fail.
    capturable: bool,
}

#[derive(Default)]
struct Cache {
    callback_registered: bool,
    audit_log: Option<pg_sys::Oid>,
    sequence: pg_sys::Oid,
    catalog_relids: Vec<pg_sys::Oid>,
    plans: HashMap<pg_sys::Oid, Rc<RelPlan>>,
    /// Whether the pseudonym key can be used (None: not checked yet).
    pseudonyms: Option<bool>,
    users: HashMap<pg_sys::Oid, Rc<str>>,
    client_addr: Option<Option<String>>,
    /// Protected tables and partitions, for read auditing.
    read_targets: Option<Rc<HashMap<pg_sys::Oid, ReadTarget>>>,
}

/// A relation whose reads may be audited.
#[derive(Debug)]
pub(crate) struct ReadTarget {
    /// The protected (root) table's name.
    pub table: String,
    /// Its policy asks for read auditing (`"audit_reads": true`).
    pub audit_reads: bool,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Relcache callback: a change to an audited table drops its plan; a change
/// to the classification, the protected-table list, the keyring or our own
/// tables (or a full reset) drops everything.
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if relid == pg_sys::InvalidOid
            || c.catalog_relids.contains(&relid)
            || Some(relid) == c.audit_log
        {
            c.audit_log = None;
            c.catalog_relids.clear();
            c.plans.clear();
            c.pseudonyms = None;
            c.read_targets = None;
        } else {
            c.plans.remove(&relid);
            // A protected table's relcache entry is invalidated when a
            // partition is created, attached or detached: its partitions
            // are read targets too, so reload them.
            if c.read_targets
                .as_ref()
                .is_some_and(|t| t.contains_key(&relid))
            {
                c.read_targets = None;
            }
        }
    });
}

/// Syscache callback on pg_authid: a renamed or dropped role drops the
/// cached role names, so entries name roles as they are now called.
unsafe extern "C-unwind" fn on_role_inval(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    CACHE.with(|c| c.borrow_mut().users.clear());
}

fn aegis_relid(name: &CStr) -> Result<pg_sys::Oid, AegisError> {
    // SAFETY: catalog lookups by name; both return InvalidOid when missing.
    let oid = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"aegis".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), nsp)
        }
    };
    if oid == pg_sys::InvalidOid {
        Err(internal(format!(
            "aegis.{} is missing: is pg_aegis installed in this database?",
            name.to_string_lossy()
        )))
    } else {
        Ok(oid)
    }
}

/// The OIDs of aegis.audit_log and its id sequence.
fn audit_log_oids() -> Result<(pg_sys::Oid, pg_sys::Oid), AegisError> {
    if let Some(r) = CACHE.with(|c| {
        let c = c.borrow();
        c.audit_log.map(|o| (o, c.sequence))
    }) {
        return Ok(r);
    }
    let log = aegis_relid(c"audit_log")?;
    let seq = aegis_relid(c"audit_log_id_seq")?;
    let catalogs = vec![
        aegis_relid(c"column_classes")?,
        aegis_relid(c"protected_tables")?,
        aegis_relid(c"keys")?,
    ];
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !c.callback_registered {
            // SAFETY: registers a plain function pointer for the life of the
            // backend; PostgreSQL calls it on the main thread.
            unsafe {
                pg_sys::CacheRegisterRelcacheCallback(
                    Some(on_relcache_inval),
                    pg_sys::Datum::from(0usize),
                );
                pg_sys::CacheRegisterSyscacheCallback(
                    pg_sys::SysCacheIdentifier::AUTHOID as i32,
                    Some(on_role_inval),
                    pg_sys::Datum::from(0usize),
                );
            };
            c.callback_registered = true;
        }
        c.audit_log = Some(log);
        c.sequence = seq;
        c.catalog_relids = catalogs;
    });
    Ok((log, seq))
}

fn render_for(typoid: pg_sys::Oid) -> Render {
    use pg_sys::BuiltinOid as B;
    // SAFETY: syscache lookups of a type that exists (it is a column's).
    let base = unsafe { pg_sys::getBaseType(typoid) };
    match B::from_u32(base.to_u32()) {
        Ok(B::BOOLOID) => Render::Bool,
        Ok(B::INT2OID) => Render::Int2,
        Ok(B::INT4OID) => Render::Int4,
        Ok(B::INT8OID) => Render::Int8,
        Ok(B::FLOAT4OID) => Render::Float4,
        Ok(B::FLOAT8OID) => Render::Float8,
        Ok(B::NUMERICOID) => Render::Numeric,
        Ok(B::TEXTOID | B::VARCHAROID | B::BPCHAROID) => Render::Text,
        Ok(B::NAMEOID) => Render::Name,
        Ok(B::TIMESTAMPTZOID) => Render::TimestampTz,
        Ok(B::TIMESTAMPOID) => Render::Timestamp,
        Ok(B::DATEOID) => Render::Date,
        Ok(B::BYTEAOID) => Render::Bytea,
        Ok(B::JSONOID) => Render::Json,
        Ok(B::JSONBOID) => Render::Jsonb,
        _ => {
            let mut out = pg_sys::InvalidOid;
            let mut varlena = false;
            // SAFETY: as above.
            unsafe { pg_sys::getTypeOutputInfo(base, &mut out, &mut varlena) };
            let plain = matches!(
                B::from_u32(base.to_u32()),
                Ok(B::UUIDOID
                    | B::INETOID
                    | B::CIDROID
                    | B::MACADDROID
                    | B::MACADDR8OID
                    | B::OIDOID
                    | B::CHAROID
                    | B::BITOID
                    | B::VARBITOID)
            ) || unsafe { pg_sys::type_is_enum(base) };
            if plain {
                Render::Plain(out)
            } else {
                Render::Guarded(out)
            }
        }
    }
}

/// Build the plan for a relation: its columns, their classes (recorded on
/// the protected root table), its primary key.
///
/// # Safety
/// `rel` must be an open relation.
unsafe fn build_plan(rel: pg_sys::Relation) -> Result<RelPlan, AegisError> {
    let relid = unsafe { (*rel).rd_id };
    let (table_name, classes, pk, capturable) = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let root = "COALESCE(pg_catalog.pg_partition_root($1), $1)";
                let name: String = client
                    .select(
                        &format!(
                            "SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                             OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) \
                             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                             ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                             WHERE c.oid OPERATOR(pg_catalog.=) {root}"
                        ),
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<String>()
                    .map_err(spi_error)?
                    .ok_or_else(|| internal("audited relation vanished"))?;
                let mut classes = HashMap::new();
                for row in client
                    .select(
                        &format!(
                            "SELECT column_name::pg_catalog.text, class FROM aegis.column_classes \
                             WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) {root}"
                        ),
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                {
                    let col: Option<String> = row.get(1).map_err(spi_error)?;
                    let class: Option<String> = row.get(2).map_err(spi_error)?;
                    if let (Some(col), Some(class)) = (col, class) {
                        classes.insert(col, class);
                    }
                }
                let mut pk = Vec::new();
                for row in client
                    .select(
                        "SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_index i \
                         JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                         AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[]) \
                         WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary",
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                {
                    if let Some(n) = row.get::<String>(1).map_err(spi_error)? {
                        pk.push(n);
                    }
                }
                let capturable = client
                    .select(
                        &format!(
                            "SELECT EXISTS (SELECT 1 FROM aegis.rls_enforced e \
                                            WHERE e.relid::pg_catalog.oid OPERATOR(pg_catalog.=) {root}) \
                                 OR (SELECT c.relnamespace FROM pg_catalog.pg_class c \
                                     WHERE c.oid OPERATOR(pg_catalog.=) $1) \
                                    OPERATOR(pg_catalog.=) 'aegis'::pg_catalog.regnamespace"
                        ),
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<bool>()
                    .map_err(spi_error)?
                    .unwrap_or(false);
                Ok((name, classes, pk, capturable))
            })
        })
    })?;
    let mut columns = Vec::new();
    // SAFETY: the relation is open; its tuple descriptor lives as long.
    unsafe {
        let tupdesc = (*rel).rd_att;
        for (index, att) in crate::compat::tupdesc_attrs(tupdesc).iter().enumerate() {
            if att.attisdropped {
                continue;
            }
            let name = CStr::from_ptr(att.attname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            let render = render_for(att.atttypid);
            let class = match classes.get(&name).map(String::as_str) {
                Some("secret") => Class::Secret,
                Some("pii" | "subject_id") => Class::Pseudonym,
                Some("free_text") if matches!(render, Render::Text) => Class::FreeText,
                _ => Class::Public,
            };
            columns.push(Column {
                index,
                in_pk: pk.contains(&name),
                name,
                render,
                class,
            });
        }
    }
    // Canonical member order (byte order of the names): images are encoded
    // member by member, never sorted per row.
    columns.sort_by(|a: &Column, b: &Column| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(RelPlan {
        table_name,
        guarded: columns
            .iter()
            .any(|c| matches!(c.render, Render::Guarded(_))),
        has_pk: !pk.is_empty(),
        columns,
        capturable,
    })
}

/// # Safety
/// `rel` must be an open relation.
unsafe fn plan_for(rel: pg_sys::Relation) -> Result<Rc<RelPlan>, AegisError> {
    audit_log_oids()?;
    let relid = unsafe { (*rel).rd_id };
    if let Some(p) = CACHE.with(|c| c.borrow().plans.get(&relid).cloned()) {
        return Ok(p);
    }
    let plan = Rc::new(unsafe { build_plan(rel) }?);
    CACHE.with(|c| c.borrow_mut().plans.insert(relid, plan.clone()));
    Ok(plan)
}

/// How a `subject_id`/`pii` value equal to `subject` appears in audit
/// images (None without a usable pseudonym key: then they hold `[PII]`).
pub(crate) fn subject_pseudonym(subject: &str) -> Option<String> {
    pseudonyms_available()
        .then(|| keyring::pseudonym(subject.as_bytes(), PSEUDONYM_KEY).ok())
        .flatten()
        .map(|p| format!("pseudonym:{p}"))
}

/// Whether the pseudonym key is usable (master key configured, key present).
/// Checked once and cached until the keyring changes.
fn pseudonyms_available() -> bool {
    if let Some(v) = CACHE.with(|c| c.borrow().pseudonyms) {
        return v;
    }
    let ok = keyring::pseudonym(b"", PSEUDONYM_KEY).is_ok();
    CACHE.with(|c| c.borrow_mut().pseudonyms = Some(ok));
    ok
}

// ---------------------------------------------------------------------------
// Text in the server encoding <-> UTF-8
// ---------------------------------------------------------------------------

fn server_is_utf8() -> bool {
    // SAFETY: reads a backend global.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// Text from the server encoding as UTF-8 (images and hashes are UTF-8).
fn to_utf8(bytes: &[u8]) -> Cow<'_, str> {
    if server_is_utf8() {
        return String::from_utf8_lossy(bytes);
    }
    // SAFETY: converts `len` bytes; returns the input pointer when nothing
    // changes, else a palloc'd NUL-terminated string.
    unsafe {
        let p = pg_sys::pg_server_to_any(
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
        );
        if p.cast::<u8>().cast_const() == bytes.as_ptr() {
            String::from_utf8_lossy(bytes)
        } else {
            Cow::Owned(CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }
}

/// UTF-8 text as a NUL-terminated string in the server encoding.
fn to_server_cstring(s: &str) -> CString {
    let bytes: Vec<u8> = if server_is_utf8() {
        s.as_bytes().to_vec()
    } else {
        // SAFETY: converts `len` bytes; the result is NUL-terminated.
        unsafe {
            let p = pg_sys::pg_any_to_server(
                s.as_ptr().cast(),
                s.len() as i32,
                pg_sys::pg_enc::PG_UTF8 as i32,
            );
            if p.cast::<u8>().cast_const() == s.as_ptr() {
                s.as_bytes().to_vec()
            } else {
                CStr::from_ptr(p).to_bytes().to_vec()
            }
        }
    };
    // Text datums never contain NUL.
    CString::new(bytes).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Row images
// ---------------------------------------------------------------------------

/// # Safety
/// `out_fn` must be the output function of `d`'s type.
unsafe fn output_text(out_fn: pg_sys::Oid, d: pg_sys::Datum) -> String {
    // SAFETY: per the contract; the result is a palloc'd C string.
    unsafe {
        let p = pg_sys::OidOutputFunctionCall(out_fn, d);
        to_utf8(CStr::from_ptr(p).to_bytes()).into_owned()
    }
}

/// Settings that change how values print, pinned while output functions of
/// "guarded" types run, so images never depend on the session.
const FIXED_SETTINGS: [(&CStr, &CStr); 5] = [
    (c"DateStyle", c"ISO, YMD"),
    (c"TimeZone", c"UTC"),
    (c"IntervalStyle", c"iso_8601"),
    (c"extra_float_digits", c"3"),
    (c"bytea_output", c"hex"),
];

/// A JSON document of an entry (row image, key, detail): its jsonb datum
/// and its canonical encoding, built together so the writer never renders
/// text and parses it back.
pub(crate) struct Doc {
    datum: pg_sys::Datum,
    canonical: Vec<u8>,
}

impl Doc {
    /// From JSON text (entry details).
    pub(crate) fn from_json(text: &str) -> Result<Doc, AegisError> {
        let mut canonical = Vec::new();
        core_audit::encode_value(&Value::Json(text), &mut canonical)?;
        Ok(Doc {
            datum: jsonb_datum(text),
            canonical,
        })
    }

    fn value(&self) -> Value<'_> {
        Value::Encoded(&self.canonical)
    }
}

/// A jsonb object built member by member (no JSON text, no parser): the
/// pairs are collected in Rust, sorted into jsonb's key order and converted
/// with one JsonbValueToJsonb call. String bytes live in the builder until
/// then; keys point into the relation's plan, which outlives the builder
/// (`'k`). An embedded json/jsonb value goes through pushJsonbValue
/// instead, which can unpack it.
struct JsonbObject<'k> {
    pairs: Vec<pg_sys::JsonbPair>,
    /// Owned value bytes the pairs point into (heap buffers do not move).
    bytes: Vec<Box<[u8]>>,
    nested: bool,
    keys: std::marker::PhantomData<&'k str>,
}

/// A JsonbValue with all-zero payload (a valid value of the plain C union).
fn jbv(type_: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_,
        // SAFETY: all-zero is a valid value of this plain C union.
        val: unsafe { std::mem::zeroed() },
    }
}

/// A jbvString pointing at `s` (which must outlive its use).
fn jbv_string(s: &[u8]) -> pg_sys::JsonbValue {
    let mut v = jbv(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: s.len() as i32,
        val: s.as_ptr().cast_mut().cast(),
    };
    v
}

impl<'k> JsonbObject<'k> {
    fn new() -> Self {
        JsonbObject {
            pairs: Vec::with_capacity(16),
            bytes: Vec::with_capacity(16),
            nested: false,
            keys: std::marker::PhantomData,
        }
    }

    /// A string value, copied into the builder.
    fn string(&mut self, s: &str) -> pg_sys::JsonbValue {
        let b: Box<[u8]> = s.as_bytes().into();
        let v = jbv_string(&b);
        self.bytes.push(b);
        v
    }

    /// Add one member (keys arrive unique).
    fn push(&mut self, key: &'k str, v: &Scalar<'_>) {
        let k = jbv_string(key.as_bytes());
        let val = match v {
            Scalar::Null => jbv(pg_sys::jbvType::jbvNull),
            Scalar::Bool(b) => {
                let mut val = jbv(pg_sys::jbvType::jbvBool);
                val.val.boolean = *b;
                val
            }
            Scalar::Number(n) => {
                let c = CString::new(n.as_bytes()).unwrap_or_default();
                // SAFETY: numeric_in(cstring, oid, int4) on a valid JSON
                // number, which numeric accepts.
                let d = unsafe {
                    pgrx::fcinfo::direct_function_call_as_datum(
                        pg_sys::numeric_in,
                        &[
                            Some(pg_sys::Datum::from(c.as_ptr())),
                            Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                            Some(pg_sys::Datum::from(-1i32)),
                        ],
                    )
                };
                let mut val = jbv(pg_sys::jbvType::jbvNumeric);
                val.val.numeric = d.map_or(std::ptr::null_mut(), |d| d.cast_mut_ptr());
                val
            }
            Scalar::String(s) => self.string(s),
            Scalar::Json(text) => {
                let d = jsonb_datum(text);
                let jb = d.cast_mut_ptr::<pg_sys::Jsonb>();
                let mut val = jbv(pg_sys::jbvType::jbvBinary);
                // SAFETY: jsonb_in returns a plain (untoasted) jsonb.
                val.val.binary = unsafe {
                    pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_4 {
                        len: (pgrx::varsize_any(jb.cast()) - pg_sys::VARHDRSZ) as i32,
                        data: std::ptr::addr_of_mut!((*jb).root),
                    }
                };
                self.nested = true;
                val
            }
        };
        self.pairs.push(pg_sys::JsonbPair {
            key: k,
            value: val,
            order: self.pairs.len() as u32,
        });
    }

    fn finish(mut self) -> pg_sys::Datum {
        if self.nested {
            return self.finish_pushed();
        }
        // jsonb's key order: shorter keys first, then bytewise.
        // SAFETY: every key is a jbvString built by string().
        self.pairs.sort_by(|a, b| unsafe {
            let (ka, kb) = (a.key.val.string, b.key.val.string);
            ka.len.cmp(&kb.len).then_with(|| {
                std::slice::from_raw_parts(ka.val.cast::<u8>(), ka.len as usize).cmp(
                    std::slice::from_raw_parts(kb.val.cast::<u8>(), kb.len as usize),
                )
            })
        });
        let mut obj = jbv(pg_sys::jbvType::jbvObject);
        obj.val.object = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_3 {
            nPairs: self.pairs.len() as i32,
            pairs: self.pairs.as_mut_ptr(),
        };
        // SAFETY: an object of scalar pairs, sorted and unique, whose bytes
        // are alive for the call; the result is a new palloc'd jsonb.
        unsafe { pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(&mut obj)) }
    }

    /// Through pushJsonbValue, which unpacks embedded jsonb values.
    fn finish_pushed(mut self) -> pg_sys::Datum {
        let mut state = std::ptr::null_mut();
        // SAFETY: a new parse state in the current memory context; keys and
        // values as built by push(), alive until JsonbValueToJsonb.
        unsafe {
            pg_sys::pushJsonbValue(
                &mut state,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
                std::ptr::null_mut(),
            );
            for p in self.pairs.iter_mut() {
                pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut p.key);
                pg_sys::pushJsonbValue(
                    &mut state,
                    pg_sys::JsonbIteratorToken::WJB_VALUE,
                    &mut p.value,
                );
            }
            let v = pg_sys::pushJsonbValue(
                &mut state,
                pg_sys::JsonbIteratorToken::WJB_END_OBJECT,
                std::ptr::null_mut(),
            );
            pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(v))
        }
    }
}

/// One image (row or key) being built: its canonical encoding, and either
/// its jsonb directly (UTF-8 databases) or its text for jsonb_in (others,
/// whose strings must be converted to the server encoding first).
struct DocBuilder<'k> {
    canonical: core_audit::ObjectEncoder,
    jsonb: Option<JsonbObject<'k>>,
    text: Option<ImageBuilder>,
}

impl<'k> DocBuilder<'k> {
    fn new(utf8: bool) -> Self {
        DocBuilder {
            canonical: core_audit::ObjectEncoder::new(),
            jsonb: utf8.then(JsonbObject::new),
            text: (!utf8).then(ImageBuilder::new),
        }
    }

    fn push(&mut self, key: &'k str, v: &Scalar<'_>) -> Result<(), AegisError> {
        self.canonical.push(key, v)?;
        if let Some(j) = self.jsonb.as_mut() {
            j.push(key, v);
        }
        if let Some(t) = self.text.as_mut() {
            t.push_scalar(key, v);
        }
        Ok(())
    }

    fn finish(self) -> Doc {
        let datum = match (self.jsonb, self.text) {
            (Some(j), _) => j.finish(),
            (None, Some(t)) => jsonb_datum(&t.finish()),
            (None, None) => pg_sys::Datum::from(0usize),
        };
        Doc {
            datum,
            canonical: self.canonical.finish(),
        }
    }
}

/// The row image and primary-key image of a tuple.
struct Images {
    row: Doc,
    pk: Option<Doc>,
}

/// Render one column's value as a JSON cell and hand it to `sink`.
///
/// # Safety
/// `d` must be a non-null datum of the column's type.
unsafe fn with_cell<R>(col: &Column, d: pg_sys::Datum, sink: impl FnOnce(&Cell<'_>) -> R) -> R {
    // SAFETY: each arm reads the datum as its type's representation.
    unsafe {
        match col.render {
            Render::Bool => sink(&Cell::Bool(d.value() != 0)),
            Render::Int2 => sink(&Cell::Int(i64::from(d.value() as i16))),
            Render::Int4 => sink(&Cell::Int(i64::from(d.value() as i32))),
            Render::Int8 => sink(&Cell::Int(d.value() as i64)),
            Render::Float4 => sink(&Cell::Float(f64::from(f32::from_bits(d.value() as u32)))),
            Render::Float8 => sink(&Cell::Float(f64::from_bits(d.value() as u64))),
            Render::Numeric => {
                let t = output_text(pg_sys::Oid::from(pg_sys::F_NUMERIC_OUT), d);
                sink(&Cell::Numeric(&t))
            }
            Render::Text => sink(&Cell::Text(&to_utf8(text_bytes(d)))),
            Render::Name => {
                let t = CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>());
                sink(&Cell::Text(&to_utf8(t.to_bytes())))
            }
            Render::TimestampTz => sink(&Cell::TimestampTz(d.value() as i64)),
            Render::Timestamp => sink(&Cell::Timestamp(d.value() as i64)),
            Render::Date => sink(&Cell::Date(d.value() as i32)),
            Render::Bytea => sink(&Cell::Bytes(text_bytes(d))),
            Render::Json => sink(&Cell::Json(&to_utf8(text_bytes(d)))),
            Render::Jsonb => {
                let t = output_text(pg_sys::Oid::from(pg_sys::F_JSONB_OUT), d);
                sink(&Cell::Json(&t))
            }
            Render::Plain(f) | Render::Guarded(f) => sink(&Cell::Text(&output_text(f, d))),
        }
    }
}

/// The value a classified column contributes instead of itself; pii values
/// become `[PII]` unless `pseudonyms` (the key is usable).
fn classified(col: &Column, cell: &Cell<'_>, pseudonyms: bool) -> Option<String> {
    match col.class {
        Class::Public => None,
        Class::FreeText => match cell {
            Cell::Text(t) => {
                let r = redact_tags(t.as_bytes());
                match r {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                }
            }
            _ => None,
        },
        Class::Secret | Class::Pseudonym => {
            // Text as itself, so the pseudonym equals aegis.pseudonymize()'s
            // of the same value (auditors can link, erasure can find);
            // other types as their JSON rendering.
            let bytes: Cow<'_, str> = match cell {
                Cell::Text(t) => Cow::Borrowed(t),
                other => Cow::Owned(core_audit::image::render_cell(other)),
            };
            if col.class == Class::Secret {
                Some(format!(
                    "sha256:{}",
                    hex::encode(aegis_core::hash::HashAlgorithm::Sha256.digest(bytes.as_bytes()))
                ))
            } else {
                // Whatever goes wrong with the key, the value itself is never
                // what gets stored.
                let p = pseudonyms
                    .then(|| keyring::pseudonym(bytes.as_bytes(), PSEUDONYM_KEY).ok())
                    .flatten();
                Some(p.map_or_else(|| "[PII]".into(), |p| format!("pseudonym:{p}")))
            }
        }
    }
}

/// The row image (and primary key image) of a tuple, with pii values as
/// pseudonyms when `pseudonyms` (see pseudonyms_available()), else `[PII]`.
///
/// # Safety
/// `tuple` must be a valid tuple of a relation described by `tupdesc`,
/// planned as `plan`.
unsafe fn images(
    plan: &RelPlan,
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
    pseudonyms: bool,
) -> Result<Images, AegisError> {
    let natts = unsafe { (*tupdesc).natts as usize };
    let mut values = vec![pg_sys::Datum::from(0usize); natts];
    let mut nulls = vec![false; natts];
    // SAFETY: arrays sized to the descriptor.
    unsafe { pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
    let utf8 = server_is_utf8();
    let build = || -> Result<Images, AegisError> {
        let mut row = DocBuilder::new(utf8);
        let mut pk = plan.has_pk.then(|| DocBuilder::new(utf8));
        for col in &plan.columns {
            let mut add = |v: &Scalar<'_>| -> Result<(), AegisError> {
                row.push(&col.name, v)?;
                if let (true, Some(pk)) = (col.in_pk, pk.as_mut()) {
                    pk.push(&col.name, v)?;
                }
                Ok(())
            };
            if nulls[col.index] {
                add(&Scalar::Null)?;
                continue;
            }
            // SAFETY: a non-null datum of this column.
            unsafe {
                with_cell(col, values[col.index], |cell| {
                    match classified(col, cell, pseudonyms) {
                        Some(s) => add(&Scalar::String(Cow::Owned(s))),
                        None => add(&core_audit::scalar(cell)),
                    }
                })
            }?;
        }
        Ok(Images {
            row: row.finish(),
            pk: pk.map(DocBuilder::finish),
        })
    };
    if plan.guarded {
        crate::guc::with_settings(&FIXED_SETTINGS, build)
    } else {
        build()
    }
}

// ---------------------------------------------------------------------------
// Writing entries
// ---------------------------------------------------------------------------

/// A role's name as the audit trail records it.
pub(crate) fn role_name(oid: pg_sys::Oid) -> String {
    user_name(oid).to_string()
}

/// The protected tables of this database and their partitions, cached until
/// the catalog changes; None when pg_aegis is not installed here.
pub(crate) fn read_targets() -> Option<Rc<HashMap<pg_sys::Oid, ReadTarget>>> {
    if let Some(t) = CACHE.with(|c| c.borrow().read_targets.clone()) {
        return Some(t);
    }
    // Every statement of every database asks: where pg_aegis is not
    // installed, answer with one syscache lookup (no error built).
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    if unsafe { pg_sys::get_namespace_oid(c"aegis".as_ptr(), true) } == pg_sys::InvalidOid {
        return None;
    }
    // Registers the invalidation callback; fails when not installed.
    audit_log_oids().ok()?;
    // ExecutorEnd of a portal runs after its snapshot was popped; loading
    // the catalog needs one (only here, not on every statement).
    // In a parallel worker no setting may change (not even search_path for
    // the duration of a query): the query names everything with its schema,
    // so it runs as it is there.
    let map = crate::spi::with_active_snapshot(|| {
        // SAFETY: a backend global, -1 outside parallel workers.
        if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
            as_extension_owner(load_read_targets)
        } else {
            with_safe_search_path(|| as_extension_owner(load_read_targets))
        }
    });
    let map = Rc::new(map.ok()?);
    CACHE.with(|c| c.borrow_mut().read_targets = Some(map.clone()));
    Some(map)
}

/// The protected tables (and partitions) and whether reads of each are
/// audited, from the policy catalog (every name schema-qualified).
fn load_read_targets() -> Result<HashMap<pg_sys::Oid, ReadTarget>, AegisError> {
    Spi::connect(|client| {
        let mut map = HashMap::new();
        for row in client
                    .select(
                        "SELECT t.relid::pg_catalog.oid, pg_catalog.quote_ident(n.nspname) \
                                OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), \
                                COALESCE((p.policy OPERATOR(pg_catalog.->>) 'audit_reads')::boolean, false) \
                         FROM aegis.protected_tables p \
                         CROSS JOIN LATERAL (SELECT p.relid UNION \
                              SELECT pt.relid FROM pg_catalog.pg_partition_tree(p.relid) pt) t \
                         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid \
                         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?
                {
                    let relid: Option<pg_sys::Oid> = row.get(1).map_err(spi_error)?;
                    let table: Option<String> = row.get(2).map_err(spi_error)?;
                    let audit_reads: Option<bool> = row.get(3).map_err(spi_error)?;
                    if let (Some(relid), Some(table)) = (relid, table) {
                        map.insert(
                            relid,
                            ReadTarget {
                                table,
                                audit_reads: audit_reads.unwrap_or(false),
                            },
                        );
                    }
                }
        Ok::<_, AegisError>(map)
    })
}

fn user_name(oid: pg_sys::Oid) -> Rc<str> {
    if let Some(n) = CACHE.with(|c| c.borrow().users.get(&oid).cloned()) {
        return n;
    }
    // SAFETY: noerr lookup; NULL for a dropped role.
    let name: Rc<str> = unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            Rc::from(format!("oid:{}", oid.to_u32()))
        } else {
            Rc::from(to_utf8(CStr::from_ptr(p).to_bytes()).as_ref())
        }
    };
    CACHE.with(|c| c.borrow_mut().users.insert(oid, name.clone()));
    name
}

fn client_addr() -> Option<String> {
    if let Some(a) = CACHE.with(|c| c.borrow().client_addr.clone()) {
        return a;
    }
    // SAFETY: inet_client_addr() takes no arguments and returns NULL for
    // Unix-socket and background connections.
    let addr = unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(pg_sys::inet_client_addr, &[])
            .map(|d| output_text(pg_sys::Oid::from(pg_sys::F_INET_OUT), d))
    };
    CACHE.with(|c| c.borrow_mut().client_addr = Some(addr.clone()));
    addr
}

fn application_name() -> Option<String> {
    // SAFETY: reads the GUC's C string (never freed while we read it).
    unsafe {
        let p = pg_sys::application_name;
        if p.is_null() || *p == 0 {
            None
        } else {
            Some(to_utf8(CStr::from_ptr(p).to_bytes()).into_owned())
        }
    }
}

/// What the caller supplies for an entry; the rest is the session's.
pub(crate) struct NewEntry<'a> {
    pub operation: &'a str,
    pub table_name: Option<&'a str>,
    pub pk: Option<&'a Doc>,
    pub old_row: Option<&'a Doc>,
    pub new_row: Option<&'a Doc>,
    pub detail: Option<&'a Doc>,
}

fn text_datum(s: &str) -> pg_sys::Datum {
    if server_is_utf8() {
        // SAFETY: copies `len` bytes into a palloc'd text.
        return unsafe {
            pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
                s.as_ptr().cast(),
                s.len() as i32,
            ))
        };
    }
    let c = to_server_cstring(s);
    // SAFETY: a NUL-terminated string; the text is palloc'd.
    unsafe { pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr())) }
}

fn jsonb_datum(s: &str) -> pg_sys::Datum {
    let c = to_server_cstring(s);
    // SAFETY: jsonb_in takes one cstring; our images are valid JSON.
    unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(c.as_ptr()))],
        )
        .unwrap_or(pg_sys::Datum::from(0usize))
    }
}

fn bytea_datum(b: &[u8]) -> pg_sys::Datum {
    pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(b).into_pg())
}

/// Append one entry to aegis.audit_log: hashed here, inserted into the heap
/// and its index directly.
pub(crate) fn write_entry(e: &NewEntry<'_>) -> Result<(), AegisError> {
    let (log_oid, seq) = audit_log_oids()?;
    // SAFETY: backend globals and a transaction that can write (callers run
    // in triggers and DDL); GetTopFullTransactionId assigns one if needed.
    let (user, session, xid, stmt, pid) = unsafe {
        (
            user_name(pg_sys::GetUserId()),
            user_name(pg_sys::GetSessionUserId()),
            pg_sys::GetTopFullTransactionId().value,
            pg_sys::GetCurrentStatementStartTimestamp(),
            pg_sys::MyProcPid,
        )
    };
    let app = application_name();
    let addr = client_addr();
    let entry = Entry {
        operation: e.operation,
        table_name: e.table_name,
        db_user: &user,
        session_user: &session,
        application_name: app.as_deref(),
        client_addr: addr.as_deref(),
        backend_pid: pid,
        xid: xid as i64,
        statement_time: stmt,
        pk: e.pk.map_or(Value::Null, Doc::value),
        old_row: e.old_row.map_or(Value::Null, Doc::value),
        new_row: e.new_row.map_or(Value::Null, Doc::value),
        detail: e.detail.map_or(Value::Null, Doc::value),
    };
    let (data_digest, entry_hash) = entry.hashes()?;
    // SAFETY: nextval_oid takes the sequence's OID; it checks USAGE, which
    // PUBLIC holds.
    let id = unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::nextval_oid,
            &[Some(pg_sys::Datum::from(seq))],
        )
        .ok_or_else(|| internal("nextval returned NULL"))?
    };
    let none = pg_sys::Datum::from(0usize);
    let opt = |v: Option<pg_sys::Datum>| (v.unwrap_or(none), v.is_none());
    let cols: [(pg_sys::Datum, bool); AUDIT_LOG_NATTS] = [
        (id, false),
        (pg_sys::Datum::from(xid), false),
        (text_datum(e.operation), false),
        opt(e.table_name.map(text_datum)),
        (text_datum(&user), false),
        (text_datum(&session), false),
        opt(app.as_deref().map(text_datum)),
        // SAFETY: inet_in parses the text inet_out produced.
        opt(addr.as_deref().map(|a| unsafe {
            let c = to_server_cstring(a);
            pgrx::fcinfo::direct_function_call_as_datum(
                pg_sys::inet_in,
                &[Some(pg_sys::Datum::from(c.as_ptr()))],
            )
            .unwrap_or(none)
        })),
        (pg_sys::Datum::from(pid), false),
        (pg_sys::Datum::from(stmt), false),
        opt(e.pk.map(|d| d.datum)),
        opt(e.old_row.map(|d| d.datum)),
        opt(e.new_row.map(|d| d.datum)),
        opt(e.detail.map(|d| d.datum)),
        (bytea_datum(&data_digest), false),
        (bytea_datum(&entry_hash), false),
        (none, true),
    ];
    let mut values: Vec<pg_sys::Datum> = cols.iter().map(|c| c.0).collect();
    let mut nulls: Vec<bool> = cols.iter().map(|c| c.1).collect();
    with_open_log(log_oid, |rel, indstate| {
        // SAFETY: the relation and its index state are open (see
        // with_open_log); the tuple matches its descriptor (the column count
        // was checked when it was opened).
        unsafe {
            let tuple =
                pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            // The catalog insert helpers: heap insert, then each index of
            // the table (aegis.audit_log has one plain btree, no
            // expressions).
            pg_sys::CatalogTupleInsertWithInfo(rel, tuple, indstate);
            pg_sys::heap_freetuple(tuple);
        }
    })
}

/// aegis.audit_log, opened once per statement for all its entries (a bulk
/// statement writes one per row): held by the top transaction's resource
/// owner, so it outlives the trigger calls and subtransactions; closed when
/// the statement's resources are released (a portal's or subtransaction's
/// owner) and, at the latest, just before commit; forgotten on abort (the
/// resource owner releases it then). Not kept across statements, so a later
/// statement of the transaction does not find the table "in use".
struct OpenLog {
    oid: pg_sys::Oid,
    rel: pg_sys::Relation,
    indstate: pg_sys::CatalogIndexState,
}

thread_local! {
    static OPEN_LOG: std::cell::Cell<Option<OpenLog>> = const { std::cell::Cell::new(None) };
    /// Set between pre-commit and the end of the transaction: entries
    /// written then (none are expected) open and close the log themselves.
    static COMMITTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static XACT_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Restores the resource owner and memory context on every exit, errors
/// included.
struct TopTransactionScope {
    owner: pg_sys::ResourceOwner,
    context: pg_sys::MemoryContext,
}

impl TopTransactionScope {
    /// # Safety
    /// Inside a transaction.
    unsafe fn enter() -> Self {
        // SAFETY: per the contract both globals are valid.
        unsafe {
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
            let context = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
            TopTransactionScope { owner, context }
        }
    }
}

impl Drop for TopTransactionScope {
    fn drop(&mut self) {
        // SAFETY: puts back what enter() replaced.
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.context);
            pg_sys::CurrentResourceOwner = self.owner;
        }
    }
}

unsafe fn open_log(oid: pg_sys::Oid) -> Result<OpenLog, AegisError> {
    // SAFETY: opens with the lock an insert takes; closes again if the
    // layout is not ours.
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if (*(*rel).rd_att).natts as usize != AUDIT_LOG_NATTS {
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return Err(internal("aegis.audit_log has an unexpected layout"));
        }
        let indstate = pg_sys::CatalogOpenIndexes(rel);
        // The catalog insert helpers maintain plain indexes only: an
        // expression or partial index (a superuser could add one) would be
        // corrupted or crash the backend, so refuse to write instead.
        let n = (*indstate).ri_NumIndices as usize;
        let plain = (0..n).all(|i| {
            let ii = *(*indstate).ri_IndexRelationInfo.add(i);
            (*ii).ii_Expressions.is_null()
                && (*ii).ii_Predicate.is_null()
                && (*ii).ii_ExclusionOps.is_null()
        });
        if !plain {
            pg_sys::CatalogCloseIndexes(indstate);
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return Err(AegisError::LogIndex);
        }
        Ok(OpenLog { oid, rel, indstate })
    }
}

unsafe fn close_log(l: OpenLog) {
    // SAFETY: closes what open_log opened (the lock stays to commit).
    unsafe {
        pg_sys::CatalogCloseIndexes(l.indstate);
        pg_sys::table_close(l.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent as X;
    match event {
        X::XACT_EVENT_PRE_COMMIT
        | X::XACT_EVENT_PARALLEL_PRE_COMMIT
        | X::XACT_EVENT_PRE_PREPARE => {
            COMMITTING.set(true);
            if let Some(l) = OPEN_LOG.take() {
                // SAFETY: closed under the owner it was opened with.
                unsafe {
                    let _scope = TopTransactionScope::enter();
                    close_log(l);
                }
            }
        }
        X::XACT_EVENT_COMMIT
        | X::XACT_EVENT_PARALLEL_COMMIT
        | X::XACT_EVENT_PREPARE
        | X::XACT_EVENT_ABORT
        | X::XACT_EVENT_PARALLEL_ABORT => {
            // On abort the resource owner has released (or will release)
            // the relation: only forget it.
            OPEN_LOG.set(None);
            COMMITTING.set(false);
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_resource_release(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if is_commit
        && !is_top_level
        && phase == pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_BEFORE_LOCKS
    {
        if let Some(l) = OPEN_LOG.take() {
            // SAFETY: closed under the owner it was opened with.
            unsafe {
                let _scope = TopTransactionScope::enter();
                close_log(l);
            }
        }
    }
}

/// Run `f` with aegis.audit_log and its index state open.
fn with_open_log(
    oid: pg_sys::Oid,
    f: impl FnOnce(pg_sys::Relation, pg_sys::CatalogIndexState),
) -> Result<(), AegisError> {
    if COMMITTING.get() {
        // SAFETY: a plain open/insert/close under the current owner.
        let l = unsafe { open_log(oid) }?;
        f(l.rel, l.indstate);
        unsafe { close_log(l) };
        return Ok(());
    }
    if !XACT_CALLBACK.get() {
        // SAFETY: registers functions for the life of the backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
            pg_sys::RegisterResourceReleaseCallback(
                Some(on_resource_release),
                std::ptr::null_mut(),
            );
        }
        XACT_CALLBACK.set(true);
    }
    let l = match OPEN_LOG.take() {
        Some(l) if l.oid == oid => l,
        other => {
            // SAFETY: in a transaction (we are writing an entry); opened
            // under the top transaction's owner and memory, so it outlives
            // this statement and subtransactions.
            unsafe {
                let _scope = TopTransactionScope::enter();
                if let Some(stale) = other {
                    close_log(stale);
                }
                open_log(oid)?
            }
        }
    };
    let (rel, indstate) = (l.rel, l.indstate);
    OPEN_LOG.set(Some(l));
    f(rel, indstate);
    Ok(())
}

// ---------------------------------------------------------------------------
// Capture triggers
// ---------------------------------------------------------------------------

/// `aegis.audit_row()`: AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.
#[pg_trigger(sql = false)]
fn audit_row<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    if !matches!(trigger.when(), Ok(PgTriggerWhen::After))
        || !matches!(trigger.level(), PgTriggerLevel::Row)
    {
        protocol_error("aegis.audit_row() must be an AFTER ... FOR EACH ROW trigger");
    }
    let td = trigger.trigger_data();
    // SAFETY: a row trigger's relation is valid for the call.
    if unsafe { restoring_catalog(td.tg_relation) } {
        return Ok(None);
    }
    let (op, old, new) = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => ("INSERT", None, Some(td.tg_trigtuple)),
        Ok(PgTriggerOperation::Update) => ("UPDATE", Some(td.tg_trigtuple), Some(td.tg_newtuple)),
        Ok(PgTriggerOperation::Delete) => ("DELETE", Some(td.tg_trigtuple), None),
        _ => protocol_error("aegis.audit_row() fires on INSERT, UPDATE or DELETE"),
    };
    // SAFETY: a row trigger: the relation and tuples are valid for the call.
    let r = unsafe {
        let rel = td.tg_relation;
        plan_for(rel).and_then(|plan| {
            if !plan.capturable {
                return Err(AegisError::NotProtected {
                    table: relation_name(rel),
                });
            }
            let tupdesc = (*rel).rd_att;
            let pseudonyms = pseudonyms_available();
            let old = old
                .map(|t| images(&plan, tupdesc, t, pseudonyms))
                .transpose()?;
            let new = new
                .map(|t| images(&plan, tupdesc, t, pseudonyms))
                .transpose()?;
            let pk = new.as_ref().or(old.as_ref()).and_then(|i| i.pk.as_ref());
            write_entry(&NewEntry {
                operation: op,
                table_name: Some(&plan.table_name),
                pk,
                old_row: old.as_ref().map(|i| &i.row),
                new_row: new.as_ref().map(|i| &i.row),
                detail: None,
            })
        })
    };
    if let Err(e) = r {
        raise(e);
    }
    Ok(None)
}

/// A superuser's COPY into one of pg_aegis's own catalogs: what pg_restore
/// does when it restores the extension's configuration tables. Those rows'
/// history is already in the restored trail; capturing them again would
/// append a second, restore-time copy of it. (Everyone else's changes to
/// the catalogs, and a superuser's through the API or plain DML, are
/// captured; a superuser could switch triggers off anyway.)
unsafe fn restoring_catalog(rel: pg_sys::Relation) -> bool {
    // SAFETY: a valid relation; debug_query_string is the client's current
    // statement (NUL-terminated) or NULL.
    unsafe {
        let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        if nsp.is_null() || CStr::from_ptr(nsp).to_bytes() != b"aegis" || !pg_sys::superuser() {
            return false;
        }
        let q = pg_sys::debug_query_string;
        !q.is_null()
            && CStr::from_ptr(q)
                .to_string_lossy()
                .trim_start()
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
    }
}

/// `aegis.audit_truncate()`: AFTER TRUNCATE ... FOR EACH STATEMENT.
#[pg_trigger(sql = false)]
fn audit_truncate<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::PgTriggerOperation;
    if !matches!(trigger.op(), Ok(PgTriggerOperation::Truncate)) {
        protocol_error("aegis.audit_truncate() must be an AFTER TRUNCATE trigger");
    }
    let td = trigger.trigger_data();
    // SAFETY: the relation is valid for the call.
    let r = unsafe { plan_for(td.tg_relation) }.and_then(|plan| {
        // SAFETY: as above.
        let own = unsafe { relation_name(td.tg_relation) };
        if !plan.capturable {
            return Err(AegisError::NotProtected { table: own });
        }
        let detail = (own != plan.table_name)
            .then(|| {
                let mut d = String::from("{\"partition\":");
                core_audit::image::push_json_string(&mut d, &own);
                d.push('}');
                Doc::from_json(&d)
            })
            .transpose()?;
        write_entry(&NewEntry {
            operation: "TRUNCATE",
            table_name: Some(&plan.table_name),
            pk: None,
            old_row: None,
            new_row: None,
            detail: detail.as_ref(),
        })
    });
    if let Err(e) = r {
        raise(e);
    }
    Ok(None)
}

/// # Safety
/// `rel` must be an open relation.
unsafe fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: per the contract (an open relation always has rd_rel);
    // quote_qualified_identifier returns a palloc'd string.
    unsafe {
        let form = &*(*rel).rd_rel;
        let nsp = pg_sys::get_namespace_name(form.relnamespace);
        let q = pg_sys::quote_qualified_identifier(nsp, form.relname.data.as_ptr());
        to_utf8(CStr::from_ptr(q).to_bytes()).into_owned()
    }
}

/// `aegis.audit_plans_changed()`: statement trigger on the classification
/// catalogs; every backend drops its audit plans when the change commits.
#[pg_trigger(sql = false)]
fn audit_plans_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: queues a relcache invalidation of the catalog table that fired.
    unsafe { pg_sys::CacheInvalidateRelcache(trigger.trigger_data().tg_relation) };
    Ok(None)
}

thread_local! {
    /// Set only while pg_aegis's own maintenance (pruning behind a signed
    /// checkpoint) changes the audit tables; no SQL can set it.
    static MAINTENANCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with the append-only guard lifted for pg_aegis's own row
/// changes. Reset on return and on error (pgrx unwinds through this frame).
pub(crate) fn with_log_maintenance<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MAINTENANCE.set(self.0);
        }
    }
    let _reset = Reset(MAINTENANCE.replace(true));
    f()
}

/// `aegis.audit_append_only()`: refuses UPDATE, DELETE and TRUNCATE.
#[pg_trigger(sql = false)]
fn audit_append_only<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::PgTriggerOperation;
    if MAINTENANCE.get() {
        match trigger.op() {
            Ok(PgTriggerOperation::Delete) => return Ok(trigger.old()),
            Ok(PgTriggerOperation::Update) => return Ok(trigger.new()),
            _ => {}
        }
    }
    let table = trigger.table_name().unwrap_or_default();
    raise(
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("aegis.{table} is append-only"),
            "pg_aegis",
        )
        .set_detail(format!(
            "{} is refused for every role: audit entries are never changed or removed.",
            match trigger.op() {
                Ok(pgrx::trigger_support::PgTriggerOperation::Update) => "UPDATE",
                Ok(pgrx::trigger_support::PgTriggerOperation::Delete) => "DELETE",
                _ => "TRUNCATE",
            }
        )),
    )
}

// ---------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------

pub(crate) fn hash32(v: Option<Vec<u8>>) -> [u8; 32] {
    let mut h = [0u8; 32];
    if let Some(v) = v {
        if v.len() == 32 {
            h.copy_from_slice(&v);
        }
    }
    h
}

/// How many entries one sealing round reads at a time.
const SEAL_BATCH: i64 = 20_000;

/// How long the background sealer waits for the chain's lock before it
/// gives up this round (and reports who holds it).
const WORKER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who holds a lock on aegis.audit_chain that a sealer's lock conflicts
/// with (pid, role, application, since when), for the worker's report.
fn chain_lock_holders() -> String {
    crate::spi::get_one::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.format('pid %s (role %s, application %L, transaction since %s)', \
                l.pid, COALESCE(a.usename::pg_catalog.text, '?'), a.application_name, a.xact_start), '; ' ORDER BY l.pid) \
         FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
         WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted \
           AND l.relation OPERATOR(pg_catalog.=) 'aegis.audit_chain'::pg_catalog.regclass \
           AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
                                                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
           AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
           AND l.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,\
ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}')",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "unknown (the lock was released meanwhile)".into())
}

/// One sealing round: by a caller (aegis.seal(): waits for the chain's
/// lock, and must not hold it past its own statement) or by the background
/// sealer (`worker`: waits at most WORKER_LOCK_WAIT, then reports who holds
/// the lock and leaves sealing to its next round).
pub(crate) fn seal_impl(worker: bool) -> Result<i64, AegisError> {
    // SAFETY: reads the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(AegisError::SealIsolation);
    }
    // A lock taken in a transaction block lasts until COMMIT: the
    // background sealer (and every other sealer) would wait for whoever
    // keeps it open. Only a superuser, who can stop the worker anyway, may.
    // SAFETY: backend state.
    if !worker && unsafe { pg_sys::IsTransactionBlock() && !pg_sys::superuser() } {
        return Err(AegisError::SealInTransactionBlock);
    }
    if worker {
        let chain = aegis_relid(c"audit_chain")?;
        let started = std::time::Instant::now();
        // SAFETY: a conditional lock request; held to the end of the
        // transaction like LOCK TABLE's.
        while !unsafe {
            pg_sys::ConditionalLockRelationOid(
                chain,
                pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE,
            )
        } {
            if started.elapsed() >= WORKER_LOCK_WAIT {
                return Err(AegisError::SealerBlocked {
                    holders: chain_lock_holders(),
                });
            }
            pgrx::check_for_interrupts!();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                // One sealer at a time; writers are never blocked by this.
                // (The worker holds the lock already.)
                client
                    .update(
                        "LOCK TABLE aegis.audit_chain IN SHARE ROW EXCLUSIVE MODE",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let head = client
                    .select(
                        "SELECT position, chain_hash FROM aegis.audit_chain \
                         ORDER BY position DESC LIMIT 1",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let (mut position, mut prev) = match head.first().get_two::<i64, Vec<u8>>() {
                    Ok((Some(p), h)) => (p, hash32(h)),
                    _ => (0, core_audit::GENESIS),
                };
                // The horizon is trusted only if the chain is still where
                // that seal left it and the log was not empty then: a seal
                // that ran while a restore was loading the log would
                // otherwise leave the restored entries below the horizon,
                // never sealed.
                let horizon: Option<String> = client
                    .select(
                        "SELECT horizon::pg_catalog.text FROM aegis.audit_seal_state \
                         WHERE chain_position OPERATOR(pg_catalog.=) $1 AND NOT log_was_empty",
                        None,
                        &[position.into()],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<String>()
                    .unwrap_or(None);
                // Every transaction below this snapshot's xmin has ended, so
                // any later snapshot sees all of their committed entries:
                // those are what this round seals, and xmin is the new
                // horizon. Without a horizon (new install, or restored from a
                // dump) every entry not yet in the chain is a candidate; xids
                // at or above xmax cannot belong to this cluster's running
                // transactions (restored entries), so they are sealed too.
                let snap = client
                    .select(
                        "SELECT pg_catalog.pg_snapshot_xmin(s)::pg_catalog.text, \
                                pg_catalog.pg_snapshot_xmax(s)::pg_catalog.text \
                         FROM pg_catalog.pg_current_snapshot() s",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?;
                let (xmin, xmax) = snap
                    .first()
                    .get_two::<String, String>()
                    .map_err(spi_error)?;
                let candidates = "SELECT l.id, l.xid::pg_catalog.text::pg_catalog.int8, l.entry_hash \
                     FROM aegis.audit_log l \
                     WHERE ($1::pg_catalog.xid8 IS NULL OR l.xid OPERATOR(pg_catalog.>=) $1::pg_catalog.xid8) \
                       AND (l.xid OPERATOR(pg_catalog.<) $5::pg_catalog.xid8 \
                            OR ($1 IS NULL AND l.xid OPERATOR(pg_catalog.>=) $6::pg_catalog.xid8)) \
                       AND (l.xid, l.id) OPERATOR(pg_catalog.>) ($2::pg_catalog.int8::pg_catalog.text::pg_catalog.xid8, $3) \
                       AND NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id OPERATOR(pg_catalog.=) l.id) \
                     ORDER BY l.xid, l.id LIMIT $4";
                let mut sealed = 0i64;
                let mut after: (i64, i64) = (0, 0);
                loop {
                    let mut ids = Vec::new();
                    let mut xids = Vec::new();
                    let mut hashes = Vec::new();
                    let rows = client
                        .select(
                            candidates,
                            None,
                            &[
                                horizon.clone().into(),
                                after.0.into(),
                                after.1.into(),
                                SEAL_BATCH.into(),
                                xmin.clone().into(),
                                xmax.clone().into(),
                            ],
                        )
                        .map_err(spi_error)?;
                    for row in rows {
                        let id: i64 = row.get(1).map_err(spi_error)?.unwrap_or(0);
                        let xid: i64 = row.get(2).map_err(spi_error)?.unwrap_or(0);
                        let entry = hash32(row.get(3).map_err(spi_error)?);
                        position += 1;
                        prev = core_audit::chain_link(position as u64, &prev, &entry);
                        ids.push(id);
                        xids.push(xid);
                        hashes.push(prev.to_vec());
                        after = (xid, id);
                    }
                    let n = ids.len() as i64;
                    if n > 0 {
                        let first = position - n + 1;
                        client
                            .update(
                                "INSERT INTO aegis.audit_chain (position, entry_xid, entry_id, chain_hash) \
                                 SELECT $1 OPERATOR(pg_catalog.+) o OPERATOR(pg_catalog.-) 1, \
                                        x::pg_catalog.text::pg_catalog.xid8, i, h \
                                 FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.int8[]), \
                                      pg_catalog.unnest($4::pg_catalog.bytea[])) WITH ORDINALITY AS u(x, i, h, o)",
                                None,
                                &[first.into(), xids.into(), ids.into(), hashes.into()],
                            )
                            .map_err(spi_error)?;
                        sealed += n;
                    }
                    if n < SEAL_BATCH {
                        break;
                    }
                }
                client
                    .update(
                        "INSERT INTO aegis.audit_seal_state (horizon, sealed_at, chain_position, log_was_empty) \
                         VALUES ($1::pg_catalog.xid8, pg_catalog.now(), $2, \
                                 NOT EXISTS (SELECT 1 FROM aegis.audit_log)) \
                         ON CONFLICT (singleton) DO UPDATE SET horizon = EXCLUDED.horizon, \
                         sealed_at = EXCLUDED.sealed_at, chain_position = EXCLUDED.chain_position, \
                         log_was_empty = EXCLUDED.log_was_empty",
                        None,
                        &[xmin.into(), position.into()],
                    )
                    .map_err(spi_error)?;
                Ok(sealed)
            })
        })
    })
}

/// `aegis.seal() → bigint`
#[pg_extern(volatile, sql = false)]
fn seal() -> AegisResult<i64> {
    Ok(seal_impl(false)?)
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

type VerifyRow = (Option<bool>, Option<i64>, Option<i64>, Option<String>);

/// The latest pruning checkpoint: the chain is verified from the position
/// after it, starting from its (signed) chain hash.
struct Checkpoint {
    position: u64,
    hash: [u8; 32],
    time_us: i64,
    signature: [u8; 32],
}

fn latest_checkpoint() -> Result<Option<Checkpoint>, AegisError> {
    // The trail is read with the extension's rights: its readers see only
    // what aegis.audit_trail shows them, verification needs everything.
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let t = client
                .select(
                    "SELECT position, chain_hash, time_us, signature FROM aegis.audit_checkpoints \
                     ORDER BY position DESC LIMIT 1",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
                if t.is_empty() {
                    return Ok(None);
                }
                let r = t.first();
                Ok(Some(Checkpoint {
                    position: r.get::<i64>(1).map_err(spi_error)?.unwrap_or(0) as u64,
                    hash: hash32(r.get(2).map_err(spi_error)?),
                    time_us: r.get::<i64>(3).map_err(spi_error)?.unwrap_or(0),
                    signature: hash32(r.get(4).map_err(spi_error)?),
                }))
            })
        })
    })
}

/// Read the chain in position order and recompute every entry.
fn verify_impl(trusted: Option<TrustedHead>) -> Result<VerifyRow, AegisError> {
    let checkpoint = latest_checkpoint()?;
    let (first, prev) = match &checkpoint {
        None => (1, core_audit::GENESIS),
        Some(cp) => {
            if !signature_matches(&head_mac(cp.position, &cp.hash, cp.time_us)?, &cp.signature) {
                return Ok((
                    Some(false),
                    Some(0),
                    Some(cp.position as i64),
                    Some(format!(
                        "pruning checkpoint at position {}: its signature does not verify",
                        cp.position
                    )),
                ));
            }
            if let Some(t) = &trusted {
                if t.position < cp.position {
                    return Err(AegisError::HeadBeforeCheckpoint {
                        head: t.position,
                        checkpoint: cp.position,
                    });
                }
                if t.position == cp.position && t.chain_hash != cp.hash {
                    return Ok((
                        Some(false),
                        Some(0),
                        Some(cp.position as i64),
                        Some(
                            "chain rewritten: the trusted head's position holds a different hash"
                                .into(),
                        ),
                    ));
                }
            }
            (cp.position + 1, cp.hash)
        }
    };
    let trusted = trusted.filter(|t| t.position >= first);
    let receipts = tombstone_receipts(first as i64)?;
    let report = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| -> Result<_, AegisError> {
                let mut cursor = client.open_cursor(
                "SELECT c.position, c.chain_hash, l.entry_hash, l.data_digest, l.erased_at IS NOT NULL, \
                        pg_catalog.convert_to(l.operation, 'UTF8'), pg_catalog.convert_to(l.table_name, 'UTF8'), \
                        pg_catalog.convert_to(l.db_user, 'UTF8'), pg_catalog.convert_to(l.session_user_name, 'UTF8'), \
                        pg_catalog.convert_to(l.application_name, 'UTF8'), \
                        pg_catalog.convert_to(NULLIF(pg_catalog.format('%s', l.client_addr), ''), 'UTF8'), \
                        l.backend_pid, l.xid::pg_catalog.text::pg_catalog.int8, \
                        (EXTRACT(EPOCH FROM l.statement_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
                          OPERATOR(pg_catalog.-) 946684800000000, \
                        pg_catalog.convert_to(l.pk::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.old_row::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.new_row::pg_catalog.text, 'UTF8'), \
                        pg_catalog.convert_to(l.detail::pg_catalog.text, 'UTF8'), l.id \
                 FROM aegis.audit_chain c \
                 JOIN aegis.audit_log l ON l.xid OPERATOR(pg_catalog.=) c.entry_xid \
                      AND l.id OPERATOR(pg_catalog.=) c.entry_id \
                 WHERE c.position OPERATOR(pg_catalog.>=) $1 \
                 ORDER BY c.position",
                &[(first as i64).into()],
            );
                // Streamed batch by batch: memory stays flat however long the
                // chain is.
                let mut failed: Option<AegisError> = None;
                let mut batch: std::collections::VecDeque<Stored> = Default::default();
                let entries = std::iter::from_fn(|| loop {
                    if let Some(s) = batch.pop_front() {
                        return Some(s);
                    }
                    if failed.is_some() {
                        return None;
                    }
                    match cursor.fetch(10_000) {
                        Ok(rows) if rows.is_empty() => return None,
                        Ok(rows) => {
                            for row in rows {
                                match stored_from_row(&row, &receipts) {
                                    Ok(s) => batch.push_back(s),
                                    Err(e) => {
                                        failed = Some(e);
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => failed = Some(spi_error(e)),
                    }
                });
                let report = core_audit::verify(entries, first, prev, trusted);
                match failed {
                    Some(e) => Err(e),
                    None => Ok(report),
                }
            })
        })
    })?;
    let r = report;
    let (ok, checked, pos, problem) = if r.ok {
        // Entries outside the chain that sealing will never pick up: their
        // transactions ended before the horizon, or never ran (a
        // transaction id not assigned yet, or one that aborted, whose own
        // entries no one could see): inserted by hand. An entry is chained
        // only under its own (xid, id): a row that reuses a chained entry's
        // id with another xid is outside the chain too.
        let orphan: Option<i64> = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one(
                    "SELECT (SELECT l.id FROM aegis.audit_log l \
                     WHERE NOT EXISTS \
                     (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id OPERATOR(pg_catalog.=) l.id \
                        AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                        AND c.position OPERATOR(pg_catalog.>=) $1) \
                       AND NOT aegis.entry_may_be_pending(l.xid) \
                     ORDER BY l.id LIMIT 1)",
                    &[(first as i64).into()],
                )
                .map_err(spi_error)
            })
        })?;
        // Chain rows below the verified range: pruning removes them with
        // their entries, so one there was put there by hand (an entry
        // "chained" where no verification walks).
        let below: Option<i64> = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one(
                    "SELECT (SELECT c.position FROM aegis.audit_chain c \
                     WHERE c.position OPERATOR(pg_catalog.<) $1 ORDER BY c.position LIMIT 1)",
                    &[(first as i64).into()],
                )
                .map_err(spi_error)
            })
        })?;
        if let Some(p) = below {
            return Ok((
                Some(false),
                Some(r.entries_checked as i64),
                Some(p),
                Some(format!(
                    "chain row at position {p}, below the verified range (which starts at {first}): added by hand"
                )),
            ));
        }
        match orphan {
            Some(id) => (
                false,
                r.entries_checked,
                None,
                Some(format!(
                    "entry inserted outside the chain: audit_log id {id} belongs to no position"
                )),
            ),
            None => (true, r.entries_checked, None, None),
        }
    } else {
        (
            false,
            r.entries_checked,
            r.first_bad_position.map(|p| p as i64),
            r.problem.map(|p| p.describe()),
        )
    };
    Ok((Some(ok), Some(checked as i64), pos, problem))
}

/// What erasure receipts say tombstoned entries hold now: (xid, id) → the
/// data digest of their tombstoned content. Receipts are the "tombstoned"
/// lists of ERASURE entries (erase_subject) and TOMBSTONES entries (the
/// 0.6.0 update's attestation of entries erased before it), taken only from
/// receipts that are in the chain or may still be waiting for it (see
/// aegis.entry_may_be_pending) and whose own data still matches their
/// stored digest; a later receipt for the same entry replaces an earlier
/// one.
fn tombstone_receipts(first: i64) -> Result<HashMap<(i64, i64), [u8; 32]>, AegisError> {
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let mut out = HashMap::new();
                for row in client
                    .select(
                        "SELECT pg_catalog.convert_to(l.pk::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.old_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.new_row::pg_catalog.text, 'UTF8'), \
                                pg_catalog.convert_to(l.detail::pg_catalog.text, 'UTF8'), l.data_digest \
                         FROM aegis.audit_log l \
                         WHERE l.operation OPERATOR(pg_catalog.=) ANY ('{ERASURE,TOMBSTONES}') \
                           AND l.detail OPERATOR(pg_catalog.?) 'tombstoned' \
                           AND (EXISTS (SELECT 1 FROM aegis.audit_chain c \
                                        WHERE c.entry_id OPERATOR(pg_catalog.=) l.id \
                                          AND c.entry_xid OPERATOR(pg_catalog.=) l.xid \
                                          AND c.position OPERATOR(pg_catalog.>=) $1) \
                                OR aegis.entry_may_be_pending(l.xid)) \
                         ORDER BY l.statement_time, l.xid, l.id",
                        None,
                        &[first.into()],
                    )
                    .map_err(spi_error)?
                {
                    let text = |i: usize| -> Result<Option<String>, AegisError> {
                        Ok(row
                            .get::<Vec<u8>>(i)
                            .map_err(spi_error)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned()))
                    };
                    let (pk, old, new, detail) = (text(1)?, text(2)?, text(3)?, text(4)?);
                    let stored = hash32(row.get(5).map_err(spi_error)?);
                    if data_digest_of(pk.as_deref(), old.as_deref(), new.as_deref(), detail.as_deref())
                        != stored
                    {
                        continue;
                    }
                    let doc: serde_json::Value =
                        serde_json::from_str(detail.as_deref().unwrap_or("null")).unwrap_or_default();
                    for t in doc["tombstoned"].as_array().into_iter().flatten() {
                        let xid = t[0].as_str().and_then(|x| x.parse::<i64>().ok());
                        let id = t[1].as_i64();
                        let digest = t[2].as_str().and_then(|h| hex::decode(h).ok());
                        if let (Some(xid), Some(id), Some(d)) = (xid, id, digest) {
                            if let Ok(d) = <[u8; 32]>::try_from(d.as_slice()) {
                                out.insert((xid, id), d);
                            }
                        }
                    }
                }
                Ok(out)
            })
        })
    })
}

/// The data digest of an entry's stored data (as the verifier reads it).
pub(crate) fn data_digest_of(
    pk: Option<&str>,
    old: Option<&str>,
    new: Option<&str>,
    detail: Option<&str>,
) -> [u8; 32] {
    core_audit::data_digest(&[
        ("pk", core_audit::opt_json(pk)),
        ("old_row", core_audit::opt_json(old)),
        ("new_row", core_audit::opt_json(new)),
        ("detail", core_audit::opt_json(detail)),
    ])
    .unwrap_or([0xff; 32])
}

fn stored_from_row(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    receipts: &HashMap<(i64, i64), [u8; 32]>,
) -> Result<Stored, AegisError> {
    let bytes = |i: usize| -> Result<Option<String>, AegisError> {
        Ok(row
            .get::<Vec<u8>>(i)
            .map_err(spi_error)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let position: i64 = row.get(1).map_err(spi_error)?.unwrap_or(0);
    let chain_hash = hash32(row.get(2).map_err(spi_error)?);
    let entry_hash = hash32(row.get(3).map_err(spi_error)?);
    let stored_digest = hash32(row.get(4).map_err(spi_error)?);
    let erased: bool = row.get(5).map_err(spi_error)?.unwrap_or(false);
    let (op, table, user, session, app, addr) = (
        bytes(6)?,
        bytes(7)?,
        bytes(8)?,
        bytes(9)?,
        bytes(10)?,
        bytes(11)?,
    );
    let pid: i32 = row.get(12).map_err(spi_error)?.unwrap_or(0);
    let xid: i64 = row.get(13).map_err(spi_error)?.unwrap_or(0);
    let stmt: i64 = row.get(14).map_err(spi_error)?.unwrap_or(0);
    let (pk, old, new, detail) = (bytes(15)?, bytes(16)?, bytes(17)?, bytes(18)?);
    let entry = Entry {
        operation: op.as_deref().unwrap_or(""),
        table_name: table.as_deref(),
        db_user: user.as_deref().unwrap_or(""),
        session_user: session.as_deref().unwrap_or(""),
        application_name: app.as_deref(),
        client_addr: addr.as_deref(),
        backend_pid: pid,
        xid,
        statement_time: stmt,
        pk: core_audit::opt_json(pk.as_deref()),
        old_row: core_audit::opt_json(old.as_deref()),
        new_row: core_audit::opt_json(new.as_deref()),
        detail: core_audit::opt_json(detail.as_deref()),
    };
    // An erased entry's data is a tombstone: its stored digest stands in,
    // and an erasure receipt must account for what it holds now.
    let id: i64 = row.get(19).map_err(spi_error)?.unwrap_or(0);
    let current = entry.data_digest().unwrap_or([0xff; 32]);
    let (digest, tombstone_accounted) = if erased {
        (stored_digest, receipts.get(&(xid, id)) == Some(&current))
    } else {
        (current, true)
    };
    let recomputed = entry.entry_hash(&digest).unwrap_or([0xff; 32]);
    Ok(Stored {
        position: position as u64,
        entry_hash,
        recomputed,
        chain_hash,
        tombstone_accounted,
    })
}

/// `aegis.verify_chain() → TABLE(ok, entries_checked, first_bad_position, problem)`
// The row type is spelled out in both signatures: pgrx's SQL generator does
// not resolve a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, sql = false)]
fn verify_chain() -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(entries_checked, Option<i64>),
        name!(first_bad_position, Option<i64>),
        name!(problem, Option<String>),
    ),
> {
    TableIterator::once(verify_impl(None).unwrap_or_else(|e| raise(e)))
}

/// `aegis.verify_chain(trusted_head jsonb)`
#[allow(clippy::type_complexity)]
#[pg_extern(stable, sql = false)]
fn verify_chain_trusted(
    trusted_head: pgrx::JsonB,
) -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(entries_checked, Option<i64>),
        name!(first_bad_position, Option<i64>),
        name!(problem, Option<String>),
    ),
> {
    let run = || -> Result<VerifyRow, AegisError> {
        let head = parse_head(&trusted_head.0)?;
        if !head_signature_ok(&head)? {
            return Ok((
                Some(false),
                Some(0),
                Some(head.position as i64),
                Some("trusted head's signature does not verify: not issued by this database's audit_head key".into()),
            ));
        }
        verify_impl(Some(TrustedHead {
            position: head.position,
            chain_hash: head.hash,
        }))
    };
    TableIterator::once(run().unwrap_or_else(|e| raise(e)))
}

struct Head {
    position: u64,
    hash: [u8; 32],
    time_us: i64,
    signature: Option<[u8; 32]>,
}

fn parse_head(v: &serde_json::Value) -> Result<Head, AegisError> {
    let bad = |what: &str| AegisError::BadHead {
        reason: what.to_string(),
    };
    let position = v
        .get("position")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("\"position\" must be a positive integer"))?;
    let hex32 = |key: &str| -> Result<Option<[u8; 32]>, AegisError> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(s) => {
                let s = s
                    .as_str()
                    .ok_or_else(|| bad(&format!("\"{key}\" must be a string")))?;
                let b =
                    hex::decode(s).map_err(|_| bad(&format!("\"{key}\" must be 64 hex digits")))?;
                let a: [u8; 32] = b
                    .try_into()
                    .map_err(|_| bad(&format!("\"{key}\" must be 64 hex digits")))?;
                Ok(Some(a))
            }
        }
    };
    let hash = hex32("hash")?.ok_or_else(|| bad("\"hash\" is missing"))?;
    let time_us = v
        .get("time_us")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| bad("\"time_us\" must be an integer"))?;
    Ok(Head {
        position,
        hash,
        time_us,
        signature: hex32("signature")?,
    })
}

pub(crate) fn head_mac(
    position: u64,
    hash: &[u8; 32],
    time_us: i64,
) -> Result<[u8; 32], AegisError> {
    let msg = core_audit::head_message(position, hash, time_us);
    keyring::purpose_mac(HEAD_KEY, core_audit::HEAD_KEY_LABEL, &msg)
}

fn signature_matches(expected: &[u8; 32], got: &[u8; 32]) -> bool {
    // Constant time is not needed for a public value, but costs nothing.
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |a, (x, y)| a | (x ^ y))
        == 0
}

fn head_signature_ok(h: &Head) -> Result<bool, AegisError> {
    let Some(sig) = h.signature else {
        return Err(AegisError::BadHead {
            reason: "\"signature\" is missing".into(),
        });
    };
    Ok(signature_matches(
        &head_mac(h.position, &h.hash, h.time_us)?,
        &sig,
    ))
}

/// `aegis.chain_head() → jsonb`
#[pg_extern(volatile, sql = false)]
fn chain_head() -> AegisResult<pgrx::JsonB> {
    let row = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(
                |client| -> Result<Option<(i64, [u8; 32], i64)>, AegisError> {
                    let t = client
                .select(
                    "SELECT position, chain_hash, (EXTRACT(EPOCH FROM pg_catalog.now()) \
                     OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 OPERATOR(pg_catalog.-) 946684800000000, \
                     pg_catalog.now()::pg_catalog.text \
                     FROM aegis.audit_chain ORDER BY position DESC LIMIT 1",
                    None,
                    &[],
                )
                .map_err(spi_error)?;
                    if t.is_empty() {
                        return Ok(None);
                    }
                    let r = t.first();
                    Ok(Some((
                        r.get::<i64>(1).map_err(spi_error)?.unwrap_or(0),
                        hash32(r.get(2).map_err(spi_error)?),
                        r.get::<i64>(3).map_err(spi_error)?.unwrap_or(0),
                    )))
                },
            )
        })
    })?;
    let Some((position, hash, time_us)) = row else {
        return Err(AegisError::EmptyChain.into());
    };
    let sig = head_mac(position as u64, &hash, time_us)?;
    Ok(pgrx::JsonB(serde_json::json!({
        "position": position,
        "hash": hex::encode(hash),
        "time_us": time_us,
        "time": core_audit::image::timestamp_utc(time_us),
        "key": HEAD_KEY,
        "signature": hex::encode(sig),
    })))
}

// ---------------------------------------------------------------------------
// Entries pg_aegis writes itself: DDL records, baselines
// ---------------------------------------------------------------------------

/// `aegis.audit_event(operation, table_name, detail)`: internal (no grants);
/// the DDL guard records a superuser's change with it.
#[pg_extern(volatile, sql = false)]
fn audit_event(
    operation: Option<&str>,
    table_name: Option<&str>,
    detail: Option<pgrx::JsonB>,
) -> AegisResult<()> {
    let operation = operation.ok_or(AegisError::NullArgument { what: "operation" })?;
    let detail = detail
        .map(|d| Doc::from_json(&d.0.to_string()))
        .transpose()?;
    write_entry(&NewEntry {
        operation,
        table_name,
        pk: None,
        old_row: None,
        new_row: None,
        detail: detail.as_ref(),
    })?;
    Ok(())
}

/// The leaf relations of a table's partition tree (the table itself when it
/// is not partitioned).
fn leaf_relations(tbl: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>, AegisError> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client
            .select(
                // Every relation with rows that the table shows: itself,
                // its partitions, and its inheritance children (rows
                // written there never passed the table's capture trigger).
                "WITH RECURSIVE t(relid) AS (SELECT $1 UNION \
                   SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent OPERATOR(pg_catalog.=) t.relid) \
                 SELECT t.relid FROM t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid \
                 WHERE c.relkind OPERATOR(pg_catalog.=) 'r'",
                None,
                &[tbl.into()],
            )
            .map_err(spi_error)?
        {
            if let Some(o) = row.get::<pg_sys::Oid>(1).map_err(spi_error)? {
                out.push(o);
            }
        }
        Ok(out)
    })
}

/// Run `f` on every live tuple (in the active snapshot) of every leaf of
/// `tbl`, with that leaf's plan and descriptor.
fn for_each_row(
    tbl: pg_sys::Oid,
    mut f: impl FnMut(&RelPlan, pg_sys::TupleDesc, pg_sys::HeapTuple) -> Result<(), AegisError>,
) -> Result<(), AegisError> {
    for leaf in leaf_relations(tbl)? {
        // SAFETY: the relation is opened with a read lock for the scan and
        // closed after it; tuples are valid until the next heap_getnext.
        unsafe {
            let rel = pg_sys::table_open(leaf, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let plan = plan_for(rel)?;
            let scan = pg_sys::heap_beginscan(
                rel,
                pg_sys::GetActiveSnapshot(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                pg_sys::ScanOptions::SO_TYPE_SEQSCAN
                    | pg_sys::ScanOptions::SO_ALLOW_STRAT
                    | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE,
            );
            let mut result = Ok(());
            loop {
                let t = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if t.is_null() {
                    break;
                }
                result = f(&plan, (*rel).rd_att, t);
                if result.is_err() {
                    break;
                }
                pgrx::check_for_interrupts!();
            }
            pg_sys::heap_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            result?;
        }
    }
    Ok(())
}

/// `aegis.audit_baseline(tbl) → bigint`: internal (no grants; enforce_rls()
/// calls it once, when it starts protecting a table): each existing row
/// becomes a BASELINE entry, the starting point verify_table() compares to.
#[pg_extern(volatile, sql = false)]
fn audit_baseline(tbl: pg_sys::Oid) -> AegisResult<i64> {
    Ok(audit_baseline_impl(tbl)?)
}

pub(crate) fn audit_baseline_impl(tbl: pg_sys::Oid) -> Result<i64, AegisError> {
    let mut n = 0i64;
    let pseudonyms = pseudonyms_available();
    for_each_row(tbl, |plan, tupdesc, tuple| {
        // SAFETY: a live tuple of the scanned leaf.
        let img = unsafe { images(plan, tupdesc, tuple, pseudonyms) }?;
        write_entry(&NewEntry {
            operation: "BASELINE",
            table_name: Some(&plan.table_name),
            pk: img.pk.as_ref(),
            old_row: None,
            new_row: Some(&img.row),
            detail: None,
        })?;
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// The latest entry for one key.
struct Latest {
    id: i64,
    operation: String,
    new_row: Option<Vec<u8>>,
}

fn verify_table_impl(tbl: pg_sys::Oid) -> Result<VerifyTableRow, AegisError> {
    // SAFETY: opens the table only to plan it (lock kept to the end).
    let plan = unsafe {
        let rel = pg_sys::table_open(tbl, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let name = relation_name(rel);
        let protected = with_safe_search_path(|| {
            as_extension_owner(|| {
                crate::spi::get_one::<bool>(
                    "SELECT EXISTS (SELECT 1 FROM aegis.rls_enforced \
                     WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)",
                    &[tbl.into()],
                )
                .map_err(spi_error)
            })
        })?;
        if protected != Some(true) {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Err(AegisError::NotProtected { table: name });
        }
        let plan = plan_for(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        plan?
    };
    if !plan.has_pk {
        return Err(AegisError::NoPrimaryKey {
            table: plan.table_name.clone(),
        });
    }
    // The latest entry per key since the table was last truncated whole, in
    // statement order (then transaction and entry order).
    let mut latest: HashMap<Vec<u8>, Latest> = HashMap::new();
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let rows = client
                    .select(
                        "WITH t AS (SELECT l.statement_time, l.xid, l.id FROM aegis.audit_log l \
                           WHERE l.table_name OPERATOR(pg_catalog.=) $1 \
                             AND l.operation OPERATOR(pg_catalog.=) 'TRUNCATE' AND l.detail IS NULL \
                           ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1) \
                         SELECT DISTINCT ON (l.pk) pg_catalog.convert_to(l.pk::pg_catalog.text, 'UTF8'), \
                                l.id, l.operation, pg_catalog.convert_to(l.new_row::pg_catalog.text, 'UTF8') \
                         FROM aegis.audit_log l \
                         WHERE l.table_name OPERATOR(pg_catalog.=) $1 AND l.pk IS NOT NULL \
                           AND NOT EXISTS (SELECT 1 FROM t WHERE (t.statement_time, t.xid, t.id) \
                               OPERATOR(pg_catalog.>=) (l.statement_time, l.xid, l.id)) \
                         ORDER BY l.pk, l.statement_time DESC, l.xid DESC, l.id DESC",
                        None,
                        &[plan.table_name.as_str().into()],
                    )
                    .map_err(spi_error)?;
                for row in rows {
                    let pk: Vec<u8> = row.get(1).map_err(spi_error)?.unwrap_or_default();
                    let new_row: Option<Vec<u8>> = row.get(4).map_err(spi_error)?;
                    let canon = |b: &[u8]| -> Result<Vec<u8>, AegisError> {
                        let mut out = Vec::new();
                        core_audit::encode_value(
                            &Value::Json(&String::from_utf8_lossy(b)),
                            &mut out,
                        )?;
                        Ok(out)
                    };
                    latest.insert(
                        canon(&pk)?,
                        Latest {
                            id: row.get(2).map_err(spi_error)?.unwrap_or(0),
                            operation: row.get(3).map_err(spi_error)?.unwrap_or_default(),
                            new_row: new_row.map(|b| canon(&b)).transpose()?,
                        },
                    );
                }
                Ok::<_, AegisError>(())
            })
        })
    })?;
    let mut checked = 0i64;
    let mut mismatches = 0i64;
    let mut first: Option<(serde_json::Value, String)> = None;
    let mut note = |pk: serde_json::Value, problem: String, first: &mut Option<_>| {
        mismatches += 1;
        if first.is_none() {
            *first = Some((pk, problem));
        }
    };
    let pk_json = |doc: &Doc| -> serde_json::Value {
        // SAFETY: a jsonb datum we built.
        let text = unsafe { output_text(pg_sys::Oid::from(pg_sys::F_JSONB_OUT), doc.datum) };
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    };
    let pseudonyms = pseudonyms_available();
    for_each_row(tbl, |plan, tupdesc, tuple| {
        checked += 1;
        // SAFETY: a live tuple of the scanned leaf.
        let img = unsafe { images(plan, tupdesc, tuple, pseudonyms) }?;
        let Some(pk) = img.pk.as_ref() else {
            // A leaf without the table's key: an inheritance child, whose
            // rows were written around the table's capture trigger.
            note(
                serde_json::json!({ "table": plan.table_name }),
                format!(
                    "row of {} (an inheritance child without the table's key): not written through the table's capture trigger",
                    plan.table_name
                ),
                &mut first,
            );
            return Ok(());
        };
        match latest.remove(&pk.canonical) {
            None => note(pk_json(pk), "row has no audit entry".into(), &mut first),
            Some(l) if l.operation == "DELETE" => note(
                pk_json(pk),
                format!(
                    "row was deleted in the audit trail (entry {}) but is present",
                    l.id
                ),
                &mut first,
            ),
            Some(l) if l.new_row.as_deref() != Some(img.row.canonical.as_slice()) => {
                // An entry written before the pseudonym key existed holds
                // `[PII]` where the row now gives a pseudonym: compare the
                // row rendered that way too.
                let matches_plain = pseudonyms && {
                    // SAFETY: as above.
                    let plain = unsafe { images(plan, tupdesc, tuple, false) }?;
                    l.new_row.as_deref() == Some(plain.row.canonical.as_slice())
                };
                if !matches_plain {
                    note(
                        pk_json(pk),
                        format!("row differs from its latest audit entry {}", l.id),
                        &mut first,
                    );
                }
            }
            Some(_) => {}
        }
        Ok(())
    })?;
    // Keys the trail says exist but the table does not have.
    let mut missing: Vec<&Latest> = latest
        .values()
        .filter(|l| l.operation != "DELETE")
        .collect();
    missing.sort_by_key(|l| l.id);
    for l in missing {
        note(
            serde_json::json!({ "entry_id": l.id }),
            format!("row of audit entry {} is missing from the table", l.id),
            &mut first,
        );
    }
    let (first_mismatch, problem) = match first {
        Some((pk, p)) => (
            Some(pgrx::JsonB(serde_json::json!({ "key": pk, "problem": p }))),
            Some(p),
        ),
        None => (None, None),
    };
    Ok((
        Some(mismatches == 0),
        Some(checked),
        Some(mismatches),
        first_mismatch,
        problem,
    ))
}

type VerifyTableRow = (
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<pgrx::JsonB>,
    Option<String>,
);

/// `aegis.verify_table(tbl) → TABLE(ok, rows_checked, mismatches, first_mismatch, problem)`
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, sql = false)]
fn verify_table(
    tbl: pg_sys::Oid,
) -> TableIterator<
    'static,
    (
        name!(ok, Option<bool>),
        name!(rows_checked, Option<i64>),
        name!(mismatches, Option<i64>),
        name!(first_mismatch, Option<pgrx::JsonB>),
        name!(problem, Option<String>),
    ),
> {
    match verify_table_impl(tbl) {
        Ok(row) => TableIterator::once(row),
        Err(e) => raise(e),
    }
}
