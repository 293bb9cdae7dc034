#!/usr/bin/env bash
# Installs what the browser end-to-end test (tests/integration/browser.rs) needs: Debian's
# Chromium, Node.js and npm, then playwright-core from tests/browser's lockfile. playwright-core
# never downloads a browser: the test drives /usr/bin/chromium. Needs root (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update
    apt-get install -y "${missing[@]}"
fi
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund
