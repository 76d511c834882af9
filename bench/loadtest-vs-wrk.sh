#!/usr/bin/env bash
# Checks the built-in load tester against wrk: the same route (/health), the
# same concurrency and duration; prints requests/s and p50 of both and the
# ratio. The built-in tester should reach at least 80% of wrk's requests/s.
#   bench/loadtest-vs-wrk.sh            # concurrency 10 and 50, 10 s each
#   CONNS="10 100" DURATION=20s bench/loadtest-vs-wrk.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_wrk
build_release
trap stop_server EXIT
start_server
read -r TOKEN _USER_ID < <(login)
secs="${DURATION:-10s}"; secs="${secs%s}"

builtin_json() {
  local conns="$1" id
  id="$(curl -fsS -X POST "$BASE/api/load-test/start" -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"scenario\":[{\"method\":\"GET\",\"path\":\"/health\"}],\"concurrency\":$conns,\"durationSeconds\":$secs}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  for _ in $(seq 1 $(( secs * 20 + 600 ))); do
    local body
    body="$(curl -fsS "$BASE/api/load-test/results/$id" -H "Authorization: Bearer $TOKEN")"
    if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["status"] not in ("queued","running") else 1)' "$body"; then
      echo "$body"
      return
    fi
    sleep 0.1
  done
  echo "the load test did not finish" >&2
  exit 1
}

echo "| Concurrency | wrk req/s | built-in req/s | ratio | wrk p50 ms | built-in p50 ms |"
echo "|---|---|---|---|---|---|"
for c in ${CONNS:-10 50}; do
  w="$(wrk_json "$c" /health)"
  sleep 1
  b="$(builtin_json "$c")"
  python3 - "$c" "$w" "$b" <<'PY'
import json, sys
c, w, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = b["achievedRps"] / w["rps"] if w["rps"] else 0
print(f"| {c} | {w['rps']:,.0f} | {b['achievedRps']:,.0f} | {ratio:.0%} | {w['p50']:.2f} | {b['latencyMs']['p50']:.2f} |")
PY
  sleep 1
done
