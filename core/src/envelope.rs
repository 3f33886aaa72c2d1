//! AES-256-GCM envelopes and data-key wrapping: the byte formats behind
//! column encryption. Pure functions; key lookup, caching and authorization
//! live in the pgrx layer.
//!
//! # Envelope format, version 1
//!
//! ```text
//! offset  size  field
//!      0     3  magic "AEG" (0x41 0x45 0x47)
//!      3     1  format version (0x01)
//!      4    16  key id (UUID bytes)
//!     20     4  key version (u32, big-endian)
//!     24    12  nonce (random per envelope)
//!     36     n  ciphertext (n = plaintext length)
//!   36+n    16  GCM tag
//! ```
//!
//! The GCM associated data is the 24-byte header followed by one flag byte
//! (0 = no caller AAD, 1 = caller AAD follows) and the caller's AAD, so the
//! key id and version cannot be swapped, an envelope sealed with an AAD does
//! not open without it (or with an empty one), and vice versa. Overhead: 52
//! bytes per value.
//!
//! # Wrapped data key
//!
//! `nonce (12) ‖ AES-256-GCM(master key, data key) (32) ‖ tag (16)` = 60
//! bytes, with the key id and version (20 bytes) as associated data, so a
//! wrapped key cannot be moved to another keyring row.

use crate::CoreError;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const MAGIC: [u8; 3] = *b"AEG";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 24;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
/// Largest plaintext accepted: PostgreSQL's own 1 GB varlena limit minus the
/// envelope, far below GCM's 64 GiB per-nonce bound.
pub const MAX_PLAINTEXT: usize = (1 << 30) - 1 - OVERHEAD - 4;

/// A 256-bit key (data key or master key). Zeroed when dropped; never
/// printed (its Debug shows nothing of the key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CoreError> {
        let mut k = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut k)
            .map_err(|_| CoreError::RandomUnavailable)?;
        Ok(SecretKey(k))
    }

    /// Parse a master key given as 64 hex digits (surrounding ASCII
    /// whitespace, such as the newline a key file ends with, is ignored).
    /// Errors never echo the input.
    pub fn from_hex(text: &[u8]) -> Result<Self, CoreError> {
        let trimmed = text.trim_ascii();
        if trimmed.len() != 64 {
            return Err(CoreError::MasterKeyFormat {
                reason: format!("expected 64 hex digits, found {} characters", trimmed.len()),
            });
        }
        let mut k = Zeroizing::new([0u8; 32]);
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => k[i] = (h << 4) | l,
                _ => {
                    return Err(CoreError::MasterKeyFormat {
                        reason: "it contains a character that is not a hex digit".into(),
                    })
                }
            }
        }
        Ok(SecretKey(*k))
    }

    /// The raw bytes, for tests that search logs for leaked keys. Only with
    /// the `expose-key-for-tests` feature, which the extension never enables.
    #[cfg(feature = "expose-key-for-tests")]
    pub fn expose_for_tests(&self) -> &[u8; 32] {
        &self.0
    }

    /// The pseudonym key derived from this key for this purpose only
    /// (HMAC(key, "aegis pseudonym v1")), so a key that also encrypts never
    /// uses the same bytes for both jobs. Derive once, use many times.
    pub fn pseudonym_key(&self) -> PseudonymKey {
        self.purpose_key(b"aegis pseudonym v1")
    }

    /// A keyed HMAC state for one purpose, derived as HMAC(key, label).
    /// Different labels give unrelated keys.
    pub fn purpose_key(&self, label: &[u8]) -> PseudonymKey {
        let sub = Zeroizing::new(crate::hash::HashAlgorithm::Sha256.hmac(&self.0, label));
        // HMAC accepts keys of any length; the subkey is 32 bytes.
        let Ok(mac) = <Hmac<Sha256> as Mac>::new_from_slice(&sub) else {
            unreachable!("HMAC accepts 32-byte keys")
        };
        PseudonymKey(mac)
    }

    /// Shorthand for `self.pseudonym_key().pseudonym(value)`.
    pub fn pseudonym(&self, value: &[u8]) -> String {
        self.pseudonym_key().pseudonym(value)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// The expanded AES key, ready to seal and open many envelopes.
    pub fn data_cipher(&self) -> DataCipher {
        DataCipher(self.cipher())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An AES-256-GCM key schedule for one data key (what the backend caches).
#[derive(Clone)]
pub struct DataCipher(Aes256Gcm);

impl std::fmt::Debug for DataCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataCipher(..)")
    }
}

/// A keyed HMAC-SHA-256 state, ready to pseudonymize many values (the key
/// schedule is computed once).
#[derive(Clone)]
pub struct PseudonymKey(Hmac<Sha256>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A deterministic, non-reversible pseudonym of `value`: 32 hex digits
    /// (the first 128 bits of the MAC).
    pub fn pseudonym(&self, value: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(value);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The full 256-bit MAC of `msg` (signatures, where 128 bits of a
    /// pseudonym would be a needless truncation).
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
}

/// Which key (and version) an envelope was sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub id: [u8; 16],
    pub version: u32,
}

impl KeyRef {
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..3].copy_from_slice(&MAGIC);
        h[3] = FORMAT_VERSION;
        h[4..20].copy_from_slice(&self.id);
        h[20..24].copy_from_slice(&self.version.to_be_bytes());
        h
    }

    fn wrap_aad(&self) -> [u8; 20] {
        let mut a = [0u8; 20];
        a[..16].copy_from_slice(&self.id);
        a[16..].copy_from_slice(&self.version.to_be_bytes());
        a
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CoreError> {
    let mut n = [0u8; N];
    OsRng
        .try_fill_bytes(&mut n)
        .map_err(|_| CoreError::RandomUnavailable)?;
    Ok(n)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], CoreError> {
    random_bytes()
}

fn envelope_aad(header: &[u8], aad: Option<&[u8]>) -> Vec<u8> {
    let extra = aad.map_or(0, <[u8]>::len);
    let mut v = Vec::with_capacity(HEADER_LEN + 1 + extra);
    v.extend_from_slice(header);
    match aad {
        None => v.push(0),
        Some(a) => {
            v.push(1);
            v.extend_from_slice(a);
        }
    }
    v
}

/// Read the key reference of an envelope without decrypting it (to find the
/// key). Rejects anything that is not a well-formed version-1 envelope.
pub fn parse_header(envelope: &[u8]) -> Result<KeyRef, CoreError> {
    if envelope.len() < 4 || envelope[..3] != MAGIC {
        return Err(CoreError::NotAnEnvelope);
    }
    if envelope[3] != FORMAT_VERSION {
        return Err(CoreError::UnsupportedEnvelopeVersion {
            version: envelope[3],
        });
    }
    if envelope.len() < OVERHEAD {
        return Err(CoreError::EnvelopeTruncated {
            len: envelope.len(),
        });
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&envelope[4..20]);
    let mut ver = [0u8; 4];
    ver.copy_from_slice(&envelope[20..24]);
    Ok(KeyRef {
        id,
        version: u32::from_be_bytes(ver),
    })
}

/// Seal `plaintext` with a fresh random nonce.
pub fn seal(
    key: &DataCipher,
    key_ref: KeyRef,
    plaintext: &[u8],
    aad: Option<&[u8]>,
) -> Result<Vec<u8>, CoreError> {
    seal_with_nonce(key, key_ref, random_nonce()?, plaintext, aad)
}

/// Seal with a caller-chosen nonce. Only for known-answer tests: reusing a
/// nonce under one key breaks GCM, which is why [`seal`] draws a new one.
pub fn seal_with_nonce(
    key: &DataCipher,
    key_ref: KeyRef,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
    aad: Option<&[u8]>,
) -> Result<Vec<u8>, CoreError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(CoreError::PlaintextTooLarge {
            len: plaintext.len(),
        });
    }
    let header = key_ref.header();
    let ad = envelope_aad(&header, aad);
    let body = key
        .0
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| CoreError::PlaintextTooLarge {
            len: plaintext.len(),
        })?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Open an envelope with the key its header names. Fails (without saying
/// which) if the envelope was tampered with, the key is wrong, or the AAD
/// differs from the one it was sealed with.
pub fn open(key: &DataCipher, envelope: &[u8], aad: Option<&[u8]>) -> Result<Vec<u8>, CoreError> {
    parse_header(envelope)?;
    let ad = envelope_aad(&envelope[..HEADER_LEN], aad);
    let nonce = Nonce::from_slice(&envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
    key.0
        .decrypt(
            nonce,
            Payload {
                msg: &envelope[HEADER_LEN + NONCE_LEN..],
                aad: &ad,
            },
        )
        .map_err(|_| CoreError::DecryptionFailed)
}

/// Wrap (encrypt) a data key under the master key, bound to its keyring row.
pub fn wrap_key(
    master: &SecretKey,
    key_ref: KeyRef,
    data_key: &SecretKey,
) -> Result<Vec<u8>, CoreError> {
    let nonce = random_nonce()?;
    let body = master
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &data_key.0,
                aad: &key_ref.wrap_aad(),
            },
        )
        .map_err(|_| CoreError::WrappedKeyInvalid)?;
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Unwrap a data key. Fails if the master key is not the one it was wrapped
/// with, or the wrapped bytes were altered or moved to another keyring row.
pub fn unwrap_key(
    master: &SecretKey,
    key_ref: KeyRef,
    wrapped: &[u8],
) -> Result<SecretKey, CoreError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(CoreError::WrappedKeyInvalid);
    }
    let plain = Zeroizing::new(
        master
            .cipher()
            .decrypt(
                Nonce::from_slice(&wrapped[..NONCE_LEN]),
                Payload {
                    msg: &wrapped[NONCE_LEN..],
                    aad: &key_ref.wrap_aad(),
                },
            )
            .map_err(|_| CoreError::WrappedKeyInvalid)?,
    );
    let mut k = [0u8; 32];
    k.copy_from_slice(&plain);
    Ok(SecretKey(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn key(s: &str) -> SecretKey {
        SecretKey::from_bytes(h(s).try_into().unwrap())
    }

    /// Raw AES-256-GCM (no envelope) against published vectors, to prove the
    /// primitive before trusting the format built on it.
    fn gcm(k: &str, iv: &str, aad: &str, pt: &str) -> Vec<u8> {
        key(k)
            .cipher()
            .encrypt(
                Nonce::from_slice(&h(iv)),
                Payload {
                    msg: &h(pt),
                    aad: &h(aad),
                },
            )
            .unwrap()
    }

    // NIST SP 800-38D / GCM specification test cases 13-16 (256-bit keys)
    // and a CAVP gcmEncryptExtIV256 vector.
    #[test]
    fn aes256gcm_known_answers() {
        let zero = "0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(
            hex::encode(gcm(zero, "000000000000000000000000", "", "")),
            "530f8afbc74536b9a963b4f1c4cb738b"
        );
        assert_eq!(
            hex::encode(gcm(
                zero,
                "000000000000000000000000",
                "",
                "00000000000000000000000000000000"
            )),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
        let k = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
        let p = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
        assert_eq!(
            hex::encode(gcm(k, "cafebabefacedbaddecaf888", "", p)),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad\
             b094dac5d93471bdec1a502270e3cc6c"
        );
        assert_eq!(
            hex::encode(gcm(k, "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", &p[..120])),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(
            hex::encode(gcm(
                "83688deb4af8007f9b713b47cfa6c73e35ea7a3aa4ecdb414dded03bf7a0fd3a",
                "0b459724904e010a46901cf3",
                "794a14ccd178c8ebfd1379dc704c5e208f9d8424",
                "33d893a2114ce06fc15d55e454cf90c3"
            )),
            "cc66bee423e3fcd4c0865715e95866960fb291bd3dba94a1dfd8b286cfb97ac5"
        );
    }

    const KREF: KeyRef = KeyRef {
        id: [7; 16],
        version: 3,
    };

    #[test]
    fn envelope_layout_is_as_documented() {
        let k = SecretKey::from_bytes([1; 32]);
        let env = seal_with_nonce(&k.data_cipher(), KREF, [9; 12], b"hello", None).unwrap();
        assert_eq!(env.len(), OVERHEAD + 5);
        assert_eq!(&env[..4], b"AEG\x01");
        assert_eq!(&env[4..20], &[7; 16]);
        assert_eq!(&env[20..24], &[0, 0, 0, 3]);
        assert_eq!(&env[24..36], &[9; 12]);
        assert_eq!(parse_header(&env).unwrap(), KREF);
        assert_eq!(open(&k.data_cipher(), &env, None).unwrap(), b"hello");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let k = SecretKey::generate().unwrap();
        let env = seal(&k.data_cipher(), KREF, b"", None).unwrap();
        assert_eq!(env.len(), OVERHEAD);
        assert_eq!(open(&k.data_cipher(), &env, None).unwrap(), b"");
    }

    #[test]
    fn aad_binds_the_place() {
        let k = SecretKey::generate().unwrap();
        let env = seal(
            &k.data_cipher(),
            KREF,
            b"10.0.0.1",
            Some(b"error_logs.user_ip:1"),
        )
        .unwrap();
        assert_eq!(
            open(&k.data_cipher(), &env, Some(b"error_logs.user_ip:1")).unwrap(),
            b"10.0.0.1"
        );
        for wrong in [None, Some(&b""[..]), Some(&b"error_logs.user_ip:2"[..])] {
            assert_eq!(
                open(&k.data_cipher(), &env, wrong),
                Err(CoreError::DecryptionFailed)
            );
        }
        // No AAD at seal time: an empty AAD at open time is a different thing.
        let env = seal(&k.data_cipher(), KREF, b"x", None).unwrap();
        assert_eq!(
            open(&k.data_cipher(), &env, Some(b"")),
            Err(CoreError::DecryptionFailed)
        );
    }

    #[test]
    fn malformed_envelopes_are_rejected_specifically() {
        let k = SecretKey::generate().unwrap();
        let env = seal(&k.data_cipher(), KREF, b"payload", None).unwrap();
        assert_eq!(parse_header(b""), Err(CoreError::NotAnEnvelope));
        assert_eq!(parse_header(b"\\x0123"), Err(CoreError::NotAnEnvelope));
        let mut v2 = env.clone();
        v2[3] = 2;
        assert_eq!(
            parse_header(&v2),
            Err(CoreError::UnsupportedEnvelopeVersion { version: 2 })
        );
        assert_eq!(
            open(&k.data_cipher(), &env[..OVERHEAD - 1], None),
            Err(CoreError::EnvelopeTruncated { len: OVERHEAD - 1 })
        );
        // Changing the key version in the header breaks authentication.
        let mut other = env.clone();
        other[23] ^= 1;
        assert_eq!(
            open(&k.data_cipher(), &other, None),
            Err(CoreError::DecryptionFailed)
        );
        // Another key fails the same way.
        let k2 = SecretKey::generate().unwrap();
        assert_eq!(
            open(&k2.data_cipher(), &env, None),
            Err(CoreError::DecryptionFailed)
        );
    }

    #[test]
    fn wrapped_keys_are_bound_to_master_and_row() {
        let master = SecretKey::generate().unwrap();
        let dk = SecretKey::generate().unwrap();
        let w = wrap_key(&master, KREF, &dk).unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        assert_eq!(unwrap_key(&master, KREF, &w).unwrap().0, dk.0);
        let other_row = KeyRef { version: 4, ..KREF };
        assert!(unwrap_key(&master, other_row, &w).is_err());
        assert!(unwrap_key(&SecretKey::generate().unwrap(), KREF, &w).is_err());
        assert!(unwrap_key(&master, KREF, &w[1..]).is_err());
    }

    #[test]
    fn master_key_hex_parsing_never_echoes_the_key() {
        let hexkey = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let k = SecretKey::from_hex(hexkey.as_bytes()).unwrap();
        assert_eq!(k.0[1], 0x11);
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
        let bad = "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let e = SecretKey::from_hex(bad.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains("112233"), "{e}");
        assert!(SecretKey::from_hex(b"abcd").is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_distinct() {
        let k = SecretKey::from_bytes([1; 32]);
        let p = k.pseudonym(b"alice@example.com");
        assert_eq!(p.len(), 32);
        assert_eq!(p, k.pseudonym(b"alice@example.com"));
        assert_ne!(p, k.pseudonym(b"bob@example.com"));
        assert_ne!(
            p,
            SecretKey::from_bytes([2; 32]).pseudonym(b"alice@example.com")
        );
        // Not the bare HMAC of the value under the key (purpose-derived subkey).
        let bare = crate::hash::HashAlgorithm::Sha256.hmac(&[1; 32], b"alice@example.com");
        assert!(!hex::encode(bare).starts_with(&p));
    }

    proptest! {
        #[test]
        fn round_trip(pt in proptest::collection::vec(any::<u8>(), 0..4096),
                      aad in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                      id in any::<[u8; 16]>(), version in any::<u32>()) {
            let k = SecretKey::generate().unwrap();
            let kref = KeyRef { id, version };
            let env = seal(&k.data_cipher(), kref, &pt, aad.as_deref()).unwrap();
            prop_assert_eq!(env.len(), pt.len() + OVERHEAD);
            prop_assert_eq!(parse_header(&env).unwrap(), kref);
            prop_assert_eq!(open(&k.data_cipher(), &env, aad.as_deref()).unwrap(), pt);
        }

        // Flipping any single bit anywhere makes opening fail, never return
        // different plaintext.
        #[test]
        fn any_bit_flip_is_detected(pt in proptest::collection::vec(any::<u8>(), 0..256),
                                    pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = SecretKey::from_bytes([3; 32]);
            let mut env = seal(&k.data_cipher(), KREF, &pt, None).unwrap();
            let i = pos.index(env.len());
            env[i] ^= 1 << bit;
            prop_assert!(open(&k.data_cipher(), &env, None).is_err());
        }

        // Arbitrary bytes never panic and never open.
        #[test]
        fn garbage_never_opens(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = SecretKey::from_bytes([5; 32]);
            let _ = parse_header(&data);
            prop_assert!(open(&k.data_cipher(), &data, None).is_err());
        }
    }
}
