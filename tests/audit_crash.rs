//! The audit trail across a crash, in both capture modes. Four clients run
//! short transactions of mixed DML on a protected table (about 10% rolled
//! back, some with a savepoint rolled back inside a committed transaction)
//! while a sealer calls aegis.seal() and saves the signed head in a loop;
//! then the server is killed with `pg_ctl stop -m immediate`. The same
//! workload and checks run with the table in image mode (the default: one
//! entry per changed row, with its image) and in digest mode
//! (`"audit_inserts": "digest"`: one entry per INSERT statement holding its
//! row count and content change, no row image; an UPDATE or DELETE
//! statement leaves such an entry plus one image entry per row). After
//! crash recovery:
//!   - every transaction whose COMMIT returned has exactly the entries its
//!     statements imply in that mode (none for a statement that changed no
//!     row or was undone by ROLLBACK TO SAVEPOINT);
//!   - a transaction rolled back, or cut off before it sent COMMIT, has none;
//!   - one whose COMMIT was in flight has all of its entries or none;
//!   - no entry belongs to a transaction nobody ran, and the table holds
//!     exactly the rows the transactions that left entries wrote (entries
//!     and data recovered together);
//!   - verify_table() is ok (in digest mode: a scan of the table equals the
//!     sum of the trail's content changes), and reports a row changed
//!     behind the trail;
//!   - the indexes of the audit tables hold every heap tuple (amcheck: the
//!     entries are inserted into heap and index directly, not through SQL);
//!   - seal() links everything left, verify_chain() is ok, and the head saved
//!     before the crash still verifies; DML after the restart is audited and
//!     sealed behind the old entries, and the table still verifies.
//!
//! Each test has a cluster of its own: the shared test cluster runs with
//! synchronous_commit = off, under which a crash may lose transactions whose
//! COMMIT returned, and a crash would cut every other test's connections.
//! fsync = off is sound here: the test kills server processes, not the
//! machine, so everything written to the kernel survives. The two tests run
//! one at a time, so each workload has the machine to itself before its
//! crash.

use aegis_integration::audit::{chain_head, seal_all, verify};
use aegis_integration::ScratchCluster;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DB: &str = "aegis_crash";
const CLIENTS: i32 = 4;
const WORKLOAD: Duration = Duration::from_millis(2500);
/// Each client updates only its own seed rows and deletes only rows it
/// inserted: no two clients touch a key, so applying the transactions in
/// xid order is the order the changes were made in.
const SEED_BASE: i32 = 1_000_000;
const SEEDS_PER_CLIENT: i32 = 20;

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn committed_entries_survive_a_crash_and_the_chain_resumes() {
    crash_test(Mode::Image);
}

#[test]
fn committed_entries_survive_a_crash_and_the_chain_resumes_digest_mode() {
    crash_test(Mode::Digest);
}

// ---------------------------------------------------------------- capture modes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The default policy: one entry per changed row, with its image.
    Image,
    /// `"audit_inserts": "digest"`.
    Digest,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Image => "image",
            Mode::Digest => "digest",
        }
    }

    fn policy(self) -> &'static str {
        match self {
            Mode::Image => "{}",
            Mode::Digest => r#"{"audit_inserts": "digest"}"#,
        }
    }

    /// The entries statement `s` leaves when its transaction commits.
    fn entries(self, s: &Statement) -> Vec<Entry> {
        let images = s
            .rows
            .iter()
            .map(|(k, v)| Entry::Row(s.op.to_string(), *k, v.clone()));
        match self {
            Mode::Image => images.collect(),
            Mode::Digest if s.rows.is_empty() => Vec::new(),
            Mode::Digest => {
                let statement = Entry::Statement(s.op.to_string(), s.rows.len() as i64);
                if s.op == "INSERT" {
                    vec![statement]
                } else {
                    images.chain(std::iter::once(statement)).collect()
                }
            }
        }
    }

    /// The entries of a transaction that ran `statements`, sorted.
    fn expected(self, statements: &[Statement]) -> Vec<Entry> {
        let mut want: Vec<Entry> = statements.iter().flat_map(|s| self.entries(s)).collect();
        want.sort();
        want
    }
}

/// One DML statement that ran to its end, as its RETURNING reported it
/// (statements undone by ROLLBACK TO SAVEPOINT are not recorded).
#[derive(Debug)]
struct Statement {
    op: &'static str,
    /// Key and new `v` of each row it changed (`v` is None for a DELETE).
    rows: Vec<(i32, Option<String>)>,
}

/// One audit entry of `t` as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    /// A row image: operation, key, and the new `v` (the writing
    /// transaction's marker; None for a DELETE).
    Row(String, i32, Option<String>),
    /// A digest-mode statement entry: operation and the row count in its
    /// `detail` (`{"rows": n}`); it carries a content change.
    Statement(String, i64),
}

// ---------------------------------------------------------------- the workload

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
    statements: Vec<Statement>,
    outcome: Outcome,
}

fn seed_key(w: i32, j: i32) -> i32 {
    SEED_BASE + w * 100 + j
}

/// What one transaction did, as its statements reported it.
#[derive(Default)]
struct Done {
    statements: Vec<Statement>,
    inserted: Vec<i32>,
    deleted: Vec<i32>,
}

/// Runs one `op` statement that returns the keys it changed, setting `v`
/// to `v` (None for a DELETE), and records what it did.
fn dml(
    tx: &mut Transaction<'_>,
    done: &mut Done,
    op: &'static str,
    v: Option<&str>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), postgres::Error> {
    let keys: Vec<i32> = tx.query(sql, params)?.iter().map(|r| r.get(0)).collect();
    match op {
        "INSERT" => done.inserted.extend(&keys),
        "DELETE" => done.deleted.extend(&keys),
        _ => {}
    }
    done.statements.push(Statement {
        op,
        rows: keys
            .into_iter()
            .map(|k| (k, v.map(str::to_string)))
            .collect(),
    });
    Ok(())
}

/// One INSERT statement of `n` rows with new keys from `next_key`.
fn insert(
    tx: &mut Transaction<'_>,
    done: &mut Done,
    next_key: &mut i32,
    marker: &str,
    n: i32,
) -> Result<(), postgres::Error> {
    let first = *next_key;
    *next_key += n;
    dml(
        tx,
        done,
        "INSERT",
        Some(marker),
        "INSERT INTO t (k, v) SELECT g, $2 FROM generate_series($1::int, $1::int + $3 - 1) g RETURNING k",
        &[&first, &marker, &n],
    )
}

/// The DML of transaction `i` of client `w`. Deletes keys `live` says were
/// inserted and committed (none at first: a DELETE that changes no row);
/// new keys come from `next_key`.
fn body(
    tx: &mut Transaction<'_>,
    w: i32,
    i: i32,
    marker: &str,
    next_key: &mut i32,
    live: &[i32],
) -> Result<Done, postgres::Error> {
    let mut done = Done::default();
    let d = &mut done;
    match i % 5 {
        0 | 1 => insert(tx, d, next_key, marker, 1 + i % 3)?,
        2 => {
            let keys = vec![
                seed_key(w, i % SEEDS_PER_CLIENT),
                seed_key(w, (i + 7) % SEEDS_PER_CLIENT),
            ];
            dml(
                tx,
                d,
                "UPDATE",
                Some(marker),
                "UPDATE t SET v = $2 WHERE k = ANY($1) RETURNING k",
                &[&keys, &marker],
            )?;
        }
        3 => {
            let keys: Vec<i32> = live.iter().take(2).copied().collect();
            dml(
                tx,
                d,
                "DELETE",
                None,
                "DELETE FROM t WHERE k = ANY($1) RETURNING k",
                &[&keys],
            )?;
        }
        _ => {
            // Several statements, two of them undone by a savepoint: the
            // undone changes must leave no entry (in digest mode no
            // statement entry either) although the transaction commits.
            insert(tx, d, next_key, marker, 2)?;
            tx.batch_execute("SAVEPOINT s")?;
            let undone = *next_key;
            *next_key += 1;
            tx.execute("INSERT INTO t (k, v) VALUES ($1, 'undone')", &[&undone])?;
            tx.execute("UPDATE t SET v = 'undone' WHERE k = $1", &[&seed_key(w, 0)])?;
            tx.batch_execute("ROLLBACK TO SAVEPOINT s")?;
            let k = seed_key(w, i % SEEDS_PER_CLIENT);
            dml(
                tx,
                d,
                "UPDATE",
                Some(marker),
                "UPDATE t SET v = $2 WHERE k = $1 RETURNING k",
                &[&k, &marker],
            )?;
            if let Some(&k) = live.first() {
                dml(
                    tx,
                    d,
                    "DELETE",
                    None,
                    "DELETE FROM t WHERE k = $1 RETURNING k",
                    &[&k],
                )?;
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
            statements,
            inserted,
            deleted,
        }) = result
        else {
            txs.push(Tx {
                xid,
                statements: Vec::new(),
                outcome: Outcome::CutOff,
            });
            return (txs, true);
        };
        if (i * 7 + w) % 10 == 0 {
            let ended = tx.rollback().is_err();
            txs.push(Tx {
                xid,
                statements,
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
                        statements,
                        outcome: Outcome::Committed,
                    });
                }
                Err(_) => {
                    txs.push(Tx {
                        xid,
                        statements,
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

/// The seed rows, one INSERT statement in a committed transaction.
fn seed(c: &mut Client) -> Tx {
    let keys: Vec<i32> = (0..CLIENTS)
        .flat_map(|w| (0..SEEDS_PER_CLIENT).map(move |j| seed_key(w, j)))
        .collect();
    let mut tx = c.transaction().unwrap();
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    let mut done = Done::default();
    dml(
        &mut tx,
        &mut done,
        "INSERT",
        Some("seed"),
        "INSERT INTO t (k, v) SELECT k, 'seed' FROM unnest($1::int[]) k RETURNING k",
        &[&keys],
    )
    .unwrap();
    tx.commit().unwrap();
    Tx {
        xid,
        statements: done.statements,
        outcome: Outcome::Committed,
    }
}

/// Runs the workload for WORKLOAD, then crashes the server. Returns every
/// transaction the clients learned the xid of, and the last head the sealer
/// saved.
fn workload_until_crash(cluster: &ScratchCluster) -> (Vec<Tx>, String) {
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
    let mut txs = Vec::new();
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
    (txs, head_before.expect("a head was saved before the crash"))
}

// ---------------------------------------------------------------- checks

/// Every entry of `t` in the log (not protect()'s catalog entry), by xid,
/// in (xid, id) order.
/// A chunk entry (a multi-row statement's images) counts as one image per
/// row it holds.
fn entries_by_xid(c: &mut Client) -> BTreeMap<(u64, i64, i32), (String, Entry)> {
    c.query(
        "SELECT l.xid::text, l.id, l.operation, (i.pk ->> 'k')::int, i.new_row ->> 'v',
                CASE WHEN i.item = 0 THEN (l.detail ->> 'rows')::bigint END,
                l.content_change IS NOT NULL, l.detail::text, i.item
         FROM aegis.audit_log l
         CROSS JOIN LATERAL (
             SELECT 0 AS item, l.pk, l.new_row
             WHERE NOT aegis.is_chunk(l.detail, l.old_row, l.new_row)
             UNION ALL
             SELECT n, l.pk -> (n - 1), l.new_row -> (n - 1)
             FROM generate_series(1, CASE WHEN aegis.is_chunk(l.detail, l.old_row, l.new_row)
                                          THEN (l.detail ->> 'rows')::int ELSE 0 END) n) i
         WHERE l.table_name = 'public.t'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let xid: String = r.get(0);
        let id: i64 = r.get(1);
        let op: String = r.get(2);
        let entry = match (r.get(3), r.get::<_, Option<i64>>(5), r.get::<_, bool>(6)) {
            (Some(k), None, false) => Entry::Row(op, k, r.get(4)),
            (None, Some(n), true) => Entry::Statement(op, n),
            (k, _, digest) => panic!(
                "entry {id} ({op}) is neither a row image nor a statement entry: \
                 key {k:?}, detail {:?}, content change {digest}",
                r.get::<_, Option<String>>(7)
            ),
        };
        (
            (xid.parse::<u64>().unwrap(), id, r.get::<_, i32>(8)),
            (xid, entry),
        )
    })
    .collect()
}

/// (ok, rows_checked, mismatches, problem) of aegis.verify_table('t').
fn verify_table(c: &mut impl GenericClient) -> (bool, i64, i64, Option<String>) {
    let r = c
        .query_one(
            "SELECT ok, rows_checked, mismatches, problem FROM aegis.verify_table('t')",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The table verifies with all its rows checked; and a row changed behind
/// the trail (triggers silenced, then rolled back) is reported, so the
/// check can fail here.
fn assert_table_verifies(c: &mut Client, mode: Mode, when: &str) {
    let rows: i64 = c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    let (ok, checked, mismatches, problem) = verify_table(c);
    assert!(
        ok && checked == rows,
        "{mode:?} mode, verify_table {when}: {checked} of {rows} rows checked, \
         {mismatches} mismatches, {problem:?}"
    );
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL session_replication_role = replica;
         UPDATE t SET v = 'behind the trail' WHERE k = (SELECT min(k) FROM t);",
    )
    .unwrap();
    let (ok, _, mismatches, _) = verify_table(&mut tx);
    tx.rollback().unwrap();
    assert!(
        !ok && mismatches == 1,
        "{mode:?} mode, {when}: verify_table misses a row changed behind the trail"
    );
}

fn crash_test(mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let cluster = ScratchCluster::init(&format!("crash-{}", mode.name()), &["fsync = off"]);
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
         CREATE TABLE t (k int PRIMARY KEY, v text);",
    )
    .unwrap();
    c.execute(
        "SELECT aegis.protect('t', $1::text::jsonb)",
        &[&mode.policy()],
    )
    .unwrap();
    let mut txs = vec![seed(&mut c)];
    drop(c);

    // ---------------------------------------------------------------- workload, then the crash
    let (workload, head_before) = workload_until_crash(&cluster);
    txs.extend(workload);

    // ---------------------------------------------------------------- after crash recovery
    cluster.start();
    let mut c = cluster.connect(DB);
    let log = entries_by_xid(&mut c);
    let mut got: HashMap<&str, Vec<Entry>> = HashMap::new();
    for (xid, e) in log.values() {
        got.entry(xid.as_str()).or_default().push(e.clone());
    }
    let mut problems = Vec::new();
    let mut survivors: Vec<&Tx> = Vec::new();
    let mut uncertain_kept = 0;
    for t in &txs {
        let mut have = got.remove(t.xid.as_str()).unwrap_or_default();
        have.sort();
        let want = mode.expected(&t.statements);
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
        if t.outcome == Outcome::Committed || !have.is_empty() {
            survivors.push(t);
        }
    }
    assert!(
        problems.is_empty(),
        "{mode:?} mode: {} transactions with wrong entries after the crash, first ones:\n{}",
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
        "{mode:?} mode: entries of transactions nobody ran: {:?}",
        got.keys().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "{mode:?} mode: {} entries of t; {uncertain_kept} of {} uncertain commits survived",
        log.len(),
        txs.iter()
            .filter(|t| t.outcome == Outcome::Uncertain)
            .count()
    );

    // Applying what the transactions that left entries did (clients never
    // share a key, and each client's xids grow with its commits) gives the
    // table's rows: the table and its trail were recovered to the same
    // point.
    survivors.sort_by_key(|t| t.xid.parse::<u64>().unwrap());
    let mut replayed: BTreeMap<i32, String> = BTreeMap::new();
    for s in survivors.iter().flat_map(|t| &t.statements) {
        for (k, v) in &s.rows {
            match v {
                Some(v) => replayed.insert(*k, v.clone()),
                None => replayed.remove(k),
            };
        }
    }
    let table: BTreeMap<i32, String> = c
        .query("SELECT k, v FROM t", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        replayed.len(),
        table.len(),
        "{mode:?} mode, rows: surviving transactions vs table"
    );
    assert!(
        replayed == table,
        "{mode:?} mode: the surviving transactions' changes do not give the table's rows"
    );
    // In digest mode: a scan of the table equals the sum of the content
    // changes in the trail.
    assert_table_verifies(&mut c, mode, "after the crash");

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
    let entries: std::collections::BTreeSet<(u64, i64)> =
        log.keys().map(|&(x, id, _)| (x, id)).collect();
    assert_eq!(total as usize, entries.len() + 2);
    let (ok, checked, problem) = verify(&mut c, None);
    assert!(
        ok && checked == total,
        "{mode:?} mode, verify_chain after the crash: {checked} of {total}, {problem:?}"
    );
    let (ok, _, problem) = verify(&mut c, Some(&head_before));
    assert!(
        ok,
        "{mode:?} mode, the head saved before the crash: {problem:?}"
    );

    // ---------------------------------------------------------------- DML after the restart
    let last_position: i64 = c
        .query_one("SELECT max(position) FROM aegis.audit_chain", &[])
        .unwrap()
        .get(0);
    let mut tx = c.transaction().unwrap();
    let mut after = Done::default();
    for (op, v, sql) in [
        (
            "INSERT",
            Some("after"),
            "INSERT INTO t SELECT g, 'after' FROM generate_series(1, 10) g RETURNING k",
        ),
        (
            "UPDATE",
            Some("after-update"),
            "UPDATE t SET v = 'after-update' WHERE k BETWEEN 1 AND 4 RETURNING k",
        ),
        (
            "DELETE",
            None,
            "DELETE FROM t WHERE k IN (9, 10) RETURNING k",
        ),
    ] {
        dml(&mut tx, &mut after, op, v, sql, &[]).unwrap();
    }
    let after_xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    // Image mode: 10 inserts, 4 updates, 2 deletes; digest mode: the three
    // statements, and the images of the 4 updates and 2 deletes.
    let want_after = mode.expected(&after.statements);
    assert_eq!(
        want_after.len(),
        match mode {
            Mode::Image => 16,
            Mode::Digest => 9,
        }
    );
    let mut tx = c.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (11, 'rolled back')", &[])
        .unwrap();
    let rolled_back_xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    let total_after = seal_all(&mut c);
    // Entries, not rows: a chunk entry holds the images of many rows.
    let n_after = entries_by_xid(&mut c)
        .into_iter()
        .filter(|(_, (xid, _))| *xid == after_xid)
        .map(|((x, id, _), _)| (x, id))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as i64;
    assert_eq!(
        total_after,
        total + n_after,
        "{mode:?} mode: {want_after:?}"
    );
    let mut have_after: Vec<Entry> = entries_by_xid(&mut c)
        .into_values()
        .filter(|(xid, _)| *xid == after_xid)
        .map(|(_, e)| e)
        .collect();
    have_after.sort();
    assert_eq!(
        have_after, want_after,
        "{mode:?} mode: entries after the restart"
    );
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
        (n_after, last_position + 1, last_position + n_after),
        "{mode:?} mode: sealed after the old chain"
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
        "{mode:?} mode: entries of the transaction rolled back after the restart"
    );
    assert_table_verifies(&mut c, mode, "after more DML");
    let (ok, checked, problem) = verify(&mut c, None);
    assert!(
        ok && checked == total_after,
        "{mode:?} mode, verify_chain after more DML: {problem:?}"
    );
    let (ok, _, problem) = verify(&mut c, Some(&head_before));
    assert!(
        ok,
        "{mode:?} mode, the pre-crash head after more DML: {problem:?}"
    );
    let head_after: String = chain_head(&mut c);
    let (ok, checked, problem) = verify(&mut c, Some(&head_after));
    assert!(
        ok && checked == total_after,
        "{mode:?} mode, the new head: {problem:?}"
    );
    drop(c);
    cluster.stop("fast");
    eprintln!(
        "{mode:?} mode: crash test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
