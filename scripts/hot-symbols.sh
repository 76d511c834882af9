#!/usr/bin/env bash
# Regenerates link/hot-symbols.txt: the functions the release binary runs
# while it starts and idles, then the ones a typical request mix adds, as
# callgrind records them. build.rs hands the file to the linker
# (--symbol-ordering-file), which puts those functions first in .text, in
# that order. The kernel maps code 64 KiB around each page fault, so
# hot code packed together keeps the resident set small; without the order
# start-up alone touches most of the 19 MB .text.
#
# Symbols that no longer exist are skipped by the linker, and new functions
# land after the ordered ones, so a stale file costs memory, never
# correctness. Rerun this after dependency upgrades or large changes and
# commit the result:
#   scripts/hot-symbols.sh            # IDLE=35 seconds of idle by default
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE="${IDLE:-35}"
PORT="${PORT:-18190}"
B="http://127.0.0.1:$PORT"
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
SQLX_OFFLINE=true cargo build --release --bin hs-platform
BIN="$PWD/target/release/hs-platform"
work="$(mktemp -d)"; mkdir "$work/data"
trap 'pkill -f "callgrind-out-file=$work" 2>/dev/null || true; rm -rf "$work"' EXIT
env -u DATABASE_URL DATA_DIR="$work/data" PORT="$PORT" RUST_LOG=warn \
  ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD="hot symbols admin" \
  valgrind --tool=callgrind --demangle=no --compress-strings=no --dump-instr=no \
  --callgrind-out-file="$work/cg" "$BIN" serve >"$work/log" 2>&1 &
vg=$!
for _ in $(seq 300); do
  kill -0 "$vg" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  curl -sf "$B/health" >/dev/null && break; sleep 1
done
sleep "$IDLE"
callgrind_control -d "$vg" >/dev/null
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sf -XPOST "$B$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }
uid=$(post /api/users '{"email":"hot@example.com","password":"hot symbols user"}' | json '["id"]')
login=$(post /api/sessions '{"email":"hot@example.com","password":"hot symbols user"}')
token=$(json '["token"]' <<<"$login"); sid=$(json '["session"]["id"]' <<<"$login")
auth=(-H "Authorization: Bearer $token")
for _ in $(seq 20); do
  curl -sf -o /dev/null "${auth[@]}" "$B/api/users/$uid"
  curl -sf -o /dev/null "$B/health"
done
curl -sf -o /dev/null -XPUT "${auth[@]}" -H 'content-type: application/json' -d '{"name":"Hot"}' "$B/api/users/$uid"
curl -sf -o /dev/null "${auth[@]}" "$B/api/sessions/$sid"
curl -sf -o /dev/null "${auth[@]}" "$B/api/jobs"
curl -s -o /dev/null "$B/api/nowhere"
curl -s -o /dev/null "$B/api/users/$uid"
sleep 2 # the request-log writer flushes
callgrind_control -d "$vg" >/dev/null
kill -TERM "$vg"; wait "$vg" || true
python3 - "$BIN" "$work" <<'PY'
import re, subprocess, sys, glob
binary, work = sys.argv[1], sys.argv[2]
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
text = {p[2] for p in (l.split(None, 2) for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
def functions(path):
    names = []
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            name = re.sub(r"'\d+$", "", line[3:].strip())
            if name in text:
                names.append(name)
    return names
dumps = sorted(glob.glob(f"{work}/cg.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
idle, requests = functions(dumps[0]), functions(dumps[1])
seen, order = set(), []
for name in idle + requests:
    if name not in seen:
        seen.add(name); order.append(name)
with open("link/hot-symbols.txt", "w") as out:
    out.write("\n".join(order) + "\n")
print(f"link/hot-symbols.txt: {len(order)} functions ({len(set(idle))} at start-up and idle)")
PY
