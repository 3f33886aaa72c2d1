//! Retention and legal holds with real logins and committed transactions:
//!   - apply_retention() run by an aegis_admin login deletes expired rows and
//!     keeps every row under an active hold; the deletions and the run are
//!     audit entries and the sealed chain verifies afterwards;
//!   - while a run is in progress, concurrent inserts into the same table are
//!     not blocked, and a hold placed meanwhile waits for the run to commit
//!     (so a run never deletes rows a hold committed before it covered);
//!   - the hold's placement and release are attributed to the admin who did
//!     them; after the release the rows expire at the next run.

use aegis_integration::audit::{seal_all, verify};
use aegis_integration::{sqlstate, superuser_to, Cluster, LoginRole};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

const DB: &str = "aegis_it_retention";

fn fresh_db() -> Client {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut c = superuser_to(Cluster::Preloaded, DB);
    c.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('pseudonym');
         SELECT aegis.create_monitoring_schema('mon');",
    )
    .unwrap();
    c
}

fn login(role: &LoginRole) -> Client {
    role.config()
        .dbname(DB)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("login as {}: {e}", role.name))
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn retention_under_a_legal_hold_with_real_sessions() {
    let mut su = fresh_db();
    let admin_role = LoginRole::create(&mut su, "ret_admin");
    let other_role = LoginRole::create(&mut su, "ret_admin2");
    let ingest_role = LoginRole::create(&mut su, "ret_ingest");
    su.batch_execute(&format!(
        "GRANT aegis_admin TO {a}, {b}; GRANT aegis_ingest TO {i};",
        a = admin_role.name,
        b = other_role.name,
        i = ingest_role.name
    ))
    .unwrap();
    // 400 access log rows, 1..400 days (and an hour) old, users u0..u3; 311
    // are past the 90-day retention, 77 of those are u1's (held below).
    su.batch_execute(
        "INSERT INTO mon.user_access_logs (user_id, accessed_at, resource)
         SELECT 'u' || (g % 4), now() - g * interval '1 day' - interval '1 hour', 'r'
         FROM generate_series(1, 400) g",
    )
    .unwrap();
    let expired_u1 = count(
        &mut su,
        "SELECT count(*) FROM mon.user_access_logs
         WHERE accessed_at < now() - interval '90 days' AND user_id = 'u1'",
    );
    let expired_all = count(
        &mut su,
        "SELECT count(*) FROM mon.user_access_logs WHERE accessed_at < now() - interval '90 days'",
    );
    assert_eq!((expired_all, expired_u1), (311, 77));

    let mut admin = login(&admin_role);
    let hold: i64 = admin
        .query_one(
            "SELECT aegis.place_legal_hold('mon.user_access_logs', 'user_id = ''u1''', 'Case 17')",
            &[],
        )
        .unwrap()
        .get(0);

    // A run in progress (not yet committed) ...
    admin.batch_execute("BEGIN").unwrap();
    let deleted: i64 = admin
        .query_one(
            "SELECT rows_affected FROM aegis.apply_retention()
             WHERE table_name = 'mon.user_access_logs'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deleted, expired_all - expired_u1);
    // ... does not block an insert into the same table ...
    let mut ingest = login(&ingest_role);
    ingest
        .batch_execute("SET statement_timeout = '5s'")
        .unwrap();
    let t = Instant::now();
    ingest
        .execute(
            "INSERT INTO mon.user_access_logs (user_id, resource) VALUES ('u9', 'during')",
            &[],
        )
        .unwrap();
    let insert_wait = t.elapsed();
    assert!(
        insert_wait < Duration::from_secs(1),
        "an insert waited {insert_wait:?} for a running retention"
    );
    // ... but a new hold waits for it to commit.
    let mut other = login(&other_role);
    other.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let err = other
        .query_one(
            "SELECT aegis.place_legal_hold('mon.user_access_logs', NULL, 'too late')",
            &[],
        )
        .expect_err("a hold placed during a retention run must wait for it");
    assert_eq!(sqlstate(&err), "55P03", "{err}");
    admin.batch_execute("COMMIT").unwrap();

    // Held rows stayed, the rest of the expired rows are gone, new rows too.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM mon.user_access_logs WHERE accessed_at < now() - interval '90 days'"
        ),
        expired_u1
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM mon.user_access_logs WHERE resource = 'during'"
        ),
        1
    );

    // Release (attributed), and the next run deletes what it held.
    admin
        .execute("SELECT aegis.release_legal_hold($1)", &[&hold])
        .unwrap();
    let deleted: i64 = admin
        .query_one(
            "SELECT rows_affected FROM aegis.apply_retention()
             WHERE table_name = 'mon.user_access_logs'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deleted, expired_u1);

    // The trail: one DELETE entry per deleted row, RETENTION entries naming
    // the run's requester and the hold, the hold's changes by the admin.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM aegis.audit_log
             WHERE operation = 'DELETE' AND table_name = 'mon.user_access_logs'"
        ),
        expired_all
    );
    let runs = su
        .query(
            "SELECT session_user_name, detail ->> 'rows_deleted', detail ->> 'legal_holds'
             FROM aegis.audit_log
             WHERE operation = 'RETENTION' AND table_name = 'mon.user_access_logs' ORDER BY id",
            &[],
        )
        .unwrap();
    assert_eq!(runs.len(), 2);
    let first_deleted = (expired_all - expired_u1).to_string();
    assert_eq!(runs[0].get::<_, String>(0), admin_role.name);
    assert_eq!(runs[0].get::<_, String>(1), first_deleted);
    assert_eq!(runs[0].get::<_, String>(2), format!("[{hold}]"));
    assert_eq!(runs[1].get::<_, String>(1), expired_u1.to_string());
    let hold_changes = su
        .query(
            "SELECT operation, db_user FROM aegis.audit_log
             WHERE table_name = 'aegis.legal_holds' ORDER BY id",
            &[],
        )
        .unwrap();
    let changes: Vec<(String, String)> =
        hold_changes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        changes,
        vec![
            ("INSERT".to_string(), admin_role.name.clone()),
            ("UPDATE".to_string(), admin_role.name.clone()),
        ]
    );

    // Deletions do not break the chain.
    seal_all(&mut su, 3);
    let (ok, checked, problem) = verify(&mut su, None);
    assert!(ok, "chain after retention: {problem:?}");
    assert!(checked > expired_all, "{checked} entries checked");

    drop(admin);
    drop(other);
    drop(ingest);
    drop(su);
    let mut pg = superuser_to(Cluster::Preloaded, "postgres");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .unwrap();
    for r in [admin_role, other_role, ingest_role] {
        r.drop_with(&mut pg);
    }
}
