//! Compiles the C hook trampolines (src/read_audit_hooks.c) and what the retention
//! worker needs (src/worker_support.c) against the server headers of the
//! PostgreSQL that pgrx builds for.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/read_audit_hooks.c");
    println!("cargo:rerun-if-changed=src/worker_support.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    // The pg_config of the major version being built: pgrx's choice, an
    // explicit PG_CONFIG, Debian's per-version path, or the one on PATH.
    let major = (13..=18).find(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok());
    let per_version = major
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/pg_config"))
        .filter(|p| std::path::Path::new(p).exists());
    let pg_config = std::env::var("PGRX_PG_CONFIG_PATH")
        .or_else(|_| std::env::var("PG_CONFIG"))
        .ok()
        .or(per_version)
        .unwrap_or_else(|| "pg_config".into());
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
        .include(&include)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("aegis_read_audit_hooks");
}
