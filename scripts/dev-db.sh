#!/usr/bin/env bash
# Builds target/dev.db from migrations/ so that the compile-checked queries
# (sqlx::query!) can be checked against the schema during development:
#   scripts/dev-db.sh && export DATABASE_URL=sqlite://$PWD/target/dev.db
# Then `cargo sqlx prepare -- --all-targets` refreshes .sqlx/ for offline builds.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
rm -f target/dev.db target/dev.db-wal target/dev.db-shm
for f in migrations/*.sql; do
  sqlite3 target/dev.db < "$f"
done
echo "target/dev.db rebuilt from $(ls migrations/*.sql | wc -l) migrations"
