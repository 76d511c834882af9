#!/usr/bin/env bash
# SQLite's own cost per request-log row (see insert_floor.c), compiled from
# the amalgamation that libsqlite3-sys bundles, with the options its build
# script uses, so the figure is the one the service's SQLite pays.
#   bench/sqlite/insert_floor.sh
set -euo pipefail
cd "$(dirname "$0")"
cargo fetch --quiet --manifest-path ../../Cargo.toml
version=$(awk '/^name = "libsqlite3-sys"/{getline; gsub(/[" ]/, "", $0); sub("version=", ""); print}' ../../Cargo.lock)
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d | while read -r d; do
  [ -d "$d/libsqlite3-sys-$version" ] && echo "$d/libsqlite3-sys-$version/sqlite3" && break; done)
[ -n "$src" ] || { echo "libsqlite3-sys $version not found in the cargo registry" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR
  -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_FTS3
  -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1
  -DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_MEMORY_MANAGEMENT -DSQLITE_ENABLE_RTREE
  -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI
  -DHAVE_USLEEP=1 -DHAVE_ISNAN -DSQLITE_ENABLE_UNLOCK_NOTIFY -DSQLITE_TEMP_STORE=2)
echo "compiling SQLite from $src" >&2
cc -O2 "${flags[@]}" -I"$src" -o "$work/insert_floor" insert_floor.c "$src/sqlite3.c" -lpthread -lm -ldl
"$work/insert_floor" "$work/insert_floor.db"
