#!/usr/bin/env bash
# The test command: installs what the tests need, then checks and tests.
#   scripts/test.sh
# Steps: system packages (Chromium, poppler-utils, sqlite3, fonts, wrk),
# python-docx, the contract tests' Python tools, sqlx-cli; then rustfmt,
# clippy (offline query data), the freshness of .sqlx/ against the
# migrations, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v wrk >/dev/null || need_apt+=(wrk)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
[ -d /usr/share/fonts/truetype/droid ] || need_apt+=(fonts-droid-fallback)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import docx' 2>/dev/null; then
  log "installing python-docx"
  python3 -m pip install --quiet python-docx
fi

# The contract tests' tools (schemathesis, openapi-spec-validator,
# openapi-python-client), pinned, in a virtualenv under the ignored target/.
contract_tools=target/contract-tools
if ! cmp -s tests/contract/requirements.txt "$contract_tools/requirements.txt"; then
  log "installing the contract tests' tools into $contract_tools"
  python3 -m venv "$contract_tools"
  "$contract_tools/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/contract/requirements.txt
  cp tests/contract/requirements.txt "$contract_tools/requirements.txt"
fi

if ! cargo sqlx --version >/dev/null 2>&1; then
  log "installing sqlx-cli"
  cargo install sqlx-cli --locked --no-default-features --features sqlite,rustls
fi

log "rustfmt"
cargo fmt --all -- --check

log "clippy (offline query data)"
SQLX_OFFLINE=true cargo clippy --all-targets -- -D warnings

log "checking that .sqlx/ matches the migrations and queries"
tmpdb="$(mktemp -d)/schema.db"
export DATABASE_URL="sqlite://$tmpdb"
cargo sqlx database create
cargo sqlx migrate run
cargo sqlx prepare --check -- --all-targets
unset DATABASE_URL

log "tests"
SQLX_OFFLINE=true cargo test
