//! A server restart: the extension keeps working and is loaded at server start
//! through shared_preload_libraries. Its own test binary, because cargo runs
//! binaries one after another while tests inside a binary run in parallel:
//! no other test's connection is cut by the restart.

use aegis_integration::{data_dir, pg_bin, superuser};
use std::process::Command;

#[test]
fn survives_server_restart_and_stays_preloaded() {
    let mut c = superuser();
    let before: Vec<u8> = c
        .query_one("SELECT aegis.digest('restart', 'sha256')", &[])
        .unwrap()
        .get(0);
    // Encrypted before the restart, decrypted after: the keyring and the
    // master key file survive, and the new backends unwrap the key afresh.
    c.batch_execute(
        "SELECT aegis.create_key('restart') WHERE NOT EXISTS (SELECT 1 FROM aegis.keys WHERE name = 'restart')",
    )
    .unwrap();
    let ct: Vec<u8> = c
        .query_one(
            "SELECT aegis.encrypt('kept across restarts', 'restart')",
            &[],
        )
        .unwrap()
        .get(0);
    drop(c);

    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(format!("{}/pg_ctl", pg_bin()))
        .arg("-D")
        .arg(data_dir())
        .args(["-m", "fast", "-w", "-t", "60", "restart", "-l"])
        .arg(format!("{}/../server.log", data_dir()))
        .status()
        .expect("run pg_ctl restart");
    assert!(status.success(), "pg_ctl restart failed");

    let mut c = superuser();
    let pt: String = c
        .query_one("SELECT aegis.decrypt($1)", &[&ct])
        .unwrap()
        .get(0);
    assert_eq!(pt, "kept across restarts");
    let after: Vec<u8> = c
        .query_one("SELECT aegis.digest('restart', 'sha256')", &[])
        .unwrap()
        .get(0);
    assert_eq!(before, after);
    let pre: String = c
        .query_one(
            "SELECT value FROM aegis.build_info() WHERE item = 'preloaded'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        pre, "true",
        "shared_preload_libraries must load pg_aegis at server start"
    );
}
