# Shared helpers of the benchmark scripts: start the release binary on a
# fresh data directory, create an admin and a user, stop it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BIN=/path/to/hs-platform: measure that binary as it is (no build).
BIN_GIVEN="${BIN:-}"
BIN="${BIN:-$ROOT/target/release/hs-platform}"
PORT="${PORT:-18080}"
BASE="http://127.0.0.1:$PORT"
ADMIN_EMAIL="bench-admin@example.com"
ADMIN_PASSWORD="bench admin password"

build() {
  [ -n "$BIN_GIVEN" ] && return 0
  if [ -z "${DATABASE_URL:-}" ]; then
    (cd "$ROOT" && scripts/dev-db.sh > /dev/null)
    export DATABASE_URL="sqlite://$ROOT/target/dev.db"
  fi
  (cd "$ROOT" && cargo build --release --quiet)
}

# start_server DATA_DIR [VAR=value ...]
start_server() {
  local dir="$1"; shift
  env -u DATABASE_URL DATA_DIR="$dir" HOST=127.0.0.1 PORT="$PORT" LOG_FORMAT=json RUST_LOG=info \
      RATE_LIMIT_PER_MINUTE=0 AI_RATE_LIMIT_PER_MINUTE=0 \
      ADMIN_EMAIL="$ADMIN_EMAIL" ADMIN_PASSWORD="$ADMIN_PASSWORD" \
      "$@" "$BIN" serve > "$dir/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "$BASE/health" > /dev/null && return 0
    sleep 0.1
  done
  echo "server did not start; see $dir/server.log" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# login EMAIL PASSWORD -> prints the token
login() {
  curl -sf -X POST "$BASE/api/sessions" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# sign_up EMAIL PASSWORD -> prints the user id
sign_up() {
  curl -sf -X POST "$BASE/api/users" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# latency_ms URL TOKEN RUNS [extra curl args] -> "median p95 max" in ms
latency_ms() {
  local url="$1" token="$2" runs="$3"; shift 3
  for _ in $(seq 1 "$runs"); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "authorization: Bearer $token" "$@" "$url"
  done | python3 -c '
import sys
v = sorted(float(x) * 1000 for x in sys.stdin)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"median {p(0.5):.1f} ms  p95 {p(0.95):.1f} ms  max {v[-1]:.1f} ms  ({len(v)} runs)")'
}
