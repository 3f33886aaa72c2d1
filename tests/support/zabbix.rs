//! Zabbix-6.0-shaped application fixture (tests/fixtures/zabbix): a schema
//! written from the facts of Zabbix 6.0's PostgreSQL schema and a
//! deterministic data generator with realistic personal data. See
//! tests/fixtures/zabbix/README.md for what each table holds.
//!
//! Both files are plain SQL for an ordinary login that owns the current
//! schema (on PostgreSQL 15+, the database owner owns `public`); nothing in
//! them needs a superuser.

use postgres::Client;

/// DDL: tables, keys and indexes, created in the current schema.
pub const SCHEMA: &str = include_str!("../fixtures/zabbix/schema.sql");

/// Data generator; reads the scale from the setting `zabbix_fixture.scale`.
pub const DATA: &str = include_str!("../fixtures/zabbix/data.sql");

/// The fixed "now" of the data: 2025-12-01 00:00:00 UTC. Every `clock`
/// column lies in the 90 days before it.
pub const EPOCH: i64 = 1_764_547_200;

/// The super admin, as in Zabbix.
pub const ADMIN_USERID: i64 = 1;

/// The well-known person for erasure tests: user `mary.smith`, Mary Smith,
/// with media, sessions, alerts, acknowledges and audit log rows.
pub const MARY_USERID: i64 = 42;
pub const MARY_USERNAME: &str = "mary.smith";
pub const MARY_DISPLAY_NAME: &str = "Mary Smith";
pub const MARY_EMAIL: &str = "mary.smith@example.com";
pub const MARY_PHONE: &str = "+44 7700 900142";

/// Creates the schema and loads the data at `scale` (1 = 50 users, 200
/// hosts, 2,000 items, 20,000 history rows; linear) through `c`, which must
/// be connected to the target database as the role that is to own the
/// tables. Leaves the scale setting of the session reset.
pub fn load(c: &mut Client, scale: u32) {
    assert!(
        (1..=1000).contains(&scale),
        "zabbix fixture scale must be 1..=1000, not {scale}"
    );
    // `scale` is a number, so the literal is safe.
    c.batch_execute(&format!("SET zabbix_fixture.scale = '{scale}'"))
        .expect("set zabbix_fixture.scale");
    c.batch_execute(SCHEMA)
        .unwrap_or_else(|e| panic!("zabbix fixture schema.sql failed: {}", describe(&e)));
    c.batch_execute(DATA)
        .unwrap_or_else(|e| panic!("zabbix fixture data.sql failed: {}", describe(&e)));
    c.batch_execute("RESET zabbix_fixture.scale")
        .expect("reset zabbix_fixture.scale");
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {}{}",
            db.code().code(),
            db.message(),
            db.where_().map(|w| format!(" ({w})")).unwrap_or_default()
        ),
        None => e.to_string(),
    }
}
