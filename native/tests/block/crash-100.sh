#!/bin/sh
# 100 rounds of the SIGKILL crash test. Usage: crash-100.sh [BUILD_DIR]
# (default native/out/block). Each round: fork a writer, kill it at a random
# moment, then qemu-img check + our check + data verification.
set -e
dir=${1:-$(dirname "$0")/../../out/block}
VIREO_CRASH_ROUNDS=${VIREO_CRASH_ROUNDS:-100} exec "$dir/block_crash_test"
