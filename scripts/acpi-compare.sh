#!/bin/bash
# Dumps QEMU's ACPI tables (qemu-system-x86_64 -machine pc -accel tcg, same
# CPUs/RAM) and Vireo's (acpi_test with VIREO_ACPI_DUMP), disassembles both
# with iasl and prints a diff per table. See docs/acpi.md.
# usage: scripts/acpi-compare.sh [OUTDIR] [MEM_MIB]   (needs native/out/core built)
# MEM_MIB defaults to 128; above 3584 QEMU's pc (and Vireo) put RAM above 4 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/vireo-acpi-compare}
MEM=${2:-128}
rm -rf "$OUT" && mkdir -p "$OUT"
# The tables sit just below the top of RAM under 4 GiB (QEMU's pc keeps
# everything low up to 3.5 GiB, then splits at 3 GiB), the RSDP in the F-segment.
if [ "$MEM" -ge 3584 ]; then LOW=3072; else LOW=$MEM; fi
TOP=$(printf '%x' $(( (LOW - 1) * 1048576 )))
(sleep 6; echo "pmemsave 0xe0000 0x20000 \"$OUT/fseg.bin\""
 echo "pmemsave 0x$TOP 0x100000 \"$OUT/high.bin\""; sleep 2; echo quit) |
  timeout 60 qemu-system-x86_64 -machine pc -accel tcg -m "$MEM" -smp 2 -display none -vga std \
    -monitor stdio -serial null -net none > "$OUT/qemu.log" 2>&1
python3 scripts/acpi-extract.py "$OUT/qemu" e0000:"$OUT/fseg.bin" "$TOP":"$OUT/high.bin"
(cd "$OUT/qemu" && for f in *.dat; do [ "$f" = RSDP.dat ] || iasl -vs -d "$f" > /dev/null 2>&1; done)
# QEMU's TCG CPU (qemu64) reports 40 physical address bits; Vireo's window follows that.
VIREO_ACPI_DUMP="$OUT/vireo" VIREO_ACPI_MEM_MIB="$MEM" VIREO_ACPI_PHYS_BITS=40 \
  native/out/core/acpi_test every_table_disassembles_with_iasl > /dev/null
strip() { grep -v '^ \*\|^/\*\|Raw Table\|^    [0-9A-F]\{4\}:' "$1" | sed 's/^\[[0-9A-F]*h [0-9]* *[0-9]*\] *//'; }
for t in "$OUT"/qemu/*.dsl "$OUT"/vireo/*.dsl; do basename "$t"; done | sort -u | while read -r n; do
  echo "=== $n"
  diff <(strip "$OUT/qemu/$n" 2>/dev/null || true) <(strip "$OUT/vireo/$n" 2>/dev/null || true) || true
done
