#!/usr/bin/env bash
# Compiles bench/sqlite/PROGRAM.c against the SQLite that libsqlite3-sys
# bundles (compile.sh) into a temporary directory and runs it with the
# remaining arguments; the wrappers beside it (time_query.sh, reprepare.sh,
# insert_floor.sh) say what each program measures.
#   bench/sqlite/run.sh PROGRAM [ARG ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
program="$1"
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/compile.sh" "$here/$program.c" "$work/$program"
"$work/$program" "$@"
