//! What the audit trail does on its own, seen from outside the backend:
//!   - the background sealer (`aegis.seal_databases`, `aegis.seal_interval`)
//!     links new entries into the chain without anyone calling seal(), in
//!     the databases it is configured for and in no other;
//!   - a read that cannot be written to aegis.audit_log (read-only
//!     transaction) is recorded as one JSON line in the server log, while a
//!     writable transaction's read is an audit_log entry;
//!   - a permission-denied attempt on a protected table is in the server log,
//!     naming the role, although its transaction fails.
//!
//! Each test has a cluster of its own: the sealer is configured in
//! postgresql.conf and starts with the server, and the server log must hold
//! only what the test did. The log is the file `pg_ctl -l` writes (stderr,
//! no logging collector), read back by the test as root.

use aegis_integration::audit::{seal_all, sealing_state};
use aegis_integration::{sqlstate, ScratchCluster};
use postgres::{Client, NoTls};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// postgresql.conf lines every cluster here gets: the server log is plain
/// stderr into `server.log`, written by each backend as it logs.
const LOG_TO_FILE: [&str; 2] = ["log_destination = 'stderr'", "logging_collector = off"];

fn cluster(name: &str, extra: &[&str]) -> ScratchCluster {
    let mut conf: Vec<&str> = LOG_TO_FILE.to_vec();
    conf.extend_from_slice(extra);
    let c = ScratchCluster::init(name, &conf);
    c.start();
    c
}

fn create_db(cluster: &ScratchCluster, db: &str) {
    cluster
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap_or_else(|e| panic!("create database {db}: {e}"));
}

/// The server log from a point on.
struct LogTail {
    path: PathBuf,
    from: usize,
}

impl LogTail {
    /// Everything logged after now.
    fn mark(cluster: &ScratchCluster) -> LogTail {
        let path = cluster.log_path();
        let from = std::fs::metadata(&path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        LogTail { path, from }
    }

    /// The JSON documents of the `pg_aegis: {...}` lines logged since the
    /// mark, as written.
    fn aegis_json(&self) -> Vec<String> {
        let text = std::fs::read(&self.path).expect("read server log");
        String::from_utf8_lossy(&text[self.from.min(text.len())..])
            .lines()
            .filter_map(|l| {
                l.split_once("LOG:  pg_aegis: {")
                    .map(|(_, j)| format!("{{{j}"))
            })
            .collect()
    }

    /// Those of one event (`"event":"<name>"`, as serde_json writes it).
    fn events(&self, event: &str) -> Vec<String> {
        let tag = format!("\"event\":\"{event}\"");
        self.aegis_json()
            .into_iter()
            .filter(|j| j.contains(&tag))
            .collect()
    }
}

/// Fields of a logged JSON document, parsed by the server (the test crate
/// has no JSON parser): event, tables, rows, user, session_user, operation.
fn fields(
    c: &mut Client,
    json: &str,
) -> (String, String, Option<i64>, String, String, Option<String>) {
    let r = c
        .query_one(
            "SELECT j ->> 'event', (j -> 'tables')::text, (j ->> 'rows')::bigint,
                    j ->> 'user', j ->> 'session_user', j ->> 'operation'
             FROM (SELECT $1::text::jsonb AS j) s",
            &[&json],
        )
        .unwrap_or_else(|e| panic!("log line is not JSON: {json}: {e}"));
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

/// A protected table `t` with some history: 11 entries in 4 transactions,
/// and the entry protect() leaves (the policy catalog is audited too).
fn audited_writes(c: &mut Client) -> i64 {
    c.batch_execute(
        "CREATE EXTENSION pg_aegis;
         CREATE TABLE t (k int PRIMARY KEY, v text);
         SELECT aegis.protect('t');",
    )
    .unwrap();
    c.batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g")
        .unwrap();
    c.batch_execute("UPDATE t SET v = 'changed' WHERE k IN (1, 2)")
        .unwrap();
    c.batch_execute(
        "BEGIN; INSERT INTO t VALUES (6, 'six'), (7, 'seven'), (8, 'eight'); DELETE FROM t WHERE k = 3; COMMIT;",
    )
    .unwrap();
    c.batch_execute("BEGIN; INSERT INTO t VALUES (100, 'rolled back'); ROLLBACK;")
        .unwrap();
    // protect()'s catalog entry; the multi-row statements' images are one
    // chunk entry each (the 5 inserts, 2 updates, 3 inserts), the
    // one-row DELETE one entry.
    1 + 1 + 1 + 1 + 1
}

// ---------------------------------------------------------------- background sealer

const SEALED_DB: &str = "aegis_sealed";
const UNSEALED_DB: &str = "aegis_unsealed";

#[test]
fn background_sealer_seals_the_configured_database_only() {
    let started = Instant::now();
    let cluster = cluster(
        "reads-sealer",
        &[
            &format!("aegis.seal_databases = '{SEALED_DB}'"),
            "aegis.seal_interval = 100",
        ],
    );
    // The worker connects to its database when the server starts (and is
    // restarted only 10 s after failing to): create both, then restart.
    create_db(&cluster, SEALED_DB);
    create_db(&cluster, UNSEALED_DB);
    cluster.stop("fast");
    cluster.start();

    let mut admin = cluster.connect("postgres");
    let deadline = Instant::now() + Duration::from_secs(5);
    let workers = loop {
        let r = admin
            .query_one(
                "SELECT count(*), string_agg(datname, ',') FROM pg_stat_activity
                 WHERE backend_type = 'pg_aegis sealer'",
                &[],
            )
            .unwrap();
        let (n, dbs): (i64, Option<String>) = (r.get(0), r.get(1));
        if n >= 1 || Instant::now() > deadline {
            break (n, dbs);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        workers,
        (1, Some(SEALED_DB.to_string())),
        "one sealer worker, connected to the configured database"
    );

    let mut sealed_db = cluster.connect(SEALED_DB);
    let mut other_db = cluster.connect(UNSEALED_DB);
    // The other database first: its entries are the older ones.
    let n = audited_writes(&mut other_db);
    assert_eq!(audited_writes(&mut sealed_db), n);
    let written = Instant::now();

    // Nobody calls aegis.seal(): the worker must link every entry.
    let deadline = written + Duration::from_secs(15);
    let (total, unsealed) = loop {
        let s = sealing_state(&mut sealed_db);
        if s.1 == 0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = written.elapsed();
    assert_eq!(
        (total, unsealed),
        (n, 0),
        "entries / unsealed entries in {SEALED_DB} {:.1}s after the writes",
        took.as_secs_f64()
    );
    let r = sealed_db
        .query_one(
            "SELECT ok, entries_checked, problem FROM aegis.verify_chain()",
            &[],
        )
        .unwrap();
    let (ok, checked, problem): (bool, i64, Option<String>) = (r.get(0), r.get(1), r.get(2));
    assert!(
        ok && checked == n,
        "verify_chain: {checked} of {n}, {problem:?}"
    );
    let state_rows: i64 = sealed_db
        .query_one("SELECT count(*) FROM aegis.audit_seal_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(state_rows, 1, "the worker recorded its sealing state");

    // The database not listed: the same entries, written just before, stay
    // outside the chain for as long and a second (10 intervals) more...
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        sealing_state(&mut other_db),
        (n, n),
        "no worker seals {UNSEALED_DB}, which is not in aegis.seal_databases"
    );
    let state: i64 = other_db
        .query_one("SELECT count(*) FROM aegis.audit_seal_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, 0, "seal() never ran in {UNSEALED_DB}");
    // ...although they could be sealed: a manual seal() takes them all.
    assert_eq!(seal_all(&mut other_db), n);

    // The worker keeps sealing what comes later.
    sealed_db
        .batch_execute("INSERT INTO t VALUES (200, 'later')")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sealing_state(&mut sealed_db).1 != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sealing_state(&mut sealed_db), (n + 1, 0), "a later entry");

    drop((sealed_db, other_db, admin));
    cluster.stop("fast");
    eprintln!(
        "sealer: {n} entries sealed {:.2}s after the writes; test took {:.1}s",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- reads in the server log

const DB: &str = "aegis_reads";

/// A protected table public.t with 3 rows, and an unprotected one public.u.
fn reads_setup(cluster: &ScratchCluster) -> Client {
    create_db(cluster, DB);
    let mut c = cluster.connect(DB);
    c.batch_execute(
        "CREATE EXTENSION pg_aegis;
         CREATE TABLE t (k int PRIMARY KEY, v text);
         SELECT aegis.protect('t');
         INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');
         CREATE TABLE u (k int PRIMARY KEY);
         INSERT INTO u VALUES (1);",
    )
    .unwrap();
    c
}

fn read_entries(c: &mut Client) -> Vec<(String, String, String, Option<String>)> {
    c.query(
        "SELECT operation, table_name, db_user, detail ->> 'rows' FROM aegis.audit_log
         WHERE operation IN ('SELECT', 'COPY') ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn reads_in_read_only_transactions_go_to_the_server_log() {
    let started = Instant::now();
    let cluster = cluster("reads-log", &[]);
    let mut c = reads_setup(&cluster);

    // Off (the default) and no "audit_reads" in the policy: nothing anywhere.
    let log = LogTail::mark(&cluster);
    c.batch_execute("BEGIN READ ONLY; SELECT count(*) FROM t; COMMIT;")
        .unwrap();
    c.batch_execute("SELECT count(*) FROM t").unwrap();
    assert_eq!(log.aegis_json(), Vec::<String>::new(), "reads not audited");
    assert!(read_entries(&mut c).is_empty());

    // On, read-only transaction: a JSON line in the log, no entry.
    let log = LogTail::mark(&cluster);
    c.batch_execute("SET aegis.audit_reads = on; BEGIN READ ONLY; SELECT count(*) FROM t; COMMIT;")
        .unwrap();
    let lines = log.events("read");
    assert_eq!(
        lines.len(),
        1,
        "one read event logged: {:?}",
        log.aegis_json()
    );
    let line = &lines[0];
    for part in [
        "\"event\":\"read\"",
        "\"operation\":\"SELECT\"",
        "\"tables\":[\"public.t\"]",
        "\"rows\":1",
        "\"user\":\"postgres\"",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert_eq!(
        fields(&mut c, line),
        (
            "read".to_string(),
            "[\"public.t\"]".to_string(),
            Some(1),
            "postgres".to_string(),
            "postgres".to_string(),
            Some("SELECT".to_string())
        )
    );
    assert!(
        read_entries(&mut c).is_empty(),
        "the read-only transaction added no entry to aegis.audit_log"
    );

    // The extended protocol (a portal ended at commit) and the row count of
    // a multi-row result, still read-only.
    let log = LogTail::mark(&cluster);
    {
        let mut tx = c.build_transaction().read_only(true).start().unwrap();
        let rows = tx.query("SELECT k FROM t ORDER BY k", &[]).unwrap();
        assert_eq!(rows.len(), 3);
        tx.commit().unwrap();
    }
    let lines = log.events("read");
    assert_eq!(lines.len(), 1, "{:?}", log.aegis_json());
    assert!(lines[0].contains("\"rows\":3"), "{}", lines[0]);
    assert!(read_entries(&mut c).is_empty());

    // A writable transaction records the read in aegis.audit_log instead.
    let log = LogTail::mark(&cluster);
    c.batch_execute("BEGIN; SELECT count(*) FROM t; COMMIT;")
        .unwrap();
    let rows = c.query("SELECT k FROM t WHERE k <= 2", &[]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        read_entries(&mut c),
        vec![
            (
                "SELECT".into(),
                "public.t".into(),
                "postgres".into(),
                Some("1".into())
            ),
            (
                "SELECT".into(),
                "public.t".into(),
                "postgres".into(),
                Some("2".into())
            ),
        ],
        "the writable transactions' reads are entries"
    );
    assert_eq!(
        log.events("read"),
        Vec::<String>::new(),
        "and not log lines"
    );

    // A rollback cannot hide a read: the entry goes with the transaction,
    // so the read is written to the server log when the transaction or the
    // subtransaction that read aborts; committed reads stay entries only.
    let log = LogTail::mark(&cluster);
    c.batch_execute("BEGIN; SELECT count(*) FROM t; ROLLBACK;")
        .unwrap();
    c.batch_execute(
        "BEGIN; SAVEPOINT s; SELECT k FROM t WHERE k = 1; ROLLBACK TO s; \
         SAVEPOINT s2; SELECT k FROM t WHERE k <= 2; RELEASE s2; COMMIT;",
    )
    .unwrap();
    let lines = log.events("read");
    assert_eq!(
        lines.len(),
        2,
        "the two rolled-back reads: {:?}",
        log.aegis_json()
    );
    assert!(
        lines[0].contains("\"rows\":1") && lines[0].contains("rolled back"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("\"rows\":1"), "{}", lines[1]);
    assert_eq!(
        read_entries(&mut c).len(),
        3,
        "only the released savepoint's read became an entry"
    );

    // A cursor that read and then rolled back with its transaction or its
    // savepoint never reaches ExecutorEnd: the read is logged all the same.
    let log = LogTail::mark(&cluster);
    c.batch_execute("BEGIN; DECLARE cur CURSOR FOR SELECT k FROM t; FETCH ALL FROM cur; ROLLBACK;")
        .unwrap();
    c.batch_execute(
        "BEGIN; SAVEPOINT s; DECLARE cur2 CURSOR FOR SELECT k FROM t; FETCH ALL FROM cur2; \
         ROLLBACK TO s; COMMIT;",
    )
    .unwrap();
    let lines = log.events("read");
    assert_eq!(lines.len(), 2, "{:?}", log.aegis_json());
    for l in &lines {
        assert!(
            l.contains("\"tables\":[\"public.t\"]") && l.contains("rolled back"),
            "{l}"
        );
    }
    assert_eq!(
        read_entries(&mut c).len(),
        3,
        "no entries from rolled-back work"
    );

    // A function that a parallel worker runs reads t: the leader's plan
    // does not name t, and the worker cannot write; the worker logs it.
    c.batch_execute(
        "CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 200000) g; ANALYZE big;
         CREATE FUNCTION peek(i int) RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL SAFE AS
         $$ BEGIN RETURN i = 1 AND EXISTS (SELECT 1 FROM public.t WHERE k = 1); END $$;",
    )
    .unwrap();
    let log = LogTail::mark(&cluster);
    let plan: Vec<String> = c
        .query(
            "EXPLAIN (COSTS OFF) SELECT count(*) FROM big WHERE peek(id)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute(
        "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
         SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
         SET parallel_leader_participation = off;",
    )
    .unwrap();
    let plan_parallel: Vec<String> = c
        .query(
            "EXPLAIN (COSTS OFF) SELECT count(*) FROM big WHERE peek(id)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan_parallel.iter().any(|l| l.contains("Gather")),
        "{plan:?} / {plan_parallel:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM big WHERE peek(id)", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let lines = log.events("read");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("public.t") && l.contains("parallel worker")),
        "a worker's read is in the log: {:?}",
        log.aegis_json()
    );
    c.batch_execute("RESET max_parallel_workers_per_gather; RESET parallel_leader_participation")
        .unwrap();

    // Unprotected tables are never audited.
    let log = LogTail::mark(&cluster);
    c.batch_execute("BEGIN READ ONLY; SELECT count(*) FROM u; COMMIT; SELECT count(*) FROM u;")
        .unwrap();
    assert_eq!(log.aegis_json(), Vec::<String>::new());
    assert_eq!(read_entries(&mut c).len(), 3);

    drop(c);
    cluster.stop("fast");
    eprintln!("read log test took {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn denied_attempts_on_protected_tables_go_to_the_server_log() {
    let started = Instant::now();
    let cluster = cluster("reads-denied", &[]);
    let mut admin = reads_setup(&cluster);
    // A login role with no privilege on t or u. The scratch cluster listens
    // on its unix socket only, with trust: a real login as that role (its
    // own session, not SET ROLE), without a password.
    let role = "it_no_privileges";
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .unwrap();
    let mut user = cluster
        .config(DB)
        .user(role)
        .connect(NoTls)
        .expect("login as the unprivileged role");

    let log = LogTail::mark(&cluster);
    let e = user.query("SELECT * FROM t", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let lines = log.events("access_denied");
    assert_eq!(
        lines.len(),
        1,
        "one denied attempt logged: {:?}",
        log.aegis_json()
    );
    let line = &lines[0];
    for part in [
        "\"event\":\"access_denied\"",
        "\"tables\":[\"public.t\"]",
        &format!("\"user\":\"{role}\""),
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let (event, tables, _, who, session, _) = fields(&mut admin, line);
    assert_eq!(
        (
            event.as_str(),
            tables.as_str(),
            who.as_str(),
            session.as_str()
        ),
        ("access_denied", "[\"public.t\"]", role, role)
    );

    // Inside a transaction block that the error aborts and that is rolled
    // back: the attempt is on record all the same.
    let log = LogTail::mark(&cluster);
    user.batch_execute("BEGIN").unwrap();
    let e = user
        .batch_execute("SELECT v FROM t WHERE k = 1")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    user.batch_execute("ROLLBACK").unwrap();
    let lines = log.events("access_denied");
    assert_eq!(lines.len(), 1, "{:?}", log.aegis_json());
    assert!(
        lines[0].contains(&format!("\"user\":\"{role}\"")) && lines[0].contains("public.t"),
        "{}",
        lines[0]
    );

    // SET ROLE: "user" is the role checked, "session_user" the login.
    let log = LogTail::mark(&cluster);
    admin.batch_execute(&format!("SET ROLE {role}")).unwrap();
    let e = admin.batch_execute("SELECT count(*) FROM t").unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    admin.batch_execute("RESET ROLE").unwrap();
    let lines = log.events("access_denied");
    assert_eq!(lines.len(), 1, "{:?}", log.aegis_json());
    let (_, _, _, who, session, _) = fields(&mut admin, &lines[0]);
    assert_eq!((who.as_str(), session.as_str()), (role, "postgres"));

    // A role without USAGE on the schema is refused at name lookup, before
    // any table is known: the error's server-log record carries the
    // access_denied line (schema, role OIDs), and it is counted.
    admin
        .batch_execute(
            "CREATE SCHEMA hidden; CREATE TABLE hidden.s (k int PRIMARY KEY);
             SELECT aegis.protect('hidden.s');",
        )
        .unwrap();
    let entries_before = sealing_state(&mut admin).0;
    let denied = |c: &mut Client| -> i64 {
        c.query_one("SELECT aegis.denied_access_count()", &[])
            .unwrap()
            .get(0)
    };
    let before = denied(&mut admin);
    let log = LogTail::mark(&cluster);
    let e = user.query("SELECT * FROM hidden.s", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    assert_eq!(denied(&mut admin), before + 1);
    let text = std::fs::read(&log.path).expect("read server log");
    let tail = String::from_utf8_lossy(&text[log.from.min(text.len())..]).to_string();
    let line = tail
        .lines()
        .find_map(|l| {
            l.split_once("DETAIL:  pg_aegis: ")
                .map(|(_, j)| j.to_string())
        })
        .unwrap_or_else(|| panic!("no access_denied detail in {tail}"));
    let user_oid: u32 = admin
        .query_one("SELECT oid FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0);
    assert!(
        line.contains("\"event\":\"access_denied\",\"schema\":\"hidden\"")
            && line.contains(&format!(
                "\"user_oid\":{user_oid},\"session_user_oid\":{user_oid}"
            )),
        "{line}"
    );
    // The error is the client's as PostgreSQL wrote it: the log-only line is
    // not sent to the client.
    assert!(!e.to_string().contains("pg_aegis"), "{e}");

    // COPY refuses before any executor hook runs: counted and logged too.
    let before = denied(&mut admin);
    let log = LogTail::mark(&cluster);
    let e = user.batch_execute("COPY t TO STDOUT").unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    assert_eq!(denied(&mut admin), before + 1);
    let lines = log.events("access_denied");
    assert_eq!(lines.len(), 1, "{:?}", log.aegis_json());
    assert!(
        lines[0].contains("\"operation\":\"COPY\"") && lines[0].contains("public.t"),
        "{}",
        lines[0]
    );

    // A denied read of an unprotected table is none of pg_aegis's business.
    let log = LogTail::mark(&cluster);
    let e = user.query("SELECT * FROM u", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    assert_eq!(log.aegis_json(), Vec::<String>::new());

    // Denied attempts are log lines only: the trail is unchanged.
    assert_eq!(sealing_state(&mut admin).0, entries_before);

    drop(user);
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
    drop(admin);
    cluster.stop("fast");
    eprintln!("denied test took {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- an application's own reads, counted

const APP_DB: &str = "aegis_app_reads";

/// The counted-read entries of `items`: (operation, role, statements, rows,
/// db_user), oldest first.
fn counted_entries(c: &mut Client) -> Vec<(String, String, i64, i64, String)> {
    c.query(
        "SELECT operation, detail ->> 'role', (detail ->> 'statements')::bigint,
                (detail ->> 'rows')::bigint, db_user
         FROM aegis.audit_log
         WHERE table_name = 'public.items' AND (detail ->> 'aggregate')::boolean ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// The statement-by-statement read entries of `items`: (db_user,
/// session_user_name).
fn statement_entries(c: &mut Client) -> Vec<(String, String)> {
    c.query(
        "SELECT db_user, session_user_name FROM aegis.audit_log
         WHERE table_name = 'public.items' AND operation IN ('SELECT', 'COPY')
           AND NOT COALESCE((detail ->> 'aggregate')::boolean, false) ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Wait (up to 20 s) for `f` to hold: an ended session's counts are written
/// by its backend as it exits, after the client has gone.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn application_reads_are_counted_per_interval_and_never_dropped() {
    let started = Instant::now();
    let cluster = cluster("reads-app", &[]);
    create_db(&cluster, APP_DB);
    let mut admin = cluster.connect(APP_DB);
    // The application's login owns its table (as Zabbix's does); a person
    // reads it through the "logs" profile; another may SET ROLE app.
    admin
        .batch_execute(
            "CREATE EXTENSION pg_aegis;
             CREATE ROLE app LOGIN;
             CREATE ROLE person LOGIN IN ROLE aegis_auditor;
             CREATE ROLE insider LOGIN IN ROLE app;
             CREATE TABLE items (id bigint PRIMARY KEY, note text);
             INSERT INTO items SELECT g, 'note ' || g FROM generate_series(1, 3) g;
             ALTER TABLE items OWNER TO app;
             GRANT CREATE ON SCHEMA public TO app;
             ALTER ROLE app SET aegis.application_read_interval = '1h';",
        )
        .unwrap();
    // Refused: counting without naming the application, and a bad value.
    let e = admin
        .query("SELECT aegis.protect('items', '{\"audit_reads\": true, \"application_reads\": \"aggregate\"}')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("needs \"application_roles\""), "{message}");
    let e = admin
        .query("SELECT aegis.protect('items', '{\"application_roles\": [\"app\"], \"application_reads\": \"sometimes\"}')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "{e}");
    admin
        .batch_execute(
            "SELECT aegis.protect('items', '{\"application_roles\": [\"app\"], \"audit_reads\": true,
                                             \"application_reads\": \"aggregate\", \"profile\": \"logs\"}')",
        )
        .unwrap();
    let login = |role: &str| {
        cluster
            .config(APP_DB)
            .user(role)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("login as {role}: {e}"))
    };

    // The application's long-lived session: its reads are counted, not
    // recorded one by one, with parallel query on.
    let mut app = login("app");
    app.batch_execute(
        "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
         SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;",
    )
    .unwrap();
    for _ in 0..4 {
        assert_eq!(app.query("SELECT * FROM items", &[]).unwrap().len(), 3);
    }
    app.batch_execute("SELECT count(*) FROM items WHERE id = 1")
        .unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut app.copy_out("COPY items TO STDOUT").unwrap(), &mut out)
        .unwrap();
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 3);
    // The application may not stretch the interval.
    let e = app
        .batch_execute("SET aegis.application_read_interval = '1d'")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    // Its writes are audited as ever.
    app.batch_execute("INSERT INTO items VALUES (4, 'four')")
        .unwrap();
    assert_eq!(
        counted_entries(&mut admin),
        vec![],
        "counted, not yet recorded"
    );
    assert_eq!(
        statement_entries(&mut admin),
        vec![],
        "no per-statement entry"
    );

    // Everyone else is recorded statement by statement: a person, and an
    // insider who runs as the application's role from a session of their
    // own.
    let mut person = login("person");
    person.batch_execute("SELECT * FROM items").unwrap();
    let mut insider = login("insider");
    insider
        .batch_execute("SET ROLE app; SELECT * FROM items")
        .unwrap();
    assert_eq!(
        statement_entries(&mut admin),
        vec![
            ("person".to_string(), "person".to_string()),
            ("app".to_string(), "insider".to_string())
        ]
    );

    // Recorded in a transaction that rolls back: the counts reach the
    // server log, not nowhere.
    let log = LogTail::mark(&cluster);
    app.batch_execute("BEGIN; SELECT aegis.flush_application_reads(); ROLLBACK;")
        .unwrap();
    let lines = log.events("read");
    assert_eq!(lines.len(), 2, "{:?}", log.aegis_json());
    for (line, op, statements, rows) in [(&lines[0], "COPY", 1, 3), (&lines[1], "SELECT", 5, 13)] {
        for part in [
            "\"aggregate\":true".to_string(),
            format!("\"operation\":\"{op}\""),
            "\"role\":\"app\"".to_string(),
            format!("\"statements\":{statements}"),
            format!("\"rows\":{rows}"),
            "\"tables\":[\"public.items\"]".to_string(),
            "rolled back".to_string(),
        ] {
            assert!(line.contains(&part), "{part} in {line}");
        }
    }
    assert_eq!(counted_entries(&mut admin), vec![]);

    // Recorded in a transaction that commits: one entry per table and
    // operation, with the statements and rows counted since.
    app.batch_execute("SELECT * FROM items; SELECT * FROM items WHERE id > 2")
        .unwrap();
    let n: i64 = app
        .query_one("SELECT aegis.flush_application_reads()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(
        counted_entries(&mut admin),
        vec![(
            "SELECT".to_string(),
            "app".to_string(),
            2,
            6,
            "app".to_string()
        )]
    );
    let n: i64 = app
        .query_one("SELECT aegis.flush_application_reads()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing left to record");

    // A read-only transaction cannot write them: the server log.
    app.batch_execute("SELECT * FROM items").unwrap();
    let log = LogTail::mark(&cluster);
    app.batch_execute("BEGIN READ ONLY; SELECT aegis.flush_application_reads(); COMMIT;")
        .unwrap();
    let lines = log.events("read");
    assert_eq!(lines.len(), 1, "{:?}", log.aegis_json());
    assert!(
        lines[0].contains("\"statements\":1") && lines[0].contains("cannot write"),
        "{}",
        lines[0]
    );

    // The session ends: what it counted is recorded as it exits.
    app.batch_execute("SELECT * FROM items; SELECT * FROM items")
        .unwrap();
    drop(app);
    wait_for("the ended session's counts", || {
        counted_entries(&mut admin).len() == 2
    });
    assert_eq!(
        counted_entries(&mut admin)[1],
        (
            "SELECT".to_string(),
            "app".to_string(),
            2,
            8,
            "app".to_string()
        )
    );

    // A session whose transactions are read-only: at its end, the server log.
    let mut app = login("app");
    app.batch_execute("SET default_transaction_read_only = on; SELECT * FROM items")
        .unwrap();
    let log = LogTail::mark(&cluster);
    drop(app);
    wait_for("the read-only session's log line", || {
        !log.events("read").is_empty()
    });
    let lines = log.events("read");
    assert!(
        lines[0].contains("\"statements\":1") && lines[0].contains("\"aggregate\":true"),
        "{}",
        lines[0]
    );

    // Cold review: none of these is the application reading.
    // A superuser's SET SESSION AUTHORIZATION, a statement of the
    // application that writes what it read, and a role that took the
    // application's name after it was renamed: each recorded on its own.
    let before = statement_entries(&mut admin).len();
    admin
        .batch_execute(
            "SET SESSION AUTHORIZATION app; SELECT * FROM items; RESET SESSION AUTHORIZATION",
        )
        .unwrap();
    let after = statement_entries(&mut admin);
    assert_eq!(
        after.len(),
        before + 1,
        "the superuser's read as app: {after:?}"
    );
    let mut app = login("app");
    app.batch_execute(
        "CREATE TABLE loot AS SELECT * FROM items;
         INSERT INTO loot SELECT * FROM items;
         SELECT note INTO loot2 FROM items;
         UPDATE items SET note = 'seen' WHERE id = 1;",
    )
    .unwrap();
    let n: i64 = app
        .query_one("SELECT aegis.flush_application_reads()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        n, 1,
        "copies are not counted; the UPDATE's read of its own table is"
    );
    assert_eq!(
        statement_entries(&mut admin).len(),
        before + 4,
        "each copy recorded on its own"
    );
    drop(app);
    admin
        .batch_execute(
            "ALTER ROLE app RENAME TO app_legacy;
             CREATE ROLE app LOGIN IN ROLE aegis_auditor;
             ALTER ROLE app SET aegis.application_read_interval = '1h';",
        )
        .unwrap();
    let mut impostor = login("app");
    impostor
        .batch_execute("SELECT count(*) FROM items")
        .unwrap();
    let n: i64 = impostor
        .query_one("SELECT aegis.flush_application_reads()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "a role that took the application's name is not counted"
    );
    assert_eq!(statement_entries(&mut admin).len(), before + 5);
    drop(impostor);
    admin
        .batch_execute(
            "DROP ROLE app; ALTER ROLE app_legacy RENAME TO app; DROP TABLE loot, loot2;",
        )
        .unwrap();

    // Interval 0: every read recorded at once (still as a count).
    admin
        .batch_execute("ALTER ROLE app SET aegis.application_read_interval = 0")
        .unwrap();
    let mut app = login("app");
    app.batch_execute("SELECT * FROM items").unwrap();
    assert_eq!(counted_entries(&mut admin).len(), 4);

    // The entries are part of the chain like any other.
    seal_all(&mut admin);
    let ok: bool = admin
        .query_one("SELECT ok FROM aegis.verify_chain()", &[])
        .unwrap()
        .get(0);
    assert!(ok);

    drop((app, person, insider));
    drop(admin);
    cluster.stop("fast");
    eprintln!(
        "application reads test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
