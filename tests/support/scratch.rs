//! A cluster of one test's own, for tests that crash the server or change
//! its configuration, which the shared cluster's other users must not see.

use postgres::{Client, Config, NoTls};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// initdb'd in a fresh directory beside the shared test cluster, with
/// pg_aegis preloaded and a master key of its own. Unix socket only, so its
/// port cannot collide with anything. Dropping it stops the server; the
/// directory (with `server.log`) is kept when the test panicked.
pub struct ScratchCluster {
    dir: PathBuf,
    port: u16,
}

impl ScratchCluster {
    /// A new cluster in `<test state dir>/scratch-<name>` (an old one is
    /// stopped and replaced); `extra_conf` lines go to postgresql.conf.
    pub fn init(name: &str, extra_conf: &[&str]) -> ScratchCluster {
        let shared = PathBuf::from(crate::data_dir());
        let base = shared
            .parent()
            .and_then(|p| p.parent())
            .expect("AEGIS_TEST_DATA_DIR has two parent directories");
        let c = ScratchCluster {
            dir: base.join(format!("scratch-{name}")),
            port: crate::port() + 20,
        };
        if c.dir.join("data/postmaster.pid").exists() {
            let _ = c.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&c.dir);
        std::fs::create_dir_all(c.dir.join("run")).expect("create scratch cluster directory");

        // 64 hex digits, mode 600, owned by the server's user.
        let key = c.dir.join("master.key");
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
            .expect("read /dev/urandom");
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key, format!("{hex}\n")).expect("write master key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod master key");
        run(Command::new("chown").args(["-R", "postgres"]).arg(&c.dir));

        let data = c.dir.join("data");
        run(as_postgres(&format!("{}/initdb", crate::pg_bin()))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]));
        let mut conf = format!(
            "\n# scratch cluster\nport = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_aegis'\nmax_connections = 30\naegis.master_key_file = '{}'\n",
            c.port,
            c.dir.join("run").display(),
            key.display()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_file, text).expect("write postgresql.conf");
        c
    }

    /// A hot standby of this (running) cluster, made as a DBA would:
    /// `pg_basebackup -R` streaming from this cluster, in
    /// `<test state dir>/scratch-<name>`, on this cluster's port + `offset`.
    /// Not started.
    pub fn standby(&self, name: &str, offset: u16) -> ScratchCluster {
        let base = self
            .dir
            .parent()
            .expect("scratch clusters live in a directory");
        let s = ScratchCluster {
            dir: base.join(format!("scratch-{name}")),
            port: self.port + offset,
        };
        if s.dir.join("data/postmaster.pid").exists() {
            let _ = s.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&s.dir);
        std::fs::create_dir_all(s.dir.join("run")).expect("create standby directory");
        run(Command::new("chown").args(["-R", "postgres"]).arg(&s.dir));
        run(as_postgres(&format!("{}/pg_basebackup", crate::pg_bin()))
            .arg("-D")
            .arg(s.dir.join("data"))
            .arg("-h")
            .arg(self.dir.join("run"))
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]));
        let conf_file = s.dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).expect("read postgresql.conf");
        text.push_str(&format!(
            "\n# standby\nport = {}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            s.port,
            s.dir.join("run").display()
        ));
        std::fs::write(&conf_file, text).expect("write postgresql.conf");
        s
    }

    /// `pg_ctl promote`: a standby becomes a primary (waits until it is).
    pub fn promote(&self) {
        let ok = self.pg_ctl(&["-w", "promote"]).map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "pg_ctl promote failed");
    }

    fn pg_ctl(&self, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
        as_postgres(&format!("{}/pg_ctl", crate::pg_bin()))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-t", "60", "-l"])
            .arg(self.log_path())
            .args(args)
            .stdout(Stdio::null())
            .status()
    }

    pub fn start(&self) {
        let ok = self.pg_ctl(&["-w", "start"]).map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "scratch cluster did not start; see {}",
            self.log_path().display()
        );
    }

    /// `pg_ctl stop -m <mode>`: `fast`, or `immediate` for a crash (every
    /// server process quits at once, no shutdown checkpoint; the next start
    /// runs crash recovery).
    pub fn stop(&self, mode: &str) {
        let ok = self
            .pg_ctl(&["-m", mode, "-w", "stop"])
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "pg_ctl stop -m {mode} failed");
    }

    /// Superuser connection settings for `db` over the unix socket.
    pub fn config(&self, db: &str) -> Config {
        let mut cfg = Config::new();
        cfg.host_path(self.dir.join("run"))
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .application_name("aegis-it");
        cfg
    }

    /// Superuser connection to `db`; panics on failure.
    pub fn connect(&self, db: &str) -> Client {
        self.config(db)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connection to scratch cluster, database {db}: {e}"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The cluster's data directory (owned by the postgres OS user).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        if self.dir.join("data/postmaster.pid").exists() {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A command run as the `postgres` OS user (the server refuses root), from /.
fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", program]).current_dir("/");
    cmd
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
