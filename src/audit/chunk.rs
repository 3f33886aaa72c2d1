//! Image chunks: the row images of a multi-row statement written as few
//! entries, not one per row. A chunk entry carries the statement's context
//! once and the images of up to `CHUNK_ROWS` rows as JSON arrays (`pk`,
//! `old_row`, `new_row`: item i is row i, `null` where the row has none),
//! `detail` = `{"rows": n}`. Large arrays are compressed by TOAST, which
//! the repeated keys of a table's images suit well.
//!
//! Nothing else changes: the data digest hashes the arrays' canonical
//! encoding as it hashes an object's (`verify_chain()` reads them back the
//! same way), erasure scrubs values inside the arrays in place (other rows'
//! images stay), and a statement that changed one row still writes the
//! one-row entry (objects, no `rows`).

use super::*;

/// Rows per chunk entry at most.
const CHUNK_ROWS: usize = 1000;
/// Canonical bytes of images per chunk at most: memory stays bounded and a
/// chunk's jsonb far below jsonb's limits, whatever the rows hold.
const CHUNK_BYTES: usize = 8 << 20;

/// Switches back to the context that was current (errors included).
struct Back(pg_sys::MemoryContext);

impl Drop for Back {
    fn drop(&mut self) {
        // SAFETY: the context that was current before.
        unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
    }
}

/// One changed row's images.
struct RowImages {
    pk: Option<Doc>,
    old: Option<Doc>,
    new: Option<Doc>,
}

/// Collects the images of one statement's rows and writes them in chunks.
/// The images live in the chunk's own memory context until written.
pub(super) struct ImageChunks<'p> {
    op: &'p str,
    table_name: &'p str,
    context: pg_sys::MemoryContext,
    rows: Vec<RowImages>,
    bytes: usize,
}

impl<'p> ImageChunks<'p> {
    pub(super) fn new(op: &'p str, table_name: &'p str) -> Self {
        // SAFETY: a child of the current context (freed with it on error).
        let context = unsafe {
            pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pg_aegis image chunk".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            )
        };
        ImageChunks {
            op,
            table_name,
            context,
            rows: Vec::new(),
            bytes: 0,
        }
    }

    /// Build a row's images with `f` (in the chunk's memory context, where
    /// they stay until written) and add them; writes a chunk when full.
    pub(super) fn add(
        &mut self,
        f: impl FnOnce() -> Result<(Option<Images>, Option<Images>), AegisError>,
    ) -> Result<(), AegisError> {
        let (mut old, mut new) = {
            // SAFETY: our context is alive until drop.
            let _back = Back(unsafe { pg_sys::MemoryContextSwitchTo(self.context) });
            f()?
        };
        let pk = match new.as_mut() {
            Some(i) => i.pk.take(),
            None => old.as_mut().and_then(|i| i.pk.take()),
        };
        let size = |i: &Option<Images>| i.as_ref().map_or(0, |i| i.row.canonical.len());
        self.bytes += size(&old) + size(&new) + pk.as_ref().map_or(0, |p| p.canonical.len());
        self.rows.push(RowImages {
            pk,
            old: old.map(|i| i.row),
            new: new.map(|i| i.row),
        });
        if self.rows.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Write what is collected: one entry (a one-row entry for one row).
    pub(super) fn flush(&mut self) -> Result<(), AegisError> {
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let r = match rows.as_slice() {
            [] => Ok(()),
            [one] => write_entry(&NewEntry {
                operation: self.op,
                table_name: Some(self.table_name),
                pk: one.pk.as_ref(),
                old_row: one.old.as_ref(),
                new_row: one.new.as_ref(),
                detail: None,
                content_change: None,
            }),
            many => {
                // The arrays are built in our context too (reset below).
                // SAFETY: our context is alive until drop.
                let _back = Back(unsafe { pg_sys::MemoryContextSwitchTo(self.context) });
                // SAFETY: the images' datums are alive (our context).
                let arrays = unsafe {
                    (
                        doc_array(many, |r| r.pk.as_ref())?,
                        doc_array(many, |r| r.old.as_ref())?,
                        doc_array(many, |r| r.new.as_ref())?,
                    )
                };
                let detail = Doc::from_json(&format!("{{\"rows\":{}}}", many.len()))?;
                write_entry(&NewEntry {
                    operation: self.op,
                    table_name: Some(self.table_name),
                    pk: arrays.0.as_ref(),
                    old_row: arrays.1.as_ref(),
                    new_row: arrays.2.as_ref(),
                    detail: Some(&detail),
                    content_change: None,
                })
            }
        };
        drop(rows);
        // SAFETY: nothing allocated there is referenced any more.
        unsafe { pg_sys::MemoryContextReset(self.context) };
        r
    }
}

impl Drop for ImageChunks<'_> {
    fn drop(&mut self) {
        // SAFETY: ours; deleting it frees every image left (on error).
        unsafe { pg_sys::MemoryContextDelete(self.context) };
    }
}

/// The JSON array of the rows' documents (null items where a row has
/// none); None when no row has one.
///
/// # Safety
/// Every document's datum must be a live, untoasted jsonb.
unsafe fn doc_array(
    rows: &[RowImages],
    pick: impl Fn(&RowImages) -> Option<&Doc>,
) -> Result<Option<Doc>, AegisError> {
    if rows.iter().all(|r| pick(r).is_none()) {
        return Ok(None);
    }
    let mut canonical = core_audit::ArrayEncoder::new();
    let mut state = std::ptr::null_mut();
    // SAFETY: a new parse state in the current memory context; each item
    // is unpacked from its jsonb (pushJsonbValue copies what it needs to
    // point at, which stays alive until JsonbValueToJsonb).
    unsafe {
        pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY,
            std::ptr::null_mut(),
        );
        for r in rows {
            let mut v = match pick(r) {
                None => {
                    canonical.push(None)?;
                    jbv(pg_sys::jbvType::jbvNull)
                }
                Some(d) => {
                    canonical.push(Some(&d.canonical))?;
                    let jb = d.datum.cast_mut_ptr::<pg_sys::Jsonb>();
                    let mut v = jbv(pg_sys::jbvType::jbvBinary);
                    v.val.binary = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_4 {
                        len: (pgrx::varsize_any(jb.cast()) - pg_sys::VARHDRSZ) as i32,
                        data: std::ptr::addr_of_mut!((*jb).root),
                    };
                    v
                }
            };
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_ELEM, &mut v);
        }
        let v = pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_END_ARRAY,
            std::ptr::null_mut(),
        );
        Ok(Some(Doc {
            datum: pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(v)),
            canonical: canonical.finish(),
        }))
    }
}
