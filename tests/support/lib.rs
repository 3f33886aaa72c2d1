//! Helpers for the client-side integration tests. `make test` starts a
//! throwaway cluster with pg_aegis installed and preloaded and passes its
//! location in the environment:
//!   AEGIS_TEST_SOCKET_DIR  unix socket directory (superuser `postgres`, trust)
//!   AEGIS_TEST_PORT        port; TCP on 127.0.0.1 needs a SCRAM password
//!   AEGIS_TEST_DATA_DIR    data directory (for restart tests)
//!   AEGIS_TEST_PG_BIN      PostgreSQL's bin directory (pg_ctl)
//!   AEGIS_TEST_PORT_NOPRELOAD  a second cluster, same socket directory
//!                          layout under AEGIS_TEST_NOPRELOAD_SOCKET_DIR,
//!                          without pg_aegis in shared_preload_libraries
//! Run outside `make test`, the tests fail with a message saying so: a test
//! that silently skips could never catch anything.

use postgres::{Client, Config, NoTls};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod audit;
pub mod docs;
mod scratch;
pub mod zabbix;
pub use scratch::ScratchCluster;

pub const DB: &str = "aegis_it";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through `make test`, which starts the cluster")
    })
}

/// Which of the two test clusters to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// pg_aegis in shared_preload_libraries (the normal deployment).
    Preloaded,
    /// Library loaded on first use only.
    NotPreloaded,
}

impl Cluster {
    pub fn port(self) -> u16 {
        let var = match self {
            Cluster::Preloaded => "AEGIS_TEST_PORT",
            Cluster::NotPreloaded => "AEGIS_TEST_PORT_NOPRELOAD",
        };
        env(var)
            .parse()
            .unwrap_or_else(|_| panic!("{var} is a port number"))
    }

    pub fn socket_dir(self) -> String {
        env(match self {
            Cluster::Preloaded => "AEGIS_TEST_SOCKET_DIR",
            Cluster::NotPreloaded => "AEGIS_TEST_NOPRELOAD_SOCKET_DIR",
        })
    }
}

pub fn port() -> u16 {
    Cluster::Preloaded.port()
}

pub fn data_dir() -> String {
    env("AEGIS_TEST_DATA_DIR")
}

pub fn pg_bin() -> String {
    env("AEGIS_TEST_PG_BIN")
}

/// Whether the PostgreSQL under test has a server library (`pg_cron` exists
/// here only for Debian's PostgreSQL 15); when it does not, says on stderr
/// that `test` is skipped and why.
pub fn server_library_or_skip(library: &str, test: &str) -> bool {
    let pg_config = format!("{}/pg_config", pg_bin());
    let out = std::process::Command::new(&pg_config)
        .args(["--pkglibdir", "--version"])
        .output()
        .unwrap_or_else(|e| panic!("running {pg_config}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let libdir = lines.next().unwrap_or_default();
    let version = lines.next().unwrap_or_default();
    let present = std::path::Path::new(&format!("{libdir}/{library}.so")).exists();
    if !present {
        eprintln!("SKIPPED {test}: {library} is not installed for {version} ({libdir}); it is packaged here for Debian's PostgreSQL 15 only");
    }
    present
}

/// Superuser connection over the unix socket to database `db` (which must exist).
pub fn superuser_to(cluster: Cluster, db: &str) -> Client {
    Config::new()
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user("postgres")
        .dbname(db)
        .application_name("aegis-it")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("superuser connection to {db} failed: {e}"))
}

/// Superuser connection to the shared test database, creating it (with the
/// extensions) on first use. Tests in one binary run in parallel, so creation
/// tolerates a concurrent creator.
pub fn superuser() -> Client {
    superuser_on(Cluster::Preloaded)
}

/// As [`superuser`], on either cluster.
pub fn superuser_on(cluster: Cluster) -> Client {
    let mut admin = superuser_to(cluster, "postgres");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB])
        .expect("query pg_database")
        .is_some();
    if !exists {
        if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {DB}")) {
            if e.code() != Some(&postgres::error::SqlState::DUPLICATE_DATABASE)
                && e.code() != Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            {
                panic!("create database: {e}");
            }
        }
    }
    let mut c = superuser_to(cluster, DB);
    // Concurrent CREATE EXTENSION IF NOT EXISTS can still collide; retry once.
    for _ in 0..2 {
        if c.batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_aegis; CREATE EXTENSION IF NOT EXISTS pgcrypto;",
        )
        .is_ok()
        {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    c.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_aegis; CREATE EXTENSION IF NOT EXISTS pgcrypto;",
    )
    .expect("create extensions");
    c
}

/// A login role that exists only for one test, with a random password,
/// connecting over TCP with SCRAM: a real login, not SET ROLE.
pub struct LoginRole {
    pub name: String,
    password: String,
    cluster: Cluster,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl LoginRole {
    pub fn create(admin: &mut Client, label: &str) -> LoginRole {
        Self::create_on(Cluster::Preloaded, admin, label)
    }

    /// `admin` must be connected to `cluster`: roles are per cluster.
    pub fn create_on(cluster: Cluster, admin: &mut Client, label: &str) -> LoginRole {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("it_{label}_{}_{n}", std::process::id());
        let password = format!(
            "pw-{:x}-{n}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        // Role names are generated here (letters, digits, underscores), never user input.
        admin
            .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            .expect("create login role");
        LoginRole {
            name,
            password,
            cluster,
        }
    }

    /// Connection settings for this role over TCP, to adjust before connecting.
    pub fn config(&self) -> Config {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1")
            .port(self.cluster.port())
            .user(&self.name)
            .password(&self.password)
            .dbname(DB)
            .application_name("aegis-it");
        cfg
    }

    pub fn connect(&self) -> Result<Client, postgres::Error> {
        self.config().connect(NoTls)
    }

    pub fn drop_with(self, admin: &mut Client) {
        let _ = admin.batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name));
    }
}

/// The SQLSTATE of a failed statement, for assertions.
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}
