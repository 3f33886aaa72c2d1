//! Digests and HMACs, pgcrypto-compatible. The SQL declarations are
//! hand-written in sql/10_crypto.sql (`sql = false` here): the argument must be
//! named `type`, and the text variants bind the same C symbols as the bytea
//! ones, as pgcrypto does, so text is hashed as its raw bytes in the database
//! encoding, with no conversion.

use crate::error::{AegisError, AegisResult};
use crate::guc;
use aegis_core::hash::HashAlgorithm;
use pgrx::prelude::*;

// `type` is SQL text but read as raw bytes (text and bytea are both varlena):
// no UTF-8 check that could fail with an internal message in a non-UTF-8
// database; an unknown name is reported as such.
fn resolve(name: &[u8]) -> AegisResult<HashAlgorithm> {
    Ok(HashAlgorithm::resolve(name, guc::allow_legacy_hashes()).map_err(AegisError::from)?)
}

/// `aegis.digest(data bytea, type text) → bytea`
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn digest_bytea(data: &[u8], algorithm: &[u8]) -> AegisResult<Vec<u8>> {
    Ok(resolve(algorithm)?.digest(data))
}

/// `aegis.hmac(data bytea, key bytea, type text) → bytea`
#[pg_extern(immutable, strict, parallel_safe, sql = false)]
fn hmac_bytea(data: &[u8], key: &[u8], algorithm: &[u8]) -> AegisResult<Vec<u8>> {
    Ok(resolve(algorithm)?.hmac(key, data))
}

#[cfg(any(test, feature = "pg_test"))]
// In-backend tests may assign xids freely.
#[allow(clippy::disallowed_methods)]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn digest_text_and_bytea_agree() {
        let t = Spi::get_one::<Vec<u8>>("SELECT aegis.digest('abc'::text, 'sha256')").unwrap();
        let b =
            Spi::get_one::<Vec<u8>>("SELECT aegis.digest('\\x616263'::bytea, 'SHA-256')").unwrap();
        assert_eq!(t, b);
        assert_eq!(
            hex::encode(t.unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[pg_test]
    fn hmac_text_variant_binds_raw_bytes() {
        let v = Spi::get_one::<Vec<u8>>(
            "SELECT aegis.hmac('what do ya want for nothing?', 'Jefe', 'sha256')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            hex::encode(v),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[pg_test]
    fn null_in_null_out() {
        assert_eq!(
            Spi::get_one::<Vec<u8>>("SELECT aegis.digest(NULL::bytea, 'sha256')").unwrap(),
            None
        );
        assert_eq!(
            Spi::get_one::<Vec<u8>>("SELECT aegis.hmac('x'::text, NULL, 'sha256')").unwrap(),
            None
        );
    }

    #[pg_test(error = "unsupported hash algorithm \"whirlpool\"")]
    fn unknown_algorithm_is_an_error() {
        let _ = Spi::get_one::<Vec<u8>>("SELECT aegis.digest('x'::text, 'whirlpool')");
    }

    #[pg_test(error = "hash algorithm \"md5\" is disabled: it is cryptographically broken")]
    fn legacy_hashes_refused_by_default() {
        let _ = Spi::get_one::<Vec<u8>>("SELECT aegis.digest('abc'::text, 'md5')");
    }

    #[pg_test]
    fn legacy_hashes_allowed_when_superuser_opts_in() {
        Spi::run("SET LOCAL aegis.allow_legacy_hashes = on").unwrap();
        let v = Spi::get_one::<Vec<u8>>("SELECT aegis.digest('abc'::text, 'md5')")
            .unwrap()
            .unwrap();
        assert_eq!(hex::encode(v), "900150983cd24fb0d6963f7d28e17f72");
        let v = Spi::get_one::<Vec<u8>>("SELECT aegis.hmac('abc'::text, 'k', 'sha1')")
            .unwrap()
            .unwrap();
        assert_eq!(v.len(), 20);
    }

    #[pg_test]
    fn library_is_preloaded_in_the_test_server() {
        let v =
            Spi::get_one::<String>("SELECT value FROM aegis.build_info() WHERE item = 'preloaded'")
                .unwrap();
        assert_eq!(v.as_deref(), Some("true"));
    }
}
