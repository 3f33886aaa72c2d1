//! Text in the server encoding <-> UTF-8.

use super::*;

pub(super) fn server_is_utf8() -> bool {
    // SAFETY: reads a backend global.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// Text from the server encoding as UTF-8 (images and hashes are UTF-8).
pub(super) fn to_utf8(bytes: &[u8]) -> Cow<'_, str> {
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
pub(super) fn to_server_cstring(s: &str) -> CString {
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
