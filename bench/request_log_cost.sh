#!/usr/bin/env bash
# Throughput and p99 of an authenticated read (GET /api/users/{id}) at 100
# connections with the request log on and off (REQUEST_LOG), release build.
#   bench/request_log_cost.sh [DURATION_SECONDS]
source "$(dirname "$0")/common.sh"
DURATION="${1:-20}"
build
for mode in on off; do
  dir="$(mktemp -d)"
  start_server "$dir" REQUEST_LOG="$mode" SQLITE_SYNCHRONOUS=NORMAL
  id="$(sign_up "reader@example.com" "reader password 123")"
  token="$(login "reader@example.com" "reader password 123")"
  # warm up
  wrk -t2 -c100 -d3s -H "authorization: Bearer $token" "$BASE/api/users/$id" > /dev/null
  echo "== REQUEST_LOG=$mode: wrk -t2 -c100 -d${DURATION}s --latency GET /api/users/{id}"
  wrk -t2 -c100 -d"${DURATION}s" --latency -H "authorization: Bearer $token" "$BASE/api/users/$id" \
    | grep -E 'Requests/sec|Latency |99%|requests in|Non-2xx'
  sleep 2
  if [ "$mode" = on ]; then
    rows="$(sqlite3 "$dir/hs-platform.db" 'SELECT count(*) FROM request_log')"
    echo "request_log rows written: $rows"
    curl -s -H "authorization: Bearer $(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")" "$BASE/api/monitoring/system" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print("dropped:", d["requestLogDropped"], "written:", d["requestLogWritten"])'
  fi
  stop_server
  rm -rf "$dir"
done
