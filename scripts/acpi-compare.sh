#!/bin/bash
# Dumps QEMU's ACPI tables (qemu-system-x86_64 -machine pc -accel tcg, same
# CPUs/RAM) and Vireo's (acpi_test with VIREO_ACPI_DUMP), disassembles both
# with iasl and prints a diff per table. See docs/acpi.md.
# usage: scripts/acpi-compare.sh [OUTDIR]   (needs native/out/core built)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/vireo-acpi-compare}
rm -rf "$OUT" && mkdir -p "$OUT"
# 128 MiB, 2 vCPUs: the tables sit just below 128 MiB, the RSDP in the F-segment.
(sleep 6; echo "pmemsave 0xe0000 0x20000 \"$OUT/fseg.bin\""
 echo "pmemsave 0x7f00000 0x100000 \"$OUT/high.bin\""; sleep 2; echo quit) |
  timeout 60 qemu-system-x86_64 -machine pc -accel tcg -m 128 -smp 2 -display none -vga std \
    -monitor stdio -serial null -net none > "$OUT/qemu.log" 2>&1
python3 scripts/acpi-extract.py "$OUT/qemu" e0000:"$OUT/fseg.bin" 7f00000:"$OUT/high.bin"
(cd "$OUT/qemu" && for f in *.dat; do [ "$f" = RSDP.dat ] || iasl -vs -d "$f" > /dev/null 2>&1; done)
VIREO_ACPI_DUMP="$OUT/vireo" native/out/core/acpi_test every_table_disassembles_with_iasl > /dev/null
strip() { grep -v '^ \*\|^/\*\|Raw Table\|^    [0-9A-F]\{4\}:' "$1" | sed 's/^\[[0-9A-F]*h [0-9]* *[0-9]*\] *//'; }
for t in "$OUT"/qemu/*.dsl "$OUT"/vireo/*.dsl; do basename "$t"; done | sort -u | while read -r n; do
  echo "=== $n"
  diff <(strip "$OUT/qemu/$n" 2>/dev/null || true) <(strip "$OUT/vireo/$n" 2>/dev/null || true) || true
done
