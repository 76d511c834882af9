#!/usr/bin/env bash
# Times one statement as the service's SQLite runs it (the version
# libsqlite3-sys bundles, not the Debian CLI's, whose planner differs):
# prints the query plan, then REPS runs, each rolled back.
#   bench/sqlite/time_query.sh DATABASE SQL_FILE [REPS]
# Bound parameters are not supported: write the values into the SQL.
set -euo pipefail
exec "$(dirname "$0")/run.sh" time_query "$@"
