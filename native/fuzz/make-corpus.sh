#!/bin/sh
# Regenerates the seed corpus for qcow2_fuzz with qemu-img/qemu-io: small
# images (512-byte clusters where possible) covering v2, v3, backing file
# names, compressed clusters (zlib, zstd), internal snapshots, extended L2,
# zero clusters and other refcount widths.
set -e
out=$(cd "$(dirname "$0")" && pwd)/corpus
mkdir -p "$out"
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
for f in *.qcow2; do cp "$f" "$out/$f"; done
ls -l "$out"
