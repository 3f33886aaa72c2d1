//! The audit trail against real clients: the tamper suite (each tampering a
//! superuser with full access can do is named by verify_chain(), or by
//! verify_chain(saved_head), at the right position) and concurrent writers
//! with rollbacks while seal() runs. Each test works in a database of its
//! own, so every chain starts untampered. They run one at a time: sealing
//! waits for the oldest running transaction of the whole cluster (xids are
//! cluster-wide), so a neighbour's open transaction would hold back seal().

use aegis_integration::audit::{chain_head, seal_all};
use aegis_integration::{superuser_to, Cluster};
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh database with pg_aegis, the head-signing key and a protected
/// table holding `n` audited, sealed inserts.
fn fresh_db(name: &str, n: i32) -> Client {
    fresh_db_with(name, n, "{}")
}

/// As fresh_db(), with `t` protected under `policy`.
fn fresh_db_with(name: &str, n: i32, policy: &str) -> Client {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut c = superuser_to(Cluster::Preloaded, name);
    c.batch_execute(
        "CREATE EXTENSION pg_aegis;
         SELECT aegis.create_key('audit_head');
         CREATE TABLE t (k int PRIMARY KEY, v text);",
    )
    .unwrap();
    c.execute("SELECT aegis.protect('t', $1::text::jsonb)", &[&policy])
        .unwrap();
    // One transaction per entry, so entries are ordered by xid.
    for k in 1..=n {
        c.execute("INSERT INTO t VALUES ($1, 'v')", &[&k]).unwrap();
    }
    // n entries of t, after the two the keyring and the policy catalog
    // leave (create_key() and protect(): positions 1 and 2).
    assert_eq!(seal_all(&mut c), i64::from(n) + 2);
    c
}

fn drop_db(name: &str) {
    let mut admin = superuser_to(Cluster::Preloaded, "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

#[derive(Debug)]
struct Verdict {
    ok: bool,
    checked: i64,
    position: Option<i64>,
    problem: Option<String>,
}

fn verify(c: &mut Client, head: Option<&str>) -> Verdict {
    let row = match head {
        None => c.query_one("SELECT * FROM aegis.verify_chain()", &[]),
        Some(h) => c.query_one("SELECT * FROM aegis.verify_chain($1::text::jsonb)", &[&h]),
    }
    .unwrap();
    Verdict {
        ok: row.get(0),
        checked: row.get(1),
        position: row.get(2),
        problem: row.get(3),
    }
}

/// Lift the append-only guards, as a superuser with full access can.
const UNGUARD: &str = "ALTER TABLE aegis.audit_log DISABLE TRIGGER append_only;
                       ALTER TABLE aegis.audit_chain DISABLE TRIGGER append_only;
                       ALTER TABLE aegis.audit_chain DROP CONSTRAINT audit_chain_pkey;";

/// Recompute every chain hash from position `from` on, as an attacker who
/// knows the (public) chain formula would.
const RELINK: &str = "
CREATE FUNCTION pg_temp.relink(from_pos bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE prev bytea; r record;
BEGIN
    SELECT chain_hash INTO prev FROM aegis.audit_chain WHERE position = from_pos - 1;
    prev := coalesce(prev, '\\x0000000000000000000000000000000000000000000000000000000000000000');
    FOR r IN SELECT c.position, l.entry_hash FROM aegis.audit_chain c
             JOIN aegis.audit_log l ON l.id = c.entry_id WHERE c.position >= from_pos ORDER BY c.position LOOP
        prev := sha256(convert_to('pg_aegis audit chain v1', 'UTF8') || '\\x00'::bytea
                       || int8send(r.position) || prev || r.entry_hash);
        UPDATE aegis.audit_chain SET chain_hash = prev WHERE position = r.position;
    END LOOP;
END $$;";

#[test]
fn untampered_chain_verifies_with_and_without_its_head() {
    let _serial = serial();
    let db = "aegis_it_tamper_none";
    let mut c = fresh_db(db, 10);
    let h = chain_head(&mut c);
    let v = verify(&mut c, None);
    assert!(v.ok && v.checked == 12, "{v:?}");
    let v = verify(&mut c, Some(&h));
    assert!(v.ok && v.checked == 12, "{v:?}");
    // More entries after the head was saved: still fine (the UPDATE of
    // ten rows is one chunk entry).
    c.execute("UPDATE t SET v = 'w'", &[]).unwrap();
    seal_all(&mut c);
    let v = verify(&mut c, Some(&h));
    assert!(v.ok && v.checked == 13, "{v:?}");
    drop_db(db);
}

#[test]
fn modified_entry_is_named() {
    let _serial = serial();
    let db = "aegis_it_tamper_modify";
    let mut c = fresh_db(db, 10);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(
        "UPDATE aegis.audit_log l SET new_row = jsonb_set(new_row, '{v}', '\"x\"')
         FROM aegis.audit_chain c WHERE c.entry_id = l.id AND c.position = 5",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.position, Some(5));
    assert!(v.problem.unwrap().starts_with("entry modified"));
    drop_db(db);
}

#[test]
fn deleted_entry_in_the_middle_is_named() {
    let _serial = serial();
    let db = "aegis_it_tamper_delete";
    let mut c = fresh_db(db, 10);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(
        "DELETE FROM aegis.audit_log l USING aegis.audit_chain c
         WHERE c.entry_id = l.id AND c.position = 6",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.position, Some(6));
    assert!(v.problem.unwrap().starts_with("entry missing"));
    drop_db(db);
}

#[test]
fn deleted_tail_is_caught_by_the_saved_head() {
    let _serial = serial();
    let db = "aegis_it_tamper_tail";
    let mut c = fresh_db(db, 10);
    let h = chain_head(&mut c);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(
        "DELETE FROM aegis.audit_log l USING aegis.audit_chain c WHERE c.entry_id = l.id AND c.position > 8;
         DELETE FROM aegis.audit_chain WHERE position > 8;",
    )
    .unwrap();
    // The chain alone cannot tell: what is left is consistent.
    assert!(verify(&mut c, None).ok);
    let v = verify(&mut c, Some(&h));
    assert!(!v.ok, "{v:?}");
    assert!(v.problem.unwrap().contains("truncated"));
    drop_db(db);
}

#[test]
fn forged_entry_is_named() {
    let _serial = serial();
    let db = "aegis_it_tamper_forge";
    let mut c = fresh_db(db, 10);
    c.batch_execute(UNGUARD).unwrap();
    // A copy of entry 4 with another payload, slotted in at position 5.
    c.batch_execute(
        "UPDATE aegis.audit_chain SET position = position + 1 WHERE position >= 5;
         INSERT INTO aegis.audit_log (id, xid, operation, table_name, db_user, session_user_name,
                backend_pid, statement_time, pk, new_row, data_digest, entry_hash)
         SELECT 1000, l.xid, 'INSERT', l.table_name, l.db_user, l.session_user_name, l.backend_pid,
                l.statement_time, '{\"k\": 99}', '{\"k\": 99, \"v\": \"forged\"}', l.data_digest, l.entry_hash
         FROM aegis.audit_log l JOIN aegis.audit_chain c ON c.entry_id = l.id WHERE c.position = 4;
         INSERT INTO aegis.audit_chain (position, entry_xid, entry_id, chain_hash)
         SELECT 5, entry_xid, 1000, chain_hash FROM aegis.audit_chain WHERE position = 4;",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.position, Some(5));
    // Its stored hash was copied, so its fields no longer match it.
    assert!(v.problem.unwrap().starts_with("entry modified"));

    // An entry added beside the chain (never sealed) is reported too.
    let mut c = fresh_db(db, 3);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(
        "INSERT INTO aegis.audit_log (id, xid, operation, db_user, session_user_name, backend_pid,
                statement_time, data_digest, entry_hash)
         VALUES (2000, '3', 'INSERT', 'x', 'x', 1, now(), '\\x00', '\\x00')",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert!(v.problem.unwrap().contains("outside the chain"));
    drop_db(db);
}

#[test]
fn swapped_entries_are_named() {
    let _serial = serial();
    let db = "aegis_it_tamper_swap";
    let mut c = fresh_db(db, 10);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(
        "UPDATE aegis.audit_chain SET position = CASE position WHEN 3 THEN 7 ELSE 3 END
         WHERE position IN (3, 7)",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.position, Some(3));
    assert!(v.problem.unwrap().contains("reordered"), "swap");
    drop_db(db);
}

#[test]
fn consistently_rewritten_chain_is_caught_by_the_saved_head() {
    let _serial = serial();
    let db = "aegis_it_tamper_rewrite";
    let mut c = fresh_db(db, 10);
    let h = chain_head(&mut c);
    c.batch_execute(UNGUARD).unwrap();
    c.batch_execute(RELINK).unwrap();
    // Reorder two entries and recompute every link after them: the chain is
    // internally consistent again, same length, same positions.
    c.batch_execute(
        "UPDATE aegis.audit_chain SET position = CASE position WHEN 3 THEN 7 ELSE 3 END
         WHERE position IN (3, 7);
         SELECT pg_temp.relink(3);",
    )
    .unwrap();
    assert!(verify(&mut c, None).ok, "rewritten consistently");
    let v = verify(&mut c, Some(&h));
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.position, Some(12));
    assert!(v.problem.unwrap().contains("rewritten"));
    // A forged head does not help: the attacker has no key to sign one.
    let forged: String = c
        .query_one(
            "SELECT jsonb_set($1::text::jsonb, '{hash}', to_jsonb(encode(chain_hash, 'hex')))::text
             FROM aegis.audit_chain WHERE position = 12",
            &[&h],
        )
        .unwrap()
        .get(0);
    let v = verify(&mut c, Some(&forged));
    assert!(!v.ok && v.problem.unwrap().contains("signature"));
    drop_db(db);
}

/// 8 clients, 20,000 transactions of mixed DML, about 10% rolled back, with
/// seal() running all along: each committed change has exactly one entry,
/// rolled-back ones none, and the chain verifies.
#[test]
fn concurrent_writers_with_rollbacks_while_sealing() {
    // One entry per statement that changed rows: a one-row entry, or a
    // chunk entry for the UPDATEs of three rows.
    concurrent_workload("aegis_it_concurrency", "{}", |_, changed| changed.min(1));
}

/// The same workload on a digest-mode table: an INSERT statement is one
/// entry, an UPDATE or DELETE one statement entry and one image entry (a
/// chunk entry for three rows); statements that changed nothing leave
/// none. The table verifies against
/// its content digest at the end.
#[test]
fn concurrent_writers_with_rollbacks_while_sealing_digest_mode() {
    concurrent_workload(
        "aegis_it_concurrency_digest",
        r#"{"audit_inserts": "digest"}"#,
        |op, changed| match (op, changed) {
            (_, 0) => 0,
            (0 | 1, _) => 1,
            (_, _) => 2,
        },
    );
}

fn concurrent_workload(db: &'static str, policy: &str, entries_for: fn(i32, i64) -> i64) {
    let _serial = serial();
    let mut c = fresh_db_with(db, 0, policy);
    c.batch_execute("INSERT INTO t SELECT g, 'seed' FROM generate_series(1000001, 1000800) g")
        .unwrap();
    const CLIENTS: i32 = 8;
    const PER_CLIENT: i32 = 2_500;
    let done = Arc::new(AtomicBool::new(false));
    let sealer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut s = superuser_to(Cluster::Preloaded, db);
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                s.query_one("SELECT aegis.seal()", &[]).unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = superuser_to(Cluster::Preloaded, db);
                let mut committed: Vec<(String, i64)> = Vec::new();
                let mut rolled_back: Vec<String> = Vec::new();
                for i in 0..PER_CLIENT {
                    let k = w * 100_000 + i;
                    // Each worker's own seed rows; an UPDATE changes three.
                    let seed = 1_000_001 + (w * 100 + i % 98);
                    let mut tx = c.transaction().unwrap();
                    let op = i % 4;
                    let changed = match op {
                        0 | 1 => tx.execute("INSERT INTO t VALUES ($1, 'n')", &[&k]).unwrap(),
                        2 => tx
                            .execute(
                                "UPDATE t SET v = $2 WHERE k BETWEEN $1 AND $1 + 2",
                                &[&seed, &format!("u{i}")],
                            )
                            .unwrap(),
                        _ => tx
                            .execute("DELETE FROM t WHERE k = $1", &[&(k - 3)])
                            .unwrap(),
                    };
                    let xid: String = tx
                        .query_one("SELECT pg_current_xact_id()::text", &[])
                        .unwrap()
                        .get(0);
                    if (i * 7 + w) % 10 == 0 {
                        tx.rollback().unwrap();
                        rolled_back.push(xid);
                    } else {
                        tx.commit().unwrap();
                        committed.push((xid, entries_for(op, changed as i64)));
                    }
                }
                (committed, rolled_back)
            })
        })
        .collect();
    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    for w in workers {
        let (cm, rb) = w.join().unwrap();
        committed.extend(cm);
        rolled_back.extend(rb);
    }
    done.store(true, Ordering::Relaxed);
    let rounds = sealer.join().unwrap();
    assert!(rounds > 1, "the sealer ran during the workload");
    seal_all(&mut c);

    let (xids, counts): (Vec<String>, Vec<i64>) = committed.into_iter().unzip();
    let wrong: i64 = c
        .query_one(
            "SELECT count(*) FROM unnest($1::text[], $2::int8[]) AS w(xid, n)
             WHERE n <> (SELECT count(*) FROM aegis.audit_log l WHERE l.xid = w.xid::xid8)",
            &[&xids, &counts],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        wrong, 0,
        "committed transactions whose entry count differs from their changes"
    );
    let ghost: i64 = c
        .query_one(
            "SELECT count(*) FROM aegis.audit_log WHERE xid::text = ANY ($1)",
            &[&rolled_back],
        )
        .unwrap()
        .get(0);
    assert_eq!(ghost, 0, "entries of rolled-back transactions");
    assert!(rolled_back.len() > 1_500, "about 10% rolled back");
    let (entries, unsealed): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE position IS NULL) FROM aegis.audit_trail
                 WHERE item IS NULL OR item = 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(unsealed, 0);
    let v = verify(&mut c, None);
    assert!(v.ok && v.checked == entries, "{v:?}");
    let table_ok: bool = c
        .query_one("SELECT ok FROM aegis.verify_table('t')", &[])
        .unwrap()
        .get(0);
    assert!(table_ok, "the table verifies against its trail");
    drop_db(db);
}

#[test]
fn tombstones_must_be_accounted_for_by_an_erasure_receipt() {
    let _serial = serial();
    let db = "aegis_it_tamper_tombstone";
    let mut c = fresh_db(db, 0);
    c.batch_execute(
        "SET client_min_messages = warning;
         SELECT aegis.create_key('pseudonym');
         CREATE TABLE p (k int PRIMARY KEY, who text, note text);
         SELECT aegis.protect('p', '{\"columns\": {\"who\": \"subject_id\", \"note\": \"free_text\"}}');",
    )
    .unwrap();
    for (k, who, note) in [
        (1, "dana", "dana asked"),
        (2, "erik", "erik saw dana"),
        (3, "erik", "x"),
    ] {
        c.execute("INSERT INTO p VALUES ($1, $2, $3)", &[&k, &who, &note])
            .unwrap();
    }
    seal_all(&mut c);
    let h = chain_head(&mut c);
    // A real erasure: entries tombstoned, the receipt lists them, the
    // chain and the saved head verify.
    let tombstoned: i64 = c
        .query_one(
            "SELECT (aegis.erase_subject('dana') ->> 'audit_entries_tombstoned')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tombstoned >= 2, "{tombstoned}");
    seal_all(&mut c);
    let v = verify(&mut c, Some(&h));
    assert!(v.ok, "after a real erasure: {v:?}");

    c.batch_execute(UNGUARD).unwrap();
    // (a) A superuser marks another entry erased and rewrites its image:
    // no receipt accounts for it.
    c.batch_execute(
        "UPDATE aegis.audit_log SET erased_at = now(), new_row = jsonb_set(new_row, '{note}', '\"rewritten\"')
         WHERE table_name = 'public.p' AND pk ->> 'k' = '3' AND operation = 'INSERT'",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap_or("")
            .contains("no erasure receipt"),
        "{v:?}"
    );
    c.batch_execute(
        "UPDATE aegis.audit_log SET erased_at = NULL, new_row = jsonb_set(new_row, '{note}', '\"x\"')
         WHERE table_name = 'public.p' AND pk ->> 'k' = '3' AND operation = 'INSERT'",
    )
    .unwrap();
    assert!(verify(&mut c, None).ok, "restored");
    // (b) A tombstoned entry changed after its receipt: reported too.
    c.batch_execute(
        "UPDATE aegis.audit_log SET new_row = jsonb_set(new_row, '{note}', '\"changed after erasure\"')
         WHERE id = (SELECT min(id) FROM aegis.audit_log WHERE erased_at IS NOT NULL AND new_row ? 'note')",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap_or("")
            .contains("no erasure receipt"),
        "{v:?}"
    );
    drop_db(db);
}

#[test]
fn a_row_reusing_a_chained_entry_id_is_reported() {
    let _serial = serial();
    let db = "aegis_it_tamper_dupid";
    let mut c = fresh_db(db, 3);
    c.batch_execute(UNGUARD).unwrap();
    // Same id as a chained entry, another (old, ended) transaction id.
    c.batch_execute(
        "INSERT INTO aegis.audit_log (id, xid, operation, table_name, db_user, session_user_name,
                backend_pid, statement_time, new_row, data_digest, entry_hash)
         SELECT l.id, '3', 'INSERT', l.table_name, l.db_user, l.session_user_name, l.backend_pid,
                l.statement_time, '{\"k\": 42, \"v\": \"smuggled\"}', l.data_digest, l.entry_hash
         FROM aegis.audit_log l JOIN aegis.audit_chain c ON c.entry_id = l.id AND c.entry_xid = l.xid
         WHERE c.position = 2",
    )
    .unwrap();
    let v = verify(&mut c, None);
    assert!(!v.ok, "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap_or("")
            .contains("outside the chain"),
        "{v:?}"
    );
    drop_db(db);
}
