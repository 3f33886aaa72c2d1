//! The SQL blocks of a guide in `docs/` (or the README), as its tests run
//! them: every ```` ```sql ```` block starts with `-- as <role>` (`dba`: a
//! superuser), optionally `-- as <role>; expect <SQLSTATE>` for a block
//! that must fail with that error.

/// One SQL block of a guide: who runs it, the SQLSTATE it must fail with
/// (if any), and its text.
pub struct Block {
    pub who: String,
    pub expect: Option<String>,
    pub sql: String,
}

/// The SQL blocks of `guide`, in order. Panics on a block that does not
/// say who runs it: every SQL example of the docs is run.
pub fn blocks(guide: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sql" {
            continue;
        }
        let mut sql = String::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            sql.push_str(l);
            sql.push('\n');
        }
        let first = sql.lines().next().unwrap_or_default();
        let spec = first.strip_prefix("-- as ").unwrap_or_else(|| {
            panic!("every SQL block of the docs must start with `-- as <role>`, not {first:?}")
        });
        let mut who = spec.trim().to_string();
        let mut expect = None;
        if let Some((w, rest)) = spec.split_once(';') {
            who = w.trim().to_string();
            expect = Some(
                rest.trim()
                    .strip_prefix("expect ")
                    .unwrap_or_else(|| panic!("unknown block annotation {rest:?}"))
                    .to_string(),
            );
        }
        out.push(Block { who, expect, sql });
    }
    out
}

/// A real login of `who` (`dba`: the superuser) to `db` on the preloaded
/// cluster over the unix socket, with parallel query forced, as a guide's
/// block runs.
pub fn connect_as(db: &str, who: &str) -> postgres::Client {
    let cluster = crate::Cluster::Preloaded;
    let user = if who == "dba" { "postgres" } else { who };
    postgres::Config::new()
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user(user)
        .dbname(db)
        .application_name("aegis-it-docs")
        .options(
            "-c max_parallel_workers_per_gather=2 -c parallel_setup_cost=0 -c parallel_tuple_cost=0 \
             -c min_parallel_table_scan_size=0 -c min_parallel_index_scan_size=0",
        )
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("{who} cannot connect to {db}: {e}"))
}
