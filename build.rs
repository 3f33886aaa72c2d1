//! Compiles the C hook trampolines (src/read_audit_hooks.c) and what the
//! retention worker needs (src/worker_support.c) against the server headers
//! of the PostgreSQL major version being built (the `pgNN` feature), and
//! refuses to build against any other.
use std::process::Command;

/// The pg_config of `major`: pgrx's own choice when it runs the build
/// (`PGRX_PG_CONFIG_PATH`), an explicit `PG_CONFIG`, pgrx's configuration
/// (`cargo pgrx init`, `$PGRX_HOME/config.toml`), Debian's per-version
/// path. Whichever it is must report that major version.
fn pg_config_for(major: u32) -> String {
    let from_pgrx_config = || {
        let home = std::env::var("PGRX_HOME")
            .ok()
            .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pgrx")))?;
        let text = std::fs::read_to_string(format!("{home}/config.toml")).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == format!("pg{major}")).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let debian = format!("/usr/lib/postgresql/{major}/bin/pg_config");
    let candidates = [
        std::env::var("PGRX_PG_CONFIG_PATH").ok(),
        std::env::var("PG_CONFIG").ok(),
        from_pgrx_config(),
        std::path::Path::new(&debian).exists().then_some(debian),
    ];
    for c in candidates.into_iter().flatten() {
        if version_of(&c) == Some(major) {
            return c;
        }
    }
    panic!(
        "no pg_config of PostgreSQL {major} found (PGRX_PG_CONFIG_PATH, PG_CONFIG, \
         cargo pgrx init --pg{major} <pg_config>, /usr/lib/postgresql/{major}): \
         the C files must be compiled against the headers of the version being built"
    );
}

/// The major version a pg_config reports ("PostgreSQL 16.15" -> 16).
fn version_of(pg_config: &str) -> Option<u32> {
    let out = Command::new(pg_config).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn main() {
    println!("cargo:rerun-if-changed=src/read_audit_hooks.c");
    println!("cargo:rerun-if-changed=src/worker_support.c");
    println!("cargo:rerun-if-changed=src/masked_pseudonym.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    println!("cargo:rerun-if-env-changed=PGRX_HOME");
    let majors: Vec<u32> = (13..=18)
        .filter(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())
        .collect();
    let [major] = majors[..] else {
        panic!("build with exactly one of the features pg15, pg16, pg17, pg18 (found {majors:?})");
    };
    let pg_config = pg_config_for(major);
    let out = Command::new(&pg_config)
        .arg("--includedir-server")
        .output()
        .unwrap_or_else(|e| panic!("running {pg_config} --includedir-server: {e}"));
    assert!(
        out.status.success(),
        "{pg_config} --includedir-server failed"
    );
    let include = String::from_utf8_lossy(&out.stdout).trim().to_string();
    cc::Build::new()
        .file("src/read_audit_hooks.c")
        .file("src/worker_support.c")
        .file("src/masked_pseudonym.c")
        .include(&include)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("aegis_read_audit_hooks");
}
