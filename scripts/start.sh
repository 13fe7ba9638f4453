#!/usr/bin/env bash
# The README's start command: sets up what is missing, then starts Vireo.
# With an Electron binary installed it runs the desktop app; otherwise it
# serves the browser mode on 127.0.0.1 and opens it in Chromium as an app
# window (or prints the URL when there is no display).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
electron_bin=$(node -e "try{const p=require('electron');process.stdout.write(typeof p==='string'&&require('fs').existsSync(p)?p:'')}catch{}" 2>/dev/null || true)
if [ -n "$electron_bin" ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec "$electron_bin" .
fi
if [ -z "${DISPLAY:-}" ] || ! command -v chromium >/dev/null; then
  exec node bin/vireo.js serve "$@"
fi
# A display and Chromium: serve in the background, open the URL as an app window.
log=$(mktemp)
node bin/vireo.js serve "$@" >"$log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; rm -f "$log"' EXIT
url=
for _ in $(seq 1 100); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/[^ ]*' "$log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 $serve_pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "vireo serve did not start"; exit 1; }
echo "Vireo: $url"
profile=$(mktemp -d)
chromium --app="$url" --user-data-dir="$profile" --no-first-run --disable-sync \
  --disable-background-networking --disable-component-update $( [ "$(id -u)" = 0 ] && echo --no-sandbox ) || true
rm -rf "$profile"
