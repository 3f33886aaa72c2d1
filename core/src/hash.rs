//! Message digests and HMACs, byte-compatible with pgcrypto's `digest()` and
//! `hmac()` so users can switch from pgcrypto without rewriting queries.
//!
//! Name resolution follows what pgcrypto (through OpenSSL 3) accepts for the
//! algorithms we support: case-insensitive `sha256`, `sha-256` and `sha2-256`
//! (likewise 224/384/512), and `md5`, `sha1`, `sha-1` for the legacy pair.
//! Names are matched exactly otherwise: no trimming, as pgcrypto does not trim.

use crate::CoreError;
use hmac::{Mac, SimpleHmac};
use sha2::Digest;

/// A hash algorithm pg_aegis implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    /// Broken; only with `aegis.allow_legacy_hashes`.
    Md5,
    /// Broken; only with `aegis.allow_legacy_hashes`.
    Sha1,
}

const ALL: [HashAlgorithm; 6] = [
    HashAlgorithm::Sha224,
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha384,
    HashAlgorithm::Sha512,
    HashAlgorithm::Md5,
    HashAlgorithm::Sha1,
];

impl HashAlgorithm {
    /// The canonical (pgcrypto) name.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha224 => "sha224",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha1 => "sha1",
        }
    }

    /// True for algorithms with practical collision attacks.
    pub fn is_legacy(self) -> bool {
        matches!(self, HashAlgorithm::Md5 | HashAlgorithm::Sha1)
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha224 => 28,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Sha1 => 20,
        }
    }

    /// Canonical names of the algorithms that are usable, for error hints.
    pub fn supported_names(include_legacy: bool) -> Vec<&'static str> {
        ALL.iter()
            .filter(|a| include_legacy || !a.is_legacy())
            .map(|a| a.name())
            .collect()
    }

    /// Resolve a user-supplied name (raw bytes, since SQL text may be in any
    /// server encoding). Legacy algorithms are refused unless `allow_legacy`.
    pub fn resolve(name: &[u8], allow_legacy: bool) -> Result<Self, CoreError> {
        let lower = name.to_ascii_lowercase();
        let found = match lower.as_slice() {
            b"sha224" | b"sha-224" | b"sha2-224" => Some(HashAlgorithm::Sha224),
            b"sha256" | b"sha-256" | b"sha2-256" => Some(HashAlgorithm::Sha256),
            b"sha384" | b"sha-384" | b"sha2-384" => Some(HashAlgorithm::Sha384),
            b"sha512" | b"sha-512" | b"sha2-512" => Some(HashAlgorithm::Sha512),
            b"md5" => Some(HashAlgorithm::Md5),
            b"sha1" | b"sha-1" => Some(HashAlgorithm::Sha1),
            _ => None,
        };
        // Shown in the error message: escape everything but printable ASCII,
        // since the bytes may be in any server encoding (or be control
        // characters meant to forge log lines).
        let display = name.escape_ascii().to_string();
        match found {
            None => Err(CoreError::UnknownHashAlgorithm { name: display }),
            Some(a) if a.is_legacy() && !allow_legacy => {
                Err(CoreError::LegacyHashAlgorithm { name: display })
            }
            Some(a) => Ok(a),
        }
    }

    /// The digest of `data`, identical to pgcrypto's `digest(data, name)`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha224 => sha2::Sha224::digest(data).to_vec(),
            HashAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
            HashAlgorithm::Md5 => md5::Md5::digest(data).to_vec(),
            HashAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        }
    }

    /// HMAC (RFC 2104) of `data` under `key`, identical to pgcrypto's
    /// `hmac(data, key, name)`. Any key length is valid, including empty.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<D>(key: &[u8], data: &[u8]) -> Vec<u8>
        where
            D: Digest + sha2::digest::core_api::BlockSizeUser,
        {
            // SimpleHmac accepts keys of every length (long keys are hashed,
            // short ones padded), so new_from_slice cannot fail.
            let Ok(mut mac) = SimpleHmac::<D>::new_from_slice(key) else {
                unreachable!("HMAC accepts keys of any length")
            };
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            HashAlgorithm::Sha224 => run::<sha2::Sha224>(key, data),
            HashAlgorithm::Sha256 => run::<sha2::Sha256>(key, data),
            HashAlgorithm::Sha384 => run::<sha2::Sha384>(key, data),
            HashAlgorithm::Sha512 => run::<sha2::Sha512>(key, data),
            HashAlgorithm::Md5 => run::<md5::Md5>(key, data),
            HashAlgorithm::Sha1 => run::<sha1::Sha1>(key, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hx(v: &[u8]) -> String {
        hex::encode(v)
    }

    // FIPS 180-2 "abc" vectors.
    #[test]
    fn digest_known_answers() {
        let a = |n: &str| HashAlgorithm::resolve(n.as_bytes(), true).unwrap();
        assert_eq!(
            hx(&a("sha224").digest(b"abc")),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        assert_eq!(
            hx(&a("sha256").digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hx(&a("sha384").digest(b"abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
        assert_eq!(
            hx(&a("sha512").digest(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hx(&a("md5").digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hx(&a("sha1").digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hx(&a("sha256").digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    // RFC 4231 test cases 1, 2 and 6 (key longer than the block size).
    #[test]
    fn hmac_rfc4231() {
        let s256 = HashAlgorithm::Sha256;
        assert_eq!(
            hx(&s256.hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hx(&s256.hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hx(&HashAlgorithm::Sha224.hmac(b"Jefe", b"what do ya want for nothing?")),
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"
        );
        assert_eq!(
            hx(&HashAlgorithm::Sha512.hmac(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
        );
        assert_eq!(
            hx(&HashAlgorithm::Sha384.hmac(b"Jefe", b"what do ya want for nothing?")),
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"
        );
    }

    #[test]
    fn names_resolve_like_pgcrypto() {
        for (n, want) in [
            ("sha256", HashAlgorithm::Sha256),
            ("SHA256", HashAlgorithm::Sha256),
            ("Sha-256", HashAlgorithm::Sha256),
            ("SHA2-256", HashAlgorithm::Sha256),
            ("sha-224", HashAlgorithm::Sha224),
            ("sha2-384", HashAlgorithm::Sha384),
            ("SHA512", HashAlgorithm::Sha512),
        ] {
            assert_eq!(HashAlgorithm::resolve(n.as_bytes(), false), Ok(want), "{n}");
        }
        for bad in [
            "",
            "sha256 ",
            " sha256",
            "sha3-256",
            "sha",
            "md4",
            "sha-512/256",
            "sha256\0",
        ] {
            assert!(
                matches!(
                    HashAlgorithm::resolve(bad.as_bytes(), true),
                    Err(CoreError::UnknownHashAlgorithm { .. })
                ),
                "{bad:?} must be unknown"
            );
        }
    }

    #[test]
    fn legacy_needs_opt_in() {
        for n in ["md5", "MD5", "sha1", "SHA-1"] {
            assert!(matches!(
                HashAlgorithm::resolve(n.as_bytes(), false),
                Err(CoreError::LegacyHashAlgorithm { .. })
            ));
            assert!(HashAlgorithm::resolve(n.as_bytes(), true).is_ok());
        }
    }

    #[test]
    fn errors_name_the_supported_types() {
        let e = HashAlgorithm::resolve(b"whirlpool", false).unwrap_err();
        assert_eq!(e.to_string(), "unsupported hash algorithm \"whirlpool\"");
        assert_eq!(
            e.hint(),
            Some("Supported types are sha224, sha256, sha384, sha512.".to_string())
        );
        // Non-ASCII or control bytes are escaped in the message, never passed through.
        let e = HashAlgorithm::resolve(b"sh\xe4256\n", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported hash algorithm \"sh\\xe4256\\n\""
        );
    }

    proptest! {
        #[test]
        fn output_lengths_hold(data in proptest::collection::vec(any::<u8>(), 0..2048),
                               key in proptest::collection::vec(any::<u8>(), 0..300)) {
            for a in ALL {
                prop_assert_eq!(a.digest(&data).len(), a.output_len());
                prop_assert_eq!(a.hmac(&key, &data).len(), a.output_len());
            }
        }

        // HMAC per RFC 2104 built from the digest itself: an independent oracle.
        #[test]
        fn hmac_matches_rfc2104_construction(data in proptest::collection::vec(any::<u8>(), 0..512),
                                             key in proptest::collection::vec(any::<u8>(), 0..300)) {
            for a in ALL {
                let block = match a { HashAlgorithm::Sha384 | HashAlgorithm::Sha512 => 128, _ => 64 };
                let mut k = if key.len() > block { a.digest(&key) } else { key.clone() };
                k.resize(block, 0);
                let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(data.iter().copied()).collect();
                let inner = a.digest(&ipad);
                let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
                prop_assert_eq!(a.hmac(&key, &data), a.digest(&opad));
            }
        }
    }
}
