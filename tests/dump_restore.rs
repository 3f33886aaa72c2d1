//! pg_dump of a database with the reference monitoring schema restores into a
//! fresh database with the extension, with policies, grants, the policy
//! catalog and data intact, and the policies still enforced for a real login.

use aegis_integration::{pg_bin, sqlstate, superuser_to, Cluster, LoginRole};
use postgres::Client;
use std::process::Command;

const SRC: &str = "aegis_dump_src";
const DST: &str = "aegis_dump_dst";

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

    let dump = std::env::temp_dir().join(format!("aegis-dump-{}.pgc", std::process::id()));
    let sock = Cluster::Preloaded.socket_dir();
    let port = Cluster::Preloaded.port().to_string();
    run(Command::new(format!("{}/pg_dump", pg_bin()))
        .args(["-h", &sock, "-p", &port, "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(SRC));
    recreate_db(DST);
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
            DST,
        ])
        .arg(&dump));
    let _ = std::fs::remove_file(&dump);

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
