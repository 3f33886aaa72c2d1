//! Fuzz the envelope parser and opener with arbitrary bytes: nothing may
//! panic, and nothing but a genuine envelope may open. The input's first byte
//! picks whether an AAD is passed; a valid envelope of the input is also
//! sealed, mutated by one byte, and must then fail to open.
#![no_main]

use aegis_core::envelope::{self, KeyRef, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_bytes([0x42; 32]);
    let cipher = key.data_cipher();
    let aad = data.first().filter(|b| *b & 1 == 1).map(|_| &b"aad"[..]);

    // Arbitrary bytes: parse and open must return errors, never panic, and
    // never yield plaintext (the chance of forging a GCM tag is 2^-128).
    let _ = envelope::parse_header(data);
    assert!(envelope::open(&cipher, data, aad).is_err());

    // A real envelope of the input round-trips; one flipped byte breaks it.
    let kref = KeyRef { id: [7; 16], version: 1 };
    let Ok(env) = envelope::seal(&cipher, kref, data, aad) else { return };
    assert_eq!(envelope::open(&cipher, &env, aad).as_deref(), Ok(data));
    let mut bad = env.clone();
    let i = data.len() % bad.len();
    bad[i] ^= 0x01;
    assert!(envelope::open(&cipher, &bad, aad).is_err());
});
