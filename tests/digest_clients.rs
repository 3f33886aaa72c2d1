//! Client-side behaviour of the hashing functions and of the extension's
//! privileges: real logins over TCP, binary parameters, concurrency across
//! sessions.

use aegis_core::hash::HashAlgorithm;
use aegis_integration::{sqlstate, superuser, LoginRole};

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn binary_parameters_hash_like_core_and_pgcrypto() {
    let mut c = superuser();
    // Lengths around block boundaries plus a 3 MiB value, sent as binary bytea.
    let mut lens: Vec<usize> = (0..140).collect();
    lens.extend([255, 256, 1000, 4096, 3 * 1024 * 1024]);
    for (i, len) in lens.into_iter().enumerate() {
        let data = bytes(len, i as u64 + 7);
        let key = bytes(i % 150, i as u64 + 99);
        for alg in ["sha224", "sha256", "sha384", "sha512"] {
            let row = c
                .query_one(
                    "SELECT aegis.digest($1::bytea, $3), digest($1::bytea, $3),
                            aegis.hmac($1::bytea, $2::bytea, $3), hmac($1::bytea, $2::bytea, $3)",
                    &[&data, &key, &alg],
                )
                .expect("hash query");
            let a = HashAlgorithm::resolve(alg.as_bytes(), false).unwrap();
            let (ours, theirs): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
            assert_eq!(ours, theirs, "digest {alg} len {len}");
            assert_eq!(ours, a.digest(&data), "digest {alg} len {len} vs core");
            let (ours, theirs): (Vec<u8>, Vec<u8>) = (row.get(2), row.get(3));
            assert_eq!(ours, theirs, "hmac {alg} len {len}");
            assert_eq!(ours, a.hmac(&key, &data), "hmac {alg} len {len} vs core");
        }
    }
}

#[test]
fn ordinary_login_gets_hashing_but_not_admin_surface() {
    let mut admin = superuser();
    let role = LoginRole::create(&mut admin, "plain");
    let mut c = role.connect().expect("SCRAM login over TCP");

    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(who, role.name);
    let same: bool = c
        .query_one(
            "SELECT aegis.digest('abc','sha256') = digest('abc','sha256')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same);

    // Superuser-only GUC: refused for a real login, and md5 stays refused.
    let e = c
        .batch_execute("SET aegis.allow_legacy_hashes = on")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let e = c
        .query_one("SELECT aegis.digest('abc','md5')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    // The login really is password-checked (the TCP rule is SCRAM, not trust).
    let e = role
        .config()
        .password("wrong password")
        .connect(postgres::NoTls)
        .err()
        .expect("a wrong password must not log in");
    assert_eq!(sqlstate(&e), "28P01");

    // build_info is not granted to PUBLIC.
    let e = c
        .query("SELECT * FROM aegis.build_info()", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    // No creating in schema aegis.
    let e = c
        .batch_execute("CREATE TABLE aegis.planted(x int)")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");

    drop(c);
    role.drop_with(&mut admin);
}

#[test]
fn startup_option_cannot_enable_legacy_hashes() {
    let mut admin = superuser();
    let role = LoginRole::create(&mut admin, "opts");
    // `-c` at startup (what PGOPTIONS does) is applied with the user's own
    // privileges: for a superuser-only GUC the server must not enable md5.
    let r = role
        .config()
        .options("-c aegis.allow_legacy_hashes=on")
        .connect(postgres::NoTls);
    match r {
        Err(e) => assert_eq!(sqlstate(&e), "42501"),
        Ok(mut c) => {
            let v: String = c
                .query_one("SHOW aegis.allow_legacy_hashes", &[])
                .unwrap()
                .get(0);
            assert_eq!(v, "off");
            let e = c
                .query_one("SELECT aegis.digest('abc','md5')", &[])
                .unwrap_err();
            assert_eq!(sqlstate(&e), "22023");
        }
    }
    role.drop_with(&mut admin);
}

#[test]
fn concurrent_sessions_agree() {
    let _ = superuser(); // make sure the database exists before threads race
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = superuser();
                for i in 0..200u64 {
                    let data = bytes((i as usize * 37) % 5000, t * 1000 + i);
                    let row = c
                        .query_one(
                            "SELECT aegis.digest($1::bytea, 'sha512') = digest($1::bytea, 'sha512')",
                            &[&data],
                        )
                        .unwrap();
                    assert!(row.get::<_, bool>(0), "thread {t} iteration {i}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
}
