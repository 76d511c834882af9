#!/usr/bin/env bash
# Compiles a C program against the SQLite amalgamation that libsqlite3-sys
# bundles, with the options its build script uses, so what it measures is
# what the service's SQLite does (the Debian `sqlite3` CLI is an older
# version whose planner differs: see jobs::db::claim).
#   bench/sqlite/compile.sh PROGRAM.c OUTPUT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo fetch --quiet --manifest-path "$here/../../Cargo.toml"
version=$(awk '/^name = "libsqlite3-sys"/{getline; gsub(/[" ]/, "", $0); sub("version=", ""); print}' "$here/../../Cargo.lock")
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d | while read -r d; do
  [ -d "$d/libsqlite3-sys-$version" ] && echo "$d/libsqlite3-sys-$version/sqlite3" && break; done)
[ -n "$src" ] || { echo "libsqlite3-sys $version not found in the cargo registry" >&2; exit 1; }
flags=(-DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR
  -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_FTS3
  -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1
  -DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_MEMORY_MANAGEMENT -DSQLITE_ENABLE_RTREE
  -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI
  -DHAVE_USLEEP=1 -DHAVE_ISNAN -DSQLITE_ENABLE_UNLOCK_NOTIFY -DSQLITE_TEMP_STORE=2)
echo "compiling $1 with SQLite from $src" >&2
cc -O2 "${flags[@]}" -I"$src" -o "$2" "$1" "$src/sqlite3.c" -lpthread -lm -ldl
