#!/bin/bash
# Block layer benchmark: Vireo's block layer vs qemu-io on the same qcow2
# image with the same cache mode (writeback through the page cache, no
# O_DIRECT on either side), plus full-image copy: vireo-img convert vs
# cp --sparse=always (and qemu-img convert for reference).
# Usage: bench/block/bench.sh [BUILD_DIR] [SIZE_MB]   (default native/out/block, 256)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../native/out/block}" && pwd)
size_mb=${2:-256}
VIMG=$build/vireo-img
VBENCH=$build/vireo-blockbench
for t in "$VIMG" "$VBENCH"; do [ -x "$t" ] || { echo "missing $t (build first)"; exit 1; }; done
command -v qemu-io >/dev/null || { echo "qemu-io missing (apt-get install qemu-utils)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
N=${N_RANDOM:-20000}

# request lists: same offsets for both sides
python3 - "$size_mb" "$N" <<'PY'
import random, sys
size = int(sys.argv[1]) << 20; n = int(sys.argv[2]); random.seed(1)
def dump(name, ops):
    with open(name + ".ops", "w") as f:
        for k, o, l in ops: f.write(f"{k} {o} {l}\n")
    with open(name + ".qio", "w") as f:
        for k, o, l in ops: f.write(f"{'read' if k == 'r' else 'write'} -q {o} {l}\n")
        f.write("flush\n")
rnd = [random.randrange(size // 4096) * 4096 for _ in range(n)]
dump("randread", [("r", o, 4096) for o in rnd])
# qemu-io: the same reads as aio_read, 4 outstanding then aio_flush (waits for them)
with open("randread4.qio", "w") as f:
    for i, o in enumerate(rnd):
        f.write(f"aio_read -q {o} 4096\n")
        if i % 4 == 3: f.write("aio_flush\n")
    f.write("aio_flush\nflush\n")
dump("randwrite", [("w", o, 4096) for o in rnd])
seq = [i << 20 for i in range(size >> 20)]
dump("seqwrite", [("w", o, 1 << 20) for o in seq])
dump("seqread", [("r", o, 1 << 20) for o in seq])
PY

now() { date +%s.%N; }
qio() {  # image, list -> seconds
  local t0 t1; t0=$(now)
  qemu-io -f qcow2 -t writeback "$1" < "$2" >/dev/null
  t1=$(now); echo "$t1 - $t0" | bc -l
}
fresh() { rm -f "$1"; qemu-img create -q -f qcow2 "$1" "${size_mb}M"; }
filled() { fresh "$1"; qemu-io -f qcow2 -c "write -P 7 0 ${size_mb}M" "$1" >/dev/null; }

row() {  # name unit ours qemu per
  awk -v n="$1" -v u="$2" -v a="$3" -v b="$4" -v per="$5" 'BEGIN {
    va = per / a; vb = per / b;
    printf "| %-26s | %10.0f %-5s | %10.0f %-5s | %5.2f |\n", n, va, u, vb, u, va / vb }'
}

echo "| workload                   | Vireo            | qemu-io          | ratio |"
echo "|----------------------------|------------------|------------------|-------|"
# sequential write into a fresh image (allocating), then sequential read
fresh a.qcow2; t_ours=$("$VBENCH" a.qcow2 seqwrite.ops)
fresh b.qcow2; t_q=$(qio b.qcow2 seqwrite.qio)
row "seq write 1M (allocating)" "MB/s" "$t_ours" "$t_q" "$size_mb"
t_ours=$("$VBENCH" a.qcow2 seqread.ops); t_q=$(qio b.qcow2 seqread.qio)
row "seq read 1M" "MB/s" "$t_ours" "$t_q" "$size_mb"
# 4 KiB random on a fully allocated image
filled c.qcow2; cp c.qcow2 d.qcow2
t_ours=$("$VBENCH" c.qcow2 randread.ops); t_q=$(qio d.qcow2 randread.qio)
row "rand read 4k" "IOPS" "$t_ours" "$t_q" "$N"
# the same with 4 requests in flight (a virtio-blk queue): Vireo's BlockQueue
# with 4 I/O threads (a sliding window of 4), qemu-io's aio_read through its
# thread pool in batches of 4 (aio_flush after each: qemu-io has no window)
t_ours=$("$VBENCH" --inflight 4 c.qcow2 randread.ops); t_q=$(qio d.qcow2 randread4.qio)
row "rand read 4k, 4 in flight" "IOPS" "$t_ours" "$t_q" "$N"
t_ours=$("$VBENCH" c.qcow2 randwrite.ops); t_q=$(qio d.qcow2 randwrite.qio)
row "rand write 4k (allocated)" "IOPS" "$t_ours" "$t_q" "$N"
fresh e.qcow2; fresh f.qcow2
t_ours=$("$VBENCH" e.qcow2 randwrite.ops); t_q=$(qio f.qcow2 randwrite.qio)
row "rand write 4k (allocating)" "IOPS" "$t_ours" "$t_q" "$N"
qemu-img check -q e.qcow2 && qemu-img check -q c.qcow2 || { echo "check failed"; exit 1; }

# full copy: half the image data, half holes
echo
echo "| copy (${size_mb} MiB, half data)         | seconds | MB/s  | vs cp |"
echo "|--------------------------------------|---------|-------|-------|"
qemu-img create -q -f raw src.raw "${size_mb}M"
python3 - "$size_mb" <<'PY'
import os, sys
size = int(sys.argv[1]) << 20
with open("src.raw", "r+b") as f:
    blk = os.urandom(1 << 20)
    for i in range(0, size, 2 << 20):
        f.seek(i); f.write(blk)
PY
qemu-img convert -O qcow2 src.raw src.qcow2
sync
timeit() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
t_cp=$(timeit cp --sparse=always src.raw cp.raw)
crow() { awk -v n="$1" -v t="$2" -v c="$t_cp" -v s="$size_mb" 'BEGIN { printf "| %-36s | %7.3f | %5.0f | %5.2f |\n", n, t, s / t, c / t }'; }
crow "cp --sparse=always raw->raw" "$t_cp"
rm -f o.raw; crow "vireo-img convert raw->raw" "$(timeit "$VIMG" convert -O raw src.raw o.raw)"
cmp src.raw o.raw
rm -f o.raw; crow "qemu-img convert raw->raw" "$(timeit qemu-img convert -O raw src.raw o.raw)"
rm -f o.qcow2; crow "vireo-img convert raw->qcow2" "$(timeit "$VIMG" convert -O qcow2 src.raw o.qcow2)"
qemu-img compare -q src.raw o.qcow2
rm -f o.qcow2; crow "qemu-img convert raw->qcow2" "$(timeit qemu-img convert -O qcow2 src.raw o.qcow2)"
rm -f o.raw; crow "vireo-img convert qcow2->raw" "$(timeit "$VIMG" convert -O raw src.qcow2 o.raw)"
cmp src.raw o.raw
rm -f o.raw; crow "qemu-img convert qcow2->raw" "$(timeit qemu-img convert -O raw src.qcow2 o.raw)"
