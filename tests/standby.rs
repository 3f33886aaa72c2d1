//! pg_aegis on a hot standby, made as a DBA makes one (`pg_basebackup -R`),
//! and after it is promoted.
//!
//! In 0.5.0 every query on a standby failed ("cannot assign TransactionIds
//! during recovery"): the read-audit hook opened SPI read-write on every
//! statement. On a standby:
//!   - any query works, as a superuser and as an aegis role through a
//!     masking view, and reads of protected tables go to the server log as
//!     JSON lines (the trail cannot be written there);
//!   - verify_chain(), verify_table() and decryption work;
//!   - no error carries a Rust backtrace, even with RUST_BACKTRACE set in
//!     the server's environment.
//!
//! After `pg_ctl promote`, the background sealer starts, and every entry
//! committed on the old primary is sealed: none is lost.

use aegis_integration::audit::{seal_all, sealing_state};
use aegis_integration::{sqlstate, ScratchCluster};
use postgres::Client;
use std::time::{Duration, Instant};

const DB: &str = "aegis_it_standby";

/// Wait until the standby has replayed everything the primary wrote so far.
fn caught_up(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not catch up with {lsn}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pg_aegis: {...}` lines of the server log that name `needle`.
fn logged(cluster: &ScratchCluster, needle: &str) -> Vec<String> {
    let text = std::fs::read(cluster.log_path()).expect("read server log");
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains("pg_aegis: {") && l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn hot_standby_reads_verifies_decrypts_and_promotes_without_losing_entries() {
    let primary = ScratchCluster::init(
        "standby-primary",
        &[
            "log_destination = 'stderr'",
            "logging_collector = off",
            "aegis.seal_databases = 'aegis_it_standby'",
            "aegis.seal_interval = 200",
        ],
    );
    primary.start();
    primary
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut p = primary.connect(DB);
    p.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('pseudonym');
         SELECT aegis.create_key('audit_head');
         SELECT aegis.create_key('notes');
         SELECT aegis.create_monitoring_schema('monitoring');
         INSERT INTO monitoring.servers (server_id) VALUES ('s1');
         INSERT INTO monitoring.error_logs (server_id, error_message, user_identifier)
         SELECT 's1', 'timeout for ann@example.com #' || g, 'ann@example.com' FROM generate_series(1, 20) g;
         CREATE TABLE notes AS SELECT aegis.encrypt('kept on the standby', 'notes') AS ct;
         CREATE ROLE sb_dev LOGIN IN ROLE aegis_developer;",
    )
    .unwrap();
    seal_all(&mut p);

    let standby = primary.standby("standby-replica", 1);
    // What a careless service file does: backtraces on for the server.
    std::env::set_var("RUST_BACKTRACE", "1");
    standby.start();
    std::env::remove_var("RUST_BACKTRACE");
    let mut s = standby.connect(DB);
    caught_up(&mut p, &mut s);

    // Any query, and reads of protected tables, as a superuser.
    let in_recovery: bool = s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    s.batch_execute("SELECT 1").unwrap();
    let v: String = s.query_one("SELECT aegis.version()", &[]).unwrap().get(0);
    assert!(!v.is_empty());
    let n: i64 = s
        .query_one("SELECT count(*) FROM monitoring.error_logs", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    // Parallel queries on the standby after that read.
    s.batch_execute(
        "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
         SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;",
    )
    .unwrap();
    for _ in 0..2 {
        let n: i64 = s
            .query_one("SELECT count(*) FROM generate_series(1, 1000) g JOIN monitoring.error_logs e ON e.id = g", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 20);
    }
    // Verification and decryption.
    let r = s
        .query_one("SELECT ok, entries_checked FROM aegis.verify_chain()", &[])
        .unwrap();
    let (ok, checked): (bool, i64) = (r.get(0), r.get(1));
    assert!(
        ok && checked > 0,
        "verify_chain on the standby: {ok} {checked}"
    );
    let r = s
        .query_one(
            "SELECT ok, rows_checked FROM aegis.verify_table('monitoring.error_logs')",
            &[],
        )
        .unwrap();
    let (ok, rows): (bool, i64) = (r.get(0), r.get(1));
    assert!(ok && rows == 20, "verify_table on the standby: {ok} {rows}");
    let clear: String = s
        .query_one("SELECT aegis.decrypt(ct) FROM notes", &[])
        .unwrap()
        .get(0);
    assert_eq!(clear, "kept on the standby");
    // An aegis role through its masking view.
    let mut dev = standby
        .config(DB)
        .user("sb_dev")
        .connect(postgres::NoTls)
        .unwrap();
    let msgs: Vec<String> = dev
        .query(
            "SELECT error_message FROM monitoring.developer_error_logs ORDER BY id LIMIT 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter().all(|m| !m.contains("ann@example.com")),
        "the masking view redacts on the standby too: {msgs:?}"
    );
    // Reads went to the standby's server log, as JSON lines.
    let lines = logged(&standby, "monitoring.error_logs");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"event\":\"read\"") && l.contains("server log")),
        "reads on the standby are in its server log: {lines:?}"
    );
    // An error on the standby carries no Rust backtrace, although the server
    // was started with RUST_BACKTRACE=1.
    // (An error PostgreSQL raises inside pg_aegis's Rust code: that is the
    // path that carried a backtrace.)
    let err = s
        .query_one(
            "SELECT aegis.run_restricted(10, false, 'SELECT 1/0', '{}')",
            &[],
        )
        .expect_err("division by zero");
    let db_err = err.as_db_error().expect("a server error");
    assert!(!sqlstate(&err).is_empty());
    let detail = db_err.detail().unwrap_or("");
    assert!(
        !detail.contains("backtrace") && !detail.contains("src/") && !detail.contains("::"),
        "no Rust internals in the error: {detail}"
    );

    // More committed entries on the primary, not sealed before promotion.
    p.batch_execute("ALTER SYSTEM SET aegis.seal_interval = '1h'")
        .unwrap();
    p.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    p.batch_execute(
        "INSERT INTO monitoring.error_logs (server_id, error_message)
         SELECT 's1', 'late ' || g FROM generate_series(1, 5) g;
         UPDATE monitoring.error_logs SET resolved = true WHERE error_message LIKE 'late%';",
    )
    .unwrap();
    caught_up(&mut p, &mut s);
    let (total, unsealed) = sealing_state(&mut s);
    // (The five inserts and the five updates are one chunk entry each.)
    assert!(
        unsealed >= 2,
        "entries committed but not sealed before the promotion: {unsealed} of {total}"
    );
    drop(p);
    drop(primary);

    // Promotion: the sealer starts (seal_interval came from the primary's
    // postgresql.conf, 200 ms) and seals every replicated entry by itself.
    standby.promote();
    drop(s);
    let mut s = standby.connect(DB);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (total, unsealed) = sealing_state(&mut s);
        if unsealed == 0 {
            assert!(total >= 40, "entries after promotion: {total}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unsealed} of {total} entries not sealed a minute after promotion"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = s
        .query_one("SELECT ok, entries_checked FROM aegis.verify_chain()", &[])
        .unwrap();
    let (ok, checked): (bool, i64) = (r.get(0), r.get(1));
    let (total, _) = sealing_state(&mut s);
    assert!(
        ok && checked == total,
        "chain after promotion: {ok}, {checked} of {total}"
    );
    // Writes work on the new primary and are audited.
    s.batch_execute(
        "INSERT INTO monitoring.error_logs (server_id, error_message) VALUES ('s1', 'after')",
    )
    .unwrap();
    assert_eq!(seal_all(&mut s), total + 1);
}
