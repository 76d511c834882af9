#!/usr/bin/env bash
# Counts how often SQLite re-prepares a statement that is bound again before
# every run, as sqlx does, and times its runs (see reprepare.c):
#   bench/sqlite/reprepare.sh DATABASE SQL_FILE REPS [VALUE ...]
# e.g. the queue's claim with `LIMIT ?2` was re-prepared at every run
# (0.41-0.57 ms a run); with `LIMIT CAST(?2 AS INTEGER)` never (0.08 ms).
set -euo pipefail
exec "$(dirname "$0")/run.sh" reprepare "$@"
