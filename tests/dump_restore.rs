//! pg_dump of a database with the reference monitoring schema restores into a
//! fresh database with the extension, with policies, grants, the policy
//! catalog and data intact, and the policies still enforced for a real login.
//! The audit trail survives the same way: entries, chain and keys restored,
//! the chain and a head saved before the dump verify, and auditing and
//! sealing carry on in the restored database, also when the restore runs
//! section by section with a seal() in between.

use aegis_integration::audit::{chain_head, seal_all, verify};
use aegis_integration::{pg_bin, sqlstate, superuser_to, Cluster, LoginRole};
use postgres::Client;
use std::process::Command;

const SRC: &str = "aegis_dump_src";
const DST: &str = "aegis_dump_dst";

const AUDIT_SRC: &str = "aegis_dump_audit_src";
const AUDIT_DST: &str = "aegis_dump_audit_dst";

fn recreate_db(name: &str) {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pg_dump -Fc of `src`, pg_restore into a new database `dst`.
fn dump_and_restore(src: &str, dst: &str) {
    let dump = std::env::temp_dir().join(format!("aegis-dump-{}-{src}.pgc", std::process::id()));
    let sock = Cluster::Preloaded.socket_dir();
    let port = Cluster::Preloaded.port().to_string();
    run(Command::new(format!("{}/pg_dump", pg_bin()))
        .args(["-h", &sock, "-p", &port, "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(src));
    recreate_db(dst);
    run(Command::new(format!("{}/pg_restore", pg_bin()))
        .args([
            "-h",
            &sock,
            "-p",
            &port,
            "-U",
            "postgres",
            "--exit-on-error",
            "-d",
            dst,
        ])
        .arg(&dump));
    let _ = std::fs::remove_file(&dump);
}

/// A fingerprint of everything the policy pack sets up, comparable across databases.
fn fingerprint(c: &mut Client) -> Vec<String> {
    let q = r#"
        SELECT 'policy ' || tablename || '.' || policyname || ' ' || cmd || ' ' || roles::text
               || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
          FROM pg_policies WHERE schemaname = 'monitoring'
        UNION ALL
        SELECT 'grant ' || table_name || ' ' || grantee || ' ' || privilege_type
          FROM information_schema.role_table_grants WHERE table_schema = 'monitoring'
        UNION ALL
        SELECT 'colgrant ' || table_name || '.' || column_name || ' ' || grantee || ' ' || privilege_type
          FROM information_schema.column_privileges
         WHERE table_schema = 'monitoring' AND grantee LIKE 'aegis\_%'
           AND NOT EXISTS (SELECT 1 FROM information_schema.role_table_grants g
                           WHERE g.table_schema = 'monitoring' AND g.table_name = column_privileges.table_name
                             AND g.grantee = column_privileges.grantee
                             AND g.privilege_type = column_privileges.privilege_type)
        UNION ALL
        SELECT 'rls ' || relname || ' ' || relrowsecurity || ' ' || relforcerowsecurity
               || ' owner=' || CASE WHEN relkind = 'v' THEN relowner::regrole::text ELSE '-' END
               || ' ' || coalesce(reloptions::text, '')
          FROM pg_class WHERE relnamespace = 'monitoring'::regnamespace AND relkind IN ('r', 'v')
        UNION ALL
        SELECT 'protected ' || relid::text || ' ' || policy::text FROM aegis.protected_tables
        UNION ALL
        SELECT 'class ' || relid::text || '.' || column_name || ' ' || class FROM aegis.column_classes
        UNION ALL
        SELECT 'oncall ' || engineer::text || ' ' || server_id FROM aegis.oncall_assignments
        UNION ALL
        SELECT 'rows ' || t || ' ' || (xpath('/row/c/text()',
                 query_to_xml(format('SELECT count(*) AS c FROM monitoring.%I', t), false, true, '')))[1]::text
          FROM unnest(ARRAY['servers', 'server_metrics', 'downtime_logs', 'error_logs',
                            'incident_response_logs', 'aggregated_metrics', 'cost_data',
                            'alerts_history', 'user_access_logs']) t
        ORDER BY 1"#;
    c.query(q, &[])
        .expect("fingerprint")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[test]
fn dump_and_restore_keeps_policies_grants_and_data() {
    recreate_db(SRC);
    let mut src = superuser_to(Cluster::Preloaded, SRC);
    src.batch_execute(
        "CREATE EXTENSION pg_aegis;
         SELECT aegis.create_monitoring_schema();
         INSERT INTO monitoring.servers (server_id, owner_role) VALUES ('s1', NULL), ('s2', NULL);
         INSERT INTO monitoring.error_logs (server_id, error_severity, error_message) VALUES
             ('s1', 'ERROR', 'timeout'), ('s1', 'SECURITY_BREACH', 'token replay'), ('s2', 'WARNING', 'slow');
         INSERT INTO monitoring.server_metrics (server_id, cpu_usage) SELECT 's1', g % 100 FROM generate_series(1, 500) g;
         INSERT INTO monitoring.incident_response_logs (server_id, incident_summary) VALUES ('s1', 'outage');
         INSERT INTO monitoring.cost_data (period_start, period_end, service, amount)
             VALUES ('2026-10-01', '2026-10-31', 'compute', 42.50);",
    )
    .expect("set up source database");
    let role = LoginRole::create(&mut src, "dump_dev");
    src.batch_execute(&format!(
        "GRANT aegis_developer, aegis_oncall TO {0}; SELECT aegis.assign_oncall('{0}', 's2');",
        role.name
    ))
    .unwrap();
    let before = fingerprint(&mut src);
    assert!(
        before.len() > 80,
        "fingerprint too small to mean anything: {before:?}"
    );

    dump_and_restore(SRC, DST);

    let mut dst = superuser_to(Cluster::Preloaded, DST);
    let after = fingerprint(&mut dst);
    assert_eq!(
        before, after,
        "policies, grants, catalog or data changed across dump/restore"
    );

    // And the policies are enforced, for a real login, in the restored database.
    let mut cfg = role.config();
    cfg.dbname(DST);
    let mut dev = cfg
        .connect(postgres::NoTls)
        .expect("login to restored database");
    let msgs: Vec<String> = dev
        .query(
            "SELECT error_message FROM monitoring.developer_error_logs ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        msgs,
        vec!["slow", "timeout"],
        "developer must not see the SECURITY_BREACH row"
    );
    let oncall: Vec<String> = dev
        .query("SELECT unnest(aegis.oncall_servers())", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(oncall, vec!["s2"]);
    let e = dev
        .query("SELECT * FROM monitoring.cost_data", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    drop(dev);
    drop(src);
    drop(dst);
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    for db in [SRC, DST] {
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
    }
    role.drop_with(&mut admin);
}

/// Every stored column of the entries and the chain, comparable across databases.
fn audit_rows(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT 'log ' || to_jsonb(l)::text FROM aegis.audit_log l
         UNION ALL
         SELECT 'chain ' || to_jsonb(c)::text FROM aegis.audit_chain c
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn audit_trail_survives_dump_and_restore() {
    recreate_db(AUDIT_SRC);
    let mut src = superuser_to(Cluster::Preloaded, AUDIT_SRC);
    src.batch_execute(
        r#"CREATE EXTENSION pg_aegis;
           SELECT aegis.create_key('audit_head');
           SELECT aegis.create_key('pseudonym');
           CREATE TABLE public.events (id int PRIMARY KEY, email text, token text, msg text,
                                       at timestamptz DEFAULT '2026-11-22 10:00:00+00');
           SELECT aegis.protect('public.events',
               '{"columns": {"email": "pii", "token": "secret", "msg": "free_text"}}');
           CREATE TABLE public.notes (id int PRIMARY KEY, note text);
           SELECT aegis.protect('public.notes', '{}');"#,
    )
    .expect("set up source database");
    // One transaction per statement: entries of many transactions.
    for i in 1..=30 {
        src.execute(
            "INSERT INTO events (id, email, token, msg) VALUES ($1::int, format('user%s@example.com', $1::int),
                     format('tok-%s', $1::int), format('login failed for user%s@example.com', $1::int))",
            &[&i],
        )
        .unwrap();
    }
    src.batch_execute(
        "UPDATE events SET msg = 'resolved' WHERE id <= 10;
         DELETE FROM events WHERE id > 25;
         INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 5) g;
         TRUNCATE notes;",
    )
    .unwrap();
    // (Its own query: a BEGIN inside a multi-statement query would take the
    // statements before it into the transaction it rolls back.)
    src.batch_execute(
        "BEGIN; INSERT INTO events (id, email) VALUES (1000, 'rolled@back.example'); ROLLBACK;",
    )
    .unwrap();
    let sealed = seal_all(&mut src);
    assert_eq!(
        sealed,
        2 + 5 + 30 + 1 + 1 + 1 + 1,
        "create_key() (2 keys), protect() (2 tables, 3 column classes), inserts, then one chunk entry each \
         for the updates, the deletes and the notes, truncate"
    );
    let head: String = chain_head(&mut src);
    // Entries still unsealed when the dump is taken: the sealing horizon is
    // not dumped, so the restored database's first seal() must find them.
    src.batch_execute(
        "INSERT INTO events (id, email) VALUES (31, 'late@example.com'), (32, NULL), (33, NULL)",
    )
    .unwrap();
    let (ok, checked, problem) = verify(&mut src, None);
    assert!(
        ok && checked == sealed,
        "source chain: {checked}, {problem:?}"
    );
    let pseudonym_src: String = src
        .query_one(
            "SELECT new_row ->> 'email' FROM aegis.audit_log
             WHERE operation = 'INSERT' AND table_name = 'public.events' AND pk ->> 'id' = '1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(pseudonym_src.starts_with("pseudonym:"), "{pseudonym_src}");
    let before = audit_rows(&mut src);
    // (The three-row insert left unsealed is one chunk entry.)
    assert_eq!(before.len() as i64, 2 * sealed + 1);

    dump_and_restore(AUDIT_SRC, AUDIT_DST);

    let mut dst = superuser_to(Cluster::Preloaded, AUDIT_DST);
    assert_eq!(
        audit_rows(&mut dst),
        before,
        "audit entries or chain changed across dump/restore"
    );
    let horizons: i64 = dst
        .query_one("SELECT count(*) FROM aegis.audit_seal_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        horizons, 0,
        "the sealing horizon is not dumped (xids are per cluster)"
    );
    let (ok, checked, problem) = verify(&mut dst, None);
    assert!(
        ok && checked == sealed,
        "restored chain: {checked} of {sealed}, {problem:?}"
    );
    let (ok, checked, problem) = verify(&mut dst, Some(&head));
    assert!(
        ok && checked == sealed,
        "restored chain against the head saved in the source: {problem:?}"
    );

    // Auditing goes on in the restored database, with the restored keys.
    let max_id: i64 = dst
        .query_one("SELECT max(id) FROM aegis.audit_log", &[])
        .unwrap()
        .get(0);
    dst.batch_execute(
        "INSERT INTO events (id, email, token) VALUES (100, 'user1@example.com', 'x');
         UPDATE events SET msg = 'after restore' WHERE id IN (1, 2);
         DELETE FROM events WHERE id = 3;",
    )
    .unwrap();
    let r = dst
        .query_one(
            "SELECT count(*), min(id), max(new_row ->> 'email') FILTER (WHERE pk ->> 'id' = '100')
             FROM aegis.audit_log WHERE id > $1",
            &[&max_id],
        )
        .unwrap();
    let (new_entries, min_new_id, pseudonym_dst): (i64, i64, Option<String>) =
        (r.get(0), r.get(1), r.get(2));
    // (The two-row UPDATE is one chunk entry.)
    assert_eq!(
        new_entries, 3,
        "DML after the restore is audited, ids after the restored ones"
    );
    assert!(min_new_id > max_id);
    assert_eq!(
        pseudonym_dst.as_deref(),
        Some(pseudonym_src.as_str()),
        "the restored pseudonym key gives the source's pseudonyms"
    );
    let total = seal_all(&mut dst);
    assert_eq!(total, sealed + 1 + 3);
    let late: i64 = dst
        .query_one(
            "SELECT min(c.position) FROM aegis.audit_chain c JOIN aegis.audit_log l ON l.id = c.entry_id
             WHERE l.table_name = 'public.events' AND l.pk @> '[{\"id\": 31}]'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        late,
        sealed + 1,
        "entries unsealed at dump time are linked after the old chain"
    );
    let (ok, checked, problem) = verify(&mut dst, None);
    assert!(
        ok && checked == total,
        "after sealing in the restored database: {checked} of {total}, {problem:?}"
    );
    let (ok, _, problem) = verify(&mut dst, Some(&head));
    assert!(ok, "the source's head after more sealing: {problem:?}");
    let new_head: String = chain_head(&mut dst);
    let (ok, checked, problem) = verify(&mut dst, Some(&new_head));
    assert!(
        ok && checked == total,
        "the restored database's own head: {problem:?}"
    );

    drop(src);
    drop(dst);
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    for db in [AUDIT_SRC, AUDIT_DST] {
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
    }
}

// ---------------------------------------------------------------- a restore in sections

const SPLIT_SRC: &str = "aegis_dump_split_src";
const SPLIT_DST: &str = "aegis_dump_split_dst";

/// pg_restore of one `--section` of `dump` into `dst`.
fn restore_section(dump: &std::path::Path, dst: &str, section: &str) {
    run(Command::new(format!("{}/pg_restore", pg_bin()))
        .args([
            "-h",
            &Cluster::Preloaded.socket_dir(),
            "-p",
            &Cluster::Preloaded.port().to_string(),
            "-U",
            "postgres",
            "--exit-on-error",
            &format!("--section={section}"),
            "-d",
            dst,
        ])
        .arg(dump));
}

/// (entries, entries not in aegis.audit_chain, chain positions).
fn trail_counts(c: &mut Client) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM aegis.audit_log),
                    (SELECT count(*) FROM aegis.audit_log l WHERE NOT EXISTS
                        (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id)),
                    (SELECT count(*) FROM aegis.audit_chain)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// A restore run section by section, with a seal() between pre-data and
/// data: the sealer worker, a cron job or a DBA can call seal() while the
/// target database holds the extension's empty tables. That seal records a
/// sealing horizon (this cluster's oldest running xid, beyond every xid of
/// the entries about to be restored: they were committed before the dump).
/// The fixed seal() trusts a stored horizon only when the chain is still
/// where that seal left it and the log was not empty then; before the fix
/// it trusted it unconditionally, sealed only entries with xid >= horizon,
/// so the restored unsealed entries (all below it) were never sealed: the
/// first seal() below returned 0 and verify_chain() reported "entry inserted
/// outside the chain". Run twice: with sealed entries in the dump (the
/// chain moved: the position check decides) and with none (chain still at 0:
/// only "the log was empty" tells the horizon is stale).
#[test]
fn seal_between_restore_sections_does_not_strand_restored_entries() {
    for with_sealed in [true, false] {
        split_restore_case(with_sealed);
    }
}

fn split_restore_case(with_sealed: bool) {
    recreate_db(SPLIT_SRC);
    let mut src = superuser_to(Cluster::Preloaded, SPLIT_SRC);
    src.batch_execute(
        "CREATE EXTENSION pg_aegis;
         CREATE TABLE public.items (id int PRIMARY KEY, v text);
         SELECT aegis.protect('public.items', '{}');",
    )
    .expect("set up source database");
    let mut sealed = 0;
    if with_sealed {
        for i in 1..=5 {
            src.execute("INSERT INTO items VALUES ($1, 'sealed')", &[&i])
                .unwrap();
        }
        src.batch_execute("UPDATE items SET v = 'sealed too' WHERE id <= 2")
            .unwrap();
        sealed = seal_all(&mut src);
        assert_eq!(
            sealed, 7,
            "protect(), 5 inserts, 2 updates (one chunk entry)"
        );
    }
    // Unsealed at dump time, in two transactions.
    src.batch_execute("INSERT INTO items VALUES (101, 'late'), (102, 'late')")
        .unwrap();
    src.batch_execute("UPDATE items SET v = 'later' WHERE id = 101")
        .unwrap();
    // Two entries of items (the two-row insert is one chunk entry), and
    // (when nothing was sealed before) the one protect() left in the
    // policy catalog's trail.
    let unsealed: i64 = if with_sealed { 2 } else { 3 };
    assert_eq!(
        trail_counts(&mut src),
        (sealed + unsealed, unsealed, sealed)
    );
    let newest_xid: i64 = src
        .query_one("SELECT max(xid)::text::bigint FROM aegis.audit_log", &[])
        .unwrap()
        .get(0);

    let dump = std::env::temp_dir().join(format!(
        "aegis-dump-{}-{SPLIT_SRC}-{with_sealed}.pgc",
        std::process::id()
    ));
    run(Command::new(format!("{}/pg_dump", pg_bin()))
        .args([
            "-h",
            &Cluster::Preloaded.socket_dir(),
            "-p",
            &Cluster::Preloaded.port().to_string(),
            "-U",
            "postgres",
            "-Fc",
            "-f",
        ])
        .arg(&dump)
        .arg(SPLIT_SRC));
    recreate_db(SPLIT_DST);

    // ---- pre-data: the extension and its empty tables; a seal() now.
    restore_section(&dump, SPLIT_DST, "pre-data");
    let mut dst = superuser_to(Cluster::Preloaded, SPLIT_DST);
    assert_eq!(
        trail_counts(&mut dst),
        (0, 0, 0),
        "pre-data restores no entries"
    );
    // The horizon this seal records must lie beyond every restored entry's
    // xid, or even the old seal() would have picked them up; the cluster's
    // oldest running transaction (a neighbour test's) may hold it back for
    // a moment.
    let mut horizon = 0i64;
    for _ in 0..100 {
        let n: i64 = dst.query_one("SELECT aegis.seal()", &[]).unwrap().get(0);
        assert_eq!(n, 0, "nothing to seal in an empty log");
        horizon = dst
            .query_one(
                "SELECT horizon::text::bigint FROM aegis.audit_seal_state",
                &[],
            )
            .unwrap()
            .get(0);
        if horizon > newest_xid {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        horizon > newest_xid,
        "the pre-data seal's horizon {horizon} is beyond the restored xids (up to {newest_xid})"
    );

    // ---- data and post-data.
    restore_section(&dump, SPLIT_DST, "data");
    restore_section(&dump, SPLIT_DST, "post-data");
    let _ = std::fs::remove_file(&dump);
    assert_eq!(
        trail_counts(&mut dst),
        (sealed + unsealed, unsealed, sealed),
        "restored entries and chain"
    );
    let r = dst
        .query_one(
            "SELECT horizon::text::bigint, chain_position, log_was_empty FROM aegis.audit_seal_state",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, bool>(2)),
        (horizon, 0, true),
        "the pre-data seal's state is what the next seal() finds"
    );

    // Every restored entry is below that horizon, so the one seal() that
    // follows decides: all three, at once, right after the restored chain.
    let n: i64 = dst.query_one("SELECT aegis.seal()", &[]).unwrap().get(0);
    assert_eq!(
        n, unsealed,
        "the first seal() after the restore seals the restored unsealed entries \
         (with_sealed = {with_sealed})"
    );
    assert_eq!(
        trail_counts(&mut dst),
        (sealed + unsealed, 0, sealed + unsealed)
    );
    let r = dst
        .query_one(
            "SELECT min(c.position), max(c.position) FROM aegis.audit_chain c
             JOIN aegis.audit_log l ON l.id = c.entry_id WHERE l.pk::text ~ '\"id\": 10[12]\\M'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1)),
        (sealed + unsealed - 1, sealed + unsealed),
        "linked after the restored chain"
    );
    let (ok, checked, problem) = verify(&mut dst, None);
    assert!(
        ok && checked == sealed + unsealed,
        "verify_chain after the split restore (with_sealed = {with_sealed}): \
         {checked} of {}, {problem:?}",
        sealed + unsealed
    );

    drop(src);
    drop(dst);
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    for db in [SPLIT_SRC, SPLIT_DST] {
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .unwrap();
    }
}
