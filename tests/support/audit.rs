//! Audit-trail helpers shared by the integration tests.

use postgres::Client;
use std::time::Duration;

/// (entries, entries not yet in aegis.audit_chain).
pub fn sealing_state(c: &mut Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS
                    (SELECT 1 FROM aegis.audit_chain c WHERE c.entry_id = l.id))
             FROM aegis.audit_log l",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// seal() until every entry is in the chain (sealing waits for the oldest
/// transaction of the whole cluster, so a neighbour test can hold it back
/// for a moment); returns the number of entries. Panics after `rounds`.
pub fn seal_all(c: &mut Client, rounds: u32) -> i64 {
    for _ in 0..rounds {
        c.query_one("SELECT aegis.seal()", &[]).unwrap();
        let (total, unsealed) = sealing_state(c);
        if unsealed == 0 {
            return total;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("entries still unsealed after {rounds} rounds of seal()");
}

/// (ok, entries_checked, problem) of verify_chain(), or of
/// verify_chain(head) when a saved head is given.
pub fn verify(c: &mut Client, head: Option<&str>) -> (bool, i64, Option<String>) {
    let r = match head {
        None => c.query_one(
            "SELECT ok, entries_checked, problem FROM aegis.verify_chain()",
            &[],
        ),
        Some(h) => c.query_one(
            "SELECT ok, entries_checked, problem FROM aegis.verify_chain($1::text::jsonb)",
            &[&h],
        ),
    }
    .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// The signed chain head, as text.
pub fn chain_head(c: &mut Client) -> String {
    c.query_one("SELECT aegis.chain_head()::text", &[])
        .unwrap()
        .get(0)
}
