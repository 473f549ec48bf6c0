# finledger — quick start: `make run`, then `make test`.
.PHONY: run build test deps test-deps bench sqlx-prepare check

export SQLX_OFFLINE := true

deps:
	@scripts/install-system-deps.sh

test-deps:
	@scripts/install-system-deps.sh --tests

build: deps
	cargo build --release --bin finledger

# Starts the service on its embedded defaults: a local PostgreSQL under ./var/pg (created on the first
# run, reused after), a dev PKI under ./var/pki, the mTLS API on https://localhost:8443 and health on
# http://127.0.0.1:9464/healthz. Ctrl-C stops it cleanly.
run: build
	@test -f var/pki/ca.crt || ./target/release/finledger certs init --out var/pki
	@echo
	@echo "Try it (the payments service's client certificate):"
	@echo "  curl --cacert var/pki/ca.crt --cert var/pki/payments.crt --key var/pki/payments.key -H 'content-type: application/json' -d '{\"id\":\"5b8c4f1e-0000-4000-8000-000000000001\",\"currency\":\"USD\",\"code\":1,\"flags\":{},\"metadata\":{}}' https://localhost:8443/v1/accounts"
	@echo
	./target/release/finledger serve

# Everything the tests need, then the whole suite (unit, property and integration tests).
test: test-deps
	cargo test --workspace --all-targets

check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Durable transfers/s: spread vs hot account vs one-transaction-per-transfer baseline vs audit off vs
# fraud screening on, the audit log's append and offline verify rates, authorization and fraud screening
# latency, the outbox relay's throughput and commit-to-broker latency, then the mTLS API load driver
# (see benches/RESULTS.md).
bench: test-deps
	cargo bench --bench ledger_throughput
	cargo bench --bench audit_log
	cargo bench --bench authz
	cargo bench --bench fraud
	cargo bench --bench relay
	cargo bench --bench api_load

# Regenerate the offline query data after changing a query or a migration.
sqlx-prepare: deps
	SQLX_OFFLINE=false scripts/sqlx-prepare.sh
