//! The audit trail across a crash. Four clients run short transactions of
//! mixed DML on a protected table (about 10% rolled back, some with a
//! savepoint rolled back inside a committed transaction) while a sealer
//! calls aegis.seal() and saves the signed head in a loop; then the server
//! is killed with `pg_ctl stop -m immediate`. After crash recovery:
//!   - every transaction whose COMMIT returned has exactly its entries;
//!   - a transaction rolled back, or cut off before it sent COMMIT, has none;
//!   - one whose COMMIT was in flight has all of its entries or none;
//!   - no entry belongs to a transaction nobody ran, and replaying the log
//!     gives exactly the table's rows (entries and data recovered together);
//!   - the indexes of the audit tables hold every heap tuple (amcheck: the
//!     entries are inserted into heap and index directly, not through SQL);
//!   - seal() links everything left, verify_chain() is ok, and the head saved
//!     before the crash still verifies; DML after the restart is audited and
//!     sealed behind the old entries.
//!
//! A cluster of its own: the shared test cluster runs with
//! synchronous_commit = off, under which a crash may lose transactions whose
//! COMMIT returned, and a crash would cut every other test's connections.
//! fsync = off is sound here: the test kills server processes, not the
//! machine, so everything written to the kernel survives.

use aegis_integration::audit::{chain_head, seal_all, verify};
use aegis_integration::ScratchCluster;
use postgres::{Client, Config, NoTls, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DB: &str = "aegis_crash";
const CLIENTS: i32 = 4;
const WORKLOAD: Duration = Duration::from_millis(2500);
/// Each client updates only its own seed rows and deletes only rows it
/// inserted: no two clients touch a key, so replaying the log in xid order
/// is the order the changes were made in.
const SEED_BASE: i32 = 1_000_000;
const SEEDS_PER_CLIENT: i32 = 20;

/// One audit entry as the test sees it: operation, key, and the new `v`
/// (the writing transaction's marker; NULL for a DELETE).
type Entry = (String, i32, Option<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// COMMIT returned OK.
    Committed,
    /// ROLLBACK sent (whether or not it returned).
    RolledBack,
    /// Cut off by the crash before COMMIT was sent.
    CutOff,
    /// COMMIT was sent and no answer came: either way is allowed.
    Uncertain,
}

#[derive(Debug)]
struct Tx {
    xid: String,
    expected: Vec<Entry>,
    outcome: Outcome,
}

fn seed_key(w: i32, j: i32) -> i32 {
    SEED_BASE + w * 100 + j
}

/// What one transaction did, as its statements reported it.
#[derive(Default)]
struct Done {
    /// The entries it must leave if it commits.
    entries: Vec<Entry>,
    inserted: Vec<i32>,
    deleted: Vec<i32>,
}

/// The DML of transaction `i` of client `w`. Deletes keys `live` says were
/// inserted and committed; new keys come from `next_key`.
fn body(
    tx: &mut Transaction<'_>,
    w: i32,
    i: i32,
    marker: &str,
    next_key: &mut i32,
    live: &[i32],
) -> Result<Done, postgres::Error> {
    let mut done = Done::default();
    let mut insert = |tx: &mut Transaction<'_>, n: i32| -> Result<(), postgres::Error> {
        let first = *next_key;
        *next_key += n;
        for r in tx.query(
            "INSERT INTO t (k, v) SELECT g, $2 FROM generate_series($1::int, $1::int + $3 - 1) g RETURNING k",
            &[&first, &marker, &n],
        )? {
            let k: i32 = r.get(0);
            done.entries.push(("INSERT".to_string(), k, Some(marker.to_string())));
            done.inserted.push(k);
        }
        Ok(())
    };
    match i % 5 {
        0 | 1 => insert(tx, 1 + i % 3)?,
        2 => {
            let keys = vec![
                seed_key(w, i % SEEDS_PER_CLIENT),
                seed_key(w, (i + 7) % SEEDS_PER_CLIENT),
            ];
            for r in tx.query(
                "UPDATE t SET v = $2 WHERE k = ANY($1) RETURNING k",
                &[&keys, &marker],
            )? {
                done.entries
                    .push(("UPDATE".to_string(), r.get(0), Some(marker.to_string())));
            }
        }
        3 => {
            let keys: Vec<i32> = live.iter().take(2).copied().collect();
            for r in tx.query("DELETE FROM t WHERE k = ANY($1) RETURNING k", &[&keys])? {
                let k: i32 = r.get(0);
                done.entries.push(("DELETE".to_string(), k, None));
                done.deleted.push(k);
            }
        }
        _ => {
            // Several statements, one of them undone by a savepoint: the
            // undone change must leave no entry although the transaction
            // commits.
            insert(tx, 2)?;
            tx.batch_execute("SAVEPOINT s")?;
            let undone = *next_key;
            *next_key += 1;
            tx.execute("INSERT INTO t (k, v) VALUES ($1, 'undone')", &[&undone])?;
            tx.execute("UPDATE t SET v = 'undone' WHERE k = $1", &[&seed_key(w, 0)])?;
            tx.batch_execute("ROLLBACK TO SAVEPOINT s")?;
            let k = seed_key(w, i % SEEDS_PER_CLIENT);
            for r in tx.query(
                "UPDATE t SET v = $2 WHERE k = $1 RETURNING k",
                &[&k, &marker],
            )? {
                done.entries
                    .push(("UPDATE".to_string(), r.get(0), Some(marker.to_string())));
            }
            if let Some(&k) = live.first() {
                for r in tx.query("DELETE FROM t WHERE k = $1 RETURNING k", &[&k])? {
                    let k: i32 = r.get(0);
                    done.entries.push(("DELETE".to_string(), k, None));
                    done.deleted.push(k);
                }
            }
        }
    }
    Ok(done)
}

/// Runs transactions until its connection fails (the crash) or `stop`.
/// Returns every transaction whose xid it learned, and whether a
/// connection error ended it.
fn client(w: i32, cfg: Config, stop: Arc<AtomicBool>) -> (Vec<Tx>, bool) {
    let mut c = cfg.connect(NoTls).expect("client connects");
    let mut txs = Vec::new();
    let mut live: Vec<i32> = Vec::new();
    let mut next_key = (w + 1) * 10_000_000;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let marker = format!("c{w}-{i}");
        let Ok(mut tx) = c.transaction() else {
            return (txs, true);
        };
        // The xid first, so a transaction cut off anywhere later is known.
        let xid: String = match tx.query_one("SELECT pg_current_xact_id()::text", &[]) {
            Ok(r) => r.get(0),
            Err(_) => return (txs, true),
        };
        let result = body(&mut tx, w, i, &marker, &mut next_key, &live);
        let Ok(Done {
            entries: expected,
            inserted,
            deleted,
        }) = result
        else {
            txs.push(Tx {
                xid,
                expected: Vec::new(),
                outcome: Outcome::CutOff,
            });
            return (txs, true);
        };
        if (i * 7 + w) % 10 == 0 {
            let ended = tx.rollback().is_err();
            txs.push(Tx {
                xid,
                expected,
                outcome: Outcome::RolledBack,
            });
            if ended {
                return (txs, true);
            }
        } else {
            match tx.commit() {
                Ok(()) => {
                    live.retain(|k| !deleted.contains(k));
                    live.extend(inserted);
                    txs.push(Tx {
                        xid,
                        expected,
                        outcome: Outcome::Committed,
                    });
                }
                Err(_) => {
                    txs.push(Tx {
                        xid,
                        expected,
                        outcome: Outcome::Uncertain,
                    });
                    return (txs, true);
                }
            }
        }
        i += 1;
    }
    (txs, false)
}

/// seal() and chain_head() in a loop until the connection fails or `stop`:
/// returns the rounds, the entries sealed, and the last head obtained
/// (taken after a seal() that returned, so it is durable).
fn sealer(cfg: Config, stop: Arc<AtomicBool>) -> (u32, i64, Option<String>) {
    let mut c = cfg.connect(NoTls).expect("sealer connects");
    let (mut rounds, mut sealed, mut head) = (0, 0i64, None);
    while !stop.load(Ordering::Relaxed) {
        match c.query_one("SELECT aegis.seal()", &[]) {
            Ok(r) => sealed += r.get::<_, i64>(0),
            Err(_) => break,
        }
        rounds += 1;
        if sealed > 0 {
            match c.query_one("SELECT aegis.chain_head()::text", &[]) {
                Ok(r) => head = Some(r.get(0)),
                Err(_) => break,
            }
        }
    }
    (rounds, sealed, head)
}

/// Every entry of `t` in the log (not protect()'s catalog entry), by xid,
/// in (xid, id) order.
fn entries_by_xid(c: &mut Client) -> BTreeMap<(u64, i64), (String, Entry)> {
    c.query(
        "SELECT xid::text, id, operation, (pk ->> 'k')::int, new_row ->> 'v' FROM aegis.audit_log
         WHERE table_name = 'public.t'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let xid: String = r.get(0);
        let key = (xid.parse::<u64>().unwrap(), r.get::<_, i64>(1));
        (key, (xid, (r.get(2), r.get(3), r.get(4))))
    })
    .collect()
}

#[test]
fn committed_entries_survive_a_crash_and_the_chain_resumes() {
    let started = Instant::now();
    let cluster = ScratchCluster::init("crash", &["fsync = off"]);
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut c = cluster.connect(DB);
    c.batch_execute(
        "CREATE EXTENSION pg_aegis;
         CREATE EXTENSION amcheck;
         SELECT aegis.create_key('audit_head');
         CREATE TABLE t (k int PRIMARY KEY, v text);
         SELECT aegis.protect('t', '{}');",
    )
    .unwrap();
    let mut txs: Vec<Tx> = Vec::new();
    {
        let mut tx = c.transaction().unwrap();
        let xid: String = tx
            .query_one("SELECT pg_current_xact_id()::text", &[])
            .unwrap()
            .get(0);
        let mut expected = Vec::new();
        for w in 0..CLIENTS {
            for j in 0..SEEDS_PER_CLIENT {
                tx.execute("INSERT INTO t VALUES ($1, 'seed')", &[&seed_key(w, j)])
                    .unwrap();
                expected.push((
                    "INSERT".to_string(),
                    seed_key(w, j),
                    Some("seed".to_string()),
                ));
            }
        }
        tx.commit().unwrap();
        txs.push(Tx {
            xid,
            expected,
            outcome: Outcome::Committed,
        });
    }
    drop(c);

    // ---------------------------------------------------------------- workload, then the crash
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = cluster.config(DB);
    let seal_thread = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        std::thread::spawn(move || sealer(cfg, stop))
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (cfg, stop) = (cfg.clone(), stop.clone());
            std::thread::spawn(move || client(w, cfg, stop))
        })
        .collect();
    std::thread::sleep(WORKLOAD);
    cluster.stop("immediate");
    stop.store(true, Ordering::Relaxed);
    let mut cut_off = 0;
    for (w, h) in clients.into_iter().enumerate() {
        let (t, by_error) = h.join().expect("client thread");
        let committed = t.iter().filter(|t| t.outcome == Outcome::Committed).count();
        assert!(
            committed >= 20,
            "client {w} committed only {committed} transactions"
        );
        cut_off += usize::from(by_error);
        txs.extend(t);
    }
    let (rounds, sealed_before, head_before) = seal_thread.join().expect("sealer thread");
    assert!(
        cut_off > 0,
        "the crash cut off no client: it did not hit the workload"
    );
    assert!(
        rounds > 1 && sealed_before > 0,
        "the sealer sealed before the crash"
    );
    let head_before = head_before.expect("a head was saved before the crash");
    let count = |o: Outcome| txs.iter().filter(|t| t.outcome == o).count();
    eprintln!(
        "before the crash: {} committed, {} rolled back, {} cut off before COMMIT, {} uncertain; \
         {rounds} seal rounds sealed {sealed_before} entries",
        count(Outcome::Committed),
        count(Outcome::RolledBack),
        count(Outcome::CutOff),
        count(Outcome::Uncertain)
    );
    assert!(
        count(Outcome::RolledBack) > 10,
        "some transactions were rolled back"
    );

    // ---------------------------------------------------------------- after crash recovery
    cluster.start();
    let mut c = cluster.connect(DB);
    let log = entries_by_xid(&mut c);
    let mut got: HashMap<&str, Vec<Entry>> = HashMap::new();
    for (xid, e) in log.values() {
        got.entry(xid.as_str()).or_default().push(e.clone());
    }
    let mut problems = Vec::new();
    let mut uncertain_kept = 0;
    for t in &txs {
        let mut have = got.remove(t.xid.as_str()).unwrap_or_default();
        have.sort();
        let mut want = t.expected.clone();
        want.sort();
        let fine = match t.outcome {
            Outcome::Committed => have == want,
            Outcome::RolledBack | Outcome::CutOff => have.is_empty(),
            Outcome::Uncertain => {
                uncertain_kept += usize::from(!have.is_empty());
                have.is_empty() || have == want
            }
        };
        if !fine {
            problems.push(format!(
                "{:?} xid {}: expected {:?}, audit_log has {:?}",
                t.outcome, t.xid, want, have
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} transactions with wrong entries after the crash, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        got.is_empty(),
        "entries of transactions nobody ran: {:?}",
        got.keys().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "{uncertain_kept} of {} uncertain commits survived",
        count(Outcome::Uncertain)
    );

    // Replaying the log (clients never share a key, and each client's xids
    // grow with its commits) gives the table's rows: the table and its
    // trail were recovered to the same point.
    let mut replayed: BTreeMap<i32, String> = BTreeMap::new();
    for (_, (op, k, v)) in log.values() {
        match op.as_str() {
            "INSERT" | "UPDATE" => {
                replayed.insert(*k, v.clone().unwrap());
            }
            "DELETE" => {
                replayed.remove(k);
            }
            other => panic!("unexpected operation {other}"),
        }
    }
    let table: BTreeMap<i32, String> = c
        .query("SELECT k, v FROM t", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(replayed.len(), table.len(), "rows: replayed log vs table");
    assert!(
        replayed == table,
        "replaying the audit log does not give the table's rows"
    );

    // The heap tuples written directly by the trigger are all in the index.
    c.batch_execute(
        "SELECT bt_index_check(i.indexrelid, true) FROM pg_index i
         WHERE i.indrelid IN ('aegis.audit_log'::regclass, 'aegis.audit_chain'::regclass, 't'::regclass)",
    )
    .expect("amcheck on the audit indexes after crash recovery");

    // Sealing resumes where the crash left it; the old head still holds.
    let total = seal_all(&mut c);
    // t's entries and those create_key() and protect() left in the
    // keyring's and the policy catalog's trail.
    assert_eq!(total as usize, log.len() + 2);
    let (ok, checked, problem) = verify(&mut c, None);
    assert!(
        ok && checked == total,
        "verify_chain after the crash: {checked} of {total}, {problem:?}"
    );
    let (ok, _, problem) = verify(&mut c, Some(&head_before));
    assert!(ok, "the head saved before the crash: {problem:?}");

    // ---------------------------------------------------------------- DML after the restart
    let last_position: i64 = c
        .query_one("SELECT max(position) FROM aegis.audit_chain", &[])
        .unwrap()
        .get(0);
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "INSERT INTO t SELECT g, 'after' FROM generate_series(1, 10) g;
         UPDATE t SET v = 'after-update' WHERE k BETWEEN 1 AND 4;
         DELETE FROM t WHERE k IN (9, 10);",
    )
    .unwrap();
    let after_xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    let mut tx = c.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (11, 'rolled back')", &[])
        .unwrap();
    let rolled_back_xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    let total_after = seal_all(&mut c);
    assert_eq!(total_after, total + 16, "10 inserts, 4 updates, 2 deletes");
    let r = c
        .query_one(
            "SELECT count(*), min(c.position), max(c.position) FROM aegis.audit_log l
             JOIN aegis.audit_chain c ON c.entry_id = l.id WHERE l.xid = $1::text::xid8",
            &[&after_xid],
        )
        .unwrap();
    let (n, lo, hi): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        (n, lo, hi),
        (16, last_position + 1, last_position + 16),
        "sealed after the old chain"
    );
    let ghosts: i64 = c
        .query_one(
            "SELECT count(*) FROM aegis.audit_log WHERE xid = $1::text::xid8",
            &[&rolled_back_xid],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        ghosts, 0,
        "entries of the transaction rolled back after the restart"
    );
    let (ok, checked, problem) = verify(&mut c, None);
    assert!(
        ok && checked == total_after,
        "verify_chain after more DML: {problem:?}"
    );
    let (ok, _, problem) = verify(&mut c, Some(&head_before));
    assert!(ok, "the pre-crash head after more DML: {problem:?}");
    let head_after: String = chain_head(&mut c);
    let (ok, checked, problem) = verify(&mut c, Some(&head_after));
    assert!(ok && checked == total_after, "the new head: {problem:?}");
    drop(c);
    cluster.stop("fast");
    eprintln!("crash test took {:.1}s", started.elapsed().as_secs_f64());
}
