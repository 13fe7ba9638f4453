#!/bin/sh
# Makes the seed corpora for the libFuzzer targets (docs/fuzzing.md):
#   make-corpus.sh OUTDIR FUZZ_SEEDS_BINARY [KERNEL...]
# OUTDIR/<target>/ gets that target's seeds: the hand-made programs that
# fuzz_seeds writes (KERNEL files become kernel_fuzz seeds), and for the
# qcow2 targets small images made with qemu-img/qemu-io (512-byte clusters
# where possible) covering v2, v3, backing file names, compressed clusters
# (zlib, zstd), internal snapshots, extended L2, zero clusters and other
# refcount widths. Regression inputs live in native/fuzz/regress/<target>/.
set -e
out=$(mkdir -p "$1" && cd "$1" && pwd)
seeds=$2
shift 2
"$seeds" "$out" "$@"
q="$out/qcow2_fuzz"
mkdir -p "$q" "$out/qcow2_write_fuzz"
if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
  echo "make-corpus: no qemu-img/qemu-io: the qcow2 targets start from the regression inputs only" >&2
  exit 0
fi
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cd "$t"
mk() { name=$1; shift; qemu-img create -q -f qcow2 "$@" "$name" 256k; }
mk v2.qcow2 -o compat=0.10,cluster_size=512
mk v3.qcow2 -o cluster_size=512
qemu-io -c 'write -P 1 0 4k' -c 'write -z 8k 1k' v3.qcow2 >/dev/null
mk r1.qcow2 -o cluster_size=512,refcount_bits=1
mk r64.qcow2 -o cluster_size=512,refcount_bits=64
qemu-img create -q -f raw base.raw 256k
mk back.qcow2 -o cluster_size=512 -b base.raw -F raw
qemu-io -c 'write -P 5 1k 2k' back.qcow2 >/dev/null
mk snap.qcow2 -o cluster_size=512
qemu-io -c 'write -P 2 0 2k' snap.qcow2 >/dev/null
qemu-img snapshot -c s1 snap.qcow2
qemu-io -c 'write -P 3 512 1k' snap.qcow2 >/dev/null
qemu-img snapshot -c s2 snap.qcow2
qemu-io -f raw -c 'write -P 0x41 0 64k' base.raw >/dev/null
qemu-img convert -c -O qcow2 -o cluster_size=512 base.raw zlib.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=512,compression_type=zstd base.raw zstd.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k ext.qcow2 256k
qemu-io -c 'write -P 4 4k 1k' ext.qcow2 >/dev/null
for f in *.qcow2; do cp "$f" "$q/$f"; done
# The writable target reads its requests from the last 16 bytes of the image.
for f in *.qcow2; do { cat "$f"; printf '\000\001\002\003\004\005\006\007\010\011\012\013\000\001\002\003'; } > "$out/qcow2_write_fuzz/$f"; done
