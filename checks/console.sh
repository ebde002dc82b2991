#!/usr/bin/env bash
# End-to-end tests of the web console in Debian's headless Chromium
# (playwright-core drives it; no browser is downloaded). Installs chromium,
# a CJK font (so the screenshots are legible) and playwright-core if missing.
#
#   bash checks/console.sh [target/debug/tongban]
#
# Screenshots of every page: target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/tongban}

scripts/need-debian chromium fonts-wqy-zenhei
if [ ! -d checks/console/node_modules/playwright-core ]; then
  (cd checks/console && npm ci --no-audit --no-fund --silent)
fi
[ -x "$binary" ] || cargo build -q --bin tongban
node checks/console/e2e.mjs --binary "$binary" --out target/console-screenshots
