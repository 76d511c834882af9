#!/usr/bin/env bash
# The service benchmark: builds the release binary, starts it on a temporary
# data directory (with an admin from ADMIN_EMAIL/ADMIN_PASSWORD), and
# measures with wrk (installed when missing) at 10 and 100 connections:
#   - GET /health
#   - GET /api/users/{id}      authenticated profile reads
#   - POST /api/files/generate/csv  job submissions (tiny CSV; skipped when
#                              the route is absent)
# plus idle and peak RSS, and (unless SKIP_QUEUE=1) the queue benchmark.
# Prints a markdown table.
#   bench/run.sh                 # DURATION=10s by default
#   DURATION=30s bench/run.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_wrk
build_release
trap stop_server EXIT
start_server
sleep 2
idle_kib="$(rss_kib)"
read -r TOKEN USER_ID < <(login)
AUTH=(-H "Authorization: Bearer $TOKEN")

CSV_BODY='{"columns":[{"key":"a","title":"A"}],"rows":[{"a":1}],"fileName":"bench.csv"}'
csv_status="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/files/generate/csv" \
  "${AUTH[@]}" -H 'content-type: application/json' -d "$CSV_BODY")"

rows=()
measure() {
  local name="$1" conns="$2" path="$3"; shift 3
  local j
  j="$(wrk_json "$conns" "$path" "$@")"
  rows+=("$(python3 - "$name" "$conns" "$j" <<'PY'
import json, sys
name, conns, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
errors = j["errors"] + j["non2xx"]
print(f"| {name} | {conns} | {j['rps']:,.0f} | {j['p50']:.2f} | {j['p99']:.2f} | {errors} of {j['requests']:,} |")
PY
)")
}

for c in 10 100; do
  measure "GET /health" "$c" /health
  measure "GET /api/users/{id} (authenticated)" "$c" "/api/users/$USER_ID" "${AUTH[@]}"
  if [ "$csv_status" = "202" ] || [ "$csv_status" = "200" ]; then
    WRK_BODY="$CSV_BODY" measure "POST /api/files/generate/csv (job)" "$c" /api/files/generate/csv "${AUTH[@]}"
  fi
done
peak_kib="$(peak_kib)"
stop_server

echo
echo "hs-platform benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), wrk ${DURATION:-10s} per row"
echo
echo "| Endpoint | Connections | Requests/s | p50 ms | p99 ms | Errors |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "$csv_status" != "202" ] && [ "$csv_status" != "200" ]; then
  echo "| POST /api/files/generate/csv (job) | - | skipped: the route answered $csv_status | | | |"
fi
echo
echo "Memory: idle RSS $((idle_kib / 1024)) MiB, peak RSS $((peak_kib / 1024)) MiB."

if [ "${SKIP_QUEUE:-0}" != "1" ]; then
  echo
  echo "Queue benchmark (cargo bench --bench queue):"
  (cd "$BENCH_ROOT" && SQLX_OFFLINE=true cargo bench --bench queue 2>/dev/null)
fi
