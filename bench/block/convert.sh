#!/bin/bash
# Whole-image copy: `vireo-img convert` vs `qemu-img convert` vs `cp --sparse=always`
# on the same files in one run, medians of RUNS (default 3).
#   images: a GiB-sized raw with 50 % of its 64 KiB blocks allocated at random
#   (SIZE_GB, default 4) and a sparse 100 GiB raw with 64 MiB of data scattered in 1 MiB
#   pieces, plus qemu-img's qcow2 of each.
#   convert -c: a COMP_MB (default 1024) raw with 50 % of its 64 KiB blocks allocated,
#   three quarters of them text-like (compressible), a quarter random, to compressed
#   qcow2 by both tools (each deflates on up to 4 threads).
# Usage: bench/block/convert.sh [BUILD_DIR] [SIZE_GB]   (default native/out/core, 4)
#   PARTS="copy compress" (default) picks the tables to run.
# Needs qemu-img and ~4x SIZE_GB/2 free in $TMPDIR. Not part of CI.
# Ratios are other's time / Vireo's time: >= 1.00 means Vireo is at least as fast.
# vireo-img's output is durable when it exits (fdatasync + directory fsync) unless
# given -t unsafe; qemu-img convert's default is -t unsafe (no flush), -t writeback
# flushes at the end. Like is compared with like: Vireo -t unsafe vs qemu-img's
# default and cp, Vireo's default vs qemu-img -t writeback and cp followed by
# `sync FILE` ("+fsync"). The compress table likewise: Vireo -c -t unsafe vs
# qemu-img -c, Vireo's durable -c vs qemu-img -c followed by `sync FILE`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../native/out/core}" && pwd)
size_gb=${2:-4}
RUNS=${RUNS:-3}
PARTS=${PARTS:-copy compress}
COMP_MB=${COMP_MB:-1024}
VIMG=$build/vireo-img
[ -x "$VIMG" ] || { echo "missing $VIMG (build first)"; exit 1; }
command -v qemu-img >/dev/null || { echo "qemu-img missing (apt-get install qemu-utils)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-convert-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 - "$size_gb" "$PARTS" "$COMP_MB" <<'PY'
import os, random, sys
random.seed(1)
buf = os.urandom(2 << 20)
if "compress" in sys.argv[2]:
    words = [b"qcow2", b"cluster", b"refcount", b"table", b"guest", b"virtio", b"sector", b"vireo", b"\n"]
    text = b" ".join(random.choice(words) + str(random.randrange(1000)).encode() for _ in range(600000))[: 2 << 20]
    size = int(sys.argv[3]) << 20
    with open("comp.raw", "wb") as f:
        f.truncate(size)
        for off in range(0, size, 64 << 10):
            if random.random() < 0.5:
                src = text if random.random() < 0.75 else buf
                s = random.randrange(0, 1 << 20)
                f.seek(off); f.write(src[s:s + (64 << 10)])
if "copy" not in sys.argv[2]:
    sys.exit(0)
size = int(sys.argv[1]) << 30
with open("half.raw", "wb") as f:
    f.truncate(size)
    for off in range(0, size, 64 << 10):
        if random.random() < 0.5:
            s = random.randrange(0, 1 << 20)
            f.seek(off); f.write(buf[s:s + (64 << 10)])
with open("sparse.raw", "wb") as f:
    f.truncate(100 << 30)
    for _ in range(64):
        off = random.randrange(0, 100 << 10) << 20
        s = random.randrange(0, 1 << 20)
        f.seek(off); f.write(buf[s:s + (1 << 20)])
PY
if [[ $PARTS == *copy* ]]; then
  qemu-img convert -O qcow2 half.raw half.qcow2
  qemu-img convert -O qcow2 sparse.raw sparse.qcow2
fi
sync

now() { date +%s.%N; }
# med CMD...: median wall seconds of RUNS runs (the output file o.* removed before each)
med() {
  local ts=() t0 t1
  for ((i = 0; i < RUNS; i++)); do
    rm -f o.raw o.qcow2; sync
    t0=$(now); "$@" >/dev/null; t1=$(now)
    ts+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
fsynced() { "$@" && sync "${@: -1}"; }

if [[ $PARTS == *copy* ]]; then
echo "| image | convert | Vireo s (durable) | Vireo -t unsafe s | qemu-img s (-t unsafe) | qemu-img -t writeback s (durable) | cp s | cp+fsync s | unsafe vs qemu-img | durable vs qemu-img -t writeback | unsafe vs cp | durable vs cp+fsync |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for img in half sparse; do
  for row in "raw raw" "raw qcow2" "qcow2 raw" "qcow2 qcow2"; do
    set -- $row
    src=$img.$1 out=o.$2
    for t in writeback unsafe; do
      "$VIMG" convert -t $t -O "$2" "$src" "$out"
      qemu-img compare -q "$src" "$out" || { echo "compare failed: $src -> $out (-t $t)"; exit 1; }
      if [ "$2" = qcow2 ]; then qemu-img check -q "$out" || { echo "check failed: $out (-t $t)"; exit 1; }; fi
    done
    tv=$(med "$VIMG" convert -O "$2" "$src" "$out")
    tvu=$(med "$VIMG" convert -t unsafe -O "$2" "$src" "$out")
    tq=$(med qemu-img convert -O "$2" "$src" "$out")
    tqs=$(med qemu-img convert -t writeback -O "$2" "$src" "$out")
    if [ "$1" = "$2" ]; then
      tc=$(med cp --sparse=always "$src" "$out")
      tcs=$(med fsynced cp --sparse=always "$src" "$out")
    else
      tc=- tcs=-
    fi
    python3 - "$img" "$1->$2" "$tv" "$tvu" "$tq" "$tqs" "$tc" "$tcs" <<'PY'
import sys
img, conv, v, vu, q, qs, c, cs = sys.argv[1:]
v, vu = float(v), float(vu)
def s(x): return "-" if x == "-" else f"{float(x):.3f}"
def r(x, by): return "-" if x == "-" else f"{float(x) / by:.2f}"
print(f"| {img} | {conv} | {v:.3f} | {vu:.3f} | {s(q)} | {s(qs)} | {s(c)} | {s(cs)} | {r(q, vu)} | {r(qs, v)} | {r(c, vu)} | {r(cs, v)} |")
PY
  done
done
fi

if [[ $PARTS == *compress* ]]; then
  echo
  echo "| image | convert -c | Vireo s (durable) | Vireo -t unsafe s | qemu-img s (-t unsafe) | qemu-img+fsync s | unsafe vs qemu-img | durable vs qemu-img+fsync | size Vireo MiB | size qemu-img MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  tv=$(med "$VIMG" convert -c -O qcow2 comp.raw o.qcow2)
  tvu=$(med "$VIMG" convert -c -t unsafe -O qcow2 comp.raw o.qcow2)
  "$VIMG" convert -c -O qcow2 comp.raw o.qcow2
  qemu-img compare -q comp.raw o.qcow2 || { echo "compare failed: comp.raw -> o.qcow2 (-c)"; exit 1; }
  qemu-img check -q o.qcow2 || { echo "check failed: o.qcow2 (-c)"; exit 1; }
  sv=$(stat -c %s o.qcow2)
  tq=$(med qemu-img convert -c -O qcow2 comp.raw o.qcow2)
  tqs=$(med fsynced qemu-img convert -c -O qcow2 comp.raw o.qcow2)
  qemu-img convert -c -O qcow2 comp.raw o.qcow2
  sq=$(stat -c %s o.qcow2)
  python3 - "$tv" "$tvu" "$tq" "$tqs" "$sv" "$sq" "$COMP_MB" <<'PY'
import sys
v, vu, q, qs, sv, sq, mb = map(float, sys.argv[1:])
print(f"| comp ({int(mb)} MiB) | raw->qcow2 | {v:.3f} | {vu:.3f} | {q:.3f} | {qs:.3f} | {q / vu:.2f} | {qs / v:.2f} | {sv / 2**20:.1f} | {sq / 2**20:.1f} |")
PY
fi
