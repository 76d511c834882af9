#!/usr/bin/env bash
# Server time of the console's overview (issue 14: < 300 ms) over 1,000,000
# request-log rows (7 days) and 30 days of hourly roll-ups, release build.
# The overview asks for these at once (src/console/assets/js/views/
# overview.js): performance, timeseries, analytics summary, alerts, system.
# Each is measured uncached (Cache-Control: no-cache) with wrk on one
# connection, then all of them together, in parallel as the browser asks.
#   bench/overview.sh [ROWS]        BIN=path/to/hs-platform to skip the build
source "$(dirname "$0")/common.sh"
ROWS="${1:-1000000}"
DURATION="${DURATION:-10s}"
build
dir="$(mktemp -d)"
start_server "$dir"
stop_server
echo "generating $ROWS request_log rows and 30 days of roll-ups ..."
sed "s/__ROWS__/$ROWS/" "$ROOT/bench/gen_request_log.sql" | sqlite3 "$dir/hs-platform.db"
sqlite3 "$dir/hs-platform.db" < "$ROOT/bench/gen_rollups_30d.sql"
sqlite3 "$dir/hs-platform.db" "SELECT count(*) || ' raw rows, ' FROM request_log;
  SELECT count(*) || ' roll-up rows, ' || count(DISTINCT substr(hour, 1, 10)) || ' days, '
  FROM request_rollups; SELECT count(*) || ' bucket rows, ' FROM request_rollup_buckets;
  SELECT count(*) || ' daily bucket rows' FROM request_rollup_daily_buckets;" | tr -d '\n'
echo ", $(du -h "$dir/hs-platform.db" | cut -f1) database"
start_server "$dir"
token="$(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")"
nc=(-H 'cache-control: no-cache')

overview_paths() {
  local win="$1" secs="$2"
  local from to
  from="$(date -u -d "-$secs seconds" +%Y-%m-%dT%H:%M:%SZ)"
  to="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "/api/monitoring/performance?window=$win"
  echo "/api/monitoring/timeseries?window=$win"
  echo "/api/analytics/summary?from=$from&to=$to"
  echo "/api/monitoring/alerts"
  echo "/api/monitoring/system"
}

wrk_line() {
  wrk -t1 -c1 -d"$DURATION" --latency -s "$ROOT/bench/wrk-report.lua" \
    -H "authorization: Bearer $token" -H 'cache-control: no-cache' "$BASE$1" |
    sed -n 's/^WRK_JSON //p' | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("p50 %7.1f ms  p99 %7.1f ms  %5d requests  non-2xx %d" % (r["p50"], r["p99"], r["requests"], r["non2xx"]))'
}

for w in "1h 3600" "24h 86400" "7d 604800" "30d 2592000"; do
  set -- $w
  echo "== window $1: each call uncached, wrk -t1 -c1 -d$DURATION"
  while read -r path; do
    printf '  %-62s %s\n' "${path%%\?from=*}" "$(wrk_line "$path")"
  done < <(overview_paths "$1" "$2")
  echo "== window $1: the whole overview (all calls in parallel, uncached), 20 runs"
  for _ in $(seq 1 20); do
    start=$(date +%s%N)
    while read -r path; do
      curl -s -o /dev/null -H "authorization: Bearer $token" "${nc[@]}" "$BASE$path" &
    done < <(overview_paths "$1" "$2")
    wait
    echo $(( ($(date +%s%N) - start) / 1000 ))
  done | python3 -c '
import sys
v = sorted(int(x) / 1000 for x in sys.stdin)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"  overview: median {p(0.5):.1f} ms  p95 {p(0.95):.1f} ms  max {v[-1]:.1f} ms  ({len(v)} runs)")'
done
stop_server
rm -rf "$dir"
