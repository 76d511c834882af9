#!/usr/bin/env bash
# SQLite's own cost per request-log row (see insert_floor.c), compiled from
# the amalgamation that libsqlite3-sys bundles, with the options its build
# script uses, so the figure is the one the service's SQLite pays.
#   bench/sqlite/insert_floor.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$(dirname "$0")/run.sh" insert_floor "$dir/insert_floor.db"
