#!/usr/bin/env bash
# Latency of the analytics summary (uncached) over 1,000,000 request-log rows
# (and their hourly roll-ups), and of every monitoring endpoint, release build.
#   bench/analytics_latency.sh [ROWS]
source "$(dirname "$0")/common.sh"
ROWS="${1:-1000000}"
RUNS=30
build
dir="$(mktemp -d)"
# Create the schema and the admin, then fill the tables with SQL while the
# service is stopped.
start_server "$dir"
stop_server
echo "generating $ROWS request_log rows ..."
start=$(date +%s.%N)
sed "s/__ROWS__/$ROWS/" "$ROOT/bench/gen_request_log.sql" | sqlite3 "$dir/hs-platform.db"
echo "generated in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s:" \
  "$(sqlite3 "$dir/hs-platform.db" 'SELECT count(*) FROM request_log') raw rows," \
  "$(sqlite3 "$dir/hs-platform.db" 'SELECT count(*) FROM request_rollups') roll-up rows," \
  "$(du -h "$dir/hs-platform.db" | cut -f1) database"
start_server "$dir"
token="$(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")"
nc=(-H 'cache-control: no-cache')
echo "== GET /api/analytics/summary (uncached: Cache-Control: no-cache), $RUNS runs each"
echo "last 7 days:   $(latency_ms "$BASE/api/analytics/summary?from=$(date -u -d '-7 days' +%F)" "$token" $RUNS "${nc[@]}")"
echo "last 30 days:  $(latency_ms "$BASE/api/analytics/summary" "$token" $RUNS "${nc[@]}")"
echo "cached:        $(latency_ms "$BASE/api/analytics/summary" "$token" $RUNS)"
echo "== monitoring endpoints, $RUNS runs each"
for path in \
  "/api/monitoring/logs" \
  "/api/monitoring/logs?route=%2Fapi%2Fusers%2F%7BuserId%7D&statusClass=5xx" \
  "/api/monitoring/logs?userId=bench-user-7" \
  "/api/monitoring/errors" \
  "/api/monitoring/performance?window=5m" \
  "/api/monitoring/performance?window=7d" \
  "/api/monitoring/system" \
  "/api/monitoring/health-detailed" \
  "/api/monitoring/alerts" \
  "/metrics"; do
  printf '%-75s %s\n' "$path" "$(latency_ms "$BASE$path" "$token" $RUNS "${nc[@]}")"
done
stop_server
rm -rf "$dir"
