#!/usr/bin/env bash
# Regenerates .sqlx (the offline query data that lets a fresh clone build without a database):
# starts a throw-away PostgreSQL, applies migrations/, and rebuilds with the macros online.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d /tmp/finledger-sqlx.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale C --no-instructions >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories=$dir" start >/dev/null
for migration in migrations/*.sql; do
  psql -h "$dir" -U postgres -d postgres -v ON_ERROR_STOP=1 -q -f "$migration"
done

rm -rf .sqlx && mkdir .sqlx
touch src/lib.rs
DATABASE_URL="postgres://postgres@localhost/postgres?host=$dir" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" \
  cargo check --workspace --all-targets --quiet
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx"
