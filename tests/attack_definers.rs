//! Attack: a table's owner (a real login, as an application's is) plants
//! code of its own on a table before a DBA protects it, hoping pg_aegis's
//! SECURITY DEFINER functions run it with their rights when an `aegis_admin`
//! login declares a scope on the table, assigns keys and creates its
//! masking view, or when a reader reads that view.
//!
//! Planted: a domain whose CHECK calls the owner's function, a cast from the
//! owner's type to text with the owner's function, a column DEFAULT, a
//! generated column and an index expression over the owner's functions,
//! row and statement triggers, a rule, and a row-level policy calling the
//! owner's function. Every one of them writes who ran it, and with what
//! rights, into a witness table anyone may insert into.
//!
//! What must hold: nothing of the owner's runs as a superuser or as
//! pg_aegis's definer; the owner does not become superuser; the reader's
//! read of the masking view runs the owner's cast only as the reader (as
//! any read of an owner's table runs its code: PostgreSQL's rule, said in
//! docs/security-model.md).

use aegis_integration::{sqlstate, superuser, superuser_to, Cluster, LoginRole};
use postgres::{Client, NoTls};

/// Its own database: the planted code stays out of the other tests' way.
const DB: &str = "aegis_it_attack_definers";

fn connect(l: &LoginRole, db: &str) -> Client {
    l.config()
        .dbname(db)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{} cannot log in: {e}", l.name))
}

/// Witness rows written while `f` ran: (current_user, session_user,
/// current_user is superuser).
fn witnessed(dba: &mut Client, schema: &str, f: impl FnOnce()) -> Vec<(String, String, bool)> {
    let before: i64 = dba
        .query_one(&format!("SELECT count(*) FROM {schema}.witness"), &[])
        .unwrap()
        .get(0);
    f();
    dba.query(
        &format!("SELECT who::text, sess::text, su FROM {schema}.witness ORDER BY n OFFSET $1"),
        &[&before],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn owner_code_never_runs_with_pg_aegis_rights_in_scopes_and_masking_views() {
    let mut root = superuser();
    root.batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .unwrap();
    root.batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut dba = superuser_to(Cluster::Preloaded, DB);
    dba.batch_execute("CREATE EXTENSION pg_aegis; CREATE EXTENSION pgcrypto; SELECT aegis.create_key('pseudonym')")
        .unwrap();
    let owner = LoginRole::create(&mut root, "atk_owner");
    let admin = LoginRole::create(&mut root, "atk_admin");
    let reader = LoginRole::create(&mut root, "atk_reader");
    // A reader the view is granted to, in no scoped role: every row.
    let viewer = LoginRole::create(&mut root, "atk_viewer");
    let (o, a, r, v) = (
        owner.name.clone(),
        admin.name.clone(),
        reader.name.clone(),
        viewer.name.clone(),
    );
    let s = format!("{o}_s");
    dba.batch_execute(&format!(
        "GRANT aegis_admin TO {a}; GRANT aegis_oncall TO {r};
         CREATE SCHEMA {s} AUTHORIZATION {o};
         GRANT USAGE ON SCHEMA {s} TO aegis_admin, aegis_oncall;"
    ))
    .unwrap();

    let mut oc = connect(&owner, DB);
    oc.batch_execute(&format!(
        "SET search_path = {s};
         CREATE TABLE witness (n bigserial, who name, sess name, su boolean);
         GRANT INSERT ON witness TO PUBLIC;
         GRANT USAGE ON SEQUENCE witness_n_seq TO PUBLIC;
         -- Logs who runs it, then tries to escalate (works only as a superuser).
         CREATE FUNCTION spy() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
         BEGIN
             INSERT INTO {s}.witness (who, sess, su)
             SELECT current_user, session_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
             BEGIN
                 EXECUTE 'ALTER ROLE {o} SUPERUSER';
             EXCEPTION WHEN insufficient_privilege THEN NULL;
             END;
             RETURN true;
         END $$;
         GRANT EXECUTE ON FUNCTION spy() TO PUBLIC;
         CREATE FUNCTION spy_int(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
             $$ BEGIN PERFORM {s}.spy(); RETURN $1; END $$;
         CREATE DOMAIN watched AS int CHECK ({s}.spy());
         CREATE TYPE kind AS ENUM ('db', 'web');
         CREATE FUNCTION kind_text(kind) RETURNS text LANGUAGE plpgsql IMMUTABLE AS
             $$ BEGIN PERFORM {s}.spy(); RETURN 'kind:' || $1::name; END $$;
         CREATE CAST (kind AS text) WITH FUNCTION kind_text(kind);
         CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM {s}.spy(); RETURN NULL; END $$;
         CREATE TABLE hosts (
             hostid bigint PRIMARY KEY,
             host text NOT NULL,
             kind kind NOT NULL DEFAULT 'db',
             tag watched,
             note text DEFAULT ({s}.spy())::text,
             twice int GENERATED ALWAYS AS ({s}.spy_int(hostid::int) * 2) STORED);
         CREATE INDEX hosts_spy ON hosts (({s}.spy_int(hostid::int)));
         CREATE TRIGGER spy_row AFTER INSERT OR UPDATE OR DELETE ON hosts FOR EACH ROW EXECUTE FUNCTION trg();
         CREATE TRIGGER spy_stmt AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hosts FOR EACH STATEMENT EXECUTE FUNCTION trg();
         CREATE RULE spy_rule AS ON UPDATE TO hosts DO ALSO SELECT {s}.spy();
         CREATE POLICY spy_policy ON hosts FOR SELECT USING ({s}.spy());
         INSERT INTO hosts (hostid, host, kind) VALUES (10084, 'db-001', 'db'), (10085, 'web-001', 'web');"
    ))
    .unwrap();

    // The DBA protects the table, naming its owner as the application role,
    // with the host name as personal data and `kind` as a subject id (so the
    // masking view casts it to text). A policy over the owner's function is
    // refused first: its owner could change what it lets through.
    let protect = format!(
        "SELECT aegis.protect('{s}.hosts', '{{\"application_roles\": [\"{o}\"], \"profile\": \"metrics\",
             \"columns\": {{\"host\": \"pii\", \"kind\": \"subject_id\"}}}}')"
    );
    let mut dba2 = superuser_to(Cluster::Preloaded, DB);
    let mut dba_protect = |q: &str| dba2.batch_execute(q);
    let w = witnessed(&mut dba, &s, || {
        let e = dba_protect(&protect).unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
    });
    assert!(w.is_empty(), "protect() ran the owner's code: {w:?}");
    oc.batch_execute(&format!("DROP POLICY spy_policy ON {s}.hosts"))
        .unwrap();
    let w = witnessed(&mut dba, &s, || dba_protect(&protect).unwrap());
    assert!(w.is_empty(), "protect() ran the owner's code: {w:?}");
    // Afterwards the owner cannot add it back.
    let e = oc
        .batch_execute(&format!(
            "CREATE POLICY spy_policy ON {s}.hosts FOR SELECT USING ({s}.spy())"
        ))
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");

    let mut ac = connect(&admin, DB);
    let seen = witnessed(&mut dba, &s, || {
        ac.batch_execute(&format!(
            "SELECT aegis.create_scope('atk_host', '{s}.hosts', 'hostid')"
        ))
        .unwrap();
        // The table's rows are scoped by their own key.
        dba_protect(&protect.replace(
            "\"profile\"",
            "\"scope\": {\"name\": \"atk_host\", \"column\": \"hostid\"}, \"profile\"",
        ))
        .unwrap();
        ac.batch_execute(&format!(
            "SELECT aegis.assign_scope('{r}', 'atk_host', '10084')"
        ))
        .unwrap();
        // An unknown key is refused, after the same definer lookup.
        let e = ac
            .batch_execute(&format!(
                "SELECT aegis.assign_scope('{r}', 'atk_host', '99999')"
            ))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "22023", "{e}");
        ac.batch_execute(&format!(
            "SELECT aegis.create_masking_view('{s}.hosts', readers => ARRAY['{r}', '{v}']::regrole[])"
        ))
        .unwrap();
    });
    assert!(
        seen.iter().all(|(who, _, su)| !su && who != "postgres"),
        "the owner's code ran with pg_aegis's rights during the admin's calls: {seen:?}"
    );

    // The reader reads the masking view: pseudonyms of the host names. The
    // subject id `kind` goes through the owner's cast to text, which the
    // view's pseudonym function refuses (it pseudonymizes columns of the
    // table only, never an expression over them): nothing of the owner's ran.
    let mut rc = connect(&reader, DB);
    let rows = witnessed(&mut dba, &s, || {
        let n: i64 = rc
            .query_one(
                &format!(
                    "SELECT count(DISTINCT host) FROM {s}.hosts_masked WHERE host ~ '^[0-9a-f]{{16,}}$'"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            n, 1,
            "the reader sees its host's pseudonym through the view"
        );
        let e = rc
            .query_one(
                &format!("SELECT count(DISTINCT kind) FROM {s}.hosts_masked"),
                &[],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
    });
    assert!(
        rows.iter()
            .all(|(who, sess, su)| !su && who == &r && sess == &r),
        "the owner's code in the view ran with other rights than the reader's: {rows:?}"
    );

    let mut vc = connect(&viewer, DB);
    let n: i64 = vc
        .query_one(&format!("SELECT count(host) FROM {s}.hosts_masked"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "a reader in no scoped role sees every row");
    // A scope declared later reaches the view's readers at once.
    dba.batch_execute("UPDATE aegis.scope_assignments SET key = '10085' WHERE scope = 'atk_host'")
        .unwrap();
    let hosts: Vec<i64> = rc
        .query(&format!("SELECT hostid FROM {s}.hosts_masked"), &[])
        .unwrap()
        .iter()
        .map(|x| x.get(0))
        .collect();
    assert_eq!(hosts, vec![10085], "the reader's new assignment");

    // The owner itself, reading and writing as the application, runs its own
    // code as itself (the planted code is live).
    let mine = witnessed(&mut dba, &s, || {
        oc.batch_execute(&format!(
            "SELECT kind::text FROM {s}.hosts; UPDATE {s}.hosts SET tag = 1 WHERE hostid = 10085; INSERT INTO {s}.hosts (hostid, host) VALUES (10086, 'x')"
        ))
        .unwrap();
    });
    assert!(!mine.is_empty(), "the planted triggers are live");
    assert!(mine.iter().all(|(who, _, su)| who == &o && !su), "{mine:?}");

    let su: bool = dba
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&o])
        .unwrap()
        .get(0);
    assert!(!su, "the owner became superuser");

    drop((oc, ac, rc, vc, dba));
    root.batch_execute(&format!("DROP DATABASE {DB} WITH (FORCE)"))
        .unwrap();
    for l in [owner, admin, reader, viewer] {
        l.drop_with(&mut root);
    }
}
