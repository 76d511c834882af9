# Shared by the bench scripts: build, start the release binary on a
# temporary data directory with an admin, log in, measure with wrk, clean up.
# shellcheck shell=bash

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$BENCH_ROOT/target/release/hs-platform}"
BENCH_PORT="${BENCH_PORT:-18080}"
BASE="http://127.0.0.1:$BENCH_PORT"
ADMIN_EMAIL_BENCH="bench-admin@example.com"
ADMIN_PASSWORD_BENCH="bench admin password"
SERVER_PID=""
DATA=""

ensure_wrk() {
  if command -v wrk >/dev/null; then return; fi
  echo "installing wrk" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null; }; then
    echo "apt-get could not install wrk; these scripts need wrk" >&2
    exit 1
  fi
}

build_release() {
  echo "building the release binary" >&2
  (cd "$BENCH_ROOT" && SQLX_OFFLINE=true cargo build --release --bin hs-platform >&2)
}

start_server() {
  DATA="$(mktemp -d)"
  (
    export DATA_DIR="$DATA" HOST=127.0.0.1 PORT="$BENCH_PORT" \
      ADMIN_EMAIL="$ADMIN_EMAIL_BENCH" ADMIN_PASSWORD="$ADMIN_PASSWORD_BENCH" \
      RATE_LIMIT_PER_MINUTE=0 AI_RATE_LIMIT_PER_MINUTE=0 LOG_FORMAT=json RUST_LOG=info \
      BACKUP_INTERVAL_HOURS=0 SQLITE_SYNCHRONOUS="${SQLITE_SYNCHRONOUS:-FULL}" \
      LOADTEST_MAX_CONCURRENCY=1000
    exec "$BIN" serve >"$DATA/server.log" 2>&1
  ) &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "$BASE/health" >/dev/null 2>&1; then return; fi
    sleep 0.1
  done
  echo "the server did not start:" >&2
  cat "$DATA/server.log" >&2
  exit 1
}

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  [ -n "$DATA" ] && rm -rf "$DATA"
  SERVER_PID=""
}

# Prints "token userId" of the bench admin.
login() {
  curl -fsS -X POST "$BASE/api/sessions" -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL_BENCH\",\"password\":\"$ADMIN_PASSWORD_BENCH\"}" |
    python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["token"], b["user"]["id"])'
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status"; }

# wrk_json CONNECTIONS PATH [extra wrk args...] -> the WRK_JSON line's JSON
wrk_json() {
  local conns="$1" path="$2"; shift 2
  local threads=$(( conns < 2 ? 1 : 2 ))
  wrk -t"$threads" -c"$conns" -d"${DURATION:-10s}" --latency -s "$BENCH_ROOT/bench/wrk-report.lua" \
    "$@" "$BASE$path" | sed -n 's/^WRK_JSON //p'
}
