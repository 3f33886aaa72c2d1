//! Row images: each row's jsonb image and its canonical encoding, built
//! together from the binary values.

use super::*;

/// # Safety
/// `out_fn` must be the output function of `d`'s type.
pub(super) unsafe fn output_text(out_fn: pg_sys::Oid, d: pg_sys::Datum) -> String {
    // SAFETY: per the contract; the result is a palloc'd C string.
    unsafe {
        let p = pg_sys::OidOutputFunctionCall(out_fn, d);
        to_utf8(CStr::from_ptr(p).to_bytes()).into_owned()
    }
}

/// Settings that change how values print, pinned while output functions of
/// "guarded" types run, so images never depend on the session.
pub(super) const FIXED_SETTINGS: [(&CStr, &CStr); 7] = [
    (c"DateStyle", c"ISO, YMD"),
    (c"TimeZone", c"UTC"),
    (c"IntervalStyle", c"iso_8601"),
    (c"extra_float_digits", c"3"),
    (c"bytea_output", c"hex"),
    // regclass, regtype, regproc ... print names relative to it; money
    // prints in the session's currency format.
    (c"search_path", c"pg_catalog"),
    (c"lc_monetary", c"C"),
];

/// A JSON document of an entry (row image, key, detail): its jsonb datum
/// and its canonical encoding, built together so the writer never renders
/// text and parses it back.
pub(crate) struct Doc {
    pub(super) datum: pg_sys::Datum,
    pub(super) canonical: Vec<u8>,
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

    pub(super) fn value(&self) -> Value<'_> {
        Value::Encoded(&self.canonical)
    }
}

/// A jsonb object built member by member (no JSON text, no parser): the
/// pairs are collected in Rust, sorted into jsonb's key order and converted
/// with one JsonbValueToJsonb call. String bytes live in the builder until
/// then; keys point into the relation's plan, which outlives the builder
/// (`'k`). An embedded json/jsonb value goes through pushJsonbValue
/// instead, which can unpack it.
pub(super) struct JsonbObject<'k> {
    pub(super) pairs: Vec<pg_sys::JsonbPair>,
    /// Owned value bytes the pairs point into (heap buffers do not move).
    pub(super) bytes: Vec<Box<[u8]>>,
    pub(super) nested: bool,
    pub(super) keys: std::marker::PhantomData<&'k str>,
}

/// A JsonbValue with all-zero payload (a valid value of the plain C union).
pub(super) fn jbv(type_: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_,
        // SAFETY: all-zero is a valid value of this plain C union.
        val: unsafe { std::mem::zeroed() },
    }
}

/// A jbvString pointing at `s` (which must outlive its use).
pub(super) fn jbv_string(s: &[u8]) -> pg_sys::JsonbValue {
    let mut v = jbv(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: s.len() as i32,
        val: s.as_ptr().cast_mut().cast(),
    };
    v
}

impl<'k> JsonbObject<'k> {
    pub(super) fn new() -> Self {
        JsonbObject {
            pairs: Vec::with_capacity(16),
            bytes: Vec::with_capacity(16),
            nested: false,
            keys: std::marker::PhantomData,
        }
    }

    /// A string value, copied into the builder.
    pub(super) fn string(&mut self, s: &str) -> pg_sys::JsonbValue {
        let b: Box<[u8]> = s.as_bytes().into();
        let v = jbv_string(&b);
        self.bytes.push(b);
        v
    }

    /// Add one member (keys arrive unique).
    pub(super) fn push(&mut self, key: &'k str, v: &Scalar<'_>) {
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

    pub(super) fn finish(mut self) -> pg_sys::Datum {
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
    pub(super) fn finish_pushed(mut self) -> pg_sys::Datum {
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
pub(super) struct DocBuilder<'k> {
    pub(super) canonical: core_audit::ObjectEncoder,
    pub(super) jsonb: Option<JsonbObject<'k>>,
    pub(super) text: Option<ImageBuilder>,
}

impl<'k> DocBuilder<'k> {
    pub(super) fn new(utf8: bool) -> Self {
        DocBuilder {
            canonical: core_audit::ObjectEncoder::new(),
            jsonb: utf8.then(JsonbObject::new),
            text: (!utf8).then(ImageBuilder::new),
        }
    }

    pub(super) fn push(&mut self, key: &'k str, v: &Scalar<'_>) -> Result<(), AegisError> {
        self.canonical.push(key, v)?;
        if let Some(j) = self.jsonb.as_mut() {
            j.push(key, v);
        }
        if let Some(t) = self.text.as_mut() {
            t.push_scalar(key, v);
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Doc {
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
pub(super) struct Images {
    pub(super) row: Doc,
    pub(super) pk: Option<Doc>,
}

/// Render one column's value as a JSON cell and hand it to `sink`.
///
/// # Safety
/// `d` must be a non-null datum of the column's type.
pub(super) unsafe fn with_cell<R>(
    col: &Column,
    d: pg_sys::Datum,
    sink: impl FnOnce(&Cell<'_>) -> R,
) -> R {
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
pub(super) fn classified(col: &Column, cell: &Cell<'_>, pseudonyms: bool) -> Option<String> {
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
pub(super) unsafe fn images(
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
    // SAFETY: a deformed row of the relation.
    unsafe { images_of(plan, &values, &nulls, pseudonyms) }
}

/// The images of a row already deformed (a transition table's slot).
///
/// # Safety
/// `values`/`nulls` must be a deformed row of the relation `plan` is for.
pub(super) unsafe fn images_of(
    plan: &RelPlan,
    values: &[pg_sys::Datum],
    nulls: &[bool],
    pseudonyms: bool,
) -> Result<Images, AegisError> {
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
