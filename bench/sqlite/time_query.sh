#!/usr/bin/env bash
# Times one statement as the service's SQLite runs it (the version
# libsqlite3-sys bundles, not the Debian CLI's, whose planner differs):
# prints the query plan, then REPS runs, each rolled back.
#   bench/sqlite/time_query.sh DATABASE SQL_FILE [REPS]
# Bound parameters are not supported: write the values into the SQL.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/compile.sh" "$here/time_query.c" "$work/time_query"
"$work/time_query" "$@"
