#!/usr/bin/env bash
# Long libFuzzer runs over the engine's parsers (docs/fuzzing.md):
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     default: every target, 3600 s each, one after another
# Builds native/out/fuzz (clang, ASan + UBSan + libFuzzer), makes the seed
# corpora, then runs each target nice'd on one core with its corpus kept in
# native/out/fuzz/work/TARGET (grows across runs). Crashes, leaks and UB
# reports land in native/out/fuzz/crashes/TARGET/. Prints one line per target:
# runs, execs/s, coverage (edges) and features, corpus size, crash files.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
secs=${2:-3600}
B=native/out/fuzz
command -v clang++ >/dev/null || { echo "fuzz: clang is not installed (scripts/setup.sh installs clang and libclang-rt-NN-dev)"; exit 1; }
if [ ! -f $B/CMakeCache.txt ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  cmake -S native -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DVIREO_FUZZ=ON "${launcher[@]}" >/dev/null
fi
nice -n 5 cmake --build $B --target fuzzers -j"$(nproc)" >/dev/null
sh native/fuzz/make-corpus.sh $B/corpus $B/fuzz_seeds $(ls native/out/core/guests/*.elf 2>/dev/null) >/dev/null
targets=$(sed -n '/^set(VIREO_FUZZ_TARGETS/,/)/p' native/fuzz/extra.cmake | tr -d '()' | sed 's/set//;s/VIREO_FUZZ_TARGETS//' | xargs)
[ "$target" = all ] || targets=$target
for t in $targets; do
  [ -x $B/$t ] || { echo "fuzz: no target $t (have: $(echo $targets))"; exit 2; }
  work=$B/work/$t crashes=$B/crashes/$t
  mkdir -p "$work" "$crashes"
  seeds=("$B/corpus/$t")
  [ -d native/fuzz/regress/$t ] && seeds+=(native/fuzz/regress/$t)
  log=$B/work/$t.log
  echo "fuzz: $t for ${secs} s (log: $log)"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n 10 $B/$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=131072 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  set -e
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  eps=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || echo "?")
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+' || echo "?")
  corp=$(echo "$last" | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+' || echo "?")
  ncrash=$(ls "$crashes" | wc -l)
  echo "fuzz: $t: exit $rc, $runs runs, $eps exec/s, cov $cov, ft $ft, corpus $corp, crash files $ncrash ($crashes)"
done
