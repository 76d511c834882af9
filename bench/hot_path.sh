#!/usr/bin/env bash
# Hot-path benchmark (issue 2 and the request-log cost of issue 5):
# authenticated GET /api/users/{id} and GET /health at 100 connections with
# wrk, with the request log on and off, plus idle, after-login and peak RSS.
# Runs at the defaults a deployment uses (RUST_LOG=info, LOG_FORMAT=json, as
# render.yaml and the Dockerfile set them).
#   bench/hot_path.sh            # uses target/release/hs-platform (builds it)
#   DURATION=30s bench/hot_path.sh
#   BIN=/path/to/hs-platform bench/hot_path.sh   # that binary, no build
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
PORT="${PORT:-18090}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN="$PWD/target/release/hs-platform"
fi
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
echo "| request log | endpoint | req/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for LOG in true false; do
  dir="$(mktemp -d)"
  env -u DATABASE_URL DATA_DIR="$dir" PORT="$PORT" REQUEST_LOG="$LOG" RATE_LIMIT_PER_MINUTE=0 RUST_LOG=info LOG_FORMAT=json "$BIN" >"$dir/log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "localhost:$PORT/health" >/dev/null && break; sleep 0.1; done
  sleep 1
  idle=$(rss $pid)
  uid=$(curl -s -XPOST "localhost:$PORT/api/users" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  token=$(curl -s -XPOST "localhost:$PORT/api/sessions" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
  sleep 1
  login=$(rss $pid)
  # The peak below is the load's: forget the one of the sign-up and login
  # (argon2id allocates 19 MiB per hash, then returns it).
  echo 5 > "/proc/$pid/clear_refs"
  run() {
    local name="$1"; shift
    local out; out="$(wrk -t2 -c100 -d"$DURATION" --latency "$@")"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/{printf "%.0f", $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    echo "| $LOG | $name | $rps | $p50 | $p99 |"
  }
  run "GET /api/users/{id} (authenticated)" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/users/$uid"
  run "GET /health" "http://127.0.0.1:$PORT/health"
  echo "RSS (request log $LOG): idle $((idle / 1024)) MiB, after sign-up and login $((login / 1024)) MiB, peak under the load $(( $(hwm $pid) / 1024 )) MiB" >&2
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$dir"
done
