//! Every SQL example of the docs, run as written: each page of `docs/`
//! (but the Zabbix walkthrough, which `tests/zabbix.rs` runs against its
//! fixture) in a fresh database of the preloaded cluster, block by block,
//! in order, each as a real login of the role its first line names (`dba`:
//! the superuser), with parallel query forced; a block annotated `expect
//! <SQLSTATE>` must fail with that error. Then the README's quick start, on
//! a table an application login owns, and what it promises.

use aegis_integration::docs::{blocks, connect_as, Block};
use aegis_integration::{sqlstate, superuser_to, Cluster};
use postgres::Client;

const DB: &str = "aegis_docs";
const README_DB: &str = "aegis_docs_readme";

fn connect(db: &str, who: &str) -> Client {
    connect_as(db, who)
}

/// A database with pg_aegis installed once, copied for each page.
const TEMPLATE: &str = "aegis_docs_template";

fn template_database() {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    for db in [DB, TEMPLATE] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .expect("drop an old docs database");
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
        .expect("create the template");
    connect(TEMPLATE, "dba")
        .batch_execute("CREATE EXTENSION pg_aegis")
        .expect("create extension");
}

/// A fresh database with pg_aegis (a copy of the template), and none of
/// `roles` left from an earlier page or run.
fn fresh_database(roles: &[&str]) {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .expect("drop the old docs database");
    for role in roles.iter().filter(|r| **r != "dba") {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .unwrap_or_else(|e| panic!("drop role {role}: {e}"));
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {DB} TEMPLATE {TEMPLATE}"))
        .expect("create the docs database");
}

fn run(db: &str, page: &str, blocks: &[Block]) {
    for (i, b) in blocks.iter().enumerate() {
        let mut c = connect(db, &b.who);
        let result = c.batch_execute(&b.sql);
        match (&b.expect, result) {
            (None, Ok(())) => {}
            (None, Err(e)) => panic!(
                "{page}, block {} (as {}) failed: {}\n{}",
                i + 1,
                b.who,
                e.as_db_error().map(|d| d.message()).unwrap_or_default(),
                b.sql
            ),
            (Some(code), Err(e)) => assert_eq!(
                &sqlstate(&e),
                code,
                "{page}, block {} (as {}) failed with the wrong error: {e:?}",
                i + 1,
                b.who
            ),
            (Some(code), Ok(())) => panic!(
                "{page}, block {} (as {}) should fail with {code}\n{}",
                i + 1,
                b.who,
                b.sql
            ),
        }
    }
}

/// The roles a page's blocks run as.
fn roles_of(blocks: &[Block]) -> Vec<&str> {
    let mut r: Vec<&str> = blocks.iter().map(|b| b.who.as_str()).collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// One test, so the pages and the quick start (which share role names)
/// never run at the same time.
#[test]
fn every_sql_example_of_the_docs_runs_as_written() {
    docs_pages();
    readme_quick_start();
}

fn docs_pages() {
    template_database();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .expect("docs/")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    let mut ran = 0;
    for path in pages {
        let page = path.file_name().unwrap_or_default().to_string_lossy();
        if page == "existing-schema.md" {
            continue; // tests/zabbix.rs, on the Zabbix-shaped fixture
        }
        let text = std::fs::read_to_string(&path).expect("read page");
        let blocks = blocks(&text);
        if blocks.is_empty() {
            continue;
        }
        fresh_database(&roles_of(&blocks));
        run(DB, &page, &blocks);
        ran += blocks.len();
    }
    assert!(ran >= 10, "the docs have their SQL examples ({ran})");
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    for db in [DB, TEMPLATE] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .expect("drop the docs databases");
    }
}

/// The README's quick start: three statements protect a table the
/// application login owns; the application goes on reading and writing,
/// the developer reads the table's non-sensitive columns only.
fn readme_quick_start() {
    let readme = include_str!("../README.md");
    let start = readme.find("## Quick start").expect("a quick start");
    let end = readme[start..]
        .find("\n### ")
        .map_or(readme.len(), |e| start + e);
    let blocks = blocks(&readme[start..end]);
    assert_eq!(blocks.len(), 1, "one SQL block in the quick start");
    let roles = ["app", "alice"];
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {README_DB} WITH (FORCE)"))
        .expect("drop the old docs database");
    for role in roles {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .unwrap_or_else(|e| panic!("drop role {role}: {e}"));
    }
    admin
        .batch_execute("CREATE ROLE app LOGIN; CREATE ROLE alice LOGIN")
        .expect("roles");
    admin
        .batch_execute(&format!("CREATE DATABASE {README_DB} OWNER app"))
        .expect("database");
    let mut app = connect(README_DB, "app");
    app.batch_execute(
        "CREATE TABLE error_logs (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(),
                                  severity text NOT NULL, user_ip inet, message text);
         INSERT INTO error_logs (severity, user_ip, message)
         VALUES ('ERROR', '203.0.113.9', 'login failed for jane.doe@example.com');",
    )
    .expect("the application's table");
    run(README_DB, "README.md", &blocks);

    // The application: as before.
    app.batch_execute(
        "INSERT INTO error_logs (severity, message) VALUES ('WARN', 'disk 91% full');
         UPDATE error_logs SET severity = 'INFO' WHERE message LIKE 'disk%';",
    )
    .expect("the application still writes");
    let n: i64 = app
        .query_one("SELECT count(*) FROM error_logs", &[])
        .expect("the application still reads")
        .get(0);
    assert_eq!(n, 2);
    // alice, a developer: the public columns, not the sensitive ones.
    let mut alice = connect(README_DB, "alice");
    let n: i64 = alice
        .query_one("SELECT count(severity) FROM error_logs", &[])
        .expect("the developer reads public columns")
        .get(0);
    assert_eq!(n, 2);
    for col in ["message", "user_ip"] {
        let e = alice
            .query(&format!("SELECT {col} FROM error_logs"), &[])
            .expect_err("sensitive column");
        assert_eq!(sqlstate(&e), "42501", "{col}: {e:?}");
    }
    // The changes are in the audit trail, under the application's name.
    let n: i64 = connect(README_DB, "dba")
        .query_one(
            "SELECT count(*) FROM aegis.audit_log WHERE table_name = 'public.error_logs' AND db_user = 'app'",
            &[],
        )
        .expect("audit log")
        .get(0);
    assert!(n >= 2, "the application's changes are audited ({n})");
    drop((app, alice));
    admin
        .batch_execute(&format!("DROP DATABASE {README_DB} WITH (FORCE)"))
        .expect("drop the docs database");
}
