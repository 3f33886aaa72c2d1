//! Encryption as clients and operators see it: key material never reaches
//! the server log, a cluster without a master key fails clearly, and a dump
//! restores into another cluster that decrypts only with the same master key.

use aegis_core::envelope::{self, KeyRef, SecretKey};
use aegis_integration::{data_dir, pg_bin, sqlstate, superuser_on, superuser_to, Cluster};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

/// Run statements one by one (ALTER SYSTEM refuses a multi-statement batch,
/// which runs as one transaction).
fn exec_each(c: &mut postgres::Client, stmts: &[&str]) {
    for s in stmts {
        c.batch_execute(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// `aegis.encrypt(pt, key)` in session `c`.
fn encrypt(c: &mut postgres::Client, pt: &str, key: &str) -> Vec<u8> {
    c.query_one("SELECT aegis.encrypt($1::text, $2)", &[&pt, &key])
        .unwrap_or_else(|e| panic!("encrypt with {key}: {e}"))
        .get(0)
}

/// `aegis.decrypt(ct)` in session `c`: the plaintext, or the error.
fn decrypt(c: &mut postgres::Client, ct: &[u8]) -> Result<String, postgres::Error> {
    c.query_one("SELECT aegis.decrypt($1)", &[&ct])
        .map(|r| r.get(0))
}

fn master_key_path() -> String {
    format!("{}/../master.key", data_dir())
}

fn hex_upper(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
    }
    out
}

#[test]
fn server_log_never_contains_key_material() {
    let mut c = superuser_on(Cluster::Preloaded);
    exec_each(
        &mut c,
        &[
            "ALTER SYSTEM SET log_statement = 'all'",
            "ALTER SYSTEM SET log_min_duration_statement = 0",
            "ALTER SYSTEM SET log_min_error_statement = 'debug5'",
            "SELECT pg_reload_conf()",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut w = superuser_on(Cluster::Preloaded);
    w.batch_execute(
        "SELECT aegis.create_key('logtest')
          WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'logtest')",
    )
    .unwrap();
    for i in 0..50 {
        let v = format!("secret value {i}");
        let row = w
            .query_one(
                "SELECT aegis.decrypt(aegis.encrypt($1::text, 'logtest', 'aad'), 'aad')",
                &[&v],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), v);
    }
    // Errors get logged with their statement: make some.
    let _ = w.query(
        "SELECT aegis.decrypt(aegis.encrypt('x', 'logtest'), 'wrong')",
        &[],
    );
    let _ = w.query("SELECT aegis.rotate_key('logtest')", &[]);
    let wrapped: Vec<(uuid_bytes::Id, i32, Vec<u8>)> = w
        .query(
            "SELECT key_id::text, version, wrapped_key FROM aegis.keys WHERE name = 'logtest'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (uuid_bytes::parse(r.get(0)), r.get(1), r.get(2)))
        .collect();
    exec_each(
        &mut c,
        &[
            "ALTER SYSTEM RESET log_statement",
            "ALTER SYSTEM RESET log_min_duration_statement",
            "ALTER SYSTEM RESET log_min_error_statement",
            "SELECT pg_reload_conf()",
        ],
    );

    let master_text = std::fs::read_to_string(master_key_path()).expect("read test master key");
    let master = SecretKey::from_hex(master_text.as_bytes()).unwrap();
    // Bytes, not UTF-8: other tests log statements from a LATIN1 database.
    let log_bytes = std::fs::read(format!("{}/../server.log", data_dir())).expect("server log");
    let log = String::from_utf8_lossy(&log_bytes);
    assert!(
        log.contains("aegis.encrypt"),
        "the workload must be in the log for this test to mean anything"
    );
    let mut needles = vec![
        master_text.trim().to_lowercase(),
        master_text.trim().to_uppercase(),
    ];
    assert_eq!(wrapped.len(), 2);
    for (id, version, w) in &wrapped {
        let dk = envelope::unwrap_key(
            &master,
            KeyRef {
                id: *id,
                version: *version as u32,
            },
            w,
        )
        .expect("the test can unwrap with the master key");
        let raw = dk_bytes(&dk);
        needles.push(hex::encode(raw));
        needles.push(hex_upper(raw));
        needles.push(base64(raw));
        needles.push(hex::encode(w)); // wrapped keys do not belong in logs either
    }
    for n in &needles {
        assert!(
            !log.contains(n.as_str()),
            "server log contains key material"
        );
    }
}

/// The raw key bytes, through an accessor that exists only with aegis-core's
/// `expose-key-for-tests` feature (enabled for this test crate, never for the
/// extension).
fn dk_bytes(k: &SecretKey) -> &[u8; 32] {
    k.expose_for_tests()
}

mod uuid_bytes {
    pub type Id = [u8; 16];
    pub fn parse(s: &str) -> Id {
        let h: String = s.chars().filter(|c| *c != '-').collect();
        let v = hex::decode(h).expect("uuid hex");
        v.try_into().expect("16 bytes")
    }
}

#[test]
fn missing_or_different_master_key_fails_cleanly_and_dumps_restore() {
    // The second cluster starts without any master key.
    let np = Cluster::NotPreloaded;
    // (Loading the library first defines the aegis.* settings in this session.)
    let mut n = superuser_on(np);
    exec_each(
        &mut n,
        &[
            "SELECT aegis.version()",
            "ALTER SYSTEM RESET aegis.master_key_file",
            "SELECT pg_reload_conf()",
        ],
    );
    let mut n = superuser_on(np);
    let e = n
        .query_one("SELECT aegis.create_key('nokey')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000");
    let msg = e
        .as_db_error()
        .map(|d| (d.message().to_string(), d.hint().map(str::to_string)));
    let (m, hint) = msg.expect("database error");
    assert_eq!(m, "no master key is configured");
    assert!(hint.unwrap_or_default().contains("aegis.master_key_file"));

    // Source: encrypted data in the preloaded cluster (master key K1).
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute("DROP DATABASE IF EXISTS aegis_enc_src WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE aegis_enc_src")
        .unwrap();
    let mut src = superuser_to(Cluster::Preloaded, "aegis_enc_src");
    src.batch_execute(
        "CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('default');
         CREATE TABLE t(id int PRIMARY KEY, ct bytea);
         INSERT INTO t SELECT g, aegis.encrypt('value ' || g, 'default', 't.ct:' || g) FROM generate_series(1, 20) g;",
    )
    .unwrap();
    let dump = std::env::temp_dir().join(format!("aegis-enc-{}.pgc", std::process::id()));
    let out = Command::new(format!("{}/pg_dump", pg_bin()))
        .args([
            "-h",
            &Cluster::Preloaded.socket_dir(),
            "-p",
            &Cluster::Preloaded.port().to_string(),
        ])
        .args(["-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg("aegis_enc_src")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Target cluster with a different master key K2.
    let other_key = format!("{}/../../nopreload/other.key", data_dir());
    std::fs::write(&other_key, "ab".repeat(32) + "\n").unwrap();
    let pg_uid = std::fs::metadata(data_dir()).unwrap().uid();
    std::os::unix::fs::chown(&other_key, Some(pg_uid), None).unwrap();
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut n = superuser_on(np);
    n.batch_execute("SELECT aegis.version()").unwrap(); // loads the library: defines aegis.*
    n.batch_execute(&format!(
        "ALTER SYSTEM SET aegis.master_key_file = '{other_key}'"
    ))
    .unwrap();
    n.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut nadmin = superuser_to(np, "postgres");
    nadmin
        .batch_execute("DROP DATABASE IF EXISTS aegis_enc_dst WITH (FORCE)")
        .unwrap();
    nadmin
        .batch_execute("CREATE DATABASE aegis_enc_dst")
        .unwrap();
    let out = Command::new(format!("{}/pg_restore", pg_bin()))
        .args(["-h", &np.socket_dir(), "-p", &np.port().to_string()])
        .args(["-U", "postgres", "--exit-on-error", "-d", "aegis_enc_dst"])
        .arg(&dump)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&dump);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut dst = superuser_to(np, "aegis_enc_dst");
    let e = dst
        .query("SELECT aegis.decrypt(ct, 't.ct:' || id) FROM t", &[])
        .unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "55000",
        "a different master key must fail cleanly: {e}"
    );

    // Same master key as the source: everything decrypts.
    n.batch_execute(&format!(
        "ALTER SYSTEM SET aegis.master_key_file = '{}'",
        std::fs::canonicalize(master_key_path()).unwrap().display()
    ))
    .unwrap();
    n.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut dst = superuser_to(np, "aegis_enc_dst");
    let vals: Vec<String> = dst
        .query(
            "SELECT aegis.decrypt(ct, 't.ct:' || id) FROM t ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(vals.len(), 20);
    assert_eq!(vals[0], "value 1");
    assert_eq!(vals[19], "value 20");

    n.batch_execute("ALTER SYSTEM RESET aegis.master_key_file")
        .unwrap();
    n.batch_execute("SELECT pg_reload_conf()").unwrap();
    drop(dst);
    drop(src);
    nadmin
        .batch_execute("DROP DATABASE aegis_enc_dst WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("DROP DATABASE aegis_enc_src WITH (FORCE)")
        .unwrap();
    let _ = std::fs::remove_file(&other_key);
}

#[test]
fn other_sessions_see_keyring_changes_at_commit() {
    let mut a = superuser_on(Cluster::Preloaded);
    let mut b = superuser_on(Cluster::Preloaded);
    exec_each(
        &mut b,
        &[
            "DELETE FROM aegis.keys WHERE name IN ('cachetest')",
            "SELECT aegis.create_key('cachetest')",
        ],
    );
    // Session A encrypts and decrypts: its key cache now holds version 1.
    let ct = encrypt(&mut a, "cached", "cachetest");
    let pt = decrypt(&mut a, &ct).unwrap();
    assert_eq!(pt, "cached");
    // Session B rotates and retires version 1.
    exec_each(
        &mut b,
        &[
            "SELECT aegis.rotate_key('cachetest')",
            "SELECT aegis.retire_key_version('cachetest', 1)",
        ],
    );
    // A must notice: no stale cache lets the retired version decrypt, and new
    // encryptions use version 2.
    let e = decrypt(&mut a, &ct).unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{e}");
    let v: i32 = a
        .query_one("SELECT get_byte(aegis.encrypt('x', 'cachetest'), 23)", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 2);
    // Destroying the key (as forget_subject does) is seen the same way.
    let ct2 = encrypt(&mut a, "doomed", "cachetest");
    b.batch_execute(
        "UPDATE aegis.keys SET status = 'destroyed', wrapped_key = NULL WHERE name = 'cachetest'",
    )
    .unwrap();
    let e = decrypt(&mut a, &ct2).unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{e}");
    b.batch_execute("DELETE FROM aegis.keys WHERE name = 'cachetest'")
        .unwrap();
}

#[test]
fn cache_follows_the_keyring_across_drop_and_create_extension() {
    // Its own database: dropping the extension must not disturb other tests.
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute("DROP DATABASE IF EXISTS aegis_cache_db WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE aegis_cache_db")
        .unwrap();
    let mut b = superuser_to(Cluster::Preloaded, "aegis_cache_db");
    exec_each(
        &mut b,
        &["CREATE EXTENSION pg_aegis", "SELECT aegis.create_key('k')"],
    );
    // Session A, like a pooled backend, caches the keyring's table.
    let mut a = superuser_to(Cluster::Preloaded, "aegis_cache_db");
    encrypt(&mut a, "first", "k");
    // The extension is dropped and created again: a new aegis.keys table.
    exec_each(
        &mut b,
        &[
            "DROP EXTENSION pg_aegis",
            "CREATE EXTENSION pg_aegis",
            "SELECT aegis.create_key('k')",
        ],
    );
    let ct = encrypt(&mut a, "second", "k");
    let pt = decrypt(&mut a, &ct).unwrap();
    assert_eq!(pt, "second");
    // A change to the new table must still reach session A's cache.
    b.batch_execute(
        "UPDATE aegis.keys SET status = 'destroyed', wrapped_key = NULL WHERE name = 'k'",
    )
    .unwrap();
    let e = decrypt(&mut a, &ct).unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "{e}");
    drop(a);
    drop(b);
    admin
        .batch_execute("DROP DATABASE aegis_cache_db WITH (FORCE)")
        .unwrap();
}
