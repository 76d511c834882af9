#!/usr/bin/env bash
# SQLite's own cost per request-log row (see insert_floor.c), compiled from
# the amalgamation that libsqlite3-sys bundles, with the options its build
# script uses, so the figure is the one the service's SQLite pays.
#   bench/sqlite/insert_floor.sh
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./compile.sh insert_floor.c "$work/insert_floor"
"$work/insert_floor" "$work/insert_floor.db"
