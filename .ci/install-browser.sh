#!/usr/bin/env bash
# Install the browser test's Node dependencies (tests/browser: playwright-core, pinned
# in package.json/package-lock.json) with `npm ci`, and check Debian's chromium is there.
# Never downloads a browser: echo.mjs drives /usr/bin/chromium (from .ci/install-system.sh).
# Idempotent: skips `npm ci` when node_modules was installed from the same lockfile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/browser"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-browser: $tool not found (Node.js >= 20 is needed)" >&2
        exit 1
    fi
done
if [ ! -x "$CHROMIUM" ]; then
    echo "install-browser: $CHROMIUM not found; run .ci/install-system.sh first" >&2
    exit 1
fi

stamp_file="$DIR/node_modules/.tower-upgrade-stamp"
want=$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ] &&
   [ -f "$DIR/node_modules/playwright-core/package.json" ]; then
    action="already installed"
else
    npm ci --prefix "$DIR" --no-audit --no-fund --loglevel=error >/dev/null
    echo "$want" >"$stamp_file"
    action="npm ci done"
fi

pw=$(node -p "require('$DIR/node_modules/playwright-core/package.json').version")
chromium_v=$("$CHROMIUM" --version 2>/dev/null | head -n1)
echo "install-browser: $action (playwright-core $pw, $chromium_v at $CHROMIUM)"
