//! The Zabbix walkthrough (docs/existing-schema.md) run as written, end to
//! end, against a Zabbix-shaped database (tests/fixtures/zabbix) owned by
//! the application's own login: every SQL block of the guide, in order, by
//! the role its first line names, each as a real login, with parallel query
//! forced on every connection. Then the outcome the guide promises is
//! checked from the outside: the application kept working, each role saw
//! what its profile says, the alert fired for the Zabbix item, retention
//! kept to the integer clock, and the erasure of user 42 reached her rows,
//! the rows Zabbix's cascades delete, and the mentions of her names.

use aegis_integration::docs::{blocks, connect_as};
use aegis_integration::{sqlstate, superuser_to, zabbix, Cluster};
use postgres::Client;

const GUIDE: &str = include_str!("../docs/existing-schema.md");
const DB: &str = "aegis_zabbix";
const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "zabbix"];

/// A real login of `who` (`dba`: the superuser) to the walkthrough's
/// database over the unix socket, with parallel query forced.
fn connect(who: &str) -> Client {
    connect_as(DB, who)
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A fresh database owned by the application login `zabbix`, with the
/// Zabbix-shaped schema and data loaded by that login.
fn fresh_zabbix_database() {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .expect("drop old walkthrough database");
    for role in PEOPLE {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .expect("pg_roles")
            .is_some();
        if exists {
            // Left by an earlier run: they own nothing outside its database.
            admin
                .batch_execute(&format!("DROP ROLE {role}"))
                .unwrap_or_else(|e| panic!("drop role {role}: {e}"));
        }
    }
    admin
        .batch_execute("CREATE ROLE zabbix LOGIN")
        .expect("create the application login");
    admin
        .batch_execute(&format!("CREATE DATABASE {DB} OWNER zabbix"))
        .expect("create its database");
    let mut app = connect("zabbix");
    zabbix::load(&mut app, 1);
}

#[test]
fn zabbix_walkthrough_runs_as_written() {
    fresh_zabbix_database();
    let mut dba = connect("dba");
    let mary_alerts_before = count(
        &mut dba,
        "SELECT count(*) FROM alerts WHERE message ILIKE '%Mary Smith%' OR message ILIKE '%mary.smith%'",
    );
    assert!(mary_alerts_before > 0, "the fixture names Mary in alerts");
    let users_before = count(&mut dba, "SELECT count(*) FROM users");

    // ---------------------------------------------------------------- the guide
    let blocks = blocks(GUIDE);
    assert!(
        blocks.len() >= 15,
        "the guide has its SQL blocks ({})",
        blocks.len()
    );
    for (i, b) in blocks.iter().enumerate() {
        let mut c = connect(&b.who);
        let result = c.batch_execute(&b.sql);
        match (&b.expect, result) {
            (None, Ok(())) => {}
            (None, Err(e)) => panic!(
                "block {} (as {}) failed: {}\n{}",
                i + 1,
                b.who,
                e.as_db_error().map(|d| d.message()).unwrap_or_default(),
                b.sql
            ),
            (Some(code), Err(e)) => assert_eq!(
                &sqlstate(&e),
                code,
                "block {} (as {}) failed with the wrong error: {e:?}",
                i + 1,
                b.who
            ),
            (Some(code), Ok(())) => panic!(
                "block {} (as {}) should fail with {code}\n{}",
                i + 1,
                b.who,
                b.sql
            ),
        }
    }

    // ---------------------------------------------------------------- the outcome
    // The application kept reading and writing its tables, with parallel
    // plans, and its changes were audited under its own name.
    let mut app = connect("zabbix");
    assert_eq!(
        count(&mut app, "SELECT count(*) FROM users"),
        users_before - 1,
        "Zabbix sees every user but the erased one"
    );
    let plan: Vec<String> = app
        .query("EXPLAIN SELECT count(*) FROM history", &[])
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("Gather")),
        "the application's reads run in parallel: {plan:?}"
    );
    app.batch_execute(
        "INSERT INTO sessions (sessionid, userid, lastaccess, status) VALUES ('walkthrough', 1, 1764547500, 0);
         UPDATE users SET theme = 'dark-theme' WHERE userid = 1;
         DELETE FROM sessions WHERE sessionid = 'walkthrough';",
    )
    .expect("the application writes its tables");
    assert!(
        count(
            &mut dba,
            "SELECT count(*) FROM aegis.audit_log WHERE db_user = 'zabbix' AND table_name = 'public.sessions'"
        ) >= 2,
        "the application's changes are audited"
    );

    // The application's reads of users are counted, not recorded one by
    // one; a person's read is an entry of its own.
    let recorded: i64 = app
        .query_one("SELECT aegis.flush_application_reads()", &[])
        .expect("flush")
        .get(0);
    assert!(recorded >= 1, "the application's reads were counted");
    assert!(
        count(
            &mut dba,
            "SELECT count(*) FROM aegis.audit_log WHERE table_name = 'public.users' AND operation = 'SELECT'
               AND detail ->> 'aggregate' = 'true' AND detail ->> 'role' = 'zabbix'
               AND (detail ->> 'statements')::bigint >= 1"
        ) >= 1,
        "the application's reads of users are recorded as counts"
    );
    assert_eq!(
        count(
            &mut dba,
            "SELECT count(*) FROM aegis.audit_log WHERE table_name = 'public.users' AND operation = 'SELECT'
               AND session_user_name = 'zabbix' AND detail ->> 'aggregate' IS NULL"
        ),
        0,
        "no per-statement entry for the application's reads"
    );
    assert!(
        count(
            &mut dba,
            "SELECT count(*) FROM aegis.audit_log WHERE table_name = 'public.users' AND operation = 'SELECT'
               AND session_user_name = 'alice' AND detail ->> 'aggregate' IS NULL"
        ) >= 1,
        "the auditor's reads of users are entries of their own"
    );

    // Each role sees what its profile says: the auditor no names, the
    // developer no log lines, the admin everything.
    let mut alice = connect("alice");
    let e = alice
        .query("SELECT name FROM users", &[])
        .expect_err("the auditor's users profile hides names");
    assert_eq!(sqlstate(&e), "42501");
    assert_eq!(
        count(&mut alice, "SELECT count(*) FROM history"),
        count(&mut dba, "SELECT count(*) FROM history"),
        "the auditor reads every history row"
    );
    let mut bob = connect("bob");
    assert_eq!(
        sqlstate(
            &bob.query("SELECT value FROM history_log", &[])
                .expect_err("log lines are free text")
        ),
        "42501"
    );
    assert_eq!(
        sqlstate(
            &bob.query("SELECT count(*) FROM users", &[])
                .expect_err("developers have nothing on users")
        ),
        "42501"
    );
    let mut carol = connect("carol");
    assert_eq!(
        count(&mut carol, "SELECT count(*) FROM users WHERE name <> ''"),
        count(&mut dba, "SELECT count(*) FROM users WHERE name <> ''"),
        "the admin reads every user and column"
    );

    // Dave, on call for host 10085, sees its rows through every join path,
    // and nothing else; his query on history is planned on the indexes.
    let mut dave = connect("dave");
    for (table, mine) in [
        ("hosts", "SELECT count(*) FROM hosts WHERE hostid = 10085"),
        ("items", "SELECT count(*) FROM items WHERE hostid = 10085"),
        (
            "history",
            "SELECT count(*) FROM history WHERE itemid IN (SELECT itemid FROM items WHERE hostid = 10085)",
        ),
        (
            "events",
            "SELECT count(*) FROM events WHERE objectid IN (SELECT f.triggerid FROM functions f JOIN items i USING (itemid) WHERE i.hostid = 10085)",
        ),
    ] {
        let expected = count(&mut dba, mine);
        assert!(expected > 0, "host 10085 has {table} rows");
        assert_eq!(
            count(&mut dave, &format!("SELECT count(*) FROM {table}")),
            expected,
            "dave sees exactly host 10085's {table}"
        );
    }
    dave.batch_execute("SET max_parallel_workers_per_gather = 0")
        .expect("serial plan");
    let plan: Vec<String> = dave
        .query(
            "EXPLAIN (COSTS OFF) SELECT * FROM history WHERE clock > 1764000000",
            &[],
        )
        .expect("explain as dave")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(
        !plan.iter().any(|l| l.contains("Seq Scan on history")),
        "the scope predicate is index-friendly: {plan:#?}"
    );

    // Pseudonyms through the masking view: the same person, the same
    // pseudonym as the admin's pseudonymize(); Bob's alert messages have no
    // email addresses left.
    let p: String = carol
        .query_one("SELECT aegis.pseudonymize('Admin')", &[])
        .expect("the admin's pseudonym")
        .get(0);
    assert_eq!(
        count(
            &mut alice,
            &format!("SELECT count(*) FROM users_masked WHERE username = '{p}'")
        ),
        1,
        "the auditor finds a user by pseudonym"
    );
    let email = "message ~ '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+[.][a-z]{2,}'";
    assert!(
        count(
            &mut dba,
            &format!("SELECT count(*) FROM alerts WHERE {email}")
        ) > 0,
        "the alerts themselves hold email addresses"
    );
    assert_eq!(
        count(
            &mut bob,
            &format!("SELECT count(*) FROM alerts_masked WHERE {email}")
        ),
        0,
        "no email address is left in the developer's alert messages"
    );

    // The alert fired for the Zabbix item, with the time of its clock.
    let row = dba
        .query_one(
            "SELECT server_id, (detail ->> 'ts')::timestamptz = to_timestamp(1764547400), raised_by::text
             FROM aegis.alert_events WHERE alert = 'history_value_high'",
            &[],
        )
        .expect("one alert for the high value");
    assert_eq!(row.get::<_, String>(0), "10002");
    assert!(row.get::<_, bool>(1), "the alert's time is the row's clock");
    assert_eq!(row.get::<_, String>(2), "zabbix");

    // Retention kept to the integer clock: nothing older than 400 days.
    assert_eq!(
        count(
            &mut dba,
            "SELECT count(*) FROM history WHERE clock < extract(epoch FROM now() - interval '400 days')"
        ),
        0
    );
    assert!(count(&mut dba, "SELECT count(*) FROM history") > 0);

    // The erasure: her rows, the rows cascades delete, and the mentions of
    // her names are gone; her audit log rows are kept without her; the
    // receipt says who asked; the chain still verifies.
    for (sql, what) in [
        ("SELECT count(*) FROM users WHERE userid = 42", "her user"),
        ("SELECT count(*) FROM media WHERE userid = 42", "her media"),
        ("SELECT count(*) FROM sessions WHERE userid = 42", "her sessions"),
        ("SELECT count(*) FROM acknowledges WHERE userid = 42", "her acknowledgements"),
        ("SELECT count(*) FROM alerts WHERE userid = 42", "her alerts"),
        (
            "SELECT count(*) FROM alerts WHERE message ILIKE '%Mary Smith%' OR message ILIKE '%mary.smith%'",
            "mentions in alerts",
        ),
        (
            "SELECT count(*) FROM acknowledges WHERE message ILIKE '%Mary Smith%' OR message ILIKE '%mary.smith%'",
            "mentions in acknowledgements",
        ),
        (
            "SELECT count(*) FROM history_log WHERE value ILIKE '%mary.smith%' OR value ILIKE '%Mary Smith%'",
            "mentions in log lines",
        ),
        ("SELECT count(*) FROM auditlog WHERE userid = 42 OR username = 'mary.smith'", "her audit log identity"),
    ] {
        assert_eq!(count(&mut dba, sql), 0, "{what} remain after erasure");
    }
    assert!(
        count(
            &mut dba,
            "SELECT count(*) FROM auditlog WHERE username = '[ERASED]'"
        ) > 0,
        "her audit log rows are kept, anonymized"
    );
    let receipt = dba
        .query_one(
            "SELECT detail ->> 'requested_by', detail ->> 'complete', (detail -> 'tables' -> 'public.acknowledges' -> 'cascades')::text
             FROM aegis.audit_log WHERE operation = 'ERASURE' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .expect("the erasure receipt is in the trail");
    assert_eq!(receipt.get::<_, String>(0), "carol");
    assert_eq!(receipt.get::<_, String>(1), "true");
    let cascades: String = receipt.get::<_, Option<String>>(2).unwrap_or_default();
    assert!(
        cascades.contains("public.alerts") && cascades.contains("deleted_by_cascade"),
        "the receipt lists the alerts Zabbix's cascade deleted with her acknowledgements: {cascades}"
    );
    let ok: bool = dba
        .query_one("SELECT bool_and(ok) FROM aegis.verify_chain()", &[])
        .expect("verify_chain")
        .get(0);
    assert!(ok, "the audit chain verifies after the walkthrough");

    drop((app, alice, bob, carol, dave, dba));
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"));
    for role in PEOPLE {
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
    }
}
