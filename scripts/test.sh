#!/usr/bin/env bash
# The README's test command: sets up what is missing, then runs every suite
# (native unit + KVM tests, TypeScript unit tests, end-to-end tests in
# Chromium) and prints one summary line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed"; exit 1; }
exec node scripts/run-tests.mjs "$@"
