//! PII controls as clients meet them: bulk loads through COPY are sanitized
//! and redacted by the trigger like INSERTs, and a developer's real login
//! reads error messages only redacted, whatever protocol it uses (simple
//! query, prepared statement, text and binary COPY).

use aegis_integration::{sqlstate, superuser, LoginRole};
use std::io::{Read, Write};

#[test]
fn copy_from_goes_through_the_sanitize_trigger() {
    let mut c = superuser();
    c.batch_execute(
        "DROP TABLE IF EXISTS it_copy_log;
         CREATE TABLE it_copy_log (id int, msg text);
         CREATE TRIGGER it_copy_log_sanitize BEFORE INSERT OR UPDATE ON it_copy_log
             FOR EACH ROW EXECUTE FUNCTION aegis.sanitize_columns('msg', 'redact');",
    )
    .unwrap();
    let mut w = c
        .copy_in("COPY it_copy_log FROM STDIN (FORMAT csv)")
        .unwrap();
    // CSV lets a field carry a raw newline and an ANSI escape.
    w.write_all(b"1,\"login from 203.0.113.9\nFORGED line \x1b[31mred\x1b[0m\"\n2,mail ops@example.com\n3,clean\n")
        .unwrap();
    w.finish().unwrap();
    let rows: Vec<(i32, String)> = c
        .query("SELECT id, msg FROM it_copy_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "login from [IPV4]\\nFORGED line red".to_string()),
            (2, "mail [EMAIL]".to_string()),
            (3, "clean".to_string()),
        ]
    );
    c.batch_execute("DROP TABLE it_copy_log").unwrap();
}

#[test]
fn developer_reads_error_messages_only_redacted() {
    let mut admin = superuser();
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS it_pii_mon CASCADE;
             SELECT aegis.create_monitoring_schema('it_pii_mon');
             INSERT INTO it_pii_mon.servers (server_id) VALUES ('s1');
             INSERT INTO it_pii_mon.error_logs (server_id, error_message, user_ip) VALUES
                 ('s1', 'timeout for jane@example.com card 4111 1111 1111 1111', '198.51.100.77'),
                 ('s1', 'no pii here', NULL);
             INSERT INTO it_pii_mon.error_logs (server_id, error_severity, error_message)
                 VALUES ('s1', 'SECURITY_BREACH', 'token stolen by 203.0.113.50');",
        )
        .unwrap();
    let dev = LoginRole::create(&mut admin, "pii_dev");
    admin
        .batch_execute(&format!("GRANT aegis_developer TO {}", dev.name))
        .unwrap();
    let mut d = dev.connect().unwrap();

    // The table itself: denied, in every protocol.
    let e = d
        .simple_query("SELECT error_message FROM it_pii_mon.error_logs")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    // (Privileges are checked when a statement runs, not when it is prepared.)
    let st = d
        .prepare("SELECT error_message FROM it_pii_mon.error_logs")
        .unwrap();
    let e = d.query(&st, &[]).unwrap_err();
    assert_eq!(sqlstate(&e), "42501");

    // The view, through a prepared statement with a parameter.
    let st = d
        .prepare("SELECT error_message, user_network::text FROM it_pii_mon.developer_error_logs WHERE server_id = $1 ORDER BY id")
        .unwrap();
    let rows: Vec<(String, Option<String>)> = d
        .query(&st, &[&"s1"])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "timeout for [EMAIL] card [CREDIT_CARD]".to_string(),
                Some("198.51.100.0/32".to_string())
            ),
            ("no pii here".to_string(), None),
        ]
    );

    // Text and binary COPY of the view: the same redacted rows, no breach row.
    let mut out = String::new();
    d.copy_out(
        "COPY (SELECT error_message FROM it_pii_mon.developer_error_logs ORDER BY id) TO STDOUT",
    )
    .unwrap()
    .read_to_string(&mut out)
    .unwrap();
    assert_eq!(out, "timeout for [EMAIL] card [CREDIT_CARD]\nno pii here\n");
    let mut bin = Vec::new();
    d.copy_out("COPY (SELECT error_message FROM it_pii_mon.developer_error_logs) TO STDOUT (FORMAT binary)")
        .unwrap()
        .read_to_end(&mut bin)
        .unwrap();
    let hay = String::from_utf8_lossy(&bin);
    assert!(
        hay.contains("[EMAIL]")
            && !hay.contains("jane@")
            && !hay.contains("4111")
            && !hay.contains("203.0.113.50")
    );

    drop(d);
    admin
        .batch_execute("DROP SCHEMA it_pii_mon CASCADE")
        .unwrap();
    dev.drop_with(&mut admin);
}
