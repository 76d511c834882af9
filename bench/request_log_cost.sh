#!/usr/bin/env bash
# The request log's cost on an authenticated read (GET /api/users/{id}) at
# 100 connections: two services from the release build, one with
# REQUEST_LOG=true and one with REQUEST_LOG=false, measured with wrk in
# alternating rounds (so that the machine's drift hits both alike); prints
# every round, the cost (1 - on/off) as the median of the rounds' paired
# ratios and of the pooled rounds, and each service's CPU time per request
# (from /proc, the steadiest figure on a shared machine). Default settings
# otherwise (SQLITE_SYNCHRONOUS=FULL); rate limits off, as the load comes
# from one user.
#   bench/request_log_cost.sh [ROUNDS] [SECONDS_PER_RUN]
source "$(dirname "$0")/common.sh"
ROUNDS="${1:-12}"
SECONDS_PER_RUN="${2:-4}"
command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk > /dev/null; }
build

declare -A URL TOKEN PID DIR
PORT=18179
for mode in true false; do
  PORT=$((PORT + 1))
  BASE="http://127.0.0.1:$PORT"
  DIR[$mode]="$(mktemp -d)"
  start_server "${DIR[$mode]}" REQUEST_LOG="$mode"
  PID[$mode]=$SERVER_PID
  id="$(sign_up "reader@example.com" "reader password 123")"
  TOKEN[$mode]="$(login "reader@example.com" "reader password 123")"
  URL[$mode]="$BASE/api/users/$id"
done
trap 'kill ${PID[true]} ${PID[false]} 2>/dev/null || true; rm -rf "${DIR[true]}" "${DIR[false]}"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A TICKS REQS
TICKS[true]=0 TICKS[false]=0 REQS[true]=0 REQS[false]=0
run() { # mode -> "req/s p99 requests cpu_ticks"
  local before after
  before=$(cpu_ticks "${PID[$1]}")
  wrk -t2 -c100 -d"${SECONDS_PER_RUN}s" --latency -H "authorization: Bearer ${TOKEN[$1]}" "${URL[$1]}" |
    awk '/Requests\/sec/{r=$2} $1=="99%"{p=$2} / requests in /{n=$1} END{printf "%.0f %s %d ", r, p, n}'
  after=$(cpu_ticks "${PID[$1]}")
  echo $((after - before))
}
for mode in true false; do run "$mode" > /dev/null; done # warm-up

echo "round | log on req/s (p99) | log off req/s (p99)"
on=() off=()
for i in $(seq 1 "$ROUNDS"); do
  if ((i % 2)); then order="true false"; else order="false true"; fi
  for mode in $order; do
    read -r rps p99 n ticks < <(run "$mode")
    TICKS[$mode]=$((TICKS[$mode] + ticks)) REQS[$mode]=$((REQS[$mode] + n))
    if [ "$mode" = true ]; then on+=("$rps"); on_p99="$p99"; else off+=("$rps"); off_p99="$p99"; fi
  done
  echo "$i | ${on[-1]} ($on_p99) | ${off[-1]} ($off_p99)"
done
hz=$(getconf CLK_TCK)
python3 - "${on[*]}" "${off[*]}" "${TICKS[true]}" "${REQS[true]}" "${TICKS[false]}" "${REQS[false]}" "$hz" <<'EOF'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
t_on, n_on, t_off, n_off, hz = (float(x) for x in sys.argv[3:8])
paired = statistics.median(1 - a / b for a, b in zip(on, off))
print(f"req/s, median of rounds: log on {statistics.median(on):.0f}, log off {statistics.median(off):.0f}")
print(f"cost: {100 * paired:.1f}% (median of paired rounds), {100 * (1 - sum(on) / sum(off)):.1f}% (pooled)")
us_on, us_off = t_on / hz / n_on * 1e6, t_off / hz / n_off * 1e6
print(f"service CPU per request: log on {us_on:.1f} us, log off {us_off:.1f} us (+{100 * (us_on / us_off - 1):.1f}%)")
EOF
rows="$(sqlite3 "${DIR[true]}/hs-platform.db" 'SELECT count(*) FROM request_log')"
echo "request_log rows written by the logging service: $rows"
curl -s "http://127.0.0.1:18180/metrics" | grep -E '^hs_request_log_(dropped|written)_total' || true
