#!/usr/bin/env bash
# Warm screenshot of a simple local page through the real service (issue 12:
# the egress proxy may add at most 5 ms). Starts BIN at the defaults
# (RUST_LOG=info, LOG_FORMAT=json) with the page's host allowed, takes one
# screenshot to launch the browser, then RUNS more one after another and
# prints the median, p90 and spread of each job's run time (finishedAt -
# startedAt: the screenshot and storing its file, without queueing).
#   BIN=/work/bins/hs-platform-before bench/screenshot_warm.sh
#   BIN=target/release/hs-platform RUNS=40 bench/screenshot_warm.sh
# GAP=0.5 waits that many seconds between screenshots (a warm browser that is
# not kept busy back to back; default 0).
set -euo pipefail
source "$(dirname "$0")/common.sh"
RUNS="${RUNS:-30}"
GAP="${GAP:-0}"
SITE_PORT="${SITE_PORT:-18181}"
dir="$(mktemp -d)"
site="$(mktemp -d)"
printf '<!doctype html><html><body style="font:16px sans-serif"><h1>hello</h1><p>a simple page</p></body></html>' > "$site/index.html"
python3 -m http.server "$SITE_PORT" --bind 127.0.0.1 --directory "$site" > /dev/null 2>&1 &
site_pid=$!
trap 'stop_server; kill $site_pid 2>/dev/null || true; rm -rf "$dir" "$site"' EXIT
start_server "$dir" SCREENSHOT_ALLOWED_HOSTS=127.0.0.1 SCREENSHOT_IDLE_SECONDS=3600
token="$(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")"
shot() {
  curl -s -X POST "$BASE/api/files/generate/screenshot" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -H 'Prefer: wait=60' \
    -d "{\"url\":\"http://127.0.0.1:$SITE_PORT/index.html\"}"
}
shot > /dev/null # launches the browser
for _ in $(seq 1 "$RUNS"); do sleep "$GAP"; shot; echo; done | python3 -c '
import json, sys
from datetime import datetime
ms = []
for line in sys.stdin:
    if not line.strip():
        continue
    j = json.loads(line)
    assert j.get("status") == "succeeded", j
    t = lambda f: datetime.fromisoformat(j[f].replace("Z", "+00:00"))
    ms.append((t("finishedAt") - t("startedAt")).total_seconds() * 1000)
ms.sort()
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"warm screenshot job: median {p(0.5):.0f} ms, p90 {p(0.9):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} runs)")'
