//! Audit-trail helpers shared by the integration tests.

use postgres::Client;
use std::time::{Duration, Instant};

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

/// seal() until every entry is in the chain; returns the number of entries.
///
/// Sealing takes only entries of transactions below the snapshot's xmin, and
/// that xmin is cluster-wide: any open transaction of a neighbour test (in
/// any database) holds it back for as long as it stays open. So this waits
/// for the condition itself, for up to `AEGIS_TEST_SEAL_WAIT_SECS` (default
/// 120 s), not for a number of rounds; on timeout it names what held the
/// horizon back.
pub fn seal_all(c: &mut Client) -> i64 {
    let limit = std::env::var("AEGIS_TEST_SEAL_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut pause = Duration::from_millis(20);
    loop {
        c.query_one("SELECT aegis.seal()", &[]).unwrap();
        let (total, unsealed) = sealing_state(c);
        if unsealed == 0 {
            return total;
        }
        if Instant::now() >= deadline {
            let holders: Vec<String> = c
                .query(
                    "SELECT format('pid %s db %s xid %s xmin %s state %s: %s',
                                   pid, datname, backend_xid, backend_xmin, state, left(query, 120))
                     FROM pg_stat_activity
                     WHERE (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
                       AND pid <> pg_backend_pid()",
                    &[],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default();
            panic!(
                "{unsealed} of {total} entries still unsealed after {limit} s of seal(); \
                 transactions holding the horizon back: {holders:#?}"
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
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
