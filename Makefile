# finledger — quick start: `make run`, then `make test`.
.PHONY: run build test deps bench sqlx-prepare check

export SQLX_OFFLINE := true

deps:
	@scripts/install-system-deps.sh

build: deps
	cargo build --release --bin finledger

# Starts the service on its embedded defaults: a local PostgreSQL under ./var/pg (created on the first
# run, reused after), health on http://127.0.0.1:9464/healthz. Ctrl-C stops it cleanly.
run: build
	./target/release/finledger serve

# Everything the tests need, then the whole suite (unit, property and integration tests).
test: deps
	cargo test --workspace --all-targets

check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Durable transfers/s: spread vs hot account vs one-transaction-per-transfer baseline (see benches/RESULTS.md).
bench: deps
	cargo bench --bench ledger_throughput

# Regenerate the offline query data after changing a query or a migration.
sqlx-prepare: deps
	SQLX_OFFLINE=false scripts/sqlx-prepare.sh
