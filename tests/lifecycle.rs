//! Retention and legal holds with real logins and committed transactions:
//!   - apply_retention() run by an aegis_admin login deletes expired rows and
//!     keeps every row under an active hold; the deletions and the run are
//!     audit entries and the sealed chain verifies afterwards;
//!   - while a run is in progress, concurrent inserts into the same table are
//!     not blocked, and a hold placed meanwhile waits for the run to commit
//!     (so a run never deletes rows a hold committed before it covered);
//!   - the hold's placement and release are attributed to the admin who did
//!     them; after the release the rows expire at the next run;
//!   - erase_subject() by an admin login: the subject's rows deleted or
//!     anonymized across tables, mentions erased, their key destroyed, their
//!     data in committed and sealed audit entries tombstoned, and the chain
//!     (also against a head saved before) and the tables still verify;
//!   - metric alerts reach a listening client through NOTIFY aegis_alerts,
//!     at commit and only then, as an event id: the content is read through
//!     aegis.alert_event() under row-level security, a login with no grants
//!     that listens learns nothing, and a forged notification names no event;
//!   - metric inserts for the same server never wait for each other: one
//!     collector keeps its transaction open after an insert that fired an
//!     alert and folded the baseline, another inserts on and is alerted
//!     (an open or rolled-back firing silences nobody); the cooldown holds,
//!     nothing is counted twice, a repeatable-read collector neither fails
//!     nor fires again, and the worker's upkeep does not wait either;
//!   - the compliance report's server-side controls flip from fail to pass
//!     as TLS is switched on, pg_hba.conf allows only hostssl, and
//!     password_encryption is put back to scram-sha-256;
//!   - a session holding the audit chain's lock (an auditor's long seal()
//!     statement) delays sealing, never the worker: it waits a bounded time,
//!     reports who holds the lock as a security alert, and seals once the
//!     lock is gone; seal() in a transaction block is refused to
//!     non-superusers;
//!   - the worker comes back when it is terminated, and when its database is
//!     dropped and created again (a restore), and seals there;
//!   - an expired row an editor keeps locked does not stall the worker's
//!     scheduled retention: the run skips it, says so in its status and its
//!     RETENTION entry, sealing goes on, the compliance report fails while
//!     the row persists and passes once a later run deletes it;
//!   - a table owner's slow trigger inside the scheduled retention run
//!     stalls neither the worker (its security checks go on) nor a
//!     shutdown; aegis.retention_timeout cancels the run, which is recorded
//!     as failed;
//!   - schedule_retention(): without pg_cron the database's background worker
//!     runs apply_retention() when the schedule is due and moves it on; with
//!     pg_cron installed the job is pg_cron's and runs there.

use aegis_integration::audit::{seal_all, verify};
use aegis_integration::{sqlstate, superuser_to, Cluster, LoginRole, ScratchCluster};
use postgres::fallible_iterator::FallibleIterator;
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
    login_to(role, DB)
}

fn login_to(role: &LoginRole, db: &str) -> Client {
    role.config()
        .dbname(db)
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

    // The trail: one DELETE image per deleted row (a chunk entry holds one
    // per row), RETENTION entries naming the run's requester and the hold,
    // the hold's changes by the admin.
    assert_eq!(
        count(
            &mut su,
            "SELECT sum(CASE WHEN aegis.is_chunk(detail, old_row, new_row)
                             THEN (detail ->> 'rows')::bigint ELSE 1 END)::bigint
             FROM aegis.audit_log
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
    seal_all(&mut su);
    let (ok, checked, problem) = verify(&mut su, None);
    assert!(ok, "chain after retention: {problem:?}");
    assert_eq!(
        checked,
        count(&mut su, "SELECT count(*) FROM aegis.audit_log"),
        "every entry checked"
    );

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

/// A database with pg_aegis, the reference schema and 50 access records, 40
/// of them past the 90-day retention.
fn scheduled_db(c: &mut Client) {
    c.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('pseudonym');
         SELECT aegis.create_monitoring_schema('mon');
         INSERT INTO mon.user_access_logs (user_id, accessed_at, resource)
         SELECT 'u' || g, now() - (g * 10) * interval '1 day' + interval '1 hour', 'r'
         FROM generate_series(0, 49) g;",
    )
    .unwrap();
}

fn wait_for<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_session_holding_the_chain_lock_does_not_stall_the_worker() {
    let cluster = ScratchCluster::init(
        "sealer_blocked",
        &["aegis.seal_databases = 'blk'", "aegis.seal_interval = 200"],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE blk")
        .unwrap();
    let mut su = cluster.connect("blk");
    su.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         CREATE TABLE public.events (id int PRIMARY KEY, note text);
         SELECT aegis.protect('public.events');
         CREATE ROLE blk_auditor LOGIN IN ROLE aegis_auditor;",
    )
    .unwrap();
    // The worker started before the database existed; the postmaster
    // starts it again (10 s): wait until it is attached to blk.
    wait_for("the sealer to attach to blk", 30, || {
        (count(
            &mut su,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_aegis sealer' AND datname = 'blk'",
        ) == 1)
            .then_some(())
    });
    let mut cfg = cluster.config("blk");
    cfg.user("blk_auditor");
    let mut auditor = cfg.connect(NoTls).unwrap();
    // In a transaction block a non-superuser's seal() is refused: its lock
    // would last until COMMIT, however long that is.
    auditor.batch_execute("BEGIN").unwrap();
    let e = auditor.query_one("SELECT aegis.seal()", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), "25001", "{e}");
    auditor.batch_execute("ROLLBACK").unwrap();
    // Nor is notifying in several statements sent as one query (an
    // implicit transaction block: its locks would last as long).
    let e = auditor
        .batch_execute("SELECT 1; SELECT count(*) FROM aegis.security_alerts(true)")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25001", "{e}");
    // A single statement holds it for as long as it runs: 8 s here.
    let holder_pid: i32 = auditor
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let holder = std::thread::spawn(move || {
        auditor
            .query_one("SELECT aegis.seal(), pg_sleep(8)", &[])
            .unwrap();
        auditor
    });
    std::thread::sleep(Duration::from_millis(500));
    su.batch_execute("INSERT INTO public.events VALUES (1, 'while the chain is locked')")
        .unwrap();
    // The worker waits a bounded time, then reports who holds the lock,
    // long before the holder lets go.
    let started = Instant::now();
    let holders: String = wait_for("the blocked-sealer alert", 6, || {
        su.query_opt(
            "SELECT detail ->> 'holders' FROM aegis.alert_events WHERE alert = 'audit_sealer_blocked'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    });
    assert!(started.elapsed() < Duration::from_secs(7));
    assert!(
        holders.contains(&format!("pid {holder_pid} ")) && holders.contains("blk_auditor"),
        "{holders}"
    );
    // Once the statement ends, sealing resumes: the entry enters the chain.
    let _auditor = holder.join().unwrap();
    wait_for("the entry to be sealed", 20, || {
        (count(
            &mut su,
            "SELECT count(*) FROM aegis.audit_log l
             WHERE NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id)",
        ) == 0)
            .then_some(())
    });
    let (ok, problem): (bool, Option<String>) = su
        .query_one("SELECT ok, problem FROM aegis.verify_chain()", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(ok, "{problem:?}");
}

#[test]
fn the_worker_comes_back_after_it_is_stopped_and_its_database_recreated() {
    let cluster = ScratchCluster::init(
        "sealer_restart",
        &["aegis.seal_databases = 'back'", "aegis.seal_interval = 200"],
    );
    cluster.start();
    let mut pg = cluster.connect("postgres");
    pg.batch_execute("CREATE DATABASE back").unwrap();
    let worker_pid = |c: &mut Client| -> Option<i32> {
        c.query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_aegis sealer' AND datname = 'back'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    };
    let first = wait_for("the sealer to attach to back", 30, || worker_pid(&mut pg));
    // Terminated (as an administrator or a tool might): it comes back.
    pg.query_one("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    let second = wait_for("the sealer to come back", 30, || {
        worker_pid(&mut pg).filter(|p| *p != first)
    });
    assert_ne!(first, second);
    // The database dropped (as a restore does) and created again: the
    // worker keeps trying meanwhile and attaches to the new one.
    pg.batch_execute("DROP DATABASE back WITH (FORCE)").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    pg.batch_execute("CREATE DATABASE back").unwrap();
    let mut c = cluster.connect("back");
    c.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         CREATE TABLE public.t (id int PRIMARY KEY);
         SELECT aegis.protect('public.t');
         INSERT INTO public.t VALUES (1), (2);",
    )
    .unwrap();
    wait_for("the sealer to attach to the new back", 40, || {
        worker_pid(&mut pg)
    });
    // And it seals there.
    wait_for("the new entries to be sealed", 30, || {
        (count(
            &mut c,
            "SELECT count(*) FROM aegis.audit_log l
             WHERE NOT EXISTS (SELECT 1 FROM aegis.audit_chain ch WHERE ch.entry_id = l.id)",
        ) == 0)
            .then_some(())
    });
}

#[test]
fn scheduled_retention_runs_in_the_background_worker() {
    let cluster = ScratchCluster::init(
        "retention_worker",
        &[
            "aegis.seal_databases = 'sched'",
            "aegis.seal_interval = 200",
        ],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE sched")
        .unwrap();
    let mut c = cluster.connect("sched");
    scheduled_db(&mut c);
    let msg: String = c
        .query_one("SELECT aegis.schedule_retention('0 3 * * *')", &[])
        .unwrap()
        .get(0);
    assert!(
        msg.starts_with("scheduled in the pg_aegis background worker: 0 3 * * *, next run "),
        "{msg}"
    );
    // Not due yet: nothing happens.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mon.user_access_logs"),
        50
    );
    // Make it due now; the worker runs it within a round or two.
    c.batch_execute("UPDATE aegis.retention_schedule SET next_run_at = now()")
        .unwrap();
    let status: String = wait_for("the scheduled run", 20, || {
        c.query_one("SELECT last_status FROM aegis.retention_schedule", &[])
            .unwrap()
            .get::<_, Option<String>>(0)
    });
    assert!(status.starts_with("ok: 40 rows deleted"), "{status}");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mon.user_access_logs"),
        10
    );
    // Moved on to the next 03:00 UTC, and the run is in the trail.
    let next_ok: bool = c
        .query_one(
            "SELECT next_run_at > now() AND next_run_at <= now() + interval '1 day'
                    AND extract(hour FROM next_run_at AT TIME ZONE 'UTC') = 3
             FROM aegis.retention_schedule",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next_ok);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM aegis.audit_log
             WHERE operation = 'RETENTION' AND table_name = 'mon.user_access_logs'
               AND (detail ->> 'rows_deleted')::int = 40"
        ),
        1
    );
    let removed: bool = c
        .query_one("SELECT aegis.unschedule_retention()", &[])
        .unwrap()
        .get(0);
    assert!(removed);
}

#[test]
fn a_locked_expired_row_does_not_stall_scheduled_retention() {
    let cluster = ScratchCluster::init(
        "retention_locked",
        &[
            "aegis.seal_databases = 'lockd'",
            "aegis.seal_interval = 200",
        ],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE lockd")
        .unwrap();
    let mut c = cluster.connect("lockd");
    scheduled_db(&mut c);
    // Two incidents past the one-year retention, one of them being edited.
    c.batch_execute(
        "INSERT INTO mon.servers (server_id) VALUES ('db-1');
         INSERT INTO mon.incident_response_logs (server_id, ts, incident_summary)
         VALUES ('db-1', now() - interval '400 days', 'old, being edited'),
                ('db-1', now() - interval '401 days', 'old');
         UPDATE mon.incident_response_logs SET assigned_to = 'lockd_editor' WHERE incident_summary = 'old, being edited';
         CREATE ROLE lockd_editor LOGIN IN ROLE aegis_incident_editor;
         SELECT aegis.schedule_retention('0 3 * * *');",
    )
    .unwrap();
    wait_for("the sealer to attach to lockd", 30, || {
        (count(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_aegis sealer' AND datname = 'lockd'",
        ) == 1)
            .then_some(())
    });
    // The editor keeps the expired incident locked: an UPDATE in a
    // transaction left open for as long as the test needs.
    let mut cfg = cluster.config("lockd");
    cfg.user("lockd_editor");
    let mut editor = cfg.connect(NoTls).unwrap();
    editor
        .batch_execute(
            "BEGIN;
             UPDATE mon.incident_response_logs SET root_cause = 'still looking'
             WHERE assigned_to = 'lockd_editor';",
        )
        .unwrap();
    // The run is due now: the worker runs it without waiting for the
    // editor, and says what it could not delete and why.
    c.batch_execute("UPDATE aegis.retention_schedule SET next_run_at = now()")
        .unwrap();
    let started = Instant::now();
    let status: String = wait_for("the scheduled run", 20, || {
        c.query_one("SELECT last_status FROM aegis.retention_schedule", &[])
            .unwrap()
            .get::<_, Option<String>>(0)
    });
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        status,
        "41 rows deleted, 4 policies; 1 expired rows locked by other transactions, kept until a later run"
    );
    let (deleted, locked): (i64, i64) = c
        .query_one(
            "SELECT (detail ->> 'rows_deleted')::bigint, (detail ->> 'rows_locked')::bigint FROM aegis.audit_log
             WHERE operation = 'RETENTION' AND table_name = 'mon.incident_response_logs'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((deleted, locked), (1, 1));
    // The worker goes on with its rounds meanwhile, never waiting on a lock.
    for _ in 0..10 {
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_stat_activity
                 WHERE backend_type = 'pg_aegis sealer' AND wait_event_type = 'Lock'"
            ),
            0
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The compliance report fails while the expired row persists, and says
    // why.
    let report = |c: &mut Client| -> (String, String) {
        c.query_one(
            "SELECT status, detail FROM aegis.compliance_report() WHERE control = 'lifecycle.retention_applied'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap()
    };
    let (st, detail) = report(&mut c);
    assert_eq!(st, "fail", "{detail}");
    assert!(
        detail.contains("mon.incident_response_logs: 1")
            && detail.contains(
                "locked by other transactions at the last run: mon.incident_response_logs: 1"
            ),
        "{detail}"
    );
    // Once the editor is done, its change and everything after it is
    // sealed, and the next run deletes the row.
    editor.batch_execute("COMMIT").unwrap();
    wait_for("the entries to be sealed", 20, || {
        (count(
            &mut c,
            "SELECT count(*) FROM aegis.audit_log l
             WHERE NOT EXISTS (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id)",
        ) == 0)
            .then_some(())
    });
    let (deleted, locked): (i64, Option<i64>) = c
        .query_one(
            "SELECT rows_affected, rows_locked FROM aegis.apply_retention()
             WHERE table_name = 'mon.incident_response_logs'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((deleted, locked), (1, Some(0)));
    let (st, detail) = report(&mut c);
    assert_eq!(st, "pass", "{detail}");
}

#[test]
fn a_table_owners_slow_trigger_does_not_stall_the_worker() {
    let cluster = ScratchCluster::init(
        "retention_slow",
        &[
            "aegis.seal_databases = 'slow'",
            "aegis.seal_interval = 200",
            "aegis.security_check_interval = 500",
            "aegis.retention_timeout = 4000",
        ],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE slow")
        .unwrap();
    let mut c = cluster.connect("slow");
    // A table owned by an application login whose trigger sleeps on every
    // delete and catches the statement's cancellation to sleep on:
    // retention runs it as that owner.
    c.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         CREATE ROLE slow_app LOGIN;
         GRANT CREATE ON SCHEMA public TO slow_app;
         CREATE TABLE public.events (id int PRIMARY KEY, at timestamptz NOT NULL);
         ALTER TABLE public.events OWNER TO slow_app;
         SET ROLE slow_app;
         CREATE FUNCTION public.slow_delete() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                LOOP
                  BEGIN PERFORM pg_sleep(60);
                  EXCEPTION WHEN query_canceled THEN RAISE LOG 'slow_delete: cancel caught, sleeping on';
                  END;
                END LOOP;
              END $$;
         CREATE TRIGGER slow BEFORE DELETE ON public.events FOR EACH ROW EXECUTE FUNCTION public.slow_delete();
         INSERT INTO public.events VALUES (1, now() - interval '10 days');
         RESET ROLE;
         SELECT aegis.protect('public.events');
         SELECT aegis.set_retention('public.events', '1 day', 'at');
         SELECT aegis.schedule_retention('0 3 * * *');",
    )
    .unwrap();
    wait_for("the sealer to attach to slow", 30, || {
        (count(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_aegis sealer' AND datname = 'slow'",
        ) == 1)
            .then_some(())
    });
    let overdue = "SELECT count(*) FROM aegis.alert_events WHERE alert = 'retention_overdue'";
    wait_for("the first security check", 10, || {
        (count(&mut c, overdue) == 1).then_some(())
    });
    // The run is due: the retention worker sits in the owner's trigger.
    c.batch_execute("UPDATE aegis.retention_schedule SET next_run_at = now()")
        .unwrap();
    let sleeping = "SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type = 'pg_aegis retention' AND wait_event = 'PgSleep'";
    wait_for("retention to reach the trigger", 10, || {
        (count(&mut c, sleeping) == 1).then_some(())
    });
    // The sealer goes on: its security checks run again meanwhile (the
    // alert's hourly limit forgotten, so it is sent again).
    c.batch_execute("DELETE FROM aegis.security_alert_state WHERE alert = 'retention_overdue'")
        .unwrap();
    wait_for("a security check while retention is stuck", 3, || {
        (count(&mut c, overdue) == 2).then_some(())
    });
    // aegis.retention_timeout cancels the run's statement; the trigger
    // catches that, so the sealer ends the worker (SIGTERM, which nothing
    // catches) 5 s later: rolled back, recorded as failed, tried again at
    // the schedule's next time.
    let status: String = wait_for("the run to be stopped", 25, || {
        c.query_one("SELECT last_status FROM aegis.retention_schedule", &[])
            .unwrap()
            .get::<_, Option<String>>(0)
    });
    assert_eq!(
        status,
        "failed: stopped after aegis.retention_timeout (4000 ms): it did not end when its statement was cancelled"
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM public.events"), 1);
    assert!(c
        .query_one(
            "SELECT next_run_at > now() FROM aegis.retention_schedule",
            &[]
        )
        .unwrap()
        .get::<_, bool>(0));
    wait_for("the retention worker to end", 5, || {
        (count(&mut c, sleeping) == 0).then_some(())
    });
    // A shutdown does not wait for the owner's trigger either.
    c.batch_execute("UPDATE aegis.retention_schedule SET next_run_at = now()")
        .unwrap();
    wait_for("retention to reach the trigger again", 10, || {
        (count(&mut c, sleeping) == 1).then_some(())
    });
    drop(c);
    let started = Instant::now();
    cluster.stop("fast");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn scheduled_retention_through_pg_cron() {
    if !aegis_integration::server_library_or_skip("pg_cron", "scheduled_retention_through_pg_cron")
    {
        return;
    }
    let cluster = ScratchCluster::init(
        "retention_cron",
        &[
            "shared_preload_libraries = 'pg_aegis,pg_cron'",
            "cron.database_name = 'sched'",
            "cron.use_background_workers = on",
        ],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE sched")
        .unwrap();
    let mut c = cluster.connect("sched");
    c.batch_execute("CREATE EXTENSION pg_cron").unwrap();
    scheduled_db(&mut c);
    let msg: String = c
        .query_one("SELECT aegis.schedule_retention('* * * * *')", &[])
        .unwrap()
        .get(0);
    assert!(msg.starts_with("scheduled with pg_cron (job "), "{msg}");
    let job = c
        .query_one(
            "SELECT j.schedule, j.command, j.username FROM cron.job j
             JOIN aegis.retention_schedule s ON s.cron_job_id = j.jobid
             WHERE j.jobname = 'aegis_retention' AND s.via = 'pg_cron'",
            &[],
        )
        .unwrap();
    assert_eq!(job.get::<_, String>(0), "* * * * *");
    assert_eq!(job.get::<_, String>(1), "SELECT aegis.apply_retention()");
    assert_eq!(job.get::<_, String>(2), "postgres");
    // Rescheduling replaces the job instead of adding one.
    c.query_one("SELECT aegis.schedule_retention('* * * * *')", &[])
        .unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM cron.job"), 1);
    // pg_cron runs it at the next minute boundary.
    wait_for("pg_cron's run", 75, || {
        (count(&mut c, "SELECT count(*) FROM mon.user_access_logs") == 10).then_some(())
    });
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'"
        ),
        1
    );
    let removed: bool = c
        .query_one("SELECT aegis.unschedule_retention()", &[])
        .unwrap()
        .get(0);
    assert!(removed);
    assert_eq!(count(&mut c, "SELECT count(*) FROM cron.job"), 0);
}

#[test]
fn erasure_across_tables_keys_and_the_audit_trail() {
    const EDB: &str = "aegis_it_erasure";
    let mut pg = superuser_to(Cluster::Preloaded, "postgres");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {EDB} WITH (FORCE)"))
        .unwrap();
    pg.batch_execute(&format!("CREATE DATABASE {EDB}")).unwrap();
    let mut su = superuser_to(Cluster::Preloaded, EDB);
    su.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('pseudonym');
         SELECT aegis.create_key('audit_head');
         SELECT aegis.create_monitoring_schema('mon');
         INSERT INTO mon.servers (server_id) VALUES ('s1');",
    )
    .unwrap();
    let admin_role = LoginRole::create(&mut su, "era_admin");
    su.batch_execute(&format!("GRANT aegis_admin TO {}", admin_role.name))
        .unwrap();
    // Each row in a transaction of its own, and some changed later: the
    // subject's data is spread over many committed, sealed entries.
    for (who, msg) in [
        (
            "dana.k@example.com",
            "password reset for dana.k@example.com",
        ),
        ("erik", "erik saw dana.k@example.com fail twice"),
        ("dana.k@example.com", "timeout"),
    ] {
        su.execute(
            "INSERT INTO mon.error_logs (server_id, error_message, user_identifier, user_ip)
             VALUES ('s1', $2, $1, '192.0.2.1')",
            &[&who, &msg],
        )
        .unwrap();
        su.execute(
            "INSERT INTO mon.user_access_logs (user_id, resource) VALUES ($1, '/x')",
            &[&who],
        )
        .unwrap();
    }
    su.execute(
        "UPDATE mon.error_logs SET resolved = true WHERE user_identifier = 'dana.k@example.com'",
        &[],
    )
    .unwrap();
    let ct: Vec<u8> = su
        .query_one(
            "SELECT aegis.encrypt_for_subject('dana.k@example.com', 'her ticket')",
            &[],
        )
        .unwrap()
        .get(0);
    seal_all(&mut su);
    let head_before: String = su
        .query_one("SELECT aegis.chain_head()::text", &[])
        .unwrap()
        .get(0);

    let mut admin = login_to(&admin_role, EDB);
    let receipt: String = admin
        .query_one(
            "SELECT aegis.erase_subject('dana.k@example.com')::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(receipt.contains("\"complete\": true"), "{receipt}");
    assert!(
        !receipt.contains("dana"),
        "the receipt names the subject: {receipt}"
    );

    // Tables: her access rows deleted, her error rows anonymized, the
    // mention in Erik's row erased; Erik's rows otherwise intact.
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM mon.user_access_logs"),
        1
    );
    let msgs: Vec<(String, Option<String>)> = su
        .query(
            "SELECT error_message, user_identifier FROM mon.error_logs ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        msgs,
        vec![
            ("password reset for [ERASED]".to_string(), None),
            (
                "erik saw [ERASED] fail twice".to_string(),
                Some("erik".to_string())
            ),
            ("timeout".to_string(), None),
        ]
    );
    // The key: destroyed.
    let err = su
        .query_one("SELECT aegis.decrypt($1)", &[&ct])
        .expect_err("her ciphertext must not decrypt any more");
    assert_eq!(sqlstate(&err), "55000", "{err}");
    // The trail: nothing of hers left in any entry, every entry still there,
    // and the chain (and a head saved before the erasure) still verifies.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM aegis.audit_log
             WHERE concat_ws(' ', pk, old_row, new_row) ILIKE '%dana.k@example.com%'
                OR concat_ws(' ', pk, old_row, new_row)
                   LIKE '%pseudonym:' || aegis.pseudonymize('dana.k@example.com') || '%'"
        ),
        0
    );
    assert!(
        count(
            &mut su,
            // (Row images: a chunk entry holds one per row.)
            "SELECT sum(CASE WHEN aegis.is_chunk(detail, old_row, new_row)
                             THEN (detail ->> 'rows')::bigint ELSE 1 END)::bigint
             FROM aegis.audit_log WHERE erased_at IS NOT NULL"
        ) >= 9
    );
    seal_all(&mut su);
    let (ok, _, problem) = verify(&mut su, None);
    assert!(ok, "chain after erasure: {problem:?}");
    let (ok, _, problem) = verify(&mut su, Some(&head_before));
    assert!(ok, "saved head after erasure: {problem:?}");
    for t in ["mon.error_logs", "mon.user_access_logs"] {
        let ok: bool = su
            .query_one(
                "SELECT ok FROM aegis.verify_table($1::text::regclass)",
                &[&t],
            )
            .unwrap()
            .get(0);
        assert!(ok, "verify_table({t}) after erasure");
    }
    // The receipt is a sealed entry of the chain.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM aegis.audit_trail WHERE operation = 'ERASURE' AND position IS NOT NULL"
        ),
        1
    );
    // Tampering with a tombstoned entry's metadata is still caught.
    su.batch_execute(
        "BEGIN;
         ALTER TABLE aegis.audit_log DISABLE TRIGGER append_only;
         UPDATE aegis.audit_log SET db_user = 'someone_else'
         WHERE id = (SELECT min(id) FROM aegis.audit_log WHERE erased_at IS NOT NULL);",
    )
    .unwrap();
    let (ok, _, problem) = verify(&mut su, None);
    assert!(!ok, "a changed tombstoned entry must not verify");
    assert!(problem.unwrap_or_default().contains("modified"));
    su.batch_execute("ROLLBACK").unwrap();

    drop(admin);
    drop(su);
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {EDB} WITH (FORCE)"))
        .unwrap();
    admin_role.drop_with(&mut pg);
}

#[test]
fn alerts_arrive_by_notify_at_commit() {
    const ADB: &str = "aegis_it_alerts";
    let mut pg = superuser_to(Cluster::Preloaded, "postgres");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {ADB} WITH (FORCE)"))
        .unwrap();
    pg.batch_execute(&format!("CREATE DATABASE {ADB}")).unwrap();
    let mut su = superuser_to(Cluster::Preloaded, ADB);
    su.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_monitoring_schema('mon');
         INSERT INTO mon.servers (server_id) VALUES ('web-1'), ('db-1');",
    )
    .unwrap();
    let collector_role = LoginRole::create(&mut su, "collector");
    let oncall_role = LoginRole::create(&mut su, "listener");
    let nobody_role = LoginRole::create(&mut su, "nobody");
    su.batch_execute(&format!(
        "GRANT aegis_ingest TO {}; GRANT aegis_oncall TO {};",
        collector_role.name, oncall_role.name
    ))
    .unwrap();
    su.query_one(
        &format!(
            "SELECT aegis.assign_oncall('{}', 'web-1')",
            oncall_role.name
        ),
        &[],
    )
    .unwrap();

    // What SIEM or on-call tooling does: LISTEN on a connection of its own.
    // Any role can LISTEN on any channel: a login with no grants at all
    // listens too, and must learn nothing from it.
    let mut listener = login_to(&oncall_role, ADB);
    listener.batch_execute("LISTEN aegis_alerts").unwrap();
    let mut eavesdropper = login_to(&nobody_role, ADB);
    eavesdropper.batch_execute("LISTEN aegis_alerts").unwrap();
    let mut collector = login_to(&collector_role, ADB);

    // A rolled-back insert sends nothing; a committed one sends its alert.
    collector
        .batch_execute(
            "BEGIN;
             INSERT INTO mon.server_metrics (server_id, cpu_usage) VALUES ('db-1', 99);
             ROLLBACK;",
        )
        .unwrap();
    collector
        .execute(
            "INSERT INTO mon.server_metrics (server_id, cpu_usage) VALUES ('web-1', 40), ('web-1', 97.5)",
            &[],
        )
        .unwrap();
    let drain = |c: &mut Client| -> Vec<(String, String)> {
        let mut got = Vec::new();
        let mut notifications = c.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_secs(2));
        while let Some(n) = iter.next().unwrap() {
            got.push((n.channel().to_string(), n.payload().to_string()));
        }
        got
    };
    let got = drain(&mut listener);
    assert_eq!(got.len(), 1, "{got:?}");
    let (channel, payload) = &got[0];
    assert_eq!(channel, "aegis_alerts");
    // The payload is an id, nothing of the alert's content.
    let event_id: i64 = su
        .query_one(
            "SELECT id FROM aegis.alert_events WHERE alert = 'cpu_high' AND server_id = 'web-1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        payload,
        &format!("{{\"id\": {event_id}, \"source\": \"pg_aegis\", \"database\": \"{ADB}\"}}"),
    );
    for secret in ["web-1", "97.5", "cpu", "critical"] {
        assert!(!payload.contains(secret), "{secret} leaked in {payload}");
    }
    // The eavesdropper got the same id and nothing else, and cannot read it.
    let overheard = drain(&mut eavesdropper);
    assert_eq!(overheard.len(), 1, "{overheard:?}");
    assert_eq!(&overheard[0].1, payload);
    let e = eavesdropper
        .query("SELECT * FROM aegis.alert_events", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let rows = eavesdropper
        .query("SELECT * FROM aegis.alert_event($1)", &[payload])
        .unwrap();
    assert!(rows.is_empty(), "the eavesdropper read the alert");
    // The on-call engineer reads the content it may see, through the id.
    let row = listener
        .query_one(
            "SELECT alert, severity, server_id, raised_by, detail ->> 'message', (detail ->> 'value')::float8 \
             FROM aegis.alert_event($1)",
            &[payload],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "cpu_high");
    assert_eq!(row.get::<_, String>(1), "critical");
    assert_eq!(row.get::<_, String>(2), "web-1");
    // Raised by the collector whose insert set it off.
    assert_eq!(row.get::<_, String>(3), collector_role.name);
    assert_eq!(row.get::<_, String>(4), "cpu_usage 97.50 > 95 on web-1");
    assert_eq!(row.get::<_, f64>(5), 97.5);
    // The event names the alerts_history row it announces.
    let alert_id: i64 = su
        .query_one(
            "SELECT id FROM mon.alerts_history WHERE rule = 'cpu_high'",
            &[],
        )
        .unwrap()
        .get(0);
    let named: i64 = su
        .query_one(
            "SELECT (detail ->> 'alert_id')::bigint FROM aegis.alert_events WHERE id = $1",
            &[&event_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(named, alert_id);

    // A forged notification (any role can NOTIFY the channel) reaches the
    // listener, and is told apart: it names no event.
    eavesdropper
        .batch_execute(&format!(
            "NOTIFY aegis_alerts, '{{\"source\":\"pg_aegis\",\"database\":\"{ADB}\",\"id\":987654321}}'; \
             NOTIFY aegis_alerts, '{{\"source\":\"pg_aegis\",\"kind\":\"security\",\"alert\":\"audit_chain_broken\"}}'"
        ))
        .unwrap();
    let forged = drain(&mut listener);
    assert_eq!(forged.len(), 2, "{forged:?}");
    for (_, p) in &forged {
        let rows = listener
            .query("SELECT * FROM aegis.alert_event($1)", &[p])
            .unwrap();
        assert!(rows.is_empty(), "forged {p} was taken as genuine");
    }

    drop(listener);
    drop(eavesdropper);
    drop(collector);
    drop(su);
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {ADB} WITH (FORCE)"))
        .unwrap();
    collector_role.drop_with(&mut pg);
    oncall_role.drop_with(&mut pg);
    nobody_role.drop_with(&mut pg);
}

#[test]
fn metric_inserts_never_wait_for_each_other() {
    const MDB: &str = "aegis_it_metric_locks";
    let mut pg = superuser_to(Cluster::Preloaded, "postgres");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {MDB} WITH (FORCE)"))
        .unwrap();
    pg.batch_execute(&format!("CREATE DATABASE {MDB}")).unwrap();
    let mut su = superuser_to(Cluster::Preloaded, MDB);
    su.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_monitoring_schema('mon');
         INSERT INTO mon.servers (server_id) VALUES ('db-1');",
    )
    .unwrap();
    let roles: Vec<LoginRole> = ["ingest_a", "ingest_b", "ingest_rr"]
        .iter()
        .map(|l| LoginRole::create(&mut su, l))
        .collect();
    for r in &roles {
        su.batch_execute(&format!("GRANT aegis_ingest TO {}", r.name))
            .unwrap();
    }
    let connect = |r: &LoginRole| {
        let mut c = login_to(r, MDB);
        // A wait on another collector is a failure here, not a hang.
        c.batch_execute("SET lock_timeout = '3s'; SET statement_timeout = '10s'")
            .unwrap();
        c
    };
    let (mut a, mut b, mut rr) = (connect(&roles[0]), connect(&roles[1]), connect(&roles[2]));
    // The learned baseline in force for db-1's inbound traffic.
    let baseline = |c: &mut Client| -> (i64, f64) {
        c.query_one(
            "SELECT n, mean FROM aegis.current_baselines('mon.server_metrics'::regclass, 'network_in_bytes', '{db-1}')",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap()
    };
    // 40 samples of 1 MB/s, committed: the baseline the rest builds on.
    a.batch_execute(
        "INSERT INTO mon.server_metrics (server_id, cpu_usage, network_in_bytes)
         SELECT 'db-1', 10, 1000000 FROM generate_series(1, 40)",
    )
    .unwrap();
    // A repeatable-read collector takes its snapshot now.
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .unwrap();
    // Collector A leaves a transaction open after an insert that fired
    // cpu_high for db-1 and appended to db-1's baseline.
    a.batch_execute(
        "BEGIN;
         INSERT INTO mon.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', 99, 1000000);",
    )
    .unwrap();
    // Collector B's inserts for the same server (same rules, same baseline)
    // go through at once, statement after statement; A's open firing does
    // not silence B's alert, and B's own firing holds B's cooldown.
    let started = Instant::now();
    for i in 0..20 {
        b.execute(
            "INSERT INTO mon.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', $1, 1000000)",
            &[&(if i % 2 == 0 { 99.0f64 } else { 10.0f64 })],
        )
        .unwrap_or_else(|e| panic!("collector B waited on collector A: {e}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "20 inserts took {:?}",
        started.elapsed()
    );
    let cpu_high = "SELECT count(*) FROM mon.alerts_history WHERE rule = 'cpu_high'";
    assert_eq!(count(&mut su, cpu_high), 1);
    // B's samples are in force (A's is not committed).
    assert_eq!(baseline(&mut su).0, 60);
    // The worker's upkeep does not wait for A either, and folds what it can.
    su.batch_execute("SET lock_timeout = '3s'").unwrap();
    su.query_one("SELECT aegis.alert_upkeep()", &[]).unwrap();
    assert_eq!(baseline(&mut su).0, 60);
    // A gives up: its alert and sample are gone, B's stay; nothing is
    // counted twice once everything is folded.
    a.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut su, cpu_high), 1);
    su.query_one("SELECT aegis.alert_upkeep()", &[]).unwrap();
    assert_eq!(baseline(&mut su).0, 60);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM aegis.metric_baseline_deltas"),
        0
    );
    // The repeatable-read collector, whose snapshot predates all of it:
    // its insert neither fails on the baselines folded since nor fires
    // cpu_high again within the cooldown it cannot see in its snapshot.
    rr.execute(
        "INSERT INTO mon.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', 99.5, 1000000)",
        &[],
    )
    .unwrap();
    rr.batch_execute("COMMIT").unwrap();
    assert_eq!(count(&mut su, cpu_high), 1);
    assert_eq!(baseline(&mut su).0, 61);
    // Anomalies are still found against the merged baseline.
    b.execute(
        "INSERT INTO mon.server_metrics (server_id, cpu_usage, network_in_bytes) VALUES ('db-1', 10, 90000000)",
        &[],
    )
    .unwrap();
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM mon.alerts_history WHERE rule = 'network_in_anomaly'"
        ),
        1
    );

    drop((a, b, rr, su));
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {MDB} WITH (FORCE)"))
        .unwrap();
    for r in roles {
        r.drop_with(&mut pg);
    }
}

#[test]
fn compliance_report_flips_as_the_server_is_fixed() {
    let cluster = ScratchCluster::init("compliance", &[]);
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE comp")
        .unwrap();
    let mut c = cluster.connect("comp");
    c.batch_execute(
        "SET client_min_messages = warning;
         CREATE EXTENSION pg_aegis;
         SELECT aegis.create_monitoring_schema('mon');",
    )
    .unwrap();
    let status = |c: &mut Client, control: &str| -> (String, String) {
        let r = c
            .query_one(
                "SELECT status, detail FROM aegis.compliance_report() WHERE control = $1",
                &[&control],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    // initdb's defaults: no TLS, "host" lines for the loopback addresses.
    assert_eq!(status(&mut c, "tls.ssl_enabled").0, "fail");
    let (s, d) = status(&mut c, "tls.hba_hostssl_only");
    assert_eq!(s, "fail", "{d}");
    assert!(d.contains("host all all 127.0.0.1"), "{d}");
    // A weaker password hash for the whole server.
    for sql in [
        "ALTER SYSTEM SET password_encryption = 'md5'",
        "SELECT pg_reload_conf()",
    ] {
        c.batch_execute(sql).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut c = cluster.connect("comp");
    assert_eq!(status(&mut c, "auth.password_encryption").0, "fail");

    // The fix: a certificate, ssl = on, hostssl only, SCRAM again.
    let data = cluster.data_dir();
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(data.join("server.key"))
        .arg("-out")
        .arg(data.join("server.crt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(ok.success(), "openssl could not make a certificate");
    for f in ["server.key", "server.crt"] {
        let st = std::process::Command::new("chown")
            .arg("postgres")
            .arg(data.join(f))
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::set_permissions(
        data.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let fixed: String = hba
        .lines()
        .map(|l| match l.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(data.join("pg_hba.conf"), fixed).unwrap();
    for sql in [
        "ALTER SYSTEM SET ssl = on",
        "ALTER SYSTEM RESET password_encryption",
        "SELECT pg_reload_conf()",
    ] {
        c.batch_execute(sql).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut c = cluster.connect("comp");
    for control in [
        "tls.ssl_enabled",
        "tls.hba_hostssl_only",
        "auth.password_encryption",
    ] {
        let (s, d) = status(&mut c, control);
        assert_eq!(s, "pass", "{control}: {d}");
    }
    // And the JSON summary counts them.
    let fails: i64 = c
        .query_one(
            "SELECT (aegis.compliance_report_json() -> 'summary' ->> 'fail')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    let listed: i64 = c
        .query_one(
            "SELECT count(*) FROM aegis.compliance_report() WHERE status = 'fail'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fails, listed);
}
