//! Per-backend caches: OIDs of pg_aegis's tables, one plan per audited
//! relation (how each column enters the image), the read-audit targets.

use super::*;

/// How a column's value enters the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
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
pub(super) enum Render {
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
pub(super) struct Column {
    /// Index into the tuple descriptor.
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) render: Render,
    pub(super) class: Class,
    pub(super) in_pk: bool,
}

#[derive(Debug)]
pub(super) struct RelPlan {
    /// The protected (root) table's name, schema-qualified and quoted.
    pub(super) table_name: String,
    pub(super) columns: Vec<Column>,
    pub(super) has_pk: bool,
    pub(super) guarded: bool,
    /// May the capture trigger write entries for this relation: a table
    /// pg_aegis protects (or a partition of one), or one of its own
    /// catalogs. EXECUTE on the trigger functions is PUBLIC (an owner's new
    /// partition clones them), so attaching them elsewhere must do nothing
    /// but fail.
    pub(super) capturable: bool,
    /// The table's inserts are recorded as digests (`"audit_inserts":
    /// "digest"`), with its bucket column if it has one.
    pub(super) digest: Option<DigestPlan>,
}

/// How a digest-mode table's rows are grouped into buckets.
#[derive(Debug, Clone, Copy)]
pub(super) struct DigestPlan {
    /// The bucket column: index into the tuple descriptor, how its value
    /// is read, and the bucket width in the value's units; None: the whole
    /// table is one bucket.
    pub(super) bucket: Option<(usize, Render, i64)>,
    /// UPDATE and DELETE keep their row images (`"audit_images"`).
    pub(super) images: bool,
}

#[derive(Default)]
pub(super) struct Cache {
    pub(super) callback_registered: bool,
    pub(super) audit_log: Option<pg_sys::Oid>,
    pub(super) sequence: pg_sys::Oid,
    pub(super) catalog_relids: Vec<pg_sys::Oid>,
    pub(super) plans: HashMap<pg_sys::Oid, Rc<RelPlan>>,
    /// Whether the pseudonym key can be used (None: not checked yet).
    pub(super) pseudonyms: Option<bool>,
    pub(super) users: HashMap<pg_sys::Oid, Rc<str>>,
    pub(super) client_addr: Option<Option<String>>,
    /// Protected tables and partitions, for read auditing.
    pub(super) read_targets: Option<Rc<HashMap<pg_sys::Oid, ReadTarget>>>,
}

/// A relation whose reads may be audited.
#[derive(Debug)]
pub(crate) struct ReadTarget {
    /// The protected (root) table's name.
    pub table: String,
    /// Its policy asks for read auditing (`"audit_reads": true`).
    pub audit_reads: bool,
    /// Its policy's `"application_reads": "aggregate"`: the reads of its
    /// application roles are recorded as counts per interval.
    pub aggregate_application_reads: bool,
    /// Its application roles: the roles of its `aegis_application` policy
    /// (by OID, as row-level security sees them) whose names the policy's
    /// `"application_roles"` still gives.
    pub application_roles: Vec<pg_sys::Oid>,
}

thread_local! {
    pub(super) static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Relcache callback: a change to an audited table drops its plan; a change
/// to the classification, the protected-table list, the keyring or our own
/// tables (or a full reset) drops everything.
pub(super) unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
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
pub(super) unsafe extern "C-unwind" fn on_role_inval(
    _arg: pg_sys::Datum,
    _cacheid: i32,
    _hash: u32,
) {
    CACHE.with(|c| c.borrow_mut().users.clear());
}

pub(super) fn aegis_relid(name: &CStr) -> Result<pg_sys::Oid, AegisError> {
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
pub(super) fn audit_log_oids() -> Result<(pg_sys::Oid, pg_sys::Oid), AegisError> {
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

pub(super) fn render_for(typoid: pg_sys::Oid) -> Render {
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
pub(super) unsafe fn build_plan(rel: pg_sys::Relation) -> Result<RelPlan, AegisError> {
    let relid = unsafe { (*rel).rd_id };
    let (table_name, classes, pk, capturable, digest) = with_safe_search_path(|| {
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
                let digest = client
                    .select(
                        &format!(
                            "SELECT p.policy OPERATOR(pg_catalog.->>) 'audit_inserts', \
                                    p.policy OPERATOR(pg_catalog.#>>) '{{digest_buckets,column}}', \
                                    COALESCE((p.policy OPERATOR(pg_catalog.#>>) '{{digest_buckets,width}}')::pg_catalog.int8, 86400), \
                                    COALESCE(p.policy OPERATOR(pg_catalog.->>) 'audit_images', 'update_delete') \
                             FROM aegis.protected_tables p \
                             WHERE p.relid::pg_catalog.oid OPERATOR(pg_catalog.=) {root}"
                        ),
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                    .next()
                    .map(|row| -> Result<_, AegisError> {
                        let mode: Option<String> = row.get(1).map_err(spi_error)?;
                        let column: Option<String> = row.get(2).map_err(spi_error)?;
                        let width: Option<i64> = row.get(3).map_err(spi_error)?;
                        let images: Option<String> = row.get(4).map_err(spi_error)?;
                        Ok((mode.as_deref() == Some("digest"))
                            .then_some((column, width.unwrap_or(86_400), images.as_deref() != Some("none"))))
                    })
                    .transpose()?
                    .flatten();
                Ok((name, classes, pk, capturable, digest))
            })
        })
    })?;
    let mut columns = Vec::new();
    let mut bucket = None;
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
            if let Some((Some(col), width, _)) = &digest {
                if *col == name {
                    bucket = Some(bucket_spec(index, render, *width)?);
                }
            }
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
        digest: digest.map(|(_, _, images)| DigestPlan { bucket, images }),
    })
}

/// A bucket column's reading and width in its own units (microseconds for
/// timestamps, days for dates, the value for integers); `seconds` is the
/// policy's width (seconds for time columns, units for integer ones).
fn bucket_spec(
    index: usize,
    render: Render,
    seconds: i64,
) -> Result<(usize, Render, i64), AegisError> {
    let width = match render {
        Render::Int2 | Render::Int4 | Render::Int8 => seconds,
        Render::Timestamp | Render::TimestampTz => seconds.saturating_mul(1_000_000),
        Render::Date => (seconds / 86_400).max(1),
        _ => {
            return Err(internal(
                "the digest bucket column is not an integer, timestamp or date column",
            ))
        }
    };
    Ok((index, render, width.max(1)))
}

/// # Safety
/// `rel` must be an open relation.
pub(super) unsafe fn plan_for(rel: pg_sys::Relation) -> Result<Rc<RelPlan>, AegisError> {
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
pub(super) fn pseudonyms_available() -> bool {
    if let Some(v) = CACHE.with(|c| c.borrow().pseudonyms) {
        return v;
    }
    let ok = keyring::pseudonym(b"", PSEUDONYM_KEY).is_ok();
    CACHE.with(|c| c.borrow_mut().pseudonyms = Some(ok));
    ok
}
