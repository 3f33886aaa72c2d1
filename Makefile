# pg_aegis — the entry point. Every target calls a script in scripts/.
.PHONY: help setup build install demo demo-stop demo-reset test test-core bench fuzz fuzz-sql lint clean

help:
	@echo "make demo       set up, build, install, start a local cluster with pg_aegis and run the walkthrough"
	@echo "make demo-stop  stop the demo cluster"
	@echo "make demo-reset stop the demo cluster and delete its data (the next make demo starts fresh)"
	@echo "make test       run every test layer (core, pgrx, pg_regress, integration); prints 'N passed, N failed'"
	@echo "make test-core  only the pure-Rust aegis-core tests (no PostgreSQL needed)"
	@echo "make bench      side-by-side benchmarks against the baselines (pgcrypto, table owner)"
	@echo "make fuzz       fuzz the envelope parser and the PII scanner for FUZZ_SECONDS each (default 60)"
	@echo "make fuzz-sql   sqlsmith random SQL (FUZZ_SQL_QUERIES, default 20000) as superuser and aegis logins; fails on a backend crash"
	@echo "make setup      install the toolchain (apt packages, cargo-pgrx 0.18.1, pgrx init); idempotent"
	@echo "make install    build in release mode and install into the system PostgreSQL 15"
	@echo "make lint       cargo fmt --check and clippy"
	@echo "make clean      stop local clusters and remove build output and cluster data"

setup:
	bash scripts/setup.sh

build: setup
	cargo build --release

install: setup
	bash -c 'source scripts/lib.sh && install_extension'

demo:
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo-stop.sh

demo-reset:
	bash scripts/demo-stop.sh --reset

test:
	bash scripts/test.sh

test-core:
	cargo test -p aegis-core

bench:
	bash scripts/bench.sh

fuzz:
	bash scripts/fuzz.sh

fuzz-sql: install
	bash scripts/fuzz-sql.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	-bash scripts/demo-stop.sh
	rm -rf .demo .test .bench .fuzz-sql target
